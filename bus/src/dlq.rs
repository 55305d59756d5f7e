//! Dead letters: messages a consumer gave up on, parked in `<stream>_DLQ` with the consumer's
//! name, the error and the attempt count, and the operator's `list`, `show` and `redrive`.
//!
//! A parked message is a JSON [`DeadLetter`] on `<prefix>_dlq.<consumer>.<order_id>` with
//! `Nats-Msg-Id: <consumer>:<original stream sequence>` (parking twice after a crash stores
//! it once).
//!
//! **Redrive** re-publishes the original body to its original subject in the main stream,
//! with `Nats-Msg-Id: <original id>:redrive:<dlq sequence>` (a fresh id, so the server's
//! dedup does not drop it) and the header `Orderflow-Redrive-For: <consumer>`. Every
//! durable consumer sees it, but the runtime hands it only to the named consumer; the others
//! ack it unseen. So a redrive reaches exactly the consumer that parked it, and it goes
//! through the normal retries again. After the publish is acknowledged the dead letter is
//! deleted from the DLQ stream.

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{Bus, BusError};

/// The header naming the only consumer a redriven message is for.
pub const REDRIVE_FOR_HEADER: &str = "Orderflow-Redrive-For";
/// The header naming the consumer that parked a dead letter.
pub const CONSUMER_HEADER: &str = "Orderflow-Consumer";

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Talking to NATS failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The DLQ stream holds no message with this sequence (never parked, or already redriven).
    #[error("no dead letter with sequence {0}")]
    NotFound(u64),
    /// The message at this sequence is not a [`DeadLetter`].
    #[error("dead letter {sequence} is not readable: {source}")]
    Unreadable {
        /// Its sequence in the DLQ stream.
        sequence: u64,
        /// Why its body did not decode.
        #[source]
        source: serde_json::Error,
    },
}

/// What is stored for a parked message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The durable consumer that gave up.
    pub consumer: String,
    /// The last error.
    pub error: String,
    /// How many times the message was delivered to the consumer.
    pub attempts: u64,
    /// The subject the message had in the main stream; a redrive publishes there again.
    pub original_subject: String,
    /// The message's sequence in the main stream.
    pub original_stream_sequence: u64,
    /// The message's `Nats-Msg-Id`, when it had one.
    pub original_message_id: Option<String>,
    /// When the consumer gave up (UTC).
    pub parked_at: DateTime<Utc>,
    /// The original body (an event envelope as JSON, unless it was malformed).
    pub body: String,
}

/// A dead letter with its place in the DLQ stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedMessage {
    /// The sequence in the DLQ stream: what `show` and `redrive` take.
    pub sequence: u64,
    /// The subject it is stored under in the DLQ stream.
    pub subject: String,
    /// What was parked.
    pub letter: DeadLetter,
}

/// What a redrive sent back to the consumer that parked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Redriven {
    /// The dead letter's sequence (now deleted from the dead-letter stream).
    pub sequence: u64,
    /// The consumer that parked it, the only one that sees the re-publish.
    pub consumer: String,
    /// The subject it was re-published to.
    pub subject: String,
    /// The `Nats-Msg-Id` of the re-publish.
    pub message_id: String,
}

/// Whether a [`park`] stored a new dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// Stored now.
    New,
    /// The same consumer parked the same message moments ago (another process, or the
    /// delivery-limit watcher): the server kept the first one.
    AlreadyParked,
}

impl Parked {
    /// True when this call stored the letter, false when it was already there.
    pub fn is_new(self) -> bool {
        self == Self::New
    }
}

/// Parks `letter` in the DLQ stream and waits for the server's ack.
///
/// # Errors
/// [`BusError::JetStream`] when the publish is not acknowledged.
pub async fn park(bus: &Bus, letter: &DeadLetter) -> Result<Parked, BusError> {
    let order_id = letter
        .original_subject
        .split('.')
        .nth(1)
        .filter(|t| !t.is_empty())
        .unwrap_or("unknown");
    let body = serde_json::to_vec(letter).map_err(|e| BusError::js("encoding a dead letter", e))?;
    let publish = PublishMessage::build()
        .payload(body.into())
        .message_id(format!(
            "{}:{}",
            letter.consumer, letter.original_stream_sequence
        ))
        .header(CONSUMER_HEADER, letter.consumer.as_str());
    let ack = bus
        .jetstream()
        .send_publish(bus.dlq_subject(&letter.consumer, order_id), publish)
        .await
        .map_err(|e| BusError::js("parking a dead letter", e))?
        .await
        .map_err(|e| BusError::js("awaiting a dead letter's ack", e))?;
    Ok(if ack.duplicate {
        Parked::AlreadyParked
    } else {
        Parked::New
    })
}

