//! Valid orders for tests, with defaults for everything a test does not care about.
//!
//! ```
//! use orderflow_testkit::OrderFixture;
//!
//! let place = OrderFixture::new()
//!     .customer("c-7")
//!     .line("SKU-1", 2)
//!     .priced_line("SKU-2", 1, 500)
//!     .build();
//! assert_eq!(place.total().minor_units(), 2 * 1000 + 500);
//! ```

use chrono::{DateTime, Utc};
use orderflow_domain::values::{Currency, Email, Money, OrderLine, Quantity, ShippingAddress, Sku};
use orderflow_domain::{OrderCommand, PlaceOrder};
use uuid::Uuid;

/// The unit price, in minor units, of lines added with [`OrderFixture::line`].
pub const DEFAULT_UNIT_PRICE: i64 = 1000;

/// A `PlaceOrder` under construction. Without changes it is an order of one `SKU-1` at
/// [`DEFAULT_UNIT_PRICE`] by customer `c-1` (`ada@example.com`), in EUR, to Berlin, placed now.
#[derive(Debug, Clone)]
pub struct OrderFixture {
    id: Uuid,
    customer: String,
    email: String,
    currency: String,
    lines: Vec<(String, i64, i64)>,
    placed_at: Option<DateTime<Utc>>,
}

impl Default for OrderFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderFixture {
    /// The default order, with a fresh id.
    pub fn new() -> Self {
        Self {
            id: Uuid::now_v7(),
            customer: "c-1".into(),
            email: "ada@example.com".into(),
            currency: "EUR".into(),
            lines: Vec::new(),
            placed_at: None,
        }
    }

    /// The order's id.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// The shop's customer id (default `c-1`).
    pub fn customer(mut self, customer: &str) -> Self {
        self.customer = customer.into();
        self
    }

    /// The customer's email address (default `ada@example.com`).
    pub fn email(mut self, email: &str) -> Self {
        self.email = email.into();
        self
    }

    /// An ISO 4217 code such as `USD`.
    pub fn currency(mut self, currency: &str) -> Self {
        self.currency = currency.into();
        self
    }

    /// Adds `quantity` of `sku` at [`DEFAULT_UNIT_PRICE`].
    pub fn line(self, sku: &str, quantity: i64) -> Self {
        self.priced_line(sku, quantity, DEFAULT_UNIT_PRICE)
    }

    /// Adds `quantity` of `sku` at `unit_price` minor units.
    pub fn priced_line(mut self, sku: &str, quantity: i64, unit_price: i64) -> Self {
        self.lines.push((sku.into(), quantity, unit_price));
        self
    }

    /// When the order is placed (by default: when it is built).
    pub fn placed_at(mut self, at: DateTime<Utc>) -> Self {
        self.placed_at = Some(at);
        self
    }

    /// The id the order will have.
    pub fn order_id(&self) -> Uuid {
        self.id
    }

    /// The lines, as the domain has them (one `SKU-1` when none was added).
    ///
    /// # Panics
    /// When a line is invalid.
    pub fn order_lines(&self) -> Vec<OrderLine> {
        if self.lines.is_empty() {
            return vec![order_line("SKU-1", 1, DEFAULT_UNIT_PRICE)];
        }
        self.lines
            .iter()
            .map(|(sku, quantity, price)| order_line(sku, *quantity, *price))
            .collect()
    }

    /// The finished command.
    ///
    /// # Panics
    /// When the order is invalid (a bad SKU, a quantity of 0, ...).
    pub fn build(self) -> PlaceOrder {
        PlaceOrder::new(
            self.id,
            &self.customer,
            Email::parse(&self.email).expect("a valid email"),
            Currency::parse(&self.currency).expect("a valid currency"),
            self.order_lines(),
            address(),
            self.placed_at.unwrap_or_else(Utc::now),
        )
        .expect("a valid order")
    }

    /// The finished command, as an [`OrderCommand`].
    ///
    /// # Panics
    /// As [`OrderFixture::build`].
    pub fn command(self) -> OrderCommand {
        OrderCommand::PlaceOrder(self.build())
    }
}

/// The address every fixture ships to: Ada L, 1 Main St, 10115 Berlin, DE.
///
/// # Panics
/// Never: the address is valid.
pub fn address() -> ShippingAddress {
    ShippingAddress::parse("Ada L", "1 Main St", None, "Berlin", "10115", "DE")
        .expect("a valid address")
}

/// One order line.
///
/// # Panics
/// When `sku`, `quantity` or `unit_price` is invalid.
pub fn order_line(sku: &str, quantity: i64, unit_price: i64) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).expect("a valid SKU"),
        quantity: Quantity::parse(quantity).expect("a valid quantity"),
        unit_price: Money::parse(unit_price).expect("a valid price"),
    }
}

/// A valid SKU.
///
/// # Panics
/// When `raw` is not one.
pub fn sku(raw: &str) -> Sku {
    Sku::parse(raw).expect("a valid SKU")
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn as_json(place: &PlaceOrder) -> Value {
        serde_json::to_value(place).expect("a PlaceOrder serializes")
    }

    #[test]
    fn the_default_order_is_one_sku_1_by_c_1_in_eur() {
        let order = OrderFixture::new();
        let id = order.order_id();
        let place = order.build();
        assert_eq!(place.order_id(), id);
        let place = as_json(&place);
        assert_eq!(place["customer_id"], "c-1");
        assert_eq!(place["currency"], "EUR");
        assert_eq!(
            place["lines"],
            json!([{"sku": "SKU-1", "quantity": 1, "unit_price": DEFAULT_UNIT_PRICE}])
        );
    }

    #[test]
    fn lines_keep_their_order_and_prices() {
        let place = OrderFixture::new()
            .line("SKU-1", 2)
            .priced_line("SKU-2", 1, 500)
            .customer("c-7")
            .currency("USD")
            .build();
        assert_eq!(
            place.total(),
            Money::parse(2 * DEFAULT_UNIT_PRICE + 500).unwrap()
        );
        let place = as_json(&place);
        assert_eq!(place["customer_id"], "c-7");
        assert_eq!(place["currency"], "USD");
        assert_eq!(place["lines"][1]["sku"], "SKU-2");
    }
}
