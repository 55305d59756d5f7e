//! The single pass of a full rebuild: every event of the log read once and every row written
//! once, into shadow tables that start empty ([`fold_log`], which [`crate::Projection::fold_log`]
//! runs for every [`Fold`]; the setting is [`SinglePass`]).
//!
//! A full rebuild starts from empty tables, so an order is first seen at its first event: its
//! row needs no reading. The pass therefore:
//! - reads the log in keyset pages (`global_position > $last ORDER BY global_position LIMIT
//!   page`), the next pages read while this one is folded, and decodes each page on a
//!   blocking thread (the body straight from its text into the event; a sealed or odd body
//!   goes the store's way, [`EventEnvelope::decode`]);
//! - folds each event into the rows held in memory with the view's own pure [`Fold::fold`];
//! - holds at most [`SinglePass::max_open_rows`] rows: past that, the rows touched longest ago
//!   are evicted (down to three quarters of the bound) and written; a row is read back from
//!   the table only when an event continues an order whose row was evicted;
//! - writes rows with the view's own [`Fold::write`], in chunks of [`WRITE_ROWS`] rows (each
//!   a handful of multi-row statements and one commit), on a connection of its own, while the
//!   log is still being read; at the end of the log every row still held is written.
//!
//! Memory is bounded by the setting, not by the log: the open rows, plus up to three pages of
//! events and three chunks of rows on their way to the database.
//!
//! The live path ([`crate::projection::fold_batch`]) and catching up after the pass keep the
//! batch loop; both paths fold with the same [`Fold`], so they produce the same rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use orderflow_domain::OrderEvent;
use orderflow_store::{log, EventEnvelope, EventMetadata};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::projection::{Change, Fold, ProjectionError, Tables};
use crate::rebuild::AbortOnDrop;

/// How many rows one write of the pass carries at most.
pub const WRITE_ROWS: usize = 10_000;

/// The field of a sealed `OrderPlaced` body (`orderflow_store::vault::SEALED_FIELD`), quoted
/// as it appears in the stored text: a body that contains it is decoded the store's way.
const SEALED_KEY: &str = "\"personal\"";

/// The setting of a full rebuild's single pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinglePass {
    /// The most rows held in memory while folding (0: no single pass, the batch loop folds
    /// the whole log, reading back every row a batch continues).
    pub max_open_rows: usize,
}

impl SinglePass {
    /// The default bound: 100,000 rows (tens of MB for the views of orderflow).
    pub const DEFAULT_MAX_OPEN_ROWS: usize = 100_000;
    /// The environment variable that sets [`SinglePass::max_open_rows`] for
    /// [`SinglePass::from_env`] (every rebuild that does not pass a setting of its own).
    pub const ENV: &'static str = "ORDERFLOW_REBUILD_MAX_OPEN_ROWS";

    /// No single pass: the batch loop over the whole log.
    pub const fn off() -> Self {
        Self { max_open_rows: 0 }
    }

