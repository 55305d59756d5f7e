//! The event stream deleted by hand while orderflow runs under load, and one durable consumer
//! deleted: the relay creates the stream again and re-publishes it from the store, and each
//! consumer is created again where it had got to, not at the start of the log.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;

use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_deleted_under_load_is_recreated_and_refilled() {
    let system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    system
        .bus
        .jetstream()
        .delete_stream(system.bus.stream_name())
        .await
        .expect("deleting the event stream");
    let probe = system.time_to_recover(Instant::now()).await;
    system.finish(served, load, &[probe]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_consumer_comes_back_where_it_was() {
    let system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stream = system.bus.stream().await.expect("the event stream");
    // Where it had got to a little before it is deleted (the runtime notes its ack floor
    // every 2 s): the least it must resume after.
    let handled = stream
        .consumer_info("shipments")
        .await
        .expect("the shipments consumer")
        .ack_floor
        .stream_sequence;
    assert!(handled > 0, "shipments handled nothing in 3 s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream
        .delete_consumer("shipments")
        .await
        .expect("deleting the shipments consumer");
    let fault = Instant::now();
    // It comes back by itself, starting after what it had handled, not at the beginning.
    let mut recreated = None;
    for _ in 0..100 {
        if let Ok(info) = stream.consumer_info("shipments").await {
            recreated = Some(info.config.deliver_policy);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match recreated {
        Some(DeliverPolicy::ByStartSequence { start_sequence }) => assert!(
            start_sequence > handled,
            "recreated at stream sequence {start_sequence}, though it had handled everything \
             up to {handled}: it walks the log again"
        ),
        other => panic!("the shipments consumer was not recreated where it was: {other:?}"),
    }
    let probe = system.time_to_recover(fault).await;
    system.finish(served, load, &[probe]).await;
}
