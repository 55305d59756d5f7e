//! A fresh, uniquely named database per test on the real PostgreSQL, so tests run in
//! parallel and re-run on a dirty machine.

use orderflow_store::{connect, DatabaseOptions};
use sqlx::PgPool;
use uuid::Uuid;

/// How many connections a test's pool may open unless it asks for another budget. The server
/// allows 100, and tests of a binary run side by side.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 30;

/// The master key of every test process (hex): installed by [`TestDatabase`], given to the
/// binary by [`crate::process::binary_env`]. For tests only.
pub const TEST_MASTER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Installs [`TEST_MASTER_KEY`] as the test process's master key (once).
///
/// # Panics
/// When the test installed another key before.
pub fn install_test_master_key() {
    let key = orderflow_store::MasterKey::from_hex(TEST_MASTER_KEY).expect("the test key is hex");
    orderflow_store::vault::install_master_key(key).expect("no other master key in tests");
}

/// The server tests use, without a database name: `ORDERFLOW_TEST_DATABASE_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn server_url() -> String {
    std::env::var("ORDERFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database of its own, migrated. Its name starts with `orderflow_test_`, so
/// `scripts/services clean` drops leftovers of earlier runs.
pub struct TestDatabase {
    /// The database's name, `orderflow_test_<uuid>`.
    pub name: String,
    /// The server it lives on, as [`server_url`] says it (a URL naming another database).
    pub server: String,
    /// How to connect to it (the pool's budget included), for a second pool or a process.
    pub options: DatabaseOptions,
    /// A pool on the database.
    pub pool: PgPool,
}

impl TestDatabase {
    /// A fresh database with a pool of at most [`DEFAULT_MAX_CONNECTIONS`].
    ///
    /// # Panics
    /// When PostgreSQL is unreachable, with the command that starts it.
    pub async fn fresh() -> Self {
        Self::with_max_connections(DEFAULT_MAX_CONNECTIONS).await
    }

    /// A fresh database with a pool of at most `max_connections`.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable, with the command that starts it.
    pub async fn with_max_connections(max_connections: u32) -> Self {
        Self::on_server(&server_url(), max_connections).await
    }

    /// A fresh database on the server of `server` (a URL naming any database there, such as
    /// a test's own [`crate::postgres::PostgresServer::url`]), with a pool of at most
    /// `max_connections`.
    ///
    /// # Panics
    /// When that server is unreachable.
    pub async fn on_server(server: &str, max_connections: u32) -> Self {
        install_test_master_key();
        let name = format!("orderflow_test_{}", Uuid::new_v4().simple());
        let mut url = url::Url::parse(server).expect("the test server's URL is a URL");
        url.set_path(&name);
        let options = DatabaseOptions {
            url: url.to_string(),
            max_connections,
            ..DatabaseOptions::default()
        };
        let pool = connect(&options).await.unwrap_or_else(|e| {
            panic!(
                "tests need PostgreSQL ({e}). Start it with `scripts/services up`, \
                 or point ORDERFLOW_TEST_DATABASE_URL at a server"
            )
        });
        Self {
            name,
            server: server.to_string(),
            options,
            pool,
        }
    }

    /// Closes the pool and drops the database, whoever is still connected to it.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop_database(self) {
        self.pool.close().await;
        let admin = PgPool::connect(&self.server)
            .await
            .expect("connecting to drop a test database");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("dropping {}: {e}", self.name));
        admin.close().await;
    }
}
