//! The single writer.
//!
//! One thread owns the write model ([`Ledger`]). Commands arrive over a
//! bounded channel; the writer takes one, drains whatever else is queued (up to
//! `max_batch`), decides each in turn against the state the previous ones left,
//! and appends all their events and idempotency records to the log in one
//! write (group commit). A second thread, the syncer, makes appended batches
//! durable (one fdatasync for every batch appended since its last) and only
//! then answers their commands and publishes their events, in order.
//!
//! Rationale: a single writer makes every balance invariant a local check with
//! no locks, and group commit amortises the fdatasync over every command that
//! arrived meanwhile. The writer does not wait for the fdatasync: it decides
//! batch N+1 while batch N is being made durable (pipelining), so the disk's
//! wait and the decisions overlap. Nothing decided on a batch is visible to
//! anyone before that batch is durable: answers (refusals too, which may
//! depend on it) and events leave only through the syncer, in batch order.

use crate::domain::ledger::InvariantViolation;
use crate::domain::{Command, Ctx, DomainError, Ledger, Outcome};
use crate::events::{Actor, RecordedEvent};
use crate::log::snapshots::WriteModelSnapshots;
use crate::log::{EventLog, Hash, IdempotencyKey, IdempotencyRecord, LogError, LogHead};
use crate::time::Clock;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most commands decided into one group commit.
    pub max_batch: usize,
    /// Commands waiting for the writer before senders are made to wait.
    pub queue_capacity: usize,
    /// Events between durable write-model snapshots (with a snapshot store).
    pub snapshot_every_events: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            queue_capacity: 16_384,
            snapshot_every_events: 1_000_000,
        }
    }
}

/// A command's response as the caller rendered it, kept for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Turns a command's answer (its outcome, or why it was refused) into what is
/// kept for idempotent replays. It sees no state: rendering a resource is the
/// read side's work (from the read models, after the fact), so the writer
/// only encodes; see [`IdempotencyRecord::PENDING_RENDER`].
pub type Render = Box<dyn FnOnce(Result<&Outcome, &DomainError>) -> Rendered + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub fingerprint: Hash,
}

pub struct Submission {
    pub actor: Actor,
    pub idempotency: Option<Idempotency>,
    pub command: Command,
    pub render: Option<Render>,
}

#[derive(Debug, Clone)]
pub enum Reply {
    /// Decided now. `last_seq` is the log position a reader must have reached to
    /// see the effect (read-your-writes).
    Executed {
        result: Result<Outcome, DomainError>,
        rendered: Option<Rendered>,
        last_seq: u64,
    },
    /// The same request was answered before; here is that answer.
    Replayed(IdempotencyRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the engine is not running")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Invariant(#[from] crate::domain::ledger::InvariantViolation),
    #[error("cannot start the writer thread: {0}")]
    Thread(String),
}

type Waiter = oneshot::Sender<Result<Reply, EngineError>>;

/// A batch the writer has decided and appended, on its way to the syncer.
struct Appended {
    /// What the batch appended: its events, and the head after them (`None`
    /// when it appended nothing, e.g. only refusals).
    events: Vec<RecordedEvent>,
    head: Option<LogHead>,
    answers: Vec<(Waiter, Result<Reply, EngineError>)>,
    /// Duplicates inside the batch: the answer at the index, copied.
    followers: Vec<(usize, Waiter)>,
}

/// Batches appended but not yet handed to the syncer before the writer
/// waits: enough to keep both threads busy, not a queue of history.
const SYNC_QUEUE: usize = 4;

/// A group commit as its subscribers see it: the events it made durable, and
/// the chain hash after the last of them (so a follower records its position
/// without reading the log back).
#[derive(Debug)]
pub struct Committed {
    pub events: Vec<RecordedEvent>,
    pub last_hash: Hash,
}

/// Batch sizes are counted in these buckets (upper bounds, commands per batch).
pub const BATCH_BUCKETS: [u64; 8] = [1, 4, 16, 64, 256, 1024, 4096, 16384];

/// Upper bounds (µs) of the histogram of group commits' durations: the
/// fdatasync every acknowledgement waits for, where a disk shared with
/// other writers shows first.
pub const SYNC_BUCKETS_MICROS: [u64; 10] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Counters the writer keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub events: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    pub sync_buckets: [AtomicU64; SYNC_BUCKETS_MICROS.len()],
    /// Group commits that wrote (and synced) something; with
    /// `sync_micros`, the histogram's count and sum.
    pub syncs: AtomicU64,
    pub sync_micros: AtomicU64,
}

