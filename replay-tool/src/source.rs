//! Where events come from, and the checks every reader gets for free.
//!
//! A source is a data directory (the server stopped, or a backup; the log is
//! `<DIR>/log`, opened with [`SledLog`]) or a running server's admin event
//! stream (`GET /api/v1/admin/events`). Either way a reader thread produces
//! raw events in batches and checks, before handing them on:
//! - the sequence is dense (from 1, or from the first event asked for);
//! - every stored hash is `sha256(previous hash ‖ stored bytes)`;
//! - for a data directory read to its end, the log ends where its head
//!   record says (a hash chain alone cannot see a removed last event).
//!
//! Each event is decoded from the stored bytes (never from a server's
//! decoded `data`) and checked to name its own sequence number, on the
//! reader thread too: the consumer (`Events`) is the busy one (the SQL
//! rebuild's fold), and decoding there was a thirtieth of its time. It gets
//! the events in order, and a decoding failure where it occurred.

use crate::progress::Progress;
use anyhow::{anyhow, Context};
use base64::Engine as _;
use ledger_core::codec;
use ledger_core::events::RecordedEvent;
use ledger_core::log::sled::{SledLog, SledOptions};
use ledger_core::log::{chain_hash, EventLog, Hash, LogError, GENESIS_HASH};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Events handed from the reader thread to the consumer at a time.
const BATCH: usize = 4096;
/// Batches in flight between the two threads.
const IN_FLIGHT: usize = 8;
/// Events asked of the server per call (its maximum).
pub const PAGE: u64 = 10_000;

/// Why a run stopped short.
#[derive(Debug)]
pub enum Failure {
    /// The history itself is wrong, first at `seq`.
    Bad { seq: u64, reason: String },
    /// Could not read or write at all (no log, server unreachable, disk full).
    Io(anyhow::Error),
}

impl Failure {
    pub fn bad(seq: u64, reason: impl Into<String>) -> Self {
        Failure::Bad {
            seq,
            reason: reason.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e.into())
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    DataDir(PathBuf),
    Url { base: String, token: String },
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::DataDir(dir) => format!("data directory {}", dir.display()),
            Source::Url { base, .. } => format!("server {base}"),
        }
    }
}

/// What to read.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// First event handed out (1 = from genesis, chain checked from there).
    /// From a later event, the chain is checked from the stored hash of the
    /// event before it.
    pub from_seq: u64,
    /// Last event handed out, if not the end of the log.
    pub to_seq: Option<u64>,
}

impl Range {
    pub const ALL: Range = Range {
        from_seq: 1,
        to_seq: None,
    };
}

/// Events packed in one buffer: one allocation per batch, reused once the
/// consumer hands it back, so a replay of millions of events allocates
/// almost nothing for them (and never frees across threads).
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    items: Vec<Item>,
    /// `items` decoded, in the same order (taken by the consumer).
    decoded: Vec<Result<RecordedEvent, Failure>>,
    /// For a chunk read on its own: the stored hash of the event before it,
    /// which its first event was linked to. The consumer checks it is the
    /// hash of the last event of the chunk before.
    anchor: Option<Hash>,
    /// The part of a chunk read before its reader failed: the failure comes
    /// next from the same reader, and must be seen before the next chunk.
    cut_short: bool,
}

#[derive(Clone, Copy)]
struct Item {
    seq: u64,
    /// Where the event's bytes end in `bytes` (they start where the previous end).
    end: usize,
    hash: Hash,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.decoded.clear();
        self.anchor = None;
        self.cut_short = false;
    }
}

/// A stored event as read: its number, chain hash and stored bytes.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    pub seq: u64,
    pub hash: Hash,
    pub encoded: &'a [u8],
}

enum Msg {
    /// How many events the log holds, when the source knows (for progress).
    Total(u64),
    Batch(Batch),
    Failed(Failure),
    End,
}

/// Checks each raw event continues the chain.
struct Linker {
    expected: u64,
    previous: Hash,
    /// The hash the first event was linked to.
    first_previous: Hash,
    /// The event before `from_seq`, read only for its hash.
    anchor: Option<u64>,
    to_seq: Option<u64>,
}

enum Step {
    Skip,
    Take,
    Stop,
}

impl Linker {
    fn new(range: Range) -> Self {
        let from = range.from_seq.max(1);
        Self {
            expected: from,
            previous: GENESIS_HASH,
            first_previous: GENESIS_HASH,
            anchor: (from > 1).then_some(from - 1),
            to_seq: range.to_seq,
        }
    }

