//! Value types that can only hold valid values: parse, don't validate.
//!
//! Every type has a `parse` that returns a [`FieldError`] naming what is wrong, so the gateway
//! can report each bad field of a request at once.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;
/// Most units of one SKU in one line.
pub const MAX_QUANTITY: u32 = 1000;

/// One invalid input field: its JSON path and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, ToSchema)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the field, for example `lines[0].quantity`.
    pub field: String,
    /// What is wrong with it, as a sentence.
    pub message: String,
}

impl FieldError {
    /// An error on `field` (a JSON path) with `message` saying what is wrong.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, nested under a parent path (`lines[3]` + `quantity`).
    #[must_use]
    pub fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Most characters of a [`CustomerId`].
pub const MAX_CUSTOMER_ID_CHARS: usize = 100;
/// Most characters of a SKU.
pub const MAX_SKU_CHARS: usize = 64;
/// Most characters of an e-mail address.
pub const MAX_EMAIL_CHARS: usize = 254;
/// The highest unit price, in minor units: the largest at which no order's total can
/// overflow ([`MAX_LINES`] lines of [`MAX_QUANTITY`] units each).
pub const MAX_UNIT_PRICE: i64 = i64::MAX / (MAX_QUANTITY as i64 * MAX_LINES as i64);
/// Most characters of a shipping address's `name`, `line1` and `line2`.
pub const MAX_ADDRESS_LINE_CHARS: usize = 200;
/// Most characters of a shipping address's `city`.
pub const MAX_CITY_CHARS: usize = 100;
/// Most characters of a shipping address's `postal_code`.
pub const MAX_POSTAL_CODE_CHARS: usize = 20;

/// The rule of every free-text field: 1 to `max_chars` characters (Unicode scalar values, as
/// JSON Schema's `maxLength` counts them) as sent, not blank, and no U+0000 (PostgreSQL
/// stores no NUL character in text or JSON). Returns the text trimmed, which is what is kept;
/// `None` when the rule is broken.
pub fn parse_text(raw: &str, max_chars: usize) -> Option<&str> {
    let trimmed = raw.trim();
    (!trimmed.is_empty() && !raw.contains('\0') && raw.chars().count() <= max_chars)
        .then_some(trimmed)
}

/// The rule of [`parse_text`] as a pattern: no U+0000 anywhere, and one character that is
/// neither white space nor U+0000 (so neither empty nor blank).
pub const TEXT_PATTERN: &str = r"^[^\x00]*[^\s\x00][^\x00]*$";

/// The schema of a [`parse_text`] field of at most `max_chars` characters: `maxLength` and
/// [`TEXT_PATTERN`]. `nullable`: JSON `null` is taken too (the same as leaving the field out).
pub fn text_schema(max_chars: usize, nullable: bool, description: &str) -> Schema {
    let schema_type = if nullable {
        utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null])
    } else {
        utoipa::openapi::schema::SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .description(Some(format!(
            "{description} 1 to {max_chars} characters (Unicode code points), not blank, no \
             U+0000; surrounding white space is trimmed."
        )))
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(TEXT_PATTERN))
        .into()
}

/// The shop's id of a customer: 1 to [`MAX_CUSTOMER_ID_CHARS`] characters, not blank
/// ([`parse_text`]; the trimmed text is what is kept).
///
/// Characters are Unicode scalar values (`char`s), not UTF-8 bytes: that is what JSON Schema's
/// `maxLength` counts, so the OpenAPI document states the same limit the server checks, and
/// an id in a non-Latin script gets the same 100 characters as an ASCII one. The schema's
/// `pattern` ([`TEXT_PATTERN`]) is the "not blank, no U+0000" half of the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

/// Written by hand, not derived, so that the limits come from [`MAX_CUSTOMER_ID_CHARS`].
impl utoipa::PartialSchema for CustomerId {
    fn schema() -> RefOr<Schema> {
        let mut schema = text_schema(
            MAX_CUSTOMER_ID_CHARS,
            false,
            "The customer's id in the shop:",
        );
        if let Schema::Object(object) = &mut schema {
            object.examples = vec!["c-42".into()];
        }
        schema.into()
    }
}

impl ToSchema for CustomerId {}

impl CustomerId {
    /// # Errors
    /// A [`FieldError`] on field `customer_id` when blank, or longer than
    /// [`MAX_CUSTOMER_ID_CHARS`] characters.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match parse_text(raw, MAX_CUSTOMER_ID_CHARS) {
            Some(trimmed) => Ok(Self(trimmed.to_string())),
            None => Err(FieldError::new(
                "customer_id",
                format!("must be 1 to {MAX_CUSTOMER_ID_CHARS} characters, not blank, no U+0000"),
            )),
        }
    }

    /// The id, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string, trimmed.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = FieldError;

    fn try_from(raw: String) -> Result<Self, FieldError> {
        Self::parse(&raw)
    }
}