    /// [`SinglePass::ENV`] when it holds a number, else the default.
    pub fn from_env() -> Self {
        std::env::var(Self::ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or_else(Self::default, |max_open_rows| Self { max_open_rows })
    }
}

impl Default for SinglePass {
    fn default() -> Self {
        Self {
            max_open_rows: Self::DEFAULT_MAX_OPEN_ROWS,
        }
    }
}

/// One event of the log as a fold needs it.
struct LogEvent {
    order_id: Uuid,
    sequence: i64,
    position: i64,
    event: OrderEvent,
}

/// A decoded page: its events, and the positions (in the page) whose rows must be read again
/// through the store's reader, which says exactly why they cannot be read.
struct Page {
    events: Vec<Result<LogEvent, i64>>,
}

const SELECT_PAGE: &str = "SELECT aggregate_id, sequence, global_position, event_type, \
     event_version, payload::text FROM events \
     WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position LIMIT $3";

/// Reads `after < position <= until` in pages of `page` events, decoding each page on a
/// blocking thread; the pages come out in order, at most two ahead of the one folded.
fn spawn_reader(
    pool: PgPool,
    after: i64,
    until: i64,
    page: i64,
) -> (
    mpsc::Receiver<tokio::task::JoinHandle<Page>>,
    AbortOnDrop<Result<(), ProjectionError>>,
) {
    let (sender, pages) = mpsc::channel(2);
    // With upcasters, the store's reader is the one that knows how to lift old bodies.
    let store_reader = !orderflow_domain::upcasting::upcasters().is_empty();
    let task = tokio::spawn(async move {
        let mut next = after;
        while next < until {
            let decoding = if store_reader {
                let envelopes = log::events_after(&pool, next, Some(until), page).await?;
                let Some(last) = envelopes.last().and_then(|e| e.position) else {
                    break;
                };
                next = last;
                tokio::task::spawn_blocking(move || Page {
                    events: envelopes.iter().map(from_envelope).collect(),
                })
            } else {
                let rows = sqlx::query(SELECT_PAGE)
                    .bind(next)
                    .bind(until)
                    .bind(page)
                    .fetch_all(&pool)
                    .await?;
                let Some(last) = rows.last() else { break };
                next = last.try_get("global_position")?;
                tokio::task::spawn_blocking(move || Page {
                    events: rows.iter().map(decode_row).collect(),
                })
            };
            if sender.send(decoding).await.is_err() {
                break;
            }
        }
        Ok(())
    });
    (pages, AbortOnDrop(task))
}

fn from_envelope(envelope: &EventEnvelope) -> Result<LogEvent, i64> {
    let position = envelope.position.unwrap_or_default();
    match envelope.decode() {
        Ok(event) => Ok(LogEvent {
            order_id: envelope.order_id,
            sequence: envelope.sequence,
            position,
            event,
        }),
        Err(_) => Err(position),
    }
}

/// One row of [`SELECT_PAGE`]: the body straight from its text when it is an unsealed body
/// of its own type (what the store's reader would make of it), else the store's way
/// ([`EventEnvelope::decode`]); `Err(position)` when the row must go through the store's
/// reader (an order id that is not one, a body that is not JSON or does not decode).
fn decode_row(row: &PgRow) -> Result<LogEvent, i64> {
    let position: i64 = row.try_get("global_position").map_err(|_| 0_i64)?;
    let read = || -> Option<LogEvent> {
        let order_id = Uuid::parse_str(row.try_get::<&str, _>("aggregate_id").ok()?).ok()?;
        let sequence: i64 = row.try_get("sequence").ok()?;
        let event_type: &str = row.try_get("event_type").ok()?;
        let payload: &str = row.try_get("payload").ok()?;
        if !payload.contains(SEALED_KEY) {
            if let Ok(event) = serde_json::from_str::<OrderEvent>(payload) {
                if event.type_name() == event_type {
                    return Some(LogEvent {
                        order_id,
                        sequence,
                        position,
                        event,
                    });
                }
            }
        }
        // The store's way: the body untagged, then `EventEnvelope::decode` (which reads a
        // sealed body's personal fields as erased).
        let stored: serde_json::Value = serde_json::from_str(payload).ok()?;
        let envelope = EventEnvelope {
            event_id: Uuid::nil(),
            order_id,
            sequence,
            position: Some(position),
            event_type: event_type.to_string(),
            version: row.try_get("event_version").ok()?,
            payload: OrderEvent::untag(stored),
            metadata: EventMetadata::default(),
            recorded_at: DateTime::<Utc>::default(),
        };
        let event = envelope.decode().ok()?;
        Some(LogEvent {
            order_id,
            sequence,
            position,
            event,
        })
    };
    read().ok_or(position)
}

/// The event at `position` through the store's reader: the event, or the error the batch
/// loop would have stopped at.
async fn through_the_store(pool: &PgPool, position: i64) -> Result<LogEvent, ProjectionError> {
    let envelopes = log::events_after(pool, position - 1, Some(position), 1).await?;
    let envelope = envelopes.first().ok_or_else(|| {
        ProjectionError::Database(sqlx::Error::Protocol(format!(
            "the event at position {position} vanished while rebuilding"
        )))
    })?;
    let event = envelope
        .decode()
        .map_err(|source| ProjectionError::corrupt(envelope, source))?;
    Ok(LogEvent {
        order_id: envelope.order_id,
        sequence: envelope.sequence,
        position,
        event,
    })
}

/// A row held in memory.
struct Open<R> {
    /// The row as the table holds it (`None`: not written yet).
    stored: Option<R>,
    /// The row now.
    row: R,
    /// The position of the last event that touched it.
    touched: i64,
    /// Whether `row` differs from `stored`.
    dirty: bool,
}

/// What the pass asks of its connection, in order.
enum Job<R> {
    /// Write these changes, in one transaction.
    Write(Vec<Change<R>>),
    /// Read these orders' rows (after every write queued before).
    Read(Vec<Uuid>, oneshot::Sender<Vec<R>>),
}

/// Folds `after < position <= until` into `tables`, which must hold no row yet (a full
/// rebuild's fresh shadow tables), reading each event once and writing each row once (see
/// the module doc). `progress` is told how many events each page folded. Returns the last
/// position folded.
///
/// # Errors
/// A database or store error, or [`ProjectionError::Corrupt`] for an unreadable event (the
/// same one the batch loop would stop at).
pub async fn fold_log<F: Fold>(
    fold: &F,
    pool: &PgPool,
    tables: &Tables,
    (after, until): (i64, i64),
    page: i64,
    settings: SinglePass,
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<i64, ProjectionError> {
    let max_open = settings.max_open_rows.max(1);
    let keep = max_open - max_open / 4;
    let (mut pages, mut reader) = spawn_reader(pool.clone(), after, until, page.max(1));
    let (jobs, mut queued) = mpsc::channel::<Job<F::Row>>(2);

    let folding = async move {
        let mut open: HashMap<Uuid, Open<F::Row>> =
            HashMap::with_capacity(max_open.min(1 << 20) + page.max(1) as usize);
        let mut evicted_any = false;
        let mut position = after;
        while let Some(decoding) = pages.recv().await {
            let decoded = decoding.await.map_err(|e| join_error("decoder", &e))?;
            let mut events = Vec::with_capacity(decoded.events.len());
            for event in decoded.events {
                events.push(match event {
                    Ok(event) => event,
                    Err(at) => through_the_store(pool, at).await?,
                });
            }
            let Some(last) = events.last().map(|e| e.position) else {
                continue;
            };
            if evicted_any {
                read_back::<F>(&jobs, &mut open, &events).await?;
            }
            for e in &events {
                fold_one(fold, &mut open, e);
            }
            position = last;
            if open.len() > max_open {
                let mut evicted = evict(&mut open, keep);
                evicted_any = true;
                send_writes::<F>(&jobs, &mut evicted).await?;
            }
            progress(events.len());
        }
        let mut rest: Vec<Change<F::Row>> = open
            .into_values()
            .filter(|o| o.dirty)
            .map(|o| Change {
                before: o.stored,
                after: o.row,
            })
            .collect();
        send_writes::<F>(&jobs, &mut rest).await?;
        drop(jobs);
        Ok::<_, ProjectionError>(position)
    };

    let writing = async {
        let mut conn = pool.acquire().await?;
        let rows = &F::TABLES[0];
        let select = format!(
            "SELECT {} FROM {} WHERE {} = ANY($1)",
            F::COLUMNS,
            tables.name(rows.name),
            rows.key[0]
        );
        while let Some(job) = queued.recv().await {
            match job {
                Job::Write(changes) => {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    fold.write(&mut tx, tables, &changes).await?;
                    tx.commit().await?;
                }
                Job::Read(ids, reply) => {
                    let found = sqlx::query_as::<_, F::Row>(&select)
                        // A plan per call, for the array it gets (as in `fold_batch`).
                        .persistent(false)
                        .bind(&ids)
                        .fetch_all(&mut *conn)
                        .await?;
                    // The pass waits for the answer; it is gone only when it failed.
                    let _ = reply.send(found);
                }
            }
        }
        Ok::<_, ProjectionError>(())
    };

    let (position, ()) = tokio::try_join!(folding, writing)?;
    match (&mut reader.0).await {
        Ok(result) => result?,
        Err(join) => return Err(join_error("log reader", &join)),
    }
    Ok(position)
}

fn join_error(what: &str, error: &tokio::task::JoinError) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Protocol(format!("the {what} failed: {error}")))
}

