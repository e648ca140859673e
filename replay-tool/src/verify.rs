//! `verify`: the whole history, from genesis, re-proved.
//!
//! Checked: the hash chain from genesis, the dense sequence, that the log ends
//! where its head record says (data directory), that every event decodes and
//! is stored under its own number, and every invariant the domain asserts, by
//! replaying each event through `Ledger::apply`: stream versions dense from 1,
//! only state-machine edges, no negative available balance, reservations equal
//! to their holds, money conserved per currency after every event
//! (balances + in transit = deposits − withdrawals). At the end nothing may be
//! left in transit (`Ledger::check_settled`): a transfer debited and never
//! credited is named by the sequence number of its debit.

use crate::source::{Events, Failure, Range, Source};
use ledger_core::domain::Ledger;
use ledger_core::events::Event;
use ledger_core::ids::BalanceId;
use ledger_core::log::{Hash, GENESIS_HASH};
use ledger_core::money::Currency;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Instant;

pub struct Verified {
    pub ledger: Ledger,
    pub last_hash: Hash,
    pub elapsed: std::time::Duration,
}

/// Replays `source` from genesis, checking everything; the first failure wins.
pub fn verify(source: &Source) -> Result<Verified, Failure> {
    let started = Instant::now();
    let mut events = Events::open(source, Range::ALL, "verify")?;
    let mut ledger = Ledger::new();
    let mut last_hash = GENESIS_HASH;
    // Per currency, the debit that took "in transit" above zero, while it is.
    let mut transit_opened: HashMap<Currency, u64> = HashMap::new();
    while let Some((raw, event)) = events.next()? {
        let transfer_currency = match &event.event {
            Event::SettlementDebited { balance_id, .. }
            | Event::SettlementCredited { balance_id, .. }
            | Event::RefundDebited { balance_id, .. }
            | Event::RefundCredited { balance_id, .. } => currency_of(&ledger, *balance_id),
            _ => None,
        };
        ledger
            .apply(&event)
            .map_err(|v| Failure::bad(v.seq, v.reason))?;
        if let Some(currency) = transfer_currency {
            let in_transit = ledger
                .supply
                .get(&currency)
                .is_some_and(|s| !s.in_transit.is_zero());
            if !in_transit {
                transit_opened.remove(&currency);
            } else {
                transit_opened.entry(currency).or_insert(event.seq);
            }
        }
        last_hash = raw.hash;
    }
    if let Err(reason) = ledger.check_settled() {
        let seq = transit_opened
            .values()
            .min()
            .copied()
            .unwrap_or(ledger.last_seq);
        return Err(Failure::bad(
            seq,
            format!("money not conserved at the end of the log: {reason} (debited here, never credited)"),
        ));
    }
    Ok(Verified {
        ledger,
        last_hash,
        elapsed: started.elapsed(),
    })
}

fn currency_of(ledger: &Ledger, balance: BalanceId) -> Option<Currency> {
    ledger.balances.get(&balance).map(|b| b.currency)
}

/// Prints the verdict. Exit 0 only when everything holds.
pub fn run(source: &Source, bench: bool, out: &mut dyn Write) -> Result<bool, Failure> {
    let verified = match verify(source) {
        Ok(v) => v,
        Err(Failure::Bad { seq, reason }) => {
            writeln!(out, "verify: FAILED at seq {seq}: {reason}")?;
            return Ok(false);
        }
        Err(other) => return Err(other),
    };
    let ledger = &verified.ledger;
    let streams = ledger.stream_count();
    writeln!(out, "verify: OK")?;
    writeln!(out, "events: {}", ledger.last_seq)?;
    writeln!(out, "head hash: {}", hex::encode(verified.last_hash))?;
    writeln!(out, "streams: {streams}")?;
    writeln!(out, "organizations: {}", ledger.organizations.len())?;
    let supply: BTreeMap<&str, _> = ledger
        .supply
        .iter()
        .map(|(c, s)| (c.code(), (*c, s)))
        .collect();
    for (code, (currency, s)) in supply {
        writeln!(
            out,
            "money {code}: deposited {} - withdrawn {} = held in balances {}",
            s.deposited.format(currency),
            s.withdrawn.format(currency),
            s.balances_total.format(currency),
        )?;
    }
    if bench {
        let secs = verified.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            ledger.last_seq as f64 / secs
        } else {
            0.0
        };
        writeln!(
            out,
            "bench: verified {} events in {secs:.3} s = {rate:.0} events/s",
            ledger.last_seq
        )?;
    }
    Ok(true)
}
