//! A pair of streams of its own per test on the real NATS server, a reader that returns
//! everything a stream holds, and consumer settings for tests.
//!
//! The server comes from `ORDERFLOW_TEST_NATS_URL` (default `nats://127.0.0.1:4222`). When it
//! cannot be reached the test fails with the command that starts it; it never skips.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use orderflow_store::EventEnvelope;
use uuid::Uuid;

use orderflow_bus::runtime::{Consumer, ConsumerOptions};
use orderflow_bus::{Bus, BusError, BusOptions, Handler};

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The message's sequence in its stream.
    pub stream_sequence: u64,
    /// The subject it was published to.
    pub subject: String,
    /// The `Nats-Msg-Id` header, if any.
    pub message_id: Option<String>,
    /// The raw body.
    pub payload: bytes::Bytes,
}

impl StoredMessage {
    /// The body as an event envelope.
    ///
    /// # Errors
    /// The serde error when the body is not an envelope.
    pub fn envelope(&self) -> Result<EventEnvelope, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A unique stream pair (`T_<uuid>` and `T_<uuid>_DLQ`, prefix `t_<uuid>`) whose messages
/// expire after an hour.
///
/// Both streams are deleted when the test is done with them, whether it passed or failed: by
/// [`TestBus::cleanup`], or else when the `TestBus` is dropped (a test that panicked, or one
/// that never said). `scripts/services clean` deletes the pairs a killed test process left
/// on the shared server (the names say which are the tests').
pub struct TestBus {
    /// A bus connected to the test's own streams, which exist already.
    pub bus: Bus,
    /// The options naming those streams and the subject prefix, for a second connection or a process.
    pub options: BusOptions,
    /// Whether dropping the value still has to delete the streams.
    guard: bool,
}

impl TestBus {
    /// # Panics
    /// When NATS is unreachable, with the command that starts it.
    pub async fn fresh() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let options = BusOptions {
            nats_url: std::env::var("ORDERFLOW_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            stream: format!("T_{id}"),
            subject_prefix: format!("t_{id}"),
            max_age: Some(Duration::from_secs(3600)),
            ..BusOptions::default()
        };
        let bus = Bus::connect_and_ensure(options.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "tests need NATS with JetStream ({e}). Start NATS with `scripts/services up`, \
                     or point ORDERFLOW_TEST_NATS_URL at a server"
                )
            });
        Self {
            bus,
            options,
            guard: true,
        }
    }

    /// Every message the main stream holds, in stream order.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when reading fails.
    pub async fn messages(&self) -> Result<Vec<StoredMessage>, BusError> {
        read_stream(&self.bus, &self.options.stream).await
    }

    /// Every message the dead-letter stream holds, in stream order.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when reading fails.
    pub async fn dead_letters(&self) -> Result<Vec<StoredMessage>, BusError> {
        read_stream(&self.bus, &self.bus.dlq_stream_name()).await
    }

    /// Deletes both streams (and with them their consumers).
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the server refuses (dropping the value tries again).
    pub async fn cleanup(mut self) -> Result<(), BusError> {
        let js = self.bus.jetstream();
        js.delete_stream(&self.options.stream)
            .await
            .map_err(|e| jetstream_error("deleting the test stream", e))?;
        js.delete_stream(self.bus.dlq_stream_name())
            .await
            .map_err(|e| jetstream_error("deleting the test dead-letter stream", e))?;
        self.guard = false;
        Ok(())
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if !self.guard {
            return;
        }
        let url = self.options.nats_url.clone();
        let names = [self.options.stream.clone(), self.bus.dlq_stream_name()];
        crate::database::finish_on_own_thread(
            format!("test streams {}", names.join(" and ")),
            move || async move {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(10))
                    .connect(url.as_str())
                    .await
                    .map_err(|e| format!("connecting to {url}: {e}"))?;
                let js = async_nats::jetstream::new(client);
                for name in names {
                    // A stream already gone (the test deleted it itself) is fine.
                    if let Err(error) = js.delete_stream(&name).await {
                        let gone = matches!(
                            error.kind(),
                            async_nats::jetstream::context::DeleteStreamErrorKind::JetStream(e)
                                if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                        );
                        if !gone {
                            return Err(format!("deleting stream {name}: {error}"));
                        }
                    }
                }
                Ok(())
            },
        );
    }
}

/// Reads every message of `stream` through an ephemeral consumer that does not ack.
///
/// # Errors
/// [`BusError::JetStream`] when reading fails.
pub async fn read_stream(bus: &Bus, stream: &str) -> Result<Vec<StoredMessage>, BusError> {
    let js = bus.jetstream();
    let mut handle = js
        .get_stream(stream)
        .await
        .map_err(|e| jetstream_error("looking up a stream", e))?;
    let total = handle
        .info()
        .await
        .map_err(|e| jetstream_error("reading stream info", e))?
        .state
        .messages;
    let mut out = Vec::new();
    if total == 0 {
        return Ok(out);
    }
    let consumer = handle
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| jetstream_error("creating a reader", e))?;
    // Until every message counted at the start has come, or none has come for a long while
    // (one that went away since), however slowly a busy machine delivers them.
    let mut last_progress = std::time::Instant::now();
    while (out.len() as u64) < total && last_progress.elapsed() < READ_PATIENCE {
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| jetstream_error("reading a batch", e))?;
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| jetstream_error("reading a message", e))?;
            let stream_sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            out.push(StoredMessage {
                stream_sequence,
                subject: message.subject.to_string(),
                message_id: message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string()),
                payload: message.payload.clone(),
            });
        }
        if out.len() > before {
            last_progress = std::time::Instant::now();
        }
    }
    Ok(out)
}

/// How long [`read_stream`] waits for the next message of a stream before it takes what it
/// has.
const READ_PATIENCE: Duration = Duration::from_secs(30);

fn jetstream_error(operation: &'static str, error: impl std::fmt::Display) -> BusError {
    BusError::JetStream {
        operation,
        reason: error.to_string(),
    }
}

/// Consumer options for tests: short delays, quick drains.
pub fn fast_consumer() -> ConsumerOptions {
    ConsumerOptions {
        max_attempts: 3,
        retry_delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ack_wait: Duration::from_secs(2),
        batch_size: 64,
        concurrency: 8,
        fetch_wait: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(30),
        ..ConsumerOptions::default()
    }
}

/// Binds `handler` to its durable consumer on `bus` with [`fast_consumer`].
///
/// # Panics
/// When binding fails.
pub async fn bind(bus: &Bus, handler: std::sync::Arc<dyn Handler>) -> Consumer {
    Consumer::bind(handler, bus.clone(), fast_consumer())
        .await
        .expect("binding a consumer")
}
