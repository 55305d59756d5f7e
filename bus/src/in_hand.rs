//! What one consumer process holds, and how it keeps pace with its ack wait.
//!
//! A message is *in hand* from the moment the pull delivers it to this process until it is
//! settled (acked, naked, parked or given back), whether it is being handled or still waits
//! behind a batch. The server redelivers a message whose ack wait expires, so a process short
//! of CPU whose batches run longer than the ack wait would see what it holds come back: the
//! redeliveries would join its next batches, which would take longer still, until it stops
//! advancing (a livelock). Three things prevent that:
//!
//! - the keep-alive thread (`crate::keep_alive`) tells the server, several times per ack
//!   wait, that every message in hand is in progress, from an OS thread and a connection of
//!   its own so that neither a long batch nor a busy runtime can delay it
//!   ([`InHand::keep_alive`] does it from the runtime while that thread's connection is down);
//! - [`InHand::take`] recognises a redelivery of a message already in hand (the server may
//!   still redeliver one, say after a pause of the whole process), which is dropped instead
//!   of worked twice: the copy in hand settles the message;
//! - [`PullSize`] fits how many messages one pull asks for to how long they take to handle,
//!   so that what a pull delivers is handled within about one ack wait.
//!
//! And when a consumer does stop advancing with a backlog, [`InHand::stalled_for`] says for
//! how long (the runtime logs it and exports `orderflow_consumer_stalled_seconds`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};

use crate::keep_alive::KeepAlive;

/// How many times per ack wait the messages in hand are said to be in progress: three, so a
/// progress ack that is late by a whole interval still arrives in time.
pub(crate) const PROGRESS_PER_ACK_WAIT: u32 = 3;

/// The messages one consumer process holds, by stream sequence.
#[derive(Debug)]
pub(crate) struct InHand {
    messages: Mutex<HashMap<u64, Message>>,
    /// Messages settled by this process so far.
    settled_total: AtomicU64,
    /// When this process last settled a message (or started, before the first).
    last_settled: Mutex<Instant>,
}

impl Default for InHand {
    fn default() -> Self {
        Self {
            messages: Mutex::new(HashMap::new()),
            settled_total: AtomicU64::new(0),
            last_settled: Mutex::new(Instant::now()),
        }
    }
}

/// The stream sequence a delivered message carries in its reply subject.
pub(crate) fn stream_sequence(message: &Message) -> Option<u64> {
    message.info().ok().map(|info| info.stream_sequence)
}

