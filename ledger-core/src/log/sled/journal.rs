//! The write-ahead journal in front of sled: what makes an append durable.
//!
//! Why: sled's `Db::flush` stalls 15–28 ms a few times a second while holding
//! a lock every `apply_batch` needs (BENCHMARKS.md, "Issue 13, stop 26"), and
//! a group commit waited for it. Now a group commit is one `write` at the end
//! of a journal file and one `fdatasync` of it; sled takes the batches in
//! later, on the applier thread, and is flushed there every so often. Once
//! sled's copy is durable, the journal files it covers are deleted, so the
//! journal holds seconds of history, never all of it.
//!
//! Files: `journal/<number, 20 digits>.wal`, numbered upwards; a new one is
//! started past [`ROTATE_BYTES`]. Each starts with [`MAGIC`], then records
//! `length (u32 LE) ‖ crc32 of payload (u32 LE) ‖ payload`, the payload an
//! [`Entry`] through the codec.
//!
//! Recovery: every record up to the last `fdatasync` is intact (that sync
//! covered all earlier writes). What follows it may be torn in any way, as
//! the page cache writes unsynced pages back in any order, so the last file
//! is cut at its first record that is short or fails its CRC: nothing there
//! was acknowledged. A bad record in an earlier file (one the writer had moved
//! on from, after syncing it) is corruption, and refused.

use super::{storage, sync_dir};
use crate::codec;
use crate::events::StreamId;
use crate::log::{Hash, IdempotencyRecord, LogError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) const DIR: &str = "journal";
const MAGIC: &[u8; 8] = b"EXJRNL01";
const HEADER: usize = 8;
/// A journal file past this size is closed and the next one started; the
/// applier deletes closed files once sled holds their contents durably.
pub(super) const ROTATE_BYTES: u64 = 32 * 1024 * 1024;
/// A record bigger than this is not a record but a torn or corrupt length.
const MAX_RECORD: usize = 1 << 30;

/// One event as the journal (and then sled) keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub seq: u64,
    pub stream: StreamId,
    pub version: u64,
    pub encoded: Vec<u8>,
    pub hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// An append: its events and idempotency records.
    Batch {
        events: Vec<Stored>,
        idempotency: Vec<IdempotencyRecord>,
    },
    /// A kept answer replacing a pending-render record
    /// (`EventLog::complete_idempotency`).
    Completion(IdempotencyRecord),
}

fn file_name(number: u64) -> String {
    format!("{number:020}.wal")
}

/// The journal files in `dir`, by number.
pub(super) fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let dir = dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(storage(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(storage)?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((number, entry.path()));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

pub(super) fn frame(entry: &Entry) -> Result<Vec<u8>, LogError> {
    let payload = codec::encode(entry)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_RECORD)
        .ok_or_else(|| LogError::Storage("journal record larger than 1 GiB".into()))?;
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What one file holds: its whole records, and where they end.
pub(super) struct Scanned {
    pub entries: Vec<Entry>,
    /// Bytes of whole records (header included): the file's good length.
    pub good_len: u64,
    /// Bytes after the good length (a torn tail, or corruption).
    pub rest: u64,
}

/// Reads one journal file's records, stopping at the first that is short,
/// fails its CRC or does not decode.
pub(super) fn scan(path: &Path) -> Result<Scanned, LogError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(storage)?;
    let total = bytes.len() as u64;
    if bytes.len() < HEADER || &bytes[..HEADER] != MAGIC {
        // Created but its header never reached the disk: nothing in it was synced.
        return Ok(Scanned {
            entries: Vec::new(),
            good_len: 0,
            rest: total,
        });
    }
    let mut entries = Vec::new();
    let mut at = HEADER;
    // A length past the end stops the scan here; a zero length (a zeroed
    // tail) at the decode, which refuses an empty payload.
    while let Some(((len, crc), payload)) = bytes
        .get(at..at + 8)
        .map(|h| {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            (len, crc)
        })
        .and_then(|(len, crc)| bytes.get(at + 8..at + 8 + len).map(|p| ((len, crc), p)))
    {
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(entry) = codec::decode::<Entry>(payload) else {
            break;
        };
        entries.push(entry);
        at += 8 + len;
    }
    Ok(Scanned {
        entries,
        good_len: at as u64,
        rest: total - at as u64,
    })
}

/// Cuts a file back to its good length (dropping a torn tail) and syncs it.
pub(super) fn truncate(path: &Path, good_len: u64) -> Result<(), LogError> {
    let f = OpenOptions::new().write(true).open(path).map_err(storage)?;
    f.set_len(good_len).map_err(storage)?;
    f.sync_all().map_err(storage)
}

/// Deletes every journal file numbered below `number`.
pub(super) fn remove_before(dir: &Path, number: u64) -> Result<usize, LogError> {
    let mut removed = 0;
    for (n, path) in files(dir)? {
        if n >= number {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage(e)),
        }
    }
    if removed > 0 {
        sync_dir(&dir.join(DIR))?;
    }
    Ok(removed)
}

