//! `GET /v1/admin/projections` (every projection's state and its last rebuild started here)
//! and `POST /v1/admin/projections/{name}/rebuild` (rebuild in the background, or verify).

use orderflow_projections::{ProjectionError, ProjectionState, RebuildOptions};
use tracing::{Instrument, Span};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{at, internal};
use crate::body::{self, Body};
use crate::dto::{ProjectionResponse, ProjectionsResponse, RebuildRequest, VerifyResponse};
use crate::problem::ApiError;
use crate::rebuilds::RebuildTask;
use crate::reply::{respond1, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{detached, paths, with_state};
use crate::GatewayState;

/// The projection routes.
pub(super) fn routes(s: &GatewayState) -> BoxedFilter<(Response,)> {
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
    projections.or(rebuild).unify().boxed()
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
            ProjectionResponse::new(status, task)
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
    params(("name" = crate::params::ProjectionName, Path, description = "The projection")),
    request_body(content = RebuildRequest, content_type = "application/json", description = "Optional; an empty body rebuilds"),
    responses(
        (status = 200, description = "The verify report (with `verify: true`)", body = VerifyResponse),
        (status = 202, description = "The rebuild started", body = RebuildTask,
         headers(("Location" = String, description = "/v1/admin/projections"))),
        (status = 400, description = "Malformed JSON, or not an object"),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such projection, or the admin routes are off"),
        (status = 409, description = "The projection is being rebuilt already"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "`verify` is not a boolean, or an unknown field"),
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
                .any(|s| s.name == name && s.state == ProjectionState::Rebuilding);
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
