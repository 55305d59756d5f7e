//! [`OrderStore`]: runs commands on the Order aggregate, and loads orders (now, or as they
//! were after a given event) from the event log.
//!
//! Commands run either through cqrs-es and postgres-es ([`OrderStore::execute`]: load,
//! handle, append in a transaction) or through the store's own appender, which writes the
//! same rows with fewer statements: a new order with a generated id is appended without a
//! load ([`OrderStore::place_new`]), a command from a consumer is one read and one append
//! ([`OrderStore::execute_appending`]), and a consumer's batch of commands is one read and
//! one append for all of them ([`OrderStore::execute_all`]). The appends of concurrent
//! commands share one statement and one commit (group commit, `crate::appender`). Both paths decide with the same aggregate and
//! meet the same primary key, so a concurrent change is a conflict on either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework};
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::{upcasting, Order, OrderCommand, OrderError, OrderEvent};
use orderflow_trace::{TraceContext, TRACEPARENT};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use uuid::Uuid;

use crate::appender::{Appender, NewEvents};
use crate::health::DatabaseHealth;
use crate::log::{self, EventEnvelope};
use crate::vault::{Vault, VaultError};
use crate::StoreError;

type OrderCqrs = CqrsFramework<Order, PersistedEventStore<PostgresEventRepository, Order>>;

/// Why a command was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command (wrong state, unknown order, ...): the caller's
    /// problem, reported as 404 or 409.
    #[error(transparent)]
    Domain(#[from] OrderError),
    /// Another command changed the order between load and commit. Retrying may succeed.
    #[error("the order was changed by another command at the same time")]
    Conflict,
    /// The event store failed; nothing was written.
    #[error("event store failure: {0}")]
    Store(String),
    /// PostgreSQL did not answer (refused, lost the connection, or hung); nothing was
    /// written. A retry may succeed once it is back.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The connection broke after the write was sent: PostgreSQL may have committed it
    /// without the answer arriving, so the command may or may not have been carried out.
    /// Only a read after PostgreSQL is back tells which; a retry of the same command must
    /// expect either.
    #[error("the event store stopped answering during the write, which may have been stored: {0}")]
    OutcomeUnknown(String),
}

/// Where a command came from, stored with its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    /// Shared by everything one request set in motion.
    pub correlation_id: String,
    /// The event whose handling issued this command, if any.
    pub causation_id: Option<String>,
    /// Who issued it: `api`, or a consumer's name.
    pub actor: String,
    /// The span that issued it (the request's, or the consumer's for the event it handled),
    /// stored as the events' `traceparent` so that their handling joins the same trace.
    /// Events stored before trace context existed have none.
    pub trace: Option<TraceContext>,
}

impl CommandMetadata {
    /// A command from an HTTP request, in the trace of the current span (the request's).
    pub fn from_request(request_id: &str) -> Self {
        Self {
            correlation_id: request_id.to_string(),
            causation_id: None,
            actor: "api".into(),
            trace: orderflow_trace::current(),
        }
    }

    /// A command issued by `actor` while handling `event`: same correlation, caused by it,
    /// in the trace of the event's `traceparent`. While a consumer handles an event, that
    /// names the consumer's span for it (the runtime sets it), so the command's events are
    /// children of the consumer's handling.
    pub fn caused_by(event: &EventEnvelope, actor: &str) -> Self {
        Self {
            correlation_id: event
                .metadata
                .correlation_id
                .clone()
                .unwrap_or_else(|| event.event_id.to_string()),
            causation_id: Some(event.event_id.to_string()),
            actor: actor.to_string(),
            trace: event.metadata.trace(),
        }
    }

    /// The same metadata in the trace `trace` instead.
    pub fn with_trace(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace;
        self
    }

    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("correlation_id".to_string(), self.correlation_id.clone()),
            ("actor".to_string(), self.actor.clone()),
        ]);
        if let Some(causation) = &self.causation_id {
            map.insert("causation_id".into(), causation.clone());
        }
        if let Some(trace) = &self.trace {
            map.insert(TRACEPARENT.into(), trace.to_string());
        }
        map
    }
}

