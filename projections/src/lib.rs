//! Read models folded from the committed event log.
//!
//! The fold reuses the domain's own `Ledger::apply` (so the read side can
//! never disagree with the write side about what an event means) and adds the
//! query-shaped indexes the API needs: per-organization lists, transactions,
//! balance change logs.
//!
//! Rationale for keeping read models in memory and rebuilding them from
//! sequence 0 at start instead of persisting them with checkpoints: replay runs
//! at over a million events a second (BENCHMARKS.md), the log is the only
//! truth, and there is then no second durable format to migrate or corrupt.
//! The one exception is the webhook outbox ([`outbox`]): what was delivered
//! cannot be re-derived, so deliveries live in their own store, fed by this
//! fold past a durable checkpoint.

pub mod model;
pub mod outbox;
pub mod runner;
pub mod snapshot;
pub mod sql;
pub mod views;
pub mod webhooks;

pub use model::{BalanceChange, ReadModel, Transaction, TransactionType};
pub use runner::Projections;
