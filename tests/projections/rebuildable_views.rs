//! docs/DESIGN.md, guarantee 6 (rebuildable views): a rebuild from the log yields exactly the
//! rows the live fold holds, the live projection answers throughout, events written meanwhile
//! appear after the swap, and a killed fold resumes without missing or doubled rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderflow_bus::{Delivery, Handler, HandlerError};
use orderflow_projections::order_summary::{list_orders, OrderFilter};
use orderflow_projections::projection::{checkpoint, Tables};
use orderflow_projections::rebuild::{
    ensure_current, list, rebuild, Phase, ProjectionState, RebuildOptions,
};
use orderflow_projections::{
    AnalyticsProjection, OrderSummaryProjection, ProjectionError, ProjectionHandler,
};
use orderflow_testkit::log::*;
use orderflow_testkit::World;

use crate::lives::*;

const VERIFY: RebuildOptions = RebuildOptions {
    verify_only: true,
    batch_size: 500,
};

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rebuild_reproduces_the_live_rows_exactly_and_verify_finds_tampering() {
    let world = World::without_nats().await;
    let pool = world.pool();
    let ids = live_orders(&world.store, 0..1200).await;
    let head = number_events(pool).await;
    assert!(head > 2500, "a few thousand events, got {head}");
    for handler in handlers(pool) {
        assert_eq!(drain(pool, &handler).await as i64, head);
    }

    for projection in orderflow_projections::all() {
        let report = rebuild(pool, projection.as_ref(), VERIFY, &no_progress)
            .await
            .unwrap();
        assert_eq!(report.position, head);
        assert_eq!(report.events as i64, head);
        assert!(!report.swapped);
        assert_eq!(report.difference_count(), 0, "{:#?}", report.differences);
    }
    assert_eq!(count(pool, "order_summary").await, ids.len() as i64);

    // A real rebuild swaps in the same rows, then verify still finds nothing.
    let seen = Arc::new(AtomicU64::new(0));
    let seen_in = Arc::clone(&seen);
    let report = rebuild(
        pool,
        &OrderSummaryProjection,
        RebuildOptions {
            verify_only: false,
            batch_size: 300,
        },
        &move |p| {
            seen_in.fetch_add(1, Ordering::Relaxed);
            assert!(p.done <= p.total, "{p:?}");
        },
    )
    .await
    .unwrap();
    assert!(report.swapped);
    assert_eq!(report.position, head);
    assert!(
        seen.load(Ordering::Relaxed) >= 10,
        "progress reported per batch"
    );
    let again = rebuild(pool, &OrderSummaryProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(again.difference_count(), 0);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'order_summary' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "order_summary_customer",
            "order_summary_pkey",
            "order_summary_placed",
            "order_summary_status"
        ],
        "the swapped table keeps the live index names, so the next rebuild can swap again"
    );
    rebuild(
        pool,
        &OrderSummaryProjection,
        RebuildOptions::default(),
        &no_progress,
    )
    .await
    .expect("a second swap");

    // Tamper with the live tables: verify names every kind of difference.
    sqlx::query("UPDATE order_summary SET total = total + 1 WHERE id = $1")
        .bind(ids[1])
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM order_summary WHERE id = $1")
        .bind(ids[2])
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO order_summary SELECT gen_random_uuid(), customer_id, status, total, currency,
             line_count, placed_at, tracking_number, version FROM order_summary WHERE id = $1",
    )
    .bind(ids[3])
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE analytics_revenue SET revenue = revenue + 1 WHERE ctid = (SELECT min(ctid) FROM analytics_revenue)")
        .execute(pool)
        .await
        .unwrap();
    let report = rebuild(pool, &OrderSummaryProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    let table = &report.differences.as_ref().unwrap()[0];
    assert_eq!((table.missing, table.extra, table.differing), (1, 1, 1));
    let analytics = rebuild(pool, &AnalyticsProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(
        analytics.difference_count(),
        1,
        "{:#?}",
        analytics.differences
    );

    // The shadow tables of a verify are gone; list shows both projections current.
    assert_eq!(
        count(pool, "pg_tables WHERE tablename LIKE '%_rebuild'").await,
        0
    );
    let statuses = list(pool).await.unwrap();
    assert_eq!(statuses.len(), 2);
    for status in statuses {
        assert_eq!(
            (status.lag, status.state.as_str()),
            (0, "live"),
            "{status:?}"
        );
        assert_eq!(status.version, status.code_version);
    }
}

#[tokio::test]
async fn the_live_projection_answers_during_a_rebuild_and_later_orders_appear_after_the_swap() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    let before = live_orders(&world.store, 0..400).await;
    number_events(&pool).await;
    let summary = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    drain(&pool, &summary).await;

    // The rebuild is driven here, not spawned: once it reports that it has folded the log up
    // to its target (it goes on to index the shadow tables), it is simply not polled while
    // the rest of the test works; then it is resumed. No timing decides what overlaps.
    let (progress, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let report_progress = move |p: orderflow_projections::Progress| {
        let _ = progress.send(p);
    };
    let rebuilding = rebuild(
        &pool,
        &OrderSummaryProjection,
        RebuildOptions {
            verify_only: false,
            batch_size: 20,
        },
        &report_progress,
    );
    tokio::pin!(rebuilding);
    loop {
        tokio::select! {
            biased;
            Some(p) = reported.recv() => if p.phase == Phase::Indexing {
                break;
            },
            report = &mut rebuilding => panic!("the rebuild ended before it indexed: {report:?}"),
        }
    }

    // While it is in progress: place more orders, let the live consumer fold them, and query.
    let mut queries_during_rebuild = 0;
    let mut during = Vec::new();
    let mut i = 400;
    for _ in 0..3 {
        during.extend(live_orders(&world.store, i..i + 5).await);
        i += 5;
        number_events(&pool).await;
        drain(&pool, &summary).await;
        let page = list_orders(
            &pool,
            &OrderFilter {
                limit: Some(500),
                ..OrderFilter::default()
            },
        )
        .await
        .expect("the live projection answers during the rebuild");
        assert!(page.orders.len() >= 400);
        let state = list(&pool)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "order-summary")
            .unwrap()
            .state;
        assert_eq!(
            state,
            ProjectionState::Rebuilding,
            "the rebuild is in progress"
        );
        queries_during_rebuild += 1;
    }
    let report = rebuilding.await.unwrap();
    assert!(report.swapped);
    assert!(
        queries_during_rebuild >= 3,
        "only {queries_during_rebuild} queries overlapped"
    );
    assert!(!during.is_empty());

    // Orders placed while the rebuild ran (and after it) are all in the swapped table.
    during.extend(live_orders(&world.store, i..i + 5).await);
    number_events(&pool).await;
    drain(&pool, &summary).await;
    let expected = before.len() + during.len();
    assert_eq!(count(&pool, "order_summary").await as usize, expected);
    for id in before.iter().chain(&during) {
        assert!(
            orderflow_projections::order_summary::get_order(&pool, *id)
                .await
                .unwrap()
                .is_some(),
            "order {id} missing after the swap"
        );
    }
    let verify = rebuild(&pool, &OrderSummaryProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(verify.difference_count(), 0, "{:#?}", verify.differences);
}

#[tokio::test]
async fn a_fold_killed_mid_batch_resumes_with_no_missing_and_no_doubled_rows() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..300).await;
    let head = number_events(&pool).await;
    let events = events_after(&pool, 0).await;

    // A transaction dropped halfway (the process died before commit) leaves nothing behind.
    for projection in orderflow_projections::all() {
        let mut tx = pool.begin().await.unwrap();
        projection
            .apply_batch(&mut tx, &Tables::live(), &events[..50])
            .await
            .unwrap();
        drop(tx);
    }
    assert_eq!(count(&pool, "order_summary").await, 0);
    assert_eq!(count(&pool, "analytics_orders").await, 0);

    // A consumer task aborted in the middle of its work, at a different point each time;
    // each restart gets every event redelivered from the start, as after a crash with nothing
    // acked. The task says how many events it has handled; it is aborted once that reaches
    // `kill_after`, while it is at the next one.
    for (round, kill_after) in [7usize, 23, 61, 140].into_iter().enumerate() {
        let pool = pool.clone();
        let events = events.clone();
        let (handled, mut progress) = tokio::sync::watch::channel(0usize);
        let task = tokio::spawn(async move {
            let handlers = handlers(&pool);
            for (n, event) in events.iter().enumerate() {
                for handler in &handlers {
                    handler.handle(event, Delivery::live(1)).await.unwrap();
                }
                handled.send_replace(n + 1);
            }
        });
        progress
            .wait_for(|handled| *handled >= kill_after)
            .await
            .expect("the task handles events until it is aborted");
        task.abort();
        let _ = task.await;
        let at = checkpoint(world.pool(), OrderSummaryProjection::NAME)
            .await
            .unwrap()
            .unwrap()
            .position;
        assert!(at <= head, "round {round}");
    }
    for handler in handlers(&pool) {
        for event in &events {
            handler.handle(event, Delivery::live(2)).await.unwrap();
        }
    }
    assert_eq!(count(&pool, "order_summary").await, 300);
    assert_eq!(count(&pool, "analytics_orders").await, 300);
    for projection in orderflow_projections::all() {
        let report = rebuild(&pool, projection.as_ref(), VERIFY, &no_progress)
            .await
            .unwrap();
        assert_eq!(report.position, head);
        assert_eq!(report.difference_count(), 0, "{:#?}", report.differences);
    }
}

