//! Treasury and payments over HTTP (issue 4): money stories checked against
//! hand-computed figures, balances over time with the test clock, settlement
//! of what is due, refused cases that change nothing, streamed exports,
//! concurrency and idempotent retries.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

#[path = "treasury/big_export.rs"]
mod big_export;
#[path = "treasury/concurrency.rs"]
mod concurrency;
#[path = "treasury/edges.rs"]
mod edges;
#[path = "treasury/exports.rs"]
mod exports;
#[path = "treasury/flood.rs"]
mod flood;
#[path = "treasury/harness.rs"]
mod harness;
#[path = "treasury/idempotency.rs"]
mod idempotency;
#[path = "treasury/over_time.rs"]
mod over_time;
#[path = "treasury/refusals.rs"]
mod refusals;
#[path = "treasury/settle_due.rs"]
mod settle_due;
#[path = "treasury/story.rs"]
mod story;
