//! `orderflow events <order-id>`: an order's events as a table or JSON.

use anyhow::{Context, Result};
use orderflow_store::{log, EventEnvelope};
use uuid::Uuid;

use crate::config::CommonArgs;

pub(crate) async fn run(common: &CommonArgs, order_id: Uuid, json: bool) -> Result<()> {
    let pool = orderflow_store::connect(&common.database())
        .await
        .context("cannot open the event store")?;
    let mut events = log::order_events(&pool, order_id).await?;
    // Personal data opened when this process has the master key; sealed as stored otherwise.
    match orderflow_store::Vault::new(pool)
        .open_all(&mut events)
        .await
    {
        Ok(()) | Err(orderflow_store::VaultError::NoMasterKey) => {}
        Err(e) => return Err(e.into()),
    }
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
pub(crate) fn table(events: &[EventEnvelope]) -> String {
    let rows: Vec<[String; 8]> = events
        .iter()
        .map(|e| {
            [
                e.sequence.to_string(),
                e.position.map_or_else(|| "-".into(), |p| p.to_string()),
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                e.event_type.clone(),
                e.version.clone(),
                e.metadata
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                e.metadata
                    .causation_id
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                e.payload.to_string(),
            ]
        })
        .collect();
    super::table::render(
        [
            "SEQ",
            "POSITION",
            "RECORDED AT",
            "TYPE",
            "VER",
            "CORRELATION",
            "CAUSATION",
            "PAYLOAD",
        ],
        &rows,
    )
}
