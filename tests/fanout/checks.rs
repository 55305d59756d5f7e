//! Checks specific to the fan-out guarantees: every stored event in the stream once and in
//! log order, and orders settled with every consumer caught up.

use std::time::{Duration, Instant};

use orderflow_testkit::World;
use uuid::Uuid;

/// The stream holds every stored event exactly once, in the log's commit order (so each
/// order's events in sequence order), on the right subject with the right message id.
pub(crate) async fn assert_stream_matches_log(world: &World) {
    let rows: Vec<(Uuid, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT event_id, aggregate_id, sequence, global_position FROM events
         ORDER BY global_position NULLS LAST",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    assert!(
        rows.iter().all(|r| r.3.is_some()),
        "every stored event has a position"
    );
    let messages = world.bus().messages().await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for message in &messages {
        let id = message
            .message_id
            .clone()
            .expect("every message has a Nats-Msg-Id");
        assert!(
            ids.insert(id.clone()),
            "message {id} is in the stream twice"
        );
    }
    assert_eq!(
        messages.len(),
        rows.len(),
        "the stream holds {} messages for {} stored events",
        messages.len(),
        rows.len()
    );
    let prefix = &world.bus().options.subject_prefix;
    let mut last_sequence = std::collections::HashMap::new();
    for (message, row) in messages.iter().zip(&rows) {
        let envelope = message.envelope().expect("the body is an envelope");
        assert_eq!(
            envelope.event_id, row.0,
            "stream order differs from log order"
        );
        assert_eq!(envelope.position, row.3);
        assert_eq!(message.subject, envelope.subject(prefix));
        assert_eq!(
            message.message_id.as_deref(),
            Some(envelope.message_id().as_str())
        );
        let previous = last_sequence.insert(envelope.order_id, envelope.sequence);
        assert_eq!(
            previous.unwrap_or(0) + 1,
            envelope.sequence,
            "order {} out of sequence order in the stream",
            envelope.order_id
        );
    }
}

/// The status of every order, counted.
pub(crate) async fn status_counts(
    world: &World,
    ids: &[Uuid],
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for id in ids {
        let order = world.store.load(*id).await.unwrap().expect("order exists");
        *counts.entry(order.state.status.to_string()).or_default() += 1;
    }
    counts
}

/// Waits until `shipped` of the orders are shipped and `rejected` rejected, the log is fully
/// numbered, and each of `consumers` has handled everything up to the head of the log.
pub(crate) async fn wait_until_settled(
    world: &World,
    ids: &[Uuid],
    shipped: usize,
    rejected: usize,
    consumers: &[&str],
    timeout: Duration,
) {
    let started = Instant::now();
    loop {
        let counts = status_counts(world, ids).await;
        let lag = orderflow_bus::consumer_info(&world.bus().bus, consumers)
            .await
            .unwrap();
        let head = orderflow_store::log::head_position(&world.db.pool)
            .await
            .unwrap();
        let unnumbered = orderflow_store::log::unnumbered_count(&world.db.pool)
            .await
            .unwrap();
        let settled = counts.get("shipped").copied().unwrap_or(0) == shipped
            && counts.get("rejected").copied().unwrap_or(0) == rejected;
        let caught_up = unnumbered == 0
            && lag.iter().all(|l| {
                l.pending == 0 && l.ack_pending == 0 && l.last_handled_position == Some(head)
            });
        if settled && caught_up {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "not settled after {timeout:?}: {counts:?} {lag:?} head {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
