//! orderflow's test kit: everything the tests of the workspace share.
//!
//! - [`World`]: one test's world on the real services: a fresh database named
//!   `orderflow_test_<uuid>` with a connection budget ([`TestDatabase`]), a stream pair and
//!   subject prefix of its own ([`TestBus`]), the order store, and [`World::cleanup`].
//! - [`OrderFixture`]: valid orders (`PlaceOrder`) with defaults for everything a test does
//!   not care about.
//! - [`log`]: numbering the event log as the relay does, reading it back, and draining it into
//!   projections as their consumers do.
//! - [`bus`]: reading back whole streams, and consumer settings for tests.
//! - [`process`]: the `orderflow` binary as a child process over a world ([`orderflow!`]).
//! - [`http`]: a small HTTP server that records the idempotency keys of what it is sent.
//! - [`load`]: a steady load of orders through the real gateway.
//! - [`partner`]: a carrier or mail service that answers at its own pace, goes down and
//!   comes back, and refuses more than so many requests a second.
//! - [`nats`]: a `nats-server` of a test's own, to kill, wipe and restart, and a three-node
//!   JetStream cluster of a test's own, to kill and restart the node that leads a stream.
//! - [`proxy`]: a proxy in front of PostgreSQL that loses the answer to one write.
//! - [`cpu`]: a CPU cap on one process a test started: a starved machine on demand.
//! - [`postgres`]: a PostgreSQL cluster of a test's own (`initdb` on a free port), to stop,
//!   kill and start again.
//!
//! # Why a crate of its own
//!
//! The tests of several packages need the same helpers: the root package's integration test
//! binaries (`tests/api`, `tests/fanout`, `tests/projections`, `tests/system`), the tests of
//! `orderflow-store`, `orderflow-bus` and `orderflow-workers`, and the benchmarks. Test
//! binaries cannot share modules across packages, and a `testing` module inside a production
//! crate would ship test code in its public API. So the kit is a crate of its own that nothing
//! depends on except as a dev-dependency, and that is never published. It depends on
//! `orderflow-store`, `orderflow-bus` and `orderflow-projections` like any user does; they in
//! turn use the kit only for their own tests and benchmarks, a cycle cargo allows for
//! dev-dependencies.
//!
//! # Services
//!
//! Tests run against the real PostgreSQL (`ORDERFLOW_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and NATS with JetStream
//! (`ORDERFLOW_TEST_NATS_URL`, default `nats://127.0.0.1:4222`). When one cannot be reached,
//! the test fails with a message saying how to start it (`scripts/services up`); it never
//! skips.

pub mod bus;
pub mod cpu;
pub mod database;
pub mod delay;
pub mod fixture;
pub mod http;
pub mod load;
pub mod log;
pub mod nats;
pub mod partner;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod world;

pub use bus::{fast_consumer, read_stream, StoredMessage, TestBus};
pub use database::{server_url, TestDatabase};
pub use fixture::OrderFixture;
pub use process::{binary_env, free_port, Orderflow, Process};
pub use world::World;
