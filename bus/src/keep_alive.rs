//! The keep-alive thread: what a process is delivered is taken in hand, and the progress acks
//! of every message it holds are sent, from an OS thread and a NATS connection of their own.
//!
//! A message in hand (`crate::in_hand`) must be said to be in progress before its ack wait
//! runs out, however busy the process is. Sent from the process's own runtime, the progress
//! acks wait behind the work they protect: under a 10 % CPU cap a timer of a third of a
//! 1 s ack wait fired up to 760 ms late and a round of 256 progress acks through the shared
//! connection took up to 1.4 s, so messages the process was working on were redelivered. This
//! thread sleeps between rounds (the kernel's fair scheduler runs a thread that wakes from
//! sleep ahead of the busy ones) and writes on a connection no other task waits on, so a round
//! is late by at most what the CPU cap itself withholds (under 0.1 s here).
//!
//! A message counts against its ack wait from its delivery, so it must also be *taken in hand*
//! at once: received by a busy runtime, a batch of deliveries waited over a second in the
//! client at a consumer's start and was redelivered though the process then held it. So the
//! consumers' pull inboxes are subscribed on this thread's connection too
//! ([`KeepAlive::intake`]): the thread takes each delivery in hand as it arrives (dropping a
//! redelivery of a message in hand) and passes it on to the consumer.
//!
//! One thread and one connection serve every consumer of a [`crate::Bus`] and end with it. A
//! round goes every third of the shortest registered ack wait and sends one progress ack per
//! message in hand (with the default 30 s ack wait, one every 10 s per message). While its
//! connection is not up, the runtime sends the progress acks itself and receives on its own
//! connection, as a fallback ([`KeepAlive::is_up`]). When a round takes more than a third of the time between rounds,
//! the consumers that may hold many messages take no more until it does not
//! ([`KeepAlive::is_saturated`]): what a process holds is bounded by what it can keep in
//! progress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Bus, BusOptions};
use crate::in_hand::{InHand, PROGRESS_PER_ACK_WAIT};
use crate::runtime::InboxDelivery;

/// How long a consumer waits for the thread to subscribe its inbox before it receives on its
/// own connection instead.
const INTAKE_WAIT: Duration = Duration::from_secs(10);

/// A consumer's request for an inbox subscribed on the thread's connection.
struct IntakeRequest {
    consumer: String,
    in_hand: Arc<InHand>,
    context: async_nats::jetstream::Context,
    answer: oneshot::Sender<Intake>,
}

/// An inbox the thread receives for one consumer: what arrives there, already in hand.
#[derive(Debug)]
pub(crate) struct Intake {
    /// The subject pulls name as their reply subject.
    pub(crate) inbox: String,
    /// Deliveries taken in hand, pull ends and failures, in arrival order.
    pub(crate) deliveries: mpsc::UnboundedReceiver<InboxDelivery>,
}

/// How often the thread looks again when nothing is registered or its connection is down.
const IDLE_EVERY: Duration = Duration::from_secs(1);
/// The shortest round interval, whatever the ack wait.
const FASTEST: Duration = Duration::from_millis(100);

/// What the thread keeps in progress, shared with the [`Bus`] that started it.
#[derive(Debug, Default)]
pub(crate) struct KeepAlive {
    held: Mutex<HashMap<u64, (Arc<InHand>, Duration)>>,
    next_id: AtomicU64,
    up: AtomicBool,
    /// Requests for inboxes, to the thread.
    intake_requests: Mutex<Option<mpsc::UnboundedSender<IntakeRequest>>>,
    /// Whether the last round took more than a third of the interval between rounds.
    saturated: AtomicBool,
}

/// Keeps an [`InHand`] in progress until dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    keep_alive: Arc<KeepAlive>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keep_alive.held().remove(&self.id);
    }
}

impl KeepAlive {
    /// Starts the thread for a bus connected with `options`; it ends when the returned value
    /// is dropped (by every clone of the bus).
    pub(crate) fn start(options: BusOptions) -> Arc<Self> {
        let keep_alive = Arc::new(Self::default());
        let weak = Arc::downgrade(&keep_alive);
        let (requests, requested) = mpsc::unbounded_channel();
        *keep_alive
            .intake_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(requests);
        let started = std::thread::Builder::new()
            .name("orderflow-keep-alive".into())
            .spawn(move || run(&weak, options, requested));
        if let Err(error) = started {
            tracing::warn!(%error, "cannot start the keep-alive thread; consumers send progress acks themselves");
        }
        keep_alive
    }

