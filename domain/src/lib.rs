//! The Order domain of orderflow: pure rules, no I/O.
//!
//! # Layout
//! - [`values`]: parsed value types (`CustomerId`, `Sku`, `Quantity`, `Money`, `Currency`,
//!   `Email`, `ShippingAddress`, `OrderLine`) whose constructors reject invalid input.
//! - [`commands`]: what a caller asks an order to do (`OrderCommand`).
//! - [`events`]: what happened to an order (`OrderEvent`), with type names and versions.
//! - [`aggregate`]: the `Order` aggregate (cqrs-es), its states and its rules.
//! - [`upcasting`]: upcasters that lift stored events of older versions to the current one.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod commands;
pub mod events;
pub mod upcasting;
pub mod values;

pub use aggregate::{Order, OrderError, OrderStatus};
pub use commands::{OrderCommand, PlaceOrder};
pub use events::OrderEvent;
pub use values::{
    parse_text, text_schema, Currency, CustomerId, Email, FieldError, Money, OrderLine, Quantity,
    ShippingAddress, Sku, MAX_ADDRESS_LINE_CHARS, MAX_CITY_CHARS, MAX_CUSTOMER_ID_CHARS,
    MAX_EMAIL_CHARS, MAX_LINES, MAX_POSTAL_CODE_CHARS, MAX_QUANTITY, MAX_SKU_CHARS, MAX_UNIT_PRICE,
    TEXT_PATTERN,
};