/// The file being appended to, and what the next sync must cover.
pub(super) struct Writer {
    dir: PathBuf,
    number: u64,
    file: Arc<File>,
    len: u64,
    /// Files written since the last sync (the current one among them).
    unsynced: Vec<Arc<File>>,
    /// A file was created since the last sync: its name must be made durable.
    dir_dirty: bool,
    /// A failed write could not be cut off.
    broken: bool,
}

/// What one sync must make durable, taken under the writer's lock and done
/// outside it, so appends go on meanwhile.
pub(super) struct SyncWork {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl SyncWork {
    pub fn run(self) -> Result<(), LogError> {
        for f in &self.files {
            f.sync_data().map_err(storage)?;
        }
        if let Some(dir) = self.dir {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

impl Writer {
    /// Starts a new file numbered `number` (every older one must be gone or
    /// fully applied: the journal is written only after recovery).
    pub fn start(dir: &Path, number: u64) -> Result<Self, LogError> {
        let journal = dir.join(DIR);
        std::fs::create_dir_all(&journal).map_err(storage)?;
        sync_dir(dir)?;
        let file = Self::create(&journal, number)?;
        let mut writer = Self {
            dir: journal,
            number,
            file: Arc::new(file),
            len: HEADER as u64,
            unsynced: Vec::new(),
            dir_dirty: true,
            broken: false,
        };
        writer.unsynced.push(writer.file.clone());
        Ok(writer)
    }

    fn create(journal: &Path, number: u64) -> Result<File, LogError> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(journal.join(file_name(number)))
            .map_err(storage)?;
        file.write_all(MAGIC).map_err(storage)?;
        Ok(file)
    }

    /// Writes one framed record at the end (durable at the next sync).
    /// Returns the number of the file it went to.
    pub fn write(&mut self, record: &[u8]) -> Result<u64, LogError> {
        if self.len >= ROTATE_BYTES {
            let file = Self::create(&self.dir, self.number + 1)?;
            self.number += 1;
            self.file = Arc::new(file);
            self.len = HEADER as u64;
            self.unsynced.push(self.file.clone());
            self.dir_dirty = true;
        }
        if self.broken {
            return Err(LogError::Storage(
                "the journal could not undo a failed write; reopen the log".into(),
            ));
        }
        if let Err(e) = (&*self.file).write_all(record) {
            // A short write would leave a torn record in the middle of the
            // file once later ones follow it: cut it off, or write no more.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(storage(e));
        }
        self.len += record.len() as u64;
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, &self.file)) {
            self.unsynced.push(self.file.clone());
        }
        Ok(self.number)
    }

