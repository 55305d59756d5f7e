//! The consumer runtime: one durable pull consumer per handler, explicit acks, retries with
//! growing delays, dead letters, and the lag numbers operators look at.
//!
//! For each message: a redrive addressed to another consumer is acked unseen (see
//! [`crate::dlq`]); a body that is not an event envelope is parked at once; otherwise the
//! handler runs. `Ok` acks. `Retry` naks with a delay that grows with the attempt, until the
//! attempt reaches `max_attempts`: then, as for `GiveUp`, the message is parked in the DLQ
//! stream (the publish acknowledged first) and acked. Parking from the handler's own last
//! attempt is more reliable than the server's max-deliveries advisory on 2.9. The server's
//! `max_deliver` is `max_attempts + 2`: two spare deliveries for a process that died during
//! the last attempt or failed to park, so the server never drops a message silently.
//!
//! # Batches and lanes
//! A batched handler ([`Handler::batched`]; every built-in consumer) is handed what has been
//! delivered as one batch: the first message the pull yields and every one already waiting
//! behind it, up to `batch_size`. So a consumer that keeps up sees batches of one (no added
//! latency) and one with a backlog sees full ones (few statements per message). One batch runs
//! at a time per process; each message of it is acked, naked or parked on its own result,
//! after the handler returned (after its writes committed). Other handlers run up to
//! `concurrency` messages at once, each order's messages one after another in delivery
//! order (`crate::lanes`).
//!
//! [`Consumer::step`] processes one batch and says what it did; [`Consumer::drain`] steps
//! until the consumer has nothing pending, so tests need no sleeps. [`run_consumer`] is the
//! long-running loop. Several processes may run the same durable consumer.
//!
//! # No livelock
//! A message is in hand from its delivery to this process until it is settled, whether it is
//! being handled or waits behind a batch (`crate::in_hand`). Everything in hand is said to be
//! in progress three times per `ack_wait`, from an OS thread and a connection of their own
//! (`crate::keep_alive`), so only a dead or stuck process has its messages redelivered,
//! however long a batch takes on a busy machine (a handler call is bounded by
//! `handler_timeout`). A redelivery of a message still in hand is
//! dropped, not worked twice. Each pull asks for as many messages as recent ones say fit one
//! ack wait (at least 32, at most `batch_size`). A consumer with a backlog that settles nothing for
//! `stall_after` says so: a warning every 30 s and `orderflow_consumer_stalled_seconds`.
//!
//! # Step records
//! With [`ConsumerOptions::steps`] set, the runtime records what came of each delivery (an
//! order's trace, `orderflow_store::steps`): the handler's effects or the error, retries,
//! parkings (its own and the advisory's) and the first delivery of a redrive, one statement
//! per batch, after the batch's messages were settled.
//!
//! # Stopping
//! On shutdown the loop asks for nothing more, and handles what its open pull still
//! delivers (at most `batch_size` messages within `fetch_wait`) like any other message: they
//! were delivered to this process, and giving them back would spend a delivery of each. Only
//! what is still unstarted after `shutdown_grace` is given back, with a nak that has a delay
//! (an immediate nak would hand it straight back to the same open pull).
//!
//! # The database away
//! Every delivery of a message counts towards its attempts, so a database outage must not be
//! met with naks: a few minutes away would park every message in flight. With
//! [`ConsumerOptions::database`] set, the loop takes no messages while the database is known
//! to be away, and when a handler fails with a retry and the database was found away while
//! it ran (a handler slower than a moment asks for a probe) or is away now, the runtime keeps
//! the messages (sending in-progress acks), waits until it answers
//! again (at most `handler_timeout`), and runs the handler again on the failed ones, as the
//! same attempt. Effects stay idempotent as for any retry.
//!
//! # Traces
//! Each delivered event is handled in a span of its own (`handle`, with the consumer, order,
//! event type, position and attempt), a child of the W3C trace context the message carries
//! (`orderflow_trace`), so one order's handling by every consumer joins the trace its request
//! started. The handler sees the event with this span as its `traceparent`, so the commands
//! it issues continue the trace. The ack, nak or parking of the message is logged inside it,
//! one `message handled` line (target [`CONSUMED_TARGET`]) for each message handled: at info
//! with the effects when the handler did something, at debug when it did nothing.
//!
//! # Nothing vanishes at the delivery limit
//! JetStream stops delivering a message after `max_deliver` deliveries and tells nobody but
//! an advisory. So a message on its last allowed delivery is parked in the dead-letter stream
//! whatever stops it from being handled (a failure, a release on stop), and while it runs,
//! the loop listens to the max-deliveries advisory of its consumer and parks any message the
//! server gave up on anyway (a process killed on the last delivery, an outside nak). Parking
//! twice stores one dead letter (`Nats-Msg-Id: <consumer>:<stream sequence>`).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use orderflow_store::steps::{NewStep, StepOutcome};
use orderflow_store::{DatabaseHealth, EventEnvelope};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::{Bus, BusError};
use crate::dlq::{self, DeadLetter, REDRIVE_FOR_HEADER};
use crate::handler::{Delivery, Effects, Handler, HandlerError};
use crate::in_hand::{stream_sequence, InHand, PullSize};
use crate::keep_alive::{KeepAlive, Registration};
use crate::lanes::{Lane, OrderLanes};
use crate::stream_check;

/// Why the runtime could not run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Talking to NATS failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A drain gave up before the consumer had caught up.
    #[error("consumer {consumer} did not drain within {waited:?} ({pending} pending, {ack_pending} in flight)")]
    DrainTimeout {
        /// The durable consumer's name.
        consumer: String,
        /// How long the drain waited.
        waited: Duration,
        /// Messages not yet delivered to the consumer when it gave up.
        pending: u64,
        /// Messages delivered but not yet acked when it gave up.
        ack_pending: usize,
    },
}

/// How a consumer retries and batches. `Default` suits production.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Deliveries before a failing message is parked (the handler runs at most this many
    /// times for a message that keeps failing).
    pub max_attempts: u64,
    /// The nak delay after attempt n is `retry_delays[n - 1]` (the last one repeats).
    pub retry_delays: Vec<Duration>,
    /// How long the server waits for an ack before redelivering (a crashed worker's
    /// messages come back after this). Later redeliveries wait 2x, 3x, ... as long.
    pub ack_wait: Duration,
    /// Messages pulled per request; also the largest batch a batched handler is given.
    pub batch_size: usize,
    /// Messages handled at once by one process.
    pub concurrency: usize,
    /// How long one pull request waits for messages in [`run_consumer`].
    pub fetch_wait: Duration,
    /// How long [`Consumer::drain`] may take before it reports a timeout.
    pub drain_timeout: Duration,
    /// Longest one handler call may run (it is kept from redelivery meanwhile); past it the
    /// call is abandoned and counted as a retry.
    pub handler_timeout: Duration,
    /// After a shutdown signal, how long messages already delivered to this process may
    /// still be started; what is left after it is given back.
    pub shutdown_grace: Duration,
    /// The database the handler works on, when it has one: while it does not answer, the
    /// consumer takes no messages, and a message whose handling failed while it was away is
    /// held (in progress) and handled again once it is back, without spending one of its
    /// attempts (see the module doc). `None`: failures are retried as they come.
    pub database: Option<DatabaseHealth>,
    /// Where a durable consumer that does not exist yet starts, when its handler names no
    /// position of its own ([`Handler::resume_after`]): a consumer added to a running
    /// system learns the whole log by default. Ignored once the durable consumer exists.
    pub start: StartAt,
    /// Where the consumer records its steps (what it did with each event, for an order's
    /// trace): one statement per batch, after the messages are settled. `None`: no records.
    pub steps: Option<sqlx::PgPool>,
    /// How long a consumer with a backlog may settle nothing before it is called stalled:
    /// logged, and exported as `orderflow_consumer_stalled_seconds`.
    pub stall_after: Duration,
}

/// Where a new durable consumer starts reading the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The first event of the log.
    #[default]
    Beginning,
    /// The event at this global position of the log (1 is the first), once the stream holds
    /// it; the events before it are never delivered.
    Position(i64),
    /// The first event stored in the stream at or after this time.
    Time(chrono::DateTime<Utc>),
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            ack_wait: Duration::from_secs(30),
            batch_size: 256,
            concurrency: 8,
            fetch_wait: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            database: None,
            start: StartAt::Beginning,
            steps: None,
            stall_after: Duration::from_secs(60),
        }
    }
}

