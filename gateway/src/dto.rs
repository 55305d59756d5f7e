//! Request and response bodies of the REST API, and the conversion of a request body into a
//! command (parse, don't validate: every bad field is reported at once, as `errors[]`).
//!
//! Request numbers are `i64` so that `quantity: 0` or a negative price parse as JSON and are
//! then refused as values (422), not as malformed bodies (400).

use chrono::{DateTime, Utc};
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::{
    Currency, Email, FieldError, Money, OrderLine, OrderStatus, PlaceOrder, Quantity,
    ShippingAddress, Sku, MAX_LINES,
};
use orderflow_store::{EventEnvelope, LoadedOrder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /v1/orders`. Amounts are integers in the currency's minor unit.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "customer_id": "c-42", "customer_email": "ada@example.com", "currency": "EUR",
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1299}],
    "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                         "postal_code": "10115", "country": "DE"}
}))]
pub struct PlaceOrderRequest {
    /// The customer's id in the shop, 1 to 100 characters.
    pub customer_id: String,
    pub customer_email: String,
    /// ISO 4217 code, three capital letters.
    pub currency: String,
    /// 1 to 100 lines.
    pub lines: Vec<OrderLineRequest>,
    pub shipping_address: ShippingAddressRequest,
}

/// One line of a new order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    pub sku: String,
    /// 1 to 1000.
    pub quantity: i64,
    /// Price of one unit in minor units, not negative.
    pub unit_price: i64,
}

/// Where a new order is shipped.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddressRequest {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, two capital letters.
    pub country: String,
}

impl PlaceOrderRequest {
    /// The command this request asks for, placing order `order_id` at `placed_at`.
    ///
    /// # Errors
    /// One [`FieldError`] per invalid field, named by its JSON path (`lines[0].quantity`).
    pub fn into_command(
        self,
        order_id: Uuid,
        placed_at: DateTime<Utc>,
    ) -> Result<PlaceOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let email = Email::parse(&self.customer_email)
            .map_err(|e| errors.push(e))
            .ok();
        let currency = Currency::parse(&self.currency)
            .map_err(|e| errors.push(e))
            .ok();
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, line) in self.lines.iter().enumerate() {
            let at = format!("lines[{i}]");
            let sku = Sku::parse(&line.sku)
                .map_err(|e| errors.push(e.under(&at)))
                .ok();
            let quantity = Quantity::parse(line.quantity)
                .map_err(|e| errors.push(e.under(&at)))
                .ok();
            let unit_price = Money::parse(line.unit_price)
                .map_err(|e| errors.push(e.under(&at)))
                .ok();
            if let (Some(sku), Some(quantity), Some(unit_price)) = (sku, quantity, unit_price) {
                lines.push(OrderLine {
                    sku,
                    quantity,
                    unit_price,
                });
            }
        }
        let a = &self.shipping_address;
        let address = ShippingAddress::parse(
            &a.name,
            &a.line1,
            a.line2.as_deref(),
            &a.city,
            &a.postal_code,
            &a.country,
        )
        .map_err(|e| errors.extend(e))
        .ok();
        match (email, currency, address) {
            (Some(email), Some(currency), Some(address)) if errors.is_empty() => PlaceOrder::new(
                order_id,
                &self.customer_id,
                email,
                currency,
                lines,
                address,
                placed_at,
            ),
            _ => {
                // Some value was refused, so the domain's whole-order rules cannot run; check
                // the ones that need no parsed values here, so that every field is reported.
                let customer_id = self.customer_id.trim();
                if customer_id.is_empty() || customer_id.len() > 100 {
                    errors.push(FieldError::new(
                        "customer_id",
                        "must be 1 to 100 characters",
                    ));
                }
                if self.lines.is_empty() || self.lines.len() > MAX_LINES {
                    errors.push(FieldError::new(
                        "lines",
                        format!("must hold 1 to {MAX_LINES} lines"),
                    ));
                }
                Err(errors)
            }
        }
    }
}

/// Body of `POST /v1/orders/{id}/cancel`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "changed my mind"}))]
pub struct CancelOrderRequest {
    /// Why the order is cancelled, 1 to 500 characters.
    pub reason: String,
    /// Who cancels it (default `customer`), 1 to 100 characters.
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

impl CancelOrderRequest {
    /// The reason and the canceller, trimmed.
    ///
    /// # Errors
    /// One [`FieldError`] per blank or over-long field.
    pub fn validate(&self) -> Result<(String, String), Vec<FieldError>> {
        let mut errors = Vec::new();
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            errors.push(FieldError::new("reason", "must be 1 to 500 characters"));
        }
        let by = self.cancelled_by.as_deref().map_or("customer", str::trim);
        if by.is_empty() || by.chars().count() > 100 {
            errors.push(FieldError::new(
                "cancelled_by",
                "must be 1 to 100 characters",
            ));
        }
        if errors.is_empty() {
            Ok((reason.to_string(), by.to_string()))
        } else {
            Err(errors)
        }
    }
}

/// An order as the event log says it is (now, or after a given event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderResponse {
    pub id: Uuid,
    pub status: OrderStatus,
    pub customer_id: String,
    pub customer_email: Email,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    /// Sum of the lines in minor units.
    pub total: Money,
    pub shipping_address: ShippingAddress,
    /// Sequence of the order's last event (the one this view includes).
    pub version: i64,
    pub placed_at: DateTime<Utc>,
    /// The stock reservation, once confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// SKUs that were short when the order was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub unavailable_skus: Option<Vec<Sku>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
}

impl From<LoadedOrder> for OrderResponse {
    fn from(loaded: LoadedOrder) -> Self {
        let OrderState {
            id,
            status,
            customer_id,
            customer_email,
            currency,
            lines,
            total,
            shipping_address,
            placed_at,
            reservation_id,
            shipment,
            rejection_reason,
            unavailable_skus,
            cancellation_reason,
        } = loaded.state;
        let (shipment_id, carrier, tracking_number) = match shipment {
            Some(s) => (
                Some(s.shipment_id),
                Some(s.carrier),
                Some(s.tracking_number),
            ),
            None => (None, None, None),
        };
        Self {
            id,
            status,
            customer_id,
            customer_email,
            currency,
            lines,
            total,
            shipping_address,
            version: loaded.version,
            placed_at,
            reservation_id,
            shipment_id,
            carrier,
            tracking_number,
            rejection_reason,
            unavailable_skus: (!unavailable_skus.is_empty()).then_some(unavailable_skus),
            cancellation_reason,
        }
    }
}

/// The event history of one order, by sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderEventsResponse {
    pub order_id: Uuid,
    pub events: Vec<EventEnvelope>,
}

/// Answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`: the process serves requests.
    pub status: String,
}

