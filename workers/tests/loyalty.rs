//! The loyalty rules against a real PostgreSQL: an order earns its points once when it ships,
//! a cancellation after that takes them back once, and repeated or reordered deliveries change
//! nothing. Events are handed to the worker directly, as the runtime would.

use orderflow_bus::handler::{Delivery, Handler};
use orderflow_domain::OrderCommand;
use orderflow_store::EventEnvelope;
use orderflow_testkit::{OrderFixture, World};
use orderflow_workers::loyalty::{self, EntryKind, EntryReason, LoyaltyWorker};
use uuid::Uuid;

/// Places an order of `quantity` units at `unit_price` minor units for `customer`, confirms
/// and ships it; its id.
async fn shipped(world: &World, customer: &str, quantity: i64, unit_price: i64) -> Uuid {
    let id = world
        .place_order(
            OrderFixture::new()
                .customer(customer)
                .priced_line("SKU-L", quantity, unit_price),
        )
        .await;
    world
        .command(
            id,
            OrderCommand::ConfirmOrder {
                reservation_id: Uuid::now_v7(),
            },
        )
        .await;
    world
        .command(
            id,
            OrderCommand::StartShipment {
                shipment_id: Uuid::now_v7(),
                carrier: "simulated".into(),
                tracking_number: format!("T-{id}"),
            },
        )
        .await;
    id
}

/// Appends an `OrderCancelled` to order `id` straight into the log, after its last event: the
/// aggregate refuses a cancellation after shipping, but a log may hold one (an older rule, a
/// data repair), and the worker must take the points back.
async fn cancel_after_shipping(world: &World, id: Uuid) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'Order', $1, max(sequence) + 1, 'OrderCancelled', '1.0',
                '{\"OrderCancelled\": {\"reason\": \"returned\", \"cancelled_by\": \"support\"}}',
                '{}'
           FROM events WHERE aggregate_id = $1",
    )
    .bind(id.to_string())
    .execute(&world.db.pool)
    .await
    .unwrap();
}

async fn deliver(worker: &LoyaltyWorker, events: &[EventEnvelope]) -> usize {
    let batch: Vec<_> = events
        .iter()
        .map(|e| (e.clone(), Delivery::live(1)))
        .collect();
    let mut effects = 0;
    for result in worker.handle_batch(&batch).await {
        effects += result.expect("the worker handles the event").0.len();
    }
    effects
}

async fn balance(world: &World, customer: &str) -> loyalty::LoyaltyAccount {
    loyalty::account(&world.db.pool, customer, 100)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_shipped_order_earns_one_point_per_whole_unit_once() {
    let world = World::without_nats().await;
    let worker = LoyaltyWorker::new(world.db.pool.clone());
    // 3 x 12.99 EUR = 38.97 EUR: 38 points.
    let order = shipped(&world, "c-earn", 3, 1299).await;
    world.number_events().await;
    let events = world.events_after(0).await;

    assert_eq!(
        deliver(&worker, &events).await,
        1,
        "one entry for the order"
    );
    let account = balance(&world, "c-earn").await;
    assert_eq!(account.balance, 38);
    assert_eq!(account.entries_total, 1);
    let entry = &account.entries[0];
    assert_eq!(
        (entry.order_id, entry.kind, entry.points, entry.reason),
        (order, EntryKind::Earned, 38, EntryReason::Shipped)
    );
    assert_eq!(entry.position, events[2].position);

    // The same batch again, each event one by one, and a delivery after the shipment: nothing.
    assert_eq!(deliver(&worker, &events).await, 0);
    for event in &events {
        worker.handle(event, Delivery::live(2)).await.unwrap();
    }
    world.command(order, OrderCommand::MarkDelivered).await;
    world.number_events().await;
    let delivered = world.events_after(events[2].position.unwrap()).await;
    assert_eq!(delivered[0].event_type, "OrderDelivered");
    assert_eq!(
        deliver(&worker, &delivered).await,
        0,
        "delivery earns nothing more"
    );
    let account = balance(&world, "c-earn").await;
    assert_eq!((account.balance, account.entries_total), (38, 1));
    world.cleanup().await;
}

#[tokio::test]
async fn a_cancellation_after_earning_takes_the_points_back_once() {
    let world = World::without_nats().await;
    let worker = LoyaltyWorker::new(world.db.pool.clone());
    let kept = shipped(&world, "c-back", 1, 2_500).await;
    let taken_back = shipped(&world, "c-back", 2, 1_000).await;
    cancel_after_shipping(&world, taken_back).await;
    world.number_events().await;
    let events = world.events_after(0).await;

    // The cancellation first, then everything (twice): the order of arrival does not matter.
    let cancel: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "OrderCancelled")
        .cloned()
        .collect();
    assert_eq!(deliver(&worker, &cancel).await, 1);
    assert_eq!(deliver(&worker, &events).await, 2, "two earnings");
    assert_eq!(deliver(&worker, &events).await, 0);

    let account = balance(&world, "c-back").await;
    assert_eq!(account.balance, 25, "20 earned and taken back, 25 kept");
    assert_eq!(account.entries_total, 3);
    let of = |order: Uuid| -> Vec<(EntryKind, i64, EntryReason)> {
        let mut entries: Vec<_> = account
            .entries
            .iter()
            .filter(|e| e.order_id == order)
            .map(|e| (e.kind, e.points, e.reason))
            .collect();
        entries.sort_by_key(|e| e.1);
        entries
    };
    assert_eq!(of(kept), [(EntryKind::Earned, 25, EntryReason::Shipped)]);
    assert_eq!(
        of(taken_back),
        [
            (EntryKind::Revoked, -20, EntryReason::Cancelled),
            (EntryKind::Earned, 20, EntryReason::Shipped)
        ]
    );
    let entries: i64 = sqlx::query_scalar("SELECT sum(points)::bigint FROM loyalty_entries")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(
        entries, account.balance,
        "the balance is the sum of the entries"
    );
    world.cleanup().await;
}

#[tokio::test]
async fn a_cancellation_before_shipping_and_an_order_under_one_unit_earn_nothing() {
    let world = World::without_nats().await;
    let worker = LoyaltyWorker::new(world.db.pool.clone());
    let cancelled = world
        .place_order(
            OrderFixture::new()
                .customer("c-none")
                .priced_line("SKU-L", 1, 5_000),
        )
        .await;
    world.cancel(cancelled).await.unwrap();
    shipped(&world, "c-none", 1, 99).await;
    world.number_events().await;
    let events = world.events_after(0).await;

    assert_eq!(deliver(&worker, &events).await, 0);
    let account = balance(&world, "c-none").await;
    assert_eq!((account.balance, account.entries_total), (0, 0));
    assert!(account.entries.is_empty());
    world.cleanup().await;
}

#[tokio::test]
async fn a_dry_run_reports_what_it_would_note_and_writes_nothing() {
    let world = World::without_nats().await;
    let worker = LoyaltyWorker::new(world.db.pool.clone());
    shipped(&world, "c-dry", 1, 700).await;
    world.number_events().await;
    let events = world.events_after(0).await;
    let dry = Delivery {
        dry_run: true,
        ..Delivery::live(1)
    };
    let effects = worker.handle(&events[2], dry).await.unwrap();
    assert_eq!(effects.0.len(), 1, "{effects:?}");
    assert!(effects.0[0].starts_with("would note: customer c-dry earned 7 points"));
    assert_eq!(balance(&world, "c-dry").await.balance, 0);
    world.cleanup().await;
}
