//! The notifications worker: one message to the customer per notifiable event (placed,
//! confirmed, rejected, cancelled, shipment started), sent through a channel and recorded
//! with its status.
//!
//! The record is written in the same statement as the inbox claim, as `pending`; then the
//! channel is called with the notification id (a v5 uuid of the event id) as idempotency key
//! (the webhook's `Idempotency-Key` header, the e-mail's `Message-ID`), and the record becomes
//! `sent` or `failed` (with the error and attempt count). A redelivery finds the claim: a
//! `sent` notification is not sent again, a `pending` or `failed` one is retried. Two
//! deliveries of one event racing in two processes may both call the channel; the
//! idempotency key lets the receiver drop the second.
//!
//! Channels: `log` (default: a tracing line, with the recipient masked), `webhook` (POST
//! JSON, timeout, retries on 5xx, timeouts and connection errors, permanent failure on 4xx)
//! and `smtp` (lettre, from a URL such as `smtp://localhost:1025`).
//!
//! Nothing here writes the recipient whole into a log line, a span, an effect or an error:
//! log lines outlive forgetting the customer, so each shows it masked
//! ([`orderflow_store::steps::mask_emails`], `a***@example.com`); so does the `Debug` of a
//! [`Notification`].

mod batch;

use std::sync::Arc;
use std::time::Duration;

use crate::partner::{classify_status, Answered, CallFailure, GateError, Partner};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_domain::aggregate::OrderState;
use orderflow_domain::{Money, OrderEvent};
use orderflow_store::{EventEnvelope, OrderStore};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use orderflow_bus::handler::{handle_each, Delivery, Effects, Handler, HandlerError};

/// The durable consumer's name.
pub const NAME: &str = "notifications";

/// The namespace of notification ids (v5 of the event id).
const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7266_6c6f_0000_0000_0000_0002);

/// The event types that notify the customer.
pub const NOTIFIABLE: [&str; 5] = [
    "OrderPlaced",
    "OrderConfirmed",
    "OrderRejected",
    "OrderCancelled",
    "ShipmentStarted",
];

/// A rendered notification, as handed to a channel. Its `Debug` masks the recipient.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Also the idempotency key.
    pub notification_id: Uuid,
    /// The order the message is about.
    pub order_id: Uuid,
    /// The type of the event that caused it, one of [`NOTIFIABLE`].
    pub event_type: String,
    /// The customer's e-mail address.
    pub to: String,
    /// The one-line subject (the e-mail's `Subject`).
    pub subject: String,
    /// The plain-text body; amounts in major units with the currency code.
    pub text: String,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("notification_id", &self.notification_id)
            .field("order_id", &self.order_id)
            .field("event_type", &self.event_type)
            .field("to", &masked(&self.to))
            .field("subject", &self.subject)
            .field("text", &self.text)
            .finish()
    }
}

/// `address` as log lines, effects and errors show it: `ada@example.com` reads
/// `a***@example.com`.
fn masked(address: &str) -> String {
    orderflow_store::steps::mask_emails(address)
}

/// Why a channel did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// May work later (timeout, 5xx, connection refused).
    #[error("{0}")]
    Transient(String),
    /// Will not work (4xx, a rejected address).
    #[error("{0}")]
    Permanent(String),
    /// The mail service is overloaded (429, or an answer with `Retry-After`): fewer calls,
    /// and none before `retry_after`.
    #[error("{reason}")]
    Busy {
        /// What it answered.
        reason: String,
        /// Its `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
}

impl From<SendError> for CallFailure {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Transient(reason) => CallFailure::Failed(reason),
            SendError::Permanent(reason) => CallFailure::Refused(reason),
            SendError::Busy {
                reason,
                retry_after,
            } => CallFailure::Busy {
                reason,
                retry_after,
            },
        }
    }
}

/// Calls to the mail service one process may have in flight at most, unless configured.
pub const DEFAULT_NOTIFY_MAX_IN_FLIGHT: usize = 1024;

