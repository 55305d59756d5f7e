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
