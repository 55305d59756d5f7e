//! The stream checked against the store, and repaired from it.
//!
//! PostgreSQL is the source of truth; JetStream only carries the log. A broker can lose what
//! it acknowledged (a wiped store folder, an older snapshot restored, a stream or messages
//! deleted by hand, a crash before its lazy fsync), and then the stream no longer holds every
//! event the relay's checkpoint says it published. Every published message carries its global
//! position in the [`POSITION_HEADER`], so the stream can be compared with the log position by
//! position:
//!
//! - [`repair_tail`] is the relay's cheap check (at start, after a failed round, every
//!   `check_every`, and at once when the broker changed under it): the stream must exist and
//!   hold the relay's checkpoint. When it is gone, empty or behind, both streams are created
//!   again with the configured settings and the missing tail is re-published from the store;
//!   a stream that keeps everything must also start at position 1 and hold as many messages
//!   as the checkpoint says, else it is compared with the log in full and its holes filled.
//! - `StreamWatch` is how the relay sees that the broker changed under it between checks,
//!   which no failed publish need tell: its client connected again (a broker that came back,
//!   perhaps with an empty or older store, its streams perhaps created again by another
//!   process before the relay's next publish), or a look at the stream's state (one request
//!   every fallback tick) shows what its own publishes do not explain (the stream gone or
//!   created again, its last sequence back, its first message gone or fewer messages in a
//!   stream that keeps everything).
//! - [`verify`] is the full comparison of `orderflow verify stream`: every position of the log
//!   up to the checkpoint once in the stream, no position twice, none the log does not have.
//!   [`repair`] re-publishes the missing positions and deletes the extra copies.
//! - [`resume_sequence`] is where a durable consumer created anew resumes: the first message
//!   after the last position it handled.
//!
//! Re-published messages keep `Nats-Msg-Id: <order_id>:<sequence>`. When the server still
//! remembers that id (the message was deleted inside its duplicate window) it would drop the
//! re-publish as a duplicate, so those are published once more under a repair id
//! (`<order_id>:<sequence>:repair`); the consumers' inboxes, keyed by event id, make any copy
//! harmless. Redrives of dead letters (which carry [`REDRIVE_FOR_HEADER`]) are not part of
//! the log's copy and are left out of every count.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{self, Stream};
use futures::StreamExt;
use orderflow_store::{log, EventEnvelope};
use serde::Serialize;
use sqlx::PgPool;

use crate::connection::{Bus, BusError};
use crate::dlq::REDRIVE_FOR_HEADER;
use crate::relay::{self, publish_events_with, MessageIds, RelayError};

/// The header carrying an event's global position in the log.
pub const POSITION_HEADER: &str = "Orderflow-Position";

/// How many messages back from the end of the stream [`last_position`] looks for one that
/// carries a position (redrives do not).
const TAIL_SCAN: u64 = 256;

/// Events read from the store per re-publish batch.
const REPUBLISH_BATCH: i64 = 500;

/// The position a stored message carries: its [`POSITION_HEADER`], or for messages published
/// before the header existed, the envelope's. `None` for a redrive and for a message that is
/// not an event.
pub(crate) fn stored_position(message: &StreamMessage) -> Option<i64> {
    if message.headers.get(REDRIVE_FOR_HEADER).is_some() {
        return None;
    }
    match message.headers.get(POSITION_HEADER) {
        Some(value) => value.as_str().parse().ok(),
        None => serde_json::from_slice::<EventEnvelope>(&message.payload)
            .ok()
            .and_then(|envelope| envelope.position),
    }
}

/// The main stream with its state now, or `None` when JetStream says it does not exist.
async fn main_stream(bus: &Bus) -> Result<Option<(Stream, stream::State)>, BusError> {
    let Some(mut stream) = bus.find_stream(bus.stream_name()).await? else {
        return Ok(None);
    };
    let state = stream
        .info()
        .await
        .map_err(|e| BusError::js("reading the event stream's state", e))?
        .state
        .clone();
    Ok(Some((stream, state)))
}

