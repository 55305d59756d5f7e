//! The Order aggregate: its states, the rules that move between them, and the errors a
//! command can meet.
//!
//! ```text
//! placed --OrderConfirmed--> confirmed --ShipmentStarted--> shipped --OrderDelivered--> delivered
//! placed --OrderRejected--> rejected
//! placed | confirmed --OrderCancelled--> cancelled
//! ```
//! Commands that consumers retry are idempotent: a repeated confirmation, rejection, shipment
//! or delivery changes nothing. A confirmation or rejection that arrives after the order was
//! cancelled changes nothing either (the consumer raced the customer; see docs/DESIGN.md,
//! guarantee 7 (order-independent handlers)).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::OrderCommand;
use crate::events::OrderEvent;
use crate::values::{Currency, Email, Money, OrderLine, ShippingAddress, Sku};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed and waiting for inventory to reserve its lines.
    Placed,
    /// Inventory reserved every line; the order can ship.
    Confirmed,
    /// Inventory could not reserve it; final.
    Rejected,
    /// Cancelled before it shipped; final.
    Cancelled,
    /// Handed to a carrier.
    Shipped,
    /// Received by the customer; final.
    Delivered,
}

impl OrderStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Placed,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];

    /// The snake_case name, as serialized and stored (`placed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
        }
    }

    /// Parses the snake_case name (`placed`, ...).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was refused. Every variant is the caller's problem, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The command needs an order that was never placed.
    #[error("order not found")]
    NotFound,
    /// `PlaceOrder` for an id that is already taken.
    #[error("order {0} already exists")]
    AlreadyExists(Uuid),
    /// The command does not fit the order's current status. Its text is written for the
    /// person who asked ("order … has shipped and can no longer be cancelled"), so it can
    /// be shown as it is; `command` is the command's name ([`OrderCommand::name`]).
    #[error("{}", refusal(*order_id, command, *status))]
    WrongState {
        /// The order the command was sent to.
        order_id: Uuid,
        /// The refused command's name ([`OrderCommand::name`]).
        command: &'static str,
        /// The order's status when the command arrived.
        status: OrderStatus,
    },
    /// A second, different reservation or shipment for the same order.
    #[error("order is already {status} with another {what}")]
    Conflicting {
        /// What conflicts: `"reservation"` or `"shipment"`.
        what: &'static str,
        /// The order's current status, which already has a different one.
        status: OrderStatus,
    },
}

/// Why `command` does not fit an order in `status`, in words: what the order did, and what
/// can no longer (or not yet) be done to it.
fn refusal(order_id: Uuid, command: &str, status: OrderStatus) -> String {
    use OrderStatus as S;
    let done = match command {
        "CancelOrder" => "cancelled",
        "ConfirmOrder" => "confirmed",
        "RejectOrder" => "rejected",
        "StartShipment" => "shipped",
        "MarkDelivered" => "marked as delivered",
        _ => "changed this way",
    };
    let is = match status {
        S::Placed => "is placed",
        S::Confirmed => "is confirmed",
        S::Shipped => "has shipped",
        S::Delivered => "has been delivered",
        S::Rejected => "was rejected",
        S::Cancelled => "was cancelled",
    };
    match (status, command) {
        (S::Cancelled, "CancelOrder") => format!("order {order_id} is already cancelled"),
        (S::Placed | S::Confirmed, "StartShipment" | "MarkDelivered") => {
            format!("order {order_id} {is} and cannot be {done} yet")
        }
        _ => format!("order {order_id} {is} and can no longer be {done}"),
    }
}

/// The shipment of an order, once started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Id of the shipment; a repeated `StartShipment` with this id changes nothing.
    pub shipment_id: Uuid,
    /// Name of the carrier that took the parcel.
    pub carrier: String,
    /// The carrier's tracking number for the parcel.
    pub tracking_number: String,
}

/// Everything known about a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The order's id, also its aggregate id in the event store.
    pub id: Uuid,
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// The shop's id of the customer who placed it.
    pub customer_id: String,
    /// Where confirmations and shipping notices go.
    pub customer_email: Email,
    /// The currency of every price in the order.
    pub currency: Currency,
    /// The ordered lines, 1 to [`crate::values::MAX_LINES`].
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals, in minor units of `currency`.
    pub total: Money,
    /// Where the order is shipped.
    pub shipping_address: ShippingAddress,
    /// When the order was placed (UTC).
    pub placed_at: DateTime<Utc>,
    /// The inventory reservation, set once the order is confirmed.
    pub reservation_id: Option<Uuid>,
    /// The shipment, set once it started.
    pub shipment: Option<Shipment>,
    /// Why inventory rejected the order, set only when rejected.
    pub rejection_reason: Option<String>,
    /// The SKUs inventory could not reserve; empty unless rejected.
    pub unavailable_skus: Vec<Sku>,
    /// Why the order was cancelled, set only when cancelled (may be empty).
    pub cancellation_reason: Option<String>,
    /// Who cancelled the order (`customer` unless the request said), set only when
    /// cancelled.
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

/// The Order aggregate. `Order::default()` is an order not yet placed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    state: Option<OrderState>,
}

