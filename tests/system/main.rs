//! The whole system, as a user runs it: the real `orderflow serve` binary against the real
//! PostgreSQL and JetStream, driven over HTTP, then the operator's `orderflow projections
//! rebuild` command (docs/DESIGN.md, guarantee 6 (rebuildable views)): after 2,000 orders, a
//! rebuild of order-summary swaps in exactly the rows the live projection had (`--verify` finds
//! zero differences), and `GET /v1/orders` keeps answering throughout. Also: operator commands
//! fail with one line.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use orderflow_testkit::{orderflow, OrderFixture, Orderflow, World};
use serde_json::{json, Value};

mod cost_budget;
mod forget;
mod no_personal_data_in_logs;
mod operator_commands;
mod readme;
mod startup;
mod trace;
mod verify_stream;

const ORDERS: usize = 2_000;
const STOCK: i64 = 1_500;
const ADMIN_TOKEN: &str = "system-test-token";

/// The binary over `world`, with room for a whole system in one process and the admin
/// routes on.
fn orderflow_over(world: &World) -> Orderflow {
    orderflow!(world)
        .env("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8")
        .env("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
}

fn order_body(i: usize) -> Value {
    json!({
        "customer_id": format!("c-{}", i % 37),
        "customer_email": format!("customer{i}@example.com"),
        "currency": "EUR",
        "lines": [{"sku": "SKU-SYS", "quantity": 1, "unit_price": 1000 + i as i64}],
        "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    })
}

async fn consumers_caught_up(http: &reqwest::Client, base: &str) -> bool {
    orderflow_testkit::load::consumers_caught_up(
        http,
        base,
        ADMIN_TOKEN,
        orderflow_operations::consumer_names().len(),
    )
    .await
}

async fn statuses(world: &World) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT status, count(*) FROM order_summary GROUP BY status ORDER BY status")
        .fetch_all(world.pool())
        .await
        .unwrap()
}

/// Puts `STOCK` units of SKU-SYS in stock, then places `ORDERS` orders, 16 at a time.
async fn place_orders_over_http(http: &reqwest::Client, base: &str) {
    let put = http
        .put(format!("{base}/v1/inventory/SKU-SYS"))
        .json(&json!({"available": STOCK}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let placed = stream::iter(0..ORDERS)
        .map(|i| {
            let (http, base) = (http.clone(), base.to_string());
            async move {
                http.post(format!("{base}/v1/orders"))
                    .json(&order_body(i))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(
        placed.iter().all(|s| matches!(s, Ok(201))),
        "every order placed"
    );
}

/// Waits until every order is shipped or rejected and every consumer has drained.
async fn wait_until_every_consumer_drained(world: &World, http: &reqwest::Client, base: &str) {
    // Every consumer (inventory, notifications, shipments, loyalty, order-summary, analytics)
    // drains.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let summary = statuses(world).await;
        let done = summary.iter().map(|(_, n)| n).sum::<i64>() == ORDERS as i64
            && !summary
                .iter()
                .any(|(s, _)| s == "placed" || s == "confirmed");
        if done && consumers_caught_up(http, base).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in time: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The metrics of the `serve` process.
async fn assert_metrics_count_the_work(http: &reqwest::Client, base: &str) {
    // They count what the relay and the consumers did.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "orderflow_relay_published_total",
        "orderflow_consumer_messages_total{consumer=\"inventory\",outcome=\"handled\"}",
        "orderflow_http_requests_total{method=\"POST\",route=\"/v1/orders\",status=\"201\"} 2000",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }

    // Every metric family says what it counts.
    for line in metrics.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let name = family.split(' ').next().unwrap_or_default();
            assert!(
                metrics.contains(&format!("# HELP {name} ")),
                "{name} has no # HELP:\n{metrics}"
            );
        }
    }
}

/// Rebuilds order-summary with the binary while `GET /v1/orders` is asked for a page again
/// and again.
async fn rebuild_while_the_list_answers(orderflow: &Orderflow, http: &reqwest::Client, base: &str) {
    // GET /v1/orders is polled for the whole rebuild; every answer must be a full page.
    let rebuilding = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (http, base) = (http.clone(), base.to_string());
        let (rebuilding, answered) = (Arc::clone(&rebuilding), Arc::clone(&answered));
        tokio::spawn(async move {
            while rebuilding.load(Ordering::SeqCst) {
                let response = http
                    .get(format!("{base}/v1/orders?limit=100"))
                    .send()
                    .await
                    .expect("GET /v1/orders answers during the rebuild");
                assert_eq!(response.status(), 200);
                let page: Value = response.json().await.unwrap();
                assert_eq!(page["orders"].as_array().map(Vec::len), Some(100));
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let rebuilder = orderflow.clone();
    let rebuild = tokio::task::spawn_blocking(move || {
        rebuilder.output(&[
            "projections",
            "rebuild",
            "order-summary",
            "--batch-size",
            "500",
        ])
    })
    .await
    .unwrap();
    rebuilding.store(false, Ordering::SeqCst);
    poller
        .await
        .expect("the list answered throughout the rebuild");
    let stdout = String::from_utf8_lossy(&rebuild.stdout);
    assert!(
        rebuild.status.success(),
        "rebuild failed: {stdout}{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    assert!(stdout.contains("swapped in"), "{stdout}");
    assert!(
        answered.load(Ordering::SeqCst) > 0,
        "the list was asked during the rebuild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_orders_then_a_rebuild_that_serves_throughout_and_verifies_clean() {
    let world = World::new().await;
    let orderflow = orderflow_over(&world);
    let (served, base) = orderflow.serve(&[]);
    let http = reqwest::Client::new();

    place_orders_over_http(&http, &base).await;

    wait_until_every_consumer_drained(&world, &http, &base).await;
    assert_metrics_count_the_work(&http, &base).await;

    let before = statuses(&world).await;
    assert_eq!(
        before,
        [
            ("rejected".to_string(), ORDERS as i64 - STOCK),
            ("shipped".to_string(), STOCK)
        ]
    );

    rebuild_while_the_list_answers(&orderflow, &http, &base).await;
    assert_eq!(
        statuses(&world).await,
        before,
        "the swapped-in rows are the live ones"
    );

    let verify = orderflow.output(&["projections", "rebuild", "order-summary", "--verify"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {stdout}");
    assert!(stdout.contains("; 0 differences"), "{stdout}");

    drop(served);
    world.cleanup().await;
}

/// An operator command that cannot do its work exits non-zero with one readable line.
#[tokio::test]
async fn operator_commands_fail_with_one_readable_line() {
    let world = World::without_nats().await;
    let unknown_order = uuid::Uuid::now_v7().to_string();
    let cases: [(&[&str], &str); 3] = [
        (
            &["projections", "rebuild", "nope"],
            "no projection is called \"nope\"",
        ),
        (&["events", &unknown_order], "has no events"),
        (&["worker", "nope"], "unknown worker \"nope\""),
    ];
    for (args, expected) in cases {
        let output = orderflow!(&world).env("RUST_LOG", "off").output(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
}

/// Replays that cannot be done are refused with one line, in the same words as the admin
/// route (tests/api).
#[tokio::test]
async fn impossible_replays_are_refused_with_one_line() {
    let world = World::without_nats().await;
    let id = world
        .place_order(OrderFixture::new().line("SKU-1", 1))
        .await;
    let id = id.to_string();
    let cases: [(&[&str], String); 3] = [
        (
            &["replay", "order", &id, "--at", "9"],
            format!("order {id} has events 1 to 1; there is no event 9"),
        ),
        (
            &[
                "replay",
                "consumer",
                "analytics",
                "--from",
                "5",
                "--to",
                "2",
            ],
            "to (2) is before from (5): nothing to replay".into(),
        ),
        (
            &[
                "replay",
                "consumer",
                "analytics",
                "--from",
                "1",
                "--to",
                "20000",
            ],
            "is over 10000 events; replay it in parts".into(),
        ),
    ];
    for (args, expected) in cases {
        let output = orderflow!(&world).env("RUST_LOG", "off").output(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&expected),
            "{args:?}: {stderr}"
        );
    }
}
