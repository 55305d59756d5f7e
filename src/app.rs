//! Starting orderflow's roles and stopping them gracefully.
//!
//! Each role is a task that ends when the shutdown token is cancelled (SIGTERM or Ctrl-C):
//! the gateway drains in-flight requests, consumers pull nothing more and handle what their
//! open pull still delivers (giving back only what is unstarted after their grace), the
//! relay stops after its current batch. Nothing committed is lost: the relay resumes from its
//! checkpoint, and a consumer's unacked messages come back to whoever runs it next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use orderflow_bus::relay::{publish_range, run_relay, RelayOptions};
use orderflow_bus::runtime::{run_consumer, ConsumerOptions, StartAt};
use orderflow_bus::Bus;
use orderflow_bus::Handler;
use orderflow_gateway::GatewayState;
use orderflow_projections::{ensure_current, Projection, ProjectionError, ProjectionHandler};
use orderflow_store::DatabaseHealth;
use orderflow_workers::registry::{build_worker, WorkerDeps, WORKER_NAMES};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonArgs, ConsumerArgs, HttpArgs};
use crate::telemetry::LogFormat;

/// How long roles get to finish their work after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long `serve` keeps asking for a free connection to bring the projections up to date
/// at start, while the roles already started use the pool.
const PROJECTIONS_PATIENCE: Duration = Duration::from_secs(60);

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    // Registered here, before anything else of the role runs: a SIGTERM that comes while the
    // role still connects is kept, not left to the default action (which kills the process).
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!("shutdown signal received, finishing in-flight work");
        cancel.cancel();
    });
    token
}

/// Connects to the event store, creating the database and applying migrations if needed.
/// While PostgreSQL refuses connections it retries with a growing, logged pause for up to
/// `patience` (roles wait, so that they may start before their services; operator commands
/// pass zero and fail at once). A malformed URL or wrong credentials fail at once.
///
/// # Errors
/// When PostgreSQL cannot be reached in time or the schema cannot be applied.
pub async fn connect_store(common: &CommonArgs, patience: Duration) -> Result<PgPool> {
    let options = common.database();
    match with_backoff(
        "PostgreSQL",
        patience,
        || orderflow_store::connect(&options),
        |e| e.is_transient_connect(),
    )
    .await
    {
        Ok(pool) => Ok(pool),
        Err(error) if error.is_transient_connect() => Err(anyhow::Error::new(error)
            .context("cannot open the event store (is PostgreSQL up? `scripts/services up`)")),
        Err(error) => Err(anyhow::Error::new(error).context("cannot open the event store")),
    }
}

/// Opens the event store for a command that only reads: never creates the database, never
/// applies a migration, never waits.
///
/// # Errors
/// When the database does not exist or holds no event store (one line naming it), or
/// PostgreSQL cannot be reached.
pub async fn open_store(common: &CommonArgs) -> Result<PgPool> {
    match orderflow_store::open(&common.database()).await {
        Ok(pool) => Ok(pool),
        Err(error) if error.is_transient_connect() => Err(anyhow::Error::new(error)
            .context("cannot open the event store (is PostgreSQL up? `scripts/services up`)")),
        Err(error) => Err(anyhow::Error::new(error).context("cannot open the event store")),
    }
}

/// Connects to NATS for a command that only reads the streams: creates no stream.
///
/// # Errors
/// When NATS cannot be reached.
pub async fn open_bus(common: &CommonArgs) -> Result<Bus> {
    match Bus::connect(common.bus()).await {
        Ok(bus) => Ok(bus),
        Err(error) if error.is_transient_connect() => Err(anyhow::Error::new(error)
            .context("cannot reach NATS JetStream (is it up? `scripts/services up`)")),
        Err(error) => Err(anyhow::Error::new(error).context("cannot reach NATS JetStream")),
    }
}

/// Connects to NATS and makes sure the event and dead-letter streams exist; waits for a
/// server that refuses connections as [`connect_store`] does.
///
/// # Errors
/// When NATS cannot be reached in time or JetStream refuses the streams.
pub async fn connect_bus(common: &CommonArgs, patience: Duration) -> Result<Bus> {
    let options = common.bus();
    match with_backoff(
        "NATS",
        patience,
        || Bus::connect_and_ensure(options.clone()),
        |e| e.is_transient_connect(),
    )
    .await
    {
        Ok(bus) => Ok(bus),
        Err(error) if error.is_transient_connect() => Err(anyhow::Error::new(error)
            .context("cannot reach NATS JetStream (is it up? `scripts/services up`)")),
        Err(error) => Err(anyhow::Error::new(error).context("cannot reach NATS JetStream")),
    }
}

