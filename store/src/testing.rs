//! Test support shared by every crate's tests: a fresh, uniquely named database per test on
//! the real PostgreSQL, so tests run in parallel and re-run on a dirty machine.
//!
//! The server comes from `ORDERFLOW_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the test fails
//! with a message saying how to start it; it never skips.

use sqlx::PgPool;
use uuid::Uuid;

use crate::database::{connect, DatabaseOptions};

/// The server tests use, without a database name.
pub fn server_url() -> String {
    std::env::var("ORDERFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database of its own, migrated. Its name starts with `orderflow_test_` so that
/// `scripts/test` can drop leftovers of earlier runs.
pub struct TestDatabase {
    pub name: String,
    pub options: DatabaseOptions,
    pub pool: PgPool,
}

impl TestDatabase {
    /// # Panics
    /// When PostgreSQL is unreachable, with the command that starts it.
    pub async fn fresh() -> Self {
        let name = format!("orderflow_test_{}", Uuid::new_v4().simple());
        let mut url = url::Url::parse(&server_url()).expect("ORDERFLOW_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        let options = DatabaseOptions {
            url: url.to_string(),
            max_connections: 30,
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
            options,
            pool,
        }
    }
}
