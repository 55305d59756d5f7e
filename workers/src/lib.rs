//! The fan-out side of orderflow: the relay that publishes the event log to JetStream, the
//! durable consumer runtime, and the workers that react to order events.
//!
//! # Layout
//! - [`handler`]: the [`Handler`] trait every consumer implements, and its outcomes.
//! - [`bus`]: connecting to NATS, stream names and subjects, creating the streams.
//! - [`relay`]: the relay from the event log to the stream (lock, checkpoint, pipelining).
//! - [`runtime`]: durable pull consumers: retries, dead letters, step/drain, lag.
//! - [`dlq`]: the dead-letter stream: park, list, show, redrive.
//! - [`inventory`]: the inventory worker, stock and reservations.
//! - [`notifications`]: the notifications worker and its channels (log, webhook, smtp).
//! - [`shipments`]: the shipments worker and its carriers (simulated, http).
//! - [`registry`]: worker names to handlers ([`build_worker`]) for `orderflow worker`.
//! - [`testing`]: a stream pair of its own per test, and a reader of whole streams.
//!
//! # Entry points
//! - `orderflow relay`: [`relay::run_relay`] (`relay::relay_once`, `relay::publish_range` to
//!   re-publish from the store, `relay::relay_status` for lag).
//! - `orderflow worker <name>`: [`registry::build_worker`] then [`runtime::run_consumer`].
//! - `orderflow dlq ...`: [`dlq::list`], [`dlq::show`], [`dlq::redrive`], [`dlq::redrive_all`].
//! - HTTP: [`inventory::set_stock`], [`inventory::get_stock`],
//!   [`notifications::list_for_order`], [`runtime::consumer_info`] (`GET /v1/admin/consumers`).
#![forbid(unsafe_code)]

pub mod bus;
mod command;
pub mod dlq;
pub mod handler;
pub mod inventory;
pub mod notifications;
pub mod registry;
pub mod relay;
pub mod runtime;
pub mod shipments;
pub mod testing;

pub use bus::{Bus, BusError, BusOptions};
pub use handler::{Delivery, Effects, Handler, HandlerError};
pub use registry::{build_worker, UnknownWorker, WorkerDeps, WORKER_NAMES};
pub use relay::{run_relay, RelayError, RelayOptions};
pub use runtime::{consumer_info, run_consumer, ConsumerLag, ConsumerOptions, RuntimeError};

/// Gives every metric of the relay and the consumer runtime its `# HELP` text. Call once after
/// installing a metrics recorder (without one it does nothing).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "orderflow_relay_published_total",
        "Events the relay published to the stream"
    );
    describe_counter!(
        "orderflow_relay_duplicates_total",
        "Publishes the stream dropped as duplicates (Nats-Msg-Id seen in its window)"
    );
    describe_gauge!(
        "orderflow_relay_position",
        "Global position of the last event the relay published"
    );
    describe_counter!(
        "orderflow_consumer_messages_total",
        "Messages a consumer finished, by consumer and outcome (handled, skipped, retried, dead_lettered, released)"
    );
    describe_histogram!(
        "orderflow_consumer_message_duration_seconds",
        Unit::Seconds,
        "Time a consumer took over one message, by consumer"
    );
    describe_counter!(
        "orderflow_dead_letters_total",
        "Messages parked in the dead-letter stream, by consumer and reason (failed, gave_up, malformed, delivery_limit)"
    );
}
