//! The REST gateway of orderflow (warp 0.4): turns HTTP requests into commands on the Order
//! aggregate and reads orders from the event store.
//!
//! Every answer carries an `X-Request-Id`; every error is `application/problem+json`
//! (RFC 9457), mapped from typed errors in one place ([`problem`]).
//!
//! # Layout
//! - [`mod@routes`]: one module per resource ([`routes::orders`], [`routes::health`]) and the
//!   filters they share (state, 405 fallbacks).
//! - [`dto`]: request and response bodies, and request -> command conversion.
//! - [`body`]: size-limited body reading and JSON parsing (400 vs 422).
//! - [`problem`]: [`ApiError`], problem documents, and the rejection handler.
//! - [`request_id`]: the `X-Request-Id` of each request.
//! - [`openapi`]: the OpenAPI document served at `/openapi.json`.
//!
//! Start it with [`serve`], or mount [`routes()`] in another warp server.
#![forbid(unsafe_code)]

pub mod body;
pub mod dto;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod routes;

use std::net::SocketAddr;
use std::time::Instant;

use orderflow_store::OrderStore;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::Filter;

pub use problem::{ApiError, Problem};
pub use request_id::RequestId;

/// What the handlers share. Cheap to clone; later services are added as public fields.
#[derive(Clone)]
pub struct GatewayState {
    /// Runs commands and loads orders from the event store.
    pub orders: OrderStore,
    /// The event store's pool (idempotency keys, readiness).
    pub pool: PgPool,
    /// The NATS connection, for readiness; `None` when this gateway runs without NATS.
    pub nats: Option<async_nats::Client>,
}

impl GatewayState {
    /// A state over `pool`, without NATS.
    pub fn new(pool: PgPool) -> Self {
        Self {
            orders: OrderStore::new(pool.clone()),
            pool,
            nats: None,
        }
    }

    /// The same state, with a NATS client for readiness.
    #[must_use]
    pub fn with_nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
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
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Every route of the API, with rejections turned into problems and an `X-Request-Id` on
/// every answer.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let api = routes::orders::routes(state.clone())
        .or(routes::health::routes(state))
        .unify()
        .or(openapi::route())
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
                response
            },
        )
        .boxed()
}

/// One line per request, with the request id the answer carries.
fn log_request(started: Instant, method: &Method, path: &FullPath, response: &Response) {
    let request_id = response
        .headers()
        .get(request_id::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info!(
        target: "orderflow_gateway::access",
        %method,
        path = path.as_str(),
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
    state: GatewayState,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), GatewayError> {
    let bind_error = |source| GatewayError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let server = warp::serve(routes(state))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    let task = tokio::spawn(async move {
        server.run().await;
        tracing::info!("gateway stopped");
    });
    tracing::info!(address = %bound, "gateway listening");
    Ok((bound, task))
}
