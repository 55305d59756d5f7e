//! The loyalty worker: a customer earns one point per whole unit of the order's currency when
//! the order ships, and loses them again when the order is cancelled after that. It owns the
//! `loyalty_entries` and `loyalty_balances` tables and answers
//! `GET /v1/customers/{id}/loyalty` ([`account`]).
//!
//! # Rules
//! - Earned on the order's first `ShipmentStarted` (or `OrderDelivered`, for a log that has
//!   no shipment before it): the entry is `earned`, reason `shipped` (or `delivered`), and
//!   the points are `total / 10^digits` of the order's currency, rounded down
//!   ([`points_for`]). An order worth less than one unit earns nothing.
//! - Taken back on an `OrderCancelled` that comes after the order earned: a `revoked` entry
//!   of the same points, negative, reason `cancelled`. (The Order aggregate refuses a
//!   cancellation after shipping today; the rule is here for logs that hold one, and for a
//!   return, which would be one more reason.)
//!
//! # Effectively once, in any order
//! Each entry is a function of the order's log, read when the event is handled, folded up to
//! the event: an entry is keyed by (order, kind), whichever event of the order is handled
//! first or again, the same rows come out. The inbox claim of each event, the entries and the
//! balances are written in one statement, so a redelivery finds the claim (or the entry) and
//! changes nothing, and the balance is always the sum of the entries.
//!
//! A batch is one read of the log (for the orders of its shipping, delivery and cancellation
//! events; the rest need nothing) and one statement, whatever its size: a consumer joining a
//! running system walks the whole log in full batches.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_bus::handler::{handle_each, Delivery, Effects, Handler, HandlerError};
use orderflow_domain::{Currency, Money, OrderStatus};
use orderflow_store::{log, orders, EventEnvelope};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// The durable consumer's name.
pub const NAME: &str = "loyalty";

/// The event types that may change a balance; the others are acknowledged unread.
pub const ACCRUING: [&str; 3] = ["ShipmentStarted", "OrderDelivered", "OrderCancelled"];

/// Most entries one `GET /v1/customers/{id}/loyalty` returns.
pub const MAX_ENTRIES: u32 = 500;

/// The entries `GET /v1/customers/{id}/loyalty` returns when it is not given a `limit`.
pub const DEFAULT_ENTRIES: u32 = 100;

/// How many digits after the decimal point `currency` has (ISO 4217): 0 for JPY, 3 for KWD,
/// 2 for every other code.
pub fn minor_digits(currency: &Currency) -> u32 {
    match currency.as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" => 4,
        _ => 2,
    }
}

/// The points an order of `total` (in minor units of `currency`) is worth: one per whole
/// unit, rounded down (1999 EUR cents are 19 points; 1999 JPY are 1999).
pub fn points_for(total: Money, currency: &Currency) -> i64 {
    total.minor_units() / 10_i64.pow(minor_digits(currency))
}

/// Whether an entry adds points or takes them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// The order shipped (or was delivered): its points are added.
    Earned,
    /// The order was cancelled after it earned: its points are taken back.
    Revoked,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earned => "earned",
            EntryKind::Revoked => "revoked",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "earned" => Some(EntryKind::Earned),
            "revoked" => Some(EntryKind::Revoked),
            _ => None,
        }
    }
}

/// Why an entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryReason {
    /// Earned: a carrier took the order.
    Shipped,
    /// Earned: the order was delivered (with no shipment recorded before).
    Delivered,
    /// Revoked: the order was cancelled after it earned.
    Cancelled,
}

impl EntryReason {
    fn as_str(self) -> &'static str {
        match self {
            EntryReason::Shipped => "shipped",
            EntryReason::Delivered => "delivered",
            EntryReason::Cancelled => "cancelled",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "shipped" => Some(EntryReason::Shipped),
            "delivered" => Some(EntryReason::Delivered),
            "cancelled" => Some(EntryReason::Cancelled),
            _ => None,
        }
    }
}

