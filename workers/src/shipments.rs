//! The shipments worker: on `OrderConfirmed`, books a shipment with a carrier and sends
//! `StartShipment` to the order; a cancelled order gets no shipment.
//!
//! The shipment id is a v5 uuid of the `OrderConfirmed` event id, recorded (as `requested`)
//! in the same transaction as the inbox claim and sent to the carrier as `Idempotency-Key`,
//! so asking again after a crash books the same shipment. The order is loaded from the event
//! log first and again after booking: no shipment is requested for an order that is no longer
//! confirmed, and a `StartShipment` the order refuses (cancelled in between) marks the
//! shipment `skipped`. A redelivery continues from the recorded status (`requested` asks the
//! carrier, `booked` sends the command, `started` does nothing).
//!
//! Carriers: `simulated` (default, in process, tracking numbers derived from the shipment
//! id, booking after a configurable delay so that a person can still cancel a confirmed
//! order in a demo) and `http` (POST JSON, timeout, retries on 5xx and timeouts, gives up on
//! 4xx).

mod batch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_domain::{OrderCommand, OrderLine, OrderStatus, ShippingAddress};
use orderflow_store::{inbox, EventEnvelope, OrderStore};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::command;
use crate::partner::{classify_status, Answered, CallFailure, GateError, Partner};
use orderflow_bus::handler::{handle_each, Delivery, Effects, Handler, HandlerError};

/// The durable consumer's name.
pub const NAME: &str = "shipments";

/// The namespace of shipment ids (v5 of the `OrderConfirmed` event id).
const SHIPMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7266_6c6f_0000_0000_0000_0003);

/// What a carrier is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipmentRequest {
    /// Also the idempotency key.
    pub shipment_id: Uuid,
    /// The confirmed order to ship.
    pub order_id: Uuid,
    /// Where the parcel goes, as the order recorded it.
    pub address: ShippingAddress,
    /// What goes in the parcel: the order's lines (SKU, quantity, unit price).
    pub lines: Vec<OrderLine>,
}

/// A carrier's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The carrier's reference for the parcel, passed on to the order in `StartShipment`.
    pub tracking_number: String,
}

/// Why a carrier did not book.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// May work later (timeout, 5xx, connection refused).
    #[error("{0}")]
    Transient(String),
    /// Will not work (4xx: the request is refused).
    #[error("{0}")]
    Refused(String),
    /// The carrier is overloaded (429, or an answer with `Retry-After`): fewer calls, and
    /// none before `retry_after`.
    #[error("{reason}")]
    Busy {
        /// What it answered.
        reason: String,
        /// Its `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
}

impl From<CarrierError> for CallFailure {
    fn from(error: CarrierError) -> Self {
        match error {
            CarrierError::Transient(reason) => CallFailure::Failed(reason),
            CarrierError::Refused(reason) => CallFailure::Refused(reason),
            CarrierError::Busy {
                reason,
                retry_after,
            } => CallFailure::Busy {
                reason,
                retry_after,
            },
        }
    }
}

/// Calls to the carrier one process may have in flight at most, unless configured: enough
/// for 500 bookings a second from a carrier that takes 3 s.
pub const DEFAULT_CARRIER_MAX_IN_FLIGHT: usize = 2048;

/// A carrier that books shipments.
#[async_trait]
pub trait Carrier: Send + Sync {
    /// As recorded on the order (`simulated`, or the configured name).
    fn name(&self) -> &str;

    /// Books a shipment; asking twice with one shipment id books it once.
    ///
    /// # Errors
    /// [`CarrierError::Transient`] to be retried, [`CarrierError::Refused`] to give up.
    async fn book(&self, request: &ShipmentRequest) -> Result<Booking, CarrierError>;
}

/// The in-process carrier: books after its booking delay, tracking number
/// `SIM-<first 12 hex of the id>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatedCarrier {
    booking_delay: Duration,
}

impl SimulatedCarrier {
    /// A carrier that books at once (for tests).
    pub fn instant() -> Self {
        Self::default()
    }

    /// A carrier that takes `delay` to book each shipment.
    pub fn with_booking_delay(delay: Duration) -> Self {
        Self {
            booking_delay: delay,
        }
    }

    /// How long each booking takes.
    pub fn booking_delay(&self) -> Duration {
        self.booking_delay
    }
}

#[async_trait]
impl Carrier for SimulatedCarrier {
    fn name(&self) -> &str {
        "simulated"
    }