/// The highest position among the last messages of the main stream (0 for an empty stream),
/// or `None` when the stream does not exist.
///
/// # Errors
/// [`BusError::JetStream`] when the stream cannot be read (NATS away).
pub async fn last_position(bus: &Bus) -> Result<Option<i64>, BusError> {
    let Some((stream, state)) = main_stream(bus).await? else {
        return Ok(None);
    };
    Ok(Some(highest_position(&stream, &state).await?))
}

/// The highest position among the last messages of the stream as `state` saw it (0 when it
/// was empty); messages published after `state` was read are not looked at.
async fn highest_position(stream: &Stream, state: &stream::State) -> Result<i64, BusError> {
    if state.messages == 0 {
        return Ok(0);
    }
    let floor = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(TAIL_SCAN));
    let (mut highest, mut read) = (None, 0);
    for sequence in (floor..=state.last_sequence).rev() {
        // A deleted message leaves a hole in the sequence: look further back.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if let Some(position) = stored_position(&message) {
                highest = Some(highest.unwrap_or(0).max(position));
                read += 1;
                if read == 16 {
                    break;
                }
            }
        }
    }
    // A stream with messages of which none could be read is not an empty one: re-publishing
    // the whole log on a read failure would only add copies.
    highest.ok_or_else(|| BusError::JetStream {
        operation: "reading the last messages of the event stream",
        reason: format!(
            "none of the last {} messages carries a position",
            state.last_sequence - floor + 1
        ),
    })
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// The streams did not exist and were created again.
    pub recreated: bool,
    /// The positions re-published, as inclusive ranges.
    pub republished_ranges: Vec<(i64, i64)>,
    /// Messages re-published.
    pub republished: u64,
    /// Extra copies of a position deleted from the stream.
    pub duplicates_deleted: u64,
    /// The stream sequences of messages without a position deleted (`orderflow verify
    /// stream --repair` only; the relay leaves them to the consumers, which park them).
    pub unreadable_deleted: Vec<u64>,
}

impl Repair {
    /// True when the repair changed nothing.
    pub fn is_empty(&self) -> bool {
        !self.recreated
            && self.republished == 0
            && self.duplicates_deleted == 0
            && self.unreadable_deleted.is_empty()
    }

    fn count(&self) {
        metrics::counter!("orderflow_stream_repairs_total").increment(1);
        metrics::counter!("orderflow_stream_republished_total").increment(self.republished);
    }
}

/// Creates both streams when the main or the dead-letter stream is missing. True when it did.
async fn recreate_if_missing(bus: &Bus) -> Result<bool, BusError> {
    if bus.find_stream(bus.stream_name()).await?.is_some()
        && bus.find_stream(&bus.dlq_stream_name()).await?.is_some()
    {
        return Ok(false);
    }
    bus.ensure_streams().await?;
    Ok(true)
}

/// The relay's check: makes sure both streams exist and the main one holds every position up
/// to `checkpoint` at its end; re-publishes the missing tail from the store when it does not.
/// Logs one warning naming the range repaired.
///
/// # Errors
/// [`RelayError::Bus`] when NATS is away, a database error when the store cannot be read.
pub async fn repair_tail(pool: &PgPool, bus: &Bus, checkpoint: i64) -> Result<Repair, RelayError> {
    let mut repair = Repair {
        recreated: recreate_if_missing(bus).await?,
        ..Repair::default()
    };
    let held = last_position(bus).await?.unwrap_or(0);
    if held < checkpoint {
        tracing::warn!(
            stream = bus.stream_name(),
            from = held + 1,
            to = checkpoint,
            recreated = repair.recreated,
            "the stream lost events the store has; re-publishing them from the store"
        );
        repair.republished += republish(pool, bus, held, checkpoint, false).await?;
        repair.republished_ranges.push((held + 1, checkpoint));
    } else if repair.recreated {
        tracing::warn!(
            stream = bus.stream_name(),
            "the streams were missing and were created again"
        );
    }
    // Holes before the end: a stream that keeps everything (no `max_age`) starts at position
    // 1 and holds at least `checkpoint` messages. When it does not, read it in full and fill
    // what it lacks (rare, so the full read is affordable).
    if bus.options().max_age.is_none() && checkpoint > 0 && lacks_earlier(bus, checkpoint).await? {
        tracing::warn!(
            stream = bus.stream_name(),
            "the stream lacks events before its end; comparing it with the log in full"
        );
        let (full, _) = repair_in_full(pool, bus).await?;
        repair.republished += full.republished;
        repair.republished_ranges.extend(full.republished_ranges);
        repair.duplicates_deleted += full.duplicates_deleted;
    }
    if !repair.is_empty() {
        repair.count();
    }
    Ok(repair)
}

