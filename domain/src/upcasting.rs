//! Lifting stored events of older versions to the version the code reads.
//!
//! Every event type is at version [`crate::events::CURRENT_EVENT_VERSION`] today, so the list
//! is empty. When an event changes shape, bump its version in `OrderEvent::event_version`,
//! add a `SemanticVersionEventUpcaster` here that turns the old body into the new one, and
//! both the cqrs-es store and orderflow's own log readers pick it up.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};

/// The upcasters the event store applies to every stored event before deserializing it.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

/// Applies `upcasters` to one stored event, in order.
pub fn upcast(upcasters: &[Box<dyn EventUpcaster>], event: SerializedEvent) -> SerializedEvent {
    upcasters.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::persist::SemanticVersionEventUpcaster;
    use serde_json::json;

    /// The path a version 2 takes: a 1.0 `OrderCancelled` stored without `cancelled_by` is
    /// lifted to 2.0 with a default, and other events pass untouched.
    #[test]
    fn an_upcaster_lifts_old_versions_only() {
        let upcasters: Vec<Box<dyn EventUpcaster>> =
            vec![Box::new(SemanticVersionEventUpcaster::new(
                "OrderCancelled",
                "2.0",
                Box::new(|mut payload| {
                    payload["OrderCancelled"]["cancelled_by"] = json!("unknown");
                    payload
                }),
            ))];
        let stored = |event_type: &str, version: &str, payload| SerializedEvent {
            aggregate_id: "o-1".into(),
            sequence: 2,
            aggregate_type: "Order".into(),
            event_type: event_type.into(),
            event_version: version.into(),
            payload,
            metadata: json!({}),
        };
        let old = stored(
            "OrderCancelled",
            "1.0",
            json!({"OrderCancelled": {"reason": "r"}}),
        );
        let lifted = upcast(&upcasters, old);
        assert_eq!(lifted.event_version, "2.0.0");
        assert_eq!(
            lifted.payload["OrderCancelled"]["cancelled_by"],
            json!("unknown")
        );
        let other = stored("OrderDelivered", "1.0", json!({"OrderDelivered": {}}));
        assert_eq!(upcast(&upcasters, other.clone()), other);
        assert!(
            super::upcasters().is_empty(),
            "no event has a second version yet"
        );
    }
}