impl EngineStats {
    fn observe_batch(&self, commands: usize) {
        let n = commands as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(n, Ordering::Relaxed);
        for (bound, bucket) in BATCH_BUCKETS.iter().zip(&self.batch_size_buckets) {
            if n <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn observe_sync(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_micros.fetch_add(micros, Ordering::Relaxed);
        for (bound, bucket) in SYNC_BUCKETS_MICROS.iter().zip(&self.sync_buckets) {
            if micros <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A read-only look at the write model, run on the writer between batches.
type Inspection = Box<dyn FnOnce(&Ledger) + Send>;

// Commands are the common case: boxing them to shrink the rare inspection
// would cost an allocation per command.
#[allow(clippy::large_enum_variant)]
enum Queued {
    Command {
        submission: Submission,
        reply: Waiter,
    },
    Inspect(Inspection),
}

/// Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Queued>,
    committed: watch::Receiver<u64>,
    events: broadcast::Sender<Arc<Committed>>,
    stats: Arc<EngineStats>,
}

impl EngineHandle {
    pub async fn submit(&self, submission: Submission) -> Result<Reply, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Queued::Command { submission, reply })
            .await
            .map_err(|_| EngineError::Unavailable)?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Runs `look` against the write model, after whatever the writer holds
    /// now: what-if questions (bulk previews) are answered by the same
    /// decisions as the commands, on the same state, without a copy of it.
    /// That state may include a batch still being made durable (pipelining),
    /// as the next command's decision would.
    pub async fn inspect<T: Send + 'static>(
        &self,
        look: impl FnOnce(&Ledger) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        let job: Inspection = Box::new(move |ledger| {
            let _ = reply.send(look(ledger));
        });
        self.tx
            .send(Queued::Inspect(job))
            .await
            .map_err(|_| EngineError::Unavailable)?;
        rx.await.map_err(|_| EngineError::Unavailable)
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The last durable sequence number.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Committed events, batch by batch. A subscriber that lags must catch up
    /// from the log (`read_all`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.events.subscribe()
    }
}

impl Appended {
    /// Answers every waiter of the batch with the same internal error.
    fn fail(self, reason: &str) {
        let waiters = self.answers.into_iter().map(|(w, _)| w);
        for waiter in waiters.chain(self.followers.into_iter().map(|(_, w)| w)) {
            let _ = waiter.send(Err(EngineError::Internal(reason.to_string())));
        }
    }

    /// Sends the answers (the followers get copies of theirs).
    fn answer(self) {
        for (index, waiter) in self.followers {
            if let Some((_, answer)) = self.answers.get(index) {
                let _ = waiter.send(answer.clone());
            }
        }
        for (waiter, answer) in self.answers {
            let _ = waiter.send(answer);
        }
    }
}

/// Makes appended batches durable, then answers and publishes them, in the
/// order the writer appended them.
struct Syncer {
    log: Arc<dyn EventLog>,
    committed: watch::Sender<u64>,
    events: broadcast::Sender<Arc<Committed>>,
    stats: Arc<EngineStats>,
}

impl Syncer {
    fn run(self, appended: std::sync::mpsc::Receiver<Appended>) {
        while let Ok(first) = appended.recv() {
            // Every batch appended meanwhile shares this fdatasync.
            let mut group = vec![first];
            group.extend(appended.try_iter());
            let wrote = group.iter().any(|a| a.head.is_some());
            let synced = if wrote {
                let started = std::time::Instant::now();
                let synced = self.log.sync();
                self.stats.observe_sync(started.elapsed());
                synced
            } else {
                Ok(())
            };
            match synced {
                Ok(()) => {
                    if wrote {
                        self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    for batch in group {
                        self.publish(batch);
                    }
                }
                Err(e) => {
                    // As after a failed fdatasync in one step: the batches
                    // are in the log (the writer's state holds them too) but
                    // not known durable, so their commands fail; a retry
                    // with the same key replays. Their events are not
                    // published: the read models find the gap and catch up
                    // from the log.
                    self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "group commit failed");
                    for batch in group {
                        batch.fail(&e.to_string());
                    }
                }
            }
        }
    }

    fn publish(&self, mut batch: Appended) {
        let events = std::mem::take(&mut batch.events);
        if let Some(head) = batch.head.filter(|_| !events.is_empty()) {
            self.stats
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            let _ = self.events.send(Arc::new(Committed {
                events,
                last_hash: head.last_hash,
            }));
            self.committed.send_replace(head.last_seq);
        }
        batch.answer();
    }
}

/// Rebuilds the write model by replaying the whole log through `apply`, which
/// re-checks every invariant; a log that breaks one refuses to load.
pub fn rebuild(log: &dyn EventLog) -> Result<Ledger, StartError> {
    rebuild_from(log, None)
}

/// As [`rebuild`], from the newest snapshot the log vouches for (if any) and
/// the tail of the log after it.
pub fn rebuild_from(
    log: &dyn EventLog,
    snapshots: Option<&WriteModelSnapshots>,
) -> Result<Ledger, StartError> {
    load(log, snapshots).map(|(ledger, _)| ledger)
}

/// The write model, and the seq of the snapshot it started from (0: none).
fn load(
    log: &dyn EventLog,
    snapshots: Option<&WriteModelSnapshots>,
) -> Result<(Ledger, u64), StartError> {
    let mut ledger = snapshots.and_then(|s| s.load(log)).unwrap_or_default();
    let from = ledger.last_seq;
    crate::log::replay(log, from + 1, |event| {
        ledger.apply(event).map_err(StartError::from)
    })?;
    Ok((ledger, from))
}

pub struct Engine {
    log: Arc<dyn EventLog>,
    snapshots: Option<WriteModelSnapshots>,
    /// Seq of the last snapshot taken (or loaded), and whether one is being written.
    snapshot_seq: u64,
    snapshotting: Arc<std::sync::atomic::AtomicBool>,
    snapshot_thread: Option<std::thread::JoinHandle<()>>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    config: EngineConfig,
    /// To the syncer; `None` once the writer stops.
    syncer: Option<std::sync::mpsc::SyncSender<Appended>>,
    syncer_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<EngineStats>,
}

impl Engine {
    /// Loads the write model from the log and starts the writer thread. The
    /// writer stops when every handle is dropped, after answering what it holds.
    pub fn start(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<(EngineHandle, std::thread::JoinHandle<()>), StartError> {
        Self::start_with_snapshots(log, clock, config, None)
    }

    /// As [`Engine::start`], loading from and writing write-model snapshots
    /// every `config.snapshot_every_events` events.
    pub fn start_with_snapshots(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        snapshots: Option<WriteModelSnapshots>,
    ) -> Result<(EngineHandle, std::thread::JoinHandle<()>), StartError> {
        let (ledger, snapshot_seq) = load(log.as_ref(), snapshots.as_ref())?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (committed, committed_rx) = watch::channel(ledger.last_seq);
        let (events, _) = broadcast::channel(1024);
        let stats = Arc::new(EngineStats::default());
        let handle = EngineHandle {
            tx,
            committed: committed_rx,
            events: events.clone(),
            stats: stats.clone(),
        };
        let (to_syncer, appended) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
        let syncer = Syncer {
            log: log.clone(),
            committed,
            events,
            stats: stats.clone(),
        };
        let syncer_thread = std::thread::Builder::new()
            .name("ledger-sync".into())
            .spawn(move || syncer.run(appended))
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let engine = Engine {
            log,
            snapshots,
            snapshot_seq,
            snapshotting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            snapshot_thread: None,
            clock,
            ledger,
            config,
            syncer: Some(to_syncer),
            syncer_thread: Some(syncer_thread),
            stats,
        };
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || engine.run(rx))
            .map_err(|e| StartError::Thread(e.to_string()))?;
        Ok((handle, thread))
    }

    fn run(mut self, mut rx: mpsc::Receiver<Queued>) {
        // What building the write model freed (replay, snapshot decode).
        crate::memory::give_back_freed();
        // A long replay at start (no snapshot, or an old one): snapshot now,
        // so a crash soon after does not replay it all again.
        let head = self.log.head();
        if head.last_seq == self.ledger.last_seq {
            self.maybe_snapshot(head.last_hash);
        }
        let max = self.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
        // Everything appended is made durable and answered before the stop.
        self.syncer = None;
        if let Some(t) = self.syncer_thread.take() {
            let _ = t.join();
        }
        self.final_snapshot();
    }

    /// At a clean stop: the snapshot in flight finishes, and one is written at
    /// the last seq, so the next start replays nothing.
    fn final_snapshot(&mut self) {
        if let Some(t) = self.snapshot_thread.take() {
            let _ = t.join();
        }
        let Some(store) = &self.snapshots else {
            return;
        };
        if self.ledger.last_seq == self.snapshot_seq {
            return;
        }
        let hash = match self.log.read_raw(self.ledger.last_seq).next() {
            Some(Ok(raw)) if raw.seq == self.ledger.last_seq => raw.hash,
            _ => return,
        };
        match store.save(&self.ledger, hash) {
            Ok(path) => {
                tracing::info!(seq = self.ledger.last_seq, path = %path.display(), "write-model snapshot written at stop")
            }
            Err(e) => tracing::warn!(error = %e, "write-model snapshot at stop failed"),
        }
    }

    fn process(&mut self, batch: &mut Vec<Queued>) {
        // Inspections run after the batch's decisions, on the state the next
        // batch will be decided on (its sync may still be in flight).
        let mut inspections: Vec<Inspection> = Vec::new();
        let mut commands = Vec::with_capacity(batch.len());
        for queued in batch.drain(..) {
            match queued {
                Queued::Command { submission, reply } => commands.push((submission, reply)),
                Queued::Inspect(job) => inspections.push(job),
            }
        }
        if !commands.is_empty() {
            self.process_commands(commands);
        }
        for job in inspections {
            // A panic in a look is the asker's bug; the writer lives on.
            let ledger = &self.ledger;
            if std::panic::catch_unwind(AssertUnwindSafe(|| job(ledger))).is_err() {
                tracing::error!("panic while inspecting the write model");
            }
        }
    }

    fn process_commands(&mut self, batch: Vec<(Submission, Waiter)>) {
        self.stats.observe_batch(batch.len());
        let mut events: Vec<RecordedEvent> = Vec::new();
        let mut records: Vec<IdempotencyRecord> = Vec::new();
        let mut answers: Vec<(Waiter, Result<Reply, EngineError>)> =
            Vec::with_capacity(batch.len());
        // Duplicates inside one batch wait for the first one's answer.
        let mut pending: HashMap<IdempotencyKey, (Hash, usize)> = HashMap::new();
        let mut followers: Vec<(usize, Waiter)> = Vec::new();
        let mut broken: Option<String> = None;

        for (submission, reply) in batch {
            if broken.is_some() {
                answers.push((reply, Err(EngineError::Internal("batch aborted".into()))));
                continue;
            }
            if let Some(idem) = submission.idempotency {
                if let Some((fingerprint, index)) = pending.get(&idem.key) {
                    if *fingerprint == idem.fingerprint {
                        followers.push((*index, reply));
                    } else {
                        answers.push((reply, Err(EngineError::IdempotencyKeyReused)));
                    }
                    continue;
                }
                match self.log.idempotency(&idem.key) {
                    Ok(Some(record)) if record.fingerprint == idem.fingerprint => {
                        answers.push((reply, Ok(Reply::Replayed(record))));
                        continue;
                    }
                    Ok(Some(_)) => {
                        answers.push((reply, Err(EngineError::IdempotencyKeyReused)));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        answers.push((reply, Err(EngineError::Internal(e.to_string()))));
                        continue;
                    }
                }
            }
            let now = self.clock.now();
            let mut new_id = Uuid::now_v7;
            let mut ctx = Ctx {
                now,
                ids: &mut new_id,
            };
            let request_id = submission.idempotency.map(|i| i.key.request_id);
            let render = submission.render;
            let ledger = &mut self.ledger;
            // A panic in a decision or a renderer is a bug like a broken invariant:
            // abandon the batch and rebuild, rather than lose the writer thread.
            let executed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let result = ledger.execute(
                    &submission.actor,
                    request_id,
                    &submission.command,
                    &mut ctx,
                    &mut events,
                )?;
                let rendered = render.map(|r| r(result.as_ref()));
                Ok::<_, InvariantViolation>((result, rendered))
            }));
            let (result, rendered) = match executed {
                Ok(Ok(done)) => done,
                Ok(Err(violation)) => {
                    tracing::error!(%violation, "invariant violated; batch abandoned");
                    broken = Some(violation.to_string());
                    answers.push((
                        reply,
                        Err(EngineError::Internal("invariant violated".into())),
                    ));
                    continue;
                }
                Err(_) => {
                    tracing::error!("panic while deciding a command; batch abandoned");
                    broken = Some("panic while deciding a command".into());
                    answers.push((reply, Err(EngineError::Internal("internal error".into()))));
                    continue;
                }
            };
            // Successes are always kept; refusals too when the caller rendered
            // them, so a retry gets the original answer (API.md: "the original
            // status and body"), not a re-decision against changed state.
            if let Some(idem) = submission
                .idempotency
                .filter(|_| result.is_ok() || rendered.is_some())
            {
                let (status, body) = rendered
                    .as_ref()
                    .map(|r| (r.status, r.body.clone()))
                    .unwrap_or((200, Vec::new()));
                pending.insert(idem.key, (idem.fingerprint, answers.len()));
                records.push(IdempotencyRecord {
                    key: idem.key,
                    fingerprint: idem.fingerprint,
                    status,
                    body,
                    at: now,
                    last_seq: self.ledger.last_seq,
                });
            }
            let last_seq = self.ledger.last_seq;
            answers.push((
                reply,
                Ok(Reply::Executed {
                    result,
                    rendered,
                    last_seq,
                }),
            ));
        }

