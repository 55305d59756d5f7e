//! What a consumer implements: a name (its durable consumer) and a `handle` for one event,
//! or a `handle_batch` for many at once.
//!
//! Handlers are at-least-once: the same event may arrive again, after later ones, or on
//! another process. Each handler makes its effect idempotent (the inbox, see
//! `orderflow_store::inbox`) and checks the order's sequence instead of assuming arrival order.

use async_trait::async_trait;
use orderflow_store::EventEnvelope;

/// How an event is being delivered to a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// 1 for the first delivery, then counting redeliveries.
    pub attempt: u64,
    /// Report what would be done, change nothing (replay `--dry-run`).
    pub dry_run: bool,
    /// Apply the effect even when the inbox says it was handled (replay `--force`).
    pub ignore_inbox: bool,
}

impl Delivery {
    /// A normal delivery from the stream.
    pub fn live(attempt: u64) -> Self {
        Self {
            attempt,
            dry_run: false,
            ignore_inbox: false,
        }
    }
}

/// What a handler did (or, on a dry run, would do), one readable line per effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects(pub Vec<String>);

impl Effects {
    /// No effects.
    pub fn none() -> Self {
        Self::default()
    }

    /// A single effect.
    pub fn one(effect: impl Into<String>) -> Self {
        Self(vec![effect.into()])
    }

    /// Adds one effect line.
    pub fn push(&mut self, effect: impl Into<String>) {
        self.0.push(effect.into());
    }

    /// True when the handler did nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a handler did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (a database or network hiccup): retried with backoff, then parked.
    #[error("{0}")]
    Retry(String),
    /// Will never work (a malformed event, a refused request): parked at once.
    #[error("{0}")]
    GiveUp(String),
}

impl HandlerError {
    /// A [`HandlerError::Retry`] carrying `error`'s text.
    pub fn retry(error: impl std::fmt::Display) -> Self {
        Self::Retry(error.to_string())
    }

    /// A [`HandlerError::GiveUp`] carrying `error`'s text.
    pub fn give_up(error: impl std::fmt::Display) -> Self {
        Self::GiveUp(error.to_string())
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retry(format!("database: {error}"))
    }
}

/// A consumer of order events.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The durable consumer's name (`inventory`, `notifications`, ...).
    fn name(&self) -> &str;

    /// How many messages may be delivered and not yet acked at once (the durable consumer's
    /// `max_ack_pending`).
    fn max_ack_pending(&self) -> i64 {
        1024
    }

    /// True when the runtime should hand this handler whole batches through
    /// [`Handler::handle_batch`], one batch at a time, instead of single events handled
    /// concurrently. Suits handlers that fold in position order (projections).
    fn batched(&self) -> bool {
        false
    }

    /// How many batches of a [`Handler::batched`] handler one process runs at once (default
    /// 1: one batch at a time, in delivery order, as projections need). More than one suits a
    /// handler whose batches wait on a partner (a carrier, a mail service): the runtime keeps
    /// pulling while batches run, forms each new batch from messages of orders that have
    /// nothing in flight (each order's messages one after another, in delivery order), and
    /// settles each batch when it is done, so a slow call holds up only its own batch.
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// The position up to which this consumer has handled every event, when it keeps such a
    /// record (a projection's checkpoint). A durable consumer that is gone (deleted, or lost
    /// with the stream) is created again to resume after it instead of at the start of the
    /// log. `None` (the default): the runtime relies on the ack floor it last saw.
    async fn resume_after(&self) -> Option<i64> {
        None
    }

    /// Told every few seconds while the consumer runs: every event up to `position` is
    /// handled (or parked). A handler without a record of its own notes it durably here, to
    /// answer [`Handler::resume_after`] after a restart. The default does nothing.
    async fn note_handled_through(&self, _position: i64) {}

    /// Handles events delivered together, in the order the stream delivered them: one
    /// result per event, in the same order. Called instead of [`Handler::handle`] when
    /// [`Handler::batched`]; the default handles the events one after another.
    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        handle_each(self, events).await
    }

    /// Handles one event.
    ///
    /// # Errors
    /// [`HandlerError::Retry`] to be retried with backoff, [`HandlerError::GiveUp`] to be
    /// parked in the dead-letter stream at once.
    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError>;
}

/// Handles `events` one after another with [`Handler::handle`]: the default batch, and the
/// fallback of batched handlers for what they do not take as a batch (replays, say).
pub async fn handle_each<H: Handler + ?Sized>(
    handler: &H,
    events: &[(EventEnvelope, Delivery)],
) -> Vec<Result<Effects, HandlerError>> {
    let mut results = Vec::with_capacity(events.len());
    for (event, delivery) in events {
        results.push(handler.handle(event, *delivery).await);
    }
    results
}
