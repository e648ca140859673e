//! The embedded event log: sled behind a write-ahead journal.
//!
//! Key layout (all integers big-endian so sled's order is numeric order):
//! - `B` first seq                → a block of consecutive events, each
//!   stored with its chain hash (`blocks.rs`)
//! - `V` stream(17) chunk         → seqs of 64 consecutive stream versions
//!   (`streams.rs`)
//! - `I` scope request            → encoded idempotency record
//! - `T` at(8) scope request      → (empty) retention index for idempotency records
//! - `H`                          → last seq(8) ‖ last hash(32), written with
//!   every append so a removed last event is detected at open (a hash chain
//!   alone cannot see truncation)
//!
//! Logs written with a key per event (layout 1) are moved to this layout at
//! open (`migrate.rs`).
//!
//! Durability: an append is one record at the end of the write-ahead
//! journal (`journal.rs`), and a group commit one `fdatasync` of it. The
//! `log-applier` thread takes the entries into sled afterwards (`applier.rs`);
//! until it has, readers find them in memory (`pending.rs`). sled is flushed
//! only when that lets a journal file go, so its stalls (15–28 ms, holding a
//! lock every `apply_batch` takes) no longer sit on the command path. At open,
//! whatever the journal holds beyond sled is replayed into it.
//!
//! sled's `flush()` ends in `sync_file_range`, which does not reach the disk's
//! write cache (sled issues 1351, 1452), so after every flush we `fdatasync`
//! the data file ourselves. sled also writes any item bigger than about an
//! eighth of a segment (a large event, or a tree node that grew past ~128 KiB)
//! to its own file under `blobs/`, and never syncs those: we sync each new
//! blob file and the `blobs` directory before the data file, and the log
//! directory itself at open.

mod applier;
mod blocks;
mod gc;
mod journal;
mod migrate;
mod pending;
pub mod raw;
mod streams;

pub use migrate::{wait_closed, Migrated};

use super::*;
use crate::codec;
use blocks::Block;
use journal::{Entry, Stored};
use pending::Pending;
use std::collections::hash_map::Entry as HashEntry;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use streams::Tip;

const IDEM: u8 = b'I';
const IDEM_TIME: u8 = b'T';
const HEAD: u8 = b'H';

/// How many events at the tail `open` re-verifies before serving.
const TAIL_VERIFY: u64 = 4096;

pub struct SledLog {
    store: Arc<Store>,
    pending: Arc<Pending>,
    /// The journal's writing end, and what an append checks against.
    writer: Mutex<Writer>,
    /// The head of the log as appended (ahead of sled while the applier catches up).
    head: Mutex<LogHead>,
    /// Held across a whole sync, so a sync never returns while an earlier
    /// one's fdatasync, which covers its appends too, is still running.
    sync_lock: Mutex<()>,
    applier: Option<std::thread::JoinHandle<Result<(), LogError>>>,
}

struct Writer {
    journal: journal::Writer,
    head: LogHead,
    /// Current version of recently appended streams (a cache: a miss asks
    /// the unapplied entries, then sled).
    versions: HashMap<StreamId, u64>,
}

/// The sled database and what writing into it needs.
pub(crate) struct Store {
    db: ::sled::Db,
    dir: PathBuf,
    /// The files whose pages must reach the disk after each flush.
    data_files: Vec<File>,
    /// Blob files (under `blobs/`) already synced; sled never syncs them.
    synced_blobs: Mutex<HashSet<OsString>>,
    applied: Mutex<Applied>,
}

/// What sled holds, as far as the next `apply` needs to know.
struct Applied {
    head: LogHead,
    /// The log's last block while later appends may extend it.
    tail: Option<Block>,
    /// The last index chunk of recently appended streams, so an append
    /// rarely reads the index back.
    tips: HashMap<StreamId, Tip>,
}

/// Streams whose last index chunk the log keeps in memory between batches.
const TIP_CACHE_ENTRIES: usize = 65_536;

#[derive(Debug, Clone)]
pub struct SledOptions {
    pub cache_capacity_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

fn idem_key(key: &IdempotencyKey) -> [u8; 33] {
    let mut k = [IDEM; 33];
    k[1..].copy_from_slice(&key.to_bytes());
    k
}

fn idem_time_key(at: Timestamp, key: &IdempotencyKey) -> [u8; 41] {
    let mut k = [IDEM_TIME; 41];
    k[1..9].copy_from_slice(&at.as_micros().to_be_bytes());
    k[9..].copy_from_slice(&key.to_bytes());
    k
}

fn head_value(head: &LogHead) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&head.last_seq.to_be_bytes());
    v[8..].copy_from_slice(&head.last_hash);
    v
}

