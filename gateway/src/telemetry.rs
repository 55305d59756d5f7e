//! Request metrics: every answer counts in `orderflow_http_requests_total{method,route,status}`
//! and its latency in the histogram `orderflow_http_request_duration_seconds{method,route}`,
//! recorded through the `metrics` facade (a no-op until a recorder is installed).
//!
//! `route` is the route template (`/v1/orders/{id}`), which each route puts on its answer as
//! a [`RouteTemplate`] extension; answers no route made (unknown paths) count as `unmatched`.
//! The process installs the recorder (the binary does, for every role) and hands its
//! handle to [`crate::GatewayState::with_metrics`] for `GET /metrics`.

use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use warp::http::Method;
use warp::reply::Response;

/// The request counter.
pub const REQUESTS_TOTAL: &str = "orderflow_http_requests_total";
/// The request latency histogram, in seconds.
pub const REQUEST_DURATION: &str = "orderflow_http_request_duration_seconds";
/// The `route` label of answers no route made.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The template of the route that made an answer, carried as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTemplate(pub &'static str);

/// Puts `template` on a response (used by every route).
pub fn tag(template: &'static str) -> impl Fn(Response) -> Response + Clone + Send + Sync {
    move |mut response: Response| {
        response.extensions_mut().insert(RouteTemplate(template));
        response
    }
}

/// Latency buckets of [`REQUEST_DURATION`], in seconds, for the process's recorder.
pub const REQUEST_DURATION_BUCKETS: [f64; 12] = BUCKETS;

/// Gives the request metrics their `# HELP` text. Call once after installing a recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests answered, by method, route and status"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route"
    );
}

/// Records one answered request.
pub fn record_request(started: Instant, method: &Method, response: &Response) {
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or(UNMATCHED, |t| t.0);
    // Only the standard methods become labels, so odd clients cannot grow the series.
    let method: &'static str = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    metrics::counter!(
        REQUESTS_TOTAL,
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
}

/// The Prometheus text of `handle`, after its periodic upkeep.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}
