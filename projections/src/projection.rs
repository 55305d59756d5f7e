//! The projection framework. A projection supplies only what is its own ([`Fold`]): its
//! tables, its row type (one row per order, decoded with `sqlx::FromRow`), a pure fold
//! (event + current row -> new row, no I/O) and the statements that write a batch's changed
//! rows. The framework owns the rest and chooses how to run the fold: the batch loop
//! ([`fold_batch`]: read the current rows of the orders a batch touches, fold the batch in
//! memory, write back) for the live path ([`apply_live`]) and a rebuild's catching up, and
//! the single pass ([`Projection::fold_log`], [`crate::single_pass`]: each event read once,
//! each row written once) for a full rebuild into empty shadow tables
//! ([`mod@crate::rebuild`]). Both call the same [`Fold`], so they produce the same rows.
//!
//! Where its tables live ([`Tables`]: the live ones, or the shadow ones a rebuild fills) is
//! the caller's choice. The checkpoint (`projection_checkpoints`: name, version, position,
//! state, updated_at) holds the last global position folded into the live tables. It is
//! written in the same transaction as the rows ([`apply_live`]), so a process killed at any
//! point neither skips nor double-applies an event: an event at or below the checkpoint is
//! skipped, and one more than one past it means an earlier event is missing.
//!
//! # Where the DDL lives
//! The [`TableSpec`] templates are the DDL: a rebuild creates its shadow tables from them and
//! swaps them in as the live tables. The migration `20261125000300_projections.sql` creates
//! the version-1 live tables once, so queries answer before any rebuild; being an applied
//! migration it cannot change, so a test (`ddl_drift`) checks that it matches the templates.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_domain::{OrderEvent, OrderStatus};
use orderflow_store::{log, EventEnvelope, StoreError};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::single_pass::SinglePass;

/// The suffix of the shadow tables a rebuild fills before the swap.
pub const SHADOW_SUFFIX: &str = "_rebuild";

/// One table a projection owns. `create` and `indexes` are DDL templates in which `{table}`
/// stands for the physical table name (the live one or the shadow one); index names must
/// start with `{table}_` so a swap can rename them along with the table.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// The live table's name.
    pub name: &'static str,
    /// `CREATE TABLE {table} (...)` with the primary key (needed by upserts while folding).
    pub create: &'static str,
    /// Secondary indexes, created after a rebuild's bulk fold (faster than maintaining them).
    pub indexes: &'static [&'static str],
    /// The primary-key columns: how a verify tells a differing row from a missing one.
    pub key: &'static [&'static str],
}

/// Which physical tables a fold writes to: the live ones, or a rebuild's shadow ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    /// The live tables, which queries read.
    pub const fn live() -> Self {
        Self { suffix: "" }
    }

    /// The shadow tables a rebuild fills.
    pub const fn shadow() -> Self {
        Self {
            suffix: SHADOW_SUFFIX,
        }
    }

    /// The physical name of the table whose live name is `table`.
    pub fn name(&self, table: &str) -> String {
        format!("{table}{}", self.suffix)
    }
}

/// Why a projection could not fold, rebuild or answer.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// PostgreSQL failed or could not be reached; the transaction was rolled back.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The event log could not be read (while healing a gap or rebuilding).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not fit its type: the projection cannot go past it.
    #[error("event {event_type} at position {position:?} cannot be read: {source}")]
    Corrupt {
        /// The event's global position; `None` when the relay has not numbered it yet.
        position: Option<i64>,
        /// The type the event is stored under, e.g. `OrderPlaced`.
        event_type: String,
        /// Why its body does not decode into that type.
        #[source]
        source: serde_json::Error,
    },
    /// The event has no global position yet (the relay has not numbered it).
    #[error("event {0} has no global position yet")]
    Unnumbered(uuid::Uuid),
    /// Another process rebuilds this projection right now.
    #[error("projection {0} is being rebuilt by another process")]
    AlreadyRebuilding(String),
    /// No projection has this name.
    #[error("no projection is called {0:?} (known: order-summary, analytics)")]
    Unknown(String),
}

impl ProjectionError {
    /// The error for an event whose body does not decode.
    pub fn corrupt(event: &EventEnvelope, source: serde_json::Error) -> Self {
        Self::Corrupt {
            position: event.position,
            event_type: event.event_type.clone(),
            source,
        }
    }
}