/// What the relay's lock holder knows of the main stream between two of its checks, to notice
/// at once that the stream changed in a way its own publishes do not explain, instead of at
/// the next periodic check: a broker that came back (the client connected again) with an
/// empty, older or wiped store, the stream created again, messages deleted or purged by hand.
/// When the client connected to a new server, another process (every orderflow role creates
/// the streams at its start) may have created the stream before the relay's next publish, and
/// then no publish fails: only such a look tells.
#[derive(Debug)]
pub(crate) struct StreamWatch {
    /// The client's connection count when the last check began.
    connects: u64,
    /// The stream as the last check left it.
    seen: Option<Seen>,
}

/// The main stream's state after a check, and what the relay stored in it since.
#[derive(Debug, Clone, Copy)]
struct Seen {
    created: time::OffsetDateTime,
    first_sequence: u64,
    last_sequence: u64,
    messages: u64,
    /// Messages the relay stored in the stream since.
    published: u64,
}

impl StreamWatch {
    /// A watch that has seen nothing yet: the first check sets it.
    pub(crate) fn new(bus: &Bus) -> Self {
        Self {
            connects: connects(bus),
            seen: None,
        }
    }

    /// To be called right before a check: a reconnection during the check is then seen
    /// after it.
    pub(crate) fn checking(&mut self, bus: &Bus) {
        self.connects = connects(bus);
        self.seen = None;
    }

    /// To be called after a check that succeeded: the stream as it left it is what later
    /// looks compare with. A stream that cannot be read now is compared with nothing until
    /// the next check (the reconnection count still is).
    pub(crate) async fn checked(&mut self, bus: &Bus) {
        self.seen = match main_stream_info(bus).await {
            Ok(Some(info)) => Some(Seen {
                created: info.created,
                first_sequence: info.state.first_sequence,
                last_sequence: info.state.last_sequence,
                messages: info.state.messages,
                published: 0,
            }),
            Ok(None) | Err(_) => None,
        };
    }

    /// Counts messages the relay stored in the stream (its publishes' acks, duplicates left
    /// out).
    pub(crate) fn published(&mut self, stored: u64) {
        if let Some(seen) = &mut self.seen {
            seen.published += stored;
        }
    }

    /// True when the client connected again since the last check began (no request).
    pub(crate) fn reconnected(&self, bus: &Bus) -> bool {
        connects(bus) != self.connects
    }

    /// Why the stream must be checked now, from one look at its state (one request): it is
    /// gone, it was created again, its last sequence went back, or, for a stream that keeps
    /// everything (no `max_age`), its first sequence moved or it holds fewer messages than
    /// the last check left plus what the relay stored since. `None` when nothing changed
    /// that way, or when NATS does not answer (the relay's next publish tells then).
    pub(crate) async fn moved(&self, bus: &Bus) -> Option<&'static str> {
        let seen = self.seen?;
        let info = match main_stream_info(bus).await {
            Ok(Some(info)) => info,
            Ok(None) => return Some("the event stream is gone"),
            Err(error) => {
                tracing::debug!(%error, "cannot look at the event stream's state");
                return None;
            }
        };
        let state = &info.state;
        if info.created != seen.created {
            return Some("the event stream was created again");
        }
        if state.last_sequence < seen.last_sequence {
            return Some("the event stream's last sequence went back");
        }
        if bus.options().max_age.is_none() {
            // An empty stream's first sequence moves with its first message.
            if seen.messages > 0 && state.first_sequence != seen.first_sequence {
                return Some("the event stream's first message is gone");
            }
            if state.messages < seen.messages + seen.published {
                return Some("the event stream holds fewer messages than were stored in it");
            }
        }
        None
    }
}