/// Runs `connect` until it succeeds, fails for good (`transient` says no), or `patience`
/// is spent (one last try at its end); pauses 0.5 s, 1 s, 2 s, ... up to 5 s between tries
/// and logs each one.
async fn with_backoff<T, E, F, Fut>(
    service: &str,
    patience: Duration,
    mut connect: F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        match connect().await {
            Err(error) if transient(&error) && started.elapsed() < patience => {
                let pause_now = pause.min(patience.saturating_sub(started.elapsed()));
                tracing::warn!(%error, retry_in = ?pause_now, waited = ?started.elapsed(), ?patience,
                    "{service} is not reachable yet; waiting for it");
                tokio::time::sleep(pause_now).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Roles running as tasks: the first one to fail stops the others.
struct Roles {
    tasks: JoinSet<(String, Result<()>)>,
    shutdown: CancellationToken,
}

impl Roles {
    fn new(shutdown: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            shutdown,
        }
    }

    fn spawn<F>(&mut self, name: impl Into<String>, role: F)
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.into();
        self.tasks.spawn(async move { (name, role.await) });
    }

    fn spawn_consumer(&mut self, handler: Arc<dyn Handler>, bus: &Bus, options: ConsumerOptions) {
        let name = format!("consumer {}", handler.name());
        let (bus, shutdown) = (bus.clone(), self.shutdown.clone());
        self.spawn(name, async move {
            run_consumer(handler, bus, options, shutdown)
                .await
                .map_err(Into::into)
        });
    }

    /// Waits until every role ended; returns the first failure.
    async fn wait(mut self) -> Result<()> {
        let mut failure = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = match joined {
                Ok(done) => done,
                Err(panic) => ("a role".to_string(), Err(anyhow::anyhow!("{panic}"))),
            };
            // A role that ends before the shutdown signal is as bad as one that fails: the
            // process would keep running without it.
            let result = match result {
                Ok(()) if !self.shutdown.is_cancelled() => {
                    Err(anyhow::anyhow!("it ended without a shutdown signal"))
                }
                other => other,
            };
            match result {
                Ok(()) => {}
                Err(error) => {
                    tracing::error!(role = %name, error = %format!("{error:#}"), "role failed; stopping");
                    failure.get_or_insert(error.context(format!("{name} failed")));
                    self.shutdown.cancel();
                }
            }
            if self.shutdown.is_cancelled() {
                // Give the remaining roles their grace period, then stop waiting.
                if tokio::time::timeout(SHUTDOWN_GRACE, drain(&mut self.tasks))
                    .await
                    .is_err()
                {
                    tracing::warn!("roles did not stop within {SHUTDOWN_GRACE:?}");
                }
                break;
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

async fn drain(tasks: &mut JoinSet<(String, Result<()>)>) {
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, Err(error))) = joined {
            tracing::warn!(role = %name, error = %format!("{error:#}"), "role failed while stopping");
        }
    }
}

async fn start_gateway(
    roles: &mut Roles,
    pool: PgPool,
    bus: Option<&Bus>,
    worker_deps: Option<WorkerDeps>,
    http: &HttpArgs,
    log_format: LogFormat,
) -> Result<()> {
    let metrics = crate::telemetry::install_metrics().context("installing the metrics recorder")?;
    let mut state = GatewayState::new(pool).with_metrics(metrics);
    if let Some(token) = http.admin_token.as_deref().filter(|t| !t.trim().is_empty()) {
        state = state.with_admin_token(token);
    }
    if let Some(bus) = bus {
        state = state.with_bus(bus.clone());
    }
    if let Some(deps) = worker_deps {
        state = state.with_worker_deps(deps);
    }
    let (address, server) = orderflow_gateway::serve(state, http.http_addr, roles.shutdown.clone())
        .await
        .context("cannot start the gateway")?;
    // The banner is the one line a script reads from stdout, in either log format (the logs
    // go to stderr); with JSON logs it is also a log event like every other line.
    println!("orderflow gateway listening on http://{address}");
    if log_format == LogFormat::Json {
        tracing::info!(address = %format!("http://{address}"), "orderflow gateway listening");
    }
    roles.spawn(
        "gateway",
        async move { server.await.context("gateway task") },
    );
    Ok(())
}

/// Serves `GET /metrics` on `--metrics-addr` for a role without the gateway, when asked to.
async fn start_metrics_endpoint(roles: &mut Roles, common: &CommonArgs) -> Result<()> {
    let handle = crate::telemetry::install_metrics().context("installing the metrics recorder")?;
    let Some(addr) = common.metrics_addr else {
        return Ok(());
    };
    use warp::Filter;
    let route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut response = warp::reply::Response::new(handle.render().into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        })
        .boxed();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let shutdown = roles.shutdown.clone();
    let server = warp::serve(route)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    tracing::info!(address = %bound, "serving GET /metrics");
    roles.spawn("metrics endpoint", async move {
        server.run().await;
        Ok(())
    });
    Ok(())
}

