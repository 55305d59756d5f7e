//! Benchmark: a rebuild of each view over a large log (default 1,000,000 events), on a fresh
//! database seeded directly with SQL, against the same run's limit. Not a timed test: run it
//! by hand,
//!
//! ```text
//! cargo bench -p orderflow-projections --bench rebuild
//! ORDERFLOW_BENCH_EVENTS=2000000 ORDERFLOW_BENCH_VIEWS=order-summary cargo bench -p orderflow-projections --bench rebuild
//! ```
//!
//! The log holds orders of four events each (placed, confirmed, shipped, delivered), in
//! blocks of 1,000 orders: the block's placements, then its confirmations, and so on, so an
//! order's events are spread over 4,000 positions (they do not arrive together).
//!
//! For each view (`ORDERFLOW_BENCH_VIEWS`, default `order-summary,analytics`) it measures, in
//! the same database: the **read** of every event in position order (a server-side cursor,
//! the columns a fold needs), the **rebuild** (`rebuild::rebuild`, as `orderflow projections
//! rebuild` runs it, swap included), and the **write** of the view's final rows in bulk (one
//! `INSERT ... SELECT` per table into fresh tables with their primary keys). The limit is
//! read + write, a single pass that reads every event once and writes every row once; the
//! bench prints the rebuild's ratio to it. Then (not timed; `ORDERFLOW_BENCH_VERIFY=0` skips
//! it) it verifies the rebuilt view as `--verify` does, once with the single pass and once
//! with the batch loop: both must find 0 differences. The rebuild's memory setting is
//! `ORDERFLOW_REBUILD_MAX_OPEN_ROWS` (`SinglePass`; 0: the batch loop). The database (`orderflow_test_*`, on
//! `ORDERFLOW_TEST_DATABASE_URL`) is dropped at the end.

use std::time::Instant;

use orderflow_projections::rebuild::{rebuild_with, RebuildOptions};
use orderflow_projections::{AnalyticsProjection, OrderSummaryProjection, Projection, SinglePass};
use orderflow_testkit::TestDatabase;
use sqlx::{PgPool, Row};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Inserts orders `from..to` (4 events each) with their global positions, in one statement.
async fn seed(pool: &PgPool, from: i64, to: i64) -> Result<u64, sqlx::Error> {
    let inserted = sqlx::query(
        r#"
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata, global_position)
        SELECT 'Order', o.id::text, k + 1, t.event_type, '1.0', t.payload,
               json_build_object('correlation_id', 'bench-' || o.n, 'actor', 'bench'),
               (o.n / 1000) * 4000 + k * 1000 + (o.n % 1000) + 1
        FROM (SELECT n, md5('bench-' || n)::uuid AS id,
                     timestamptz '2026-01-01 00:00:00+00' + n * interval '7 seconds' AS placed_at
              FROM generate_series($1::int8, $2::int8 - 1) AS n) o
        CROSS JOIN generate_series(0, 3) AS k
        CROSS JOIN LATERAL (
            SELECT CASE k WHEN 0 THEN 'OrderPlaced' WHEN 1 THEN 'OrderConfirmed'
                          WHEN 2 THEN 'ShipmentStarted' ELSE 'OrderDelivered' END AS event_type,
                   CASE k
                   WHEN 0 THEN json_build_object('OrderPlaced', json_build_object(
                       'order_id', o.id,
                       'customer_id', 'c-' || (o.n % 5000),
                       'customer_email', 'customer' || (o.n % 5000) || '@example.com',
                       'currency', CASE WHEN o.n % 4 = 0 THEN 'USD' ELSE 'EUR' END,
                       'lines', json_build_array(
                           json_build_object('sku', 'SKU-' || (o.n % 100), 'quantity', 1 + o.n % 3,
                                             'unit_price', 1000 + o.n % 500),
                           json_build_object('sku', 'SKU-' || ((o.n + 7) % 100), 'quantity', 1,
                                             'unit_price', 250)),
                       'shipping_address', json_build_object('name', 'Ada Lovelace',
                           'line1', '1 Main St', 'city', 'Berlin', 'postal_code', '10115',
                           'country', 'DE'),
                       'total', (1 + o.n % 3) * (1000 + o.n % 500) + 250,
                       'placed_at', o.placed_at))
                   WHEN 1 THEN json_build_object('OrderConfirmed',
                       json_build_object('reservation_id', md5('reservation-' || o.n)::uuid))
                   WHEN 2 THEN json_build_object('ShipmentStarted', json_build_object(
                       'shipment_id', md5('shipment-' || o.n)::uuid, 'carrier', 'simulated',
                       'tracking_number', 'TRK-' || o.n))
                   ELSE json_build_object('OrderDelivered', json_build_object())
                   END AS payload) t
        "#,
    )
    .bind(from)
    .bind(to)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// What one view's rebuild took, against what the same database needs to read the log and
