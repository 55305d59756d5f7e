//! The relay: publishes every committed event, in commit order, from the PostgreSQL event log
//! to the JetStream stream, resuming from a durable checkpoint.
//!
//! One relay publishes at a time: it holds a PostgreSQL advisory lock on a connection of its
//! own; the others stand by, try the lock every `standby_poll`, and take over when the holder
//! dies (its session ends, so its lock goes). The holder numbers new events
//! ([`log::assign_positions`]), reads them after its checkpoint, publishes a batch pipelined
//! (all sends first, then the acks awaited in order), and only then stores the checkpoint. A
//! crash between publish and checkpoint re-publishes the batch; `Nats-Msg-Id:
//! <order_id>:<sequence>` makes the server drop those duplicates inside its duplicate window.
//! It wakes on `NOTIFY orderflow_events` (sent at commit) and on a fallback tick, which also
//! catches rows that waited for an older transaction to end. After a round that published
//! more than one event, it waits `gather` before the next one, so that under load the commits
//! of a few milliseconds go out in one round (three statements per round, whatever its size)
//! instead of one round each, while a lone event on a quiet system goes out at once. The lock holder alone writes the checkpoint, so it keeps it in memory
//! between rounds.
//!
//! With the checkpoint, in the same statement, it notes when each batch went out (one row
//! per batch of positions, for an order's trace), and while it holds the lock it removes
//! trace records older than the retention in the background
//! ([`orderflow_store::steps::remove_expired`]).
//!
//! The relay also keeps the stream whole: when it takes the lock, after every failed round and
//! every `check_every`, it checks that the stream still holds its checkpoint and re-publishes
//! from the store what the broker lost ([`crate::stream_check`]). It checks at once, not at the
//! next `check_every`, when the broker changed under it: before it publishes anything after
//! its client connected again, and when its look at the stream's state (every
//! `fallback_tick`) shows a change its own publishes do not explain. A broker that came back
//! with its streams created again but empty (another process created them first) fails no
//! publish, so only these tell. A batch whose acks are still awaited when the client
//! connects again fails at once instead of waiting out the request timeout for acks that a
//! lost server will never send.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use orderflow_store::{log, steps, EventEnvelope, StoreError};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::connection::{Bus, BusError};
use crate::stream_check::{self, repair_tail, StreamWatch, POSITION_HEADER};

/// The advisory lock key every relay of one database competes for ("orderflo" in ASCII).
pub const RELAY_LOCK_KEY: i64 = 0x6f72_6465_7266_6c6f;

/// The header carrying the event's correlation id (the request that set it in motion).
pub const CORRELATION_HEADER: &str = "Orderflow-Correlation-Id";

/// The header carrying the W3C trace context the event was stored in (its metadata's
/// `traceparent`); consumers handle the message in a child span of it. Events stored before
/// trace context existed are published without it.
pub const TRACEPARENT_HEADER: &str = orderflow_trace::TRACEPARENT;

/// The NOTIFY channel the event store signals on commit.
pub const EVENTS_CHANNEL: &str = "orderflow_events";

/// How long an order's trace (step records, publication rows) is kept by default: 30 days.
pub const DEFAULT_TRACE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often the lock holder removes expired trace records.
const TRACE_CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// Rows one statement of the trace cleanup removes.
const TRACE_CLEANUP_BATCH: i64 = 5_000;

/// How often a publish waiting for its acks looks whether the client connected again.
const RECONNECT_POLL: Duration = Duration::from_millis(100);

/// Why the relay stopped or a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the event log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A PostgreSQL query failed (taking the lock, listening for commits, numbering positions).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Publishing to NATS failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Another relay holds the lock; only one relay publishes at a time.
    #[error("another relay holds the relay lock")]
    LockHeld,
    /// An event could not be turned into JSON for publishing.
    #[error("event {message_id} cannot be serialized: {source}")]
    Serialize {
        /// The `Nats-Msg-Id` the event would have been published with.
        message_id: String,
        /// Why serialization failed.
        #[source]
        source: serde_json::Error,
    },
}

/// How the relay works. `Default` suits production.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Events numbered, read and published per round trip.
    pub batch_size: i64,
    /// Longest wait without a notification before looking anyway.
    pub fallback_tick: Duration,
    /// How often a standby relay tries to take the lock.
    pub standby_poll: Duration,
    /// Pause after a failed round (NATS or PostgreSQL away) before trying again.
    pub retry_delay: Duration,
    /// After a round that published more than one event, how long to let commits gather
    /// before the next round: fewer, larger rounds under load, at most this much added
    /// latency.
    pub gather: Duration,
    /// How often the lock holder checks that the stream still holds its checkpoint and
    /// repairs it from the store when not. It also checks when it takes the lock, after every
    /// failed round, when its client connected again, and when a look at the stream's state
    /// (every `fallback_tick`) shows a change its publishes do not explain.
    pub check_every: Duration,
    /// How long step records and publication rows (an order's trace) are kept; the lock
    /// holder removes older ones in the background.
    pub trace_retention: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            fallback_tick: Duration::from_secs(1),
            standby_poll: Duration::from_secs(1),
            retry_delay: Duration::from_secs(1),
            gather: Duration::from_millis(5),
            check_every: Duration::from_secs(30),
            trace_retention: DEFAULT_TRACE_RETENTION,
        }
    }
}

