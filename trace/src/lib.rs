//! W3C trace context for orderflow: what a `traceparent` is, which trace and span the code
//! runs in, and the trace id on every JSON log line written inside a span.
//!
//! One trace covers everything one request sets in motion: the gateway's request span
//! (a child of the client's `traceparent` when it sends one), the events stored by its
//! command (their metadata keeps the `traceparent`), the NATS messages the relay publishes
//! (a `traceparent` header), each consumer's span for each message (a child of the event's
//! context), the commands those consumers issue (their events carry the consumer span's
//! context), and so on down the chain.
//!
//! # Where the ids come from
//! Two sources, one answer: [`context_of`] and [`current`] read whichever is installed.
//! - **Export off (the default)**: [`TraceLayer`] gives every span a [`TraceContext`] of its
//!   own when it is created: the parent's trace id and a new span id, or a new trace for a
//!   root. It is one small record in the span's extensions and a few arithmetic steps to make
//!   the ids, nothing else: no OpenTelemetry span is built, no attribute is copied, no event
//!   is recorded. That is why orderflow carries the ids itself instead of running the SDK's
//!   tracer without an exporter, which would build and drop a full span (and a span event
//!   per log line) for every message of every consumer.
//! - **Export on** (`ORDERFLOW_OTLP_ENDPOINT`): the process installs `tracing-opentelemetry`
//!   instead of [`TraceLayer`], and the ids are the OpenTelemetry spans' own, so the exported
//!   trace and the logged and propagated ids agree.
//!
//! Ids are random enough to be unique (a per-thread generator seeded from the standard
//! library's random hasher keys), not secret.
//!
//! # Why a crate of its own
//! The store (which keeps the `traceparent` in an event's metadata), the bus (which puts it
//! on messages and opens each consumer's span under it), the gateway (which reads it from a
//! request) and the binary (which installs the layer and the log format) all need the same
//! context type and the same answer to "which span am I in". None of them is a natural home
//! for it without the others depending on that crate's unrelated parts, and the store, the
//! lowest of them, should not carry `tracing-subscriber` layers.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::span::{Attributes, Id};
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::{OpenTelemetrySpanExt as _, OtelData};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// The name of the HTTP header, NATS header and metadata field that carry a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Where one span sits in one trace: a W3C trace context (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace, shared by every span of it; never 0.
    pub trace_id: u128,
    /// This span; never 0.
    pub span_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// The first span of a new trace (sampled).
    pub fn new_root() -> Self {
        let trace_id = (u128::from(nonzero_u64()) << 64) | u128::from(random_u64());
        Self {
            trace_id,
            span_id: nonzero_u64(),
            flags: 1,
        }
    }

    /// A new span in the same trace, a child of this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// Reads a `traceparent` value: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`,
    /// lower-case, neither id all zeros. A later version is read by its first four fields, as
    /// the W3C recommendation asks; version `ff` and anything malformed is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 || (bytes.len() > 55 && (bytes[..2] == *b"00" || bytes[55] != b'-')) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = hex(&value[0..2])?;
        if version == 0xff {
            return None;
        }
        let trace_id = hex(&value[3..35])?;
        let span_id = u64::try_from(hex(&value[36..52])?).ok()?;
        let flags = u8::try_from(hex(&value[53..55])?).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The same context as OpenTelemetry's, marked as coming from another process.
    pub fn to_otel_remote(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }

    /// OpenTelemetry's span context as a [`TraceContext`], when it is valid.
    pub fn from_otel(context: &SpanContext) -> Option<Self> {
        context.is_valid().then(|| Self {
            trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(context.span_id().to_bytes()),
            flags: context.trace_flags().to_u8(),
        })
    }
}

/// The `traceparent` value: `00-<trace id>-<span id>-<flags>`.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Lower-case hex digits only (`u128::from_str_radix` would take upper case and a sign).
fn hex(digits: &str) -> Option<u128> {
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(digits, 16).ok()
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// splitmix64 over a per-thread state.
fn random_u64() -> u64 {
    STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn nonzero_u64() -> u64 {
    loop {
        let value = random_u64();
        if value != 0 {
            return value;
        }
    }
}

/// The trace context [`TraceLayer`] keeps in a span's extensions.
#[derive(Debug, Clone, Copy)]
struct SpanTrace(TraceContext);

/// Gives every span a [`TraceContext`] (see the module doc): a child of its parent span's,
/// or a new trace. Install it when no OpenTelemetry layer runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = if let Some(parent) = attrs.parent() {
            ctx.span(parent)
        } else if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            None
        };
        let inherited = parent.and_then(|p| p.extensions().get::<SpanTrace>().map(|t| t.0));
        let trace = inherited.map_or_else(TraceContext::new_root, |p| p.child());
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanTrace(trace));
        }
    }
}

/// The trace context [`TraceLayer`] gave `span`, if it runs.
fn own_context(span: &Span) -> Option<TraceContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let extensions = span.extensions();
        extensions.get::<SpanTrace>().map(|t| t.0)
    })
    .flatten()
}

/// The trace context of `span`, from [`TraceLayer`] or from OpenTelemetry (which starts the
/// span if it was not yet); `None` for a disabled span or when neither is installed.
pub fn context_of(span: &Span) -> Option<TraceContext> {
    own_context(span).or_else(|| {
        let context = span.context();
        TraceContext::from_otel(context.span().span_context())
    })
}

/// Links `span` to `other` in the exported trace (a batch handled for many messages, each in
/// a trace of its own). Nothing is recorded when spans are not exported.
pub fn link(span: &Span, other: &Span) {
    if own_context(span).is_some() {
        return;
    }
    let other = other.context();
    let target = other.span().span_context().clone();
    if target.is_valid() {
        span.add_link(target);
    }
}

