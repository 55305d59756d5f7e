//! Request and response bodies of the REST API, and the conversion of a request body into a
//! command (parse, don't validate: every bad field is reported at once, as `errors[]`).
//!
//! Request numbers are `i64` so that `quantity: 0` or a negative price parse as JSON and are
//! then refused as values (422), not as malformed bodies (400).

use chrono::{DateTime, Utc};
use orderflow_bus::dlq::ParkedMessage;
use orderflow_bus::runtime::ConsumerLag;
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::{
    parse_text, text_schema, Currency, CustomerId, Email, FieldError, Money, OrderLine,
    OrderStatus, PlaceOrder, Quantity, ShippingAddress, Sku, MAX_ADDRESS_LINE_CHARS,
    MAX_CITY_CHARS, MAX_LINES, MAX_POSTAL_CODE_CHARS,
};
use orderflow_operations::replay::{ReplayOutcome, ReplayReport};
use orderflow_projections::rebuild::TableDifferences;
use orderflow_projections::{ProjectionState, ProjectionStatus, RebuildReport};
use orderflow_store::{EventEnvelope, LoadedOrder};
use orderflow_workers::notifications::NotificationRecord;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::Ref;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rebuilds::RebuildTask;

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
    /// The customer's id in the shop.
    // A plain string, parsed into a `CustomerId` in `into_command`, so that a bad one is
    // reported with the other fields' errors.
    #[schema(value_type = CustomerId)]
    pub customer_id: String,
    /// Where order e-mails go.
    #[schema(value_type = Email)]
    pub customer_email: String,
    /// ISO 4217 code, three capital letters.
    #[schema(value_type = Currency)]
    pub currency: String,
    /// The ordered lines.
    #[schema(schema_with = order_lines_schema)]
    pub lines: Vec<OrderLineRequest>,
    /// Where the order is shipped.
    pub shipping_address: ShippingAddressRequest,
}

/// One line of a new order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    /// The stock-keeping unit.
    #[schema(value_type = Sku)]
    pub sku: String,
    /// Units ordered.
    #[schema(value_type = Quantity)]
    pub quantity: i64,
    /// Price of one unit in minor units.
    #[schema(schema_with = Money::unit_price_schema)]
    pub unit_price: i64,
}

/// `lines` of a new order: 1 to [`MAX_LINES`] of them.
fn order_lines_schema() -> Schema {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("OrderLineRequest"))
        .description(Some(format!("The ordered lines, 1 to {MAX_LINES}")))
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .into()
}

/// Where a new order is shipped.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddressRequest {
    /// The recipient.
    #[schema(schema_with = recipient_schema)]
    pub name: String,
    /// First address line.
    #[schema(schema_with = line1_schema)]
    pub line1: String,
    /// Optional second address line.
    #[serde(default)]
    #[schema(schema_with = line2_schema)]
    pub line2: Option<String>,
    /// City or town.
    #[schema(schema_with = city_schema)]
    pub city: String,
    /// Postal code.
    #[schema(schema_with = postal_code_schema)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, two capital letters.
    #[schema(pattern = "^[A-Z]{2}$", example = "DE")]
    pub country: String,
}

/// The schemas of the free-text request fields, each from the constant its check uses.
fn recipient_schema() -> Schema {
    text_schema(MAX_ADDRESS_LINE_CHARS, false, "The recipient:")
}

fn line1_schema() -> Schema {
    text_schema(MAX_ADDRESS_LINE_CHARS, false, "First address line:")
}

fn line2_schema() -> Schema {
    text_schema(
        MAX_ADDRESS_LINE_CHARS,
        true,
        "Optional second address line; if given,",
    )
}

fn city_schema() -> Schema {
    text_schema(MAX_CITY_CHARS, false, "City or town:")
}

fn postal_code_schema() -> Schema {
    text_schema(MAX_POSTAL_CODE_CHARS, false, "Postal code:")
}

fn reason_schema() -> Schema {
    text_schema(
        MAX_REASON_CHARS,
        true,
        "Why the order is cancelled (none by default):",
    )
}

