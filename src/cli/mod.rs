//! The command line: what each `orderflow` command does, in `--help` words.

use anyhow::Result;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::config::{CommonArgs, ConsumerArgs, HttpArgs};

mod dlq;
mod events;
mod keys;
mod progress;
mod projections;
mod replay;
mod table;
mod trace;
mod verify;

/// orderflow: an event-sourced order system. Orders are stored as events in PostgreSQL,
/// published to NATS JetStream, and handled by independent consumers.
///
/// Every setting is a flag or an ORDERFLOW_* environment variable; defaults work against
/// PostgreSQL on 127.0.0.1:5432 and NATS on 127.0.0.1:4222 (`scripts/services up` starts them).
#[derive(Debug, Parser)]
#[command(name = "orderflow", version, propagate_version = true)]
pub struct Cli {
    /// Settings every command shares: services, stream, logging.
    #[command(flatten)]
    pub common: CommonArgs,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of the `orderflow` binary: the roles to run and the operator tools.
// clap does not show this comment: `Cli`'s own about is applied after the subcommands'.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process: gateway, relay, workers and projections.
    Serve {
        /// Where the gateway listens, and its admin token.
        #[command(flatten)]
        http: HttpArgs,
        /// Retries, ack wait, concurrency and notification channel of the consumers.
        #[command(flatten)]
        consumers: ConsumerArgs,
        /// Leave out this consumer (a worker or a projection), for example to run it as a
        /// process of its own or to add it later; repeat the flag, or separate names with
        /// commas in the variable.
        #[arg(
            long = "without-consumer",
            value_name = "NAME",
            env = "ORDERFLOW_SERVE_WITHOUT",
            value_delimiter = ','
        )]
        without: Vec<String>,
    },
    /// Run the REST gateway only.
    Gateway {
        /// Where the gateway listens, and its admin token.
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Run the relay only: publish every committed event to JetStream, in commit order.
    /// Several relays may run; one publishes, the others stand by.
    Relay,
    /// Publish a range of the event log to the stream again, from the store. For when JetStream
    /// lost acknowledged messages (it writes to disk lazily) or the stream was recreated.
    /// Inside the server's duplicate window it drops what it still has; past it, consumers'
    /// inboxes absorb the repeats. The relay's checkpoint is left alone.
    Republish {
        /// Publish events after this global position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Up to and including this position (default: the head of the log).
        #[arg(long)]
        until: Option<i64>,
    },
    /// Run one worker's durable consumer: inventory, notifications, shipments or loyalty.
    /// Several processes may run the same worker; they share its durable consumer. A worker
    /// started for the first time learns the whole log (or from --from on), catching up in
    /// full batches, then follows it live.
    Worker {
        /// inventory, notifications, shipments or loyalty.
        name: String,
        /// Where the worker's durable consumer starts when it does not exist yet: a global
        /// log position (the first event handled; 1 is the start of the log) or an RFC 3339
        /// time (the first event that reached the stream at or after it). Default: the start
        /// of the log. Ignored when the durable consumer exists, and when the worker noted
        /// progress of its own before (it resumes after that).
        #[arg(long, value_name = "POSITION|TIME", value_parser = crate::config::parse_start)]
        from: Option<orderflow_bus::StartAt>,
        /// Retries, ack wait, concurrency and notification channel of the consumers.
        #[command(flatten)]
        consumers: ConsumerArgs,
    },
    /// Run one projection's durable consumer: order-summary or analytics.
    Project {
        /// order-summary or analytics.
        name: String,
        /// Retries, ack wait, concurrency and notification channel of the consumers.
        #[command(flatten)]
        consumers: ConsumerArgs,
    },
    /// Read models: list them, rebuild one from the event log, or verify one against it.
    Projections {
        /// What to do with the read models.
        #[command(subcommand)]
        command: projections::ProjectionsCommand,
    },
    /// Replay the log for debugging: an order step by step, or a range to one consumer.
    Replay {
        /// What to replay.
        #[command(subcommand)]
        command: replay::ReplayCommand,
    },
    /// Dead letters: list, show and redrive the messages consumers gave up on.
    Dlq {
        /// What to do with the dead letters.
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Check the stream against the event log, and repair it from the log.
    Verify {
        /// What to verify.
        #[command(subcommand)]
        command: verify::VerifyCommand,
    },
    /// Forget a customer (the right to be forgotten): crypto-shred their personal data.
    Forget {
        /// Whom to forget.
        #[command(subcommand)]
        command: keys::ForgetCommand,
    },
    /// The master key that wraps the customers' data keys: make one, rotate it.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Show an order's full trace: the request that placed it, then each event (sequence,
    /// position, type, when it was stored and published) with what every consumer did with it
    /// (outcome, attempt, handler time, effect or error: every failed attempt, a parking in
    /// the dead-letter stream, a redrive, the final handling) and the events it caused.
    ///
    /// A step that needs attention, a message parked in the dead-letter stream or a consumer
    /// that has not seen the event yet (pending), is marked `!!` with its outcome in capitals
    /// (and red on a terminal). Steps are kept for --trace-retention-days (30 by default).
    Trace {
        /// The order's id.
        order_id: Uuid,
        /// Print the trace as JSON (the document GET /v1/admin/orders/{id}/trace answers).
        #[arg(long)]
        json: bool,
    },
    /// Show an order's events: sequence, position, time, type, version, payload, ids.
    Events {
        /// The order's id.
        order_id: Uuid,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// Long-running roles log what they do; operator commands only warnings, so that their
    /// output reads cleanly. `RUST_LOG` overrides both.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve { .. }
            | Command::Gateway { .. }
            | Command::Relay
            | Command::Worker { .. }
            | Command::Project { .. } => "info,sqlx=warn",
            _ => "warn",
        }
    }
}

/// Runs one command to its end.
///
/// # Errors
/// Whatever stopped the command, with its causes.
pub async fn run(cli: Cli) -> Result<()> {
    let common = cli.common;
    // The roles that place orders or read personal data cannot work without the master key,
    // nor can an order's replay (it opens the placed order). `events` shows personal data
    // sealed without it and says so; `forget` deletes a data key, which opens nothing.
    let required = matches!(
        cli.command,
        Command::Serve { .. }
            | Command::Gateway { .. }
            | Command::Worker { .. }
            | Command::Replay {
                command: replay::ReplayCommand::Order { .. }
            }
    );
    if !matches!(cli.command, Command::Keys { .. }) {
        common.install_master_key(required)?;
    }
    match cli.command {
        Command::Serve {
            http,
            consumers,
            without,
        } => crate::app::serve(&common, &http, &consumers, &without).await,
        Command::Gateway { http } => crate::app::gateway(&common, &http).await,
        Command::Relay => crate::app::relay(&common).await,
        Command::Republish { after, until } => crate::app::republish(&common, after, until).await,
        Command::Worker {
            name,
            from,
            consumers,
        } => crate::app::worker(&common, &consumers, &name, from).await,
        Command::Project { name, consumers } => {
            crate::app::project(&common, &consumers, &name).await
        }
        Command::Projections { command } => projections::run(&common, command).await,
        Command::Replay { command } => replay::run(&common, command).await,
        Command::Dlq { command } => dlq::run(&common, command).await,
        Command::Verify { command } => verify::run(&common, command).await,
        Command::Forget { command } => keys::forget(&common, command).await,
        Command::Keys { command } => keys::keys(&common, command).await,
        Command::Events { order_id, json } => events::run(&common, order_id, json).await,
        Command::Trace { order_id, json } => trace::run(&common, order_id, json).await,
    }
}
