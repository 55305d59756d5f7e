//! The pace of a partner: how many calls to a carrier or a mail service are in flight, and
//! what happens when it is slow, refuses work, or is down.
//!
//! Every call to a partner goes through its [`Partner`]:
//!
//! - **An adaptive limit.** At most `limit` calls are in flight; the limit follows the partner.
//!   It is an AIMD limit (additive increase while the partner keeps up and the calls fill at
//!   least half of it, multiplicative decrease by 0.9 when a call fails, is refused for load
//!   (429, 503), times out, or takes more than twice the partner's usual latency), between 1
//!   and a configured ceiling. The control law is `tower_acc::Aimd` (the tower ecosystem's
//!   port of Netflix's concurrency-limits) rather than control code of our own; its
//!   `Service` layer is not used, because a call here is a step inside a consumer's batch,
//!   not a tower service.
//! - **`Retry-After` is honoured.** A 429 or 503 that names a delay pauses every new call to
//!   the partner until then.
//! - **An outage spends no attempts.** A failed call (connection refused, 5xx, timeout) is
//!   tried again by the call itself, after a growing delay. After [`FAILURES_TO_DOWN`]
//!   failures in a row (of any calls) the partner is *down*: no call goes out but one probe
//!   every [`PROBE_EVERY`], and every call waits, however often it failed, so the message that
//!   needed it is neither naked nor counted against its attempts: it stays in the consumer's
//!   hands (kept in progress). The first probe that succeeds brings the partner back up and
//!   every waiting call goes on. A call that fails [`TRIES_WHILE_UP`] times while the partner
//!   is up (it answers the others) is handed back as a failure: its message is retried later
//!   and, if it keeps failing, parked, like any poison message. The consumer's handler timeout
//!   still bounds a call.
//! - **A refusal is final.** A 4xx other than 408 and 429 is returned to the caller, who parks
//!   the message: asking again would not help.
//!
//! Visible per partner on `/metrics`: `orderflow_partner_in_flight`,
//! `orderflow_partner_limit`, `orderflow_partner_down` (1 while down),
//! `orderflow_partner_call_duration_seconds` and `orderflow_partner_calls_total` by outcome
//! (`ok`, `refused`, `busy`, `failed`).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tower_acc::{Aimd, Algorithm};

/// Failures in a row after which a partner is taken for down.
pub const FAILURES_TO_DOWN: u32 = 5;

/// Tries of one call, while its partner is up, before its failure is handed to the caller
/// (to be retried later, as an attempt of its message): a request the partner keeps failing
/// while it answers others is the request's problem, not the partner's.
pub const TRIES_WHILE_UP: u32 = 2;

/// How often a partner that is down is probed with one call.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The longest pause a `Retry-After` imposes.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// The longest delay before a call that failed is tried again.
const LONGEST_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What one call to a partner came to, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The partner refused this request for good (a 4xx other than 408 and 429).
    Refused(String),
    /// The partner is overloaded (429, 503): fewer calls, and none before `retry_after`.
    Busy {
        /// What it answered.
        reason: String,
        /// Its `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The call failed in a way that may work later (connection refused, 5xx, timeout).
    Failed(String),
}

/// Why a call through the gate did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The partner refused the request for good: park the message.
    #[error("{0}")]
    Refused(String),
    /// The partner failed this request again and again while it answered others: retry the
    /// message later (an attempt).
    #[error("{0}")]
    Failed(String),
}

/// A partner's answer, with how it came: the latency of the call that succeeded and which try
/// it was. Shown in an order's trace with the effect it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<T> {
    /// What the partner answered.
    pub value: T,
    /// How long the successful call took (waiting for a slot not included).
    pub took: Duration,
    /// Which try succeeded (1: the first).
    pub tries: u32,
}

impl<T> Answered<T> {
    /// `answered in 120 ms, try 1`.
    pub fn describe(&self) -> String {
        format!(
            "answered in {} ms, try {}",
            self.took.as_millis(),
            self.tries
        )
    }
}

/// A snapshot of a partner's pace, for tests and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerStatus {
    /// Calls in flight now.
    pub in_flight: usize,
    /// The current limit on calls in flight.
    pub limit: usize,
    /// True while the partner is taken for down.
    pub down: bool,
}