/// What one publish call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Messages the stream accepted.
    pub published: u64,
    /// Messages the server dropped as duplicates (`Nats-Msg-Id` seen in its window).
    pub duplicates: u64,
    /// The position of the last event published (0 when none).
    pub last_position: i64,
}

/// Runs the relay until `shutdown`: stands by until it holds the relay lock, then publishes
/// every new event. Failed rounds are logged and retried after `retry_delay` (with the lock
/// given up, so a healthier relay may take over).
///
/// # Errors
/// [`RelayError::Bus`] when the streams cannot be created at start.
pub async fn run_relay(
    pool: PgPool,
    bus: Bus,
    options: RelayOptions,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    bus.ensure_streams().await?;
    while !shutdown.is_cancelled() {
        match lead(&pool, &bus, &options, &shutdown).await {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(%error, "relay round failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(options.retry_delay) => {}
                }
            }
        }
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Waits for the lock, then publishes until shutdown or an error.
async fn lead(
    pool: &PgPool,
    bus: &Bus,
    options: &RelayOptions,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let mut lock = pool.acquire().await?.detach();
    loop {
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut lock)
            .await?;
        if held {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(options.standby_poll) => {}
        }
    }
    tracing::info!(
        stream = bus.stream_name(),
        "relay holds the lock and publishes"
    );
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    let mut position = checkpoint(&mut lock, bus.stream_name()).await?;
    // At start and after a failed round (a missing stream fails the round): the stream must
    // hold what the checkpoint says was published.
    let mut watch = StreamWatch::new(bus);
    check_stream(pool, bus, position, &mut watch, None).await?;
    let mut check = tokio::time::interval(options.check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    // A look at the stream's state every fallback tick: a change the relay's own publishes
    // do not explain is checked at once, not at the next periodic check.
    let mut look = tokio::time::interval(options.fallback_tick);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    look.tick().await;
    // The trace cleanup runs beside the publishing, on the pool, while this relay leads.
    let publishing = async {
        loop {
            // Connected again (to a server that came back, perhaps with an empty or older
            // store, its streams perhaps created again by another process): the stream is
            // checked before anything more is published to it.
            if watch.reconnected(bus) {
                let reason = "the connection to NATS was made again";
                check_stream(pool, bus, position, &mut watch, Some(reason)).await?;
            }
            let summary = publish_from(&mut lock, bus, options.batch_size, &mut position).await?;
            watch.published(summary.published);
            if summary.published + summary.duplicates > 0 {
                tracing::debug!(?summary, "relay round");
            }
            // More than one event in a round means commits come close together: let the next
            // ones gather. A lone event (a quiet system) goes out without that wait.
            if summary.published + summary.duplicates > 1 {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(options.gather) => {}
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = listener.recv() => {
                    notification?;
                    while listener.next_buffered().is_some() {}
                }
                () = tokio::time::sleep(options.fallback_tick) => {}
                _ = check.tick() => {
                    check_stream(pool, bus, position, &mut watch, None).await?;
                }
                _ = look.tick() => {
                    if let Some(reason) = watch.moved(bus).await {
                        check_stream(pool, bus, position, &mut watch, Some(reason)).await?;
                    }
                }
            }
        }
    };
    tokio::select! {
        result = publishing => result,
        () = clean_traces(pool, options.trace_retention) => Ok(()),
    }
}

/// Checks that the stream holds every position up to `position` and repairs it from the
/// store when not ([`repair_tail`]); `reason` says why it is checked out of turn. What the
/// check leaves is what `watch` compares with afterwards.
async fn check_stream(
    pool: &PgPool,
    bus: &Bus,
    position: i64,
    watch: &mut StreamWatch,
    reason: Option<&'static str>,
) -> Result<(), RelayError> {
    if let Some(reason) = reason {
        tracing::warn!(
            stream = bus.stream_name(),
            reason,
            "checking the event stream against the log now"
        );
    }
    watch.checking(bus);
    repair_tail(pool, bus, position).await?;
    watch.checked(bus).await;
    Ok(())
}

/// Removes expired trace records now and every [`TRACE_CLEANUP_EVERY`]; never returns.
async fn clean_traces(pool: &PgPool, retention: Duration) {
    let mut every = tokio::time::interval(TRACE_CLEANUP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            continue;
        };
        let before = chrono::Utc::now() - retention;
        match steps::remove_expired(pool, before, TRACE_CLEANUP_BATCH).await {
            Ok(removed) if removed.steps + removed.publications > 0 => {
                tracing::info!(
                    steps = removed.steps,
                    publications = removed.publications,
                    %before,
                    "removed expired trace records"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "removing expired trace records failed"),
        }
    }
}

/// Publishes everything new once, as the relay would, and returns: for tests and for an
/// operator's one-shot run. Takes the relay lock for the duration.
///
/// # Errors
/// [`RelayError::LockHeld`] when a running relay holds the lock; otherwise as
/// [`publish_new`].
pub async fn relay_once(
    pool: &PgPool,
    bus: &Bus,
    batch_size: i64,
) -> Result<PublishSummary, RelayError> {
    let mut lock = pool.acquire().await?.detach();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK_KEY)
        .fetch_one(&mut lock)
        .await?;
    if !held {
        return Err(RelayError::LockHeld);
    }
    let result = publish_new(&mut lock, bus, batch_size).await;
    // Closing the session releases the lock.
    let _ = sqlx::Connection::close(lock).await;
    result
}

