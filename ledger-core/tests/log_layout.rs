//! The sled log's storage layout: logs written with a key per event and per
//! stream version (layout 1) are copied to blocks at open and read and append
//! exactly as before, and a migration interrupted at any point finishes on
//! the next open; a block missing from the middle of a log is named.

mod log_support;

use ledger_core::events::{Event, RecordedEvent};
use ledger_core::ids::OrganizationId;
use ledger_core::log::sled::{raw, SledLog};
use ledger_core::log::{chain_hash, EventLog, LogError, RawEvent, GENESIS_HASH};
use log_support::event;
use std::path::Path;
use std::time::{Duration, Instant};

/// 20,000 events: every third on one long stream, the rest one per stream.
fn history() -> (OrganizationId, Vec<RecordedEvent>) {
    let long = OrganizationId::new();
    let mut long_version = 0;
    let events = (1..=20_000)
        .map(|seq| {
            if seq % 3 == 0 {
                long_version += 1;
                event(seq, long, long_version)
            } else {
                event(seq, OrganizationId::new(), 1)
            }
        })
        .collect();
    (long, events)
}

fn retry_locked<T, E: std::fmt::Display>(mut f: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn raw_db(dir: &Path) -> sled::Db {
    retry_locked(|| sled::Config::new().path(dir).flush_every_ms(None).open())
}

fn open_log(dir: &Path) -> Result<SledLog, LogError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledLog::open(dir) {
            Err(LogError::Storage(m))
                if m.contains("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

/// Stores `events` the way the log did before blocks; returns them as stored.
fn write_layout_1(dir: &Path, events: &[RecordedEvent]) -> Vec<RawEvent> {
    let db = raw_db(dir);
    let mut previous = GENESIS_HASH;
    let mut stored = Vec::new();
    for e in events {
        let encoded = ledger_core::codec::encode_event(e).unwrap();
        let hash = chain_hash(&previous, &encoded);
        let mut key = vec![b'E'];
        key.extend_from_slice(&e.seq.to_be_bytes());
        let mut value = encoded.clone();
        value.extend_from_slice(&hash);
        db.insert(key, value).unwrap();
        let mut key = vec![b'S'];
        key.extend_from_slice(&e.stream().to_bytes());
        key.extend_from_slice(&e.version.to_be_bytes());
        db.insert(key, &e.seq.to_be_bytes()[..]).unwrap();
        previous = hash;
        stored.push(RawEvent {
            seq: e.seq,
            encoded,
            hash,
        });
    }
    let mut head = events.len().to_be_bytes().to_vec();
    head.extend_from_slice(&previous);
    db.insert([b'H'], head).unwrap();
    db.flush().unwrap();
    stored
}

#[test]
fn a_long_layout_1_log_is_copied_to_blocks_and_reads_and_appends_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (long, events) = history();
    let stored = write_layout_1(dir.path(), &events);
    let log = open_log(dir.path()).unwrap();
    assert_eq!(log.head().last_seq, 20_000);
    assert_eq!(log.head().last_hash, stored.last().unwrap().hash);
    let read: Vec<RawEvent> = log.read_raw(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), stored.len());
    for (r, s) in read.iter().zip(&stored) {
        assert_eq!((r.seq, &r.encoded, r.hash), (s.seq, &s.encoded, s.hash));
    }
    // Reading from the middle of a block starts at the seq asked for.
    let from_middle: Vec<u64> = log.read_raw(12_345).map(|r| r.unwrap().seq).collect();
    assert_eq!(from_middle, (12_345..=20_000).collect::<Vec<_>>());
    let long_stream = events[2].stream();
    let of_long: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.stream() == long_stream)
        .cloned()
        .collect();
    assert_eq!(of_long.len(), 6_666);
    assert_eq!(log.read_stream(long_stream).unwrap(), of_long);
    assert_eq!(
        log.read_stream(events[0].stream()).unwrap(),
        vec![events[0].clone()]
    );
    // The long stream's next version is 6,667; a short stream's is 2.
    assert!(matches!(
        log.append(&[event(20_001, long, 6_666)], &[]),
        Err(LogError::VersionConflict {
            expected: 6_667,
            ..
        })
    ));
    let short = match &events[0].event {
        Event::OrganizationCreated { id, .. } => *id,
        _ => unreachable!(),
    };
    log.append(&[event(20_001, long, 6_667), event(20_002, short, 2)], &[])
        .unwrap();
    drop(log);
    let log = open_log(dir.path()).unwrap();
    assert_eq!(log.head().last_seq, 20_002);
    assert_eq!(log.read_stream(long_stream).unwrap().len(), 6_667);
    drop(log);
    let db = raw_db(dir.path());
    assert!(db.scan_prefix([b'E']).next().is_none());
    assert!(db.scan_prefix([b'S']).next().is_none());
}

