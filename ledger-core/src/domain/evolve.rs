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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::Supply;
    use crate::ids::OrganizationId;
    use crate::money::{Amount, Currency};

    fn amount(s: &str) -> Amount {
        Amount::parse_stored(s).expect("amount")
    }

    #[test]
    fn money_left_between_the_halves_of_a_transfer_is_not_settled() {
        let usd = Currency::parse("USD").expect("USD");
        let mut ledger = Ledger::default();
        ledger.supply.insert(
            usd,
            Supply {
                deposited: amount("10"),
                withdrawn: Amount::ZERO,
                balances_total: amount("10"),
                in_transit: Amount::ZERO,
            },
        );
        assert_eq!(ledger.check_settled(), Ok(()));
        // Conserved (balances + in transit = deposits), yet not settled.
        let s = ledger.supply.get_mut(&usd).expect("supply");
        s.balances_total = amount("6");
        s.in_transit = amount("4");
        let err = ledger.check_settled().expect_err("in transit");
        assert!(err.contains("left in transit"), "{err}");
        // Not conserved at all.
        ledger.supply.get_mut(&usd).expect("supply").in_transit = Amount::ZERO;
        assert!(ledger.check_settled().is_err());
    }

    #[test]
    fn a_detached_event_changes_the_scratch_ledger() {
        let mut scratch = Ledger::default();
        let id = OrganizationId::new();
        let at = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
        let event = Event::OrganizationCreated {
            id,
            name: "Acme".into(),
        };
        scratch.evolve_detached(&event, at).expect("applies");
        assert_eq!(scratch.organizations[&id].name, "Acme");
        // Its log position is the caller's: none is taken here.
        assert_eq!(scratch.last_seq, 0);
    }
}
