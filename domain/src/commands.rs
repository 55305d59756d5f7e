//! What a caller can ask an order to do. Commands are imperative; the aggregate decides.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{
    Currency, CustomerId, Email, FieldError, Money, OrderLine, ShippingAddress, Sku, MAX_LINES,
};

/// Every command the Order aggregate understands.
// `PlaceOrder` is much larger than the rest; commands are built once and moved once, so the
// size costs nothing worth a `Box` in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Places a new order; see [`PlaceOrder`].
    PlaceOrder(PlaceOrder),
    /// Confirms a placed order once inventory reserved its lines.
    ConfirmOrder {
        /// The inventory reservation that holds the lines.
        reservation_id: Uuid,
    },
    /// Rejects a placed order that inventory could not reserve.
    RejectOrder {
        /// Why, in words, for the customer.
        reason: String,
        /// The SKUs that were short.
        unavailable_skus: Vec<Sku>,
    },
    /// Cancels an order that has not shipped yet.
    CancelOrder {
        /// Empty when none was given.
        reason: String,
        /// Who cancelled it, for example `customer`.
        cancelled_by: String,
    },
    /// Hands a confirmed order to a carrier.
    StartShipment {
        /// Id of the shipment; repeating the same id is a no-op, another id conflicts.
        shipment_id: Uuid,
        /// Name of the carrier.
        carrier: String,
        /// The carrier's tracking number.
        tracking_number: String,
    },
    /// Records that a shipped order reached the customer.
    MarkDelivered,
}

impl OrderCommand {
    /// The command's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            OrderCommand::PlaceOrder(_) => "PlaceOrder",
            OrderCommand::ConfirmOrder { .. } => "ConfirmOrder",
            OrderCommand::RejectOrder { .. } => "RejectOrder",
            OrderCommand::CancelOrder { .. } => "CancelOrder",
            OrderCommand::StartShipment { .. } => "StartShipment",
            OrderCommand::MarkDelivered => "MarkDelivered",
        }
    }
}

/// A valid request to place an order. Only [`PlaceOrder::new`] builds one, so a `PlaceOrder`
/// always has 1..=100 lines and a total that fits in an `i64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    order_id: Uuid,
    customer_id: CustomerId,
    customer_email: Email,
    currency: Currency,
    lines: Vec<OrderLine>,
    shipping_address: ShippingAddress,
    total: Money,
    placed_at: DateTime<Utc>,
}

impl PlaceOrder {
    /// # Errors
    /// One [`FieldError`] for each rule broken: a `customer_id` that [`CustomerId::parse`]
    /// refuses, no lines or more than [`MAX_LINES`], or a total that overflows.
    pub fn new(
        order_id: Uuid,
        customer_id: &str,
        customer_email: Email,
        currency: Currency,
        lines: Vec<OrderLine>,
        shipping_address: ShippingAddress,
        placed_at: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let customer_id = CustomerId::parse(customer_id)
            .map_err(|e| errors.push(e))
            .ok();
        if lines.is_empty() || lines.len() > MAX_LINES {
            errors.push(FieldError::new(
                "lines",
                format!("must hold 1 to {MAX_LINES} lines"),
            ));
        }
        let total = lines.iter().try_fold(Money::ZERO, |sum, line| {
            line.line_total().and_then(|t| sum.checked_add(t))
        });
        if total.is_none() {
            errors.push(FieldError::new(
                "lines",
                "the order total is too large to represent",
            ));
        }
        match (customer_id, total) {
            (Some(customer_id), Some(total)) if errors.is_empty() => Ok(Self {
                order_id,
                customer_id,
                customer_email,
                currency,
                lines,
                shipping_address,
                total,
                placed_at,
            }),
            _ => Err(errors),
        }
    }

    /// The id of the order to place.
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    /// Sum of all line totals, in minor units of the order's currency.
    pub fn total(&self) -> Money {
        self.total
    }

    pub(crate) fn into_event(self) -> crate::events::OrderEvent {
        crate::events::OrderEvent::OrderPlaced {
            order_id: self.order_id,
            customer_id: self.customer_id.into_string(),
            customer_email: self.customer_email,
            currency: self.currency,
            lines: self.lines,
            shipping_address: self.shipping_address,
            total: self.total,
            placed_at: self.placed_at,
        }
    }
}
