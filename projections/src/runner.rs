//! Keeps the read model up to date with the engine, and lets readers wait for
//! a sequence number (read-your-writes).

use crate::model::ReadModel;
use crate::snapshot::SnapshotStore;
use crate::sql::outbox::Outbox;
use crate::sql::{self, Readers};
use ledger_core::engine::EngineHandle;
use ledger_core::events::RecordedEvent;
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

/// Where the SQL read models (and with them the webhook outbox) live.
struct SqlSetup {
    path: PathBuf,
    /// The previous version's outbox directory, imported on first start.
    legacy_outbox: Option<PathBuf>,
}

impl Projections {
    /// Builds the in-memory read model from sequence 0, then follows the
    /// engine. No SQL read models, hence no webhook outbox.
    pub fn start(log: Arc<dyn EventLog>, engine: &EngineHandle) -> Result<Self, ProjectionError> {
        Self::start_inner(log, engine, None, None)
    }

    /// As [`Projections::start`], and keeps the SQL read models, webhook
    /// outbox included, in the SQLite database at `sql_path` (resuming where
    /// it stopped). `legacy_outbox` is where the previous version kept its
    /// outbox: imported on the first start, then set aside.
    pub fn start_with_sql(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        sql_path: &Path,
        legacy_outbox: Option<&Path>,
    ) -> Result<Self, ProjectionError> {
        let setup = SqlSetup {
            path: sql_path.to_path_buf(),
            legacy_outbox: legacy_outbox.map(Path::to_path_buf),
        };
        Self::start_inner(log, engine, None, Some(setup))
    }

    /// As [`Projections::start`], starting from the durable checkpoint in
    /// `checkpoints` (when one is usable) and writing a new one every
    /// `checkpoint_every` events; and keeps the SQL read models and the
    /// webhook outbox at `sql_path` (see [`Projections::start_with_sql`],
    /// `outbox_dir` being the previous version's outbox).
    pub fn start_with_checkpoints(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        outbox_dir: &std::path::Path,
        checkpoints: SnapshotStore,
        checkpoint_every: u64,
        sql_path: Option<&Path>,
    ) -> Result<Self, ProjectionError> {
        let setup = sql_path.map(|path| SqlSetup {
            path: path.to_path_buf(),
            legacy_outbox: Some(outbox_dir.to_path_buf()),
        });
        Self::start_inner(
            log,
            engine,
            Some((checkpoints, checkpoint_every.max(1))),
            setup,
        )
    }

    fn start_inner(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        checkpoints: Option<(SnapshotStore, u64)>,
        sql_setup: Option<SqlSetup>,
    ) -> Result<Self, ProjectionError> {
        // Subscribe before catching up so no batch falls between the two.
        let mut events = engine.subscribe();
        let (mut sql_writer, readers, outbox) = match &sql_setup {
            Some(setup) => {
                let (conn, readers, outbox) = open_sql(setup, log.as_ref())?;
                (Some(conn), Some(readers), Some(outbox))
            }
            None => (None, None, None),
        };
        let mut model = checkpoints
            .as_ref()
            .and_then(|(store, _)| store.load(log.as_ref(), u64::MAX))
            .unwrap_or_default();
        let loaded_seq = model.last_seq();
        catch_up(&mut model, log.as_ref())?;
        let (applied_tx, applied) = watch::channel(model.last_seq());
        let model = Arc::new(RwLock::new(model));
        let shared = model.clone();
        let wake = outbox.clone();
        let checkpointing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Counted from the checkpoint loaded (0 if none), so a long replay at
        // start is checkpointed with the first batch after it.
        let mut last_checkpoint = loaded_seq;
        tokio::spawn(async move {
            loop {
                let batch = match events.recv().await {
                    Ok(batch) => Some(batch),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let result = {
                    let Ok(mut m) = shared.write() else { break };
                    match &batch {
                        Some(batch) => apply_batch(&mut m, batch, log.as_ref()),
                        None => catch_up(&mut m, log.as_ref()),
                    }
                    .map(|_| m.last_seq())
                };
                match result {
                    Ok(seq) => {
                        if let Some(conn) = sql_writer.take() {
                            match feed_sql(conn, log.clone(), batch.clone(), seq).await {
                                Some(conn) => sql_writer = Some(conn),
                                None => break,
                            }
                            if let Some(outbox) = wake.as_ref().filter(|_| may_deliver(&batch)) {
                                outbox.notify();
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

    /// The webhook outbox (rows of the SQL read models), when started with them.
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

/// Opens the SQL read models (webhook outbox set up, see
/// [`sql::outbox::open_projection`]) and brings them up to the log's head.
fn open_sql(
    setup: &SqlSetup,
    log: &dyn EventLog,
) -> Result<(rusqlite::Connection, Readers, Outbox), ProjectionError> {
    let mut conn = sql::outbox::open_projection(&setup.path, log, setup.legacy_outbox.as_deref())?;
    // The outbox writes from its own connection: a deferred transaction that
    // read first could not upgrade to write past one of its commits, so each
    // batch takes the write lock up front (waiting up to the busy timeout).
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    let started = std::time::Instant::now();
    let seq = sql::fold::catch_up(&mut conn, log, CATCH_UP_CHUNK)?;
    tracing::info!(
        seq,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "SQL read models caught up"
    );
    let readers = Readers::new(&setup.path);
    let outbox = Outbox::open(readers.clone())?;
    Ok((conn, readers, outbox))
}

/// Whether a batch may have made deliveries (then the worker is woken rather
/// than left to its next poll). A batch unknown (the subscriber lagged): yes.
fn may_deliver(batch: &Option<Arc<[RecordedEvent]>>) -> bool {
    match batch.as_deref() {
        None => true,
        Some(events) => events
            .iter()
            .any(|e| crate::webhooks::event_type(&e.event).is_some()),
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
    batch: Option<Arc<[RecordedEvent]>>,
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
    batch: &[RecordedEvent],
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