/// A read model folded from the event log, in global-position order.
///
/// Implementations must be deterministic functions of the events (no wall-clock columns),
/// so a rebuild yields exactly the rows the live fold produced. A projection implements
/// [`Fold`]; every [`Fold`] is a `Projection`.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name (`order-summary`); also its durable consumer's name.
    fn name(&self) -> &'static str;

    /// Bumped whenever the tables or the fold change: a stored version that differs from
    /// this one makes [`crate::rebuild::ensure_current`] rebuild the projection.
    fn version(&self) -> i32;

    /// The tables this projection owns.
    fn tables(&self) -> &'static [TableSpec];

    /// Folds consecutive events (in position order) into `tables`, inside the caller's
    /// transaction: the live fold and the rebuild both call this.
    ///
    /// # Errors
    /// A database error, or [`ProjectionError::Corrupt`] for an unreadable event.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError>;

    /// Folds the log `after < position <= until` into `tables`, which hold no row yet (a
    /// full rebuild's fresh shadow tables), in one pass that reads each event once and
    /// writes each row once, with at most `settings.max_open_rows` rows in memory
    /// ([`crate::single_pass`]); `progress` is told how many events each page of `page`
    /// events folded. Returns the last position folded.
    ///
    /// # Errors
    /// As [`Projection::apply_batch`], or the error of reading the log.
    async fn fold_log(
        &self,
        pool: &PgPool,
        tables: &Tables,
        range: (i64, i64),
        page: i64,
        settings: SinglePass,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<i64, ProjectionError>;

    /// Folds one event into `tables`, inside the caller's transaction.
    ///
    /// # Errors
    /// As [`Projection::apply_batch`].
    async fn apply(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        event: &EventEnvelope,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, tables, std::slice::from_ref(event))
            .await
    }
}

/// What a projection supplies; the framework makes it a [`Projection`].
///
/// Its first table ([`Fold::TABLES`]`[0]`) holds [`Fold::Row`]s, one per order, keyed by the
/// order id alone; further tables (counters, say) are written by [`Fold::write`] from the
/// rows' changes.
#[async_trait]
pub trait Fold: Send + Sync + 'static {
    /// The projection's name (`order-summary`); also its durable consumer's name.
    const NAME: &'static str;
    /// Bumped whenever the tables or the fold change (see [`Projection::version`]).
    const VERSION: i32;
    /// The tables it owns, the row table first.
    const TABLES: &'static [TableSpec];
    /// The columns of the row table that [`Fold::Row`] decodes from.
    const COLUMNS: &'static str;

    /// One row of the row table.
    type Row: for<'r> sqlx::FromRow<'r, PgRow> + Clone + Send + Sync + Unpin;

    /// The order a row belongs to.
    fn order_id(row: &Self::Row) -> Uuid;

    /// The pure fold: the row of an order after its event number `sequence`, given its
    /// current row (`None`: the projection has none yet). `None` when the event changes
    /// nothing (an event at or below the row's version, or one that cannot start a row).
    fn fold(&self, row: Option<&Self::Row>, sequence: i64, event: &OrderEvent)
        -> Option<Self::Row>;

    /// Writes a batch's changes (by order id) into `tables`, inside the caller's transaction.
    ///
    /// # Errors
    /// The database error.
    async fn write(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        changes: &[Change<Self::Row>],
    ) -> Result<(), ProjectionError>;
}

#[async_trait]
impl<F: Fold> Projection for F {
    fn name(&self) -> &'static str {
        F::NAME
    }

    fn version(&self) -> i32 {
        F::VERSION
    }

    fn tables(&self) -> &'static [TableSpec] {
        F::TABLES
    }

    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        tables: &Tables,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        fold_batch(self, tx, tables, events).await
    }

    async fn fold_log(
        &self,
        pool: &PgPool,
        tables: &Tables,
        range: (i64, i64),
        page: i64,
        settings: SinglePass,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<i64, ProjectionError> {
        crate::single_pass::fold_log(self, pool, tables, range, page, settings, progress).await
    }
}

/// How one order's row changed in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<R> {
    /// The row before the batch (`None`: the batch created it).
    pub before: Option<R>,
    /// The row after the batch.
    pub after: R,
}

