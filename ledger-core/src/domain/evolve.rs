//! Applying recorded events to the write model, with the ledger-wide
//! invariants asserted after every event.

use super::ledger::{InvariantViolation, Ledger};
use super::{
    api_key, balance, connection, file, invoice, organization, payment, refund, webhook_endpoint,
    withdrawal,
};
use crate::events::{Event, RecordedEvent, StreamKind};
use crate::time::Timestamp;

impl Ledger {
    /// Applies one recorded event. Checks the dense sequence, the stream
    /// version, the state machine and the money invariants it touches.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), InvariantViolation> {
        let seq = recorded.seq;
        let fail = |reason: String| InvariantViolation { seq, reason };
        if seq != self.last_seq + 1 {
            return Err(fail(format!(
                "sequence gap: expected {}, got {seq}",
                self.last_seq + 1
            )));
        }
        let stream = recorded.stream();
        let version = self.version(stream);
        if recorded.version != version + 1 {
            return Err(fail(format!(
                "stream version gap on {stream:?}: expected {}, got {}",
                version + 1,
                recorded.version
            )));
        }
        self.evolve(&recorded.event, recorded.at).map_err(fail)?;
        if stream.kind == StreamKind::Invoice {
            let carried = self.version(stream);
            if carried != recorded.version {
                return Err(fail(format!(
                    "invoice {} carries version {carried} after version {}",
                    stream.id, recorded.version
                )));
            }
        } else {
            self.versions.insert(stream, recorded.version);
        }
        self.last_seq = seq;
        Ok(())
    }

    /// Applies an event's effect without the log-position checks. For read
    /// models that keep their aggregates elsewhere (SQL) and build a new one
    /// with this ledger's own code, on a scratch ledger holding just what the
    /// event reads.
    pub fn evolve_detached(&mut self, event: &Event, at: Timestamp) -> Result<(), String> {
        self.evolve(event, at)
    }

    /// An event changes the aggregate of its stream, through that
    /// aggregate's `evolve` (which keeps the indexes its events move).
    fn evolve(&mut self, event: &Event, at: Timestamp) -> Result<(), String> {
        match event.stream().kind {
            StreamKind::Organization => organization::evolve(self, event, at),
            StreamKind::ApiKey => api_key::evolve(self, event, at),
            StreamKind::Connection => connection::evolve(self, event, at),
            StreamKind::Invoice => invoice::evolve(self, event, at),
            StreamKind::Payment => payment::evolve(self, event, at),
            StreamKind::Balance => balance::evolve(self, event, at),
            StreamKind::Withdrawal => withdrawal::evolve(self, event, at),
            StreamKind::Refund => refund::evolve(self, event, at),
            StreamKind::WebhookEndpoint => webhook_endpoint::evolve(self, event, at),
            StreamKind::File => file::evolve(self, event, at),
        }
    }

    /// Every transfer is complete: nothing is in transit in any currency.
    pub fn check_settled(&self) -> Result<(), String> {
        for (currency, s) in &self.supply {
            s.check_conserved(*currency)?;
            if !s.in_transit.is_zero() {
                return Err(format!("{currency}: {} left in transit", s.in_transit));
            }
        }
        Ok(())
    }
}
