//! In a three-node JetStream cluster with the streams on three replicas, the node that leads
//! the event stream is SIGKILLed under load together with the relay that publishes, and the
//! node is started again later. The other two nodes elect a new stream leader, the standby
//! relay takes the relay lock and resumes from the checkpoint, every client reconnects to a
//! node that runs; every accepted order ships with each effect once, and the stream holds
//! every stored event exactly once.
//!
//! Each role runs as a process of its own, so that the publishing relay can be killed alone:
//! the gateway, two relays (the one that holds the relay lock and a standby), one process per
//! worker and one per projection.

use std::time::{Duration, Instant};

use orderflow_bus::relay::RELAY_LOCK_KEY;
use orderflow_testkit::load::wait_until_healthy;
use orderflow_testkit::nats::NatsCluster;
use orderflow_testkit::{free_port, Process};

use crate::harness::System;

/// The PostgreSQL backend that holds the relay lock in the system's database, if any.
async fn relay_lock_holder(system: &System<NatsCluster>) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(RELAY_LOCK_KEY)
    .fetch_optional(&system.world.db.pool)
    .await
    .expect("reading the relay lock from pg_locks")
}

/// Waits until a backend other than `not` holds the relay lock, and returns it.
async fn wait_for_relay_lock(system: &System<NatsCluster>, not: Option<i32>) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(holder) = relay_lock_holder(system).await.filter(|h| Some(*h) != not) {
            return holder;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no relay took the relay lock within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_leader_and_publishing_relay_killed_under_load_lose_nothing() {
    let mut system = System::start_cluster().await;
    // Eight processes side by side on the shared PostgreSQL: a small pool each.
    let orderflow = system
        .orderflow()
        .env("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "3");

    // The first relay takes the lock before the second one starts, so it is the one that
    // publishes.
    let active_relay = orderflow.start(&["relay"]);
    let holder = wait_for_relay_lock(&system, None).await;
    let mut others: Vec<Process> = vec![orderflow.start(&["relay"])];
    others.extend(
        orderflow_workers::WORKER_NAMES
            .iter()
            .map(|name| orderflow.start(&["worker", name])),
    );
    others.extend(
        orderflow_projections::all()
            .iter()
            .map(|projection| orderflow.start(&["project", projection.name()])),
    );
    let address = format!("127.0.0.1:{}", free_port());
    others.push(
        orderflow
            .clone()
            .env("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "6")
            .start(&["gateway", "--http-addr", &address]),
    );
    let base = format!("http://{address}");
    wait_until_healthy(&base, Duration::from_secs(30)).await;

    let stream = system.bus.stream_name().to_string();
    let leader = system.nats.stream_leader(&stream).await;
    let load = system.load_on(&base);
    load.accepted_more(100, Duration::from_secs(120)).await;
    system.nats.kill(leader);
    active_relay.kill();
    let fault = Instant::now();

    let standby = wait_for_relay_lock(&system, Some(holder)).await;
    let taken_over = fault.elapsed();
    // The two nodes left elect a new leader (this waits for it, or fails after 30 s).
    let new_leader = system.nats.stream_leader(&stream).await;
    let elected = fault.elapsed();
    eprintln!(
        "fault figures: stream leader {} killed, {} elected {:.1} s after; the relay lock \
         went from backend {holder} to the standby's {standby} {:.1} s after",
        NatsCluster::node_name(leader),
        NatsCluster::node_name(new_leader),
        elected.as_secs_f64(),
        taken_over.as_secs_f64()
    );
    let probe = system.time_to_recover(fault).await;
    // The two nodes left carry the load for a while, then the killed one comes back and
    // catches up under load.
    load.accepted_more(100, Duration::from_secs(120)).await;
    system.nats.restart(leader).await;
    load.accepted_more(100, Duration::from_secs(120)).await;

    let mut report = load.stop().await;
    let stopped = Instant::now();
    for process in &mut others {
        process.assert_running();
    }
    assert!(
        report.accepted.len() > 200,
        "only {} orders were accepted",
        report.accepted.len()
    );
    report.accepted.push(probe);
    report.retry_uncertain(&base, Duration::from_secs(60)).await;
    system
        .assert_settled_once(&report.accepted, Duration::from_secs(180))
        .await;
    eprintln!(
        "fault figures: {} orders accepted (refused {:?}, unanswered {}), all shipped {:.1} s \
         after the load stopped",
        report.accepted.len(),
        report.refused,
        report.unanswered,
        stopped.elapsed().as_secs_f64()
    );
    for process in others {
        process.terminate(Duration::from_secs(30)).await;
    }
    system.world.cleanup().await;
}
