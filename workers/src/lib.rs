//! The fan-out side of orderflow: the relay that publishes the event log to JetStream, the
//! durable consumer runtime, and the workers that react to order events.
//!
//! # Layout
//! - [`handler`]: the [`Handler`] trait every consumer implements, and its outcomes.
//! - [`bus`]: connecting to NATS, stream names and subjects, creating the streams.
//! - [`relay`]: the relay from the event log to the stream (lock, checkpoint, pipelining).
//! - [`runtime`]: durable pull consumers: retries, dead letters, step/drain, lag.
//! - [`dlq`]: the dead-letter stream: park, list, show, redrive.
//! - [`testing`]: a stream pair of its own per test, and a reader of whole streams.
#![forbid(unsafe_code)]

pub mod bus;
pub mod dlq;
pub mod relay;
pub mod runtime;
pub mod handler;
pub mod testing;

pub use bus::{Bus, BusError, BusOptions};
pub use handler::{Delivery, Effects, Handler, HandlerError};
