//! The sled log behind its write-ahead journal, as its readers see it: while
//! appends go on and the applier moves entries into sled, every read sees
//! everything appended before it began, densely, and nothing twice.

mod log_support;

use ledger_core::ids::{OrganizationId, RequestId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::{EventLog, IdempotencyKey, IdempotencyRecord};
use ledger_core::time::Timestamp;
use log_support::event;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

fn record(n: u64, last_seq: u64) -> IdempotencyRecord {
    IdempotencyRecord {
        key: IdempotencyKey {
            scope: IdempotencyKey::ADMIN_SCOPE,
            request_id: RequestId::from_uuid(uuid::Uuid::from_u128(n as u128 + 1)),
        },
        fingerprint: [n as u8; 32],
        status: IdempotencyRecord::PENDING_RENDER,
        body: vec![7; 300],
        at: Timestamp::from_micros(1_700_000_000_000_000),
        last_seq,
    }
}

const BATCHES: u64 = 3_000;
const PER_BATCH: u64 = 4;

#[test]
fn reads_during_appends_see_every_earlier_event_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path()).unwrap();
    let long = OrganizationId::new();
    let long_stream = event(1, long, 1).stream();
    let done = AtomicBool::new(false);
    // The last batch whose record was appended (0: none yet).
    let recorded = AtomicU64::new(0);
    let long_version = Mutex::new(0u64);

    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seq = 0;
            for batch in 1..=BATCHES {
                let mut events = Vec::new();
                for i in 0..PER_BATCH {
                    seq += 1;
                    if i == 0 {
                        let mut v = long_version.lock().unwrap();
                        *v += 1;
                        events.push(event(seq, long, *v));
                    } else {
                        events.push(event(seq, OrganizationId::new(), 1));
                    }
                }
                log.append_unsynced(&events, &[record(batch, seq)]).unwrap();
                recorded.store(batch, Ordering::SeqCst);
                let pending = record(batch, seq);
                if batch % 3 == 0 {
                    let done = log
                        .complete_idempotency(&pending, 201, b"kept".to_vec())
                        .unwrap();
                    assert_eq!(done.status, 201);
                }
                if batch % 10 == 0 {
                    log.sync().unwrap();
                }
            }
            log.sync().unwrap();
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) || reads < 3 {
                reads += 1;
                let before = log.head().last_seq;
                // Mostly at the tail, where the applier is at work.
                let from = if reads % 10 == 0 {
                    before / 2
                } else {
                    before.saturating_sub(40)
                }
                .max(1);
                let mut expected = from;
                for e in log.read_all(from) {
                    let e = e.unwrap();
                    assert_eq!(e.seq, expected, "read from {from}");
                    expected += 1;
                }
                assert!(
                    expected > before,
                    "a read from {from} begun at head {before} stopped at {}",
                    expected - 1
                );
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                // The writer counts a version just before appending it.
                let at_least = long_version.lock().unwrap().saturating_sub(1);
                let batch = recorded.load(Ordering::SeqCst);
                let versions: Vec<u64> = log
                    .read_stream(long_stream)
                    .unwrap()
                    .iter()
                    .map(|e| e.version)
                    .collect();
                assert!(versions.len() as u64 >= at_least, "stream read short");
                assert!(versions.iter().copied().eq(1..=versions.len() as u64));
                if batch > 0 {
                    let found = log.idempotency(&record(batch, 0).key).unwrap();
                    assert!(found.is_some(), "record {batch} not found");
                }
            }
        });
    });

    let head = log.head();
    assert_eq!(head.last_seq, BATCHES * PER_BATCH);
    log.close().unwrap();
    let log = SledLog::open(dir.path()).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.read_all(1).count() as u64, BATCHES * PER_BATCH);
    assert_eq!(log.read_stream(long_stream).unwrap().len() as u64, BATCHES);
    for batch in [1, 2, 3, BATCHES] {
        let kept = log.idempotency(&record(batch, 0).key).unwrap().unwrap();
        let completed = batch % 3 == 0;
        assert_eq!(kept.status == 201, completed, "record {batch}");
    }
}
