//! Liveness (`GET /health`: the process serves) and readiness (`GET /ready`: the event store
//! answers and, when the gateway has a NATS client, NATS is connected).

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use std::time::Duration;

use orderflow_store::DatabaseStatus;

use crate::dto::{HealthResponse, ReadyResponse};
use crate::problem::{self, ApiError};
use crate::reply::{respond0, respond1, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, with_state, Resource};
use crate::GatewayState;

/// How long the pool may take to answer a readiness check once the probe found the server
/// answering.
const POOL_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /health` and `GET /ready`.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let health = Resource::new(paths::HEALTH)
        .on(Method::GET, |path| {
            path.and(request_id()).then(respond0(health)).boxed()
        })
        .build();
    let ready = Resource::new(paths::READY)
        .on(Method::GET, |path| {
            path.and(with_state(&state))
                .and(request_id())
                .then(respond1(ready))
                .boxed()
        })
        .build();
    health.or(ready).unify().boxed()
}

/// Liveness: answers as long as the process serves requests.
#[utoipa::path(
    get,
    path = paths::HEALTH,
    tag = "operations",
    responses((status = 200, description = "The process serves requests", body = HealthResponse))
)]
pub async fn health(_request_id: RequestId) -> Result<Json<HealthResponse>, ApiError> {
    Ok(Json::ok(HealthResponse {
        status: "ok".into(),
    }))
}

/// Readiness: the event store answers `SELECT 1`, first on the probe's own connection
/// (bounded by [`orderflow_store::health::PROBE_TIMEOUT`]), then through the gateway's pool
/// (bounded by a second), and NATS (if configured) is connected.
#[utoipa::path(
    get,
    path = paths::READY,
    tag = "operations",
    responses(
        (status = 200, description = "Every dependency is reachable", body = ReadyResponse),
        (status = 503, description = "A dependency is not reachable; `detail` says which"),
    )
)]
pub async fn ready(
    state: GatewayState,
    _request_id: RequestId,
) -> Result<Json<ReadyResponse>, ApiError> {
    let mut failures = Vec::new();
    if state.database.check().await {
        // The server answers; so must the gateway's own pool.
        let pooled = tokio::time::timeout(
            POOL_CHECK_TIMEOUT,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
        )
        .await;
        match pooled {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %problem::error_chain(&e), "readiness: database check failed");
                failures.push("the event store (PostgreSQL) does not answer".to_string());
            }
            Err(_) => failures.push(format!(
                "the event store (PostgreSQL) did not answer within {POOL_CHECK_TIMEOUT:?}"
            )),
        }
    } else {
        if let DatabaseStatus::Down(why) = state.database.status() {
            tracing::warn!(reason = %why, "readiness: the event store does not answer");
        }
        failures.push("the event store (PostgreSQL) does not answer".to_string());
    }
    let nats = match &state.nats {
        None => "not configured",
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => "ok",
            other => {
                failures.push(format!("NATS is not connected ({other})"));
                "not connected"
            }
        },
    };
    if failures.is_empty() {
        Ok(Json::ok(ReadyResponse {
            status: "ready".into(),
            database: "ok".into(),
            nats: nats.into(),
        }))
    } else {
        Err(ApiError::NotReady(failures.join("; ")))
    }
}