/// write the view's final rows.
struct Figures {
    rebuild_s: f64,
    events: u64,
    read_s: f64,
    write_s: f64,
    indexes_s: f64,
}

async fn run(pool: &PgPool, projection: &dyn Projection, batch_size: i64) -> Figures {
    let label = projection.name();
    let (read_s, read_rows, read_bytes) = read_limit(pool).await;
    println!(
        "{label}: limit, read: {read_rows} events ({:.0} MB) in position order in {read_s:.2} s",
        read_bytes as f64 / 1e6
    );
    let last = std::sync::Mutex::new(Instant::now());
    let phases = std::sync::Mutex::new(Vec::<(String, Instant)>::new());
    let report = rebuild_with(
        pool,
        projection,
        RebuildOptions {
            verify_only: false,
            batch_size,
        },
        SinglePass::from_env(),
        &|p| {
            let mut phases = phases.lock().unwrap();
            if phases
                .last()
                .is_none_or(|(phase, _)| *phase != p.phase.to_string())
            {
                phases.push((p.phase.to_string(), Instant::now()));
            }
            let mut last = last.lock().unwrap();
            if last.elapsed().as_secs() >= 5 {
                *last = Instant::now();
                eprintln!("{label} {p}");
            }
        },
    )
    .await
    .expect("rebuild");
    assert!(report.swapped);
    println!(
        "{label}: rebuilt {} events in {:.2} s = {:.0} events/s (batch {batch_size}{}), peak RSS {} MB",
        report.events,
        report.elapsed.as_secs_f64(),
        report.per_second,
        memory_setting(),
        peak_rss_mb()
    );
    let phases = phases.into_inner().unwrap();
    let steps: Vec<String> = phases
        .windows(2)
        .map(|w| format!("{} {:.2} s", w[0].0, (w[1].1 - w[0].1).as_secs_f64()))
        .collect();
    println!("{label}: steps: {}", steps.join(", "));
    let (write_s, indexes_s, rows) = write_limit(pool, projection).await;
    println!(
        "{label}: limit, write: {rows} final rows with INSERT ... SELECT into fresh tables \
         (primary keys) in {write_s:.2} s; their secondary indexes {indexes_s:.2} s more"
    );
    let figures = Figures {
        rebuild_s: report.elapsed.as_secs_f64(),
        events: report.events,
        read_s,
        write_s,
        indexes_s,
    };
    let limit_s = figures.read_s + figures.write_s;
    println!(
        "{label}: limit = read + write = {limit_s:.2} s = {:.0} events/s; rebuild {:.2} s = \
         {:.2}x the limit (with the indexes in the limit: {:.2}x)",
        figures.events as f64 / limit_s,
        figures.rebuild_s,
        limit_s / figures.rebuild_s,
        (limit_s + figures.indexes_s) / figures.rebuild_s
    );
    if std::env::var("ORDERFLOW_BENCH_VERIFY").as_deref() != Ok("0") {
        let (single, batches) = verify(pool, projection, batch_size).await;
        println!(
            "{label}: --verify of the rebuilt tables: {single} differences (single pass), \
             {batches} differences (batch loop over the whole log)"
        );
        assert_eq!((single, batches), (0, 0), "{label}: the rebuild differs");
    }
    figures
}

/// The memory setting of the rebuild, as printed.
fn memory_setting() -> String {
    match SinglePass::from_env().max_open_rows {
        0 => ", single pass off: the batch loop".to_string(),
        rows => format!(", single pass, at most {rows} open rows"),
    }
}

/// `--verify` of the rebuilt view twice, as `orderflow projections rebuild --verify` runs it:
/// with the single pass (the rebuild's own way) and with the batch loop over the whole log
/// (the live path's way), each compared row by row with the live tables the rebuild swapped
/// in. Not timed. Returns the differences of each.
async fn verify(pool: &PgPool, projection: &dyn Projection, batch_size: i64) -> (u64, u64) {
    let options = RebuildOptions {
        verify_only: true,
        batch_size,
    };
    let mut differences = [0, 0];
    for (n, pass) in [SinglePass::from_env(), SinglePass::off()]
        .into_iter()
        .enumerate()
    {
        let report = rebuild_with(pool, projection, options, pass, &|_| {})
            .await
            .expect("verify");
        assert!(!report.swapped);
        differences[n] = report.difference_count();
    }
    (differences[0], differences[1])
}

