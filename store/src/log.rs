//! The event log as every reader sees it: one [`EventEnvelope`] per stored event, read by order
//! (for the gateway and the operator commands) or by global position (for the relay,
//! rebuilds and replays).
//!
//! `global_position` is commit-ordered and gapless, so it is a safe cursor. `insert_position`
//! is not: it is taken at insert time, so a transaction that commits late would leave its row
//! behind a cursor that already moved past it. Positions are therefore given out after the
//! fact, by one numberer (the relay that holds the relay lock): [`assign_positions`] numbers
//! the committed rows that have no position yet, continuing after the highest one. A row that
//! commits late is simply numbered late; a reader that follows `global_position` cannot skip
//! it. Each order's events stay in sequence order, because sequence `n + 1` can only be written
//! after sequence `n` committed.
//!
//! Why not number only rows below `pg_snapshot_xmin(pg_current_snapshot())`? That also never
//! skips, but it orders by transaction id rather than by commit, and any long writing
//! transaction anywhere on the server (the horizon is cluster-wide) would stall publishing.
//! `tx_id` is still recorded with every row, for diagnosis.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use orderflow_domain::{upcasting, Order, OrderEvent};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::StoreError;

static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(upcasting::upcasters);

/// Where an event came from: the request or the event that caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventMetadata {
    /// The id shared by everything one request set in motion (the request's `X-Request-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event whose handling issued the command (absent for client requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Anything else recorded (for example `actor`, and `traceparent`: the W3C trace
    /// context of the span that issued the command).
    #[serde(flatten)]
    pub other: BTreeMap<String, String>,
}

impl EventMetadata {
    /// The trace context recorded with the event (its `traceparent`), if any and readable.
    pub fn trace(&self) -> Option<orderflow_trace::TraceContext> {
        self.other
            .get(orderflow_trace::TRACEPARENT)
            .and_then(|value| orderflow_trace::TraceContext::parse(value))
    }

    /// Records `trace` as the event's `traceparent`.
    pub fn set_trace(&mut self, trace: orderflow_trace::TraceContext) {
        self.other
            .insert(orderflow_trace::TRACEPARENT.to_string(), trace.to_string());
    }
}

/// One stored event as it is published and shown: the body is already upcast to the current
/// version and carries no type tag. The personal fields of an `OrderPlaced` are sealed as
/// stored until a [`crate::vault::Vault`] opens them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventEnvelope {
    /// The event's own id, unique in the log.
    pub event_id: Uuid,
    /// The order the event belongs to.
    pub order_id: Uuid,
    /// The event's number within its order, from 1.
    pub sequence: i64,
    /// Commit-ordered position in the whole log; `None` until the relay numbered it.
    pub position: Option<i64>,
    /// The event type name, for example `OrderPlaced`; serialized as `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version of `payload`, always the current one after upcasting.
    pub version: String,
    /// The event's body as JSON, without a type tag.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// What caused the event.
    pub metadata: EventMetadata,
    /// When the event was stored (UTC).
    pub recorded_at: DateTime<Utc>,
}

impl EventEnvelope {
    /// The domain event inside.
    ///
    /// # Errors
    /// The serde error when the body does not fit its type.
    ///
    /// Personal fields still sealed (not opened through [`crate::vault::Vault::open_all`])
    /// read as [`crate::vault::ERASED`].
    pub fn decode(&self) -> Result<OrderEvent, serde_json::Error> {
        let body =
            crate::vault::without_sealed(&self.payload).unwrap_or_else(|| self.payload.clone());
        OrderEvent::from_parts(&self.event_type, body)
    }

    /// The domain event inside, with an error that names the stored event when it does not
    /// fit its type.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the body does not fit its type.
    pub fn event(&self) -> Result<OrderEvent, StoreError> {
        self.decode().map_err(|source| StoreError::Corrupt {
            order_id: self.order_id.to_string(),
            event_type: self.event_type.clone(),
            version: self.version.clone(),
            source,
        })
    }

