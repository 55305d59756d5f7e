//! Rebuilding a projection from the event log while the live one keeps serving, verifying
//! it, listing every projection's state, and rebuilding at start the projections whose
//! version changed.
//!
//! A rebuild ([`rebuild`]):
//! 1. takes a per-projection advisory lock (one rebuild at a time), creates the shadow tables
//!    (`<table>_rebuild`) without their secondary indexes;
//! 2. folds the log from position 1 to the head in one pass ([`crate::single_pass`]): pages
//!    of `batch_size` events read once, folded in memory (at most [`SinglePass`]'s
//!    `max_open_rows` rows held; a row is read back only after it was evicted), every row
//!    written once, in bulk; the live tables and their consumer are untouched. With
//!    [`SinglePass::off`] the batch loop folds it instead (each batch reads back the rows it
//!    continues);
//! 3. creates the secondary indexes (all at once, a connection each), then catches up with what was written meanwhile (the
//!    batch loop: the shadow tables hold rows now);
//! 4. in one transaction: locks the checkpoint row (the live consumer waits), folds the last
//!    events up to the head (past the live checkpoint when the live consumer is behind),
//!    drops the live tables, renames the shadow tables (and their indexes) into their place
//!    and sets the checkpoint to the position folded, the code's version and state `live`.
//!    Queries see either the old tables or the new ones, never a mix.
//!
//! With `verify_only`, step 2 stops at the live checkpoint, step 4 folds up to the live
//! checkpoint, compares the shadow rows with the live rows under the lock, and drops the
//! shadow tables instead of swapping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orderflow_store::log;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use crate::projection::{
    checkpoints, ensure_checkpoint, lock_checkpoint, Projection, ProjectionError, Tables,
};
use crate::single_pass::SinglePass;

/// The first key of the advisory locks that guard rebuilds (the second is the projection
/// name's `hashtext`).
const REBUILD_LOCK_SPACE: i32 = 20_261_125;

/// How to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildOptions {
    /// Build the shadow tables and report how they differ from the live ones; swap nothing.
    pub verify_only: bool,
    /// Events per read and per write transaction.
    pub batch_size: i64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            verify_only: false,
            batch_size: 5_000,
        }
    }
}

/// What a rebuild is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Folding the log into the shadow tables.
    Folding,
    /// Creating the shadow tables' secondary indexes.
    Indexing,
    /// Folding what was written since the rebuild began.
    CatchingUp,
    /// Comparing the shadow tables with the live ones (verify).
    Verifying,
    /// Swapping the shadow tables in.
    Swapping,
    /// Finished.
    Done,
}

/// `phase done/total events (percent), rate, ETA`: one plain line, e.g. for a log.
impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = if self.total > 0 {
            self.done as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        let eta = self
            .eta
            .map_or_else(|| "-".to_string(), |d| format!("{}s", d.as_secs()));
        write!(
            f,
            "{} {}/{} events ({percent:.1}%), {:.0} events/s, ETA {eta}",
            self.phase, self.done, self.total, self.per_second
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Folding => "folding",
            Self::Indexing => "indexing",
            Self::CatchingUp => "catching up",
            Self::Verifying => "verifying",
            Self::Swapping => "swapping",
            Self::Done => "done",
        })
    }
}

/// Progress of a rebuild, reported after every batch and at each phase change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Progress {
    /// The step the rebuild is in.
    pub phase: Phase,
    /// Events folded so far.
    pub done: u64,
    /// Events to fold as known now (grows while new events arrive).
    pub total: u64,
    /// Events folded per second since the rebuild began.
    pub per_second: f64,
    /// Time left at the current rate, when known.
    #[schema(value_type = Option<f64>)]
    pub eta: Option<Duration>,
}

/// A row that differs between the live table and the rebuilt one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DifferenceSample {
    /// The row's primary key.
    #[schema(value_type = Object)]
    pub key: serde_json::Value,
    /// The live row (absent when the live table lacks it).
    #[schema(value_type = Option<Object>)]
    pub live: Option<serde_json::Value>,
    /// The rebuilt row (absent when the log does not produce it).
    #[schema(value_type = Option<Object>)]
    pub rebuilt: Option<serde_json::Value>,
}

