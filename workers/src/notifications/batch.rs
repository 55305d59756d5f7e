//! The notifications worker on a batch: what it does for one event, for a batch in three
//! statements whatever its size. One read of the log for every order whose state a message
//! needs (a placement needs none: it is the whole order), one statement for every inbox
//! claim and `pending` record, the sends (all at once through the mail service's gate), one statement for every outcome.
//! The guarantees are those of a single event: a record is written only by the delivery that
//! made the claim; a redelivery sends again only what is not `sent`; the notification id is
//! the receiver's idempotency key.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use futures::FutureExt;
use orderflow_bus::handler::{Effects, HandlerError};
use orderflow_store::{log, orders, EventEnvelope};
use uuid::Uuid;

use super::{render, Notification, NotificationsWorker, SendError, NAME, NOTIFIABLE};
use crate::partner::Answered;

/// One send: the event's index in the batch, its id, what the channel said.
type Sent = (usize, Uuid, Result<Answered<()>, SendError>);

/// One notification to send: its index in the batch, its event id, the message.
type ToSend<'a> = (usize, Uuid, &'a Notification);

impl NotificationsWorker {
    /// Handles live deliveries of a batch (no dry run, no forced repeat): one result per
    /// event, in order.
    pub(super) async fn notify_all(
        &self,
        events: &[&EventEnvelope],
    ) -> Vec<Result<Effects, HandlerError>> {
        let mut results: Vec<Result<Effects, HandlerError>> =
            events.iter().map(|_| Ok(Effects::none())).collect();
        let rendered = match self.render_all(events).await {
            Ok(rendered) => rendered,
            Err(error) => {
                return events
                    .iter()
                    .map(|_| Err(HandlerError::retry(&error)))
                    .collect()
            }
        };
        // Each event once: a repeat inside the batch has nothing left to do.
        let mut seen = HashSet::new();
        let mut batch: Vec<(usize, &EventEnvelope, Notification)> = Vec::new();
        for (index, (event, notification)) in events.iter().zip(rendered).enumerate() {
            match notification {
                Err(error) => results[index] = Err(error),
                Ok(Some(n)) if seen.insert(event.event_id) => batch.push((index, event, n)),
                Ok(_) => {}
            }
        }
        if batch.is_empty() {
            return results;
        }
        let to_send = match self.claim_all(&batch).await {
            Ok(to_send) => to_send,
            Err(error) => {
                for (index, _, _) in &batch {
                    results[*index] = Err(HandlerError::retry(format!("database: {error}")));
                }
                return results;
            }
        };
        // Each order's notifications one after another, in the batch's (delivery) order, so a
        // customer reads "confirmed" after "received"; the orders all at once: the mail
        // service's gate keeps as many in flight as its pace allows.
        let mut by_order: Vec<(Uuid, Vec<ToSend<'_>>)> = Vec::new();
        for (index, event, n) in &batch {
            if to_send.contains(&event.event_id) {
                let entry = (*index, event.event_id, n);
                match by_order
                    .iter_mut()
                    .find(|(order, _)| *order == event.order_id)
                {
                    Some((_, sends)) => sends.push(entry),
                    None => by_order.push((event.order_id, vec![entry])),
                }
            }
        }
        let sending: Vec<BoxFuture<'_, Vec<Sent>>> = by_order
            .into_iter()
            .map(|(_, sends)| {
                async move {
                    let mut sent = Vec::with_capacity(sends.len());
                    for (index, event_id, n) in sends {
                        sent.push((index, event_id, self.send(n).await));
                    }
                    sent
                }
                .boxed()
            })
            .collect();
        let sent: Vec<Sent> = futures::future::join_all(sending)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Err(error) = self.record_outcomes(&sent).await {
            for (index, _, _) in &sent {
                results[*index] = Err(HandlerError::retry(format!("database: {error}")));
            }
            return results;
        }
        let by_index: HashMap<usize, &Notification> =
            batch.iter().map(|(index, _, n)| (*index, n)).collect();
        for (index, _, outcome) in sent {
            results[index] = self.sent(by_index[&index], outcome);
        }
        results
    }

    /// The message of each event (`None`: it does not notify), from the order as it was
    /// after the event; one read of the log for all orders that need one.
    async fn render_all(
        &self,
        events: &[&EventEnvelope],
    ) -> Result<Vec<Result<Option<Notification>, HandlerError>>, String> {
        let notifiable = |e: &EventEnvelope| NOTIFIABLE.contains(&e.event_type.as_str());
        let mut need: Vec<Uuid> = events
            .iter()
            .filter(|e| notifiable(e) && e.sequence > 1)
            .map(|e| e.order_id)
            .collect();
        need.sort_unstable();
        need.dedup();
        let mut logs = if need.is_empty() {
            HashMap::new()
        } else {
            log::events_of_orders(&self.pool, &need)
                .await
                .map_err(|e| format!("reading the orders: {e}"))?
        };
        // The recipient is sealed: open the placements (from the stream or the log) through
        // the vault; a forgotten customer's reads as erased, and is not notified.
        let mut events: Vec<EventEnvelope> = events.iter().map(|e| (*e).clone()).collect();
        self.store
            .vault()
            .open(events.iter_mut().chain(logs.values_mut().flatten()))
            .await
            .map_err(|e| format!("opening personal data: {e}"))?;
        Ok(events
            .iter()
            .map(|event| {
                if !notifiable(event) {
                    return Ok(None);
                }
                let folded = if event.sequence == 1 {
                    orders::fold(std::slice::from_ref(event), None)
                } else {
                    let log = logs.get(&event.order_id).map_or(&[][..], Vec::as_slice);
                    orders::fold(log, Some(event.sequence))
                };
                let order = folded.map_err(HandlerError::retry)?.ok_or_else(|| {
                    HandlerError::retry(format!("order {} not found", event.order_id))
                })?;
                Ok(render(event, &order.state))
            })
            .collect())
    }

    /// Claims every event and records its notification as `pending` (one statement); the
    /// events whose notification is to be sent: those claimed now, and those claimed before
    /// whose record is still `pending` or `failed`.
    async fn claim_all(
        &self,
        batch: &[(usize, &EventEnvelope, Notification)],
    ) -> Result<HashSet<Uuid>, sqlx::Error> {
        let column = |f: fn(&Notification) -> String| -> Vec<String> {
            batch.iter().map(|(_, _, n)| f(n)).collect()
        };
        let event_ids: Vec<Uuid> = batch.iter().map(|(_, e, _)| e.event_id).collect();
        let notification_ids: Vec<Uuid> = batch.iter().map(|(_, _, n)| n.notification_id).collect();
        let order_ids: Vec<Uuid> = batch.iter().map(|(_, _, n)| n.order_id).collect();
        let claimed: HashSet<Uuid> = sqlx::query_scalar(
            "WITH claim AS (
                 INSERT INTO inbox (consumer, event_id)
                 SELECT $1, e FROM UNNEST($2::uuid[]) AS e ORDER BY e
                 ON CONFLICT DO NOTHING RETURNING event_id),
             record AS (
                 INSERT INTO notifications (notification_id, event_id, order_id, event_type,
                     channel, recipient, subject, body, status)
                 SELECT n.notification_id, n.event_id, n.order_id, n.event_type, $3,
                        n.recipient, n.subject, n.body, 'pending'
                   FROM UNNEST($2::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
                               $8::text[], $9::text[])
                        AS n(event_id, notification_id, order_id, event_type, recipient,
                             subject, body)
                   JOIN claim c ON c.event_id = n.event_id
                 ON CONFLICT (event_id) DO NOTHING)
             SELECT event_id FROM claim",
        )
        .bind(NAME)
        .bind(&event_ids)
        .bind(self.channel.name())
        .bind(&notification_ids)
        .bind(&order_ids)
        .bind(column(|n| n.event_type.clone()))
        .bind(column(|n| n.to.clone()))
        .bind(column(|n| n.subject.clone()))
        .bind(column(|n| n.text.clone()))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let before: Vec<Uuid> = event_ids
            .iter()
            .filter(|id| !claimed.contains(id))
            .copied()
            .collect();
        let mut to_send = claimed;
        if !before.is_empty() {
            let unsent: Vec<Uuid> = sqlx::query_scalar(
                "SELECT event_id FROM notifications
                  WHERE event_id = ANY($1) AND status IN ('pending', 'failed')",
            )
            // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
            .persistent(false)
            .bind(&before)
            .fetch_all(&self.pool)
            .await?;
            to_send.extend(unsent);
        }
        Ok(to_send)
    }

    /// Records every send's outcome (`sent`, or `failed` with the error) in one statement.
    async fn record_outcomes(&self, sent: &[Sent]) -> Result<(), sqlx::Error> {
        if sent.is_empty() {
            return Ok(());
        }
        let event_ids: Vec<Uuid> = sent.iter().map(|(_, id, _)| *id).collect();
        let statuses: Vec<&str> = sent
            .iter()
            .map(|(_, _, r)| if r.is_ok() { "sent" } else { "failed" })
            .collect();
        let errors: Vec<Option<String>> = sent
            .iter()
            .map(|(_, _, r)| r.as_ref().err().map(ToString::to_string))
            .collect();
        sqlx::query(
            "UPDATE notifications n
                SET status = u.status, last_error = u.error, attempts = n.attempts + 1,
                    sent_at = CASE WHEN u.status = 'sent' THEN now() END
               FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(event_id, status, error)
              WHERE n.event_id = u.event_id",
        )
        // A plan per call, for the array it gets (see `orderflow_store::log::events_of_orders`).
        .persistent(false)
        .bind(&event_ids)
        .bind(&statuses)
        .bind(&errors)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
