//! `PUT /v1/inventory/{sku}` and `GET /v1/inventory/{sku}`: set and read the stock the
//! inventory worker reserves from (its own tables, see `orderflow_workers::inventory`).

use orderflow_domain::Sku;
use orderflow_workers::inventory::{self, InventoryError, StockLevel};
use tracing::{Instrument, Span};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::body::{self, Body};
use crate::dto::SetStockRequest;
use crate::problem::{error_chain, ApiError};
use crate::reply::{respond2, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{decode_segment, detached, paths, with_state, Resource};
use crate::GatewayState;

/// Both inventory routes, with their 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let s = &state;
    Resource::new(paths::INVENTORY_SKU)
        .on_param(Method::PUT, |path| {
            path.and(with_state(s))
                .and(body::limited())
                .and(request_id())
                .then(respond3(set_stock))
                .boxed()
        })
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(get_stock))
                .boxed()
        })
        .build()
}

fn parse_sku(raw: &str) -> Option<Sku> {
    decode_segment(raw).and_then(|s| Sku::parse(&s).ok())
}

/// Set the available stock of a SKU (creating it). What is reserved stays reserved.
#[utoipa::path(
    put,
    path = paths::INVENTORY_SKU,
    tag = "inventory",
    params(("sku" = orderflow_domain::Sku, Path, description = "The SKU")),
    request_body(content = SetStockRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The SKU's stock after the change", body = StockLevel),
        (status = 400, description = "Malformed JSON, or not an object"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "`available` missing, not an integer or negative, an unknown field, or a SKU that is not valid; one entry per field in `errors`"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, sku = %raw_sku))]
pub async fn set_stock(
    raw_sku: String,
    state: GatewayState,
    body: Body,
    request_id: RequestId,
) -> Result<Json<StockLevel>, ApiError> {
    detached(
        async move {
            let sku = decode_segment(&raw_sku)
                .ok_or_else(|| ApiError::invalid("sku", "is not valid percent-encoded UTF-8"))
                .and_then(|s| Sku::parse(&s).map_err(|e| ApiError::Invalid(vec![e])));
            let request = body::parse_json::<SetStockRequest>(&body?).map(|(r, _)| r);
            let (sku, request) = match (sku, request) {
                (Ok(sku), Ok(request)) => (sku, request),
                // Name a bad SKU and bad body fields at once.
                (Err(ApiError::Invalid(mut a)), Err(ApiError::Invalid(b))) => {
                    a.extend(b);
                    return Err(ApiError::Invalid(a));
                }
                (_, Err(e)) | (Err(e), _) => return Err(e),
            };
            if request.available < 0 {
                return Err(ApiError::invalid("available", "must be 0 or more"));
            }
            let level = inventory::set_stock(&state.pool, &sku, request.available)
                .await
                .map_err(|e| match e {
                    InventoryError::Negative(_) => {
                        ApiError::invalid("available", "must be 0 or more")
                    }
                    InventoryError::Database(e) => ApiError::Internal(error_chain(&e)),
                })?;
            tracing::info!(available = level.available, "stock set");
            Ok(Json::ok(level))
        }
        .instrument(Span::current()),
    )
    .await
}

/// Read the stock of a SKU: what can still be reserved, and what reservations hold.
#[utoipa::path(
    get,
    path = paths::INVENTORY_SKU,
    tag = "inventory",
    params(("sku" = orderflow_domain::Sku, Path, description = "The SKU")),
    responses(
        (status = 200, description = "The SKU's stock", body = StockLevel),
        (status = 404, description = "No stock was ever set for this SKU (or it is not a SKU)"),
        (status = 500, description = "The database failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, sku = %raw_sku))]
pub async fn get_stock(
    raw_sku: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<StockLevel>, ApiError> {
    let not_found = || ApiError::NotFound {
        what: "sku",
        id: raw_sku.clone(),
    };
    let sku = parse_sku(&raw_sku).ok_or_else(not_found)?;
    let level = inventory::get_stock(&state.pool, &sku)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json::ok(level))
}
