//! The right to be forgotten, end to end: orders of a customer go through the whole system
//! (`orderflow serve`: gateway, relay, workers, projections), the customer is forgotten with
//! `orderflow forget customer`, and then neither their e-mail address nor their street is
//! anywhere: not in the events table, not in any read model, not in the stream's messages, not
//! in a `pg_dump` of the whole database. Their orders keep their lines and totals, and a
//! rebuild of each projection verifies clean.

use std::time::{Duration, Instant};

use orderflow_testkit::bus::read_stream;
use orderflow_testkit::World;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{consumers_caught_up, orderflow_over};

/// The whole database as `pg_dump` writes it (schema and data).
fn pg_dump(world: &World) -> String {
    let output = std::process::Command::new("/usr/bin/pg_dump")
        .arg("--dbname")
        .arg(&world.db.options.url)
        .output()
        .expect("running pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 dump")
}

/// Every row of every read model, as text.
async fn read_model_rows(world: &World) -> String {
    let mut rows = String::new();
    for table in [
        "order_summary",
        "analytics_orders",
        "analytics_revenue",
        "analytics_status",
        "analytics_skus",
        "notifications",
        "shipments",
        "inventory_reservations",
        "idempotency_keys",
        "inbox",
    ] {
        let texts: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(world.pool())
            .await
            .unwrap();
        rows.push_str(&texts.join("\n"));
    }
    rows
}

/// Every message body of the event stream, as text.
async fn stream_text(world: &World) -> String {
    let bus = world.bus();
    let messages = read_stream(&bus.bus, &bus.options.stream).await.unwrap();
    assert!(!messages.is_empty(), "the stream holds the events");
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn events_text(world: &World) -> String {
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(world.pool())
        .await
        .unwrap();
    payloads.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_customers_personal_data_is_nowhere_and_their_orders_stay_whole() {
    let world = World::new().await;
    let orderflow = orderflow_over(&world);
    let (served, base) = orderflow.serve(&[]);
    let http = reqwest::Client::new();
    let tag = Uuid::new_v4().simple().to_string();
    let email = format!("forget-{tag}@example.com");
    let street = format!("{tag} Shredder Street");
    let other_street = format!("{tag} Keeper Street");

    let put = http
        .put(format!("{base}/v1/inventory/SKU-GDPR"))
        .json(&json!({"available": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut placed = Vec::new();
    for (i, customer) in ["c-forget", "c-forget", "c-stay"].into_iter().enumerate() {
        let response = http
            .post(format!("{base}/v1/orders"))
            .header("Idempotency-Key", format!("{tag}-{i}"))
            .json(&json!({
                "customer_id": customer,
                "customer_email": if customer == "c-forget" { email.clone() } else { format!("stay-{tag}@example.com") },
                "currency": "EUR",
                "lines": [{"sku": "SKU-GDPR", "quantity": i + 1, "unit_price": 1250}],
                "shipping_address": {"name": "Grace H",
                                     "line1": if customer == "c-forget" { &street } else { &other_street },
                                     "city": "Berlin",
                                     "postal_code": "10115", "country": "DE"}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        placed.push(response.json::<Value>().await.unwrap());
    }

    // Every order shipped, every consumer drained.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shipped: i64 =
            sqlx::query_scalar("SELECT count(*) FROM order_summary WHERE status = 'shipped'")
                .fetch_one(world.pool())
                .await
                .unwrap();
        if shipped == 3 && consumers_caught_up(&http, &base).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in time: {shipped} shipped"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Sealed from the start: the log and the stream never held the plain values...
    for (what, text) in [
        ("events", events_text(&world).await),
        ("stream", stream_text(&world).await),
    ] {
        assert!(
            !text.contains(&email) && !text.contains(&street),
            "{what}: {text}"
        );
        assert!(text.contains("\"personal\""), "{what} holds sealed fields");
    }
    // ...but the workers' records and the idempotency keys did, and the dump finds them: the
    // searches below can fail.
    let dump = pg_dump(&world);
    assert!(dump.contains(&email) && dump.contains(&street));
    let recipients: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT recipient FROM notifications ORDER BY 1")
            .fetch_all(world.pool())
            .await
            .unwrap();
    assert!(recipients.contains(&email), "{recipients:?}");

    let forget = orderflow.run(&["forget", "customer", "c-forget"]);
    assert!(
        forget.contains("1 data key deleted") && forget.contains("of 2 orders erased"),
        "{forget}"
    );

    let nowhere = |what: &str, text: &str| {
        assert!(
            !text.contains(&email),
            "{what} still holds the e-mail address"
        );
        assert!(!text.contains(&street), "{what} still holds the street");
    };
    nowhere("the events table", &events_text(&world).await);
    nowhere("the read models", &read_model_rows(&world).await);
    nowhere("the stream", &stream_text(&world).await);
    nowhere("pg_dump", &pg_dump(&world));

    // The orders: personal fields erased, lines and totals as placed.
    for order in &placed[..2] {
        let id = order["id"].as_str().unwrap();
        let now: Value = http
            .get(format!("{base}/v1/orders/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(now["customer_email"], "[erased]");
        assert_eq!(now["shipping_address"]["line1"], "[erased]");
        assert_eq!(now["lines"], order["lines"]);
        assert_eq!(now["total"], order["total"]);
        assert_eq!(now["status"], "shipped");
        let events = http
            .get(format!("{base}/v1/orders/{id}/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
    }
    // The other customer keeps theirs.
    let stay: Value = http
        .get(format!(
            "{base}/v1/orders/{}",
            placed[2]["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stay["shipping_address"]["line1"], other_street.as_str());

    // A rebuild cannot bring anything back, and verifies clean.
    for projection in ["order-summary", "analytics"] {
        let rebuilt = orderflow.run(&["projections", "rebuild", projection]);
        assert!(rebuilt.contains("swapped in"), "{rebuilt}");
        let verified = orderflow.run(&["projections", "rebuild", projection, "--verify"]);
        assert!(
            verified.contains("; 0 differences"),
            "{projection}: {verified}"
        );
    }
    nowhere(
        "the read models after a rebuild",
        &read_model_rows(&world).await,
    );
    nowhere("pg_dump after a rebuild", &pg_dump(&world));

    drop(served);
    world.cleanup().await;
}