/// One change of a customer's balance, as the log implies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The order the points are for.
    pub order_id: Uuid,
    /// Earned or revoked; with the order, the entry's key.
    pub kind: EntryKind,
    /// The customer whose balance changes.
    pub customer_id: String,
    /// Positive when earned, negative when revoked.
    pub points: i64,
    /// Why.
    pub reason: EntryReason,
    /// The event that caused it (for an earning, the order's first shipping or delivery).
    pub event_id: Uuid,
    /// That event's global position in the log.
    pub position: Option<i64>,
    /// When that event was stored.
    pub occurred_at: DateTime<Utc>,
}

fn earning(event_type: &str) -> Option<EntryReason> {
    match event_type {
        "ShipmentStarted" => Some(EntryReason::Shipped),
        "OrderDelivered" => Some(EntryReason::Delivered),
        _ => None,
    }
}

/// What `event` means for loyalty, given its order's log (`log`, in sequence order, at
/// least up to the event): the entry it implies, or `None`.
///
/// # Errors
/// A message when the log does not hold the order or an event of it cannot be read.
pub fn entry_for(event: &EventEnvelope, log: &[EventEnvelope]) -> Result<Option<Entry>, String> {
    let is_cancel = event.event_type == "OrderCancelled";
    if earning(&event.event_type).is_none() && !is_cancel {
        return Ok(None);
    }
    let before = &log[..log.partition_point(|e| e.sequence < event.sequence)];
    // The order's first earning event, up to and including this one.
    let earned_by = log
        .iter()
        .take_while(|e| e.sequence <= event.sequence)
        .find(|e| earning(&e.event_type).is_some());
    let Some(earned_by) = earned_by else {
        return Ok(None);
    };
    if is_cancel && earned_by.sequence >= event.sequence {
        return Ok(None);
    }
    let order = orders::fold(before, None)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("order {} not found in the log", event.order_id))?
        .state;
    if is_cancel && !matches!(order.status, OrderStatus::Shipped | OrderStatus::Delivered) {
        return Ok(None);
    }
    let points = points_for(order.total, &order.currency);
    if points == 0 {
        return Ok(None);
    }
    let (kind, points, reason, cause) = if is_cancel {
        (EntryKind::Revoked, -points, EntryReason::Cancelled, event)
    } else {
        let reason = earning(&earned_by.event_type).unwrap_or(EntryReason::Shipped);
        (EntryKind::Earned, points, reason, earned_by)
    };
    Ok(Some(Entry {
        order_id: event.order_id,
        kind,
        customer_id: order.customer_id,
        points,
        reason,
        event_id: cause.event_id,
        position: cause.position,
        occurred_at: cause.recorded_at,
    }))
}

fn describe(entry: &Entry) -> String {
    match entry.kind {
        EntryKind::Earned => format!(
            "customer {} earned {} points for order {} ({})",
            entry.customer_id,
            entry.points,
            entry.order_id,
            entry.reason.as_str()
        ),
        EntryKind::Revoked => format!(
            "customer {} lost {} points of order {} ({})",
            entry.customer_id,
            -entry.points,
            entry.order_id,
            entry.reason.as_str()
        ),
    }
}

/// The loyalty worker.
#[derive(Clone)]
pub struct LoyaltyWorker {
    pool: PgPool,
}