    /// Where reading must start: the anchor, or the first event.
    fn start(&self) -> u64 {
        self.anchor.unwrap_or(self.expected)
    }

    fn link(&mut self, raw: Raw<'_>) -> Result<Step, Failure> {
        if let Some(anchor) = self.anchor.take() {
            if raw.seq != anchor {
                return Err(Failure::bad(anchor, "missing (the sequence has a gap)"));
            }
            self.previous = raw.hash;
            self.first_previous = raw.hash;
            return Ok(Step::Skip);
        }
        if self.to_seq.is_some_and(|to| self.expected > to) {
            return Ok(Step::Stop);
        }
        if raw.seq != self.expected {
            let reason = if raw.seq > self.expected {
                format!(
                    "missing (the sequence jumps from {} to {})",
                    self.expected.saturating_sub(1),
                    raw.seq
                )
            } else {
                format!(
                    "out of order (event {} found where {} belongs)",
                    raw.seq, self.expected
                )
            };
            return Err(Failure::bad(self.expected, reason));
        }
        if chain_hash(&self.previous, raw.encoded) != raw.hash {
            return Err(Failure::bad(
                raw.seq,
                "hash chain broken (the stored hash does not match the stored bytes and the previous hash)",
            ));
        }
        self.previous = raw.hash;
        self.expected += 1;
        Ok(Step::Take)
    }

    fn previous_of_first(&self) -> Hash {
        self.first_previous
    }

    /// The last event linked (0 if none) and its hash.
    fn last(&self) -> (u64, Hash) {
        (self.expected - 1, self.previous)
    }

    /// Whether the reader still owes events (not stopped by `to_seq`).
    fn wants_more(&self) -> bool {
        match self.to_seq {
            None => true,
            Some(to) => self.expected <= to,
        }
    }
}

/// Feeds a batch buffer; `false` once the consumer has gone.
struct Sender {
    tx: SyncSender<Msg>,
    /// Emptied batches coming back from the consumer.
    recycled: Receiver<Batch>,
    batch: Batch,
    /// Send only on `flush` (a chunk is one batch, whatever its size).
    chunked: bool,
}

