//! Read models folded from the committed event log into SQL tables
//! ([`sql`]): the API's reads, the analysts' queries and the webhook outbox
//! (deliveries are rows derived in the same transaction as the rows they
//! describe, [`sql::outbox`]). [`runner`] keeps them up to date with the
//! engine.
//!
//! [`model::ReadModel`] is the same fold in memory, with the domain's own
//! `Ledger::apply`: not used by the server, it is the auditors' reference
//! (`replay-tool rebuild` compares the SQL tables against it) and the oracle
//! the SQL fold is tested against.

pub mod model;
pub mod outbox;
pub mod runner;
pub mod schema;
pub mod sql;
pub mod views;
pub mod webhooks;

pub use model::{BalanceChange, ReadModel, Transaction, TransactionType};
pub use runner::Projections;
