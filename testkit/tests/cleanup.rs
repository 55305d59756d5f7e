//! A test leaves nothing behind on the shared services, whether it passes or fails: a
//! [`World`] dropped without [`World::cleanup`] (a test that panicked halfway, or one that
//! never said) still drops its database and deletes its streams.

use orderflow_testkit::{server_url, World};
use sqlx::{Connection, PgConnection};

/// What a world made on the shared services is called there.
struct Names {
    database: String,
    streams: [String; 2],
}

fn names(world: &World) -> Names {
    Names {
        database: world.db.name.clone(),
        streams: [
            world.bus().options.stream.clone(),
            world.bus().bus.dlq_stream_name(),
        ],
    }
}

/// Fails the test when anything `names` names is still on the shared services.
async fn assert_gone(names: &Names) {
    let mut admin = PgConnection::connect(&server_url()).await.unwrap();
    let databases: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&names.database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(databases, 0, "database {} is still there", names.database);
    let url =
        std::env::var("ORDERFLOW_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let jetstream = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    for stream in &names.streams {
        assert!(
            jetstream.get_stream(stream).await.is_err(),
            "stream {stream} is still there"
        );
    }
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_database_and_no_streams() {
    let (told, made) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let world = World::new().await;
        world.place(&[("SKU-1", 1)]).await;
        world.relay().await;
        let _ = told.send(names(&world));
        panic!("a test that fails halfway");
    });
    let names = made.await.expect("the world was made");
    assert!(failing.await.unwrap_err().is_panic());
    assert_gone(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_dropped_without_cleanup_leaves_nothing() {
    let world = World::new().await;
    let names = names(&world);
    drop(world);
    assert_gone(&names).await;
}

#[tokio::test]
async fn cleanup_removes_the_database_and_the_streams() {
    let world = World::new().await;
    let names = names(&world);
    world.cleanup().await;
    assert_gone(&names).await;
}
