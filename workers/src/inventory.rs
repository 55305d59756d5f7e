//! The inventory worker: stock per SKU, all-or-nothing reservations for placed orders, and
//! their release on cancellation (docs/DESIGN.md, guarantees 3, 4 and 7: effectively-once
//! effects, no overselling, order-independent handlers).
//!
//! On `OrderPlaced`, in one transaction with the inbox claim, every line's SKU is decremented
//! with `available >= quantity` as the condition (SKUs in sorted order, so concurrent orders
//! cannot deadlock); when any line is short the decrements are rolled back to a savepoint and
//! the order is recorded as rejected. The decision is recorded per order, then
//! `ConfirmOrder{reservation_id}` or `RejectOrder{unavailable_skus}` is sent. A redelivery
//! finds the inbox claim and re-sends the command from the recorded decision (the aggregate
//! makes repeats no-ops), so a crash between commit and command loses nothing.
//!
//! On `OrderCancelled`: a reservation is released (stock given back) exactly once; when the
//! cancellation arrives before the placement, a tombstone is left so that the placement
//! reserves nothing. A confirmation that reaches an already cancelled order changes nothing
//! (the aggregate), and the cancellation's release gives the stock back.
//!
//! On `ShipmentStarted`: the order's reservation is deducted for good (status `shipped`): the
//! units left the warehouse, so they no longer count as reserved.

mod batch;

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use orderflow_domain::{OrderCommand, OrderEvent, OrderLine, Sku};
use orderflow_store::{inbox, EventEnvelope, OrderStore};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::command;
use orderflow_bus::handler::{handle_each, Delivery, Effects, Handler, HandlerError};

/// The durable consumer's name.
pub const NAME: &str = "inventory";

/// The namespace of reservation ids (v5 of the `OrderPlaced` event id).
const RESERVATION_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7266_6c6f_0000_0000_0000_0001);

/// Errors of the stock functions the HTTP edge calls.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A stock level below zero was asked for (the amount asked, in units); nothing changed.
    #[error("available stock cannot be negative (got {0})")]
    Negative(i64),
    /// PostgreSQL failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The stock of one SKU: what can still be reserved, and what is held by reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLevel {
    /// The SKU this stock is of.
    pub sku: String,
    /// Units on hand that new reservations can still take; never negative.
    pub available: i64,
    /// Units held by live reservations (status `reserved`), already taken out of `available`.
    pub reserved: i64,
}

/// Sets the available stock of `sku` (what reservations can still take), creating it.
///
/// # Errors
/// [`InventoryError::Negative`] for a negative amount, or the database error.
pub async fn set_stock(
    pool: &PgPool,
    sku: &Sku,
    available: i64,
) -> Result<StockLevel, InventoryError> {
    if available < 0 {
        return Err(InventoryError::Negative(available));
    }
    sqlx::query(
        "INSERT INTO inventory_stock (sku, available) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET available = excluded.available, updated_at = now()",
    )
    .bind(sku.as_str())
    .bind(available)
    .execute(pool)
    .await?;
    Ok(get_stock(pool, sku).await?.unwrap_or(StockLevel {
        sku: sku.as_str().to_string(),
        available,
        reserved: 0,
    }))
}

/// The stock of `sku`, or `None` when it was never set.
///
/// # Errors
/// The database error.
pub async fn get_stock(pool: &PgPool, sku: &Sku) -> Result<Option<StockLevel>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT s.available,
                coalesce((SELECT sum((l ->> 'quantity')::bigint)
                            FROM inventory_reservations r, jsonb_array_elements(r.lines) l
                           WHERE r.status = 'reserved' AND l ->> 'sku' = s.sku), 0)::bigint
           FROM inventory_stock s WHERE s.sku = $1",
    )
    .bind(sku.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(available, reserved)| StockLevel {
        sku: sku.as_str().to_string(),
        available,
        reserved,
    }))
}

