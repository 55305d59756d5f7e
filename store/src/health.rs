//! Whether PostgreSQL answers now: [`DatabaseHealth`], a probe on a connection of its own.
//!
//! A pool cannot tell a database that is away from one that is busy: both make `acquire` wait
//! (and with the server away, sqlx keeps reconnecting until the acquire timeout). So the
//! probe does not use the pool: it runs `SELECT 1` on one connection of its own (opening a new
//! one when that one broke), bounded by [`PROBE_TIMEOUT`], which catches a server that refuses
//! connections as well as one that hangs. A monitor task probes every [`PROBE_WHILE_DOWN`]
//! while the database is away, so the way back is seen at once, and every [`PROBE_WHILE_UP`]
//! otherwise; work that waits longer than [`SUSPECT_AFTER`] asks for a probe at once
//! ([`DatabaseHealth::guard`]). The gateway answers 503 from it, the consumers take no
//! messages while it says down, and the store's group commit gives up appends it has not
//! written yet when the database goes away.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::{watch, Notify};

/// Longest a probe may take (connecting included) before the database counts as away.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long guarded work may wait before it asks for a probe.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(250);
/// How often the monitor probes while the database is away.
pub const PROBE_WHILE_DOWN: Duration = Duration::from_millis(250);
/// How often the monitor probes while the database answers.
pub const PROBE_WHILE_UP: Duration = Duration::from_secs(5);

/// What the last probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseStatus {
    /// PostgreSQL answered (or nothing has been probed yet).
    Up,
    /// PostgreSQL did not answer; why, as a sentence.
    Down(String),
}

/// The database was away, so the guarded work was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PostgreSQL does not answer: {0}")]
pub struct Unavailable(pub String);

/// Whether PostgreSQL answers. Cheap to clone; clones share one probe connection and one
/// monitor task, which starts with the first call that needs it and ends when the last clone
/// is dropped.
#[derive(Clone)]
pub struct DatabaseHealth {
    inner: Arc<Inner>,
}

struct Inner {
    connect: PgConnectOptions,
    status: watch::Sender<DatabaseStatus>,
    poke: Notify,
    monitor: OnceLock<()>,
    /// The probe's own connection; the lock makes probes one at a time.
    connection: tokio::sync::Mutex<Option<PgConnection>>,
    /// When the last probe ended, so that a caller that waited for it can use its result.
    last_probe: Mutex<Option<Instant>>,
    /// How many times a probe found the database away after it had answered.
    outages: AtomicU64,
}

impl std::fmt::Debug for DatabaseHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseHealth")
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

impl DatabaseHealth {
    /// The health of the database `pool` connects to (the same server, database and
    /// credentials, on a connection outside the pool).
    pub fn new(pool: &PgPool) -> Self {
        Self::with_options((*pool.connect_options()).clone())
    }

