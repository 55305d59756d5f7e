//! The root `tests/fanout` suite built inside this crate, so it runs while other crates of
//! the workspace do not compile. Tests that need the `orderflow` binary are left out here.
#[path = "../../tests/fanout/main.rs"]
mod fanout;