fn start_relay(roles: &mut Roles, pool: PgPool, bus: &Bus, options: RelayOptions) {
    let (bus, shutdown) = (bus.clone(), roles.shutdown.clone());
    roles.spawn("relay", async move {
        run_relay(pool, bus, options, shutdown)
            .await
            .map_err(Into::into)
    });
}

/// `orderflow serve`: every role in one process, but the consumers named in `without`.
///
/// # Errors
/// When a name in `without` is no consumer's, a service cannot be reached at start, or a role
/// fails.
pub async fn serve(
    common: &CommonArgs,
    http: &HttpArgs,
    consumers: &ConsumerArgs,
    without: &[String],
) -> Result<()> {
    let shutdown = shutdown_on_signal();
    let known = orderflow_operations::consumer_names();
    let without: Vec<&str> = without
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .collect();
    if let Some(unknown) = without.iter().find(|name| !known.contains(name)) {
        anyhow::bail!(
            "--without-consumer {unknown:?}: no such consumer; known: {}",
            known.join(", ")
        );
    }
    if !without.is_empty() {
        tracing::info!(without = ?without, "serving without these consumers");
    }
    let pool = connect_store(common, common.connect_wait()).await?;
    let bus = connect_bus(common, common.connect_wait()).await?;
    let deps = consumers
        .worker_deps(pool.clone())
        .map_err(anyhow::Error::msg)?;
    let mut roles = Roles::new(shutdown);
    start_gateway(
        &mut roles,
        pool.clone(),
        Some(&bus),
        Some(deps.clone()),
        http,
        common.log_format,
    )
    .await?;
    start_relay(&mut roles, pool.clone(), &bus, common.relay());
    let options = consumer_options(consumers, &pool);
    for name in WORKER_NAMES.iter().filter(|name| !without.contains(name)) {
        let handler = build_worker(name, deps.clone())?;
        roles.spawn_consumer(handler, &bus, options.clone());
    }
    let projections = orderflow_projections::all()
        .into_iter()
        .filter(|projection| !without.contains(&projection.name()))
        .collect();
    start_projections(&mut roles, &pool, &bus, consumers, projections).await?;
    roles.wait().await
}

/// The consumers' options, with the health of the database on `pool`: while it does not
/// answer, consumers take no messages and hold the ones that failed because of it, so an
/// outage spends none of their attempts. Their steps are recorded in the same database (an
/// order's trace).
fn consumer_options(consumers: &ConsumerArgs, pool: &PgPool) -> ConsumerOptions {
    ConsumerOptions {
        database: Some(DatabaseHealth::new(pool)),
        steps: Some(pool.clone()),
        ..consumers.consumer_options()
    }
}

