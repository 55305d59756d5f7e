//! The operator routes under `/v1/admin/...`, behind the admin bearer token
//! ([`crate::auth`]): consumer lag, projections (list, rebuild, verify), replay (an order's
//! timeline, a range of the log to one consumer) and the dead-letter stream (list, show,
//! redrive).
//!
//! Without a configured token every path under `/v1/admin/` answers 404 with a problem that
//! says how to turn them on; with one, a request without it answers 401. The check runs
//! before anything else, so an unauthorised caller learns nothing about which admin paths
//! exist.

use std::sync::Arc;

use orderflow_bus::dlq::{self, DlqError};
use orderflow_bus::runtime::consumer_info;
use orderflow_bus::{Bus, Handler};
use orderflow_operations::replay::{self, LogBound};
use orderflow_operations::ConsumerError;
use orderflow_projections::rebuild::ProjectionStatus;
use orderflow_projections::{ProjectionError, RebuildOptions};
use orderflow_store::log;
use orderflow_workers::registry::WORKER_NAMES;
use orderflow_workers::WorkerDeps;
use tracing::{Instrument, Span};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::require_admin;
use crate::body::{self, Body};
use crate::dto::{
    ConsumerKind, ConsumerLagResponse, ConsumersResponse, DeadLetterResponse, DeadLettersResponse,
    LogBoundRequest, OrderTimelineResponse, ProjectionResponse, ProjectionsResponse,
    RebuildRequest, RedriveResponse, ReplayConsumerRequest, ReplayReportResponse, VerifyResponse,
};
use crate::problem::{self, error_chain, ApiError};
use crate::rebuilds::RebuildTask;
use crate::reply::{respond1, respond2, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{detached, paths, query_param, with_state, Resource};
use crate::telemetry::{tag, RouteTemplate};
use crate::GatewayState;

/// Most events one `POST /v1/admin/consumers/{name}/replay` replays.
pub use orderflow_operations::replay::MAX_REPLAY_EVENTS;
/// Most dead letters one `GET /v1/admin/dlq` lists.
pub const MAX_DLQ_LIMIT: usize = 1_000;
/// Dead letters listed when no `limit` is given.
pub const DEFAULT_DLQ_LIMIT: usize = 100;

/// Every admin route, behind the token check, with their 405s.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let s = &state;
    let query = warp::query::<Vec<(String, String)>>;
    let at = |template| Resource::under(paths::ADMIN_PREFIX, template);
    let consumers = at(paths::ADMIN_CONSUMERS)
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond1(list_consumers))
                .boxed()
        })
        .build();
    let replay_consumer = at(paths::ADMIN_CONSUMER_REPLAY)
        .on_param(Method::POST, |path| {
            path.and(with_state(s))
                .and(body::limited())
                .and(request_id())
                .then(respond3(replay_consumer))
                .boxed()
        })
        .build();
    let projections = at(paths::ADMIN_PROJECTIONS)
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond1(list_projections))
                .boxed()
        })
        .build();
    let rebuild = at(paths::ADMIN_PROJECTION_REBUILD)
        .on_param(Method::POST, |path| {
            path.and(with_state(s))
                .and(body::limited())
                .and(request_id())
                .then(respond3(rebuild_projection))
                .boxed()
        })
        .build();
    let timeline = at(paths::ADMIN_ORDER_REPLAY)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(query())
                .and(request_id())
                .then(respond3(replay_order))
                .boxed()
        })
        .build();
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
    let inner = consumers
        .or(replay_consumer)
        .unify()
        .or(projections)
        .unify()
        .or(rebuild)
        .unify()
        .or(timeline)
        .unify()
        .or(dlq_list)
        .unify()
        .or(dlq_show)
        .unify()
        .or(dlq_redrive)
        .unify();
    warp::path("v1")
        .and(warp::path("admin"))
        .and(
            require_admin(&state)
                .and(inner)
                .recover(problem::recover)
                .unify(),
        )
        .map(|response: Response| {
            // Refusals and unknown admin paths count under one template.
            if response.extensions().get::<RouteTemplate>().is_some() {
                response
            } else {
                tag(paths::ADMIN_ANY)(response)
            }
        })
        .boxed()
}

