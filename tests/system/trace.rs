//! An order's full trace, end to end: an order goes through the real `orderflow serve` while
//! the carrier fails, so its shipment is retried, then parked in the dead-letter stream; the
//! carrier recovers, an operator redrives the dead letter with `orderflow dlq redrive`, and the
//! order ships. `orderflow trace <id>` (the real binary) then shows, in order, the failed
//! attempts with the carrier's error, the dead letter, the redrive and the final shipment with
//! its tracking number; `GET /v1/admin/orders/{id}/trace` answers the same facts as JSON.
//! Also: expired step records and publication rows are removed by the relay itself.

use std::time::{Duration, Instant};

use orderflow_store::steps::{self, NewStep, StepOutcome};
use orderflow_testkit::http::{Answer, Recorder};
use orderflow_testkit::World;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{orderflow_over, ADMIN_TOKEN};

/// Requests made per booking attempt while the carrier is up: the carrier's gate tries a
/// failing booking this often before the attempt fails
/// (`orderflow_workers::partner::TRIES_WHILE_UP`); four failures in a row do not yet make the
/// carrier count as down.
const CARRIER_TRIES_PER_ATTEMPT: usize = 2;
/// Deliveries of a failing message before it is parked, in this test.
const MAX_ATTEMPTS: usize = 2;

