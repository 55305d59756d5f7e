//! orderflow's messaging, apart from what any consumer does with a message: the NATS
//! JetStream connection and the two streams, the relay that publishes the event log to the
//! stream in commit order, the durable consumer runtime (batches, retries, dead letters,
//! graceful stops), and the [`Handler`] trait every consumer implements. It knows nothing of
//! inventory, e-mail or carriers (those are `orderflow-workers`) nor of read models
//! (`orderflow-projections`); both plug in through [`Handler`].
//!
//! # Layout
//! - [`handler`]: the [`Handler`] trait every consumer implements, and its outcomes.
//! - [`connection`]: connecting to NATS, stream names and subjects, creating the streams,
//!   redacting credentials.
//! - [`relay`]: the relay from the event log to the stream (lock, checkpoint, pipelining).
//! - [`runtime`]: durable pull consumers: retries, dead letters, graceful stop, step/drain, lag.
//! - `in_hand`: what one consumer process holds: kept in progress, redeliveries of it
//!   recognised, pulls sized to the ack wait, stalls detected.
//! - `keep_alive`: the thread and connection that send the progress acks of what every
//!   consumer of a process holds.
//! - [`dlq`]: the dead-letter stream: park, list, show, redrive.
//! - [`stream_check`]: the stream compared with the log and repaired from it (the relay's
//!   check, `orderflow verify stream`).
//!
//! # Entry points
//! - `orderflow relay`: [`relay::run_relay`] (`relay::relay_once`, `relay::publish_range` to
//!   re-publish from the store, `relay::relay_status` for lag).
//! - every consumer: [`runtime::run_consumer`] with a [`Handler`].
//! - `orderflow dlq ...`: [`dlq::list`], [`dlq::show`], [`dlq::redrive`], [`dlq::redrive_all`].
//! - `GET /v1/admin/consumers`: [`runtime::consumer_info`].
#![forbid(unsafe_code)]

pub mod connection;
pub mod dlq;
pub mod handler;
mod in_hand;
mod keep_alive;
mod lanes;
pub mod relay;
pub mod runtime;
pub mod stream_check;

pub use connection::{redact_nats_url, Bus, BusError, BusOptions};
pub use handler::{handle_each, Delivery, Effects, Handler, HandlerError};
pub use relay::{run_relay, RelayError, RelayOptions};
pub use runtime::{
    consumer_info, run_consumer, ConsumerLag, ConsumerOptions, RuntimeError, StartAt,
};

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
    describe_counter!(
        "orderflow_stream_repairs_total",
        "Repairs of the stream from the store (streams created again, lost events re-published)"
    );
    describe_counter!(
        "orderflow_stream_republished_total",
        "Events re-published from the store by stream repairs"
    );
    describe_counter!(
        "orderflow_consumer_recreated_total",
        "Durable consumers found gone (deleted, or lost with the stream) and created again, by consumer"
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
    describe_histogram!(
        "orderflow_consumer_batch_duration_seconds",
        Unit::Seconds,
        "Time a batched consumer took over one batch, acks included, by consumer"
    );
    describe_histogram!(
        "orderflow_consumer_batch_size",
        Unit::Count,
        "Messages in one batch of a batched consumer, by consumer"
    );
    describe_gauge!(
        "orderflow_consumer_stalled_seconds",
        Unit::Seconds,
        "How long a consumer with a backlog has settled no message in this process (0 while it advances), by consumer"
    );
    describe_counter!(
        "orderflow_consumer_redelivered_in_hand_total",
        "Redeliveries of a message this process still held, dropped unworked (the copy in hand settles it), by consumer"
    );
    describe_counter!(
        "orderflow_dead_letters_total",
        "Messages parked in the dead-letter stream, by consumer and reason (failed, gave_up, malformed, delivery_limit)"
    );
}