/// What inventory decided for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// The order the decision is for (one decision per order).
    pub order_id: Uuid,
    /// The id sent with `ConfirmOrder`, derived from the `OrderPlaced` event id so that a
    /// redelivery yields the same one; `None` when the order was rejected or cancelled first.
    pub reservation_id: Option<Uuid>,
    /// `reserved`, `rejected`, `released`, `cancelled` or `shipped` (see the migrations).
    pub status: String,
    /// The SKUs that were short when the order was rejected; empty otherwise.
    pub unavailable_skus: Vec<String>,
}

/// The decision recorded for `order_id`, if any.
///
/// # Errors
/// The database error.
pub async fn reservation(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<Reservation>, sqlx::Error> {
    let row: Option<(Option<Uuid>, String, sqlx::types::Json<Vec<String>>)> = sqlx::query_as(
        "SELECT reservation_id, status, unavailable_skus FROM inventory_reservations
          WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(reservation_id, status, skus)| Reservation {
        order_id,
        reservation_id,
        status,
        unavailable_skus: skus.0,
    }))
}

/// The command a recorded decision calls for: `None` for a released reservation or a
/// tombstone (the order is cancelled, nothing to tell it).
fn decision_command(decision: &Reservation) -> Option<OrderCommand> {
    match (decision.status.as_str(), decision.reservation_id) {
        ("reserved", Some(reservation_id)) => Some(OrderCommand::ConfirmOrder { reservation_id }),
        ("rejected", _) => Some(OrderCommand::RejectOrder {
            reason: "insufficient stock".into(),
            unavailable_skus: decision
                .unavailable_skus
                .iter()
                .filter_map(|s| Sku::parse(s).ok())
                .collect(),
        }),
        _ => None,
    }
}