/// A way to reach the customer.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The channel's name as recorded (`log`, `webhook`, `smtp`).
    fn name(&self) -> &str;

    /// Delivers one notification, using its id as idempotency key.
    ///
    /// # Errors
    /// [`SendError::Transient`] to be retried, [`SendError::Permanent`] to give up.
    async fn send(&self, notification: &Notification) -> Result<(), SendError>;
}

/// The `log` channel: writes the notification to the log, the recipient masked
/// (`a***@example.com`): a log line outlives forgetting the customer.
pub struct LogChannel;

#[async_trait]
impl Channel for LogChannel {
    fn name(&self) -> &str {
        "log"
    }

    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        tracing::info!(notification_id = %n.notification_id, to = %masked(&n.to),
            subject = %n.subject, "notification");
        Ok(())
    }
}

/// The `webhook` channel: POSTs the notification as JSON with `Idempotency-Key`.
pub struct WebhookChannel {
    client: reqwest::Client,
    url: String,
    attempts: u32,
}

impl WebhookChannel {
    /// # Errors
    /// [`SendError::Permanent`] when the HTTP client cannot be built.
    pub fn new(url: &str, timeout: Duration, attempts: u32) -> Result<Self, SendError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| SendError::Permanent(format!("webhook client: {e}")))?;
        Ok(Self {
            client,
            url: url.to_string(),
            attempts: attempts.max(1),
        })
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let response = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", n.notification_id.to_string())
                .json(n)
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => return Ok(()),
                // Overloaded: asking again at once would make it worse; the mail service's
                // gate (`crate::partner`) slows down and waits as told.
                Ok(r) => match classify_status(r.status(), r.headers(), "webhook") {
                    Some(CallFailure::Busy {
                        reason,
                        retry_after,
                    }) if r.status().as_u16() == 429 || retry_after.is_some() => {
                        return Err(SendError::Busy {
                            reason,
                            retry_after,
                        })
                    }
                    Some(CallFailure::Refused(_)) => {
                        return Err(SendError::Permanent(format!(
                            "webhook answered {}",
                            r.status()
                        )))
                    }
                    _ => last = format!("webhook answered {}", r.status()),
                },
                Err(e) => last = format!("webhook unreachable: {e}"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
        }
        Err(SendError::Transient(last))
    }
}

/// The `smtp` channel: sends an e-mail whose `Message-ID` is the notification id.
pub struct SmtpChannel {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpChannel {
    /// `url` is `smtp://[user:password@]host[:port]` (plain, port 25 by default),
    /// `smtp://...?tls=required` (STARTTLS, port 587 by default) or `smtps://...` (TLS from
    /// the first byte, port 465 by default); certificates are checked against the web PKI
    /// roots.
    ///
    /// # Errors
    /// [`SendError::Permanent`] for a bad URL or sender address.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, SendError> {
        let parsed =
            url::Url::parse(url).map_err(|e| SendError::Permanent(format!("SMTP URL: {e}")))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") {
            return Err(SendError::Permanent(format!(
                "SMTP URL scheme {:?} is not supported (smtp:// or smtps://)",
                parsed.scheme()
            )));
        }
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| SendError::Permanent(format!("SMTP URL: {e}")))?
            .timeout(Some(timeout))
            .build();
        let from = from
            .parse()
            .map_err(|e| SendError::Permanent(format!("sender address {from}: {e}")))?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Channel for SmtpChannel {
    fn name(&self) -> &str {
        "smtp"
    }

    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        use lettre::AsyncTransport;
        let to =
            n.to.parse()
                .map_err(|e| SendError::Permanent(format!("recipient {}: {e}", masked(&n.to))))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject.clone())
            .message_id(Some(format!("<{}@orderflow>", n.notification_id)))
            .body(n.text.clone())
            .map_err(|e| SendError::Permanent(format!("building the e-mail: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }
}

/// Which channel to use. `Default` is `log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChannelOptions {
    /// [`LogChannel`]: only a tracing line (the recipient masked), nothing leaves the process.
    #[default]
    Log,
    /// [`WebhookChannel`]: POST each notification as JSON.
    Webhook {
        /// The endpoint the notifications are POSTed to.
        url: String,
        /// The limit for one HTTP request, response included.
        timeout: Duration,
        /// Requests per notification before a transient failure is reported (at least 1).
        attempts: u32,
    },
    /// [`SmtpChannel`]: send each notification as an e-mail.
    Smtp {
        /// The SMTP server, as [`SmtpChannel::new`] accepts it.
        url: String,
        /// The sender address (`From`), e.g. `orders@example.com`.
        from: String,
        /// The limit for one SMTP conversation.
        timeout: Duration,
    },
}

/// How the notifications worker sends. `Default` logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationOptions {
    /// The channel every notification is sent through.
    pub channel: ChannelOptions,
    /// The most sends in flight at once (the adaptive limit's ceiling).
    pub max_in_flight: usize,
}