/// Up to `limit` parked messages, oldest first, of `consumer` or of all consumers.
///
/// # Errors
/// [`DlqError::Bus`] when the stream cannot be read.
pub async fn list(
    bus: &Bus,
    consumer: Option<&str>,
    limit: usize,
) -> Result<Vec<ParkedMessage>, DlqError> {
    let mut stream = bus.dlq_stream().await?;
    let state = stream
        .info()
        .await
        .map_err(|e| BusError::js("reading the dead-letter stream", e))?
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if out.len() >= limit {
            break;
        }
        match read(bus, sequence).await {
            Ok(parked) if consumer.is_none_or(|c| parked.letter.consumer == c) => out.push(parked),
            Ok(_) | Err(DlqError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

/// The parked message at `sequence` of the DLQ stream.
///
/// # Errors
/// [`DlqError::NotFound`] when there is none (never parked, or redriven since).
pub async fn show(bus: &Bus, sequence: u64) -> Result<ParkedMessage, DlqError> {
    read(bus, sequence).await
}

async fn read(bus: &Bus, sequence: u64) -> Result<ParkedMessage, DlqError> {
    // Stream sequences start at 1; JetStream answers 0 with "bad request", not "not found".
    if sequence == 0 {
        return Err(DlqError::NotFound(sequence));
    }
    let stream = bus.dlq_stream().await?;
    let message = match stream.get_raw_message(sequence).await {
        Ok(message) => message,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            return Err(DlqError::NotFound(sequence))
        }
        // 2.9 answers a deleted sequence with a JetStream "no message found" error.
        Err(e) if e.to_string().contains("no message found") => {
            return Err(DlqError::NotFound(sequence))
        }
        Err(e) => return Err(BusError::js("reading a dead letter", e).into()),
    };
    let letter = serde_json::from_slice(&message.payload)
        .map_err(|source| DlqError::Unreadable { sequence, source })?;
    Ok(ParkedMessage {
        sequence,
        subject: message.subject.to_string(),
        letter,
    })
}

/// Sends the parked message at `sequence` back to its consumer (see the module doc), then
/// deletes it from the DLQ stream.
///
/// # Errors
/// [`DlqError::NotFound`] when there is no such dead letter, [`DlqError::Bus`] when the
/// publish or the delete fails (a failed delete leaves the letter parked: redriving it again
/// sends it again, which the consumer's inbox absorbs).
pub async fn redrive(bus: &Bus, sequence: u64) -> Result<Redriven, DlqError> {
    let parked = read(bus, sequence).await?;
    let letter = parked.letter;
    let message_id = format!(
        "{}:redrive:{sequence}",
        letter
            .original_message_id
            .clone()
            .unwrap_or_else(|| format!("seq{}", letter.original_stream_sequence))
    );
    let publish = PublishMessage::build()
        .payload(letter.body.clone().into_bytes().into())
        .message_id(&message_id)
        .header(REDRIVE_FOR_HEADER, letter.consumer.as_str());
    bus.jetstream()
        .send_publish(letter.original_subject.clone(), publish)
        .await
        .map_err(|e| BusError::js("redriving a dead letter", e))?
        .await
        .map_err(|e| BusError::js("awaiting a redrive's ack", e))?;
    bus.dlq_stream()
        .await?
        .delete_message(sequence)
        .await
        .map_err(|e| BusError::js("deleting a redriven dead letter", e))?;
    tracing::info!(sequence, consumer = %letter.consumer, subject = %letter.original_subject, "redrove dead letter");
    Ok(Redriven {
        sequence,
        consumer: letter.consumer,
        subject: letter.original_subject,
        message_id,
    })
}

/// Redrives every parked message of `consumer` (or of all consumers), oldest first.
///
/// # Errors
/// As [`redrive`]; the ones sent before the failure stay sent.
pub async fn redrive_all(bus: &Bus, consumer: Option<&str>) -> Result<Vec<Redriven>, DlqError> {
    let mut out = Vec::new();
    for parked in list(bus, consumer, usize::MAX).await? {
        out.push(redrive(bus, parked.sequence).await?);
    }
    Ok(out)
}
