//! The webhook outbox as rows of the read models (to be written).

use super::SqlError;
use ledger_core::events::RecordedEvent;
use rusqlite::Connection;

/// Derives the deliveries `event` makes, in the projection's transaction.
pub fn derive(_c: &Connection, _event: &RecordedEvent) -> Result<(), SqlError> {
    Ok(())
}