/// How one table of the live projection differs from the log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TableDifferences {
    /// The live name of the table compared.
    pub table: String,
    /// Rows the log produces that the live table lacks.
    pub missing: u64,
    /// Rows the live table has that the log does not produce.
    pub extra: u64,
    /// Rows both have with different values.
    pub differing: u64,
    /// Up to [`MAX_SAMPLES`] examples of each kind.
    pub samples: Vec<DifferenceSample>,
}

impl TableDifferences {
    /// Missing, extra and differing rows together: 0 when the table matches the log.
    pub fn total(&self) -> u64 {
        self.missing + self.extra + self.differing
    }
}

/// How many example rows a verify keeps per table and kind.
pub const MAX_SAMPLES: usize = 10;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RebuildReport {
    /// The projection rebuilt or verified.
    pub name: String,
    /// The code's version of it, which the rebuilt tables now have.
    pub version: i32,
    /// The position the rebuilt tables hold (the live checkpoint for a verify).
    pub position: i64,
    /// Events folded.
    pub events: u64,
    /// Wall-clock time from start to end (swap or verify included).
    #[schema(value_type = f64)]
    pub elapsed: Duration,
    /// Events folded per second over `elapsed`.
    pub per_second: f64,
    /// Whether the rebuilt tables replaced the live ones.
    pub swapped: bool,
    /// For a verify: per table, how the live rows differ from the rebuilt ones.
    pub differences: Option<Vec<TableDifferences>>,
}

impl RebuildReport {
    /// The number of differing rows a verify found (0 for a rebuild).
    pub fn difference_count(&self) -> u64 {
        self.differences
            .iter()
            .flatten()
            .map(TableDifferences::total)
            .sum()
    }
}

/// Counts events and reports progress.
struct Meter<'a> {
    started: Instant,
    done: u64,
    total: u64,
    phase: Phase,
    report: &'a (dyn Fn(Progress) + Send + Sync),
}

impl Meter<'_> {
    fn emit(&self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let per_second = if seconds > 0.0 {
            self.done as f64 / seconds
        } else {
            0.0
        };
        let left = self.total.saturating_sub(self.done);
        let eta = (per_second > 0.0).then(|| Duration::from_secs_f64(left as f64 / per_second));
        (self.report)(Progress {
            phase: self.phase,
            done: self.done,
            total: self.total,
            per_second,
            eta,
        });
    }

    fn phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.emit();
    }

    fn folded(&mut self, events: usize) {
        self.done += events as u64;
        self.total = self.total.max(self.done);
        self.emit();
    }
}

/// Rebuilds `projection` from the event log into shadow tables and swaps them in atomically
/// (or, with `verify_only`, reports how the live tables differ). The live tables keep
/// answering queries and the live consumer keeps folding throughout; it only waits for the
/// final swap transaction.
///
/// # Errors
/// [`ProjectionError::AlreadyRebuilding`] when another process rebuilds it, a database or
/// store error, or the projection's own error. On error nothing is swapped.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    options: RebuildOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    rebuild_with(pool, projection, options, SinglePass::from_env(), progress).await
}

/// [`rebuild`] with the single pass's setting given (how many rows it may hold in memory;
/// [`SinglePass::off`] folds the whole log with the batch loop instead).
///
/// # Errors
/// As [`rebuild`].
pub async fn rebuild_with(
    pool: &PgPool,
    projection: &dyn Projection,
    options: RebuildOptions,
    single_pass: SinglePass,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    let name = projection.name();
    // The lock lives on a connection taken out of the pool: if this future is dropped
    // (a cancelled request, an aborted task), the connection closes and the lock goes with
    // it, instead of going back to the pool still held.
    let mut guard = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(REBUILD_LOCK_SPACE)
        .bind(name)
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        return Err(ProjectionError::AlreadyRebuilding(name.to_string()));
    }
    let result = rebuild_locked(pool, projection, options, single_pass, progress).await;
    if result.is_err() && !options.verify_only {
        let reset = sqlx::query(
            "UPDATE projection_checkpoints SET state = 'live', updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .execute(pool)
        .await;
        if let Err(error) = reset {
            tracing::warn!(name, %error, "could not reset the projection state after a failed rebuild");
        }
    }
    unlock(guard, name).await;
    result
}