/// Numbers, reads, publishes and checkpoints until nothing new is left. Runs on the
/// connection that holds the relay lock; callers without the lock must not use it.
///
/// # Errors
/// A database or publish error; the checkpoint then stays at the last fully acked batch.
pub async fn publish_new(
    lock: &mut PgConnection,
    bus: &Bus,
    batch_size: i64,
) -> Result<PublishSummary, RelayError> {
    let mut position = checkpoint(&mut *lock, bus.stream_name()).await?;
    let mut total = PublishSummary::default();
    loop {
        let round = publish_from(lock, bus, batch_size, &mut position).await?;
        if round.published + round.duplicates == 0 {
            return Ok(total);
        }
        total.published += round.published;
        total.duplicates += round.duplicates;
        total.last_position = round.last_position;
    }
}

/// One round of the lock holder: numbers, reads, publishes and checkpoints the events after
/// `position` in batches, moving `position` along, until a batch comes back short (what
/// commits meanwhile wakes the relay again).
async fn publish_from(
    lock: &mut PgConnection,
    bus: &Bus,
    batch_size: i64,
    position: &mut i64,
) -> Result<PublishSummary, RelayError> {
    let mut total = PublishSummary::default();
    loop {
        log::assign_positions(&mut *lock, batch_size).await?;
        let events = log::events_after(&mut *lock, *position, None, batch_size).await?;
        if events.is_empty() {
            break;
        }
        let short = i64::try_from(events.len()).unwrap_or(i64::MAX) < batch_size;
        let summary = publish_events(bus, &events).await?;
        let first = events
            .first()
            .and_then(|e| e.position)
            .unwrap_or(*position + 1);
        *position = summary.last_position;
        // The checkpoint and when this batch went out (for traces), in one statement.
        steps::note_published(&mut *lock, bus.stream_name(), first, *position).await?;
        metrics::counter!("orderflow_relay_published_total").increment(summary.published);
        metrics::counter!("orderflow_relay_duplicates_total").increment(summary.duplicates);
        #[allow(clippy::cast_precision_loss)] // positions stay far below 2^52
        metrics::gauge!("orderflow_relay_position").set(*position as f64);
        total.published += summary.published;
        total.duplicates += summary.duplicates;
        total.last_position = *position;
        if short {
            break;
        }
    }
    Ok(total)
}

/// Publishes `events` pipelined: every send first, then every ack in order. Each message goes
/// to `<prefix>.<order_id>.<EventType>` with `Nats-Msg-Id: <order_id>:<sequence>`, its global
/// position in [`POSITION_HEADER`], and the JSON envelope as body.
///
/// # Errors
/// [`RelayError::Bus`] when a send or an ack fails (some of the batch may be stored: publish
/// it again, the duplicates are dropped by the server inside its window).
pub async fn publish_events(
    bus: &Bus,
    events: &[EventEnvelope],
) -> Result<PublishSummary, RelayError> {
    Ok(publish_events_with(bus, events, MessageIds::Own).await?.0)
}

/// Which `Nats-Msg-Id` a publish gives its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageIds {
    /// `<order_id>:<sequence>`: the server drops a second publish inside its window.
    Own,
    /// `<order_id>:<sequence>:repair`: for re-publishing a message known to be missing whose
    /// own id the server still remembers.
    Repair,
}

