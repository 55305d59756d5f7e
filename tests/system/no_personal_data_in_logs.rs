//! No personal data in the logs (docs/DESIGN.md, guarantee 11): forgetting a customer
//! destroys their key, but it cannot erase a log line, so no log line may hold their e-mail
//! address, name or address at any level. The real `orderflow serve` runs with
//! `RUST_LOG=debug`, once with text logs and once with JSON logs; one order with distinctive
//! personal fields is placed over HTTP and followed until it shipped and its three
//! notifications went out through the `log` channel. Then nothing serve wrote (standard output
//! and standard error) holds any of the fields, while the log channel's line is there with
//! the masked address (`m***@example.com`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use orderflow_testkit::World;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{consumers_caught_up, orderflow_over};

/// A token no other text holds, so that a hit is this test's value and nothing else.
fn token() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The personal fields of the test's order, each with a token of its own.
struct Person {
    email: String,
    name: String,
    line1: String,
    line2: String,
    city: String,
    postal_code: String,
}

impl Person {
    fn new() -> Self {
        Self {
            email: format!("mail{}@example.com", token()),
            name: format!("Name{} Person", token()),
            line1: format!("{} Privacy Lane", token()),
            line2: format!("Flat {}", token()),
            city: format!("City{}", token()),
            postal_code: format!("PC{}", &token()[..8]),
        }
    }

    /// Every field by name, and the distinctive part of each (a field cut short or written
    /// with escapes still holds its token).
    fn needles(&self) -> Vec<(&'static str, String)> {
        let local = self.email.split('@').next().unwrap_or_default().to_string();
        vec![
            ("e-mail", self.email.clone()),
            ("e-mail's local part", local),
            ("name", self.name.clone()),
            ("name's token", self.name[4..16].to_string()),
            ("line1", self.line1.clone()),
            ("line1's token", self.line1[..12].to_string()),
            ("line2", self.line2.clone()),
            ("line2's token", self.line2[5..].to_string()),
            ("city", self.city.clone()),
            ("city's token", self.city[4..].to_string()),
            ("postal code", self.postal_code.clone()),
        ]
    }
}

/// `orderflow serve` with everything it writes (standard output and standard error) kept
/// line by line; SIGKILLed when dropped.
struct Serve {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Serve {
    fn start(world: &World, log_format: &str) -> Self {
        let mut command: Command = orderflow_over(world)
            .env("RUST_LOG", "debug")
            .env("ORDERFLOW_LOG_FORMAT", log_format)
            .command(&["serve", "--http-addr", "127.0.0.1:0"]);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting `orderflow serve`");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
        let readers = [stdout, stderr]
            .into_iter()
            .map(|output| {
                let kept = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in BufReader::new(output).lines() {
                        let Ok(line) = line else { break };
                        kept.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        Self {
            child,
            lines,
            readers,
        }
    }

    /// The gateway's base URL, from the banner on standard output (text logs) or the banner's
    /// log line (JSON logs); waits at most two minutes.
    async fn base(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let banner = self.lines.lock().unwrap().iter().find_map(|line| {
                if let Some(base) = line.strip_prefix("orderflow gateway listening on ") {
                    return Some(base.trim().to_string());
                }
                let json: Value = serde_json::from_str(line).ok()?;
                (json["message"] == "orderflow gateway listening")
                    .then(|| json["address"].as_str().map(str::to_string))
                    .flatten()
            });
            if let Some(base) = banner {
                return base;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "serve exited with {status}: {:#?}",
                    self.lines.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "serve printed no banner within two minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, waits (at most a minute) for a clean exit, and returns every line it wrote.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve stopped with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "serve still runs a minute after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The process is gone: its pipes are closed and the readers end.
        for reader in std::mem::take(&mut self.readers) {
            reader.join().expect("a reader of serve's output");
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Places one order of `person` and returns its id.
async fn place(http: &reqwest::Client, base: &str, person: &Person) -> String {
    let put = http
        .put(format!("{base}/v1/inventory/SKU-PRIVATE"))
        .json(&json!({"available": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let response = http
        .post(format!("{base}/v1/orders"))
        .json(&json!({
            "customer_id": "c-private",
            "customer_email": person.email,
            "currency": "EUR",
            "lines": [{"sku": "SKU-PRIVATE", "quantity": 1, "unit_price": 990}],
            "shipping_address": {"name": person.name, "line1": person.line1,
                                 "line2": person.line2, "city": person.city,
                                 "postal_code": person.postal_code, "country": "DE"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits (at most three minutes) until the order shipped, its three notifications (placed,
/// confirmed, on its way) were sent, and every consumer drained.
async fn wait_until_shipped_and_notified(http: &reqwest::Client, base: &str, order: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
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
        let notifications = http
            .get(format!("{base}/v1/orders/{order}/notifications"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["notifications"]
            .clone();
        let sent = notifications
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["status"] == "sent").count());
        if status == "shipped" && sent == 3 && consumers_caught_up(http, base).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {order} is {status} with {sent} notifications sent: {notifications:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One order through `serve` with logs in `log_format` at debug; nothing it wrote names the
/// customer.
async fn no_personal_field_is_logged(log_format: &str) {
    let world = World::new().await;
    let person = Person::new();
    let mut serve = Serve::start(&world, log_format);
    let base = serve.base().await;
    let http = reqwest::Client::new();

    let order = place(&http, &base, &person).await;
    wait_until_shipped_and_notified(&http, &base, &order).await;
    let lines = serve.stop().await;

    // The logs are on at debug, and the log channel wrote its lines (checked below).
    let masked = format!("{}***@example.com", &person.email[..1]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("DEBUG") || l.contains("\"level\":\"DEBUG\"")),
        "no debug line: the test would prove nothing"
    );
    let leaks: Vec<String> = person
        .needles()
        .into_iter()
        .flat_map(|(field, needle)| {
            lines
                .iter()
                .filter(move |line| line.contains(&needle))
                .map(move |line| format!("{field}: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} of {} lines of `orderflow serve` ({log_format} logs, RUST_LOG=debug) hold personal \
         data; the first ones:\n{}",
        leaks.len(),
        lines.len(),
        leaks[..leaks.len().min(20)].join("\n")
    );
    let notified = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("to={masked}")) || l.contains(&format!("\"to\":\"{masked}\""))
        })
        .count();
    assert!(
        // The log channel wrote each notification, with the address masked.
        notified >= 3,
        "{notified} lines of the log channel with {masked}, not 3"
    );
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_at_debug_hold_no_personal_data() {
    no_personal_field_is_logged("pretty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_debug_hold_no_personal_data() {
    no_personal_field_is_logged("json").await;
}
