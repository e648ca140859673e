//! Black-box tests of the Expereon API: each test starts the real server
//! binary on a free port with a fresh data directory and talks HTTP to it.

mod auth;
mod bad_input;
mod bulk;
mod concurrency;
mod docs;
mod documented;
mod editing;
mod idempotency;
mod isolation;
mod lifecycle;
mod limits;
mod listing;
mod observability;
mod read_models;
mod restart;
mod secrets;
#[allow(dead_code)]
mod support;
mod transitions;