fn bus(state: &GatewayState) -> Result<&Bus, ApiError> {
    state.bus.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this gateway runs without NATS JetStream; start it with NATS to see consumers and \
             dead letters"
                .into(),
        )
    })
}

fn internal(error: &dyn std::error::Error) -> ApiError {
    ApiError::Internal(error_chain(error))
}

/// JetStream failing (or its streams missing) is a dependency that is not available: 503.
fn jetstream(error: &dyn std::error::Error) -> ApiError {
    tracing::warn!(error = %error_chain(error), "JetStream request failed");
    ApiError::Unavailable(format!(
        "NATS JetStream did not answer as expected: {error}"
    ))
}

/// The lag of every durable consumer orderflow runs (workers, then projections).
#[utoipa::path(
    get,
    path = paths::ADMIN_CONSUMERS,
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Each consumer's pending, ack-pending and redelivered counts and last handled position", body = ConsumersResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 503, description = "This gateway runs without NATS, or JetStream failed (`detail` says which)"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn list_consumers(
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<ConsumersResponse>, ApiError> {
    let bus = bus(&state)?;
    let projections = orderflow_projections::all();
    let mut names: Vec<(&str, ConsumerKind)> = WORKER_NAMES
        .iter()
        .map(|n| (*n, ConsumerKind::Worker))
        .collect();
    names.extend(
        projections
            .iter()
            .map(|p| (p.name(), ConsumerKind::Projection)),
    );
    let only: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    let lags = consumer_info(bus, &only).await.map_err(|e| jetstream(&e))?;
    let consumers = lags
        .into_iter()
        .zip(names.iter())
        .map(|(lag, (_, kind))| ConsumerLagResponse {
            name: lag.name,
            kind: *kind,
            exists: lag.exists,
            pending: lag.pending,
            ack_pending: lag.ack_pending,
            redelivered: lag.redelivered,
            last_handled_position: lag.last_handled_position,
        })
        .collect();
    Ok(Json::ok(ConsumersResponse { consumers }))
}

fn projection_response(
    status: ProjectionStatus,
    rebuild: Option<RebuildTask>,
) -> ProjectionResponse {
    ProjectionResponse {
        name: status.name,
        version: status.version,
        code_version: status.code_version,
        position: status.position,
        head_position: status.head_position,
        lag: status.lag,
        state: status.state,
        updated_at: status.updated_at,
        rebuild,
    }
}

/// Every projection: its version, position, lag and state, and the last rebuild this gateway
/// started.
#[utoipa::path(
    get,
    path = paths::ADMIN_PROJECTIONS,
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every projection, by name", body = ProjectionsResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn list_projections(
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<ProjectionsResponse>, ApiError> {
    let projections = orderflow_projections::list(&state.pool)
        .await?
        .into_iter()
        .map(|status| {
            let task = state.rebuilds.get(&status.name);
            projection_response(status, task)
        })
        .collect();
    Ok(Json::ok(ProjectionsResponse { projections }))
}

/// Rebuild a projection from the event log (in the background), or verify it (inline).
///
/// Without `verify` the rebuild runs in a background task of this gateway: the answer is 202
/// and `GET /v1/admin/projections` shows its progress and outcome; the live projection keeps
/// serving until the atomic swap. With `verify` the projection is rebuilt into shadow tables
/// and compared with the live one, nothing is swapped, and the answer is the report.
#[utoipa::path(
    post,
    path = paths::ADMIN_PROJECTION_REBUILD,
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The projection: order-summary or analytics")),
    request_body(content = RebuildRequest, content_type = "application/json", description = "Optional; an empty body rebuilds"),
    responses(
        (status = 200, description = "The verify report (with `verify: true`)", body = VerifyResponse),
        (status = 202, description = "The rebuild started", body = RebuildTask,
         headers(("Location" = String, description = "/v1/admin/projections"))),
        (status = 400, description = "Malformed JSON, not an object, or unknown fields"),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such projection, or the admin routes are off"),
        (status = 409, description = "The projection is being rebuilt already"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "`verify` is not a boolean"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, projection = %name))]
