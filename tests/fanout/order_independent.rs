//! Guarantee 7, order-independent handlers: events may arrive late, twice, or out of order,
//! and the races with the order's own life end where the log says they should.

use std::sync::Arc;

use orderflow_bus::{Delivery, Effects, Handler, HandlerError};
use orderflow_domain::OrderStatus;
use orderflow_store::EventEnvelope;
use orderflow_workers::inventory::{self, InventoryWorker};
use orderflow_workers::notifications::{self, LogChannel, NotificationsWorker};
use orderflow_workers::shipments::{self, ShipmentsWorker, SimulatedCarrier};
use uuid::Uuid;

use orderflow_testkit::fixture::sku;
use orderflow_testkit::World;

async fn events(world: &World, id: Uuid) -> Vec<EventEnvelope> {
    world.store.events(id).await.unwrap()
}

fn of_type<'a>(events: &'a [EventEnvelope], event_type: &str) -> &'a EventEnvelope {
    events.iter().find(|e| e.event_type == event_type).unwrap()
}

#[tokio::test]
async fn a_cancellation_seen_before_the_placement_leaves_nothing_reserved() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 3)
        .await
        .unwrap();
    let id = world.place(&[("SKU-A", 2)]).await;
    world.cancel(id).await.unwrap();
    let log = events(&world, id).await;
    let worker = InventoryWorker::new(world.db.pool.clone());
    worker
        .handle(of_type(&log, "OrderCancelled"), Delivery::live(1))
        .await
        .unwrap();
    worker
        .handle(of_type(&log, "OrderPlaced"), Delivery::live(1))
        .await
        .unwrap();
    worker
        .handle(of_type(&log, "OrderPlaced"), Delivery::live(2))
        .await
        .unwrap();
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (3, 0));
    let decision = inventory::reservation(&world.db.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decision.status, "cancelled");
    assert_eq!(
        events(&world, id).await.len(),
        2,
        "no command was sent to the cancelled order"
    );
    world.cleanup().await;
}

#[tokio::test]
async fn a_reservation_made_for_an_order_cancelled_meanwhile_is_released() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 3)
        .await
        .unwrap();
    let id = world.place(&[("SKU-A", 2)]).await;
    world.cancel(id).await.unwrap();
    let log = events(&world, id).await;
    let worker = InventoryWorker::new(world.db.pool.clone());
    // The placement is handled after the customer cancelled: stock is taken, the
    // confirmation changes nothing on the cancelled order, the cancellation gives it back.
    worker
        .handle(of_type(&log, "OrderPlaced"), Delivery::live(1))
        .await
        .unwrap();
    let order = world.store.load(id).await.unwrap().unwrap();
    assert_eq!(order.state.status, OrderStatus::Cancelled);
    assert_eq!(order.version, 2, "the confirmation was a no-op");
    worker
        .handle(of_type(&log, "OrderCancelled"), Delivery::live(1))
        .await
        .unwrap();
    worker
        .handle(of_type(&log, "OrderCancelled"), Delivery::live(2))
        .await
        .unwrap();
    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (3, 0));
    assert_eq!(
        inventory::reservation(&world.db.pool, id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "released"
    );
    world.cleanup().await;
}

#[tokio::test]
async fn no_shipment_is_requested_for_an_order_cancelled_after_its_confirmation() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 3)
        .await
        .unwrap();
    let id = world.place(&[("SKU-A", 1)]).await;
    let inventory = InventoryWorker::new(world.db.pool.clone());
    inventory
        .handle(
            of_type(&events(&world, id).await, "OrderPlaced"),
            Delivery::live(1),
        )
        .await
        .unwrap();
    world.cancel(id).await.unwrap();
    let log = events(&world, id).await;
    let shipments =
        ShipmentsWorker::new(world.db.pool.clone(), Arc::new(SimulatedCarrier::instant()));
    let effects = shipments
        .handle(of_type(&log, "OrderConfirmed"), Delivery::live(1))
        .await
        .unwrap();
    assert!(effects.0.is_empty(), "{effects:?}");
    let record = shipments::shipment_for_order(&world.db.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, "skipped");
    assert_eq!(record.tracking_number, None);
    let order = world.store.load(id).await.unwrap().unwrap().state;
    assert_eq!(
        (order.status, order.shipment),
        (OrderStatus::Cancelled, None)
    );
    world.cleanup().await;
}

