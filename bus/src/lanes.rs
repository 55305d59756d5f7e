//! Order lanes: messages of one order are handled one at a time, in the order they were
//! delivered, while messages of different orders run concurrently.
//!
//! [`OrderLanes::enter`] is called when a message is taken from the pull (in delivery
//! order); the returned [`Lane`] waits for the order's previous message to finish
//! ([`Lane::wait_for_earlier`]) and, when dropped, lets the next one start. Handlers stay
//! order-independent (a redelivery can still overtake a later event), but a consumer that
//! runs many messages at once does not reorder an order's events itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;
use uuid::Uuid;

type Done = Shared<oneshot::Receiver<()>>;

/// The last message in each order's lane.
#[derive(Debug, Default)]
pub(crate) struct OrderLanes {
    tails: Arc<Mutex<HashMap<Uuid, (u64, Done)>>>,
    tickets: AtomicU64,
}

impl OrderLanes {
    /// Puts a message of `order` at the end of the order's lane.
    pub(crate) fn enter(&self, order: Uuid) -> Lane {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let (done, finished) = oneshot::channel();
        let earlier = self
            .tails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(order, (ticket, finished.shared()))
            .map(|(_, earlier)| earlier);
        Lane {
            tails: Arc::clone(&self.tails),
            order,
            ticket,
            earlier,
            _done: done,
        }
    }

    /// How many orders have a message in a lane (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tails.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// One message's place in its order's lane; dropping it lets the next message start.
#[derive(Debug)]
pub(crate) struct Lane {
    tails: Arc<Mutex<HashMap<Uuid, (u64, Done)>>>,
    order: Uuid,
    ticket: u64,
    earlier: Option<Done>,
    /// Dropped with the lane: completes what the next message waits for.
    _done: oneshot::Sender<()>,
}

impl Lane {
    /// Waits until the order's previous message is done (at once when there is none).
    pub(crate) async fn wait_for_earlier(&self) {
        if let Some(earlier) = self.earlier.clone() {
            // A dropped sender is the signal; the value is never sent.
            let _ = earlier.await;
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let mut tails = self
            .tails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tails
            .get(&self.order)
            .is_some_and(|(t, _)| *t == self.ticket)
        {
            tails.remove(&self.order);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_later_message_of_the_same_order_waits_for_the_earlier_one() {
        let lanes = OrderLanes::default();
        let order = Uuid::new_v4();
        let first = lanes.enter(order);
        let second = lanes.enter(order);
        first.wait_for_earlier().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.wait_for_earlier());
        assert!(
            waiting.await.is_err(),
            "the second started before the first ended"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.wait_for_earlier())
            .await
            .expect("the second did not start after the first ended");
        drop(second);
        assert_eq!(lanes.len(), 0, "a finished lane was not removed");
    }

    #[tokio::test]
    async fn messages_of_different_orders_do_not_wait_for_each_other() {
        let lanes = OrderLanes::default();
        let _first = lanes.enter(Uuid::new_v4());
        let other = lanes.enter(Uuid::new_v4());
        tokio::time::timeout(Duration::from_millis(50), other.wait_for_earlier())
            .await
            .expect("a message of another order waited");
        assert_eq!(lanes.len(), 2);
    }
}
