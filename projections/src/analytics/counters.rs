//! The analytics counters (`analytics_revenue`, `analytics_status`, `analytics_skus`): the
//! net changes a batch makes to them ([`Deltas`], pure) and the statements that add them,
//! deleting the counters that reach zero.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::PgConnection;

use super::Contribution;
use crate::projection::Change;

/// Net changes of the counters, by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Deltas {
    pub(super) revenue: HashMap<(NaiveDate, String), (i64, i64)>,
    pub(super) status: HashMap<(NaiveDate, &'static str), i64>,
    pub(super) skus: HashMap<(NaiveDate, String, String), (i64, i64)>,
}

impl Deltas {
    /// What `changes` do to the counters: each order's old contribution subtracted, its new
    /// one added. Keys whose changes cancel out are left out.
    pub(super) fn of(changes: &[Change<Contribution>]) -> Self {
        let mut deltas = Self::default();
        for change in changes {
            if let Some(before) = &change.before {
                deltas.add(before, -1);
            }
            deltas.add(&change.after, 1);
        }
        deltas.revenue.retain(|_, d| *d != (0, 0));
        deltas.status.retain(|_, d| *d != 0);
        deltas.skus.retain(|_, d| *d != (0, 0));
        deltas
    }

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

pub(super) async fn upsert_revenue(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, String), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut currencies, mut orders, mut revenue) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((day, currency), (o, r)) in deltas {
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
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(&days)
    .bind(&currencies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn upsert_status(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, &'static str), i64>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut statuses, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for ((day, status), o) in deltas {
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
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(&days)
    .bind(&statuses)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn upsert_skus(
    tx: &mut PgConnection,
    table: &str,
    deltas: HashMap<(NaiveDate, String, String), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let (mut days, mut skus, mut currencies, mut units, mut revenue) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((day, sku, currency), (u, r)) in deltas {
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
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(&days)
    .bind(&skus)
    .bind(&currencies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
