//! The routes, one module per resource, and the filters and helpers they share. A route that
//! matches a path but not the method answers 405 with an `Allow` header; every route puts its
//! template on its answers ([`crate::telemetry::tag`]) for the request metrics.

pub mod admin;
pub mod analytics;
pub mod customers;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod notifications;
pub mod orders;

use std::convert::Infallible;

use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::Filter;

use crate::problem::ApiError;
use crate::request_id::RequestId;
use crate::GatewayState;

/// Hands a clone of the state to a handler.
pub fn with_state(
    state: &GatewayState,
) -> impl Filter<Extract = (GatewayState,), Error = Infallible> + Clone {
    let state = state.clone();
    warp::any().map(move || state.clone())
}

/// The fallback of a path: 405 with `Allow: <allow>` for any method not in `allow`
/// (comma-separated). Methods in `allow` are left to the route (they reach here only when the
/// route rejected for another reason, which then wins).
pub fn method_not_allowed(allow: &'static str) -> BoxedFilter<(Response,)> {
    warp::method()
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, headers: HeaderMap| async move {
            if allow.split(',').any(|m| m.trim() == method.as_str()) {
                Err(warp::reject::not_found())
            } else {
                let response = ApiError::MethodNotAllowed { allow: Some(allow) }.into_response();
                Ok(RequestId::from_headers(&headers).stamp(response))
            }
        })
        .boxed()
}

/// The value of query parameter `name` (the last one when repeated).
pub fn query_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A path segment with its `%XX` escapes decoded (warp hands them over raw); `None` when the
/// escapes do not decode to UTF-8.
pub fn decode_segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The answer, or its error as a problem.
pub fn into_response(answer: Result<Response, ApiError>) -> Response {
    answer.unwrap_or_else(ApiError::into_response)
}

/// Runs `work` in a task of its own and waits for it: when the client hangs up and warp drops
/// this future, the work still runs to its end (no transaction is cut in half).
pub async fn detached<F>(work: F) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("request task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded() {
        assert_eq!(decode_segment("c-42").as_deref(), Some("c-42"));
        assert_eq!(decode_segment("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(decode_segment("bad%zz"), None);
        assert_eq!(decode_segment("cut%2"), None);
    }
}
