//! A graceful stop loses nothing: every role of the real binary, stopped with SIGTERM under a
//! steady load of orders and started again, three times over, leaves every accepted order in
//! its final state, with each effect applied once (database effects once, external ones once
//! per idempotency key) and nothing dropped at the delivery limit.
//!
//! What this guards against: a consumer that, while stopping, gives back the messages its
//! open pull still delivers with an immediate nak gets each of them straight back, naks it
//! again, and spends the message's deliveries in milliseconds, after which JetStream stops
//! delivering it and the order stays where it was forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderflow_workers::inventory;
use orderflow_workers::WORKER_NAMES;
use uuid::Uuid;

use super::checks::wait_until_settled;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::http::Recorder;
use orderflow_testkit::load::{wait_until_healthy, OrderLoad};
use orderflow_testkit::{orderflow, OrderFixture, Process, World};

const SKU: &str = "SKU-STOP";
const STOCK: i64 = 1_000_000;
/// How long a role may take to stop after SIGTERM before the test calls it hung.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How long `serve` may take to answer after it was started, on a starved machine.
const STARTED_WITHIN: Duration = Duration::from_secs(60);

/// The environment of every role: the recorders as the webhook channel and the http carrier,
/// so that a repeated external effect shows as a repeated idempotency key, and a short ack
/// wait, so that a message left unacknowledged would come back within the test.
fn role_env(webhook: &Recorder, carrier: &Recorder) -> Vec<(&'static str, String)> {
    vec![
        ("ORDERFLOW_ACK_WAIT_SECS", "5".into()),
        ("ORDERFLOW_NOTIFY_CHANNEL", "webhook".into()),
        ("ORDERFLOW_NOTIFY_WEBHOOK_URL", webhook.url.clone()),
        ("ORDERFLOW_CARRIER", "http".into()),
        ("ORDERFLOW_CARRIER_URL", carrier.url.clone()),
    ]
}

async fn count(world: &World, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
}

/// Every accepted order shipped, each effect once, nothing parked.
async fn assert_every_order_done_once(
    world: &World,
    ids: &[Uuid],
    webhook: &Recorder,
    carrier: &Recorder,
) {
    wait_until_settled(
        world,
        ids,
        ids.len(),
        0,
        &orderflow_operations::consumer_names(),
        Duration::from_secs(120),
    )
    .await;
    let orders = ids.len() as i64;
    for id in ids {
        let types: Vec<_> = world
            .store
            .events(*id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            ["OrderPlaced", "OrderConfirmed", "ShipmentStarted"],
            "order {id}"
        );
    }
    let stock = inventory::get_stock(&world.db.pool, &sku(SKU))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stock.available, stock.reserved),
        (STOCK - orders, 0),
        "stock taken once per order"
    );
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM notifications WHERE status = 'sent'"
        )
        .await,
        3 * orders,
        "one notification per event"
    );
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM shipments WHERE status = 'started'"
        )
        .await,
        orders
    );
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM order_summary WHERE status = 'shipped'"
        )
        .await,
        orders
    );
    assert_eq!(
        count(world, "SELECT coalesce(sum(orders), 0)::bigint FROM analytics_status WHERE status = 'shipped'").await,
        orders,
        "analytics counted each order once"
    );
    // External effects are at-least-once with an idempotency key derived from the event: the
    // receiver sees exactly one key per notification and per booking. (A message that waited
    // past its ack wait in a busy process may be sent twice with the same key, which the
    // receiver drops; that is the contract, so repeats are reported, not failed.)
    let hooks = webhook.keys();
    let distinct: std::collections::HashSet<_> = hooks.iter().collect();
    assert_eq!(
        distinct.len() as i64,
        3 * orders,
        "one notification per event"
    );
    let bookings = carrier.keys();
    let booked: std::collections::HashSet<_> = bookings.iter().collect();
    assert_eq!(booked.len() as i64, orders, "one booking per order");
    eprintln!(
        "repeated keys: webhook {:?}, carrier {:?}",
        webhook.repeated_keys(),
        carrier.repeated_keys()
    );
    let parked = world.bus().dead_letters().await.unwrap();
    assert!(
        parked.is_empty(),
        "a graceful stop parked {} message(s)",
        parked.len()
    );
}

