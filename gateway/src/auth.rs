//! The admin routes' bearer token: [`AdminToken`] (a secret that is never logged or printed)
//! and [`require_admin`], the filter in front of every `/v1/admin/...` route.
//!
//! Without a configured token the admin routes are off: they answer 404 with a problem that
//! says how to turn them on. With one, a request without `Authorization: Bearer <token>` (or
//! with another token) answers 401 with `WWW-Authenticate: Bearer`.

use std::fmt;
use std::sync::Arc;

use warp::http::{header, HeaderMap};
use warp::Filter;

use crate::problem::{ApiError, Rejected};
use crate::GatewayState;

/// The admin bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// A token from `raw`, trimmed; `None` when it is blank.
    pub fn new(raw: impl Into<String>) -> Option<Self> {
        let raw = raw.into();
        let token = raw.trim();
        (!token.is_empty()).then(|| Self(Arc::from(token)))
    }

    /// Whether `candidate` is this token, compared in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut difference = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            difference |= x ^ b.get(i).copied().unwrap_or(!x);
        }
        difference == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Whether the request may use the admin routes.
///
/// # Errors
/// [`ApiError::AdminDisabled`] when no token is configured, [`ApiError::Unauthorized`] when
/// the request does not carry it as a bearer token.
pub fn check(token: Option<&AdminToken>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::AdminDisabled);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(candidate) if token.matches(candidate) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Passes only requests that carry the admin token; rejects the others with
/// [`ApiError::AdminDisabled`] or [`ApiError::Unauthorized`] (answered by the admin routes'
/// own recover).
pub fn require_admin(
    state: &GatewayState,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    let token = state.admin_token.clone();
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let token = token.clone();
            async move {
                check(token.as_ref(), &headers).map_err(|e| warp::reject::custom(Rejected(e)))
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_token_is_never_shown() {
        let token = AdminToken::new("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(AdminToken::new("  ").is_none());
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = AdminToken::new("s3cret").unwrap();
        assert!(check(Some(&token), &with_auth("Bearer s3cret")).is_ok());
        assert!(check(Some(&token), &with_auth("bearer s3cret")).is_ok());
        for wrong in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(
                matches!(
                    check(Some(&token), &with_auth(wrong)),
                    Err(ApiError::Unauthorized)
                ),
                "{wrong}"
            );
        }
        assert!(matches!(
            check(Some(&token), &HeaderMap::new()),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            check(None, &with_auth("Bearer s3cret")),
            Err(ApiError::AdminDisabled)
        ));
    }
}