#[tokio::test]
async fn notifications_arriving_out_of_order_are_each_sent_once_with_the_state_of_their_time() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-A"), 3)
        .await
        .unwrap();
    let id = world.place(&[("SKU-A", 1)]).await;
    InventoryWorker::new(world.db.pool.clone())
        .handle(
            of_type(&events(&world, id).await, "OrderPlaced"),
            Delivery::live(1),
        )
        .await
        .unwrap();
    world.cancel(id).await.unwrap();
    let log = events(&world, id).await;
    let worker = NotificationsWorker::new(world.db.pool.clone(), Arc::new(LogChannel));
    for event in log.iter().rev().chain(log.iter()) {
        worker.handle(event, Delivery::live(1)).await.unwrap();
    }
    let sent = notifications::list_for_order(&world.db.pool, id)
        .await
        .unwrap();
    let mut kinds: Vec<_> = sent.iter().map(|n| n.event_type.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["OrderCancelled", "OrderConfirmed", "OrderPlaced"]);
    assert!(sent
        .iter()
        .all(|n| n.status == "sent" && n.attempts == 1 && n.recipient == "ada@example.com"));
    world.cleanup().await;
}

/// A channel that fails the first send of each confirmation and counts every call.
struct FlakyOnConfirmations {
    calls: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl notifications::Channel for FlakyOnConfirmations {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn send(&self, n: &notifications::Notification) -> Result<(), notifications::SendError> {
        let mut calls = self.calls.lock().unwrap();
        let earlier = calls.iter().filter(|t| **t == n.event_type).count();
        calls.push(n.event_type.clone());
        if n.event_type == "OrderConfirmed" && earlier == 0 {
            return Err(notifications::SendError::Transient("try later".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_of_notifications_out_of_order_and_repeated_sends_each_once_and_retries_only_the_failed(
) {
    let world = World::without_nats().await;
    let pool = world.db.pool.clone();
    inventory::set_stock(&pool, &sku("SKU-A"), 3).await.unwrap();
    let id = world.place(&[("SKU-A", 1)]).await;
    InventoryWorker::new(pool.clone())
        .handle(
            of_type(&events(&world, id).await, "OrderPlaced"),
            Delivery::live(1),
        )
        .await
        .unwrap();
    world.cancel(id).await.unwrap();
    let log = events(&world, id).await;
    let channel = Arc::new(FlakyOnConfirmations {
        calls: std::sync::Mutex::new(Vec::new()),
    });
    let worker = NotificationsWorker::new(pool.clone(), channel.clone());
    assert!(worker.batched());
    // Newest first, then everything again: one batch.
    let batch: Vec<_> = log
        .iter()
        .rev()
        .chain(log.iter())
        .map(|e| (e.clone(), Delivery::live(1)))
        .collect();
    // The confirmation's first send fails for now: the channel's gate tries it again (no
    // retry of the message), and only it.
    let results = worker.handle_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let statuses = |records: Vec<notifications::NotificationRecord>| {
        let mut s: Vec<_> = records
            .into_iter()
            .map(|n| (n.event_type, n.status, n.attempts, n.recipient))
            .collect();
        s.sort();
        s
    };
    let ada = || "ada@example.com".to_string();
    assert_eq!(
        statuses(notifications::list_for_order(&pool, id).await.unwrap()),
        [
            ("OrderCancelled".into(), "sent".into(), 1, ada()),
            ("OrderConfirmed".into(), "sent".into(), 1, ada()),
            ("OrderPlaced".into(), "sent".into(), 1, ada()),
        ]
    );

    // The batch comes back: nothing is sent again.
    let again: Vec<_> = batch
        .iter()
        .map(|(e, _)| (e.clone(), Delivery::live(2)))
        .collect();
    let results = worker.handle_batch(&again).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        statuses(notifications::list_for_order(&pool, id).await.unwrap()),
        [
            ("OrderCancelled".into(), "sent".into(), 1, ada()),
            ("OrderConfirmed".into(), "sent".into(), 1, ada()),
            ("OrderPlaced".into(), "sent".into(), 1, ada()),
        ]
    );
    let mut calls = channel.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            "OrderCancelled",
            "OrderConfirmed",
            "OrderConfirmed",
            "OrderPlaced"
        ]
    );
    world.cleanup().await;
}

/// A carrier that refuses one order, fails another's first booking, and counts bookings.
struct PickyCarrier {
    refuse: Uuid,
    flaky: Uuid,
    booked: std::sync::Mutex<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl shipments::Carrier for PickyCarrier {
    fn name(&self) -> &str {
        "picky"
    }

    async fn book(
        &self,
        request: &shipments::ShipmentRequest,
    ) -> Result<shipments::Booking, shipments::CarrierError> {
        let mut booked = self.booked.lock().unwrap();
        let earlier = booked.iter().filter(|id| **id == request.order_id).count();
        booked.push(request.order_id);
        if request.order_id == self.refuse {
            return Err(shipments::CarrierError::Refused("no such street".into()));
        }
        if request.order_id == self.flaky && earlier == 0 {
            return Err(shipments::CarrierError::Transient("busy".into()));
        }
        Ok(shipments::Booking {
            tracking_number: format!("P-{}", &request.order_id.simple().to_string()[..6]),
        })
    }
}

#[tokio::test]
async fn a_batch_of_confirmations_books_and_starts_each_once_and_a_redelivery_continues_where_it_stopped(
) {
    let world = World::without_nats().await;
    let pool = world.db.pool.clone();
    let mut ids = Vec::new();
    for n in 0..5u128 {
        let id = world.place(&[("SKU-A", 1)]).await;
        world
            .command(
                id,
                orderflow_domain::OrderCommand::ConfirmOrder {
                    reservation_id: Uuid::from_u128(n + 1),
                },
            )
            .await;
        ids.push(id);
    }
    // Cancelled after its confirmation was published: it gets no shipment.
    world.cancel(ids[4]).await.unwrap();
    let carrier = Arc::new(PickyCarrier {
        refuse: ids[2],
        flaky: ids[3],
        booked: std::sync::Mutex::new(Vec::new()),
    });
    let worker = ShipmentsWorker::new(pool.clone(), carrier.clone());
    assert!(worker.batched());
    let mut confirmations = Vec::new();
    for id in &ids {
        confirmations.push(of_type(&events(&world, *id).await, "OrderConfirmed").clone());
    }
    let batch = |attempt| -> Vec<_> {
        confirmations
            .iter()
            .map(|e| (e.clone(), Delivery::live(attempt)))
            .collect()
    };

    let results = worker.handle_batch(&batch(1)).await;
    for result in &results[..2] {
        let effects = result.as_ref().unwrap().0.join("; ");
        assert!(
            effects.contains("booked shipment") && effects.contains("sent StartShipment"),
            "{effects}"
        );
    }
    assert!(
        matches!(results[2], Err(HandlerError::GiveUp(_))),
        "{results:?}"
    );
    // Its first booking failed for now: the carrier's gate booked it again in the same
    // batch, without a retry of the message.
    assert!(
        results[3]
            .as_ref()
            .unwrap()
            .0
            .join("; ")
            .contains("sent StartShipment"),
        "{results:?}"
    );
    // No longer confirmed when its confirmation is handled: recorded as skipped, no booking.
    assert!(results[4].as_ref().unwrap().is_empty(), "{results:?}");
    let status = |id: Uuid| {
        let pool = pool.clone();
        async move {
            let record = shipments::shipment_for_order(&pool, id)
                .await
                .unwrap()
                .unwrap();
            (record.status, record.last_error)
        }
    };
    assert_eq!(status(ids[0]).await, ("started".into(), None));
    assert_eq!(
        status(ids[2]).await,
        ("refused".into(), Some("no such street".into()))
    );
    assert_eq!(status(ids[3]).await, ("started".into(), None));
    assert_eq!(status(ids[4]).await.0, "skipped");

    // Redelivered: nothing happens again (the refused one stays refused).
    let results = worker.handle_batch(&batch(2)).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(Effects::is_empty)),
        "{results:?}"
    );
    assert_eq!(status(ids[3]).await, ("started".into(), None));
    let mut booked = carrier.booked.lock().unwrap().clone();
    booked.sort();
    let mut expected = vec![ids[0], ids[1], ids[2], ids[3], ids[3]];
    expected.sort();
    assert_eq!(
        booked, expected,
        "each order booked once, the flaky one twice"
    );
    for (id, shipped) in ids.iter().zip([true, true, false, true, false]) {
        let status = world.store.load(*id).await.unwrap().unwrap().state.status;
        assert_eq!(
            status == OrderStatus::Shipped,
            shipped,
            "order {id}: {status:?}"
        );
    }
    world.cleanup().await;
}
