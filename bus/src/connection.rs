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

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::keep_alive::KeepAlive;

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached at all. `url` is redacted ([`redact_nats_url`]).
    #[error("cannot reach NATS at {url}: {reason}")]
    Unreachable {
        /// The server URL tried, redacted.
        url: String,
        /// The client's error, in words.
        reason: String,
        /// The server refused or did not answer the connection (it may be starting): worth
        /// waiting for. False for a malformed URL, wrong credentials, a TLS mismatch.
        transient: bool,
    },
    /// A JetStream request (stream, consumer, publish, ...) failed.
    #[error("JetStream {operation} failed: {reason}")]
    JetStream {
        /// What was attempted, for example `publishing an event`.
        operation: &'static str,
        /// The server's or client's error, in words.
        reason: String,
    },
}

impl BusError {
    /// True when the server was not there (refused, timed out), so a retry may succeed.
    pub fn is_transient_connect(&self) -> bool {
        matches!(
            self,
            Self::Unreachable {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn js(operation: &'static str, error: impl std::fmt::Display) -> Self {
        Self::JetStream {
            operation,
            reason: error.to_string(),
        }
    }
}

/// How long creating a stream waits for a cluster that cannot create it yet.
const CLUSTER_FORMING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a failed stream creation is a cluster not ready yet (see [`Bus::create_stream`]).
fn cluster_not_ready(error: &jetstream::context::CreateStreamError) -> bool {
    use jetstream::context::CreateStreamErrorKind as Kind;
    match error.kind() {
        Kind::TimedOut => true,
        Kind::JetStream(inner) => [10005, 10008].contains(&inner.error_code().0),
        _ => false,
    }
}

/// `url` (one NATS URL, or several separated by commas) with every credential replaced by
/// `***`: the password of `user:password@`, and a token or nkey given alone before the `@`.
/// Safe to log.
pub fn redact_nats_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = one.split_once("://").unwrap_or(("", one));
            let Some((credentials, host)) = rest.rsplit_once('@') else {
                return one.to_string();
            };
            let masked = match credentials.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            if scheme.is_empty() {
                format!("{masked}@{host}")
            } else {
                format!("{scheme}://{masked}@{host}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Credentials taken out of a NATS URL.
enum Credentials {
    UserPassword(String, String),
    /// A token given alone before the `@`.
    Token(String),
}

/// The server addresses of `urls` (one URL, or several separated by commas) without their
/// credentials, and the first credentials found in them.
fn split_credentials(
    urls: &str,
) -> Result<(Vec<async_nats::ServerAddr>, Option<Credentials>), String> {
    let mut servers = Vec::new();
    let mut credentials = None;
    for one in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let with_scheme = if one.contains("://") {
            one.to_string()
        } else {
            format!("nats://{one}")
        };
        let mut parsed = url::Url::parse(&with_scheme)
            .map_err(|e| format!("invalid NATS server URL {}: {e}", redact_nats_url(one)))?;
        // Percent-decoding (a literal `+` stays a `+`).
        let decode = |raw: &str| {
            url::form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = decode(parsed.username());
        let found = match parsed.password() {
            Some(password) => Some(Credentials::UserPassword(user, decode(password))),
            None if !user.is_empty() => Some(Credentials::Token(user)),
            None => None,
        };
        if credentials.is_none() {
            credentials = found;
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let address = parsed
            .as_str()
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("invalid NATS server URL {}: {e}", redact_nats_url(one)))?;
        servers.push(address);
    }
    if servers.is_empty() {
        return Err("no NATS server URL given".into());
    }
    Ok((servers, credentials))
}

/// Where the bus is and how its streams are named. `Default` is the local development setup.
/// `Debug` shows the URL redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// The NATS server URL, possibly with credentials (`nats://user:password@host:4222`).
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

impl std::fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusOptions")
            .field("nats_url", &redact_nats_url(&self.nats_url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_age", &self.max_age)
            .finish()
    }
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
    /// The keep-alive thread of this bus's consumers, started by the first that asks.
    keep_alive: Arc<OnceLock<Arc<KeepAlive>>>,
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
        Self::connect_named(options, "orderflow").await
    }

    /// [`Bus::connect`], with the connection shown to the server as `name`.
    pub(crate) async fn connect_named(options: BusOptions, name: &str) -> Result<Self, BusError> {
        let url = redact_nats_url(&options.nats_url);
        let invalid = |reason: String| BusError::Unreachable {
            url: url.clone(),
            reason,
            transient: false,
        };
        let (servers, credentials) = split_credentials(&options.nats_url).map_err(invalid)?;
        // The credentials go to the client apart from the addresses, so that nothing the
        // client logs about its servers can show them.
        let mut connect = async_nats::ConnectOptions::new();
        match credentials {
            Some(Credentials::UserPassword(user, password)) => {
                connect = connect.user_and_password(user, password);
            }
            Some(Credentials::Token(token)) => connect = connect.token(token),
            None => {}
        }
        let client = connect
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|e| {
                use async_nats::ConnectErrorKind as Kind;
                BusError::Unreachable {
                    transient: matches!(e.kind(), Kind::Io | Kind::TimedOut),
                    reason: e.to_string(),
                    url: url.clone(),
                }
            })?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            options,
            keep_alive: Arc::default(),
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

    /// The keep-alive thread of this bus's consumers (`crate::keep_alive`), started now if
    /// none has asked before.
    pub(crate) fn keep_alive(&self) -> Arc<KeepAlive> {
        Arc::clone(
            self.keep_alive
                .get_or_init(|| KeepAlive::start(self.options.clone())),
        )
    }

    /// The plain NATS client, for core publish and subscribe.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context, for streams and consumers.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The options the bus was connected with.
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
        self.create_stream(main, "creating the event stream")
            .await?;
        let dlq = self.stream_config(self.dlq_stream_name(), self.dlq_filter());
        self.create_stream(dlq, "creating the dead-letter stream")
            .await
    }

    /// Creates or updates one stream. A cluster that is forming, or has lost the quorum of its
    /// meta group, cannot create a stream yet: it answers "no suitable peers for placement"
    /// (10005) to a replicated stream whose servers have not all joined, "JetStream system
    /// temporarily unavailable" (10008), or not at all (the request times out). That is
    /// waited out, for up to [`CLUSTER_FORMING_PATIENCE`], instead of failing the start.
    async fn create_stream(
        &self,
        config: stream::Config,
        operation: &'static str,
    ) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        loop {
            match self.jetstream.create_or_update_stream(config.clone()).await {
                Ok(_) => return Ok(()),
                Err(error)
                    if cluster_not_ready(&error)
                        && started.elapsed() < CLUSTER_FORMING_PATIENCE =>
                {
                    tracing::info!(%error, "JetStream cannot create the stream yet; waiting for the cluster to form");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(error) => return Err(BusError::js(operation, error)),
            }
        }
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

    /// The stream named `name`, or `None` when JetStream says it does not exist. Any other
    /// failure (NATS away, a cluster electing the stream's leader) is an error, never
    /// "missing": a stream taken for missing is created again and refilled from the store.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when JetStream cannot say.
    pub async fn find_stream(&self, name: &str) -> Result<Option<stream::Stream>, BusError> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        use async_nats::jetstream::ErrorCode;
        match self.jetstream.get_stream(name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(BusError::js("looking up a stream", error)),
            },
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_passwords_and_tokens_in_every_url_of_a_list() {
        assert_eq!(
            redact_nats_url("nats://orders:s3cret@a:4222, nats://tok3n@b:4222,nats://c:4222"),
            "nats://orders:***@a:4222,nats://***@b:4222,nats://c:4222"
        );
        assert_eq!(redact_nats_url("user:pw@host:4222"), "user:***@host:4222");
    }

    #[test]
    fn credentials_are_taken_out_of_the_server_addresses() {
        let (servers, credentials) =
            split_credentials("nats://orders:p%40ss+s3cr3t@127.0.0.1:4222,nats://127.0.0.1:4223")
                .unwrap();
        assert_eq!(servers.len(), 2);
        for server in &servers {
            assert!(!format!("{server:?}").contains("s3cr3t"), "{server:?}");
        }
        assert!(matches!(credentials,
            Some(Credentials::UserPassword(user, password)) if user == "orders" && password == "p@ss+s3cr3t"));
        let (_, token) = split_credentials("nats://t0ken@127.0.0.1:4222").unwrap();
        assert!(matches!(token, Some(Credentials::Token(t)) if t == "t0ken"));
        assert!(split_credentials("nats://127.0.0.1:notaport").is_err());
    }
}
