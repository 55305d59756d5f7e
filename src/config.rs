//! Configuration: every setting is a flag with an `ORDERFLOW_*` environment variable behind
//! it and a default that works on a developer machine. Flags override variables. Values that
//! may hold secrets (URLs with passwords, tokens) are never printed, not even by `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use orderflow_bus::runtime::ConsumerOptions;
use orderflow_bus::{BusOptions, RelayOptions, StartAt};
use orderflow_store::{DatabaseOptions, MasterKey};
use orderflow_workers::notifications::{ChannelOptions, NotificationOptions};
use orderflow_workers::registry::WorkerDeps;
use orderflow_workers::shipments::{CarrierOptions, ShipmentOptions};
use sqlx::PgPool;

use crate::telemetry::{LogFormat, OtlpExport};

/// Where `scripts/run` makes a development master key, relative to the checkout; a command run
/// there without a configured key uses it.
pub const DEVELOPMENT_MASTER_KEY_FILE: &str = ".orderflow/master.key";

/// Settings every command shares. `Debug` shows the URLs redacted.
#[derive(Clone, clap::Args)]
pub struct CommonArgs {
    /// PostgreSQL URL of the event store; the database is created if missing.
    #[arg(
        long,
        env = "ORDERFLOW_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orderflow",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Most PostgreSQL connections this process opens.
    #[arg(
        long,
        env = "ORDERFLOW_DATABASE_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    pub database_max_connections: u32,

    /// NATS server with JetStream.
    #[arg(
        long,
        env = "ORDERFLOW_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub nats_url: String,

    /// JetStream stream that carries the events (the dead letters go to `<STREAM>_DLQ`).
    #[arg(
        long,
        env = "ORDERFLOW_STREAM",
        default_value = "ORDERS",
        global = true
    )]
    pub stream: String,

    /// Subject prefix: events are published to `<PREFIX>.<order_id>.<EventType>`.
    #[arg(
        long,
        env = "ORDERFLOW_SUBJECT_PREFIX",
        default_value = "orders",
        global = true
    )]
    pub subject_prefix: String,

    /// JetStream replicas of the streams (3 on a cluster).
    #[arg(
        long,
        env = "ORDERFLOW_STREAM_REPLICAS",
        default_value_t = 1,
        global = true
    )]
    pub stream_replicas: usize,

    /// Seconds between the relay's checks that the stream still holds every event it
    /// published (it also checks at start and after a failed publish); what the broker lost
    /// is re-published from the store.
    #[arg(
        long,
        env = "ORDERFLOW_STREAM_CHECK_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub stream_check_secs: u64,

    /// Days an order's trace is kept: the consumers' step records and the relay's
    /// publication times older than this are removed by the relay that publishes (serve,
    /// relay), in the background, every ten minutes. `orderflow trace` shows what is left.
    #[arg(
        long,
        env = "ORDERFLOW_TRACE_RETENTION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=36_500),
        global = true
    )]
    pub trace_retention_days: u64,

    /// Seconds a role (serve, gateway, relay, worker, project) waits at start for PostgreSQL
    /// and NATS while they refuse connections, retrying with a growing pause; 0 fails at
    /// once. Operator commands never wait. Wrong credentials or a malformed URL fail at once.
    #[arg(
        long,
        env = "ORDERFLOW_CONNECT_WAIT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub connect_wait_secs: u64,

    /// Address where the relay, worker and project roles serve `GET /metrics` (Prometheus
    /// text); unset, they serve none. `serve` and `gateway` answer it on their HTTP address.
    #[arg(long, env = "ORDERFLOW_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,

    /// Master key (32 bytes, 64 hex digits) that wraps every customer's data key; personal
    /// data is sealed under those. Never printed. Needed by serve, gateway and worker (they
    /// seal and open personal data), by `replay order` and by `keys rotate-master`; `events`
    /// shows personal data sealed without it, and says so. `forget` does not need it (deleting
    /// a customer's data key opens nothing). Without this flag and --master-key-file, a
    /// command uses `.orderflow/master.key` of the current directory when there is one: the
    /// development key `scripts/run` makes in the checkout.
    #[arg(
        long,
        env = "ORDERFLOW_MASTER_KEY",
        hide_env_values = true,
        global = true
    )]
    pub master_key: Option<String>,

    /// A file holding the master key in hex (instead of `--master-key`).
    #[arg(
        long,
        env = "ORDERFLOW_MASTER_KEY_FILE",
        conflicts_with = "master_key",
        global = true
    )]
    pub master_key_file: Option<std::path::PathBuf>,

    /// Log format; the filter comes from RUST_LOG (default `info,sqlx=warn` for the roles,
    /// `warn` for operator commands).
    #[arg(
        long,
        env = "ORDERFLOW_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,

    /// OTLP/HTTP endpoint to export spans to, for example `http://127.0.0.1:4318` (a
    /// collector, or Jaeger's OTLP port); spans are posted as protobuf to
    /// `<endpoint>/v1/traces`. Unset (the default), nothing is exported, and trace ids still
    /// travel with requests, events and messages and appear in JSON logs.
    #[arg(
        long,
        env = "ORDERFLOW_OTLP_ENDPOINT",
        hide_env_values = true,
        global = true
    )]
    pub otlp_endpoint: Option<String>,

    /// The `service.name` exported spans are reported under.
    #[arg(
        long,
        env = "ORDERFLOW_OTLP_SERVICE_NAME",
        default_value = "orderflow",
        global = true
    )]
    pub otlp_service_name: String,
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonArgs")
            .field("database", &self.database())
            .field("bus", &self.bus())
            .field("connect_wait_secs", &self.connect_wait_secs)
            .field("stream_check_secs", &self.stream_check_secs)
            .field("metrics_addr", &self.metrics_addr)
            .field("log_format", &self.log_format)
            .field("otlp_export", &self.otlp_endpoint.is_some())
            .finish()
    }
}

