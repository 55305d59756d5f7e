//! The `analytics` projection: revenue per day and currency, order counts
//! per status, units and revenue per SKU, and [`summary`], the query behind
//! `GET /v1/analytics/summary?from=&to=`.
//!
//! # What counts
//! - An order counts as **revenue** while its status is `confirmed`, `shipped` or
//!   `delivered` ([`REVENUE_STATUSES`]): stock is reserved and the order is going out. A
//!   `placed` order is not revenue yet; `rejected` and `cancelled` orders are not revenue
//!   (an order cancelled after its confirmation leaves the revenue again).
//! - Every figure belongs to the UTC **day the order was placed** (`placed_at`), so `from`
//!   and `to` select orders placed in that range, and the figures of a past day change only
//!   when one of its orders changes status.
//! - Status counts count every order once, by its current status.
//!
//! # Tables
//! `analytics_orders` remembers each order's contribution (status, day, currency, total,
//! lines); the counter tables `analytics_revenue`, `analytics_status` and `analytics_skus`
//! hold the sums. The pure fold ([`Fold`]) keeps each order's contribution; writing a batch
//! subtracts an order's old contribution and adds its new one; rows whose counters reach
//! zero are deleted, so a rebuild and the live fold hold the same rows. The framework
//! ([`crate::projection`]) runs the batches.
//!
//! Here: the tables, the row ([`Contribution`]) and the pure fold; the counters' deltas and
//! writes in `counters`; the read query ([`summary`]) in `query`.

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use orderflow_domain::{OrderEvent, OrderStatus};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{Change, Fold, ProjectionError, StatusColumn, TableSpec, Tables};

mod counters;
mod query;

use counters::{upsert_revenue, upsert_skus, upsert_status, Deltas};
pub use query::{
    summary, AnalyticsSummary, CurrencyRevenue, DailyRevenue, SkuSales, StatusCount, SummaryError,
};

/// The statuses in which an order counts as revenue.
pub const REVENUE_STATUSES: [OrderStatus; 3] = [
    OrderStatus::Confirmed,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
];

const ORDERS: &str = "analytics_orders";
const REVENUE: &str = "analytics_revenue";
const STATUS: &str = "analytics_status";
const SKUS: &str = "analytics_skus";

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: ORDERS,
        create: "CREATE TABLE {table} (
            order_id uuid   PRIMARY KEY,
            status   text   NOT NULL,
            day      date   NOT NULL,
            currency text   NOT NULL,
            total    bigint NOT NULL,
            lines    jsonb  NOT NULL,
            version  bigint NOT NULL
        )",
        indexes: &[],
        key: &["order_id"],
    },
    TableSpec {
        name: REVENUE,
        create: "CREATE TABLE {table} (
            day      date   NOT NULL,
            currency text   NOT NULL,
            orders   bigint NOT NULL,
            revenue  bigint NOT NULL,
            PRIMARY KEY (day, currency)
        )",
        indexes: &[],
        key: &["day", "currency"],
    },
    TableSpec {
        name: STATUS,
        create: "CREATE TABLE {table} (
            day    date   NOT NULL,
            status text   NOT NULL,
            orders bigint NOT NULL,
            PRIMARY KEY (day, status)
        )",
        indexes: &[],
        key: &["day", "status"],
    },
    TableSpec {
        name: SKUS,
        create: "CREATE TABLE {table} (
            day      date   NOT NULL,
            sku      text   NOT NULL,
            currency text   NOT NULL,
            units    bigint NOT NULL,
            revenue  bigint NOT NULL,
            PRIMARY KEY (day, sku, currency)
        )",
        indexes: &[],
        key: &["day", "sku", "currency"],
    },
];

/// The analytics projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyticsProjection;

impl AnalyticsProjection {
    /// The projection's name (`analytics`): its checkpoint row and durable consumer.
    pub const NAME: &'static str = "analytics";
}

/// One line as analytics remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The SKU ordered.
    pub sku: String,
    /// How many units of it were ordered.
    pub units: i64,
    /// Units times unit price, in the currency's minor units (`i64::MAX` on overflow).
    pub revenue: i64,
}

