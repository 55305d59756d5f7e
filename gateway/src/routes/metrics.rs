//! `GET /metrics`: the Prometheus text of this process's metrics (see [`crate::telemetry`]);
//! a 404 problem when the gateway was started without a recorder.

use std::convert::Infallible;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::problem::{ApiError, Problem};
use crate::request_id::{request_id, RequestId};
use crate::routes::{method_not_allowed, with_state};
use crate::telemetry::{self, tag};
use crate::GatewayState;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(
            warp::get()
                .and(with_state(&state))
                .and(request_id())
                .and_then(metrics)
                .or(method_not_allowed("GET"))
                .unify(),
        )
        .map(tag("/metrics"))
        .boxed()
}

/// Prometheus metrics: `orderflow_http_requests_total{method,route,status}`,
/// `orderflow_http_request_duration_seconds{method,route}` and whatever else this process
/// records.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are off in this gateway", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(state: GatewayState, request_id: RequestId) -> Result<Response, Infallible> {
    let response = match &state.metrics {
        Some(handle) => {
            let mut response =
                warp::reply::with_status(telemetry::render(handle), StatusCode::OK).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROMETHEUS_TEXT),
            );
            response
        }
        None => ApiError::MetricsDisabled.into_response(),
    };
    Ok(request_id.stamp(response))
}
