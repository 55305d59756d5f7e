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
//! hold the sums. A fold subtracts an order's old contribution and adds its new one; rows
//! whose counters reach zero are deleted, so a rebuild and the live fold hold the same rows.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use orderflow_domain::{OrderEvent, OrderStatus};
use orderflow_store::EventEnvelope;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::order_summary::decode_all;
use crate::projection::{Projection, ProjectionError, TableSpec, Tables};

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
    pub const NAME: &'static str = "analytics";
}

/// One line as analytics remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Line {
    sku: String,
    units: i64,
    revenue: i64,
}

/// An order's contribution to the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    status: OrderStatus,
    day: NaiveDate,
    currency: String,
    total: i64,
    lines: Vec<Line>,
    version: i64,
}

impl Contribution {
    fn counts_as_revenue(&self) -> bool {
        REVENUE_STATUSES.contains(&self.status)
    }
}

/// Net changes of the counters, by key.
#[derive(Debug, Default)]
struct Deltas {
    revenue: HashMap<(NaiveDate, String), (i64, i64)>,
    status: HashMap<(NaiveDate, &'static str), i64>,
    skus: HashMap<(NaiveDate, String, String), (i64, i64)>,
}

impl Deltas {
    fn add(&mut self, c: &Contribution, sign: i64) {
        *self.status.entry((c.day, c.status.as_str())).or_default() += sign;
        if c.counts_as_revenue() {
            let r = self.revenue.entry((c.day, c.currency.clone())).or_default();
            r.0 += sign;
            r.1 += sign * c.total;
            for line in &c.lines {
                let s = self
                    .skus
                    .entry((c.day, line.sku.clone(), c.currency.clone()))
                    .or_default();
                s.0 += sign * line.units;
                s.1 += sign * line.revenue;
            }
        }
    }
}

fn placed(sequence: i64, event: &OrderEvent) -> Option<Contribution> {
    match event {
        OrderEvent::OrderPlaced {
            currency,
            lines,
            total,
            placed_at,
            ..
        } => Some(Contribution {
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
impl Projection for AnalyticsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        event: &EventEnvelope,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, tables, std::slice::from_ref(event))
            .await
    }

    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let decoded = decode_all(events)?;
        // Every touched order is read (not only those the batch does not place), so a
        // repeated `OrderPlaced` can never count an order twice.
        let mut load: Vec<Uuid> = decoded.iter().map(|(e, _)| e.order_id).collect();
        load.sort_unstable();
        load.dedup();
        let orders_table = tables.name(ORDERS);
        // Each touched order: what it contributed before the batch, and what it does now.
        let mut before: HashMap<Uuid, Contribution> = HashMap::new();
        if !load.is_empty() {
            let rows = sqlx::query(&format!(
                "SELECT order_id, status, day, currency, total, lines::text AS lines, version
                 FROM {orders_table} WHERE order_id = ANY($1)"
            ))
            .bind(&load)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let status: String = row.try_get("status")?;
                let lines: String = row.try_get("lines")?;
                let contribution = Contribution {
                    status: OrderStatus::parse(&status).unwrap_or(OrderStatus::Placed),
                    day: row.try_get("day")?,
                    currency: row.try_get("currency")?,
                    total: row.try_get("total")?,
                    lines: serde_json::from_str(&lines).map_err(|source| {
                        ProjectionError::Corrupt {
                            position: None,
                            event_type: "analytics_orders.lines".into(),
                            source,
                        }
                    })?,
                    version: row.try_get("version")?,
                };
                before.insert(row.try_get("order_id")?, contribution);
            }
        }
        let mut now: HashMap<Uuid, Contribution> = before.clone();
        let mut changed: Vec<Uuid> = Vec::new();
        for (envelope, event) in &decoded {
            let id = envelope.order_id;
            match now.get_mut(&id) {
                Some(c) if envelope.sequence > c.version => {
                    if let Some(status) = next_status(event) {
                        c.status = status;
                    }
                    c.version = envelope.sequence;
                }
                Some(_) => continue,
                None => match placed(envelope.sequence, event) {
                    Some(c) => {
                        now.insert(id, c);
                    }
                    None => continue,
                },
            }
            changed.push(id);
        }
        changed.sort_unstable();
        changed.dedup();
        if changed.is_empty() {
            return Ok(());
        }
        let mut deltas = Deltas::default();
        let mut orders = OrderColumns::default();
        for id in &changed {
            if let Some(old) = before.get(id) {
                deltas.add(old, -1);
            }
            if let Some(new) = now.get(id) {
                deltas.add(new, 1);
                orders.push(*id, new)?;
            }
        }
        orders.upsert(tx, &orders_table).await?;
        upsert_revenue(tx, &tables.name(REVENUE), deltas.revenue).await?;
        upsert_status(tx, &tables.name(STATUS), deltas.status).await?;
        upsert_skus(tx, &tables.name(SKUS), deltas.skus).await?;
        Ok(())
    }
}

