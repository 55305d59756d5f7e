//! NATS killed with SIGKILL under load, and started again: on the same store, and with its
//! store emptied (the broker's disk lost). The gateway keeps taking orders (they are stored),
//! the relay re-creates the streams and re-publishes what the broker lost, the consumers come
//! back by themselves, and every accepted order ships with each effect once.

use std::time::{Duration, Instant};

use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_under_load_loses_nothing() {
    let mut system = System::start().await;
    let (served, load) = system.serve_under_load().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.finish(served, load).await;
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
        "stream whole again {:?} after the restart",
        restarted.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.finish(served, load).await;
}
