//! Request ids: every request has one (`X-Request-Id`, taken from the request when it is
//! usable, otherwise a new UUID v7). It is put in the request's tracing span, stored as the
//! correlation id of the events the request causes, and echoed in the response.

use std::convert::Infallible;
use std::fmt;

use uuid::Uuid;
use warp::http::{HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::Filter;

/// The header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a client.
const MAX_LEN: usize = 128;

/// The id of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The client's `X-Request-Id` when it is 1 to 128 visible ASCII characters, otherwise a
    /// new UUID v7.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|id| {
                !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(Self::generate, |id| Self(id.to_string()))
    }

    /// A new id (UUID v7).
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    /// The id as sent in the `X-Request-Id` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Sets the `X-Request-Id` header of `response` to this id.
    pub fn stamp(&self, mut response: Response) -> Response {
        if let Ok(value) = HeaderValue::from_str(&self.0) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Extracts the request's [`RequestId`]. Never rejects.
pub fn request_id() -> impl Filter<Extract = (RequestId,), Error = Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: HeaderMap| RequestId::from_headers(&headers))
}

/// Makes sure `response` carries an `X-Request-Id`: handlers stamp their own; answers made
/// without a handler (unknown path, ...) get the client's id or a new one here.
pub fn ensure_stamped(headers: &HeaderMap, response: Response) -> Response {
    if response.headers().contains_key(REQUEST_ID_HEADER) {
        return response;
    }
    RequestId::from_headers(headers).stamp(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_usable_id_and_replaces_others() {
        let mut headers = HeaderMap::new();
        assert_eq!(RequestId::from_headers(&headers).as_str().len(), 36);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_ne!(RequestId::from_headers(&headers).as_str(), "has space");
        let long = "x".repeat(MAX_LEN + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_ne!(RequestId::from_headers(&headers).as_str(), long);
    }
}
