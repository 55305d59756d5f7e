//! Where a durable consumer created anew resumes in the stream
//! (`stream_check::resume_sequence`), against the real NATS, while the relay keeps publishing.

use std::time::Duration;

use chrono::Utc;
use orderflow_bus::relay::publish_events;
use orderflow_bus::stream_check::{resume_sequence, POSITION_HEADER};
use orderflow_store::{EventEnvelope, EventMetadata};
use orderflow_testkit::TestBus;
use uuid::Uuid;

fn envelope(position: i64) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::new_v4(),
        order_id: Uuid::new_v4(),
        sequence: 1,
        position: Some(position),
        event_type: "OrderDelivered".into(),
        version: "1.0".into(),
        payload: serde_json::json!({}),
        metadata: EventMetadata::default(),
        recorded_at: Utc::now(),
    }
}

/// A consumer that had handled everything up to the end of the stream resumes at the next
/// event, also when that event is published while the answer is being worked out (the relay
/// does not wait for consumers): it is never skipped. Each round publishes the next position
/// at a different moment of the look-up, so that some land in its middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resuming_at_the_end_skips_no_event_published_meanwhile() {
    let test = TestBus::fresh().await;
    // More messages than the look-up reads back from the end.
    let mut position = 40;
    publish_events(&test.bus, &(1..=position).map(envelope).collect::<Vec<_>>())
        .await
        .unwrap();
    let stream = test.bus.stream().await.unwrap();
    for round in 0..60u64 {
        let bus = test.bus.clone();
        let next = envelope(position + 1);
        let offset = Duration::from_millis(round % 5);
        let publishing = tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            publish_events(&bus, &[next]).await.unwrap();
        });
        let resumed = resume_sequence(&test.bus, position)
            .await
            .unwrap()
            .expect("the stream holds the position the consumer resumes after");
        publishing.await.unwrap();
        position += 1;
        // Only this test publishes to its stream: position n is at sequence n.
        let next_sequence = u64::try_from(position).unwrap();
        let last = stream.get_raw_message(next_sequence).await.unwrap();
        assert_eq!(
            last.headers
                .get(POSITION_HEADER)
                .map(|v| v.as_str().to_string()),
            Some(position.to_string()),
            "position {position} is not at sequence {next_sequence}"
        );
        assert_eq!(
            resumed,
            next_sequence,
            "round {round}: resuming after position {} gave sequence {resumed}, but position \
             {position} (not handled yet) is at sequence {next_sequence}",
            position - 1
        );
    }
    test.cleanup().await.unwrap();
}

/// A stream emptied (or created again) to which the relay published new events before it
/// re-published the old ones behind them: a consumer that had handled part of the old ones
/// resumes at the stream's first message, so the new events at its start are not skipped.
#[tokio::test]
async fn a_stream_refilled_behind_newer_events_is_resumed_at_its_start() {
    let test = TestBus::fresh().await;
    // Positions 11..=13 at sequences 1..=3, then 1..=10 at 4..=13.
    let newer: Vec<_> = (11..=13).map(envelope).collect();
    let refilled: Vec<_> = (1..=10).map(envelope).collect();
    publish_events(&test.bus, &newer).await.unwrap();
    publish_events(&test.bus, &refilled).await.unwrap();
    for after in [5, 10] {
        assert_eq!(
            resume_sequence(&test.bus, after).await.unwrap(),
            Some(1),
            "a consumer that had handled up to position {after} must start at sequence 1, \
             where positions 11..=13 are"
        );
    }
    // Past every position the stream holds: at its end.
    assert_eq!(resume_sequence(&test.bus, 13).await.unwrap(), Some(14));
    test.cleanup().await.unwrap();
}
