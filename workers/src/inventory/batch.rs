//! The inventory worker on a batch: what it does for one placement or one shipment, for all
//! of a batch's placements in one transaction and all of its shipments in one statement.
//!
//! Placements: in one transaction, the inbox claims of every placement (one statement), the
//! decisions already recorded for their orders (one statement, rows locked), the stock of
//! every SKU they ask for (one statement, rows locked in SKU order, the same lock order as a
//! single placement's, so batches and single placements cannot deadlock); then each order is
//! decided in memory in delivery order, all-or-nothing as for one placement, and the new stock
//! levels and decisions are written with one statement each. No overselling holds because
//! the stock rows stay locked from the read to the commit.
//!
//! Shipments: the inbox claims and the deductions in one statement.
//!
//! Inbox claims are inserted in event-id order, so two batches that share events (a
//! redelivery to a competing process) cannot deadlock on them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use orderflow_store::EventEnvelope;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Reservation, ReservedLine, NAME, RESERVATION_NAMESPACE};

/// A decision to record: order, reservation id, status, reserved lines, short SKUs.
type NewRow = (
    Uuid,
    Option<Uuid>,
    &'static str,
    Vec<ReservedLine>,
    Vec<String>,
);

/// One placement of a batch: its event and the quantity wanted per SKU.
pub(super) struct Placement<'a> {
    pub(super) event: &'a EventEnvelope,
    pub(super) wanted: BTreeMap<String, i64>,
}

/// What a batch decided for one placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decided {
    /// Reserved now: the decision to send.
    Reserved(Reservation),
    /// Rejected now (short of the SKUs named): the decision to send.
    Rejected(Reservation),
    /// The order was cancelled before its placement was seen: nothing reserved.
    CancelledFirst,
    /// A decision was recorded by an earlier delivery: send it again.
    Recorded(Reservation),
    /// Handled before and nothing recorded, or the same event twice in the batch.
    Nothing,
}

