//! Projections as durable consumers of the real JetStream stream (the workers' runtime): the
//! relay publishes the log, each projection's consumer folds it in batches, and
//! the result equals a rebuild from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow_bus::runtime::{Consumer, ConsumerOptions};
use orderflow_bus::Handler;
use orderflow_projections::rebuild::{rebuild, RebuildOptions};
use orderflow_projections::ProjectionHandler;
use orderflow_testkit::log::*;
use orderflow_testkit::World;
use tokio_util::sync::CancellationToken;

use crate::lives::*;

#[tokio::test]
async fn projections_consume_the_stream_and_match_a_rebuild() {
    let world = World::new().await;
    let bus = world.bus();
    let pool = world.pool().clone();
    live_orders(&world.store, 0..60).await;
    let published = orderflow_bus::relay::relay_once(&pool, &bus.bus, 500)
        .await
        .expect("relaying")
        .published;
    assert!(published > 100);

    // The production loop (`Consumer::run`, long polls, default batch size), one per
    // projection, until each checkpoint reaches the head.
    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(5),
        retry_delays: vec![Duration::from_millis(50)],
        ..ConsumerOptions::default()
    };
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for projection in orderflow_projections::all() {
        let handler: Arc<dyn Handler> = Arc::new(ProjectionHandler::new(
            pool.clone(),
            Arc::clone(&projection),
        ));
        let consumer = Consumer::bind(handler, bus.bus.clone(), options.clone())
            .await
            .expect("binding the consumer");
        let shutdown = shutdown.clone();
        running.push(tokio::spawn(async move { consumer.run(shutdown).await }));
    }
    let started = Instant::now();
    for projection in orderflow_projections::all() {
        loop {
            let at = orderflow_projections::projection::checkpoint(&pool, projection.name())
                .await
                .unwrap()
                .map_or(0, |c| c.position);
            if at as u64 == published {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} stuck at {at} of {published}",
                projection.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shutdown.cancel();
    for task in running {
        task.await.unwrap().unwrap();
    }
    for projection in orderflow_projections::all() {
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
    world.cleanup().await;
}
