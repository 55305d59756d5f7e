//! Request bodies, the one place where every route that takes JSON reads and parses it:
//! read with a size limit (64 KiB, whether or not a `Content-Length` is sent), checked to be
//! JSON by its `Content-Type`, and parsed from bytes by the handlers, so that malformed JSON
//! (400) and invalid values (422) stay apart.
//!
//! - **Content type.** A body sent as anything but JSON (`application/json`, or any
//!   `application/*+json`, parameters such as `charset` ignored) is refused with 415. A body
//!   sent without a `Content-Type` is taken as JSON: clients such as `curl -d` without `-H`
//!   would otherwise be refused for a header they did not think of, and the JSON parser
//!   still refuses what is not JSON (400). An empty body is not checked, whatever its
//!   `Content-Type`: `curl -X POST -d ''` sends `application/x-www-form-urlencoded`.
//! - **Shape.** [`parse_json`] names every field that is missing or of the wrong JSON type
//!   by its JSON path (`lines[0].quantity`) in one 422, with the type it must be (see
//!   [`fields`]), and every unknown field; [`parse_json_checked`] adds the route's checks of
//!   the values to the same 422. Bodies that are not JSON or not an object are 400.

pub mod fields;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::http::{header, HeaderMap};
use warp::Filter;

use orderflow_domain::FieldError;

use crate::problem::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most bytes of a too-large body read (and dropped) before answering 413.
const MAX_DRAINED_BYTES: usize = 1024 * 1024;

/// A request body, or why it cannot be had (too large, unreadable).
pub type Body = Result<Bytes, ApiError>;

/// Reads a JSON body up to [`MAX_BODY_BYTES`], and refuses one sent as another media type
/// (415). Never rejects: the handler answers the error, so a route's method fallback cannot
/// mistake a large body for a wrong method.
pub fn limited() -> impl Filter<Extract = (Body,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .then(|headers: HeaderMap, stream| async move {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = read(declared, stream).await?;
            if !body.is_empty() {
                json_content_type(&headers)?;
            }
            Ok(body)
        })
}

/// Whether the `Content-Type` says JSON (none at all is taken as JSON).
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] naming the type that was sent.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let sent = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let essence = sent
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(sent))
    }
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
/// [`ApiError::MalformedBody`] when the bytes are not JSON or not an object;
/// [`ApiError::Invalid`] naming every field that is unknown, missing or of the wrong JSON
/// type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, serde_json::Value), ApiError> {
    parse_json_checked(bytes, |_: &T| Vec::new())
}

/// As [`parse_json`], with the route's checks of the values (`check`, one [`FieldError`] per
/// bad value) in the same answer: a body with unknown, missing or mistyped fields is checked
/// too, with stand-ins for those fields, and its 422 names every problem at once. A problem
/// `check` finds at a field already named, or inside it, is left out.
///
/// # Errors
/// As [`parse_json`], and [`ApiError::Invalid`] with what `check` finds.
pub fn parse_json_checked<T: DeserializeOwned>(
    bytes: &[u8],
    check: impl Fn(&T) -> Vec<FieldError>,
) -> Result<(T, serde_json::Value), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    let partial = fields::deserialize_partial::<T>(&value).map_err(|e| match e {
        fields::ShapeError::Fields(errors) => ApiError::Invalid(errors),
        fields::ShapeError::Body(message) => ApiError::MalformedBody(message),
    })?;
    let mut errors = partial.errors;
    let Some(parsed) = partial.value else {
        return Err(ApiError::Invalid(errors));
    };
    let named = |field: &str, by: &FieldError| {
        let Some(rest) = field.strip_prefix(by.field.as_str()) else {
            return false;
        };
        rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
    };
    let found: Vec<FieldError> = check(&parsed)
        .into_iter()
        .filter(|problem| !errors.iter().any(|by| named(&problem.field, by)))
        .collect();
    errors.extend(found);
    if errors.is_empty() {
        Ok((parsed, value))
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// As [`parse_json`], for a body that may be left out: an empty (or blank) body is `{}`.
///
/// # Errors
/// As [`parse_json`].
pub fn parse_optional_json<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, serde_json::Value), ApiError> {
    parse_optional_json_checked(bytes, |_: &T| Vec::new())
}

/// As [`parse_json_checked`], for a body that may be left out: an empty (or blank) body is
/// `{}`.
///
/// # Errors
/// As [`parse_json_checked`].
pub fn parse_optional_json_checked<T: DeserializeOwned>(
    bytes: &[u8],
    check: impl Fn(&T) -> Vec<FieldError>,
) -> Result<(T, serde_json::Value), ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        parse_json_checked(b"{}", check)
    } else {
        parse_json_checked(bytes, check)
    }
}
