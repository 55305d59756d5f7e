//! Guarantee 3, effectively-once effects: delivery is at-least-once, yet no stock change,
//! notification, shipment or loyalty point happens twice, even when workers are SIGKILLed mid-batch and
//! restarted as competing processes. Database effects commit with the inbox claim, so they
//! happen once. Effects outside the database carry an idempotency key derived from the event:
//! the receiver sees exactly one key per notification and per shipment; a repeat (a message
//! in hand at the kill, sent again) carries the same key, so the receiver drops it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow_bus::relay::{self, run_relay, RelayOptions};
use orderflow_bus::{Delivery, Handler};
use orderflow_workers::inventory::{self, InventoryWorker};
use orderflow_workers::loyalty::LoyaltyWorker;
use orderflow_workers::notifications::{LogChannel, NotificationsWorker};
use orderflow_workers::shipments::{ShipmentsWorker, SimulatedCarrier};
use orderflow_workers::WORKER_NAMES;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::checks::wait_until_settled;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::http::Recorder;
use orderflow_testkit::{orderflow, Process, World};

async fn count(world: &World, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
}

/// Waits until the inventory worker has handled something, then SIGKILLs every worker.
async fn kill_every_worker_once_under_way(world: &World, mut workers: Vec<Process>) {
    // Kill every worker as soon as it is under way (only 50 of the 150 orders are on the
    // stream yet).
    let started = Instant::now();
    loop {
        let handled = count(
            world,
            "SELECT count(*) FROM inbox WHERE consumer = 'inventory'",
        )
        .await;
        if handled > 0 {
            break;
        }
        for worker in &mut workers {
            worker.assert_running();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the workers handled nothing within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for worker in workers.drain(..) {
        worker.kill();
    }
    let at_kill = count(
        world,
        "SELECT count(*) FROM inbox WHERE consumer = 'inventory'",
    )
    .await;
    assert!(
        at_kill < 150,
        "killed too late to prove anything ({at_kill} handled)"
    );
}

async fn assert_stock_taken_once(world: &World) {
    // Stock: taken once per confirmed order, never twice.
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-K"))
        .await
        .unwrap()
        .unwrap();
    // Every order was confirmed and shipped, so its reserved units were deducted for good.
    assert_eq!((stock.available, stock.reserved), (0, 0));
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM inventory_reservations WHERE status = 'shipped'"
        )
        .await,
        100
    );
}

async fn assert_each_order_has_its_events_once(world: &World, ids: &[Uuid]) {
    // Commands: each order got exactly its events (no second confirmation or shipment).
    for id in ids {
        let types: Vec<_> = world
            .store
            .events(*id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(
            types == ["OrderPlaced", "OrderConfirmed", "ShipmentStarted"]
                || types == ["OrderPlaced", "OrderRejected"],
            "order {id}: {types:?}"
        );
    }
}

async fn assert_each_notification_sent_once(world: &World, webhook: &Recorder) {
    // Notifications: one record per notifiable event, each sent; the webhook saw every
    // notification id, and repeats only of messages in hand at the kill.
    let notifiable = count(
        world,
        "SELECT count(*) FROM events WHERE event_type IN
           ('OrderPlaced','OrderConfirmed','OrderRejected','OrderCancelled','ShipmentStarted')",
    )
    .await;
    assert_eq!(notifiable, 150 + 100 + 50 + 100);
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM notifications WHERE status = 'sent'"
        )
        .await,
        notifiable
    );
    let ids_sent: Vec<Uuid> = sqlx::query_scalar("SELECT notification_id FROM notifications")
        .fetch_all(&world.db.pool)
        .await
        .unwrap();
    let hooks = webhook.keys();
    let distinct: HashSet<_> = hooks.iter().cloned().collect();
    let expected: HashSet<_> = ids_sent.iter().map(Uuid::to_string).collect();
    assert_eq!(
        distinct, expected,
        "the webhook got exactly the recorded notifications"
    );
    // A repeat (a message in hand at the kill) carries the same key, so the receiver drops it.
    eprintln!(
        "webhook: {} requests, {} repeats of a key",
        hooks.len(),
        hooks.len() - distinct.len()
    );
}

async fn assert_points_earned_once(world: &World, shipped: i64) {
    // Loyalty: one earning per shipped order, of one point per whole euro of its total, and
    // each balance the sum of its customer's entries.
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM loyalty_entries WHERE kind = 'earned'"
        )
        .await,
        shipped
    );
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM loyalty_entries e
               JOIN events p ON p.aggregate_id = e.order_id::text AND p.sequence = 1
              WHERE e.points = (p.payload -> 'OrderPlaced' ->> 'total')::bigint / 100"
        )
        .await,
        shipped,
        "an entry of other points than its order's total"
    );
    assert_eq!(
        count(
            world,
            "SELECT count(*) FROM loyalty_balances b
              WHERE b.points <> (SELECT sum(points) FROM loyalty_entries e
                                  WHERE e.customer_id = b.customer_id)"
        )
        .await,
        0,
        "a balance that is not the sum of its entries"
    );
}