impl ConsumerOptions {
    /// The nak delay after attempt `attempt` (1-based).
    pub fn retry_delay(&self, attempt: u64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    /// Deliveries the server makes before it gives up on a message: `max_attempts` plus two
    /// spare ones for a process that died during the last attempt or failed to park.
    pub fn max_deliver(&self) -> u64 {
        self.max_attempts.max(1) + 2
    }

    /// The server-side configuration of the durable consumer of `handler`.
    pub fn consumer_config(&self, bus: &Bus, handler: &dyn Handler) -> pull::Config {
        let max_attempts = self.max_attempts.max(1);
        // 2.9 requires max_deliver > backoff.len(); each entry is the ack wait of one
        // redelivery of a message nobody acked (a crashed or stuck worker).
        let backoff = (1..=max_attempts.min(8))
            .map(|n| self.ack_wait * u32::try_from(n).unwrap_or(1))
            .collect();
        pull::Config {
            durable_name: Some(handler.name().to_string()),
            description: Some(format!("orderflow consumer {}", handler.name())),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: i64::try_from(self.max_deliver()).unwrap_or(i64::MAX),
            backoff,
            filter_subject: bus.events_filter(),
            max_ack_pending: handler.max_ack_pending(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        }
    }
}

/// How often a running consumer notes the position of its ack floor (and whether it stalls).
const FLOOR_EVERY: Duration = Duration::from_secs(2);

/// How often a stalled consumer says so again.
const STALL_NOTE_EVERY: Duration = Duration::from_secs(30);

/// A spawned task, aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a [`Consumer::step`] pull may wait for the server's answer.
const STEP_EXPIRES: Duration = Duration::from_millis(500);

/// How long after a pull's expiry the client stops waiting for the server to end it.
const PULL_MARGIN: Duration = Duration::from_millis(500);

/// The nak delay of a message given back on shutdown: long enough that the stopping
/// process's open pull does not get it back, short enough for another process to take it
/// soon.
const RELEASE_DELAY: Duration = Duration::from_secs(1);

/// What one message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled and acked, with the handler's effects.
    Handled(Vec<String>),
    /// A redrive for another consumer: acked unseen.
    Skipped,
    /// Naked, to come back after the delay.
    Retried {
        /// The delivery count of the failed attempt (1 for the first delivery).
        attempt: u64,
        /// How long until the message is redelivered.
        delay: Duration,
    },
    /// Parked in the DLQ stream and acked.
    DeadLettered {
        /// The delivery count of the last attempt.
        attempt: u64,
        /// The handler's last error.
        error: String,
    },
    /// Still unstarted when the shutdown grace ran out: naked with a delay.
    Released,
}

/// What one [`Consumer::step`] (or a whole drain) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Messages fetched from the stream.
    pub fetched: usize,
    /// Messages handled and acked.
    pub handled: usize,
    /// Redrives meant for another consumer, acked unseen.
    pub skipped: usize,
    /// Messages naked to come back later.
    pub retried: usize,
    /// Messages parked in the DLQ stream.
    pub dead_lettered: usize,
    /// Messages released unstarted at shutdown.
    pub released: usize,
    /// The handlers' effects, one line each.
    pub effects: Vec<String>,
}

impl StepReport {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Handled(effects) => {
                self.handled += 1;
                self.effects.extend(effects);
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Retried { .. } => self.retried += 1,
            Outcome::DeadLettered { .. } => self.dead_lettered += 1,
            Outcome::Released => self.released += 1,
        }
    }

    fn absorb(&mut self, other: StepReport) {
        self.fetched += other.fetched;
        self.handled += other.handled;
        self.skipped += other.skipped;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.released += other.released;
        self.effects.extend(other.effects);
    }
}

/// A handler bound to its durable consumer.
pub struct Consumer {
    handler: Arc<dyn Handler>,
    bus: Bus,
    options: ConsumerOptions,
    /// Replaced when the durable consumer is gone and created again.
    consumer: std::sync::Mutex<PullConsumer>,
    /// The position at the consumer's ack floor as last seen (0: none seen yet): where a
    /// consumer created again resumes.
    handled_floor: AtomicI64,
    lanes: OrderLanes,
    /// The messages delivered to this process and not yet settled (see [`crate::in_hand`]).
    in_hand: Arc<InHand>,
    /// The bus's keep-alive thread, which keeps `in_hand` in progress while this lives.
    keep_alive: Arc<KeepAlive>,
    _kept_alive: Registration,
    pull_size: PullSize,
}

/// A delivered message, read.
enum Prepared {
    /// A redrive addressed to another consumer.
    ForAnother(Message),
    /// A body that is not an event envelope.
    Malformed {
        message: Message,
        attempt: u64,
        error: String,
    },
    /// An event for this consumer.
    Event(Box<ReadEvent>),
}

/// A delivered event with its delivery count, its span (see [Traces](self#traces)) and,
/// when handled alone, its order's lane.
struct ReadEvent {
    message: Message,
    envelope: EventEnvelope,
    attempt: u64,
    lane: Option<Lane>,
    /// A redrive addressed to this consumer.
    redrive: bool,
    /// When this process received it.
    received_at: chrono::DateTime<Utc>,
    span: tracing::Span,
}