/// The trace context of the current span (see [`context_of`]).
pub fn current() -> Option<TraceContext> {
    context_of(&Span::current())
}

/// Makes `span`, just created, a child of `parent` (from another process: a request's
/// `traceparent`, a message's header): it joins `parent`'s trace. Call it before the span is
/// entered or has children.
pub fn set_parent(span: &Span, parent: TraceContext) {
    let own = span
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            let mut extensions = span.extensions_mut();
            let trace = extensions.get_mut::<SpanTrace>()?;
            trace.0.trace_id = parent.trace_id;
            trace.0.flags = parent.flags;
            Some(())
        })
        .flatten();
    if own.is_none() {
        let remote =
            opentelemetry::Context::new().with_remote_span_context(parent.to_otel_remote());
        // Fails only when no OpenTelemetry layer runs or the span already started: then the
        // span stays in its own trace.
        let _ = span.set_parent(remote);
    }
}

/// The trace id of a span seen by a subscriber (`None` when no source knows it).
fn trace_id_of<S>(span: &SpanRef<'_, S>) -> Option<u128>
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    if let Some(trace) = extensions.get::<SpanTrace>() {
        return Some(trace.0.trace_id);
    }
    let id = extensions.get::<OtelData>()?.trace_id()?;
    (id != TraceId::INVALID).then(|| u128::from_be_bytes(id.to_bytes()))
}

/// A JSON event format with `"trace_id"` (32 hex digits) first on every line written inside
/// a span; lines outside any span are left as they are.
#[derive(Debug, Clone)]
pub struct WithTraceId<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        let Some(trace_id) = span.as_ref().and_then(trace_id_of) else {
            return self.0.format_event(ctx, writer, event);
        };
        let splice = |line: &mut String, writer: &mut Writer<'_>| -> fmt::Result {
            line.clear();
            self.0.format_event(ctx, Writer::new(line), event)?;
            match line.strip_prefix('{') {
                Some(rest) => {
                    write!(writer, "{{\"trace_id\":\"{trace_id:032x}\"")?;
                    if !rest.starts_with('}') {
                        writer.write_char(',')?;
                    }
                    writer.write_str(rest)
                }
                None => writer.write_str(line),
            }
        };
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => splice(&mut line, &mut writer),
            Err(_) => splice(&mut String::new(), &mut writer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_prints_the_same() {
        let context = TraceContext::parse(SAMPLE).unwrap();
        assert_eq!(context.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(context.span_id, 0x00f0_67aa_0ba9_02b7);
        assert_eq!(context.flags, 1);
        assert_eq!(context.to_string(), SAMPLE);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let made = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&made.to_string()), Some(made));
        let child = made.child();
        assert_eq!(child.trace_id, made.trace_id);
        assert_ne!(child.span_id, made.span_id);
        let otel = TraceContext::from_otel(&made.to_otel_remote());
        assert_eq!(otel, Some(made));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version with more fields is read by its first four.
        let later = format!("01{}-more", &SAMPLE[2..]);
        assert!(TraceContext::parse(&later).is_some());
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn spans_share_their_trace_and_json_lines_carry_it() {
        let lines = Lines::default();
        let writer = lines.clone();
        let format = tracing_subscriber::fmt::format().json().flatten_event(true);
        let subscriber = tracing_subscriber::registry().with(TraceLayer).with(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(WithTraceId(format))
                .with_writer(move || writer.clone()),
        );
        let remote = TraceContext::parse(SAMPLE).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let request = tracing::info_span!("request");
            set_parent(&request, remote);
            let own = context_of(&request).unwrap();
            assert_eq!(own.trace_id, remote.trace_id);
            assert_ne!(own.span_id, remote.span_id);
            request.in_scope(|| {
                let inner = tracing::info_span!("inner");
                let inner_context = context_of(&inner).unwrap();
                assert_eq!(inner_context.trace_id, remote.trace_id);
                inner.in_scope(|| tracing::info!(answer = 42, "inside"));
                assert_eq!(current(), Some(own));
            });
            let other = tracing::info_span!("other");
            assert_ne!(context_of(&other).unwrap().trace_id, remote.trace_id);
            tracing::info!(parent: &request, "explicit parent");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        for line in &parsed[1..] {
            assert_eq!(line["trace_id"], remote.trace_id_hex(), "{text}");
        }
        assert_eq!(parsed[1]["answer"], 42);
    }

    #[test]
    fn with_opentelemetry_the_ids_are_its_spans() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceId(
                        tracing_subscriber::fmt::format().json().flatten_event(true),
                    ))
                    .with_writer(move || writer.clone()),
            );
        let remote = TraceContext::parse(SAMPLE).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(parent: None, "request");
            set_parent(&request, remote);
            let own = context_of(&request).unwrap();
            assert_eq!(own.trace_id, remote.trace_id);
            assert_ne!(own.span_id, remote.span_id);
            request.in_scope(|| {
                assert_eq!(current(), Some(own));
                let inner = tracing::info_span!("inner");
                assert_eq!(context_of(&inner).unwrap().trace_id, remote.trace_id);
                inner.in_scope(|| tracing::info!("inside"));
            });
            let batch = tracing::info_span!(parent: None, "batch");
            link(&batch, &request);
            assert_ne!(context_of(&batch).unwrap().trace_id, remote.trace_id);
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["trace_id"], remote.trace_id_hex(), "{text}");
    }
}