#[derive(Debug)]
struct State {
    limiter: Aimd,
    in_flight: usize,
    failures_in_a_row: u32,
    down: bool,
    probing: bool,
    next_probe: Instant,
    paused_until: Option<Instant>,
    /// A moving average of the latency of calls that succeeded, in seconds (0: none yet).
    usual_latency: f64,
}

/// One partner's gate: see the module doc.
#[derive(Debug)]
pub struct Partner {
    name: &'static str,
    ceiling: usize,
    state: Mutex<State>,
    changed: Notify,
}

/// What admission gave a call.
struct Admitted {
    probe: bool,
}

impl Partner {
    /// The gate of the partner called `name` (a metric label: `carrier`, `notify`), with at
    /// most `ceiling` calls in flight.
    pub fn new(name: &'static str, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        let initial = 32.min(ceiling);
        let limiter = Aimd::builder()
            .initial_limit(initial)
            .min_limit(1)
            .max_limit(ceiling)
            .backoff_ratio(0.9)
            // Latency is judged against the partner's usual latency below, not a constant.
            .timeout(Duration::from_secs(3600))
            .build();
        metrics::gauge!("orderflow_partner_limit", "partner" => name).set(initial as f64);
        metrics::gauge!("orderflow_partner_down", "partner" => name).set(0.0);
        Self {
            name,
            ceiling,
            state: Mutex::new(State {
                limiter,
                in_flight: 0,
                failures_in_a_row: 0,
                down: false,
                probing: false,
                next_probe: Instant::now(),
                paused_until: None,
                usual_latency: 0.0,
            }),
            changed: Notify::new(),
        }
    }

    /// The partner's metric label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The most calls that may ever be in flight.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Calls in flight, the limit, and whether the partner is down, now.
    pub fn status(&self) -> PartnerStatus {
        let state = self.state();
        PartnerStatus {
            in_flight: state.in_flight,
            limit: state.limiter.max_concurrency(),
            down: state.down,
        }
    }

    /// Runs `call` through the gate until it succeeds, is refused for good, or fails
    /// [`TRIES_WHILE_UP`] times while the partner is up: waits for a free slot (and, while
    /// the partner is down, for it to come back), and tries again after a failure or an
    /// answer of overload.
    ///
    /// The answer says how long the successful call took and which try it was; a failure's
    /// reason says how many tries were made.
    ///
    /// # Errors
    /// [`GateError::Refused`] when the partner refused the request for good,
    /// [`GateError::Failed`] when it kept failing it while answering others.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<Answered<T>, GateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallFailure>>,
    {
        let mut failed_tries: u32 = 0;
        loop {
            let admitted = self.admit().await;
            let started = Instant::now();
            let result = call().await;
            let took = started.elapsed();
            metrics::histogram!("orderflow_partner_call_duration_seconds", "partner" => self.name)
                .record(took.as_secs_f64());
            let outcome = match &result {
                Ok(_) => "ok",
                Err(CallFailure::Refused(_)) => "refused",
                Err(CallFailure::Busy { .. }) => "busy",
                Err(CallFailure::Failed(_)) => "failed",
            };
            metrics::counter!("orderflow_partner_calls_total", "partner" => self.name, "outcome" => outcome)
                .increment(1);
            self.settle(&admitted, result.as_ref().err(), took);
            match result {
                Ok(value) => {
                    return Ok(Answered {
                        value,
                        took,
                        tries: failed_tries.saturating_add(1),
                    })
                }
                Err(CallFailure::Refused(reason)) => return Err(GateError::Refused(reason)),
                Err(CallFailure::Busy { reason, .. }) => {
                    // Overload is the partner's state, not the request's: always waited out.
                    failed_tries = failed_tries.saturating_add(1);
                    tracing::debug!(partner = self.name, failed_tries, %reason,
                        "the partner is busy; trying the call again");
                    tokio::time::sleep(retry_delay(failed_tries)).await;
                }
                Err(CallFailure::Failed(reason)) => {
                    failed_tries = failed_tries.saturating_add(1);
                    if self.status().down {
                        // Wait for the partner (`admit`), spending nothing.
                        continue;
                    }
                    if failed_tries >= TRIES_WHILE_UP {
                        return Err(GateError::Failed(format!(
                            "{reason} (tried {failed_tries} times)"
                        )));
                    }
                    tracing::debug!(partner = self.name, failed_tries, %reason,
                        "a partner call failed; trying it again");
                    tokio::time::sleep(retry_delay(failed_tries)).await;
                }
            }
        }
    }