    async fn book(&self, request: &ShipmentRequest) -> Result<Booking, CarrierError> {
        if !self.booking_delay.is_zero() {
            tokio::time::sleep(self.booking_delay).await;
        }
        let hex = request.shipment_id.simple().to_string().to_uppercase();
        Ok(Booking {
            tracking_number: format!("SIM-{}", &hex[..12]),
        })
    }
}

/// A carrier behind HTTP: `POST <url>` with the [`ShipmentRequest`] as JSON and
/// `Idempotency-Key: <shipment_id>`; expects `{"tracking_number": "..."}`.
pub struct HttpCarrier {
    name: String,
    client: reqwest::Client,
    url: String,
    attempts: u32,
}

impl HttpCarrier {
    /// # Errors
    /// [`CarrierError::Refused`] when the HTTP client cannot be built.
    pub fn new(
        name: &str,
        url: &str,
        timeout: Duration,
        attempts: u32,
    ) -> Result<Self, CarrierError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CarrierError::Refused(format!("carrier client: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            client,
            url: url.to_string(),
            attempts: attempts.max(1),
        })
    }
}

#[async_trait]
impl Carrier for HttpCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn book(&self, request: &ShipmentRequest) -> Result<Booking, CarrierError> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let response = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", request.shipment_id.to_string())
                .json(request)
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    return r.json::<Booking>().await.map_err(|e| {
                        CarrierError::Transient(format!("carrier answer unreadable: {e}"))
                    })
                }
                // Overloaded: asking again at once would make it worse; the carrier's gate
                // (`crate::partner`) slows down and waits as told.
                Ok(r) => match classify_status(r.status(), r.headers(), "carrier") {
                    Some(CallFailure::Busy {
                        reason,
                        retry_after,
                    }) if r.status().as_u16() == 429 || retry_after.is_some() => {
                        return Err(CarrierError::Busy {
                            reason,
                            retry_after,
                        })
                    }
                    Some(CallFailure::Refused(_)) => {
                        return Err(CarrierError::Refused(format!(
                            "carrier refused with {}",
                            r.status()
                        )))
                    }
                    _ => last = format!("carrier answered {}", r.status()),
                },
                Err(e) => last = format!("carrier unreachable: {e}"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
        }
        Err(CarrierError::Transient(last))
    }
}

/// Which carrier to use. `Default` is `simulated`, booking at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierOptions {
    /// [`SimulatedCarrier`]: books in process, nothing leaves it.
    Simulated {
        /// How long each booking takes.
        booking_delay: Duration,
    },
    /// [`HttpCarrier`]: books by POSTing to a carrier's endpoint.
    Http {
        /// The carrier's name, as recorded on the shipment and the order.
        name: String,
        /// The booking endpoint.
        url: String,
        /// The limit for one HTTP request, response included.
        timeout: Duration,
        /// Requests per booking before a transient failure is reported (at least 1).
        attempts: u32,
    },
}

impl Default for CarrierOptions {
    fn default() -> Self {
        CarrierOptions::Simulated {
            booking_delay: Duration::ZERO,
        }
    }
}

/// How the shipments worker books. `Default` uses the simulated carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentOptions {
    /// The carrier every shipment is booked with.
    pub carrier: CarrierOptions,
    /// The most calls to the carrier in flight at once (the adaptive limit's ceiling).
    pub max_in_flight: usize,
}

impl Default for ShipmentOptions {
    fn default() -> Self {
        Self {
            carrier: CarrierOptions::default(),
            max_in_flight: DEFAULT_CARRIER_MAX_IN_FLIGHT,
        }
    }
}

impl ShipmentOptions {
    /// The carrier these options describe.
    ///
    /// # Errors
    /// [`CarrierError::Refused`] when it cannot be built.
    pub fn build_carrier(&self) -> Result<Arc<dyn Carrier>, CarrierError> {
        Ok(match &self.carrier {
            CarrierOptions::Simulated { booking_delay } => {
                Arc::new(SimulatedCarrier::with_booking_delay(*booking_delay))
            }
            CarrierOptions::Http {
                name,
                url,
                timeout,
                attempts,
            } => Arc::new(HttpCarrier::new(name, url, *timeout, *attempts)?),
        })
    }
}

/// The shipment recorded for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ShipmentRecord {
    /// The order shipped; at most one shipment per order.
    pub order_id: Uuid,
    /// The idempotency key sent to the carrier (a v5 uuid of the `OrderConfirmed` event id).
    pub shipment_id: Uuid,
    /// `requested`, `booked`, `started`, `skipped` or `refused` (see the migration).
    pub status: String,
    /// The name of the carrier that booked it; `None` until booked.
    pub carrier: Option<String>,
    /// The carrier's tracking number; `None` until booked.
    pub tracking_number: Option<String>,
    /// Why the latest step failed (carrier unreachable or refusing, or the order refusing
    /// `StartShipment`); `None` after a step that succeeded.
    pub last_error: Option<String>,
}