async fn unlock(mut guard: PgConnection, name: &str) {
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(REBUILD_LOCK_SPACE)
        .bind(name)
        .execute(&mut guard)
        .await;
    if let Err(error) = unlocked {
        tracing::debug!(name, %error, "unlock failed; closing the session releases it");
    }
    // Closing the session releases the lock in any case.
    if let Err(error) = sqlx::Connection::close(guard).await {
        tracing::debug!(name, %error, "closing the rebuild lock connection");
    }
}

async fn rebuild_locked(
    pool: &PgPool,
    projection: &dyn Projection,
    options: RebuildOptions,
    single_pass: SinglePass,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    let name = projection.name();
    let batch = options.batch_size.max(1);
    {
        let mut conn = pool.acquire().await?;
        ensure_checkpoint(&mut conn, projection).await?;
        if !options.verify_only {
            sqlx::query(
                "UPDATE projection_checkpoints SET state = 'rebuilding', updated_at = now()
                 WHERE name = $1",
            )
            .bind(name)
            .execute(&mut *conn)
            .await?;
        }
        create_shadow_tables(&mut conn, projection).await?;
    }
    let target = if options.verify_only {
        crate::projection::checkpoint(pool, name)
            .await?
            .map_or(0, |c| c.position)
    } else {
        log::head_position(pool).await?
    };
    let mut meter = Meter {
        started: Instant::now(),
        done: 0,
        total: u64::try_from(target).unwrap_or(0),
        phase: Phase::Folding,
        report: progress,
    };
    meter.emit();
    tracing::info!(
        name,
        target,
        verify = options.verify_only,
        "rebuild: folding the log"
    );
    // The shadow tables are empty: one pass that reads each event once and writes each row
    // once, unless it is switched off.
    let mut position = if single_pass.max_open_rows > 0 {
        projection
            .fold_log(
                pool,
                &Tables::shadow(),
                (0, target),
                batch,
                single_pass,
                &mut |events| meter.folded(events),
            )
            .await?
    } else {
        fold_range(pool, projection, 0, target, batch, &mut meter).await?
    };

    meter.phase(Phase::Indexing);
    create_indexes(pool, projection).await?;

    meter.phase(Phase::CatchingUp);
    if !options.verify_only {
        loop {
            let head = log::head_position(pool).await?;
            if head - position <= batch {
                break;
            }
            meter.total = meter.done + u64::try_from(head - position).unwrap_or(0);
            position = fold_range(pool, projection, position, head, batch, &mut meter).await?;
        }
    }

    // The final step holds the checkpoint row: the live consumer waits until it commits.
    let mut tx = pool.begin().await?;
    let live = lock_checkpoint(&mut tx, name)
        .await?
        .map_or(0, |c| c.position);
    let end = if options.verify_only {
        live
    } else {
        log::head_position(&mut *tx).await?.max(live)
    };
    meter.total = meter.done + u64::try_from(end - position).unwrap_or(0);
    while position < end {
        let events = log::events_after(&mut *tx, position, Some(end), batch).await?;
        let Some(last) = events.last().and_then(|e| e.position) else {
            break;
        };
        projection
            .apply_batch(&mut tx, &Tables::shadow(), &events)
            .await?;
        position = last;
        meter.folded(events.len());
    }

    let elapsed = meter.started.elapsed();
    let per_second = meter.done as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let mut report = RebuildReport {
        name: name.to_string(),
        version: projection.version(),
        position,
        events: meter.done,
        elapsed,
        per_second,
        swapped: false,
        differences: None,
    };
    if options.verify_only {
        meter.phase(Phase::Verifying);
        let differences = compare(&mut tx, projection).await?;
        tx.rollback().await?;
        let mut conn = pool.acquire().await?;
        drop_shadow_tables(&mut conn, projection).await?;
        report.differences = Some(differences);
    } else {
        meter.phase(Phase::Swapping);
        swap(&mut tx, projection, position).await?;
        tx.commit().await?;
        report.swapped = true;
    }
    meter.phase(Phase::Done);
    tracing::info!(
        name,
        position,
        events = report.events,
        per_second = report.per_second as u64,
        swapped = report.swapped,
        differences = report.difference_count(),
        "rebuild finished"
    );
    Ok(report)
}