/// An order's contribution to the counters: a row of `analytics_orders`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Contribution {
    /// The order this contribution is of; one per order.
    pub order_id: Uuid,
    /// The order's current status: it decides whether the order counts as revenue.
    #[sqlx(try_from = "StatusColumn")]
    pub status: OrderStatus,
    /// The UTC day the order was placed.
    pub day: NaiveDate,
    /// The order's ISO 4217 currency code; every amount here is in it.
    pub currency: String,
    /// The order's total, in the currency's minor units.
    pub total: i64,
    /// The order's lines, for the per-SKU counters.
    #[sqlx(json)]
    pub lines: Vec<Line>,
    /// The sequence of the order's last event folded in.
    pub version: i64,
}

impl Contribution {
    fn counts_as_revenue(&self) -> bool {
        REVENUE_STATUSES.contains(&self.status)
    }
}

/// The contribution an `OrderPlaced` starts; `None` for any other event.
fn placed(sequence: i64, event: &OrderEvent) -> Option<Contribution> {
    match event {
        OrderEvent::OrderPlaced {
            order_id,
            currency,
            lines,
            total,
            placed_at,
            ..
        } => Some(Contribution {
            order_id: *order_id,
            status: OrderStatus::Placed,
            day: placed_at.with_timezone(&Utc).date_naive(),
            currency: currency.as_str().to_string(),
            total: total.minor_units(),
            lines: lines
                .iter()
                .map(|l| Line {
                    sku: l.sku.as_str().to_string(),
                    units: i64::from(l.quantity.get()),
                    revenue: l.line_total().map_or(i64::MAX, |m| m.minor_units()),
                })
                .collect(),
            version: sequence,
        }),
        _ => None,
    }
}

fn next_status(event: &OrderEvent) -> Option<OrderStatus> {
    match event {
        OrderEvent::OrderPlaced { .. } => None,
        OrderEvent::OrderConfirmed { .. } => Some(OrderStatus::Confirmed),
        OrderEvent::OrderRejected { .. } => Some(OrderStatus::Rejected),
        OrderEvent::OrderCancelled { .. } => Some(OrderStatus::Cancelled),
        OrderEvent::ShipmentStarted { .. } => Some(OrderStatus::Shipped),
        OrderEvent::OrderDelivered {} => Some(OrderStatus::Delivered),
    }
}

#[async_trait]
impl Fold for AnalyticsProjection {
    const NAME: &'static str = Self::NAME;
    const VERSION: i32 = 1;
    const TABLES: &'static [TableSpec] = TABLES;
    const COLUMNS: &'static str = "order_id, status, day, currency, total, lines, version";
    type Row = Contribution;

    fn order_id(row: &Contribution) -> Uuid {
        row.order_id
    }

    /// An `OrderPlaced` starts the contribution; later events set its status; events at or
    /// below its version change nothing.
    fn fold(
        &self,
        row: Option<&Contribution>,
        sequence: i64,
        event: &OrderEvent,
    ) -> Option<Contribution> {
        let Some(row) = row else {
            return placed(sequence, event);
        };
        if sequence <= row.version {
            return None;
        }
        let mut row = row.clone();
        if let Some(status) = next_status(event) {
            row.status = status;
        }
        row.version = sequence;
        Some(row)
    }

    /// Upserts the changed `analytics_orders` rows, then adds the counters' net changes
    /// (deleting counters that reach zero).
    async fn write(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        changes: &[Change<Contribution>],
    ) -> Result<(), ProjectionError> {
        upsert_orders(tx, &tables.name(ORDERS), changes).await?;
        let deltas = Deltas::of(changes);
        upsert_revenue(tx, &tables.name(REVENUE), deltas.revenue).await?;
        upsert_status(tx, &tables.name(STATUS), deltas.status).await?;
        upsert_skus(tx, &tables.name(SKUS), deltas.skus).await?;
        Ok(())
    }
}

