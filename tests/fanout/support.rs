//! Shared helpers: a fresh database and stream pair per test, orders placed through the real
//! store, and readers of what the stream holds.

use std::time::{Duration, Instant};

use chrono::Utc;
use orderflow_bus::runtime::ConsumerOptions;
use orderflow_domain::values::{Currency, Email, Money, OrderLine, Quantity, ShippingAddress, Sku};
use orderflow_domain::{OrderCommand, PlaceOrder};
use orderflow_store::{CommandMetadata, OrderStore};
use orderflow_testkit::TestBus;
use orderflow_testkit::TestDatabase;
use uuid::Uuid;

/// One test's world: its own database, its own streams, the order store.
pub struct World {
    pub db: TestDatabase,
    pub bus: TestBus,
    pub store: OrderStore,
}

impl World {
    pub async fn new() -> Self {
        let mut db = TestDatabase::fresh().await;
        // PostgreSQL allows 100 connections, and other suites share the server: at most 12.
        db.options.max_connections = 12;
        let small = orderflow_store::connect(&db.options)
            .await
            .expect("reconnecting with a smaller pool");
        std::mem::replace(&mut db.pool, small).close().await;
        let bus = TestBus::fresh().await;
        let store = OrderStore::new(db.pool.clone());
        Self { db, bus, store }
    }

    /// Deletes the streams (the database is left to `scripts/test`'s cleanup).
    pub async fn cleanup(self) {
        self.db.pool.close().await;
        self.bus.cleanup().await.expect("deleting the test streams");
    }

