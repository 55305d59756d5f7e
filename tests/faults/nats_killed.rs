//! NATS killed with SIGKILL under load, and started again: on the same store, and with its
//! store emptied (the broker's disk lost). The gateway keeps taking orders (they are stored),
//! the relay re-creates the streams and re-publishes what the broker lost, the consumers come
//! back by themselves, and every accepted order ships with each effect once.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;

use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_under_load_loses_nothing() {
    let mut system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.kill();
    let fault = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.restart().await;
    let probe = system.time_to_recover(fault).await;
    system.finish(served, load, &[probe]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_store_emptied_under_load_is_repaired_from_the_store() {
    let mut system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    system.nats.kill();
    system.nats.wipe_store();
    system.nats.restart().await;
    let restarted = Instant::now();
    // The stream comes back whole: every position up to the relay's checkpoint, once.
    loop {
        let output = system.orderflow().output(&["verify", "stream"]);
        if output.status.success() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the stream was not repaired within 30 s:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "fault figures: the stream whole again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    let probe = system.time_to_recover(restarted).await;
    system.finish(served, load, &[probe]).await;
}

/// The broker's disk lost while orderflow is down: at its next start the relay re-publishes
/// the whole log, and each consumer (created anew, as the server forgot them all) resumes
/// after what it had handled, from its own record, instead of walking the log again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_lost_while_stopped_resume_where_they_were() {
    let mut system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut first = load.stop().await;
    let base = system.served_at();
    first.retry_uncertain(&base, Duration::from_secs(60)).await;
    system
        .assert_settled_once(&first.accepted, Duration::from_secs(60))
        .await;
    // The runtime notes how far each consumer got every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    served.terminate(Duration::from_secs(30)).await;
    let stream_length = u64::try_from(
        orderflow_store::log::head_position(&system.world.db.pool)
            .await
            .unwrap(),
    )
    .unwrap();
    system.nats.kill();
    system.nats.wipe_store();
    system.nats.restart().await;

    let restarted = Instant::now();
    let (served, load) = system.serve_under_load().await;
    eprintln!("serving again after {:?}", restarted.elapsed());
    let stream = system.bus.stream().await.expect("the event stream again");
    for name in orderflow_operations::consumer_names() {
        let mut policy = None;
        for _ in 0..100 {
            if let Ok(info) = stream.consumer_info(name).await {
                policy = Some(info.config.deliver_policy);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match policy {
            Some(DeliverPolicy::ByStartSequence { start_sequence }) => assert!(
                start_sequence > stream_length / 2,
                "{name} resumed at stream sequence {start_sequence} of {stream_length}"
            ),
            other => panic!("{name} was not created after what it had handled: {other:?}"),
        }
    }
    eprintln!(
        "every consumer created again after {:?}",
        restarted.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = system.finish(served, load, &first.accepted).await;
    assert!(!second.accepted.is_empty());
}
