//! [`ProjectionHandler`]: runs a [`Projection`] as a durable consumer of the bus's consumer
//! runtime. It keeps a high-water mark, so it asks for one message in flight
//! (`max_ack_pending() == 1`; docs/DESIGN.md, guarantee 7, order-independent handlers) and treats a position gap as "an earlier
//! event is missing": on a first delivery it answers [`HandlerError::Retry`] so the message
//! comes back later, after the missing one. When the same message comes back and the gap is
//! still there, the missing event is not coming (it was parked in the dead-letter stream, or
//! lost by the broker): the handler then folds the missing events from the event log itself,
//! so one parked message cannot stall the projection forever.

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_bus::{Delivery, Effects, Handler, HandlerError};
use orderflow_store::EventEnvelope;
use sqlx::PgPool;

use crate::projection::{apply_live, LiveOutcome, Projection, ProjectionError};

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

    fn max_ack_pending(&self) -> i64 {
        1
    }

    /// Folds the event into the live tables once. `delivery.ignore_inbox` (replay `--force`)
    /// is ignored: re-folding an event a projection already holds would count it twice; a
    /// rebuild is the way to recompute a projection.
    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        let name = self.projection.name();
        let what = format!("{} of order {}", event.event_type, event.order_id);
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
