//! Configuration: every setting is a flag with an `ORDERFLOW_*` environment variable behind
//! it and a default that works on a developer machine. Flags override variables. Values that
//! may hold secrets (URLs with passwords, tokens) are never printed, not even by `--help`.

use std::net::SocketAddr;

use orderflow_store::DatabaseOptions;

use crate::telemetry::LogFormat;

/// Settings every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// PostgreSQL URL of the event store; the database is created if missing.
    #[arg(
        long,
        env = "ORDERFLOW_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orderflow",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Most PostgreSQL connections this process opens.
    #[arg(
        long,
        env = "ORDERFLOW_DATABASE_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    pub database_max_connections: u32,

    /// NATS server with JetStream.
    #[arg(
        long,
        env = "ORDERFLOW_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub nats_url: String,

    /// JetStream stream that carries the events (the dead letters go to `<STREAM>_DLQ`).
    #[arg(long, env = "ORDERFLOW_STREAM", default_value = "ORDERS", global = true)]
    pub stream: String,

    /// Subject prefix: events are published to `<PREFIX>.<order_id>.<EventType>`.
    #[arg(
        long,
        env = "ORDERFLOW_SUBJECT_PREFIX",
        default_value = "orders",
        global = true
    )]
    pub subject_prefix: String,

    /// JetStream replicas of the streams (3 on a cluster).
    #[arg(long, env = "ORDERFLOW_STREAM_REPLICAS", default_value_t = 1, global = true)]
    pub stream_replicas: usize,

    /// Log format; the filter comes from RUST_LOG (default `info,sqlx=warn`).
    #[arg(
        long,
        env = "ORDERFLOW_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
}

impl CommonArgs {
    pub fn database(&self) -> DatabaseOptions {
        DatabaseOptions {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            ..DatabaseOptions::default()
        }
    }
}

/// Settings of the HTTP gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address the REST gateway listens on.
    #[arg(long, env = "ORDERFLOW_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Bearer token that opens the /v1/admin routes; without it they are off.
    #[arg(long, env = "ORDERFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}
