//! The consumer runtime against the real NATS: graceful shutdown, lag numbers, the retry
//! schedule, and consumer settings that NATS 2.9 accepts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use orderflow_bus::relay::publish_events;
use orderflow_bus::runtime::{consumer_info, run_consumer, Consumer, ConsumerOptions, StartAt};
use orderflow_bus::{Delivery, Effects, Handler, HandlerError};
use orderflow_store::{EventEnvelope, EventMetadata};
use orderflow_testkit::TestBus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

/// Takes `delay` per event and records what it finished.
struct Slow {
    delay: Duration,
    started: Notify,
    done: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn handle(&self, event: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        self.started.notify_one();
        tokio::time::sleep(self.delay).await;
        self.done.lock().unwrap().push(event.position.unwrap_or(0));
        Ok(Effects::one("slept"))
    }
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        ack_wait: Duration::from_secs(30),
        concurrency: 1,
        batch_size: 10,
        fetch_wait: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(10),
        ..ConsumerOptions::default()
    }
}

#[tokio::test]
async fn shutdown_handles_what_the_open_pull_delivered_and_leaves_nothing_in_flight() {
    let test = TestBus::fresh().await;
    let events: Vec<_> = (1..=5).map(envelope).collect();
    publish_events(&test.bus, &events).await.unwrap();
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(100),
        started: Notify::new(),
        done: Mutex::new(Vec::new()),
    });
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        slow.clone(),
        test.bus.clone(),
        options(),
        shutdown.clone(),
    ));
    slow.started.notified().await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    // The pull had delivered all five to this process: giving them back would have spent a
    // delivery of each, so they were handled before the loop ended.
    assert_eq!(*slow.done.lock().unwrap(), [1, 2, 3, 4, 5]);
    let lag = consumer_info(&test.bus, &["slow"]).await.unwrap();
    assert_eq!(
        (lag[0].pending, lag[0].ack_pending, lag[0].redelivered),
        (0, 0, 0)
    );
    assert_eq!(lag[0].last_handled_position, Some(5));
    test.cleanup().await.unwrap();
}

#[tokio::test]
async fn past_the_shutdown_grace_the_unstarted_rest_is_given_back_at_once() {
    let test = TestBus::fresh().await;
    let events: Vec<_> = (1..=5).map(envelope).collect();
    publish_events(&test.bus, &events).await.unwrap();
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(300),
        started: Notify::new(),
        done: Mutex::new(Vec::new()),
    });
    let short_grace = ConsumerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..options()
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        slow.clone(),
        test.bus.clone(),
        short_grace,
        shutdown.clone(),
    ));
    slow.started.notified().await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(
        *slow.done.lock().unwrap(),
        [1],
        "the message in hand was finished"
    );

    // The rest was naked with a short delay, not held until the 30 s ack wait: a new process
    // drains it now.
    let started = Instant::now();
    let consumer = Consumer::bind(slow.clone(), test.bus.clone(), options())
        .await
        .unwrap();
    let report = consumer.drain().await.unwrap();
    assert_eq!(report.handled, 4, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(*slow.done.lock().unwrap(), [1, 2, 3, 4, 5]);

    let lag = consumer_info(&test.bus, &["slow"]).await.unwrap();
    assert_eq!((lag[0].pending, lag[0].ack_pending), (0, 0));
    assert_eq!(lag[0].last_handled_position, Some(5));
    test.cleanup().await.unwrap();
}

