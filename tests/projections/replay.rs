//! Replay for debugging: an order's timeline ends in the state the store loads and starts
//! `placed`; replaying a range to a consumer with `dry_run` changes nothing, without it the
//! inbox stops repeats, and `force` goes past the inbox.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use orderflow_bus::{Delivery, Effects, Handler, HandlerError};
use orderflow_operations::replay::{order_timeline, replay_consumer, LogBound, ReplayOutcome};
use orderflow_projections::{OrderSummaryProjection, ProjectionHandler};
use orderflow_store::{inbox, EventEnvelope};
use orderflow_testkit::log::*;
use orderflow_testkit::World;
use orderflow_workers::notifications::{Channel, Notification, NotificationsWorker, SendError};
use sqlx::PgPool;

use crate::lives::*;

#[tokio::test]
async fn the_timeline_ends_where_the_store_does_and_starts_placed() {
    let world = World::without_nats().await;
    // Order 2 is delivered: placed, confirmed, shipped, delivered.
    assert_eq!(Life::of(2), Life::Delivered);
    let id = live_an_order(&world.store, 2, base_time()).await;
    number_events(world.pool()).await;

    let timeline = order_timeline(&world.store, id, None)
        .await
        .unwrap()
        .unwrap();
    let loaded = world.store.load(id).await.unwrap().unwrap();
    assert_eq!(timeline.state.as_ref(), Some(&loaded.state));
    assert_eq!(timeline.version, loaded.version);
    let types: Vec<_> = timeline
        .entries
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "OrderConfirmed",
            "ShipmentStarted",
            "OrderDelivered"
        ]
    );
    assert_eq!(
        timeline.entries.last().unwrap().state,
        serde_json::to_value(&loaded.state).unwrap()
    );
    let first = &timeline.entries[0];
    assert_eq!((first.sequence, first.position), (1, Some(1)));
    assert_eq!(first.correlation_id.as_deref(), Some("req-2"));
    let shipped = &timeline.entries[2];
    let paths: Vec<_> = shipped.changes.iter().map(|c| c.path.as_str()).collect();
    assert!(paths.contains(&"status"), "{paths:?}");
    assert!(paths.contains(&"shipment.tracking_number"), "{paths:?}");
    let status = shipped.changes.iter().find(|c| c.path == "status").unwrap();
    assert_eq!(
        (status.before.clone(), status.after.clone()),
        (Some("confirmed".into()), Some("shipped".into()))
    );

    let at_one = order_timeline(&world.store, id, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_one.entries.len(), 1);
    assert_eq!(
        at_one.state.unwrap().status,
        orderflow_domain::OrderStatus::Placed
    );
    assert_eq!(at_one.entries[0].state["status"], "placed");
    assert!(order_timeline(&world.store, uuid::Uuid::now_v7(), None)
        .await
        .unwrap()
        .is_none());
}

/// A consumer whose effect is a row in `replay_effects`, guarded by the inbox.
struct Recorder {
    pool: PgPool,
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        let effect = format!("record {} of {}", event.event_type, event.order_id);
        if delivery.dry_run {
            return Ok(Effects::one(format!("would {effect}")));
        }
        let mut tx = self.pool.begin().await?;
        let first = inbox::claim(&mut tx, "recorder", event.event_id).await?;
        if !first && !delivery.ignore_inbox {
            return Ok(Effects::none());
        }
        sqlx::query("INSERT INTO replay_effects (event_id) VALUES ($1)")
            .bind(event.event_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Effects::one(effect))
    }
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn replaying_to_a_consumer_dry_run_changes_nothing_and_the_inbox_stops_repeats() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..20).await;
    let head = number_events(&pool).await;
    sqlx::query("CREATE TABLE replay_effects (event_id uuid NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let recorder = Recorder { pool: pool.clone() };

    let dry = replay_consumer(&pool, &recorder, 1, None, true, false)
        .await
        .unwrap();
    assert_eq!((dry.from, dry.to, dry.events.len() as i64), (1, head, head));
    assert!(dry.events.iter().all(|e| matches!(&e.outcome,
        ReplayOutcome::Done { effects } if effects[0].starts_with("would record"))));
    assert_eq!(count(&pool, "replay_effects").await, 0);
    assert_eq!(count(&pool, "inbox").await, 0);

    // A sub-range, then everything: the inbox keeps each effect single.
    let part = replay_consumer(&pool, &recorder, 5, Some(9), false, false)
        .await
        .unwrap();
    let positions: Vec<_> = part.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, [5, 6, 7, 8, 9]);
    let all = replay_consumer(&pool, &recorder, 1, None, false, false)
        .await
        .unwrap();
    let repeated = all
        .events
        .iter()
        .filter(|e| matches!(&e.outcome, ReplayOutcome::Skipped { .. }))
        .count();
    assert_eq!(repeated, 5, "the events handled before are skipped");
    assert_eq!(count(&pool, "replay_effects").await, head);
    let forced = replay_consumer(&pool, &recorder, 1, Some(3), false, true)
        .await
        .unwrap();
    assert_eq!(forced.events.len(), 3);
    assert_eq!(count(&pool, "replay_effects").await, head + 3);

    // Time bounds: from before everything covers the whole log.
    let from = "2000-01-01T00:00:00Z".parse::<LogBound>().unwrap();
    assert_eq!(from.resolve_from(&pool).await.unwrap(), 1);
    let to = "2999-01-01T00:00:00Z".parse::<LogBound>().unwrap();
    assert_eq!(to.resolve_to(&pool).await.unwrap(), head);

    // A projection replayed dry changes neither rows nor checkpoint.
    let summary = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    let report = replay_consumer(&pool, &summary, 1, None, true, false)
        .await
        .unwrap();
    assert!(report.events.iter().all(|e| matches!(&e.outcome,
        ReplayOutcome::Done { effects } if effects.len() == 1)));
    assert_eq!(count(&pool, "order_summary").await, 0);
    let checkpoint = orderflow_projections::projection::checkpoint(&pool, "order-summary")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.position, 0);
}

