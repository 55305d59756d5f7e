//! `POST /v1/admin/customers/{id}/forget`: forgets a customer (crypto-shredding), as
//! `orderflow forget customer` does.

use orderflow_domain::CustomerId;
use orderflow_store::vault::Forgotten;
use tracing::{Instrument, Span};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::{at, internal};
use crate::problem::ApiError;
use crate::reply::{respond2, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{decode_segment, detached, paths, with_state};
use crate::GatewayState;

pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
    at(paths::ADMIN_CUSTOMER_FORGET)
        .on_param(Method::POST, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(forget_customer))
                .boxed()
        })
        .build()
        .boxed()
}

/// Forgets a customer: deletes their data key, so that their e-mail address and shipping
/// address read as erased in every event, replay and timeline (and every copy of the stream);
/// erases what the workers kept of them; records the fact. Their orders keep their lines,
/// totals and status. Forgetting again answers 200 with nothing deleted.
#[utoipa::path(
    post,
    path = paths::ADMIN_CUSTOMER_FORGET,
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = CustomerId, Path, description = "The customer id (percent-encoded; trimmed, as when the order was placed)"),
    ),
    responses(
        (status = 200, description = "The customer is forgotten", body = Forgotten),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 422, description = "The customer id is blank, too long or not percent-encoded UTF-8"),
        (status = 500, description = "The database failed; nothing was forgotten; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn forget_customer(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<Forgotten>, ApiError> {
    let raw = decode_segment(&raw_id)
        .ok_or_else(|| ApiError::invalid("customer_id", "is not valid percent-encoded UTF-8"))?;
    let customer_id = CustomerId::parse(&raw).map_err(|e| ApiError::Invalid(vec![e]))?;
    // Detached: a client that hangs up cannot cut the forgetting in half.
    detached(
        async move {
            let forgotten = state
                .orders
                .vault()
                .forget(customer_id.as_str())
                .await
                .map_err(|e| internal(&e))?;
            Ok(Json::ok(forgotten))
        }
        .instrument(Span::current()),
    )
    .await
}
