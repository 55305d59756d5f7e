//! The workers' success step records against a real PostgreSQL: a `handled` step is written
//! in the transaction of the effect it reports, so it exists if and only if the effect was
//! committed. To fail a handler's transaction after its effect, a trigger refuses the step
//! insert of the World's own database; the effect must then be rolled back with it.

use orderflow_bus::handler::{Delivery, Handler, HandlerError};
use orderflow_domain::OrderCommand;
use orderflow_store::steps::{steps_of_events, StepOutcome, StepRecord};
use orderflow_testkit::fixture::sku;
use orderflow_testkit::{OrderFixture, World};
use orderflow_workers::inventory::{self, InventoryWorker};
use orderflow_workers::loyalty::{self, LoyaltyWorker};
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

async fn steps_of(pool: &PgPool, event_id: Uuid) -> Vec<StepRecord> {
    steps_of_events(pool, &[event_id]).await.unwrap()
}

fn handled(steps: &[StepRecord]) -> Vec<&StepRecord> {
    steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Handled)
        .collect()
}

#[tokio::test]
async fn an_inventory_reservation_and_its_handled_step_commit_together() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    inventory::set_stock(&pool, &sku("SKU-STEP"), 5)
        .await
        .unwrap();
    world
        .place_order(OrderFixture::new().line("SKU-STEP", 2))
        .await;
    world.number_events().await;
    let placed = world.events_after(0).await.remove(0);
    let worker = InventoryWorker::new(pool.clone());
    assert!(worker.records_own_steps());

    // The step insert fails after the stock was taken: the reservation goes with it.
    refuse_steps(&pool, true).await;
    let failed = worker.handle(&placed, Delivery::live(1)).await;
    assert!(matches!(failed, Err(HandlerError::Retry(_))), "{failed:?}");
    let stock = inventory::get_stock(&pool, &sku("SKU-STEP")).await.unwrap();
    assert_eq!(
        stock.map(|s| s.available),
        Some(5),
        "the reservation rolled back"
    );
    assert!(inventory::reservation(&pool, placed.order_id)
        .await
        .unwrap()
        .is_none());
    assert!(steps_of(&pool, placed.event_id).await.is_empty());

    // The redelivery commits both: one handled step, naming what was reserved.
    refuse_steps(&pool, false).await;
    worker.handle(&placed, Delivery::live(2)).await.unwrap();
    let stock = inventory::get_stock(&pool, &sku("SKU-STEP")).await.unwrap();
    assert_eq!(stock.map(|s| (s.available, s.reserved)), Some((3, 2)));
    let steps = steps_of(&pool, placed.event_id).await;
    let done = handled(&steps);
    assert_eq!(done.len(), 1, "{steps:?}");
    assert_eq!(done[0].consumer, "inventory");
    assert_eq!(done[0].attempt, 2);
    assert_eq!(done[0].effect.as_deref(), Some("reserved 2 x SKU-STEP"));

    // Once more (a redelivery after the ack was lost): already handled, no second handled.
    worker.handle(&placed, Delivery::live(3)).await.unwrap();
    let steps = steps_of(&pool, placed.event_id).await;
    assert_eq!(handled(&steps).len(), 1, "{steps:?}");
    assert_eq!(
        steps.last().map(|s| (s.outcome, s.effect.clone())),
        Some((StepOutcome::AlreadyHandled, None))
    );
    world.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_loyalty_entries_and_its_handled_steps_commit_together() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    let id = world
        .place_order(
            OrderFixture::new()
                .customer("c-steps")
                .priced_line("SKU-L", 1, 2599),
        )
        .await;
    world
        .command(
            id,
            OrderCommand::ConfirmOrder {
                reservation_id: Uuid::now_v7(),
            },
        )
        .await;
    world
        .command(
            id,
            OrderCommand::StartShipment {
                shipment_id: Uuid::now_v7(),
                carrier: "simulated".into(),
                tracking_number: "T-steps".into(),
            },
        )
        .await;
    world.number_events().await;
    let events = world.events_after(0).await;
    let batch: Vec<(_, _)> = events
        .iter()
        .map(|e| (e.clone(), Delivery::live(1)))
        .collect();
    let worker = LoyaltyWorker::new(pool.clone());
    assert!(worker.records_own_steps());
    let balance = || async {
        loyalty::account(&pool, "c-steps", 10)
            .await
            .unwrap()
            .balance
    };

    refuse_steps(&pool, true).await;
    for result in worker.handle_batch(&batch).await {
        assert!(matches!(result, Err(HandlerError::Retry(_))), "{result:?}");
    }
    assert_eq!(balance().await, 0, "the entries rolled back with the steps");
    for event in &events {
        assert!(steps_of(&pool, event.event_id).await.is_empty());
    }

    refuse_steps(&pool, false).await;
    for result in worker.handle_batch(&batch).await {
        result.unwrap();
    }
    assert_eq!(balance().await, 25);
    let shipped = &events[2];
    assert_eq!(shipped.event_type, "ShipmentStarted");
    let steps = steps_of(&pool, shipped.event_id).await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].outcome, StepOutcome::Handled);
    let effect = steps[0].effect.as_deref().unwrap_or_default();
    assert!(
        effect.starts_with("points +25 for customer c-steps"),
        "{effect}"
    );
    // The events that earn nothing are handled too, with no effect.
    for event in &events[..2] {
        let steps = steps_of(&pool, event.event_id).await;
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.outcome, s.effect.clone()))
                .collect::<Vec<_>>(),
            vec![(StepOutcome::Handled, None)]
        );
    }
    world.cleanup().await;
}
