//! The fault suite: the real `orderflow` binaries under a steady load of orders while a fault
//! is injected, one file per fault. Every fault goes only into services the test started
//! itself (its own `nats-server` with its own store folder, its own PostgreSQL cluster), never
//! into the machine's shared services. After each fault, every order accepted with a 201
//! reaches its final state, the stream holds every stored event exactly once, and no effect
//! happened twice ([`harness::System::assert_settled_once`]).

mod harness;
mod nats_killed;
mod postgres_restart;
