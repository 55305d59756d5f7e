//! `GET /v1/admin/stream/verify`: the JetStream stream compared with the event log, position
//! by position, as `orderflow verify stream` does (repairing stays with the CLI and the relay).

use orderflow_bus::stream_check;
use orderflow_bus::RelayError;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::{at, bus, internal, jetstream};
use crate::dto::StreamVerificationResponse;
use crate::problem::ApiError;
use crate::reply::{respond1, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, with_state};
use crate::GatewayState;

/// The stream routes.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
    at(paths::ADMIN_STREAM_VERIFY)
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond1(verify_stream))
                .boxed()
        })
        .build()
}

/// The stream compared with the event log: counts, first and last position, positions
/// missing from the stream up to the relay's checkpoint, positions held twice. `agrees` says
/// whether they match; `orderflow verify stream --repair` repairs them.
#[utoipa::path(
    get,
    path = paths::ADMIN_STREAM_VERIFY,
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The comparison (`agrees` false when the stream lacks or repeats positions)", body = StreamVerificationResponse),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "The admin routes are off (no ORDERFLOW_ADMIN_TOKEN)"),
        (status = 503, description = "This gateway runs without NATS, or JetStream or the store failed (`detail` says which)"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn verify_stream(
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<StreamVerificationResponse>, ApiError> {
    let bus = bus(&state)?;
    match stream_check::verify(&state.pool, bus).await {
        Ok(verification) => Ok(Json::ok(verification.into())),
        Err(RelayError::Bus(error)) => Err(jetstream(&error)),
        Err(error) => Err(internal(&error)),
    }
}