/// The shipment recorded for `order_id`, if any.
///
/// # Errors
/// The database error.
pub async fn shipment_for_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<ShipmentRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, shipment_id, status, carrier, tracking_number, last_error
           FROM shipments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
}

/// Why a shipment is skipped for a forgotten customer.
pub(crate) const ERASED_REASON: &str = "the customer was forgotten (shipping address erased)";

/// The shipments worker.
#[derive(Clone)]
pub struct ShipmentsWorker {
    pool: PgPool,
    store: OrderStore,
    carrier: Arc<dyn Carrier>,
    /// Every booking goes through it: see [`crate::partner`].
    partner: Arc<Partner>,
}

impl ShipmentsWorker {
    /// The worker over `pool` (order store and `shipments` table), booking with `carrier`,
    /// at most [`DEFAULT_CARRIER_MAX_IN_FLIGHT`] bookings at once.
    pub fn new(pool: PgPool, carrier: Arc<dyn Carrier>) -> Self {
        let store = OrderStore::new(pool.clone());
        Self {
            pool,
            store,
            carrier,
            partner: Arc::new(Partner::new("carrier", DEFAULT_CARRIER_MAX_IN_FLIGHT)),
        }
    }

    /// The same worker with at most `max_in_flight` bookings at once.
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.partner = Arc::new(Partner::new("carrier", max_in_flight));
        self
    }

    /// The carrier's gate: calls in flight, the limit, whether it is down.
    pub fn partner(&self) -> &Partner {
        &self.partner
    }

    /// Books `request` through the carrier's gate: waits for a slot, tries again while the
    /// carrier fails or is busy (without spending the message's attempts), and returns the
    /// booking (with how the carrier answered) or the carrier's refusal.
    async fn book(&self, request: &ShipmentRequest) -> Result<Answered<Booking>, CarrierError> {
        self.partner
            .call(|| async { self.carrier.book(request).await.map_err(CallFailure::from) })
            .await
            .map_err(|error| match error {
                GateError::Refused(reason) => CarrierError::Refused(reason),
                GateError::Failed(reason) => CarrierError::Transient(reason),
            })
    }

    async fn set_status(
        &self,
        order_id: Uuid,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE shipments SET status = $2, last_error = $3, updated_at = now()
              WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(status)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn confirmed_order(
        &self,
        order_id: Uuid,
    ) -> Result<Option<orderflow_domain::aggregate::OrderState>, HandlerError> {
        let order = self
            .store
            .load(order_id)
            .await
            .map_err(HandlerError::retry)?
            .ok_or_else(|| HandlerError::retry(format!("order {order_id} not found")))?;
        Ok((order.state.status == OrderStatus::Confirmed).then_some(order.state))
    }

    async fn on_confirmed(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        let order_id = event.order_id;
        let shipment_id = Uuid::new_v5(&SHIPMENT_NAMESPACE, event.event_id.as_bytes());
        let order = self.confirmed_order(order_id).await?;
        if delivery.dry_run {
            return Ok(Effects::one(match order {
                Some(_) => format!("would book shipment {shipment_id} for order {order_id}"),
                None => format!("would not ship order {order_id}: no longer confirmed"),
            }));
        }
        let mut tx = self.pool.begin().await?;
        if inbox::claim(&mut tx, NAME, event.event_id).await? {
            let status = if order.is_some() {
                "requested"
            } else {
                "skipped"
            };
            sqlx::query(
                "INSERT INTO shipments (order_id, shipment_id, event_id, status)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id)
            .bind(shipment_id)
            .bind(event.event_id)
            .bind(status)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let Some(mut record) = shipment_for_order(&self.pool, order_id).await? else {
            return Ok(Effects::none());
        };
        let mut effects = Effects::none();
        if record.status == "requested" {
            let Some(state) = order else {
                self.set_status(order_id, "skipped", Some("order no longer confirmed"))
                    .await?;
                return Ok(Effects::one(format!(
                    "no shipment for order {order_id}: no longer confirmed"
                )));
            };
            if orderflow_store::vault::is_erased_address(&state.shipping_address) {
                self.set_status(order_id, "skipped", Some(ERASED_REASON))
                    .await?;
                return Ok(Effects::one(format!(
                    "no shipment for order {order_id}: {ERASED_REASON}"
                )));
            }
            let request = ShipmentRequest {
                shipment_id: record.shipment_id,
                order_id,
                address: state.shipping_address,
                lines: state.lines,
            };
            match self.book(&request).await {
                Ok(answered) => {
                    let answer = answered.describe();
                    let booking = answered.value;
                    sqlx::query(
                        "UPDATE shipments SET status = 'booked', carrier = $2,
                                tracking_number = $3, last_error = NULL, updated_at = now()
                          WHERE order_id = $1",
                    )
                    .bind(order_id)
                    .bind(self.carrier.name())
                    .bind(&booking.tracking_number)
                    .execute(&self.pool)
                    .await?;
                    effects.push(format!(
                        "carrier booking {}: booked shipment {} with {} ({answer})",
                        booking.tracking_number,
                        record.shipment_id,
                        self.carrier.name()
                    ));
                    record.status = "booked".into();
                    record.carrier = Some(self.carrier.name().to_string());
                    record.tracking_number = Some(booking.tracking_number);
                }
                Err(CarrierError::Transient(e) | CarrierError::Busy { reason: e, .. }) => {
                    self.set_status(order_id, "requested", Some(&e)).await?;
                    return Err(HandlerError::Retry(e));
                }
                Err(CarrierError::Refused(e)) => {
                    self.set_status(order_id, "refused", Some(&e)).await?;
                    return Err(HandlerError::GiveUp(e));
                }
            }
        }
        if record.status == "booked" {
            let (Some(carrier), Some(tracking_number)) = (record.carrier, record.tracking_number)
            else {
                return Err(HandlerError::give_up(
                    "booked shipment without a tracking number",
                ));
            };
            let start = OrderCommand::StartShipment {
                shipment_id: record.shipment_id,
                carrier,
                tracking_number,
            };
            match command::send_allowing(&self.store, event, NAME, order_id, start).await? {
                Ok(()) => {
                    self.set_status(order_id, "started", None).await?;
                    effects.push(format!("sent StartShipment to order {order_id}"));
                }
                Err(refusal) => {
                    // Cancelled between booking and starting: no shipment for it. (A real
                    // carrier would be told to cancel the booking here.)
                    let reason = format!("the order refused StartShipment: {refusal}");
                    self.set_status(order_id, "skipped", Some(&reason)).await?;
                    effects.push(format!("no shipment for order {order_id}: {reason}"));
                }
            }
        }
        Ok(effects)
    }
}

#[async_trait]
impl Handler for ShipmentsWorker {
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

    /// A batch of live confirmations in a few statements (see `batch`); replays, and a batch
    /// holding one event twice, one by one.
    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        let live: Vec<&EventEnvelope> = events.iter().map(|(e, _)| e).collect();
        let replay = events.iter().any(|(_, d)| d.dry_run || d.ignore_inbox);
        if replay || !batch::one_confirmation_per_order(&live) {
            return handle_each(self, events).await;
        }
        self.ship_all(&live).await
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        if event.event_type == "OrderConfirmed" {
            self.on_confirmed(event, delivery).await
        } else {
            Ok(Effects::none())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_domain::values::{Money, Quantity, Sku};
    use std::time::Instant;

    fn request() -> ShipmentRequest {
        ShipmentRequest {
            shipment_id: Uuid::from_u128(0xabcdef),
            order_id: Uuid::from_u128(1),
            address: ShippingAddress::parse("Ada", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            lines: vec![OrderLine {
                sku: Sku::parse("SKU-1").unwrap(),
                quantity: Quantity::parse(1).unwrap(),
                unit_price: Money::parse(100).unwrap(),
            }],
        }
    }

    #[tokio::test]
    async fn the_simulated_carrier_takes_its_booking_delay() {
        let instant = SimulatedCarrier::instant().book(&request()).await.unwrap();

        let slow = SimulatedCarrier::with_booking_delay(Duration::from_millis(150));
        let started = Instant::now();
        let booked = slow.book(&request()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(booked, instant, "the delay changes nothing else");

        let options = ShipmentOptions {
            carrier: CarrierOptions::Simulated {
                booking_delay: Duration::from_millis(150),
            },
            ..ShipmentOptions::default()
        };
        assert_eq!(options.build_carrier().unwrap().name(), "simulated");
        assert_eq!(
            ShipmentOptions::default().carrier,
            CarrierOptions::Simulated {
                booking_delay: Duration::ZERO
            },
            "library default books at once"
        );
    }
}
