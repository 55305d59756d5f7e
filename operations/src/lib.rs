//! The operations both of orderflow's entry points for operators offer, the CLI
//! (`orderflow replay|projections|dlq ...`) and the admin routes (`/v1/admin/...`): naming
//! consumers, replaying the log (with its rules and limits), rebuilding projections and
//! handling dead letters. Both call this crate, so the two cannot drift apart. It is a crate
//! of its own because it is the one place that knows every consumer: the business workers
//! and the projections, which otherwise know nothing of each other.
//!
//! # Layout
//! - [`consumers`]: every consumer's name, and the handler behind a name.
//! - [`replay`]: an order's timeline with state diffs, replaying a range of the log to one
//!   consumer, and the rules a range must follow.
//! - [`trace`]: an order's full trace: its events, what every consumer did with each one,
//!   and what each one caused.
//! - Rebuilds are [`mod@orderflow_projections::rebuild`], dead letters [`orderflow_bus::dlq`];
//!   they are re-exported here as [`mod@rebuild`] and [`dlq`] so that callers have one door.
#![forbid(unsafe_code)]

pub mod consumers;
pub mod replay;
pub mod trace;

pub use consumers::{consumer_handler, consumer_names, ConsumerError};
pub use orderflow_bus::dlq;
pub use orderflow_projections::rebuild;
