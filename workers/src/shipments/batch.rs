//! The shipments worker on a batch: what it does for one confirmation, for a batch in about
//! seven statements whatever its size. One read of the log for every order (is it still
//! confirmed?), one statement for every inbox claim and `requested` (or `skipped`) record,
//! one read of the records, the bookings (all at once through the carrier's gate, each with
//! its shipment id as idempotency key), one statement for every `booked`, the `StartShipment` commands in one
//! read and one append ([`crate::command::send_all_allowing`]), and one statement for every
//! final status. The steps and statuses are those of a single confirmation, so a batch cut
//! short anywhere continues on redelivery from the recorded status.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use futures::FutureExt;
use orderflow_bus::handler::{Effects, HandlerError};
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::{OrderCommand, OrderStatus};
use orderflow_store::{log, orders, EventEnvelope};
use uuid::Uuid;

use super::{
    Booking, CarrierError, ShipmentRecord, ShipmentRequest, ShipmentsWorker, ERASED_REASON, NAME,
    SHIPMENT_NAMESPACE,
};
use crate::command;
use crate::partner::Answered;

/// A booking request and what came of it.
type BookingOutcome = (ShipmentRequest, Result<Answered<Booking>, CarrierError>);

/// A status to record for an order's shipment, with the error that led to it.
type StatusChange = (Uuid, &'static str, Option<String>);

impl ShipmentsWorker {
    /// Handles live confirmations of a batch, each of another order: one result per event,
    /// in order (events of other types change nothing).
    pub(super) async fn ship_all(
        &self,
        events: &[&EventEnvelope],
    ) -> Vec<Result<Effects, HandlerError>> {
        let mut results: Vec<Result<Effects, HandlerError>> =
            events.iter().map(|_| Ok(Effects::none())).collect();
        let confirmations: Vec<(usize, &EventEnvelope)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.event_type == "OrderConfirmed")
            .map(|(i, e)| (i, *e))
            .collect();
        if confirmations.is_empty() {
            return results;
        }
        let retry_all = |results: &mut Vec<Result<Effects, HandlerError>>, error: String| {
            for (index, _) in &confirmations {
                results[*index] = Err(HandlerError::retry(&error));
            }
        };
        let order_ids: Vec<Uuid> = confirmations.iter().map(|(_, e)| e.order_id).collect();
        let (confirmed, unreadable) = match self.confirmed_orders(&order_ids).await {
            Ok(found) => found,
            Err(error) => {
                retry_all(&mut results, error);
                return results;
            }
        };
        // An order that cannot be read is retried alone; the others go on.
        let mut failed: HashMap<Uuid, HandlerError> = unreadable
            .into_iter()
            .map(|(id, error)| (id, HandlerError::Retry(error)))
            .collect();
        let readable: Vec<(usize, &EventEnvelope)> = confirmations
            .iter()
            .filter(|(_, e)| !failed.contains_key(&e.order_id))
            .copied()
            .collect();
        let records = match self.record_all(&readable, &confirmed).await {
            Ok(records) => records,
            Err(error) => {
                retry_all(&mut results, format!("database: {error}"));
                return results;
            }
        };

        let mut effects: HashMap<Uuid, Effects> = HashMap::new();
        let mut changes: Vec<StatusChange> = Vec::new();
        let mut to_book = Vec::new();
        let mut to_start: Vec<(Uuid, Uuid, String, String)> = Vec::new();
        for (_, event) in &readable {
            let order_id = event.order_id;
            let Some(record) = records.get(&order_id) else {
                continue;
            };
            match (record.status.as_str(), confirmed.get(&order_id)) {
                ("requested", None) => {
                    changes.push((
                        order_id,
                        "skipped",
                        Some("order no longer confirmed".into()),
                    ));
                    effects.insert(
                        order_id,
                        Effects::one(format!(
                            "no shipment for order {order_id}: no longer confirmed"
                        )),
                    );
                }
                ("requested", Some(state))
                    if orderflow_store::vault::is_erased_address(&state.shipping_address) =>
                {
                    changes.push((order_id, "skipped", Some(ERASED_REASON.into())));
                    effects.insert(
                        order_id,
                        Effects::one(format!("no shipment for order {order_id}: {ERASED_REASON}")),
                    );
                }
                ("requested", Some(state)) => to_book.push(ShipmentRequest {
                    shipment_id: record.shipment_id,
                    order_id,
                    address: state.shipping_address.clone(),
                    lines: state.lines.clone(),
                }),
                ("booked", _) => match (&record.carrier, &record.tracking_number) {
                    (Some(carrier), Some(tracking)) => to_start.push((
                        order_id,
                        record.shipment_id,
                        carrier.clone(),
                        tracking.clone(),
                    )),
                    _ => {
                        failed.insert(
                            order_id,
                            HandlerError::give_up("booked shipment without a tracking number"),
                        );
                    }
                },
                _ => {}
            }
        }

        let booked = self.book_all(to_book).await;
        let mut newly_booked = Vec::new();
        for (request, outcome) in booked {
            let order_id = request.order_id;
            match outcome {
                Ok(answered) => {
                    let answer = answered.describe();
                    let booking = answered.value;
                    effects.entry(order_id).or_default().push(format!(
                        "carrier booking {}: booked shipment {} with {} ({answer})",
                        booking.tracking_number,
                        request.shipment_id,
                        self.carrier.name()
                    ));
                    to_start.push((
                        order_id,
                        request.shipment_id,
                        self.carrier.name().to_string(),
                        booking.tracking_number.clone(),
                    ));
                    newly_booked.push((order_id, booking.tracking_number));
                }
                Err(CarrierError::Transient(e) | CarrierError::Busy { reason: e, .. }) => {
                    changes.push((order_id, "requested", Some(e.clone())));
                    failed.insert(order_id, HandlerError::Retry(e));
                }
                Err(CarrierError::Refused(e)) => {
                    changes.push((order_id, "refused", Some(e.clone())));
                    failed.insert(order_id, HandlerError::GiveUp(e));
                }
            }
        }
        if let Err(error) = self.record_booked(&newly_booked).await {
            retry_all(&mut results, format!("database: {error}"));
            return results;
        }

        let by_order: HashMap<Uuid, &EventEnvelope> = confirmations
            .iter()
            .map(|(_, e)| (e.order_id, *e))
            .collect();
        let commands = to_start
            .iter()
            .map(|(order_id, shipment_id, carrier, tracking_number)| {
                let start = OrderCommand::StartShipment {
                    shipment_id: *shipment_id,
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                };
                (by_order[order_id], *order_id, start)
            })
            .collect();
        let started = command::send_all_allowing(&self.store, NAME, commands).await;
        for ((order_id, ..), outcome) in to_start.iter().zip(started) {
            let order_id = *order_id;
            match outcome {
                Ok(Ok(())) => {
                    changes.push((order_id, "started", None));
                    effects
                        .entry(order_id)
                        .or_default()
                        .push(format!("sent StartShipment to order {order_id}"));
                }
                Ok(Err(refusal)) => {
                    // Cancelled between booking and starting: no shipment for it.
                    let reason = format!("the order refused StartShipment: {refusal}");
                    effects
                        .entry(order_id)
                        .or_default()
                        .push(format!("no shipment for order {order_id}: {reason}"));
                    changes.push((order_id, "skipped", Some(reason)));
                }
                Err(error) => {
                    failed.insert(order_id, error);
                }
            }
        }
        if let Err(error) = self.record_statuses(&changes).await {
            retry_all(&mut results, format!("database: {error}"));
            return results;
        }
        for (index, event) in &confirmations {
            results[*index] = match failed.remove(&event.order_id) {
                Some(error) => Err(error),
                None => Ok(effects.remove(&event.order_id).unwrap_or_default()),
            };
        }
        results
    }

    /// The orders among `order_ids` that are confirmed now, with their state, and those that
    /// cannot be read (not found, or an unreadable event), with why; one read of the log.
    async fn confirmed_orders(
        &self,
        order_ids: &[Uuid],
    ) -> Result<(HashMap<Uuid, OrderState>, Vec<(Uuid, String)>), String> {
        let mut logs = log::events_of_orders(&self.pool, order_ids)
            .await
            .map_err(|e| format!("reading the orders: {e}"))?;
        // The shipping address is sealed: open it through the vault.
        self.store
            .vault()
            .open(logs.values_mut().flatten())
            .await
            .map_err(|e| format!("opening personal data: {e}"))?;
        let mut confirmed = HashMap::new();
        let mut unreadable = Vec::new();
        for id in order_ids {
            let log = logs.get(id).map_or(&[][..], Vec::as_slice);
            match orders::fold(log, None) {
                Ok(Some(order)) if order.state.status == OrderStatus::Confirmed => {
                    confirmed.insert(*id, order.state);
                }
                Ok(Some(_)) => {}
                Ok(None) => unreadable.push((*id, format!("order {id} not found"))),
                Err(error) => unreadable.push((*id, error.to_string())),
            }
        }
        Ok((confirmed, unreadable))
    }

    /// Claims every confirmation and records its shipment (`requested`, or `skipped` for an
    /// order no longer confirmed) in one statement, then reads every order's record.
    async fn record_all(
        &self,
        confirmations: &[(usize, &EventEnvelope)],
        confirmed: &HashMap<Uuid, OrderState>,
    ) -> Result<HashMap<Uuid, ShipmentRecord>, sqlx::Error> {
        let event_ids: Vec<Uuid> = confirmations.iter().map(|(_, e)| e.event_id).collect();
        let order_ids: Vec<Uuid> = confirmations.iter().map(|(_, e)| e.order_id).collect();
        let shipment_ids: Vec<Uuid> = event_ids
            .iter()
            .map(|id| Uuid::new_v5(&SHIPMENT_NAMESPACE, id.as_bytes()))
            .collect();
        let statuses: Vec<&str> = order_ids
            .iter()
            .map(|id| {
                if confirmed.contains_key(id) {
                    "requested"
                } else {
                    "skipped"
                }
            })
            .collect();
        sqlx::query(
            "WITH claim AS (
                 INSERT INTO inbox (consumer, event_id)
                 SELECT $1, e FROM UNNEST($2::uuid[]) AS e ORDER BY e
                 ON CONFLICT DO NOTHING RETURNING event_id)
             INSERT INTO shipments (order_id, shipment_id, event_id, status)
             SELECT s.order_id, s.shipment_id, s.event_id, s.status
               FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::text[])
                    AS s(event_id, order_id, shipment_id, status)
               JOIN claim c ON c.event_id = s.event_id
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(NAME)
        .bind(&event_ids)
        .bind(&order_ids)
        .bind(&shipment_ids)
        .bind(&statuses)
        .execute(&self.pool)
        .await?;
        let records: Vec<ShipmentRecord> = sqlx::query_as(
            "SELECT order_id, shipment_id, status, carrier, tracking_number, last_error
               FROM shipments WHERE order_id = ANY($1)",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&order_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(records.into_iter().map(|r| (r.order_id, r)).collect())
    }

    /// Books every request with the carrier, all at once through its gate, which keeps as
    /// many in flight as the carrier's pace allows (see [`crate::partner`]).
    async fn book_all(&self, requests: Vec<ShipmentRequest>) -> Vec<BookingOutcome> {
        let booking: Vec<BoxFuture<'_, BookingOutcome>> = requests
            .into_iter()
            .map(|request| {
                async move {
                    let outcome = self.book(&request).await;
                    (request, outcome)
                }
                .boxed()
            })
            .collect();
        futures::future::join_all(booking).await
    }

    /// Records the bookings (carrier and tracking number) in one statement.
    async fn record_booked(&self, booked: &[(Uuid, String)]) -> Result<(), sqlx::Error> {
        if booked.is_empty() {
            return Ok(());
        }
        let order_ids: Vec<Uuid> = booked.iter().map(|(id, _)| *id).collect();
        let tracking: Vec<&str> = booked.iter().map(|(_, t)| t.as_str()).collect();
        sqlx::query(
            "UPDATE shipments s SET status = 'booked', carrier = $2, tracking_number = u.tracking,
                    last_error = NULL, updated_at = now()
               FROM UNNEST($1::uuid[], $3::text[]) AS u(order_id, tracking)
              WHERE s.order_id = u.order_id",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&order_ids)
        .bind(self.carrier.name())
        .bind(&tracking)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the statuses reached (with their errors) in one statement.
    async fn record_statuses(&self, changes: &[StatusChange]) -> Result<(), sqlx::Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let order_ids: Vec<Uuid> = changes.iter().map(|(id, _, _)| *id).collect();
        let statuses: Vec<&str> = changes.iter().map(|(_, s, _)| *s).collect();
        let errors: Vec<Option<&str>> = changes.iter().map(|(_, _, e)| e.as_deref()).collect();
        sqlx::query(
            "UPDATE shipments s SET status = u.status, last_error = u.error, updated_at = now()
               FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(order_id, status, error)
              WHERE s.order_id = u.order_id",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&order_ids)
        .bind(&statuses)
        .bind(&errors)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Whether a batch can go through [`ShipmentsWorker::ship_all`]: each confirmation of another
/// order, each event once.
pub(super) fn one_confirmation_per_order(events: &[&EventEnvelope]) -> bool {
    let mut orders = HashSet::new();
    events
        .iter()
        .filter(|e| e.event_type == "OrderConfirmed")
        .all(|e| orders.insert(e.order_id))
}