/// The head record, if this log has one (logs written before it existed do not).
fn stored_head(db: &::sled::Db) -> Result<Option<LogHead>, LogError> {
    let Some(value) = db.get([HEAD]).map_err(storage)? else {
        return Ok(None);
    };
    if value.len() != 40 {
        return Err(LogError::Storage("malformed head record".into()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&value[..8]);
    let mut last_hash = [0u8; 32];
    last_hash.copy_from_slice(&value[8..]);
    Ok(Some(LogHead {
        last_seq: u64::from_be_bytes(seq),
        last_hash,
    }))
}

/// The events found must end exactly where the head record says the log ends.
fn check_head_record(db: &::sled::Db, found: LogHead) -> Result<LogHead, LogError> {
    let Some(recorded) = stored_head(db)? else {
        return Ok(found);
    };
    if recorded.last_seq > found.last_seq {
        return Err(LogError::Corrupt {
            seq: found.last_seq + 1,
            reason: format!(
                "missing (the log ends at {} but its head record says {})",
                found.last_seq, recorded.last_seq
            ),
        });
    }
    if recorded.last_seq < found.last_seq {
        return Err(LogError::Corrupt {
            seq: recorded.last_seq + 1,
            reason: format!(
                "the head record ends the log at {} but events continue to {}",
                recorded.last_seq, found.last_seq
            ),
        });
    }
    if recorded.last_hash != found.last_hash {
        return Err(LogError::Corrupt {
            seq: found.last_seq,
            reason: "chain hash differs from the head record".into(),
        });
    }
    Ok(found)
}

/// Makes a directory's entries durable (files created or removed in it).
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Runs `open` (an opening of a sled database) again while it fails only
/// because the database's file lock is still held, for at most `within`.
///
/// sled lets go of its lock on its own threads a moment after the last
/// handle of a dropped database goes, so a database dropped just before
/// (by this process: a migration, a test's fixture) may still be locked.
/// sled reports that as an I/O error whose text says so (sled 0.34's
/// `config.rs`).
pub fn when_unlocked<T, E: std::fmt::Display>(
    within: std::time::Duration,
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

fn poisoned() -> LogError {
    LogError::Storage("log state poisoned by an earlier panic".into())
}

impl SledLog {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        Self::open_with(dir, SledOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: SledOptions) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        migrate::finish_interrupted(&dir)?;
        let mut store = Store::open(&dir, &options)?;
        if migrate::is_layout_1(&store.db)? {
            let started = std::time::Instant::now();
            let moved = migrate::by_copy(store, &dir, &options)?;
            tracing::info!(
                dir = %dir.display(),
                events = moved.events,
                idempotency_records = moved.idempotency_records,
                seconds = started.elapsed().as_secs_f64(),
                "event log copied from a key per event to blocks (layout 2)"
            );
            store = Store::open_retrying(&dir, &options)?;
        }
        store.load_tail()?;
        let recovered = applier::recover(&store)?;
        if recovered.replayed > 0 {
            tracing::info!(
                entries = recovered.replayed,
                "journal entries replayed into the log after an unclean stop"
            );
        }
        let first_file = recovered.next_file;
        let head = store.lock_applied()?.head;
        let journal = journal::Writer::start(&dir, first_file)?;
        let store = Arc::new(store);
        let pending = Arc::new(Pending::default());
        let applier = {
            let (store, pending) = (store.clone(), pending.clone());
            std::thread::Builder::new()
                .name("log-applier".into())
                .spawn(move || applier::run(&store, &pending, first_file))
                .map_err(storage)?
        };
        Ok(Self {
            store,
            pending,
            writer: Mutex::new(Writer {
                journal,
                head,
                versions: HashMap::new(),
            }),
            head: Mutex::new(head),
            sync_lock: Mutex::new(()),
            applier: Some(applier),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// Takes every journal entry into sled, makes sled durable and removes
    /// the journal, reporting what failed (dropping the log does the same
    /// and can only log it).
    pub fn close(mut self) -> Result<(), LogError> {
        self.stop_applier()
    }

    fn stop_applier(&mut self) -> Result<(), LogError> {
        self.pending.stop();
        match self.applier.take().map(|t| t.join()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(LogError::Storage("the log applier panicked".into())),
        }
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        self.writer.lock().map_err(|_| poisoned())
    }

    /// The current version of a stream: unapplied entries first, then sled
    /// (in that order: an entry leaves the queue only once sled has it).
    fn version(&self, cache: &HashMap<StreamId, u64>, stream: StreamId) -> Result<u64, LogError> {
        if let Some(v) = cache.get(&stream) {
            return Ok(*v);
        }
        if let Some(v) = self.pending.version(stream) {
            return Ok(v);
        }
        Ok(streams::tip(&self.store.db, stream)?.version())
    }

    /// Writes an entry to the journal and queues it for sled.
    fn journal(&self, writer: &mut Writer, entry: Entry) -> Result<(), LogError> {
        let record = journal::frame(&entry)?;
        self.pending.wait_for_room()?;
        let file = writer.journal.write(&record)?;
        self.pending.push(file, entry, record.len());
        Ok(())
    }
}

impl Drop for SledLog {
    fn drop(&mut self) {
        if let Err(e) = self.stop_applier() {
            tracing::error!(error = %e, "closing the event log: the journal stays for the next open");
        }
    }
}

impl Store {
    /// Opens sled on `dir` without looking at what it holds.
    fn open(dir: &Path, options: &SledOptions) -> Result<Self, LogError> {
        let db = ::sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .mode(::sled::Mode::HighThroughput)
            // The applier flushes (and fdatasyncs) when it retires journal files.
            .flush_every_ms(None)
            .open()
            .map_err(storage)?;
        let data_files = Self::open_data_files(dir)?;
        // sled may just have created its files and `blobs/`: make the entries durable.
        sync_dir(dir)?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            data_files,
            synced_blobs: Mutex::new(HashSet::new()),
            applied: Mutex::new(Applied {
                head: LogHead {
                    last_seq: 0,
                    last_hash: GENESIS_HASH,
                },
                tail: None,
                tips: HashMap::new(),
            }),
        })
    }

    /// [`Self::open`] right after this process closed a sled database
    /// there: sled releases its lock on its own threads, a moment after the
    /// handle is dropped.
    fn open_retrying(dir: &Path, options: &SledOptions) -> Result<Self, LogError> {
        when_unlocked(std::time::Duration::from_secs(30), || {
            Self::open(dir, options)
        })
    }

    /// Verifies the tail of what sled holds and starts `applied` from it.
    fn load_tail(&self) -> Result<(), LogError> {
        let head = Self::verify_tail(&self.db)?;
        let tail = blocks::last(&self.db)?;
        let mut applied = self.lock_applied()?;
        applied.head = head;
        applied.tail = tail;
        Ok(())
    }

    fn lock_applied(&self) -> Result<MutexGuard<'_, Applied>, LogError> {
        self.applied.lock().map_err(|_| poisoned())
    }
    /// The files to sync after every flush. sled writes `conf` only when it
    /// creates the database, so it is synced once here rather than per commit
    /// (an fdatasync with nothing to write still flushes the disk cache: measured
    /// +1.5 ms per commit, BENCHMARKS.md).
    fn open_data_files(dir: &Path) -> Result<Vec<File>, LogError> {
        let conf = dir.join("conf");
        if conf.exists() {
            File::open(&conf)
                .and_then(|f| f.sync_all())
                .map_err(storage)?;
        }
        let db = dir.join("db");
        if !db.exists() {
            return Err(LogError::Storage(format!(
                "sled data file not found in {}",
                dir.display()
            )));
        }
        Ok(vec![File::open(&db).map_err(storage)?])
    }

    /// Re-checks the last events of the chain so a torn or tampered tail is
    /// refused at start, naming the sequence number.
    fn verify_tail(db: &::sled::Db) -> Result<LogHead, LogError> {
        let Some(last) = blocks::last(db)? else {
            return check_head_record(
                db,
                LogHead {
                    last_seq: 0,
                    last_hash: GENESIS_HASH,
                },
            );
        };
        let last_seq = last.last_seq();
        let from = last_seq.saturating_sub(TAIL_VERIFY).max(1);
        let mut previous = if from == 1 {
            GENESIS_HASH
        } else {
            blocks::event(db, from - 1)?
                .ok_or(LogError::Corrupt {
                    seq: from - 1,
                    reason: "missing (sequence has a gap)".into(),
                })?
                .hash
        };
        let mut reached = from - 1;
        for (expected_seq, raw) in (from..=last_seq).zip(blocks::Reader::new(db, from)) {
            let raw = raw?;
            if raw.seq != expected_seq {
                return Err(LogError::Corrupt {
                    seq: expected_seq,
                    reason: format!("missing (sequence jumps to {})", raw.seq),
                });
            }
            verify_link(&previous, &raw)?;
            previous = raw.hash;
            reached = raw.seq;
        }
        if reached != last_seq {
            return Err(LogError::Corrupt {
                seq: reached + 1,
                reason: "missing (the log's blocks end early)".into(),
            });
        }
        check_head_record(
            db,
            LogHead {
                last_seq,
                last_hash: previous,
            },
        )
    }

    fn make_durable(&self) -> Result<(), LogError> {
        self.db.flush().map_err(storage)?;
        self.sync_new_blobs()?;
        for f in &self.data_files {
            f.sync_data().map_err(storage)?;
        }
        Ok(())
    }

    /// Syncs the blob files sled wrote since the last call, then `blobs/`
    /// itself so their names survive too. sled deletes old blobs as it goes.
    fn sync_new_blobs(&self) -> Result<(), LogError> {
        let blob_dir = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blob_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(storage(e)),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| LogError::Storage("blob sync state poisoned".into()))?;
        let mut present = HashSet::new();
        let mut any_new = false;
        for entry in entries {
            let entry = entry.map_err(storage)?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data().map_err(storage)?,
                    // Collected by sled in the meantime.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(storage(e)),
                }
                synced.insert(name.clone());
                any_new = true;
            }
            present.insert(name);
        }
        synced.retain(|name| present.contains(name));
        if any_new {
            sync_dir(&blob_dir)?;
        }
        Ok(())
    }

    /// The stream's last index chunk, from the cache or the index.
    fn tip(&self, cache: &HashMap<StreamId, Tip>, stream: StreamId) -> Result<Tip, LogError> {
        match cache.get(&stream) {
            Some(tip) => Ok(tip.clone()),
            None => streams::tip(&self.db, stream),
        }
    }

    /// Writes journal entries into sled as one atomic batch, continuing what
    /// sled holds; refuses (writing nothing) entries that do not continue it.
    fn apply(&self, entries: &[&Entry]) -> Result<(), LogError> {
        let mut applied = self.lock_applied()?;
        let mut head = applied.head;
        // Built on scratch copies so a refused batch leaves no trace.
        // A full last block is kept too: `fits` starts the next one.
        let mut open = applied.tail.clone();
        let mut filled: Vec<Block> = Vec::new();
        let mut tips: HashMap<StreamId, Tip> = HashMap::new();
        let mut filled_chunks: Vec<([u8; 26], Vec<u8>)> = Vec::new();
        let mut batch = ::sled::Batch::default();
        let mut recorded: HashSet<IdempotencyKey> = HashSet::new();
        let mut writes = 0;
        for entry in entries {
            match entry {
                Entry::Batch {
                    events,
                    idempotency,
                } => {
                    for event in events {
                        if event.seq != head.next_seq() {
                            return Err(LogError::OutOfSequence {
                                expected: head.next_seq(),
                                got: event.seq,
                            });
                        }
                        let tip = match tips.entry(event.stream) {
                            HashEntry::Occupied(o) => o.into_mut(),
                            HashEntry::Vacant(v) => {
                                v.insert(self.tip(&applied.tips, event.stream)?)
                            }
                        };
                        if event.version != tip.version() + 1 {
                            return Err(LogError::VersionConflict {
                                stream: event.stream,
                                expected: tip.version() + 1,
                                got: event.version,
                            });
                        }
                        if let Some((chunk, seqs)) = tip.push(event.seq) {
                            filled_chunks
                                .push((streams::key(&event.stream.to_bytes(), chunk), seqs));
                        }
                        match open.as_mut() {
                            Some(block) if block.fits(event.encoded.len()) => {
                                block.push(&event.encoded, &event.hash)?
                            }
                            _ => {
                                filled.extend(open.take());
                                let mut block = Block::new(event.seq);
                                block.push(&event.encoded, &event.hash)?;
                                open = Some(block);
                            }
                        }
                        head = LogHead {
                            last_seq: event.seq,
                            last_hash: event.hash,
                        };
                        writes += 1;
                    }
                    for record in idempotency {
                        batch.insert(&idem_key(&record.key)[..], codec::encode(record)?);
                        batch.insert(&idem_time_key(record.at, &record.key)[..], &[][..]);
                        recorded.insert(record.key);
                        writes += 1;
                    }
                }
                // Unless pruned meanwhile: a kept answer never brings back a
                // record retention dropped.
                Entry::Completion(record) => {
                    let key = idem_key(&record.key);
                    if recorded.contains(&record.key)
                        || self.db.contains_key(&key[..]).map_err(storage)?
                    {
                        batch.insert(&key[..], codec::encode(record)?);
                        writes += 1;
                    }
                }
            }
        }
        for block in filled.iter().chain(open.iter()).filter(|b| b.dirty) {
            batch.insert(&blocks::key(block.first_seq)[..], block.bytes.as_slice());
        }
        for (key, seqs) in filled_chunks {
            batch.insert(&key[..], seqs);
        }
        for (stream, tip) in &tips {
            batch.insert(&tip.key(*stream)[..], tip.seqs.as_slice());
        }
        if head != applied.head {
            batch.insert(&[HEAD][..], &head_value(&head)[..]);
        }
        self.db.apply_batch(batch).map_err(storage)?;
        gc::reclaim_after_append(writes);
        if head != applied.head {
            applied.head = head;
            applied.tail = open.map(|mut block| {
                block.dirty = false;
                block
            });
        }
        // A cache of recent streams, not of history: past its bound it starts
        // over (a miss costs one sled lookup).
        if applied.tips.len() + tips.len() > TIP_CACHE_ENTRIES {
            applied.tips.clear();
        }
        applied.tips.extend(tips);
        Ok(())
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, LogError> {
        match self.db.get(idem_key(key)).map_err(storage)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        }
    }
}