impl InHand {
    fn messages(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Message>> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a delivered message into hand. False when a message of the same stream sequence
    /// is in hand already: this is a redelivery of it, which the caller drops.
    pub(crate) fn take(&self, message: &Message) -> bool {
        let Some(sequence) = stream_sequence(message) else {
            return true;
        };
        let mut messages = self.messages();
        if messages.contains_key(&sequence) {
            return false;
        }
        messages.insert(sequence, message.clone());
        true
    }

    /// The message of `sequence` is settled: it is no longer in hand.
    pub(crate) fn settled(&self, sequence: Option<u64>) {
        if let Some(sequence) = sequence {
            self.messages().remove(&sequence);
        }
        self.settled_total.fetch_add(1, Ordering::Relaxed);
        *self
            .last_settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Every message in hand, taken out of it (to be given back on a stop).
    pub(crate) fn take_all(&self) -> Vec<Message> {
        self.messages()
            .drain()
            .map(|(_, message)| message)
            .collect()
    }

    /// Messages settled by this process so far.
    pub(crate) fn settled_total(&self) -> u64 {
        self.settled_total.load(Ordering::Relaxed)
    }

    /// The reply subjects of the messages in hand (where their acks go).
    pub(crate) fn replies(&self) -> Vec<async_nats::Subject> {
        self.messages()
            .values()
            .filter_map(|message| message.reply.clone())
            .collect()
    }

    /// How many messages are in hand.
    pub(crate) fn len(&self) -> usize {
        self.messages().len()
    }

    /// How long since this process last settled a message.
    pub(crate) fn since_last_settled(&self) -> Duration {
        self.last_settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Whether the consumer is stalled, and for how long: it has a backlog (`pending` messages
    /// not yet delivered, or messages in hand) and has settled nothing for `after` or more.
    pub(crate) fn stalled_for(&self, pending: u64, after: Duration) -> Option<Duration> {
        let idle = self.since_last_settled();
        (idle >= after && (pending > 0 || self.len() > 0)).then_some(idle)
    }

    /// Tells the server every `ack_wait / 3` that each message in hand is in progress while
    /// the keep-alive thread cannot (its connection is down); never returns (drop or abort
    /// it).
    pub(crate) async fn keep_alive(&self, ack_wait: Duration, thread: &KeepAlive) -> Infallible {
        let every = (ack_wait / PROGRESS_PER_ACK_WAIT).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            if thread.is_up() {
                continue;
            }
            let held: Vec<Message> = self.messages().values().cloned().collect();
            for message in held {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "progress ack failed");
                }
            }
        }
    }
}

/// How many messages one pull asks for: as many as take about one ack wait to handle, learnt
/// from the time recent messages took, between a floor and the configured batch size. With
/// the production ack wait (30 s) and batch size (256) it binds only when a message takes
/// over 100 ms; it keeps a slow process from hoarding what competing processes of the same
/// consumer could take, and bounds how long a delivered message waits in hand.
#[derive(Debug)]
pub(crate) struct PullSize {
    largest: usize,
    budget: Duration,
    /// A moving average of the time one message takes, in nanoseconds (0: nothing seen yet).
    per_message_nanos: AtomicU64,
}

/// The fewest messages a pull asks for (or the batch size, when that is smaller): batches of
/// one would make each message pay a batch's fixed costs, and shrink the pull further still.
const PULL_FLOOR: usize = 32;

impl PullSize {
    /// Pulls of at most `largest` messages, all handled within about one `ack_wait`.
    pub(crate) fn new(largest: usize, ack_wait: Duration) -> Self {
        Self {
            largest: largest.max(1),
            budget: ack_wait,
            per_message_nanos: AtomicU64::new(0),
        }
    }

    /// How many messages the next pull asks for.
    pub(crate) fn next(&self) -> usize {
        let per = self.per_message_nanos.load(Ordering::Relaxed);
        if per == 0 {
            return self.largest;
        }
        let fits = self.budget.as_nanos() / u128::from(per);
        usize::try_from(fits)
            .unwrap_or(usize::MAX)
            .clamp(PULL_FLOOR.min(self.largest), self.largest)
    }

    /// `messages` took `took` to handle (a batch, or one message's share of the concurrent
    /// handling).
    pub(crate) fn observe(&self, messages: usize, took: Duration) {
        if messages == 0 {
            return;
        }
        let sample = u64::try_from(took.as_nanos() / messages as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        let old = self.per_message_nanos.load(Ordering::Relaxed);
        // A new sample weighs a third: a slower machine is followed within a few batches.
        let new = if old == 0 {
            sample
        } else {
            (old / 3) * 2 + sample / 3
        };
        self.per_message_nanos.store(new.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_asks_for_the_whole_batch_until_it_knows_better() {
        let size = PullSize::new(256, Duration::from_secs(30));
        assert_eq!(size.next(), 256);
    }

    #[test]
    fn a_pull_shrinks_to_what_fits_an_ack_wait_and_grows_back() {
        let size = PullSize::new(256, Duration::from_secs(2));
        // 100 ms a message: 2 s (the ack wait) holds 20, below the floor.
        for _ in 0..10 {
            size.observe(100, Duration::from_secs(10));
        }
        assert_eq!(size.next(), PULL_FLOOR);
        // 20 ms a message: 100 fit.
        for _ in 0..20 {
            size.observe(100, Duration::from_secs(2));
        }
        assert!((90..=110).contains(&size.next()), "{}", size.next());
        // 1 ms a message: 2,000 would fit, the batch size bounds it.
        for _ in 0..20 {
            size.observe(1000, Duration::from_secs(1));
        }
        assert_eq!(size.next(), 256);
    }

    #[test]
    fn the_floor_never_exceeds_the_batch_size() {
        let size = PullSize::new(4, Duration::from_secs(1));
        size.observe(1, Duration::from_secs(60));
        assert_eq!(size.next(), 4);
    }
}