impl LoyaltyWorker {
    /// The worker over `pool` (the event log and the loyalty tables).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Handles `events` (all live, all dry runs, or all forced): one result per event.
    async fn apply(
        &self,
        events: &[&EventEnvelope],
        dry_run: bool,
        ignore_inbox: bool,
    ) -> Vec<Result<Effects, HandlerError>> {
        let mut results: Vec<Result<Effects, HandlerError>> =
            events.iter().map(|_| Ok(Effects::none())).collect();
        let accruing = |e: &EventEnvelope| ACCRUING.contains(&e.event_type.as_str());
        let mut need: Vec<Uuid> = events
            .iter()
            .filter(|e| accruing(e))
            .map(|e| e.order_id)
            .collect();
        if need.is_empty() {
            return results;
        }
        need.sort_unstable();
        need.dedup();
        let logs = match log::events_of_orders(&self.pool, &need).await {
            Ok(logs) => logs,
            Err(error) => {
                let error = format!("reading the orders: {error}");
                return events
                    .iter()
                    .map(|_| Err(HandlerError::retry(&error)))
                    .collect();
            }
        };
        // Each event once; its index, and the entry it implies.
        let mut seen = HashSet::new();
        let mut claims: Vec<(usize, Uuid, Option<Entry>)> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if !accruing(event) || !seen.insert(event.event_id) {
                continue;
            }
            let log = logs.get(&event.order_id).map_or(&[][..], Vec::as_slice);
            match entry_for(event, log) {
                Ok(entry) => claims.push((index, event.event_id, entry)),
                Err(error) => results[index] = Err(HandlerError::retry(error)),
            }
        }
        if dry_run {
            for (index, _, entry) in &claims {
                if let Some(entry) = entry {
                    results[*index] = Ok(Effects::one(format!("would note: {}", describe(entry))));
                }
            }
            return results;
        }
        match self.write(&claims, ignore_inbox).await {
            Ok(written) => {
                for (index, _, entry) in &claims {
                    if let Some(entry) = entry {
                        if written.contains(&(entry.order_id, entry.kind)) {
                            results[*index] = Ok(Effects::one(describe(entry)));
                        }
                    }
                }
            }
            Err(error) => {
                for (index, _, _) in &claims {
                    results[*index] = Err(HandlerError::retry(format!("database: {error}")));
                }
            }
        }
        results
    }

    /// Claims every event, writes the entries of the claimed ones (of all of them when
    /// `ignore_inbox`) and adds what was written to the balances, in one statement; the keys
    /// of the entries written.
    async fn write(
        &self,
        claims: &[(usize, Uuid, Option<Entry>)],
        ignore_inbox: bool,
    ) -> Result<HashSet<(Uuid, EntryKind)>, sqlx::Error> {
        let claimed: Vec<Uuid> = claims.iter().map(|(_, id, _)| *id).collect();
        let mut entries: Vec<(Uuid, &Entry)> = Vec::new();
        let mut keys = HashSet::new();
        for (_, id, entry) in claims {
            if let Some(entry) = entry {
                if keys.insert((entry.order_id, entry.kind)) {
                    entries.push((*id, entry));
                }
            }
        }
        let column = |f: fn(&Entry) -> String| -> Vec<String> {
            entries.iter().map(|(_, e)| f(e)).collect()
        };
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "WITH claim AS (
                 INSERT INTO inbox (consumer, event_id)
                 SELECT $1, e FROM UNNEST($2::uuid[]) AS e ORDER BY e
                 ON CONFLICT DO NOTHING RETURNING event_id),
             entry AS (
                 INSERT INTO loyalty_entries (order_id, kind, customer_id, points, reason,
                     event_id, position, occurred_at)
                 SELECT n.order_id, n.kind, n.customer_id, n.points, n.reason, n.event_id,
                        n.position, n.occurred_at
                   FROM UNNEST($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::bigint[],
                               $8::text[], $9::uuid[], $10::bigint[], $11::timestamptz[])
                        AS n(claimed_by, order_id, kind, customer_id, points, reason,
                             event_id, position, occurred_at)
                  WHERE $12 OR n.claimed_by IN (SELECT event_id FROM claim)
                  ORDER BY n.order_id, n.kind
                 ON CONFLICT DO NOTHING
                 RETURNING order_id, kind, customer_id, points, occurred_at),
             -- Runs although nothing reads it, as every data-modifying WITH does.
             balance AS (
                 INSERT INTO loyalty_balances AS b (customer_id, points, entries, updated_at)
                 SELECT customer_id, sum(points), count(*), now()
                   FROM entry GROUP BY customer_id ORDER BY customer_id
                 ON CONFLICT (customer_id) DO UPDATE
                    SET points = b.points + excluded.points,
                        entries = b.entries + excluded.entries,
                        updated_at = now()
                 RETURNING 1)
             SELECT order_id, kind FROM entry",
        )
        // A plan per call, for the arrays it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(NAME)
        .bind(&claimed)
        .bind(entries.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, e)| e.order_id).collect::<Vec<_>>())
        .bind(column(|e| e.kind.as_str().to_string()))
        .bind(column(|e| e.customer_id.clone()))
        .bind(entries.iter().map(|(_, e)| e.points).collect::<Vec<_>>())
        .bind(column(|e| e.reason.as_str().to_string()))
        .bind(entries.iter().map(|(_, e)| e.event_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, e)| e.position).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|(_, e)| e.occurred_at)
                .collect::<Vec<_>>(),
        )
        .bind(ignore_inbox)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(order_id, kind)| EntryKind::parse(&kind).map(|k| (order_id, k)))
            .collect())
    }
}