impl Consumer {
    /// Creates (or updates) the durable consumer named after the handler and binds to it.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the stream is missing or the consumer cannot be created.
    pub async fn bind(
        handler: Arc<dyn Handler>,
        bus: Bus,
        options: ConsumerOptions,
    ) -> Result<Self, RuntimeError> {
        let stream = bus.stream().await?;
        let mut config = options.consumer_config(&bus, handler.as_ref());
        let resume_after = handler.resume_after().await;
        match stream.consumer_info(handler.name()).await {
            // An update keeps where the consumer started (the server refuses to change it).
            Ok(info) => {
                config.deliver_policy = info.config.deliver_policy;
            }
            Err(error) if is_not_found(&error.to_string()) => {
                if let Some(after) = resume_after.filter(|after| *after > 0) {
                    let sequence = wait_for_position(&bus, handler.name(), after).await?;
                    tracing::info!(
                        consumer = handler.name(),
                        after,
                        sequence,
                        "creating the durable consumer after what it has handled"
                    );
                    config.deliver_policy = DeliverPolicy::ByStartSequence {
                        start_sequence: sequence,
                    };
                } else {
                    config.deliver_policy =
                        first_start(&bus, handler.name(), options.start).await?;
                }
            }
            Err(_) => {}
        }
        let consumer = match stream.create_consumer(config).await {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(consumer = handler.name(), %error,
                    "cannot create or update the durable consumer; using it as it is");
                stream
                    .get_consumer(handler.name())
                    .await
                    .map_err(|e| BusError::js("binding a durable consumer", e))?
            }
        };
        let handled_floor = AtomicI64::new(resume_after.unwrap_or(0).max(0));
        let pull_size = PullSize::new(options.batch_size, options.ack_wait);
        let in_hand = Arc::new(InHand::default());
        let keep_alive = bus.keep_alive();
        let kept_alive = keep_alive.register(Arc::clone(&in_hand), options.ack_wait);
        Ok(Self {
            handler,
            bus,
            options,
            consumer: std::sync::Mutex::new(consumer),
            handled_floor,
            lanes: OrderLanes::default(),
            in_hand,
            keep_alive,
            _kept_alive: kept_alive,
            pull_size,
        })
    }

    /// The durable consumer as it is now.
    fn pull_consumer(&self) -> PullConsumer {
        self.consumer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the consumer's ack floor and remembers its position (for [`Consumer::recover`]);
    /// when the consumer is gone, recovers it. A pull on a consumer that no longer exists
    /// does not fail (nobody answers it, it just expires), so this is how its loss is seen.
    /// Returns the messages not yet delivered to the consumer, when the server said.
    async fn track_floor(&self) -> Option<u64> {
        let info = match self.info().await {
            Ok(info) => info,
            Err(error) => {
                if is_not_found(&error.to_string()) {
                    if let Err(error) = self.recover().await {
                        tracing::debug!(consumer = self.name(), %error, "cannot recover the durable consumer yet");
                    }
                }
                return None;
            }
        };
        let floor = info.ack_floor.stream_sequence;
        if floor == 0 {
            return Some(info.num_pending);
        }
        let Ok(stream) = self.bus.stream().await else {
            return Some(info.num_pending);
        };
        if let Ok(message) = stream.get_raw_message(floor).await {
            if let Some(position) = stream_check::stored_position(&message) {
                if self.handled_floor.fetch_max(position, Ordering::Relaxed) < position {
                    self.handler.note_handled_through(position).await;
                }
            }
        }
        Some(info.num_pending)
    }

    /// How long this process has settled nothing while the consumer has a backlog (messages
    /// not yet delivered, or in this process's hands), once that is `stall_after` or more.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the consumer's info cannot be read.
    pub async fn stalled_for(&self) -> Result<Option<Duration>, RuntimeError> {
        let pending = self.info().await?.num_pending;
        Ok(self.in_hand.stalled_for(pending, self.options.stall_after))
    }

    /// Says whether the consumer is stalled (see [`Consumer::stalled_for`]): the gauge
    /// `orderflow_consumer_stalled_seconds` (0 while it advances), and a warning every
    /// [`STALL_NOTE_EVERY`] while it is, naming what it holds and what waits.
    fn note_stall(&self, pending: u64, last_told: &mut Option<Instant>) {
        let gauge = metrics::gauge!("orderflow_consumer_stalled_seconds",
            "consumer" => self.name().to_string());
        match self.in_hand.stalled_for(pending, self.options.stall_after) {
            Some(idle) => {
                gauge.set(idle.as_secs_f64());
                if last_told.is_none_or(|told| told.elapsed() >= STALL_NOTE_EVERY) {
                    let database_away = self
                        .options
                        .database
                        .as_ref()
                        .is_some_and(DatabaseHealth::is_down);
                    tracing::warn!(
                        consumer = self.name(),
                        stalled_secs = idle.as_secs(),
                        pending,
                        in_hand = self.in_hand.len(),
                        database_away,
                        "the consumer has a backlog and has settled no message for a while"
                    );
                    *last_told = Some(Instant::now());
                }
            }
            None => {
                gauge.set(0.0);
                if last_told.take().is_some() {
                    tracing::info!(consumer = self.name(), "the consumer advances again");
                }
            }
        }
    }

    /// When the durable consumer is gone (deleted, or lost with its stream), creates it again
    /// to resume after the last position it is known to have handled (its ack floor as last
    /// seen, or what the handler's own records say), not at the start of the log. True when
    /// it did; false when the consumer is there (the failure was something else) or cannot
    /// be made yet (the stream is missing or still being repaired by the relay).
    ///
    /// # Errors
    /// [`BusError::JetStream`] when NATS cannot be asked.
    pub async fn recover(&self) -> Result<bool, RuntimeError> {
        let Ok(stream) = self.bus.stream().await else {
            return Ok(false);
        };
        match stream.consumer_info(self.name()).await {
            Ok(_) => return Ok(false),
            Err(error) if !is_not_found(&error.to_string()) => return Ok(false),
            Err(_) => {}
        }
        let after = self
            .handled_floor
            .load(Ordering::Relaxed)
            .max(self.handler.resume_after().await.unwrap_or(0));
        let Some(sequence) = stream_check::resume_sequence(&self.bus, after).await? else {
            tracing::info!(consumer = self.name(), after,
                "the durable consumer is gone and the stream does not hold its position yet; waiting for the relay");
            return Ok(false);
        };
        let mut config = self
            .options
            .consumer_config(&self.bus, self.handler.as_ref());
        config.deliver_policy = DeliverPolicy::ByStartSequence {
            start_sequence: sequence,
        };
        let consumer = match stream.create_consumer(config).await {
            Ok(consumer) => consumer,
            // Another process of the same consumer was quicker.
            Err(_) => stream
                .get_consumer(self.name())
                .await
                .map_err(|e| BusError::js("creating the durable consumer again", e))?,
        };
        *self
            .consumer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = consumer;
        metrics::counter!("orderflow_consumer_recreated_total", "consumer" => self.name().to_string())
            .increment(1);
        tracing::warn!(
            consumer = self.name(),
            after,
            stream_sequence = sequence,
            "the durable consumer was gone; created it again, resuming after what it had handled"
        );
        Ok(true)
    }

    /// The durable consumer's name, which is its handler's name.
    pub fn name(&self) -> &str {
        self.handler.name()
    }

    /// Pulls what is available now (no waiting) and processes it.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the pull fails.
    pub async fn step(&self) -> Result<StepReport, RuntimeError> {
        // Never ask for more than may be in flight: with `max_ack_pending` reached, NATS 2.9
        // may leave a no-wait pull unanswered instead of ending it.
        let in_flight = usize::try_from(self.handler.max_ack_pending())
            .unwrap_or(usize::MAX)
            .max(1);
        let mut batch = self
            .pull_consumer()
            .fetch()
            .max_messages(self.options.batch_size.min(in_flight).max(1))
            .expires(STEP_EXPIRES)
            .messages()
            .await
            .map_err(|e| BusError::js("pulling messages", e))?;
        let mut messages = Vec::new();
        // The server ends the pull at once (or at `STEP_EXPIRES`); the client-side bound
        // guards against an answer that never comes.
        while let Ok(next) = tokio::time::timeout(STEP_EXPIRES * 2, batch.next()).await {
            match next {
                None => break,
                Some(Ok(message)) => {
                    if self.take_in_hand(&message) {
                        messages.push(message);
                    }
                }
                Some(Err(error)) if is_end_of_pull(&error.to_string()) => break,
                Some(Err(error)) => {
                    // What was taken is given back at once, not left to its ack wait.
                    for message in messages {
                        self.release(message).await;
                    }
                    return Err(BusError::js("receiving a message", error).into());
                }
            }
        }
        let mut report = StepReport {
            fetched: messages.len(),
            ..StepReport::default()
        };
        let processing = async {
            if self.handler.batched() {
                self.process_batch(messages).await
            } else {
                futures::stream::iter(messages)
                    .map(|message| self.process(message))
                    .buffer_unordered(self.options.concurrency.max(1))
                    .collect()
                    .await
            }
        };
        let outcomes: Vec<Outcome> = tokio::select! {
            outcomes = processing => outcomes,
            never = self.in_hand.keep_alive(self.options.ack_wait, &self.keep_alive) => match never {},
        };
        for outcome in outcomes {
            report.record(outcome);
        }
        Ok(report)
    }

    /// Steps until the consumer has nothing pending and nothing in flight (naked messages
    /// waiting out their delay count as in flight), and returns what was done.
    ///
    /// # Errors
    /// [`RuntimeError::DrainTimeout`] when that does not happen within `drain_timeout`.
    pub async fn drain(&self) -> Result<StepReport, RuntimeError> {
        let started = Instant::now();
        let mut total = StepReport::default();
        loop {
            let report = self.step().await?;
            let fetched = report.fetched;
            total.absorb(report);
            if fetched > 0 {
                continue;
            }
            let info = self.info().await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return Ok(total);
            }
            if started.elapsed() > self.options.drain_timeout {
                return Err(RuntimeError::DrainTimeout {
                    consumer: self.name().to_string(),
                    waited: started.elapsed(),
                    pending: info.num_pending,
                    ack_pending: info.num_ack_pending,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn info(&self) -> Result<async_nats::jetstream::consumer::Info, RuntimeError> {
        let mut consumer = self.pull_consumer();
        Ok(consumer
            .info()
            .await
            .map_err(|e| BusError::js("reading consumer info", e))?
            .clone())
    }

    /// Runs until `shutdown`, pulling with long polls and handling up to `concurrency`
    /// messages at once, and parks what the server gives up on (see the module doc).
    ///
    /// # Errors
    /// None in practice: pull failures are logged and retried after a pause.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RuntimeError> {
        // Subscribed before the first pull, so no advisory of this run is missed.
        let advisories = match self
            .bus
            .client()
            .subscribe(self.max_deliveries_subject())
            .await
        {
            Ok(subscriber) => Some(subscriber),
            Err(error) => {
                tracing::warn!(consumer = self.name(), %error,
                    "cannot listen to the max-deliveries advisory; parking relies on the last delivery");
                None
            }
        };
        // One inbox for every pull of this run (see `Deliveries`).
        let mut deliveries =
            Deliveries::subscribe(&self.bus, self.name(), &self.in_hand, &self.keep_alive).await?;
        tracing::info!(consumer = self.name(), "consumer running");
        metrics::gauge!("orderflow_consumer_stalled_seconds", "consumer" => self.name().to_string())
            .set(0.0);
        let pulling = async {
            while !shutdown.is_cancelled() {
                if let Some(database) = self.options.database.as_ref().filter(|d| d.is_down()) {
                    tracing::warn!(
                        consumer = self.name(),
                        "the database does not answer; taking no messages until it does"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = database.back_up() => {}
                    }
                    tracing::info!(consumer = self.name(), "the database answers again");
                }
                if let Err(error) = self.pull_and_process(&mut deliveries, &shutdown).await {
                    match self.recover().await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(recovery) => tracing::debug!(consumer = self.name(), %recovery,
                            "cannot check whether the durable consumer is gone"),
                    }
                    tracing::warn!(consumer = self.name(), %error, "pull failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let watching = async {
            if let Some(mut advisories) = advisories {
                // Ends with the pulling: a delivery only exceeds the limit while someone pulls.
                while let Some(advisory) = advisories.next().await {
                    self.park_given_up(&advisory.payload).await;
                }
            }
        };
        let tracking = async {
            let mut stall_told = None;
            loop {
                tokio::time::sleep(FLOOR_EVERY).await;
                if let Some(pending) = self.track_floor().await {
                    self.note_stall(pending, &mut stall_told);
                }
            }
        };
        // The fallback of the keep-alive thread, from a task of its own, so that a long batch
        // cannot delay it.
        let in_hand = Arc::clone(&self.in_hand);
        let keep_alive = Arc::clone(&self.keep_alive);
        let ack_wait = self.options.ack_wait;
        let keeping_alive = AbortOnDrop(tokio::spawn(async move {
            match in_hand.keep_alive(ack_wait, &keep_alive).await {}
        }));
        tokio::select! {
            () = pulling => {}
            () = tracking => {}
            () = watching => {
                tracing::warn!(consumer = self.name(), "the max-deliveries advisory subscription ended");
            }
        }
        drop(keeping_alive);
        tracing::info!(consumer = self.name(), "consumer stopped");
        Ok(())
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`
    fn max_deliveries_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.bus.stream_name(),
            self.name()
        )
    }

    /// Parks the message named by a max-deliveries advisory: the server delivered it
    /// `max_deliver` times without an ack and will not deliver it again.
    async fn park_given_up(&self, advisory: &[u8]) {
        #[derive(serde::Deserialize)]
        struct MaxDeliveries {
            stream_seq: u64,
            deliveries: u64,
        }
        let name = self.name();
        let advisory: MaxDeliveries = match serde_json::from_slice(advisory) {
            Ok(advisory) => advisory,
            Err(error) => {
                tracing::error!(consumer = name, %error, "unreadable max-deliveries advisory");
                return;
            }
        };
        let message = match self.bus.stream().await {
            Ok(stream) => stream
                .get_raw_message(advisory.stream_seq)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(consumer = name, stream_sequence = advisory.stream_seq, %error,
                    "JetStream gave up on a message that cannot be read back to park it");
                return;
            }
        };
        let header = |key: &str| message.headers.get(key).map(|v| v.as_str().to_string());
        if header(REDRIVE_FOR_HEADER).is_some_and(|target| target != name) {
            return;
        }
        let letter = DeadLetter {
            consumer: name.to_string(),
            error: format!(
                "JetStream stopped delivering it after {} deliveries without an ack \
                 (the consumer's max_deliver)",
                advisory.deliveries
            ),
            attempts: advisory.deliveries,
            original_subject: message.subject.to_string(),
            original_stream_sequence: advisory.stream_seq,
            original_message_id: header("Nats-Msg-Id"),
            parked_at: Utc::now(),
            body: String::from_utf8_lossy(&message.payload).into_owned(),
        };
        let event_id = serde_json::from_str::<EventEnvelope>(&letter.body)
            .ok()
            .map(|e| e.event_id);
        match dlq::park(&self.bus, &letter).await {
            Ok(parked) => {
                if let (true, Some(event_id)) = (parked.is_new(), event_id) {
                    self.record_steps(&[NewStep {
                        event_id,
                        attempt: i64::try_from(advisory.deliveries).unwrap_or(i64::MAX),
                        outcome: StepOutcome::DeadLettered,
                        started_at: letter.parked_at,
                        duration_ms: 0,
                        error: Some(letter.error.clone()),
                        effect: None,
                    }])
                    .await;
                }
                if parked.is_new() {
                    count_dead_letter(name, "delivery_limit");
                    tracing::warn!(
                        consumer = name,
                        stream_sequence = advisory.stream_seq,
                        deliveries = advisory.deliveries,
                        "parked a message JetStream gave up on"
                    );
                }
            }
            Err(error) => tracing::error!(consumer = name, stream_sequence = advisory.stream_seq,
                %error, "cannot park a message JetStream gave up on"),
        }
    }

    /// Pulls and handles messages: takes each into hand as soon as it is delivered (from then
    /// on it is kept in progress, see [`crate::in_hand`]) and handles them: a batched handler
    /// a batch at a time, in delivery order, others up to `concurrency` at once, each order's
    /// one after another.
    ///
    /// With one batch in flight (most handlers) this is one pull, of as many messages as fit
    /// one ack wait ([`PullSize`]), and it returns once everything the pull delivered is
    /// settled. A handler with several batches in flight ([`Handler::batches_in_flight`], the
    /// ones that wait on a partner) keeps pulling while its batches run, as long as fewer
    /// than its `max_ack_pending` messages are in hand, and forms each new batch from the
    /// messages of orders that have nothing in flight; it returns on shutdown or when a pull
    /// fails, once what it holds is settled or given back.
    async fn pull_and_process(
        &self,
        deliveries: &mut Deliveries,
        shutdown: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        let batched = self.handler.batched();
        let batches = self.handler.batches_in_flight().max(1);
        let continuous = batched && batches > 1;
        let limit = if batched {
            batches
        } else {
            self.options.concurrency.max(1)
        };
        let cap = usize::try_from(self.handler.max_ack_pending())
            .unwrap_or(usize::MAX)
            .max(1);
        // The messages the open pull may still deliver (`None`: no pull open).
        let mut pull: Option<usize> = None;
        let mut pulled_once = false;
        let (mut rate_since, mut rate_base) = (Instant::now(), self.in_hand.settled_total());
        let mut hold_at_most = (2 * self.options.batch_size).min(cap);
        let mut in_flight: FuturesUnordered<BoxFuture<'_, Vec<String>>> = FuturesUnordered::new();
        // Delivered, in hand, not started yet.
        let mut waiting: VecDeque<Message> = VecDeque::new();
        // The orders with a batch in flight (several batches in flight only).
        let mut busy: HashSet<String> = HashSet::new();
        let mut failure: Option<RuntimeError> = None;
        // A shutdown does not cut the pull short: what it still delivers was delivered to
        // this process and is handled (see the module doc). Past the grace, the rest goes back.
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.options.shutdown_grace).await;
        };
        tokio::pin!(grace_over);
        let mut grace_spent = false;
        // The server ends a pull at `fetch_wait`; an end that never arrives (seen on 2.9
        // under load) must not leave a consumer with a backlog idle, so the client gives the
        // pull up a little after its expiry and pulls again. Whatever the pull given up still
        // delivers reaches the same inbox (`Deliveries`) and is taken in hand all the same.
        let pull_given_up = tokio::time::sleep(self.options.fetch_wait + PULL_MARGIN);
        tokio::pin!(pull_given_up);
        loop {
            let stopping = shutdown.is_cancelled();
            let database_away = self
                .options
                .database
                .as_ref()
                .is_some_and(DatabaseHealth::is_down);
            // Several batches at once pull again only when a batch could start and little is
            // waiting unstarted: what a process holds is what it is working on, not a hoard
            // (each message in hand costs a progress ack per third of an ack wait).
            // And it holds at most what it settles in one ack wait (at least two batches): a
            // slow partner earns many messages in hand, a process short of CPU few.
            if continuous && rate_since.elapsed() >= self.options.ack_wait {
                let settled = self.in_hand.settled_total();
                let per_ack_wait = (settled - rate_base) as f64
                    * self.options.ack_wait.as_secs_f64()
                    / rate_since.elapsed().as_secs_f64();
                hold_at_most = (per_ack_wait as usize).clamp(2 * self.options.batch_size, cap);
                (rate_since, rate_base) = (Instant::now(), settled);
            }
            // Nor more than the keep-alive thread keeps in progress in time (a process short
            // of CPU), beyond one batch.
            let room_to_pull = !continuous
                || (in_flight.len() < limit
                    && waiting.len() < self.options.batch_size
                    && self.in_hand.len() < hold_at_most
                    && (self.in_hand.len() < self.options.batch_size
                        || !self.keep_alive.is_saturated()));
            if pull.is_none()
                && failure.is_none()
                && !stopping
                && !database_away
                && (!pulled_once || continuous)
                && room_to_pull
                && self.in_hand.len() < cap
            {
                let max = if continuous {
                    self.options.batch_size.min(cap - self.in_hand.len())
                } else {
                    self.pull_size.next()
                };
                pulled_once = true;
                let max = max.max(1);
                match deliveries
                    .pull(&self.bus, self.name(), max, self.options.fetch_wait)
                    .await
                {
                    Ok(()) => {
                        pull = Some(max);
                        pull_given_up.as_mut().reset(
                            tokio::time::Instant::now() + self.options.fetch_wait + PULL_MARGIN,
                        );
                    }
                    Err(error) => failure = Some(error.into()),
                }
            }
            while in_flight.len() < limit && !waiting.is_empty() {
                if continuous {
                    let messages =
                        take_free_orders(&mut waiting, &mut busy, self.options.batch_size);
                    if messages.is_empty() {
                        break;
                    }
                    let keys: Vec<String> = messages.iter().map(order_key).collect();
                    in_flight.push(self.process_batch(messages).map(|_| keys).boxed());
                } else if batched {
                    // The batch is what has been delivered by now: one message when the
                    // consumer keeps up, many when it has a backlog.
                    let take = waiting.len().min(self.options.batch_size.max(1));
                    let messages: Vec<Message> = waiting.drain(..take).collect();
                    in_flight.push(self.process_batch(messages).map(|_| Vec::new()).boxed());
                } else if let Some(message) = waiting.pop_front() {
                    in_flight.push(self.process(message).map(|_| Vec::new()).boxed());
                }
            }
            let done_pulling = !continuous || stopping || failure.is_some();
            if pull.is_none() && waiting.is_empty() && in_flight.is_empty() && done_pulling {
                return failure.map_or(Ok(()), Err);
            }
            tokio::select! {
                biased;
                // First, and everything delivered by now at once: a message counts against its
                // ack wait from its delivery, so it is taken in hand (kept in progress) before
                // any batch is polled. Taken whether a pull is open or not: a pull given up
                // may still deliver.
                delivery = deliveries.next(self.bus.jetstream()) => {
                    let mut next = Some(delivery);
                    while let Some(delivery) = next.take() {
                        match self.receive(delivery, &mut waiting) {
                            Received::Message => {
                                pull = pull.and_then(|left| left.checked_sub(1)).filter(|left| *left > 0);
                            }
                            Received::PullEnded => pull = None,
                            Received::Failed(error) => {
                                pull = None;
                                failure = Some(error.into());
                                break;
                            }
                        }
                        next = deliveries.next(self.bus.jetstream()).now_or_never();
                    }
                }
                Some(keys) = in_flight.next(), if !in_flight.is_empty() => {
                    for key in keys {
                        busy.remove(&key);
                    }
                }
                () = &mut pull_given_up, if pull.is_some() && !stopping => {
                    // Nothing is lost with it: whatever it still delivers reaches the same
                    // inbox and is taken in hand.
                    tracing::debug!(consumer = self.name(), "the pull did not end on time; pulling again");
                    pull = None;
                }
                () = &mut grace_over, if !grace_spent => {
                    grace_spent = true;
                    pull = None;
                    while let Some(delivery) = deliveries.next(self.bus.jetstream()).now_or_never() {
                        if !matches!(self.receive(delivery, &mut waiting), Received::Message) {
                            break;
                        }
                    }
                    let mut released = waiting.len();
                    for message in waiting.drain(..) {
                        self.release(message).await;
                    }
                    // A handler that waits on a partner has its batches still running
                    // abandoned (a partner that does not answer must not hold the stop): its
                    // effects are idempotent, and what it held goes back to be done again.
                    // Other handlers finish what they started.
                    if continuous && !in_flight.is_empty() {
                        in_flight = FuturesUnordered::new();
                        busy.clear();
                        for message in self.in_hand.take_all() {
                            self.release(message).await;
                            released += 1;
                        }
                    }
                    if released > 0 {
                        tracing::warn!(consumer = self.name(), released, grace = ?self.options.shutdown_grace,
                            "stopping: gave back the messages not done within the grace");
                    }
                }
                // Nothing to wait for but the chance to pull again (the database away, or as
                // many messages in hand as may be).
                () = tokio::time::sleep(self.options.fetch_wait), if continuous && pull.is_none() => {}
            }
        }
    }

    /// Puts a delivered message in `waiting`, in hand (a redelivery of one in hand is
    /// dropped, see [`Consumer::take_in_hand`]), and says what the delivery was.
    fn receive(&self, delivery: InboxDelivery, waiting: &mut VecDeque<Message>) -> Received {
        match delivery {
            InboxDelivery::Message(message) => {
                if self.take_in_hand(&message) {
                    waiting.push_back(*message);
                }
                Received::Message
            }
            InboxDelivery::InHand(message) => {
                waiting.push_back(*message);
                Received::Message
            }
            InboxDelivery::PullEnded => Received::PullEnded,
            InboxDelivery::Failed(error) => Received::Failed(error),
        }
    }

    /// Takes a delivered message into hand; false for a redelivery of a message this process
    /// holds already, which is dropped: the copy in hand settles it (see [`crate::in_hand`]).
    fn take_in_hand(&self, message: &Message) -> bool {
        if self.in_hand.take(message) {
            return true;
        }
        count_redelivered_in_hand(self.name(), message);
        false
    }

    /// Gives back a message this process will not start (it is stopping): naked with a short
    /// delay, or parked when this was its last allowed delivery.
    async fn release(&self, message: Message) -> Outcome {
        let sequence = stream_sequence(&message);
        let attempt = message
            .info()
            .map(|info| u64::try_from(info.delivered).unwrap_or(1))
            .unwrap_or(1);
        let outcome = if attempt >= self.options.max_deliver() {
            self.park(
                &message,
                attempt,
                "the consumer stopped before handling it on its last allowed delivery".into(),
                "delivery_limit",
            )
            .await
        } else {
            if let Err(error) = message.ack_with(AckKind::Nak(Some(RELEASE_DELAY))).await {
                tracing::warn!(consumer = self.name(), %error, "nak on shutdown failed");
            }
            Outcome::Released
        };
        self.in_hand.settled(sequence);
        count_outcome(self.name(), &outcome);
        outcome
    }

    /// Processes one message to its outcome (acks, naks or parks it). The message is read
    /// and takes its place in its order's lane at once, so messages of one order are handled
    /// in the order `process` was called for them, one at a time; messages of different
    /// orders run concurrently.
    pub fn process(&self, message: Message) -> impl Future<Output = Outcome> + Send + '_ {
        let started = Instant::now();
        let sequence = stream_sequence(&message);
        let prepared = self.prepare(message, true);
        async move {
            let outcome = match prepared {
                Prepared::ForAnother(message) => {
                    self.ack(&message).await;
                    Outcome::Skipped
                }
                Prepared::Malformed {
                    message,
                    attempt,
                    error,
                } => self.park(&message, attempt, error, "malformed").await,
                Prepared::Event(event) => self.handle_event(event).await,
            };
            self.in_hand.settled(sequence);
            // Handled `concurrency` at a time: one message's share of the time is a part of it.
            let concurrency = u32::try_from(self.options.concurrency.max(1)).unwrap_or(u32::MAX);
            self.pull_size.observe(1, started.elapsed() / concurrency);
            count_outcome(self.name(), &outcome);
            metrics::histogram!("orderflow_consumer_message_duration_seconds", "consumer" => self.name().to_string())
                .record(started.elapsed().as_secs_f64());
            outcome
        }
    }

    /// Processes messages delivered together as one batch through [`Handler::handle_batch`]
    /// (for [`Handler::batched`] handlers): one outcome per message, in the same order.
    pub async fn process_batch(&self, messages: Vec<Message>) -> Vec<Outcome> {
        let started = Instant::now();
        let count = messages.len();
        let sequences: Vec<Option<u64>> = messages.iter().map(stream_sequence).collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; count];
        let mut events = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            match self.prepare(message, false) {
                Prepared::ForAnother(message) => {
                    self.ack(&message).await;
                    outcomes[index] = Some(Outcome::Skipped);
                }
                Prepared::Malformed {
                    message,
                    attempt,
                    error,
                } => {
                    outcomes[index] = Some(self.park(&message, attempt, error, "malformed").await);
                }
                Prepared::Event(event) => events.push((index, event)),
            }
        }
        if !events.is_empty() {
            let input: Vec<(EventEnvelope, Delivery)> = events
                .iter()
                .map(|(_, e)| (e.envelope.clone(), Delivery::live(e.attempt)))
                .collect();
            let handling_started = Instant::now();
            let spans: Vec<&tracing::Span> = events.iter().map(|(_, e)| &e.span).collect();
            let results = self
                .riding_out(input, |input| self.run_batch(input, &spans))
                .await;
            let duration = handling_started.elapsed();
            let errors: Vec<Option<String>> = results
                .iter()
                .map(|r| r.as_ref().err().map(ToString::to_string))
                .collect();
            let settled = futures::future::join_all(events.iter().zip(results).map(
                |((_, event), result)| {
                    self.settle(&event.message, event.attempt, result)
                        .instrument(event.span.clone())
                },
            ))
            .await;
            let mut steps = Vec::with_capacity(events.len());
            for (((_, event), error), outcome) in events.iter().zip(errors).zip(&settled) {
                step_records(event, duration, error, outcome, &mut steps);
            }
            self.record_steps(&steps).await;
            for ((index, _), outcome) in events.iter().zip(settled) {
                outcomes[*index] = Some(outcome);
            }
        }
        for sequence in sequences {
            self.in_hand.settled(sequence);
        }
        self.pull_size.observe(count, started.elapsed());
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Skipped))
            .collect();
        for outcome in &outcomes {
            count_outcome(self.name(), outcome);
        }
        metrics::histogram!("orderflow_consumer_batch_duration_seconds", "consumer" => self.name().to_string())
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("orderflow_consumer_batch_size", "consumer" => self.name().to_string())
            .record(count as f64);
        outcomes
    }

    /// Reads a delivered message: whose it is, its attempt, its event; with `in_lane`, the
    /// event also takes its place in its order's lane.
    fn prepare(&self, message: Message, in_lane: bool) -> Prepared {
        let name = self.handler.name();
        let attempt = message
            .info()
            .map(|info| u64::try_from(info.delivered).unwrap_or(1))
            .unwrap_or(1);
        let redrive_target = message
            .headers
            .as_ref()
            .and_then(|h| h.get(REDRIVE_FOR_HEADER))
            .map(|v| v.as_str().to_string());
        if redrive_target
            .as_deref()
            .is_some_and(|target| target != name)
        {
            return Prepared::ForAnother(message);
        }
        let redrive = redrive_target.is_some();
        match serde_json::from_slice::<EventEnvelope>(&message.payload) {
            Ok(mut envelope) => Prepared::Event(Box::new(ReadEvent {
                lane: in_lane.then(|| self.lanes.enter(envelope.order_id)),
                span: message_span(name, &message, &mut envelope, attempt),
                message,
                envelope,
                attempt,
                redrive,
                received_at: Utc::now(),
            })),
            Err(error) => Prepared::Malformed {
                message,
                attempt,
                error: format!("the message body is not an event envelope: {error}"),
            },
        }
    }

    /// Runs the handler on one event once the order's earlier messages are done, then acks,
    /// naks or parks it.
    async fn handle_event(&self, event: Box<ReadEvent>) -> Outcome {
        let ReadEvent {
            message,
            envelope,
            attempt,
            lane,
            redrive,
            received_at,
            span,
        } = *event;
        let event_id = envelope.event_id;
        let handling_started = Instant::now();
        let work = async {
            if let Some(lane) = &lane {
                lane.wait_for_earlier().await;
            }
            let input = vec![(envelope, Delivery::live(attempt))];
            let span = &span;
            self.riding_out(input, |input| async move {
                let mut results = Vec::with_capacity(1);
                for (envelope, delivery) in &input {
                    let handling = tokio::time::timeout(
                        self.options.handler_timeout,
                        self.handler
                            .handle(envelope, *delivery)
                            .instrument(span.clone()),
                    );
                    results.push(handling.await.unwrap_or_else(|_| {
                        Err(HandlerError::retry(format!(
                            "the handler took longer than {:?}",
                            self.options.handler_timeout
                        )))
                    }));
                }
                results
            })
            .await
            .pop()
            .unwrap_or_else(|| Err(HandlerError::retry("the handler answered nothing")))
        };
        let result = work.await;
        drop(lane);
        let duration = handling_started.elapsed();
        let error = result.as_ref().err().map(ToString::to_string);
        let outcome = self
            .settle(&message, attempt, result)
            .instrument(span)
            .await;
        let mut steps = Vec::with_capacity(2);
        let of = StepOf {
            event_id,
            attempt,
            redrive,
            received_at,
        };
        push_steps(of, duration, error, &outcome, &mut steps);
        self.record_steps(&steps).await;
        outcome
    }

    /// Records `steps` when the consumer keeps step records; a failure is logged, never
    /// fatal (the trace misses them, the messages are settled already).
    async fn record_steps(&self, steps: &[NewStep]) {
        let Some(pool) = &self.options.steps else {
            return;
        };
        if let Err(error) = orderflow_store::steps::record(pool, self.name(), steps).await {
            tracing::warn!(consumer = self.name(), %error, steps = steps.len(),
                "cannot record the consumer's steps; the trace will miss them");
        }
    }

    /// Runs the handler on `input` as one batch, bounded by `handler_timeout`: one result per
    /// event, in order.
    /// The batch's span is the child of its message's span when it holds one message (the
    /// usual case while the consumer keeps up), so the handler's own lines join that trace;
    /// a larger batch spans many traces and gets a span of its own, linked to each message's
    /// when spans are exported.
    async fn run_batch(
        &self,
        input: Vec<(EventEnvelope, Delivery)>,
        spans: &[&tracing::Span],
    ) -> Vec<Result<Effects, HandlerError>> {
        let span = match spans {
            [one] => tracing::info_span!(parent: *one, "handle_batch",
                consumer = self.name(), events = input.len()),
            many => {
                let span = tracing::info_span!(parent: None, "handle_batch",
                    consumer = self.name(), events = input.len());
                for message in many {
                    orderflow_trace::link(&span, message);
                }
                span
            }
        };
        let handling = tokio::time::timeout(
            self.options.handler_timeout,
            self.handler.handle_batch(&input).instrument(span),
        );
        let failed = |error: String| {
            input
                .iter()
                .map(|_| Err(HandlerError::retry(&error)))
                .collect()
        };
        match handling.await {
            Ok(results) if results.len() == input.len() => results,
            Ok(results) => failed(format!(
                "the handler answered {} results for {} events",
                results.len(),
                input.len()
            )),
            Err(_) => failed(format!(
                "the handler took longer than {:?}",
                self.options.handler_timeout
            )),
        }
    }

    /// Runs `handle` on `input` (one result per event, in order); when some failed with a
    /// retry and the database was found away meanwhile (a slow handler asks for a probe) or
    /// is away now, waits until it is back (at most `handler_timeout` in all) and runs
    /// `handle` again on those, as the same attempt. See the module doc.
    async fn riding_out<F, Fut>(
        &self,
        input: Vec<(EventEnvelope, Delivery)>,
        handle: F,
    ) -> Vec<Result<Effects, HandlerError>>
    where
        F: Fn(Vec<(EventEnvelope, Delivery)>) -> Fut,
        Fut: Future<Output = Vec<Result<Effects, HandlerError>>>,
    {
        let Some(database) = &self.options.database else {
            return handle(input).await;
        };
        let started = Instant::now();
        let (mut results, mut away) = database.watch(handle(input.clone())).await;
        loop {
            let failed: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, result)| matches!(result, Err(HandlerError::Retry(_))))
                .map(|(index, _)| index)
                .collect();
            if failed.is_empty() || (!away && database.check().await) {
                return results;
            }
            tracing::warn!(
                consumer = self.name(),
                messages = failed.len(),
                "the database went away; holding the messages until it answers"
            );
            let patience = self
                .options
                .handler_timeout
                .saturating_sub(started.elapsed());
            if tokio::time::timeout(patience, database.back_up())
                .await
                .is_err()
            {
                return results;
            }
            tracing::info!(
                consumer = self.name(),
                messages = failed.len(),
                "the database answers; handling the held messages again"
            );
            let again = failed.iter().map(|&index| input[index].clone()).collect();
            let retried;
            (retried, away) = database.watch(handle(again)).await;
            for (index, result) in failed.into_iter().zip(retried) {
                results[index] = result;
            }
            if started.elapsed() >= self.options.handler_timeout {
                return results;
            }
        }
    }

    /// Acks, naks or parks a handled message according to the handler's result.
    async fn settle(
        &self,
        message: &Message,
        attempt: u64,
        result: Result<Effects, HandlerError>,
    ) -> Outcome {
        let name = self.handler.name();
        match result {
            Ok(effects) => {
                self.ack(message).await;
                if effects.is_empty() {
                    tracing::debug!(target: CONSUMED_TARGET, consumer = name, attempt,
                        "message handled, nothing to do");
                } else {
                    tracing::info!(target: CONSUMED_TARGET, consumer = name, attempt,
                        effects = ?effects.0, "message handled");
                }
                Outcome::Handled(effects.0)
            }
            Err(HandlerError::Retry(error)) if attempt < self.options.max_attempts => {
                let delay = self.options.retry_delay(attempt);
                tracing::info!(consumer = name, attempt, ?delay, %error, "retrying later");
                if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(consumer = name, error = %e, "nak failed");
                }
                Outcome::Retried { attempt, delay }
            }
            Err(HandlerError::Retry(error) | HandlerError::GiveUp(error)) => {
                let reason = if attempt >= self.options.max_attempts {
                    "failed"
                } else {
                    "gave_up"
                };
                self.park(message, attempt, error, reason).await
            }
        }
    }

    /// Parks `message` in the dead-letter stream and acks it; when parking fails, naks it to
    /// come back later (on its last allowed delivery the advisory watcher parks it instead).
    async fn park(&self, message: &Message, attempt: u64, error: String, reason: &str) -> Outcome {
        let name = self.handler.name();
        let letter = DeadLetter {
            consumer: name.to_string(),
            error: error.clone(),
            attempts: attempt,
            original_subject: message.subject.to_string(),
            original_stream_sequence: message.info().map(|i| i.stream_sequence).unwrap_or(0),
            original_message_id: message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string()),
            parked_at: Utc::now(),
            body: String::from_utf8_lossy(&message.payload).into_owned(),
        };
        match dlq::park(&self.bus, &letter).await {
            Ok(parked) => {
                if parked.is_new() {
                    count_dead_letter(name, reason);
                }
                tracing::warn!(consumer = name, attempt, %error, "parked in the DLQ");
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(consumer = name, error = %e, "ack after parking failed");
                }
                Outcome::DeadLettered { attempt, error }
            }
            Err(park_error) => {
                let delay = self.options.retry_delay(attempt);
                tracing::error!(consumer = name, %park_error, "cannot park; retrying later");
                if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(consumer = name, error = %e, "nak failed");
                }
                Outcome::Retried { attempt, delay }
            }
        }
    }

    /// Acks and waits for the server to confirm, so the next pull already sees the slot
    /// free (matters for `max_ack_pending = 1`) and a lost ack is logged, not guessed.
    async fn ack(&self, message: &Message) {
        if let Err(error) = message.double_ack().await {
            tracing::warn!(consumer = self.name(), %error, "ack failed; the message will come back");
        }
    }
}

/// The log target of the one line each consumer writes per message it handled, inside the
/// message's span: the consumers' access log. "message handled" with the effects at info when
/// the handler did something, "nothing to do" at debug when it did not (an event the consumer
/// ignores, a repeat), which keeps the volume to what happened: about a dozen lines per order
/// for the six consumers. Retries and dead letters have lines of their own.
/// `RUST_LOG=info,orderflow_bus::consumed=warn` turns it off.
pub const CONSUMED_TARGET: &str = "orderflow_bus::consumed";

/// The span `consumer` handles one delivered event in: a child of the trace context the
/// message carries (its `traceparent` header, else the event's stored one), else the root of
/// a trace of its own. While the handler runs, the envelope's `traceparent` names this span,
/// so the commands the handler issues (`CommandMetadata::caused_by`) continue the trace
/// below it. A disabled span leaves the envelope as it was.
fn message_span(
    consumer: &str,
    message: &Message,
    envelope: &mut EventEnvelope,
    attempt: u64,
) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "handle", consumer,
        order_id = %envelope.order_id, event = %envelope.event_type,
        position = envelope.position.unwrap_or_default(), attempt);
    let carried = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(crate::relay::TRACEPARENT_HEADER))
        .and_then(|value| orderflow_trace::TraceContext::parse(value.as_str()))
        .or_else(|| envelope.metadata.trace());
    if let Some(parent) = carried {
        orderflow_trace::set_parent(&span, parent);
    }
    if let Some(own) = orderflow_trace::context_of(&span) {
        envelope.metadata.set_trace(own);
    }
    span
}

/// Which delivery a step record is about.
struct StepOf {
    event_id: uuid::Uuid,
    attempt: u64,
    redrive: bool,
    received_at: chrono::DateTime<Utc>,
}

/// The longest effect or error text a step record keeps.
const STEP_TEXT_LIMIT: usize = 1000;

/// The step records of one handled delivery of `event`.
fn step_records(
    event: &ReadEvent,
    duration: Duration,
    error: Option<String>,
    outcome: &Outcome,
    steps: &mut Vec<NewStep>,
) {
    let of = StepOf {
        event_id: event.envelope.event_id,
        attempt: event.attempt,
        redrive: event.redrive,
        received_at: event.received_at,
    };
    push_steps(of, duration, error, outcome, steps);
}

/// Pushes the step records of one delivery: a `redriven` step first for the first delivery of
/// a redrive, then the attempt's own (none for an outcome that is no step, such as a
/// release on stop).
fn push_steps(
    of: StepOf,
    duration: Duration,
    error: Option<String>,
    outcome: &Outcome,
    steps: &mut Vec<NewStep>,
) {
    let attempt = i64::try_from(of.attempt).unwrap_or(i64::MAX);
    let (outcome, error, effect) = match outcome {
        Outcome::Handled(effects) => (
            StepOutcome::Handled,
            None,
            (!effects.is_empty()).then(|| effects.join("; ")),
        ),
        Outcome::Retried { .. } => (StepOutcome::Retrying, error, None),
        Outcome::DeadLettered { error, .. } => {
            (StepOutcome::DeadLettered, Some(error.clone()), None)
        }
        Outcome::Skipped | Outcome::Released => return,
    };
    if of.redrive && of.attempt <= 1 {
        steps.push(NewStep {
            event_id: of.event_id,
            attempt: 0,
            outcome: StepOutcome::Redriven,
            started_at: of.received_at,
            duration_ms: 0,
            error: None,
            effect: None,
        });
    }
    steps.push(NewStep {
        event_id: of.event_id,
        attempt,
        outcome,
        started_at: of.received_at,
        duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
        error: error.map(clip),
        effect: effect.map(clip),
    });
}

/// `text`, cut to [`STEP_TEXT_LIMIT`] bytes (on a character boundary) with an ellipsis.
fn clip(text: String) -> String {
    if text.len() <= STEP_TEXT_LIMIT {
        return text;
    }
    let mut end = STEP_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Counts one message's outcome in `orderflow_consumer_messages_total`.
fn count_outcome(consumer: &str, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Handled(_) => "handled",
        Outcome::Skipped => "skipped",
        Outcome::Retried { .. } => "retried",
        Outcome::DeadLettered { .. } => "dead_lettered",
        Outcome::Released => "released",
    };
    metrics::counter!("orderflow_consumer_messages_total",
        "consumer" => consumer.to_string(), "outcome" => label)
    .increment(1);
}

/// Counts one newly parked message in `orderflow_dead_letters_total`; `reason` is `failed`
/// (retries spent), `gave_up` (the handler said it never works), `malformed` or
/// `delivery_limit` (parked on or after the server's last delivery).
fn count_dead_letter(consumer: &str, reason: &str) {
    metrics::counter!("orderflow_dead_letters_total",
        "consumer" => consumer.to_string(), "reason" => reason.to_string())
    .increment(1);
}

/// The server ends a pull with 404 (no messages), 408 (expired) or 409 (for example max ack
/// pending reached); none of them is a failure.
/// How long [`Consumer::bind`] waits for the stream to hold the position a consumer created
/// anew resumes after (a relay is repairing the stream) before it gives up.
const RESUME_WAIT: Duration = Duration::from_secs(120);

/// The stream sequence after `after`, once the stream holds it.
async fn wait_for_position(bus: &Bus, consumer: &str, after: i64) -> Result<u64, RuntimeError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        if let Some(sequence) = stream_check::resume_sequence(bus, after).await? {
            return Ok(sequence);
        }
        if started.elapsed() > RESUME_WAIT {
            return Err(BusError::JetStream {
                operation: "creating the durable consumer",
                reason: format!(
                    "the stream does not hold position {after}, where {consumer} resumes, \
                     after {RESUME_WAIT:?}: is a relay running?"
                ),
            }
            .into());
        }
        if !told {
            tracing::info!(
                consumer,
                after,
                "waiting for the stream to hold the position this consumer resumes after"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The deliver policy of a durable consumer created for the first time, from where it is
/// told to start.
async fn first_start(
    bus: &Bus,
    consumer: &str,
    start: StartAt,
) -> Result<DeliverPolicy, RuntimeError> {
    Ok(match start {
        StartAt::Beginning => DeliverPolicy::All,
        StartAt::Position(position) if position <= 1 => DeliverPolicy::All,
        StartAt::Position(position) => {
            let sequence = wait_for_position(bus, consumer, position - 1).await?;
            tracing::info!(
                consumer,
                position,
                sequence,
                "creating the durable consumer at a position"
            );
            DeliverPolicy::ByStartSequence {
                start_sequence: sequence,
            }
        }
        StartAt::Time(at) => {
            let nanos = i128::from(at.timestamp()) * 1_000_000_000
                + i128::from(at.timestamp_subsec_nanos());
            let start_time =
                time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|error| {
                    BusError::JetStream {
                        operation: "creating the durable consumer",
                        reason: format!("start time {at} is out of range: {error}"),
                    }
                })?;
            tracing::info!(consumer, %at, "creating the durable consumer at a time");
            DeliverPolicy::ByStartTime { start_time }
        }
    })
}

/// A redelivery of a message in hand, dropped: counted and noted.
pub(crate) fn count_redelivered_in_hand(consumer: &str, message: &Message) {
    metrics::counter!("orderflow_consumer_redelivered_in_hand_total",
        "consumer" => consumer.to_string())
    .increment(1);
    tracing::debug!(
        consumer,
        stream_sequence = stream_sequence(message),
        "a redelivery of a message in hand: left to the copy in hand"
    );
}

/// JetStream's API subjects (the default domain, which is what [`Bus`] uses).
const JS_API: &str = "$JS.API";

/// The inbox every pull of a running consumer delivers to, for the whole run.
///
/// A pull with an inbox of its own loses what the server delivers after the client stops
/// listening: when a busy process gives up a pull whose end it has not seen yet (the server
/// got the request late, or its end is still unread), the messages still on their way are
/// delivered to nobody and come back only after their ack wait. Measured under a 10 % CPU
/// cap: five consumers gave up their first pull at once and 269 deliveries were lost that
/// way. With one inbox for the whole run, everything delivered reaches the consumer,
/// whichever pull it answers.
///
/// The inbox is subscribed on the keep-alive thread's connection, which takes each delivery
/// in hand as it arrives (`crate::keep_alive`); while that thread cannot, on the bus's own.
struct Deliveries {
    inbox: String,
    intake: Intake,
}

/// Where a consumer's deliveries come from.
enum Intake {
    /// The keep-alive thread, which has taken them in hand.
    Thread(tokio::sync::mpsc::UnboundedReceiver<InboxDelivery>),
    /// A subscription of the bus's own connection.
    Direct(async_nats::Subscriber),
}

/// What a delivery was, once received ([`Consumer::receive`]).
enum Received {
    /// A message of the stream (in `waiting` now, unless it was a redelivery in hand).
    Message,
    /// A pull ended.
    PullEnded,
    /// The subscription ended, or the server answered with an error.
    Failed(BusError),
}

/// What came to the inbox.
#[derive(Debug)]
pub(crate) enum InboxDelivery {
    /// A message of the stream, not yet in hand.
    Message(Box<Message>),
    /// A message of the stream the keep-alive thread has taken in hand.
    InHand(Box<Message>),
    /// A pull ended (its expiry, no messages, or a limit the server names).
    PullEnded,
    /// The subscription ended, or the server answered with an error.
    Failed(BusError),
}

impl Deliveries {
    async fn subscribe(
        bus: &Bus,
        consumer: &str,
        in_hand: &Arc<InHand>,
        keep_alive: &KeepAlive,
    ) -> Result<Self, BusError> {
        if let Some(intake) = keep_alive
            .intake(consumer, Arc::clone(in_hand), bus.jetstream().clone())
            .await
        {
            return Ok(Self {
                inbox: intake.inbox,
                intake: Intake::Thread(intake.deliveries),
            });
        }
        tracing::warn!(
            consumer,
            "the keep-alive thread cannot receive for this consumer; receiving on the bus's connection"
        );
        let inbox = bus.client().new_inbox();
        let subscriber = bus
            .client()
            .subscribe(inbox.clone())
            .await
            .map_err(|e| BusError::js("subscribing to the pull inbox", e))?;
        Ok(Self {
            inbox,
            intake: Intake::Direct(subscriber),
        })
    }

    /// Asks the server for up to `max` messages of `consumer`, waiting up to `expires`.
    async fn pull(
        &self,
        bus: &Bus,
        consumer: &str,
        max: usize,
        expires: Duration,
    ) -> Result<(), BusError> {
        let subject = format!(
            "{JS_API}.CONSUMER.MSG.NEXT.{}.{consumer}",
            bus.stream_name()
        );
        let request = serde_json::json!({
            "batch": max,
            "expires": u64::try_from(expires.as_nanos()).unwrap_or(u64::MAX),
        });
        bus.client()
            .publish_with_reply(subject, self.inbox.clone(), request.to_string().into())
            .await
            .map_err(|e| BusError::js("pulling messages", e))
    }

    /// The next delivery; pending until one comes.
    async fn next(&mut self, context: &async_nats::jetstream::Context) -> InboxDelivery {
        let ended = || {
            InboxDelivery::Failed(BusError::js(
                "receiving a message",
                "the pull inbox's subscription ended",
            ))
        };
        match &mut self.intake {
            Intake::Thread(deliveries) => deliveries.recv().await.unwrap_or_else(ended),
            Intake::Direct(subscriber) => loop {
                let Some(message) = subscriber.next().await else {
                    return ended();
                };
                if let Some(delivery) = InboxDelivery::read(message, context) {
                    return delivery;
                }
            },
        }
    }
}

impl InboxDelivery {
    /// What one inbox message is; `None` for an idle heartbeat.
    pub(crate) fn read(
        message: async_nats::Message,
        context: &async_nats::jetstream::Context,
    ) -> Option<InboxDelivery> {
        use async_nats::StatusCode;
        match message.status {
            None | Some(StatusCode::OK) => Some(InboxDelivery::Message(Box::new(Message {
                message,
                context: context.clone(),
            }))),
            Some(StatusCode::IDLE_HEARTBEAT) => None,
            Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND | StatusCode::REQUEST_TERMINATED) => {
                Some(InboxDelivery::PullEnded)
            }
            Some(status) => Some(InboxDelivery::Failed(BusError::js(
                "receiving a message",
                format!(
                    "{status}: {}",
                    message.description.as_deref().unwrap_or("no description")
                ),
            ))),
        }
    }
}

/// The order a message is about: its subject without the event type
/// (`<prefix>.<order_id>`).
fn order_key(message: &Message) -> String {
    let subject = message.subject.as_str();
    subject
        .rsplit_once('.')
        .map_or(subject, |(order, _)| order)
        .to_string()
}

/// Takes from `waiting`, in delivery order, up to `largest` messages of orders that have
/// nothing in flight (`busy`), one per order, and marks their orders busy; the others stay,
/// in order, for a later batch.
fn take_free_orders(
    waiting: &mut VecDeque<Message>,
    busy: &mut HashSet<String>,
    largest: usize,
) -> Vec<Message> {
    let mut taken = Vec::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    for message in waiting.drain(..) {
        if taken.len() < largest.max(1) && busy.insert(order_key(&message)) {
            taken.push(message);
        } else {
            kept.push_back(message);
        }
    }
    *waiting = kept;
    taken
}

/// True for JetStream's "consumer not found" / "stream not found" answers.
fn is_not_found(error: &str) -> bool {
    error.contains("not found") || error.contains("10014") || error.contains("10059")
}

fn is_end_of_pull(error: &str) -> bool {
    ["404", "408", "409"]
        .iter()
        .any(|code| error.contains(code))
}

/// Binds `handler` to its durable consumer and runs it until `shutdown`.
///
/// # Errors
/// As [`Consumer::bind`].
pub async fn run_consumer(
    handler: Arc<dyn Handler>,
    bus: Bus,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    // Binding may wait for the relay to repair the stream (a consumer created anew resumes
    // after its recorded position): a stop meanwhile ends it, with nothing taken yet.
    let consumer = tokio::select! {
        bound = Consumer::bind(handler, bus, options) => bound?,
        () = shutdown.cancelled() => return Ok(()),
    };
    consumer.run(shutdown).await
}

/// The lag of one durable consumer, for `GET /v1/admin/consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    /// The durable consumer's name.
    pub name: String,
    /// False when the durable consumer does not exist (never started).
    pub exists: bool,
    /// Messages in the stream not yet delivered to it.
    pub pending: u64,
    /// Delivered, not acked yet (in hand, or naked and waiting to come back).
    pub ack_pending: u64,
    /// Messages delivered more than once and not acked yet.
    pub redelivered: u64,
    /// The global position of the event at the consumer's ack floor: every event up to it
    /// was handled (or parked). `None` before the first ack.
    pub last_handled_position: Option<i64>,
}

/// The lag of each named consumer (in the order given).
///
/// # Errors
/// [`BusError::JetStream`] when the stream cannot be read.
pub async fn consumer_info(bus: &Bus, names: &[&str]) -> Result<Vec<ConsumerLag>, RuntimeError> {
    let stream = bus.stream().await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let info = match stream.consumer_info(*name).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(consumer = name, %error, "no consumer info");
                out.push(ConsumerLag {
                    name: (*name).to_string(),
                    exists: false,
                    pending: 0,
                    ack_pending: 0,
                    redelivered: 0,
                    last_handled_position: None,
                });
                continue;
            }
        };
        let floor = info.ack_floor.stream_sequence;
        let last_handled_position = if floor == 0 {
            None
        } else {
            match stream.get_raw_message(floor).await {
                Ok(message) => serde_json::from_slice::<EventEnvelope>(&message.payload)
                    .ok()
                    .and_then(|e| e.position),
                Err(_) => None,
            }
        };
        out.push(ConsumerLag {
            name: (*name).to_string(),
            exists: true,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            last_handled_position,
        });
    }
    Ok(out)
}

/// The names of every durable consumer on the main stream.
///
/// # Errors
/// [`BusError::JetStream`] when the stream cannot be read.
pub async fn consumer_names(bus: &Bus) -> Result<Vec<String>, RuntimeError> {
    let stream = bus.stream().await?;
    let mut names = stream.consumer_names();
    let mut out = Vec::new();
    while let Some(name) = names.next().await {
        out.push(name.map_err(|e| BusError::js("listing consumers", e))?);
    }
    out.sort();
    Ok(out)
}
