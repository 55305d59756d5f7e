//! A partner that behaves like real ones do, for tests and benchmarks: a carrier or mail
//! service on 127.0.0.1 that takes its time to answer, can be taken down (503) and brought
//! back, and can refuse more than so many requests a second (429 with `Retry-After`). It
//! answers every other request 200 with `{"tracking_number": "P-<Idempotency-Key>"}` and
//! records what it saw: each request's key and JSON body, how many were in flight at most,
//! and how many it answered with each status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

/// How a [`PartnerServer`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// How long it takes to answer each request.
    pub latency: Duration,
    /// Above this many requests in one second, it answers 429 with `Retry-After: 1`.
    pub max_per_second: Option<usize>,
}

/// One request the partner answered 200.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its `Idempotency-Key` (empty when it had none).
    pub key: String,
    /// Its JSON body.
    pub body: serde_json::Value,
    /// When the partner had read it.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Seen {
    served: Vec<Served>,
    statuses: BTreeMap<u16, usize>,
    window: Option<(Instant, usize)>,
}

/// A partner on `127.0.0.1`: see the module doc. It runs until the test's runtime ends.
#[derive(Debug, Clone)]
pub struct PartnerServer {
    /// `http://127.0.0.1:<port>/partner`
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl PartnerServer {
    /// Starts a partner that behaves as `behaviour` says.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a local port");
        let url = format!(
            "http://{}/partner",
            listener.local_addr().expect("an address")
        );
        let server = Self {
            url,
            seen: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
            down: Arc::default(),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move { shared.answer(socket, behaviour).await });
            }
        });
        server
    }

    async fn answer(&self, mut socket: tokio::net::TcpStream, behaviour: Behaviour) {
        let Some((key, body)) = crate::http::read_request(&mut socket).await else {
            return;
        };
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        if !behaviour.latency.is_zero() {
            tokio::time::sleep(behaviour.latency).await;
        }
        let status = {
            let mut seen = self.seen.lock().unwrap();
            let status = if self.down.load(Ordering::SeqCst) {
                503
            } else if behaviour
                .max_per_second
                .is_some_and(|most| !within_rate(&mut seen.window, most))
            {
                429
            } else {
                seen.served.push(Served {
                    key: key.clone(),
                    body,
                    at: Instant::now(),
                });
                200
            };
            *seen.statuses.entry(status).or_default() += 1;
            status
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let body = format!("{{\"tracking_number\":\"P-{key}\"}}");
        let extra = if status == 429 {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
    }

    /// From now on, every request is answered 503 (after the latency), until [`Self::up`].
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Answers as usual again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// The requests answered 200 so far, in the order they were read.
    pub fn served(&self) -> Vec<Served> {
        self.seen.lock().unwrap().served.clone()
    }

    /// How many requests were answered with `status` so far.
    pub fn answered(&self, status: u16) -> usize {
        self.seen
            .lock()
            .unwrap()
            .statuses
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// The most requests it ever had in hand at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in hand now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The distinct keys of the requests answered 200, with how often each came.
    pub fn keys(&self) -> BTreeMap<String, usize> {
        let mut keys = BTreeMap::new();
        for served in self.served() {
            *keys.entry(served.key).or_default() += 1;
        }
        keys
    }
}

/// Counts one request in the current one-second window; false when it is over `most`.
fn within_rate(window: &mut Option<(Instant, usize)>, most: usize) -> bool {
    let now = Instant::now();
    match window {
        Some((started, count)) if now.duration_since(*started) < Duration::from_secs(1) => {
            *count += 1;
            *count <= most
        }
        _ => {
            *window = Some((now, 1));
            true
        }
    }
}
