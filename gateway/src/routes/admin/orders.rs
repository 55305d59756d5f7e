//! `GET /v1/admin/orders/{id}/replay`: an order's events, each with the state after it;
//! `GET /v1/admin/orders/{id}/trace`: an order's full trace (what every consumer did with
//! each event, and what each event caused).

use orderflow_operations::replay::{self, OrderTimeline};
use orderflow_operations::trace::{self, OrderTrace};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::at;
use crate::problem::ApiError;
use crate::reply::{respond2, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, query_param, with_state};
use crate::GatewayState;

/// The order timeline route.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
    let query = warp::query::<Vec<(String, String)>>;
    let timeline = at(paths::ADMIN_ORDER_REPLAY)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(query())
                .and(request_id())
                .then(respond3(replay_order))
                .boxed()
        })
        .build();
    let traced = at(paths::ADMIN_ORDER_TRACE)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(order_trace))
                .boxed()
        })
        .build();
    timeline.or(traced).unify().boxed()
}

/// An order's full trace: the request that placed it; each event with when it was stored and
/// published, what every consumer did with it (each failed attempt with its error, a parking
/// in the dead-letter stream, a redrive, the handling with its effect; `pending` for a
/// consumer with no record yet) and the events it caused. Step records are kept for the
/// trace retention (30 days by default).
#[utoipa::path(
    get,
    path = paths::ADMIN_ORDER_TRACE,
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "The order id"),
    ),
    responses(
        (status = 200, description = "The order's trace", body = OrderTrace),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such order, or the admin routes are off"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn order_trace(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<OrderTrace>, ApiError> {
    let order_id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::OrderNotFound(raw_id.clone()))?;
    let stream = state.bus.as_ref().map(orderflow_bus::Bus::stream_name);
    match trace::order_trace(&state.pool, stream, order_id).await {
        Ok(Some(found)) => Ok(Json::ok(found)),
        Ok(None) => Err(ApiError::OrderNotFound(order_id.to_string())),
        Err(trace::TraceError::Store(error)) => Err(error.into()),
        Err(trace::TraceError::Database(error)) => Err(error.into()),
    }
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
        ("at" = Option<crate::params::EventSequence>, Query, description = "Last sequence to show, from 1 to the order's version (default: all)"),
    ),
    responses(
        (status = 200, description = "The order's timeline", body = OrderTimeline),
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
) -> Result<Json<OrderTimeline>, ApiError> {
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
    Ok(Json::ok(timeline))
}