/// Events in order from a seq: from sled, then from the entries sled has
/// not taken in yet. The applier may move events from the second to the
/// first while this runs, so when the queue does not hold the next seq,
/// sled is asked once more before the end is declared.
struct Reader<'a> {
    log: &'a SledLog,
    next: u64,
    sled: Option<blocks::Reader<'a>>,
    buffered: std::vec::IntoIter<RawEvent>,
    done: bool,
}

impl Reader<'_> {
    const CHUNK: usize = 1024;

    fn step(&mut self) -> Result<Option<RawEvent>, LogError> {
        if let Some(raw) = self.buffered.next() {
            return Ok(Some(raw));
        }
        if let Some(sled) = self.sled.as_mut() {
            match sled.next().transpose()? {
                Some(raw) => return Ok(Some(raw)),
                None => self.sled = None,
            }
        }
        let queued = self.log.pending.events_from(self.next, Self::CHUNK);
        if queued.first().is_some_and(|e| e.seq == self.next) {
            self.buffered = queued.into_iter();
            return Ok(self.buffered.next());
        }
        // Applied since sled was read, or the end of the log.
        let mut again = blocks::Reader::new(&self.log.store.db, self.next);
        match again.next().transpose()? {
            Some(raw) => {
                self.sled = Some(again);
                Ok(Some(raw))
            }
            None => Ok(None),
        }
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<RawEvent, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(raw)) if raw.seq == self.next => {
                self.next += 1;
                Some(Ok(raw))
            }
            Ok(Some(raw)) => {
                self.done = true;
                Some(Err(LogError::Corrupt {
                    seq: self.next,
                    reason: format!("missing (sequence jumps to {})", raw.seq),
                }))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl EventLog for SledLog {
    fn head(&self) -> LogHead {
        match self.head.lock() {
            Ok(h) => *h,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn append(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        let head = self.append_unsynced(events, idempotency)?;
        self.sync()?;
        Ok(head)
    }

    fn sync(&self) -> Result<(), LogError> {
        let _one_at_a_time = self.sync_lock.lock().map_err(|_| poisoned())?;
        let work = self.lock_writer()?.journal.take_sync_work();
        work.run()
    }

    fn append_unsynced(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        let mut writer = self.lock_writer()?;
        if let Some(e) = self.pending.failed() {
            return Err(e);
        }
        let mut head = writer.head;
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        let mut stored = Vec::with_capacity(events.len());
        for event in events {
            if event.seq != head.next_seq() {
                return Err(LogError::OutOfSequence {
                    expected: head.next_seq(),
                    got: event.seq,
                });
            }
            let stream = event.stream();
            let current = match versions.get(&stream) {
                Some(v) => *v,
                None => self.version(&writer.versions, stream)?,
            };
            if event.version != current + 1 {
                return Err(LogError::VersionConflict {
                    stream,
                    expected: current + 1,
                    got: event.version,
                });
            }
            versions.insert(stream, event.version);
            let encoded = codec::encode_event(event)?;
            let hash = chain_hash(&head.last_hash, &encoded);
            stored.push(Stored {
                seq: event.seq,
                stream,
                version: event.version,
                encoded,
                hash,
            });
            head = LogHead {
                last_seq: event.seq,
                last_hash: hash,
            };
        }
        if stored.is_empty() && idempotency.is_empty() {
            return Ok(head);
        }
        let entry = Entry::Batch {
            events: stored,
            idempotency: idempotency.to_vec(),
        };
        self.journal(&mut writer, entry)?;
        writer.head = head;
        if writer.versions.len() + versions.len() > TIP_CACHE_ENTRIES {
            writer.versions.clear();
        }
        writer.versions.extend(versions);
        *self.head.lock().map_err(|_| poisoned())? = head;
        Ok(head)
    }

    fn read_all(&self, from_seq: u64) -> EventIter<'_> {
        Box::new(self.read_raw(from_seq).map(|raw| {
            let raw = raw?;
            codec::decode_event(&raw.encoded).map_err(|e| LogError::Corrupt {
                seq: raw.seq,
                reason: e.to_string(),
            })
        }))
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        let next = from_seq.max(1);
        Box::new(Reader {
            log: self,
            next,
            sled: Some(blocks::Reader::new(&self.store.db, next)),
            buffered: Vec::new().into_iter(),
            done: false,
        })
    }

    fn read_stream(&self, stream: StreamId) -> Result<Vec<RecordedEvent>, LogError> {
        // The queue before sled (see `pending`).
        let queued = self.pending.stream(stream);
        let db = &self.store.db;
        let mut out = Vec::new();
        // A stream's events often share a block: decode each block once.
        let mut block: Vec<RawEvent> = Vec::new();
        for seq in streams::seqs(db, stream)? {
            if !block.iter().any(|r| r.seq == seq) {
                block = match blocks::at_or_before(db, seq)? {
                    Some((first, value)) => blocks::decode(first, &value)?,
                    None => Vec::new(),
                };
            }
            let raw = block
                .iter()
                .find(|r| r.seq == seq)
                .ok_or(LogError::Corrupt {
                    seq,
                    reason: "indexed by its stream but missing".into(),
                })?;
            out.push(decode_at(seq, &raw.encoded)?);
        }
        let reached = out.last().map(|e: &RecordedEvent| e.version).unwrap_or(0);
        for event in queued.iter().filter(|e| e.version > reached) {
            out.push(decode_at(event.seq, &event.encoded)?);
        }
        Ok(out)
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, LogError> {
        match self.pending.idempotency(key) {
            Some(record) => Ok(Some(record)),
            None => self.store.idempotency(key),
        }
    }

    fn complete_idempotency(
        &self,
        pending: &IdempotencyRecord,
        status: u16,
        body: Vec<u8>,
    ) -> Result<IdempotencyRecord, LogError> {
        let done = IdempotencyRecord {
            status,
            body,
            ..pending.clone()
        };
        // Under the writer's lock: the compare and the write are one step.
        let mut writer = self.lock_writer()?;
        match self.idempotency(&pending.key)? {
            Some(current) if current == *pending => {
                self.journal(&mut writer, Entry::Completion(done.clone()))?;
                Ok(done)
            }
            // Someone completed it first: theirs stands.
            Some(current) => Ok(current),
            // Pruned meanwhile.
            None => Ok(done),
        }
    }

    fn prune_idempotency(&self, before: Timestamp) -> Result<usize, LogError> {
        let store = &self.store;
        // Not while the applier writes: a kept answer it is taking in must
        // see the record gone, or be pruned with it.
        let _applied = store.lock_applied()?;
        let start = [IDEM_TIME];
        let mut end = [IDEM_TIME; 9];
        end[1..].copy_from_slice(&before.as_micros().to_be_bytes());
        let mut batch = ::sled::Batch::default();
        let mut n = 0;
        for item in store.db.range(&start[..]..&end[..]) {
            let (key, _) = item.map_err(storage)?;
            let mut ikey = [IDEM; 33];
            ikey[1..].copy_from_slice(&key[9..41]);
            batch.remove(&ikey[..]);
            batch.remove(key);
            n += 1;
        }
        if n > 0 {
            store.db.apply_batch(batch).map_err(storage)?;
        }
        Ok(n)
    }
}

fn decode_at(seq: u64, encoded: &[u8]) -> Result<RecordedEvent, LogError> {
    codec::decode_event(encoded).map_err(|e| LogError::Corrupt {
        seq,
        reason: e.to_string(),
    })
}
