//! Step records: what each consumer did with each event it received (when it got it, which
//! attempt, the outcome, how long the handler ran, a one-line effect or the error), and when
//! the relay published each batch of positions. Together with the event log they are an
//! order's trace (`orderflow trace`, `GET /v1/admin/orders/{id}/trace`).
//!
//! The consumer runtime writes the steps of a whole batch with one statement
//! ([`record`]); the relay writes one publication row per acknowledged batch, with its
//! checkpoint. Both are kept for a retention time and then removed by [`remove_expired`],
//! which the relay holding the relay lock runs in the background.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool, Row};
use utoipa::ToSchema;
use uuid::Uuid;

/// What became of one delivery of an event to a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Handled: the effect (if any) is done.
    Handled,
    /// Delivered again after it had been handled: the inbox or checkpoint skipped it.
    AlreadyHandled,
    /// Failed; it comes back after a delay.
    Retrying,
    /// Given up on and parked in the dead-letter stream.
    DeadLettered,
    /// Sent back from the dead-letter stream by an operator (the attempts start again).
    Redriven,
    /// Not seen by the consumer yet (only in traces: no record exists).
    Pending,
}

impl StepOutcome {
    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::AlreadyHandled => "already_handled",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Redriven => "redriven",
            Self::Pending => "pending",
        }
    }

    /// The outcome stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "handled" => Self::Handled,
            "already_handled" => Self::AlreadyHandled,
            "retrying" => Self::Retrying,
            "dead_lettered" => Self::DeadLettered,
            "redriven" => Self::Redriven,
            "pending" => Self::Pending,
            _ => return None,
        })
    }
}

impl std::fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step to record: a consumer's attempt at one event and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    /// The event.
    pub event_id: Uuid,
    /// The delivery count of the attempt (1 for the first).
    pub attempt: i64,
    /// What came of it. [`StepOutcome::Handled`] is stored as
    /// [`StepOutcome::AlreadyHandled`] when the consumer has a handled step for the event
    /// (recorded before, or earlier in the same call).
    pub outcome: StepOutcome,
    /// When the consumer started on it.
    pub started_at: DateTime<Utc>,
    /// How long the handler ran, in milliseconds.
    pub duration_ms: i64,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// A one-line summary of what the handler did.
    pub effect: Option<String>,
}

/// A recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// The consumer.
    pub consumer: String,
    /// The event.
    pub event_id: Uuid,
    /// The delivery count of the attempt.
    pub attempt: i64,
    /// What came of it.
    pub outcome: StepOutcome,
    /// When the consumer started on it.
    pub started_at: DateTime<Utc>,
    /// How long the handler ran, in milliseconds.
    pub duration_ms: i64,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// What the handler did.
    pub effect: Option<String>,
}

/// `text` with every e-mail address masked to its first character and its domain
/// (`ada@example.com` reads `a***@example.com`).
pub fn mask_emails(text: &str) -> String {
    let is_local = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut local = i;
            while local > start && is_local(chars[local - 1]) {
                local -= 1;
            }
            let domain_ok = chars.get(i + 1).is_some_and(|c| c.is_alphanumeric());
            if local < i && domain_ok {
                out.extend(&chars[start..local]);
                out.push(chars[local]);
                out.push_str("***@");
                let mut end = i + 1;
                while end < chars.len() && is_domain(chars[end]) {
                    end += 1;
                }
                out.extend(&chars[i + 1..end]);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&chars[start..]);
    out
}

/// The statement of [`record`]: `$1` the consumer, `$2..=$8` the steps' columns as arrays.
///
/// Whether a consumer handled an event before is looked up by one probe of
/// `consumer_steps_event` per step, in a `LATERAL` subquery with `LIMIT 1`: the planner can only
/// run it as a nested loop over the batch. Written as an `EXISTS` in the select list, it was
/// free to hash the consumer's whole history instead (a sequential scan of `consumer_steps` on
/// every call, chosen while the statistics said the table was small), a cost that grew with
/// every order. `store/tests/plans.rs` checks the plan.
pub const RECORD_STEPS: &str = "INSERT INTO consumer_steps
        (consumer, event_id, attempt, outcome, started_at, duration_ms, error, effect)
 SELECT $1, u.event_id, u.attempt,
        CASE WHEN u.outcome = 'handled' AND (
                  count(*) FILTER (WHERE u.outcome = 'handled')
                      OVER (PARTITION BY u.event_id ORDER BY u.i) > 1
                  OR h.handled IS NOT NULL)
             THEN 'already_handled' ELSE u.outcome END,
        u.started_at, u.duration_ms, u.error, u.effect
   FROM UNNEST($2::uuid[], $3::bigint[], $4::text[], $5::timestamptz[], $6::bigint[],
               $7::text[], $8::text[])
        WITH ORDINALITY
        AS u(event_id, attempt, outcome, started_at, duration_ms, error, effect, i)
   LEFT JOIN LATERAL (
        SELECT true AS handled FROM consumer_steps s
         WHERE s.event_id = u.event_id AND s.consumer = $1 AND s.outcome = 'handled'
         LIMIT 1) h ON true
  ORDER BY u.i";

/// The statement of [`steps_of_events`]: `$1` the event ids.
pub const STEPS_OF_EVENTS: &str =
    "SELECT consumer, event_id, attempt, outcome, started_at, duration_ms, error, effect
       FROM consumer_steps WHERE event_id = ANY($1) ORDER BY seq";