/// An order read from the log, with the sequence of its last event.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedOrder {
    /// The order as folded from its events.
    pub state: OrderState,
    /// The sequence of its last event: the order's version, from 1.
    pub version: i64,
}

/// Runs commands and loads orders. Cheap to clone.
#[derive(Clone)]
pub struct OrderStore {
    pool: PgPool,
    cqrs: Arc<OrderCqrs>,
    appender: Appender,
    health: DatabaseHealth,
    vault: Vault,
}

impl OrderStore {
    /// A store on `pool`, with the domain's upcasters for older event versions, sealing and
    /// opening personal data with the process's master key ([`Vault::new`]).
    pub fn new(pool: PgPool) -> Self {
        let repository = PostgresEventRepository::new(pool.clone());
        // Commands decided by cqrs-es never need personal data: sealed fields read as erased.
        let mut upcasters = upcasting::upcasters();
        upcasters.push(Box::new(SealedAsErased));
        let store = PersistedEventStore::new_event_store(repository).with_upcasters(upcasters);
        let health = DatabaseHealth::new(&pool);
        Self {
            appender: Appender::new(pool.clone(), health.clone()),
            health,
            vault: Vault::new(pool.clone()),
            pool,
            cqrs: Arc::new(CqrsFramework::new(store, vec![], ())),
        }
    }

