//! `orderflow verify stream [--repair]`: the JetStream stream compared with the event log,
//! position by position, and repaired from it.

use anyhow::{Context, Result};
use clap::Subcommand;
use orderflow_bus::stream_check::{self, Repair, Verification};

use crate::config::CommonArgs;

/// What to verify.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Compare the stream with the event log: counts, first and last position, positions
    /// missing from the stream (up to the relay's checkpoint: later ones are not published
    /// yet), positions held twice. Exits 0 when they agree, 1 with a short report when not.
    Stream {
        /// Repair first, as the relay does: create missing streams, re-publish from the store
        /// every position the stream lacks, delete extra copies; and delete the messages that
        /// carry no position (no event); then verify.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(common: &CommonArgs, command: VerifyCommand) -> Result<()> {
    let VerifyCommand::Stream { repair, json } = command;
    // Without --repair it only reads: it creates no database, migration or stream.
    let (pool, bus) = if repair {
        (
            crate::app::connect_store(common, std::time::Duration::ZERO).await?,
            crate::app::connect_bus(common, std::time::Duration::ZERO).await?,
        )
    } else {
        (
            crate::app::open_store(common).await?,
            crate::app::open_bus(common).await?,
        )
    };
    let (repaired, verification) = if repair {
        let (repaired, verification) = stream_check::repair(&pool, &bus)
            .await
            .context("repairing the stream failed")?;
        (Some(repaired), verification)
    } else {
        let verification = stream_check::verify(&pool, &bus)
            .await
            .context("reading the stream or the log failed")?;
        (None, verification)
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "agrees": verification.agrees(),
                "verification": verification,
                "repair": repaired,
            }))?
        );
    } else {
        if let Some(repaired) = &repaired {
            print!("{}", repair_report(repaired));
        }
        print!("{}", report(&verification));
    }
    if verification.agrees() {
        Ok(())
    } else {
        anyhow::bail!("{}", disagreement(&verification))
    }
}

/// Inclusive ranges as `5..7, 9`.
fn ranges(ranges: &[(i64, i64)]) -> String {
    ranges
        .iter()
        .map(|&(from, to)| {
            if from == to {
                from.to_string()
            } else {
                format!("{from}..{to}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn repair_report(repair: &Repair) -> String {
    if repair.is_empty() {
        return "repair: nothing to repair\n".into();
    }
    let mut out = String::new();
    if repair.recreated {
        out.push_str("repair: the streams were missing and were created again\n");
    }
    if repair.republished > 0 || !repair.republished_ranges.is_empty() {
        out.push_str(&format!(
            "repair: re-published {} event(s) from the store (positions {})\n",
            repair.republished,
            ranges(&repair.republished_ranges)
        ));
    }
    if !repair.unreadable_deleted.is_empty() {
        out.push_str(&format!(
            "repair: deleted {} unreadable message(s) (stream sequence {})\n",
            repair.unreadable_deleted.len(),
            sequences(
                &repair.unreadable_deleted,
                repair.unreadable_deleted.len() as u64
            )
        ));
    }
    if repair.duplicates_deleted > 0 {
        let copies = if repair.duplicates_deleted == 1 {
            "copy"
        } else {
            "copies"
        };
        out.push_str(&format!(
            "repair: deleted {} extra {copies}\n",
            repair.duplicates_deleted
        ));
    }
    out
}

/// The report, a few lines.
pub(crate) fn report(v: &Verification) -> String {
    let span = match (v.first_position, v.last_position) {
        (Some(first), Some(last)) => format!("positions {first}..{last}"),
        _ => "no positions".into(),
    };
    let mut out = if v.stream_exists {
        format!(
            "stream {}: {} event message(s), {span}, {} redrive(s)\n",
            v.stream, v.stream_events, v.redrives
        )
    } else {
        format!("stream {}: does not exist\n", v.stream)
    };
    out.push_str(&format!(
        "store:  {} event(s), head position {}, relay checkpoint {}\n",
        v.stored_events, v.head_position, v.checkpoint
    ));
    if v.head_position > v.checkpoint {
        out.push_str(&format!(
            "        {} event(s) after the checkpoint are not published yet (not a fault)\n",
            v.head_position - v.checkpoint
        ));
    }
    out.push_str(&format!(
        "missing: {}\n",
        if v.missing.is_empty() {
            "none".to_string()
        } else {
            format!("{} position(s): {}", v.missing_count(), ranges(&v.missing))
        }
    ));
    out.push_str(&format!(
        "duplicates: {}\n",
        if v.duplicates.is_empty() {
            "none".to_string()
        } else {
            let shown: Vec<String> = v
                .duplicates
                .iter()
                .take(20)
                .map(|(position, copies)| format!("{position} x{copies}"))
                .collect();
            format!("{} position(s): {}", v.duplicates.len(), shown.join(", "))
        }
    ));
    if !v.unknown.is_empty() {
        out.push_str(&format!(
            "unknown: {} position(s) beyond the store's head, first {}\n",
            v.unknown.len(),
            v.unknown[0]
        ));
    }
    if v.unreadable > 0 {
        out.push_str(&format!(
            "unreadable: {} message(s) carry no position (stream sequence {})\n",
            v.unreadable,
            sequences(&v.unreadable_sequences, v.unreadable)
        ));
    }
    let repairable =
        !v.stream_exists || !v.missing.is_empty() || !v.duplicates.is_empty() || v.unreadable > 0;
    if v.agrees() {
        out.push_str("the stream agrees with the log\n");
    } else if repairable {
        out.push_str(
            "the stream does NOT agree with the log (`orderflow verify stream --repair` repairs it)\n",
        );
    }
    if !v.unknown.is_empty() {
        // Not repaired: a stream ahead of the store is more likely another database's.
        out.push_str(
            "the stream holds positions the store does not have: check that --database-url \
             (ORDERFLOW_DATABASE_URL) names the database this stream was published from; \
             --repair does not delete them\n",
        );
    }
    out
}

/// Stream sequences as `4, 9, 12`, with how many more when only some are known.
fn sequences(known: &[u64], total: u64) -> String {
    let mut text = known
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if total > known.len() as u64 {
        text.push_str(&format!(" and {} more", total - known.len() as u64));
    }
    text
}

/// One line saying how the stream and the log disagree.
fn disagreement(v: &Verification) -> String {
    let mut parts = Vec::new();
    if !v.stream_exists {
        parts.push(format!("stream {} does not exist", v.stream));
    }
    if !v.missing.is_empty() {
        parts.push(format!("{} position(s) missing", v.missing_count()));
    }
    if !v.duplicates.is_empty() {
        parts.push(format!("{} position(s) held twice", v.duplicates.len()));
    }
    if !v.unknown.is_empty() {
        parts.push(format!("{} unknown position(s)", v.unknown.len()));
    }
    if v.unreadable > 0 {
        parts.push(format!("{} unreadable message(s)", v.unreadable));
    }
    format!(
        "the stream does not agree with the log: {}",
        parts.join(", ")
    )
}
