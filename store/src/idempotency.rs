//! Idempotency keys for placing orders: the first request with a key decides the order id;
//! a retry with the same body gets that order back, another body is refused.

use sqlx::PgPool;
use uuid::Uuid;

/// What a key says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new: place the order under this id.
    New(Uuid),
    /// The key was used with the same body: the order is (or is being) placed under this id.
    Replay(Uuid),
    /// The key was used with another body.
    Mismatch,
}

/// Claims `key` for `body`, proposing `order_id`. Two concurrent claims of one key serialize
/// on the primary key, so exactly one of them gets [`KeyClaim::New`].
///
/// # Errors
/// The database error.
pub async fn claim(
    pool: &PgPool,
    key: &str,
    body: &serde_json::Value,
    order_id: Uuid,
) -> Result<KeyClaim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (idempotency_key, request_body, order_id)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(key)
    .bind(sqlx::types::Json(body))
    .bind(order_id)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(KeyClaim::New(order_id));
    }
    let (same_body, existing): (bool, Uuid) = sqlx::query_as(
        "SELECT request_body = $2, order_id FROM idempotency_keys WHERE idempotency_key = $1",
    )
    .bind(key)
    .bind(sqlx::types::Json(body))
    .fetch_one(pool)
    .await?;
    Ok(if same_body {
        KeyClaim::Replay(existing)
    } else {
        KeyClaim::Mismatch
    })
}