/// How many times the client has connected to a server (the first time included).
pub(crate) fn connects(bus: &Bus) -> u64 {
    bus.client()
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The main stream's info (config, creation time, state), or `None` when it does not exist.
async fn main_stream_info(bus: &Bus) -> Result<Option<stream::Info>, BusError> {
    let Some(mut stream) = bus.find_stream(bus.stream_name()).await? else {
        return Ok(None);
    };
    Ok(Some(
        stream
            .info()
            .await
            .map_err(|e| BusError::js("reading the event stream's state", e))?
            .clone(),
    ))
}

/// True when the stream starts after position 1 or holds fewer messages than `checkpoint`.
async fn lacks_earlier(bus: &Bus, checkpoint: i64) -> Result<bool, BusError> {
    let Some((stream, state)) = main_stream(bus).await? else {
        return Ok(true);
    };
    if state.messages < u64::try_from(checkpoint).unwrap_or(0) {
        return Ok(true);
    }
    let last = state.last_sequence.min(state.first_sequence + TAIL_SCAN);
    for sequence in state.first_sequence..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if let Some(position) = stored_position(&message) {
                return Ok(position > 1);
            }
        }
    }
    Ok(false)
}

/// Re-publishes the events with `after < position <= until` with their own message id; when
/// `known_missing` (a full read of the stream showed they are not there), those the server
/// still takes for duplicates go once more under a repair id. Without it a duplicate answer
/// means the stream has the message. Returns how many messages the stream stored.
async fn republish(
    pool: &PgPool,
    bus: &Bus,
    after: i64,
    until: i64,
    known_missing: bool,
) -> Result<u64, RelayError> {
    let mut stored = 0;
    let mut cursor = after;
    while cursor < until {
        let events = log::events_after(pool, cursor, Some(until), REPUBLISH_BATCH).await?;
        let Some(last) = events.last().and_then(|e| e.position) else {
            break;
        };
        let (summary, refused) = publish_events_with(bus, &events, MessageIds::Own).await?;
        stored += summary.published;
        if known_missing && !refused.is_empty() {
            let (again, _) = publish_events_with(bus, &refused, MessageIds::Repair).await?;
            stored += again.published;
        }
        cursor = last;
    }
    Ok(stored)
}

/// What `orderflow verify stream` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The main stream's name.
    pub stream: String,
    /// False when the main stream does not exist.
    pub stream_exists: bool,
    /// Events in the store.
    pub stored_events: i64,
    /// The highest position numbered in the store.
    pub head_position: i64,
    /// The last position the relay published (its checkpoint).
    pub checkpoint: i64,
    /// Event messages in the stream (redrives left out).
    pub stream_events: u64,
    /// Redrives of dead letters in the stream, not counted as events.
    pub redrives: u64,
    /// The lowest and highest position in the stream.
    pub first_position: Option<i64>,
    /// The highest position in the stream.
    pub last_position: Option<i64>,
    /// Positions up to the checkpoint the stream does not hold, as inclusive ranges.
    pub missing: Vec<(i64, i64)>,
    /// Positions the stream holds more than once, with how many copies.
    pub duplicates: BTreeMap<i64, u64>,
    /// Positions in the stream beyond the store's head (a stream of another database?).
    pub unknown: Vec<i64>,
    /// Messages that carry no readable position.
    pub unreadable: u64,
    /// The stream sequences of those messages (the first 100).
    pub unreadable_sequences: Vec<u64>,
}

impl Verification {
    /// True when the stream holds every position up to the checkpoint exactly once and
    /// nothing else.
    pub fn agrees(&self) -> bool {
        self.stream_exists
            && self.missing.is_empty()
            && self.duplicates.is_empty()
            && self.unknown.is_empty()
            && self.unreadable == 0
    }

    /// Positions missing from the stream, counted.
    pub fn missing_count(&self) -> i64 {
        self.missing.iter().map(|(from, to)| to - from + 1).sum()
    }
}

/// Every position the stream holds, with the stream sequences holding it.
struct StreamPositions {
    by_position: BTreeMap<i64, Vec<u64>>,
    redrives: u64,
    /// The stream sequences of messages without a readable position.
    unreadable: Vec<u64>,
}

