//! A projection's handled step records are written in the transaction that folds the batch:
//! when that transaction fails after the rows were written, neither the rows nor the steps
//! exist; when it commits, each event has exactly one handled step saying what it changed.

use std::sync::Arc;

use orderflow_bus::{Delivery, Handler, HandlerError};
use orderflow_domain::OrderCommand;
use orderflow_projections::analytics::AnalyticsProjection;
use orderflow_projections::order_summary::OrderSummaryProjection;
use orderflow_projections::projection::checkpoint;
use orderflow_projections::ProjectionHandler;
use orderflow_store::steps::{steps_of_events, StepOutcome};
use orderflow_testkit::{OrderFixture, World};
use sqlx::PgPool;
use uuid::Uuid;

/// Makes every step insert of `pool`'s database fail (`refuse`) or succeed again.
async fn refuse_steps(pool: &PgPool, refuse: bool) {
    let statements: &[&str] = if refuse {
        &[
            "CREATE OR REPLACE FUNCTION refuse_steps() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'step records refused by the test'; END $$",
            "CREATE TRIGGER refuse_steps BEFORE INSERT ON consumer_steps
             FOR EACH ROW EXECUTE FUNCTION refuse_steps()",
        ]
    } else {
        &["DROP TRIGGER refuse_steps ON consumer_steps"]
    };
    for statement in statements {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}

async fn rows(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_folded_batch_and_its_handled_steps_commit_together() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    let id = world
        .place_order(OrderFixture::new().priced_line("SKU-P", 2, 1299))
        .await;
    world
        .command(
            id,
            OrderCommand::ConfirmOrder {
                reservation_id: Uuid::now_v7(),
            },
        )
        .await;
    world.number_events().await;
    let events = world.events_after(0).await;
    assert_eq!(events.len(), 2);
    let batch: Vec<(_, _)> = events
        .iter()
        .map(|e| (e.clone(), Delivery::live(1)))
        .collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let analytics = ProjectionHandler::new(pool.clone(), Arc::new(AnalyticsProjection));
    let summary = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    assert!(analytics.records_own_steps());

    // The batch's rows are written, then its steps are refused: all of it rolls back (the
    // one-by-one fallback fails the same way).
    refuse_steps(&pool, true).await;
    for result in analytics.handle_batch(&batch).await {
        assert!(matches!(result, Err(HandlerError::Retry(_))), "{result:?}");
    }
    assert_eq!(rows(&pool, "analytics_orders").await, 0);
    let at = checkpoint(&pool, "analytics").await.unwrap();
    assert_eq!(at.map_or(0, |c| c.position), 0);
    assert!(steps_of_events(&pool, &ids).await.unwrap().is_empty());

    refuse_steps(&pool, false).await;
    for handler in [&analytics, &summary] {
        for result in handler.handle_batch(&batch).await {
            result.unwrap();
        }
    }
    assert_eq!(rows(&pool, "analytics_orders").await, 1);
    let steps = steps_of_events(&pool, &ids).await.unwrap();
    let of = |consumer: &str, event: Uuid| -> Vec<(StepOutcome, Option<String>)> {
        steps
            .iter()
            .filter(|s| s.consumer == consumer && s.event_id == event)
            .map(|s| (s.outcome, s.effect.clone()))
            .collect()
    };
    assert_eq!(
        of("analytics", ids[0]),
        vec![(StepOutcome::Handled, Some("1 order placed".into()))]
    );
    assert_eq!(
        of("analytics", ids[1]),
        vec![(
            StepOutcome::Handled,
            Some("revenue +25.98 EUR, 1 order confirmed".into())
        )]
    );
    assert_eq!(
        of("order-summary", ids[0]),
        vec![(
            StepOutcome::Handled,
            Some("placed: 1 line(s), total 25.98 EUR".into())
        )]
    );
    assert_eq!(
        of("order-summary", ids[1]),
        vec![(
            StepOutcome::Handled,
            Some("status placed -> confirmed".into())
        )]
    );

    // A redelivery of the batch folds nothing again: already handled, in its own commit.
    let again: Vec<(_, _)> = events
        .iter()
        .map(|e| (e.clone(), Delivery::live(2)))
        .collect();
    for result in analytics.handle_batch(&again).await {
        assert!(result.unwrap().is_empty());
    }
    let steps = steps_of_events(&pool, &ids).await.unwrap();
    let analytics_steps: Vec<StepOutcome> = steps
        .iter()
        .filter(|s| s.consumer == "analytics")
        .map(|s| s.outcome)
        .collect();
    assert_eq!(
        analytics_steps,
        vec![
            StepOutcome::Handled,
            StepOutcome::Handled,
            StepOutcome::AlreadyHandled,
            StepOutcome::AlreadyHandled
        ]
    );
    world.cleanup().await;
}