impl CommonArgs {
    /// The configured master key, if any: `--master-key`, `--master-key-file`, or else the
    /// development key in [`DEVELOPMENT_MASTER_KEY_FILE`] of the current directory.
    ///
    /// # Errors
    /// An unreadable key file, or a key that is not 32 bytes of hex.
    pub fn master_key(&self) -> anyhow::Result<Option<MasterKey>> {
        use anyhow::Context;
        let development = std::path::Path::new(DEVELOPMENT_MASTER_KEY_FILE);
        let file = match (&self.master_key, &self.master_key_file) {
            (Some(text), _) => return Ok(Some(MasterKey::from_hex(text)?)),
            (None, Some(path)) => path.as_path(),
            (None, None) if development.is_file() => development,
            (None, None) => return Ok(None),
        };
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the master key file {}", file.display()))?,
        );
        Ok(Some(MasterKey::from_hex(&text)?))
    }

    /// Installs the configured master key in this process; with `required`, its absence is
    /// an error.
    ///
    /// # Errors
    /// A malformed key, or none when `required`.
    pub fn install_master_key(&self, required: bool) -> anyhow::Result<()> {
        match self.master_key()? {
            Some(key) => Ok(orderflow_store::vault::install_master_key(key)?),
            None if required => Err(orderflow_store::VaultError::NoMasterKey.into()),
            None => Ok(()),
        }
    }

    /// Where spans are exported, when an OTLP endpoint is set (an empty one counts as unset).
    pub fn otlp(&self) -> Option<OtlpExport> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
            .map(|endpoint| OtlpExport {
                endpoint: endpoint.to_string(),
                service_name: self.otlp_service_name.clone(),
            })
    }

    /// How long a role waits for its services at start.
    pub fn connect_wait(&self) -> Duration {
        Duration::from_secs(self.connect_wait_secs)
    }

    /// How the relay runs: the defaults, with the stream check's interval from these settings.
    pub fn relay(&self) -> RelayOptions {
        RelayOptions {
            check_every: Duration::from_secs(self.stream_check_secs),
            trace_retention: Duration::from_secs(self.trace_retention_days * 24 * 3600),
            ..RelayOptions::default()
        }
    }

    /// Options for the PostgreSQL pool: the URL and pool size from these settings.
    pub fn database(&self) -> DatabaseOptions {
        DatabaseOptions {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            ..DatabaseOptions::default()
        }
    }

    /// Options for the NATS connection and JetStream stream from these settings (at least
    /// one replica).
    pub fn bus(&self) -> BusOptions {
        BusOptions {
            nats_url: self.nats_url.clone(),
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.stream_replicas.max(1),
            ..BusOptions::default()
        }
    }
}

