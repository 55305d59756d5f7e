//! `orderflow replay order|consumer`: replaying the log for debugging. `order` shows an
//! order's state after each event and what each event changed; `consumer` re-sends a range of
//! the log to one consumer's handler (with `--dry-run`, it only says what it would do).

use anyhow::{Context, Result};
use clap::Subcommand;
use orderflow_operations::replay::{
    check_at, check_range, order_timeline, replay_consumer, LogBound, ReplayOutcome,
};
use orderflow_store::OrderStore;
use uuid::Uuid;

use crate::config::{CommonArgs, ConsumerArgs};

// Parsed once per process: the size of the consumer settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// An order's state after each of its events, with what each event changed.
    Order {
        /// The order's id.
        order_id: Uuid,
        /// Stop after the event with this sequence.
        #[arg(long)]
        at: Option<i64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-send a range of the log to one consumer's handler (inventory, notifications,
    /// shipments, order-summary, analytics). The inbox still prevents repeated effects unless
    /// --force is given.
    Consumer {
        /// The consumer's name.
        name: String,
        /// First event: a global position, or an RFC 3339 time (events recorded at or after it).
        #[arg(long)]
        from: LogBound,
        /// Last event: a global position, or an RFC 3339 time (events recorded at or before
        /// it). Default: the head of the log.
        #[arg(long)]
        to: Option<LogBound>,
        /// Report what the handler would do; change nothing, send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply effects even for events the consumer's inbox says it handled.
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        consumers: ConsumerArgs,
    },
}

pub(crate) async fn run(common: &CommonArgs, command: ReplayCommand) -> Result<()> {
    // Replaying an order, or a dry run, only reads: it creates and migrates nothing.
    let pool = match &command {
        ReplayCommand::Order { .. } | ReplayCommand::Consumer { dry_run: true, .. } => {
            crate::app::open_store(common).await?
        }
        ReplayCommand::Consumer { .. } => {
            crate::app::connect_store(common, std::time::Duration::ZERO).await?
        }
    };
    match command {
        ReplayCommand::Order { order_id, at, json } => {
            let store = OrderStore::new(pool);
            let timeline = order_timeline(&store, order_id, None)
                .await?
                .with_context(|| format!("order {order_id} has no events (unknown order?)"))?;
            check_at(order_id, at, timeline.version)?;
            let timeline = match at {
                Some(at) if at < timeline.version => order_timeline(&store, order_id, Some(at))
                    .await?
                    .with_context(|| format!("order {order_id} has no events"))?,
                _ => timeline,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&timeline)?);
                return Ok(());
            }
            for entry in &timeline.entries {
                let position = entry.position.map_or_else(|| "-".into(), |p| p.to_string());
                println!(
                    "#{} {} (v{}) at {}, position {}, correlation {}, causation {}",
                    entry.sequence,
                    entry.event_type,
                    entry.version,
                    entry.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    position,
                    entry.correlation_id.as_deref().unwrap_or("-"),
                    entry.causation_id.as_deref().unwrap_or("-"),
                );
                for change in &entry.changes {
                    let show = |v: &Option<serde_json::Value>| {
                        v.as_ref()
                            .map_or_else(|| "(none)".into(), ToString::to_string)
                    };
                    println!(
                        "    {}: {} -> {}",
                        change.path,
                        show(&change.before),
                        show(&change.after)
                    );
                }
            }
            if let Some(state) = &timeline.state {
                println!(
                    "order {} after sequence {}: status {}",
                    timeline.order_id, timeline.version, state.status
                );
            }
            Ok(())
        }
        ReplayCommand::Consumer {
            name,
            from,
            to,
            dry_run,
            force,
            json,
            consumers,
        } => {
            let handler = crate::app::consumer_handler(&name, pool.clone(), &consumers)?;
            let to_given = to.is_some();
            let from = from.resolve_from(&pool).await?;
            let to = match to {
                Some(to) => to.resolve_to(&pool).await?,
                None => orderflow_store::log::head_position(&pool).await?,
            };
            check_range(from, to, to_given)?;
            let from = from.max(1);
            let report =
                replay_consumer(&pool, handler.as_ref(), from, Some(to), dry_run, force).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let mut failed = 0;
            for event in &report.events {
                let outcome = match &event.outcome {
                    ReplayOutcome::Skipped { reason } => format!("skip: {reason}"),
                    ReplayOutcome::Done { effects } if effects.is_empty() => "nothing to do".into(),
                    ReplayOutcome::Done { effects } => effects.join("; "),
                    ReplayOutcome::Retry { error } | ReplayOutcome::GiveUp { error } => {
                        failed += 1;
                        format!("FAILED: {error}")
                    }
                };
                println!(
                    "{} {} #{} {}: {outcome}",
                    event.position, event.order_id, event.sequence, event.event_type
                );
            }
            println!(
                "{} event(s) from position {} to {} replayed to {}{}; {failed} failed",
                report.events.len(),
                report.from,
                report.to,
                report.consumer,
                if dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                },
            );
            anyhow::ensure!(failed == 0, "{failed} event(s) failed in the replay");
            Ok(())
        }
    }
}
