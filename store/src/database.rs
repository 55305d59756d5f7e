//! Connecting to PostgreSQL and applying the schema.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Errors of the PostgreSQL side.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL could not be parsed as PostgreSQL connection options; holds the parser's message.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The first connection failed; [`StoreError::is_transient_connect`] tells whether a retry may help.
    #[error("cannot reach PostgreSQL at {url}: {source}")]
    Unreachable {
        /// The URL tried, with its password redacted.
        url: String,
        /// Why the connection failed.
        #[source]
        source: sqlx::Error,
    },
    /// The database named in the URL does not exist (a command that only reads creates none).
    #[error("database {name} does not exist at {url} (nothing was created; check --database-url or ORDERFLOW_DATABASE_URL)")]
    NoDatabase {
        /// The database's name.
        name: String,
        /// The URL tried, with its password redacted.
        url: String,
    },
    /// The database exists but holds no event store (no role ever started on it).
    #[error("database {name} at {url} holds no orderflow event store (nothing was changed; `orderflow serve` creates one)")]
    NoEventStore {
        /// The database's name.
        name: String,
        /// The URL tried, with its password redacted.
        url: String,
    },
    /// Applying the embedded migrations failed.
    #[error("applying migrations failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Sealing or opening personal data failed (no master key, a wrong one).
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// A stored event does not decode into its domain type, even after upcasting.
    #[error("stored event {event_type} {version} of order {order_id} cannot be read: {source}")]
    Corrupt {
        /// The event's aggregate id as stored (normally a UUID).
        order_id: String,
        /// The stored event type name, for example `OrderPlaced`.
        event_type: String,
        /// The stored event version, for example `1.0`.
        version: String,
        /// Why the body did not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// True when PostgreSQL was not there (connection refused or reset, a timeout, the
    /// server starting up or shutting down), so a retry may succeed. False for a malformed
    /// URL, wrong credentials, an unknown role, a failed migration.
    pub fn is_transient_connect(&self) -> bool {
        match self {
            Self::Unreachable { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
                // 57P03 cannot_connect_now: the server is starting or shutting down.
                sqlx::Error::Database(e) => e.code().as_deref() == Some("57P03"),
                _ => false,
            },
            _ => false,
        }
    }
}

/// How to connect. `Default` is the local development database.
#[derive(Clone)]
pub struct DatabaseOptions {
    /// The PostgreSQL connection URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// Most connections the pool opens at once.
    pub max_connections: u32,
    /// Longest any statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Longest a connection may sit idle inside a transaction before PostgreSQL ends it.
    pub idle_in_transaction_timeout: Duration,
    /// Longest a caller waits for a connection from the pool (behind other callers, or while
    /// sqlx reconnects to a server that refuses) before it fails with a pool timeout. Callers
    /// that must answer sooner when the server is away guard their work with
    /// [`crate::DatabaseHealth`].
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for DatabaseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseOptions")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/orderflow".into(),
            max_connections: 20,
            statement_timeout: Duration::from_secs(60),
            idle_in_transaction_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The URL with any password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".into(),
    }
}

fn connect_options(options: &DatabaseOptions) -> Result<PgConnectOptions, StoreError> {
    let statement = format!("{}ms", options.statement_timeout.as_millis());
    let idle = format!("{}ms", options.idle_in_transaction_timeout.as_millis());
    Ok(PgConnectOptions::from_str(&options.url)
        .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
        .options([
            ("statement_timeout", statement.as_str()),
            ("idle_in_transaction_session_timeout", idle.as_str()),
        ])
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Creates the database named in the URL when it does not exist yet (connecting to the
/// `postgres` maintenance database to do so). Safe to race with another process.
///
/// # Errors
/// [`StoreError::Unreachable`] when the server cannot be reached.
pub async fn ensure_database(options: &DatabaseOptions) -> Result<(), StoreError> {
    let target = connect_options(options)?;
    let Some(name) = target.get_database().map(str::to_string) else {
        return Ok(());
    };
    let unreachable = |source| StoreError::Unreachable {
        url: redact_url(&options.url),
        source,
    };
    let mut admin = target
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(unreachable)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&create).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // 42P04 duplicate_database, 23505 unique_violation: another process won the race.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await?;
    Ok(())
}

/// Connects a pool (creating the database if needed) and applies the migrations.
///
/// # Errors
/// [`StoreError::Unreachable`] when PostgreSQL cannot be reached, [`StoreError::Migration`]
/// when the schema cannot be applied.
pub async fn connect(options: &DatabaseOptions) -> Result<PgPool, StoreError> {
    ensure_database(options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect_options(options)?)
        .await
        .map_err(|source| StoreError::Unreachable {
            url: redact_url(&options.url),
            source,
        })?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Connects a pool to an event store that exists, for the commands that only read: it never
/// creates the database, and never applies a migration.
///
/// # Errors
/// [`StoreError::NoDatabase`] when the database does not exist, [`StoreError::NoEventStore`]
/// when it has no event store, [`StoreError::Unreachable`] when PostgreSQL cannot be reached.
pub async fn open(options: &DatabaseOptions) -> Result<PgPool, StoreError> {
    let connect = connect_options(options)?;
    let name = connect.get_database().unwrap_or("postgres").to_string();
    let url = redact_url(&options.url);
    let pool = match PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
    {
        Ok(pool) => pool,
        // 3D000 invalid_catalog_name: no database of that name.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            return Err(StoreError::NoDatabase { name, url })
        }
        Err(source) => return Err(StoreError::Unreachable { url, source }),
    };
    let has_events: bool = sqlx::query_scalar("SELECT to_regclass('events') IS NOT NULL")
        .fetch_one(&pool)
        .await?;
    if !has_events {
        pool.close().await;
        return Err(StoreError::NoEventStore { name, url });
    }
    Ok(pool)
}

/// Applies every migration not applied yet. Idempotent, and safe to run from several
/// processes at once (sqlx holds an advisory lock while migrating).
///
/// # Errors
/// [`StoreError::Migration`] when a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}
