//! The `order-summary` projection: one row per order (id, customer, status, total, currency,
//! line count, placed time, tracking number, version), and [`list_orders`], the query behind
//! `GET /v1/orders` and `GET /v1/customers/{id}/orders`: newest first, with a stable opaque
//! cursor. It supplies its table, row, pure fold and upsert ([`Fold`]); the framework
//! ([`crate::projection`]) runs the batches.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use orderflow_domain::{OrderEvent, OrderStatus};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::projection::{Change, Fold, ProjectionError, StatusColumn, TableSpec, Tables};

/// The live table.
pub const TABLE: &str = "order_summary";

const TABLES: &[TableSpec] = &[TableSpec {
    name: TABLE,
    create: "CREATE TABLE {table} (
        id              uuid        PRIMARY KEY,
        customer_id     text        NOT NULL,
        status          text        NOT NULL,
        total           bigint      NOT NULL,
        currency        text        NOT NULL,
        line_count      integer     NOT NULL,
        placed_at       timestamptz NOT NULL,
        tracking_number text,
        version         bigint      NOT NULL
    )",
    indexes: &[
        "CREATE INDEX {table}_placed ON {table} (placed_at DESC, id DESC)",
        "CREATE INDEX {table}_customer ON {table} (customer_id, placed_at DESC, id DESC)",
        "CREATE INDEX {table}_status ON {table} (status, placed_at DESC, id DESC)",
    ],
    key: &["id"],
}];

/// The order-summary projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderSummaryProjection;

impl OrderSummaryProjection {
    /// The projection's name (`order-summary`): its checkpoint row and durable consumer.
    pub const NAME: &'static str = "order-summary";
}

/// One order as the order-summary projection holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct OrderSummary {
    /// The order's id.
    pub id: Uuid,
    /// The customer who placed it.
    pub customer_id: String,
    /// The order's status after its last event folded in.
    #[sqlx(try_from = "StatusColumn")]
    pub status: OrderStatus,
    /// In the currency's minor unit.
    pub total: i64,
    /// The order's ISO 4217 currency code.
    pub currency: String,
    /// How many lines the order has (not units).
    pub line_count: i32,
    /// When the order was placed: the listing's sort key, with `id`.
    pub placed_at: DateTime<Utc>,
    /// The carrier's tracking number, once the shipment started; absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The sequence of the order's last event folded in.
    pub version: i64,
}

const COLUMNS: &str =
    "id, customer_id, status, total, currency, line_count, placed_at, tracking_number, version";

#[async_trait]
impl Fold for OrderSummaryProjection {
    const NAME: &'static str = Self::NAME;
    const VERSION: i32 = 1;
    const TABLES: &'static [TableSpec] = TABLES;
    const COLUMNS: &'static str = COLUMNS;
    type Row = OrderSummary;

    fn order_id(row: &OrderSummary) -> Uuid {
        row.id
    }

    /// An `OrderPlaced` starts the row; later events set the status (and the tracking
    /// number); events at or below the row's version change nothing.
    fn fold(
        &self,
        row: Option<&OrderSummary>,
        sequence: i64,
        event: &OrderEvent,
    ) -> Option<OrderSummary> {
        let Some(row) = row else {
            return placed(sequence, event);
        };
        if sequence <= row.version {
            return None;
        }
        let mut row = row.clone();
        match event {
            OrderEvent::OrderPlaced { .. } => {}
            OrderEvent::OrderConfirmed { .. } => row.status = OrderStatus::Confirmed,
            OrderEvent::OrderRejected { .. } => row.status = OrderStatus::Rejected,
            OrderEvent::OrderCancelled { .. } => row.status = OrderStatus::Cancelled,
            OrderEvent::ShipmentStarted {
                tracking_number, ..
            } => {
                row.status = OrderStatus::Shipped;
                row.tracking_number = Some(tracking_number.clone());
            }
            OrderEvent::OrderDelivered {} => row.status = OrderStatus::Delivered,
        }
        row.version = sequence;
        Some(row)
    }

