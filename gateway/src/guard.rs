//! The database guard around the routes that need PostgreSQL: while the event store does not
//! answer, they answer 503 at once instead of waiting for the pool.
//!
//! A request to such a route is refused at once while [`DatabaseHealth`] says the database is
//! away, and a request in flight is answered 503 as soon as a probe finds it away (a request
//! that waits longer than a moment asks for a probe), so no request waits for the pool's
//! acquire timeout or on a server that hangs: it is answered within about
//! [`orderflow_store::health::SUSPECT_AFTER`] plus [`orderflow_store::health::PROBE_TIMEOUT`].
//! Work cut off this way was waiting for the database; a write runs in a task of its own
//! ([`crate::routes::detached`]) and the store's group commit writes nothing of an append it
//! had no connection for when the database went away.
//!
//! `/health`, `/ready`, `/metrics`, `/openapi.json` and the dead-letter routes (JetStream)
//! are not guarded.
//!
//! Every request, guarded or not, is answered inside its `request` span, which joins the
//! client's W3C trace when the request carries a `traceparent` header (`orderflow_trace`).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use orderflow_store::{DatabaseHealth, Unavailable};
use tracing::Instrument;
use warp::http::Request;
use warp::reply::Response;

use crate::problem::ApiError;
use crate::routes::paths;

/// True for the paths whose routes need PostgreSQL.
fn needs_database(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with(paths::ADMIN_DLQ)
}

/// A service (the gateway's routes) with the database guard around it.
#[derive(Clone)]
pub(crate) struct Guarded<S> {
    inner: S,
    database: DatabaseHealth,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, database: DatabaseHealth) -> Self {
        Self { inner, database }
    }
}

impl<S, B> tower_service::Service<Request<B>> for Guarded<S>
where
    S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = request_span(&request);
        let answer = span.in_scope(|| self.answer(request));
        Box::pin(answer.instrument(span))
    }
}

/// The span a request is answered in (`request`, with its method and path): a child of the
/// client's `traceparent` when it sends a valid one, else the root of a new trace. The
/// routes' spans, the access line, and the commands the request issues sit inside it.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "request",
        method = %request.method(), path = request.uri().path());
    let incoming = request
        .headers()
        .get(orderflow_trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(orderflow_trace::TraceContext::parse);
    if let Some(parent) = incoming {
        orderflow_trace::set_parent(&span, parent);
    }
    span
}

impl<S> Guarded<S> {
    fn answer<B>(&mut self, request: Request<B>) -> BoxFuture<'static, Result<Response, Infallible>>
    where
        S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>,
        S::Future: Send + 'static,
    {
        if !needs_database(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let headers = request.headers().clone();
        let database = self.database.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let why = match database.guard(answer).await {
                Ok(answered) => return answered,
                Err(Unavailable(why)) => why,
            };
            tracing::debug!(%method, %path, reason = %why, "answered 503: PostgreSQL does not answer");
            let response = crate::request_id::ensure_stamped(
                &headers,
                ApiError::DatabaseUnavailable(why).into_response(),
            );
            crate::log_answer(started, &method, &path, &response);
            crate::telemetry::record_request(started, &method, &response);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_traceparent_is_honoured() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(orderflow_trace::TraceLayer);
        tracing::subscriber::with_default(subscriber, || {
            let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let request = Request::builder()
                .uri("/v1/orders")
                .header("traceparent", sent)
                .body(())
                .unwrap();
            let span = request_span(&request);
            let context = orderflow_trace::context_of(&span).unwrap();
            let sent = orderflow_trace::TraceContext::parse(sent).unwrap();
            assert_eq!(context.trace_id, sent.trace_id);
            assert_ne!(context.span_id, sent.span_id);
            // What the request stores with its events is in the same trace.
            let metadata = span.in_scope(|| orderflow_store::CommandMetadata::from_request("r"));
            assert_eq!(metadata.trace.map(|t| t.trace_id), Some(sent.trace_id));

            // No header, or a malformed one: a trace of its own.
            for header in [None, Some("00-not-a-trace-01")] {
                let mut request = Request::builder().uri("/v1/orders");
                if let Some(value) = header {
                    request = request.header("traceparent", value);
                }
                let span = request_span(&request.body(()).unwrap());
                let own = orderflow_trace::context_of(&span).unwrap();
                assert_ne!(own.trace_id, sent.trace_id);
            }
        });
    }

    #[test]
    fn guards_the_resource_routes_only() {
        assert!(needs_database("/v1/orders"));
        assert!(needs_database("/v1/inventory/SKU-1"));
        assert!(needs_database("/v1/admin/projections"));
        assert!(!needs_database("/v1/admin/dlq"));
        assert!(!needs_database("/v1/admin/dlq/3/redrive"));
        assert!(!needs_database("/health"));
        assert!(!needs_database("/ready"));
        assert!(!needs_database("/metrics"));
        assert!(!needs_database("/openapi.json"));
    }
}