async fn trace_over_http(http: &reqwest::Client, base: &str, id: Uuid) -> reqwest::Response {
    http.get(format!("{base}/v1/admin/orders/{id}/trace"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// The outcomes of `consumer`'s steps with the event of type `event_type`, in order.
fn outcomes(trace: &Value, event_type: &str, consumer: &str) -> Vec<String> {
    steps_of(trace, event_type, consumer)
        .iter()
        .map(|s| s["outcome"].as_str().unwrap().to_string())
        .collect()
}

fn steps_of(trace: &Value, event_type: &str, consumer: &str) -> Vec<Value> {
    trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {trace:#}"))["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["consumer"] == consumer)
        .cloned()
        .collect()
}

/// True when every consumer has a final word on every event (nothing pending, retrying or
/// just redriven).
fn settled(trace: &Value) -> bool {
    trace["events"].as_array().unwrap().iter().all(|event| {
        let steps = event["steps"].as_array().unwrap();
        let mut last = std::collections::HashMap::new();
        for step in steps {
            last.insert(step["consumer"].as_str().unwrap(), step["outcome"].clone());
        }
        last.values()
            .all(|o| o == "handled" || o == "already_handled")
    })
}

/// The index of the first line of `lines` at or after `from` that holds every one of `parts`.
fn line_with(lines: &[&str], from: usize, parts: &[&str]) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, line)| parts.iter().all(|p| line.contains(p)))
        .map(|(i, _)| i)
        .unwrap_or_else(|| {
            panic!(
                "no line with {parts:?} after line {from} in:\n{}",
                lines.join("\n")
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_shows_the_failed_attempts_the_dead_letter_the_redrive_and_the_shipment() {
    let world = World::new().await;
    // The carrier refuses every request of the first two attempts, then books.
    let carrier = Recorder::scripted(
        vec![Answer::Status(503); CARRIER_TRIES_PER_ATTEMPT * MAX_ATTEMPTS],
        "TRK-",
    )
    .await;
    let orderflow = orderflow_over(&world).envs(&[
        ("ORDERFLOW_CARRIER", "http"),
        ("ORDERFLOW_CARRIER_URL", &carrier.url),
        ("ORDERFLOW_MAX_ATTEMPTS", &MAX_ATTEMPTS.to_string()),
    ]);
    let (served, base) = orderflow.serve(&[]);
    let http = reqwest::Client::new();
    let tag = Uuid::new_v4().simple().to_string();
    let request_id = format!("req-trace-{tag}");

    let put = http
        .put(format!("{base}/v1/inventory/SKU-TRACE"))
        .json(&json!({"available": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let placed = http
        .post(format!("{base}/v1/orders"))
        .header("X-Request-Id", &request_id)
        .json(&json!({
            "customer_id": "c-trace",
            "customer_email": format!("trace-{tag}@example.com"),
            "currency": "EUR",
            "lines": [{"sku": "SKU-TRACE", "quantity": 2, "unit_price": 1000}],
            "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id: Uuid = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // The shipments worker gives up after its attempts: its dead letter appears.
    let deadline = Instant::now() + Duration::from_secs(90);
    let sequence = loop {
        let listed: Value = serde_json::from_str(&orderflow.run(&[
            "dlq",
            "list",
            "--consumer",
            "shipments",
            "--json",
        ]))
        .unwrap();
        if let Some(letter) = listed.as_array().unwrap().first() {
            assert_eq!(
                letter["letter"]["attempts"], MAX_ATTEMPTS as u64,
                "{letter:#}"
            );
            break letter["sequence"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter of shipments in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        carrier.keys().len(),
        CARRIER_TRIES_PER_ATTEMPT * MAX_ATTEMPTS,
        "every attempt asked the carrier"
    );
    // While parked, the trace says so.
    let parked: Value = trace_over_http(&http, &base, id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        outcomes(&parked, "OrderConfirmed", "shipments"),
        ["retrying", "dead_lettered"],
        "{parked:#}"
    );

    // The carrier has recovered (its script is spent); the operator redrives.
    let redriven = orderflow.run(&["dlq", "redrive", &sequence.to_string()]);
    assert!(!redriven.is_empty());

    // The order ships, and every consumer has its final word on every event.
    let deadline = Instant::now() + Duration::from_secs(90);
    let from_route = loop {
        let response = trace_over_http(&http, &base, id).await;
        assert_eq!(response.status(), 200);
        let trace: Value = response.json().await.unwrap();
        let shipped = trace["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_type"] == "ShipmentStarted");
        if shipped && settled(&trace) {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "the trace did not settle in time: {trace:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The route's facts.
    assert_eq!(from_route["order_id"], id.to_string());
    assert_eq!(from_route["request_id"], request_id.as_str());
    let types: Vec<&str> = from_route["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderConfirmed", "ShipmentStarted"]);
    for event in from_route["events"].as_array().unwrap() {
        assert!(event["position"].is_i64(), "{event:#}");
        assert!(event["published_at"].is_string(), "published: {event:#}");
        assert_eq!(event["request_id"], request_id.as_str());
    }
    assert_eq!(
        from_route["events"][0]["caused_by"],
        format!("request {request_id}")
    );
    let shipments = steps_of(&from_route, "OrderConfirmed", "shipments");
    let outcome_list: Vec<&str> = shipments
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcome_list,
        ["retrying", "dead_lettered", "redriven", "handled"],
        "{shipments:#?}"
    );
    let attempts: Vec<i64> = shipments
        .iter()
        .map(|s| s["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 0, 1]);
    for failed in &shipments[..2] {
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains("carrier answered 503"),
            "{failed:#}"
        );
        // The carrier's gate tried each attempt's call twice, and says so.
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .ends_with("(tried 2 times)"),
            "{failed:#}"
        );
    }
    // The booking that went through says how long the carrier took and which try it was.
    let effect = shipments[3]["effect"].as_str().unwrap();
    assert!(effect.contains("carrier booking TRK-"), "{effect}");
    assert!(
        effect.contains("(answered in ") && effect.contains(" ms, try 1)"),
        "{effect}"
    );
    let confirmed = &from_route["events"][1];
    assert_eq!(
        confirmed["caused"],
        json!([{"sequence": 3, "event_type": "ShipmentStarted", "by": "shipments"}])
    );
    assert_eq!(
        from_route["events"][0]["caused"],
        json!([{"sequence": 2, "event_type": "OrderConfirmed", "by": "inventory"}])
    );
    let reserved = steps_of(&from_route, "OrderPlaced", "inventory");
    assert_eq!(reserved.len(), 1, "{reserved:#?}");
    assert!(
        reserved[0]["effect"]
            .as_str()
            .unwrap()
            .contains("reserved 2 x SKU-TRACE"),
        "{reserved:#?}"
    );
    // Effects name no customer's e-mail address in whole.
    let notified = steps_of(&from_route, "OrderPlaced", "notifications");
    let text = notified[0]["effect"].as_str().unwrap();
    assert!(
        text.contains("t***@example.com") && !text.contains(&tag),
        "{text}"
    );

    // The CLI, the real binary: the same document as JSON...
    let from_cli: Value =
        serde_json::from_str(&orderflow.run(&["trace", &id.to_string(), "--json"])).unwrap();
    assert_eq!(from_cli, from_route);
    // ...and as text, in order: the request, the failed attempts with the error, the dead
    // letter (marked), the redrive, the shipment, and what the confirmation caused.
    let text = orderflow.run(&["trace", &id.to_string()]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(&request_id), "{text}");
    let confirmed_at = line_with(&lines, 0, &["#2 OrderConfirmed", "published 2"]);
    let retried = line_with(
        &lines,
        confirmed_at,
        &[
            "shipments",
            "retrying",
            "attempt 1",
            "error: carrier answered 503",
        ],
    );
    let parked_at = line_with(
        &lines,
        retried,
        &[
            "!!",
            "shipments",
            "DEAD_LETTERED",
            "attempt 2",
            "carrier answered 503",
        ],
    );
    let redrive_at = line_with(&lines, parked_at, &["shipments", "redriven"]);
    let shipped_at = line_with(
        &lines,
        redrive_at,
        &[
            "shipments",
            "handled",
            "carrier booking TRK-",
            "answered in",
        ],
    );
    let caused_at = line_with(
        &lines,
        shipped_at,
        &["caused #3 ShipmentStarted (by shipments)"],
    );
    let next_event = lines
        .iter()
        .position(|line| line.starts_with("#3 ShipmentStarted"))
        .unwrap_or_else(|| panic!("no event #3 in:\n{text}"));
    assert!(caused_at < next_event, "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour when stdout is not a terminal"
    );

    // An unknown order: 404 problem from the route, a failure from the CLI.
    let unknown = Uuid::now_v7();
    let response = trace_over_http(&http, &base, unknown).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let output = orderflow.output(&["trace", &unknown.to_string()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no events"));

    served.terminate(Duration::from_secs(30)).await;
    world.cleanup().await;
}

fn step(event_id: Uuid) -> NewStep {
    NewStep {
        event_id,
        attempt: 1,
        outcome: StepOutcome::Handled,
        started_at: chrono::Utc::now(),
        duration_ms: 3,
        error: None,
        effect: Some("reserved 1 x SKU-1".into()),
    }
}

async fn count(world: &World, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(world.pool())
        .await
        .unwrap()
}

/// Two old and one new record of each kind: the old ones are made 40 days old.
async fn old_and_new_records(world: &World, stream: &str) -> (Uuid, Uuid) {
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    let pool = world.pool();
    steps::record(pool, "inventory", &[step(old), step(old), step(new)])
        .await
        .unwrap();
    steps::note_published(pool, stream, 1, 10).await.unwrap();
    steps::note_published(pool, stream, 11, 20).await.unwrap();
    steps::note_published(pool, stream, 21, 30).await.unwrap();
    sqlx::query(
        "UPDATE consumer_steps SET recorded_at = now() - interval '40 days' WHERE event_id = $1",
    )
    .bind(old)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE relay_publications SET published_at = now() - interval '40 days'
          WHERE to_position <= 20",
    )
    .execute(pool)
    .await
    .unwrap();
    (old, new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_trace_records_are_removed_in_batches_and_new_ones_kept() {
    let world = World::without_nats().await;
    let (old, new) = old_and_new_records(&world, "ORDERS").await;
    // The second step record of `old` is a repeat: stored as already handled.
    let stored = steps::steps_of_events(world.pool(), &[old]).await.unwrap();
    let kinds: Vec<StepOutcome> = stored.iter().map(|s| s.outcome).collect();
    assert_eq!(kinds, [StepOutcome::Handled, StepOutcome::AlreadyHandled]);

    let before = chrono::Utc::now() - chrono::Duration::days(30);
    let removed = steps::remove_expired(world.pool(), before, 1)
        .await
        .unwrap();
    assert_eq!((removed.steps, removed.publications), (2, 2));
    assert!(steps::steps_of_events(world.pool(), &[old])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        steps::steps_of_events(world.pool(), &[new])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        count(&world, "SELECT count(*) FROM relay_publications").await,
        1
    );
    // Nothing left to remove.
    let again = steps::remove_expired(world.pool(), before, 1)
        .await
        .unwrap();
    assert_eq!((again.steps, again.publications), (0, 0));
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publishing_relay_removes_expired_trace_records_by_itself() {
    let world = World::new().await;
    // Publication rows of another stream: this relay's checkpoint stays where it is.
    let (old, new) = old_and_new_records(&world, "ANOTHER_STREAM").await;
    let relay = orderflow_over(&world)
        .env("ORDERFLOW_TRACE_RETENTION_DAYS", "30")
        .start(&["relay"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = steps::steps_of_events(world.pool(), &[old]).await.unwrap();
        let publications = count(&world, "SELECT count(*) FROM relay_publications").await;
        if left.is_empty() && publications == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay left expired records: {} steps, {publications} publications",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        steps::steps_of_events(world.pool(), &[new])
            .await
            .unwrap()
            .len(),
        1,
        "a new record is kept"
    );
    relay.terminate(Duration::from_secs(30)).await;
    world.cleanup().await;
}