    /// One multi-row upsert of the changed rows.
    async fn write(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        changes: &[Change<OrderSummary>],
    ) -> Result<(), ProjectionError> {
        let table = tables.name(TABLE);
        let rows = changes.iter().map(|c| &c.after);
        sqlx::query(&format!(
            "INSERT INTO {table} ({COLUMNS})
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
                                  $6::int4[], $7::timestamptz[], $8::text[], $9::int8[])
             ON CONFLICT (id) DO UPDATE SET
                status = excluded.status, tracking_number = excluded.tracking_number,
                version = excluded.version
             WHERE {table}.version < excluded.version"
        ))
        .bind(rows.clone().map(|r| r.id).collect::<Vec<_>>())
        .bind(
            rows.clone()
                .map(|r| r.customer_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.clone().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.total).collect::<Vec<_>>())
        .bind(
            rows.clone()
                .map(|r| r.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.clone().map(|r| r.line_count).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.placed_at).collect::<Vec<_>>())
        .bind(
            rows.clone()
                .map(|r| r.tracking_number.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.map(|r| r.version).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// The row an `OrderPlaced` starts; `None` for any other event.
fn placed(sequence: i64, event: &OrderEvent) -> Option<OrderSummary> {
    match event {
        OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            currency,
            lines,
            total,
            placed_at,
            ..
        } => Some(OrderSummary {
            id: *order_id,
            customer_id: customer_id.clone(),
            status: OrderStatus::Placed,
            total: total.minor_units(),
            currency: currency.as_str().to_string(),
            line_count: i32::try_from(lines.len()).unwrap_or(i32::MAX),
            placed_at: *placed_at,
            tracking_number: None,
            version: sequence,
        }),
        _ => None,
    }
}

/// The largest page [`list_orders`] returns.
pub const MAX_LIMIT: u32 = 500;
/// The page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 50;
/// A cursor is this many hexadecimal digits: the 16 of a time, the 32 of an order id.
pub const CURSOR_HEX_DIGITS: usize = 48;

/// What to list: every field optional. `cursor` is the `next_cursor` of the previous page.
/// Deserializes from the query string of `GET /v1/orders` (`status=shipped`,
/// `placed_after=2026-11-25T10:00:00Z`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderFilter {
    /// Only this customer's orders.
    pub customer_id: Option<String>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only orders placed strictly after this time (RFC 3339).
    pub placed_after: Option<DateTime<Utc>>,
    /// Page size, 1..=500, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// At most `limit` orders, newest first.
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Why [`list_orders`] refused or failed. The first two are the caller's mistake (400).
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The page size asked for (given here) is outside 1..=500.
    #[error("limit must be between 1 and {MAX_LIMIT}, got {0}")]
    InvalidLimit(u32),
    /// The cursor does not decode: it was not a `next_cursor` of [`list_orders`].
    #[error("cursor is not one this server handed out")]
    InvalidCursor,
    /// PostgreSQL failed or could not be reached (500).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ListError {
    /// The field the caller got wrong, for a problem body's `errors[]` (`None` for a
    /// database failure).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ListError::InvalidLimit(_) => Some("limit"),
            ListError::InvalidCursor => Some("cursor"),
            ListError::Database(_) => None,
        }
    }
}

/// A position in the newest-first order: `(placed_at, id)` of the last row of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    placed_at_micros: i64,
    id: Uuid,
}

impl Cursor {
    fn encode(self) -> String {
        format!("{:016x}{}", self.placed_at_micros as u64, self.id.simple())
    }

    /// Any [`CURSOR_HEX_DIGITS`] hexadecimal digits are a position (the OpenAPI document
    /// says so), whoever made them.
    fn decode(raw: &str) -> Result<Self, ListError> {
        if raw.len() != CURSOR_HEX_DIGITS || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ListError::InvalidCursor);
        }
        let (time, id) = raw.split_at(16);
        let micros = u64::from_str_radix(time, 16).map_err(|_| ListError::InvalidCursor)?;
        let id = Uuid::try_parse(id).map_err(|_| ListError::InvalidCursor)?;
        Ok(Self {
            placed_at_micros: micros as i64,
            id,
        })
    }

    /// The cursor's time, held between 1970 and the end of year 9999: no order is placed
    /// outside them, so a time past either bound is the same position as the bound, and
    /// PostgreSQL refuses times far outside them.
    fn placed_at(self) -> Result<DateTime<Utc>, ListError> {
        let latest = NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .map(|t| t.and_utc().timestamp_micros())
            .ok_or(ListError::InvalidCursor)?;
        Utc.timestamp_micros(self.placed_at_micros.clamp(0, latest))
            .single()
            .ok_or(ListError::InvalidCursor)
    }
}