#[derive(Default)]
struct OrderColumns {
    ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    days: Vec<NaiveDate>,
    currencies: Vec<String>,
    totals: Vec<i64>,
    lines: Vec<String>,
    versions: Vec<i64>,
}

impl OrderColumns {
    fn push(&mut self, id: Uuid, c: &Contribution) -> Result<(), ProjectionError> {
        self.ids.push(id);
        self.statuses.push(c.status.as_str());
        self.days.push(c.day);
        self.currencies.push(c.currency.clone());
        self.totals.push(c.total);
        self.lines
            .push(
                serde_json::to_string(&c.lines).map_err(|source| ProjectionError::Corrupt {
                    position: None,
                    event_type: "analytics_orders.lines".into(),
                    source,
                })?,
            );
        self.versions.push(c.version);
        Ok(())
    }

    async fn upsert(&self, tx: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "INSERT INTO {table} (order_id, status, day, currency, total, lines, version)
             SELECT i, s, d, c, t, l::jsonb, v
             FROM UNNEST($1::uuid[], $2::text[], $3::date[], $4::text[], $5::int8[], $6::text[],
                         $7::int8[]) AS u(i, s, d, c, t, l, v)
             ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,
                version = excluded.version"
        ))
        .bind(&self.ids)
        .bind(&self.statuses)
        .bind(&self.days)
        .bind(&self.currencies)
        .bind(&self.totals)
        .bind(&self.lines)
        .bind(&self.versions)
        .execute(tx)
        .await?;
        Ok(())
    }
}

async fn upsert_revenue(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, String), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut currencies, mut orders, mut revenue) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((day, currency), (o, r)) in deltas.into_iter().filter(|(_, d)| *d != (0, 0)) {
        days.push(day);
        currencies.push(currency);
        orders.push(o);
        revenue.push(r);
    }
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (day, currency, orders, revenue)
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::int8[], $4::int8[])
         ON CONFLICT (day, currency) DO UPDATE SET orders = t.orders + excluded.orders,
            revenue = t.revenue + excluded.revenue"
    ))
    .bind(&days)
    .bind(&currencies)
    .bind(&orders)
    .bind(&revenue)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {table} t USING UNNEST($1::date[], $2::text[]) AS k(day, currency)
         WHERE t.day = k.day AND t.currency = k.currency AND t.orders = 0 AND t.revenue = 0"
    ))
    .bind(&days)
    .bind(&currencies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn upsert_status(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, &'static str), i64>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut statuses, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for ((day, status), o) in deltas.into_iter().filter(|(_, d)| *d != 0) {
        days.push(day);
        statuses.push(status);
        orders.push(o);
    }
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (day, status, orders)
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::int8[])
         ON CONFLICT (day, status) DO UPDATE SET orders = t.orders + excluded.orders"
    ))
    .bind(&days)
    .bind(&statuses)
    .bind(&orders)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {table} t USING UNNEST($1::date[], $2::text[]) AS k(day, status)
         WHERE t.day = k.day AND t.status = k.status AND t.orders = 0"
    ))
    .bind(&days)
    .bind(&statuses)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn upsert_skus(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, String, String), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut skus, mut currencies, mut units, mut revenue) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((day, sku, currency), (u, r)) in deltas.into_iter().filter(|(_, d)| *d != (0, 0)) {
        days.push(day);
        skus.push(sku);
        currencies.push(currency);
        units.push(u);
        revenue.push(r);
    }
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (day, sku, currency, units, revenue)
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[], $4::int8[], $5::int8[])
         ON CONFLICT (day, sku, currency) DO UPDATE SET units = t.units + excluded.units,
            revenue = t.revenue + excluded.revenue"
    ))
    .bind(&days)
    .bind(&skus)
    .bind(&currencies)
    .bind(&units)
    .bind(&revenue)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {table} t USING UNNEST($1::date[], $2::text[], $3::text[])
             AS k(day, sku, currency)
         WHERE t.day = k.day AND t.sku = k.sku AND t.currency = k.currency
           AND t.units = 0 AND t.revenue = 0"
    ))
    .bind(&days)
    .bind(&skus)
    .bind(&currencies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Revenue of one day in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DailyRevenue {
    pub day: NaiveDate,
    pub currency: String,
    /// Orders placed that day that count as revenue.
    pub orders: i64,
    /// In the currency's minor unit.
    pub revenue: i64,
}

/// Revenue of the whole range in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub orders: i64,
    pub revenue: i64,
}