/// The process's peak resident memory so far (`VmHWM`), in MB.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// The read half of the limit: every numbered event in position order, the columns a fold
/// needs (order, sequence, position, type, body), through a server-side cursor (10,000 rows a
/// fetch), touching every byte. Returns the seconds, the rows and the bytes.
async fn read_limit(pool: &PgPool) -> (f64, u64, u64) {
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "DECLARE limit_read NO SCROLL CURSOR FOR
         SELECT aggregate_id, sequence, global_position, event_type, payload::text
         FROM events WHERE global_position IS NOT NULL ORDER BY global_position",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let (mut rows, mut bytes) = (0u64, 0u64);
    loop {
        let page = sqlx::query("FETCH FORWARD 10000 FROM limit_read")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        for row in &page {
            let id: &str = row.get(0);
            let event_type: &str = row.get(3);
            let payload: &str = row.get(4);
            let _: (i64, i64) = (row.get(1), row.get(2));
            bytes += (id.len() + event_type.len() + payload.len() + 16) as u64;
            rows += 1;
        }
    }
    tx.rollback().await.unwrap();
    (started.elapsed().as_secs_f64(), rows, bytes)
}

/// The write half of the limit: the view's final rows (its live tables, just rebuilt) written
/// again in bulk, one `INSERT ... SELECT` per table into a fresh table made from the same
/// template (primary key included), committed. The secondary indexes are timed apart.
/// Returns the seconds of the writes, of the indexes, and the rows.
async fn write_limit(pool: &PgPool, projection: &dyn Projection) -> (f64, f64, u64) {
    let mut conn = pool.acquire().await.unwrap();
    for table in projection.tables() {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}_limit", table.name))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            &table
                .create
                .replace("{table}", &format!("{}_limit", table.name)),
        )
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let started = Instant::now();
    let mut rows = 0;
    for table in projection.tables() {
        rows += sqlx::query(&format!(
            "INSERT INTO {0}_limit SELECT * FROM {0}",
            table.name
        ))
        .execute(&mut *conn)
        .await
        .unwrap()
        .rows_affected();
    }
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for table in projection.tables() {
        for index in table.indexes {
            sqlx::query(&index.replace("{table}", &format!("{}_limit", table.name)))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
    let indexes_s = started.elapsed().as_secs_f64();
    for table in projection.tables() {
        sqlx::query(&format!("DROP TABLE {}_limit", table.name))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    (write_s, indexes_s, rows)
}

#[tokio::main]
async fn main() {
    let events = env("ORDERFLOW_BENCH_EVENTS", 1_000_000);
    let batch_size = env("ORDERFLOW_BENCH_BATCH", 5_000);
    let views = std::env::var("ORDERFLOW_BENCH_VIEWS")
        .unwrap_or_else(|_| "order-summary,analytics".to_string());
    let orders = (events + 3) / 4;
    let db = TestDatabase::fresh().await;
    let pool = db.pool.clone();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "seeding {} events ({orders} orders) into {} (PostgreSQL {version}, {} CPUs)",
        orders * 4,
        db.name,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let started = Instant::now();
    let chunk = 25_000;
    let mut from = 0;
    while from < orders {
        let to = (from + chunk).min(orders);
        seed(&pool, from, to).await.expect("seeding");
        from = to;
    }
    sqlx::query("VACUUM ANALYZE events")
        .execute(&pool)
        .await
        .unwrap();
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    let mut table = Vec::new();
    for name in views.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let projection: &dyn Projection = match name {
            "order-summary" => &OrderSummaryProjection,
            "analytics" => &AnalyticsProjection,
            other => panic!("ORDERFLOW_BENCH_VIEWS: no view {other:?}"),
        };
        let figures = run(&pool, projection, batch_size).await;
        if name == "order-summary" {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summary")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(rows, orders, "one row per order");
        }
        table.push((name, figures));
    }

    println!();
    println!("| view | events | rebuild | events/s | read | write | limit | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, f) in &table {
        let limit_s = f.read_s + f.write_s;
        println!(
            "| {name} | {} | {:.2} s | {:.0} | {:.2} s | {:.2} s | {:.2} s = {:.0} events/s | {:.2}x |",
            f.events,
            f.rebuild_s,
            f.events as f64 / f.rebuild_s,
            f.read_s,
            f.write_s,
            limit_s,
            f.events as f64 / limit_s,
            limit_s / f.rebuild_s
        );
    }

    pool.close().await;
    db.drop_database().await;
}