#[tokio::test]
async fn a_gap_asks_for_a_retry_then_heals_from_the_log_and_a_repeat_changes_nothing() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..3).await;
    number_events(&pool).await;
    let events = events_after(&pool, 0).await;
    let handler = ProjectionHandler::new(pool.clone(), Arc::new(AnalyticsProjection));
    assert!(handler.batched());

    let early = handler.handle(&events[1], Delivery::live(1)).await;
    assert!(matches!(early, Err(HandlerError::Retry(_))), "{early:?}");
    assert_eq!(count(&pool, "analytics_orders").await, 0);

    let dry = handler
        .handle(
            &events[0],
            Delivery {
                attempt: 1,
                dry_run: true,
                ignore_inbox: false,
            },
        )
        .await
        .unwrap();
    assert!(dry.0[0].contains("would apply"), "{dry:?}");
    assert_eq!(count(&pool, "analytics_orders").await, 0);

    for event in &events[..2] {
        assert!(!handler
            .handle(event, Delivery::live(1))
            .await
            .unwrap()
            .is_empty());
    }
    let repeat = handler.handle(&events[0], Delivery::live(2)).await.unwrap();
    assert!(repeat.is_empty(), "a redelivery is skipped: {repeat:?}");

    // Still a gap when the message comes back: the missing events are not coming (parked),
    // so the handler folds them from the log first.
    let late = &events[5];
    assert!(matches!(
        handler.handle(late, Delivery::live(1)).await,
        Err(HandlerError::Retry(_))
    ));
    let healed = handler.handle(late, Delivery::live(2)).await.unwrap();
    assert!(
        healed.0[0].contains("after folding 3 missing"),
        "{healed:?}"
    );
    let at = checkpoint(&pool, AnalyticsProjection::NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.position, late.position.unwrap());
    assert!(handler
        .handle(&events[3], Delivery::live(3))
        .await
        .unwrap()
        .is_empty());
    drain(&pool, &handler).await;
    let verify = rebuild(&pool, &AnalyticsProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(verify.difference_count(), 0);
}

