//! The routes, one module per resource, and the filters they share. A route that matches a
//! path but not the method answers 405 with an `Allow` header.

pub mod health;
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