/// Reads the position of every message of the main stream (headers only; the body only for
/// messages published before the position header existed).
async fn read_positions(bus: &Bus) -> Result<Option<StreamPositions>, BusError> {
    let Some((stream, state)) = main_stream(bus).await? else {
        return Ok(None);
    };
    let mut positions = StreamPositions {
        by_position: BTreeMap::new(),
        redrives: 0,
        unreadable: Vec::new(),
    };
    if state.messages == 0 {
        return Ok(Some(positions));
    }
    let reader = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            headers_only: true,
            inactive_threshold: Duration::from_secs(60),
            description: Some("orderflow verify stream".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::js("creating a stream reader", e))?;
    let mut seen = 0u64;
    let mut idle_rounds = 0;
    while seen < state.messages && idle_rounds < 3 {
        let mut batch = reader
            .batch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| BusError::js("reading the stream", e))?;
        let before = seen;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| BusError::js("reading the stream", e))?;
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            seen += 1;
            if sequence > state.last_sequence {
                continue;
            }
            let headers = message.headers.clone().unwrap_or_default();
            if headers.get(REDRIVE_FOR_HEADER).is_some() {
                positions.redrives += 1;
                continue;
            }
            let position = match headers.get(POSITION_HEADER) {
                Some(value) => value.as_str().parse().ok(),
                None => match stream.get_raw_message(sequence).await {
                    Ok(message) => stored_position(&message),
                    Err(_) => None,
                },
            };
            match position {
                Some(position) => positions
                    .by_position
                    .entry(position)
                    .or_default()
                    .push(sequence),
                None => positions.unreadable.push(sequence),
            }
        }
        idle_rounds = if seen == before { idle_rounds + 1 } else { 0 };
    }
    let _ = stream.delete_consumer(&reader.cached_info().name).await;
    Ok(Some(positions))
}

/// Compares the store's log with the main stream position by position.
///
/// # Errors
/// [`RelayError::Bus`] when NATS is away, a database error when the store cannot be read.
pub async fn verify(pool: &PgPool, bus: &Bus) -> Result<Verification, RelayError> {
    Ok(compare(pool, bus).await?.0)
}

async fn compare(
    pool: &PgPool,
    bus: &Bus,
) -> Result<(Verification, Option<StreamPositions>), RelayError> {
    let checkpoint = relay::checkpoint(pool, bus.stream_name()).await?;
    let head_position = log::head_position(pool).await?;
    let stored_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let positions = read_positions(bus).await?;
    let mut verification = Verification {
        stream: bus.stream_name().to_string(),
        stream_exists: positions.is_some(),
        stored_events,
        head_position,
        checkpoint,
        ..Verification::default()
    };
    let Some(found) = &positions else {
        if checkpoint > 0 {
            verification.missing.push((1, checkpoint));
        }
        return Ok((verification, positions));
    };
    verification.redrives = found.redrives;
    verification.unreadable = found.unreadable.len() as u64;
    verification.unreadable_sequences = found.unreadable.iter().take(100).copied().collect();
    verification.stream_events = found.by_position.values().map(|s| s.len() as u64).sum();
    verification.first_position = found.by_position.keys().next().copied();
    verification.last_position = found.by_position.keys().next_back().copied();
    let mut expected = 1;
    for (&position, sequences) in &found.by_position {
        if position > head_position {
            verification.unknown.push(position);
            continue;
        }
        if sequences.len() > 1 {
            verification
                .duplicates
                .insert(position, sequences.len() as u64);
        }
        if position > expected && expected <= checkpoint {
            verification
                .missing
                .push((expected, (position - 1).min(checkpoint)));
        }
        expected = expected.max(position + 1);
    }
    if expected <= checkpoint {
        verification.missing.push((expected, checkpoint));
    }
    Ok((verification, positions))
}

