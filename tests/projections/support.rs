//! Shared helpers: a fresh database per test, orders with varied lives placed through the
//! real store, the log numbered as the relay would, and a live projection driven the way the
//! consumer runtime drives it (one event at a time, in position order).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::{stream, StreamExt};
use orderflow_bus::{Delivery, Handler};
use orderflow_domain::values::{Currency, Email, Money, OrderLine, Quantity, ShippingAddress, Sku};
use orderflow_domain::{OrderCommand, PlaceOrder};
use orderflow_projections::{Projection, ProjectionHandler};
use orderflow_store::{log, CommandError, CommandMetadata, EventEnvelope, OrderStore};
use orderflow_testkit::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

pub struct World {
    pub db: TestDatabase,
    pub store: OrderStore,
}

impl World {
    pub async fn new() -> Self {
        let db = TestDatabase::fresh().await;
        let store = OrderStore::new(db.pool.clone());
        Self { db, store }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }
}

/// How an order's life goes, chosen from its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Placed,
    Confirmed,
    Rejected,
    CancelledPlaced,
    CancelledConfirmed,
    Shipped,
    Delivered,
}

impl Life {
    pub fn of(i: usize) -> Self {
        match (i * 7 + 3) % 9 {
            0 => Life::Placed,
            1 | 2 => Life::Confirmed,
            3 => Life::Rejected,
            4 => Life::CancelledPlaced,
            5 => Life::CancelledConfirmed,
            6 | 7 => Life::Shipped,
            _ => Life::Delivered,
        }
    }
}

pub fn customer(i: usize) -> String {
    format!("c-{}", i % 13)
}

/// A valid `PlaceOrder` with 1 to 3 lines over 5 SKUs, in EUR or USD, placed at `placed_at`.
pub fn place_command(id: Uuid, i: usize, placed_at: DateTime<Utc>) -> OrderCommand {
    let lines = (0..=(i % 3))
        .map(|l| OrderLine {
            sku: Sku::parse(&format!("SKU-{}", (i + l * 2) % 5)).unwrap(),
            quantity: Quantity::parse(((i + l) % 4 + 1) as i64).unwrap(),
            unit_price: Money::parse(((i * 37 + l * 101) % 5000 + 99) as i64).unwrap(),
        })
        .collect();
    OrderCommand::PlaceOrder(
        PlaceOrder::new(
            id,
            &customer(i),
            Email::parse("ada@example.com").unwrap(),
            Currency::parse(if i % 4 == 0 { "USD" } else { "EUR" }).unwrap(),
            lines,
            ShippingAddress::parse("Ada", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
            placed_at,
        )
        .unwrap(),
    )
}

/// A fixed base time, so days and ordering are reproducible.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap()
}

/// Places order number `i` and takes it through its [`Life`]. Returns its id.
pub async fn live_an_order(store: &OrderStore, i: usize, placed_at: DateTime<Utc>) -> Uuid {
    let id = Uuid::now_v7();
    let meta = CommandMetadata::from_request(&format!("req-{i}"));
    let run = |command: OrderCommand| {
        let meta = meta.clone();
        async move {
            // The PostgreSQL server is shared with every other test binary: ride out a
            // moment without free connections instead of failing the seeding.
            for attempt in 1.. {
                match store.execute_retrying(id, command.clone(), &meta, 5).await {
                    Ok(()) => return,
                    Err(CommandError::Store(error)) if attempt < 20 => {
                        eprintln!("seeding order {i}: {error}; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(error) => panic!("command refused: {error}"),
                }
            }
        }
    };
    run(place_command(id, i, placed_at)).await;
    let life = Life::of(i);
    let confirm = OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(i as u128 + 1),
    };
    let cancel = OrderCommand::CancelOrder {
        reason: "changed my mind".into(),
        cancelled_by: "customer".into(),
    };
    match life {
        Life::Placed => {}
        Life::Rejected => {
            run(OrderCommand::RejectOrder {
                reason: "out of stock".into(),
                unavailable_skus: vec![Sku::parse("SKU-1").unwrap()],
            })
            .await
        }
        Life::CancelledPlaced => run(cancel).await,
        Life::Confirmed | Life::CancelledConfirmed | Life::Shipped | Life::Delivered => {
            run(confirm).await;
            if life == Life::CancelledConfirmed {
                run(cancel).await;
            }
            if matches!(life, Life::Shipped | Life::Delivered) {
                run(OrderCommand::StartShipment {
                    shipment_id: Uuid::from_u128(1_000_000 + i as u128),
                    carrier: "simulated".into(),
                    tracking_number: format!("TRK-{i}"),
                })
                .await;
            }
            if life == Life::Delivered {
                run(OrderCommand::MarkDelivered).await;
            }
        }
    }
    id
}

/// Places orders `range` concurrently (8 at a time), order `i` placed `i` minutes after the
/// base time (several per day, over several days). Returns their ids.
pub async fn live_orders(store: &OrderStore, range: std::ops::Range<usize>) -> Vec<Uuid> {
    stream::iter(range)
        .map(|i| live_an_order(store, i, base_time() + Duration::minutes(i as i64 * 7)))
        .buffer_unordered(8)
        .collect()
        .await
}

/// Numbers every committed event, as the relay does before publishing.
pub async fn number(pool: &PgPool) -> i64 {
    while log::assign_positions(pool, 10_000).await.unwrap() > 0 {}
    log::head_position(pool).await.unwrap()
}

/// Every numbered event after `after`, in position order.
pub async fn events_after(pool: &PgPool, after: i64) -> Vec<EventEnvelope> {
    let mut all = Vec::new();
    let mut next = after;
    loop {
        let batch = log::events_after(pool, next, None, 1_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.position.unwrap();
        all.extend(batch);
    }
    all
}

/// Delivers every event after the projection's checkpoint to its handler, in order, as the
/// runtime does with one message in flight. Returns how many were delivered.
pub async fn drain(pool: &PgPool, handler: &ProjectionHandler) -> usize {
    let name = handler.projection().name();
    let at = orderflow_projections::projection::checkpoint(pool, name)
        .await
        .unwrap()
        .map_or(0, |c| c.position);
    let events = events_after(pool, at).await;
    for event in &events {
        handler
            .handle(event, Delivery::live(1))
            .await
            .unwrap_or_else(|e| panic!("{name} failed at {:?}: {e}", event.position));
    }
    events.len()
}

pub fn handlers(pool: &PgPool) -> Vec<ProjectionHandler> {
    orderflow_projections::all()
        .into_iter()
        .map(|p: Arc<dyn Projection>| ProjectionHandler::new(pool.clone(), p))
        .collect()
}

pub fn no_progress(_: orderflow_projections::Progress) {}
