//! Guarantee 5, poison messages don't block the line: a failing message is retried with
//! backoff, parked in the dead-letter stream after the configured attempts, the messages
//! after it keep flowing, and a redrive sends it back to the consumer that parked it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderflow_bus::{dlq, Delivery, Effects, Handler, HandlerError};
use orderflow_store::EventEnvelope;
use uuid::Uuid;

use orderflow_testkit::fixture::sku;
use orderflow_testkit::http::Recorder;
use orderflow_testkit::{fast_consumer, orderflow, World};

/// Fails every event of one order (with Retry or GiveUp) until healed; counts calls.
struct Flaky {
    name: &'static str,
    poison: Uuid,
    give_up: bool,
    healed: AtomicBool,
    calls: Mutex<HashMap<Uuid, u64>>,
}

impl Flaky {
    fn new(name: &'static str, poison: Uuid, give_up: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            poison,
            give_up,
            healed: AtomicBool::new(false),
            calls: Mutex::new(HashMap::new()),
        })
    }

    fn calls(&self, order: Uuid) -> u64 {
        self.calls.lock().unwrap().get(&order).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Handler for Flaky {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(&self, event: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(event.order_id)
            .or_default() += 1;
        if event.order_id == self.poison && !self.healed.load(Ordering::SeqCst) {
            return Err(if self.give_up {
                HandlerError::give_up("this event can never work")
            } else {
                HandlerError::retry("the downstream is down")
            });
        }
        Ok(Effects::one(format!("handled {}", event.order_id)))
    }
}

#[tokio::test]
async fn an_always_failing_message_is_parked_after_the_attempts_and_redriven_to_its_consumer() {
    let world = World::builder().max_connections(12).build().await;
    let poison = world.place(&[("SKU-1", 1)]).await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(world.place(&[("SKU-1", 1)]).await);
    }
    world.relay().await;
    let flaky = Flaky::new("flaky", poison, false);
    let bystander = Flaky::new("bystander", Uuid::nil(), false);
    let consumer = world.bind(flaky.clone()).await;
    let other_consumer = world.bind(bystander.clone()).await;

    let report = consumer.drain().await.unwrap();
    assert_eq!(report.handled, 4, "the later messages flowed: {report:?}");
    assert_eq!(report.retried, 2, "{report:?}");
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(flaky.calls(poison), 3, "tried exactly max_attempts times");
    for id in &others {
        assert_eq!(flaky.calls(*id), 1);
    }

    let parked = dlq::list(&world.bus().bus, None, 100).await.unwrap();
    assert_eq!(parked.len(), 1);
    let letter = &parked[0].letter;
    assert_eq!(letter.consumer, "flaky");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "the downstream is down");
    assert!(letter.original_subject.contains(&poison.to_string()));
    let shown = dlq::show(&world.bus().bus, parked[0].sequence)
        .await
        .unwrap();
    assert_eq!(&shown, &parked[0]);
    assert!(dlq::list(&world.bus().bus, Some("bystander"), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(other_consumer.drain().await.unwrap().handled, 5);

    // The operator sees it with the real binary, as in production.
    let listed = orderflow!(&world).run(&["dlq", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["sequence"], parked[0].sequence);
    assert_eq!(listed[0]["letter"]["consumer"], "flaky");

    // Fixed downstream: the operator redrives; only the parking consumer handles it again.
    flaky.healed.store(true, Ordering::SeqCst);
    let out = orderflow!(&world).run(&["dlq", "redrive", &parked[0].sequence.to_string()]);
    assert!(out.contains("1 message(s) redriven"), "{out}");
    let report = consumer.drain().await.unwrap();
    assert_eq!((report.handled, report.dead_lettered), (1, 0), "{report:?}");
    assert_eq!(flaky.calls(poison), 4);
    let bystanders = other_consumer.drain().await.unwrap();
    assert_eq!(
        (bystanders.handled, bystanders.skipped),
        (0, 1),
        "{bystanders:?}"
    );
    assert_eq!(bystander.calls(poison), 1);
    assert!(dlq::list(&world.bus().bus, None, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        dlq::show(&world.bus().bus, parked[0].sequence).await,
        Err(dlq::DlqError::NotFound(_))
    ));
    world.cleanup().await;
}

#[tokio::test]
async fn give_up_and_malformed_bodies_are_parked_at_once() {
    let world = World::builder().max_connections(12).build().await;
    let poison = world.place(&[("SKU-1", 1)]).await;
    let fine = world.place(&[("SKU-1", 1)]).await;
    world.relay().await;
    world
        .bus()
        .bus
        .jetstream()
        .publish(
            format!(
                "{}.{}.OrderPlaced",
                world.bus().options.subject_prefix,
                Uuid::nil()
            ),
            "not json".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let flaky = Flaky::new("strict", poison, true);
    let consumer = world.bind(flaky.clone()).await;
    let report = consumer.drain().await.unwrap();
    assert_eq!(
        (report.handled, report.dead_lettered, report.retried),
        (1, 2, 0),
        "{report:?}"
    );
    assert_eq!(flaky.calls(poison), 1);
    assert_eq!(flaky.calls(fine), 1);
    let parked = dlq::list(&world.bus().bus, Some("strict"), 100)
        .await
        .unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].letter.attempts, 1);
    assert!(
        parked[1].letter.error.contains("not an event envelope"),
        "{parked:?}"
    );
    assert_eq!(parked[1].letter.body, "not json");
    let lag = orderflow_bus::consumer_info(&world.bus().bus, &["strict", "nobody"])
        .await
        .unwrap();
    assert_eq!((lag[0].pending, lag[0].ack_pending), (0, 0), "{lag:?}");
    assert!(lag[0].exists && !lag[1].exists);
    world.cleanup().await;
}

#[tokio::test]
async fn a_carrier_that_refuses_parks_the_confirmation_and_records_the_refusal() {
    use orderflow_workers::inventory::{self, InventoryWorker};
    use orderflow_workers::shipments::{self, HttpCarrier, ShipmentsWorker};

    let world = World::builder().max_connections(12).build().await;
    let refusing = Recorder::answering(422).await;
    inventory::set_stock(&world.db.pool, &sku("SKU-1"), 5)
        .await
        .unwrap();
    let id = world.place(&[("SKU-1", 1)]).await;
    world.relay().await;
    let inventory = world
        .bind(Arc::new(InventoryWorker::new(world.db.pool.clone())))
        .await;
    inventory.drain().await.unwrap();
    world.relay().await;
    let carrier =
        HttpCarrier::new("acme", &refusing.url, std::time::Duration::from_secs(30), 3).unwrap();
    let worker = ShipmentsWorker::new(world.db.pool.clone(), Arc::new(carrier));
    let consumer = world.bind(Arc::new(worker)).await;
    let report = consumer.drain().await.unwrap();
    assert_eq!((report.dead_lettered, report.retried), (1, 0), "{report:?}");
    assert_eq!(refusing.keys().len(), 1, "a refusal is not retried");
    let record = shipments::shipment_for_order(&world.db.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, "refused");
    assert_eq!(refusing.keys(), [record.shipment_id.to_string()]);
    let parked = dlq::list(&world.bus().bus, Some("shipments"), 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0].letter.error.contains("422"),
        "{:?}",
        parked[0].letter
    );
    world.cleanup().await;
}

