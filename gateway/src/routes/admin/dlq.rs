//! The dead-letter stream: `GET /v1/admin/dlq` (list), `GET /v1/admin/dlq/{seq}` (show) and
//! `POST /v1/admin/dlq/{seq}/redrive`.

use orderflow_bus::dlq::{self, DlqError, Redriven};
use tracing::{Instrument, Span};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::{at, bus, internal, jetstream};
use crate::dto::{DeadLetterResponse, DeadLettersResponse};
use crate::problem::ApiError;
use crate::reply::{respond2, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{detached, paths, query_param, with_state};
use crate::GatewayState;

/// Most dead letters one `GET /v1/admin/dlq` lists.
pub const MAX_DLQ_LIMIT: usize = 1_000;
/// Dead letters listed when no `limit` is given.
pub const DEFAULT_DLQ_LIMIT: usize = 100;

/// The dead-letter routes.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
    let query = warp::query::<Vec<(String, String)>>;
    let dlq_list = at(paths::ADMIN_DLQ)
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(query())
                .and(request_id())
                .then(respond2(list_dead_letters))
                .boxed()
        })
        .build();
    let dlq_show = at(paths::ADMIN_DLQ_LETTER)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(show_dead_letter))
                .boxed()
        })
        .build();
    let dlq_redrive = at(paths::ADMIN_DLQ_REDRIVE)
        .on_param(Method::POST, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(redrive_dead_letter))
                .boxed()
        })
        .build();
    dlq_list
        .or(dlq_show)
        .unify()
        .or(dlq_redrive)
        .unify()
        .boxed()
}

fn dlq_error(error: DlqError) -> ApiError {
    match error {
        DlqError::NotFound(sequence) => ApiError::NotFound {
            what: "dead-letter",
            id: sequence.to_string(),
        },
        DlqError::Bus(e) => jetstream(&e),
        other @ DlqError::Unreadable { .. } => internal(&other),
    }
}

fn dlq_sequence(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| ApiError::NotFound {
        what: "dead-letter",
        id: raw.to_string(),
    })
}

/// Parked messages, oldest first, of one consumer or of all.
#[utoipa::path(
    get,
    path = paths::ADMIN_DLQ,
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("consumer" = Option<String>, Query, description = "Only this consumer's dead letters"),
        ("limit" = Option<crate::params::DeadLetterLimit>, Query, description = "At most this many"),
    ),
    responses(
        (status = 200, description = "The dead letters", body = DeadLettersResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 422, description = "`limit` is not an integer from 1 to 1000"),
        (status = 500, description = "A dead letter cannot be read; the cause is logged, not shown"),
        (status = 503, description = "This gateway runs without NATS, or JetStream failed (`detail` says which)"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn list_dead_letters(
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<DeadLettersResponse>, ApiError> {
    let limit = match query_param(&query, "limit") {
        None => DEFAULT_DLQ_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_DLQ_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("must be an integer from 1 to {MAX_DLQ_LIMIT}"),
                ))
            }
        },
    };
    let bus = bus(&state)?;
    let consumer = query_param(&query, "consumer").filter(|c| !c.is_empty());
    let dead_letters = dlq::list(bus, consumer, limit)
        .await
        .map_err(dlq_error)?
        .into_iter()
        .map(DeadLetterResponse::from)
        .collect();
    Ok(Json::ok(DeadLettersResponse { dead_letters }))
}

/// One parked message, with the error and the original body.
#[utoipa::path(
    get,
    path = paths::ADMIN_DLQ_LETTER,
    tag = "admin",
    security(("admin_token" = [])),
    params(("seq" = crate::params::DeadLetterSequence, Path, description = "The dead letter's sequence in the dead-letter stream")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such dead letter (or redriven since), or the admin routes are off"),
        (status = 500, description = "A dead letter cannot be read; the cause is logged, not shown"),
        (status = 503, description = "This gateway runs without NATS, or JetStream failed (`detail` says which)"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, sequence = %raw))]
pub async fn show_dead_letter(
    raw: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<DeadLetterResponse>, ApiError> {
    let sequence = dlq_sequence(&raw)?;
    let bus = bus(&state)?;
    let parked = dlq::show(bus, sequence).await.map_err(dlq_error)?;
    Ok(Json::ok(DeadLetterResponse::from(parked)))
}

/// Send a parked message back to the consumer that gave up on it (only that consumer sees
/// it), then delete it from the dead-letter stream.
#[utoipa::path(
    post,
    path = paths::ADMIN_DLQ_REDRIVE,
    tag = "admin",
    security(("admin_token" = [])),
    params(("seq" = crate::params::DeadLetterSequence, Path, description = "The dead letter's sequence in the dead-letter stream")),
    responses(
        (status = 200, description = "What was re-published", body = Redriven),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such dead letter (or redriven already), or the admin routes are off"),
        (status = 500, description = "A dead letter cannot be read; the cause is logged, not shown"),
        (status = 503, description = "This gateway runs without NATS, or JetStream failed (`detail` says which)"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, sequence = %raw))]
pub async fn redrive_dead_letter(
    raw: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<Redriven>, ApiError> {
    detached(
        async move {
            let sequence = dlq_sequence(&raw)?;
            let bus = bus(&state)?;
            let redriven = dlq::redrive(bus, sequence).await.map_err(dlq_error)?;
            Ok(Json::ok(redriven))
        }
        .instrument(Span::current()),
    )
    .await
}
