//! What happened to an order. Events are past tense, immutable once stored, and each has a
//! type name and a version (see [`crate::upcasting`] for older versions).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{Currency, Email, Money, OrderLine, ShippingAddress, Sku};

/// The version every event type is written with today.
pub const CURRENT_EVENT_VERSION: &str = "1.0";

/// Every event of the Order aggregate. `OrderPlaced` carries everything a consumer needs, so
/// consumers never call back for data.
// `OrderPlaced` carries the whole order and dwarfs the rest; events are deserialized and
// folded, not stored in bulk in memory, so boxing it would only complicate every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// An order was placed; carries the whole order.
    OrderPlaced {
        /// The order's id.
        order_id: Uuid,
        /// The shop's id of the customer.
        customer_id: String,
        /// Where confirmations and shipping notices go.
        customer_email: Email,
        /// The currency of every price in the order.
        currency: Currency,
        /// The ordered lines, 1 to [`crate::values::MAX_LINES`].
        lines: Vec<OrderLine>,
        /// Where the order is shipped.
        shipping_address: ShippingAddress,
        /// Sum of the line totals, in minor units of `currency`.
        total: Money,
        /// When the order was placed (UTC).
        placed_at: DateTime<Utc>,
    },
    /// Inventory reserved every line.
    OrderConfirmed {
        /// The inventory reservation that holds the lines.
        reservation_id: Uuid,
    },
    /// Inventory could not reserve the order.
    OrderRejected {
        /// Why, in words, for the customer.
        reason: String,
        /// The SKUs that were short.
        unavailable_skus: Vec<Sku>,
    },
    /// The order was cancelled before it shipped.
    OrderCancelled {
        /// Empty when none was given.
        reason: String,
        /// Who cancelled it, for example `customer`.
        cancelled_by: String,
    },
    /// A carrier took the order.
    ShipmentStarted {
        /// Id of the shipment.
        shipment_id: Uuid,
        /// Name of the carrier.
        carrier: String,
        /// The carrier's tracking number.
        tracking_number: String,
    },
    /// The customer received the order.
    OrderDelivered {},
}

/// Every event type name, as stored and as used in subjects.
pub const EVENT_TYPES: [&str; 6] = [
    "OrderPlaced",
    "OrderConfirmed",
    "OrderRejected",
    "OrderCancelled",
    "ShipmentStarted",
    "OrderDelivered",
];

impl OrderEvent {
    /// The event's type name (`OrderPlaced`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderConfirmed { .. } => "OrderConfirmed",
            OrderEvent::OrderRejected { .. } => "OrderRejected",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::ShipmentStarted { .. } => "ShipmentStarted",
            OrderEvent::OrderDelivered { .. } => "OrderDelivered",
        }
    }

    /// Rebuilds an event from its type name and its body (the inner object, as published).
    ///
    /// # Errors
    /// The serde error when the type is unknown or the body does not fit it.
    pub fn from_parts(
        event_type: &str,
        body: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        let mut tagged = serde_json::Map::new();
        tagged.insert(event_type.to_string(), body);
        serde_json::from_value(serde_json::Value::Object(tagged))
    }

    /// The event's body without its type tag, as published and shown to users.
    pub fn body(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => {
                map.into_iter().next().map(|(_, v)| v).unwrap_or_default()
            }
            _ => serde_json::Value::Null,
        }
    }

    /// Strips the type tag from a payload as cqrs-es stores it (`{"OrderPlaced": {...}}`).
    pub fn untag(stored: serde_json::Value) -> serde_json::Value {
        match stored {
            serde_json::Value::Object(map) if map.len() == 1 => {
                map.into_iter().next().map(|(_, v)| v).unwrap_or_default()
            }
            other => other,
        }
    }
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        CURRENT_EVENT_VERSION.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let event = OrderEvent::OrderCancelled {
            reason: "changed my mind".into(),
            cancelled_by: "customer".into(),
        };
        let body = event.body();
        assert_eq!(body["reason"], "changed my mind");
        let back = OrderEvent::from_parts(event.type_name(), body).unwrap();
        assert_eq!(back, event);
        let stored = serde_json::to_value(&event).unwrap();
        assert_eq!(OrderEvent::untag(stored), event.body());
    }

    #[test]
    fn every_type_name_is_listed() {
        let delivered = OrderEvent::OrderDelivered {};
        assert!(EVENT_TYPES.contains(&delivered.type_name()));
        assert!(OrderEvent::from_parts("NoSuchEvent", serde_json::json!({})).is_err());
    }
}