/// Whatever spends a message's deliveries (here: another process that naks it every time, so
/// the handler never even sees it), JetStream's giving up on it ends in the dead-letter
/// stream, not nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_naked_past_the_delivery_limit_from_outside_is_parked_not_dropped() {
    use async_nats::jetstream::consumer::pull;
    use async_nats::jetstream::AckKind;
    use futures::StreamExt;
    use std::time::Duration;

    let world = World::builder().max_connections(12).build().await;
    let id = world.place(&[("SKU-1", 1)]).await;
    world.relay().await;
    let counter = Flaky::new("limited", Uuid::nil(), false);
    let consumer = Arc::new(world.bind(counter.clone()).await);
    let max_deliver = fast_consumer().max_deliver();

    let durable = world
        .bus()
        .bus
        .stream()
        .await
        .unwrap()
        .get_consumer::<pull::Config>("limited")
        .await
        .unwrap();
    for delivery in 1..=max_deliver {
        let mut batch = durable
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .unwrap();
        let message = batch
            .next()
            .await
            .unwrap_or_else(|| panic!("delivery {delivery} never came"))
            .unwrap();
        assert_eq!(message.info().unwrap().delivered, delivery as i64);
        message.double_ack_with(AckKind::Nak(None)).await.unwrap();
    }
    assert!(dlq::list(&world.bus().bus, None, 10)
        .await
        .unwrap()
        .is_empty());

    // The consumer's own loop pulls next; the server gives up on the message then.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, shutdown) = (Arc::clone(&consumer), shutdown.clone());
        async move { consumer.run(shutdown).await }
    });
    let started = std::time::Instant::now();
    let parked = loop {
        let parked = dlq::list(&world.bus().bus, Some("limited"), 10)
            .await
            .unwrap();
        if !parked.is_empty() {
            break parked;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the message JetStream gave up on was not parked within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(parked.len(), 1, "{parked:?}");
    let letter = &parked[0].letter;
    assert_eq!(letter.attempts, max_deliver);
    assert!(letter.error.contains("max_deliver"), "{letter:?}");
    assert!(letter.original_subject.contains(&id.to_string()));
    assert_eq!(counter.calls(id), 0, "the handler never saw it");
    world.cleanup().await;
}