#[tokio::test]
async fn a_batch_folds_in_position_order_in_one_go_stops_at_a_gap_and_heals_it_on_redelivery() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..3).await;
    number_events(&pool).await;
    let events = events_after(&pool, 0).await;
    assert!(events.len() >= 6, "{} events", events.len());
    let handler = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    let first = |e: &orderflow_store::EventEnvelope| (e.clone(), Delivery::live(1));

    // Out of order, a duplicate, and a gap (events[2] missing) before events[3].
    let results = handler
        .handle_batch(&[
            first(&events[1]),
            first(&events[0]),
            first(&events[0]),
            first(&events[3]),
        ])
        .await;
    assert_eq!(results.len(), 4);
    assert!(
        results[0].as_ref().unwrap().0[0].contains("applied"),
        "{results:?}"
    );
    assert!(
        results[1].as_ref().unwrap().0[0].contains("applied"),
        "{results:?}"
    );
    assert!(
        results[2].as_ref().unwrap().is_empty(),
        "the duplicate: {results:?}"
    );
    assert!(
        matches!(results[3], Err(HandlerError::Retry(_))),
        "{results:?}"
    );
    let at = checkpoint(&pool, OrderSummaryProjection::NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.position, events[1].position.unwrap());

    // The gap is still there when events[3] comes back: it heals from the log, and the
    // events after it in the batch are folded in the same transaction.
    let mut rest = vec![(events[3].clone(), Delivery::live(2))];
    rest.extend(events[4..].iter().map(first));
    let results = handler.handle_batch(&rest).await;
    assert!(
        results[0].as_ref().unwrap().0[0].contains("after folding 1 missing"),
        "{results:?}"
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let at = checkpoint(&pool, OrderSummaryProjection::NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.position, events.last().unwrap().position.unwrap());
    let verify = rebuild(&pool, &OrderSummaryProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(verify.difference_count(), 0, "{:#?}", verify.differences);
}

#[tokio::test]
async fn a_projection_whose_version_changed_is_rebuilt_at_start_and_one_rebuild_runs_at_a_time() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..50).await;
    let head = number_events(&pool).await;
    let all = orderflow_projections::all();
    assert!(
        ensure_current(&pool, &all).await.unwrap().is_empty(),
        "fresh and current"
    );

    // The stored version differs from the code's: the live consumer waits, a start rebuilds.
    sqlx::query("UPDATE projection_checkpoints SET version = 0 WHERE name = 'order-summary'")
        .execute(&pool)
        .await
        .unwrap();
    let summary = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    let first = events_after(&pool, 0).await.remove(0);
    assert!(matches!(
        summary.handle(&first, Delivery::live(1)).await,
        Err(HandlerError::Retry(_))
    ));
    let reports = ensure_current(&pool, &all).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].name.as_str(), reports[0].position),
        ("order-summary", head)
    );
    let stored = checkpoint(&pool, "order-summary").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.position), (1, head));
    assert_eq!(count(&pool, "order_summary").await, 50);
    assert!(ensure_current(&pool, &all).await.unwrap().is_empty());

    // A second rebuild of the same projection is refused while one holds the lock.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(20261125, hashtext('analytics'))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let refused = rebuild(
        &pool,
        &AnalyticsProjection,
        RebuildOptions::default(),
        &no_progress,
    )
    .await;
    assert!(
        matches!(refused, Err(ProjectionError::AlreadyRebuilding(_))),
        "{refused:?}"
    );
    let statuses = list(&pool).await.unwrap();
    let analytics = statuses.iter().find(|s| s.name == "analytics").unwrap();
    assert_eq!(analytics.lag, head, "nothing folded into analytics yet");
    assert_eq!(
        analytics.state,
        ProjectionState::Rebuilding,
        "the lock holder counts as a running rebuild"
    );
    drop(holder);
}

