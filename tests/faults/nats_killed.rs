//! NATS killed with SIGKILL under load, and started again: on the same store, with its store
//! emptied (the broker's disk lost), and with a store that holds the streams but none of their
//! messages. The gateway keeps taking orders (they are stored), the relay re-creates the
//! streams and re-publishes what the broker lost, the consumers come back by themselves, and
//! every accepted order ships with each effect once.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;
use orderflow_bus::{Bus, BusOptions};
use orderflow_testkit::load::{wait_until_healthy, OrderLoad};
use orderflow_testkit::nats::NatsServer;
use orderflow_testkit::Process;

use crate::harness::System;

/// How soon after NATS is back the stream must be whole again (RELIABILITY.md's promise).
const REPAIRED_WITHIN: Duration = Duration::from_secs(30);

/// `orderflow serve` under load, with the relay's periodic stream check 10 minutes apart: a
/// stream repaired within [`REPAIRED_WITHIN`] was repaired by the check the relay makes when
/// it finds the broker changed under it, never by the periodic one.
async fn serve_checking_rarely(system: &System) -> (Process, OrderLoad) {
    let (served, base) = system
        .orderflow()
        .env("ORDERFLOW_STREAM_CHECK_SECS", "600")
        .serve(&[]);
    wait_until_healthy(&base, Duration::from_secs(30)).await;
    (served, system.load_on(&base))
}

/// Waits until `orderflow verify stream` agrees (every stored event in the stream once), at
/// most [`REPAIRED_WITHIN`] after `restarted`, and prints how long that took.
async fn wait_until_whole(system: &System, restarted: Instant) {
    loop {
        let output = system.orderflow().output(&["verify", "stream"]);
        if output.status.success() {
            break;
        }
        assert!(
            restarted.elapsed() < REPAIRED_WITHIN,
            "the stream was not whole again within {REPAIRED_WITHIN:?} of NATS's restart (the \
             relay's periodic check is 10 minutes away: only its check on finding the broker \
             changed can repair it in time):\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "fault figures: the stream whole again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
}

/// Copies the folder `from` with everything in it into the folder `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder of the NATS store");
    for entry in std::fs::read_dir(from).expect("reading a folder of the NATS store") {
        let entry = entry.expect("reading a folder of the NATS store");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file of the NATS store");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_under_load_loses_nothing() {
    let mut system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    load.accepted_more(50, Duration::from_secs(120)).await;
    system.nats.kill();
    let fault = Instant::now();
    // NATS stays down while the gateway goes on storing orders.
    load.accepted_more(50, Duration::from_secs(120)).await;
    system.nats.restart().await;
    let probe = system.time_to_recover(fault).await;
    system.finish(served, load, &[probe]).await;
}

/// The broker's disk lost under load. Whoever reaches the new server first creates the streams
/// again: the relay, when its next publish fails, or any other orderflow process (each creates
/// the streams at its start, `orderflow verify stream` below too), and then the relay's
/// publishes succeed on a stream that lacks everything before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_store_emptied_under_load_is_repaired_from_the_store() {
    let mut system = System::start().await;
    let (served, load) = serve_checking_rarely(&system).await;
    load.accepted_more(100, Duration::from_secs(120)).await;
    system.nats.kill();
    system.nats.wipe_store();
    system.nats.restart().await;
    let restarted = Instant::now();
    wait_until_whole(&system, restarted).await;
    let probe = system.time_to_recover(restarted).await;
    system.finish(served, load, &[probe]).await;
}

/// The broker back with both streams but none of their messages (a store restored from an
/// older backup, or the streams created again by another process before the relay reached
/// the new server): nothing the relay does fails, its publishes go on at the end of a stream
/// that lacks everything before them. The relay sees that the broker changed under it (its
/// connection was made again) and refills the stream from the store at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_back_with_empty_streams_under_load_is_refilled_at_once() {
    let mut system = System::start().await;
    let (served, load) = serve_checking_rarely(&system).await;
    // A store holding both streams, empty: made by a server of its own.
    let mut donor = NatsServer::start().await;
    let options = BusOptions {
        nats_url: donor.url(),
        ..system.bus.options().clone()
    };
    Bus::connect_and_ensure(options)
        .await
        .expect("creating the streams on a server of their own");
    donor.kill();
    load.accepted_more(100, Duration::from_secs(120)).await;
    system.nats.kill();
    system.nats.wipe_store();
    copy_folder(donor.store(), system.nats.store());
    system.nats.restart().await;
    let restarted = Instant::now();
    wait_until_whole(&system, restarted).await;
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
    load.accepted_more(50, Duration::from_secs(120)).await;
    let mut first = load.stop().await;
    let base = system.served_at();
    first.retry_uncertain(&base, Duration::from_secs(60)).await;
    system
        .assert_settled_once(&first.accepted, Duration::from_secs(60))
        .await;
    let head = orderflow_store::log::head_position(&system.world.db.pool)
        .await
        .unwrap();
    // Each consumer's own record (a worker's floor, noted every few seconds; a projection's
    // checkpoint) says it handled the whole log.
    let names = orderflow_operations::consumer_names();
    let recorded = Instant::now();
    loop {
        let at_head: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT name) FROM (
                 SELECT consumer AS name, position FROM consumer_floors
                 UNION ALL SELECT name, position FROM projection_checkpoints) records
              WHERE name = ANY($1) AND position >= $2",
        )
        .bind(&names)
        .bind(head)
        .fetch_one(&system.world.db.pool)
        .await
        .unwrap();
        if at_head == i64::try_from(names.len()).unwrap() {
            break;
        }
        assert!(
            recorded.elapsed() < Duration::from_secs(60),
            "after 60 s, {at_head} of the {} consumers have a record (floor or checkpoint) at \
             the head of the log, position {head}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    served.terminate(Duration::from_secs(30)).await;
    let stream_length = u64::try_from(head).unwrap();
    system.nats.kill();
    system.nats.wipe_store();
    system.nats.restart().await;

    let restarted = Instant::now();
    let (served, load) = system.serve_under_load().await;
    eprintln!("serving again after {:?}", restarted.elapsed());
    let stream = system.bus.stream().await.expect("the event stream again");
    // The relay re-publishes the log in order (position n at sequence n), so a consumer that
    // had handled all of it is created at the sequence after it: earlier would walk the log
    // again, later would skip the first events stored since the restart.
    for name in &names {
        let policy = loop {
            if let Ok(info) = stream.consumer_info(name).await {
                break info.config.deliver_policy;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(120),
                "the durable consumer {name} was not created within 120 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match policy {
            DeliverPolicy::ByStartSequence { start_sequence } => assert_eq!(
                start_sequence,
                stream_length + 1,
                "{name} had handled the whole log, {stream_length} events, and was created at \
                 stream sequence {start_sequence}"
            ),
            other => panic!("{name} was not created after what it had handled: {other:?}"),
        }
    }
    eprintln!(
        "every consumer created again after {:?}",
        restarted.elapsed()
    );
    load.accepted_more(50, Duration::from_secs(120)).await;
    let second = system.finish(served, load, &first.accepted).await;
    assert!(!second.accepted.is_empty());
}