pub async fn rebuild_projection(
    name: String,
    state: GatewayState,
    body: Body,
    request_id: RequestId,
) -> Result<Response, ApiError> {
    detached(
        async move {
            let projection =
                orderflow_projections::by_name(&name).map_err(|_| ApiError::NotFound {
                    what: "projection",
                    id: name.clone(),
                })?;
            let (request, _): (RebuildRequest, _) = body::parse_optional_json(&body?)?;
            let busy = || {
                ApiError::Busy(format!(
                    "projection {name} is being rebuilt; GET /v1/admin/projections shows its state"
                ))
            };
            if request.verify {
                let options = RebuildOptions {
                    verify_only: true,
                    ..RebuildOptions::default()
                };
                let report = orderflow_projections::rebuild(
                    &state.pool,
                    projection.as_ref(),
                    options,
                    &|_| {},
                )
                .await
                .map_err(|e| match e {
                    ProjectionError::AlreadyRebuilding(_) => busy(),
                    other => internal(&other),
                })?;
                tracing::info!(
                    differences = report.difference_count(),
                    "projection verified"
                );
                return Ok(Json::ok(VerifyResponse::from(report)).into_response());
            }
            let running_elsewhere = orderflow_projections::list(&state.pool)
                .await?
                .iter()
                .any(|s| s.name == name && s.state == "rebuilding");
            if running_elsewhere {
                return Err(busy());
            }
            let task = state.rebuilds.start(state.pool.clone(), projection)?;
            Ok(Json::with_status(task, StatusCode::ACCEPTED)
                .header(
                    header::LOCATION,
                    HeaderValue::from_static(paths::ADMIN_PROJECTIONS),
                )
                .into_response())
        }
        .instrument(Span::current()),
    )
    .await
}

/// An order's events, each with the state after it and what it changed (`at` stops after
/// that sequence).
#[utoipa::path(
    get,
    path = paths::ADMIN_ORDER_REPLAY,
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "The order id"),
        ("at" = Option<i64>, Query, description = "Last sequence to show, from 1 to the order's version (default: all)"),
    ),
    responses(
        (status = 200, description = "The order's timeline", body = OrderTimelineResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such order, or the admin routes are off"),
        (status = 422, description = "`at` is not an integer from 1 to the order's version"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn replay_order(
    raw_id: String,
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<OrderTimelineResponse>, ApiError> {
    let order_id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::OrderNotFound(raw_id.clone()))?;
    let events = state.orders.events(order_id).await?;
    let Some(last) = events.last().map(|e| e.sequence) else {
        return Err(ApiError::OrderNotFound(order_id.to_string()));
    };
    let at = match query_param(&query, "at") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(ApiError::invalid(
                    "at",
                    format!("must be an integer from 1 to {last}, the order's current version"),
                ))
            }
        },
    };
    replay::check_at(order_id, at, last).map_err(|e| ApiError::invalid("at", e.to_string()))?;
    let timeline = replay::timeline(order_id, &events, at)?;
    Ok(Json::ok(OrderTimelineResponse::from(timeline)))
}

/// The handler of consumer `name` (a projection or a worker).
fn consumer_handler(
    state: &GatewayState,
    name: &str,
    dry_run: bool,
) -> Result<Arc<dyn Handler>, ApiError> {
    // A dry run changes nothing and sends nothing: the default channel and carrier do.
    let deps = match (&state.worker_deps, dry_run) {
        (Some(deps), _) => Some(deps.clone()),
        (None, true) => Some(WorkerDeps::new(state.pool.clone())),
        (None, false) => None,
    };
    orderflow_operations::consumer_handler(name, state.pool.clone(), deps).map_err(|e| match e {
        ConsumerError::Unknown(_) => ApiError::NotFound {
            what: "consumer",
            id: name.to_string(),
        },
        ConsumerError::NeedsWorkerDeps(_) => ApiError::Unavailable(format!(
            "this gateway was started without the workers' configuration, so it cannot \
             replay to {name} for real; use dry_run, or `orderflow replay consumer`"
        )),
        other @ ConsumerError::Misconfigured(_) => ApiError::Unavailable(other.to_string()),
    })
}