impl Default for NotificationOptions {
    fn default() -> Self {
        Self {
            channel: ChannelOptions::default(),
            max_in_flight: DEFAULT_NOTIFY_MAX_IN_FLIGHT,
        }
    }
}

impl NotificationOptions {
    /// The channel these options describe.
    ///
    /// # Errors
    /// [`SendError::Permanent`] when it cannot be built (bad URL or address).
    pub fn build_channel(&self) -> Result<Arc<dyn Channel>, SendError> {
        Ok(match &self.channel {
            ChannelOptions::Log => Arc::new(LogChannel),
            ChannelOptions::Webhook {
                url,
                timeout,
                attempts,
            } => Arc::new(WebhookChannel::new(url, *timeout, *attempts)?),
            ChannelOptions::Smtp { url, from, timeout } => {
                Arc::new(SmtpChannel::new(url, from, *timeout)?)
            }
        })
    }
}

/// One recorded notification, as `GET /v1/orders/{id}/notifications` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct NotificationRecord {
    /// The idempotency key handed to the channel (a v5 uuid of `event_id`).
    pub notification_id: Uuid,
    /// The event that caused it; at most one notification per event.
    pub event_id: Uuid,
    /// The order the message is about.
    pub order_id: Uuid,
    /// The type of the causing event, one of [`NOTIFIABLE`].
    pub event_type: String,
    /// The name of the channel it went through ([`Channel::name`]).
    pub channel: String,
    /// The customer's e-mail address at the time of the event.
    pub recipient: String,
    /// The subject as rendered.
    pub subject: String,
    /// The plain-text body as rendered.
    pub body: String,
    /// `pending`, `sent` or `failed` (failed ones are retried, then parked).
    pub status: String,
    /// How many times the channel was called for it so far.
    pub attempts: i32,
    /// The error of the latest failed attempt; `None` once sent.
    pub last_error: Option<String>,
    /// When it was recorded as `pending`, before the first attempt.
    pub created_at: DateTime<Utc>,
    /// When the channel accepted it; `None` unless the status is `sent`.
    pub sent_at: Option<DateTime<Utc>>,
}

const SELECT_RECORD: &str = "SELECT notification_id, event_id, order_id, event_type, channel,
    recipient, subject, body, status, attempts, last_error, created_at, sent_at
    FROM notifications";

/// The notifications of one order, oldest first.
///
/// # Errors
/// The database error.
pub async fn list_for_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Vec<NotificationRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT_RECORD} WHERE order_id = $1 ORDER BY created_at, event_type"
    ))
    .bind(order_id)
    .fetch_all(pool)
    .await
}

fn money(amount: Money, currency: &str) -> String {
    let minor = amount.minor_units();
    format!("{}.{:02} {currency}", minor / 100, minor % 100)
}

