//! Starting orderflow's roles and stopping them gracefully.
//!
//! Each role is a task that ends when the shutdown token is cancelled (SIGTERM or Ctrl-C):
//! the gateway drains in-flight requests, consumers finish or nak the message in hand, the
//! relay stops after its current batch.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonArgs, HttpArgs};

/// How long roles get to finish their work after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, finishing in-flight work");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Connects to the event store, creating the database and applying migrations if needed.
///
/// # Errors
/// When PostgreSQL cannot be reached or the schema cannot be applied.
pub async fn connect_store(common: &CommonArgs) -> Result<PgPool> {
    orderflow_store::connect(&common.database())
        .await
        .context("cannot open the event store (is PostgreSQL up? `scripts/services up`)")
}

/// `orderflow serve`: every role in one process.
///
/// # Errors
/// When a service cannot be reached at start, or a role fails.
pub async fn serve(common: &CommonArgs, http: &HttpArgs) -> Result<()> {
    let _ = (common, http, SHUTDOWN_GRACE);
    anyhow::bail!("serve is being assembled")
}

/// `orderflow gateway`: the REST gateway alone.
///
/// # Errors
/// When a service cannot be reached at start or the address cannot be bound.
pub async fn gateway(common: &CommonArgs, http: &HttpArgs) -> Result<()> {
    let _ = (common, http);
    anyhow::bail!("gateway is being assembled")
}

/// `orderflow relay`: publishes the event log to JetStream.
///
/// # Errors
/// When a service cannot be reached at start.
pub async fn relay(common: &CommonArgs) -> Result<()> {
    let _ = common;
    anyhow::bail!("relay is being assembled")
}
