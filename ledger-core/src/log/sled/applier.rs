//! Moves journal entries into sled, off the command path, and retires the
//! journal files sled holds durably. Also replays the journal at open.

use super::journal::{self, Entry, Stored};
use super::pending::{Pending, Work};
use super::{Store, StreamId};
use crate::log::{verify_link, Hash, LogError, RawEvent};
use std::time::Duration;

/// Entries taken into one sled batch at most.
const MAX_ENTRIES: usize = 512;

/// The applier thread: until stopped and drained, applies what is queued,
/// and flushes sled whenever that lets it delete a journal file. A failure
/// stops it and the log with it (appends are refused; the journal keeps
/// everything for the next open).
pub(super) fn run(store: &Store, pending: &Pending, first_file: u64) -> Result<(), LogError> {
    let result = apply_until_stopped(store, pending, first_file);
    if let Err(e) = &result {
        tracing::error!(error = %e, "the event log's applier stopped");
        pending.fail(e.clone());
    }
    result
}

fn apply_until_stopped(store: &Store, pending: &Pending, first_file: u64) -> Result<(), LogError> {
    // The oldest journal file not yet deleted, and the file of the last
    // entry applied: every file before that one is fully in sled.
    let mut oldest = first_file;
    let mut reached = first_file;
    loop {
        match pending.take(MAX_ENTRIES, Duration::from_millis(250)) {
            Work::Items(items) => {
                let entries: Vec<&Entry> = items.iter().map(|(_, _, e)| &**e).collect();
                store.apply(&entries)?;
                if let Some((id, file, _)) = items.last() {
                    pending.applied(*id);
                    reached = *file;
                }
            }
            Work::Idle => {}
            Work::Stop => {
                store.make_durable()?;
                journal::remove_before(&store.dir, u64::MAX)?;
                return Ok(());
            }
        }
        if reached > oldest {
            store.make_durable()?;
            journal::remove_before(&store.dir, reached)?;
            oldest = reached;
        }
    }
}

/// What [`recover`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Recovered {
    /// The number the next journal file takes.
    pub next_file: u64,
    /// Journal entries sled did not hold yet, now applied.
    pub replayed: usize,
}

/// Replays the journal a crash (or a failed applier) left into sled, makes
/// sled durable and deletes the journal.
pub(super) fn recover(store: &Store) -> Result<Recovered, LogError> {
    let files = journal::files(&store.dir)?;
    let Some(last) = files.last().map(|(n, _)| *n) else {
        return Ok(Recovered {
            next_file: 1,
            replayed: 0,
        });
    };
    let mut previous = store.lock_applied()?.head.last_hash;
    let mut replayed = 0usize;
    for (number, path) in &files {
        let scanned = journal::scan(path)?;
        if scanned.rest > 0 {
            if *number != last {
                return Err(LogError::Storage(format!(
                    "journal file {} is corrupt after byte {} (a file the log had moved on from)",
                    path.display(),
                    scanned.good_len
                )));
            }
            tracing::warn!(
                file = %path.display(),
                bytes = scanned.rest,
                "dropping the journal's torn tail (never acknowledged)"
            );
            journal::truncate(path, scanned.good_len)?;
        }
        for entry in scanned.entries {
            if let Some(entry) = still_to_apply(store, entry, &mut previous)? {
                store.apply(&[&entry])?;
                replayed += 1;
            }
        }
    }
    store.make_durable()?;
    journal::remove_before(&store.dir, u64::MAX)?;
    Ok(Recovered {
        next_file: last + 1,
        replayed,
    })
}

