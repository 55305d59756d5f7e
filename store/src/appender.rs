//! Group commit: appends of independent commands that arrive while another append is being
//! written share one `INSERT` and one commit.
//!
//! Every [`crate::OrderStore`] owns one [`Appender`]: a task that takes the appends waiting
//! in its queue (up to [`MAX_GROUP`]), writes them with one statement ([`NewEvents`]) and
//! answers each. Under load an append waits at most for the one being written; alone, it is
//! written at once. Each append is still checked on its own: when the shared statement meets a
//! taken sequence (a concurrent command on the same order), nothing of it is written and the
//! appends of the group are written one by one, so only the one that conflicts is told so.
//! Commit order is the statement's, which the relay's numbering handles like any other
//! transaction (`crate::log`).
//!
//! The connection for a group is taken under [`DatabaseHealth::guard`]: when PostgreSQL goes
//! away before the group has one, every append of the group fails at once with
//! [`CommandError::Unavailable`] and nothing of it is ever written, instead of each waiting for
//! the pool's acquire timeout (and being written after its caller was told it failed). A group
//! whose statement was sent when the connection broke is not split: its appends all fail with
//! [`CommandError::OutcomeUnknown`], since PostgreSQL may have committed the statement without
//! the answer reaching us (a server killed between its commit and its reply does exactly that).

use std::sync::{Arc, OnceLock};

use orderflow_domain::{Order, OrderEvent};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::health::{is_connection_error, DatabaseHealth, Unavailable};
use crate::orders::{CommandError, CommandMetadata};

/// The most appends written with one statement.
pub(crate) const MAX_GROUP: usize = 512;

/// One queued append and where its answer goes.
struct Pending {
    rows: NewEvents,
    answer: oneshot::Sender<Result<(), CommandError>>,
}

/// The group-commit queue of one store; its task starts with the first append.
#[derive(Clone)]
pub(crate) struct Appender {
    pool: PgPool,
    health: DatabaseHealth,
    queue: Arc<OnceLock<mpsc::Sender<Pending>>>,
}

impl Appender {
    pub(crate) fn new(pool: PgPool, health: DatabaseHealth) -> Self {
        Self {
            pool,
            health,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Writes `rows`, sharing the statement with the appends queued meanwhile.
    ///
    /// # Errors
    /// [`CommandError::Conflict`] when a sequence is taken, [`CommandError::Store`] when the
    /// database fails.
    pub(crate) async fn append(&self, rows: NewEvents) -> Result<(), CommandError> {
        if rows.len() == 0 {
            return Ok(());
        }
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(4 * MAX_GROUP);
            tokio::spawn(write_groups(
                self.pool.clone(),
                self.health.clone(),
                receiver,
            ));
            sender
        });
        let (answer, answered) = oneshot::channel();
        match queue.send(Pending { rows, answer }).await {
            Ok(()) => answered.await.unwrap_or_else(|_| {
                Err(CommandError::Store(
                    "the append was dropped unanswered".into(),
                ))
            }),
            // The task is gone (its runtime ended): write alone.
            Err(mpsc::error::SendError(pending)) => {
                let mut connection = connect(&self.pool, &self.health).await?;
                pending.rows.insert(&mut connection).await
            }
        }
    }
}

