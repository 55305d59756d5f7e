//! `orderflow events <order-id>`: an order's events as a table or JSON.

use anyhow::{Context, Result};
use orderflow_store::{log, EventEnvelope};
use uuid::Uuid;

use crate::config::CommonArgs;

pub async fn run(common: &CommonArgs, order_id: Uuid, json: bool) -> Result<()> {
    let pool = orderflow_store::connect(&common.database())
        .await
        .context("cannot open the event store")?;
    let events = log::order_events(&pool, order_id).await?;
    if events.is_empty() {
        anyhow::bail!("order {order_id} has no events (unknown order?)");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        print!("{}", table(&events));
    }
    Ok(())
}

/// The events as an aligned text table, one line per event.
pub fn table(events: &[EventEnvelope]) -> String {
    let headers = [
        "SEQ", "POSITION", "RECORDED AT", "TYPE", "VER", "CORRELATION", "CAUSATION", "PAYLOAD",
    ];
    let rows: Vec<[String; 8]> = events
        .iter()
        .map(|e| {
            [
                e.sequence.to_string(),
                e.position.map_or_else(|| "-".into(), |p| p.to_string()),
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                e.event_type.clone(),
                e.version.clone(),
                e.metadata.correlation_id.clone().unwrap_or_else(|| "-".into()),
                e.metadata.causation_id.clone().unwrap_or_else(|| "-".into()),
                e.payload.to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
