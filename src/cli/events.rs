//! `orderflow events <order-id>`: an order's events as a table or JSON.

use anyhow::Result;
use orderflow_store::{log, EventEnvelope};
use uuid::Uuid;

use crate::config::CommonArgs;

pub(crate) async fn run(common: &CommonArgs, order_id: Uuid, json: bool) -> Result<()> {
    let pool = crate::app::open_store(common).await?;
    let mut events = log::order_events(&pool, order_id).await?;
    if events.is_empty() {
        anyhow::bail!("order {order_id} has no events (unknown order?)");
    }
    // Personal data opened when this process has the master key; sealed as stored otherwise,
    // and then it says so.
    match orderflow_store::Vault::new(pool)
        .open_all(&mut events)
        .await
    {
        Ok(()) => {}
        Err(e @ orderflow_store::VaultError::NoMasterKey) => {
            if events.iter().any(|e| sealed(&e.payload)) {
                eprintln!("{}", sealed_note(&e));
            }
        }
        Err(e) => return Err(e.into()),
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        print!("{}", table(&events));
    }
    Ok(())
}

/// Whether an event payload holds personal data sealed (as stored).
pub(crate) fn sealed(payload: &serde_json::Value) -> bool {
    payload.get(orderflow_store::vault::SEALED_FIELD).is_some()
}

/// The line saying that personal data is shown sealed, and why.
pub(crate) fn sealed_note(why: &orderflow_store::VaultError) -> String {
    format!(
        "note: the personal data (e-mail, shipping address) is shown sealed, as stored, under \
         \"{}\": {why}",
        orderflow_store::vault::SEALED_FIELD
    )
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
