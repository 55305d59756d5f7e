//! The inbox: a consumer claims an event id inside the transaction of its effect, so a
//! redelivered message finds the claim and changes nothing.

use sqlx::PgConnection;
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