/// What of a journal entry sled does not hold yet, its chain checked.
fn still_to_apply(
    store: &Store,
    entry: Entry,
    previous: &mut Hash,
) -> Result<Option<Entry>, LogError> {
    let Entry::Batch {
        events,
        idempotency,
    } = entry
    else {
        return Ok(Some(entry));
    };
    let applied = store.lock_applied()?.head.last_seq;
    match (events.first(), events.last()) {
        // In sled already, with its records (one sled batch held both).
        (Some(_), Some(last)) if last.seq <= applied => return Ok(None),
        (Some(first), _) if first.seq <= applied => {
            return Err(LogError::Corrupt {
                seq: first.seq,
                reason: format!("a journal entry straddles the log's end at {applied}"),
            })
        }
        (Some(first), _) if first.seq != applied + 1 => {
            return Err(LogError::Corrupt {
                seq: applied + 1,
                reason: format!("missing (the journal continues at {})", first.seq),
            })
        }
        _ => {}
    }
    for event in &events {
        check(event, previous)?;
        *previous = event.hash;
    }
    let idempotency = if events.is_empty() {
        // A batch of records alone (kept refusals): those sled lacks.
        let mut missing = Vec::new();
        for record in idempotency {
            if store.idempotency(&record.key)?.is_none() {
                missing.push(record);
            }
        }
        missing
    } else {
        idempotency
    };
    Ok(Some(Entry::Batch {
        events,
        idempotency,
    }))
}

