//! The NATS side: connecting, the JetStream context, the names of the main and dead-letter
//! streams and their subjects, and creating or updating both streams.
//!
//! The main stream (`ORDERS` by default) holds `<prefix>.<order_id>.<EventType>`; the
//! dead-letter stream (`<stream>_DLQ`) holds `<prefix>_dlq.<consumer>.<order_id>`, subjects
//! that never overlap the main ones, so a stream never captures the other's messages.
//!
//! Only features of nats-server 2.9 are used (streams, durable pull consumers with one
//! `filter_subject`, explicit acks, `Nak(delay)`, backoff, `Nats-Msg-Id` dedup, message
//! get/delete); nothing depends on a newer server.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached at all.
    #[error("cannot reach NATS at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A JetStream request (stream, consumer, publish, ...) failed.
    #[error("JetStream {operation} failed: {reason}")]
    JetStream {
        operation: &'static str,
        reason: String,
    },
}

impl BusError {
    pub(crate) fn js(operation: &'static str, error: impl std::fmt::Display) -> Self {
        Self::JetStream {
            operation,
            reason: error.to_string(),
        }
    }
}

/// Where the bus is and how its streams are named. `Default` is the local development setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    pub nats_url: String,
    /// The main stream's name (`ORDERS`); the dead-letter stream is `<stream>_DLQ`.
    pub stream: String,
    /// The first subject token (`orders`): events go to `<prefix>.<order_id>.<EventType>`.
    pub subject_prefix: String,
    /// JetStream replicas of both streams (1 on one machine, 3 in a cluster).
    pub replicas: usize,
    /// How long the server remembers `Nats-Msg-Id`s to drop re-publishes.
    pub duplicate_window: Duration,
    /// How long messages are kept (`None`: forever). Tests set a short one.
    pub max_age: Option<Duration>,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            stream: "ORDERS".into(),
            subject_prefix: "orders".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
        }
    }
}

/// A connection to NATS with its JetStream context and stream names. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    options: BusOptions,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("options", &self.options)
            .finish()
    }
}

impl Bus {
    /// Connects to `options.nats_url` (without creating any stream).
    ///
    /// # Errors
    /// [`BusError::Unreachable`] when the server cannot be reached.
    pub async fn connect(options: BusOptions) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("orderflow")
            .connection_timeout(Duration::from_secs(5))
            .connect(options.nats_url.as_str())
            .await
            .map_err(|e| BusError::Unreachable {
                url: options.nats_url.clone(),
                reason: e.to_string(),
            })?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            options,
        })
    }

    /// Connects and creates or updates both streams.
    ///
    /// # Errors
    /// As [`Bus::connect`] and [`Bus::ensure_streams`].
    pub async fn connect_and_ensure(options: BusOptions) -> Result<Self, BusError> {
        let bus = Self::connect(options).await?;
        bus.ensure_streams().await?;
        Ok(bus)
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub fn options(&self) -> &BusOptions {
        &self.options
    }

    /// The main stream's name.
    pub fn stream_name(&self) -> &str {
        &self.options.stream
    }

    /// The dead-letter stream's name: `<stream>_DLQ`.
    pub fn dlq_stream_name(&self) -> String {
        format!("{}_DLQ", self.options.stream)
    }

    /// The subject prefix of events (`orders`).
    pub fn prefix(&self) -> &str {
        &self.options.subject_prefix
    }

    /// Every event subject: `<prefix>.>`.
    pub fn events_filter(&self) -> String {
        format!("{}.>", self.options.subject_prefix)
    }

    /// The dead-letter subject of a message `consumer` gave up on:
    /// `<prefix>_dlq.<consumer>.<order_id>`.
    pub fn dlq_subject(&self, consumer: &str, order_id: &str) -> String {
        format!("{}_dlq.{consumer}.{order_id}", self.options.subject_prefix)
    }

    /// Every dead-letter subject: `<prefix>_dlq.>`.
    pub fn dlq_filter(&self) -> String {
        format!("{}_dlq.>", self.options.subject_prefix)
    }

    fn stream_config(&self, name: String, subject: String) -> stream::Config {
        stream::Config {
            name,
            subjects: vec![subject],
            storage: stream::StorageType::File,
            num_replicas: self.options.replicas,
            duplicate_window: self.options.duplicate_window,
            max_age: self.options.max_age.unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Creates both streams, or updates them to the configured replicas, window and age.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the server refuses (for example a subject already taken
    /// by another stream).
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        let main = self.stream_config(self.options.stream.clone(), self.events_filter());
        self.jetstream
            .create_or_update_stream(main)
            .await
            .map_err(|e| BusError::js("creating the event stream", e))?;
        let dlq = self.stream_config(self.dlq_stream_name(), self.dlq_filter());
        self.jetstream
            .create_or_update_stream(dlq)
            .await
            .map_err(|e| BusError::js("creating the dead-letter stream", e))?;
        Ok(())
    }

    /// The main stream.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when it does not exist.
    pub async fn stream(&self) -> Result<stream::Stream, BusError> {
        self.jetstream
            .get_stream(&self.options.stream)
            .await
            .map_err(|e| BusError::js("looking up the event stream", e))
    }

    /// The dead-letter stream.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when it does not exist.
    pub async fn dlq_stream(&self) -> Result<stream::Stream, BusError> {
        self.jetstream
            .get_stream(self.dlq_stream_name())
            .await
            .map_err(|e| BusError::js("looking up the dead-letter stream", e))
    }
}
