//! A tiny HTTP server standing in for webhook receivers and carriers: it answers every
//! request (as scripted, if asked to) and records the `Idempotency-Key` each one carried.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a [`Recorder`] answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, with a JSON body `{"tracking_number": "<prefix><key>"}`.
    Status(u16),
    /// No answer at all: the request is held until the client gives up (its timeout).
    Hang,
}

/// An HTTP server on 127.0.0.1 for the webhook channel and the http carrier. It answers
/// every request with JSON `{"tracking_number": "<prefix><key>"}`, where `<key>` is the
/// request's `Idempotency-Key`, and records each key (an empty one when the header is
/// missing).
pub struct Recorder {
    /// `http://127.0.0.1:<port>/hook`
    pub url: String,
    /// The keys of the requests so far, in the order they came.
    pub keys: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// A recorder that answers 200 (tracking numbers `HTTP-<key>`).
    pub async fn start() -> Self {
        Self::answering(200).await
    }

    /// A recorder that answers every request with `status` (tracking numbers `HTTP-<key>`).
    pub async fn answering(status: u16) -> Self {
        Self::serve(Vec::new(), Answer::Status(status), "HTTP-").await
    }

    /// A recorder that answers the requests with `script` in turn, then with 200; its
    /// tracking numbers are `<tracking_prefix><key>`.
    pub async fn scripted(script: Vec<Answer>, tracking_prefix: &str) -> Self {
        Self::serve(script, Answer::Status(200), tracking_prefix).await
    }

    async fn serve(script: Vec<Answer>, then: Answer, tracking_prefix: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a local port");
        let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
        let keys = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&keys);
        let script = Arc::new(Mutex::new(script.into_iter()));
        let prefix = tracking_prefix.to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (seen, script, prefix) =
                    (Arc::clone(&seen), Arc::clone(&script), prefix.clone());
                tokio::spawn(async move {
                    let Some((key, _)) = read_request(&mut socket).await else {
                        return;
                    };
                    seen.lock().unwrap().push(key.clone());
                    let answer = script.lock().unwrap().next().unwrap_or(then);
                    let status = match answer {
                        Answer::Status(status) => status,
                        Answer::Hang => {
                            // Until the client hangs up: then reading finds the end.
                            let _ = socket.read(&mut [0u8; 1]).await;
                            return;
                        }
                    };
                    let body = format!("{{\"tracking_number\":\"{prefix}{key}\"}}");
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, keys }
    }

    /// The keys of the requests so far, in the order they came.
    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }

    /// The keys that came more than once (a repeat the receiver drops by its key), sorted.
    pub fn repeated_keys(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for key in self.keys() {
            *seen.entry(key).or_default() += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(key, _)| key)
            .collect()
    }
}

/// Reads one request (head and body) and returns its `Idempotency-Key` (empty when it has
/// none) and its body; `None` when the client hangs up first.
pub(crate) async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("idempotency-key")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let end = buffer.len().min(head_end + length);
    Some((key, buffer[head_end..end].to_vec()))
}
