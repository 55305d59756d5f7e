//! Replay for debugging: an order's life event by event ([`order_timeline`]: the state after
//! each event and what each event changed), and re-sending a range of the log to one
//! consumer's handler ([`replay_consumer`], with dry run and force).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use orderflow_bus::{Delivery, Handler, HandlerError};
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::Order;
use orderflow_store::{log, EventEnvelope, OrderStore, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// One field an event changed. `path` is dotted (`shipment.tracking_number`); arrays are
/// compared whole. `before` is absent for a new field, `after` for a removed one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldChange {
    /// Dotted path of the field in the order's state, for example `shipment.tracking_number`.
    pub path: String,
    /// The field's value before the event: any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The field's value after the event: any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One event of an order and the order right after it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// The event's number within its order, from 1.
    pub sequence: i64,
    /// The global position (`null` until the relay numbered the event).
    pub position: Option<i64>,
    /// When the event was stored (UTC).
    pub recorded_at: DateTime<Utc>,
    /// The event type name, for example `OrderPlaced`; serialized as `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's version after upcasting.
    pub version: String,
    /// The event's body as JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The id shared by everything the originating request set in motion.
    pub correlation_id: Option<String>,
    /// The id of the event whose handling caused this one (absent for client requests).
    pub causation_id: Option<String>,
    /// The order after this event (as `GET /v1/orders/{id}` would fold it).
    #[schema(value_type = Object)]
    pub state: Value,
    /// What this event changed in the state.
    pub changes: Vec<FieldChange>,
}

/// An order's events up to a sequence, each with the state after it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderTimeline {
    /// The order shown.
    pub order_id: Uuid,
    /// The last sequence shown.
    pub version: i64,
    /// The order's events up to `version`, oldest first.
    pub entries: Vec<TimelineEntry>,
    /// The state after the last entry shown (`null` only for an order without events).
    #[schema(value_type = Option<Object>)]
    pub state: Option<OrderState>,
}

/// The order's events with the state after each and what each changed; `at` stops after
/// sequence `at`. `None` when the order has no events.
///
/// # Errors
/// A database error or an unreadable stored event.
pub async fn order_timeline(
    store: &OrderStore,
    order_id: Uuid,
    at: Option<i64>,
) -> Result<Option<OrderTimeline>, StoreError> {
    let events = store.events(order_id).await?;
    if events.is_empty() {
        return Ok(None);
    }
    Ok(Some(timeline(order_id, &events, at)?))
}

/// [`order_timeline`] over events already read.
///
/// # Errors
/// [`StoreError::Corrupt`] when an event's body does not fit its type.
pub fn timeline(
    order_id: Uuid,
    events: &[EventEnvelope],
    at: Option<i64>,
) -> Result<OrderTimeline, StoreError> {
    use cqrs_es::Aggregate;
    let mut order = Order::default();
    let mut before = Value::Null;
    let mut entries = Vec::new();
    let mut version = 0;
    for envelope in events
        .iter()
        .take_while(|e| at.is_none_or(|n| e.sequence <= n))
    {
        order.apply(envelope.event()?);
        let after = serde_json::to_value(order.state()).unwrap_or(Value::Null);
        let mut changes = Vec::new();
        diff("", &before, &after, &mut changes);
        entries.push(TimelineEntry {
            sequence: envelope.sequence,
            position: envelope.position,
            recorded_at: envelope.recorded_at,
            event_type: envelope.event_type.clone(),
            version: envelope.version.clone(),
            payload: envelope.payload.clone(),
            correlation_id: envelope.metadata.correlation_id.clone(),
            causation_id: envelope.metadata.causation_id.clone(),
            state: after.clone(),
            changes,
        });
        before = after;
        version = envelope.sequence;
    }
    Ok(OrderTimeline {
        order_id,
        version,
        entries,
        state: order.into_state(),
    })
}

/// Field-level differences between two JSON values, appended to `out`.
pub fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                diff(
                    &join(key),
                    b.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Null, Value::Object(a)) => diff(
            path,
            &Value::Object(serde_json::Map::new()),
            &Value::Object(a.clone()),
            out,
        ),
        (Value::Object(b), Value::Null) => diff(
            path,
            &Value::Object(b.clone()),
            &Value::Object(serde_json::Map::new()),
            out,
        ),
        (b, a) if b != a => out.push(FieldChange {
            path: path.to_string(),
            before: (!b.is_null()).then(|| b.clone()),
            after: (!a.is_null()).then(|| a.clone()),
        }),
        _ => {}
    }
}