/// Answer of `GET /ready` when every dependency is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`.
    pub status: String,
    /// `ok`.
    pub database: String,
    /// `ok`, or `not configured` when this gateway runs without NATS.
    pub nats: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> PlaceOrderRequest {
        serde_json::from_value(value).unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({"customer_id": "c-42", "customer_email": "ada@example.com", "currency": "EUR",
               "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1299}],
               "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                                    "postal_code": "10115", "country": "DE"}})
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_valid_request_becomes_a_command() {
        let id = Uuid::now_v7();
        let command = request(valid()).into_command(id, Utc::now()).unwrap();
        assert_eq!(command.order_id(), id);
        assert_eq!(command.total().minor_units(), 2598);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut body = valid();
        body["customer_id"] = json!(" ");
        body["customer_email"] = json!("nope");
        body["currency"] = json!("eur");
        body["lines"] = json!([{"sku": "SKU-1", "quantity": 0, "unit_price": -1},
                               {"sku": "bad sku", "quantity": 1, "unit_price": 1}]);
        body["shipping_address"]["country"] = json!("de");
        let errors = request(body)
            .into_command(Uuid::now_v7(), Utc::now())
            .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "customer_email",
                "currency",
                "lines[0].quantity",
                "lines[0].unit_price",
                "lines[1].sku",
                "shipping_address.country",
                "customer_id",
            ]
        );
    }

    #[test]
    fn line_count_is_checked_with_or_without_other_errors() {
        let mut body = valid();
        body["lines"] = json!([]);
        let errors = request(body.clone())
            .into_command(Uuid::now_v7(), Utc::now())
            .unwrap_err();
        assert_eq!(fields(&errors), ["lines"]);
        body["currency"] = json!("x");
        let errors = request(body)
            .into_command(Uuid::now_v7(), Utc::now())
            .unwrap_err();
        assert_eq!(fields(&errors), ["currency", "lines"]);
    }

    #[test]
    fn cancel_defaults_to_the_customer() {
        let ok: CancelOrderRequest = serde_json::from_value(json!({"reason": " late "})).unwrap();
        assert_eq!(ok.validate().unwrap(), ("late".into(), "customer".into()));
        let bad: CancelOrderRequest =
            serde_json::from_value(json!({"reason": "", "cancelled_by": " "})).unwrap();
        assert_eq!(
            fields(&bad.validate().unwrap_err()),
            ["reason", "cancelled_by"]
        );
    }
}
