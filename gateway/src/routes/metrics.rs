//! `GET /metrics`: the Prometheus text of this process's metrics (see [`crate::telemetry`]);
//! a 404 problem when the gateway was started without a recorder.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::problem::ApiError;
use crate::reply::respond1;
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, with_state, Resource};
use crate::telemetry;
use crate::GatewayState;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    Resource::new(paths::METRICS)
        .on(Method::GET, |path| {
            path.and(with_state(&state))
                .and(request_id())
                .then(respond1(metrics))
                .boxed()
        })
        .build()
}

/// Prometheus metrics: `orderflow_http_requests_total{method,route,status}`,
/// `orderflow_http_request_duration_seconds{method,route}` and whatever else this process
/// records.
#[utoipa::path(
    get,
    path = paths::METRICS,
    tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are off in this gateway"),
    )
)]
pub async fn metrics(state: GatewayState, _request_id: RequestId) -> Result<Response, ApiError> {
    let handle = state.metrics.as_ref().ok_or(ApiError::MetricsDisabled)?;
    let mut response =
        warp::reply::with_status(telemetry::render(handle), StatusCode::OK).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    Ok(response)
}
