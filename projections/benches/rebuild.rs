//! Benchmark: events/s of an order-summary rebuild over a large log (default 1,000,000
//! events), on a fresh database seeded directly with SQL. Not a timed test: run it by hand,
//!
//! ```text
//! cargo bench -p orderflow-projections --bench rebuild
//! ORDERFLOW_BENCH_EVENTS=2000000 ORDERFLOW_BENCH_BATCH=10000 cargo bench -p orderflow-projections --bench rebuild
//! ```
//!
//! The log holds orders of four events each (placed, confirmed, shipped, delivered), in
//! blocks of 1,000 orders: the block's placements, then its confirmations, and so on, so most
//! batches continue orders placed in an earlier batch (rows are read back, not only inserted).
//! The database (`orderflow_test_*`, on `ORDERFLOW_TEST_DATABASE_URL`) is dropped at the end.

use std::time::Instant;

use orderflow_projections::rebuild::{rebuild, RebuildOptions};
use orderflow_projections::{AnalyticsProjection, OrderSummaryProjection, Projection};
use orderflow_testkit::TestDatabase;
use sqlx::PgPool;

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

async fn run(pool: &PgPool, projection: &dyn Projection, batch_size: i64) -> f64 {
    let label = projection.name();
    let last = std::sync::Mutex::new(Instant::now());
    let report = rebuild(
        pool,
        projection,
        RebuildOptions {
            verify_only: false,
            batch_size,
        },
        &|p| {
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
        "{label}: rebuilt {} events in {:.2} s = {:.0} events/s (batch {batch_size})",
        report.events,
        report.elapsed.as_secs_f64(),
        report.per_second
    );
    report.per_second
}

#[tokio::main]
async fn main() {
    let events = env("ORDERFLOW_BENCH_EVENTS", 1_000_000);
    let batch_size = env("ORDERFLOW_BENCH_BATCH", 5_000);
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
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    run(&pool, &OrderSummaryProjection, batch_size).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summary")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, orders, "one row per order");
    if std::env::var("ORDERFLOW_BENCH_ANALYTICS").is_ok() {
        run(&pool, &AnalyticsProjection, batch_size).await;
    }

    pool.close().await;
    db.drop_database().await;
}
