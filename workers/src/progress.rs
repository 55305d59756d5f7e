//! How far a worker's durable consumer had got, kept in PostgreSQL beside its inbox
//! (`orderflow_store::inbox::note_handled_through`): a worker has no checkpoint of its own, so
//! this is what lets a durable consumer lost with the broker resume where it was after a
//! restart instead of walking the whole log again.

use sqlx::PgPool;

/// The position up to which the worker `name` handled every event, as last noted.
pub(crate) async fn resume_after(pool: &PgPool, name: &str) -> Option<i64> {
    match orderflow_store::inbox::handled_through(pool, name).await {
        Ok(position) => position,
        Err(error) => {
            tracing::warn!(consumer = name, %error, "cannot read how far the consumer had got");
            None
        }
    }
}

/// Notes that the worker `name` handled every event up to `position`.
pub(crate) async fn note(pool: &PgPool, name: &str, position: i64) {
    if let Err(error) = orderflow_store::inbox::note_handled_through(pool, name, position).await {
        tracing::debug!(consumer = name, %error, "cannot note how far the consumer got");
    }
}