fn cancelled_by_schema() -> Schema {
    text_schema(
        MAX_CANCELLED_BY_CHARS,
        true,
        "Who cancels it (default `customer`):",
    )
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
                if let Err(error) = CustomerId::parse(&self.customer_id) {
                    errors.push(error);
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

/// Body of `POST /v1/orders/{id}/cancel`; optional: no body is `{}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "changed my mind"}))]
pub struct CancelOrderRequest {
    /// Why the order is cancelled; none by default.
    #[serde(default)]
    #[schema(schema_with = reason_schema)]
    pub reason: Option<String>,
    /// Who cancels it (default `customer`).
    #[serde(default)]
    #[schema(schema_with = cancelled_by_schema)]
    pub cancelled_by: Option<String>,
}

/// Most characters of a cancellation's `reason`.
pub const MAX_REASON_CHARS: usize = 500;
/// Most characters of a cancellation's `cancelled_by`.
pub const MAX_CANCELLED_BY_CHARS: usize = 100;

impl CancelOrderRequest {
    /// The reason (empty when none was given) and the canceller, trimmed.
    ///
    /// # Errors
    /// One [`FieldError`] per blank or over-long field.
    pub fn validate(&self) -> Result<(String, String), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut text = |field: &str, value: Option<&str>, max: usize, default: &str| -> String {
            match value.map(|v| parse_text(v, max)) {
                None => default.to_string(),
                Some(Some(trimmed)) => trimmed.to_string(),
                Some(None) => {
                    errors.push(FieldError::new(
                        field,
                        format!("must be 1 to {max} characters, not blank, no U+0000"),
                    ));
                    String::new()
                }
            }
        };
        let reason = text("reason", self.reason.as_deref(), MAX_REASON_CHARS, "");
        let by = text(
            "cancelled_by",
            self.cancelled_by.as_deref(),
            MAX_CANCELLED_BY_CHARS,
            "customer",
        );
        if errors.is_empty() {
            Ok((reason, by))
        } else {
            Err(errors)
        }
    }
}

/// An order as the event log says it is (now, or after a given event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderResponse {
    /// The order's id (UUID v7, assigned when it was placed).
    pub id: Uuid,
    /// Where the order is in its life cycle.
    pub status: OrderStatus,
    /// The customer's id in the shop, as given when the order was placed.
    pub customer_id: String,
    /// Where order e-mails go; `[erased]` once the customer was forgotten.
    #[schema(schema_with = erasable_email)]
    pub customer_email: Email,
    /// ISO 4217 code of every amount in the order.
    pub currency: Currency,
    /// The ordered lines, in the order they were given.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines in minor units.
    pub total: Money,
    /// Where the order is shipped; every field `[erased]` once the customer was forgotten.
    #[schema(schema_with = erasable_address)]
    pub shipping_address: ShippingAddress,
    /// Sequence of the order's last event (the one this view includes).
    pub version: i64,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
    /// The stock reservation, once confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    /// The shipment, once the order has shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<Uuid>,
    /// The carrier that ships the order, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The carrier's tracking number, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Why the order was rejected, when its status is `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// SKUs that were short when the order was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub unavailable_skus: Option<Vec<Sku>>,
    /// Why the order was cancelled, when it was cancelled with a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    /// Who cancelled the order (`customer` when the cancellation did not say), when its
    /// status is `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
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
            cancelled_by,
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
            cancelled_by,
        }
    }
}

/// The event history of one order, by sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderEventsResponse {
    /// The order's id.
    pub order_id: Uuid,
    /// Every event of the order, oldest (sequence 1) first.
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

/// Body of `PUT /v1/inventory/{sku}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"available": 10}))]
pub struct SetStockRequest {
    /// Units that reservations can still take; 0 or more.
    #[schema(minimum = 0)]
    pub available: i64,
}

/// Answer of `GET /v1/orders/{id}/notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderNotificationsResponse {
    /// The order's id.
    pub order_id: Uuid,
    /// Oldest first; one per notifiable event.
    pub notifications: Vec<NotificationRecord>,
}

/// Whether a durable consumer is a worker or a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerKind {
    /// A worker (inventory, notifications, shipments, loyalty): it acts on events.
    Worker,
    /// A projection (order-summary, analytics): it folds events into a read model.
    Projection,
}

/// The lag of one durable consumer.
// `ConsumerLag` and `kind`, which the bus does not know (to it every consumer is a
// consumer). `#[serde(flatten)]` would give the same JSON, but the document would describe
// it as an `allOf` of two open objects instead of one object with every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsumerLagResponse {
    /// The durable consumer's name.
    pub name: String,
    /// Whether it is a worker or a projection.
    pub kind: ConsumerKind,
    /// False when the durable consumer does not exist yet (never started).
    pub exists: bool,
    /// Messages in the stream not yet delivered to it.
    pub pending: u64,
    /// Delivered and not acked yet (in hand, or waiting to be redelivered).
    pub ack_pending: u64,
    /// Delivered more than once and not acked yet.
    pub redelivered: u64,
    /// Global position of the event at its ack floor (everything up to it was handled or
    /// parked); `null` before the first ack.
    pub last_handled_position: Option<i64>,
}