/// The batch loop: decodes `events`, reads the current rows of every order they touch (one
/// query; every touched order, so a repeated event can never count twice), folds the batch
/// in memory ([`fold_events`]) and hands the changed rows to [`Fold::write`].
///
/// # Errors
/// [`ProjectionError::Corrupt`] for an unreadable event, or a database error.
pub async fn fold_batch<F: Fold>(
    fold: &F,
    tx: &mut PgConnection,
    tables: &Tables,
    events: &[EventEnvelope],
) -> Result<(), ProjectionError> {
    let decoded = events
        .iter()
        .map(|e| {
            e.decode()
                .map(|event| (e.order_id, e.sequence, event))
                .map_err(|source| ProjectionError::corrupt(e, source))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids: Vec<Uuid> = decoded.iter().map(|(id, _, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let rows = &F::TABLES[0];
    let current: HashMap<Uuid, F::Row> = sqlx::query_as::<_, F::Row>(&format!(
        "SELECT {} FROM {} WHERE {} = ANY($1)",
        F::COLUMNS,
        tables.name(rows.name),
        rows.key[0]
    ))
    // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (F::order_id(&row), row))
    .collect();
    let changes = fold_events(
        fold,
        current,
        decoded
            .iter()
            .map(|(id, sequence, event)| (*id, *sequence, event)),
    );
    if changes.is_empty() {
        return Ok(());
    }
    fold.write(tx, tables, &changes).await
}

/// Folds events (order id, sequence, event; in position order) into the current rows, in
/// memory: the changed rows by order id, each with its row before the batch. Pure.
pub fn fold_events<'e, F: Fold>(
    fold: &F,
    mut current: HashMap<Uuid, F::Row>,
    events: impl IntoIterator<Item = (Uuid, i64, &'e OrderEvent)>,
) -> Vec<Change<F::Row>> {
    let mut after: HashMap<Uuid, F::Row> = HashMap::new();
    for (id, sequence, event) in events {
        let row = after.get(&id).or_else(|| current.get(&id));
        match fold.fold(row, sequence, event) {
            Some(new) => {
                after.insert(id, new);
            }
            None if row.is_none() => {
                tracing::warn!(name = F::NAME, order_id = %id, sequence,
                    "event for an order that was never placed, ignored");
            }
            None => {}
        }
    }
    let mut changes: Vec<Change<F::Row>> = after
        .into_iter()
        .map(|(id, after)| Change {
            before: current.remove(&id),
            after,
        })
        .collect();
    changes.sort_unstable_by_key(|c| F::order_id(&c.after));
    changes
}

/// An `OrderStatus` column (`text`), for `#[sqlx(try_from = "StatusColumn")]`.
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct StatusColumn(String);

impl TryFrom<StatusColumn> for OrderStatus {
    type Error = String;

    fn try_from(column: StatusColumn) -> Result<Self, String> {
        OrderStatus::parse(&column.0).ok_or_else(|| format!("unknown order status {:?}", column.0))
    }
}

/// What the checkpoint row says about a projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Checkpoint {
    /// The projection's name, e.g. `order-summary`.
    pub name: String,
    /// The version of the code that built the live tables.
    pub version: i32,
    /// The last global position folded into the live tables.
    pub position: i64,
    /// `live`, or `rebuilding` while a rebuild runs (or after one was interrupted).
    pub state: String,
    /// When the row last changed: an event folded, or a rebuild started or swapped.
    pub updated_at: DateTime<Utc>,
}

const CHECKPOINT_COLUMNS: &str = "name, version, position, state, updated_at";

/// Creates the checkpoint row of `projection` at position 0 with the code's version, unless
/// it exists.
///
/// # Errors
/// The database error.
pub async fn ensure_checkpoint(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version, position, state)
         VALUES ($1, $2, 0, 'live') ON CONFLICT (name) DO NOTHING",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads and locks the checkpoint row of `name` until the transaction ends. While it is held
/// neither the live fold nor a rebuild's swap can move the projection.
///
/// # Errors
/// The database error.
pub async fn lock_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Locks the checkpoint row of `projection` as [`lock_checkpoint`] does, creating it first
/// (position 0, the code's version) when there is none.
///
/// # Errors
/// The database error.
async fn lock_or_create_checkpoint(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<Checkpoint, sqlx::Error> {
    if let Some(checkpoint) = lock_checkpoint(conn, projection.name()).await? {
        return Ok(checkpoint);
    }
    ensure_checkpoint(conn, projection).await?;
    lock_checkpoint(conn, projection.name())
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// The checkpoint of `name`, without locking it.
///
/// # Errors
/// The database error.
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM projection_checkpoints WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Every checkpoint row, by name.
///
/// # Errors
/// The database error.
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM projection_checkpoints ORDER BY name"
    ))
    .fetch_all(pool)
    .await
}

/// What [`apply_live`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveOutcome {
    /// Folded into the live tables; the checkpoint moved to the event's position.
    Applied {
        /// The event's global position, now the checkpoint.
        position: i64,
    },
    /// A dry run: it would have been folded; nothing changed.
    WouldApply {
        /// The event's global position.
        position: i64,
    },
    /// At or below the checkpoint: folded before, skipped.
    AlreadyApplied {
        /// The event's global position.
        position: i64,
        /// The checkpoint, at or past `position`.
        checkpoint: i64,
    },
    /// An earlier event is missing (`position > checkpoint + 1`): nothing changed.
    Gap {
        /// The event's global position.
        position: i64,
        /// The checkpoint; the events from `checkpoint + 1` to `position - 1` are missing.
        checkpoint: i64,
    },
    /// An earlier event was missing and `heal_gaps` was set: the missing events were read
    /// from the event log and folded first, then this one, in one transaction.
    Healed {
        /// The event's global position, now the checkpoint.
        position: i64,
        /// How many missing events were read from the log and folded before it.
        from_log: usize,
    },
    /// The live tables were built by another version of the code; a rebuild must swap in
    /// tables of this version first. Nothing changed.
    VersionMismatch {
        /// The version in the checkpoint row (that of the live tables).
        stored: i32,
        /// The running code's [`Projection::version`].
        code: i32,
    },
}

/// Folds one event into the live tables of `projection` and moves its checkpoint, in one
/// transaction. Events at or below the checkpoint are skipped. A gap changes nothing, unless
/// `heal_gaps`: then the missing events are read from the event log (the source of truth,
/// numbered without gaps) and folded before this one, in the same transaction.
///
/// # Errors
/// [`ProjectionError::Unnumbered`] for an event without a position, a database error, or the
/// projection's own error (the transaction is then rolled back).
pub async fn apply_live(
    pool: &PgPool,
    projection: &dyn Projection,
    event: &EventEnvelope,
    dry_run: bool,
    heal_gaps: bool,
) -> Result<LiveOutcome, ProjectionError> {
    let position = event
        .position
        .ok_or(ProjectionError::Unnumbered(event.event_id))?;
    let mut tx = pool.begin().await?;
    let checkpoint = lock_or_create_checkpoint(&mut tx, projection).await?;
    if checkpoint.version != projection.version() {
        return Ok(LiveOutcome::VersionMismatch {
            stored: checkpoint.version,
            code: projection.version(),
        });
    }
    if position <= checkpoint.position {
        return Ok(LiveOutcome::AlreadyApplied {
            position,
            checkpoint: checkpoint.position,
        });
    }
    // A dry run over a range never moves the checkpoint, so every event past it is one the
    // projection would fold (the ones before it in the range included).
    if dry_run {
        return Ok(LiveOutcome::WouldApply { position });
    }
    let mut batch = Vec::new();
    if position > checkpoint.position + 1 {
        let gap = Ok(LiveOutcome::Gap {
            position,
            checkpoint: checkpoint.position,
        });
        if !heal_gaps {
            return gap;
        }
        batch =
            log::events_after(&mut *tx, checkpoint.position, Some(position - 1), i64::MAX).await?;
        if i64::try_from(batch.len()).ok() != Some(position - 1 - checkpoint.position) {
            return gap;
        }
        tracing::warn!(
            name = projection.name(),
            checkpoint = checkpoint.position,
            position,
            missing = batch.len(),
            "projection gap: folding the missing events from the log"
        );
    }
    let from_log = batch.len();
    batch.push(event.clone());
    projection
        .apply_batch(&mut tx, &Tables::live(), &batch)
        .await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .bind(position)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if from_log > 0 {
        return Ok(LiveOutcome::Healed { position, from_log });
    }
    Ok(LiveOutcome::Applied { position })
}

/// Folds a batch of events into the live tables of `projection` and moves its checkpoint,
/// in one transaction: what [`apply_live`] does for one event, for many at once. The events
/// are taken in position order whatever order they came in; one outcome is returned per
/// event, in the order given. An event whose `heal_gaps` flag is set heals a gap before it
/// from the log, as in [`apply_live`]; an unhealed gap leaves that event and every later one
/// unapplied ([`LiveOutcome::Gap`]), while the events before the gap are folded.
///
/// # Errors
/// As [`apply_live`]; on an error nothing of the batch is applied.
pub async fn apply_live_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    events: &[(&EventEnvelope, bool)],
) -> Result<Vec<LiveOutcome>, ProjectionError> {
    let mut by_position = Vec::with_capacity(events.len());
    for (index, (event, heal_gaps)) in events.iter().enumerate() {
        let position = event
            .position
            .ok_or(ProjectionError::Unnumbered(event.event_id))?;
        by_position.push((position, index, *heal_gaps));
    }
    by_position.sort_by_key(|(position, index, _)| (*position, *index));
    let mut tx = pool.begin().await?;
    let checkpoint = lock_or_create_checkpoint(&mut tx, projection).await?;
    if checkpoint.version != projection.version() {
        let mismatch = LiveOutcome::VersionMismatch {
            stored: checkpoint.version,
            code: projection.version(),
        };
        return Ok(vec![mismatch; events.len()]);
    }
    let mut outcomes: Vec<Option<LiveOutcome>> = vec![None; events.len()];
    let mut folded: Vec<EventEnvelope> = Vec::new();
    let mut last = checkpoint.position;
    for (position, index, heal_gaps) in by_position {
        let outcome = if position <= last {
            LiveOutcome::AlreadyApplied {
                position,
                checkpoint: last,
            }
        } else if position == last + 1 {
            folded.push(events[index].0.clone());
            last = position;
            LiveOutcome::Applied { position }
        } else {
            let missing = if heal_gaps {
                log::events_after(&mut *tx, last, Some(position - 1), i64::MAX).await?
            } else {
                Vec::new()
            };
            if i64::try_from(missing.len()).ok() == Some(position - 1 - last) {
                tracing::warn!(
                    name = projection.name(),
                    checkpoint = last,
                    position,
                    missing = missing.len(),
                    "projection gap: folding the missing events from the log"
                );
                let from_log = missing.len();
                folded.extend(missing);
                folded.push(events[index].0.clone());
                last = position;
                LiveOutcome::Healed { position, from_log }
            } else {
                LiveOutcome::Gap {
                    position,
                    checkpoint: last,
                }
            }
        };
        outcomes[index] = Some(outcome);
    }
    if !folded.is_empty() {
        projection
            .apply_batch(&mut tx, &Tables::live(), &folded)
            .await?;
        sqlx::query(
            "UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
        )
        .bind(projection.name())
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    // Every event was given its outcome in the loop above.
    Ok(outcomes.into_iter().flatten().collect())
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Events for the unit tests of the folds.

    use orderflow_domain::OrderEvent;
    use serde_json::json;
    use uuid::Uuid;

    /// An `OrderPlaced` of `order` on 2026-11-25 at 23:30 UTC: 2 x `A` at 1000 and
    /// 1 x `B` at 250 in `currency` (total 2250).
    pub(crate) fn placed(order: Uuid, currency: &str) -> OrderEvent {
        OrderEvent::from_parts(
            "OrderPlaced",
            json!({
                "order_id": order, "customer_id": "c-1", "customer_email": "c1@example.com",
                "currency": currency,
                "lines": [{"sku": "A", "quantity": 2, "unit_price": 1000},
                          {"sku": "B", "quantity": 1, "unit_price": 250}],
                "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                                     "postal_code": "10115", "country": "DE"},
                "total": 2250, "placed_at": "2026-11-25T23:30:00Z"
            }),
        )
        .unwrap()
    }

    /// An `OrderConfirmed` with the nil reservation id.
    pub(crate) fn confirmed() -> OrderEvent {
        OrderEvent::from_parts("OrderConfirmed", json!({"reservation_id": Uuid::nil()})).unwrap()
    }

    /// An `OrderCancelled` by customer `c-1`, without a reason.
    pub(crate) fn cancelled() -> OrderEvent {
        OrderEvent::from_parts(
            "OrderCancelled",
            json!({"reason": "", "cancelled_by": "c-1"}),
        )
        .unwrap()
    }

    /// A `ShipmentStarted` with DHL under `tracking_number` (nil shipment id).
    pub(crate) fn shipped(tracking_number: &str) -> OrderEvent {
        OrderEvent::from_parts(
            "ShipmentStarted",
            json!({"shipment_id": Uuid::nil(), "carrier": "DHL",
                   "tracking_number": tracking_number}),
        )
        .unwrap()
    }
}
