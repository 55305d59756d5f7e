//! `GET /v1/customers/{id}/orders`: one customer's orders from the order-summary projection,
//! newest first, with the same filters and cursor as `GET /v1/orders`.

use orderflow_domain::CustomerId;
use orderflow_projections::order_summary::OrderPage;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::problem::ApiError;
use crate::reply::{respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::orders::{list_page, order_filter};
use crate::routes::{decode_segment, paths, with_state, Resource};
use crate::GatewayState;

/// `GET /v1/customers/{id}/orders`, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    Resource::new(paths::CUSTOMER_ORDERS)
        .on_param(Method::GET, |path| {
            path.and(with_state(&state))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond3(customer_orders))
                .boxed()
        })
        .build()
}

/// One customer's orders, newest first, a page at a time (a customer without orders has an
/// empty page, not a 404: customers are not a resource of their own here).
#[utoipa::path(
    get,
    path = paths::CUSTOMER_ORDERS,
    tag = "orders",
    params(
        ("id" = CustomerId, Path, description = "The customer id (percent-encoded; trimmed, as when the order was placed)"),
        ("status" = Option<orderflow_domain::OrderStatus>, Query, description = "Only orders in this status"),
        ("placed_after" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Only orders placed strictly after this RFC 3339 time"),
        ("limit" = Option<crate::params::OrderListLimit>, Query, description = "Orders per page"),
        ("cursor" = Option<crate::params::OrderListCursor>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of the customer's orders, newest first", body = OrderPage),
        (status = 400, description = "The query string cannot be parsed"),
        (status = 422, description = "A parameter has an invalid value, named in `errors`"),
        (status = 500, description = "The read model failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, customer_id = %raw_id))]
pub async fn customer_orders(
    raw_id: String,
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<OrderPage>, ApiError> {
    let customer_id = decode_segment(&raw_id)
        .ok_or_else(|| ApiError::invalid("customer_id", "is not valid percent-encoded UTF-8"))?;
    let filter = order_filter(&query, Some(customer_id))?;
    list_page(&state, &filter).await
}
