//! No livelock (docs/DESIGN.md, guarantee 12), in a test binary of its own: it caps the CPU of
//! the `orderflow serve` it starts, and the cap is what it measures against, so it runs alone,
//! not beside the other fan-out tests, whose load would starve the broker and the database it
//! needs as well. Start PostgreSQL and NATS with `scripts/services up`.

mod no_livelock;