/// A journal event must chain onto the one before and be what it says.
fn check(event: &Stored, previous: &Hash) -> Result<(), LogError> {
    let decoded = verify_link(
        previous,
        &RawEvent {
            seq: event.seq,
            encoded: event.encoded.clone(),
            hash: event.hash,
        },
    )?;
    let said: StreamId = decoded.stream();
    if said != event.stream || decoded.version != event.version {
        return Err(LogError::Corrupt {
            seq: event.seq,
            reason: "the journal files it under another stream or version than it says".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{SledLog, Store};
    use super::*;
    use crate::codec;
    use crate::events::{Actor, Event, RecordedEvent};
    use crate::ids::{OrganizationId, RequestId};
    use crate::log::{chain_hash, EventLog, IdempotencyKey, IdempotencyRecord, GENESIS_HASH};
    use crate::time::Timestamp;
    use std::path::{Path, PathBuf};

    fn event(seq: u64, org: OrganizationId, version: u64) -> RecordedEvent {
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

    fn record(n: u8, status: u16) -> IdempotencyRecord {
        IdempotencyRecord {
            key: IdempotencyKey {
                scope: uuid::Uuid::from_bytes([n; 16]),
                request_id: RequestId::from_uuid(uuid::Uuid::from_bytes([n; 16])),
            },
            fingerprint: [n; 32],
            status,
            body: format!("answer {n}").into_bytes(),
            at: Timestamp::from_micros(1_700_000_000_000_000),
            last_seq: 0,
        }
    }

    /// Events `from..=to`, each on a stream of its own.
    fn events(from: u64, to: u64) -> Vec<RecordedEvent> {
        (from..=to)
            .map(|seq| event(seq, OrganizationId::new(), 1))
            .collect()
    }

    fn batch(
        events: &[RecordedEvent],
        previous: &mut Hash,
        records: Vec<IdempotencyRecord>,
    ) -> Entry {
        let stored = events
            .iter()
            .map(|e| {
                let encoded = codec::encode_event(e).unwrap();
                let hash = chain_hash(previous, &encoded);
                *previous = hash;
                Stored {
                    seq: e.seq,
                    stream: e.stream(),
                    version: e.version,
                    encoded,
                    hash,
                }
            })
            .collect();
        Entry::Batch {
            events: stored,
            idempotency: records,
        }
    }

    /// Writes `entries` as journal file `number` in `dir`, as a log that
    /// crashed before sled took them in would have left them.
    fn leave_journal(dir: &Path, number: u64, entries: &[Entry]) -> PathBuf {
        let mut w = journal::Writer::start(dir, number).unwrap();
        for e in entries {
            w.write(&journal::frame(e).unwrap()).unwrap();
        }
        w.take_sync_work().run().unwrap();
        journal::files(dir)
            .unwrap()
            .into_iter()
            .find(|(n, _)| *n == number)
            .unwrap()
            .1
    }

    fn open(dir: &Path) -> Result<SledLog, LogError> {
        super::super::when_unlocked(Duration::from_secs(30), || SledLog::open(dir))
    }

    fn all(log: &SledLog) -> Vec<RecordedEvent> {
        log.read_all(1).collect::<Result<_, _>>().unwrap()
    }

    /// 12 events in three batches, the second with two records, then the
    /// kept answer of one of them.
    fn crashed_history() -> (Vec<RecordedEvent>, Vec<Entry>, Hash) {
        let events = events(1, 12);
        let mut previous = GENESIS_HASH;
        let entries = vec![
            batch(&events[..5], &mut previous, vec![]),
            batch(
                &events[5..10],
                &mut previous,
                vec![record(1, IdempotencyRecord::PENDING_RENDER), record(2, 201)],
            ),
            Entry::Completion(record(1, 200)),
            batch(&events[10..], &mut previous, vec![]),
        ];
        (events, entries, previous)
    }

    /// Opens sled on `dir` and replays its journal, as `SledLog::open` does.
    fn recovered_in(dir: &Path) -> Result<Recovered, LogError> {
        let store = Store::open(dir, &Default::default())?;
        store.load_tail()?;
        recover(&store)
    }

    /// The log holds `events`, ends on `last_hash`, and record 1 with its
    /// kept answer.
    fn assert_holds(log: &SledLog, events: &[RecordedEvent], last_hash: Hash) {
        assert_eq!(log.head().last_seq, events.len() as u64);
        assert_eq!(log.head().last_hash, last_hash);
        assert_eq!(all(log), events);
        assert_eq!(
            log.idempotency(&record(1, 0).key).unwrap(),
            Some(record(1, 200))
        );
    }

    /// The seq and reason `open` refuses the log in `dir` with, as corrupt.
    fn corrupt_at(dir: &Path) -> (u64, String) {
        match open(dir) {
            Err(LogError::Corrupt { seq, reason }) => (seq, reason),
            other => panic!("expected corruption, got {:?}", other.map(|l| l.head())),
        }
    }

    fn journal_files(dir: &Path) -> Vec<u64> {
        journal::files(dir).unwrap().iter().map(|f| f.0).collect()
    }

    #[test]
    fn a_journal_left_by_a_crash_is_replayed_into_the_log() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &Default::default()).unwrap());
        let (events, entries, last_hash) = crashed_history();
        // In two files: the log had moved on to a second one.
        leave_journal(dir.path(), 1, &entries[..2]);
        leave_journal(dir.path(), 2, &entries[2..]);

        let recovered = recovered_in(dir.path()).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                next_file: 3,
                replayed: 4
            }
        );
        assert!(
            journal_files(dir.path()).is_empty(),
            "replayed, then removed"
        );
        let log = open(dir.path()).unwrap();
        assert_holds(&log, &events, last_hash);
        assert_eq!(
            log.idempotency(&record(2, 0).key).unwrap(),
            Some(record(2, 201))
        );
        // The log goes on from there.
        log.append(&[event(13, OrganizationId::new(), 1)], &[])
            .unwrap();
        log.close().unwrap();
        assert!(
            journal_files(dir.path()).is_empty(),
            "a clean close leaves no journal"
        );

        let log = open(dir.path()).unwrap();
        assert_eq!(log.head().last_seq, 13);
        assert_eq!(all(&log)[..12], events[..]);
    }

    #[test]
    fn entries_sled_already_holds_are_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (events, entries, last_hash) = crashed_history();
        let log = open(dir.path()).unwrap();
        log.append(
            &events[..10],
            &[record(1, IdempotencyRecord::PENDING_RENDER), record(2, 201)],
        )
        .unwrap();
        log.close().unwrap();
        // The whole journal again, as if the crash came after sled's flush
        // but before the journal's deletion.
        leave_journal(dir.path(), 7, &entries);

        let recovered =
            super::super::when_unlocked(Duration::from_secs(30), || recovered_in(dir.path()))
                .unwrap();
        assert_eq!(recovered.replayed, 2, "the kept answer and the last batch");
        assert_eq!(recovered.next_file, 8);
        assert_holds(&open(dir.path()).unwrap(), &events, last_hash);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_nothing_before_it() {
        let (events, entries, _) = crashed_history();
        let template = tempfile::tempdir().unwrap();
        let path = leave_journal(template.path(), 1, &entries);
        let bytes = std::fs::read(&path).unwrap();
        let last_record = journal::frame(&entries[3]).unwrap().len();
        for cut in (bytes.len() - last_record)..bytes.len() {
            let dir = tempfile::tempdir().unwrap();
            drop(Store::open(dir.path(), &Default::default()).unwrap());
            std::fs::create_dir_all(dir.path().join(journal::DIR)).unwrap();
            std::fs::write(
                dir.path()
                    .join(journal::DIR)
                    .join(path.file_name().unwrap()),
                &bytes[..cut],
            )
            .unwrap();
            let log = open(dir.path()).unwrap();
            assert_eq!(all(&log), events[..10], "cut at {cut}");
            assert_eq!(
                log.idempotency(&record(1, 0).key).unwrap(),
                Some(record(1, 200))
            );
            // The next append continues the recovered log, and is kept.
            log.append(&[event(11, OrganizationId::new(), 1)], &[])
                .unwrap();
            log.close().unwrap();
            assert_eq!(
                open(dir.path()).unwrap().head().last_seq,
                11,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn journal_files_are_deleted_once_sled_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path()).unwrap();
        // 1 MiB answers: past journal::ROTATE_BYTES the log moves to file 2.
        let records = (journal::ROTATE_BYTES / (1 << 20) + 2) as u8;
        let events = events(1, records as u64);
        for (n, event) in (1..=records).zip(&events) {
            let record = IdempotencyRecord {
                body: vec![n; 1 << 20],
                ..record(n, 201)
            };
            log.append(std::slice::from_ref(event), &[record]).unwrap();
        }
        assert_eq!(journal_files(dir.path()), vec![1, 2]);
        // The applier deletes file 1 once sled holds it durably, while the
        // log stays open.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while journal_files(dir.path()) != vec![2] {
            assert!(
                std::time::Instant::now() < deadline,
                "journal files still {:?}",
                journal_files(dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(all(&log), events);
        assert_eq!(
            log.idempotency(&record(records, 0).key)
                .unwrap()
                .map(|r| r.body.len()),
            Some(1 << 20)
        );
    }

    #[test]
    fn a_bad_record_in_a_journal_file_the_log_had_moved_on_from_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &Default::default()).unwrap());
        let (_, entries, _) = crashed_history();
        let first = leave_journal(dir.path(), 1, &entries[..2]);
        leave_journal(dir.path(), 2, &entries[2..]);
        let mut bytes = std::fs::read(&first).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        match open(dir.path()) {
            Err(LogError::Storage(reason)) => {
                assert!(reason.contains("00000000000000000001.wal"), "{reason}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|l| l.head())),
        }
    }

    #[test]
    fn a_journal_that_does_not_continue_the_log_is_refused() {
        let (_, entries, _) = crashed_history();
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &Default::default()).unwrap());
        // Events 6.. with nothing before them.
        leave_journal(dir.path(), 1, &entries[1..]);
        assert_eq!(corrupt_at(dir.path()).0, 1);

        // An entry half in sled already: nothing writes such a journal.
        let dir = tempfile::tempdir().unwrap();
        let history = events(1, 10);
        let log = open(dir.path()).unwrap();
        log.append(&history[..7], &[]).unwrap();
        log.close().unwrap();
        let mut previous = GENESIS_HASH;
        batch(&history[..4], &mut previous, vec![]);
        leave_journal(
            dir.path(),
            1,
            &[batch(&history[4..], &mut previous, vec![])],
        );
        let (seq, reason) = corrupt_at(dir.path());
        assert_eq!(seq, 5);
        assert!(reason.contains("straddles the log's end at 7"), "{reason}");

        // Filed under another version than the event says.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &Default::default()).unwrap());
        let mut previous = GENESIS_HASH;
        let mut misfiled = batch(&events(1, 2), &mut previous, vec![]);
        if let Entry::Batch { events, .. } = &mut misfiled {
            events[1].version = 2;
        }
        leave_journal(dir.path(), 1, &[misfiled]);
        let (seq, reason) = corrupt_at(dir.path());
        assert_eq!(seq, 2);
        assert!(reason.contains("another stream or version"), "{reason}");

        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &Default::default()).unwrap());
        let events = events(1, 3);
        let mut previous = GENESIS_HASH;
        let mut tampered = batch(&events, &mut previous, vec![]);
        if let Entry::Batch { events, .. } = &mut tampered {
            events[1].hash[0] ^= 1;
        }
        leave_journal(dir.path(), 1, &[tampered]);
        let (seq, reason) = corrupt_at(dir.path());
        assert_eq!(seq, 2);
        assert!(reason.contains("hash chain"), "{reason}");
    }
}
