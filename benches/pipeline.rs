//! Pipeline load generator: the whole path a user waits for, from `POST /v1/orders` to every
//! consumer done. It starts the real `orderflow serve` binary (release build) on a database
//! and a stream pair of its own, against the local PostgreSQL and NATS, sends orders over
//! loopback HTTP and reports:
//!
//! - HTTP latency percentiles. With `--rate` the requests are scheduled on the clock (open
//!   loop) and latency counts from the scheduled time, so slow answers cannot hide it;
//!   without `--rate` it is a surge: `--concurrency` requests in flight, as fast as answered.
//! - per worker, the latency from an event's commit to its handling (inbox `handled_at`
//!   minus the event's `recorded_at`), per projection from the commit to the first
//!   checkpoint sample (every 20 ms) at or past the event, and from `OrderPlaced` to
//!   `ShipmentStarted`;
//! - every consumer's largest lag (pending + in flight, polled from the admin route);
//! - the time from the last 201 until every consumer is done and every order final;
//! - per order: SQL transactions, rows written, SQL statements (when the server loads
//!   `pg_stat_statements` and the extension exists in the admin database; `null` otherwise),
//!   PostgreSQL CPU (all `postgres` processes, from /proc, so run it on an otherwise idle
//!   machine; it includes the bench's own polling, one small query every 20 ms), and
//!   orderflow's own CPU. The counts leave out the bench's own queries;
//! - the peak resident memory of `orderflow serve` over the run.
//!
//! Not a test: run it by hand (each run finishes within a few minutes),
//!
//! ```text
//! cargo bench --bench pipeline -- --rate 100 --duration 20
//! cargo bench --bench pipeline -- --duration 20 --concurrency 64      # a surge
//! cargo bench --bench pipeline -- --rate 500 --duration 20 --json
//! ```
//!
//! Orders hold 1 to 5 lines over a catalogue of `--skus` SKUs; `--hot-share` of them also
//! order the one hot SKU. Stock is set high enough that no order is rejected. The simulated
//! carrier books at once unless `--simulated-carrier-ms` says otherwise. With
//! `--carrier-latency-ms` and `--notify-latency-ms` the bench runs local partners that answer
//! like real ones (`orderflow_testkit::partner`): bookings over HTTP to a carrier that takes
//! that long, notifications to a webhook that takes that long; `--partner-fail-for S` has the
//! carrier answer 503 for S seconds from the middle of the load, `--partner-max-per-second`
//! has it answer 429 above a rate. The report then gives bookings per second, the most calls
//! the partners saw in flight, their answers, and the time from the carrier's recovery until
//! every order shipped:
//!
//! ```text
//! cargo bench --bench pipeline -- --rate 100 --duration 30 --carrier-latency-ms 1000 --notify-latency-ms 200
//! cargo bench --bench pipeline -- --rate 500 --duration 60 --simulated-carrier-ms 3000
//! cargo bench --bench pipeline -- --rate 50 --duration 40 --carrier-latency-ms 100 --partner-fail-for 20
//! ```
//!
//! The database and the streams are removed at the end.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use orderflow_testkit::partner::{Behaviour, PartnerServer};
use serde_json::{json, Value};
use sqlx::PgPool;

const ADMIN_TOKEN: &str = "pipeline-bench";

