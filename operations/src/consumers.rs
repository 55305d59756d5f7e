//! Consumer names: every durable consumer orderflow runs (the workers', then the
//! projections'), and the handler behind a name, for replays and operator commands.

use std::sync::Arc;

use orderflow_bus::Handler;
use orderflow_projections::ProjectionHandler;
use orderflow_workers::registry::{build_worker, UnknownWorker, WorkerDeps, WORKER_NAMES};

/// Why no handler was built for a consumer name.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// No worker or projection has this name.
    #[error("unknown consumer {0:?}; known: {known}", known = consumer_names().join(", "))]
    Unknown(String),
    /// A worker was asked for without the workers' configuration (channel, carrier).
    #[error("the workers' configuration is needed to run {0}")]
    NeedsWorkerDeps(String),
    /// The worker's channel or carrier cannot be built from the configuration given.
    #[error(transparent)]
    Misconfigured(UnknownWorker),
}

/// Every consumer's name: the workers', then the projections'.
pub fn consumer_names() -> Vec<&'static str> {
    let mut names = WORKER_NAMES.to_vec();
    names.extend(orderflow_projections::all().iter().map(|p| p.name()));
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
    worker_deps: Option<WorkerDeps>,
) -> Result<Arc<dyn Handler>, ConsumerError> {
    if let Ok(projection) = orderflow_projections::by_name(name) {
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