/// Folds one event into the open rows, as [`crate::projection::fold_events`] does.
fn fold_one<F: Fold>(fold: &F, open: &mut HashMap<Uuid, Open<F::Row>>, e: &LogEvent) {
    match open.get_mut(&e.order_id) {
        Some(held) => {
            if let Some(new) = fold.fold(Some(&held.row), e.sequence, &e.event) {
                held.row = new;
                held.dirty = true;
            }
            held.touched = e.position;
        }
        None => match fold.fold(None, e.sequence, &e.event) {
            Some(row) => {
                open.insert(
                    e.order_id,
                    Open {
                        stored: None,
                        row,
                        touched: e.position,
                        dirty: true,
                    },
                );
            }
            None => {
                tracing::warn!(name = F::NAME, order_id = %e.order_id, sequence = e.sequence,
                    "event for an order that was never placed, ignored");
            }
        },
    }
}

/// Reads back the rows of the orders `events` continue that are not held: only those can
/// have been evicted (an order's first event, sequence 1, has no row before it).
async fn read_back<F: Fold>(
    jobs: &mpsc::Sender<Job<F::Row>>,
    open: &mut HashMap<Uuid, Open<F::Row>>,
    events: &[LogEvent],
) -> Result<(), ProjectionError> {
    let mut first_seen: HashMap<Uuid, i64> = HashMap::new();
    for e in events {
        if e.sequence > 1 && !open.contains_key(&e.order_id) {
            first_seen.entry(e.order_id).or_insert(e.position);
        }
    }
    if first_seen.is_empty() {
        return Ok(());
    }
    let (reply, answer) = oneshot::channel();
    let ids: Vec<Uuid> = first_seen.keys().copied().collect();
    jobs.send(Job::Read(ids, reply))
        .await
        .map_err(|_| writer_gone())?;
    let rows = answer.await.map_err(|_| writer_gone())?;
    for row in rows {
        let id = F::order_id(&row);
        let touched = first_seen.get(&id).copied().unwrap_or_default();
        open.insert(
            id,
            Open {
                stored: Some(row.clone()),
                row,
                touched,
                dirty: false,
            },
        );
    }
    Ok(())
}

