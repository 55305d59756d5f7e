//! The fan-out guarantees of docs/DESIGN.md, one module per guarantee, against the real
//! PostgreSQL and the real NATS JetStream (each test with its own database and streams).
//! Start both with `scripts/services up`.

mod checks;

mod effectively_once;
mod end_to_end;
mod graceful_stop;
mod log_order;
mod loyalty_joins;
mod no_lost_event;
mod no_overselling;
mod order_independent;
mod partners_at_their_own_pace;
mod poison_messages;
