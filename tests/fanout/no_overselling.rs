//! Guarantee 4, no overselling: stock is reserved atomically for all lines; a short line
//! rejects the whole order and reserves nothing; a cancellation gives stock back once.

use std::sync::Arc;

use orderflow_bus::{Delivery, Handler};
use orderflow_domain::OrderStatus;
use orderflow_workers::inventory::{self, InventoryWorker};

use super::checks::status_counts;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::{OrderFixture, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_10_and_50_concurrent_orders_confirm_exactly_10_and_cancel_returns_stock_once() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 10)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = world.store.clone();
        tasks.push(tokio::spawn(async move {
            let id = uuid::Uuid::now_v7();
            store
                .execute(
                    id,
                    OrderFixture::new().id(id).line("SKU-A", 1).command(),
                    &orderflow_store::CommandMetadata::from_request("test"),
                )
                .await
                .unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    assert_eq!(world.relay().await, 50);

    // Two processes share the durable consumer and race each other.
    let worker: Arc<dyn Handler> = Arc::new(InventoryWorker::new(world.db.pool.clone()));
    let first = world.bind(Arc::clone(&worker)).await;
    let second = world.bind(Arc::clone(&worker)).await;
    let (a, b) = tokio::join!(first.drain(), second.drain());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.handled + b.handled, 50, "{a:?} {b:?}");

    let counts = status_counts(&world, &ids).await;
    assert_eq!(counts.get("confirmed"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("rejected"), Some(&40), "{counts:?}");
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (0, 10));

    // Cancel one confirmed order: its unit comes back, once, even when redelivered.
    let mut confirmed = None;
    for id in &ids {
        if world.store.load(*id).await.unwrap().unwrap().state.status == OrderStatus::Confirmed {
            confirmed = Some(*id);
            break;
        }
    }
    let confirmed = confirmed.unwrap();
    world.cancel(confirmed).await.unwrap();
    world.relay().await;
    first.drain().await.unwrap();
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (1, 9));
    let cancelled = world.store.events(confirmed).await.unwrap().pop().unwrap();
    assert_eq!(cancelled.event_type, "OrderCancelled");
    let again = worker.handle(&cancelled, Delivery::live(2)).await.unwrap();
    assert!(
        again.is_empty(),
        "a redelivered cancellation does nothing: {again:?}"
    );
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (1, 9));
    world.cleanup().await;
}

#[tokio::test]
async fn an_order_short_on_one_line_is_rejected_and_reserves_nothing() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 5)
        .await
        .unwrap();
    inventory::set_stock(&world.db.pool, &sku("SKU-B"), 1)
        .await
        .unwrap();
    let id = world
        .place(&[("SKU-A", 2), ("SKU-B", 2), ("SKU-C", 1)])
        .await;
    world.relay().await;
    let consumer = world
        .bind(Arc::new(InventoryWorker::new(world.db.pool.clone())))
        .await;
    assert_eq!(consumer.drain().await.unwrap().handled, 1);
    let order = world.store.load(id).await.unwrap().unwrap().state;
    assert_eq!(order.status, OrderStatus::Rejected);
    let short: Vec<_> = order.unavailable_skus.iter().map(|s| s.as_str()).collect();
    assert_eq!(short, ["SKU-B", "SKU-C"]);
    for (name, available) in [("SKU-A", 5), ("SKU-B", 1)] {
        let stock = inventory::get_stock(&world.db.pool, &sku(name))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stock.available, stock.reserved), (available, 0), "{name}");
    }
    assert!(inventory::set_stock(&world.db.pool, &sku("SKU-A"), -1)
        .await
        .is_err());
    world.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_placements_reserves_in_delivery_order_all_or_nothing_and_a_repeat_changes_nothing(
) {
    let world = World::without_nats().await;
    let pool = world.db.pool.clone();
    inventory::set_stock(&pool, &sku("SKU-A"), 3).await.unwrap();
    inventory::set_stock(&pool, &sku("SKU-B"), 100)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(world.place(&[("SKU-A", 1), ("SKU-B", 10)]).await);
    }
    ids.push(world.place(&[("SKU-B", 1), ("SKU-Z", 1)]).await);
    let mut placed = Vec::new();
    for id in &ids {
        placed.push(world.store.events(*id).await.unwrap().remove(0));
    }
    let worker = InventoryWorker::new(pool.clone());
    assert!(worker.batched());
    let batch = |attempt| -> Vec<_> {
        placed
            .iter()
            .map(|e| (e.clone(), Delivery::live(attempt)))
            .collect()
    };

    let results = worker.handle_batch(&batch(1)).await;
    let effects: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap().0.join("; "))
        .collect();
    for (i, effect) in effects.iter().enumerate() {
        let expected = match i {
            0..=2 => "reserved",
            3..=5 => "short of [\"SKU-A\"]",
            _ => "short of [\"SKU-Z\"]",
        };
        assert!(effect.contains(expected), "order {i}: {effect}");
        assert!(effect.contains("sent "), "order {i}: {effect}");
    }
    let stock = |name: &'static str| {
        let pool = pool.clone();
        async move {
            let s = inventory::get_stock(&pool, &sku(name))
                .await
                .unwrap()
                .unwrap();
            (s.available, s.reserved)
        }
    };
    assert_eq!(stock("SKU-A").await, (0, 3));
    assert_eq!(
        stock("SKU-B").await,
        (70, 30),
        "a rejected order takes nothing"
    );
    let statuses = status_counts(&world, &ids).await;
    assert_eq!(statuses.get("confirmed"), Some(&3), "{statuses:?}");
    assert_eq!(statuses.get("rejected"), Some(&4), "{statuses:?}");

    // The whole batch again (a redelivery): nothing reserved twice, no event appended.
    let again = worker.handle_batch(&batch(2)).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    assert_eq!(stock("SKU-A").await, (0, 3));
    assert_eq!(stock("SKU-B").await, (70, 30));
    for id in &ids {
        assert_eq!(world.store.events(*id).await.unwrap().len(), 2);
    }

    // The confirmed orders ship: one batch deducts their reservations for good.
    let mut shipped = Vec::new();
    for (n, id) in ids[..3].iter().enumerate() {
        world
            .command(
                *id,
                orderflow_domain::OrderCommand::StartShipment {
                    shipment_id: uuid::Uuid::now_v7(),
                    carrier: "DHL".into(),
                    tracking_number: format!("T-{n}"),
                },
            )
            .await;
        let event = world.store.events(*id).await.unwrap().pop().unwrap();
        shipped.push((event, Delivery::live(1)));
    }
    let results = worker.handle_batch(&shipped).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().0[0].contains("deducted")),
        "{results:?}"
    );
    assert_eq!(stock("SKU-A").await, (0, 0));
    assert_eq!(stock("SKU-B").await, (70, 0));
    let repeat = worker.handle_batch(&shipped).await;
    assert!(
        repeat.iter().all(|r| r.as_ref().unwrap().is_empty()),
        "{repeat:?}"
    );
    world.cleanup().await;
}