/// One page of the order-summary projection, newest first (`placed_at`, then `id`, both
/// descending). Pages are stable: walking the cursors returns every order that existed when
/// the walk began exactly once, whatever is placed meanwhile.
///
/// # Errors
/// [`ListError::InvalidLimit`] outside 1..=500, [`ListError::InvalidCursor`] for a cursor
/// this function did not make, [`ListError::Database`] when the query fails.
pub async fn list_orders(pool: &PgPool, filter: &OrderFilter) -> Result<OrderPage, ListError> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ListError::InvalidLimit(limit));
    }
    let cursor = filter.cursor.as_deref().map(Cursor::decode).transpose()?;
    let (cursor_time, cursor_id) = match cursor {
        Some(c) => (Some(c.placed_at()?), Some(c.id)),
        None => (None, None),
    };
    let mut orders: Vec<OrderSummary> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {TABLE}
         WHERE ($1::text IS NULL OR customer_id = $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR placed_at > $3)
           AND ($4::timestamptz IS NULL OR (placed_at, id) < ($4, $5::uuid))
         ORDER BY placed_at DESC, id DESC
         LIMIT $6"
    ))
    .bind(filter.customer_id.as_deref())
    .bind(filter.status.map(OrderStatus::as_str))
    .bind(filter.placed_after)
    .bind(cursor_time)
    .bind(cursor_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = orders.len() > limit as usize;
    orders.truncate(limit as usize);
    let next_cursor = match orders.last() {
        Some(last) if more => Some(
            Cursor {
                placed_at_micros: last.placed_at.timestamp_micros(),
                id: last.id,
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

/// One order's row, if the projection has it.
///
/// # Errors
/// The database error.
pub async fn get_order(pool: &PgPool, id: Uuid) -> Result<Option<OrderSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

#[cfg(test)]
mod tests {
    //! The list cursor.

    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor {
            placed_at_micros: 1_764_000_000_123_456,
            id: Uuid::from_u128(42),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "abc", &"z".repeat(48), &format!("{}é", "0".repeat(46))] {
            assert!(
                matches!(Cursor::decode(bad), Err(ListError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod fold_tests {
    //! The pure fold and the in-memory batch fold, without a database.

    use std::collections::HashMap;

    use super::*;
    use crate::projection::fixtures::{cancelled, confirmed, placed, shipped};
    use crate::projection::fold_events;

    const P: OrderSummaryProjection = OrderSummaryProjection;

    #[test]
    fn placed_starts_the_row_and_later_events_move_it() {
        let id = Uuid::from_u128(1);
        let row = P.fold(None, 1, &placed(id, "EUR")).unwrap();
        assert_eq!(
            (row.id, row.status, row.total, row.line_count, row.version),
            (id, OrderStatus::Placed, 2250, 2, 1)
        );
        assert_eq!(row.currency, "EUR");
        let row = P.fold(Some(&row), 2, &confirmed()).unwrap();
        assert_eq!((row.status, row.version), (OrderStatus::Confirmed, 2));
        let row = P.fold(Some(&row), 3, &shipped("TRK-1")).unwrap();
        assert_eq!(row.status, OrderStatus::Shipped);
        assert_eq!(row.tracking_number.as_deref(), Some("TRK-1"));
    }

    #[test]
    fn old_events_and_events_of_unknown_orders_change_nothing() {
        let id = Uuid::from_u128(1);
        let row = P.fold(None, 1, &placed(id, "EUR")).unwrap();
        let row = P.fold(Some(&row), 2, &confirmed()).unwrap();
        assert_eq!(P.fold(Some(&row), 2, &cancelled()), None);
        assert_eq!(P.fold(Some(&row), 1, &placed(id, "EUR")), None);
        assert_eq!(P.fold(None, 2, &confirmed()), None);
    }

    #[test]
    fn a_batch_folds_in_memory_into_one_change_per_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let stored = P.fold(None, 1, &placed(a, "EUR")).unwrap();
        let current = HashMap::from([(a, stored.clone())]);
        let events = [
            (b, 1, placed(b, "USD")),
            (a, 2, confirmed()),
            (b, 2, cancelled()),
            (a, 2, confirmed()),
            (a, 3, shipped("TRK-9")),
        ];
        let changes = fold_events(&P, current, events.iter().map(|(i, s, e)| (*i, *s, e)));
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].before, Some(stored));
        assert_eq!(
            (changes[0].after.status, changes[0].after.version),
            (OrderStatus::Shipped, 3)
        );
        assert_eq!(changes[1].before, None);
        assert_eq!(changes[1].after.status, OrderStatus::Cancelled);
    }
}
