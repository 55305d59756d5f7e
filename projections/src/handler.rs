//! [`ProjectionHandler`]: runs a [`Projection`] as a durable consumer of the bus's consumer
//! runtime. It is a batched handler: the runtime hands it what has been delivered (one event
//! when it keeps up, up to a pull's worth when it has a backlog) and it folds the batch in
//! one transaction with the checkpoint ([`apply_live_batch`]), in position order.
//!
//! It keeps a high-water mark and treats a position gap as "an earlier event is missing"
//! (docs/DESIGN.md, guarantee 7, order-independent handlers): on a first delivery the event
//! and the ones after it answer [`HandlerError::Retry`], so they come back later, after the
//! missing one. When a message comes back and the gap is still there, the missing event is
//! not coming (it was parked in the dead-letter stream, or lost by the broker): the handler
//! then folds the missing events from the event log itself, so one parked message cannot
//! stall the projection forever. When the batch's transaction fails, the events are folded
//! one by one ([`apply_live`]), so one unreadable event fails alone.

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_bus::{handle_each, Delivery, Effects, Handler, HandlerError};
use orderflow_store::EventEnvelope;
use sqlx::PgPool;

use crate::projection::{apply_live, apply_live_batch, LiveOutcome, Projection, ProjectionError};

/// A projection behind the [`Handler`] trait.
#[derive(Clone)]
pub struct ProjectionHandler {
    pool: PgPool,
    projection: Arc<dyn Projection>,
}

impl ProjectionHandler {
    /// The handler folding into `projection`'s live tables in `pool`; its consumer name is
    /// the projection's name.
    pub fn new(pool: PgPool, projection: Arc<dyn Projection>) -> Self {
        Self { pool, projection }
    }

    /// The projection this handler folds into.
    pub fn projection(&self) -> &Arc<dyn Projection> {
        &self.projection
    }
}

#[async_trait]
impl Handler for ProjectionHandler {
    fn name(&self) -> &str {
        self.projection.name()
    }

    fn batched(&self) -> bool {
        true
    }

    /// The checkpoint: every event up to it is folded.
    async fn resume_after(&self) -> Option<i64> {
        crate::projection::checkpoint(&self.pool, self.projection.name())
            .await
            .ok()
            .flatten()
            .map(|checkpoint| checkpoint.position)
    }

    /// Folds the batch in one transaction; falls back to one event at a time when that fails
    /// (or for a dry run), so the failure is the failing event's alone.
    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        if events.len() > 1 && events.iter().all(|(_, d)| !d.dry_run) {
            let input: Vec<(&EventEnvelope, bool)> =
                events.iter().map(|(e, d)| (e, d.attempt > 1)).collect();
            match apply_live_batch(&self.pool, self.projection.as_ref(), &input).await {
                Ok(outcomes) => {
                    return events
                        .iter()
                        .zip(outcomes)
                        .map(|((event, _), outcome)| self.result_of(event, Ok(outcome)))
                        .collect()
                }
                Err(error) => tracing::warn!(name = self.projection.name(), %error,
                    events = events.len(), "folding the batch failed; folding its events one by one"),
            }
        }
        handle_each(self, events).await
    }

    /// Folds the event into the live tables once. `delivery.ignore_inbox` (replay `--force`)
    /// is ignored: re-folding an event a projection already holds would count it twice; a
    /// rebuild is the way to recompute a projection.
    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        // A gap on a redelivery means the missing event is not coming: heal from the log.
        let heal_gaps = delivery.attempt > 1;
        let outcome = apply_live(
            &self.pool,
            self.projection.as_ref(),
            event,
            delivery.dry_run,
            heal_gaps,
        )
        .await;
        self.result_of(event, outcome)
    }
}

impl ProjectionHandler {
    /// What the runtime is told of one event's fold.
    fn result_of(
        &self,
        event: &EventEnvelope,
        outcome: Result<LiveOutcome, ProjectionError>,
    ) -> Result<Effects, HandlerError> {
        let name = self.projection.name();
        let what = format!("{} of order {}", event.event_type, event.order_id);
        match outcome {
            Ok(LiveOutcome::Applied { position }) => Ok(Effects::one(format!(
                "{name}: applied {what} at position {position}"
            ))),
            Ok(LiveOutcome::Healed { position, from_log }) => Ok(Effects::one(format!(
                "{name}: applied {what} at position {position} after folding {from_log} \
                 missing event(s) from the log"
            ))),
            Ok(LiveOutcome::WouldApply { position }) => Ok(Effects::one(format!(
                "{name}: would apply {what} at position {position}"
            ))),
            Ok(LiveOutcome::AlreadyApplied { .. }) => Ok(Effects::none()),
            Ok(LiveOutcome::Gap {
                position,
                checkpoint,
            }) => {
                tracing::debug!(
                    name,
                    position,
                    checkpoint,
                    "projection gap, asking for a retry"
                );
                Err(HandlerError::Retry(format!(
                    "{name}: event at position {position} arrived before position {} \
                     (checkpoint {checkpoint})",
                    checkpoint + 1
                )))
            }
            Ok(LiveOutcome::VersionMismatch { stored, code }) => Err(HandlerError::Retry(format!(
                "{name}: live tables are version {stored}, the code is version {code}; \
                 waiting for the rebuild to swap them in"
            ))),
            Err(ProjectionError::Unnumbered(id)) => Err(HandlerError::GiveUp(format!(
                "{name}: event {id} has no global position"
            ))),
            Err(error) => Err(HandlerError::Retry(format!("{name}: {error}"))),
        }
    }
}
