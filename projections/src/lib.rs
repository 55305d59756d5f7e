//! Read models of orderflow, folded from the event log: the projection framework, the
//! `order-summary` and `analytics` projections and their queries, rebuilds, and replay for
//! debugging (DESIGN.md guarantees 6 and 7).
//!
//! # Layout
//! - [`projection`]: the [`Projection`] trait, live/shadow [`Tables`], the checkpoint written
//!   in the same transaction as the rows, and [`projection::apply_live`].
//! - [`handler`]: [`ProjectionHandler`], a projection as a workers' [`orderflow_bus::Handler`]
//!   (one message in flight; a position gap asks for a retry).
//! - [`order_summary`]: one row per order and [`order_summary::list_orders`] (cursor pages).
//! - [`analytics`]: revenue per day and currency, orders per status, sales per SKU, and
//!   [`analytics::summary`].
//! - [`mod@rebuild`]: rebuild into shadow tables and swap, verify, list, rebuild at start.
//! - [`progress`]: a progress bar or plain progress lines for a rebuild.
//! - [`replay`]: an order's timeline with state diffs, and replaying a range of the log to a
//!   consumer.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod handler;
pub mod order_summary;
pub mod progress;
pub mod projection;
pub mod rebuild;
pub mod replay;

use std::sync::Arc;

pub use analytics::AnalyticsProjection;
pub use handler::ProjectionHandler;
pub use order_summary::OrderSummaryProjection;
pub use projection::{Projection, ProjectionError, TableSpec, Tables};
pub use rebuild::{ensure_current, list, rebuild, Progress, RebuildOptions, RebuildReport};

/// Every projection orderflow runs, in a stable order.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(OrderSummaryProjection),
        Arc::new(AnalyticsProjection),
    ]
}

/// The projection called `name` (`order-summary`, `analytics`).
///
/// # Errors
/// [`ProjectionError::Unknown`] for any other name.
pub fn by_name(name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::Unknown(name.to_string()))
}

/// Why no handler was built for a consumer name.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("unknown consumer {0:?}; known: {known}", known = consumer_names().join(", "))]
    Unknown(String),
    /// A worker was asked for without the workers' configuration (channel, carrier).
    #[error("the workers' configuration is needed to run {0}")]
    NeedsWorkerDeps(String),
    #[error(transparent)]
    Misconfigured(orderflow_workers::registry::UnknownWorker),
}

/// Every consumer's name: the workers', then the projections'.
pub fn consumer_names() -> Vec<&'static str> {
    let mut names = orderflow_workers::registry::WORKER_NAMES.to_vec();
    names.extend(all().iter().map(|p| p.name()));
    names
}

/// The handler of consumer `name`: a projection (over `pool`), or a worker built from
/// `worker_deps`. The binary and the gateway's admin routes both resolve names here.
///
/// # Errors
/// [`ConsumerError::Unknown`] for a name no consumer has, [`ConsumerError::NeedsWorkerDeps`]
/// for a worker when `worker_deps` is `None`, [`ConsumerError::Misconfigured`] when the
/// worker's channel or carrier cannot be built.
pub fn consumer_handler(
    name: &str,
    pool: sqlx::PgPool,
    worker_deps: Option<orderflow_workers::registry::WorkerDeps>,
) -> Result<Arc<dyn orderflow_bus::Handler>, ConsumerError> {
    use orderflow_workers::registry::{build_worker, UnknownWorker, WORKER_NAMES};
    if let Ok(projection) = by_name(name) {
        return Ok(Arc::new(ProjectionHandler::new(pool, projection)));
    }
    if !WORKER_NAMES.contains(&name) {
        return Err(ConsumerError::Unknown(name.to_string()));
    }
    let deps = worker_deps.ok_or_else(|| ConsumerError::NeedsWorkerDeps(name.to_string()))?;
    build_worker(name, deps).map_err(|error| match error {
        UnknownWorker::Unknown(name) => ConsumerError::Unknown(name),
        other => ConsumerError::Misconfigured(other),
    })
}