/// Renders the message for `event` of `order` (the order as it was after the event), or
/// `None` when the event does not notify.
///
/// A forgotten customer (their e-mail address erased) is never notified: `None`.
pub fn render(event: &EventEnvelope, order: &OrderState) -> Option<Notification> {
    if orderflow_store::vault::is_erased(order.customer_email.as_str()) {
        tracing::debug!(order_id = %order.id, "customer forgotten: notification skipped");
        return None;
    }
    let short = &order.id.simple().to_string()[..8];
    let (subject, text) = match event.decode().ok()? {
        OrderEvent::OrderPlaced {
            lines,
            total,
            currency,
            ..
        } => {
            let mut text = format!("Thank you for your order {short}.\n\n");
            for line in &lines {
                text.push_str(&format!(
                    "{} x {} at {}\n",
                    line.quantity.get(),
                    line.sku,
                    money(line.unit_price, currency.as_str())
                ));
            }
            text.push_str(&format!("\nTotal: {}\n", money(total, currency.as_str())));
            (format!("We received your order {short}"), text)
        }
        OrderEvent::OrderConfirmed { .. } => (
            format!("Your order {short} is confirmed"),
            format!("Your order {short} is confirmed and will ship soon.\n"),
        ),
        OrderEvent::OrderRejected {
            reason,
            unavailable_skus,
        } => {
            let skus: Vec<_> = unavailable_skus.iter().map(|s| s.as_str()).collect();
            (
                format!("We could not accept your order {short}"),
                format!(
                    "We are sorry: your order {short} was not accepted ({reason}).\n\
                     Unavailable: {}\n",
                    skus.join(", ")
                ),
            )
        }
        OrderEvent::OrderCancelled { reason, .. } => (
            format!("Your order {short} was cancelled"),
            if reason.is_empty() {
                format!("Your order {short} was cancelled.\n")
            } else {
                format!("Your order {short} was cancelled ({reason}).\n")
            },
        ),
        OrderEvent::ShipmentStarted {
            carrier,
            tracking_number,
            ..
        } => (
            format!("Your order {short} is on its way"),
            format!(
                "Your order {short} was handed to {carrier}. Tracking number: {tracking_number}\n"
            ),
        ),
        OrderEvent::OrderDelivered {} => return None,
    };
    Some(Notification {
        notification_id: Uuid::new_v5(&NOTIFICATION_NAMESPACE, event.event_id.as_bytes()),
        order_id: order.id,
        event_type: event.event_type.clone(),
        to: order.customer_email.as_str().to_string(),
        subject,
        text,
    })
}

/// The notifications worker.
#[derive(Clone)]
pub struct NotificationsWorker {
    pool: PgPool,
    store: OrderStore,
    channel: Arc<dyn Channel>,
    /// Every send goes through it: see [`crate::partner`].
    partner: Arc<Partner>,
}

impl NotificationsWorker {
    /// The worker over `pool` (order store and `notifications` table), sending through
    /// `channel`, at most [`DEFAULT_NOTIFY_MAX_IN_FLIGHT`] sends at once.
    pub fn new(pool: PgPool, channel: Arc<dyn Channel>) -> Self {
        let store = OrderStore::new(pool.clone());
        Self {
            pool,
            store,
            channel,
            partner: Arc::new(Partner::new("notify", DEFAULT_NOTIFY_MAX_IN_FLIGHT)),
        }
    }

    /// The same worker with at most `max_in_flight` sends at once.
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.partner = Arc::new(Partner::new("notify", max_in_flight));
        self
    }

    /// The mail service's gate: calls in flight, the limit, whether it is down.
    pub fn partner(&self) -> &Partner {
        &self.partner
    }

    /// Sends `n` through the channel's gate: waits for a slot, tries again while the
    /// service fails or is busy (without spending the message's attempts), and returns the
    /// service's refusal, or how it answered.
    async fn send(&self, n: &Notification) -> Result<Answered<()>, SendError> {
        self.partner
            .call(|| async { self.channel.send(n).await.map_err(CallFailure::from) })
            .await
            .map_err(|error| match error {
                GateError::Refused(reason) => SendError::Permanent(reason),
                GateError::Failed(reason) => SendError::Transient(reason),
            })
    }
}

#[async_trait]
impl Handler for NotificationsWorker {
    fn name(&self) -> &str {
        NAME
    }

    async fn resume_after(&self) -> Option<i64> {
        crate::progress::resume_after(&self.pool, NAME).await
    }

    async fn note_handled_through(&self, position: i64) {
        crate::progress::note(&self.pool, NAME, position).await;
    }

    fn batched(&self) -> bool {
        true
    }