/// Creates the shadow tables' secondary indexes, each on a connection of its own, at once
/// (PostgreSQL builds one index with one process). Dropping the future stops them.
async fn create_indexes(pool: &PgPool, projection: &dyn Projection) -> Result<(), sqlx::Error> {
    let mut building = tokio::task::JoinSet::new();
    for table in projection.tables() {
        let shadow = Tables::shadow().name(table.name);
        for index in table.indexes {
            let statement = index.replace("{table}", &shadow);
            let pool = pool.clone();
            building.spawn(async move { sqlx::query(&statement).execute(&pool).await });
        }
    }
    while let Some(built) = building.join_next().await {
        built
            .map_err(|join| sqlx::Error::Protocol(format!("creating an index failed: {join}")))??;
    }
    Ok(())
}

async fn create_shadow_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(), sqlx::Error> {
    drop_shadow_tables(conn, projection).await?;
    for table in projection.tables() {
        let shadow = Tables::shadow().name(table.name);
        sqlx::query(&table.create.replace("{table}", &shadow))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn drop_shadow_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        let shadow = Tables::shadow().name(table.name);
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Folds `after < position <= until` into the shadow tables, reading the next batch while the
/// current one is written. Returns the last position folded.
async fn fold_range(
    pool: &PgPool,
    projection: &dyn Projection,
    after: i64,
    until: i64,
    batch: i64,
    meter: &mut Meter<'_>,
) -> Result<i64, ProjectionError> {
    let (sender, mut batches) = tokio::sync::mpsc::channel(2);
    let reader_pool = pool.clone();
    let reader = tokio::spawn(async move {
        let mut next = after;
        while next < until {
            let events = log::events_after(&reader_pool, next, Some(until), batch).await?;
            let Some(last) = events.last().and_then(|e| e.position) else {
                break;
            };
            next = last;
            if sender.send(events).await.is_err() {
                break;
            }
        }
        Ok::<_, orderflow_store::StoreError>(())
    });
    let mut reader = AbortOnDrop(reader);
    let mut position = after;
    while let Some(events) = batches.recv().await {
        let mut tx = pool.begin().await?;
        projection
            .apply_batch(&mut tx, &Tables::shadow(), &events)
            .await?;
        tx.commit().await?;
        position = events.last().and_then(|e| e.position).unwrap_or(position);
        meter.folded(events.len());
    }
    match (&mut reader.0).await {
        Ok(result) => result?,
        Err(join) => {
            return Err(ProjectionError::Database(sqlx::Error::Protocol(format!(
                "the log reader failed: {join}"
            ))))
        }
    }
    Ok(position)
}

/// A spawned task, aborted when its owner is dropped (a rebuild dropped midway).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Replaces the live tables by the shadow ones and moves the checkpoint, inside `tx`.
async fn swap(
    tx: &mut PgConnection,
    projection: &dyn Projection,
    position: i64,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        let live = Tables::live().name(table.name);
        let shadow = Tables::shadow().name(table.name);
        sqlx::query(&format!("DROP TABLE IF EXISTS {live}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}"))
            .execute(&mut *tx)
            .await?;
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = current_schema() AND tablename = $1",
        )
        .bind(&live)
        .fetch_all(&mut *tx)
        .await?;
        let prefix = format!("{shadow}_");
        for index in indexes {
            if let Some(rest) = index.strip_prefix(&prefix) {
                sqlx::query(&format!("ALTER INDEX {index} RENAME TO {live}_{rest}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    sqlx::query(
        "UPDATE projection_checkpoints
         SET position = $2, version = $3, state = 'live', updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .bind(position)
    .bind(projection.version())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Compares every shadow table with its live table, row by row (as JSON, so column order
/// does not matter).
async fn compare(
    tx: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<Vec<TableDifferences>, sqlx::Error> {
    let mut all = Vec::new();
    for table in projection.tables() {
        let live = Tables::live().name(table.name);
        let shadow = Tables::shadow().name(table.name);
        let only = |a: &str, b: &str| {
            format!("SELECT to_jsonb(a) FROM {a} a EXCEPT ALL SELECT to_jsonb(b) FROM {b} b")
        };
        let only_rebuilt: Vec<serde_json::Value> = sqlx::query_scalar(&only(&shadow, &live))
            .fetch_all(&mut *tx)
            .await?;
        let only_live: Vec<serde_json::Value> = sqlx::query_scalar(&only(&live, &shadow))
            .fetch_all(&mut *tx)
            .await?;
        let key_of = |row: &serde_json::Value| {
            serde_json::Value::Object(
                table
                    .key
                    .iter()
                    .map(|k| ((*k).to_string(), row.get(*k).cloned().unwrap_or_default()))
                    .collect(),
            )
        };
        let mut live_by_key: HashMap<String, serde_json::Value> = only_live
            .into_iter()
            .map(|row| (key_of(&row).to_string(), row))
            .collect();
        let mut differences = TableDifferences {
            table: live.clone(),
            missing: 0,
            extra: 0,
            differing: 0,
            samples: Vec::new(),
        };
        let (mut missing_samples, mut differing_samples) = (0, 0);
        for rebuilt in only_rebuilt {
            let key = key_of(&rebuilt);
            match live_by_key.remove(&key.to_string()) {
                Some(live_row) => {
                    differences.differing += 1;
                    if differing_samples < MAX_SAMPLES {
                        differing_samples += 1;
                        differences.samples.push(DifferenceSample {
                            key,
                            live: Some(live_row),
                            rebuilt: Some(rebuilt),
                        });
                    }
                }
                None => {
                    differences.missing += 1;
                    if missing_samples < MAX_SAMPLES {
                        missing_samples += 1;
                        differences.samples.push(DifferenceSample {
                            key,
                            live: None,
                            rebuilt: Some(rebuilt),
                        });
                    }
                }
            }
        }
        differences.extra = live_by_key.len() as u64;
        for (_, live_row) in live_by_key.into_iter().take(MAX_SAMPLES) {
            differences.samples.push(DifferenceSample {
                key: key_of(&live_row),
                live: Some(live_row),
                rebuilt: None,
            });
        }
        all.push(differences);
    }
    Ok(all)
}

/// Where a projection stands, as `GET /v1/admin/projections` and `orderflow projections list`
/// show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionState {
    /// Its live tables serve queries and its consumer folds new events.
    Live,
    /// A rebuild is running (a process holds the projection's rebuild lock).
    Rebuilding,
    /// A rebuild died before finishing; the live tables still serve, and the next rebuild
    /// starts over.
    Interrupted,
    /// Known to the code but never ran (no checkpoint yet).
    New,
}

impl ProjectionState {
    /// The state as JSON and the CLI name it: `live`, `rebuilding`, `interrupted` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Rebuilding => "rebuilding",
            Self::Interrupted => "interrupted",
            Self::New => "new",
        }
    }
}

impl std::fmt::Display for ProjectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A projection's state, as `orderflow projections list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// The projection's name, e.g. `order-summary`.
    pub name: String,
    /// The version that built the live tables (`None`: never ran).
    pub version: Option<i32>,
    /// The version of the running code (`None`: a projection this code does not know).
    pub code_version: Option<i32>,
    /// The last position folded into the live tables.
    pub position: i64,
    /// The log's head position.
    pub head_position: i64,
    /// `head_position - position`: events not folded yet.
    pub lag: i64,
    /// Live, rebuilding, interrupted or new (see [`ProjectionState`]).
    pub state: ProjectionState,
    /// When the checkpoint row last changed (`None`: there is none yet).
    pub updated_at: Option<DateTime<Utc>>,
}

/// Every projection this code knows, plus any other one with a checkpoint, by name.
///
/// # Errors
/// The database error.
pub async fn list(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let head = log::head_position(pool).await?;
    let known = crate::all();
    let mut statuses: Vec<ProjectionStatus> = Vec::new();
    for checkpoint in checkpoints(pool).await? {
        let running: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                WHERE locktype = 'advisory' AND classid = $1::int4::oid
                  AND objid = hashtext($2)::oid AND objsubid = 2
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .bind(REBUILD_LOCK_SPACE)
        .bind(&checkpoint.name)
        .fetch_one(pool)
        .await?;
        // The checkpoint row stores `live`, or `rebuilding` from the start of a rebuild to
        // its swap; only the lock tells a running rebuild from one that died.
        let state = match (checkpoint.state == "rebuilding", running) {
            (_, true) => ProjectionState::Rebuilding,
            (true, false) => ProjectionState::Interrupted,
            (false, false) => ProjectionState::Live,
        };
        statuses.push(ProjectionStatus {
            code_version: known
                .iter()
                .find(|p| p.name() == checkpoint.name)
                .map(|p| p.version()),
            name: checkpoint.name,
            version: Some(checkpoint.version),
            position: checkpoint.position,
            head_position: head,
            lag: head - checkpoint.position,
            state,
            updated_at: Some(checkpoint.updated_at),
        });
    }
    for projection in &known {
        if !statuses.iter().any(|s| s.name == projection.name()) {
            statuses.push(ProjectionStatus {
                name: projection.name().to_string(),
                version: None,
                code_version: Some(projection.version()),
                position: 0,
                head_position: head,
                lag: head,
                state: ProjectionState::New,
                updated_at: None,
            });
        }
    }
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(statuses)
}

/// Rebuilds (and swaps in) every projection of `projections` whose stored version differs
/// from the code's, that never ran, or whose live tables are missing. Called at start,
/// before the projection consumers run. When another process is rebuilding one of them
/// (several instances starting at once), it waits for that rebuild and checks again. Returns
/// the rebuilds it made.
///
/// # Errors
/// The first rebuild's error.
pub async fn ensure_current(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
) -> Result<Vec<RebuildReport>, ProjectionError> {
    let mut reports = Vec::new();
    for projection in projections {
        let name = projection.name();
        while let Some(reason) = rebuild_reason(pool, projection.as_ref()).await? {
            tracing::info!(name, %reason, "rebuilding projection");
            let last_log = std::sync::Mutex::new(Instant::now());
            let log_progress = |p: Progress| {
                let mut last = last_log.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(5) || p.phase == Phase::Done {
                    *last = Instant::now();
                    tracing::info!(name, phase = ?p.phase, done = p.done, total = p.total,
                        per_second = p.per_second as u64, "rebuild progress");
                }
            };
            match rebuild(
                pool,
                projection.as_ref(),
                RebuildOptions::default(),
                &log_progress,
            )
            .await
            {
                Ok(report) => {
                    reports.push(report);
                    break;
                }
                Err(ProjectionError::AlreadyRebuilding(_)) => {
                    tracing::info!(name, "another process is rebuilding it; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(reports)
}

/// Why `projection` must be rebuilt before it can run, if it must.
async fn rebuild_reason(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<Option<String>, ProjectionError> {
    let stored = crate::projection::checkpoint(pool, projection.name()).await?;
    let mut missing_table = None;
    for table in projection.tables() {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table.name)
            .fetch_one(pool)
            .await?;
        if !exists {
            missing_table = Some(table.name);
        }
    }
    Ok(match (&stored, missing_table) {
        (None, _) => Some("it never ran".to_string()),
        (Some(c), _) if c.version != projection.version() => Some(format!(
            "its tables are version {}, the code is version {}",
            c.version,
            projection.version()
        )),
        (Some(_), Some(table)) => Some(format!("table {table} is missing")),
        (Some(_), None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_states_print_as_they_serialize() {
        use ProjectionState::*;
        for state in [Live, Rebuilding, Interrupted, New] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
    }
}