impl Order {
    /// The order's state, or `None` when no `OrderPlaced` was applied.
    pub fn state(&self) -> Option<&OrderState> {
        self.state.as_ref()
    }

    /// Consumes the aggregate, giving its state.
    pub fn into_state(self) -> Option<OrderState> {
        self.state
    }

    /// Folds events into an order, as the event store does when it loads one.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> Self {
        let mut order = Order::default();
        for event in events {
            order.apply(event.clone());
        }
        order
    }

    /// Decides which events a command produces, without changing the order.
    ///
    /// # Errors
    /// An [`OrderError`] when the command does not fit the order.
    pub fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus as S;
        let name = command.name();
        let state = match (&self.state, command) {
            (None, OrderCommand::PlaceOrder(place)) => return Ok(vec![place.into_event()]),
            (Some(state), OrderCommand::PlaceOrder(_)) => {
                return Err(OrderError::AlreadyExists(state.id))
            }
            (None, _) => return Err(OrderError::NotFound),
            (Some(state), command) => (state, command),
        };
        let (state, command) = state;
        let wrong_state = || OrderError::WrongState {
            order_id: state.id,
            command: name,
            status: state.status,
        };
        let events = match command {
            OrderCommand::PlaceOrder(_) => unreachable!("handled above"),
            OrderCommand::ConfirmOrder { reservation_id } => {
                match (state.status, state.reservation_id) {
                    (_, Some(known)) if known == reservation_id => vec![],
                    (S::Cancelled, _) => vec![],
                    (S::Placed, _) => vec![OrderEvent::OrderConfirmed { reservation_id }],
                    (S::Confirmed | S::Shipped | S::Delivered, _) => {
                        return Err(OrderError::Conflicting {
                            what: "reservation",
                            status: state.status,
                        })
                    }
                    (S::Rejected, _) => return Err(wrong_state()),
                }
            }
            OrderCommand::RejectOrder {
                reason,
                unavailable_skus,
            } => match state.status {
                S::Placed => vec![OrderEvent::OrderRejected {
                    reason,
                    unavailable_skus,
                }],
                S::Rejected | S::Cancelled => vec![],
                S::Confirmed | S::Shipped | S::Delivered => return Err(wrong_state()),
            },
            OrderCommand::CancelOrder {
                reason,
                cancelled_by,
            } => match state.status {
                S::Placed | S::Confirmed => vec![OrderEvent::OrderCancelled {
                    reason,
                    cancelled_by,
                }],
                _ => return Err(wrong_state()),
            },
            OrderCommand::StartShipment {
                shipment_id,
                carrier,
                tracking_number,
            } => match (state.status, &state.shipment) {
                (_, Some(known)) if known.shipment_id == shipment_id => vec![],
                (S::Confirmed, None) => vec![OrderEvent::ShipmentStarted {
                    shipment_id,
                    carrier,
                    tracking_number,
                }],
                (S::Shipped | S::Delivered, Some(_)) => {
                    return Err(OrderError::Conflicting {
                        what: "shipment",
                        status: state.status,
                    })
                }
                _ => return Err(wrong_state()),
            },
            OrderCommand::MarkDelivered => match state.status {
                S::Shipped => vec![OrderEvent::OrderDelivered {}],
                S::Delivered => vec![],
                _ => return Err(wrong_state()),
            },
        };
        Ok(events)
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrderEvent::OrderPlaced {
                order_id,
                customer_id,
                customer_email,
                currency,
                lines,
                shipping_address,
                total,
                placed_at,
            } => {
                self.state = Some(OrderState {
                    id: order_id,
                    status: OrderStatus::Placed,
                    customer_id,
                    customer_email,
                    currency,
                    lines,
                    total,
                    shipping_address,
                    placed_at,
                    reservation_id: None,
                    shipment: None,
                    rejection_reason: None,
                    unavailable_skus: Vec::new(),
                    cancellation_reason: None,
                    cancelled_by: None,
                });
            }
            other => {
                let Some(state) = self.state.as_mut() else {
                    return;
                };
                match other {
                    OrderEvent::OrderPlaced { .. } => {}
                    OrderEvent::OrderConfirmed { reservation_id } => {
                        state.status = OrderStatus::Confirmed;
                        state.reservation_id = Some(reservation_id);
                    }
                    OrderEvent::OrderRejected {
                        reason,
                        unavailable_skus,
                    } => {
                        state.status = OrderStatus::Rejected;
                        state.rejection_reason = Some(reason);
                        state.unavailable_skus = unavailable_skus;
                    }
                    OrderEvent::OrderCancelled {
                        reason,
                        cancelled_by,
                    } => {
                        state.status = OrderStatus::Cancelled;
                        // An empty reason is a cancel without one.
                        state.cancellation_reason = Some(reason).filter(|r| !r.is_empty());
                        state.cancelled_by = Some(cancelled_by);
                    }
                    OrderEvent::ShipmentStarted {
                        shipment_id,
                        carrier,
                        tracking_number,
                    } => {
                        state.status = OrderStatus::Shipped;
                        state.shipment = Some(Shipment {
                            shipment_id,
                            carrier,
                            tracking_number,
                        });
                    }
                    OrderEvent::OrderDelivered {} => state.status = OrderStatus::Delivered,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
