//! What every fault test shares: a system of its own (a fresh database on the shared
//! PostgreSQL or on a cluster of the test's own, its own `nats-server`, recorders standing in
//! for the webhook receiver and the carrier), the `orderflow` binary over it, and the checks
//! that nothing was lost or done twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use orderflow_bus::{Bus, BusOptions};
use orderflow_testkit::http::Recorder;
use orderflow_testkit::nats::NatsServer;
use orderflow_testkit::postgres::PostgresServer;
use orderflow_testkit::{orderflow, Orderflow, World};
use uuid::Uuid;

/// The one SKU every order of the load buys, stocked far beyond what a test sells.
pub(crate) const SKU: &str = "SKU-FAULT";
const STOCK: i64 = 1_000_000;

/// A system of a test's own.
pub(crate) struct System {
    pub world: World,
    pub nats: NatsServer,
    /// The test's own PostgreSQL cluster, when the system runs on one
    /// ([`System::on_own_postgres`]); `None` on the shared server.
    pub postgres: Option<PostgresServer>,
    /// A connection to the test's own server, naming the test's streams.
    pub bus: Bus,
    pub webhook: Recorder,
    pub carrier: Recorder,
    env: Vec<(String, String)>,
}

impl System {
    /// A fresh database with stock of [`SKU`], a `nats-server` of its own (no stream yet:
    /// the binary creates it), and the recorders.
    pub(crate) async fn start() -> Self {
        let nats = NatsServer::start().await;
        Self::on_nats(nats.url(), nats).await
    }

    /// As [`System::start`], with the processes pointed at `nats_url` (several URLs separated
    /// by commas for a cluster); `nats` is kept alive with the system.
    pub(crate) async fn on_nats(nats_url: String, nats: NatsServer) -> Self {
        Self::build(nats_url, nats, None).await
    }

    /// As [`System::start`], with the database on a PostgreSQL cluster of the test's own, to
    /// stop and start again (`system.postgres`).
    pub(crate) async fn on_own_postgres() -> Self {
        let postgres = PostgresServer::start().await;
        let nats = NatsServer::start().await;
        Self::build(nats.url(), nats, Some(postgres)).await
    }

