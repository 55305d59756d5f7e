//! What every fault test shares: a system of its own (a fresh database on the shared
//! PostgreSQL or on a PostgreSQL cluster of the test's own, its own `nats-server` or three-node
//! JetStream cluster, recorders standing in
//! for the webhook receiver and the carrier), the `orderflow` binary over it, and the checks
//! that nothing was lost or done twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use orderflow_bus::{Bus, BusOptions};
use orderflow_testkit::http::Recorder;
use orderflow_testkit::load::{wait_until_healthy, LoadReport, OrderLoad};
use orderflow_testkit::nats::{NatsCluster, NatsServer};
use orderflow_testkit::postgres::PostgresServer;
use orderflow_testkit::{orderflow, Orderflow, Process, World};
use uuid::Uuid;

/// The one SKU every order of the load buys, stocked far beyond what a test sells.
pub(crate) const SKU: &str = "SKU-FAULT";
const STOCK: i64 = 1_000_000;

/// A system of a test's own, on NATS of its own: a [`NatsServer`] (the default) or a
/// [`NatsCluster`].
pub(crate) struct System<Nats = NatsServer> {
    pub world: World,
    pub nats: Nats,
    /// The test's own PostgreSQL cluster, when the system runs on one
    /// ([`System::on_own_postgres`]); `None` on the shared server.
    pub postgres: Option<PostgresServer>,
    /// A connection to the test's own server, naming the test's streams.
    pub bus: Bus,
    pub webhook: Recorder,
    pub carrier: Recorder,
    env: Vec<(String, String)>,
    /// The base URL of the gateway the load goes to ([`System::load_on`]).
    served_at: std::sync::Mutex<Option<String>>,
}

impl System<NatsServer> {
    /// A fresh database with stock of [`SKU`], a `nats-server` of its own (no stream yet:
    /// the binary creates it), and the recorders.
    pub(crate) async fn start() -> Self {
        let nats = NatsServer::start().await;
        Self::on_nats(nats.url(), 1, nats, None).await
    }

    /// As [`System::start`], with the database on a PostgreSQL cluster of the test's own, to
    /// stop and start again (`system.postgres`).
    pub(crate) async fn on_own_postgres() -> Self {
        let postgres = PostgresServer::start().await;
        let nats = NatsServer::start().await;
        Self::on_nats(nats.url(), 1, nats, Some(postgres)).await
    }
}

impl System<NatsCluster> {
    /// As [`System::start`], on a three-node JetStream cluster of its own; the binary creates
    /// the streams with three replicas.
    pub(crate) async fn start_cluster() -> Self {
        let cluster = NatsCluster::start().await;
        Self::on_nats(cluster.urls(), 3, cluster, None).await
    }
}

