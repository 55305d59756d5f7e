//! `orderflow trace <order-id>`: an order's full trace, as text or JSON (the same document
//! as `GET /v1/admin/orders/{id}/trace`, assembled by `orderflow_operations::trace`).

use std::fmt::Write as _;
use std::io::IsTerminal;

use anyhow::Result;
use chrono::{DateTime, Utc};
use orderflow_operations::trace::{self, OrderTrace, TraceStep};
use orderflow_store::steps::StepOutcome;
use uuid::Uuid;

use crate::config::CommonArgs;

pub(crate) async fn run(common: &CommonArgs, order_id: Uuid, json: bool) -> Result<()> {
    let pool = crate::app::open_store(common).await?;
    let Some(found) = trace::order_trace(&pool, Some(&common.stream), order_id).await? else {
        anyhow::bail!("order {order_id} has no events (unknown order?)");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print!("{}", render(&found, std::io::stdout().is_terminal()));
    }
    Ok(())
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Whether a step needs a person's attention: parked, or not seen yet.
fn stands_out(step: &TraceStep) -> bool {
    matches!(
        step.outcome,
        StepOutcome::DeadLettered | StepOutcome::Pending
    )
}

/// The trace as text: the placing request, then each event with what every consumer did with
/// it and what it caused. Steps that need attention are marked `!!` with their outcome in
/// capitals, and in red when `colour`.
pub(crate) fn render(trace: &OrderTrace, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "order {}, placed by request {}",
        trace.order_id,
        trace.request_id.as_deref().unwrap_or("(unknown)")
    );
    let width = trace
        .events
        .iter()
        .flat_map(|e| &e.steps)
        .map(|s| s.consumer.chars().count())
        .max()
        .unwrap_or(0);
    for event in &trace.events {
        let _ = writeln!(
            out,
            "\n#{} {}  position {}  stored {}  published {}",
            event.sequence,
            event.event_type,
            event.position.map_or_else(|| "-".into(), |p| p.to_string()),
            time(event.stored_at),
            event.published_at.map_or_else(|| "-".into(), time),
        );
        let _ = writeln!(out, "   caused by {}", event.caused_by);
        for step in &event.steps {
            let marked = stands_out(step);
            let outcome = if marked {
                step.outcome.as_str().to_uppercase()
            } else {
                step.outcome.as_str().to_string()
            };
            let mut line = format!(
                "{} {:<width$}  {:<15}",
                if marked { "!!" } else { "  " },
                step.consumer,
                outcome,
            );
            if step.outcome != StepOutcome::Pending {
                let _ = write!(
                    line,
                    "  attempt {}  {} ms  at {}",
                    step.attempts,
                    step.duration_ms,
                    step.last_attempt_at.map_or_else(|| "-".into(), time)
                );
            }
            if let Some(error) = &step.error {
                let _ = write!(line, "  error: {error}");
            } else if let Some(effect) = &step.effect {
                let _ = write!(line, "  {effect}");
            }
            if marked && colour {
                line = format!("\u{1b}[31m{line}\u{1b}[0m");
            }
            let _ = writeln!(out, " {line}");
        }
        for caused in &event.caused {
            let _ = writeln!(
                out,
                "   caused #{} {} (by {})",
                caused.sequence, caused.event_type, caused.by
            );
        }
    }
    out
}