    /// Waits until the call may go: the partner not paused, a slot free under the limit, and,
    /// while the partner is down, this call's turn to probe it.
    async fn admit(&self) -> Admitted {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut state = self.state();
                let now = Instant::now();
                match state.paused_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        state.paused_until = None;
                        if state.down {
                            if state.probing {
                                // The probe's outcome wakes everyone.
                                None
                            } else if now >= state.next_probe {
                                state.probing = true;
                                state.in_flight += 1;
                                self.publish(&state);
                                return Admitted { probe: true };
                            } else {
                                Some(state.next_probe)
                            }
                        } else if state.in_flight < state.limiter.max_concurrency() {
                            state.in_flight += 1;
                            self.publish(&state);
                            return Admitted { probe: false };
                        } else {
                            None
                        }
                    }
                }
            };
            match wait_until {
                Some(until) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Takes what a call came to into account: the limit, the failures in a row, down or up.
    fn settle(&self, admitted: &Admitted, failure: Option<&CallFailure>, took: Duration) {
        let mut state = self.state();
        let in_flight = state.in_flight;
        state.in_flight = state.in_flight.saturating_sub(1);
        if admitted.probe {
            state.probing = false;
        }
        let slow = state.usual_latency > 0.0 && took.as_secs_f64() > 2.0 * state.usual_latency;
        match failure {
            None => {
                let seconds = took.as_secs_f64();
                state.usual_latency = if state.usual_latency == 0.0 {
                    seconds
                } else {
                    0.95 * state.usual_latency + 0.05 * seconds
                };
                state.limiter.update(took, in_flight, slow, false);
                state.failures_in_a_row = 0;
                if state.down {
                    state.down = false;
                    tracing::info!(
                        partner = self.name,
                        "the partner answers again; calls resume"
                    );
                }
            }
            Some(CallFailure::Refused(_)) => {
                // It answered: it is up, and the request, not the load, was the problem.
                state.failures_in_a_row = 0;
                state.limiter.update(took, in_flight, slow, false);
            }
            Some(CallFailure::Busy { retry_after, .. }) => {
                state.limiter.update(took, in_flight, true, false);
                if let Some(delay) = retry_after {
                    let until = Instant::now() + (*delay).min(LONGEST_PAUSE);
                    state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
                }
            }
            Some(CallFailure::Failed(reason)) => {
                state.limiter.update(took, in_flight, true, false);
                state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
                if state.down {
                    state.next_probe = Instant::now() + PROBE_EVERY;
                } else if state.failures_in_a_row >= FAILURES_TO_DOWN {
                    state.down = true;
                    state.next_probe = Instant::now() + PROBE_EVERY;
                    tracing::warn!(partner = self.name, failures = state.failures_in_a_row, %reason,
                        "the partner keeps failing; holding its calls and probing it every second");
                }
            }
        }
        self.publish(&state);
        drop(state);
        self.changed.notify_waiters();
    }

    fn publish(&self, state: &State) {
        metrics::gauge!("orderflow_partner_in_flight", "partner" => self.name)
            .set(state.in_flight as f64);
        metrics::gauge!("orderflow_partner_limit", "partner" => self.name)
            .set(state.limiter.max_concurrency() as f64);
        metrics::gauge!("orderflow_partner_down", "partner" => self.name).set(if state.down {
            1.0
        } else {
            0.0
        });
    }
}

/// Gives every metric of the partner gates its `# HELP` text. Call once after installing a
/// metrics recorder (without one it does nothing).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "orderflow_partner_in_flight",
        "Calls to a partner in flight now, by partner (carrier, notify)"
    );
    describe_gauge!(
        "orderflow_partner_limit",
        "The adaptive limit on calls to a partner in flight, by partner"
    );
    describe_gauge!(
        "orderflow_partner_down",
        "1 while a partner is taken for down (calls held, one probe a second), by partner"
    );
    describe_histogram!(
        "orderflow_partner_call_duration_seconds",
        Unit::Seconds,
        "Time one call to a partner took, by partner"
    );
    describe_counter!(
        "orderflow_partner_calls_total",
        "Calls to a partner, by partner and outcome (ok, refused, busy, failed)"
    );
}