/// Settings of the HTTP gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address the REST gateway listens on.
    #[arg(long, env = "ORDERFLOW_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Bearer token that opens the /v1/admin routes; without it they are off.
    #[arg(long, env = "ORDERFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Settings of the consumers (workers and projections).
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Deliveries of a failing message before it is parked in the dead-letter stream.
    #[arg(long, env = "ORDERFLOW_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u64,

    /// Seconds the server waits for an ack before redelivering a message.
    #[arg(long, env = "ORDERFLOW_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,

    /// Seconds a consumer may still work after a stop signal: messages delivered but not
    /// started are started until then, and calls to a carrier or mail service still running
    /// then are abandoned and their messages given back (to be done again, under the same
    /// idempotency key).
    #[arg(long, env = "ORDERFLOW_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Most messages a consumer takes in one batch. The built-in consumers handle what has
    /// been delivered as one batch, in a few statements: one message when they keep up, up
    /// to this many when they have a backlog.
    #[arg(long, env = "ORDERFLOW_CONSUMER_BATCH_SIZE", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub consumer_batch_size: u16,

    /// Messages one process handles at once for a consumer whose handler takes one message
    /// at a time (each order's messages one after another). The built-in consumers take
    /// batches instead (see --consumer-batch-size).
    #[arg(long, env = "ORDERFLOW_WORKER_CONCURRENCY", default_value_t = 8)]
    pub worker_concurrency: usize,

    /// How notifications are sent.
    #[arg(
        long,
        env = "ORDERFLOW_NOTIFY_CHANNEL",
        value_enum,
        default_value = "log"
    )]
    pub notify_channel: NotifyChannel,

    /// URL the webhook channel POSTs each notification to (JSON).
    #[arg(long, env = "ORDERFLOW_NOTIFY_WEBHOOK_URL", hide_env_values = true)]
    pub notify_webhook_url: Option<String>,

    /// SMTP server of the smtp channel: `smtps://user:pass@host` (TLS), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtp://host` (plain, for a local relay).
    #[arg(long, env = "ORDERFLOW_NOTIFY_SMTP_URL", hide_env_values = true)]
    pub notify_smtp_url: Option<String>,

    /// Sender address of the smtp channel.
    #[arg(
        long,
        env = "ORDERFLOW_NOTIFY_SMTP_FROM",
        default_value = "orders@orderflow.local"
    )]
    pub notify_smtp_from: String,

    /// Which carrier ships confirmed orders.
    #[arg(
        long,
        env = "ORDERFLOW_CARRIER",
        value_enum,
        default_value = "simulated"
    )]
    pub carrier: CarrierKind,

    /// Milliseconds the simulated carrier takes to book a shipment: the time left to cancel
    /// a confirmed order before it ships (0: at once).
    #[arg(
        long,
        env = "ORDERFLOW_CARRIER_BOOKING_DELAY_MS",
        default_value_t = 3000
    )]
    pub carrier_booking_delay_ms: u64,

    /// Booking URL of the http carrier (POST, with an Idempotency-Key per shipment).
    #[arg(long, env = "ORDERFLOW_CARRIER_URL", hide_env_values = true)]
    pub carrier_url: Option<String>,

    /// Name the http carrier is recorded under.
    #[arg(long, env = "ORDERFLOW_CARRIER_NAME", default_value = "http")]
    pub carrier_name: String,

    /// Most bookings in flight at once, per process. The limit adapts below it to the
    /// carrier's pace: it grows while the carrier keeps its latency and shrinks when it
    /// slows down, answers 429 or 503, or fails.
    #[arg(long, env = "ORDERFLOW_CARRIER_MAX_IN_FLIGHT",
          default_value_t = orderflow_workers::shipments::DEFAULT_CARRIER_MAX_IN_FLIGHT)]
    pub carrier_max_in_flight: usize,

    /// Most notifications being sent at once, per process; adapts below it as
    /// --carrier-max-in-flight does.
    #[arg(long, env = "ORDERFLOW_NOTIFY_MAX_IN_FLIGHT",
          default_value_t = orderflow_workers::notifications::DEFAULT_NOTIFY_MAX_IN_FLIGHT)]
    pub notify_max_in_flight: usize,
}

/// Notification channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyChannel {
    /// Write each notification to the log (the recipient masked: `a***@example.com`).
    Log,
    /// POST each notification as JSON to --notify-webhook-url.
    Webhook,
    /// Send e-mail through --notify-smtp-url.
    Smtp,
}

/// Carriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarrierKind {
    /// An in-process carrier that books after --carrier-booking-delay-ms (for development,
    /// demos and tests).
    Simulated,
    /// A carrier reached over HTTP at --carrier-url.
    Http,
}