/// Load generator for the whole order pipeline.
#[derive(Debug, Parser)]
struct Args {
    /// Orders per second, scheduled on the clock (open loop). Without it: a surge.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Requests in flight during a surge.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// SKUs in the catalogue.
    #[arg(long, default_value_t = 200)]
    skus: usize,
    /// Share of orders (0 to 1) that also order the hot SKU.
    #[arg(long, default_value_t = 0.1)]
    hot_share: f64,
    /// Longest wait, in seconds, for the pipeline to drain after the load.
    #[arg(long, default_value_t = 300)]
    drain_timeout: u64,
    /// Milliseconds the simulated (in-process) carrier takes to book; `scripts/run` uses
    /// 3000.
    #[arg(long, default_value_t = 0)]
    simulated_carrier_ms: u64,
    /// Book with a built-in local carrier over HTTP (`ORDERFLOW_CARRIER=http`) that takes
    /// this many milliseconds to answer, instead of the simulated one.
    #[arg(long)]
    carrier_latency_ms: Option<u64>,
    /// Send notifications to a built-in local webhook (`ORDERFLOW_NOTIFY_CHANNEL=webhook`)
    /// that takes this many milliseconds to answer, instead of the log channel.
    #[arg(long)]
    notify_latency_ms: Option<u64>,
    /// The built-in carrier answers 503 for this many seconds, from the middle of the load.
    #[arg(long)]
    partner_fail_for: Option<u64>,
    /// The built-in carrier answers 429 (`Retry-After: 1`) above this many requests a
    /// second.
    #[arg(long)]
    partner_max_per_second: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A small deterministic generator, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

fn order_body(i: usize, args: &Args, random: &mut Lcg) -> Value {
    let mut skus: Vec<String> = Vec::new();
    if random.chance(args.hot_share) {
        skus.push("SKU-HOT".into());
    }
    let lines = 1 + random.below(5);
    while skus.len() < lines {
        let sku = format!("SKU-{}", random.below(args.skus));
        if !skus.contains(&sku) {
            skus.push(sku);
        }
    }
    let lines: Vec<Value> = skus
        .into_iter()
        .map(|sku| {
            json!({"sku": sku, "quantity": 1 + random.below(3),
                   "unit_price": 100 + random.below(10_000)})
        })
        .collect();
    json!({
        "customer_id": format!("c-{}", i % 5_000),
        "customer_email": format!("customer{}@example.com", i % 5_000),
        "currency": "EUR",
        "lines": lines,
        "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    })
}

/// `orderflow serve`, stopped with SIGTERM when dropped.
struct Served {
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
/// The peak resident memory of process `pid` so far, in MiB (`VmHWM`), if it can be read.
fn peak_resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by every process called `postgres` (the server and its backends); a
/// backend that ended between two readings drops out, so read around the whole run.
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

#[derive(Debug, Clone, Copy, Default)]
struct DbCounters {
    transactions: i64,
    rows_written: i64,
    /// Statements executed in the database, when `pg_stat_statements` is loaded and its
    /// extension created in the admin database; `None` otherwise.
    statements: Option<i64>,
}

async fn db_counters(admin: &PgPool, database: &str) -> DbCounters {
    let (transactions, rows_written): (i64, i64) = sqlx::query_as(
        "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted
           FROM pg_stat_database WHERE datname = $1",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .expect("reading pg_stat_database");
    let statements = sqlx::query_scalar(
        "SELECT coalesce(sum(s.calls), 0)::int8
           FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
          WHERE d.datname = $1",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .ok();
    DbCounters {
        transactions,
        rows_written,
        statements,
    }
}

/// One projection's checkpoint at one moment: name, position, the database's clock.
type CheckpointSample = (String, i64, chrono::DateTime<chrono::Utc>);

/// Per projection, p50 / p99 / max of the time from each event's commit to the first
/// checkpoint sample at or past its position, in milliseconds. `samples` are in time order.
fn commit_to_folded(
    samples: &[CheckpointSample],
    events: &[(i64, chrono::DateTime<chrono::Utc>)],
) -> serde_json::Map<String, Value> {
    let mut by_name: BTreeMap<&str, Vec<(i64, chrono::DateTime<chrono::Utc>)>> = BTreeMap::new();
    for (name, position, at) in samples {
        by_name.entry(name).or_default().push((*position, *at));
    }
    by_name
        .into_iter()
        .map(|(name, samples)| {
            let mut latencies = Vec::with_capacity(events.len());
            let mut next = 0;
            for (position, recorded_at) in events {
                while next < samples.len() && samples[next].0 < *position {
                    next += 1;
                }
                let Some((_, seen)) = samples.get(next) else {
                    break;
                };
                latencies.push((*seen - *recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e3);
            }
            latencies.sort_by(f64::total_cmp);
            let summary = json!({
                "p50": percentile(&latencies, 0.50),
                "p99": percentile(&latencies, 0.99),
                "max": latencies.last().copied().unwrap_or(f64::NAN),
            });
            (name.to_string(), summary)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The lag (pending + in flight) of each consumer, from the admin route.
async fn lags(http: &reqwest::Client, base: &str) -> Option<BTreeMap<String, u64>> {
    let body: Value = http
        .get(format!("{base}/v1/admin/consumers"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let consumers = body["consumers"].as_array()?;
    Some(
        consumers
            .iter()
            .map(|c| {
                let lag =
                    c["pending"].as_u64().unwrap_or(0) + c["ack_pending"].as_u64().unwrap_or(0);
                (c["name"].as_str().unwrap_or("?").to_string(), lag)
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("orderflow_test_bench_{id}");
    let stream = format!("BENCH_{id}");
    let server = std::env::var("ORDERFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut url = url::Url::parse(&server).expect("ORDERFLOW_TEST_DATABASE_URL is a URL");
    url.set_path(&database);
    let nats =
        std::env::var("ORDERFLOW_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let admin = PgPool::connect(&server)
        .await
        .expect("PostgreSQL must answer (`scripts/services up`)");
    let port = orderflow_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let carrier = match args.carrier_latency_ms {
        Some(ms) => Some(
            PartnerServer::start(Behaviour {
                latency: Duration::from_millis(ms),
                max_per_second: args.partner_max_per_second,
            })
            .await,
        ),
        None => None,
    };
    let mail = match args.notify_latency_ms {
        Some(ms) => Some(
            PartnerServer::start(Behaviour {
                latency: Duration::from_millis(ms),
                max_per_second: None,
            })
            .await,
        ),
        None => None,
    };

    let mut command = Command::new(env!("CARGO_BIN_EXE_orderflow"));
    if let Some(carrier) = &carrier {
        command
            .env("ORDERFLOW_CARRIER", "http")
            .env("ORDERFLOW_CARRIER_URL", &carrier.url);
    }
    if let Some(mail) = &mail {
        command
            .env("ORDERFLOW_NOTIFY_CHANNEL", "webhook")
            .env("ORDERFLOW_NOTIFY_WEBHOOK_URL", &mail.url);
    }
    let child = command
        .args(["serve", "--http-addr", &format!("127.0.0.1:{port}")])
        .env("ORDERFLOW_DATABASE_URL", url.as_str())
        .env("ORDERFLOW_NATS_URL", &nats)
        .env("ORDERFLOW_STREAM", &stream)
        .env("ORDERFLOW_SUBJECT_PREFIX", format!("bench_{id}"))
        .env("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
        // A throwaway master key for the customers' data keys of the bench's own database.
        .env(
            "ORDERFLOW_MASTER_KEY",
            orderflow_testkit::database::TEST_MASTER_KEY,
        )
        .env(
            "ORDERFLOW_CARRIER_BOOKING_DELAY_MS",
            args.simulated_carrier_ms.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting `orderflow serve`");
    let serve_pid = child.id();
    let served = Served { child };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let started = Instant::now();
    while !http
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "`orderflow serve` was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let skus: Vec<String> = (0..args.skus)
        .map(|i| format!("SKU-{i}"))
        .chain(["SKU-HOT".to_string()])
        .collect();
    for sku in &skus {
        let put = http
            .put(format!("{base}/v1/inventory/{sku}"))
            .json(&json!({"available": 1_000_000_000}))
            .send()
            .await
            .unwrap();
        assert!(
            put.status().is_success(),
            "stock for {sku}: {}",
            put.status()
        );
    }

    let mode = match args.rate {
        Some(rate) => format!("{rate} orders/s for {} s (open loop)", args.duration),
        None => format!(
            "a surge of {} s, {} in flight",
            args.duration, args.concurrency
        ),
    };
    if !args.json {
        eprintln!(
            "pipeline: {mode}; {} SKUs, {:.0}% with the hot SKU",
            args.skus,
            args.hot_share * 100.0
        );
    }
    let before = db_counters(&admin, &database).await;
    let (pg_before, serve_before) = (postgres_cpu_seconds(), cpu_seconds(serve_pid));

    // Lag monitor: the largest lag each consumer reaches, until told to stop.
    let largest_lag = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let monitoring = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let monitor = {
        let (http, base) = (http.clone(), base.clone());
        let (largest_lag, monitoring) = (Arc::clone(&largest_lag), Arc::clone(&monitoring));
        tokio::spawn(async move {
            while monitoring.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(now) = lags(&http, &base).await {
                    let mut largest = largest_lag.lock().unwrap();
                    for (name, lag) in now {
                        let entry = largest.entry(name).or_default();
                        *entry = (*entry).max(lag);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Checkpoint sampler: every projection's checkpoint every 20 ms, with the database's
    // clock (the one `recorded_at` uses), to tell when each event was folded.
    let checkpoint_samples = Arc::new(Mutex::new(Vec::<CheckpointSample>::new()));
    let sampler = {
        let db = PgPool::connect(url.as_str()).await.unwrap();
        let (samples, monitoring) = (Arc::clone(&checkpoint_samples), Arc::clone(&monitoring));
        tokio::spawn(async move {
            let mut queries = 0_i64;
            while monitoring.load(std::sync::atomic::Ordering::SeqCst) {
                queries += 1;
                let taken = sqlx::query_as::<_, CheckpointSample>(
                    "SELECT name, position, clock_timestamp() FROM projection_checkpoints",
                )
                .fetch_all(&db)
                .await;
                if let Ok(taken) = taken {
                    samples.lock().unwrap().extend(taken);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            db.close().await;
            queries
        })
    };

    // The carrier's outage, from the middle of the load.
    let outage = match (&carrier, args.partner_fail_for) {
        (Some(carrier), Some(seconds)) => {
            let (carrier, half) = (carrier.clone(), Duration::from_secs(args.duration) / 2);
            Some(tokio::spawn(async move {
                tokio::time::sleep(half).await;
                carrier.down();
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                carrier.up();
                Instant::now()
            }))
        }
        _ => None,
    };

    let mut random = Lcg(42);
    let load_started = Instant::now();
    let until = load_started + Duration::from_secs(args.duration);
    // (answered 201, latency in seconds) per request.
    let results: Vec<(bool, f64)> = match args.rate {
        Some(rate) => {
            let total = (rate * args.duration as f64).round() as usize;
            let mut requests = Vec::with_capacity(total);
            for i in 0..total {
                let scheduled = load_started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(scheduled.into()).await;
                let (http, url, body) = (
                    http.clone(),
                    format!("{base}/v1/orders"),
                    order_body(i, &args, &mut random),
                );
                requests.push(tokio::spawn(async move {
                    let ok = http
                        .post(url)
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 201);
                    (ok, scheduled.elapsed().as_secs_f64())
                }));
            }
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                results.push(request.await.unwrap());
            }
            results
        }
        None => {
            let bodies = (0..).map(|i| order_body(i, &args, &mut random));
            let url = format!("{base}/v1/orders");
            futures::stream::iter(bodies)
                .take_while(|_| futures::future::ready(Instant::now() < until))
                .map(|body| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let sent = Instant::now();
                        let ok = http
                            .post(url)
                            .json(&body)
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == 201);
                        (ok, sent.elapsed().as_secs_f64())
                    }
                })
                .buffer_unordered(args.concurrency)
                .collect()
                .await
        }
    };
    let failed = results.iter().filter(|(ok, _)| !ok).count();
    let mut latencies: Vec<f64> = results
        .into_iter()
        .filter_map(|(ok, latency)| ok.then_some(latency))
        .collect();
    let load_time = load_started.elapsed();
    let accepted = latencies.len();

    // Drain: every consumer caught up and every order final.
    let consumers = orderflow_operations::consumer_names().len();
    let drain_started = Instant::now();
    let bench_db = PgPool::connect(url.as_str()).await.unwrap();
    // The bench's own queries on the database, taken out of the per-order figures.
    let mut own_queries = 0_i64;
    loop {
        own_queries += 1;
        let final_orders: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM order_summary WHERE status IN ('shipped', 'rejected')",
        )
        .fetch_one(&bench_db)
        .await
        .unwrap();
        let idle = lags(&http, &base)
            .await
            .is_some_and(|l| l.len() == consumers && l.values().all(|lag| *lag == 0));
        if idle && final_orders >= accepted as i64 {
            break;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(args.drain_timeout),
            "not drained within {} s: {final_orders} of {accepted} orders final",
            args.drain_timeout
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_started.elapsed();
    let drained_at = Instant::now();
    let since_recovery = match outage {
        Some(outage) => Some(
            drained_at
                .duration_since(outage.await.unwrap())
                .as_secs_f64(),
        ),
        None => None,
    };
    monitoring.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = monitor.await;
    own_queries += sampler.await.unwrap_or(0);
    let after = db_counters(&admin, &database).await;
    let (pg_after, serve_after) = (postgres_cpu_seconds(), cpu_seconds(serve_pid));
    let serve_peak_mib = peak_resident_mib(serve_pid);

    let worker_latency: Vec<(String, f64, f64, f64)> = sqlx::query_as(
        "SELECT i.consumer,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.handled_at - e.recorded_at)),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM i.handled_at - e.recorded_at)),
                max(extract(epoch FROM i.handled_at - e.recorded_at))::float8
           FROM inbox i JOIN events e ON e.event_id = i.event_id
          GROUP BY i.consumer ORDER BY i.consumer",
    )
    .fetch_all(&bench_db)
    .await
    .unwrap();
    let placed_to_shipped: (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.99) WITHIN GROUP (ORDER BY d)
           FROM (SELECT extract(epoch FROM s.recorded_at - p.recorded_at) AS d
                   FROM events p JOIN events s ON s.aggregate_id = p.aggregate_id
                  WHERE p.event_type = 'OrderPlaced' AND s.event_type = 'ShipmentStarted') x",
    )
    .fetch_one(&bench_db)
    .await
    .unwrap();
    let numbered: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT global_position, recorded_at FROM events
          WHERE global_position IS NOT NULL ORDER BY global_position",
    )
    .fetch_all(&bench_db)
    .await
    .unwrap();
    let folded = commit_to_folded(&checkpoint_samples.lock().unwrap(), &numbered);
    bench_db.close().await;

    latencies.sort_by(f64::total_cmp);
    let per_order = |x: f64| x / accepted.max(1) as f64;
    let report = json!({
        "mode": mode,
        "accepted": accepted,
        "failed": failed,
        "load_seconds": load_time.as_secs_f64(),
        "accepted_per_second": accepted as f64 / load_time.as_secs_f64(),
        "http_latency_ms": {
            "p50": percentile(&latencies, 0.50) * 1e3,
            "p99": percentile(&latencies, 0.99) * 1e3,
            "max": latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
        },
        "drain_seconds_after_load": drain.as_secs_f64(),
        // From the load's start until the last order shipped (the drain's end).
        "bookings_per_second": accepted as f64 / (load_time + drain).as_secs_f64(),
        "carrier": carrier.as_ref().map_or_else(
            || json!({"simulated_booking_ms": args.simulated_carrier_ms}),
            |carrier| json!({
                "latency_ms": args.carrier_latency_ms,
                "most_in_flight": carrier.most_in_flight(),
                "booked_keys": carrier.keys().len(),
                "answered_200": carrier.answered(200),
                "answered_429": carrier.answered(429),
                "answered_503": carrier.answered(503),
                "outage_seconds": args.partner_fail_for,
                "shipped_seconds_after_recovery": since_recovery,
            }),
        ),
        "notify": mail.as_ref().map(|mail| json!({
            "latency_ms": args.notify_latency_ms,
            "most_in_flight": mail.most_in_flight(),
            "delivered": mail.keys().len(),
        })),
        "serve_peak_resident_mib": serve_peak_mib,
        "largest_lag": *largest_lag.lock().unwrap(),
        "commit_to_handled_ms": worker_latency.iter().map(|(c, p50, p99, max)| {
            (c.clone(), json!({"p50": p50 * 1e3, "p99": p99 * 1e3, "max": max * 1e3}))
        }).collect::<serde_json::Map<_, _>>(),
        // Projections keep no inbox: from the commit to the first checkpoint sample (every
        // 20 ms) at or past the event, so up to 20 ms too high.
        "commit_to_folded_ms": folded,
        "placed_to_shipped_ms": {
            "p50": placed_to_shipped.0.unwrap_or(f64::NAN) * 1e3,
            "p99": placed_to_shipped.1.unwrap_or(f64::NAN) * 1e3,
        },
        "per_order": {
            // Without the bench's own polling (one query a time, each its own transaction).
            "sql_transactions": per_order((after.transactions - before.transactions - own_queries) as f64),
            // null without pg_stat_statements (shared_preload_libraries + CREATE EXTENSION).
            "sql_statements": after.statements.zip(before.statements)
                .map(|(a, b)| per_order((a - b - own_queries) as f64)),
            "rows_written": per_order((after.rows_written - before.rows_written) as f64),
            "postgres_cpu_ms": per_order(pg_after - pg_before) * 1e3,
            "orderflow_cpu_ms": per_order(serve_after - serve_before) * 1e3,
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    }

    drop(served);
    if let Ok(client) = async_nats::connect(&nats).await {
        let jetstream = async_nats::jetstream::new(client);
        let _ = jetstream.delete_stream(&stream).await;
        let _ = jetstream.delete_stream(format!("{stream}_DLQ")).await;
    }
    let _ = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&admin)
    .await;
}
