//! The fan-out side of orderflow: the relay that publishes the event log to JetStream, the
//! durable consumer runtime, and the workers that react to order events.
//!
//! # Layout
//! - [`handler`]: the [`Handler`] trait every consumer implements, and its outcomes.
#![forbid(unsafe_code)]

pub mod handler;

pub use handler::{Delivery, Effects, Handler, HandlerError};