/// A connection from the pool, given up when the database is (or goes) away.
async fn connect(
    pool: &PgPool,
    health: &DatabaseHealth,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, CommandError> {
    match health.guard(pool.acquire()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(command_error(error, health)),
        Err(Unavailable(why)) => Err(CommandError::Unavailable(why)),
    }
}

/// The command error of a failed statement; a connection error also asks `health` to probe.
fn command_error(error: sqlx::Error, health: &DatabaseHealth) -> CommandError {
    match error {
        sqlx::Error::Database(e) if e.is_unique_violation() => CommandError::Conflict,
        e if is_connection_error(&e) => {
            health.suspect();
            CommandError::Unavailable(e.to_string())
        }
        e => CommandError::Store(e.to_string()),
    }
}

/// The appender task: writes what is queued, a group at a time, until every store handle is
/// dropped.
async fn write_groups(pool: PgPool, health: DatabaseHealth, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(pending) => group.push(pending),
                Err(_) => break,
            }
        }
        metrics::histogram!("orderflow_store_append_group_size").record(group.len() as f64);
        let mut connection = match connect(&pool, &health).await {
            Ok(connection) => connection,
            Err(error) => {
                for pending in group {
                    let _ = pending.answer.send(Err(error.clone()));
                }
                continue;
            }
        };
        if group.len() == 1 {
            let pending = group.remove(0);
            let result = pending.rows.insert(&mut connection).await;
            let _ = pending.answer.send(result);
            continue;
        }
        let mut all = NewEvents::default();
        let mut answers = Vec::with_capacity(group.len());
        let mut sizes = Vec::with_capacity(group.len());
        for pending in group {
            sizes.push(pending.rows.len());
            all.extend(pending.rows);
            answers.push(pending.answer);
        }
        match all.insert(&mut connection).await {
            Ok(()) => {
                for answer in answers {
                    let _ = answer.send(Ok(()));
                }
            }
            Err(error @ CommandError::OutcomeUnknown(_)) => {
                // The connection broke: the statement may or may not have been committed, and
                // nothing more can be written now.
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
            Err(_) => {
                // Someone's sequence is taken (or the statement failed): each on its own.
                for (rows, answer) in all.split(&sizes).into_iter().zip(answers) {
                    let _ = answer.send(rows.insert(&mut connection).await);
                }
            }
        }
    }
}

/// New events of one or more orders, appended with one statement in the columns postgres-es
/// writes (so cqrs-es reads them as its own). A sequence that is taken (another command got
/// there first) fails the whole statement: nothing of it is written.
#[derive(Debug, Default)]
pub(crate) struct NewEvents {
    order_ids: Vec<String>,
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl NewEvents {
    fn len(&self) -> usize {
        self.sequences.len()
    }

    fn extend(&mut self, other: NewEvents) {
        self.order_ids.extend(other.order_ids);
        self.sequences.extend(other.sequences);
        self.types.extend(other.types);
        self.versions.extend(other.versions);
        self.payloads.extend(other.payloads);
        self.metadata.extend(other.metadata);
    }

    /// Cuts the rows back into the appends they were [`NewEvents::extend`]ed from, of
    /// `sizes` rows each, in order.
    fn split(mut self, sizes: &[usize]) -> Vec<NewEvents> {
        let mut parts = Vec::with_capacity(sizes.len());
        for size in sizes {
            let take = (*size).min(self.len());
            parts.push(NewEvents {
                order_ids: self.order_ids.drain(..take).collect(),
                sequences: self.sequences.drain(..take).collect(),
                types: self.types.drain(..take).collect(),
                versions: self.versions.drain(..take).collect(),
                payloads: self.payloads.drain(..take).collect(),
                metadata: self.metadata.drain(..take).collect(),
            });
        }
        parts
    }

    /// Adds one event, `payload` being its stored (tagged, sealed) body.
    pub(crate) fn push(
        &mut self,
        order_id: Uuid,
        sequence: i64,
        event: &OrderEvent,
        payload: serde_json::Value,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        use cqrs_es::DomainEvent;
        self.metadata.push(
            serde_json::to_value(metadata.to_map())
                .map_err(|e| CommandError::Store(e.to_string()))?,
        );
        self.payloads.push(payload);
        self.order_ids.push(order_id.to_string());
        self.sequences.push(sequence);
        self.types.push(event.event_type());
        self.versions.push(event.event_version());
        Ok(())
    }

    pub(crate) async fn insert(&self, connection: &mut PgConnection) -> Result<(), CommandError> {
        use cqrs_es::Aggregate;
        if self.sequences.is_empty() {
            return Ok(());
        }
        let inserted = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             SELECT $1, a, s, t, v, p, m
               FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::json[],
                           $7::json[]) AS e(a, s, t, v, p, m)",
        )
        .bind(<Order as Aggregate>::TYPE)
        .bind(&self.order_ids)
        .bind(&self.sequences)
        .bind(&self.types)
        .bind(&self.versions)
        .bind(&self.payloads)
        .bind(&self.metadata)
        .execute(connection)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CommandError::Conflict),
            Err(e) if is_connection_error(&e) => Err(CommandError::OutcomeUnknown(e.to_string())),
            Err(e) => Err(CommandError::Store(e.to_string())),
        }
    }
}
