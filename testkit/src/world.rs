//! One test's world: its own database, its own stream pair (unless the test needs no NATS),
//! the order store over them, and helpers that drive orders through the real store.

use std::time::{Duration, Instant};

use orderflow_bus::runtime::Consumer;
use orderflow_domain::OrderCommand;
use orderflow_store::{CommandError, CommandMetadata, EventEnvelope, OrderStore};
use sqlx::PgPool;
use uuid::Uuid;

use crate::database::{TestDatabase, DEFAULT_MAX_CONNECTIONS};
use crate::fixture::OrderFixture;
use crate::TestBus;

/// A fresh database (`orderflow_test_<uuid>`), a stream pair and subject prefix of its own,
/// and the order store. [`World::cleanup`] removes both; dropping the world without it (a
/// test that failed) removes them too ([`TestDatabase`], [`TestBus`]).
pub struct World {
    /// The world's own database.
    pub db: TestDatabase,
    bus: Option<TestBus>,
    /// The order store on that database.
    pub store: OrderStore,
}

/// How a [`World`] is made: see [`World::builder`].
#[must_use]
pub struct WorldBuilder {
    nats: bool,
    max_connections: u32,
    server: Option<String>,
}

impl WorldBuilder {
    /// No streams: for tests that only need PostgreSQL (and must not need NATS).
    pub fn without_nats(mut self) -> Self {
        self.nats = false;
        self
    }

    /// The database pool's budget (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// The database on the server of `url` (a test's own, say
    /// [`crate::postgres::PostgresServer::url`]) instead of the shared one.
    pub fn server(mut self, url: &str) -> Self {
        self.server = Some(url.to_string());
        self
    }

    /// # Panics
    /// When PostgreSQL or NATS is unreachable, with the command that starts it.
    pub async fn build(self) -> World {
        let db = match &self.server {
            Some(server) => TestDatabase::on_server(server, self.max_connections).await,
            None => TestDatabase::with_max_connections(self.max_connections).await,
        };
        let bus = if self.nats {
            Some(TestBus::fresh().await)
        } else {
            None
        };
        let store = OrderStore::new(db.pool.clone());
        World { db, bus, store }
    }
}

impl World {
    /// A world with a database and streams.
    ///
    /// # Panics
    /// When PostgreSQL or NATS is unreachable, with the command that starts it.
    pub async fn new() -> Self {
        Self::builder().build().await
    }

    /// A world with a database and no streams.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable, with the command that starts it.
    pub async fn without_nats() -> Self {
        Self::builder().without_nats().build().await
    }

    /// A builder for a world with a database and streams, and the default pool budget.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            nats: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            server: None,
        }
    }

    /// The pool on the world's database.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The world's streams.
    ///
    /// # Panics
    /// When the world was made without NATS.
    pub fn bus(&self) -> &TestBus {
        self.bus
            .as_ref()
            .expect("this world has no streams: make it with World::new()")
    }

    /// The world's streams, if it has any.
    pub fn try_bus(&self) -> Option<&TestBus> {
        self.bus.as_ref()
    }

    /// Deletes the streams and drops the database.
    ///
    /// # Panics
    /// When a server refuses.
    pub async fn cleanup(self) {
        if let Some(bus) = self.bus {
            bus.cleanup().await.expect("deleting the test streams");
        }
        self.db.drop_database().await;
    }

    /// Places `order` through the store; returns its id.
    ///
    /// # Panics
    /// When the store refuses it.
    pub async fn place_order(&self, order: OrderFixture) -> Uuid {
        let id = order.order_id();
        self.command(id, order.command()).await;
        id
    }

    /// Places an order of `lines` (sku, quantity) at the fixture's unit price.
    ///
    /// # Panics
    /// When the store refuses it.
    pub async fn place(&self, lines: &[(&str, i64)]) -> Uuid {
        let order = lines
            .iter()
            .fold(OrderFixture::new(), |order, (sku, quantity)| {
                order.line(sku, *quantity)
            });
        self.place_order(order).await
    }

    /// Runs `command` on order `id` through the store.
    ///
    /// # Panics
    /// When the store refuses it.
    pub async fn command(&self, id: Uuid, command: OrderCommand) {
        self.store
            .execute(id, command, &CommandMetadata::from_request("test"))
            .await
            .expect("the store accepts the command");
    }

    /// Cancels order `id` as its customer would.
    ///
    /// # Errors
    /// The store's refusal.
    pub async fn cancel(&self, id: Uuid) -> Result<(), CommandError> {
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

    /// Places `count` orders of one unit of `sku`, ten at a time concurrently.
    ///
    /// # Panics
    /// When the store refuses one.
    pub async fn place_many(&self, sku: &str, count: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        while ids.len() < count {
            let mut tasks = Vec::new();
            for _ in 0..(count - ids.len()).min(10) {
                let store = self.store.clone();
                let order = OrderFixture::new().line(sku, 1);
                tasks.push(tokio::spawn(async move {
                    let id = order.order_id();
                    store
                        .execute(id, order.command(), &CommandMetadata::from_request("load"))
                        .await
                        .expect("placing an order");
                    id
                }));
            }
            for task in tasks {
                ids.push(task.await.expect("a placing task"));
            }
        }
        ids
    }

    /// `writers` tasks place and walk `orders` orders through placed, confirmed, shipped and
    /// delivered: `4 * orders` events, committed concurrently. See [`write_load`].
    pub async fn write_load(&self, writers: usize, orders: usize) {
        write_load(&self.store, writers, orders).await;
    }

    /// Binds `handler` to its durable consumer on the world's stream with
    /// [`fast_consumer`](crate::fast_consumer).
    ///
    /// # Panics
    /// When binding fails or the world has no streams.
    pub async fn bind(&self, handler: std::sync::Arc<dyn orderflow_bus::Handler>) -> Consumer {
        crate::bus::bind(&self.bus().bus, handler).await
    }

    /// Publishes everything new to the stream, as the relay would; returns how many.
    ///
    /// # Panics
    /// When relaying fails or the world has no streams.
    pub async fn relay(&self) -> u64 {
        orderflow_bus::relay::relay_once(&self.db.pool, &self.bus().bus, 500)
            .await
            .expect("relaying")
            .published
    }

    /// Rows in the events table.
    ///
    /// # Panics
    /// When the database fails.
    pub async fn stored_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .expect("counting events")
    }

    /// Numbers every committed event, as the relay does; returns the head.
    pub async fn number_events(&self) -> i64 {
        crate::log::number_events(&self.db.pool).await
    }

    /// Every numbered event after position `after`, in order.
    pub async fn events_after(&self, after: i64) -> Vec<EventEnvelope> {
        crate::log::events_after(&self.db.pool, after).await
    }

    /// Numbers the log and drains it into every projection.
    pub async fn project(&self) {
        crate::log::project(&self.db.pool).await;
    }

    /// Waits until the main stream holds `count` messages; fails the test after `timeout`.
    pub async fn wait_for_stream(&self, count: u64, timeout: Duration) {
        let started = Instant::now();
        loop {
            let mut stream = self.bus().bus.stream().await.unwrap();
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

/// `writers` tasks place and walk `orders` orders through placed, confirmed, shipped and
/// delivered: `4 * orders` events, committed concurrently.
///
/// # Panics
/// When the store refuses a command.
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
                let order = OrderFixture::new().line("SKU-1", 1);
                let id = order.order_id();
                let commands = [
                    order.command(),
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