impl ConsumerLagResponse {
    /// The lag of a consumer of kind `kind`.
    pub fn new(lag: ConsumerLag, kind: ConsumerKind) -> Self {
        Self {
            name: lag.name,
            kind,
            exists: lag.exists,
            pending: lag.pending,
            ack_pending: lag.ack_pending,
            redelivered: lag.redelivered,
            last_handled_position: lag.last_handled_position,
        }
    }
}

/// Answer of `GET /v1/admin/consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsumersResponse {
    /// The consumer of every worker and projection this code runs, whether it exists yet or not.
    pub consumers: Vec<ConsumerLagResponse>,
}

/// One projection's state, and its last rebuild started over HTTP.
// `ProjectionStatus` and `rebuild`, which only this gateway knows; kept one flat object
// for the same reason as `ConsumerLagResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectionResponse {
    /// The projection's name (`order-summary`, `analytics`).
    pub name: String,
    /// The version that built the live tables (`null`: never ran).
    pub version: Option<i32>,
    /// The version of the running code (`null`: a projection this code does not know).
    pub code_version: Option<i32>,
    /// The last global position folded into the live tables.
    pub position: i64,
    /// The log's head position.
    pub head_position: i64,
    /// Events not folded yet.
    pub lag: i64,
    /// Whether the live tables serve, are being rebuilt, or were left by an interrupted rebuild.
    pub state: ProjectionState,
    /// When the checkpoint last changed (`null`: never ran).
    pub updated_at: Option<DateTime<Utc>>,
    /// The last rebuild this gateway started, if any.
    pub rebuild: Option<RebuildTask>,
}

impl ProjectionResponse {
    /// The state of a projection, and the last rebuild this gateway started of it.
    pub fn new(status: ProjectionStatus, rebuild: Option<RebuildTask>) -> Self {
        Self {
            name: status.name,
            version: status.version,
            code_version: status.code_version,
            position: status.position,
            head_position: status.head_position,
            lag: status.lag,
            state: status.state,
            updated_at: status.updated_at,
            rebuild,
        }
    }
}

/// Answer of `GET /v1/admin/projections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectionsResponse {
    /// Every projection this code knows, plus any other one with a checkpoint, by name.
    pub projections: Vec<ProjectionResponse>,
}

/// Body of `POST /v1/admin/projections/{name}/rebuild` (an empty body is `{}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"verify": true}))]
pub struct RebuildRequest {
    /// Rebuild into shadow tables and report differences from the live ones, without
    /// swapping, and answer with the report (default `false`: rebuild and swap in the
    /// background).
    #[serde(default)]
    pub verify: bool,
}

/// Answer of a verify: how the live projection differs from a rebuild of the log.
// Not `RebuildReport` itself: that one serializes its elapsed time as serde's `Duration`
// (`{"secs", "nanos"}`), carries `swapped` (always false for a verify) and leaves the total
// to be summed by the reader; here it is `elapsed_seconds`, and `differences` is the total.
// The per-table part is the library's own `TableDifferences`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// The projection's name.
    pub name: String,
    /// The projection version the rebuild ran with (the running code's).
    pub version: i32,
    /// The live checkpoint the comparison was made at.
    pub position: i64,
    /// Events folded.
    pub events: u64,
    /// Wall-clock time the rebuild took, in seconds.
    pub elapsed_seconds: f64,
    /// Events folded per second.
    pub per_second: f64,
    /// Rows that differ, over all tables (0: the live projection is exactly the log's).
    pub differences: u64,
    /// The differences of each of the projection's tables.
    pub tables: Vec<TableDifferences>,
}

impl From<RebuildReport> for VerifyResponse {
    fn from(report: RebuildReport) -> Self {
        let differences = report.difference_count();
        Self {
            name: report.name,
            version: report.version,
            position: report.position,
            events: report.events,
            elapsed_seconds: report.elapsed.as_secs_f64(),
            per_second: report.per_second,
            differences,
            tables: report.differences.unwrap_or_default(),
        }
    }
}

/// Where a replay starts or stops: a global position, or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LogBoundRequest {
    /// A global position in the event log (a JSON number).
    Position(i64),
    /// An RFC 3339 time (a JSON string), such as `2026-11-25T12:00:00Z`.
    Time(String),
}