/// Makes the stream agree with the log: creates missing streams, re-publishes every position
/// up to the checkpoint the stream lacks (holes and tail alike), deletes the later copies
/// of a position held twice, and deletes messages that carry no position (no event: a
/// message published by hand, say). Returns what it did and the verification after it.
///
/// # Errors
/// [`RelayError::Bus`] when NATS is away, a database error when the store cannot be read.
pub async fn repair(pool: &PgPool, bus: &Bus) -> Result<(Repair, Verification), RelayError> {
    let checkpoint = relay::checkpoint(pool, bus.stream_name()).await?;
    let mut repair = repair_tail(pool, bus, checkpoint).await?;
    let (full, after) = repair_in_full(pool, bus).await?;
    if !full.is_empty() {
        full.count();
    }
    repair.republished += full.republished;
    repair.republished_ranges.extend(full.republished_ranges);
    repair.duplicates_deleted += full.duplicates_deleted;
    if after.unreadable == 0 {
        return Ok((repair, after));
    }
    let stream = bus.stream().await?;
    let unreadable = read_positions(bus)
        .await?
        .map(|positions| positions.unreadable)
        .unwrap_or_default();
    for sequence in unreadable {
        tracing::warn!(
            stream = bus.stream_name(),
            sequence,
            "deleting a message that carries no position"
        );
        stream
            .delete_message(sequence)
            .await
            .map_err(|e| BusError::js("deleting a message without a position", e))?;
        repair.unreadable_deleted.push(sequence);
    }
    Ok((repair, verify(pool, bus).await?))
}

/// The full comparison and its repair, without the tail check first; counting it in the
/// metrics is the caller's.
async fn repair_in_full(pool: &PgPool, bus: &Bus) -> Result<(Repair, Verification), RelayError> {
    let mut repair = Repair {
        recreated: recreate_if_missing(bus).await?,
        ..Repair::default()
    };
    let (before, positions) = compare(pool, bus).await?;
    for &(from, to) in &before.missing {
        tracing::warn!(
            stream = bus.stream_name(),
            from,
            to,
            "re-publishing positions the stream lacks"
        );
        repair.republished += republish(pool, bus, from - 1, to, true).await?;
        repair.republished_ranges.push((from, to));
    }
    if let Some(positions) = positions {
        let stream = bus.stream().await?;
        for sequences in positions.by_position.values().filter(|s| s.len() > 1) {
            for &sequence in &sequences[1..] {
                stream
                    .delete_message(sequence)
                    .await
                    .map_err(|e| BusError::js("deleting a duplicate message", e))?;
                repair.duplicates_deleted += 1;
            }
        }
    }
    let after = verify(pool, bus).await?;
    Ok((repair, after))
}

/// Where a consumer that has handled every position up to `after` resumes in the stream as it
/// is now: the sequence of the first message with a later position, the sequence after the
/// last message when the stream ends at `after`, or `None` when the stream does not hold
/// `after` yet (the relay is still repairing it: ask again later). `after == 0` starts at the
/// beginning.
///
/// The answer comes from one look at the stream's state: a message the relay publishes while
/// it is worked out lies after the state's last sequence, so the answer is at or before it
/// and the consumer gets it. (Reading where the stream ends after reading what it holds would
/// start the consumer past an event published in between, which it would never get.)
///
/// Positions grow with the sequence, apart from redrives and re-published holes; the search
/// relies on that. One exception is looked for: a stream whose first event message is already
/// past `after` (a stream emptied or created again, to which the relay published new events
/// before it re-published the old ones behind them) is resumed at its first message, so
/// those new events are not skipped; what the consumer had handled comes again and changes
/// nothing (inbox, checkpoint).
///
/// # Errors
/// [`BusError::JetStream`] when the stream cannot be read.
pub async fn resume_sequence(bus: &Bus, after: i64) -> Result<Option<u64>, BusError> {
    let Some((stream, state)) = main_stream(bus).await? else {
        return Ok(None);
    };
    let first = state.first_sequence.max(1);
    if after <= 0 {
        return Ok(Some(first));
    }
    let held = highest_position(&stream, &state).await?;
    if held < after {
        return Ok(None);
    }
    // The position of the first event message at or after a sequence (holes and redrives
    // carry none), which grows with the sequence; past the state's end, "infinitely far".
    let position_from = |sequence: u64| {
        let stream = stream.clone();
        async move {
            for probe in sequence..=state.last_sequence {
                if let Ok(message) = stream.get_raw_message(probe).await {
                    if let Some(position) = stored_position(&message) {
                        return position;
                    }
                }
            }
            i64::MAX
        }
    };
    if position_from(first).await > after {
        return Ok(Some(first));
    }
    if held == after {
        return Ok(Some(state.last_sequence + 1));
    }
    let (mut low, mut high) = (first, state.last_sequence + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        if position_from(middle).await > after {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(Some(low))
}
