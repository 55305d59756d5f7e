//! `GET /v1/admin/consumers` (every durable consumer's lag) and
//! `POST /v1/admin/consumers/{name}/replay` (a range of the event log re-sent to one
//! consumer's handler).

use std::sync::Arc;

use orderflow_bus::runtime::consumer_info;
use orderflow_bus::Handler;
use orderflow_operations::replay::{self, LogBound};
use orderflow_operations::ConsumerError;
use orderflow_store::log;
use orderflow_workers::registry::WORKER_NAMES;
use orderflow_workers::WorkerDeps;
use tracing::{Instrument, Span};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::{at, bus, jetstream};
use crate::body::{self, Body};
use crate::dto::{
    ConsumerKind, ConsumerLagResponse, ConsumersResponse, LogBoundRequest, ReplayConsumerRequest,
    ReplayReportResponse,
};
use crate::problem::ApiError;
use crate::reply::{respond1, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{detached, paths, with_state};
use crate::GatewayState;

/// Most events one `POST /v1/admin/consumers/{name}/replay` replays.
pub use orderflow_operations::replay::MAX_REPLAY_EVENTS;

/// The consumer routes.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
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
    consumers.or(replay_consumer).unify().boxed()
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
        .map(|(lag, (_, kind))| ConsumerLagResponse::new(lag, *kind))
        .collect();
    Ok(Json::ok(ConsumersResponse { consumers }))
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
    params(("name" = crate::params::ConsumerName, Path, description = "The consumer")),
    request_body(content = ReplayConsumerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What each replayed event did or would do", body = ReplayReportResponse),
        (status = 400, description = "Malformed JSON, or not an object"),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such consumer, or the admin routes are off"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "`from` missing, an unknown field or one of the wrong JSON type, a bound that is neither a position nor a time, `to` before `from`, or a range over 10,000 events"),
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
