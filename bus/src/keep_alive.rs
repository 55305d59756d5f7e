//! The keep-alive thread: the progress acks of every message a process holds, sent from an OS
//! thread and a NATS connection of their own.
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
//! One thread and one connection serve every consumer of a [`crate::Bus`] and end with it. A
//! round goes every third of the shortest registered ack wait and sends one progress ack per
//! message in hand (with the default 30 s ack wait, one every 10 s per message). While its
//! connection is not up, the runtime sends the progress acks itself, as a fallback
//! ([`KeepAlive::is_up`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_nats::jetstream::AckKind;

use crate::connection::{Bus, BusOptions};
use crate::in_hand::{InHand, PROGRESS_PER_ACK_WAIT};

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
        let started = std::thread::Builder::new()
            .name("orderflow-keep-alive".into())
            .spawn(move || run(&weak, options));
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

    /// Whether the thread's connection is up (its progress acks go out).
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
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
/// until the [`KeepAlive`] is dropped.
fn run(keep_alive: &Weak<KeepAlive>, options: BusOptions) {
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
        loop {
            let every = match keep_alive.upgrade() {
                Some(keep_alive) => keep_alive.every(),
                None => return,
            };
            tokio::time::sleep(every).await;
            let Some(keep_alive) = keep_alive.upgrade() else {
                return;
            };
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
            let Some(connection) = client
                .as_ref()
                .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
            else {
                keep_alive.up.store(false, Ordering::Relaxed);
                continue;
            };
            keep_alive.up.store(true, Ordering::Relaxed);
            told_down = false;
            for reply in keep_alive.replies() {
                if let Err(error) = connection.publish(reply, AckKind::Progress.into()).await {
                    tracing::debug!(%error, "progress ack failed");
                }
            }
            if let Err(error) = connection.flush().await {
                tracing::debug!(%error, "flushing the progress acks failed");
            }
        }
    });
}
