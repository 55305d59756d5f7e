//! A steady load of orders through the real gateway, as the tests that stop, kill or starve
//! the system under load use it: one `POST /v1/orders` every so often, each on its own task,
//! counting only the orders answered 201 (nobody was told the others were accepted). Each
//! request carries an `Idempotency-Key`, so the requests whose outcome the client does not
//! know (answered 503, or not answered at all) can be sent again the way a careful client
//! would ([`LoadReport::retry_uncertain`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

/// A valid order body for order number `i`: one unit of `sku` at 10.00 EUR, for one of eleven
/// customers.
pub fn order_body(sku: &str, i: usize) -> serde_json::Value {
    json!({
        "customer_id": format!("c-{}", i % 11),
        "customer_email": format!("customer{i}@example.com"),
        "currency": "EUR",
        "lines": [{"sku": sku, "quantity": 1, "unit_price": 1000}],
        "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    })
}

/// Waits until `GET <base>/health` answers 200.
///
/// # Panics
/// When it does not within `within`.
pub async fn wait_until_healthy(base: &str, within: Duration) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(format!("{base}/health")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            started.elapsed() < within,
            "the gateway did not answer on {base} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when the gateway at `base` (admin token `admin_token`) lists `consumers` durable
/// consumers, each existing with nothing pending and nothing awaiting its ack.
pub async fn consumers_caught_up(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    consumers: usize,
) -> bool {
    let Ok(response) = http
        .get(format!("{base}/v1/admin/consumers"))
        .bearer_auth(admin_token)
        .send()
        .await
    else {
        return false;
    };
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return false;
    };
    let listed = body["consumers"].as_array().cloned().unwrap_or_default();
    listed.len() == consumers
        && listed
            .iter()
            .all(|c| c["exists"] == json!(true) && c["pending"] == 0 && c["ack_pending"] == 0)
}

/// Orders posted to a gateway every `every` until [`OrderLoad::stop`]. What it has seen so
/// far can be awaited ([`OrderLoad::wait_until`], [`OrderLoad::accepted_more`]): a test that
/// needs the system "under load for a while" waits for so many orders, not for so much time.
pub struct OrderLoad {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    task: tokio::task::JoinHandle<LoadReport>,
}

/// What an [`OrderLoad`] did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// The ids of the orders answered 201, in no particular order.
    pub accepted: Vec<Uuid>,
    /// Requests answered with another status, by status.
    pub refused: std::collections::BTreeMap<u16, usize>,
    /// Requests that got no answer (connection refused, timed out).
    pub unanswered: usize,
    /// The requests answered 503 or not answered, as `(Idempotency-Key, body)`: the order
    /// may or may not have been stored, and only sending it again tells.
    pub uncertain: Vec<(String, serde_json::Value)>,
}

impl LoadReport {
    /// Sends every request answered 503 or not answered again with its `Idempotency-Key`, as
    /// the 503 asks, until each is answered 201, and counts those orders as accepted. Such a
    /// request may have been stored (PostgreSQL may have committed it before dying; a request
    /// that timed out may have been carried out after the client gave up), so only such a
    /// retry tells which orders exist.
    ///
    /// # Panics
    /// When a request is answered otherwise than 201 or 503, or is not placed within `within`.
    pub async fn retry_uncertain(&mut self, base: &str, within: Duration) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let started = Instant::now();
        for (key, body) in std::mem::take(&mut self.uncertain) {
            loop {
                match place_order(&http, base, &key, &body).await {
                    Ok(response) if response.status() == 201 => {
                        self.accepted.push(order_id(response).await);
                        break;
                    }
                    Ok(response) => assert_eq!(
                        response.status(),
                        503,
                        "a retry with Idempotency-Key {key} was answered {}",
                        response.status()
                    ),
                    Err(_) => {}
                }
                assert!(
                    started.elapsed() < within,
                    "the order with Idempotency-Key {key} was not placed within {within:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// `POST <base>/v1/orders` with `body` under the `Idempotency-Key` `key`.
///
/// # Errors
/// When no answer came (refused, reset, timed out).
pub async fn place_order(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/v1/orders"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
}

/// The id of the order a 201 answer names.
async fn order_id(response: reqwest::Response) -> Uuid {
    let body: serde_json::Value = response.json().await.expect("a 201 has a JSON body");
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a 201 names the order's id")
}

impl OrderLoad {
    /// Starts posting orders for `sku` to `base` (`http://127.0.0.1:<port>`) every `every`.
    /// Each request may take up to `timeout`.
    pub fn start(base: &str, sku: &str, every: Duration, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (base, sku, stopped) = (base.to_string(), sku.to_string(), Arc::clone(&stop));
        let shared = Arc::new(Mutex::new(LoadReport::default()));
        let report = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client");
            let mut requests = Vec::new();
            let mut tick = tokio::time::interval(every);
            let mut i = 0;
            while !stopped.load(Ordering::SeqCst) {
                tick.tick().await;
                i += 1;
                let (http, base, report) = (http.clone(), base.clone(), Arc::clone(&report));
                let body = order_body(&sku, i);
                let key = Uuid::new_v4().to_string();
                requests.push(tokio::spawn(async move {
                    match place_order(&http, &base, &key, &body).await {
                        Ok(response) if response.status() == 201 => {
                            let id = order_id(response).await;
                            report.lock().unwrap().accepted.push(id);
                        }
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let mut report = report.lock().unwrap();
                            *report.refused.entry(status).or_default() += 1;
                            if status == 503 {
                                report.uncertain.push((key, body));
                            }
                        }
                        Err(_) => {
                            let mut report = report.lock().unwrap();
                            report.unanswered += 1;
                            report.uncertain.push((key, body));
                        }
                    }
                }));
            }
            for request in requests {
                request.await.expect("a load request task");
            }
            let report = report.lock().unwrap().clone();
            report
        });
        Self {
            stop,
            report: shared,
            task,
        }
    }

    /// What the load has seen so far (the requests still open are not in it yet).
    pub fn so_far(&self) -> LoadReport {
        self.report.lock().unwrap().clone()
    }

    /// Waits until `condition` holds of what the load has seen so far.
    ///
    /// # Panics
    /// When it does not within `within`, saying that `what` was awaited and what the load saw.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        condition: impl Fn(&LoadReport) -> bool,
    ) {
        let started = Instant::now();
        while !condition(&self.so_far()) {
            assert!(
                started.elapsed() < within,
                "waited {within:?} for {what}; the load saw: {} accepted, refused {:?}, \
                 {} unanswered",
                self.so_far().accepted.len(),
                self.so_far().refused,
                self.so_far().unanswered
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `more` orders more than so far were accepted: the system has been under
    /// load for a while, however fast the machine is.
    ///
    /// # Panics
    /// When that does not happen within `within`.
    pub async fn accepted_more(&self, more: usize, within: Duration) {
        let wanted = self.so_far().accepted.len() + more;
        self.wait_until(
            &format!("{more} more orders accepted (the gateway takes orders)"),
            within,
            |report| report.accepted.len() >= wanted,
        )
        .await;
    }

    /// Stops posting, waits for the requests still open, and says what happened.
    ///
    /// # Panics
    /// When the load task panicked.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the load task")
    }
}
