//! The fault suite: the real `orderflow` binaries under a steady load of orders while a fault
//! is injected, one file per fault. Every fault goes only into services the test started
//! itself (its own `nats-server` or three-node JetStream cluster with their own store
//! folders, its own PostgreSQL cluster), never into the machine's shared services. After each
//! fault, every order accepted with a 201 reaches its final state, the stream holds every
//! stored event exactly once, and no effect happened twice
//! ([`harness::System::assert_settled_once`]). `cluster_replicas` checks the setup the
//! cluster faults rely on: the binary on a cluster, with replicated streams.

mod answer_lost;
mod cluster_leader;
mod cluster_replicas;
mod harness;
mod nats_killed;
mod postgres_restart;
mod stream_deleted;