fn bound(raw: &LogBoundRequest, field: &str) -> Result<LogBound, ApiError> {
    let bound = match raw {
        LogBoundRequest::Position(p) => LogBound::Position(*p),
        LogBoundRequest::Time(text) => text.trim().parse::<LogBound>().map_err(|_| {
            ApiError::invalid(field, "must be a position (an integer) or an RFC 3339 time")
        })?,
    };
    match bound {
        LogBound::Position(p) if p < 0 => Err(ApiError::invalid(field, "must not be negative")),
        other => Ok(other),
    }
}

/// Re-send a range of the event log to one consumer's handler and report what each event
/// did (or, with `dry_run`, would do).
///
/// Without `dry_run` the consumer's inbox still keeps an event it handled before from acting
/// twice, unless `force` is set (projections never fold an event twice; rebuild them
/// instead). At most 10,000 events per request.
#[utoipa::path(
    post,
    path = paths::ADMIN_CONSUMER_REPLAY,
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The consumer: inventory, notifications, shipments, order-summary or analytics")),
    request_body(content = ReplayConsumerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What each replayed event did or would do", body = ReplayReportResponse),
        (status = 400, description = "Malformed JSON, not an object, or unknown fields"),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such consumer, or the admin routes are off"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "`from` missing, a field of the wrong JSON type, a bound that is neither a position nor a time, `to` before `from`, or a range over 10,000 events"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "A replay to a worker for real, on a gateway without the workers' configuration"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, consumer = %name))]
pub async fn replay_consumer(
    name: String,
    state: GatewayState,
    body: Body,
    request_id: RequestId,
) -> Result<Json<ReplayReportResponse>, ApiError> {
    detached(
        async move {
            let (request, _): (ReplayConsumerRequest, _) = body::parse_json(&body?)?;
            let handler = consumer_handler(&state, &name, request.dry_run)?;
            let from = bound(&request.from, "from")?;
            let to = request.to.as_ref().map(|t| bound(t, "to")).transpose()?;
            let from = from.resolve_from(&state.pool).await?;
            let to = match to {
                Some(to) => to.resolve_to(&state.pool).await?,
                None => log::head_position(&state.pool).await?,
            };
            replay::check_range(from, to, request.to.is_some())
                .map_err(|e| ApiError::invalid("to", e.to_string()))?;
            let from = from.max(1);
            let report = replay::replay_consumer(
                &state.pool,
                handler.as_ref(),
                from,
                Some(to),
                request.dry_run,
                request.force,
            )
            .await?;
            tracing::info!(
                events = report.events.len(),
                dry_run = request.dry_run,
                force = request.force,
                "replayed to a consumer"
            );
            Ok(Json::ok(ReplayReportResponse::from(report)))
        }
        .instrument(Span::current()),
    )
    .await
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
        ("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)"),
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
    params(("seq" = u64, Path, description = "The dead letter's sequence in the dead-letter stream")),
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
    params(("seq" = u64, Path, description = "The dead letter's sequence in the dead-letter stream")),
    responses(
        (status = 200, description = "What was re-published", body = RedriveResponse),
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
) -> Result<Json<RedriveResponse>, ApiError> {
    detached(
        async move {
            let sequence = dlq_sequence(&raw)?;
            let bus = bus(&state)?;
            let redriven = dlq::redrive(bus, sequence).await.map_err(dlq_error)?;
            Ok(Json::ok(RedriveResponse::from(redriven)))
        }
        .instrument(Span::current()),
    )
    .await
}
