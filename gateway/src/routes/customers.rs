//! `GET /v1/customers/{id}/orders`: one customer's orders from the order-summary projection,
//! newest first, with the same filters and cursor as `GET /v1/orders`.

use std::convert::Infallible;

use orderflow_projections::order_summary::OrderPage;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use crate::problem::{ApiError, Problem};
use crate::request_id::{request_id, RequestId};
use crate::routes::orders::{list_page, order_filter};
use crate::routes::{decode_segment, into_response, method_not_allowed, with_state};
use crate::telemetry::tag;
use crate::GatewayState;

/// `GET /v1/customers/{id}/orders`, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let path = || warp::path!("v1" / "customers" / String / "orders");
    path()
        .and(warp::get())
        .and(with_state(&state))
        .and(request_id())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(customer_orders)
        .or(path()
            .and(method_not_allowed("GET"))
            .map(|_: String, response| response))
        .unify()
        .map(tag("/v1/customers/{id}/orders"))
        .boxed()
}

/// One customer's orders, newest first, a page at a time (a customer without orders has an
/// empty page, not a 404: customers are not a resource of their own here).
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/orders",
    tag = "orders",
    params(
        ("id" = String, Path, description = "The customer id, 1 to 100 characters"),
        ("status" = Option<orderflow_domain::OrderStatus>, Query, description = "Only orders in this status"),
        ("placed_after" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Only orders placed strictly after this RFC 3339 time"),
        ("limit" = Option<u32>, Query, description = "Orders per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of the customer's orders, newest first", body = OrderPage),
        (status = 400, description = "The query string cannot be parsed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter has an invalid value, named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The read model failed; the cause is logged, not shown", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, customer_id = %raw_id))]
pub async fn customer_orders(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
    query: Vec<(String, String)>,
) -> Result<Response, Infallible> {
    let answer = async {
        let customer_id = decode_segment(&raw_id).ok_or_else(|| {
            ApiError::invalid("customer_id", "is not valid percent-encoded UTF-8")
        })?;
        let filter = order_filter(&query, Some(customer_id))?;
        list_page(&state, &filter).await
    }
    .await;
    Ok(request_id.stamp(into_response(answer)))
}