fn writer_gone() -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Protocol(
        "the rebuild's writer stopped".to_string(),
    ))
}

/// Takes the rows touched longest ago out of `open` until `keep` are left; returns the
/// changed ones (a row read back and not changed since needs no write).
fn evict<R>(open: &mut HashMap<Uuid, Open<R>>, keep: usize) -> Vec<Change<R>> {
    let excess = open.len().saturating_sub(keep);
    if excess == 0 {
        return Vec::new();
    }
    let mut touched: Vec<i64> = open.values().map(|o| o.touched).collect();
    let (_, cutoff, _) = touched.select_nth_unstable(excess - 1);
    let cutoff = *cutoff;
    let ids: Vec<Uuid> = open
        .iter()
        .filter(|(_, o)| o.touched <= cutoff)
        .map(|(id, _)| *id)
        .take(excess)
        .collect();
    ids.into_iter()
        .filter_map(|id| open.remove(&id))
        .filter(|o| o.dirty)
        .map(|o| Change {
            before: o.stored,
            after: o.row,
        })
        .collect()
}

/// Queues `changes` for writing in chunks of [`WRITE_ROWS`], each sorted by order id (the
/// primary key's order).
async fn send_writes<F: Fold>(
    jobs: &mpsc::Sender<Job<F::Row>>,
    changes: &mut Vec<Change<F::Row>>,
) -> Result<(), ProjectionError> {
    changes.sort_unstable_by_key(|c| F::order_id(&c.after));
    while !changes.is_empty() {
        let rest = changes.split_off(changes.len().min(WRITE_ROWS));
        let chunk = std::mem::replace(changes, rest);
        jobs.send(Job::Write(chunk))
            .await
            .map_err(|_| writer_gone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Eviction, without a database.

    use super::*;

    fn open(touched: i64, dirty: bool) -> Open<i64> {
        Open {
            stored: (!dirty).then_some(touched),
            row: touched,
            touched,
            dirty,
        }
    }

    #[test]
    fn eviction_takes_the_rows_touched_longest_ago_and_writes_only_changed_ones() {
        let mut rows: HashMap<Uuid, Open<i64>> = (1..=8)
            .map(|i| (Uuid::from_u128(i as u128), open(i, i != 2)))
            .collect();
        let written = evict(&mut rows, 5);
        let mut after: Vec<i64> = written.iter().map(|c| c.after).collect();
        after.sort_unstable();
        assert_eq!(after, [1, 3], "row 2 was read back and not changed");
        let mut kept: Vec<i64> = rows.values().map(|o| o.touched).collect();
        kept.sort_unstable();
        assert_eq!(kept, [4, 5, 6, 7, 8]);
        assert!(evict(&mut rows, 5).is_empty());
    }

    #[test]
    fn the_setting_reads_the_environment_or_defaults() {
        assert_eq!(SinglePass::default().max_open_rows, 100_000);
        assert_eq!(SinglePass::off().max_open_rows, 0);
    }
}
