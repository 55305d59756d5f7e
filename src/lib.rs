//! orderflow, the application: one binary whose commands run each role of the system (or all
//! of them in one process) and the operator tools.
//!
//! # Layout
//! - [`cli`]: the command line (clap) and one module per operator command.
//! - [`config`]: flags and `ORDERFLOW_*` environment variables, with defaults.
//! - [`telemetry`]: the `tracing` subscriber.
//! - [`app`]: starting the roles (gateway, relay, workers, projections) and stopping them
//!   gracefully on SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod telemetry;