/// Decides and records every placement of a batch in one transaction.
///
/// # Errors
/// The database error; the transaction is then rolled back and nothing is recorded.
pub(super) async fn place_all(
    pool: &PgPool,
    placements: &[Placement<'_>],
) -> Result<Vec<Decided>, sqlx::Error> {
    let event_ids: Vec<Uuid> = placements.iter().map(|p| p.event.event_id).collect();
    let order_ids: Vec<Uuid> = placements.iter().map(|p| p.event.order_id).collect();
    let mut tx = pool.begin().await?;
    let claimed: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbox (consumer, event_id)
         SELECT $1, e FROM UNNEST($2::uuid[]) AS e ORDER BY e
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(NAME)
    .bind(&event_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let recorded: HashMap<Uuid, Reservation> =
        sqlx::query_as::<_, (Uuid, Option<Uuid>, String, sqlx::types::Json<Vec<String>>)>(
            "SELECT order_id, reservation_id, status, unavailable_skus FROM inventory_reservations
          WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&order_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(order_id, reservation_id, status, skus)| {
            let decision = Reservation {
                order_id,
                reservation_id,
                status,
                unavailable_skus: skus.0,
            };
            (order_id, decision)
        })
        .collect();
    let skus: BTreeSet<&String> = placements.iter().flat_map(|p| p.wanted.keys()).collect();
    let skus: Vec<&String> = skus.into_iter().collect();
    let mut stock: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT sku, available FROM inventory_stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(&skus)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let mut decided = Vec::with_capacity(placements.len());
    let mut seen = HashSet::new();
    let mut new_rows: Vec<NewRow> = Vec::new();
    let mut changed_skus = BTreeSet::new();
    for placement in placements {
        let event = placement.event;
        if !seen.insert(event.event_id) {
            decided.push(Decided::Nothing);
            continue;
        }
        match recorded.get(&event.order_id) {
            Some(r) if r.status == "cancelled" => {
                decided.push(Decided::CancelledFirst);
                continue;
            }
            Some(r) => {
                decided.push(Decided::Recorded(r.clone()));
                continue;
            }
            None if !claimed.contains(&event.event_id) => {
                // Handled before, yet nothing recorded: cannot happen (same transaction).
                decided.push(Decided::Nothing);
                continue;
            }
            None => {}
        }
        let short: Vec<String> = placement
            .wanted
            .iter()
            .filter(|(sku, quantity)| stock.get(*sku).is_none_or(|a| *a < **quantity))
            .map(|(sku, _)| sku.clone())
            .collect();
        let lines: Vec<ReservedLine> = placement
            .wanted
            .iter()
            .map(|(sku, quantity)| ReservedLine {
                sku: sku.clone(),
                quantity: *quantity,
            })
            .collect();
        if short.is_empty() {
            for (sku, quantity) in &placement.wanted {
                if let Some(available) = stock.get_mut(sku) {
                    *available -= quantity;
                    changed_skus.insert(sku.clone());
                }
            }
            let reservation_id = Uuid::new_v5(&RESERVATION_NAMESPACE, event.event_id.as_bytes());
            new_rows.push((
                event.order_id,
                Some(reservation_id),
                "reserved",
                lines,
                vec![],
            ));
            decided.push(Decided::Reserved(Reservation {
                order_id: event.order_id,
                reservation_id: Some(reservation_id),
                status: "reserved".into(),
                unavailable_skus: vec![],
            }));
        } else {
            // As for one placement: a rejected order records no lines.
            new_rows.push((event.order_id, None, "rejected", vec![], short.clone()));
            decided.push(Decided::Rejected(Reservation {
                order_id: event.order_id,
                reservation_id: None,
                status: "rejected".into(),
                unavailable_skus: short,
            }));
        }
    }
    if !changed_skus.is_empty() {
        let levels: Vec<i64> = changed_skus.iter().map(|sku| stock[sku]).collect();
        let skus: Vec<String> = changed_skus.into_iter().collect();
        sqlx::query(
            "UPDATE inventory_stock s SET available = n.available, updated_at = now()
               FROM UNNEST($1::text[], $2::int8[]) AS n(sku, available)
              WHERE s.sku = n.sku",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&skus)
        .bind(&levels)
        .execute(&mut *tx)
        .await?;
    }
    if !new_rows.is_empty() {
        let mut orders = Vec::new();
        let mut reservations = Vec::new();
        let mut statuses = Vec::new();
        let mut lines = Vec::new();
        let mut shorts = Vec::new();
        for (order, reservation, status, reserved, short) in new_rows {
            orders.push(order);
            reservations.push(reservation);
            statuses.push(status);
            lines.push(serde_json::to_value(reserved).unwrap_or_default());
            shorts.push(serde_json::to_value(short).unwrap_or_default());
        }
        sqlx::query(
            "INSERT INTO inventory_reservations
                 (order_id, reservation_id, status, lines, unavailable_skus)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[])",
        )
        .bind(&orders)
        .bind(&reservations)
        .bind(&statuses)
        .bind(&lines)
        .bind(&shorts)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(decided)
}

/// Claims every shipment of a batch and deducts the reservations of the claimed ones, in one
/// statement: the orders whose reserved stock was deducted now.
///
/// # Errors
/// The database error; nothing is then claimed or deducted.
pub(super) async fn ship_all(
    pool: &PgPool,
    events: &[&EventEnvelope],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let order_ids: Vec<Uuid> = events.iter().map(|e| e.order_id).collect();
    let deducted = sqlx::query_scalar(
        "WITH claim AS (
             INSERT INTO inbox (consumer, event_id)
             SELECT $1, e FROM UNNEST($2::uuid[]) AS e ORDER BY e
             ON CONFLICT DO NOTHING RETURNING event_id)
         UPDATE inventory_reservations r SET status = 'shipped', updated_at = now()
           FROM UNNEST($2::uuid[], $3::uuid[]) AS x(event_id, order_id)
           JOIN claim c ON c.event_id = x.event_id
          WHERE r.order_id = x.order_id AND r.status = 'reserved'
         RETURNING r.order_id",
    )
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(NAME)
    .bind(&event_ids)
    .bind(&order_ids)
    .fetch_all(pool)
    .await?;
    Ok(deducted.into_iter().collect())
}
