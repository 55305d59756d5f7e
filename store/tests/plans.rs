//! docs/DESIGN.md, guarantee "cost does not grow with history", at the store: every hot
//! statement of the store is index-bound on big tables whose statistics are stale.
//!
//! The tables are analyzed while nearly empty, then grown to a few thousand rows shaped like
//! real ones (events, inbox claims, step records) without analyzing again:
//! what a deployment looks like between two autovacuum runs. Each statement is then prepared
//! and explained with `plan_cache_mode = force_generic_plan`, the plan a prepared statement
//! settles on after its fifth call, made without the arguments. No plan may scan a big table
//! sequentially: such a scan costs more with every order ever placed.

use orderflow_store::{log, steps};
use orderflow_testkit::TestDatabase;
use sqlx::{Connection, Executor, PgConnection, Row};

/// Orders' worth of rows in the big tables: three events each, six consumers' inbox claims
/// and step records per event.
const ORDERS: i64 = 2_000;

/// The tables that grow with every order.
const BIG_TABLES: &[&str] = &["events", "inbox", "consumer_steps"];

/// The step records' look-up of a handled step, as [`steps::RECORD_STEPS`] writes it.
const LATERAL_LOOKUP: &str = "LEFT JOIN LATERAL (
        SELECT true AS handled FROM consumer_steps s
         WHERE s.event_id = u.event_id AND s.consumer = $1 AND s.outcome = 'handled'
         LIMIT 1) h ON true";

/// Analyzes every table nearly empty, then grows the big ones without analyzing again.
async fn grow_with_stale_statistics(db: &mut PgConnection) {
    db.execute("ANALYZE")
        .await
        .expect("analyzing the empty tables");
    db.execute(
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, global_position)
             SELECT 'Order', o.id::text, s, (ARRAY['OrderPlaced', 'OrderConfirmed',
                    'ShipmentStarted'])[s], '1.0', '{{}}', '{{}}', (o.n - 1) * 3 + s
               FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, {ORDERS}) n) o,
                    generate_series(1, 3) s;
             INSERT INTO inbox (consumer, event_id)
             SELECT c, e.event_id FROM events e,
                    unnest(ARRAY['inventory', 'notifications', 'shipments', 'loyalty',
                                 'order-summary', 'analytics']) c;
             INSERT INTO consumer_steps (consumer, event_id, attempt, outcome, started_at)
             SELECT consumer, event_id, 1, 'handled', handled_at FROM inbox;
"
        )
        .as_str(),
    )
    .await
    .expect("growing the tables");
}

/// The plan PostgreSQL keeps for `sql` once prepared (its generic plan), as text.
async fn generic_plan(db: &mut PgConnection, name: &str, sql: &str, arguments: &str) -> String {
    db.execute(format!("PREPARE {name} AS {sql}").as_str())
        .await
        .unwrap_or_else(|e| panic!("preparing {name}: {e}"));
    // EXPLAIN of an INSERT or UPDATE plans it without running it.
    let rows = sqlx::raw_sql(&format!("EXPLAIN EXECUTE {name}({arguments})"))
        .fetch_all(&mut *db)
        .await
        .unwrap_or_else(|e| panic!("explaining {name}: {e}"));
    rows.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The big tables `plan` reads with a sequential scan.
fn scanned_big_tables(plan: &str) -> Vec<&'static str> {
    BIG_TABLES
        .iter()
        .copied()
        .filter(|table| {
            plan.lines()
                .any(|line| line.contains(&format!("Seq Scan on {table} ")))
        })
        .collect()
}

#[tokio::test]
async fn hot_statements_stay_index_bound_on_stale_statistics() {
    let database = TestDatabase::fresh().await;
    let mut db = PgConnection::connect(&database.options.url).await.unwrap();
    grow_with_stale_statistics(&mut db).await;
    db.execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();

    let uuids = "ARRAY[gen_random_uuid(), gen_random_uuid()]";
    let statements = [
        (
            "record_steps",
            steps::RECORD_STEPS,
            format!(
                "'inventory', {uuids}, ARRAY[1, 1], ARRAY['handled', 'handled'],
                 ARRAY[now(), now()], ARRAY[1, 1], ARRAY[NULL, NULL]::text[],
                 ARRAY[NULL, NULL]::text[]"
            ),
        ),
        ("steps_of_events", steps::STEPS_OF_EVENTS, uuids.to_string()),
        (
            "order_events",
            log::ORDER_EVENTS,
            "'Order', gen_random_uuid()::text".to_string(),
        ),
        (
            "events_of_orders",
            log::EVENTS_OF_ORDERS,
            "'Order', ARRAY[gen_random_uuid()::text, gen_random_uuid()::text]".to_string(),
        ),
        ("assign_positions", log::ASSIGN_POSITIONS, "500".to_string()),
    ];
    let mut scanning = Vec::new();
    for (name, sql, arguments) in &statements {
        let plan = generic_plan(&mut db, name, sql, arguments).await;
        let scanned = scanned_big_tables(&plan);
        if !scanned.is_empty() {
            scanning.push(format!("{name} scans {scanned:?} sequentially:\n{plan}"));
        }
    }
    assert!(
        scanning.is_empty(),
        "statements whose cost grows with history:\n\n{}",
        scanning.join("\n\n")
    );

    // The check itself can fail: the step records' statement as it was before, with its
    // `EXISTS` in the select list, hashes the consumer's whole history.
    let before = generic_plan(
        &mut db,
        "record_steps_with_exists",
        &steps::RECORD_STEPS
            .replace("OR h.handled IS NOT NULL", "OR EXISTS (SELECT 1 FROM consumer_steps s WHERE s.event_id = u.event_id AND s.consumer = $1 AND s.outcome = 'handled')")
            .replace(LATERAL_LOOKUP, ""),
        &statements[0].2,
    )
    .await;
    assert!(steps::RECORD_STEPS.contains(LATERAL_LOOKUP));
    assert_eq!(scanned_big_tables(&before), ["consumer_steps"], "{before}");

    db.close().await.unwrap();
    database.drop_database().await;
}