/// How many orders are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub orders: i64,
}

/// Units and revenue of one SKU in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkuSales {
    pub sku: String,
    pub currency: String,
    pub units: i64,
    pub revenue: i64,
}

/// The answer of `GET /v1/analytics/summary`: orders placed between `from` and `to`
/// (inclusive UTC days; open when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnalyticsSummary {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// The statuses counted as revenue: confirmed, shipped, delivered.
    pub revenue_statuses: Vec<OrderStatus>,
    /// Per day and currency, by day then currency.
    pub revenue_per_day: Vec<DailyRevenue>,
    /// Per currency over the range.
    pub revenue_totals: Vec<CurrencyRevenue>,
    /// Every status with its count (zero included), in lifecycle order.
    pub orders_by_status: Vec<StatusCount>,
    /// Per SKU and currency, by revenue (highest first), then SKU.
    pub skus: Vec<SkuSales>,
    /// The last global position folded in: the summary is the log up to here.
    pub position: i64,
}

/// The query string of `GET /v1/analytics/summary`: inclusive UTC days (`2026-11-25`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// First day (inclusive) of the orders' placement; open when absent.
    pub from: Option<NaiveDate>,
    /// Last day (inclusive); open when absent.
    pub to: Option<NaiveDate>,
}

/// Why [`summary`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// `from` is after `to` (the caller's mistake, 400).
    #[error("from ({from}) is after to ({to})")]
    InvalidRange { from: NaiveDate, to: NaiveDate },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The analytics of orders placed from `from` to `to` (inclusive, UTC days; either open).
///
/// # Errors
/// [`SummaryError::InvalidRange`] when `from > to`, [`SummaryError::Database`] on failure.
pub async fn summary(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<AnalyticsSummary, SummaryError> {
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(SummaryError::InvalidRange { from, to });
        }
    }
    // One snapshot, so the parts agree with each other and with the position.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let range = "($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2)";
    let revenue_per_day = sqlx::query(&format!(
        "SELECT day, currency, orders, revenue FROM {REVENUE} WHERE {range} ORDER BY day, currency"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(DailyRevenue {
            day: r.try_get("day")?,
            currency: r.try_get("currency")?,
            orders: r.try_get("orders")?,
            revenue: r.try_get("revenue")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let mut totals: Vec<CurrencyRevenue> = Vec::new();
    for day in &revenue_per_day {
        match totals.iter_mut().find(|t| t.currency == day.currency) {
            Some(t) => {
                t.orders += day.orders;
                t.revenue += day.revenue;
            }
            None => totals.push(CurrencyRevenue {
                currency: day.currency.clone(),
                orders: day.orders,
                revenue: day.revenue,
            }),
        }
    }
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    let counts: HashMap<String, i64> = sqlx::query(&format!(
        "SELECT status, sum(orders)::int8 AS orders FROM {STATUS} WHERE {range} GROUP BY status"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("status")?, r.try_get("orders")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let orders_by_status = OrderStatus::ALL
        .into_iter()
        .map(|status| StatusCount {
            status,
            orders: counts.get(status.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let skus = sqlx::query(&format!(
        "SELECT sku, currency, sum(units)::int8 AS units, sum(revenue)::int8 AS revenue
         FROM {SKUS} WHERE {range}
         GROUP BY sku, currency ORDER BY revenue DESC, sku, currency"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(SkuSales {
            sku: r.try_get("sku")?,
            currency: r.try_get("currency")?,
            units: r.try_get("units")?,
            revenue: r.try_get("revenue")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let position: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(position), 0) FROM projection_checkpoints WHERE name = $1",
    )
    .bind(AnalyticsProjection::NAME)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(AnalyticsSummary {
        from,
        to,
        revenue_statuses: REVENUE_STATUSES.to_vec(),
        revenue_per_day,
        revenue_totals: totals,
        orders_by_status,
        skus,
        position,
    })
}
