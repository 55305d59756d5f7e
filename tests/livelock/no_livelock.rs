//! No livelock: a consumer short of CPU never lets the ack wait of a message it holds expire.
//!
//! A surge on a busy host makes every batch take longer. When a batch takes longer than the
//! consumer's ack wait, the server redelivers what is still in the process's hands; the
//! redeliveries join the next batches, which take longer still, and the consumer stops
//! advancing without saying why. Here `orderflow serve` starts on a backlog of orders with its
//! CPU capped far below what the backlog needs and an ack wait of one second, the compressed
//! form of a slow batch on a busy machine. Every consumer must still handle the whole log,
//! and nothing may be delivered again except what a handler asked to retry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orderflow_store::CommandMetadata;
use orderflow_testkit::cpu::CpuCap;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::{orderflow, OrderFixture, World};
use orderflow_workers::inventory;

const ORDERS: usize = 600;
const SKUS: usize = 16;
/// The orderflow process's share of one CPU: far below what the backlog needs, so its batches
/// take longer than the ack wait.
const CPU_PERCENT: u32 = 10;
/// Seconds the server waits for an ack before it redelivers.
const ACK_WAIT_SECS: &str = "1";
/// A starved process handles the backlog slowly; this only bounds a test that would hang.
const SETTLE_WITHIN: Duration = Duration::from_secs(600);

/// Places the backlog through the store, twenty orders at a time.
async fn place_orders(world: &World) {
    let meta = CommandMetadata::from_request("surge");
    for chunk in (0..ORDERS).collect::<Vec<_>>().chunks(20) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                let store = world.store.clone();
                let meta = meta.clone();
                let order = OrderFixture::new()
                    .customer(&format!("c-{}", i % 23))
                    .line(&format!("SKU-SURGE-{}", i % SKUS), 1);
                tokio::spawn(async move {
                    store
                        .execute(order.order_id(), order.command(), &meta)
                        .await
                        .expect("placing an order");
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a placing task");
        }
    }
}

/// Orders whose last event is not final.
async fn unfinished(world: &World) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT DISTINCT ON (aggregate_id) event_type FROM events
              ORDER BY aggregate_id, sequence DESC) AS last
          WHERE event_type NOT IN ('ShipmentStarted', 'OrderCancelled', 'OrderRejected')",
    )
    .fetch_one(world.pool())
    .await
    .unwrap()
}

/// The value of the counter line of `name` whose labels include every one of `labels`.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_short_of_cpu_keeps_what_it_holds_and_handles_the_whole_log() {
    let world = World::builder().max_connections(8).build().await;
    for i in 0..SKUS {
        inventory::set_stock(world.pool(), &sku(&format!("SKU-SURGE-{i}")), 1_000_000)
            .await
            .unwrap();
    }
    place_orders(&world).await;

    let (mut served, base) = orderflow!(&world)
        .envs(&[
            ("ORDERFLOW_ACK_WAIT_SECS", ACK_WAIT_SECS),
            ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8"),
        ])
        .serve(&[]);
    let cap = CpuCap::limit(served.id(), CPU_PERCENT);

    let consumers = orderflow_operations::consumer_names();
    let started = Instant::now();
    loop {
        let lag = orderflow_bus::consumer_info(&world.bus().bus, &consumers)
            .await
            .unwrap();
        let head = orderflow_store::log::head_position(world.pool())
            .await
            .unwrap();
        let open = unfinished(&world).await;
        let caught_up = lag.iter().all(|l| {
            l.exists
                && l.pending == 0
                && l.ack_pending == 0
                && l.last_handled_position == Some(head)
        });
        if open == 0 && caught_up {
            break;
        }
        served.assert_running();
        assert!(
            started.elapsed() < SETTLE_WITHIN,
            "the consumers did not handle the whole log within {SETTLE_WITHIN:?} on a \
             {CPU_PERCENT}% CPU: {open} orders open, head {head}, {lag:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let throttled = cap.throttled().unwrap_or_default();
    eprintln!(
        "{ORDERS} orders settled in {:?} on {CPU_PERCENT}% of a CPU (throttled for {throttled:?})",
        started.elapsed()
    );
    assert!(
        throttled > Duration::ZERO,
        "the CPU cap never held orderflow back, so this run proves nothing"
    );

    // Every delivery beyond the first of each message is one a handler asked for (a nak).
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stream = world.bus().bus.stream().await.unwrap();
    let mut again = BTreeMap::new();
    for name in &consumers {
        let info = stream.consumer_info(*name).await.unwrap();
        let extra = info.delivered.consumer_sequence - info.delivered.stream_sequence;
        let naked = counter(
            &metrics,
            "orderflow_consumer_messages_total",
            &[&format!("consumer=\"{name}\""), "outcome=\"retried\""],
        );
        if extra > naked {
            again.insert(*name, (extra, naked));
        }
    }
    assert!(
        again.is_empty(),
        "messages were delivered again while the consumer still held them (the ack wait \
         expired mid-work): consumer -> (deliveries beyond the first, naks): {again:?}"
    );
    assert!(world.bus().dead_letters().await.unwrap().is_empty());

    drop(cap);
    served.terminate(Duration::from_secs(60)).await;
    world.cleanup().await;
}
