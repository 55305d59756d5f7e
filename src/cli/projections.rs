//! `orderflow projections list|rebuild`: the read models' state, and rebuilding one from the
//! event log while the live one keeps serving.

use super::progress::ProgressRenderer;
use anyhow::{Context, Result};
use clap::Subcommand;
use orderflow_projections::{rebuild, RebuildOptions, RebuildReport};

use crate::config::CommonArgs;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's version, position, lag behind the log and state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection from the event log into shadow tables, catch up, and swap them
    /// in atomically. The live projection keeps answering queries meanwhile. Shows a progress
    /// bar on a terminal, plain progress lines otherwise.
    Rebuild {
        /// order-summary or analytics.
        name: String,
        /// Build the shadow tables and report how the live ones differ; swap nothing. Exits
        /// non-zero when there are differences.
        #[arg(long)]
        verify: bool,
        /// Events per read and per write transaction.
        #[arg(long, default_value_t = 5_000)]
        batch_size: i64,
    },
}

pub(crate) async fn run(common: &CommonArgs, command: ProjectionsCommand) -> Result<()> {
    // Listing only reads: it creates and migrates nothing.
    let pool = match &command {
        ProjectionsCommand::List { .. } => crate::app::open_store(common).await?,
        _ => crate::app::connect_store(common, std::time::Duration::ZERO).await?,
    };
    match command {
        ProjectionsCommand::List { json } => {
            let statuses = orderflow_projections::list(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
                return Ok(());
            }
            let rows: Vec<[String; 7]> = statuses
                .iter()
                .map(|s| {
                    [
                        s.name.clone(),
                        s.version.map_or_else(|| "-".into(), |v| v.to_string()),
                        s.code_version.map_or_else(|| "-".into(), |v| v.to_string()),
                        s.position.to_string(),
                        s.lag.to_string(),
                        s.state.to_string(),
                        s.updated_at.map_or_else(
                            || "-".into(),
                            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ),
                    ]
                })
                .collect();
            print!(
                "{}",
                super::table::render(
                    [
                        "NAME",
                        "VERSION",
                        "CODE VERSION",
                        "POSITION",
                        "LAG",
                        "STATE",
                        "UPDATED"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        ProjectionsCommand::Rebuild {
            name,
            verify,
            batch_size,
        } => {
            let projection = orderflow_projections::by_name(&name)?;
            anyhow::ensure!(batch_size > 0, "--batch-size must be positive");
            let options = RebuildOptions {
                verify_only: verify,
                batch_size,
            };
            let renderer = ProgressRenderer::new(name.as_str());
            let report = rebuild(&pool, projection.as_ref(), options, &|p| renderer.show(p))
                .await
                .with_context(|| {
                    format!("rebuilding {name} failed; the live projection is unchanged")
                });
            renderer.finish();
            let report = report?;
            println!("{}", summary(&report));
            if verify && report.difference_count() > 0 {
                for table in report.differences.iter().flatten() {
                    for sample in &table.samples {
                        println!(
                            "  {}: key {} live {} rebuilt {}",
                            table.table,
                            sample.key,
                            sample
                                .live
                                .as_ref()
                                .map_or_else(|| "-".into(), ToString::to_string),
                            sample
                                .rebuilt
                                .as_ref()
                                .map_or_else(|| "-".into(), ToString::to_string),
                        );
                    }
                }
                anyhow::bail!(
                    "{name}: the live projection differs from the log in {} rows",
                    report.difference_count()
                );
            }
            Ok(())
        }
    }
}

fn summary(report: &RebuildReport) -> String {
    let rate = format!(
        "{} events in {:.1}s ({:.0} events/s), position {}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.per_second,
        report.position
    );
    match &report.differences {
        Some(tables) => {
            let per_table: Vec<String> = tables
                .iter()
                .map(|t| {
                    format!(
                        "{}: {} missing, {} extra, {} differing",
                        t.table, t.missing, t.extra, t.differing
                    )
                })
                .collect();
            format!(
                "verified {} v{}: {rate}; {} differences ({})",
                report.name,
                report.version,
                report.difference_count(),
                per_table.join("; ")
            )
        }
        None => format!(
            "rebuilt {} v{}: {rate}; {}",
            report.name,
            report.version,
            if report.swapped {
                "swapped in"
            } else {
                "not swapped"
            }
        ),
    }
}