impl From<CustomerId> for String {
    fn from(id: CustomerId) -> Self {
        id.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stock-keeping unit: 1 to [`MAX_SKU_CHARS`] characters of `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(String);

/// Written by hand, not derived, so that the pattern comes from [`MAX_SKU_CHARS`].
impl utoipa::PartialSchema for Sku {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "A stock-keeping unit: 1 to {MAX_SKU_CHARS} characters of letters, digits, \
                 '-', '_' and '.'"
            )))
            .pattern(Some(format!("^[A-Za-z0-9._-]{{1,{MAX_SKU_CHARS}}}$")))
            .examples(["SKU-1"])
            .into()
    }
}

impl ToSchema for Sku {}

impl Sku {
    /// # Errors
    /// A [`FieldError`] on field `sku` when empty, longer than 64 characters or holding other
    /// characters than letters, digits, `-`, `_` and `.`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if raw.is_empty() || raw.len() > MAX_SKU_CHARS || !raw.chars().all(valid_char) {
            return Err(FieldError::new(
                "sku",
                format!(
                    "must be 1 to {MAX_SKU_CHARS} characters of letters, digits, '-', '_' or '.'"
                ),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// The SKU as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Units of one SKU in one line: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

/// Written by hand, not derived, so that the bounds come from [`MAX_QUANTITY`].
impl utoipa::PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(format!("Units of one SKU: 1 to {MAX_QUANTITY}")))
            .minimum(Some(1))
            .maximum(Some(MAX_QUANTITY))
            .into()
    }
}

impl ToSchema for Quantity {}

impl Quantity {
    /// # Errors
    /// A [`FieldError`] on field `quantity` outside 1..=1000.
    pub fn parse(raw: i64) -> Result<Self, FieldError> {
        match u32::try_from(raw) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(Self(q)),
            _ => Err(FieldError::new(
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            )),
        }
    }

    /// The number of units, 1 to [`MAX_QUANTITY`].
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An amount of money in the currency's minor unit (cents for EUR). Never negative.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct Money(i64);

impl Money {
    /// No money: the start of a sum.
    pub const ZERO: Money = Money(0);

    /// A unit price.
    ///
    /// # Errors
    /// A [`FieldError`] on field `unit_price` when negative or over [`MAX_UNIT_PRICE`].
    pub fn parse(minor_units: i64) -> Result<Self, FieldError> {
        if !(0..=MAX_UNIT_PRICE).contains(&minor_units) {
            return Err(FieldError::new(
                "unit_price",
                format!("must be 0 to {MAX_UNIT_PRICE}"),
            ));
        }
        Ok(Self(minor_units))
    }

    /// The schema of a unit price in a request: an integer from 0 to [`MAX_UNIT_PRICE`].
    pub fn unit_price_schema() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .description(Some(format!(
                "Price of one unit in the currency's minor unit: 0 to {MAX_UNIT_PRICE}"
            )))
            .minimum(Some(0))
            .maximum(Some(MAX_UNIT_PRICE))
            .into()
    }

    /// The amount in minor units of its currency (cents for EUR), never negative.
    pub fn minor_units(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn checked_times(self, quantity: Quantity) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity.get())).map(Money)
    }
}

/// An ISO 4217 currency code: three capital letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
pub struct Currency(String);

impl Currency {
    /// # Errors
    /// A [`FieldError`] on field `currency` unless three capital ASCII letters.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.len() == 3 && raw.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Self(raw.to_string()))
        } else {
            Err(FieldError::new(
                "currency",
                "must be an ISO 4217 code of three capital letters, such as EUR",
            ))
        }
    }

    /// The three-letter ISO 4217 code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plausible e-mail address: `local@domain.tld`, at most [`MAX_EMAIL_CHARS`] characters,
/// no white space or control characters, one `@`, a domain with a dot that neither starts nor
/// ends with one nor has two in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

/// Characters [`Email`] refuses anywhere, as a regular-expression class body: control
/// characters and white space (Unicode's `White_Space`, which `char::is_whitespace` tests).
/// Literal characters past ASCII, since regex dialects disagree on `\u` escapes.
const EMAIL_REFUSED_CLASS: &str =
    "\\x00-\\x20\\x7f-\\xa0\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}";

/// Written by hand, not derived: a `pattern` that is the rule [`Email::parse`] checks (no
/// `format: email`, which allows addresses it refuses and the other way round).
impl utoipa::PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        let local = format!("[^@{EMAIL_REFUSED_CLASS}]+");
        let label = format!("[^@.{EMAIL_REFUSED_CLASS}]+");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "An e-mail address: local@domain.tld, at most {MAX_EMAIL_CHARS} characters, no \
                 white space or control characters"
            )))
            .max_length(Some(MAX_EMAIL_CHARS))
            .pattern(Some(format!("^{local}@{label}(\\.{label})+$")))
            .examples(["ada@example.com"])
            .into()
    }
}

impl ToSchema for Email {}

impl Email {
    /// # Errors
    /// A [`FieldError`] on field `customer_email` when it does not look like an address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("customer_email", "must be an e-mail address");
        if raw.chars().count() > MAX_EMAIL_CHARS
            || raw.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(raw.to_string()))
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is shipped. Every field is required and non-blank; `country` is an
/// ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingAddress {
    /// Who receives the parcel (at most 200 characters).
    pub name: String,
    /// Street and number (at most 200 characters).
    pub line1: String,
    /// Optional second address line; never blank when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town (at most 100 characters).
    pub city: String,
    /// Postal code (at most 20 characters).
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, two capital letters such as `DE`.
    #[schema(pattern = "^[A-Z]{2}$", example = "DE")]
    pub country: String,
}

impl ShippingAddress {
    /// # Errors
    /// One [`FieldError`] per blank or too long field (under `shipping_address.`), and one for a
    /// country that is not two capital letters.
    pub fn parse(
        name: &str,
        line1: &str,
        line2: Option<&str>,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut text = |field: &str, value: &str, max: usize| match parse_text(value, max) {
            Some(trimmed) => trimmed.to_string(),
            None => {
                errors.push(FieldError::new(
                    format!("shipping_address.{field}"),
                    format!("must be 1 to {max} characters, not blank, no U+0000"),
                ));
                String::new()
            }
        };
        let name = text("name", name, MAX_ADDRESS_LINE_CHARS);
        let line1 = text("line1", line1, MAX_ADDRESS_LINE_CHARS);
        let line2 = line2
            .map(|l| text("line2", l, MAX_ADDRESS_LINE_CHARS))
            .filter(|l| !l.is_empty());
        let city = text("city", city, MAX_CITY_CHARS);
        let postal_code = text("postal_code", postal_code, MAX_POSTAL_CODE_CHARS);
        if !(country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase())) {
            errors.push(FieldError::new(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code of two capital letters, such as DE",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name,
            line1,
            line2,
            city,
            postal_code,
            country: country.to_string(),
        })
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    /// The product ordered.
    pub sku: Sku,
    /// Units ordered, 1 to [`MAX_QUANTITY`].
    pub quantity: Quantity,
    /// Price of one unit in minor units.
    pub unit_price: Money,
}

impl OrderLine {
    /// `quantity * unit_price`, or `None` on overflow.
    pub fn line_total(&self) -> Option<Money> {
        self.unit_price.checked_times(self.quantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_is_one_to_a_hundred_characters_after_trimming() {
        assert_eq!(CustomerId::parse(" c-42 ").unwrap().as_str(), "c-42");
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse(" \t ").is_err());
        let hundred = "x".repeat(100);
        assert!(CustomerId::parse(&format!(" {hundred}")).is_err());
        assert_eq!(
            CustomerId::parse(&format!(" {}", "x".repeat(99)))
                .unwrap()
                .as_str(),
            "x".repeat(99)
        );
        assert!(CustomerId::parse(&"x".repeat(101)).is_err());
        assert!(CustomerId::parse("c\0-42").is_err());
        // Characters, not bytes: 100 two-byte characters are 200 bytes and still fit.
        assert!(CustomerId::parse(&"ü".repeat(100)).is_ok());
        assert!(CustomerId::parse(&"ü".repeat(101)).is_err());
        assert_eq!(
            CustomerId::parse("").unwrap_err().field,
            "customer_id".to_string()
        );
    }

    #[test]
    fn customer_id_deserializes_only_when_valid() {
        let id: CustomerId = serde_json::from_str(r#"" c-42""#).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""c-42""#);
        assert!(serde_json::from_str::<CustomerId>(r#""  ""#).is_err());
    }

    #[test]
    fn customer_id_schema_states_the_limits_parse_checks() {
        let schema = serde_json::to_value(<CustomerId as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], MAX_CUSTOMER_ID_CHARS);
    }

    #[test]
    fn quantity_accepts_only_one_to_a_thousand() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(1001).is_err());
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(1000).unwrap().get(), 1000);
    }

    #[test]
    fn money_refuses_negative_and_detects_overflow() {
        assert!(Money::parse(-1).is_err());
        assert!(Money::parse(MAX_UNIT_PRICE + 1).is_err());
        let max = Money(i64::MAX);
        assert_eq!(max.checked_add(Money::parse(1).unwrap()), None);
        assert_eq!(max.checked_times(Quantity::parse(2).unwrap()), None);
        assert_eq!(
            Money::parse(1299)
                .unwrap()
                .checked_times(Quantity::parse(2).unwrap()),
            Some(Money(2598))
        );
    }

    #[test]
    fn currency_is_three_capitals() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn email_needs_local_part_and_dotted_domain() {
        assert!(Email::parse("ada@example.com").is_ok());
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@x.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sku_refuses_blank_long_and_odd_characters() {
        assert!(Sku::parse("SKU-1_a.b").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn address_reports_every_bad_field() {
        let errors = ShippingAddress::parse("", "1 Main St", None, " ", "10115", "de").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "shipping_address.name",
                "shipping_address.city",
                "shipping_address.country"
            ]
        );
    }
}