#[tokio::test]
async fn an_interrupted_rebuild_leaves_the_live_projection_serving_and_the_next_one_succeeds() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..200).await;
    let head = number_events(&pool).await;
    let summary = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    drain(&pool, &summary).await;

    // Driven here until it has folded a few batches, then dropped where it stands (as an
    // aborted task or a cancelled request drops it).
    let (progress, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let report_progress = move |p: orderflow_projections::Progress| {
        let _ = progress.send(p);
    };
    {
        let rebuilding = rebuild(
            &pool,
            &OrderSummaryProjection,
            RebuildOptions {
                verify_only: false,
                batch_size: 10,
            },
            &report_progress,
        );
        tokio::pin!(rebuilding);
        loop {
            tokio::select! {
                biased;
                Some(p) = reported.recv() => if p.phase == Phase::Folding && p.done >= 30 {
                    break;
                },
                report = &mut rebuilding => panic!("the rebuild ended before it was interrupted: {report:?}"),
            }
        }
    }

    // The live table is whole and still answers; the lock died with the rebuild.
    assert_eq!(count(&pool, "order_summary").await, 200);
    // PostgreSQL releases the lock once it sees the rebuild's connection closed.
    let started = std::time::Instant::now();
    loop {
        let statuses = list(&pool).await.unwrap();
        let state = statuses
            .iter()
            .find(|s| s.name == "order-summary")
            .unwrap()
            .state;
        if state == ProjectionState::Interrupted {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the interrupted rebuild still counts as {state:?} after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = rebuild(
        &pool,
        &OrderSummaryProjection,
        RebuildOptions::default(),
        &no_progress,
    )
    .await
    .expect("a new rebuild after an interrupted one");
    assert_eq!(report.position, head);
    let statuses = list(&pool).await.unwrap();
    let status = statuses.iter().find(|s| s.name == "order-summary").unwrap();
    assert_eq!((status.state.as_str(), status.lag), ("live", 0));
    let verify = rebuild(&pool, &OrderSummaryProjection, VERIFY, &no_progress)
        .await
        .unwrap();
    assert_eq!(verify.difference_count(), 0);
}