/// Places an order through the store every `every` until `stop`, counting them in `placed`.
fn store_load(
    world: &World,
    every: Duration,
    stop: Arc<AtomicBool>,
    placed: tokio::sync::watch::Sender<usize>,
) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let store = world.store.clone();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut tick = tokio::time::interval(every);
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let id = Uuid::now_v7();
            store
                .execute(
                    id,
                    OrderFixture::new().id(id).line(SKU, 1).command(),
                    &orderflow_store::CommandMetadata::from_request("load"),
                )
                .await
                .expect("placing an order");
            ids.push(id);
            placed.send_replace(ids.len());
        }
        ids
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stopped_with_sigterm_under_load_three_times_loses_nothing() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku(SKU), STOCK)
        .await
        .unwrap();
    let (webhook, carrier) = (Recorder::start().await, Recorder::start().await);
    let port = orderflow_testkit::free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = role_env(&webhook, &carrier);
    env.push(("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["serve", "--http-addr", &format!("127.0.0.1:{port}")];

    let mut served = orderflow!(&world).envs(&env).start(&args);
    wait_until_healthy(&base, STARTED_WITHIN).await;
    let load = OrderLoad::start(
        &base,
        SKU,
        Duration::from_millis(10),
        Duration::from_secs(30),
    );
    // Each `serve` is stopped once it has taken orders for a while: its consumers are busy
    // with them when SIGTERM comes.
    for _ in 0..3 {
        load.accepted_more(40, Duration::from_secs(120)).await;
        served.terminate(STOP_WITHIN).await;
        served = orderflow!(&world).envs(&env).start(&args);
        wait_until_healthy(&base, STARTED_WITHIN).await;
    }
    load.accepted_more(40, Duration::from_secs(120)).await;
    let mut report = load.stop().await;
    eprintln!(
        "graceful stop under load: accepted {}, refused {:?}, unanswered {}",
        report.accepted.len(),
        report.refused,
        report.unanswered
    );
    // A request the client gave up on (30 s without an answer, on a starved machine) may
    // still have been carried out: sent again with its Idempotency-Key, it answers with it.
    report.retry_uncertain(&base, Duration::from_secs(60)).await;
    let ids = report.accepted;
    assert!(ids.len() > 100, "only {} orders were accepted", ids.len());

    assert_every_order_done_once(&world, &ids, &webhook, &carrier).await;
    served.terminate(STOP_WITHIN).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_single_role_restarted_with_sigterm_under_load_loses_nothing() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku(SKU), STOCK)
        .await
        .unwrap();
    let (webhook, carrier) = (Recorder::start().await, Recorder::start().await);
    let env = role_env(&webhook, &carrier);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut roles: Vec<Vec<&str>> = vec![vec!["relay"]];
    roles.extend(WORKER_NAMES.iter().map(|name| vec!["worker", *name]));
    roles.extend(
        orderflow_projections::all()
            .iter()
            .map(|projection| vec!["project", projection.name()]),
    );
    let mut running: Vec<Process> = roles
        .iter()
        .map(|args| orderflow!(&world).envs(&env).start(args))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (placed, mut placing) = tokio::sync::watch::channel(0);
    let load = store_load(&world, Duration::from_millis(10), Arc::clone(&stop), placed);
    // A rolling restart, three times over: each role in turn, while the others work on. Each
    // restart comes once a few more orders were placed since the last one.
    for _ in 0..3 {
        for (slot, args) in roles.iter().enumerate() {
            let wanted = *placing.borrow() + 10;
            tokio::time::timeout(
                Duration::from_secs(120),
                placing.wait_for(|placed| *placed >= wanted),
            )
            .await
            .expect("the load placed 10 orders within 120 s")
            .expect("the load runs");
            let old = std::mem::replace(
                &mut running[slot],
                orderflow!(&world).envs(&env).start(args),
            );
            old.terminate(STOP_WITHIN).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let ids = load.await.unwrap();
    assert!(ids.len() > 100, "only {} orders were placed", ids.len());

    assert_every_order_done_once(&world, &ids, &webhook, &carrier).await;
    for process in running {
        process.terminate(STOP_WITHIN).await;
    }
    world.cleanup().await;
}
