//! The inbox: a consumer claims an event id inside the transaction of its effect, so a
//! redelivered message finds the claim and changes nothing. Beside it, how far each consumer
//! had got ([`note_handled_through`]), where a lost durable consumer resumes.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Records that `consumer` handled `event_id`. Returns `true` when this call made the claim,
/// `false` when the event was handled before (the caller then skips its effect).
///
/// # Errors
/// The database error.
pub async fn claim(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether `consumer` has handled `event_id` (a read, changing nothing: what a replay's dry
/// run consults to say that the real run would skip the event).
///
/// # Errors
/// The database error.
pub async fn is_claimed<'c>(
    executor: impl PgExecutor<'c>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)")
        .bind(consumer)
        .bind(event_id)
        .fetch_one(executor)
        .await
}

/// Notes that `consumer` has handled (or parked) every event up to `position`; a lower
/// position than the one noted changes nothing.
///
/// # Errors
/// The database error.
pub async fn note_handled_through<'c>(
    executor: impl PgExecutor<'c>,
    consumer: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_floors (consumer, position) VALUES ($1, $2)
         ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, updated_at = now()
         WHERE consumer_floors.position < excluded.position",
    )
    .bind(consumer)
    .bind(position)
    .execute(executor)
    .await?;
    Ok(())
}

/// The position up to which `consumer` handled every event, as last noted.
///
/// # Errors
/// The database error.
pub async fn handled_through<'c>(
    executor: impl PgExecutor<'c>,
    consumer: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT position FROM consumer_floors WHERE consumer = $1")
        .bind(consumer)
        .fetch_optional(executor)
        .await
}