    /// The store with `vault` instead of one on the process's master key.
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = vault;
        self
    }

    /// The vault that seals and opens the personal data of this store's orders.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The connection pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the store's database answers; the appends of the store give up what they
    /// have not written yet when it goes away ([`CommandError::Unavailable`]).
    pub fn health(&self) -> &DatabaseHealth {
        &self.health
    }

    /// Runs `command` on order `order_id` once. The work runs in its own task, so a caller
    /// that is dropped halfway (a client that hung up) cannot cut a transaction in half.
    ///
    /// # Errors
    /// [`CommandError::Domain`] when the aggregate refuses, [`CommandError::Conflict`] on a
    /// concurrent change, [`CommandError::Store`] when the store fails.
    pub async fn execute(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        if matches!(command, OrderCommand::PlaceOrder(_)) {
            // A placement is sealed by the store's own append, never written by cqrs-es.
            let store = self.clone();
            let metadata = metadata.clone();
            return tokio::spawn(async move {
                store.execute_appending(order_id, command, &metadata).await
            })
            .await
            .unwrap_or_else(|join| {
                Err(CommandError::Store(format!("command task failed: {join}")))
            });
        }
        let cqrs = Arc::clone(&self.cqrs);
        let map = metadata.to_map();
        let task = tokio::spawn(async move {
            cqrs.execute_with_metadata(&order_id.to_string(), command, map)
                .await
        });
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AggregateError::UserError(e))) => Err(CommandError::Domain(e)),
            Ok(Err(AggregateError::AggregateConflict)) => Err(CommandError::Conflict),
            // cqrs-es does not say whether the connection broke while loading or while
            // committing, so the outcome is not known.
            Ok(Err(AggregateError::DatabaseConnectionError(e))) => {
                Err(CommandError::OutcomeUnknown(e.to_string()))
            }
            Ok(Err(other)) => Err(CommandError::Store(other.to_string())),
            Err(join) => Err(CommandError::Store(format!("command task failed: {join}"))),
        }
    }

    /// Places a new order whose id was generated by the caller, so no order can have it yet:
    /// the command is decided on an empty aggregate without loading anything, its events are
    /// appended with one statement (shared with concurrent appends: group commit; the primary
    /// key still refuses a second order with the id), and the answer is folded from those
    /// events, so no read follows the write. Two statements fewer per order than [`OrderStore::execute`]
    /// followed by [`OrderStore::load`].
    ///
    /// # Errors
    /// [`CommandError::Domain`] when the aggregate refuses, [`CommandError::Conflict`] when an
    /// order with this id exists after all, [`CommandError::Store`] when the store fails.
    pub async fn place_new(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        metadata: &CommandMetadata,
    ) -> Result<LoadedOrder, CommandError> {
        use cqrs_es::Aggregate;
        let mut order = Order::default();
        let events = order.decide(command)?;
        self.append(order_id, 0, &events, metadata).await?;
        let version = i64::try_from(events.len()).unwrap_or(i64::MAX);
        for event in events {
            order.apply(event);
        }
        let state = order
            .into_state()
            .ok_or_else(|| CommandError::Store("placing produced no order".into()))?;
        Ok(LoadedOrder { state, version })
    }

    /// Runs `command` on order `order_id` with two statements: one read of the order's
    /// events (upcast as everywhere else), the decision in memory, and one append of the new
    /// events after the last one read. The append fails on the primary key when another
    /// command appended meanwhile ([`CommandError::Conflict`]), as with cqrs-es.
    ///
    /// # Errors
    /// As [`OrderStore::execute`].
    pub async fn execute_appending(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let stored = log::order_events(&self.pool, order_id)
            .await
            .map_err(store_error)?;
        let (order, version) = aggregate_of(&stored).map_err(store_error)?;
        let events = order.decide(command)?;
        if events.is_empty() {
            return Ok(());
        }
        self.append(order_id, version, &events, metadata).await
    }

    /// Runs many commands (from consumers) with two statements in all: one read of every
    /// order's events, the decisions in memory (commands to the same order see each other's
    /// events, in the order given), and one append of every new event. When that append meets
    /// a concurrent change (a taken sequence), nothing of it is written and each command runs
    /// alone with [`OrderStore::execute_retrying`]. One result per command, in order.
    pub async fn execute_all(
        &self,
        commands: Vec<(Uuid, OrderCommand, CommandMetadata)>,
        attempts: u32,
    ) -> Vec<Result<(), CommandError>> {
        use cqrs_es::Aggregate;
        let mut ids: Vec<Uuid> = commands.iter().map(|(id, _, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let fail_all = |error: StoreError| {
            let error = store_error(error);
            commands.iter().map(|_| Err(error.clone())).collect()
        };
        let stored = match log::events_of_orders(&self.pool, &ids).await {
            Ok(stored) => stored,
            Err(error) => return fail_all(error),
        };
        let mut orders: HashMap<Uuid, (Order, i64)> = HashMap::new();
        for (id, events) in stored {
            match aggregate_of(&events) {
                Ok(aggregate) => orders.insert(id, aggregate),
                Err(error) => return fail_all(error),
            };
        }
        let mut results: Vec<Result<(), CommandError>> = Vec::with_capacity(commands.len());
        let mut rows = NewEvents::default();
        for (id, command, metadata) in &commands {
            let (order, version) = orders.entry(*id).or_default();
            match order.decide(command.clone()) {
                Ok(events) => {
                    let mut outcome = Ok(());
                    for event in events {
                        *version += 1;
                        let pushed = match self.vault.seal(&event).await {
                            Ok(payload) => rows.push(*id, *version, &event, payload, metadata),
                            Err(error) => Err(CommandError::Store(error.to_string())),
                        };
                        if let Err(error) = pushed {
                            outcome = Err(error);
                            break;
                        }
                        order.apply(event);
                    }
                    results.push(outcome);
                }
                Err(refusal) => results.push(Err(CommandError::Domain(refusal))),
            }
        }
        match self.appender.append(rows).await {
            Ok(()) => results,
            Err(CommandError::Conflict) => {
                tracing::debug!(
                    commands = commands.len(),
                    "a batch of commands met a concurrent change; running them one by one"
                );
                let mut results = Vec::with_capacity(commands.len());
                for (id, command, metadata) in commands {
                    results.push(
                        self.execute_retrying(id, command, &metadata, attempts)
                            .await,
                    );
                }
                results
            }
            Err(error) => commands.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    /// Appends `events` to order `order_id` after sequence `after`, sharing the statement
    /// and the commit with the appends of other commands made meanwhile (group commit, see
    /// `crate::appender`).
    async fn append(
        &self,
        order_id: Uuid,
        after: i64,
        events: &[OrderEvent],
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let mut rows = NewEvents::default();
        for (sequence, event) in (after + 1..).zip(events) {
            let payload = self.vault.seal(event).await.map_err(|e| match e {
                VaultError::Database(e) if crate::health::is_connection_error(&e) => {
                    CommandError::Unavailable(e.to_string())
                }
                e => CommandError::Store(e.to_string()),
            })?;
            rows.push(order_id, sequence, event, payload, metadata)?;
        }
        self.appender.append(rows).await
    }

    /// Runs an internal command (from a consumer, not a client) with
    /// [`OrderStore::execute_appending`], retrying up to `attempts` times when a concurrent
    /// command got there first.
    ///
    /// # Errors
    /// As [`OrderStore::execute`]; [`CommandError::Conflict`] only when every attempt met one.
    pub async fn execute_retrying(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        metadata: &CommandMetadata,
        attempts: u32,
    ) -> Result<(), CommandError> {
        let mut attempt = 1;
        loop {
            match self
                .execute_appending(order_id, command.clone(), metadata)
                .await
            {
                Err(CommandError::Conflict) if attempt < attempts => {
                    tracing::debug!(%order_id, attempt, "concurrent change, retrying command");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Every event of the order, by sequence (empty for an unknown order), personal data
    /// opened through the store's [`Vault`] (erased when the customer was forgotten).
    ///
    /// # Errors
    /// A database error, an unreadable stored event, or no master key to open with.
    pub async fn events(&self, order_id: Uuid) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut events = log::order_events(&self.pool, order_id).await?;
        self.vault.open_all(&mut events).await?;
        Ok(events)
    }

    /// The order as the log says now, or `None` when it was never placed.
    ///
    /// # Errors
    /// A database error or an unreadable stored event.
    pub async fn load(&self, order_id: Uuid) -> Result<Option<LoadedOrder>, StoreError> {
        self.load_at(order_id, None).await
    }

    /// The order as it was after event `at_sequence` (all events when `None`).
    ///
    /// # Errors
    /// A database error or an unreadable stored event.
    pub async fn load_at(
        &self,
        order_id: Uuid,
        at_sequence: Option<i64>,
    ) -> Result<Option<LoadedOrder>, StoreError> {
        let events = self.events(order_id).await?;
        fold(&events, at_sequence)
    }
}

/// The aggregate folded from an order's stored events, with the sequence of the last one
/// (0 for an order never placed): what a command is decided on.
fn aggregate_of(events: &[EventEnvelope]) -> Result<(Order, i64), StoreError> {
    use cqrs_es::Aggregate;
    let mut order = Order::default();
    let mut version = 0;
    for envelope in events {
        order.apply(envelope.event()?);
        version = envelope.sequence;
    }
    Ok((order, version))
}

fn store_error(error: StoreError) -> CommandError {
    match &error {
        StoreError::Database(e) if crate::health::is_connection_error(e) => {
            CommandError::Unavailable(error.to_string())
        }
        _ => CommandError::Store(error.to_string()),
    }
}

/// Folds envelopes (up to `at_sequence`) into an order. Shared by the gateway's time travel
/// and the replay command.
///
/// # Errors
/// [`StoreError::Corrupt`] when an event's body does not fit its type.
pub fn fold(
    events: &[EventEnvelope],
    at_sequence: Option<i64>,
) -> Result<Option<LoadedOrder>, StoreError> {
    use cqrs_es::Aggregate;
    let mut order = Order::default();
    let mut version = 0;
    for envelope in events
        .iter()
        .take_while(|e| at_sequence.is_none_or(|n| e.sequence <= n))
    {
        order.apply(envelope.event()?);
        version = envelope.sequence;
    }
    Ok(order
        .into_state()
        .map(|state| LoadedOrder { state, version }))
}

/// Shows the sealed personal fields of a stored `OrderPlaced` as erased, for the commands
/// cqrs-es decides (they never read personal data).
struct SealedAsErased;

impl cqrs_es::persist::EventUpcaster for SealedAsErased {
    fn can_upcast(&self, event_type: &str, _event_version: &str) -> bool {
        event_type == "OrderPlaced"
    }

    fn upcast(
        &self,
        mut event: cqrs_es::persist::SerializedEvent,
    ) -> cqrs_es::persist::SerializedEvent {
        if let Some(body) = event.payload.get_mut("OrderPlaced") {
            if let Some(shown) = crate::vault::without_sealed(body) {
                *body = shown;
            }
        }
        event
    }
}
