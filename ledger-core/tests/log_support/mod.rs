//! What the log's tests share.

use ledger_core::events::{Actor, Event, RecordedEvent};
use ledger_core::ids::OrganizationId;
use ledger_core::time::Timestamp;

/// The log checks seqs, stream versions and the chain, not the domain: one
/// organization stream may carry many versions here.
pub fn event(seq: u64, org: OrganizationId, version: u64) -> RecordedEvent {
    RecordedEvent {
        seq,
        version,
        at: Timestamp::from_micros(1_700_000_000_000_000 + seq as i64),
        actor: Actor::Admin,
        request_id: None,
        event: Event::OrganizationCreated {
            id: org,
            name: format!("organization {seq}"),
        },
    }
}
