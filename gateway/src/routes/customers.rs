//! `GET /v1/customers/{id}/orders`: one customer's orders from the order-summary projection,
//! newest first, with the same filters and cursor as `GET /v1/orders`.
//! `GET /v1/customers/{id}/loyalty`: the customer's loyalty points, as the loyalty worker
//! keeps them.

use orderflow_domain::values::FieldError;
use orderflow_domain::CustomerId;
use orderflow_projections::order_summary::OrderPage;
use orderflow_workers::loyalty::{self, LoyaltyAccount, DEFAULT_ENTRIES, MAX_ENTRIES};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::problem::ApiError;
use crate::reply::{respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::orders::{list_page, order_filter};
use crate::routes::{decode_segment, paths, query_param, with_state, Resource};
use crate::GatewayState;

/// `GET /v1/customers/{id}/orders` and `GET /v1/customers/{id}/loyalty`, with their 405s.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let orders = Resource::new(paths::CUSTOMER_ORDERS)
        .on_param(Method::GET, |path| {
            path.and(with_state(&state))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond3(customer_orders))
                .boxed()
        })
        .build();
    let loyalty = Resource::new(paths::CUSTOMER_LOYALTY)
        .on_param(Method::GET, |path| {
            path.and(with_state(&state))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond3(customer_loyalty))
                .boxed()
        })
        .build();
    orders.or(loyalty).unify().boxed()
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

/// One customer's loyalty points: the balance (the sum of every entry) and the newest
/// entries. A customer with no points has a balance of 0 and no entries, not a 404. Points
/// appear once the loyalty worker has handled the order's shipment.
#[utoipa::path(
    get,
    path = paths::CUSTOMER_LOYALTY,
    tag = "orders",
    params(
        ("id" = CustomerId, Path, description = "The customer id (percent-encoded; trimmed, as when the order was placed)"),
        ("limit" = Option<crate::params::LoyaltyEntriesLimit>, Query, description = "Entries returned"),
    ),
    responses(
        (status = 200, description = "The customer's balance and newest entries", body = LoyaltyAccount),
        (status = 400, description = "The query string cannot be parsed"),
        (status = 422, description = "A parameter has an invalid value, named in `errors`"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, customer_id = %raw_id))]
pub async fn customer_loyalty(
    raw_id: String,
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<LoyaltyAccount>, ApiError> {
    let customer_id = decode_segment(&raw_id)
        .ok_or_else(|| ApiError::invalid("customer_id", "is not valid percent-encoded UTF-8"))?;
    let mut errors = Vec::new();
    let customer_id = CustomerId::parse(&customer_id)
        .map_err(|error| errors.push(error))
        .ok();
    let limit = match query_param(&query, "limit") {
        None => Some(DEFAULT_ENTRIES),
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_ENTRIES).contains(&n) => Some(n),
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be an integer from 1 to {MAX_ENTRIES}"),
                ));
                None
            }
        },
    };
    let (Some(customer_id), Some(limit)) = (customer_id, limit) else {
        return Err(ApiError::Invalid(errors));
    };
    let account = loyalty::account(&state.pool, customer_id.as_str(), limit).await?;
    Ok(Json::ok(account))
}