/// The delay before the `tries`-th try again of a failed call: 100 ms doubling, at most 5 s.
fn retry_delay(tries: u32) -> Duration {
    let doubling = Duration::from_millis(100).saturating_mul(1 << tries.min(10));
    doubling.min(LONGEST_RETRY_DELAY)
}

/// A partner's answer as a [`CallFailure`], for an HTTP partner: `None` for a success.
pub fn classify_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    what: &str,
) -> Option<CallFailure> {
    if status.is_success() {
        return None;
    }
    let reason = format!("{what} answered {status}");
    Some(match status.as_u16() {
        429 | 503 => CallFailure::Busy {
            reason,
            retry_after: headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        408 => CallFailure::Failed(reason),
        400..=499 => CallFailure::Refused(reason),
        _ => CallFailure::Failed(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn the_limit_grows_while_the_partner_keeps_up() {
        let partner = Arc::new(Partner::new("test", 1000));
        let before = partner.status().limit;
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let partner = Arc::clone(&partner);
                tokio::spawn(async move {
                    partner
                        .call(|| async {
                            tokio::task::yield_now().await;
                            Ok::<_, CallFailure>(())
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert!(partner.status().limit > before, "{:?}", partner.status());
        assert_eq!(partner.status().in_flight, 0);
    }

    #[tokio::test]
    async fn a_refusal_is_returned_and_a_failure_is_tried_again() {
        let partner = Partner::new("test", 10);
        let refused = partner
            .call(|| async { Err::<(), _>(CallFailure::Refused("no".into())) })
            .await;
        assert_eq!(refused, Err(GateError::Refused("no".to_string())));
        let tries = AtomicUsize::new(0);
        let done = partner
            .call(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 1 {
                    Err(CallFailure::Failed("hiccup".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        let done = done.unwrap();
        assert_eq!((done.value, done.tries), (7, 2));
        assert!(done.describe().ends_with("try 2"), "{}", done.describe());
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        // A request the partner keeps failing while it is up is handed back.
        let tries = AtomicUsize::new(0);
        let failed = partner
            .call(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(CallFailure::Failed("this one".into()))
            })
            .await;
        assert_eq!(
            failed,
            Err(GateError::Failed(format!(
                "this one (tried {TRIES_WHILE_UP} times)"
            )))
        );
        assert_eq!(tries.load(Ordering::SeqCst), TRIES_WHILE_UP as usize);
        assert!(!partner.status().down);
    }

    #[tokio::test]
    async fn failures_in_a_row_take_the_partner_down_until_a_probe_succeeds() {
        let partner = Partner::new("test", 10);
        let admitted = Admitted { probe: false };
        for _ in 0..FAILURES_TO_DOWN {
            partner.state().in_flight += 1;
            partner.settle(
                &admitted,
                Some(&CallFailure::Failed("x".into())),
                Duration::ZERO,
            );
        }
        assert!(partner.status().down);
        let probe = partner.admit().await;
        assert!(probe.probe, "while down, the one call that goes is a probe");
        partner.settle(&probe, None, Duration::from_millis(1));
        assert!(!partner.status().down);
    }

    #[test]
    fn statuses_are_classified() {
        let headers = reqwest::header::HeaderMap::new();
        let mut with_retry = reqwest::header::HeaderMap::new();
        with_retry.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        let class = |code: u16, headers: &reqwest::header::HeaderMap| {
            classify_status(reqwest::StatusCode::from_u16(code).unwrap(), headers, "p")
        };
        assert_eq!(class(200, &headers), None);
        assert!(matches!(
            class(400, &headers),
            Some(CallFailure::Refused(_))
        ));
        assert!(matches!(class(408, &headers), Some(CallFailure::Failed(_))));
        assert!(matches!(class(500, &headers), Some(CallFailure::Failed(_))));
        assert_eq!(
            class(429, &with_retry),
            Some(CallFailure::Busy {
                reason: "p answered 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3))
            })
        );
        assert!(matches!(
            class(503, &headers),
            Some(CallFailure::Busy {
                retry_after: None,
                ..
            })
        ));
    }
}
