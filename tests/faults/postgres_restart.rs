//! PostgreSQL away, on a cluster of the test's own: while it is stopped (or hangs) the
//! gateway answers every order with a 503 problem within 2 s and `/ready` says not ready; once
//! it is back, every role resumes by itself. Restarted under load, every accepted order ships
//! with each effect once, and nothing is parked in the dead-letter stream.

use std::time::{Duration, Instant};

use orderflow_testkit::load::{order_body, wait_until_healthy, OrderLoad};
use orderflow_testkit::postgres::StopMode;
use uuid::Uuid;

use crate::harness::{System, SKU};

/// What the gateway promises for a request while PostgreSQL does not answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The promise as asserted: ten times [`ANSWER_WITHIN`], which a starved machine meets and a
/// request left hanging does not.
const ANSWERED_WITHIN: Duration = Duration::from_secs(20);

/// Posts one order and returns the answer's status, its `Content-Type`, whether it has a
/// `Retry-After`, and how long it took.
async fn post_order(http: &reqwest::Client, base: &str, i: usize) -> (u16, String, bool, Duration) {
    let started = Instant::now();
    let response = http
        .post(format!("{base}/v1/orders"))
        .json(&order_body(SKU, i))
        .send()
        .await
        .expect("the gateway answers");
    let elapsed = started.elapsed();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let retry_after = response.headers().contains_key("retry-after");
    (
        response.status().as_u16(),
        content_type,
        retry_after,
        elapsed,
    )
}

/// Answers 503 problem+json with `Retry-After` within [`ANSWER_WITHIN`] (asserted as
/// [`ANSWERED_WITHIN`]), three times in a row (the first before the gateway knew, the next
/// ones after), and `/ready` says 503.
async fn assert_unavailable(http: &reqwest::Client, base: &str, what: &str) {
    for i in 0..3 {
        let (status, content_type, retry_after, elapsed) = post_order(http, base, 1000 + i).await;
        eprintln!("{what}: POST /v1/orders answered {status} after {elapsed:?}");
        assert_eq!(
            status, 503,
            "{what}: POST /v1/orders while PostgreSQL is away"
        );
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert!(retry_after, "{what}: a 503 says when to retry");
        assert!(
            elapsed < ANSWERED_WITHIN,
            "{what}: the gateway promises a 503 within {ANSWER_WITHIN:?} while PostgreSQL is \
             away, not a hang; it took {elapsed:?}"
        );
    }
    let started = Instant::now();
    let ready = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("/ready answers");
    eprintln!(
        "{what}: /ready answered {} after {:?}",
        ready.status(),
        started.elapsed()
    );
    assert_eq!(
        ready.status(),
        503,
        "{what}: /ready while PostgreSQL is away"
    );
    assert!(
        started.elapsed() < ANSWERED_WITHIN,
        "{what}: /ready promises an answer within {ANSWER_WITHIN:?} while PostgreSQL is away, \
         not a hang; it took {:?}",
        started.elapsed()
    );
    let health = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("/health answers");
    assert_eq!(health.status(), 200, "{what}: the process itself is alive");
}

/// Places one order and waits until it has shipped: every role of `orderflow serve` is up
/// and working. Returns the order's id.
async fn first_order_shipped(http: &reqwest::Client, base: &str) -> Uuid {
    let response = http
        .post(format!("{base}/v1/orders"))
        .json(&order_body(SKU, 0))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 201, "an order while PostgreSQL is up");
    let order: serde_json::Value = response.json().await.expect("an order");
    let id: Uuid = order["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an id");
    let started = Instant::now();
    loop {
        let order: serde_json::Value = http
            .get(format!("{base}/v1/orders/{id}"))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("an order");
        if order["status"] == "shipped" {
            return id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first order did not ship within 120 s: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts orders until one is 201; returns how long that took.
async fn wait_for_201(http: &reqwest::Client, base: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let mut i = 2000;
    loop {
        let (status, _, _, _) = post_order(http, base, i).await;
        if status == 201 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no 201 within {within:?} after PostgreSQL came back (last: {status})"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_answers_503_while_postgres_is_away_and_resumes_when_it_is_back() {
    let mut system = System::on_own_postgres().await;
    let (mut served, base) = system.orderflow().serve(&[]);
    wait_until_healthy(&base, Duration::from_secs(30)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    first_order_shipped(&http, &base).await;

    let postgres = system.postgres.as_mut().expect("the system's own cluster");
    postgres.stop(StopMode::Immediate);
    assert_unavailable(&http, &base, "stopped").await;
    postgres.start_again().await;
    let resumed = wait_for_201(&http, &base, Duration::from_secs(60)).await;
    eprintln!("stopped: the first 201 came {resumed:?} after PostgreSQL was back");
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "/ready once PostgreSQL is back");

    let postgres = system.postgres.as_mut().expect("the system's own cluster");
    postgres.freeze();
    assert_unavailable(&http, &base, "hanging").await;
    let postgres = system.postgres.as_mut().expect("the system's own cluster");
    postgres.thaw();
    let resumed = wait_for_201(&http, &base, Duration::from_secs(60)).await;
    eprintln!("hanging: the first 201 came {resumed:?} after PostgreSQL answered again");

    served.assert_running();
    served.terminate(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_nothing() {
    let mut system = System::on_own_postgres().await;
    // Two attempts a message: were the outage to spend one each time a message fails (1 s
    // apart), what is in flight would be parked in the dead-letter stream.
    let (mut served, base) = system
        .orderflow()
        .env("ORDERFLOW_MAX_ATTEMPTS", "2")
        .serve(&[]);
    wait_until_healthy(&base, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let first = first_order_shipped(&http, &base).await;
    // A request the gateway leaves hanging far past its promise shows as unanswered.
    let load = OrderLoad::start(&base, SKU, Duration::from_millis(20), ANSWERED_WITHIN);
    load.accepted_more(50, Duration::from_secs(120)).await;
    let postgres = system.postgres.as_mut().expect("the system's own cluster");
    postgres.stop(StopMode::Immediate);
    // Away until the gateway has answered orders with 503 for a while.
    load.wait_until(
        "orders answered 503 while PostgreSQL is away",
        Duration::from_secs(120),
        |report| report.refused.get(&503).copied().unwrap_or(0) >= 20,
    )
    .await;
    postgres.start_again().await;
    load.accepted_more(50, Duration::from_secs(120)).await;
    let mut report = load.stop().await;
    report.accepted.push(first);
    served.assert_running();
    eprintln!(
        "accepted {}, refused {:?}, unanswered {}",
        report.accepted.len(),
        report.refused,
        report.unanswered
    );
    assert_eq!(
        report.unanswered, 0,
        "requests left hanging while PostgreSQL was away"
    );
    assert!(
        report.refused.get(&503).copied().unwrap_or(0) > 0,
        "orders during the outage were answered 503: {:?}",
        report.refused
    );
    assert!(
        report.refused.keys().all(|status| *status == 503),
        "only 503 while PostgreSQL was away: {:?}",
        report.refused
    );
    // A 503 does not always mean the order was not stored: PostgreSQL stopped with
    // `immediate` may have committed a group the gateway never heard back about. The client
    // sends those again with their Idempotency-Key, as the 503 says; each is then placed once.
    report.retry_uncertain(&base, Duration::from_secs(30)).await;
    system
        .assert_settled_once(&report.accepted, Duration::from_secs(120))
        .await;
    served.terminate(Duration::from_secs(30)).await;
    system.world.cleanup().await;
}