/// `--from` of `orderflow worker`: a global log position (1 or more) or an RFC 3339 time.
///
/// # Errors
/// A message for anything else.
pub fn parse_start(raw: &str) -> Result<StartAt, String> {
    let raw = raw.trim();
    if let Ok(position) = raw.parse::<i64>() {
        return if position >= 1 {
            Ok(StartAt::Position(position))
        } else {
            Err("a position is 1 or more (1 is the first event of the log)".into())
        };
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| StartAt::Time(at.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            format!("{raw:?} is neither a log position nor an RFC 3339 time such as 2026-11-30T04:00:00Z")
        })
}

impl ConsumerArgs {
    /// The runtime's retry and batching options.
    pub fn consumer_options(&self) -> ConsumerOptions {
        ConsumerOptions {
            max_attempts: self.max_attempts.max(1),
            ack_wait: Duration::from_secs(self.ack_wait_secs.max(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            concurrency: self.worker_concurrency.max(1),
            batch_size: usize::from(self.consumer_batch_size.max(1)),
            ..ConsumerOptions::default()
        }
    }

    /// What the workers need, with the channel and carrier chosen here.
    ///
    /// # Errors
    /// A message naming a URL that the chosen channel or carrier needs but was not given.
    pub fn worker_deps(&self, pool: PgPool) -> Result<WorkerDeps, String> {
        let required = |value: &Option<String>, flag: &str| {
            value
                .clone()
                .ok_or_else(|| format!("{flag} is required by the chosen option"))
        };
        let channel = match self.notify_channel {
            NotifyChannel::Log => ChannelOptions::Log,
            NotifyChannel::Webhook => ChannelOptions::Webhook {
                url: required(&self.notify_webhook_url, "--notify-webhook-url")?,
                timeout: Duration::from_secs(5),
                // One request a try: the service's gate tries again (`orderflow_workers::partner`).
                attempts: 1,
            },
            NotifyChannel::Smtp => ChannelOptions::Smtp {
                url: required(&self.notify_smtp_url, "--notify-smtp-url")?,
                from: self.notify_smtp_from.clone(),
                timeout: Duration::from_secs(10),
            },
        };
        let carrier = match self.carrier {
            CarrierKind::Simulated => CarrierOptions::Simulated {
                booking_delay: Duration::from_millis(self.carrier_booking_delay_ms),
            },
            CarrierKind::Http => CarrierOptions::Http {
                name: self.carrier_name.clone(),
                url: required(&self.carrier_url, "--carrier-url")?,
                timeout: Duration::from_secs(10),
                // One request a try: the carrier's gate tries again (`orderflow_workers::partner`).
                attempts: 1,
            },
        };
        Ok(WorkerDeps {
            pool,
            notifications: NotificationOptions {
                channel,
                max_in_flight: self.notify_max_in_flight.max(1),
            },
            shipments: ShipmentOptions {
                carrier,
                max_in_flight: self.carrier_max_in_flight.max(1),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn from_is_a_position_of_the_log_or_a_time() {
        assert_eq!(parse_start("1"), Ok(StartAt::Position(1)));
        assert_eq!(parse_start(" 4200 "), Ok(StartAt::Position(4200)));
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-30T04:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_start("2026-11-30T05:00:00+01:00"),
            Ok(StartAt::Time(at))
        );
        for bad in ["0", "-3", "yesterday", "2026-11-30"] {
            assert!(parse_start(bad).is_err(), "{bad} accepted");
        }
    }

    #[derive(Debug, Parser)]
    struct Consumers {
        #[command(flatten)]
        consumers: ConsumerArgs,
    }

    fn booking_delay(args: &[&str]) -> CarrierOptions {
        let parsed =
            Consumers::try_parse_from(std::iter::once("orderflow").chain(args.iter().copied()))
                .expect("the flags parse");
        let pool = PgPool::connect_lazy("postgres://x@127.0.0.1:1/none").expect("a lazy pool");
        parsed
            .consumers
            .worker_deps(pool)
            .expect("deps")
            .shipments
            .carrier
    }

    #[tokio::test]
    async fn the_simulated_carrier_takes_a_human_time_to_book_unless_told_otherwise() {
        assert_eq!(
            booking_delay(&[]),
            CarrierOptions::Simulated {
                booking_delay: Duration::from_secs(3)
            }
        );
        assert_eq!(
            booking_delay(&["--carrier-booking-delay-ms", "0"]),
            CarrierOptions::Simulated {
                booking_delay: Duration::ZERO
            }
        );
    }
}
