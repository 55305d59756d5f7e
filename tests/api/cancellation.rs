//! Client hang-ups (docs/DESIGN.md, "Notes on the libraries and servers"): clients that hang up
//! mid-request must not leave a pooled connection idle in a transaction (holding locks), and
//! the next request is not held up behind one.
//!
//! A transaction left open would hold its locks until PostgreSQL ends it after the pool's
//! `idle_in_transaction_timeout` (30 s by default); so the waits here are generous for a
//! starved machine and still well within that: a lock left behind cannot pass unnoticed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, valid_order, TestApp};

async fn idle_in_transaction(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(&app.db.name)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// How long a request after the hang-ups may take: far more than a starved machine needs,
/// far less than the 30 s a transaction left open would hold its locks.
const NOT_HELD_UP: Duration = Duration::from_secs(10);

/// Runs `request`, failing the test when it takes [`NOT_HELD_UP`] or more: it waited behind
/// a lock that a hung-up request left.
async fn not_held_up<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NOT_HELD_UP, request)
        .await
        .unwrap_or_else(|_| {
            panic!("{what} was held up for {NOT_HELD_UP:?}: a hung-up request left a lock")
        })
}

/// The check below can fail: a transaction left open is seen.
async fn probe_sees_idle_transactions(app: &TestApp) {
    let mut open = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *open).await.unwrap();
    // pg_stat_activity shows the session idle in its transaction once the server has sent
    // the answer: a moment after the client has it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while idle_in_transaction(app).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the probe does not see an open transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    open.rollback().await.unwrap();
}

#[tokio::test]
async fn clients_that_hang_up_leave_nothing_stuck() {
    let app = spawn_app().await;
    probe_sees_idle_transactions(&app).await;
    let (contended, _) = app.place_order().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1))
        .build()
        .unwrap();

    let mut dropped = 0;
    for round in 0..50 {
        let place = impatient
            .post(app.url("/v1/orders"))
            .header("Idempotency-Key", format!("hang-up-{round}"))
            .json(&valid_order())
            .send();
        let cancel = impatient
            .post(app.url(&format!("/v1/orders/{contended}/cancel")))
            .json(&json!({"reason": format!("attempt {round}")}))
            .send();
        let read = impatient
            .get(app.url(&format!("/v1/orders/{contended}/events")))
            .send();
        let (a, b, c) = tokio::join!(place, cancel, read);
        dropped += [a.is_err(), b.is_err(), c.is_err()]
            .into_iter()
            .filter(|e| *e)
            .count();
    }
    assert!(
        dropped > 50,
        "most requests were dropped mid-way ({dropped} of 150)"
    );

    // Work already started finishes in its own task; once it has, nothing may be left idle
    // in a transaction. (PostgreSQL itself would end one after the 30 s idle timeout: the
    // wait stays well below that.)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stuck = idle_in_transaction(&app).await;
        if stuck == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stuck} connection(s) left idle in transaction 15 s after clients hung up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next requests, on the contended row too, are not held up.
    let response = not_held_up(
        "reading the contended order",
        app.get_order(&contended.to_string()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = not_held_up(
        "cancelling the contended order",
        app.cancel_order(&contended.to_string(), &json!({"reason": "after"})),
    )
    .await;
    assert!(
        matches!(again.status(), StatusCode::OK | StatusCode::CONFLICT),
        "{}",
        again.status()
    );
    not_held_up("placing a new order", app.place_order()).await;

    // A hung-up place request either placed its order or left its key to a retry: retrying
    // each key gives one order per key.
    for round in 0..50 {
        let retry = app
            .post_order_with_key(&valid_order(), &format!("hang-up-{round}"))
            .await;
        assert_eq!(retry.status(), StatusCode::CREATED, "retry of key {round}");
    }
    let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE sequence = 1")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        placed,
        1 + 50 + 1,
        "the contended order, one per key, and the fresh one"
    );

    // No order was placed twice.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id FROM events WHERE sequence = 1
                               GROUP BY aggregate_id HAVING count(*) > 1) d",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(duplicates, 0);
}
