//! A fresh, uniquely named database per test on the real PostgreSQL, so tests run in
//! parallel and re-run on a dirty machine. It is dropped when the test is done with it,
//! whether the test passed or failed: by [`TestDatabase::drop_database`], or else when the
//! [`TestDatabase`] is dropped (a test that panicked, or one that never said).

use std::future::Future;
use std::time::Duration;

use orderflow_store::{connect, DatabaseOptions};
use sqlx::{Connection, PgConnection, PgPool};
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
/// `scripts/services clean` drops leftovers of earlier runs (a test process killed before it
/// could clean up).
///
/// Dropping it drops the database (`WITH (FORCE)`, whoever is still connected) when
/// [`TestDatabase::drop_database`] did not already, so a test that fails leaves nothing behind
/// on the shared server. A database on a server of the test's own is left to that server,
/// which is removed with its folder.
pub struct TestDatabase {
    /// The database's name, `orderflow_test_<uuid>`.
    pub name: String,
    /// The server it lives on, as [`server_url`] says it (a URL naming another database).
    pub server: String,
    /// How to connect to it (the pool's budget included), for a second pool or a process.
    pub options: DatabaseOptions,
    /// A pool on the database.
    pub pool: PgPool,
    /// Whether dropping the value still has to drop the database.
    guard: bool,
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
            guard: server == server_url(),
        }
    }

    /// Closes the pool and drops the database, whoever is still connected to it.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop_database(mut self) {
        self.guard = false;
        self.pool.close().await;
        drop_named(&self.server, &self.name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.guard {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        finish_on_own_thread(format!("test database {name}"), move || async move {
            drop_named(&server, &name).await
        });
    }
}

/// Drops database `name` on `server` (a URL naming another database there), whoever is
/// still connected to it.
async fn drop_named(server: &str, name: &str) -> Result<(), String> {
    let mut admin = PgConnection::connect(server)
        .await
        .map_err(|e| format!("connecting to drop {name}: {e}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("dropping {name}: {e}"))?;
    let _ = admin.close().await;
    Ok(())
}

/// How long a cleanup in `Drop` may take before the test goes on without it.
const CLEANUP_WITHIN: Duration = Duration::from_secs(30);

/// Runs the future `work` makes to its end on a thread and a runtime of its own, and waits
/// for it (at most [`CLEANUP_WITHIN`]): cleanup for `Drop`, which cannot await, may run while a
/// test panics, and may run on a runtime's thread (whose runtime must not be blocked on) or
/// outside any. A failure is reported on standard error, never raised: a panic in `Drop`
/// during a panic would abort the test binary. What is not removed here,
/// `scripts/services clean` removes later.
pub(crate) fn finish_on_own_thread<F, Fut>(what: String, work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>>,
{
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("testkit-cleanup".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("no runtime for the cleanup: {e}"))
                .and_then(|runtime| {
                    runtime.block_on(async {
                        tokio::time::timeout(CLEANUP_WITHIN, work())
                            .await
                            .unwrap_or_else(|_| Err(format!("no answer within {CLEANUP_WITHIN:?}")))
                    })
                });
            let _ = done.send(result);
        });
    let outcome = match spawned {
        Ok(_) => finished
            .recv_timeout(CLEANUP_WITHIN + Duration::from_secs(5))
            .unwrap_or_else(|e| Err(format!("the cleanup thread ended without a word ({e})"))),
        Err(e) => Err(format!("no thread for the cleanup: {e}")),
    };
    if let Err(error) = outcome {
        eprintln!(
            "testkit: could not remove the {what} ({error}); `scripts/services clean` removes it"
        );
    }
}