/// A channel that counts what it is asked to send.
struct CountingChannel(AtomicUsize);

#[async_trait]
impl Channel for CountingChannel {
    fn name(&self) -> &str {
        "counting"
    }

    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn replaying_notifications_dry_run_sends_and_records_nothing() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..12).await;
    let head = number_events(&pool).await;
    let channel = Arc::new(CountingChannel(AtomicUsize::new(0)));
    let worker = NotificationsWorker::new(pool.clone(), channel.clone());

    let dry = replay_consumer(&pool, &worker, 1, None, true, false)
        .await
        .unwrap();
    assert_eq!(dry.events.len() as i64, head);
    let would: usize = dry
        .events
        .iter()
        .map(|e| match &e.outcome {
            ReplayOutcome::Done { effects } => effects.len(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert!(would > 0, "the dry run says what it would send");
    assert_eq!(channel.0.load(Ordering::SeqCst), 0, "nothing sent");
    assert_eq!(count(&pool, "notifications").await, 0, "nothing recorded");
    assert_eq!(count(&pool, "inbox").await, 0);

    let real = replay_consumer(&pool, &worker, 1, None, false, false)
        .await
        .unwrap();
    assert_eq!(real.events.len() as i64, head);
    assert_eq!(channel.0.load(Ordering::SeqCst), would);
    replay_consumer(&pool, &worker, 1, None, false, false)
        .await
        .unwrap();
    assert_eq!(
        channel.0.load(Ordering::SeqCst),
        would,
        "the inbox stops repeats"
    );
    replay_consumer(&pool, &worker, 1, None, false, true)
        .await
        .unwrap();
    assert_eq!(
        channel.0.load(Ordering::SeqCst),
        2 * would,
        "--force sends every notification again"
    );
    assert_eq!(
        count(&pool, "notifications").await as usize,
        would,
        "still one record per event"
    );
}

/// What one replayed event came to, in words a comparison can use.
fn kind(outcome: &ReplayOutcome) -> &'static str {
    match outcome {
        ReplayOutcome::Skipped { .. } => "skip",
        ReplayOutcome::Done { effects } if effects.is_empty() => "nothing",
        ReplayOutcome::Done { .. } => "effect",
        ReplayOutcome::Retry { .. } | ReplayOutcome::GiveUp { .. } => "failed",
    }
}

#[tokio::test]
async fn a_dry_run_says_event_by_event_what_the_real_run_then_does() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    live_orders(&world.store, 0..12).await;
    let head = number_events(&pool).await;
    let channel = Arc::new(CountingChannel(AtomicUsize::new(0)));
    let worker = NotificationsWorker::new(pool.clone(), channel.clone());
    // The first half was handled live before; the second half never was.
    replay_consumer(&pool, &worker, 1, Some(head / 2), false, false)
        .await
        .unwrap();

    for force in [false, true] {
        let dry = replay_consumer(&pool, &worker, 1, None, true, force)
            .await
            .unwrap();
        let sent_before = channel.0.load(Ordering::SeqCst);
        let real = replay_consumer(&pool, &worker, 1, None, false, force)
            .await
            .unwrap();
        assert_eq!(dry.events.len(), real.events.len());
        for (said, done) in dry.events.iter().zip(&real.events) {
            assert_eq!(said.position, done.position);
            assert_eq!(
                kind(&said.outcome),
                kind(&done.outcome),
                "force {force}, position {}: the dry run said {:?}, the real run did {:?}",
                said.position,
                said.outcome,
                done.outcome
            );
        }
        let effects = |events: &[orderflow_operations::replay::ReplayedEvent]| {
            events
                .iter()
                .filter(|e| kind(&e.outcome) == "effect")
                .count()
        };
        assert_eq!(
            channel.0.load(Ordering::SeqCst) - sent_before,
            effects(&dry.events),
            "force {force}: the real run sent what the dry run announced"
        );
        if !force {
            let skipped = dry
                .events
                .iter()
                .filter(|e| kind(&e.outcome) == "skip")
                .count();
            assert!(skipped > 0 && effects(&dry.events) > 0, "{dry:?}");
        }
    }
}