/// Body of `POST /v1/admin/consumers/{name}/replay`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": 1, "to": "2026-11-25T12:00:00Z", "dry_run": true}))]
pub struct ReplayConsumerRequest {
    /// First position to replay (inclusive), or a time: the first event recorded at or after it.
    pub from: LogBoundRequest,
    /// Last position (inclusive), or a time: the last event recorded at or before it.
    /// Default: the log's head.
    #[serde(default)]
    pub to: Option<LogBoundRequest>,
    /// Report what the consumer would do and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply effects even where the consumer's inbox says the event was handled.
    #[serde(default)]
    pub force: bool,
}

/// What a consumer's handler reported for one replayed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcomeKind {
    /// Not handed to the handler: the consumer's inbox says it handled the event before, so
    /// nothing is done (`force` hands it over anyway).
    Skipped,
    /// Finished; `effects` says what it did or would do (empty: nothing to do).
    Done,
    /// It asked to be retried later (`error`).
    Retry,
    /// It gave up on the event (`error`).
    GiveUp,
}

/// One replayed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayedEventResponse {
    /// The event's global position in the log.
    pub position: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The order the event belongs to.
    pub order_id: Uuid,
    /// The event's sequence within its order, from 1.
    pub sequence: i64,
    /// The event type, such as `OrderPlaced`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the handler reported.
    pub outcome: ReplayOutcomeKind,
    /// What the handler did (or, in a dry run, would do); empty unless `outcome` is `done`.
    pub effects: Vec<String>,
    /// The handler's error; `null` unless `outcome` is `retry` or `give_up`.
    pub error: Option<String>,
}

/// Answer of `POST /v1/admin/consumers/{name}/replay`.
// Not `ReplayReport` itself: there each event's outcome is an internally tagged enum
// flattened into the event, so its other members change with the outcome (`reason`,
// `effects` or `error`). Over HTTP every event has the same members, `effects` (empty but
// for `done`) and `error` (`null` but for `retry` and `give_up`), which clients can read
// without switching on `outcome` and which the document describes as one plain object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayReportResponse {
    /// The durable consumer the events were replayed to.
    pub consumer: String,
    /// First position replayed (inclusive).
    pub from: i64,
    /// Last position replayed (inclusive).
    pub to: i64,
    /// True when nothing was changed (the request's `dry_run`).
    pub dry_run: bool,
    /// True when events the inbox marked as handled were applied anyway (the request's `force`).
    pub force: bool,
    /// Every replayed event, by position.
    pub events: Vec<ReplayedEventResponse>,
}

impl From<ReplayReport> for ReplayReportResponse {
    fn from(r: ReplayReport) -> Self {
        Self {
            consumer: r.consumer,
            from: r.from,
            to: r.to,
            dry_run: r.dry_run,
            force: r.force,
            events: r
                .events
                .into_iter()
                .map(|e| {
                    let (outcome, effects, error) = match e.outcome {
                        ReplayOutcome::Skipped { .. } => {
                            (ReplayOutcomeKind::Skipped, Vec::new(), None)
                        }
                        ReplayOutcome::Done { effects } => (ReplayOutcomeKind::Done, effects, None),
                        ReplayOutcome::Retry { error } => {
                            (ReplayOutcomeKind::Retry, Vec::new(), Some(error))
                        }
                        ReplayOutcome::GiveUp { error } => {
                            (ReplayOutcomeKind::GiveUp, Vec::new(), Some(error))
                        }
                    };
                    ReplayedEventResponse {
                        position: e.position,
                        event_id: e.event_id,
                        order_id: e.order_id,
                        sequence: e.sequence,
                        event_type: e.event_type,
                        outcome,
                        effects,
                        error,
                    }
                })
                .collect(),
        }
    }
}

/// A message a consumer gave up on, parked in the dead-letter stream.
// Not `ParkedMessage` itself: that one nests the stored letter under `letter` and keeps the
// original body as a string; here the letter's members sit next to `sequence` and `subject`,
// and the body is decoded, so an operator reads the event envelope as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterResponse {
    /// Its sequence in the dead-letter stream: what `GET /v1/admin/dlq/{seq}` and redrive take.
    pub sequence: u64,
    /// Its subject in the dead-letter stream: `<prefix>_dlq.<consumer>.<order_id>`.
    pub subject: String,
    /// The durable consumer that gave up.
    pub consumer: String,
    /// The last error.
    pub error: String,
    /// Deliveries to the consumer.
    pub attempts: u64,
    /// The subject the message was first delivered on.
    pub original_subject: String,
    /// Its sequence in the event stream.
    pub original_stream_sequence: u64,
    /// Its `Nats-Msg-Id` header (`<order_id>:<sequence>` for events), if it had one.
    pub original_message_id: Option<String>,
    /// When the consumer gave up on it.
    pub parked_at: DateTime<Utc>,
    /// The original body: the event envelope as JSON, or the raw text when it is not JSON.
    pub body: serde_json::Value,
}