    /// The NATS subject of this event under `prefix`: `<prefix>.<order_id>.<EventType>`.
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{}", self.order_id, self.event_type)
    }

    /// The broker's deduplication id: `<order_id>:<sequence>`.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.order_id, self.sequence)
    }

    fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let stored = SerializedEvent {
            aggregate_id: aggregate_id.clone(),
            sequence: usize::try_from(row.try_get::<i64, _>("sequence")?).unwrap_or_default(),
            aggregate_type: Order_TYPE.to_string(),
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
        };
        let event = upcasting::upcast(&UPCASTERS, stored);
        let corrupt = |source| StoreError::Corrupt {
            order_id: aggregate_id.clone(),
            event_type: event.event_type.clone(),
            version: event.event_version.clone(),
            source,
        };
        let metadata: EventMetadata =
            serde_json::from_value(event.metadata.clone()).map_err(corrupt)?;
        let order_id = Uuid::parse_str(&aggregate_id).map_err(|e| StoreError::Corrupt {
            order_id: aggregate_id.clone(),
            event_type: event.event_type.clone(),
            version: event.event_version.clone(),
            source: serde::de::Error::custom(e),
        })?;
        Ok(Self {
            event_id: row.try_get("event_id")?,
            order_id,
            sequence: row.try_get("sequence")?,
            position: row.try_get("global_position")?,
            event_type: event.event_type,
            version: event.event_version,
            payload: OrderEvent::untag(event.payload),
            metadata,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

#[allow(non_upper_case_globals)]
const Order_TYPE: &str = <Order as cqrs_es::Aggregate>::TYPE;

/// The columns of an [`EventEnvelope`], as a literal (so that statements can be constants).
macro_rules! select_envelope {
    () => {
        "SELECT event_id, aggregate_id, sequence, global_position, \
         event_type, event_version, payload, metadata, recorded_at FROM events"
    };
}

const SELECT_ENVELOPE: &str = select_envelope!();

/// The statement of [`order_events`]: `$1` the aggregate type, `$2` the order id.
pub const ORDER_EVENTS: &str = concat!(
    select_envelope!(),
    " WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
);

/// The statement of [`events_of_orders`]: `$1` the aggregate type, `$2` the order ids.
pub const EVENTS_OF_ORDERS: &str = concat!(
    select_envelope!(),
    " WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence"
);

/// The statement of [`assign_positions`]: `$1` how many to number at most.
pub const ASSIGN_POSITIONS: &str =
    "WITH head AS (SELECT coalesce(max(global_position), 0) AS position FROM events),
          next AS (
              SELECT insert_position,
                     row_number() OVER (ORDER BY tx_id, insert_position) AS n
              FROM events
              WHERE global_position IS NULL
              ORDER BY tx_id, insert_position
              LIMIT $1)
     UPDATE events e
        SET global_position = head.position + next.n
       FROM next, head
      WHERE e.insert_position = next.insert_position";

fn envelopes(rows: &[PgRow]) -> Result<Vec<EventEnvelope>, StoreError> {
    rows.iter().map(EventEnvelope::from_row).collect()
}

/// Every event of one order, by sequence.
///
/// # Errors
/// A database error, or [`StoreError::Corrupt`] for an unreadable stored event.
pub async fn order_events<'e>(
    db: impl PgExecutor<'e>,
    order_id: Uuid,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let rows = sqlx::query(ORDER_EVENTS)
        .bind(Order_TYPE)
        .bind(order_id.to_string())
        .fetch_all(db)
        .await?;
    envelopes(&rows)
}

/// Every event of each of `order_ids`, by order and sequence, in one query.
///
/// # Errors
/// A database error, or [`StoreError::Corrupt`] for an unreadable stored event.
pub async fn events_of_orders<'e>(
    db: impl PgExecutor<'e>,
    order_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<EventEnvelope>>, StoreError> {
    let ids: Vec<String> = order_ids.iter().map(Uuid::to_string).collect();
    let rows = sqlx::query(EVENTS_OF_ORDERS)
        // Planned for its arguments on every call (an unnamed statement). A prepared statement
        // would settle on a generic plan while the log is small, one that reads every event of
        // the aggregate type and filters by id, and keep it as the log grows: seen at 50 ms a
        // call after a few minutes of load. The same holds for every batch statement that reads
        // or joins a table by an array (`= ANY($n)`, `FROM UNNEST(...)`).
        .persistent(false)
        .bind(Order_TYPE)
        .bind(&ids)
        .fetch_all(db)
        .await?;
    let mut by_order: std::collections::HashMap<Uuid, Vec<EventEnvelope>> =
        std::collections::HashMap::new();
    for event in envelopes(&rows)? {
        by_order.entry(event.order_id).or_default().push(event);
    }
    Ok(by_order)
}

/// Up to `limit` numbered events with `after < position <= until`, by position.
///
/// # Errors
/// A database error, or [`StoreError::Corrupt`] for an unreadable stored event.
pub async fn events_after<'e>(
    db: impl PgExecutor<'e>,
    after: i64,
    until: Option<i64>,
    limit: i64,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_ENVELOPE} WHERE global_position > $1 AND global_position <= $2 \
         ORDER BY global_position LIMIT $3"
    ))
    .bind(after)
    .bind(until.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await?;
    envelopes(&rows)
}

/// The highest position numbered so far (0 for an empty log).
///
/// # Errors
/// The database error.
pub async fn head_position<'e>(db: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(db)
        .await
}

/// The last position recorded at or before `time` (0 when none).
///
/// # Errors
/// The database error.
pub async fn position_at<'e>(
    db: impl PgExecutor<'e>,
    time: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(max(global_position), 0) FROM events WHERE recorded_at <= $1",
    )
    .bind(time)
    .fetch_one(db)
    .await
}

/// How many events are stored but not numbered yet (the relay's backlog).
///
/// # Errors
/// The database error.
pub async fn unnumbered_count<'e>(db: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position IS NULL")
        .fetch_one(db)
        .await
}

/// Numbers up to `limit` committed events that have no position yet, continuing after the
/// highest position, in `(tx_id, insert_position)` order (rows of one transaction stay
/// together). Returns how many were numbered. Only one numberer may run at a time (the relay
/// lock holder); two at once cannot corrupt the log, the unique index makes one of them fail.
///
/// # Errors
/// The database error.
pub async fn assign_positions<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<u64, sqlx::Error> {
    let numbered = sqlx::query(ASSIGN_POSITIONS)
        .bind(limit)
        .execute(db)
        .await?
        .rows_affected();
    Ok(numbered)
}
