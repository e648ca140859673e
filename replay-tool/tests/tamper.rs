//! Tampering: one byte flipped in a stored event (in its body or in its
//! hash), one event deleted, two events swapped. `verify` must exit 1 and
//! name the right sequence number, every time, at every position tried:
//! - on the scripted scenario (every position; the whole log is within the
//!   tail `SledLog::open` re-checks, so these go through the raw fallback);
//! - on a generated log of 6,000 events, at positions before the re-checked
//!   tail (read through `SledLog`, by parallel readers, at chunk edges too)
//!   and inside it.
//!
//! Then forgeries with an intact hash chain (re-hashed by `SledLog::append`)
//! whose events break the domain's invariants.

mod support;

use ledger_core::events::{Actor, Event, Hold, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use std::path::{Path, PathBuf};
use support::*;

fn failed_at(dir: &Path) -> (u64, String) {
    let run = tool(&["--data-dir", dir.to_str().expect("path"), "verify"]);
    assert_eq!(
        run.code, 1,
        "verify did not fail:\n{}\n{}",
        run.stdout, run.stderr
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("verify: FAILED at seq "))
        .unwrap_or_else(|| panic!("no verdict:\n{}\n{}", run.stdout, run.stderr))
        .to_string();
    let seq = line["verify: FAILED at seq ".len()..]
        .split(':')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a sequence number");
    (seq, line)
}

/// A fresh copy of the pristine data directory.
fn copy_of(pristine: &Path, work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    copy_dir(pristine, &dir);
    dir
}

#[test]
fn every_tampered_position_of_the_scenario_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let s = scenario();
    s.script.write(&pristine);
    let n = s.script.events.len() as u64;
    let run = tool(&["--data-dir", pristine.to_str().expect("path"), "verify"]);
    assert_eq!(run.code, 0, "{}", run.stdout);

    // Every position, a few at a time (each case runs the binary on its own copy).
    let positions: Vec<u64> = (1..=n).collect();
    std::thread::scope(|scope| {
        for group in positions.chunks(positions.len().div_ceil(4)) {
            let (pristine, work) = (&pristine, tmp.path());
            scope.spawn(move || {
                for &seq in group {
                    // A byte of the event itself, and a byte of its stored hash.
                    for (what, from_end) in [("body", 40), ("hash", 3)] {
                        let dir = copy_of(pristine, work, &format!("flip-{what}-{seq}"));
                        flip_byte(&dir, seq, from_end);
                        let (got, line) = failed_at(&dir);
                        assert_eq!(got, seq, "{what} flipped at {seq}: {line}");
                        assert!(line.contains("hash chain broken"), "{line}");
                        std::fs::remove_dir_all(&dir).expect("cleanup");
                    }
                    let dir = copy_of(pristine, work, &format!("delete-{seq}"));
                    delete_event(&dir, seq);
                    let (got, line) = failed_at(&dir);
                    assert_eq!(got, seq, "deleted {seq}: {line}");
                    assert!(line.contains("missing"), "{line}");
                    std::fs::remove_dir_all(&dir).expect("cleanup");
                }
            });
        }
    });
    for (a, b) in [(1, 2), (3, 9), (10, n), (n - 1, n), (2, n / 2)] {
        let dir = copy_of(&pristine, tmp.path(), &format!("swap-{a}-{b}"));
        swap_events(&dir, a, b);
        let (got, line) = failed_at(&dir);
        assert_eq!(got, a, "swapped {a} and {b}: {line}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[test]
fn tampering_a_large_log_is_named_before_and_inside_the_rechecked_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let run = tool(&[
        "generate",
        "--out",
        pristine.to_str().expect("path"),
        "--events",
        "6000",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // 1, the first chunk's end and the next chunk's start (chunks of 4096),
    // before the tail SledLog re-checks at open (the last 4096), inside it,
    // and the very last event.
    for seq in [1, 2, 700, 1903, 4096, 4097, 5000, 6000] {
        let dir = copy_of(&pristine, tmp.path(), &format!("flip-{seq}"));
        flip_byte(&dir, seq, 40);
        assert_eq!(failed_at(&dir).0, seq, "flipped {seq}");
        std::fs::remove_dir_all(&dir).expect("cleanup");

        let dir = copy_of(&pristine, tmp.path(), &format!("delete-{seq}"));
        delete_event(&dir, seq);
        assert_eq!(failed_at(&dir).0, seq, "deleted {seq}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    for (a, b) in [
        (5, 6),
        (100, 4200),
        (4095, 4096),
        (4096, 4097),
        (5999, 6000),
    ] {
        let dir = copy_of(&pristine, tmp.path(), &format!("swap-{a}-{b}"));
        swap_events(&dir, a, b);
        assert_eq!(failed_at(&dir).0, a, "swapped {a} and {b}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    // Two changes: the first one is named.
    let dir = copy_of(&pristine, tmp.path(), "two");
    flip_byte(&dir, 5500, 40);
    flip_byte(&dir, 300, 40);
    assert_eq!(failed_at(&dir).0, 300);
}

/// Appends `events` (renumbered from 1, versions per stream recounted) to a
/// fresh log: the chain is intact, whatever the events say.
fn forge(dir: &Path, mut events: Vec<RecordedEvent>) {
    let mut versions = std::collections::HashMap::new();
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
        let v = versions.entry(e.stream()).or_insert(0u64);
        *v += 1;
        e.version = *v;
    }
    let log = SledLog::open(dir.join("log")).expect("open");
    log.append(&events, &[]).expect("append");
}

#[test]
fn an_intact_chain_of_impossible_events_fails_on_the_invariant() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = scenario().script.events;

    // Beta reserves more than it has: no negative available.
    let mut events = base.clone();
    let (balance, at) = events
        .iter()
        .find_map(|e| match &e.event {
            Event::FundsDeposited { balance_id, .. } => Some((*balance_id, e.at)),
            _ => None,
        })
        .expect("a deposit");
    let bad_at = events.len() as u64 + 1;
    events.push(RecordedEvent {
        seq: 0,
        version: 0,
        at,
        actor: Actor::Admin,
        request_id: None,
        event: Event::FundsReserved {
            balance_id: balance,
            hold: Hold::Invoice(InvoiceId::new()),
            amount: amount("EUR", "1000000.00"),
        },
    });
    let dir = tmp.path().join("overdraft");
    forge(&dir, events);
    let (seq, line) = failed_at(&dir);
    assert_eq!(seq, bad_at, "{line}");
    assert!(line.contains("exceeds available"), "{line}");

    // An invoice settled straight from DRAFT: not an edge of the state machine.
    let mut events = base.clone();
    let created = events
        .iter()
        .position(|e| matches!(e.event, Event::InvoiceCreated { .. }))
        .expect("an invoice");
    let id = InvoiceId::from_uuid(events[created].stream().id);
    events.insert(
        created + 1,
        RecordedEvent {
            event: Event::InvoiceSettled {
                id,
                payment_id: PaymentId::new(),
            },
            ..events[created].clone()
        },
    );
    let dir = tmp.path().join("transition");
    forge(&dir, events);
    let (seq, line) = failed_at(&dir);
    assert_eq!(seq, created as u64 + 2, "{line}");
    assert!(line.contains("DRAFT -> SETTLED"), "{line}");

    // A settlement debited and never credited: money in transit at the end,
    // named at the debit.
    let mut events = base.clone();
    let settled = events
        .iter()
        .position(|e| matches!(e.event, Event::InvoiceSettled { .. }))
        .expect("a settled invoice");
    // Nothing after the settlement: later events would trip on the missing credit first.
    events.truncate(settled + 1);
    let credited = events
        .iter()
        .position(|e| matches!(e.event, Event::SettlementCredited { .. }))
        .expect("a settlement");
    let debit_seq = events
        .iter()
        .position(|e| matches!(e.event, Event::SettlementDebited { .. }))
        .expect("a debit") as u64
        + 1;
    events.remove(credited);
    let dir = tmp.path().join("transit");
    forge(&dir, events);
    let (seq, line) = failed_at(&dir);
    assert_eq!(seq, debit_seq, "{line}");
    assert!(line.contains("in transit"), "{line}");
}