    /// What a sync now must cover; resets the bookkeeping for the next one.
    pub fn take_sync_work(&mut self) -> SyncWork {
        SyncWork {
            files: std::mem::take(&mut self.unsynced),
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StreamKind;
    use crate::ids::RequestId;
    use crate::log::IdempotencyKey;
    use crate::time::Timestamp;

    fn record(n: u8) -> IdempotencyRecord {
        IdempotencyRecord {
            key: IdempotencyKey {
                scope: uuid::Uuid::from_bytes([n; 16]),
                request_id: RequestId::from_uuid(uuid::Uuid::from_bytes([n + 1; 16])),
            },
            fingerprint: [n; 32],
            status: 201,
            body: vec![n; 40],
            at: Timestamp::from_micros(1_700_000_000_000_000),
            last_seq: n as u64,
        }
    }

    fn batch(seq: u64) -> Entry {
        Entry::Batch {
            events: vec![Stored {
                seq,
                stream: StreamId {
                    kind: StreamKind::Organization,
                    id: uuid::Uuid::from_bytes([7; 16]),
                },
                version: seq,
                encoded: vec![seq as u8; 100],
                hash: [seq as u8; 32],
            }],
            idempotency: vec![record(seq as u8)],
        }
    }

    fn written(dir: &Path, entries: &[Entry]) -> PathBuf {
        let mut w = Writer::start(dir, 1).unwrap();
        for e in entries {
            w.write(&frame(e).unwrap()).unwrap();
        }
        w.take_sync_work().run().unwrap();
        files(dir).unwrap().remove(0).1
    }

    #[test]
    fn records_come_back_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![batch(1), Entry::Completion(record(9)), batch(2)];
        let path = written(dir.path(), &entries);
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.entries, entries);
        assert_eq!(scanned.rest, 0);
        assert_eq!(scanned.good_len, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_tail_cut_at_any_byte_keeps_exactly_the_whole_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![batch(1), batch(2), batch(3)];
        let path = written(dir.path(), &entries);
        let bytes = std::fs::read(&path).unwrap();
        let ends: Vec<usize> = {
            let mut at = HEADER;
            let mut ends = vec![at];
            for e in &entries {
                at += frame(e).unwrap().len();
                ends.push(at);
            }
            ends
        };
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let scanned = scan(&path).unwrap();
            let whole = ends
                .iter()
                .filter(|end| **end <= cut)
                .count()
                .saturating_sub(1);
            assert_eq!(scanned.entries, entries[..whole], "cut at {cut}");
            let expected_good = if cut < HEADER { 0 } else { ends[whole] as u64 };
            assert_eq!(scanned.good_len, expected_good, "cut at {cut}");
            assert_eq!(scanned.good_len + scanned.rest, cut as u64);
        }
    }

    #[test]
    fn a_zeroed_tail_ends_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![batch(1), batch(2)];
        let path = written(dir.path(), &entries);
        let good = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.entries, entries);
        assert_eq!((scanned.good_len, scanned.rest), (good, 4096));
    }

    #[test]
    fn a_flipped_byte_ends_the_good_records_there() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![batch(1), batch(2), batch(3)];
        let path = written(dir.path(), &entries);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + frame(&entries[0]).unwrap().len();
        bytes[second + 20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.entries, entries[..1]);
        assert_eq!(scanned.good_len, second as u64);
        truncate(&path, scanned.good_len).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), second as u64);
    }

    #[test]
    fn no_journal_directory_is_an_empty_journal_and_an_unreadable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(files(dir.path()).unwrap().is_empty());
        // Not a directory: the journal cannot be read, which is not "empty".
        std::fs::write(dir.path().join(DIR), b"not a directory").unwrap();
        assert!(matches!(files(dir.path()), Err(LogError::Storage(_))));
    }

    #[test]
    fn a_full_file_is_closed_and_the_next_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::start(dir.path(), 5).unwrap();
        let big = frame(&Entry::Completion(IdempotencyRecord {
            body: vec![1; (ROTATE_BYTES / 2) as usize],
            ..record(1)
        }))
        .unwrap();
        assert_eq!(w.write(&big).unwrap(), 5);
        assert_eq!(w.write(&big).unwrap(), 5);
        assert_eq!(w.write(&big).unwrap(), 6, "past the size, a new file");
        let work = w.take_sync_work();
        assert_eq!(
            work.files.len(),
            2,
            "both files written since the last sync"
        );
        assert!(work.dir.is_some(), "a file was created: the directory too");
        work.run().unwrap();
        let numbers: Vec<u64> = files(dir.path()).unwrap().iter().map(|f| f.0).collect();
        assert_eq!(numbers, vec![5, 6]);
        assert_eq!(remove_before(dir.path(), 6).unwrap(), 1);
        let numbers: Vec<u64> = files(dir.path()).unwrap().iter().map(|f| f.0).collect();
        assert_eq!(numbers, vec![6]);
        let next = w.take_sync_work();
        assert!(
            next.files.is_empty() && next.dir.is_none(),
            "nothing new to sync"
        );
    }
}