/// Where a replay starts or stops: a global position or a time (RFC 3339).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBound {
    /// A global log position.
    Position(i64),
    /// A point in time: from the first event recorded at or after it, to the last at or before it.
    Time(DateTime<Utc>),
}

/// A bound that is neither a position nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither a position (a number) nor an RFC 3339 time")]
pub struct InvalidBound(pub String);

impl FromStr for LogBound {
    type Err = InvalidBound;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = raw.parse::<i64>() {
            return Ok(Self::Position(position));
        }
        DateTime::parse_from_rfc3339(raw)
            .map(|t| Self::Time(t.with_timezone(&Utc)))
            .map_err(|_| InvalidBound(raw.to_string()))
    }
}

impl LogBound {
    /// The first position a replay `--from` this bound includes: a position as given, a time
    /// as the first event recorded at or after it.
    ///
    /// # Errors
    /// The database error.
    pub async fn resolve_from(self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        match self {
            Self::Position(p) => Ok(p),
            Self::Time(t) => {
                Ok(log::position_at(pool, t - chrono::Duration::microseconds(1)).await? + 1)
            }
        }
    }

    /// The last position a replay `--to` this bound includes: a position as given, a time as
    /// the last event recorded at or before it.
    ///
    /// # Errors
    /// The database error.
    pub async fn resolve_to(self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        match self {
            Self::Position(p) => Ok(p),
            Self::Time(t) => log::position_at(pool, t).await,
        }
    }
}

/// What a handler reported for one replayed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// Not handed to the handler: the consumer's inbox says it handled the event before, so
    /// the real run changes nothing (`--force` hands it over anyway).
    Skipped {
        /// Why the event was not handed over.
        reason: String,
    },
    /// It finished; `effects` says what it did (or would do, on a dry run). Empty when there
    /// was nothing to do, e.g. the inbox says it was handled before.
    Done {
        /// The handler's effects, one line each.
        effects: Vec<String>,
    },
    /// It asked to be retried later.
    Retry {
        /// The handler's error.
        error: String,
    },
    /// It gave up on the event.
    GiveUp {
        /// The handler's error.
        error: String,
    },
}

/// One replayed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplayedEvent {
    /// The event's global position in the log.
    pub position: i64,
    /// The event's own id.
    pub event_id: Uuid,
    /// The order the event belongs to.
    pub order_id: Uuid,
    /// The event's number within its order, from 1.
    pub sequence: i64,
    /// The event type name; serialized as `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the handler reported, flattened into this object.
    #[serde(flatten)]
    pub outcome: ReplayOutcome,
}

/// The result of [`replay_consumer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplayReport {
    /// The consumer whose handler the events were replayed to.
    pub consumer: String,
    /// First position replayed (inclusive).
    pub from: i64,
    /// Last position replayed (inclusive): the `to` asked for, or the head when the replay began.
    pub to: i64,
    /// True when the handler only said what it would do and changed nothing.
    pub dry_run: bool,
    /// True when events the consumer's inbox already holds were handed over anyway.
    pub force: bool,
    /// Every event replayed, in position order.
    pub events: Vec<ReplayedEvent>,
}

/// Most events one replay to a consumer may cover; a longer range is replayed in parts.
pub const MAX_REPLAY_EVENTS: i64 = 10_000;

/// A replay range that cannot be replayed. The CLI and the admin route both check ranges
/// with [`check_range`], so they refuse the same ranges with the same words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRangeError {
    /// A negative position.
    #[error("from ({from}) must not be negative")]
    Negative {
        /// The first position asked for.
        from: i64,
    },
    /// `to` lies before `from`.
    #[error("to ({to}) is before from ({from}): nothing to replay")]
    Backwards {
        /// The first position asked for.
        from: i64,
        /// The last position asked for.
        to: i64,
    },
    /// More than [`MAX_REPLAY_EVENTS`] positions.
    #[error("the range {from}..={to} is over {MAX_REPLAY_EVENTS} events; replay it in parts")]
    TooLong {
        /// The first position asked for.
        from: i64,
        /// The last position asked for (or the head).
        to: i64,
    },
}

