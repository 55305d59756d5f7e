//! Routing and operations: unknown paths, wrong methods, health, readiness, and graceful
//! shutdown that drains requests in flight.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/v1",
        "/v1/order",
        "/v1/orders/x/y/z",
        "/v2/orders",
        "/healthz",
    ] {
        let body = problem(app.get(path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "/problems/not-found", "{path}");
        let body = problem(app.request(Method::POST, path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "/problems/not-found", "POST {path}");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    let cases = [
        (Method::PUT, "/v1/orders".to_string(), "GET, POST"),
        (Method::DELETE, "/v1/orders".to_string(), "GET, POST"),
        (Method::DELETE, format!("/v1/orders/{id}"), "GET"),
        (Method::POST, format!("/v1/orders/{id}"), "GET"),
        (Method::GET, format!("/v1/orders/{id}/cancel"), "POST"),
        (Method::POST, format!("/v1/orders/{id}/events"), "GET"),
        (Method::PATCH, format!("/v1/orders/{id}/state"), "GET"),
        (Method::POST, "/health".to_string(), "GET"),
        (Method::DELETE, "/ready".to_string(), "GET"),
        (Method::PUT, "/openapi.json".to_string(), "GET"),
        (Method::POST, "/v1/customers/c-1/orders".to_string(), "GET"),
        (Method::POST, "/v1/inventory/SKU-1".to_string(), "GET, PUT"),
        (
            Method::DELETE,
            "/v1/inventory/SKU-1".to_string(),
            "GET, PUT",
        ),
        (
            Method::POST,
            format!("/v1/orders/{id}/notifications"),
            "GET",
        ),
        (Method::POST, "/v1/analytics/summary".to_string(), "GET"),
        (Method::POST, "/metrics".to_string(), "GET"),
    ];
    for (method, path, allow) in cases {
        let response = app.request(method.clone(), &path).await;
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        let body = problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(body["type"], "/problems/method-not-allowed");
    }
}

#[tokio::test]
async fn health_is_ok() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_checks_the_store_and_nats() {
    let app = spawn_app().await;
    let body: Value = app.get("/ready").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["nats"], "not configured");

    let url = std::env::var("ORDERFLOW_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let nats = async_nats::connect(&url).await.unwrap_or_else(|e| {
        panic!("this test needs NATS at {url} ({e}); start it with `scripts/services up`")
    });
    let app = spawn_app_with(|state| state.with_nats(nats)).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "database": "ok", "nats": "ok"})
    );
}

#[tokio::test]
async fn not_ready_is_a_503_problem_when_the_store_is_gone() {
    let app = spawn_app().await;
    app.db.pool.close().await;
    let body = problem(app.get("/ready").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        body["detail"].as_str().unwrap().contains("PostgreSQL"),
        "{body}"
    );
    assert_eq!(
        app.get("/health").await.status(),
        StatusCode::OK,
        "alive while not ready"
    );
}

#[tokio::test]
async fn a_store_failure_is_a_500_problem_without_the_cause() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    app.db.pool.close().await;
    let body = problem(
        app.get_order(&id.to_string()).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("pool") && !detail.contains("sqlx"),
        "the cause is not shown: {detail}"
    );
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let mut app = spawn_app().await;
    let (id, _) = app.place_order().await;

    // Hold the events table so that a read waits inside the gateway.
    let mut blocker = app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let url = app.url(&format!("/v1/orders/{id}"));
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    // The request is in flight once the gateway waits for the lock on the events table.
    wait_until(
        "the read waiting inside the gateway for the lock on the events table",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = $1 AND wait_event_type = 'Lock'",
            )
            .bind(&app.db.name)
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
                > 0
        },
    )
    .await;

    app.shutdown.cancel();
    let server = app.server.take().unwrap();
    // The gateway has seen the shutdown once it stops accepting connections; from then on
    // only the request in flight keeps it running.
    let address = app.address.trim_start_matches("http://").to_string();
    wait_until("the gateway refusing new connections", || async {
        tokio::net::TcpStream::connect(&address).await.is_err()
    })
    .await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );

    blocker.rollback().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server stops once drained")
        .unwrap();
    let refused = app.client.get(app.url("/health")).send().await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn serving_on_a_taken_address_is_a_bind_error() {
    let app = spawn_app().await;
    let taken: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let state = orderflow_gateway::GatewayState::new(app.db.pool.clone());
    let result =
        orderflow_gateway::serve(state, taken, tokio_util::sync::CancellationToken::new()).await;
    match result {
        Err(orderflow_gateway::GatewayError::Bind { addr, .. }) => assert_eq!(addr, taken),
        Err(other) => panic!("unexpected error {other}"),
        Ok((bound, _)) => panic!("bound {bound}, which is taken"),
    }
}

/// Checks `condition` every 20 ms until it holds; fails the test, saying what was awaited, when
/// it does not within a minute.
async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
