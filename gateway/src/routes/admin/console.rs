//! `GET /v1/admin/console/stream`: the live feed of the operator console (`/console`), as
//! server-sent events.
//!
//! Once a second it reads the events the relay numbered since the last position it sent (one
//! range read of the `global_position` index, without payloads) and sends one `tick`: how many
//! events of each type there were and the newest of them. The first tick also carries the
//! per-second counts of the last minutes (`history`), so a page opened now starts with a
//! filled chart. A position is numbered by the relay right before it publishes the event, so
//! the feed follows what is being published.
//!
//! The stream ends when the client goes away or the gateway stops: a graceful stop never
//! waits for a console left open.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, Stream};
use serde::Serialize;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method};
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Reply};

use super::at;
use crate::problem::ApiError;
use crate::reply::respond1;
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, with_state};
use crate::GatewayState;

/// How often a tick is sent.
pub const TICK: Duration = Duration::from_secs(1);
/// Most events one tick reads; a backlog bigger than this is caught up over several ticks.
pub const MAX_EVENTS_PER_TICK: i64 = 5_000;
/// Newest events a tick carries.
pub const NEWEST_EVENTS: usize = 20;
/// Seconds of history the first tick carries.
pub const HISTORY_SECONDS: i64 = 300;
/// The history is read from at most this many of the newest positions, so that opening the
/// console never scans a long log.
const HISTORY_POSITIONS: i64 = 100_000;

/// One event in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConsoleEvent {
    /// Its position in the event log.
    pub position: i64,
    /// The order it belongs to.
    pub order_id: String,
    /// Its sequence within the order.
    pub sequence: i64,
    /// `OrderPlaced`, `OrderConfirmed`, `ShipmentStarted`, ...
    pub event_type: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
}

/// The events of one second of the history, by type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConsoleSecond {
    /// The second, as Unix seconds (UTC).
    pub at: i64,
    /// Events stored in that second, by event type.
    pub counts: BTreeMap<String, u64>,
}

/// The data of one `tick` message of the console stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConsoleTick {
    /// When the tick was read.
    pub at: DateTime<Utc>,
    /// The last position read: the next tick starts after it.
    pub position: i64,
    /// Events numbered since the previous tick, by event type.
    pub counts: BTreeMap<String, u64>,
    /// The newest of them (at most 20), newest first.
    pub events: Vec<ConsoleEvent>,
    /// The first tick only: events per second of the last five minutes, oldest first (seconds
    /// without events left out); empty in later ticks.
    pub history: Vec<ConsoleSecond>,
    /// True when more events are waiting than one tick reads (the next ticks catch up).
    pub behind: bool,
}

/// The console stream route.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
    at(paths::ADMIN_CONSOLE_STREAM)
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond1(console_stream))
                .boxed()
        })
        .build()
}

