//! Load generator: how fast the write path takes orders, and how soon the relay has them in
//! JetStream. Starts the gateway and the relay in this process (release build) against a fresh
//! database and fresh streams on the local PostgreSQL and NATS, then sends `POST /v1/orders`
//! over loopback HTTP with a fixed number of requests in flight. Not a timed test: run it by
//! hand,
//!
//! ```text
//! cargo bench --bench place_orders
//! ORDERFLOW_BENCH_ORDERS=20000 ORDERFLOW_BENCH_CONCURRENCY=64 cargo bench --bench place_orders
//! ```
//!
//! It reports orders/s, latency percentiles, and the time until the last event was published.
//! The database and the streams are removed at the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use orderflow_bus::relay::{relay_status, run_relay, RelayOptions};
use orderflow_gateway::GatewayState;
use orderflow_testkit::{TestBus, TestDatabase};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn body(i: usize) -> serde_json::Value {
    json!({
        "customer_id": format!("c-{}", i % 1000),
        "customer_email": format!("customer{i}@example.com"),
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 1 + i % 3, "unit_price": 1299},
                  {"sku": "SKU-2", "quantity": 1, "unit_price": 500}],
        "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    })
}

async fn fire(
    http: &reqwest::Client,
    url: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> Vec<Duration> {
    stream::iter(range)
        .map(|i| async move {
            let started = Instant::now();
            let response = http.post(url).json(&body(i)).send().await;
            match response {
                Ok(r) if r.status() == 201 => started.elapsed(),
                Ok(r) => panic!("order {i}: HTTP {}", r.status()),
                Err(e) => panic!("order {i}: {e}"),
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let orders = env("ORDERFLOW_BENCH_ORDERS", 5_000);
    let concurrency = env("ORDERFLOW_BENCH_CONCURRENCY", 32);
    let db = TestDatabase::fresh().await;
    let bus = TestBus::fresh().await;
    let shutdown = CancellationToken::new();

    let state = GatewayState::new(db.pool.clone()).with_bus(bus.bus.clone());
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (address, server) = orderflow_gateway::serve(state, any_port, shutdown.clone())
        .await
        .expect("starting the gateway");
    let relay = tokio::spawn(run_relay(
        db.pool.clone(),
        bus.bus.clone(),
        RelayOptions::default(),
        shutdown.clone(),
    ));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("http://{address}/v1/orders");
    fire(&http, &url, 0..200.min(orders), concurrency).await;

    println!("placing {orders} orders, {concurrency} in flight, gateway at {address}");
    let started = Instant::now();
    let mut latencies = fire(&http, &url, 1_000_000..1_000_000 + orders, concurrency).await;
    let placing = started.elapsed();
    let expected = i64::try_from(orders + 200.min(orders)).unwrap();
    loop {
        let status = relay_status(&db.pool, &bus.options.stream).await.unwrap();
        if status.checkpoint >= expected && status.unnumbered == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "relay stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let published = started.elapsed();

    latencies.sort();
    println!(
        "POST /v1/orders: {orders} in {:.2}s = {:.0} orders/s; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        placing.as_secs_f64(),
        orders as f64 / placing.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    println!(
        "relay: every event in JetStream {:.0} ms after the last order was accepted ({:.2}s after the first)",
        (published - placing).as_secs_f64() * 1e3,
        published.as_secs_f64()
    );

    shutdown.cancel();
    let _ = server.await;
    let _ = relay.await;
    bus.cleanup().await.expect("removing the streams");
    db.drop_database().await;
}
