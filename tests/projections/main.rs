//! The projections against the real PostgreSQL: rebuildable views (docs/DESIGN.md,
//! guarantee 6), the order-summary and analytics queries, and replay for debugging.

mod lives;
mod queries;
mod rebuildable_views;
mod replay;
mod through_the_stream;