    /// The health of the database `connect` names. Handles made for the same server,
    /// database and user in one process share one probe connection and one monitor (a
    /// process has several stores and consumers on one database).
    pub fn with_options(connect: PgConnectOptions) -> Self {
        static SHARED: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();
        let key = format!(
            "{}@{}:{}/{}",
            connect.get_username(),
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let mut shared = SHARED
            .get_or_init(Mutex::default)
            .lock()
            .expect("the shared probes");
        shared.retain(|_, inner| inner.strong_count() > 0);
        if let Some(inner) = shared.get(&key).and_then(Weak::upgrade) {
            return Self { inner };
        }
        let health = Self::unshared(connect);
        shared.insert(key, Arc::downgrade(&health.inner));
        health
    }

    fn unshared(connect: PgConnectOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                connect: connect.log_statements(tracing::log::LevelFilter::Trace),
                status: watch::Sender::new(DatabaseStatus::Up),
                poke: Notify::new(),
                monitor: OnceLock::new(),
                connection: tokio::sync::Mutex::new(None),
                last_probe: Mutex::new(None),
                outages: AtomicU64::new(0),
            }),
        }
    }

    /// What the last probe found.
    pub fn status(&self) -> DatabaseStatus {
        self.start_monitor();
        self.inner.status.borrow().clone()
    }

    /// True when the last probe found the database away.
    pub fn is_down(&self) -> bool {
        matches!(self.status(), DatabaseStatus::Down(_))
    }

    /// Asks the monitor to probe now (work is slow or failed, and the database may be away).
    pub fn suspect(&self) {
        self.start_monitor();
        self.inner.poke.notify_one();
    }

    /// Probes now (or takes the result of a probe in flight, which ends after this call) and
    /// says whether the database answered: within about [`PROBE_TIMEOUT`].
    pub async fn check(&self) -> bool {
        self.start_monitor();
        let asked = Instant::now();
        self.inner.probe(Some(asked)).await == DatabaseStatus::Up
    }

    /// Resolves once a probe finds the database away.
    pub async fn went_down(&self) {
        self.start_monitor();
        let mut status = self.inner.status.subscribe();
        let _ = status
            .wait_for(|s| matches!(s, DatabaseStatus::Down(_)))
            .await;
    }

    /// Resolves once the database answers again (at once when no probe found it away).
    pub async fn back_up(&self) {
        self.start_monitor();
        let mut status = self.inner.status.subscribe();
        let _ = status.wait_for(|s| *s == DatabaseStatus::Up).await;
    }

    /// Runs `work` unless the database is known to be away, and gives it up when a probe finds
    /// the database away while it runs (asking for one when it takes longer than
    /// [`SUSPECT_AFTER`]).
    ///
    /// Giving up drops `work`: guard only work that may be cut off, such as waiting for a
    /// connection, never a transaction half done.
    ///
    /// # Errors
    /// [`Unavailable`] when the database is, or goes, away first.
    pub async fn guard<F: Future>(&self, work: F) -> Result<F::Output, Unavailable> {
        if let DatabaseStatus::Down(why) = self.status() {
            return Err(Unavailable(why));
        }
        let mut status = self.inner.status.subscribe();
        let down = async {
            let _ = status
                .wait_for(|s| matches!(s, DatabaseStatus::Down(_)))
                .await;
        };
        let suspect = async {
            tokio::time::sleep(SUSPECT_AFTER).await;
            self.suspect();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            biased;
            output = work => Ok(output),
            () = down => Err(Unavailable(match self.status() {
                DatabaseStatus::Down(why) => why,
                DatabaseStatus::Up => "it went away".into(),
            })),
            () = suspect => unreachable!("the suspect branch never ends"),
        }
    }

    /// Runs `work` to its end (never cutting it off), asking for a probe when it takes longer
    /// than [`SUSPECT_AFTER`], and says whether the database was found away meanwhile (or is
    /// known to be away now): then a failure of `work` is the outage's, not its own.
    pub async fn watch<F: Future>(&self, work: F) -> (F::Output, bool) {
        let before = self.inner.outages.load(Ordering::SeqCst);
        let suspect = async {
            tokio::time::sleep(SUSPECT_AFTER).await;
            self.suspect();
            std::future::pending::<()>().await;
        };
        let output = tokio::select! {
            biased;
            output = work => output,
            () = suspect => unreachable!("the suspect branch never ends"),
        };
        let away = self.is_down() || self.inner.outages.load(Ordering::SeqCst) != before;
        (output, away)
    }

    fn start_monitor(&self) {
        self.inner.monitor.get_or_init(|| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(monitor(Arc::downgrade(&self.inner)));
            }
        });
    }
}

/// Probes while any handle lives: often while the database is away, now and then otherwise,
/// and at once when asked.
async fn monitor(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let pause = if matches!(*strong.status.borrow(), DatabaseStatus::Down(_)) {
            PROBE_WHILE_DOWN
        } else {
            PROBE_WHILE_UP
        };
        // A poke made while nobody waited left a permit, so none is lost.
        tokio::select! {
            () = strong.poke.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
        strong.probe(None).await;
    }
}

impl Inner {
    /// Probes once, unless `asked` is given and a probe ended at or after it (then its result
    /// is taken); records and returns the result.
    async fn probe(&self, asked: Option<Instant>) -> DatabaseStatus {
        let mut connection = self.connection.lock().await;
        if let Some(asked) = asked {
            // A probe that ended after the question (one this call waited for) answers it.
            let last = *self.last_probe.lock().expect("the probe clock");
            if last.is_some_and(|last| last >= asked) {
                return self.status.borrow().clone();
            }
        }
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            if let Some(open) = connection.as_mut() {
                if open.ping().await.is_ok() {
                    return Ok(());
                }
            }
            *connection = None;
            let mut fresh = self.connect.connect().await?;
            fresh.ping().await?;
            *connection = Some(fresh);
            Ok::<(), sqlx::Error>(())
        })
        .await;
        let status = match answered {
            Ok(Ok(())) => DatabaseStatus::Up,
            Ok(Err(error)) => DatabaseStatus::Down(error.to_string()),
            Err(_) => DatabaseStatus::Down(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        if status != DatabaseStatus::Up {
            // Its state is unknown (a statement may still be on its way): never reuse it.
            *connection = None;
        }
        *self.last_probe.lock().expect("the probe clock") = Some(Instant::now());
        self.status.send_if_modified(|current| {
            if *current == status {
                return false;
            }
            match &status {
                DatabaseStatus::Down(why) => {
                    if *current == DatabaseStatus::Up {
                        self.outages.fetch_add(1, Ordering::SeqCst);
                    }
                    tracing::warn!(reason = %why, "PostgreSQL does not answer");
                }
                DatabaseStatus::Up => tracing::info!("PostgreSQL answers again"),
            }
            *current = status.clone();
            true
        });
        status
    }
}

/// True for errors that say the server is not there (connection refused or lost, no
/// connection in time, the server shutting down or starting up), rather than that a
/// statement was wrong or the pool was closed by its owner.
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01..57P03: admin_shutdown, crash_shutdown,
            // cannot_connect_now.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
