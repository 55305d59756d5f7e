//! A TCP proxy in front of PostgreSQL that can lose the server's answer to one write: the
//! statement reaches the server, which carries it out and commits, and the connection is cut
//! before its answer reaches the client. That is what a client sees when the server (or the
//! network) dies between a commit and its reply, made deterministic: the client cannot know
//! whether the write happened.
//!
//! Every connection is passed through byte for byte until the proxy is armed
//! ([`AnswerLosingProxy::lose_answer_to`]). The proxy reads the client's side of the
//! PostgreSQL protocol: once a connection prepares a statement whose text contains the armed
//! text (a `Parse` message), the next `Execute` on it trips the proxy, and the answer to that
//! is lost. Connections made afterwards pass through again. The text must be sent in the clear,
//! so the URL the proxy gives turns TLS off ([`AnswerLosingProxy::url`]), and the statement
//! must be prepared after arming: a connection sends a statement's text only the first time it
//! prepares it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use url::Url;

/// The proxy; it stops when dropped.
pub struct AnswerLosingProxy {
    url: String,
    armed: Arc<Mutex<Option<Vec<u8>>>>,
    tripped: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerLosingProxy {
    /// A proxy on a free loopback port in front of the server `database_url` names.
    ///
    /// # Panics
    /// When the URL names no host and port or no port is free.
    pub async fn start(database_url: &str) -> Self {
        let mut url = Url::parse(database_url).expect("a database URL");
        let target = format!(
            "{}:{}",
            url.host_str().expect("the database URL names a host"),
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(port)).expect("a port");
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != "sslmode")
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("sslmode", "disable");
        let armed: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let tripped = Arc::new(Notify::new());
        let (shared_armed, shared_tripped) = (Arc::clone(&armed), Arc::clone(&tripped));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (armed, tripped) = (Arc::clone(&shared_armed), Arc::clone(&shared_tripped));
                tokio::spawn(pass_through(client, server, armed, tripped));
            }
        });
        Self {
            url: url.to_string(),
            armed,
            tripped,
            task,
        }
    }

    /// The database URL that goes through the proxy (TLS off).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Arms the proxy: the next client message containing `text` reaches the server, and its
    /// answer is thrown away with the connection.
    pub fn lose_answer_to(&self, text: &str) {
        *self.armed.lock().expect("the proxy's lock") = Some(text.as_bytes().to_vec());
    }

    /// Waits until an armed answer was lost.
    pub async fn tripped(&self) {
        self.tripped.notified().await;
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes `client`'s bytes to `server` and back, until the armed text passes: then drops
/// the server's answer to it and closes the connection to the client.
async fn pass_through(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<Mutex<Option<Vec<u8>>>>,
    tripped: Arc<Notify>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut messages = ClientMessages::default();
        let mut prepared = false;
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            let mut trips = false;
            for (kind, body) in messages.feed(chunk) {
                let mut armed = armed.lock().expect("the proxy's lock");
                let Some(text) = armed.as_deref() else {
                    prepared = false;
                    break;
                };
                if kind == b'P' && body.windows(text.len()).any(|w| w == text) {
                    prepared = true;
                }
                if kind == b'E' && prepared {
                    *armed = None;
                    trips = true;
                    break;
                }
            }
            // Marked before the write goes out, so that its answer is never passed on.
            if trips {
                let _ = cut_tx.send(true);
            }
            if server_write.write_all(chunk).await.is_err() || trips {
                return;
            }
        }
    });
    let downstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if *cut_rx.borrow() {
                // The server answered the armed write, so it was carried out: the answer is
                // lost, and the client's connection closes with this task.
                tripped.notify_one();
                return;
            }
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    });
    let _ = tokio::join!(upstream, downstream);
}

/// The client's side of the PostgreSQL protocol, cut into messages: the start-up message
/// (length first, no type byte), then `(type, body)` messages.
#[derive(Default)]
struct ClientMessages {
    started: bool,
    pending: Vec<u8>,
}

impl ClientMessages {
    /// The whole messages `chunk` completes, in order.
    fn feed(&mut self, chunk: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.pending.len() < header {
                return messages;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(
                self.pending[at..at + 4]
                    .try_into()
                    .expect("four bytes of length"),
            ) as usize;
            let total = at + length;
            if self.pending.len() < total {
                return messages;
            }
            let message: Vec<u8> = self.pending.drain(..total).collect();
            if self.started {
                messages.push((message[0], message[header..].to_vec()));
            } else {
                // The start-up message (or a request for TLS, which is answered with one byte
                // and followed by the start-up message).
                let code = message
                    .get(4..8)
                    .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
                self.started = code != Some(80_877_103);
            }
        }
    }
}