async fn upsert_orders(
    tx: &mut PgConnection,
    table: &str,
    changes: &[Change<Contribution>],
) -> Result<(), ProjectionError> {
    let rows = changes.iter().map(|c| &c.after);
    let lines = rows
        .clone()
        .map(|r| serde_json::to_string(&r.lines))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ProjectionError::Corrupt {
            position: None,
            event_type: "analytics_orders.lines".into(),
            source,
        })?;
    sqlx::query(&format!(
        "INSERT INTO {table} (order_id, status, day, currency, total, lines, version)
         SELECT i, s, d, c, t, l::jsonb, v
         FROM UNNEST($1::uuid[], $2::text[], $3::date[], $4::text[], $5::int8[], $6::text[],
                     $7::int8[]) AS u(i, s, d, c, t, l, v)
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,
            version = excluded.version"
    ))
    .bind(rows.clone().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.clone().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(rows.clone().map(|r| r.day).collect::<Vec<_>>())
    .bind(
        rows.clone()
            .map(|r| r.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.clone().map(|r| r.total).collect::<Vec<_>>())
    .bind(&lines)
    .bind(rows.map(|r| r.version).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The pure fold and the counter deltas, without a database.

    use std::collections::HashMap;

    use super::*;
    use crate::projection::fixtures::{cancelled, confirmed, placed, shipped};

    const P: AnalyticsProjection = AnalyticsProjection;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    #[test]
    fn placed_remembers_the_contribution_and_later_events_its_status() {
        let id = Uuid::from_u128(1);
        let row = P.fold(None, 1, &placed(id, "EUR")).unwrap();
        assert_eq!(
            (row.status, row.day, row.total),
            (OrderStatus::Placed, day(), 2250)
        );
        assert_eq!(
            row.lines,
            vec![
                Line {
                    sku: "A".into(),
                    units: 2,
                    revenue: 2000
                },
                Line {
                    sku: "B".into(),
                    units: 1,
                    revenue: 250
                },
            ]
        );
        let row = P.fold(Some(&row), 2, &confirmed()).unwrap();
        assert_eq!((row.status, row.version), (OrderStatus::Confirmed, 2));
        assert_eq!(P.fold(Some(&row), 2, &shipped("T")), None);
        assert_eq!(P.fold(None, 3, &shipped("T")), None);
    }

    #[test]
    fn a_confirmation_moves_the_order_into_revenue() {
        let id = Uuid::from_u128(1);
        let before = P.fold(None, 1, &placed(id, "EUR")).unwrap();
        let after = P.fold(Some(&before), 2, &confirmed()).unwrap();
        let deltas = Deltas::of(&[Change {
            before: Some(before),
            after,
        }]);
        assert_eq!(
            deltas.status,
            HashMap::from([((day(), "placed"), -1), ((day(), "confirmed"), 1)])
        );
        assert_eq!(
            deltas.revenue,
            HashMap::from([((day(), "EUR".into()), (1, 2250))])
        );
        assert_eq!(
            deltas.skus,
            HashMap::from([
                ((day(), "A".into(), "EUR".into()), (2, 2000)),
                ((day(), "B".into(), "EUR".into()), (1, 250)),
            ])
        );
    }

    #[test]
    fn a_cancellation_after_the_confirmation_leaves_the_revenue() {
        let id = Uuid::from_u128(1);
        let confirmed_row = P
            .fold(
                Some(&P.fold(None, 1, &placed(id, "USD")).unwrap()),
                2,
                &confirmed(),
            )
            .unwrap();
        let after = P.fold(Some(&confirmed_row), 3, &cancelled()).unwrap();
        let deltas = Deltas::of(&[Change {
            before: Some(confirmed_row),
            after,
        }]);
        assert_eq!(
            deltas.revenue,
            HashMap::from([((day(), "USD".into()), (-1, -2250))])
        );
        assert_eq!(deltas.skus.len(), 2);
        assert!(deltas
            .skus
            .values()
            .all(|(units, revenue)| *units < 0 && *revenue < 0));
    }

    #[test]
    fn changes_that_cancel_out_leave_no_delta() {
        let id = Uuid::from_u128(1);
        let row = P.fold(None, 1, &placed(id, "EUR")).unwrap();
        let bumped = Contribution {
            version: 2,
            ..row.clone()
        };
        assert_eq!(
            Deltas::of(&[Change {
                before: Some(row),
                after: bumped
            }]),
            Deltas::default()
        );
    }
}
