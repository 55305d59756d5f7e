//! The business workers of orderflow: each reacts to order events on its own durable
//! consumer, through the messaging of `orderflow-bus`, and makes its effect idempotent.
//!
//! # Layout
//! - [`inventory`]: the inventory worker, stock and reservations.
//! - [`notifications`]: the notifications worker and its channels (log, webhook, smtp).
//! - [`shipments`]: the shipments worker and its carriers (simulated, http).
//! - [`partner`]: the gate every call to a carrier or mail service goes through: an adaptive
//!   limit of calls in flight, `Retry-After`, outages ridden out without spending attempts.
//! - [`loyalty`]: the loyalty worker, points per shipped order, balances and entries.
//! - [`registry`]: worker names to handlers ([`build_worker`]) for `orderflow worker`.
//! - `command`: how a worker sends a command to an order (retrying conflicts).
//! - `progress`: how far each worker's consumer had got, where a lost one resumes.
//!
//! # Entry points
//! - `orderflow worker <name>`: [`registry::build_worker`] then
//!   `orderflow_bus::runtime::run_consumer`.
//! - HTTP: [`inventory::set_stock`], [`inventory::get_stock`],
//!   [`notifications::list_for_order`], [`loyalty::account`].
#![forbid(unsafe_code)]

mod command;
pub mod inventory;
pub mod loyalty;
pub mod notifications;
pub mod partner;
mod progress;
pub mod registry;
pub mod shipments;

pub use registry::{build_worker, UnknownWorker, WorkerDeps, WORKER_NAMES};