    /// A batch of live deliveries in a few statements (see `batch`); replays one by one.
    async fn handle_batch(
        &self,
        events: &[(EventEnvelope, Delivery)],
    ) -> Vec<Result<Effects, HandlerError>> {
        if events.iter().any(|(_, d)| d.dry_run || d.ignore_inbox) {
            return handle_each(self, events).await;
        }
        let events: Vec<&EventEnvelope> = events.iter().map(|(e, _)| e).collect();
        self.notify_all(&events).await
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        delivery: Delivery,
    ) -> Result<Effects, HandlerError> {
        if !NOTIFIABLE.contains(&event.event_type.as_str()) {
            return Ok(Effects::none());
        }
        // The order as it was after the event; a placement (the first event) is the whole
        // order, so it needs no read of the log.
        let order = if event.sequence == 1 {
            // The recipient is sealed: open it through the vault.
            let mut placed = event.clone();
            self.store
                .vault()
                .open_all(std::slice::from_mut(&mut placed))
                .await
                .map_err(HandlerError::retry)?;
            orderflow_store::orders::fold(std::slice::from_ref(&placed), None)
        } else {
            self.store
                .load_at(event.order_id, Some(event.sequence))
                .await
        }
        .map_err(HandlerError::retry)?
        .ok_or_else(|| HandlerError::retry(format!("order {} not found", event.order_id)))?;
        let Some(n) = render(event, &order.state) else {
            return Ok(Effects::none());
        };
        if delivery.dry_run {
            return Ok(Effects::one(format!(
                "would notify {}: {}",
                masked(&n.to),
                n.subject
            )));
        }
        // The inbox claim and the pending record in one statement (atomic without a
        // transaction): the record is written only by the delivery that made the claim.
        let claimed: bool = sqlx::query_scalar(
            "WITH claim AS (
                 INSERT INTO inbox (consumer, event_id) VALUES ($9, $2)
                 ON CONFLICT DO NOTHING RETURNING event_id),
             record AS (
                 INSERT INTO notifications (notification_id, event_id, order_id, event_type,
                     channel, recipient, subject, body, status)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'pending' FROM claim
                 ON CONFLICT (event_id) DO NOTHING)
             SELECT EXISTS (SELECT 1 FROM claim)",
        )
        .bind(n.notification_id)
        .bind(event.event_id)
        .bind(n.order_id)
        .bind(&n.event_type)
        .bind(self.channel.name())
        .bind(&n.to)
        .bind(&n.subject)
        .bind(&n.text)
        .bind(NAME)
        .fetch_one(&self.pool)
        .await?;
        let status: Option<String> = if claimed {
            Some("pending".into())
        } else {
            sqlx::query_scalar("SELECT status FROM notifications WHERE event_id = $1")
                .bind(event.event_id)
                .fetch_optional(&self.pool)
                .await?
        };
        // A sent notification is sent again only when an operator forces a replay; it keeps
        // its notification id, so the receiver can still recognise the repeat.
        let unsent = matches!(status.as_deref(), Some("pending" | "failed"));
        let forced = delivery.ignore_inbox && status.as_deref() == Some("sent");
        if !unsent && !forced {
            return Ok(Effects::none());
        }
        let result = self.send(&n).await;
        let (status, error) = match &result {
            Ok(_) => ("sent", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        sqlx::query(
            "UPDATE notifications SET status = $2, last_error = $3, attempts = attempts + 1,
                    sent_at = CASE WHEN $2 = 'sent' THEN now() END
              WHERE event_id = $1",
        )
        .bind(event.event_id)
        .bind(status)
        .bind(&error)
        .execute(&self.pool)
        .await?;
        self.sent(&n, result)
    }
}

impl NotificationsWorker {
    /// What the runtime is told of one send: the effect, or a retry (transient) or a parking
    /// (permanent).
    fn sent(
        &self,
        n: &Notification,
        result: Result<Answered<()>, SendError>,
    ) -> Result<Effects, HandlerError> {
        match result {
            Ok(answered) => Ok(Effects::one(format!(
                "notified {} via {}: {} ({})",
                masked(&n.to),
                self.channel.name(),
                n.subject,
                answered.describe()
            ))),
            Err(SendError::Transient(e) | SendError::Busy { reason: e, .. }) => {
                Err(HandlerError::Retry(e))
            }
            Err(SendError::Permanent(e)) => Err(HandlerError::GiveUp(e)),
        }
    }
}
