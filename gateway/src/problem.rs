//! Errors as HTTP answers: the one place where a typed error ([`ApiError`]) or a warp
//! rejection becomes a status code and an RFC 9457 `application/problem+json` body.
//!
//! Client mistakes get a 4xx with a detail that says what to fix; failures of the server get a
//! 500 whose cause is logged here and never shown. While the event store (PostgreSQL) does not
//! answer, the answer is a 503 with `Retry-After` ([`ApiError::DatabaseUnavailable`]).

use std::convert::Infallible;

use orderflow_domain::{FieldError, OrderError};
use orderflow_store::health::is_connection_error;
use orderflow_store::{CommandError, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reject::{
    InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader, PayloadTooLarge,
    UnsupportedMediaType,
};
use warp::reply::Response;
use warp::Rejection;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The title of every 404 (an order, a SKU, a projection, a dead letter, a path): the `type`
/// and `detail` say what was not found.
const NOT_FOUND_TITLE: &str = "Not found";

/// The `Retry-After` of a 503, in seconds.
pub const RETRY_AFTER_SECS: u16 = 2;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid-request",
    "title": "The request has invalid values",
    "status": 422,
    "detail": "2 fields are invalid",
    "errors": [{"field": "lines[0].quantity", "message": "must be between 1 and 1000"},
               {"field": "currency", "message": "must be an ISO 4217 code of three capital letters, such as EUR"}]
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, as a sentence.
    pub detail: String,
    /// One entry per invalid field (only on 422 answers about the request's values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Everything a request can fail with. [`ApiError::into_response`] is the only mapping to HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, not a JSON object, or has a field the route does not know. 400.
    /// (Fields missing or of the wrong JSON type are [`ApiError::Invalid`].)
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// A header or query parameter cannot be understood. 400.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// The body was sent as a media type other than JSON (the `Content-Type` it was sent
    /// with). 415.
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the limit. 413.
    #[error("request body over {limit} bytes")]
    PayloadTooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// Well-formed, but some values are invalid: one entry per bad field. 422.
    #[error("invalid request: {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The `Idempotency-Key` was first used with another body. 422.
    #[error("idempotency key reused with another body")]
    IdempotencyKeyReused,
    /// No order with this id (or the id is not an order id at all). 404.
    #[error("order {0} not found")]
    OrderNotFound(String),
    /// No route for the path. 404.
    #[error("no route for this path")]
    RouteNotFound,
    /// No such resource of another kind (a SKU, a projection, a consumer, a dead letter).
    /// 404; `what` names the kind in kebab case (`sku`, `dead-letter`).
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of resource, in kebab case (`sku`, `dead-letter`).
        what: &'static str,
        /// The id that was asked for, as given.
        id: String,
    },
    /// The admin routes are off because no admin token is configured. 404, with how to turn
    /// them on.
    #[error("the admin routes are off")]
    AdminDisabled,
    /// An admin route without the right bearer token. 401, with `WWW-Authenticate: Bearer`.
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// `/metrics` on a gateway started without a metrics recorder. 404.
    #[error("metrics are off")]
    MetricsDisabled,
    /// The work is already being done by someone else (a rebuild in progress). 409.
    #[error("{0}")]
    Busy(String),
    /// A service this route needs is not configured in this gateway (NATS, ...). 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The route exists but not for this method. 405, with an `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the resource allows (`GET, PUT`), the value of the `Allow` header;
        /// `None` when not known, and then no `Allow` header is sent.
        allow: Option<String>,
    },
    /// The command does not fit the order's current state. 409.
    #[error("{0}")]
    WrongState(String),
    /// Another command changed the order at the same time. 409; a retry may succeed.
    #[error("the order was changed by another request at the same time")]
    ConcurrentChange,
    /// The event store (PostgreSQL) does not answer: refused, lost, or hanging. 503, with
    /// `Retry-After`; holds why, which is logged, not shown.
    #[error("the event store does not answer: {0}")]
    DatabaseUnavailable(String),
    /// The event store stopped answering while a command was being written, so it may or
    /// may not have been stored. 503, with `Retry-After`; holds why, which is logged.
    #[error("the event store stopped answering during a write: {0}")]
    OutcomeUnknown(String),
    /// The service cannot serve now (readiness). 503.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A failure of the server; the cause is logged, not shown. 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An [`ApiError::Invalid`] for one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::OrderNotFound(_)
            | ApiError::RouteNotFound
            | ApiError::NotFound { .. }
            | ApiError::AdminDisabled
            | ApiError::MetricsDisabled => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::WrongState(_) | ApiError::ConcurrentChange | ApiError::Busy(_) => {
                StatusCode::CONFLICT
            }
            ApiError::NotReady(_)
            | ApiError::Unavailable(_)
            | ApiError::DatabaseUnavailable(_)
            | ApiError::OutcomeUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document of this error. Logs the cause of a 500.
    pub fn problem(&self) -> Problem {
        let (slug, title, detail, errors): (std::borrow::Cow<'static, str>, &str, String, _) =
            match self {
            ApiError::MalformedBody(why) => (
                "malformed-body".into(),
                "The request body is not valid JSON of the expected shape",
                why.clone(),
                None,
            ),
            ApiError::BadRequest(why) => ("bad-request".into(), "The request is malformed", why.clone(), None),
            ApiError::PayloadTooLarge { limit } => (
                "payload-too-large".into(),
                "The request body is too large",
                format!("the body must not be larger than {limit} bytes"),
                None,
            ),
            ApiError::UnsupportedMediaType(sent) => (
                "unsupported-media-type".into(),
                "The request body is not JSON",
                format!(
                    "the body was sent as {sent}; send it as JSON, with \
                     `Content-Type: application/json`"
                ),
                None,
            ),
            ApiError::Invalid(errors) => (
                "invalid-request".into(),
                "The request has invalid values",
                match errors.as_slice() {
                    [one] => format!("{}: {}", one.field, one.message),
                    many => format!("{} fields are invalid", many.len()),
                },
                Some(errors.clone()),
            ),
            ApiError::IdempotencyKeyReused => (
                "idempotency-key-reused".into(),
                "The Idempotency-Key was used with another request body",
                "this Idempotency-Key was first used with a different body; use a new key for a new order"
                    .to_string(),
                Some(vec![FieldError::new(
                    "Idempotency-Key",
                    "was already used with a different body",
                )]),
            ),
            ApiError::OrderNotFound(id) => (
                "order-not-found".into(),
                NOT_FOUND_TITLE,
                format!("there is no order with id {id}"),
                None,
            ),
            ApiError::RouteNotFound => (
                "not-found".into(),
                NOT_FOUND_TITLE,
                "there is no resource at this path".to_string(),
                None,
            ),
            ApiError::NotFound { what, id } => (
                format!("{what}-not-found").into(),
                NOT_FOUND_TITLE,
                format!("there is no {} {id}", what.replace('-', " ")),
                None,
            ),
            ApiError::AdminDisabled => (
                "admin-disabled".into(),
                "The admin routes are off",
                "the admin routes are disabled because no admin token is configured; to enable \
                 them, set ORDERFLOW_ADMIN_TOKEN to a secret, restart the gateway, and send \
                 `Authorization: Bearer <token>`"
                    .to_string(),
                None,
            ),
            ApiError::Unauthorized => (
                "unauthorized".into(),
                "Unauthorized",
                "the admin routes need `Authorization: Bearer <token>` with the token configured \
                 in ORDERFLOW_ADMIN_TOKEN"
                    .to_string(),
                None,
            ),
            ApiError::MetricsDisabled => (
                "metrics-disabled".into(),
                "Metrics are off",
                "this gateway was started without a metrics recorder, so /metrics has nothing to \
                 show"
                    .to_string(),
                None,
            ),
            ApiError::Busy(why) => ("busy".into(), "Already in progress", why.clone(), None),
            ApiError::Unavailable(why) => (
                "unavailable".into(),
                "A service this route needs is not available",
                why.clone(),
                None,
            ),
            ApiError::MethodNotAllowed { allow } => (
                "method-not-allowed".into(),
                "Method not allowed",
                match allow {
                    Some(allow) => format!("this resource allows only {allow}"),
                    None => "this method is not allowed on this resource".to_string(),
                },
                None,
            ),
            ApiError::WrongState(why) => (
                "wrong-state".into(),
                "The order is not in a state that allows this",
                why.clone(),
                None,
            ),
            ApiError::ConcurrentChange => (
                "concurrent-change".into(),
                "The order was changed at the same time",
                "another request changed the order at the same time; retry".to_string(),
                None,
            ),
            ApiError::DatabaseUnavailable(_) => (
                "database-unavailable".into(),
                "The event store is not available",
                format!(
                    "the event store (PostgreSQL) does not answer or is too busy, so nothing was \
                     done; retry in {RETRY_AFTER_SECS} s or so (an order retried with the same Idempotency-Key \
                     is placed at most once)"
                ),
                None,
            ),
            ApiError::OutcomeUnknown(why) => {
                tracing::warn!(%why, "the event store stopped answering during a write");
                (
                    "outcome-unknown".into(),
                    "The event store stopped answering during the write",
                    format!(
                        "the event store (PostgreSQL) stopped answering while this request was \
                         being written, so it may or may not have been carried out; retry in \
                         {RETRY_AFTER_SECS} s or so with the same Idempotency-Key (the order is \
                         placed at most once and the retry answers with it), or read the order \
                         to see"
                    ),
                    None,
                )
            }
            ApiError::NotReady(why) => ("not-ready".into(), "Not ready", why.clone(), None),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed with an internal error");
                (
                    "internal".into(),
                    "Internal server error",
                    "the server failed to handle the request; the cause was logged".to_string(),
                    None,
                )
            }
        };
        Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.to_string(),
            status: self.status().as_u16(),
            detail,
            errors,
        }
    }

    /// The full answer: status, `application/problem+json` body, and `Allow` on a 405.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = warp::http::Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::MethodNotAllowed { allow: Some(allow) } => {
                if let Ok(allow) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"orderflow-admin\""),
                );
            }
            ApiError::DatabaseUnavailable(_)
            | ApiError::OutcomeUnknown(_)
            | ApiError::NotReady(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    /// The answer to a refused or failed command on order `order_id`.
    pub fn from_command(order_id: uuid::Uuid, error: CommandError) -> Self {
        match error {
            CommandError::Domain(OrderError::NotFound) => {
                ApiError::OrderNotFound(order_id.to_string())
            }
            CommandError::Domain(
                e @ (OrderError::AlreadyExists(_)
                | OrderError::WrongState { .. }
                | OrderError::Conflicting { .. }),
            ) => ApiError::WrongState(e.to_string()),
            CommandError::Conflict => ApiError::ConcurrentChange,
            CommandError::Unavailable(why) => ApiError::DatabaseUnavailable(why),
            CommandError::OutcomeUnknown(why) => ApiError::OutcomeUnknown(why),
            CommandError::Store(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => error.into(),
            error => ApiError::Internal(error_chain(&error)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_connection_error(&error) {
            ApiError::DatabaseUnavailable(error_chain(&error))
        } else {
            ApiError::Internal(error_chain(&error))
        }
    }
}

/// `error: cause: cause ...`, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An [`ApiError`] carried through warp as a rejection (handlers answer errors themselves;
/// this is for filters that can only reject).
#[derive(Debug)]
pub struct Rejected(pub ApiError);

impl warp::reject::Reject for Rejected {}

/// Turns every rejection into a problem answer. Installed once, around all routes.
///
/// # Errors
/// Never: every rejection becomes a response.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(from_rejection(&rejection).into_response())
}

fn from_rejection(rejection: &Rejection) -> ApiError {
    if rejection.is_not_found() {
        return ApiError::RouteNotFound;
    }
    if let Some(Rejected(error)) = rejection.find::<Rejected>() {
        return error.clone();
    }
    if rejection.find::<MethodNotAllowed>().is_some() {
        return ApiError::MethodNotAllowed { allow: None };
    }
    if rejection.find::<PayloadTooLarge>().is_some() {
        return ApiError::PayloadTooLarge {
            limit: crate::body::MAX_BODY_BYTES,
        };
    }
    if rejection.find::<InvalidQuery>().is_some() {
        return ApiError::BadRequest("the query string cannot be parsed".into());
    }
    if let Some(e) = rejection.find::<InvalidHeader>() {
        return ApiError::BadRequest(format!("the header {} is invalid", e.name()));
    }
    if let Some(e) = rejection.find::<MissingHeader>() {
        return ApiError::BadRequest(format!("the header {} is missing", e.name()));
    }
    if rejection.find::<LengthRequired>().is_some() {
        return ApiError::BadRequest("a Content-Length header is required".into());
    }
    if rejection.find::<UnsupportedMediaType>().is_some() {
        return ApiError::UnsupportedMediaType("a media type this route does not take".into());
    }
    if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        return ApiError::MalformedBody(e.to_string());
    }
    ApiError::Internal(format!("unhandled rejection: {rejection:?}"))
}
