//! docs/DESIGN.md, guarantee 2 (log order), at the store: under many concurrent writers, some
//! of which hold their transaction open after inserting, a reader that tails the log by
//! `global_position` sees every event exactly once, positions are gapless, and each order's
//! events come in sequence order.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_store::log;
use orderflow_testkit::TestDatabase;
use rand::Rng;
use uuid::Uuid;

const WRITERS: usize = 32;
const ORDERS_PER_WRITER: usize = 10;
const EVENTS_PER_ORDER: i64 = 3;

async fn write_order(pool: &sqlx::PgPool, slow: bool) {
    let order_id = Uuid::now_v7().to_string();
    for sequence in 1..=EVENTS_PER_ORDER {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('Order', $1, $2, 'OrderDelivered', '1.0', '{\"OrderDelivered\": {}}', '{}')",
        )
        .bind(&order_id)
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .unwrap();
        if slow {
            // Commit late: rows inserted after this one by other writers commit first.
            let pause = rand::rng().random_range(1..30);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        tx.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_misses_nothing_under_concurrent_late_commits() {
    let db = TestDatabase::fresh().await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                for _ in 0..ORDERS_PER_WRITER {
                    write_order(&pool, w % 2 == 0).await;
                }
            })
        })
        .collect();

    let total = (WRITERS * ORDERS_PER_WRITER) as i64 * EVENTS_PER_ORDER;
    let mut seen = Vec::new();
    let mut cursor = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seen.len() as i64) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} events seen",
            seen.len()
        );
        log::assign_positions(&db.pool, 50).await.unwrap();
        let batch = log::events_after(&db.pool, cursor, None, 40).await.unwrap();
        if let Some(last) = batch.last() {
            cursor = last.position.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen.extend(batch);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    log::assign_positions(&db.pool, 1000).await.unwrap();
    assert!(log::events_after(&db.pool, cursor, None, 10)
        .await
        .unwrap()
        .is_empty());

    let positions: Vec<i64> = seen.iter().map(|e| e.position.unwrap()).collect();
    assert_eq!(
        positions,
        (1..=total).collect::<Vec<_>>(),
        "gapless, each once, in order"
    );
    let mut last_sequence: HashMap<Uuid, i64> = HashMap::new();
    for event in &seen {
        let previous = last_sequence
            .insert(event.order_id, event.sequence)
            .unwrap_or(0);
        assert_eq!(
            event.sequence,
            previous + 1,
            "order {} out of sequence",
            event.order_id
        );
    }
    assert_eq!(log::unnumbered_count(&db.pool).await.unwrap(), 0);
}