/// Checks a range of positions resolved from `--from`/`--to` (`to` defaults to the head).
///
/// # Errors
/// [`ReplayRangeError::Negative`] for a negative `from`, [`ReplayRangeError::Backwards`] when `to < from` (a `to` given explicitly; an empty log
/// replays nothing), [`ReplayRangeError::TooLong`] past [`MAX_REPLAY_EVENTS`].
pub fn check_range(from: i64, to: i64, to_given: bool) -> Result<(), ReplayRangeError> {
    if from < 0 {
        return Err(ReplayRangeError::Negative { from });
    }
    if to < from && to_given {
        return Err(ReplayRangeError::Backwards { from, to });
    }
    if to - from >= MAX_REPLAY_EVENTS {
        return Err(ReplayRangeError::TooLong { from, to });
    }
    Ok(())
}

/// Asking for the state after an event the order does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {order_id} has events 1 to {last}; there is no event {at}")]
pub struct NoSuchEvent {
    /// The order asked about.
    pub order_id: Uuid,
    /// The sequence asked for.
    pub at: i64,
    /// The order's last sequence.
    pub last: i64,
}

/// Checks `--at` against the order's last sequence.
///
/// # Errors
/// [`NoSuchEvent`] when `at` is not between 1 and `last`.
pub fn check_at(order_id: Uuid, at: Option<i64>, last: i64) -> Result<(), NoSuchEvent> {
    match at {
        Some(at) if !(1..=last).contains(&at) => Err(NoSuchEvent { order_id, at, last }),
        _ => Ok(()),
    }
}

/// Events per read while replaying.
const REPLAY_BATCH: i64 = 500;

/// Calls `handler.handle(event, Delivery { dry_run, ignore_inbox: force, attempt: 1 })` for
/// every event with `from <= position <= to` (to the current head when `to` is `None`), in
/// order, and returns what each call reported. A handler error is reported, not fatal.
///
/// Without `force`, an event the consumer's inbox already holds is skipped, in a dry run and
/// in a real one alike, so a dry run says per event what the real run will do.
///
/// # Errors
/// A database error or an unreadable stored event (what was replayed before stays done).
pub async fn replay_consumer(
    pool: &PgPool,
    handler: &dyn Handler,
    from: i64,
    to: Option<i64>,
    dry_run: bool,
    force: bool,
) -> Result<ReplayReport, StoreError> {
    let to = match to {
        Some(to) => to,
        None => log::head_position(pool).await?,
    };
    let delivery = Delivery {
        attempt: 1,
        dry_run,
        ignore_inbox: force,
    };
    tracing::info!(
        consumer = handler.name(),
        from,
        to,
        dry_run,
        force,
        "replaying"
    );
    let mut replayed = Vec::new();
    let mut after = from.saturating_sub(1).max(0);
    while after < to {
        let events = log::events_after(pool, after, Some(to), REPLAY_BATCH).await?;
        let Some(last) = events.last().and_then(|e| e.position) else {
            break;
        };
        for event in &events {
            let handled_before = !force
                && orderflow_store::inbox::is_claimed(pool, handler.name(), event.event_id).await?;
            let outcome = if handled_before {
                ReplayOutcome::Skipped {
                    reason: format!(
                        "{} handled it before (its inbox has the event)",
                        handler.name()
                    ),
                }
            } else {
                match handler.handle(event, delivery).await {
                    Ok(effects) => ReplayOutcome::Done { effects: effects.0 },
                    Err(HandlerError::Retry(error)) => ReplayOutcome::Retry { error },
                    Err(HandlerError::GiveUp(error)) => ReplayOutcome::GiveUp { error },
                }
            };
            replayed.push(ReplayedEvent {
                position: event.position.unwrap_or_default(),
                event_id: event.event_id,
                order_id: event.order_id,
                sequence: event.sequence,
                event_type: event.event_type.clone(),
                outcome,
            });
        }
        after = last;
    }
    Ok(ReplayReport {
        consumer: handler.name().to_string(),
        from,
        to,
        dry_run,
        force,
        events: replayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_changed_added_and_removed_fields() {
        let before = json!({"status": "placed", "shipment": null, "total": 10});
        let after = json!({"status": "shipped", "shipment": {"carrier": "sim"}, "total": 10});
        let mut out = Vec::new();
        diff("", &before, &after, &mut out);
        let paths: Vec<_> = out.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["shipment.carrier", "status"]);
        assert_eq!(out[0].before, None);
        assert_eq!(out[1].after, Some(json!("shipped")));
    }

    #[test]
    fn bounds_are_positions_or_times() {
        assert_eq!("42".parse::<LogBound>().unwrap(), LogBound::Position(42));
        assert!(matches!(
            "2026-11-25T10:00:00Z".parse::<LogBound>().unwrap(),
            LogBound::Time(_)
        ));
        assert!("yesterday".parse::<LogBound>().is_err());
    }
}
