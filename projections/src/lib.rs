//! Read models of orderflow, folded from the event log: the projection framework, the
//! `order-summary` and `analytics` projections and their queries, and rebuilds (docs/DESIGN.md,
//! guarantees 6 and 7: rebuildable views, order-independent handlers).
//!
//! # Layout
//! - [`projection`]: the framework. A projection supplies its tables, row type, pure fold and
//!   batch writes ([`Fold`]); the framework runs the batch loop for the live path
//!   ([`projection::apply_live_batch`], checkpoint in the same transaction) and the rebuild, and
//!   makes every [`Fold`] a [`Projection`]. Also live/shadow [`Tables`].
//! - [`handler`]: [`ProjectionHandler`], a projection as a workers' [`orderflow_bus::Handler`]
//!   (a batch at a time, folded in one transaction; a position gap asks for a retry).
//! - [`order_summary`]: one row per order and [`order_summary::list_orders`] (cursor pages).
//! - [`analytics`]: revenue per day and currency, orders per status, sales per SKU, and
//!   [`analytics::summary`].
//! - [`mod@rebuild`]: rebuild into shadow tables and swap, verify, list, rebuild at start.
//! - [`single_pass`]: a full rebuild's fold, each event read once and each row written once,
//!   with a bounded number of rows in memory ([`SinglePass`]).
#![forbid(unsafe_code)]

pub mod analytics;
#[cfg(test)]
mod ddl_drift;
pub mod handler;
pub mod order_summary;
pub mod projection;
pub mod rebuild;
pub mod single_pass;

use std::sync::Arc;

pub use analytics::AnalyticsProjection;
pub use handler::ProjectionHandler;
pub use order_summary::OrderSummaryProjection;
pub use projection::{Fold, Projection, ProjectionError, TableSpec, Tables};
pub use rebuild::{
    ensure_current, list, rebuild, rebuild_with, Phase, Progress, ProjectionState,
    ProjectionStatus, RebuildOptions, RebuildReport,
};
pub use single_pass::SinglePass;

/// Every projection orderflow runs, in a stable order.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(OrderSummaryProjection),
        Arc::new(AnalyticsProjection),
    ]
}

/// The projection called `name` (`order-summary`, `analytics`).
///
/// # Errors
/// [`ProjectionError::Unknown`] for any other name.
pub fn by_name(name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::Unknown(name.to_string()))
}
