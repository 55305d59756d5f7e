//! Guarantee 2, log order: the relay publishes in commit order and never skips a row whose
//! transaction inserted early but committed late.

use orderflow_domain::Order;
use uuid::Uuid;

use super::checks::assert_stream_matches_log;
use orderflow_testkit::world::write_load;
use orderflow_testkit::{OrderFixture, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_committing_transaction_is_published_after_what_committed_before_it() {
    let world = World::builder().max_connections(12).build().await;
    let late = Uuid::now_v7();
    let event = Order::default()
        .decide(OrderFixture::new().id(late).line("SKU-1", 1).command())
        .unwrap()
        .remove(0);
    // A writer that inserts first but commits last.
    let mut slow = world.db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Order', $1, 1, 'OrderPlaced', '1.0', $2, '{}')",
    )
    .bind(late.to_string())
    .bind(serde_json::to_value(&event).unwrap())
    .execute(&mut *slow)
    .await
    .unwrap();
    write_load(&world.store, 8, 25).await;
    assert_eq!(world.relay().await, 100, "what committed is published");
    slow.commit().await.unwrap();
    assert_eq!(
        world.relay().await,
        1,
        "the late commit is published once it commits"
    );
    assert_stream_matches_log(&world).await;
    let messages = world.bus().messages().await.unwrap();
    let last = messages.last().unwrap().envelope().unwrap();
    assert_eq!(
        last.order_id, late,
        "the late commit is last in commit order"
    );
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relaying_while_writers_commit_keeps_every_order_in_sequence_order() {
    let world = World::builder().max_connections(12).build().await;
    let store = world.store.clone();
    let writers = tokio::spawn(async move { write_load(&store, 16, 250).await });
    let mut published = 0;
    while !writers.is_finished() {
        published += world.relay().await;
    }
    writers.await.unwrap();
    published += world.relay().await;
    assert_eq!(published, 1000);
    assert_stream_matches_log(&world).await;
    world.cleanup().await;
}
