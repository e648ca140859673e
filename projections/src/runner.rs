//! Keeps the read model up to date with the engine, and lets readers wait for
//! a sequence number (read-your-writes).

use crate::model::ReadModel;
use crate::outbox::{Outbox, OutboxError};
use crate::snapshot::SnapshotStore;
use crate::sql::{self, Readers};
use crate::webhooks::OutboxEntry;
use ledger_core::engine::EngineHandle;
use ledger_core::log::EventLog;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::{broadcast, watch};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("reading the log: {0}")]
    Log(#[from] ledger_core::log::LogError),
    #[error(transparent)]
    Invariant(#[from] ledger_core::domain::ledger::InvariantViolation),
    #[error("the read model lock was poisoned")]
    Poisoned,
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Sql(#[from] crate::sql::SqlError),
}

/// Cheap to clone; shares one read model.
#[derive(Clone)]
pub struct Projections {
    model: Arc<RwLock<ReadModel>>,
    applied: watch::Receiver<u64>,
    outbox: Option<Outbox>,
    sql: Option<Readers>,
}

impl Projections {
    /// Builds the read model from sequence 0, then follows the engine.
    pub fn start(log: Arc<dyn EventLog>, engine: &EngineHandle) -> Result<Self, ProjectionError> {
        Self::start_inner(log, engine, None, None, None)
    }

    /// As [`Projections::start`], and feeds the webhook outbox kept in
    /// `outbox_dir`: the deliveries of an event are durable before the event
    /// counts as applied, so a reader that sees an event sees its deliveries.
    pub fn start_with_outbox(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        outbox_dir: &std::path::Path,
    ) -> Result<Self, ProjectionError> {
        let outbox = Outbox::open(outbox_dir, log.head().last_seq)?;
        Self::start_inner(log, engine, Some(outbox), None, None)
    }

    /// As [`Projections::start_with_outbox`], starting from the durable
    /// checkpoint in `checkpoints` (when one is usable) and writing a new one
    /// every `checkpoint_every` events; and keeps the SQL read models in the
    /// SQLite database at `sql_path` (resuming where it stopped).
    pub fn start_with_checkpoints(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        outbox_dir: &std::path::Path,
        checkpoints: SnapshotStore,
        checkpoint_every: u64,
        sql_path: Option<&Path>,
    ) -> Result<Self, ProjectionError> {
        let outbox = Outbox::open(outbox_dir, log.head().last_seq)?;
        Self::start_inner(
            log,
            engine,
            Some(outbox),
            Some((checkpoints, checkpoint_every.max(1))),
            sql_path.map(Path::to_path_buf),
        )
    }

    fn start_inner(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        outbox: Option<Outbox>,
        checkpoints: Option<(SnapshotStore, u64)>,
        sql_path: Option<PathBuf>,
    ) -> Result<Self, ProjectionError> {
        // Subscribe before catching up so no batch falls between the two.
        let mut events = engine.subscribe();
        let mut sql_writer = match &sql_path {
            Some(path) => {
                let mut conn = sql::open_checked(path, log.as_ref())?;
                let started = std::time::Instant::now();
                let seq = sql::fold::catch_up(&mut conn, log.as_ref(), CATCH_UP_CHUNK)?;
                tracing::info!(
                    seq,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "SQL read models caught up"
                );
                Some(conn)
            }
            None => None,
        };
        let readers = sql_path.as_deref().map(Readers::new);
        let outbox_checkpoint = match &outbox {
            Some(o) => Some(o.checkpoint()?),
            None => None,
        };
        // A checkpoint past the outbox's would skip deriving those events' deliveries.
        let mut model = checkpoints
            .as_ref()
            .and_then(|(store, _)| store.load(log.as_ref(), outbox_checkpoint.unwrap_or(u64::MAX)))
            .unwrap_or_default();
        model.webhooks_after = outbox_checkpoint;
        let loaded_seq = model.last_seq();
        catch_up(&mut model, log.as_ref())?;
        if let Some(o) = &outbox {
            o.record(model.last_seq(), &std::mem::take(&mut model.webhook_outbox))?;
        }
        let (applied_tx, applied) = watch::channel(model.last_seq());
        let model = Arc::new(RwLock::new(model));
        let shared = model.clone();
        let feed = outbox.clone();
        let checkpointing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Counted from the checkpoint loaded (0 if none), so a long replay at
        // start is checkpointed with the first batch after it.
        let mut last_checkpoint = loaded_seq;
        tokio::spawn(async move {
            // Outbox entries not yet written (kept for the next try on failure).
            let mut unwritten: Vec<OutboxEntry> = Vec::new();
            loop {
                let batch = match events.recv().await {
                    Ok(batch) => Some(batch),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let result = {
                    let Ok(mut m) = shared.write() else { break };
                    let result = match &batch {
                        Some(batch) => apply_batch(&mut m, batch, log.as_ref()),
                        None => catch_up(&mut m, log.as_ref()),
                    }
                    .map(|_| m.last_seq());
                    unwritten.append(&mut m.webhook_outbox);
                    result
                };
                match result {
                    Ok(seq) => {
                        if let Some(outbox) = &feed {
                            feed_outbox(outbox, seq, &mut unwritten).await;
                        }
                        if let Some(conn) = sql_writer.take() {
                            match feed_sql(conn, log.clone(), batch.clone(), seq).await {
                                Some(conn) => sql_writer = Some(conn),
                                None => break,
                            }
                        }
                        applied_tx.send_replace(seq);
                        if let Some((store, every)) = &checkpoints {
                            if seq >= last_checkpoint + every
                                && !checkpointing.swap(true, std::sync::atomic::Ordering::AcqRel)
                            {
                                last_checkpoint = seq;
                                checkpoint(
                                    store.clone(),
                                    shared.clone(),
                                    log.clone(),
                                    checkpointing.clone(),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "projection stopped");
                        break;
                    }
                }
            }
        });
        Ok(Self {
            model,
            applied,
            outbox,
            sql: readers,
        })
    }

    /// The SQL read models' readers, when started with them.
    pub fn sql(&self) -> Option<&Readers> {
        self.sql.as_ref()
    }

    /// The webhook outbox, when started with one.
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    pub fn read(&self) -> Result<RwLockReadGuard<'_, ReadModel>, ProjectionError> {
        self.model.read().map_err(|_| ProjectionError::Poisoned)
    }

    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the read model has applied `seq` (read-your-writes).
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.applied.clone();
        let _ = rx.wait_for(|applied| *applied >= seq).await;
    }
}

/// Writes a read-model checkpoint off the async threads; readers wait only
/// while the model is encoded.
fn checkpoint(
    store: SnapshotStore,
    model: Arc<RwLock<ReadModel>>,
    log: Arc<dyn EventLog>,
    busy: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::task::spawn_blocking(move || {
        let saved = match model.read() {
            Ok(m) => store.save(&m, log.as_ref()),
            Err(_) => Err(std::io::Error::other("read model poisoned")),
        };
        match saved {
            Ok(seq) => tracing::info!(seq, "read-model checkpoint written"),
            Err(e) => tracing::warn!(error = %e, "read-model checkpoint failed"),
        }
        busy.store(false, std::sync::atomic::Ordering::Release);
    });
}

/// Writes the entries derived through `seq` and moves the checkpoint there.
/// On failure the entries are kept and written with the next batch (the
/// checkpoint has not moved, so a restart re-derives them too).
async fn feed_outbox(outbox: &Outbox, seq: u64, unwritten: &mut Vec<OutboxEntry>) {
    let result = if unwritten.is_empty() {
        // Only the checkpoint moves; no flush needed, so no blocking worth a thread.
        outbox.record(seq, &[])
    } else {
        let outbox = outbox.clone();
        let entries = std::mem::take(unwritten);
        match tokio::task::spawn_blocking(move || (outbox.record(seq, &entries), entries)).await {
            Ok((Ok(n), _)) => Ok(n),
            Ok((Err(e), entries)) => {
                *unwritten = entries;
                Err(e)
            }
            Err(e) => Err(OutboxError::Storage(e.to_string())),
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "webhook outbox write failed; retrying with the next batch");
    }
}

/// Events per SQL transaction when catching up from the log.
const CATCH_UP_CHUNK: usize = 8192;

/// Applies a committed batch to the SQL read models, off the async threads;
/// when it does not follow on from where they stand (a lagged subscriber),
/// they catch up from the log instead. `None` when they cannot be written:
/// the projection stops rather than let readers see SQL behind `applied`.
async fn feed_sql(
    mut conn: rusqlite::Connection,
    log: Arc<dyn EventLog>,
    batch: Option<Arc<[ledger_core::events::RecordedEvent]>>,
    seq: u64,
) -> Option<rusqlite::Connection> {
    let done = tokio::task::spawn_blocking(move || {
        let applied = match batch.as_deref().and_then(|b| b.last()) {
            Some(last) => match sql::hash_at(log.as_ref(), last.seq) {
                Some(hash) => {
                    sql::fold::apply_batch(&mut conn, batch.as_deref().unwrap_or(&[]), hash)
                }
                None => sql::fold::catch_up(&mut conn, log.as_ref(), CATCH_UP_CHUNK),
            },
            None => sql::fold::catch_up(&mut conn, log.as_ref(), CATCH_UP_CHUNK),
        };
        let result = match applied {
            Ok(at) if at >= seq => Ok(at),
            // Out of step (or behind the in-memory model): the log has it all.
            _ => sql::fold::catch_up(&mut conn, log.as_ref(), CATCH_UP_CHUNK),
        };
        (conn, result)
    })
    .await;
    match done {
        Ok((conn, Ok(_))) => Some(conn),
        Ok((_, Err(e))) => {
            tracing::error!(error = %e, "SQL read models could not be written; projection stopped");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "SQL read-model task failed; projection stopped");
            None
        }
    }
}

fn catch_up(model: &mut ReadModel, log: &dyn EventLog) -> Result<(), ProjectionError> {
    let from = model.last_seq() + 1;
    ledger_core::log::replay(log, from, |event| {
        model.apply(event).map_err(ProjectionError::from)
    })
}

fn apply_batch(
    model: &mut ReadModel,
    batch: &[ledger_core::events::RecordedEvent],
    log: &dyn EventLog,
) -> Result<(), ProjectionError> {
    let Some(first) = batch.first() else {
        return Ok(());
    };
    if first.seq > model.last_seq() + 1 {
        // Missed something: the log has it.
        return catch_up(model, log);
    }
    let applied = model.last_seq();
    for event in batch.iter().filter(|e| e.seq > applied) {
        model.apply(event)?;
    }
    Ok(())
}
