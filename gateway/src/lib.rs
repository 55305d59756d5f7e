//! The REST gateway of orderflow (warp 0.4): turns HTTP requests into commands on the Order
//! aggregate and reads orders from the event store.
//!
//! Every answer carries an `X-Request-Id`; every error is `application/problem+json`
//! (RFC 9457), mapped from typed errors in one place ([`problem`]).
//!
//! # Layout
//! - [`mod@routes`]: one module per resource ([`routes::orders`], [`routes::customers`],
//!   [`routes::inventory`], [`routes::notifications`], [`routes::analytics`],
//!   [`routes::admin`], [`routes::metrics`], [`routes::health`]) and the filters they share
//!   ([`routes::Resource`]: a path, its methods and its 405; [`routes::paths`]: every route
//!   template).
//! - [`auth`]: the admin bearer token ([`AdminToken`]) and the filter guarding `/v1/admin/...`.
//! - [`telemetry`]: the Prometheus recorder and the per-request metrics.
//! - [`console`]: the operator console's page and static files at `/console` (its data comes
//!   from the admin routes).
//! - [`rebuilds`]: projection rebuilds started over HTTP, running as background tasks.
//! - [`dto`]: request and response bodies, and request -> command conversion.
//! - [`body`]: size-limited reading of JSON bodies (415 for other media types) and their
//!   parsing: 400 for what is not JSON, 422 naming every missing or mistyped field.
//! - [`reply`]: JSON answers, and the one place where a handler's outcome is rendered and
//!   stamped with its request id.
//! - [`problem`]: [`ApiError`], problem documents, and the rejection handler.
//! - `guard`: the database guard around the routes that need PostgreSQL (503 at once while
//!   it does not answer).
//! - [`request_id`]: the `X-Request-Id` of each request.
//! - [`openapi`]: the OpenAPI document served at `/openapi.json`.
//! - [`params`]: the schemas of the path, query and header parameters, from the constants
//!   their checks use.
//!
//! Start it with [`serve`], or mount [`routes()`] in another warp server.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod console;
pub mod dto;
mod guard;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod rebuilds;
pub mod reply;
pub mod request_id;
pub mod routes;
pub mod telemetry;

use std::net::SocketAddr;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use orderflow_bus::Bus;
use orderflow_store::{DatabaseHealth, OrderStore};
use orderflow_workers::WorkerDeps;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::Filter;

pub use auth::AdminToken;
pub use problem::{ApiError, Problem};
pub use request_id::RequestId;

/// What the handlers share. Cheap to clone. Build it with [`GatewayState::new`] and the
/// `with_*` methods; every service past the event store is optional, and the routes that need
/// a missing one say so (503, or 404 for the admin routes and `/metrics`).
#[derive(Clone)]
pub struct GatewayState {
    /// Runs commands and loads orders from the event store.
    pub orders: OrderStore,
    /// The event store's pool (idempotency keys, read models).
    pub pool: PgPool,
    /// Whether the event store answers (readiness, and 503 at once while it does not).
    pub database: DatabaseHealth,
    /// The NATS connection, for readiness; `None` when this gateway runs without NATS.
    pub nats: Option<async_nats::Client>,
    /// JetStream (consumer lag, dead letters); `None` without NATS.
    pub bus: Option<Bus>,
    /// How the workers are configured (channels, carriers), for replaying events to a worker
    /// for real; `None`: only dry runs of workers (projections need nothing).
    pub worker_deps: Option<WorkerDeps>,
    /// The bearer token of `/v1/admin/...`; `None`: the admin routes are off.
    pub admin_token: Option<AdminToken>,
    /// The Prometheus recorder's handle; `None`: `/metrics` is off.
    pub metrics: Option<PrometheusHandle>,
    /// Rebuilds started over HTTP.
    pub rebuilds: rebuilds::Rebuilds,
    /// Cancelled when the server stops ([`serve`] sets it): long answers such as the console's
    /// live feed end then, so that a graceful stop does not wait for them.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("nats", &self.nats.is_some())
            // Not the bus itself: its URL may carry credentials.
            .field("bus", &self.bus.as_ref().map(Bus::stream_name))
            .field("worker_deps", &self.worker_deps.is_some())
            .field("admin_token", &self.admin_token)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// A state over `pool`, without NATS, admin routes or metrics.
    pub fn new(pool: PgPool) -> Self {
        let orders = OrderStore::new(pool.clone());
        Self {
            database: orders.health().clone(),
            orders,
            pool,
            nats: None,
            bus: None,
            worker_deps: None,
            admin_token: None,
            metrics: None,
            rebuilds: rebuilds::Rebuilds::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The same state, with a NATS client for readiness.
    #[must_use]
    pub fn with_nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
        self
    }

    /// The same state, with JetStream for consumer lag and dead letters (and its client for
    /// readiness, unless one was set).
    #[must_use]
    pub fn with_bus(mut self, bus: Bus) -> Self {
        if self.nats.is_none() {
            self.nats = Some(bus.client().clone());
        }
        self.bus = Some(bus);
        self
    }

    /// The same state, with the workers' configuration (for replays to workers).
    #[must_use]
    pub fn with_worker_deps(mut self, deps: WorkerDeps) -> Self {
        self.worker_deps = Some(deps);
        self
    }

    /// The same state, with the admin routes on behind `token`. A blank token leaves them
    /// off.
    #[must_use]
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = AdminToken::new(token);
        self
    }

