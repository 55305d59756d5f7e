//! Integration tests of the REST gateway: each test starts the gateway on port 0 against a
//! fresh database on the real PostgreSQL (see `helpers::spawn_app`).
//!
//! # Layout
//! - `helpers`: `spawn_app()` and the typed client (`TestApp`).
//! - `orders`: placing, reading, cancelling, history, time travel, request ids.
//! - `idempotency`: `Idempotency-Key` replays, mismatches and concurrent requests.
//! - `bad_input`: every bad input answers the right status and problem+json body.
//! - `routing`: unknown paths, wrong methods, health and readiness, graceful shutdown.
//! - `openapi`: the document lists every route and real answers match its schemas.
//! - `cancellation`: clients that hang up mid-request leave nothing stuck (docs/DESIGN.md,
//!   client hang-ups).
//! - `inventory`: setting and reading stock.
//! - `lists`: `GET /v1/orders` and `GET /v1/customers/{id}/orders` (filters, cursor pages).
//! - `read_models`: notifications of an order and the analytics summary.
//! - `admin`: the admin token rules and every `/v1/admin/...` route.
//! - `answers`: one 422 with every problem of a body, one 404 title, the cancel echo.
//! - `metrics`: `GET /metrics`.
//! - `console`: the operator console's files and its live feed.

mod admin;
mod answers;
mod bad_input;
mod cancellation;
mod console;
mod forget;
mod helpers;
mod idempotency;
mod inventory;
mod lists;
mod metrics;
mod openapi;
mod orders;
mod read_models;
mod routing;
