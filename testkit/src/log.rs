//! The event log as the relay and the projection consumers see it: numbering committed
//! events, reading them back in position order, and draining them into projections one event
//! at a time (the single-event path the batch path falls back to).

use std::sync::Arc;

use orderflow_bus::{Delivery, Handler};
use orderflow_projections::{Projection, ProjectionHandler};
use orderflow_store::{log, EventEnvelope};
use sqlx::PgPool;

/// Numbers every committed event, as the relay does before publishing; returns the head.
///
/// # Panics
/// When the database fails.
pub async fn number_events(pool: &PgPool) -> i64 {
    while log::assign_positions(pool, 10_000).await.unwrap() > 0 {}
    log::head_position(pool).await.unwrap()
}

/// Every numbered event after position `after`, in position order.
///
/// # Panics
/// When the database fails.
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

/// Delivers every numbered event after the projection's checkpoint to its handler, in order.
/// Returns how many were delivered.
///
/// # Panics
/// When the handler fails, naming the projection and the position.
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

/// A handler for every projection.
pub fn handlers(pool: &PgPool) -> Vec<ProjectionHandler> {
    orderflow_projections::all()
        .into_iter()
        .map(|p: Arc<dyn Projection>| ProjectionHandler::new(pool.clone(), p))
        .collect()
}

/// Numbers the log and drains it into every projection.
///
/// # Panics
/// As [`drain`].
pub async fn project(pool: &PgPool) {
    number_events(pool).await;
    for handler in handlers(pool) {
        drain(pool, &handler).await;
    }
}

/// A progress callback that ignores progress, for rebuilds and replays.
pub fn no_progress(_: orderflow_projections::Progress) {}
