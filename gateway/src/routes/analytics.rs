//! `GET /v1/analytics/summary?from=&to=`: the analytics projection (revenue per day and
//! currency, orders per status, sales per SKU) for orders placed in a range of UTC days.

use chrono::NaiveDate;
use orderflow_domain::FieldError;
use orderflow_projections::analytics::{self, AnalyticsSummary, SummaryError};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::problem::ApiError;
use crate::reply::{respond2, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{paths, query_param, with_state, Resource};
use crate::GatewayState;

/// The route, with its 405.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    Resource::new(paths::ANALYTICS_SUMMARY)
        .on(Method::GET, |path| {
            path.and(with_state(&state))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond2(analytics_summary))
                .boxed()
        })
        .build()
}

/// Analytics of the orders placed from `from` to `to` (inclusive UTC days, either open).
#[utoipa::path(
    get,
    path = paths::ANALYTICS_SUMMARY,
    tag = "analytics",
    params(
        ("from" = Option<NaiveDate>, Query, description = "First UTC day (YYYY-MM-DD), inclusive"),
        ("to" = Option<NaiveDate>, Query, description = "Last UTC day (YYYY-MM-DD), inclusive; not before `from`"),
    ),
    responses(
        (status = 200, description = "The summary, as of the log position it states", body = AnalyticsSummary),
        (status = 400, description = "The query string cannot be parsed"),
        (status = 422, description = "A day that is not YYYY-MM-DD, or `from` after `to`"),
        (status = 500, description = "The read model failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn analytics_summary(
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<AnalyticsSummary>, ApiError> {
    let mut errors = Vec::new();
    let mut day = |name: &str| {
        query_param(&query, name).and_then(|raw| {
            NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
                .map_err(|_| {
                    errors.push(FieldError::new(
                        name,
                        "must be a day as YYYY-MM-DD, such as 2026-11-25",
                    ))
                })
                .ok()
        })
    };
    let (from, to) = (day("from"), day("to"));
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    match analytics::summary(&state.pool, from, to).await {
        Ok(summary) => Ok(Json::ok(summary)),
        Err(SummaryError::InvalidRange { from, to }) => Err(ApiError::invalid(
            "from",
            format!("must not be after to ({from} is after {to})"),
        )),
        Err(SummaryError::Database(e)) => Err(e.into()),
    }
}