impl<Nats> System<Nats> {
    /// The processes pointed at `nats_url` (several URLs separated by commas for a cluster),
    /// with streams of `replicas` replicas, and the database on `postgres` when given (else
    /// on the shared server); `nats` is kept alive with the system.
    async fn on_nats(
        nats_url: String,
        replicas: usize,
        nats: Nats,
        postgres: Option<PostgresServer>,
    ) -> Self {
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
            replicas,
            ..BusOptions::default()
        };
        let bus = Bus::connect(options.clone())
            .await
            .expect("connecting to the test's own NATS");
        let (webhook, carrier) = (Recorder::start().await, Recorder::start().await);
        let env = vec![
            ("ORDERFLOW_NATS_URL", options.nats_url.clone()),
            ("ORDERFLOW_STREAM", options.stream.clone()),
            ("ORDERFLOW_SUBJECT_PREFIX", options.subject_prefix.clone()),
            ("ORDERFLOW_STREAM_REPLICAS", replicas.to_string()),
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
            served_at: std::sync::Mutex::new(None),
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

    /// `orderflow serve` over this system, healthy, with a steady load of an order every
    /// 20 ms posted to it.
    pub(crate) async fn serve_under_load(&self) -> (Process, OrderLoad) {
        let (served, base) = self.orderflow().serve(&[]);
        wait_until_healthy(&base, Duration::from_secs(30)).await;
        (served, self.load_on(&base))
    }

    /// A steady load of an order every 20 ms posted to the gateway at `base`, which
    /// [`System::time_to_recover`] and the figures then use too.
    pub(crate) fn load_on(&self, base: &str) -> OrderLoad {
        *self.served_at.lock().unwrap() = Some(base.to_string());
        OrderLoad::start(
            base,
            SKU,
            Duration::from_millis(20),
            Duration::from_secs(10),
        )
    }

    /// Stops the load, checks that `serve` kept running, and that every accepted order
    /// (with the `earlier` ones, accepted outside the load) settled with each effect once
    /// ([`System::assert_settled_once`]); then stops `serve` and removes the database.
    pub(crate) async fn finish(
        self,
        mut served: Process,
        load: OrderLoad,
        earlier: &[Uuid],
    ) -> LoadReport {
        let mut report = load.stop().await;
        let stopped = Instant::now();
        served.assert_running();
        // A request that got no answer in time may still have been stored: the client sends
        // it again with its Idempotency-Key to learn which (a 503 likewise).
        report
            .retry_uncertain(&self.served_at(), Duration::from_secs(60))
            .await;
        report.accepted.extend_from_slice(earlier);
        self.assert_settled_once(&report.accepted, Duration::from_secs(120))
            .await;
        // The figures RELIABILITY.md quotes.
        eprintln!(
            "fault figures: {} orders accepted (refused {:?}, unanswered {}), all shipped {:.1} s \
             after the load stopped; {}",
            report.accepted.len(),
            report.refused,
            report.unanswered,
            stopped.elapsed().as_secs_f64(),
            self.repair_counters().await
        );
        served.terminate(Duration::from_secs(30)).await;
        self.world.cleanup().await;
        report
    }

    /// Places one order right after a fault at `fault` and waits until it ships: prints how
    /// long after the fault that took (the time to recover that RELIABILITY.md quotes) and
    /// returns its id, to be counted with the others.
    pub(crate) async fn time_to_recover(&self, fault: Instant) -> Uuid {
        let base = self.served_at();
        let http = reqwest::Client::new();
        let id = loop {
            let answer = http
                .post(format!("{base}/v1/orders"))
                .json(&orderflow_testkit::load::order_body(SKU, 0))
                .send()
                .await;
            if let Ok(response) = answer {
                if response.status() == 201 {
                    let body: serde_json::Value = response.json().await.unwrap();
                    break body["id"].as_str().unwrap().parse::<Uuid>().unwrap();
                }
            }
            assert!(
                fault.elapsed() < Duration::from_secs(60),
                "no order accepted within 60 s of the fault"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        while self.shipped(&[id]).await == 0 {
            assert!(
                fault.elapsed() < Duration::from_secs(90),
                "an order placed after the fault did not ship within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "fault figures: an order placed right after the fault shipped {:.1} s after it",
            fault.elapsed().as_secs_f64()
        );
        id
    }

    /// The base URL of the gateway the load goes to.
    ///
    /// # Panics
    /// Before [`System::serve_under_load`] or [`System::load_on`].
    pub(crate) fn served_at(&self) -> String {
        self.served_at
            .lock()
            .unwrap()
            .clone()
            .expect("serve_under_load or load_on first")
    }

    /// The repair counters of the last `serve`'s `/metrics`, as one line.
    async fn repair_counters(&self) -> String {
        let Some(base) = self.served_at.lock().unwrap().clone() else {
            return "no metrics".into();
        };
        let Ok(response) = reqwest::get(format!("{base}/metrics")).await else {
            return "no metrics".into();
        };
        let text = response.text().await.unwrap_or_default();
        let sum = |family: &str| -> u64 {
            text.lines()
                .filter(|line| line.starts_with(family))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        format!(
            "stream repairs {}, events re-published {}, consumers re-created {}",
            sum("orderflow_stream_repairs_total"),
            sum("orderflow_stream_republished_total"),
            sum("orderflow_consumer_recreated_total")
        )
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
    /// When nothing moves towards that for `within` (no order ships, no consumer gets further
    /// in the log), or an effect happened twice. How many orders a load left depends on how
    /// fast the machine is; a system that gets nowhere is stuck, however fast.
    pub(crate) async fn assert_settled_once(&self, ids: &[Uuid], within: Duration) {
        assert!(!ids.is_empty(), "no order was accepted");
        let started = Instant::now();
        let names = orderflow_operations::consumer_names();
        // The most shipped orders, and the furthest positions handled, seen so far; when they
        // last grew.
        let mut progress = (0, 0);
        let mut progressed = Instant::now();
        loop {
            let shipped = self.shipped(ids).await;
            // The consumers first, then the log: a handler commits the events it causes (a
            // shipment started) before its message is acked, so once every consumer is seen
            // at the head with nothing pending, a log with no event after that head and none
            // still unnumbered (the relay numbers events after their commit) has nothing left
            // to handle. The other way round, an event committed but not numbered yet would
            // go unseen, and its effects (its notification) counted before they happen.
            let lag = orderflow_bus::consumer_info(&self.bus, &names).await;
            let head = orderflow_store::log::head_position(&self.world.db.pool)
                .await
                .expect("reading the head of the log");
            let unnumbered = orderflow_store::log::unnumbered_count(&self.world.db.pool)
                .await
                .expect("counting the events not numbered yet");
            let caught_up = unnumbered == 0
                && lag.as_ref().is_ok_and(|lag| {
                    lag.iter().all(|l| {
                        l.pending == 0
                            && l.ack_pending == 0
                            && l.last_handled_position == Some(head)
                    })
                });
            if shipped == ids.len() && caught_up {
                break;
            }
            let handled: i64 = lag.as_ref().map_or(0, |lag| {
                lag.iter().filter_map(|l| l.last_handled_position).sum()
            });
            if shipped > progress.0 || handled > progress.1 {
                progress = (shipped.max(progress.0), handled.max(progress.1));
                progressed = Instant::now();
            }
            assert!(
                progressed.elapsed() < within,
                "not settled, and nothing moved for {within:?} ({:?} since the wait began): \
                 {shipped} of {} orders shipped; head {head}, {unnumbered} event(s) not \
                 numbered yet; consumers {lag:?}",
                started.elapsed(),
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