    async fn build(nats_url: String, nats: NatsServer, postgres: Option<PostgresServer>) -> Self {
        let mut world = World::builder().without_nats().max_connections(8);
        if let Some(postgres) = &postgres {
            world = world.server(&postgres.url());
        }
        let world = world.build().await;
        sqlx::query("INSERT INTO inventory_stock (sku, available) VALUES ($1, $2)")
            .bind(SKU)
            .bind(STOCK)
            .execute(&world.db.pool)
            .await
            .expect("stocking the test SKU");
        let id = Uuid::new_v4().simple().to_string();
        let options = BusOptions {
            nats_url,
            stream: format!("F_{id}"),
            subject_prefix: format!("f_{id}"),
            ..BusOptions::default()
        };
        let bus = Bus::connect(options.clone())
            .await
            .expect("connecting to the test's own nats-server");
        let (webhook, carrier) = (Recorder::start().await, Recorder::start().await);
        let env = vec![
            ("ORDERFLOW_NATS_URL", options.nats_url.clone()),
            ("ORDERFLOW_STREAM", options.stream.clone()),
            ("ORDERFLOW_SUBJECT_PREFIX", options.subject_prefix.clone()),
            ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8".into()),
            // A message left unacknowledged by a lost consumer comes back within the test.
            ("ORDERFLOW_ACK_WAIT_SECS", "5".into()),
            ("ORDERFLOW_NOTIFY_CHANNEL", "webhook".into()),
            ("ORDERFLOW_NOTIFY_WEBHOOK_URL", webhook.url.clone()),
            ("ORDERFLOW_CARRIER", "http".into()),
            ("ORDERFLOW_CARRIER_URL", carrier.url.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        Self {
            world,
            nats,
            postgres,
            bus,
            webhook,
            carrier,
            env,
        }
    }

    /// The `orderflow` binary over this system.
    pub(crate) fn orderflow(&self) -> Orderflow {
        let vars: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        orderflow!(&self.world).envs(&vars)
    }

    /// The ids among `ids` whose order has shipped.
    async fn shipped(&self, ids: &[Uuid]) -> usize {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let shipped: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT aggregate_id) FROM events
             WHERE event_type = 'ShipmentStarted' AND aggregate_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(&self.world.db.pool)
        .await
        .expect("counting shipped orders");
        usize::try_from(shipped).unwrap_or(0)
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.world.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Waits until every one of `ids` has shipped and every consumer has handled the whole
    /// log, then checks that each effect happened once per order, nothing is parked, and the
    /// stream holds every stored event exactly once.
    ///
    /// # Panics
    /// When that does not happen within `within`, or an effect happened twice.
    pub(crate) async fn assert_settled_once(&self, ids: &[Uuid], within: Duration) {
        assert!(!ids.is_empty(), "no order was accepted");
        let started = Instant::now();
        let names = orderflow_operations::consumer_names();
        loop {
            let shipped = self.shipped(ids).await;
            let head = orderflow_store::log::head_position(&self.world.db.pool)
                .await
                .expect("reading the head of the log");
            let lag = orderflow_bus::consumer_info(&self.bus, &names).await;
            let caught_up = lag.as_ref().is_ok_and(|lag| {
                lag.iter().all(|l| {
                    l.pending == 0 && l.ack_pending == 0 && l.last_handled_position == Some(head)
                })
            });
            if shipped == ids.len() && caught_up {
                break;
            }
            assert!(
                started.elapsed() < within,
                "not settled after {within:?}: {shipped} of {} orders shipped; head {head}; \
                 consumers {lag:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let orders = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let all: i64 = self
            .count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await;
        assert_eq!(all, orders, "orders stored besides the accepted ones");
        let available = self
            .count(&format!(
                "SELECT available FROM inventory_stock WHERE sku = '{SKU}'"
            ))
            .await;
        assert_eq!(available, STOCK - orders, "stock taken once per order");
        let reservations = self
            .count("SELECT count(*) FROM inventory_reservations")
            .await;
        assert_eq!(reservations, orders, "one reservation per order");
        assert_eq!(
            self.count("SELECT count(*) FROM notifications WHERE status = 'sent'")
                .await,
            3 * orders,
            "one notification per event"
        );
        assert_eq!(
            self.count("SELECT count(*) FROM shipments WHERE status = 'started'")
                .await,
            orders,
            "one shipment per order"
        );
        assert_eq!(
            self.count("SELECT count(*) FROM order_summary WHERE status = 'shipped'")
                .await,
            orders,
            "the order summaries"
        );
        assert_eq!(
            self.count(
                "SELECT coalesce(sum(orders), 0)::bigint FROM analytics_status WHERE status = 'shipped'"
            )
            .await,
            orders,
            "analytics counted each order once"
        );
        // External effects carry an idempotency key derived from the event: the receiver sees
        // exactly one key per notification and per booking.
        let hooks: HashSet<_> = self.webhook.keys().into_iter().collect();
        assert_eq!(hooks.len() as i64, 3 * orders, "one notification per event");
        let bookings: HashSet<_> = self.carrier.keys().into_iter().collect();
        assert_eq!(bookings.len() as i64, orders, "one booking per order");
        let parked = orderflow_testkit::read_stream(&self.bus, &self.bus.dlq_stream_name())
            .await
            .expect("reading the dead-letter stream");
        assert!(parked.is_empty(), "{} message(s) parked", parked.len());
        self.assert_stream_complete().await;
    }

    /// `orderflow verify stream` says the stream holds every stored event exactly once.
    pub(crate) async fn assert_stream_complete(&self) {
        let output = self.orderflow().output(&["verify", "stream"]);
        assert!(
            output.status.success(),
            "`orderflow verify stream` found the stream and the log apart:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
