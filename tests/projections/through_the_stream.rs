//! Projections as durable consumers of the real JetStream stream (the workers' runtime): the
//! relay publishes the log, each projection's consumer (one message in flight) folds it, and
//! the result equals a rebuild from the log.

use std::sync::Arc;
use std::time::Duration;

use orderflow_projections::rebuild::{rebuild, RebuildOptions};
use orderflow_projections::ProjectionHandler;
use orderflow_workers::runtime::{Consumer, ConsumerOptions};
use orderflow_workers::testing::TestBus;
use orderflow_workers::Handler;

use crate::support::*;

#[tokio::test]
async fn projections_consume_the_stream_and_match_a_rebuild() {
    let world = World::new().await;
    let bus = TestBus::fresh().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..60).await;
    let published = orderflow_workers::relay::relay_once(&pool, &bus.bus, 500)
        .await
        .expect("relaying")
        .published;
    assert!(published > 100);

    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(5),
        retry_delays: vec![Duration::from_millis(50)],
        drain_timeout: Duration::from_secs(120),
        // A pull asking for more messages than `max_ack_pending` (1 for projections) is never
        // completed by the server while the first is unacked: the runtime's `step` waits for
        // the end of the pull before handling, so it would hang. Ask for one at a time.
        batch_size: 1,
        ..ConsumerOptions::default()
    };
    for projection in orderflow_projections::all() {
        let handler: Arc<dyn Handler> = Arc::new(ProjectionHandler::new(
            pool.clone(),
            Arc::clone(&projection),
        ));
        let consumer = Consumer::bind(handler, bus.bus.clone(), options.clone())
            .await
            .expect("binding the consumer");
        let mut handled = 0;
        for _ in 0..2000 {
            let step = tokio::time::timeout(Duration::from_secs(10), consumer.step())
                .await
                .unwrap_or_else(|_| panic!("{}: a step hung after {handled}", projection.name()))
                .expect("stepping");
            handled += step.fetched;
            if handled as u64 >= published {
                break;
            }
        }
        let stored = orderflow_projections::projection::checkpoint(&pool, projection.name())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.position as u64, published, "{}", projection.name());
        let verify = rebuild(
            &pool,
            projection.as_ref(),
            RebuildOptions {
                verify_only: true,
                batch_size: 100,
            },
            &no_progress,
        )
        .await
        .unwrap();
        assert_eq!(verify.difference_count(), 0, "{:#?}", verify.differences);
    }
    assert!(bus.dead_letters().await.unwrap().is_empty());
    bus.cleanup().await.unwrap();
}
