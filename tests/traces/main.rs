//! One trace across the bus (docs/DESIGN.md, "Trace propagation"): the real `orderflow serve`
//! binary, its own database and stream prefix, one order placed over HTTP.
//!
//! - With JSON logs, the gateway's lines and every consumer's lines for the order carry the
//!   same `trace_id`: the one of the client's `traceparent`, or a new one when it sent none,
//!   and the events the consumers' commands stored continue that trace.
//! - With `ORDERFLOW_OTLP_ENDPOINT` pointing at a small OTLP/HTTP receiver in the test, the
//!   spans arrive when the process stops (the batch would wait a minute: the stop flushes
//!   them), and the gateway's and each consumer's spans share the order's trace id, each
//!   consumer's span a child of the span that stored the event. No exported span, attribute
//!   or event holds the customer's e-mail address, name or address (docs/DESIGN.md,
//!   guarantee 11); the `log` channel's event is there with the address masked.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderflow_testkit::{orderflow, World};
use orderflow_trace::TraceContext;
use serde_json::{json, Value};

mod otlp;

const ADMIN_TOKEN: &str = "traces-test-token";

/// `orderflow serve` with its standard error kept line by line; SIGKILLed when dropped.
struct Serve {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts it with JSON logs (where the banner is a log line too) and `env`.
    async fn start(world: &World, env: &[(&str, &str)]) -> Self {
        let mut command: Command = orderflow!(world)
            .env("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8")
            .env("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ORDERFLOW_LOG_FORMAT", "json")
            .envs(env)
            .command(&["serve", "--http-addr", "127.0.0.1:0"]);
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting `orderflow serve`");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line);
            }
        });
        let mut serve = Self {
            child,
            base: String::new(),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let banner = serve
                .json_lines()
                .into_iter()
                .find(|line| line["message"] == "orderflow gateway listening");
            if let Some(banner) = banner {
                serve.base = banner["address"].as_str().unwrap().to_string();
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!(
                    "serve exited with {status}: {:?}",
                    serve.lines.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start within a minute"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The JSON log lines so far (lines that are not JSON are left out).
    fn json_lines(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// SIGTERM, then waits (at most 30 s) for a clean exit.
    async fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve stopped with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve still runs 30 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The customer's personal fields: e-mail address, name, street, city, postal code. None may
/// reach an exported span.
const PERSONAL: [&str; 5] = [
    "trace-person@example.com",
    "Tracy Spanner",
    "7 Exportless Lane",
    "Spanford",
    "SP-4318",
];

fn order_body(sku: &str) -> Value {
    let [email, name, line1, city, postal_code] = PERSONAL;
    json!({
        "customer_id": "c-trace",
        "customer_email": email,
        "currency": "EUR",
        "lines": [{"sku": sku, "quantity": 1, "unit_price": 1250}],
        "shipping_address": {"name": name, "line1": line1, "city": city,
                             "postal_code": postal_code, "country": "DE"}
    })
}

/// Stocks `sku`, places one order (with `traceparent` when given) and returns its id.
async fn place(http: &reqwest::Client, base: &str, sku: &str, traceparent: Option<&str>) -> String {
    let put = http
        .put(format!("{base}/v1/inventory/{sku}"))
        .json(&json!({"available": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut request = http
        .post(format!("{base}/v1/orders"))
        .json(&order_body(sku));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    order["id"].as_str().unwrap().to_string()
}

/// The order's events as the gateway shows them.
async fn events(http: &reqwest::Client, base: &str, order: &str) -> Vec<Value> {
    let body: Value = http
        .get(format!("{base}/v1/orders/{order}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"].as_array().cloned().unwrap_or_default()
}

/// The stored trace context of the order's event of type `event_type`.
fn trace_of(events: &[Value], event_type: &str) -> TraceContext {
    let event = events
        .iter()
        .find(|e| e["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {events:?}"));
    let value = event["metadata"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("{event_type} has no traceparent: {event}"));
    TraceContext::parse(value).unwrap_or_else(|| panic!("unreadable traceparent {value}"))
}

/// Waits (at most a minute) until the order shipped and every consumer drained.
async fn wait_until_shipped_and_drained(http: &reqwest::Client, base: &str, order: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = http
            .get(format!("{base}/v1/orders/{order}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["status"]
            .clone();
        if status == "shipped"
            && orderflow_testkit::load::consumers_caught_up(
                http,
                base,
                ADMIN_TOKEN,
                orderflow_operations::consumer_names().len(),
            )
            .await
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {order} is {status}, not shipped and drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What is missing from the logs for `trace_id`: the gateway, or a consumer by name.
fn missing_from_logs(lines: &[Value], trace_id: &str) -> Vec<String> {
    let ours: Vec<&Value> = lines.iter().filter(|l| l["trace_id"] == trace_id).collect();
    let mut missing = Vec::new();
    if !ours.iter().any(|l| {
        l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("orderflow_gateway"))
    }) {
        missing.push("gateway".to_string());
    }
    for consumer in orderflow_operations::consumer_names() {
        if !ours.iter().any(|l| l["consumer"] == consumer) {
            missing.push(consumer.to_string());
        }
    }
    missing
}

/// Waits (at most 60 s: a consumer's line follows its ack) until the logs hold lines of the
/// gateway and of every consumer under each of `trace_ids`, and checks that every line
/// written inside a span has a trace id.
async fn wait_for_lines(serve: &Serve, trace_ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = serve.json_lines();
        let missing: Vec<(&String, Vec<String>)> = trace_ids
            .iter()
            .map(|id| (id, missing_from_logs(&lines, id)))
            .filter(|(_, missing)| !missing.is_empty())
            .collect();
        if missing.is_empty() {
            for line in &lines {
                if line.get("span").is_some() {
                    let id = line["trace_id"].as_str().unwrap_or_default();
                    assert!(
                        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                        "a line inside a span without a trace id: {line}"
                    );
                }
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no lines under the trace for {missing:?}; lines: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn json_logs_of_the_gateway_and_every_consumer_share_the_orders_trace_id() {
    let world = World::new().await;
    let serve = Serve::start(&world, &[("RUST_LOG", "info,sqlx=warn")]).await;
    let http = reqwest::Client::new();

    // A client that sends its own trace context: the order's trace is the client's.
    let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let order = place(&http, &serve.base, "SKU-TRACE-1", Some(sent)).await;
    // A client that sends none: a new trace.
    let other = place(&http, &serve.base, "SKU-TRACE-2", None).await;
    wait_until_shipped_and_drained(&http, &serve.base, &order).await;
    wait_until_shipped_and_drained(&http, &serve.base, &other).await;

    let stored = events(&http, &serve.base, &order).await;
    let placed = trace_of(&stored, "OrderPlaced");
    let sent = TraceContext::parse(sent).unwrap();
    assert_eq!(
        placed.trace_id, sent.trace_id,
        "the client's trace is honoured"
    );
    assert_ne!(
        placed.span_id, sent.span_id,
        "the gateway's span is a child of it"
    );
    // The commands the consumers issued stored events in the same trace, each under the
    // span of the consumer that handled the event before.
    let confirmed = trace_of(&stored, "OrderConfirmed");
    let shipped = trace_of(&stored, "ShipmentStarted");
    assert_eq!(confirmed.trace_id, sent.trace_id);
    assert_eq!(shipped.trace_id, sent.trace_id);
    assert_ne!(confirmed.span_id, placed.span_id);
    assert_ne!(shipped.span_id, confirmed.span_id);

    // The relay published each event with its traceparent as a header.
    let stream = world.bus().bus.stream().await.unwrap();
    let mut headers_seen = 0;
    for message in world.bus().messages().await.unwrap() {
        if !message.subject.contains(&order) {
            continue;
        }
        let raw = stream
            .get_raw_message(message.stream_sequence)
            .await
            .unwrap();
        let stored = message.envelope().unwrap().metadata.trace().unwrap();
        let header = raw
            .headers
            .get("traceparent")
            .unwrap_or_else(|| panic!("no traceparent header on {}", message.subject));
        assert_eq!(header.as_str(), stored.to_string());
        headers_seen += 1;
    }
    assert_eq!(headers_seen, stored.len(), "one message per event");

    let new_trace = trace_of(&events(&http, &serve.base, &other).await, "OrderPlaced");
    assert_ne!(new_trace.trace_id, sent.trace_id);
    let new_trace_id = new_trace.trace_id_hex();
    assert_eq!(new_trace_id.len(), 32);

    wait_for_lines(&serve, &[sent.trace_id_hex(), new_trace_id]).await;
    serve.terminate().await;
    world.cleanup().await;
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_share_the_orders_trace() {
    let receiver = otlp::Receiver::start().await;
    let world = World::new().await;
    let endpoint = receiver.endpoint();
    let serve = Serve::start(
        &world,
        &[
            ("ORDERFLOW_OTLP_ENDPOINT", endpoint.as_str()),
            ("ORDERFLOW_OTLP_SERVICE_NAME", "orderflow-under-test"),
            // Nothing goes out on the batch's timer during the test: what arrives was
            // flushed by the graceful stop.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("RUST_LOG", "info,sqlx=warn"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let order = place(&http, &serve.base, "SKU-OTLP", None).await;
    wait_until_shipped_and_drained(&http, &serve.base, &order).await;
    let stored = events(&http, &serve.base, &order).await;
    let placed = trace_of(&stored, "OrderPlaced");
    let confirmed = trace_of(&stored, "OrderConfirmed");
    // The JSON lines carry the exported trace's ids.
    wait_for_lines(&serve, &[placed.trace_id_hex()]).await;
    assert_eq!(receiver.requests(), 0, "spans were sent before the stop");
    serve.terminate().await;

    assert!(receiver.requests() > 0, "no OTLP request arrived");
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|s| s.service == "orderflow-under-test"),
        "service names: {:?}",
        spans.iter().map(|s| &s.service).collect::<Vec<_>>()
    );
    let ours: Vec<&otlp::ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == placed.trace_id)
        .collect();
    let names: Vec<(&str, Option<&str>)> = ours
        .iter()
        .map(|s| (s.name.as_str(), s.attribute("consumer")))
        .collect();
    // The gateway's request span, and the span that stored the order's first event.
    assert!(
        ours.iter().any(|s| s.name == "request"),
        "no gateway span in the trace: {names:?}"
    );
    assert!(
        ours.iter().any(|s| s.span_id == placed.span_id),
        "the span that placed the order is not in the trace: {names:?}"
    );
    // Every consumer handled the order placement in a child span of it.
    for consumer in orderflow_operations::consumer_names() {
        assert!(
            ours.iter().any(|s| s.name == "handle"
                && s.attribute("consumer") == Some(consumer)
                && s.parent_span_id == placed.span_id),
            "no span of {consumer} under the placement: {names:?}"
        );
    }
    // The confirmation was stored under the inventory's span for the placement.
    let inventory = ours
        .iter()
        .find(|s| s.span_id == confirmed.span_id)
        .unwrap_or_else(|| panic!("the span that confirmed is not in the trace: {names:?}"));
    assert_eq!(inventory.name, "handle");
    assert_eq!(inventory.attribute("consumer"), Some("inventory"));
    // No personal field went out; the log channel's events did, with the address masked.
    for personal in PERSONAL {
        assert!(
            !receiver.received_text(personal),
            "an exported span holds {personal:?}"
        );
    }
    assert!(
        receiver.received_text("t***@example.com"),
        "the log channel's event with the masked address was not exported"
    );
    world.cleanup().await;
}
