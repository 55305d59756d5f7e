//! `GET /v1/orders/{id}/notifications`: what the notifications worker recorded for an order
//! (one per notifiable event, with its channel and status).

use orderflow_workers::notifications;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::dto::OrderNotificationsResponse;
use crate::problem::ApiError;
use crate::reply::{respond2, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, with_state, Resource};
use crate::GatewayState;

/// The route, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    Resource::new(paths::ORDER_NOTIFICATIONS)
        .on_param(Method::GET, |path| {
            path.and(with_state(&state))
                .and(request_id())
                .then(respond2(order_notifications))
                .boxed()
        })
        .build()
}

/// The notifications sent (or being sent) to the customer about an order, oldest first.
#[utoipa::path(
    get,
    path = paths::ORDER_NOTIFICATIONS,
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order's notifications (empty until the worker handled its events)", body = OrderNotificationsResponse),
        (status = 404, description = "No such order"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn order_notifications(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<OrderNotificationsResponse>, ApiError> {
    let order_id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::OrderNotFound(raw_id.clone()))?;
    let records = notifications::list_for_order(&state.pool, order_id).await?;
    if records.is_empty() && state.orders.events(order_id).await?.is_empty() {
        return Err(ApiError::OrderNotFound(order_id.to_string()));
    }
    Ok(Json::ok(OrderNotificationsResponse {
        order_id,
        notifications: records,
    }))
}
