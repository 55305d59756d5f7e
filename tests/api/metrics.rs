//! `GET /metrics`: Prometheus text with the request counter and latency histogram (route
//! templates, not raw paths), and a 404 problem when metrics are off.

use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{problem, spawn_app, spawn_app_with};

/// The value of the first sample line of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let handle = orderflow::telemetry::install_metrics().expect("a recorder");
    let app = spawn_app_with(|state| state.with_metrics(handle)).await;
    let unknown = Uuid::now_v7();
    assert_eq!(
        app.get(&format!("/v1/orders/{unknown}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/no/such/path").await.status(),
        StatusCode::NOT_FOUND
    );

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();

    let order_404 = sample(
        &text,
        "orderflow_http_requests_total",
        &[
            r#"method="GET""#,
            r#"route="/v1/orders/{id}""#,
            r#"status="404""#,
        ],
    );
    assert!(order_404.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        !text.contains(&unknown.to_string()),
        "raw paths are not labels"
    );
    let health = sample(
        &text,
        "orderflow_http_requests_total",
        &[r#"route="/health""#, r#"status="200""#],
    );
    assert!(health.is_some_and(|n| n >= 1.0), "{text}");
    let unmatched = sample(
        &text,
        "orderflow_http_requests_total",
        &[r#"route="unmatched""#, r#"status="404""#],
    );
    assert!(unmatched.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains("orderflow_http_request_duration_seconds_bucket{"),
        "a real histogram: {text}"
    );
    let count = sample(
        &text,
        "orderflow_http_request_duration_seconds_count",
        &[r#"route="/health""#],
    );
    assert!(count.is_some_and(|n| n >= 1.0), "{text}");
}

#[tokio::test]
async fn metrics_off_is_a_404_problem() {
    let app = spawn_app().await;
    let body = problem(app.get("/metrics").await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["type"], "/problems/metrics-disabled");
}
