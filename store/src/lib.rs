//! The PostgreSQL side of orderflow: the event store (postgres-es under cqrs-es), the schema
//! it lives in, and the readers of the event log that every other role shares.
//!
//! This crate exists because the gateway, the relay, the workers, the projections and the
//! operator commands all read or write the same event log; one crate owns its schema and its
//! SQL so they cannot drift apart.
//!
//! # Layout
//! - [`database`]: connecting (timeouts that bound stuck transactions), creating the database
//!   if missing, and applying the migrations.
//! - [`log`]: the event log as others see it: [`EventEnvelope`], reads by order and by global
//!   position, and the relay's commit-ordered position assignment.
//! - [`orders`]: [`OrderStore`], which runs commands on the Order aggregate and loads orders.
//! - `appender`: the group commit behind the store's own appends.
//! - [`health`]: [`DatabaseHealth`], whether PostgreSQL answers now, probed on a connection
//!   of its own, so that callers answer at once while it is away instead of waiting on the
//!   pool.
//! - [`idempotency`]: idempotency keys for `POST /v1/orders`.
//! - [`inbox`]: the consumers' record of handled events.
//! - [`steps`]: step records (what each consumer did with each event) and when the relay
//!   published each batch: an order's trace, kept for a retention time.
//! - [`vault`]: [`Vault`], per-customer encryption of personal data and forgetting a
//!   customer (crypto-shredding).
#![forbid(unsafe_code)]

mod appender;
pub mod database;
pub mod health;
pub mod idempotency;
pub mod inbox;
pub mod log;
pub mod orders;
pub mod steps;
pub mod vault;

pub use database::{connect, migrate, open, DatabaseOptions, StoreError};
pub use health::{DatabaseHealth, DatabaseStatus, Unavailable};
pub use log::{EventEnvelope, EventMetadata};
pub use orders::{CommandError, CommandMetadata, LoadedOrder, OrderStore};
pub use vault::{MasterKey, Vault, VaultError};

/// Gives the store's metrics their `# HELP` text. Call once after installing a metrics
/// recorder (without one it does nothing).
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "orderflow_store_append_group_size",
        metrics::Unit::Count,
        "Commands whose events were appended with one statement and one commit (group commit)"
    );
}