    /// The same state, with `/metrics` rendering `handle` (see
    /// the process's Prometheus recorder).
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The address cannot be bound (in use, no permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
}

/// Every route of the API, with rejections turned into problems and an `X-Request-Id` on
/// every answer.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let api = routes::orders::routes(state.clone())
        .or(routes::customers::routes(state.clone()))
        .unify()
        .or(routes::inventory::routes(state.clone()))
        .unify()
        .or(routes::notifications::routes(state.clone()))
        .unify()
        .or(routes::analytics::routes(state.clone()))
        .unify()
        .or(routes::admin::routes(state.clone()))
        .unify()
        .or(routes::metrics::routes(state.clone()))
        .unify()
        .or(routes::health::routes(state))
        .unify()
        .or(openapi::route())
        .unify()
        .or(console::routes())
        .unify()
        .recover(problem::recover)
        .unify();
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(api)
        .map(
            |started: Instant, method: Method, path: FullPath, headers: HeaderMap, response| {
                let response = request_id::ensure_stamped(&headers, response);
                log_request(started, &method, &path, &response);
                telemetry::record_request(started, &method, &response);
                response
            },
        )
        .boxed()
}

/// One line per request, with the request id the answer carries.
fn log_request(started: Instant, method: &Method, path: &FullPath, response: &Response) {
    log_answer(started, method, path.as_str(), response);
}

/// One line per request (also for the answers of the database guard).
fn log_answer(started: Instant, method: &Method, path: &str, response: &Response) {
    let request_id = response
        .headers()
        .get(request_id::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info!(
        target: "orderflow_gateway::access",
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        %request_id,
        "request answered"
    );
}

/// Binds `addr` (port 0 picks a free port) and serves [`routes()`] in a task until `shutdown`
/// is cancelled; then it stops accepting and drains the requests in flight before the task
/// ends.
///
/// Returns the bound address and the server task.
///
/// # Errors
/// [`GatewayError::Bind`] when the address cannot be bound.
pub async fn serve(
    mut state: GatewayState,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), GatewayError> {
    let bind_error = |source| GatewayError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let database = state.database.clone();
    state.shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        run_server(listener, routes(state), database, shutdown).await;
        tracing::info!("gateway stopped");
    });
    tracing::info!(address = %bound, "gateway listening");
    Ok((bound, task))
}

/// Accepts connections until `shutdown`, serves each with hyper (HTTP/1), then waits for the
/// requests in flight. The same loop as warp's own graceful server, except that a connection
/// that ends in an error (nearly always a client that hung up mid-request, as every load test
/// ends) is logged at debug, where warp logs each one as an error, and that the routes that
/// need PostgreSQL are behind the database guard (`guard`).
async fn run_server<F>(
    listener: tokio::net::TcpListener,
    filter: F,
    database: DatabaseHealth,
    shutdown: CancellationToken,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(guard::Guarded::new(
            warp::service(filter.clone()),
            database.clone(),
        ));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%remote, error = %error, "connection ended early");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_state_never_prints_the_admin_token() {
        let pool = PgPool::connect_lazy("postgres://u:p@127.0.0.1:1/none").unwrap();
        let state = GatewayState::new(pool).with_admin_token("s3cret-token");
        assert!(state.admin_token.is_some());
        let printed = format!("{state:?}");
        assert!(!printed.contains("s3cret-token"), "{printed}");
        assert!(
            GatewayState::new(PgPool::connect_lazy("postgres://x@h/d").unwrap())
                .with_admin_token(" ")
                .admin_token
                .is_none()
        );
    }
}
