//! Loose coupling: a new consumer joins a system that is already running. `orderflow serve`
//! runs without the loyalty worker while 1,000 orders (some cancelled) go through; then
//! `orderflow worker loyalty` starts as a process of its own while orders keep coming. It
//! learns the whole log from the stream and keeps up: every customer's balance ends equal to
//! the points computed from the orders themselves. Nothing else is restarted, and the other
//! consumers are not delivered a single message again because of it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use orderflow_store::CommandMetadata;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::load::{wait_until_healthy, OrderLoad};
use orderflow_testkit::{orderflow, OrderFixture, World};
use orderflow_workers::{inventory, loyalty};
use uuid::Uuid;

const SKU: &str = "SKU-LOYAL";
const ORDERS: usize = 1_000;
/// The SKUs of the bulk orders, so that reservations do not all wait for one stock row.
const SKUS: usize = 16;
/// Every how many orders one is cancelled right after it is placed.
const CANCEL_EVERY: usize = 7;
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Places `ORDERS` orders through the store, twenty at a time, for 37 customers at varied
/// prices, cancelling every `CANCEL_EVERY`th right after placing it (refused when it shipped
/// already, which the balances computed from the log take into account).
async fn place_orders(world: &World) {
    let meta = CommandMetadata::from_request("bulk");
    let mut placed = 0;
    while placed < ORDERS {
        let mut tasks = Vec::new();
        for i in placed..(placed + 20).min(ORDERS) {
            let (store, meta) = (world.store.clone(), meta.clone());
            let order = OrderFixture::new()
                .customer(&format!("c-{}", i % 37))
                .priced_line(
                    &format!("{SKU}-{}", i % SKUS),
                    1 + (i % 3) as i64,
                    150 + (i as i64 * 7_919) % 9_000,
                );
            tasks.push(tokio::spawn(async move {
                let id = order.order_id();
                store
                    .execute(id, order.command(), &meta)
                    .await
                    .expect("placing an order");
                if i % CANCEL_EVERY == 0 {
                    let cancel = orderflow_domain::OrderCommand::CancelOrder {
                        reason: "changed my mind".into(),
                        cancelled_by: "customer".into(),
                    };
                    let _ = store.execute_retrying(id, cancel, &meta, 5).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a placing task");
        }
        placed = (placed + 20).min(ORDERS);
    }
}

/// Orders whose last event is not final (placed or confirmed, not yet shipped or cancelled).
async fn unfinished(world: &World) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT DISTINCT ON (aggregate_id) event_type FROM events
              ORDER BY aggregate_id, sequence DESC) AS last
          WHERE event_type NOT IN ('ShipmentStarted', 'OrderDelivered', 'OrderCancelled',
                                   'OrderRejected')",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap()
}

/// Waits until every order is final and each of `consumers` has handled the whole log.
async fn wait_until_settled(world: &World, consumers: &[&str], timeout: Duration) {
    let started = Instant::now();
    loop {
        let open = unfinished(world).await;
        let lag = orderflow_bus::consumer_info(&world.bus().bus, consumers)
            .await
            .unwrap();
        let head = orderflow_store::log::head_position(&world.db.pool)
            .await
            .unwrap();
        let unnumbered = orderflow_store::log::unnumbered_count(&world.db.pool)
            .await
            .unwrap();
        let caught_up = lag
            .iter()
            .all(|l| l.pending == 0 && l.ack_pending == 0 && l.last_handled_position == Some(head));
        if open == 0 && unnumbered == 0 && caught_up {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "not settled after {timeout:?}: {open} orders open, {unnumbered} unnumbered, \
             head {head}, {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each customer's points computed from the orders themselves: one per whole euro of every
/// order that shipped and was not cancelled after.
async fn expected_balances(world: &World) -> BTreeMap<String, i64> {
    let ids: Vec<Uuid> = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'Order'",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap()
    .iter()
    .map(|id| id.parse().unwrap())
    .collect();
    let logs = orderflow_store::log::events_of_orders(&world.db.pool, &ids)
        .await
        .unwrap();
    let mut balances = BTreeMap::new();
    for log in logs.values() {
        let types: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
        let state = orderflow_store::orders::fold(log, None)
            .unwrap()
            .unwrap()
            .state;
        assert_eq!(state.currency.as_str(), "EUR");
        let shipped = types.contains(&"ShipmentStarted");
        let cancelled_after = types
            .iter()
            .skip_while(|t| **t != "ShipmentStarted")
            .any(|t| *t == "OrderCancelled");
        let points = state.total.minor_units() / 100;
        if shipped && !cancelled_after && points > 0 {
            *balances.entry(state.customer_id).or_default() += points;
        }
    }
    balances
}

/// Deliveries made so far and the last stream sequence delivered, per consumer.
async fn deliveries(world: &World, consumers: &[&str]) -> HashMap<String, (u64, u64)> {
    let stream = world.bus().bus.stream().await.unwrap();
    let mut counts = HashMap::new();
    for name in consumers {
        let info = stream.consumer_info(*name).await.unwrap();
        counts.insert(
            name.to_string(),
            (
                info.delivered.consumer_sequence,
                info.delivered.stream_sequence,
            ),
        );
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loyalty_worker_started_later_learns_the_whole_log_and_keeps_up_alone() {
    let world = World::builder().max_connections(12).build().await;
    for name in std::iter::once(SKU.to_string()).chain((0..SKUS).map(|i| format!("{SKU}-{i}"))) {
        inventory::set_stock(&world.db.pool, &sku(&name), 10_000_000)
            .await
            .unwrap();
    }
    let port = orderflow_testkit::free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("ORDERFLOW_SERVE_WITHOUT", loyalty::NAME),
        ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8"),
    ];
    let mut served = orderflow!(&world).envs(&env).start(&[
        "serve",
        "--http-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    wait_until_healthy(&base, Duration::from_secs(60)).await;

    let started = Instant::now();
    place_orders(&world).await;
    eprintln!("{ORDERS} orders placed in {:?}", started.elapsed());
    let others: Vec<&str> = orderflow_operations::consumer_names()
        .into_iter()
        .filter(|name| *name != loyalty::NAME)
        .collect();
    wait_until_settled(&world, &others, Duration::from_secs(120)).await;
    eprintln!(
        "{ORDERS} orders placed and settled in {:?}",
        started.elapsed()
    );
    let lag = orderflow_bus::consumer_info(&world.bus().bus, &[loyalty::NAME])
        .await
        .unwrap();
    assert!(!lag[0].exists, "serve left the loyalty consumer out");
    let before = deliveries(&world, &others).await;
    let head_before = orderflow_store::log::head_position(&world.db.pool)
        .await
        .unwrap();

    // Orders keep coming through the gateway while the new consumer starts and catches up.
    let load = OrderLoad::start(
        &base,
        SKU,
        Duration::from_millis(20),
        Duration::from_secs(30),
    );
    load.accepted_more(20, Duration::from_secs(120)).await;
    let joined = Instant::now();
    let mut worker = orderflow!(&world)
        .envs(&[("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "4")])
        .start(&["worker", loyalty::NAME]);
    loop {
        let lag = orderflow_bus::consumer_info(&world.bus().bus, &[loyalty::NAME])
            .await
            .unwrap();
        if lag[0].last_handled_position >= Some(head_before) {
            break;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(180),
            "the loyalty worker did not reach position {head_before} within 180 s: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = joined.elapsed();
    // It keeps up with the live load for a while longer: fifty orders more.
    load.accepted_more(50, Duration::from_secs(120)).await;
    let report = load.stop().await;
    assert!(
        report.accepted.len() > 50,
        "only {} live orders were accepted: {report:?}",
        report.accepted.len()
    );
    assert!(
        report.refused.is_empty() && report.unanswered == 0,
        "the gateway refused or dropped orders while the loyalty worker joined: {report:?}"
    );
    let mut all = others.clone();
    all.push(loyalty::NAME);
    wait_until_settled(&world, &all, Duration::from_secs(180)).await;
    eprintln!(
        "loyalty: {head_before} events of history learnt in {caught_up:?} \
         ({:.0} events/s, process start included), {} live orders after",
        head_before as f64 / caught_up.as_secs_f64(),
        report.accepted.len()
    );

    let expected = expected_balances(&world).await;
    let kept: BTreeMap<String, i64> = loyalty::balances(&world.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(expected.len() >= 37, "{expected:?}");
    assert_eq!(kept, expected, "every customer's balance");
    let entries: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(points), 0)::bigint FROM loyalty_entries")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(entries, expected.values().sum::<i64>());
    // The HTTP answer agrees.
    let account: serde_json::Value = reqwest::get(format!("{base}/v1/customers/c-5/loyalty"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["balance"], expected["c-5"], "{account}");

    // No consumer of the running system was delivered anything again since the new one
    // joined: each delivery in the meantime was of a message it had not had before.
    let after = deliveries(&world, &others).await;
    for name in &others {
        let (deliveries_before, last_before) = before[*name];
        let (deliveries_after, last_after) = after[*name];
        assert_eq!(
            deliveries_after - deliveries_before,
            last_after - last_before,
            "{name} was delivered messages again after the loyalty worker joined"
        );
    }
    let lag = orderflow_bus::consumer_info(&world.bus().bus, &all)
        .await
        .unwrap();
    assert!(lag.iter().all(|l| l.redelivered == 0), "{lag:?}");
    assert!(world.bus().dead_letters().await.unwrap().is_empty());

    // Neither process was restarted: the one `serve` ran throughout.
    served.assert_running();
    worker.assert_running();
    worker.terminate(STOP_WITHIN).await;
    served.terminate(STOP_WITHIN).await;
    world.cleanup().await;
}
