//! The consumer runtime against the real NATS: graceful shutdown, lag numbers, the retry
//! schedule, and consumer settings that NATS 2.9 accepts.
//!
//! No test here depends on the machine's speed: a handler that must stay in hand is held by a
//! gate the test opens, what the runtime tells the server (naks, in-progress acks) is watched
//! on the acknowledgement subjects, and a bound on time is set far from both a starved
//! machine and the failure it guards against.

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

/// Holds every message in hand until the gate is opened, then records what it finished.
struct Gated {
    started: Notify,
    open: tokio::sync::watch::Sender<bool>,
    done: Mutex<Vec<i64>>,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Notify::new(),
            open: tokio::sync::watch::Sender::new(false),
            done: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait]
impl Handler for Gated {
    fn name(&self) -> &str {
        "slow"
    }

    async fn handle(&self, event: &EventEnvelope, _: Delivery) -> Result<Effects, HandlerError> {
        self.started.notify_one();
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.done.lock().unwrap().push(event.position.unwrap_or(0));
        Ok(Effects::one("held"))
    }
}

/// What the consumers of `bus` tell the server about its messages (`-NAK ...`, `+WPI`, `+ACK`),
/// as published on the acknowledgement subjects of `consumer`, in the order they came.
struct Acks {
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Acks {
    async fn watch(bus: &orderflow_bus::Bus, consumer: &str) -> Self {
        use futures::StreamExt;
        // `$JS.ACK.<stream>.<consumer>....`, with a domain and an account between `ACK` and
        // the stream on some servers: every ack subject, filtered by the stream's unique name.
        let ours = format!(".{}.{consumer}.", bus.stream_name());
        let mut acks = bus.client().subscribe("$JS.ACK.>").await.unwrap();
        // The subscription is in place once the server has seen it.
        bus.client().flush().await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Some(ack) = acks.next().await {
                if ack.subject.contains(ours.as_str()) {
                    let text = String::from_utf8_lossy(&ack.payload).into_owned();
                    kept.lock().unwrap().push(text);
                }
            }
        });
        Self { seen, task }
    }

    /// How many of what was seen so far start with `kind` (`-NAK`, `+WPI`, `+ACK`).
    fn count(&self, kind: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|ack| ack.starts_with(kind))
            .count()
    }

    /// Waits until `count` of `kind` were seen: `what` says what that means.
    async fn wait_for(&self, kind: &str, count: usize, what: &str) {
        let within = Duration::from_secs(60);
        let started = Instant::now();
        while self.count(kind) < count {
            assert!(
                started.elapsed() < within,
                "{what}: {} of {count} {kind} seen within {within:?} ({:?})",
                self.count(kind),
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.task.abort();
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
    let acks = Acks::watch(&test.bus, "slow").await;
    // The first message stays in hand until the rest was given back; the ack wait is long, so
    // that a message given back with a short nak comes back long before it would.
    let held = Gated::new();
    let short_grace = ConsumerOptions {
        shutdown_grace: Duration::from_millis(50),
        ack_wait: Duration::from_secs(300),
        drain_timeout: Duration::from_secs(60),
        ..options()
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        held.clone(),
        test.bus.clone(),
        short_grace.clone(),
        shutdown.clone(),
    ));
    held.started.notified().await;
    shutdown.cancel();
    acks.wait_for(
        "-NAK",
        4,
        "the four messages not started within the shutdown grace are given back",
    )
    .await;
    held.open();
    run.await.unwrap().unwrap();
    assert_eq!(
        *held.done.lock().unwrap(),
        [1],
        "the message in hand was finished"
    );

    // The rest was naked with a short delay, not held until the 300 s ack wait: a new process
    // drains it now.
    let started = Instant::now();
    let consumer = Consumer::bind(held.clone(), test.bus.clone(), short_grace.clone())
        .await
        .unwrap();
    let report = consumer.drain().await.unwrap();
    assert_eq!(report.handled, 4, "{report:?}");
    assert!(
        started.elapsed() < short_grace.ack_wait / 5,
        "what was given back comes back after a short nak delay, not after the {:?} ack wait: \
         it took {:?}",
        short_grace.ack_wait,
        started.elapsed()
    );
    assert_eq!(*held.done.lock().unwrap(), [1, 2, 3, 4, 5]);

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
    publish_events(&test.bus, &(1..=MESSAGES).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    let patient = ConsumerOptions {
        drain_timeout: Duration::from_secs(600),
        ..options()
    };
    let consumer = Consumer::bind(Arc::new(OneAtATime), test.bus.clone(), patient)
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
    assert_eq!(
        consumer.drain().await.unwrap().handled,
        MESSAGES as usize - 1
    );
    // Waiting out a step's pull (it expires after 500 ms) for each message would take
    // MESSAGES / 2 seconds; half of that is far more than the drain takes, starved or not.
    let waited_out = Duration::from_secs(MESSAGES as u64) / 2;
    assert!(
        started.elapsed() < waited_out / 2,
        "one at a time must not wait out a pull per message (that takes {waited_out:?}): \
         the drain took {:?}",
        started.elapsed()
    );
    test.cleanup().await.unwrap();
}

/// How many messages [`the_durable_consumer_takes_its_settings_from_the_handler_and_options`]
/// drains one at a time.
const MESSAGES: i64 = 120;

#[tokio::test]
async fn a_handler_slower_than_the_ack_wait_is_not_redelivered_to_a_competitor() {
    let test = TestBus::fresh().await;
    publish_events(&test.bus, &[envelope(1)]).await.unwrap();
    let acks = Acks::watch(&test.bus, "slow").await;
    let held = Gated::new();
    // Short enough that the test does not wait long, long enough that a starved machine
    // sends its in-progress acks in time.
    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(5),
        ..options()
    };
    let first = Consumer::bind(held.clone(), test.bus.clone(), options.clone())
        .await
        .unwrap();
    let second = Consumer::bind(held.clone(), test.bus.clone(), options)
        .await
        .unwrap();
    let working = tokio::spawn(async move { first.step().await.unwrap() });
    held.started.notified().await;
    // The competitor keeps asking while the handler holds the message for longer than the ack
    // wait: four in-progress acks (the runtime sends at least two per ack wait) span more
    // than one.
    let mut stolen = 0;
    let started = Instant::now();
    while acks.count("+WPI") < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the runtime sent {} in-progress acks in 120 s for a message in hand (ack wait 5 s)",
            acks.count("+WPI")
        );
        stolen += second.step().await.unwrap().fetched;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held.open();
    assert_eq!(working.await.unwrap().handled, 1);
    assert_eq!(
        stolen, 0,
        "in-progress acks kept the message with its live handler"
    );
    assert_eq!(*held.done.lock().unwrap(), [1]);
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
    // A long ack wait: a message abandoned would come back only after it.
    let short_pull = ConsumerOptions {
        fetch_wait: Duration::from_millis(100),
        ack_wait: Duration::from_secs(300),
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
            started.elapsed() < Duration::from_secs(60),
            "only {:?} handled within 60 s: messages waiting behind the busy handler were \
             abandoned (they come back after the 300 s ack wait)",
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
