//! The operator console: its page and files are served with their security headers, and its
//! live feed (`GET /v1/admin/console/stream`) needs the admin token, starts with the newest
//! events and the history, counts what the relay numbers after, and ends when the gateway
//! stops. The page itself is driven in a browser by `tests/console/`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{spawn_admin_app, spawn_app, TestApp, ADMIN_TOKEN};

#[tokio::test]
async fn the_console_page_and_its_files_are_served_with_their_headers() {
    let app = spawn_app().await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("x-request-id"));
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/app.js"), "{html}");
    for (path, media_type) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        (
            "/console/vendor/uplot/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], media_type, "{path}");
    }
    // Other methods are refused, saying which ones the files take.
    let post = app.send(Method::POST, "/console", None, None).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let head = app.send(Method::HEAD, "/console/app.js", None, None).await;
    assert_eq!(head.status(), StatusCode::OK);
    // Unknown files are the gateway's usual 404 problem.
    let missing = app.get("/console/missing.js").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

/// Reads server-sent events from `response` until `done` accepts a tick's data (or the
/// deadline passes); returns the ticks read.
async fn ticks_until(
    response: &mut reqwest::Response,
    within: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut buffer = String::new();
    let mut ticks = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no matching tick within {within:?}: {ticks:#?}"))
            .expect("the stream reads")
            .unwrap_or_else(|| panic!("the stream ended: {ticks:#?}"));
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name != "tick" {
                continue;
            }
            let tick: Value = serde_json::from_str(&data).expect("a tick is JSON");
            let matched = done(&tick);
            ticks.push(tick);
            if matched {
                return ticks;
            }
        }
    }
}

async fn open_stream(app: &TestApp) -> reqwest::Response {
    let response = app
        .send(
            Method::GET,
            "/v1/admin/console/stream",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response
}

#[tokio::test]
async fn the_live_feed_needs_the_token_and_counts_what_is_published() {
    let app = spawn_admin_app(|state| state).await;
    let refused = app
        .send(Method::GET, "/v1/admin/console/stream", None, None)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .send(Method::GET, "/v1/admin/console/stream", Some("nope"), None)
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Two orders before the console opens: the first tick has them as history.
    app.place_order().await;
    app.place_order().await;
    let head = app.number_events().await;
    let mut stream = open_stream(&app).await;
    let first = ticks_until(&mut stream, Duration::from_secs(60), |_| true).await;
    let first = &first[0];
    assert_eq!(first["position"], head);
    assert_eq!(first["events"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(
        first["events"][0]["position"], head,
        "newest first: {first}"
    );
    let history: u64 = first["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["counts"]["OrderPlaced"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(history, 2, "{first}");

    // Three more, numbered as the relay does: the next ticks count them, once.
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(app.place_order().await.0.to_string());
    }
    let numbered = app.number_events().await;
    let ticks = ticks_until(&mut stream, Duration::from_secs(60), |t| {
        t["position"].as_i64() == Some(numbered)
    })
    .await;
    let counted: u64 = ticks
        .iter()
        .map(|t| t["counts"]["OrderPlaced"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 3, "{ticks:#?}");
    let seen: Vec<&str> = ticks
        .iter()
        .flat_map(|t| t["events"].as_array().unwrap())
        .filter_map(|e| e["order_id"].as_str())
        .collect();
    for id in &placed {
        assert!(seen.contains(&id.as_str()), "{id} not in {seen:?}");
    }
    assert!(ticks.iter().all(|t| t["history"] == serde_json::json!([])));
}

#[tokio::test]
async fn the_live_feed_ends_when_the_gateway_stops() {
    let mut app = spawn_admin_app(|state| state).await;
    let mut stream = open_stream(&app).await;
    ticks_until(&mut stream, Duration::from_secs(60), |_| true).await;
    app.shutdown.cancel();
    let server = app.server.take().expect("the server task");
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("a graceful stop does not wait for the console")
        .expect("the server task ends");
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the gateway");
}