/// `n` events on one stream in `dir`, appended `batch` at a time; closed.
fn one_stream(dir: &Path, n: u64, batch: usize) -> Vec<RecordedEvent> {
    let log = open_log(dir).unwrap();
    let org = OrganizationId::new();
    let events: Vec<RecordedEvent> = (1..=n).map(|seq| event(seq, org, seq)).collect();
    for chunk in events.chunks(batch) {
        log.append(chunk, &[]).unwrap();
    }
    events
}

#[test]
fn a_block_missing_from_the_middle_is_named_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    one_stream(dir.path(), 6_000, 700);
    // Inside the verified tail: refused at open.
    let gone = block_of(dir.path(), 5_000);
    match open_log(dir.path()) {
        Err(LogError::Corrupt { seq, .. }) => assert_eq!(seq, *gone.start()),
        other => panic!(
            "expected the missing block to be named, got {:?}",
            other.map(|l| l.head())
        ),
    }

    // Before it: the log opens, and a full read names it instead of ending early.
    let dir = tempfile::tempdir().unwrap();
    one_stream(dir.path(), 6_000, 6_000);
    let gone = block_of(dir.path(), 100);
    let log = open_log(dir.path()).unwrap();
    let mut seen = 0;
    let mut error = None;
    for r in log.read_raw(1) {
        match r {
            Ok(raw) => seen = raw.seq,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert_eq!(seen, gone.start() - 1);
    match error {
        Some(LogError::Corrupt { seq, reason }) => {
            assert_eq!(seq, *gone.start());
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected a named gap, got {other:?}"),
    }
}

#[test]
fn one_append_spanning_many_index_chunks_of_a_stream_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let events = one_stream(dir.path(), 5, 5);
    let org = match &events[0].event {
        Event::OrganizationCreated { id, .. } => *id,
        _ => unreachable!(),
    };
    let log = open_log(dir.path()).unwrap();
    let more: Vec<RecordedEvent> = (6..=300).map(|seq| event(seq, org, seq)).collect();
    log.append(&more, &[]).unwrap();
    let events = [events, more].concat();
    assert_eq!(log.read_stream(events[0].stream()).unwrap(), events);
    drop(log);
    let log = open_log(dir.path()).unwrap();
    assert_eq!(log.read_stream(events[0].stream()).unwrap(), events);
    assert!(matches!(
        log.append(&[event(301, org, 300)], &[]),
        Err(LogError::VersionConflict { expected: 301, .. })
    ));
}

/// The directories a crash can leave, by step of the migration's swap.
#[test]
fn a_migration_interrupted_at_any_step_finishes_on_the_next_open() {
    let (_, events) = history();
    let events = &events[..500];
    let head_of = |stored: &[RawEvent]| stored.last().unwrap().hash;

    // Crashed while copying: `log` is still the original, the copy partial.
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let stored = write_layout_1(&log_dir, events);
    std::fs::create_dir_all(tmp.path().join("log.layout2")).unwrap();
    std::fs::write(tmp.path().join("log.layout2/db"), b"half a copy").unwrap();
    let log = open_log(&log_dir).unwrap();
    assert_eq!(log.head().last_hash, head_of(&stored));
    assert_eq!(log.read_all(1).count(), 500);
    drop(log);
    assert!(!tmp.path().join("log.layout2").exists());
    assert!(!tmp.path().join("log.layout1").exists());

    // Crashed between the two renames, the copy complete: the copy is used.
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let stored = write_layout_1(&log_dir, events);
    drop(open_log(&log_dir).unwrap()); // a complete copy, in blocks
    std::fs::rename(&log_dir, tmp.path().join("log.layout2")).unwrap();
    std::fs::write(tmp.path().join("log.layout2/LAYOUT2-COMPLETE"), b"").unwrap();
    write_layout_1(&tmp.path().join("log.layout1"), events);
    let log = open_log(&log_dir).unwrap();
    assert_eq!(log.head().last_hash, head_of(&stored));
    drop(log);
    assert!(!tmp.path().join("log.layout1").exists());
    assert!(!log_dir.join("LAYOUT2-COMPLETE").exists());
    let db = raw_db(&log_dir);
    assert!(db.scan_prefix([b'E']).next().is_none());
    drop(db);

    // Crashed between the two renames, the copy not marked complete: the
    // original goes back and is copied again.
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let stored = write_layout_1(&tmp.path().join("log.layout1"), events);
    std::fs::create_dir_all(tmp.path().join("log.layout2")).unwrap();
    let log = open_log(&log_dir).unwrap();
    assert_eq!(log.head().last_hash, head_of(&stored));
    assert_eq!(log.read_all(1).count(), 500);
    drop(log);
    assert!(!tmp.path().join("log.layout1").exists());
    assert!(!tmp.path().join("log.layout2").exists());
}

fn named(seq: u64, name_len: usize) -> RecordedEvent {
    let mut e = event(seq, OrganizationId::new(), 1);
    if let Event::OrganizationCreated { name, .. } = &mut e.event {
        *name = "n".repeat(name_len);
    }
    e
}

/// Removes the block holding `seq` through a raw handle on the closed log;
/// the seqs it held.
fn block_of(dir: &Path, seq: u64) -> std::ops::RangeInclusive<u64> {
    let db = raw_db(dir);
    let range = raw::remove_block(&db, seq).unwrap();
    db.flush().unwrap();
    range
}

/// The sizes the layout promises (32 events or 16 KiB a key), whether the
/// events come one append at a time or many at once.
#[test]
fn blocks_hold_32_small_events_or_16_kib_and_a_big_event_alone() {
    for batch in [1usize, 7, 100] {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open_log(dir.path()).unwrap();
            let events: Vec<RecordedEvent> = (1..=100).map(|seq| named(seq, 10)).collect();
            for chunk in events.chunks(batch) {
                log.append(chunk, &[]).unwrap();
            }
        }
        assert_eq!(block_of(dir.path(), 1), 1..=32, "batches of {batch}");
        assert_eq!(block_of(dir.path(), 40), 33..=64, "batches of {batch}");
        assert_eq!(block_of(dir.path(), 100), 97..=100, "batches of {batch}");
    }
    // Records of 1,026 bytes (event, 4-byte length, 32-byte hash): 15 fit
    // in 16 KiB, the 16th would pass it by 32 bytes.
    let name_len = (900..1_100)
        .find(|&n| {
            ledger_core::codec::encode_event(&named(1, n))
                .unwrap()
                .len()
                + 36
                == 1_026
        })
        .expect("a name length giving 1,026-byte records");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path()).unwrap();
        for seq in 1..=40 {
            log.append(&[named(seq, name_len)], &[]).unwrap();
        }
    }
    assert_eq!(block_of(dir.path(), 1), 1..=15);
    assert_eq!(block_of(dir.path(), 16), 16..=30);
    // An event bigger than a block gets one of its own; the next starts anew.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path()).unwrap();
        log.append(&[named(1, 10), named(2, 20_000), named(3, 10)], &[])
            .unwrap();
        log.append(&[named(4, 10)], &[]).unwrap();
        let read: Vec<u64> = log.read_raw(1).map(|r| r.unwrap().seq).collect();
        assert_eq!(read, vec![1, 2, 3, 4]);
    }
    assert_eq!(block_of(dir.path(), 1), 1..=1);
    assert_eq!(block_of(dir.path(), 2), 2..=2);
    assert_eq!(block_of(dir.path(), 3), 3..=4);
}
