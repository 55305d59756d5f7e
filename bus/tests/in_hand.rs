//! What a consumer process holds is kept from redelivery, however long a batch takes, and a
//! consumer that settles nothing while it has a backlog says it is stalled.
//!
//! No wall clock is read: the batch is held by a gate the test opens, and the time that must
//! pass (several ack waits) is measured by the consumer's own stall report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use orderflow_bus::relay::publish_events;
use orderflow_bus::runtime::{Consumer, ConsumerOptions};
use orderflow_bus::{Bus, BusOptions};
use orderflow_bus::{Delivery, Effects, Handler, HandlerError};
use orderflow_store::{EventEnvelope, EventMetadata};
use orderflow_testkit::delay::DelayingProxy;
use orderflow_testkit::TestBus;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const NAME: &str = "held";
const WITHIN: Duration = Duration::from_secs(120);

fn envelope(position: i64) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::new_v4(),
        order_id: Uuid::new_v4(),
        sequence: 1,
        position: Some(position),
        event_type: "OrderDelivered".into(),
        version: "1.0".into(),
        payload: serde_json::json!({}),
        metadata: EventMetadata::default(),
        recorded_at: Utc::now(),
    }
}

/// A batched handler whose first batch waits for the gate; it records every position it
/// handled, as many times as it handled it.
struct FirstBatchHeld {
    open: tokio::sync::watch::Sender<bool>,
    batches: Mutex<usize>,
    handled: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for FirstBatchHeld {
    fn name(&self) -> &str {
        NAME
    }

    fn batched(&self) -> bool {
        true
    }

    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        let first = {
            let mut batches = self.batches.lock().unwrap();
            *batches += 1;
            *batches == 1
        };
        if first {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        let mut handled = self.handled.lock().unwrap();
        events
            .iter()
            .map(|(event, _)| {
                handled.push(event.position.unwrap_or(0));
                Ok(Effects::none())
            })
            .collect()
    }

    async fn handle(&self, _: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        unreachable!("a batched handler")
    }
}

/// Polls `check` until it is true; `what` says what was awaited.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn messages_waiting_behind_a_long_batch_stay_in_hand_and_a_stalled_consumer_says_so() {
    let test = TestBus::fresh().await;
    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(1),
        // One long pull, so that what is published while the first batch is held is
        // delivered to this process and waits behind it.
        fetch_wait: Duration::from_secs(30),
        batch_size: 64,
        // Three ack waits with nothing settled: every message in hand would have been
        // redelivered by then, had it not been kept in progress.
        stall_after: Duration::from_secs(3),
        ..ConsumerOptions::default()
    };
    let handler = Arc::new(FirstBatchHeld {
        open: tokio::sync::watch::Sender::new(false),
        batches: Mutex::new(0),
        handled: Mutex::new(Vec::new()),
    });
    let consumer = Arc::new(
        Consumer::bind(handler.clone(), test.bus.clone(), options)
            .await
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, shutdown) = (Arc::clone(&consumer), shutdown.clone());
        async move { consumer.run(shutdown).await }
    });
    let stream = test.bus.stream().await.unwrap();
    let info = || {
        let stream = stream.clone();
        async move { stream.consumer_info(NAME).await.unwrap() }
    };

    publish_events(&test.bus, &[envelope(1)]).await.unwrap();
    wait_until("the first batch is in hand", || async {
        *handler.batches.lock().unwrap() == 1
    })
    .await;
    let rest: Vec<_> = (2..=20).map(envelope).collect();
    publish_events(&test.bus, &rest).await.unwrap();
    wait_until("all 20 messages are delivered to the process", || async {
        info().await.delivered.stream_sequence == 20
    })
    .await;
    wait_until("the consumer reports itself stalled", || async {
        consumer.stalled_for().await.unwrap().is_some()
    })
    .await;
    let held = info().await;
    assert_eq!(
        (held.delivered.consumer_sequence, held.num_redelivered),
        (20, 0),
        "a message in hand was delivered again while the batch was held: {held:?}"
    );

    handler.open.send_replace(true);
    wait_until("every message is acked", || async {
        let info = info().await;
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    wait_until("the consumer no longer reports itself stalled", || async {
        consumer.stalled_for().await.unwrap().is_none()
    })
    .await;
    let mut handled = handler.handled.lock().unwrap().clone();
    handled.sort_unstable();
    assert_eq!(
        handled,
        (1..=20).collect::<Vec<_>>(),
        "each message handled once"
    );
    assert_eq!(info().await.delivered.consumer_sequence, 20);

    shutdown.cancel();
    running.await.unwrap().unwrap();
    test.cleanup().await.unwrap();
}

/// Records every position it handled, as many times as it handled it.
struct Recording {
    handled: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for Recording {
    fn name(&self) -> &str {
        "late-pulls"
    }

    async fn handle(&self, event: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        self.handled
            .lock()
            .unwrap()
            .push(event.position.unwrap_or(0));
        Ok(Effects::none())
    }
}

/// A process short of CPU sends its pull requests late, so the client gives a pull up (its
/// end is overdue by the client's clock) while the server still serves it. What the server
/// delivers to that pull from then on must reach the consumer, not an inbox nobody reads
/// (from where it would come back only after its ack wait).
#[tokio::test]
async fn what_a_pull_given_up_by_the_client_still_delivers_is_taken_not_lost() {
    const MESSAGES: i64 = 60;
    let test = TestBus::fresh().await;
    let server = test
        .options
        .nats_url
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap()
        .to_string();
    // Every request of the consumer reaches the server a second late: each pull lives there
    // half a second past the moment the client gives it up (its expiry plus a margin).
    let proxy = DelayingProxy::start(&server, Duration::from_secs(1)).await;
    let late = Bus::connect(BusOptions {
        nats_url: format!("nats://{}", proxy.address()),
        ..test.options.clone()
    })
    .await
    .unwrap();
    let options = ConsumerOptions {
        // Far longer than the delay: only a lost delivery comes back.
        ack_wait: Duration::from_secs(10),
        fetch_wait: Duration::from_secs(1),
        batch_size: 64,
        ..ConsumerOptions::default()
    };
    let handler = Arc::new(Recording {
        handled: Mutex::new(Vec::new()),
    });
    let consumer = Arc::new(
        Consumer::bind(handler.clone(), late, options)
            .await
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, shutdown) = (Arc::clone(&consumer), shutdown.clone());
        async move { consumer.run(shutdown).await }
    });

    // A trickle over several pulls, so that some messages come while a pull the client gave
    // up is still open on the server (the pacing shapes the load; nothing waits on it).
    for position in 1..=MESSAGES {
        publish_events(&test.bus, &[envelope(position)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until("every message is handled", || async {
        let mut handled = handler.handled.lock().unwrap().clone();
        handled.sort_unstable();
        handled.dedup();
        handled.len() == MESSAGES as usize
    })
    .await;
    let stream = test.bus.stream().await.unwrap();
    let info = stream.consumer_info("late-pulls").await.unwrap();
    assert_eq!(
        (info.delivered.consumer_sequence, info.num_redelivered),
        (MESSAGES as u64, 0),
        "deliveries to a pull the client had given up were lost and came back after the ack \
         wait: {info:?}"
    );
    assert_eq!(handler.handled.lock().unwrap().len(), MESSAGES as usize);

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(consumer);
    test.cleanup().await.unwrap();
}
