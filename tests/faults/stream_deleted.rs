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
    load.accepted_more(100, Duration::from_secs(120)).await;
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
    load.accepted_more(50, Duration::from_secs(120)).await;
    let stream = system.bus.stream().await.expect("the event stream");
    // Where it had got to before it is deleted (its ack floor on the server), once the
    // runtime has noted that far in its own record (it notes its ack floor every 2 s): the
    // least it must resume after.
    let started = Instant::now();
    let handled = loop {
        let floor = stream
            .consumer_info("shipments")
            .await
            .expect("the shipments consumer")
            .ack_floor
            .stream_sequence;
        if floor > 0 {
            break floor;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "shipments handled nothing within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = stream
        .get_raw_message(handled)
        .await
        .expect("the message at the ack floor");
    let position = serde_json::from_slice::<orderflow_store::EventEnvelope>(&message.payload)
        .expect("an event")
        .position
        .expect("a stored event has a position");
    loop {
        let noted: Option<i64> =
            sqlx::query_scalar("SELECT position FROM consumer_floors WHERE consumer = 'shipments'")
                .fetch_optional(&system.world.db.pool)
                .await
                .expect("reading the consumer floors");
        if noted.is_some_and(|noted| noted >= position) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the runtime did not note within 120 s that shipments handled position {position} \
             (noted: {noted:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stream
        .delete_consumer("shipments")
        .await
        .expect("deleting the shipments consumer");
    let fault = Instant::now();
    // It comes back by itself, starting after what it had handled, not at the beginning.
    let recreated = loop {
        if let Ok(info) = stream.consumer_info("shipments").await {
            break Some(info.config.deliver_policy);
        }
        assert!(
            fault.elapsed() < Duration::from_secs(120),
            "the shipments consumer was not recreated within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