/// `2 x SKU-1, 1 x SKU-2`: quantities per SKU in words, for effects.
fn quantities(wanted: &BTreeMap<String, i64>) -> String {
    wanted
        .iter()
        .map(|(sku, quantity)| format!("{quantity} x {sku}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Quantities per SKU, in SKU order (one lock order for every transaction).
fn wanted(lines: &[OrderLine]) -> BTreeMap<String, i64> {
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines {
        *wanted.entry(line.sku.as_str().to_string()).or_default() += i64::from(line.quantity.get());
    }
    wanted
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReservedLine {
    sku: String,
    quantity: i64,
}

/// The inventory worker.
#[derive(Clone)]
pub struct InventoryWorker {
    pool: PgPool,
    store: OrderStore,
}

impl InventoryWorker {
    /// The worker over `pool`, which holds both the stock tables and the order store.
    pub fn new(pool: PgPool) -> Self {
        let store = OrderStore::new(pool.clone());
        Self { pool, store }
    }

    async fn on_placed(
        &self,
        event: &EventEnvelope,
        lines: &[OrderLine],
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        let wanted = wanted(lines);
        if delivery.dry_run {
            return Ok(Effects::one(format!(
                "would reserve {wanted:?} for order {}",
                event.order_id
            )));
        }
        let mut tx = self.pool.begin().await?;
        let claimed = inbox::claim(&mut tx, NAME, event.event_id).await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT status FROM inventory_reservations WHERE order_id = $1 FOR UPDATE",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *tx)
        .await?;
        match existing.as_deref() {
            Some("cancelled") => {
                tx.commit().await?;
                return Ok(Effects::one(format!(
                    "order {} was cancelled before it was seen placed: nothing reserved",
                    event.order_id
                )));
            }
            Some(_) => {
                tx.commit().await?;
                return self.resend(event).await;
            }
            None if !claimed && !delivery.ignore_inbox => {
                // Handled before, yet nothing recorded: cannot happen (same transaction).
                tx.commit().await?;
                return Ok(Effects::none());
            }
            None => {}
        }
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        let mut short = Vec::new();
        for (sku, quantity) in &wanted {
            let taken = sqlx::query(
                "UPDATE inventory_stock SET available = available - $2, updated_at = now()
                  WHERE sku = $1 AND available >= $2",
            )
            .bind(sku)
            .bind(quantity)
            .execute(&mut *savepoint)
            .await?
            .rows_affected();
            if taken == 0 {
                short.push(sku.clone());
            }
        }
        let reserved_lines: Vec<ReservedLine> = wanted
            .iter()
            .map(|(sku, quantity)| ReservedLine {
                sku: sku.clone(),
                quantity: *quantity,
            })
            .collect();
        let reservation_id = Uuid::new_v5(&RESERVATION_NAMESPACE, event.event_id.as_bytes());
        if short.is_empty() {
            savepoint.commit().await?;
            sqlx::query(
                "INSERT INTO inventory_reservations (order_id, reservation_id, status, lines)
                 VALUES ($1, $2, 'reserved', $3)",
            )
            .bind(event.order_id)
            .bind(reservation_id)
            .bind(sqlx::types::Json(&reserved_lines))
            .execute(&mut *tx)
            .await?;
        } else {
            savepoint.rollback().await?;
            sqlx::query(
                "INSERT INTO inventory_reservations (order_id, status, unavailable_skus)
                 VALUES ($1, 'rejected', $2)",
            )
            .bind(event.order_id)
            .bind(sqlx::types::Json(&short))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut effects = if short.is_empty() {
            Effects::one(format!(
                "reserved {} for order {}",
                quantities(&wanted),
                event.order_id
            ))
        } else {
            Effects::one(format!(
                "rejected order {}: short of {short:?}",
                event.order_id
            ))
        };
        // The decision just committed, sent without reading it back.
        let decision = Reservation {
            order_id: event.order_id,
            reservation_id: short.is_empty().then_some(reservation_id),
            status: if short.is_empty() {
                "reserved"
            } else {
                "rejected"
            }
            .into(),
            unavailable_skus: short,
        };
        for line in self.send_decision(event, &decision).await?.0 {
            effects.push(line);
        }
        Ok(effects)
    }

    /// Sends the command that the recorded decision for the order calls for.
    async fn resend(&self, event: &EventEnvelope) -> Result<Effects, HandlerError> {
        match reservation(&self.pool, event.order_id).await? {
            Some(decision) => self.send_decision(event, &decision).await,
            None => Ok(Effects::none()),
        }
    }

    /// Sends the command that `decision` calls for.
    async fn send_decision(
        &self,
        event: &EventEnvelope,
        decision: &Reservation,
    ) -> Result<Effects, HandlerError> {
        let Some(command) = decision_command(decision) else {
            return Ok(Effects::none());
        };
        let name = command.name();
        command::send(&self.store, event, NAME, event.order_id, command).await?;
        Ok(Effects::one(format!(
            "sent {name} to order {}",
            event.order_id
        )))
    }

    /// Handles a batch: its placements together ([`batch::place_all`]), its shipments
    /// together ([`batch::ship_all`]), its cancellations one by one. Falls back to one event
    /// at a time when an order has a placement and another handled event in the same batch
    /// (their order then matters), and for replays (dry runs, forced repeats).
    async fn handle_many(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        let decoded: Vec<_> = events.iter().map(|(e, _)| e.decode()).collect();
        let placed: HashSet<Uuid> = events
            .iter()
            .zip(&decoded)
            .filter(|(_, d)| matches!(d, Ok(OrderEvent::OrderPlaced { .. })))
            .map(|((e, _), _)| e.order_id)
            .collect();
        let entangled = events.iter().zip(&decoded).any(|((e, _), d)| {
            matches!(
                d,
                Ok(OrderEvent::OrderCancelled { .. } | OrderEvent::ShipmentStarted { .. })
            ) && placed.contains(&e.order_id)
        });
        let replay = events.iter().any(|(_, d)| d.dry_run || d.ignore_inbox);
        if entangled || replay {
            return handle_each(self, events).await;
        }
        let mut results: Vec<Option<Result<Effects, HandlerError>>> =
            events.iter().map(|_| None).collect();
        let mut placements = Vec::new();
        let mut shipments = Vec::new();
        for (index, ((event, delivery), decoded)) in events.iter().zip(decoded).enumerate() {
            match decoded {
                Ok(OrderEvent::OrderPlaced { lines, .. }) => {
                    placements.push((
                        index,
                        batch::Placement {
                            event,
                            wanted: wanted(&lines),
                        },
                    ));
                }
                Ok(OrderEvent::ShipmentStarted { .. }) => shipments.push((index, event)),
                Ok(OrderEvent::OrderCancelled { .. }) => {
                    results[index] = Some(self.on_cancelled(event, *delivery).await);
                }
                Ok(_) => results[index] = Some(Ok(Effects::none())),
                Err(error) => {
                    results[index] = Some(Err(HandlerError::give_up(format!(
                        "unreadable {} event: {error}",
                        event.event_type
                    ))));
                }
            }
        }
        if !shipments.is_empty() {
            let batch: Vec<&EventEnvelope> = shipments.iter().map(|(_, e)| *e).collect();
            match batch::ship_all(&self.pool, &batch).await {
                Ok(deducted) => {
                    for (index, event) in &shipments {
                        results[*index] = Some(Ok(if deducted.contains(&event.order_id) {
                            Effects::one(format!(
                                "deducted the reserved stock of order {}: shipped",
                                event.order_id
                            ))
                        } else {
                            Effects::none()
                        }));
                    }
                }
                Err(error) => {
                    for (index, _) in &shipments {
                        results[*index] =
                            Some(Err(HandlerError::retry(format!("database: {error}"))));
                    }
                }
            }
        }
        if !placements.is_empty() {
            let batch: Vec<batch::Placement<'_>> = placements
                .iter()
                .map(|(_, p)| batch::Placement {
                    event: p.event,
                    wanted: p.wanted.clone(),
                })
                .collect();
            match batch::place_all(&self.pool, &batch).await {
                Ok(decided) => {
                    for (index, result) in self.finish_placements(&placements, decided).await {
                        results[index] = Some(result);
                    }
                }
                Err(error) => {
                    for (index, _) in &placements {
                        results[*index] =
                            Some(Err(HandlerError::retry(format!("database: {error}"))));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(Effects::none())))
            .collect()
    }

    /// The effects of the placements decided in a batch, after sending the commands their
    /// decisions call for, all at once ([`command::send_all_allowing`]).
    async fn finish_placements(
        &self,
        placements: &[(usize, batch::Placement<'_>)],
        decided: Vec<batch::Decided>,
    ) -> Vec<(usize, Result<Effects, HandlerError>)> {
        let mut finished = Vec::with_capacity(placements.len());
        let mut commands = Vec::new();
        let mut waiting = Vec::new();
        for ((index, placement), decided) in placements.iter().zip(decided) {
            let event = placement.event;
            let (effects, decision) = match decided {
                batch::Decided::Reserved(decision) => (
                    Effects::one(format!(
                        "reserved {} for order {}",
                        quantities(&placement.wanted),
                        event.order_id
                    )),
                    decision,
                ),
                batch::Decided::Rejected(decision) => (
                    Effects::one(format!(
                        "rejected order {}: short of {:?}",
                        event.order_id, decision.unavailable_skus
                    )),
                    decision,
                ),
                batch::Decided::CancelledFirst => {
                    finished.push((
                        *index,
                        Ok(Effects::one(format!(
                            "order {} was cancelled before it was seen placed: nothing reserved",
                            event.order_id
                        ))),
                    ));
                    continue;
                }
                batch::Decided::Recorded(decision) => (Effects::none(), decision),
                batch::Decided::Nothing => {
                    finished.push((*index, Ok(Effects::none())));
                    continue;
                }
            };
            match decision_command(&decision) {
                Some(command) => {
                    waiting.push((*index, effects, command.name(), event.order_id));
                    commands.push((event, event.order_id, command));
                }
                None => finished.push((*index, Ok(effects))),
            }
        }
        let sent = command::send_all_allowing(&self.store, NAME, commands).await;
        for ((index, mut effects, name, order_id), result) in waiting.into_iter().zip(sent) {
            finished.push((
                index,
                match result {
                    Ok(Ok(())) => {
                        effects.push(format!("sent {name} to order {order_id}"));
                        Ok(effects)
                    }
                    Ok(Err(refusal)) => Err(HandlerError::give_up(format!(
                        "the order refused: {refusal}"
                    ))),
                    Err(error) => Err(error),
                },
            ));
        }
        finished
    }

    async fn on_cancelled(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        if delivery.dry_run {
            return Ok(Effects::one(format!(
                "would release the reservation of order {}",
                event.order_id
            )));
        }
        let mut tx = self.pool.begin().await?;
        if !inbox::claim(&mut tx, NAME, event.event_id).await? && !delivery.ignore_inbox {
            return Ok(Effects::none());
        }
        let existing: Option<(String, sqlx::types::Json<Vec<ReservedLine>>)> = sqlx::query_as(
            "SELECT status, lines FROM inventory_reservations WHERE order_id = $1 FOR UPDATE",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let effect = match existing {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO inventory_reservations (order_id, status) VALUES ($1, 'cancelled')
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(event.order_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Err(HandlerError::retry(
                        "the placement was recorded at the same time; retrying",
                    ));
                }
                format!(
                    "tombstone for order {}: cancelled before placed",
                    event.order_id
                )
            }
            Some((status, lines)) if status == "reserved" => {
                for line in &lines.0 {
                    sqlx::query(
                        "UPDATE inventory_stock SET available = available + $2, updated_at = now()
                          WHERE sku = $1",
                    )
                    .bind(&line.sku)
                    .bind(line.quantity)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE inventory_reservations SET status = 'released', updated_at = now()
                      WHERE order_id = $1",
                )
                .bind(event.order_id)
                .execute(&mut *tx)
                .await?;
                format!("released the reservation of order {}", event.order_id)
            }
            Some(_) => {
                tx.commit().await?;
                return Ok(Effects::none());
            }
        };
        tx.commit().await?;
        Ok(Effects::one(effect))
    }

    async fn on_shipped(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        if delivery.dry_run {
            return Ok(Effects::one(format!(
                "would deduct the reserved stock of order {} for good",
                event.order_id
            )));
        }
        let mut tx = self.pool.begin().await?;
        if !inbox::claim(&mut tx, NAME, event.event_id).await? && !delivery.ignore_inbox {
            return Ok(Effects::none());
        }
        let deducted = sqlx::query(
            "UPDATE inventory_reservations SET status = 'shipped', updated_at = now()
              WHERE order_id = $1 AND status = 'reserved'",
        )
        .bind(event.order_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if deducted == 1 {
            Effects::one(format!(
                "deducted the reserved stock of order {}: shipped",
                event.order_id
            ))
        } else {
            Effects::none()
        })
    }
}

#[async_trait]
impl Handler for InventoryWorker {
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

    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        self.handle_many(events).await
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        match event.decode() {
            Ok(OrderEvent::OrderPlaced { lines, .. }) => {
                self.on_placed(event, &lines, delivery).await
            }
            Ok(OrderEvent::OrderCancelled { .. }) => self.on_cancelled(event, delivery).await,
            Ok(OrderEvent::ShipmentStarted { .. }) => self.on_shipped(event, delivery).await,
            Ok(_) => Ok(Effects::none()),
            Err(error) => Err(HandlerError::give_up(format!(
                "unreadable {} event: {error}",
                event.event_type
            ))),
        }
    }
}