/// As [`publish_events`], with the message ids chosen; also returns the events the server
/// dropped as duplicates.
///
/// # Errors
/// As [`publish_events`].
pub async fn publish_events_with(
    bus: &Bus,
    events: &[EventEnvelope],
    ids: MessageIds,
) -> Result<(PublishSummary, Vec<EventEnvelope>), RelayError> {
    let connects = stream_check::connects(bus);
    let mut acks = Vec::with_capacity(events.len());
    for event in events {
        let message_id = match ids {
            MessageIds::Own => event.message_id(),
            MessageIds::Repair => format!("{}:repair", event.message_id()),
        };
        let body = serde_json::to_vec(event).map_err(|source| RelayError::Serialize {
            message_id: message_id.clone(),
            source,
        })?;
        let mut publish = PublishMessage::build()
            .payload(body.into())
            .message_id(&message_id);
        if let Some(position) = event.position {
            publish = publish.header(POSITION_HEADER, position.to_string().as_str());
        }
        if let Some(correlation) = event
            .metadata
            .correlation_id
            .as_ref()
            .filter(|c| c.len() <= 200 && c.chars().all(|ch| ch.is_ascii_graphic()))
        {
            publish = publish.header(CORRELATION_HEADER, correlation.as_str());
        }
        if let Some(trace) = event.metadata.trace() {
            publish = publish.header(TRACEPARENT_HEADER, trace.to_string().as_str());
        }
        let ack = bus
            .jetstream()
            .send_publish(event.subject(bus.prefix()), publish)
            .await
            .map_err(|e| BusError::js("publishing an event", e))?;
        acks.push(ack);
    }
    let mut summary = PublishSummary::default();
    let mut duplicates = Vec::new();
    // A message sent to a server the client has since lost gets no ack: its wait would last
    // the whole request timeout. Once the client has connected again, the batch fails at once
    // (published again, it is deduplicated by its message id).
    let reconnected = connected_again(bus, connects);
    tokio::pin!(reconnected);
    for (ack, event) in acks.into_iter().zip(events) {
        let ack = tokio::select! {
            biased;
            ack = ack.into_future() => ack.map_err(|e| BusError::js("awaiting a publish ack", e))?,
            () = &mut reconnected => {
                return Err(BusError::JetStream {
                    operation: "awaiting a publish ack",
                    reason: "the connection to NATS was made again; the ack of a message sent \
                             before may never come"
                        .into(),
                }
                .into());
            }
        };
        if ack.duplicate {
            summary.duplicates += 1;
            duplicates.push(event.clone());
        } else {
            summary.published += 1;
        }
    }
    summary.last_position = events.last().and_then(|e| e.position).unwrap_or(0);
    Ok((summary, duplicates))
}

/// Returns once the client has connected to a server more than `connects` times.
async fn connected_again(bus: &Bus, connects: u64) {
    while stream_check::connects(bus) == connects {
        tokio::time::sleep(RECONNECT_POLL).await;
    }
}

/// Re-publishes the numbered events with `after < position <= until` from the store, for
/// when JetStream lost acknowledged messages (a machine crash) or a stream was recreated.
/// Inside the duplicate window the server drops what it still has; past it, consumers see
/// duplicates and their inboxes absorb them. Leaves the checkpoint alone.
///
/// # Errors
/// A database or publish error.
pub async fn publish_range(
    pool: &PgPool,
    bus: &Bus,
    after: i64,
    until: Option<i64>,
    batch_size: i64,
) -> Result<PublishSummary, RelayError> {
    let mut total = PublishSummary::default();
    let mut cursor = after;
    loop {
        let events = log::events_after(pool, cursor, until, batch_size).await?;
        if events.is_empty() {
            break;
        }
        let summary = publish_events(bus, &events).await?;
        cursor = summary.last_position;
        total.published += summary.published;
        total.duplicates += summary.duplicates;
        total.last_position = cursor;
    }
    Ok(total)
}

/// How far the relay is behind the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RelayStatus {
    /// The last position published to the stream.
    pub checkpoint: i64,
    /// The highest position numbered so far.
    pub head_position: i64,
    /// Events committed but not numbered yet.
    pub unnumbered: i64,
}

impl RelayStatus {
    /// Events stored but not yet published.
    pub fn behind(&self) -> i64 {
        (self.head_position - self.checkpoint).max(0) + self.unnumbered
    }
}

/// The relay's lag for `stream`, for `GET /v1/admin/consumers` and `/metrics`.
///
/// # Errors
/// The database error.
pub async fn relay_status(pool: &PgPool, stream: &str) -> Result<RelayStatus, sqlx::Error> {
    Ok(RelayStatus {
        checkpoint: checkpoint(pool, stream).await?,
        head_position: log::head_position(pool).await?,
        unnumbered: log::unnumbered_count(pool).await?,
    })
}

/// The last position published to `stream` (0 before the first publish).
///
/// # Errors
/// The database error.
pub async fn checkpoint<'e>(
    db: impl sqlx::PgExecutor<'e>,
    stream: &str,
) -> Result<i64, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE stream = $1")
            .bind(stream)
            .fetch_optional(db)
            .await?;
    Ok(position.unwrap_or(0))
}