/// The statement of [`published_at`]: `$1` the positions, `$2` the stream or NULL.
pub const PUBLISHED_AT: &str = "SELECT u.i, r.published_at
       FROM UNNEST($1::bigint[]) WITH ORDINALITY AS u(position, i)
       LEFT JOIN LATERAL (
            SELECT p.published_at, p.from_position FROM relay_publications p
             WHERE ($2::text IS NULL OR p.stream = $2) AND p.to_position >= u.position
             ORDER BY p.to_position LIMIT 1) r ON r.from_position <= u.position
      ORDER BY u.i";

/// Records `steps` of `consumer` with one statement (nothing when empty). E-mail addresses
/// in effects and errors are masked ([`mask_emails`]).
///
/// # Errors
/// The database error.
pub async fn record<'e>(
    db: impl PgExecutor<'e>,
    consumer: &str,
    steps: &[NewStep],
) -> Result<(), sqlx::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<Uuid> = steps.iter().map(|s| s.event_id).collect();
    let attempts: Vec<i64> = steps.iter().map(|s| s.attempt).collect();
    let outcomes: Vec<&str> = steps.iter().map(|s| s.outcome.as_str()).collect();
    let started: Vec<DateTime<Utc>> = steps.iter().map(|s| s.started_at).collect();
    let durations: Vec<i64> = steps.iter().map(|s| s.duration_ms).collect();
    // Step records outlive a forgotten customer's data key: no e-mail address goes in whole.
    let errors: Vec<Option<String>> = steps
        .iter()
        .map(|s| s.error.as_deref().map(mask_emails))
        .collect();
    let effects: Vec<Option<String>> = steps
        .iter()
        .map(|s| s.effect.as_deref().map(mask_emails))
        .collect();
    sqlx::query(RECORD_STEPS)
        // A plan per call, for the arrays it gets (see `crate::log::events_of_orders`).
        .persistent(false)
        .bind(consumer)
        .bind(&event_ids)
        .bind(&attempts)
        .bind(&outcomes)
        .bind(&started)
        .bind(&durations)
        .bind(&errors)
        .bind(&effects)
        .execute(db)
        .await?;
    Ok(())
}

/// Every recorded step of the events `event_ids`, in the order they were recorded.
///
/// # Errors
/// The database error.
pub async fn steps_of_events<'e>(
    db: impl PgExecutor<'e>,
    event_ids: &[Uuid],
) -> Result<Vec<StepRecord>, sqlx::Error> {
    let rows = sqlx::query(STEPS_OF_EVENTS)
        .persistent(false)
        .bind(event_ids)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            Ok(StepRecord {
                consumer: row.try_get("consumer")?,
                event_id: row.try_get("event_id")?,
                attempt: row.try_get("attempt")?,
                outcome: StepOutcome::parse(&outcome).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown step outcome {outcome:?}").into())
                })?,
                started_at: row.try_get("started_at")?,
                duration_ms: row.try_get("duration_ms")?,
                error: row.try_get("error")?,
                effect: row.try_get("effect")?,
            })
        })
        .collect()
}

/// Notes that the relay published positions `from..=to` to `stream` now, and moves its
/// checkpoint to `to`, in one statement.
///
/// # Errors
/// The database error.
pub async fn note_published<'e>(
    db: impl PgExecutor<'e>,
    stream: &str,
    from: i64,
    to: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH published AS (
             INSERT INTO relay_publications (stream, from_position, to_position)
             VALUES ($1, $2, $3))
         INSERT INTO relay_checkpoints (stream, position) VALUES ($1, $3)
         ON CONFLICT (stream) DO UPDATE SET position = excluded.position, updated_at = now()",
    )
    .bind(stream)
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(())
}

/// When each of `positions` was published (to `stream`, or to any stream), where a
/// publication row still says so; in the order given. The relay's batches follow its
/// checkpoint and do not overlap, so the first batch ending at or after a position is the one
/// that holds it (one index probe on `(stream, to_position)`).
///
/// # Errors
/// The database error.
pub async fn published_at<'e>(
    db: impl PgExecutor<'e>,
    stream: Option<&str>,
    positions: &[i64],
) -> Result<Vec<Option<DateTime<Utc>>>, sqlx::Error> {
    let rows = sqlx::query(PUBLISHED_AT)
        .persistent(false)
        .bind(positions)
        .bind(stream)
        .fetch_all(db)
        .await?;
    rows.iter().map(|row| row.try_get("published_at")).collect()
}

/// What [`remove_expired`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Step records.
    pub steps: u64,
    /// Publication rows.
    pub publications: u64,
}

/// Removes the step records and publication rows recorded before `before`, `batch` rows
/// per statement (so no statement holds many locks or runs long), until none is left.
///
/// # Errors
/// The database error; what was removed before it stays removed.
pub async fn remove_expired(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Removed, sqlx::Error> {
    let batch = batch.max(1);
    let mut removed = Removed::default();
    for (table, column, count) in [
        ("consumer_steps", "recorded_at", &mut removed.steps),
        (
            "relay_publications",
            "published_at",
            &mut removed.publications,
        ),
    ] {
        loop {
            let deleted = sqlx::query(&format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))"
            ))
            .bind(before)
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected();
            *count += deleted;
            if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::mask_emails;

    #[test]
    fn e_mail_addresses_keep_their_first_character_and_domain() {
        assert_eq!(
            mask_emails("notified ada.l+x@example.com via log: Order placed"),
            "notified a***@example.com via log: Order placed"
        );
        assert_eq!(
            mask_emails("to <b@x.org>, c@y.net"),
            "to <b***@x.org>, c***@y.net"
        );
        assert_eq!(mask_emails("no address @ all"), "no address @ all");
        assert_eq!(mask_emails("reserved 2 x SKU-1"), "reserved 2 x SKU-1");
    }
}
