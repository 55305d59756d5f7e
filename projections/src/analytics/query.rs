//! [`summary`]: the analytics of orders placed in a range of UTC days, read from the live
//! counter tables in one snapshot.

use std::collections::HashMap;

use chrono::NaiveDate;
use orderflow_domain::OrderStatus;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{AnalyticsProjection, REVENUE, REVENUE_STATUSES, SKUS, STATUS};

/// Revenue of one day in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct DailyRevenue {
    /// The UTC day the orders were placed.
    pub day: NaiveDate,
    /// The ISO 4217 currency code of the orders and of `revenue`.
    pub currency: String,
    /// Orders placed that day that count as revenue.
    pub orders: i64,
    /// In the currency's minor unit.
    pub revenue: i64,
}

/// Revenue of the whole range in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurrencyRevenue {
    /// The ISO 4217 currency code of the orders and of `revenue`.
    pub currency: String,
    /// Orders placed in the range that count as revenue.
    pub orders: i64,
    /// Their totals summed, in the currency's minor unit.
    pub revenue: i64,
}

/// How many orders are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusCount {
    /// The status.
    pub status: OrderStatus,
    /// Orders placed in the range whose current status it is.
    pub orders: i64,
}

/// Units and revenue of one SKU in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct SkuSales {
    /// The SKU sold.
    pub sku: String,
    /// The ISO 4217 currency code of `revenue`; a SKU sold in two currencies has two rows.
    pub currency: String,
    /// Units of it in orders that count as revenue.
    pub units: i64,
    /// Those lines' totals summed, in the currency's minor unit.
    pub revenue: i64,
}

/// The answer of `GET /v1/analytics/summary`: orders placed between `from` and `to`
/// (inclusive UTC days; open when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnalyticsSummary {
    /// The first UTC day included, as asked; `None`: from the first order on.
    pub from: Option<NaiveDate>,
    /// The last UTC day included, as asked; `None`: up to the latest order.
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

/// Why [`summary`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// `from` is after `to` (the caller's mistake, 400).
    #[error("from ({from}) is after to ({to})")]
    InvalidRange {
        /// The first day asked for.
        from: NaiveDate,
        /// The last day asked for, before `from`.
        to: NaiveDate,
    },
    /// PostgreSQL failed or could not be reached (500).
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
    let revenue_per_day: Vec<DailyRevenue> = sqlx::query_as(&format!(
        "SELECT day, currency, orders, revenue FROM {REVENUE} WHERE {range} ORDER BY day, currency"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
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
    let counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT status, sum(orders)::int8 AS orders FROM {STATUS} WHERE {range} GROUP BY status"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let orders_by_status = OrderStatus::ALL
        .into_iter()
        .map(|status| StatusCount {
            status,
            orders: counts.get(status.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let skus: Vec<SkuSales> = sqlx::query_as(&format!(
        "SELECT sku, currency, sum(units)::int8 AS units, sum(revenue)::int8 AS revenue
         FROM {SKUS} WHERE {range}
         GROUP BY sku, currency ORDER BY revenue DESC, sku, currency"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
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
