//! `DatabaseHealth` against a PostgreSQL cluster of the test's own: it says away within its
//! probe timeout whether the server is stopped or hangs, a guarded wait is given up, an append
//! that found no connection is never written, and it sees the server back by itself.

use std::time::{Duration, Instant};

use orderflow_store::health::PROBE_TIMEOUT;
use orderflow_store::{CommandError, CommandMetadata, DatabaseHealth};
use orderflow_testkit::postgres::{PostgresServer, StopMode};
use orderflow_testkit::{OrderFixture, TestDatabase};

async fn until<F: std::future::Future<Output = ()>>(what: &str, within: Duration, wait: F) {
    tokio::time::timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {within:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_postgres_go_away_and_come_back() {
    let mut postgres = PostgresServer::start().await;
    let db = TestDatabase::on_server(&postgres.url(), 4).await;
    let health = DatabaseHealth::new(&db.pool);
    assert!(health.check().await, "the server answers");

    postgres.stop(StopMode::Immediate);
    let started = Instant::now();
    assert!(!health.check().await, "a stopped server does not answer");
    assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_millis(200));
    assert!(health.is_down());

    // A wait for a connection is given up at once, and an append that found no connection
    // fails as unavailable and is never written.
    let started = Instant::now();
    let guarded = health.guard(db.pool.acquire()).await;
    assert!(
        guarded.is_err(),
        "the guard gives up while the server is away"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    let store = orderflow_store::OrderStore::new(db.pool.clone());
    let order = OrderFixture::new().line("SKU-1", 1);
    let placed = store
        .place_new(
            order.order_id(),
            order.command(),
            &CommandMetadata::from_request("test"),
        )
        .await;
    assert!(
        matches!(placed, Err(CommandError::Unavailable(_))),
        "{placed:?}"
    );

    postgres.start_again().await;
    until(
        "seeing the server back",
        Duration::from_secs(5),
        health.back_up(),
    )
    .await;
    assert!(health.check().await);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .expect("the pool works again");
    assert_eq!(events, 0, "the append refused while away was never written");

    postgres.freeze();
    let started = Instant::now();
    let guarded = health.guard(db.pool.acquire()).await;
    assert!(
        guarded.is_err(),
        "the guard gives up on a server that hangs"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "given up after {:?}",
        started.elapsed()
    );
    postgres.thaw();
    until(
        "seeing the server back",
        Duration::from_secs(5),
        health.back_up(),
    )
    .await;
    db.drop_database().await;
}
