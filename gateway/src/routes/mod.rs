//! The routes, one module per resource, and the filters and helpers they share. Every route
//! is a [`Resource`]: its template from [`paths`], its methods, a 405 with an `Allow` header
//! for the others, and its template on its answers ([`crate::telemetry::tag`]) for the request
//! metrics. Handlers return `Result<T, ApiError>`; [`crate::reply`] renders and stamps it.

pub mod admin;
pub mod analytics;
pub mod customers;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod notifications;
pub mod orders;
pub mod paths;
mod resource;

pub use resource::Resource;

use std::convert::Infallible;

use warp::Filter;

use crate::problem::ApiError;
use crate::GatewayState;

/// Hands a clone of the state to a handler.
pub fn with_state(
    state: &GatewayState,
) -> impl Filter<Extract = (GatewayState,), Error = Infallible> + Clone {
    let state = state.clone();
    warp::any().map(move || state.clone())
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

/// Runs `work` in a task of its own and waits for it: when the client hangs up and warp drops
/// this future, the work still runs to its end (no transaction is cut in half).
pub async fn detached<F, T>(work: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
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
