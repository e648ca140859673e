//! The money model: pure rules, no I/O.
//!
//! Each aggregate module holds its state, `evolve` (apply one event), the
//! pure checks its commands need and `decide` for its commands: a pure
//! function of the whole write model (it may read other aggregates, as an
//! invoice reads its connection) to the events to append or why not.
//! [`ledger::Ledger`] is the write model: all aggregates together, with
//! `decide(actor, command)` routing each command to its aggregate, and
//! `apply(event)`. `settlement` holds the rules of money that moves because of
//! an invoice: the buyer's funds reserved at approval and released at
//! cancellation, the settlement (invoice, payment and two balances) and the
//! refund of one (two balances).

pub mod api_key;
pub mod balance;
pub mod command;
pub mod connection;
mod evolve;
pub mod file;
pub mod invoice;
pub mod ledger;
pub mod organization;
pub mod payment;
pub mod refund;
mod settlement;
pub mod webhook_endpoint;
pub mod withdrawal;

pub use command::{Command, Outcome};
pub use ledger::Ledger;

use crate::events::Event;
use crate::money::{Amount, Currency, MoneyError};
use crate::time::Timestamp;
use uuid::Uuid;

/// Why a command was refused. Each maps to one documented API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Validation(String),
    #[error("cannot {action} this {entity} in state {current}")]
    InvalidTransition {
        entity: &'static str,
        action: &'static str,
        current: &'static str,
    },
    #[error(
        "insufficient available balance in {currency}: needed {needed}, available {available}"
    )]
    InsufficientBalance {
        currency: Currency,
        needed: String,
        available: String,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("version conflict: expected {expected}, current {current}")]
    VersionConflict { expected: u64, current: u64 },
}

/// What deciding a command gives: its outcome and the events to append, or
/// why it is refused.
pub type Decision = Result<(Outcome, Vec<Event>), DomainError>;

/// The entity, or the 404 naming it.
fn need<T>(v: Option<T>, what: &'static str) -> Result<T, DomainError> {
    v.ok_or(DomainError::NotFound(what))
}

/// An aggregate's `decide` given a command that is not its own: a routing bug
/// in `Ledger::decide`, refused rather than panicking the single writer.
fn misrouted(aggregate: &'static str) -> DomainError {
    DomainError::Validation(format!("not a command for the {aggregate}"))
}

/// What an aggregate's `evolve` answers an event of another stream: a
/// routing bug in `Ledger::evolve`, reported as a broken invariant.
fn misapplied(aggregate: &str, event: &Event) -> String {
    format!("{} is not an event of a {aggregate}", event.type_name())
}

impl From<MoneyError> for DomainError {
    fn from(e: MoneyError) -> Self {
        DomainError::Validation(e.to_string())
    }
}

impl DomainError {
    pub fn insufficient(currency: Currency, needed: Amount, available: Amount) -> Self {
        DomainError::InsufficientBalance {
            currency,
            needed: needed.format(currency),
            available: available.format(currency),
        }
    }
}

/// What a decision may depend on besides state and command: the time, and a
/// source of fresh ids. Injected so decisions stay deterministic under test.
pub struct Ctx<'a> {
    pub now: Timestamp,
    pub ids: &'a mut dyn FnMut() -> Uuid,
}

impl Ctx<'_> {
    pub fn id<T: From<Uuid>>(&mut self) -> T {
        T::from((self.ids)())
    }
}