    /// Environment for the real binary: the test's database and streams.
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ORDERFLOW_DATABASE_URL", self.db.options.url.clone()),
            ("ORDERFLOW_NATS_URL", self.bus.options.nats_url.clone()),
            ("ORDERFLOW_STREAM", self.bus.options.stream.clone()),
            (
                "ORDERFLOW_SUBJECT_PREFIX",
                self.bus.options.subject_prefix.clone(),
            ),
            // PostgreSQL allows 100 connections; tests run side by side.
            ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "4".into()),
            // The simulated carrier books at once: tests do not wait for a person.
            ("ORDERFLOW_CARRIER_BOOKING_DELAY_MS", "0".into()),
            ("RUST_LOG", "warn,sqlx=error".into()),
        ]
    }

    /// Places an order of `lines` (sku, quantity) at 1000 minor units each.
    pub async fn place(&self, lines: &[(&str, i64)]) -> Uuid {
        let id = Uuid::now_v7();
        self.store
            .execute(
                id,
                place_command(id, lines),
                &CommandMetadata::from_request("test"),
            )
            .await
            .expect("placing an order");
        id
    }

    pub async fn cancel(&self, id: Uuid) -> Result<(), orderflow_store::CommandError> {
        self.store
            .execute(
                id,
                OrderCommand::CancelOrder {
                    reason: "changed my mind".into(),
                    cancelled_by: "customer".into(),
                },
                &CommandMetadata::from_request("test"),
            )
            .await
    }

    /// Publishes everything new to the stream (as the relay would).
    pub async fn relay(&self) -> u64 {
        orderflow_bus::relay::relay_once(&self.db.pool, &self.bus.bus, 500)
            .await
            .expect("relaying")
            .published
    }

    /// Events stored in the log.
    pub async fn stored_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Waits until the stream holds `count` messages (or fails after `timeout`).
    pub async fn wait_for_stream(&self, count: u64, timeout: Duration) {
        let started = Instant::now();
        loop {
            let mut stream = self.bus.bus.stream().await.unwrap();
            let have = stream.info().await.unwrap().state.messages;
            if have >= count {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the stream holds {have} of {count} messages after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn place_command(id: Uuid, lines: &[(&str, i64)]) -> OrderCommand {
    OrderCommand::PlaceOrder(
        PlaceOrder::new(
            id,
            "c-1",
            Email::parse("ada@example.com").unwrap(),
            Currency::parse("EUR").unwrap(),
            lines
                .iter()
                .map(|(sku, quantity)| OrderLine {
                    sku: Sku::parse(sku).unwrap(),
                    quantity: Quantity::parse(*quantity).unwrap(),
                    unit_price: Money::parse(1000).unwrap(),
                })
                .collect(),
            ShippingAddress::parse("Ada L", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
            Utc::now(),
        )
        .unwrap(),
    )
}

/// Consumer options for tests: short delays, quick drains.
pub fn fast_consumer() -> ConsumerOptions {
    ConsumerOptions {
        max_attempts: 3,
        retry_delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ack_wait: Duration::from_secs(2),
        batch_size: 64,
        concurrency: 8,
        fetch_wait: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(30),
        ..ConsumerOptions::default()
    }
}

/// `writers` tasks place and walk `orders` orders through placed, confirmed, shipped and
/// delivered: `4 * orders` events, committed concurrently.
pub async fn write_load(store: &OrderStore, writers: usize, orders: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let meta = CommandMetadata::from_request(&format!("writer-{writer}"));
            while next.fetch_add(1, Ordering::Relaxed) < orders {
                let id = Uuid::now_v7();
                let commands = [
                    place_command(id, &[("SKU-1", 1)]),
                    OrderCommand::ConfirmOrder {
                        reservation_id: Uuid::new_v4(),
                    },
                    OrderCommand::StartShipment {
                        shipment_id: Uuid::new_v4(),
                        carrier: "simulated".into(),
                        tracking_number: format!("T-{id}"),
                    },
                    OrderCommand::MarkDelivered,
                ];
                for command in commands {
                    store
                        .execute_retrying(id, command, &meta, 5)
                        .await
                        .expect("a writer's command");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer task");
    }
}

/// The stream holds every stored event exactly once, in the log's commit order (so each
/// order's events in sequence order), on the right subject with the right message id.
pub async fn assert_stream_matches_log(world: &World) {
    let rows: Vec<(Uuid, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT event_id, aggregate_id, sequence, global_position FROM events
         ORDER BY global_position NULLS LAST",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    assert!(
        rows.iter().all(|r| r.3.is_some()),
        "every stored event has a position"
    );
    let messages = world.bus.messages().await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for message in &messages {
        let id = message
            .message_id
            .clone()
            .expect("every message has a Nats-Msg-Id");
        assert!(
            ids.insert(id.clone()),
            "message {id} is in the stream twice"
        );
    }
    assert_eq!(
        messages.len(),
        rows.len(),
        "the stream holds {} messages for {} stored events",
        messages.len(),
        rows.len()
    );
    let prefix = &world.bus.options.subject_prefix;
    let mut last_sequence = std::collections::HashMap::new();
    for (message, row) in messages.iter().zip(&rows) {
        let envelope = message.envelope().expect("the body is an envelope");
        assert_eq!(
            envelope.event_id, row.0,
            "stream order differs from log order"
        );
        assert_eq!(envelope.position, row.3);
        assert_eq!(message.subject, envelope.subject(prefix));
        assert_eq!(
            message.message_id.as_deref(),
            Some(envelope.message_id().as_str())
        );
        let previous = last_sequence.insert(envelope.order_id, envelope.sequence);
        assert_eq!(
            previous.unwrap_or(0) + 1,
            envelope.sequence,
            "order {} out of sequence order in the stream",
            envelope.order_id
        );
    }
}

/// Binds `handler` to its durable consumer on the test's stream with [`fast_consumer`].
pub async fn bind(
    world: &World,
    handler: std::sync::Arc<dyn orderflow_bus::Handler>,
) -> orderflow_bus::runtime::Consumer {
    orderflow_bus::runtime::Consumer::bind(handler, world.bus.bus.clone(), fast_consumer())
        .await
        .expect("binding a consumer")
}

/// The status of every order, counted.
pub async fn status_counts(
    world: &World,
    ids: &[Uuid],
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for id in ids {
        let order = world.store.load(*id).await.unwrap().expect("order exists");
        *counts.entry(order.state.status.to_string()).or_default() += 1;
    }
    counts
}

pub fn sku(raw: &str) -> Sku {
    Sku::parse(raw).unwrap()
}

/// A running `orderflow` process of the real binary, SIGKILLed when dropped.
pub struct Process {
    child: std::process::Child,
    what: String,
}

impl Process {
    /// Starts `orderflow <args>` against the test's database and streams.
    pub fn start(world: &World, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_orderflow"));
        command
            .args(args)
            .envs(world.binary_env())
            .envs(extra_env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        let child = command.spawn().expect("starting the orderflow binary");
        Self {
            child,
            what: args.join(" "),
        }
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    pub fn kill(mut self) {
        self.sigkill();
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to stop by itself; fails the test when it is still
    /// running after `within` or exits with a failure.
    pub async fn terminate(mut self, within: Duration) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the process") {
                assert!(
                    status.success(),
                    "`orderflow {}` stopped with {status} after SIGTERM",
                    self.what
                );
                return;
            }
            assert!(
                started.elapsed() < within,
                "`orderflow {}` still runs {within:?} after SIGTERM",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails the test when the process already exited (it should be running).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("`orderflow {}` exited early with {status}", self.what);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// A tiny HTTP server for the webhook channel and the http carrier: answers every POST with
/// 200 and `{"tracking_number": "HTTP-<key>"}`, and records each request's
/// `Idempotency-Key`.
pub struct Recorder {
    pub url: String,
    pub keys: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        Self::answering(200).await
    }

    /// A recorder that answers every request with `status`.
    pub async fn answering(status: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&keys);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = std::sync::Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buffer.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                    let key = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("idempotency-key")
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_default();
                    seen.lock().unwrap().push(key.clone());
                    let body = format!("{{\"tracking_number\":\"HTTP-{key}\"}}");
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, keys }
    }

    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

/// Waits until `shipped` of the orders are shipped and `rejected` rejected, the log is fully
/// numbered, and each of `consumers` has handled everything up to the head of the log.
pub async fn wait_until_settled(
    world: &World,
    ids: &[Uuid],
    shipped: usize,
    rejected: usize,
    consumers: &[&str],
    timeout: Duration,
) {
    let started = Instant::now();
    loop {
        let counts = status_counts(world, ids).await;
        let lag = orderflow_bus::consumer_info(&world.bus.bus, consumers)
            .await
            .unwrap();
        let head = orderflow_store::log::head_position(&world.db.pool)
            .await
            .unwrap();
        let unnumbered = orderflow_store::log::unnumbered_count(&world.db.pool)
            .await
            .unwrap();
        let settled = counts.get("shipped").copied().unwrap_or(0) == shipped
            && counts.get("rejected").copied().unwrap_or(0) == rejected;
        let caught_up = unnumbered == 0
            && lag.iter().all(|l| {
                l.pending == 0 && l.ack_pending == 0 && l.last_handled_position == Some(head)
            });
        if settled && caught_up {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "not settled after {timeout:?}: {counts:?} {lag:?} head {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Places `count` orders of one unit of `sku`, ten at a time concurrently.
pub async fn place_many(world: &World, sku: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let mut tasks = Vec::new();
        for _ in 0..(count - ids.len()).min(10) {
            let store = world.store.clone();
            let sku = sku.to_string();
            tasks.push(tokio::spawn(async move {
                let id = Uuid::now_v7();
                store
                    .execute(
                        id,
                        place_command(id, &[(sku.as_str(), 1)]),
                        &CommandMetadata::from_request("load"),
                    )
                    .await
                    .expect("placing an order");
                id
            }));
        }
        for task in tasks {
            ids.push(task.await.unwrap());
        }
    }
    ids
}

/// Runs `orderflow <args>` to completion against the test's database and streams; fails the
/// test when it does not succeed. Returns its standard output.
pub fn run_binary(world: &World, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args(args)
        .envs(world.binary_env())
        .output()
        .expect("running the orderflow binary");
    assert!(
        output.status.success(),
        "`orderflow {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