#[async_trait]
impl Handler for LoyaltyWorker {
    fn name(&self) -> &str {
        NAME
    }

    async fn resume_after(&self) -> Option<i64> {
        crate::progress::resume_after(&self.pool, NAME).await
    }

    async fn note_handled_through(&self, position: i64) {
        crate::progress::note(&self.pool, NAME, position).await;
    }

    fn batched(&self) -> bool {
        true
    }

    /// A batch of live deliveries in one read of the log and one statement; replays one by
    /// one.
    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        if events.iter().any(|(_, d)| d.dry_run || d.ignore_inbox) {
            return handle_each(self, events).await;
        }
        let events: Vec<&EventEnvelope> = events.iter().map(|(e, _)| e).collect();
        self.apply(&events, false, false).await
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        self.apply(&[event], delivery.dry_run, delivery.ignore_inbox)
            .await
            .pop()
            .unwrap_or_else(|| Ok(Effects::none()))
    }
}

/// One entry of a customer's account, as `GET /v1/customers/{id}/loyalty` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LoyaltyEntry {
    /// The order the points are for.
    pub order_id: Uuid,
    /// `earned` or `revoked`; an order has at most one of each.
    pub kind: EntryKind,
    /// Positive when earned, negative when revoked: one per whole unit of the order's
    /// currency.
    pub points: i64,
    /// Why: `shipped` or `delivered` (earned), `cancelled` (revoked).
    pub reason: EntryReason,
    /// When the event that caused the entry was stored.
    pub at: DateTime<Utc>,
    /// That event's global position in the log.
    pub position: Option<i64>,
}

/// A customer's loyalty points: the balance and the latest entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LoyaltyAccount {
    /// The customer id, trimmed as when the orders were placed.
    pub customer_id: String,
    /// The sum of every entry's points (0 for a customer who has none).
    pub balance: i64,
    /// How many entries the customer has in all.
    pub entries_total: i64,
    /// The newest entries first, at most the `limit` asked for.
    pub entries: Vec<LoyaltyEntry>,
}

/// The loyalty account of `customer_id` with its newest `limit` entries.
///
/// # Errors
/// The database error.
pub async fn account(
    pool: &PgPool,
    customer_id: &str,
    limit: u32,
) -> Result<LoyaltyAccount, sqlx::Error> {
    let (balance, entries_total): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(points), 0)::bigint, coalesce(sum(entries), 0)::bigint
           FROM loyalty_balances WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_one(pool)
    .await?;
    type Row = (Uuid, String, i64, String, DateTime<Utc>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT order_id, kind, points, reason, occurred_at, position FROM loyalty_entries
          WHERE customer_id = $1 ORDER BY occurred_at DESC, order_id, kind DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for (order_id, kind, points, reason, at, position) in rows {
        let (Some(kind), Some(reason)) = (EntryKind::parse(&kind), EntryReason::parse(&reason))
        else {
            return Err(sqlx::Error::Protocol(format!(
                "loyalty entry of order {order_id} has kind {kind:?}, reason {reason:?}"
            )));
        };
        entries.push(LoyaltyEntry {
            order_id,
            kind,
            points,
            reason,
            at,
            position,
        });
    }
    Ok(LoyaltyAccount {
        customer_id: customer_id.to_string(),
        balance,
        entries_total,
        entries,
    })
}

/// The balance of every customer who has entries, from the balances table.
///
/// # Errors
/// The database error.
pub async fn balances(pool: &PgPool) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT customer_id, points FROM loyalty_balances")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn one_point_per_whole_unit_rounded_down() {
        let money = |minor| Money::parse(minor).unwrap();
        assert_eq!(points_for(money(1999), &currency("EUR")), 19);
        assert_eq!(points_for(money(99), &currency("EUR")), 0);
        assert_eq!(points_for(money(1999), &currency("JPY")), 1999);
        assert_eq!(points_for(money(12_345), &currency("KWD")), 12);
    }
}