async fn assert_each_shipment_booked_once(world: &World, ids: &[Uuid], carrier: &Recorder) {
    // Shipments: one booking per confirmed order (same key on a repeat), its tracking number
    // on the order.
    let bookings = carrier.keys();
    let booked: HashSet<_> = bookings.iter().cloned().collect();
    assert_eq!(booked.len(), 100);
    eprintln!(
        "carrier: {} requests, {} repeats of a key",
        bookings.len(),
        bookings.len() - booked.len()
    );
    for id in ids {
        if let Some(shipment) = world.store.load(*id).await.unwrap().unwrap().state.shipment {
            assert!(booked.contains(&shipment.shipment_id.to_string()));
            assert_eq!(
                shipment.tracking_number,
                format!("HTTP-{}", shipment.shipment_id)
            );
            assert_eq!(shipment.carrier, "http");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_killed_mid_batch_and_restarted_apply_no_effect_twice() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-K"), 100)
        .await
        .unwrap();
    let webhook = Recorder::start().await;
    let carrier = Recorder::start().await;
    let ids = world.place_many("SKU-K", 150).await;
    // Only a third of the orders reach the stream before the kill, so the workers are killed
    // with most of the work still ahead of them, however fast they are.
    world.number_events().await;
    let early = relay::publish_range(&world.db.pool, &world.bus().bus, 0, Some(50), 50)
        .await
        .unwrap();
    assert_eq!(early.published, 50);
    let env = [
        ("ORDERFLOW_ACK_WAIT_SECS", "2"),
        ("ORDERFLOW_WORKER_CONCURRENCY", "8"),
        ("ORDERFLOW_NOTIFY_CHANNEL", "webhook"),
        ("ORDERFLOW_NOTIFY_WEBHOOK_URL", webhook.url.as_str()),
        ("ORDERFLOW_CARRIER", "http"),
        ("ORDERFLOW_CARRIER_URL", carrier.url.as_str()),
    ];
    let start_all = || {
        WORKER_NAMES
            .iter()
            .map(|name| orderflow!(&world).envs(&env).start(&["worker", name]))
            .collect::<Vec<_>>()
    };
    kill_every_worker_once_under_way(&world, start_all()).await;

    // The relay publishes the whole log (the first 50 again: the stream drops them as
    // duplicates), and the workers are restarted as two processes per worker, competing for
    // the same durable consumers.
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(run_relay(
        world.db.pool.clone(),
        world.bus().bus.clone(),
        RelayOptions::default(),
        shutdown.clone(),
    ));
    let workers = (start_all(), start_all());
    wait_until_settled(
        &world,
        &ids,
        100,
        50,
        &WORKER_NAMES,
        Duration::from_secs(180),
    )
    .await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    assert_stock_taken_once(&world).await;
    assert_each_order_has_its_events_once(&world, &ids).await;
    assert_each_notification_sent_once(&world, &webhook).await;
    assert_each_shipment_booked_once(&world, &ids, &carrier).await;
    assert_points_earned_once(&world, 100).await;
    drop(workers);
    world.cleanup().await;
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing_in_any_worker() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-R"), 5)
        .await
        .unwrap();
    let id = world.place(&[("SKU-R", 2)]).await;
    let pool = world.db.pool.clone();
    let inventory_worker = InventoryWorker::new(pool.clone());
    let notifications = NotificationsWorker::new(pool.clone(), Arc::new(LogChannel));
    let shipments = ShipmentsWorker::new(pool.clone(), Arc::new(SimulatedCarrier::instant()));
    let loyalty = LoyaltyWorker::new(pool.clone());
    let workers: [&dyn Handler; 4] = [&inventory_worker, &notifications, &shipments, &loyalty];
    // Handle the whole history twice, as a redelivery of every message would.
    for round in 1..=2 {
        let mut seen = 0;
        loop {
            let events = world.store.events(id).await.unwrap();
            if events.len() == seen {
                break;
            }
            for event in &events[seen..] {
                for worker in workers {
                    worker.handle(event, Delivery::live(round)).await.unwrap();
                }
            }
            seen = events.len();
        }
        let stock = inventory::get_stock(&pool, &sku("SKU-R"))
            .await
            .unwrap()
            .unwrap();
        // 2 taken once (not twice), then deducted for good when the shipment started.
        assert_eq!((stock.available, stock.reserved), (3, 0), "round {round}");
        let types: Vec<_> = world
            .store
            .events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(types, ["OrderPlaced", "OrderConfirmed", "ShipmentStarted"]);
        assert_eq!(count(&world, "SELECT count(*) FROM notifications").await, 3);
        assert_eq!(
            count(
                &world,
                "SELECT count(*) FROM notifications WHERE attempts = 1 AND status = 'sent'"
            )
            .await,
            3
        );
        assert_eq!(
            count(
                &world,
                "SELECT count(*) FROM shipments WHERE status = 'started'"
            )
            .await,
            1
        );
        assert_points_earned_once(&world, 1).await;
    }
    world.cleanup().await;
}
