//! An order's full trace, for `orderflow trace` and `GET /v1/admin/orders/{id}/trace`: the
//! request that placed it, each event (stored, published), what every consumer did with it
//! (the step records of `orderflow_store::steps`), and the events each one caused. It is
//! assembled here from the event log, the step records and the relay's publication rows, so
//! the CLI and the route show the same facts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use orderflow_store::steps::{self, StepOutcome, StepRecord};
use orderflow_store::{log, EventEnvelope, StoreError};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consumers::consumer_names;

/// Why a trace could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading the event log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the step records or publication rows failed.
    #[error("reading the trace records: {0}")]
    Database(#[from] sqlx::Error),
}

/// An order's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderTrace {
    /// The order.
    pub order_id: Uuid,
    /// The request id that placed the order (the first event's correlation id).
    pub request_id: Option<String>,
    /// Its events, by sequence.
    pub events: Vec<TracedEvent>,
}

/// One event of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TracedEvent {
    /// The event's number within its order, from 1.
    pub sequence: i64,
    /// Its global position in the log; `null` until the relay numbered it.
    pub position: Option<i64>,
    /// Its type, for example `OrderPlaced`.
    pub event_type: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
    /// When the relay published it; `null` before that, or when the record has expired.
    pub published_at: Option<DateTime<Utc>>,
    /// The request that set it in motion (its correlation id).
    pub request_id: Option<String>,
    /// The event whose handling issued the command that stored it.
    pub causation_id: Option<String>,
    /// What issued that command, in words: `request <id>` or `<actor> on event <id>`.
    pub caused_by: String,
    /// What each consumer did with it: every recorded step, by consumer, in the order they
    /// happened; a consumer with no record yet is `pending`.
    pub steps: Vec<TraceStep>,
    /// The events of this order whose causation is this event.
    pub caused: Vec<CausedEvent>,
}

/// One step of one consumer with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TraceStep {
    /// The consumer.
    pub consumer: String,
    /// When the consumer first received the event; `null` while pending.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// When the attempt of this step started; `null` while pending.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The delivery count of this step's attempt (0 for a redrive and while pending).
    pub attempts: i64,
    /// What came of it.
    pub outcome: StepOutcome,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// How long the handler ran, in milliseconds (a batch's time for each of its events).
    pub duration_ms: i64,
    /// What the handler did, in one line.
    pub effect: Option<String>,
}

/// An event caused by another one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CausedEvent {
    /// Its sequence in the order.
    pub sequence: i64,
    /// Its type.
    pub event_type: String,
    /// Who issued the command (the consumer's name), when recorded.
    pub by: String,
}

/// The trace of `order_id`, or `None` when the order has no events. `stream` names the
/// stream whose publication times are shown (`None`: any).
///
/// # Errors
/// [`TraceError`] when the log or the records cannot be read.
pub async fn order_trace(
    pool: &PgPool,
    stream: Option<&str>,
    order_id: Uuid,
) -> Result<Option<OrderTrace>, TraceError> {
    let events = log::order_events(pool, order_id).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let records = steps::steps_of_events(pool, &event_ids).await?;
    let positions: Vec<i64> = events.iter().map(|e| e.position.unwrap_or(0)).collect();
    let published = steps::published_at(pool, stream, &positions).await?;
    Ok(Some(assemble(
        order_id,
        &events,
        records,
        &published,
        &consumer_names(),
    )))
}

/// Puts a trace together from what was read (pure, for tests).
pub fn assemble(
    order_id: Uuid,
    events: &[EventEnvelope],
    records: Vec<StepRecord>,
    published: &[Option<DateTime<Utc>>],
    consumers: &[&str],
) -> OrderTrace {
    let mut by_event: HashMap<Uuid, Vec<StepRecord>> = HashMap::new();
    for record in records {
        by_event.entry(record.event_id).or_default().push(record);
    }
    let traced = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let records = by_event.remove(&event.event_id).unwrap_or_default();
            let event_id = event.event_id.to_string();
            let caused = events
                .iter()
                .filter(|other| other.metadata.causation_id.as_deref() == Some(&event_id))
                .map(|other| CausedEvent {
                    sequence: other.sequence,
                    event_type: other.event_type.clone(),
                    by: actor(other).unwrap_or("unknown").to_string(),
                })
                .collect();
            TracedEvent {
                sequence: event.sequence,
                position: event.position,
                event_type: event.event_type.clone(),
                stored_at: event.recorded_at,
                published_at: event
                    .position
                    .and_then(|_| published.get(index).copied().flatten()),
                request_id: event.metadata.correlation_id.clone(),
                causation_id: event.metadata.causation_id.clone(),
                caused_by: caused_by(event),
                steps: steps_of(records, consumers),
                caused,
            }
        })
        .collect();
    OrderTrace {
        order_id,
        request_id: events
            .first()
            .and_then(|e| e.metadata.correlation_id.clone()),
        events: traced,
    }
}

fn actor(event: &EventEnvelope) -> Option<&str> {
    event.metadata.other.get("actor").map(String::as_str)
}

/// `request <id>` for a client's command, `<actor> on event <id>` for a consumer's.
fn caused_by(event: &EventEnvelope) -> String {
    match (&event.metadata.causation_id, actor(event)) {
        (Some(cause), Some(actor)) => format!("{actor} on event {cause}"),
        (Some(cause), None) => format!("event {cause}"),
        (None, _) => match &event.metadata.correlation_id {
            Some(request) => format!("request {request}"),
            None => "unknown".to_string(),
        },
    }
}

/// The steps of one event: the known consumers first (in their order), then any other
/// consumer that recorded steps; each consumer's steps in the order they happened, or one
/// `pending` step when it has none.
fn steps_of(records: Vec<StepRecord>, consumers: &[&str]) -> Vec<TraceStep> {
    let mut names: Vec<String> = consumers.iter().map(ToString::to_string).collect();
    for record in &records {
        if !names.contains(&record.consumer) {
            names.push(record.consumer.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        let mine: Vec<&StepRecord> = records.iter().filter(|r| r.consumer == name).collect();
        if mine.is_empty() {
            out.push(TraceStep {
                consumer: name,
                first_seen_at: None,
                last_attempt_at: None,
                attempts: 0,
                outcome: StepOutcome::Pending,
                error: None,
                duration_ms: 0,
                effect: None,
            });
            continue;
        }
        let first_seen = mine.iter().map(|r| r.started_at).min();
        for record in mine {
            out.push(TraceStep {
                consumer: name.clone(),
                first_seen_at: first_seen,
                last_attempt_at: Some(record.started_at),
                attempts: record.attempt,
                outcome: record.outcome,
                error: record.error.clone(),
                duration_ms: record.duration_ms,
                effect: record.effect.clone(),
            });
        }
    }
    out
}