        let mut head = None;
        if broken.is_none() && !(events.is_empty() && records.is_empty()) {
            match self.log.append_unsynced(&events, &records) {
                Ok(h) => head = Some(h),
                Err(e) => {
                    self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "group commit failed");
                    broken = Some(e.to_string());
                }
            }
        }
        let appended = Appended {
            events,
            head,
            answers,
            followers,
        };
        if let Some(reason) = broken {
            self.recover();
            appended.fail(&reason);
            return;
        }
        // The syncer answers; if it is gone, these are answered here.
        if let Some(Err(std::sync::mpsc::SendError(lost))) =
            self.syncer.as_ref().map(|s| s.send(appended))
        {
            lost.fail("the log syncer stopped");
        }
        if let Some(head) = head {
            self.maybe_snapshot(head.last_hash);
        }
    }

    /// Every `snapshot_every_events`, a copy of the write model is written
    /// off the writer thread (one at a time); the writer pauses only to copy.
    /// The copy may include batches still being made durable: a snapshot
    /// the log does not vouch for after a crash is passed over for an older
    /// one (see `WriteModelSnapshots::load`).
    fn maybe_snapshot(&mut self, hash: Hash) {
        let Some(store) = &self.snapshots else {
            return;
        };
        let every = self.config.snapshot_every_events.max(1);
        if self.ledger.last_seq < self.snapshot_seq + every
            || self.snapshotting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.snapshot_seq = self.ledger.last_seq;
        let copy = self.ledger.clone();
        let (store, busy) = (store.clone(), self.snapshotting.clone());
        if let Some(t) = self.snapshot_thread.take() {
            let _ = t.join(); // finished: `snapshotting` was false
        }
        let spawned = std::thread::Builder::new()
            .name("write-model-snapshot".into())
            .spawn(move || {
                match store.save(&copy, hash) {
                    Ok(path) => {
                        tracing::info!(seq = copy.last_seq, path = %path.display(), "write-model snapshot written")
                    }
                    Err(e) => tracing::warn!(error = %e, "write-model snapshot failed"),
                }
                drop(copy);
                crate::memory::give_back_freed();
                busy.store(false, Ordering::Release);
            });
        match spawned {
            Ok(t) => self.snapshot_thread = Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the snapshot thread");
                self.snapshotting.store(false, Ordering::Release);
            }
        }
    }

    /// After a failed append or a broken invariant, the in-memory state holds
    /// effects that are not durable: throw it away and rebuild from the log.
    fn recover(&mut self) {
        match rebuild_from(self.log.as_ref(), self.snapshots.as_ref()) {
            Ok(ledger) => self.ledger = ledger,
            Err(e) => {
                // The durable log itself no longer loads: serving on would risk money.
                tracing::error!(error = %e, "cannot rebuild the write model; stopping");
                std::process::abort();
            }
        }
    }
}