#[tokio::test]
async fn lag_counts_what_is_waiting_and_a_durable_keeps_its_place() {
    let test = TestBus::fresh().await;
    let slow = Arc::new(Slow {
        delay: Duration::ZERO,
        started: Notify::new(),
        done: Mutex::new(Vec::new()),
    });
    let consumer = Consumer::bind(slow.clone(), test.bus.clone(), options())
        .await
        .unwrap();
    publish_events(&test.bus, &(1..=3).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    let lag = consumer_info(&test.bus, &["slow"]).await.unwrap();
    assert_eq!((lag[0].pending, lag[0].last_handled_position), (3, None));
    consumer.drain().await.unwrap();
    // Bound again (a restart): only what came after is delivered.
    publish_events(&test.bus, &[envelope(4)]).await.unwrap();
    let again = Consumer::bind(slow.clone(), test.bus.clone(), options())
        .await
        .unwrap();
    assert_eq!(again.drain().await.unwrap().handled, 1);
    assert_eq!(*slow.done.lock().unwrap(), [1, 2, 3, 4]);
    let names = orderflow_bus::runtime::consumer_names(&test.bus)
        .await
        .unwrap();
    assert_eq!(names, ["slow"]);
    test.cleanup().await.unwrap();
}

#[test]
fn retry_delays_grow_with_the_attempt_and_the_last_repeats() {
    let options = ConsumerOptions::default();
    let delays: Vec<_> = (1..=6).map(|n| options.retry_delay(n)).collect();
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    assert_eq!(delays[4], delays[5]);
}

/// Keeps a high-water mark, so asks for one message in flight.
struct OneAtATime;

#[async_trait]
impl Handler for OneAtATime {
    fn name(&self) -> &str {
        "one-at-a-time"
    }

    fn max_ack_pending(&self) -> i64 {
        1
    }

    async fn handle(&self, _: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        Ok(Effects::none())
    }
}

#[tokio::test]
async fn the_durable_consumer_takes_its_settings_from_the_handler_and_options() {
    let test = TestBus::fresh().await;
    publish_events(&test.bus, &(1..=30).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    let consumer = Consumer::bind(Arc::new(OneAtATime), test.bus.clone(), options())
        .await
        .unwrap();
    let stream = test.bus.stream().await.unwrap();
    let info = stream.consumer_info("one-at-a-time").await.unwrap();
    assert_eq!(info.config.max_ack_pending, 1);
    assert_eq!(
        info.config.max_deliver, 7,
        "max_attempts + 2 spare deliveries"
    );
    assert_eq!(
        info.config.backoff.len(),
        5,
        "2.9 needs max_deliver > backoff entries"
    );
    assert_eq!(info.config.filter_subject, test.bus.events_filter());
    // One in flight: a step gets one message, never the whole batch.
    assert_eq!(consumer.step().await.unwrap().fetched, 1);
    let started = Instant::now();
    assert_eq!(consumer.drain().await.unwrap().handled, 29);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "one at a time must not wait out a pull per message: {:?}",
        started.elapsed()
    );
    test.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_handler_slower_than_the_ack_wait_is_not_redelivered_to_a_competitor() {
    let test = TestBus::fresh().await;
    publish_events(&test.bus, &[envelope(1)]).await.unwrap();
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(2500),
        started: Notify::new(),
        done: Mutex::new(Vec::new()),
    });
    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(1),
        ..options()
    };
    let first = Consumer::bind(slow.clone(), test.bus.clone(), options.clone())
        .await
        .unwrap();
    let second = Consumer::bind(slow.clone(), test.bus.clone(), options)
        .await
        .unwrap();
    let working = tokio::spawn(async move { first.step().await.unwrap() });
    slow.started.notified().await;
    let mut stolen = 0;
    let until = Instant::now() + Duration::from_millis(2300);
    while Instant::now() < until {
        stolen += second.step().await.unwrap().fetched;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(working.await.unwrap().handled, 1);
    assert_eq!(
        stolen, 0,
        "in-progress acks kept the message with its live handler"
    );
    assert_eq!(*slow.done.lock().unwrap(), [1]);
    test.cleanup().await.unwrap();
}

/// Messages a pull delivered while every handler slot was busy wait in the client; a pull
/// that outlives its expiry must not abandon them (they would come back only after the ack
/// wait, one delivery spent).
#[tokio::test]
async fn messages_waiting_behind_a_busy_handler_are_handled_not_abandoned() {
    let test = TestBus::fresh().await;
    let events: Vec<_> = (1..=6).map(envelope).collect();
    publish_events(&test.bus, &events).await.unwrap();
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(250),
        started: Notify::new(),
        done: Mutex::new(Vec::new()),
    });
    // One slot, a short pull: the pull's expiry passes while most of the batch still waits.
    let short_pull = ConsumerOptions {
        fetch_wait: Duration::from_millis(100),
        ..options()
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        slow.clone(),
        test.bus.clone(),
        short_pull,
        shutdown.clone(),
    ));
    let started = Instant::now();
    while slow.done.lock().unwrap().len() < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {:?} handled within 10 s (the ack wait is 30 s)",
            slow.done.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let lag = consumer_info(&test.bus, &["slow"]).await.unwrap();
    assert_eq!(lag[0].redelivered, 0, "{lag:?}");
    test.cleanup().await.unwrap();
}

/// Records the positions it handled, under a name of its own.
struct Recording {
    name: &'static str,
    done: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for Recording {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(&self, event: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        self.done.lock().unwrap().push(event.position.unwrap_or(0));
        Ok(Effects::none())
    }
}

#[tokio::test]
async fn a_consumer_created_now_starts_at_the_log_start_a_position_or_a_time() {
    let test = TestBus::fresh().await;
    publish_events(&test.bus, &(1..=3).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish_events(&test.bus, &(4..=6).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    let starts = [
        ("from-start", StartAt::Beginning, vec![1, 2, 3, 4, 5, 6]),
        ("from-position", StartAt::Position(5), vec![5, 6]),
        ("from-time", StartAt::Time(between), vec![4, 5, 6]),
    ];
    let mut handlers = Vec::new();
    for (name, start, expected) in starts {
        let handler = Arc::new(Recording {
            name,
            done: Mutex::new(Vec::new()),
        });
        let told = ConsumerOptions { start, ..options() };
        let consumer = Consumer::bind(handler.clone(), test.bus.clone(), told)
            .await
            .unwrap();
        consumer.drain().await.unwrap();
        assert_eq!(*handler.done.lock().unwrap(), expected, "{name}");
        handlers.push((handler, expected));
    }
    // Once a consumer exists, where it was told to start no longer matters.
    publish_events(&test.bus, &[envelope(7)]).await.unwrap();
    for (handler, mut expected) in handlers {
        let consumer = Consumer::bind(handler.clone(), test.bus.clone(), options())
            .await
            .unwrap();
        consumer.drain().await.unwrap();
        expected.push(7);
        assert_eq!(*handler.done.lock().unwrap(), expected, "{}", handler.name);
    }
    test.cleanup().await.unwrap();
}
