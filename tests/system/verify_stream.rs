//! `orderflow verify stream` as an operator runs it: it finds a stream with a hole and a
//! repeated position (exit 1, a short report, one `error:` line), `--repair` re-publishes the
//! hole from the store and deletes the extra copy, and the next verification agrees (exit 0).

use orderflow_bus::relay::{publish_events_with, MessageIds};
use orderflow_testkit::{orderflow, World};

#[tokio::test]
async fn verify_stream_finds_a_hole_and_a_repeat_and_repair_mends_both() {
    let world = World::new().await;
    for _ in 0..6 {
        world.place(&[("SKU-VERIFY", 1)]).await;
    }
    assert_eq!(world.relay().await, 6);
    let orderflow = orderflow!(&world);
    let agrees = orderflow.output(&["verify", "stream"]);
    let report = String::from_utf8_lossy(&agrees.stdout).into_owned();
    assert!(agrees.status.success(), "{report}");
    assert!(
        report.contains("6 event message(s), positions 1..6"),
        "{report}"
    );
    assert!(
        report.contains("the stream agrees with the log"),
        "{report}"
    );

    // A hole (positions 2 and 3 deleted, inside the server's duplicate window, so a plain
    // re-publish would be dropped) and a second copy of position 5.
    let bus = &world.bus().bus;
    let stream = bus.stream().await.unwrap();
    stream.delete_message(2).await.unwrap();
    stream.delete_message(3).await.unwrap();
    let fifth = world.events_after(4).await.remove(0);
    publish_events_with(bus, &[fifth], MessageIds::Repair)
        .await
        .unwrap();

    let apart = orderflow.output(&["verify", "stream"]);
    let report = String::from_utf8_lossy(&apart.stdout).into_owned();
    let error = String::from_utf8_lossy(&apart.stderr).into_owned();
    assert_eq!(apart.status.code(), Some(1), "{report}{error}");
    assert!(report.contains("missing: 2 position(s): 2..3"), "{report}");
    assert!(
        report.contains("duplicates: 1 position(s): 5 x2"),
        "{report}"
    );
    assert_eq!(
        error,
        "error: the stream does not agree with the log: 2 position(s) missing, 1 position(s) held twice\n"
    );

    let repaired = orderflow.output(&["verify", "stream", "--repair"]);
    let report = String::from_utf8_lossy(&repaired.stdout).into_owned();
    assert!(
        repaired.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert!(
        report.contains("re-published 2 event(s) from the store (positions 2..3)"),
        "{report}"
    );
    assert!(report.contains("deleted 1 extra copy"), "{report}");

    let json = orderflow.run(&["verify", "stream", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["agrees"], true, "{json}");
    assert_eq!(json["verification"]["stream_events"], 6, "{json}");
    world.cleanup().await;
}

/// A message on the stream that is no event (published by hand to an event subject, say)
/// makes the stream disagree with the log; the report says where it is, and `--repair`,
/// which the advice names, deletes it.
#[tokio::test]
async fn an_unreadable_stray_message_is_named_by_its_sequence_and_repair_deletes_it() {
    let world = World::new().await;
    for _ in 0..3 {
        world.place(&[("SKU-STRAY", 1)]).await;
    }
    assert_eq!(world.relay().await, 3);
    let bus = &world.bus().bus;
    let stray = format!("{}.by-hand.Junk", bus.prefix());
    let sequence = bus
        .jetstream()
        .publish(stray, "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let orderflow = orderflow!(&world);

    let apart = orderflow.output(&["verify", "stream"]);
    let report = String::from_utf8_lossy(&apart.stdout).into_owned();
    let error = String::from_utf8_lossy(&apart.stderr).into_owned();
    assert_eq!(apart.status.code(), Some(1), "{report}{error}");
    assert!(
        report.contains(&format!(
            "unreadable: 1 message(s) carry no position (stream sequence {sequence})"
        )),
        "{report}"
    );
    assert!(
        report.contains("`orderflow verify stream --repair` repairs it"),
        "{report}"
    );

    let repaired = orderflow.output(&["verify", "stream", "--repair"]);
    let report = String::from_utf8_lossy(&repaired.stdout).into_owned();
    assert!(
        repaired.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert!(
        report.contains(&format!(
            "repair: deleted 1 unreadable message(s) (stream sequence {sequence})"
        )),
        "{report}"
    );
    assert!(
        report.contains("the stream agrees with the log"),
        "{report}"
    );
    world.cleanup().await;
}
