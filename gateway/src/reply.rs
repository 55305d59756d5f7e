//! Successful answers, and the one place where a handler's outcome becomes an HTTP answer.
//!
//! Handlers return `Result<T, ApiError>` where `T` renders itself ([`warp::Reply`]): usually
//! [`Json`], a JSON body with its status and headers. [`finish`] renders the success or the
//! error (as a problem, see [`crate::problem`]) and stamps the request's `X-Request-Id`; the
//! `respond*` adapters put it around a handler when the routes are built, so that no handler
//! renders or stamps anything itself. The request id is the handler's last argument: the id
//! the handler logs and records as the correlation id is the one the answer carries.

use std::future::Future;

use futures::future::BoxFuture;
use serde::Serialize;
use warp::http::header::HeaderName;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::problem::ApiError;
use crate::request_id::RequestId;

/// A JSON answer: a body, its status (200 unless said otherwise) and extra headers.
#[derive(Debug, Clone)]
pub struct Json<T> {
    body: T,
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl<T: Serialize> Json<T> {
    /// `body` with 200 OK.
    pub fn ok(body: T) -> Self {
        Self::with_status(body, StatusCode::OK)
    }

    /// `body` with `status`.
    pub fn with_status(body: T, status: StatusCode) -> Self {
        Self {
            body,
            status,
            headers: Vec::new(),
        }
    }

    /// The same answer with header `name` set to `value`.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl<T: Serialize + Send> Reply for Json<T> {
    fn into_response(self) -> Response {
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.body), self.status).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The answer to a request: the reply or the error's problem, with the request id.
pub fn finish<T: Reply>(request_id: &RequestId, outcome: Result<T, ApiError>) -> Response {
    let response = match outcome {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    };
    request_id.stamp(response)
}

/// What a wrapped handler hands to warp.
pub type Answer = BoxFuture<'static, Response>;

async fn answer<T: Reply>(
    request_id: RequestId,
    outcome: impl Future<Output = Result<T, ApiError>>,
) -> Response {
    finish(&request_id, outcome.await)
}

/// Wraps a handler that takes only the request id (see the module doc).
pub fn respond0<H, F, T>(handler: H) -> impl Fn(RequestId) -> Answer + Clone + Send + Sync
where
    H: Fn(RequestId) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Reply + 'static,
{
    move |id: RequestId| Box::pin(answer(id.clone(), handler(id)))
}

/// Wraps a handler of one argument and the request id (see the module doc).
pub fn respond1<A, H, F, T>(handler: H) -> impl Fn(A, RequestId) -> Answer + Clone + Send + Sync
where
    H: Fn(A, RequestId) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Reply + 'static,
{
    move |a, id: RequestId| Box::pin(answer(id.clone(), handler(a, id)))
}

/// Wraps a handler of two arguments and the request id (see the module doc).
pub fn respond2<A, B, H, F, T>(
    handler: H,
) -> impl Fn(A, B, RequestId) -> Answer + Clone + Send + Sync
where
    H: Fn(A, B, RequestId) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Reply + 'static,
{
    move |a, b, id: RequestId| Box::pin(answer(id.clone(), handler(a, b, id)))
}

/// Wraps a handler of three arguments and the request id (see the module doc).
pub fn respond3<A, B, C, H, F, T>(
    handler: H,
) -> impl Fn(A, B, C, RequestId) -> Answer + Clone + Send + Sync
where
    H: Fn(A, B, C, RequestId) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Reply + 'static,
{
    move |a, b, c, id: RequestId| Box::pin(answer(id.clone(), handler(a, b, c, id)))
}