impl From<ParkedMessage> for DeadLetterResponse {
    fn from(p: ParkedMessage) -> Self {
        let letter = p.letter;
        let body = serde_json::from_str(&letter.body)
            .unwrap_or_else(|_| serde_json::Value::String(letter.body.clone()));
        Self {
            sequence: p.sequence,
            subject: p.subject,
            consumer: letter.consumer,
            error: letter.error,
            attempts: letter.attempts,
            original_subject: letter.original_subject,
            original_stream_sequence: letter.original_stream_sequence,
            original_message_id: letter.original_message_id,
            parked_at: letter.parked_at,
            body,
        }
    }
}

/// Answer of `GET /v1/admin/dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersResponse {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetterResponse>,
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

/// An inclusive range of log positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PositionRange {
    /// The first position of the range.
    pub from: i64,
    /// The last position of the range (included).
    pub to: i64,
}

/// A position the stream holds more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DuplicatePosition {
    /// The log position.
    pub position: i64,
    /// How many messages carry it.
    pub copies: u64,
}

/// Answer of `GET /v1/admin/stream/verify`: the stream compared with the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamVerificationResponse {
    /// True when the stream holds every position up to the relay's checkpoint exactly once
    /// and nothing else (`orderflow verify stream --repair` repairs it when false).
    pub agrees: bool,
    /// The main stream's name.
    pub stream: String,
    /// False when the main stream does not exist.
    pub stream_exists: bool,
    /// Events in the store.
    pub stored_events: i64,
    /// The highest position numbered in the store.
    pub head_position: i64,
    /// The last position the relay published; later ones are not published yet.
    pub checkpoint: i64,
    /// Event messages in the stream (redrives of dead letters left out).
    pub stream_events: u64,
    /// Redrives of dead letters in the stream.
    pub redrives: u64,
    /// The lowest position in the stream.
    pub first_position: Option<i64>,
    /// The highest position in the stream.
    pub last_position: Option<i64>,
    /// Positions up to the checkpoint that the stream does not hold.
    pub missing: Vec<PositionRange>,
    /// How many positions are missing.
    pub missing_count: i64,
    /// Positions the stream holds more than once.
    pub duplicates: Vec<DuplicatePosition>,
    /// Positions in the stream beyond the store's head.
    pub unknown: Vec<i64>,
    /// Messages that carry no readable position.
    pub unreadable: u64,
}

impl From<orderflow_bus::stream_check::Verification> for StreamVerificationResponse {
    fn from(v: orderflow_bus::stream_check::Verification) -> Self {
        Self {
            agrees: v.agrees(),
            missing_count: v.missing_count(),
            missing: v
                .missing
                .iter()
                .map(|&(from, to)| PositionRange { from, to })
                .collect(),
            duplicates: v
                .duplicates
                .iter()
                .map(|(&position, &copies)| DuplicatePosition { position, copies })
                .collect(),
            stream: v.stream,
            stream_exists: v.stream_exists,
            stored_events: v.stored_events,
            head_position: v.head_position,
            checkpoint: v.checkpoint,
            stream_events: v.stream_events,
            redrives: v.redrives,
            first_position: v.first_position,
            last_position: v.last_position,
            unknown: v.unknown,
            unreadable: v.unreadable,
        }
    }
}

/// The marker a forgotten customer's personal fields read as
/// ([`orderflow_store::vault::ERASED`]).
fn erased_marker() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([orderflow_store::vault::ERASED]))
        .build()
}

/// An answered e-mail address: the customer's, or the erased marker once they were forgotten.
fn erasable_email() -> Schema {
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(<Email as utoipa::PartialSchema>::schema())
            .item(erased_marker())
            .build(),
    )
}

/// An answered shipping address: the customer's, or every field the erased marker once they
/// were forgotten.
fn erasable_address() -> Schema {
    let mut erased = utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Object);
    for field in ["name", "line1", "city", "postal_code", "country"] {
        erased = erased.property(field, erased_marker()).required(field);
    }
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(<ShippingAddress as utoipa::PartialSchema>::schema())
            .item(erased.build())
            .build(),
    )
}