    fn held(&self) -> MutexGuard<'_, HashMap<u64, (Arc<InHand>, Duration)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps what `in_hand` holds in progress, for an ack wait of `ack_wait`, until the
    /// registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        in_hand: Arc<InHand>,
        ack_wait: Duration,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.held().insert(id, (in_hand, ack_wait));
        Registration {
            keep_alive: Arc::clone(self),
            id,
        }
    }

    /// An inbox subscribed on the thread's connection for `consumer`, whose deliveries the
    /// thread takes into `in_hand` as they arrive; `None` when the thread cannot within
    /// [`INTAKE_WAIT`] (its connection is down): the consumer then receives on its own.
    pub(crate) async fn intake(
        &self,
        consumer: &str,
        in_hand: Arc<InHand>,
        context: async_nats::jetstream::Context,
    ) -> Option<Intake> {
        let (answer, answered) = oneshot::channel();
        let request = IntakeRequest {
            consumer: consumer.to_string(),
            in_hand,
            context,
            answer,
        };
        self.intake_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()?
            .send(request)
            .ok()?;
        tokio::time::timeout(INTAKE_WAIT, answered).await.ok()?.ok()
    }

    /// Whether the thread's connection is up (its progress acks go out).
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether keeping more messages in progress could make the rounds late: the last round
    /// took more than a third of the time between rounds. Each message in hand costs a
    /// progress ack per round; a process short of CPU that holds thousands cannot send them
    /// all in time, so a consumer that may hold many (several batches in flight) takes no
    /// more while this is true.
    pub(crate) fn is_saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    /// How long until the next round: a third of the shortest registered ack wait.
    fn every(&self) -> Duration {
        self.held()
            .values()
            .map(|(_, ack_wait)| (*ack_wait / PROGRESS_PER_ACK_WAIT).max(FASTEST))
            .min()
            .unwrap_or(IDLE_EVERY)
    }

    /// The reply subjects of every message in hand.
    fn replies(&self) -> Vec<async_nats::Subject> {
        let held: Vec<Arc<InHand>> = self.held().values().map(|(h, _)| Arc::clone(h)).collect();
        held.iter().flat_map(|in_hand| in_hand.replies()).collect()
    }
}

/// The thread's body: connects, then sends a round of progress acks every [`KeepAlive::every`]
/// and subscribes the inboxes consumers ask for, until the [`KeepAlive`] is dropped.
fn run(
    keep_alive: &Weak<KeepAlive>,
    options: BusOptions,
    mut requests: mpsc::UnboundedReceiver<IntakeRequest>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "cannot start the keep-alive runtime; consumers send progress acks themselves");
            return;
        }
    };
    runtime.block_on(async {
        let mut client: Option<async_nats::Client> = None;
        let mut told_down = false;
        let mut next_round = tokio::time::Instant::now();
        loop {
            if client.is_none() {
                match Bus::connect_named(options.clone(), "orderflow-keep-alive").await {
                    Ok(bus) => client = Some(bus.client().clone()),
                    Err(error) if !told_down => {
                        told_down = true;
                        tracing::warn!(%error, "the keep-alive connection is not up; consumers send progress acks themselves");
                    }
                    Err(_) => {}
                }
            }
            let every = match keep_alive.upgrade() {
                Some(keep_alive) => keep_alive.every(),
                None => return,
            };
            tokio::select! {
                () = tokio::time::sleep_until(next_round) => {}
                request = requests.recv() => match request {
                    Some(request) => {
                        if let Some(connection) = client.as_ref() {
                            subscribe(connection, request).await;
                        }
                        continue;
                    }
                    None => return,
                },
            }
            next_round = tokio::time::Instant::now() + every;
            let Some(keep_alive) = keep_alive.upgrade() else {
                return;
            };
            let Some(connection) = client
                .as_ref()
                .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
            else {
                keep_alive.up.store(false, Ordering::Relaxed);
                continue;
            };
            keep_alive.up.store(true, Ordering::Relaxed);
            told_down = false;
            let started = std::time::Instant::now();
            for reply in keep_alive.replies() {
                if let Err(error) = connection.publish(reply, AckKind::Progress.into()).await {
                    tracing::debug!(%error, "progress ack failed");
                }
            }
            if let Err(error) = connection.flush().await {
                tracing::debug!(%error, "flushing the progress acks failed");
            }
            keep_alive
                .saturated
                .store(started.elapsed() > every / 3, Ordering::Relaxed);
        }
    });
}

/// Subscribes a new inbox for `request` and spawns, on the thread's runtime, the task that
/// takes what arrives there in hand and passes it on, until the consumer stops listening.
/// Nothing is answered when the subscription fails: the consumer receives on its own.
async fn subscribe(connection: &async_nats::Client, request: IntakeRequest) {
    let inbox = connection.new_inbox();
    let Ok(mut subscriber) = connection.subscribe(inbox.clone()).await else {
        return;
    };
    let (deliveries, received) = mpsc::unbounded_channel();
    if request
        .answer
        .send(Intake {
            inbox,
            deliveries: received,
        })
        .is_err()
    {
        return;
    }
    let IntakeRequest {
        consumer,
        in_hand,
        context,
        ..
    } = request;
    tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            let delivery = match InboxDelivery::read(message, &context) {
                None => continue,
                Some(InboxDelivery::Message(message)) => {
                    if !in_hand.take(&message) {
                        crate::runtime::count_redelivered_in_hand(&consumer, &message);
                        continue;
                    }
                    InboxDelivery::InHand(message)
                }
                Some(other) => other,
            };
            if deliveries.send(delivery).is_err() {
                break;
            }
        }
    });
}