/// Rebuilds projections whose version changed (or that never ran), then runs their
/// consumers.
async fn start_projections(
    roles: &mut Roles,
    pool: &PgPool,
    bus: &Bus,
    consumers: &ConsumerArgs,
    projections: Vec<Arc<dyn Projection>>,
) -> Result<()> {
    // The roles started before take connections from the same pool: on a busy machine the
    // pool may have none free within its acquire timeout. That is no reason to stop serving;
    // a database that does not answer at all still fails the start after the connect wait.
    let patience = Instant::now() + PROJECTIONS_PATIENCE;
    loop {
        match ensure_current(pool, &projections).await {
            Ok(_) => break,
            Err(ProjectionError::Database(sqlx::Error::PoolTimedOut))
                if Instant::now() < patience =>
            {
                tracing::warn!(
                    "no database connection free to check the projections; trying again"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(error).context("bringing the projections up to date");
            }
        }
    }
    let options = consumer_options(consumers, pool);
    for projection in projections {
        let handler = Arc::new(ProjectionHandler::new(pool.clone(), projection));
        roles.spawn_consumer(handler, bus, options.clone());
    }
    Ok(())
}

/// The handler of consumer `name`: a worker or a projection.
///
/// # Errors
/// For an unknown name or a misconfigured worker.
pub fn consumer_handler(
    name: &str,
    pool: PgPool,
    consumers: &ConsumerArgs,
) -> Result<Arc<dyn Handler>> {
    let deps = consumers
        .worker_deps(pool.clone())
        .map_err(anyhow::Error::msg)?;
    Ok(orderflow_operations::consumer_handler(
        name,
        pool,
        Some(deps),
    )?)
}

/// `orderflow project <name>`: one projection's durable consumer.
///
/// # Errors
/// For an unknown projection or unreachable services.
pub async fn project(common: &CommonArgs, consumers: &ConsumerArgs, name: &str) -> Result<()> {
    let shutdown = shutdown_on_signal();
    let projection = orderflow_projections::by_name(name)?;
    let pool = connect_store(common, common.connect_wait()).await?;
    let bus = connect_bus(common, common.connect_wait()).await?;
    let mut roles = Roles::new(shutdown);
    start_metrics_endpoint(&mut roles, common).await?;
    start_projections(&mut roles, &pool, &bus, consumers, vec![projection]).await?;
    roles.wait().await
}

/// `orderflow gateway`: the REST gateway alone. NATS is optional here: when it answers, the
/// readiness check includes it.
///
/// # Errors
/// When PostgreSQL cannot be reached at start or the address cannot be bound.
pub async fn gateway(common: &CommonArgs, http: &HttpArgs) -> Result<()> {
    let shutdown = shutdown_on_signal();
    let pool = connect_store(common, common.connect_wait()).await?;
    let bus = match Bus::connect(common.bus()).await {
        Ok(bus) => Some(bus),
        Err(error) => {
            tracing::warn!(%error, "NATS not reachable; /ready will not include it");
            None
        }
    };
    let mut roles = Roles::new(shutdown);
    start_gateway(
        &mut roles,
        pool,
        bus.as_ref(),
        None,
        http,
        common.log_format,
    )
    .await?;
    roles.wait().await
}

/// `orderflow relay`: publishes the event log to JetStream.
///
/// # Errors
/// When a service cannot be reached at start.
pub async fn relay(common: &CommonArgs) -> Result<()> {
    let shutdown = shutdown_on_signal();
    let pool = connect_store(common, common.connect_wait()).await?;
    let bus = connect_bus(common, common.connect_wait()).await?;
    let mut roles = Roles::new(shutdown);
    start_metrics_endpoint(&mut roles, common).await?;
    start_relay(&mut roles, pool, &bus, common.relay());
    roles.wait().await
}

/// `orderflow republish`: publishes a range of the log again from the store.
///
/// # Errors
/// When a service cannot be reached or a publish fails.
pub async fn republish(common: &CommonArgs, after: i64, until: Option<i64>) -> Result<()> {
    anyhow::ensure!(after >= 0, "--after must be 0 or more");
    let pool = connect_store(common, common.connect_wait()).await?;
    let bus = connect_bus(common, common.connect_wait()).await?;
    let summary = publish_range(
        &pool,
        &bus,
        after,
        until,
        RelayOptions::default().batch_size,
    )
    .await
    .context("republishing failed; what was acked before the failure is in the stream")?;
    println!(
        "republished up to position {}: {} new in the stream, {} already there",
        summary.last_position, summary.published, summary.duplicates
    );
    Ok(())
}

/// `orderflow worker <name>`: one worker's durable consumer; one created now starts at
/// `from` (the start of the log when `None`).
///
/// # Errors
/// For an unknown worker, a misconfigured channel or carrier, or unreachable services.
pub async fn worker(
    common: &CommonArgs,
    consumers: &ConsumerArgs,
    name: &str,
    from: Option<StartAt>,
) -> Result<()> {
    let shutdown = shutdown_on_signal();
    let pool = connect_store(common, common.connect_wait()).await?;
    let options = ConsumerOptions {
        start: from.unwrap_or_default(),
        ..consumer_options(consumers, &pool)
    };
    let handler = build_worker(
        name,
        consumers.worker_deps(pool).map_err(anyhow::Error::msg)?,
    )?;
    let bus = connect_bus(common, common.connect_wait()).await?;
    let mut roles = Roles::new(shutdown);
    start_metrics_endpoint(&mut roles, common).await?;
    roles.spawn_consumer(handler, &bus, options);
    roles.wait().await
}