impl Sender {
    fn push(&mut self, raw: Raw<'_>) -> bool {
        self.batch.bytes.extend_from_slice(raw.encoded);
        self.batch.items.push(Item {
            seq: raw.seq,
            end: self.batch.bytes.len(),
            hash: raw.hash,
        });
        self.batch.decoded.push(decode(raw));
        if !self.chunked && self.batch.items.len() >= BATCH {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.batch.items.is_empty() {
            return true;
        }
        let mut next = self.recycled.try_recv().unwrap_or_else(|_| Batch {
            bytes: Vec::with_capacity(BATCH * 256),
            items: Vec::with_capacity(BATCH),
            decoded: Vec::with_capacity(BATCH),
            anchor: None,
            cut_short: false,
        });
        next.clear();
        let batch = std::mem::replace(&mut self.batch, next);
        self.tx.send(Msg::Batch(batch)).is_ok()
    }

    fn send(&mut self, msg: Msg) {
        if self.chunked && matches!(msg, Msg::Failed(_)) {
            self.batch.cut_short = true;
        }
        if self.flush() {
            let _ = self.tx.send(msg);
        }
    }
}

/// One reader thread as the consumer sees it.
struct Reader {
    rx: Option<Receiver<Msg>>,
    recycle: SyncSender<Batch>,
    thread: Option<JoinHandle<()>>,
}

fn spawn_reader(
    chunked: bool,
    work: impl FnOnce(&mut Sender) -> Result<(), Failure> + Send + 'static,
) -> Result<Reader, Failure> {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    let (recycle, recycled) = sync_channel(IN_FLIGHT + 2);
    let thread = std::thread::Builder::new()
        .name("replay-reader".into())
        .spawn(move || {
            let mut sender = Sender {
                tx,
                recycled,
                batch: Batch::default(),
                chunked,
            };
            let result = work(&mut sender);
            match result {
                Ok(()) => sender.send(Msg::End),
                Err(f) => sender.send(Msg::Failed(f)),
            }
        })
        .map_err(|e| Failure::Io(anyhow!("cannot start a reader thread: {e}")))?;
    Ok(Reader {
        rx: Some(rx),
        recycle,
        thread: Some(thread),
    })
}

/// The consumer's side: checked, decoded events in order.
pub struct Events {
    /// Batches are taken from the readers in turn.
    readers: Vec<Reader>,
    turn: usize,
    current: Batch,
    /// Next item of `current`, and where its bytes start.
    pos: usize,
    start: usize,
    /// The last event handed out, to check each chunk continues it.
    last: Option<(u64, Hash)>,
    finished: bool,
    progress: Progress,
    /// How many events the source says it holds, if it says.
    pub total: Option<u64>,
}

/// Reader threads for a data directory whose log opens: the range is cut in
/// chunks of `BATCH` events dealt out in turn, so reading (sled's page
/// loads, copying, hashing) runs on several cores while the consumer decodes
/// and applies in order.
const SLED_READERS: usize = 2;

impl Events {
    /// Starts reading `range` of `source` on reader threads.
    pub fn open(source: &Source, range: Range, what: &str) -> Result<Events, Failure> {
        let mut total = None;
        let readers = match source {
            Source::DataDir(dir) => match open_log(dir) {
                Ok(log) => {
                    let log = Arc::new(log);
                    total = Some(log.head().last_seq);
                    (0..SLED_READERS)
                        .map(|k| {
                            let log = log.clone();
                            spawn_reader(true, move |sender| {
                                read_chunks(&log, range, k, SLED_READERS, sender)
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?
                }
                // The log refuses to open when its tail is bad. Its verdict
                // names the first bad event of the tail; an earlier one may
                // exist, so scan the whole chain without it, and keep its
                // verdict if the scan finds nothing.
                Err(Failure::Bad { seq, reason }) => {
                    let path = log_dir(dir)?;
                    vec![spawn_reader(false, move |sender| {
                        read_raw_sled(&path, range, sender)?;
                        Err(Failure::Bad { seq, reason })
                    })?]
                }
                Err(other) => return Err(other),
            },
            Source::Url { base, token } => {
                let (base, token) = (base.clone(), token.clone());
                vec![spawn_reader(false, move |sender| {
                    read_url(&base, &token, range, sender)
                })?]
            }
        };
        let mut events = Events {
            readers,
            turn: 0,
            current: Batch::default(),
            pos: 0,
            start: 0,
            last: None,
            finished: false,
            progress: Progress::hidden(),
            total,
        };
        if events.total.is_none() {
            // A single reader says first how much there is, if it knows.
            events.fill()?;
        }
        let expected = events.total.map(|t| {
            range
                .to_seq
                .unwrap_or(t)
                .min(t)
                .saturating_sub(range.from_seq.saturating_sub(1))
        });
        events.progress = Progress::new(expected, what);
        events.progress.inc(events.current.items.len() as u64);
        Ok(events)
    }

    fn finish(&mut self) {
        self.finished = true;
        self.progress.finish();
        self.stop_readers();
    }

    /// Closes every channel (a reader still running stops at its next send)
    /// and waits for the readers, so the log is closed when this returns.
    fn stop_readers(&mut self) {
        for reader in &mut self.readers {
            drop(reader.rx.take());
        }
        for reader in &mut self.readers {
            if let Some(t) = reader.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Takes the next message in turn until a batch with events is current,
    /// or the end, or a failure.
    fn fill(&mut self) -> Result<(), Failure> {
        while self.pos >= self.current.items.len() && !self.finished {
            let turn = self.turn;
            let Some(rx) = &self.readers[turn].rx else {
                self.finished = true;
                break;
            };
            match rx.recv() {
                Ok(Msg::Batch(b)) => {
                    self.progress.inc(b.items.len() as u64);
                    let cut_short = b.cut_short;
                    if let Err(f) = self.check_continues(&b) {
                        self.finish();
                        return Err(f);
                    }
                    let used = std::mem::replace(&mut self.current, b);
                    let _ = self.readers[turn].recycle.try_send(used);
                    self.pos = 0;
                    self.start = 0;
                    if self.readers.len() > 1 && !cut_short {
                        self.turn = (self.turn + 1) % self.readers.len();
                    }
                }
                Ok(Msg::Total(n)) => {
                    self.total = Some(n);
                    return Ok(());
                }
                Ok(Msg::End) => self.finish(),
                Ok(Msg::Failed(f)) => {
                    self.finish();
                    return Err(f);
                }
                Err(_) => {
                    self.finish();
                    return Err(Failure::Io(anyhow!("a reader thread stopped")));
                }
            }
        }
        Ok(())
    }

    /// A chunk read on its own must start right after the previous one,
    /// linked to the hash the previous one ended with.
    fn check_continues(&mut self, b: &Batch) -> Result<(), Failure> {
        let Some(first) = b.items.first() else {
            return Ok(());
        };
        if let Some((last_seq, last_hash)) = self.last {
            if first.seq != last_seq + 1 {
                return Err(Failure::bad(
                    last_seq + 1,
                    "missing (the sequence has a gap)",
                ));
            }
            if b.anchor.is_some_and(|a| a != last_hash) {
                return Err(Failure::bad(
                    last_seq,
                    "changed while being read (its hash differs between reads)",
                ));
            }
        }
        if let Some(last) = b.items.last() {
            self.last = Some((last.seq, last.hash));
        }
        Ok(())
    }

    /// The next event: its stored bytes (chain link already checked) and
    /// the event decoded from them.
    pub fn next(&mut self) -> Result<Option<(Raw<'_>, RecordedEvent)>, Failure> {
        while self.pos >= self.current.items.len() {
            if self.finished {
                return Ok(None);
            }
            // Stops early only at a `Total`, which just goes round again.
            self.fill()?;
        }
        let item = self.current.items[self.pos];
        let raw = Raw {
            seq: item.seq,
            hash: item.hash,
            encoded: &self.current.bytes[self.start..item.end],
        };
        let decoded = std::mem::replace(
            &mut self.current.decoded[self.pos],
            Err(Failure::bad(item.seq, String::new())),
        );
        self.pos += 1;
        self.start = item.end;
        Ok(Some((raw, decoded?)))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.progress.finish();
        self.stop_readers();
    }
}

/// Decodes a raw event and checks it is stored under its own number.
pub fn decode(raw: Raw<'_>) -> Result<RecordedEvent, Failure> {
    let event = codec::decode_event(raw.encoded)
        .map_err(|e| Failure::bad(raw.seq, format!("does not decode: {e}")))?;
    if event.seq != raw.seq {
        return Err(Failure::bad(
            raw.seq,
            format!(
                "stored as event {} but says it is event {}",
                raw.seq, event.seq
            ),
        ));
    }
    Ok(event)
}

// ---------------------------------------------------------------------------
// data directory
// ---------------------------------------------------------------------------

/// `<DIR>/log`, which must exist: an auditor's tool never creates a log.
pub fn log_dir(dir: &Path) -> Result<PathBuf, Failure> {
    let log = dir.join("log");
    if !log.join("conf").exists() && !log.join("db").exists() {
        return Err(Failure::Io(anyhow!(
            "no event log at {} (expected the server's data directory, or a backup made by `replay-tool backup`)",
            log.display()
        )));
    }
    Ok(log)
}

/// Opens the log of a data directory (the server must be stopped).
pub fn open_log(dir: &Path) -> Result<SledLog, Failure> {
    let log = log_dir(dir)?;
    // A scan loads every page once and never again: a small page cache
    // keeps memory (and the kernel's page zeroing) down.
    let options = SledOptions {
        cache_capacity_bytes: 64 * 1024 * 1024,
    };
    open_sled(&log, options).map_err(|e| match e {
        LogError::Corrupt { seq, reason } => Failure::Bad { seq, reason },
        other => Failure::Io(anyhow!(
            "cannot open the event log at {}: {other} (is the server still running on it? stop it, \
             read through --url, or work on a backup)",
            log.display()
        )),
    })
}

/// Opens a sled log, waiting a little if this very process closed it a
/// moment ago: sled finishes closing on its own threads, and holds the
/// directory's lock until then. Another process holding it (a running
/// server) still fails, after that short wait.
pub fn open_sled(path: &Path, options: SledOptions) -> Result<SledLog, LogError> {
    let mut waited = Duration::ZERO;
    loop {
        match SledLog::open_with(path, options.clone()) {
            Err(LogError::Storage(msg))
                if msg.contains("could not acquire lock") && waited < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(20));
                waited += Duration::from_millis(20);
            }
            other => return other,
        }
    }
}

const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Reader `k` of `readers`: chunks `k`, `k + readers`, … of `range`, each
/// read from the stored hash of the event before it and sent as one batch.
fn read_chunks(
    log: &SledLog,
    range: Range,
    k: usize,
    readers: usize,
    sender: &mut Sender,
) -> Result<(), Failure> {
    let head = log.head();
    let from = range.from_seq.max(1);
    let last = range
        .to_seq
        .map_or(head.last_seq, |to| to.min(head.last_seq));
    let mut chunk = k as u64;
    loop {
        let start = from.saturating_add(chunk.saturating_mul(BATCH as u64));
        if start > last {
            return Ok(());
        }
        let end = start.saturating_add(BATCH as u64 - 1).min(last);
        let mut linker = Linker::new(Range {
            from_seq: start,
            to_seq: Some(end),
        });
        let mut anchored = false;
        for raw in log.read_raw(linker.start()) {
            let raw = raw.map_err(|e| match e {
                LogError::Corrupt { seq, reason } => Failure::Bad { seq, reason },
                other => Failure::Io(anyhow!("reading the log: {other}")),
            })?;
            let raw = Raw {
                seq: raw.seq,
                hash: raw.hash,
                encoded: &raw.encoded,
            };
            match linker.link(raw)? {
                Step::Skip => continue,
                Step::Stop => break,
                Step::Take => {
                    if !anchored {
                        sender.batch.anchor = (start > 1).then_some(linker.previous_of_first());
                        anchored = true;
                    }
                    sender.push(raw);
                }
            }
        }
        if linker.anchor.is_some() {
            return Err(Failure::bad(start - 1, "missing (the sequence has a gap)"));
        }
        if linker.wants_more() {
            let (found, _) = linker.last();
            return Err(Failure::bad(
                found + 1,
                format!(
                    "missing (the log ends at {found} but its head record says {})",
                    head.last_seq
                ),
            ));
        }
        if end == head.last_seq {
            check_head(&linker, Some((head.last_seq, head.last_hash)))?;
        }
        if !sender.flush() {
            return Ok(());
        }
        chunk += readers as u64;
    }
}

/// The events found must end where the head record says the log ends.
fn check_head(linker: &Linker, head: Option<(u64, Hash)>) -> Result<(), Failure> {
    let Some((head_seq, head_hash)) = head else {
        return Ok(());
    };
    if linker.to_seq.is_some_and(|to| to < head_seq) {
        return Ok(());
    }
    let (last, hash) = linker.last();
    if head_seq > last {
        return Err(Failure::bad(
            last + 1,
            format!("missing (the log ends at {last} but its head record says {head_seq})"),
        ));
    }
    if head_seq < last {
        return Err(Failure::bad(
            head_seq + 1,
            format!("the head record ends the log at {head_seq} but events continue to {last}"),
        ));
    }
    if head_hash != hash {
        return Err(Failure::bad(
            last,
            "the chain hash differs from the head record",
        ));
    }
    Ok(())
}

/// Reads the stored events of the sled tree directly (through
/// `ledger_core::log::sled::raw`, which knows the layout), for a log whose
/// tail is too damaged for [`SledLog::open`]; `H` → last seq ‖ hash.
fn read_raw_sled(path: &Path, range: Range, sender: &mut Sender) -> Result<(), Failure> {
    let db = sled::Config::new().path(path).open().map_err(|e| {
        Failure::Io(anyhow!(
            "cannot open {} for a raw scan: {e}",
            path.display()
        ))
    })?;
    let storage = |e: sled::Error| Failure::Io(anyhow!("reading {}: {e}", path.display()));
    let head = match db.get([b'H']).map_err(storage)? {
        Some(v) if v.len() == 40 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&v[..8]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&v[8..]);
            Some((u64::from_be_bytes(seq), hash))
        }
        _ => None,
    };
    if let Some((seq, _)) = head {
        if sender.tx.send(Msg::Total(seq)).is_err() {
            return Ok(());
        }
    }
    let mut linker = Linker::new(range);
    for raw in ledger_core::log::sled::raw::events(&db, linker.start()) {
        let raw = raw.map_err(|e| match e {
            LogError::Corrupt { seq, reason } => Failure::Bad { seq, reason },
            other => Failure::Io(anyhow!("reading {}: {other}", path.display())),
        })?;
        let raw = Raw {
            seq: raw.seq,
            encoded: &raw.encoded,
            hash: raw.hash,
        };
        match linker.link(raw)? {
            Step::Skip => continue,
            Step::Stop => return Ok(()),
            Step::Take => {
                if !sender.push(raw) {
                    return Ok(());
                }
            }
        }
    }
    if linker.anchor.is_some() {
        return Ok(());
    }
    check_head(&linker, head)
}

// ---------------------------------------------------------------------------
// running server
// ---------------------------------------------------------------------------

/// The server's base address, without a trailing `/` or `/api/v1`.
pub fn base_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    trimmed
        .strip_suffix("/api/v1")
        .unwrap_or(trimmed)
        .to_string()
}

pub fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .context("building the HTTP client")
}

/// The fields of an event line we use. `data` (the server's decoding) is
/// deliberately ignored: events are decoded from `encoded`.
#[derive(serde::Deserialize)]
struct Line {
    seq: u64,
    encoded: String,
    hash: String,
}

fn read_url(base: &str, token: &str, range: Range, sender: &mut Sender) -> Result<(), Failure> {
    let client = http_client()?;
    let url = format!("{base}/api/v1/admin/events");
    let mut linker = Linker::new(range);
    let mut after = linker.start() - 1;
    let mut encoded = Vec::with_capacity(1024);
    loop {
        let limit = match linker.to_seq {
            // One more than needed so the end is seen without another call.
            Some(to) => (to.saturating_sub(after) + 1).clamp(1, PAGE),
            None => PAGE,
        };
        let response = client
            .get(&url)
            .query(&[("after", after), ("limit", limit)])
            .header("X-Admin-Token", token)
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (wrong admin token?)",
                404 => " (admin routes are off unless the server has EXPEREON_ADMIN_TOKEN set)",
                _ => "",
            };
            return Err(Failure::Io(anyhow!(
                "GET {url}?after={after}: {status}{hint}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        let body = response
            .bytes()
            .with_context(|| format!("reading GET {url}"))?;
        let mut lines = 0u64;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            let line: Line = serde_json::from_slice(line).map_err(|e| {
                Failure::bad(
                    linker.expected,
                    format!("the server sent an unreadable event line: {e}"),
                )
            })?;
            let seq = line.seq;
            encoded.clear();
            base64::engine::general_purpose::STANDARD
                .decode_vec(line.encoded.as_bytes(), &mut encoded)
                .map_err(|e| Failure::bad(seq, format!("`encoded` is not base64: {e}")))?;
            let hash: Hash = hex::decode(&line.hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| Failure::bad(seq, "`hash` is not 32 bytes of hex"))?;
            let raw = Raw {
                seq,
                encoded: &encoded,
                hash,
            };
            match linker.link(raw)? {
                Step::Skip => {}
                Step::Stop => return Ok(()),
                Step::Take => {
                    if !sender.push(raw) {
                        return Ok(());
                    }
                }
            }
            after = seq;
        }
        if lines < limit || !linker.wants_more() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::log::RawEvent;

    fn chain(n: u64) -> Vec<RawEvent> {
        let mut previous = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let encoded = vec![seq as u8; 10];
                let hash = chain_hash(&previous, &encoded);
                previous = hash;
                RawEvent { seq, encoded, hash }
            })
            .collect()
    }

    fn run(events: &[RawEvent], range: Range) -> Result<Vec<u64>, (u64, String)> {
        let mut linker = Linker::new(range);
        let mut taken = Vec::new();
        let start = linker.start();
        for raw in events.iter().filter(|r| r.seq >= start) {
            let raw = Raw {
                seq: raw.seq,
                hash: raw.hash,
                encoded: &raw.encoded,
            };
            match linker.link(raw) {
                Ok(Step::Take) => taken.push(raw.seq),
                Ok(Step::Skip) => {}
                Ok(Step::Stop) => break,
                Err(Failure::Bad { seq, reason }) => return Err((seq, reason)),
                Err(Failure::Io(e)) => panic!("{e}"),
            }
        }
        Ok(taken)
    }

    #[test]
    fn an_intact_chain_links_and_a_range_starts_from_its_anchor() {
        let events = chain(10);
        assert_eq!(
            run(&events, Range::ALL).unwrap(),
            (1..=10).collect::<Vec<_>>()
        );
        let range = Range {
            from_seq: 4,
            to_seq: Some(6),
        };
        assert_eq!(run(&events, range).unwrap(), vec![4, 5, 6]);
    }

    #[test]
    fn gaps_swaps_and_changed_bytes_name_the_first_bad_event() {
        let mut events = chain(10);
        events.remove(4);
        assert_eq!(run(&events, Range::ALL).unwrap_err().0, 5);

        let mut events = chain(10);
        events[6].encoded[0] ^= 1;
        assert_eq!(run(&events, Range::ALL).unwrap_err().0, 7);

        let mut events = chain(10);
        let (a, b) = (events[2].clone(), events[7].clone());
        events[2] = RawEvent { seq: 3, ..b };
        events[7] = RawEvent { seq: 8, ..a };
        assert_eq!(run(&events, Range::ALL).unwrap_err().0, 3);
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(base_url("http://h:1/"), "http://h:1");
        assert_eq!(base_url("http://h:1/api/v1/"), "http://h:1");
    }
}
