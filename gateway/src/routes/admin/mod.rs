//! The operator routes under `/v1/admin/...`, behind the admin bearer token
//! ([`crate::auth`]), one module per resource: [`consumers`] (lag, and replaying a range of
//! the log to one consumer), [`projections`] (list, rebuild, verify), [`orders`] (an order's
//! timeline), [`customers`] (forgetting one), [`console`] (the operator console's live feed), [`dlq`] (the dead-letter stream: list, show, redrive) and [`stream`] (the
//! stream verified against the log). This module joins
//! them behind the token check and holds the helpers they share.
//!
//! Without a configured token every path under `/v1/admin/` answers 404 with a problem that
//! says how to turn them on; with one, a request without it answers 401. The check runs
//! before anything else, so an unauthorised caller learns nothing about which admin paths
//! exist.

pub mod console;
pub mod consumers;
pub mod customers;
pub mod dlq;
pub mod orders;
pub mod projections;
pub mod stream;

use orderflow_bus::Bus;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use crate::auth::require_admin;
use crate::problem::{self, error_chain, ApiError};
use crate::routes::{paths, Resource};
use crate::telemetry::{tag, RouteTemplate};
use crate::GatewayState;

pub use consumers::MAX_REPLAY_EVENTS;
pub use dlq::{DEFAULT_DLQ_LIMIT, MAX_DLQ_LIMIT};

/// Every admin route, behind the token check, with their 405s.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let inner = consumers::routes(&state)
        .or(projections::routes(&state))
        .unify()
        .or(orders::routes(&state))
        .unify()
        .or(dlq::routes(&state))
        .unify()
        .or(stream::routes(&state))
        .unify()
        .or(customers::routes(&state))
        .unify()
        .or(console::routes(&state))
        .unify();
    warp::path("v1")
        .and(warp::path("admin"))
        .and(
            require_admin(&state)
                .and(inner)
                .recover(problem::recover)
                .unify(),
        )
        .map(|response: Response| {
            // Refusals and unknown admin paths count under one template.
            if response.extensions().get::<RouteTemplate>().is_some() {
                response
            } else {
                tag(paths::ADMIN_ANY)(response)
            }
        })
        .boxed()
}

/// A resource under `/v1/admin`, matched inside the filter that took the prefix.
fn at(template: &'static str) -> Resource {
    Resource::under(paths::ADMIN_PREFIX, template)
}

pub(super) fn bus(state: &GatewayState) -> Result<&Bus, ApiError> {
    state.bus.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this gateway runs without NATS JetStream; start it with NATS to see consumers and \
             dead letters"
                .into(),
        )
    })
}

pub(super) fn internal(error: &dyn std::error::Error) -> ApiError {
    ApiError::Internal(error_chain(error))
}

/// JetStream failing (or its streams missing) is a dependency that is not available: 503.
pub(super) fn jetstream(error: &dyn std::error::Error) -> ApiError {
    tracing::warn!(error = %error_chain(error), "JetStream request failed");
    ApiError::Unavailable(format!(
        "NATS JetStream did not answer as expected: {error}"
    ))
}
