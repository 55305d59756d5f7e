//! `DatabaseHealth` against a PostgreSQL cluster of the test's own: it says away within its
//! probe timeout whether the server is stopped or hangs, a guarded wait is given up, an append
//! that found no connection is never written, and it sees the server back by itself.
//!
//! The bounds on time are the promises of `orderflow_store::health`, asserted with a margin
//! of ten times the promise, so that a starved machine meets them: a broken promise shows as
//! a wait for something that never ends by itself (the pool's acquire timeout, a hang).

use std::time::{Duration, Instant};

use orderflow_store::health::{PROBE_TIMEOUT, SUSPECT_AFTER};
use orderflow_store::{CommandError, CommandMetadata, DatabaseHealth};
use orderflow_testkit::postgres::{PostgresServer, StopMode};
use orderflow_testkit::{OrderFixture, TestDatabase};

/// How long the test waits for the probe to see a restarted or thawed server again.
const BACK_WITHIN: Duration = Duration::from_secs(60);

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
    assert!(
        started.elapsed() < PROBE_TIMEOUT * 10,
        "a probe answers within its timeout ({PROBE_TIMEOUT:?}), not a hang: it took {:?}",
        started.elapsed()
    );
    assert!(health.is_down());

    // A wait for a connection is given up at once: the guard does not even start work that
    // never ends by itself. An append that found no connection fails as unavailable and is
    // never written.
    until(
        "the guard giving up at once on work that never ends, the server known away",
        Duration::from_secs(10),
        async {
            let guarded = health.guard(std::future::pending::<()>()).await;
            assert!(
                guarded.is_err(),
                "the guard gives up while the server is away"
            );
        },
    )
    .await;
    let guarded = health.guard(db.pool.acquire()).await;
    assert!(
        guarded.is_err(),
        "the guard gives up while the server is away (a wait the pool ended by itself, with \
         its acquire timeout, would be Ok(Err(..)))"
    );
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
    until("seeing the server back", BACK_WITHIN, health.back_up()).await;
    assert!(health.check().await);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .expect("the pool works again");
    assert_eq!(events, 0, "the append refused while away was never written");

    // A server that hangs: the guard asks for a probe after SUSPECT_AFTER, and the probe
    // gives up after PROBE_TIMEOUT. Work that never ends by itself shows a guard that waits.
    postgres.freeze();
    let promised = SUSPECT_AFTER + PROBE_TIMEOUT;
    let started = Instant::now();
    let guarded = tokio::time::timeout(promised * 10, health.guard(std::future::pending::<()>()))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the guard did not give up on a server that hangs within {:?} (it promises \
             about {promised:?}: a probe asked for after {SUSPECT_AFTER:?}, which gives up \
             after {PROBE_TIMEOUT:?})",
                promised * 10
            )
        });
    assert!(
        guarded.is_err(),
        "the guard gives up on a server that hangs"
    );
    eprintln!(
        "the guard gave up on a hanging server after {:?}",
        started.elapsed()
    );
    postgres.thaw();
    until("seeing the server back", BACK_WITHIN, health.back_up()).await;
    db.drop_database().await;
}
