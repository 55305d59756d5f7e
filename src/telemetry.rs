//! Process-wide telemetry: one function builds the `tracing` subscriber, another installs
//! the Prometheus metrics recorder that every role records into (the gateway serves it at
//! `GET /metrics`; the other roles at `--metrics-addr` when given).

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. The filter comes from `RUST_LOG`, else `default_filter`;
/// logs go to stderr so that command output on stdout stays clean.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests that start several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics` recorder, with every
/// metric's `# HELP` and real buckets for the request latency; returns the handle that
/// renders the Prometheus text. Later calls return the same handle.
///
/// # Errors
/// When another recorder was installed by someone else.
pub fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use orderflow_gateway::telemetry::{REQUEST_DURATION, REQUEST_DURATION_BUCKETS};
    if let Some(handle) = METRICS.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION.to_string()),
            &REQUEST_DURATION_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    // Two callers racing: only one recorder is installed; the loser gets the winner's handle.
    if metrics::set_global_recorder(recorder).is_err() {
        return METRICS
            .get()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("another metrics recorder is installed"));
    }
    orderflow_gateway::telemetry::describe_metrics();
    orderflow_bus::describe_metrics();
    orderflow_store::describe_metrics();
    Ok(METRICS.get_or_init(|| handle).clone())
}
