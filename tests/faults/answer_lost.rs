//! PostgreSQL's answer to an order's write lost after the write was committed (the server or
//! the network dying between the commit and the reply), made deterministic by a proxy that
//! passes the write and drops its answer. The gateway cannot know whether the order was
//! stored, so it must not say that nothing was done: it answers 503 `outcome-unknown`, and
//! the retry the answer asks for (same `Idempotency-Key`) answers with the order that was
//! stored, which is placed once and ships once.

use std::time::{Duration, Instant};

use orderflow_testkit::load::{order_body, place_order, wait_until_healthy};
use orderflow_testkit::proxy::AnswerLosingProxy;
use uuid::Uuid;

use crate::harness::{System, SKU};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_whose_commit_answer_was_lost_is_not_called_undone_and_a_retry_finds_it() {
    let system = System::start().await;
    let proxy = AnswerLosingProxy::start(&system.world.db.options.url).await;
    let (mut served, base) = system
        .orderflow()
        .env("ORDERFLOW_DATABASE_URL", proxy.url())
        .serve(&[]);
    wait_until_healthy(&base, Duration::from_secs(30)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    let key = Uuid::new_v4().to_string();
    let body = order_body(SKU, 1);

    proxy.lose_answer_to("INSERT INTO events");
    let lost = place_order(&http, &base, &key, &body)
        .await
        .expect("the gateway answers");
    tokio::time::timeout(Duration::from_secs(60), proxy.tripped())
        .await
        .expect("the proxy lost the answer to the order's write");
    assert_eq!(lost.status(), 503, "an order whose write was cut off");
    assert!(
        lost.headers().contains_key("retry-after"),
        "the 503 says when to retry"
    );
    let problem: serde_json::Value = lost.json().await.expect("a problem+json body");
    let kind = problem["type"].as_str().unwrap_or_default();
    assert!(
        kind.ends_with("outcome-unknown"),
        "the write may have been stored, so the answer must not say nothing was done: \
         {problem}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT aggregate_id) FROM events")
        .fetch_one(&system.world.db.pool)
        .await
        .expect("counting orders");
    assert_eq!(
        stored, 1,
        "PostgreSQL carried out the write whose answer was lost"
    );

    // The retry the answer asks for finds the order instead of placing a second one.
    let started = Instant::now();
    let id = loop {
        let retry = place_order(&http, &base, &key, &body)
            .await
            .expect("the gateway answers");
        if retry.status() == 201 {
            assert_eq!(
                retry
                    .headers()
                    .get("idempotent-replayed")
                    .and_then(|v| v.to_str().ok()),
                Some("true"),
                "the retry answers with the order already stored"
            );
            let order: serde_json::Value = retry.json().await.expect("an order");
            break order["id"]
                .as_str()
                .and_then(|id| id.parse::<Uuid>().ok())
                .expect("the order's id");
        }
        assert_eq!(retry.status(), 503, "a retry while the gateway recovers");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the retry was not answered 201 within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    system
        .assert_settled_once(&[id], Duration::from_secs(60))
        .await;
    served.assert_running();
    served.terminate(Duration::from_secs(30)).await;
    system.world.cleanup().await;
}
