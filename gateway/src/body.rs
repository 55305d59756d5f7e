//! Request bodies: read with a size limit (64 KiB, whether or not a `Content-Length` is sent)
//! and parsed from bytes by the handlers, so that malformed JSON (400) and invalid values
//! (422) stay apart.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::Filter;

use crate::problem::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most bytes of a too-large body read (and dropped) before answering 413.
const MAX_DRAINED_BYTES: usize = 1024 * 1024;

/// A request body, or why it cannot be had (too large, unreadable).
pub type Body = Result<Bytes, ApiError>;

/// Reads the body up to [`MAX_BODY_BYTES`]. Never rejects: the handler answers the error, so
/// a route's method fallback cannot mistake a large body for a wrong method.
pub fn limited() -> impl Filter<Extract = (Body,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .then(|headers: warp::http::HeaderMap, stream| async move {
            let declared = headers
                .get(warp::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            read(declared, stream).await
        })
}

async fn read<S, B>(declared: Option<u64>, stream: S) -> Body
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    let mut too_large = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::MalformedBody(format!("the request body could not be read: {e}"))
        })?;
        seen = seen.saturating_add(chunk.remaining());
        too_large |= seen > MAX_BODY_BYTES;
        if too_large {
            // Drain a moderately large body before answering, so that the client is not
            // reset while it still sends and does get to read the 413.
            if seen > MAX_DRAINED_BYTES {
                break;
            }
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    if too_large {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(body.freeze())
}

/// Parses a JSON body into `T`, keeping the JSON value too (idempotency keys compare bodies
/// as JSON, not as bytes).
///
/// # Errors
/// [`ApiError::MalformedBody`] when the bytes are not JSON or not of `T`'s shape (unknown or
/// missing fields, wrong types).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, serde_json::Value), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    let parsed = T::deserialize(&value).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    Ok((parsed, value))
}
