//! The schemas of the path, query and header parameters the handlers check, each built from
//! the constant or list the check uses, so that the OpenAPI document states exactly what the
//! server accepts. The handlers parse the raw text themselves; these types only describe it.

use orderflow_projections::order_summary;
use orderflow_workers::loyalty;
use orderflow_workers::registry::WORKER_NAMES;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use crate::routes::admin::MAX_DLQ_LIMIT;

fn integer(minimum: u64, maximum: Option<u64>, description: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(maximum)
        .description(Some(description))
        .into()
}

fn one_of(names: Vec<String>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(description))
        .into()
}

/// `limit` of the order lists: 1 to [`order_summary::MAX_LIMIT`].
pub struct OrderListLimit;

impl PartialSchema for OrderListLimit {
    fn schema() -> RefOr<Schema> {
        integer(
            1,
            Some(order_summary::MAX_LIMIT.into()),
            format!(
                "Orders per page, 1 to {} (default {})",
                order_summary::MAX_LIMIT,
                order_summary::DEFAULT_LIMIT
            ),
        )
    }
}

impl ToSchema for OrderListLimit {}

/// `limit` of a customer's loyalty entries: 1 to [`loyalty::MAX_ENTRIES`].
pub struct LoyaltyEntriesLimit;

impl PartialSchema for LoyaltyEntriesLimit {
    fn schema() -> RefOr<Schema> {
        integer(
            1,
            Some(loyalty::MAX_ENTRIES.into()),
            format!(
                "Entries returned, newest first, 1 to {} (default {})",
                loyalty::MAX_ENTRIES,
                loyalty::DEFAULT_ENTRIES
            ),
        )
    }
}

impl ToSchema for LoyaltyEntriesLimit {}

/// `cursor` of the order lists: what `next_cursor` holds, 48 hexadecimal digits.
pub struct OrderListCursor;

impl PartialSchema for OrderListCursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[0-9a-fA-F]{{{}}}$",
                order_summary::CURSOR_HEX_DIGITS
            )))
            .description(Some("The `next_cursor` of the previous page"))
            .into()
    }
}

impl ToSchema for OrderListCursor {}

/// `limit` of the dead-letter list: 1 to [`MAX_DLQ_LIMIT`].
pub struct DeadLetterLimit;

impl PartialSchema for DeadLetterLimit {
    fn schema() -> RefOr<Schema> {
        integer(
            1,
            Some(MAX_DLQ_LIMIT as u64),
            format!(
                "At most this many, 1 to {MAX_DLQ_LIMIT} (default {})",
                crate::routes::admin::DEFAULT_DLQ_LIMIT
            ),
        )
    }
}

impl ToSchema for DeadLetterLimit {}

/// A dead letter's sequence in the dead-letter stream: stream sequences start at 1.
pub struct DeadLetterSequence;

impl PartialSchema for DeadLetterSequence {
    fn schema() -> RefOr<Schema> {
        integer(
            1,
            None,
            "The dead letter's sequence in the dead-letter stream, from 1".into(),
        )
    }
}

impl ToSchema for DeadLetterSequence {}

/// An order event's sequence: from 1 (to the order's version, which only the order knows).
pub struct EventSequence;

impl PartialSchema for EventSequence {
    fn schema() -> RefOr<Schema> {
        integer(
            1,
            Some(i64::MAX as u64),
            "An event's sequence within its order: from 1 to the order's version".into(),
        )
    }
}

impl ToSchema for EventSequence {}

/// The name of a durable consumer this code runs: a worker or a projection.
pub struct ConsumerName;

impl PartialSchema for ConsumerName {
    fn schema() -> RefOr<Schema> {
        let mut names: Vec<String> = WORKER_NAMES.iter().map(|n| n.to_string()).collect();
        names.extend(projection_names());
        one_of(names, "A worker or a projection")
    }
}

impl ToSchema for ConsumerName {}

/// The name of a projection this code knows.
pub struct ProjectionName;

impl PartialSchema for ProjectionName {
    fn schema() -> RefOr<Schema> {
        one_of(projection_names(), "A projection")
    }
}

impl ToSchema for ProjectionName {}

fn projection_names() -> Vec<String> {
    orderflow_projections::all()
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}

/// Most characters of an `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Whether `key` is a valid `Idempotency-Key`: 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] visible
/// ASCII characters.
pub fn is_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS
        && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The `Idempotency-Key` header: what [`is_idempotency_key`] accepts.
pub struct IdempotencyKey;

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[\\x21-\\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}$"
            )))
            .description(Some(format!(
                "1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
            )))
            .into()
    }
}

impl ToSchema for IdempotencyKey {}
