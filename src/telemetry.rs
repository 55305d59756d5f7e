//! Process-wide telemetry: one function builds the `tracing` subscriber (logs, W3C trace
//! context, and the optional OTLP span export), another installs the Prometheus metrics
//! recorder that every role records into (the gateway serves it at `GET /metrics`; the other
//! roles at `--metrics-addr` when given).
//!
//! Trace ids exist whether or not spans are exported: without an OTLP endpoint,
//! `orderflow_trace::TraceLayer` gives every span its ids and no OpenTelemetry code runs; with
//! one, `tracing-opentelemetry` does, and a batch processor sends the finished spans to
//! `<endpoint>/v1/traces` (OTLP over HTTP, protobuf) from a thread of its own. JSON log lines
//! written inside a span start with its `trace_id` either way.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line, for log shippers; lines inside a span carry its `trace_id`.
    Json,
}

/// Where and as what spans are exported (OTLP over HTTP, protobuf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`) or its full traces URL
    /// (ending in `/v1/traces`).
    pub endpoint: String,
    /// The `service.name` the spans are reported under.
    pub service_name: String,
}

impl OtlpExport {
    /// The URL spans are posted to: the endpoint, with `/v1/traces` added unless it ends so.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// What [`init`] installed that needs an orderly end: the span exporter, when there is one.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans not yet exported and stops the exporter (at most a few seconds; a
    /// collector that does not answer costs the spans, not the stop). Call once the roles
    /// stopped.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch processor's shutdown blocks until its thread has exported.
        let stopping = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(Duration::from_secs(10), stopping).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("warning: flushing the spans failed: {error}"),
            Ok(Err(error)) => eprintln!("warning: flushing the spans failed: {error}"),
            Err(_) => eprintln!("warning: flushing the spans took over 10 s; gave up"),
        }
    }
}

/// Installs the global subscriber. The filter comes from `RUST_LOG`, else `default_filter`;
/// logs go to stderr so that command output on stdout stays clean. With `otlp`, spans are
/// exported there too.
///
/// # Errors
/// An OTLP endpoint that is not a URL.
pub fn init(
    format: LogFormat,
    default_filter: &str,
    otlp: Option<&OtlpExport>,
) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let provider = otlp.map(exporting_provider).transpose()?;
    let exported = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("orderflow"))
            .with_tracked_inactivity(false)
            .with_threads(false)
    });
    let own_ids = provider.is_none().then_some(orderflow_trace::TraceLayer);
    let ansi = std::io::stderr().is_terminal();
    let pretty = (format == LogFormat::Pretty)
        .then(|| fmt::layer().with_ansi(ansi).with_writer(std::io::stderr));
    let json = (format == LogFormat::Json).then(|| {
        fmt::layer()
            .json()
            .event_format(orderflow_trace::WithTraceId(
                fmt::format().json().flatten_event(true),
            ))
            .with_writer(std::io::stderr)
    });
    // A second init (tests that start several apps) keeps the first subscriber.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(own_ids)
        .with(exported)
        .with(pretty)
        .with(json)
        .try_init()
        .is_ok();
    Ok(Telemetry {
        provider: provider.filter(|_| installed),
    })
}

/// A tracer provider whose batch processor posts spans to `otlp`.
fn exporting_provider(otlp: &OtlpExport) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let url = otlp.traces_url();
    url::Url::parse(&url).with_context(|| format!("the OTLP endpoint {url} is not a URL"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .with_context(|| format!("setting up the OTLP exporter for {url}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
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
    orderflow_workers::partner::describe_metrics();
    Ok(METRICS.get_or_init(|| handle).clone())
}