/// The console's live feed: server-sent events, one `tick` a second (its data a
/// `ConsoleTick` as JSON) until the client hangs up. Read it with `fetch` and the bearer
/// header (an `EventSource` cannot send one); the stream never ends by itself.
#[utoipa::path(
    get,
    path = paths::ADMIN_CONSOLE_STREAM,
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A stream of `tick` events, one a second; each one's data is a ConsoleTick", content_type = "text/event-stream", body = ConsoleTick),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn console_stream(
    state: GatewayState,
    request_id: RequestId,
) -> Result<Response, ApiError> {
    let first = first_tick(&state.pool).await?;
    let events = ticks(state.pool.clone(), first, state.shutdown.clone());
    let mut response = warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The first tick: the newest events and the history, starting at the head of the log.
async fn first_tick(pool: &PgPool) -> Result<ConsoleTick, sqlx::Error> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    let newest = sqlx::query(
        "SELECT global_position, aggregate_id, sequence, event_type, recorded_at FROM events \
         WHERE global_position IS NOT NULL ORDER BY global_position DESC LIMIT $1",
    )
    .bind(i64::try_from(NEWEST_EVENTS).unwrap_or(20))
    .fetch_all(pool)
    .await?
    .iter()
    .map(event_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(
        "SELECT extract(epoch FROM date_trunc('second', recorded_at))::bigint AS second, \
                event_type, count(*) AS n \
         FROM events \
         WHERE global_position > $1 AND recorded_at > now() - make_interval(secs => $2) \
         GROUP BY 1, 2 ORDER BY 1",
    )
    .bind(head - HISTORY_POSITIONS)
    .bind(HISTORY_SECONDS as f64)
    .fetch_all(pool)
    .await?;
    let mut history: Vec<ConsoleSecond> = Vec::new();
    for row in rows {
        let second: i64 = row.try_get("second")?;
        let event_type: String = row.try_get("event_type")?;
        let n: i64 = row.try_get("n")?;
        if history.last().map(|s| s.at) != Some(second) {
            history.push(ConsoleSecond {
                at: second,
                counts: BTreeMap::new(),
            });
        }
        if let Some(last) = history.last_mut() {
            last.counts
                .insert(event_type, u64::try_from(n).unwrap_or_default());
        }
    }
    Ok(ConsoleTick {
        at: Utc::now(),
        position: head,
        counts: BTreeMap::new(),
        events: newest,
        history,
        behind: false,
    })
}

/// The tick after `position`: what was numbered since.
async fn next_tick(pool: &PgPool, position: i64) -> Result<ConsoleTick, sqlx::Error> {
    let events = sqlx::query(
        "SELECT global_position, aggregate_id, sequence, event_type, recorded_at FROM events \
         WHERE global_position > $1 ORDER BY global_position LIMIT $2",
    )
    .bind(position)
    .bind(MAX_EVENTS_PER_TICK)
    .fetch_all(pool)
    .await?
    .iter()
    .map(event_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(summarise(position, events))
}

/// Counts `events` (in log order, all after `position`) by type and keeps the newest.
fn summarise(position: i64, events: Vec<ConsoleEvent>) -> ConsoleTick {
    let behind = i64::try_from(events.len()).unwrap_or(i64::MAX) >= MAX_EVENTS_PER_TICK;
    let mut counts = BTreeMap::new();
    for event in &events {
        *counts.entry(event.event_type.clone()).or_insert(0) += 1;
    }
    let position = events.last().map_or(position, |e| e.position);
    let newest = events.into_iter().rev().take(NEWEST_EVENTS).collect();
    ConsoleTick {
        at: Utc::now(),
        position,
        counts,
        events: newest,
        history: Vec::new(),
        behind,
    }
}

fn event_from_row(row: &sqlx::postgres::PgRow) -> Result<ConsoleEvent, sqlx::Error> {
    Ok(ConsoleEvent {
        position: row.try_get("global_position")?,
        order_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        stored_at: row.try_get("recorded_at")?,
    })
}

/// The stream of ticks: `first` at once, then one a second, read by a task of its own that
/// ends when the client goes away (its next send fails) or at `shutdown` (the stream ends
/// with it). A tick the database could not answer is sent as an `unavailable` event and the
/// next one goes on from where it was.
fn ticks(
    pool: PgPool,
    first: ConsoleTick,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + Sync + 'static {
    let (mut sender, receiver) = futures::channel::mpsc::channel(2);
    tokio::spawn(async move {
        let mut position = first.position;
        let mut event = tick_event(&first);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                sent = sender.send(Ok(event)) => if sent.is_err() { return },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            event = match next_tick(&pool, position).await {
                Ok(tick) => {
                    position = tick.position;
                    tick_event(&tick)
                }
                Err(error) => {
                    tracing::debug!(%error, "console tick failed");
                    Event::default()
                        .event("unavailable")
                        .data("the event store did not answer")
                }
            };
        }
    });
    receiver
}

fn tick_event(tick: &ConsoleTick) -> Event {
    Event::default()
        .event("tick")
        .id(tick.position.to_string())
        .json_data(tick)
        .unwrap_or_else(|_| Event::default().event("tick").data("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, event_type: &str) -> ConsoleEvent {
        ConsoleEvent {
            position,
            order_id: format!("order-{position}"),
            sequence: 1,
            event_type: event_type.into(),
            stored_at: Utc::now(),
        }
    }

    #[test]
    fn a_tick_counts_by_type_and_keeps_the_newest_first() {
        let events: Vec<_> = (11..=40)
            .map(|p| {
                event(
                    p,
                    if p % 3 == 0 {
                        "OrderConfirmed"
                    } else {
                        "OrderPlaced"
                    },
                )
            })
            .collect();
        let tick = summarise(10, events);
        assert_eq!(tick.position, 40);
        assert_eq!(tick.counts["OrderConfirmed"], 10);
        assert_eq!(tick.counts["OrderPlaced"], 20);
        assert_eq!(tick.events.len(), NEWEST_EVENTS);
        assert_eq!(tick.events[0].position, 40);
        assert!(!tick.behind);
    }

    #[test]
    fn an_empty_tick_stays_where_it_was() {
        let tick = summarise(7, Vec::new());
        assert_eq!(tick.position, 7);
        assert!(tick.counts.is_empty() && tick.events.is_empty());
    }
}
