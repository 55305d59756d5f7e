//! NATS killed with SIGKILL under load and started again on the same store: the gateway keeps
//! taking orders (they are stored), the relay and the consumers reconnect by themselves, and
//! every accepted order ships with each effect once.

use std::time::Duration;

use orderflow_testkit::load::{wait_until_healthy, OrderLoad};

use crate::harness::{System, SKU};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_under_load_loses_nothing() {
    let mut system = System::start().await;
    let (mut served, base) = system.orderflow().serve(&[]);
    wait_until_healthy(&base, Duration::from_secs(30)).await;
    let load = OrderLoad::start(
        &base,
        SKU,
        Duration::from_millis(20),
        Duration::from_secs(10),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.nats.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    served.assert_running();
    eprintln!(
        "accepted {}, refused {:?}, unanswered {}",
        report.accepted.len(),
        report.refused,
        report.unanswered
    );
    system
        .assert_settled_once(&report.accepted, Duration::from_secs(120))
        .await;
    served.terminate(Duration::from_secs(30)).await;
    system.world.cleanup().await;
}
