//! Keeps the SQL read models (and with them the webhook outbox) up to date
//! with the engine, one SQL transaction per committed batch, and lets readers
//! wait for a sequence number (read-your-writes).
//!
//! Nothing of the read side is held in memory: a start resumes the database
//! where its last transaction left it and folds only the log's tail.

use crate::sql::outbox::Outbox;
use crate::sql::{self, Readers};
use ledger_core::engine::{Committed, EngineHandle};
use ledger_core::events::RecordedEvent;
use ledger_core::log::{EventLog, Hash};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("reading the log: {0}")]
    Log(#[from] ledger_core::log::LogError),
    #[error(transparent)]
    Sql(#[from] crate::sql::SqlError),
    #[error("cannot start the read-model thread: {0}")]
    Thread(String),
}

/// Cheap to clone; every clone reads the same database.
#[derive(Clone)]
pub struct Projections {
    applied: watch::Receiver<u64>,
    outbox: Outbox,
    sql: Readers,
    /// Why the last batch could not be written, while it cannot (`None`
    /// when the read models keep up).
    fault: Arc<Mutex<Option<String>>>,
}

/// The read models did not reach a sequence number in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the read models are at seq {at}, not yet at {seq}{}", .fault.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct Behind {
    pub seq: u64,
    pub at: u64,
    pub fault: Option<String>,
}

/// Where the SQL read models (and with them the webhook outbox) live.
struct SqlSetup {
    path: PathBuf,
    /// The previous version's outbox directory, imported on first start.
    legacy_outbox: Option<PathBuf>,
}

/// The longest pause between two attempts to write a batch that failed.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

impl Projections {
    /// Opens the SQL read models at `sql_path` (webhook outbox included),
    /// brings them up to the log's head, then follows the engine.
    /// `legacy_outbox` is where the previous version kept its outbox:
    /// imported on the first start, then set aside.
    ///
    /// A batch that cannot be written (the database locked by someone else,
    /// the disk full) is retried from the log, with pauses growing to
    /// [`MAX_RETRY_PAUSE`], until it can: meanwhile [`Projections::fault`]
    /// says why and waiters time out rather than wait forever.
    pub fn start(
        log: Arc<dyn EventLog>,
        engine: &EngineHandle,
        sql_path: &Path,
        legacy_outbox: Option<&Path>,
    ) -> Result<Self, ProjectionError> {
        // Subscribe before catching up so no batch falls between the two.
        let mut events = engine.subscribe();
        let setup = SqlSetup {
            path: sql_path.to_path_buf(),
            legacy_outbox: legacy_outbox.map(Path::to_path_buf),
        };
        let (conn, readers, outbox) = open_sql(&setup, log.as_ref())?;
        let (at, _) = sql::position(&conn)?;
        let (applied_tx, applied) = watch::channel(at);
        sql::spawn_checkpointer(&conn, &setup.path, applied.clone())?;
        outbox.leave_checkpoints_to_the_checkpointer()?;
        let fault: Arc<Mutex<Option<String>>> = Arc::default();
        let wake = outbox.clone();
        let set_fault = {
            let fault = fault.clone();
            move |f: Option<String>| {
                if let Ok(mut slot) = fault.lock() {
                    *slot = f;
                }
            }
        };
        // Its own thread, not a task handing each batch to the blocking
        // pool: every command waits for the fold, and the hand-off was a
        // thread wake-up on that path.
        let fold = move || {
            let mut writer = Some(conn);
            let mut failures: u32 = 0;
            loop {
                let batch = if failures > 0 {
                    // Retrying: the log has every batch missed meanwhile.
                    let pause = Duration::from_millis(100 << failures.min(6)).min(MAX_RETRY_PAUSE);
                    std::thread::sleep(pause);
                    None
                } else {
                    match events.blocking_recv() {
                        Ok(first) => more_commits(&mut events, first),
                        Err(broadcast::error::RecvError::Lagged(_)) => None,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                };
                let conn = match writer.take() {
                    Some(conn) => conn,
                    None => match reopen(&setup.path) {
                        Ok(conn) => conn,
                        Err(e) => {
                            failures += 1;
                            tracing::error!(error = %e, "SQL read models cannot be reopened; retrying");
                            set_fault(Some(format!("reopening the read models: {e}")));
                            continue;
                        }
                    },
                };
                let target = match batch.as_ref().and_then(|b| b.last_seq()) {
                    Some(last) => last,
                    None => log.head().last_seq,
                };
                let deliver = may_deliver(&batch);
                let (conn, result) = feed_sql(conn, log.as_ref(), batch, target);
                writer = conn;
                match result {
                    Ok(at) => {
                        if failures > 0 {
                            tracing::info!(seq = at, "SQL read models writable again");
                            set_fault(None);
                        }
                        failures = 0;
                        if deliver {
                            wake.notify();
                        }
                        applied_tx.send_replace(at);
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::error!(error = %e, failures, "SQL read models could not be written; retrying from the log");
                        set_fault(Some(e));
                    }
                }
            }
        };
        std::thread::Builder::new()
            .name("read-model-fold".into())
            .spawn(fold)
            .map_err(|e| ProjectionError::Thread(e.to_string()))?;
        Ok(Self {
            applied,
            outbox,
            sql: readers,
            fault,
        })
    }

    /// The SQL read models' readers.
    pub fn sql(&self) -> &Readers {
        &self.sql
    }

    /// The webhook outbox (rows of the SQL read models).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Why the read models cannot be written now, if they cannot.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// Waits until the read models have applied `seq` (read-your-writes),
    /// at most `limit`.
    pub async fn wait_for(&self, seq: u64, limit: Duration) -> Result<(), Behind> {
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(limit, rx.wait_for(|applied| *applied >= seq)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // Timed out, or the projection ended (the server is stopping).
            _ => Err(Behind {
                seq,
                at: self.applied(),
                fault: self.fault(),
            }),
        }
    }
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
    let (from, _) = sql::position(&conn)?;
    let seq = sql::fold::catch_up(&mut conn, log, CATCH_UP_CHUNK)?;
    let elapsed = started.elapsed();
    tracing::info!(
        seq,
        folded = seq - from,
        elapsed_ms = elapsed.as_millis() as u64,
        events_per_sec = ((seq - from) as f64 / elapsed.as_secs_f64().max(1e-6)) as u64,
        "SQL read models caught up"
    );
    let readers = Readers::new(&setup.path);
    let outbox = Outbox::open(readers.clone())?;
    Ok((conn, readers, outbox))
}

/// Group commits folded together, in one SQL transaction.
///
/// Rationale: the fold is one thread, and a transaction per group commit
/// made its fixed cost (begin, position, commit, the WAL append) a cost per
/// handful of commands; under load it was the stage every command waited
/// for. Taking whatever has queued up since the last fold lets the fold's
/// batches grow with the load, as the writer's do.
struct Commits(Vec<Arc<Committed>>);

impl Commits {
    fn events(&self) -> impl Iterator<Item = &RecordedEvent> {
        self.0.iter().flat_map(|c| c.events.iter())
    }

    fn last_seq(&self) -> Option<u64> {
        self.0.last().and_then(|c| c.events.last()).map(|e| e.seq)
    }

    fn last_hash(&self) -> Option<Hash> {
        self.0.last().map(|c| c.last_hash)
    }
}

/// Most events folded into one transaction while following the engine.
const FOLD_MAX_EVENTS: usize = 8192;

/// `first` and the group commits already queued behind it, up to
/// [`FOLD_MAX_EVENTS`]; `None` when the subscriber lagged (the log has them).
fn more_commits(
    events: &mut broadcast::Receiver<Arc<Committed>>,
    first: Arc<Committed>,
) -> Option<Commits> {
    let mut total = first.events.len();
    let mut commits = vec![first];
    while total < FOLD_MAX_EVENTS {
        match events.try_recv() {
            Ok(next) => {
                total += next.events.len();
                commits.push(next);
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => return None,
            Err(_) => break,
        }
    }
    Some(Commits(commits))
}

/// Whether a batch may have made deliveries (then the worker is woken rather
/// than left to its next poll). A batch unknown (the subscriber lagged): yes.
fn may_deliver(batch: &Option<Commits>) -> bool {
    match batch {
        None => true,
        Some(commits) => commits
            .events()
            .any(|e| crate::webhooks::event_type(&e.event).is_some()),
    }
}

/// Events per SQL transaction when catching up from the log.
const CATCH_UP_CHUNK: usize = 8192;

/// The projection's own connection, opened again after the task that held
/// it failed.
fn reopen(path: &Path) -> Result<rusqlite::Connection, crate::sql::SqlError> {
    let mut conn = sql::open_writer(path)?;
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    // The checkpointer thread still runs (see `sql::spawn_checkpointer`).
    sql::leave_checkpoints(&conn, sql::WAL_TRUNCATE_ABOVE)?;
    Ok(conn)
}

/// Applies committed batches to the SQL read models; when they do not
/// follow on from where the models stand (a lagged subscriber), they catch
/// up from the log instead. Returns the connection (unless a panic left it
/// in doubt) and the position reached, or why none was.
fn feed_sql(
    mut conn: rusqlite::Connection,
    log: &dyn EventLog,
    batch: Option<Commits>,
    seq: u64,
) -> (Option<rusqlite::Connection>, Result<u64, String>) {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let applied = match batch.as_ref().and_then(Commits::last_hash) {
            Some(hash) => {
                sql::fold::apply_batch(&mut conn, batch.iter().flat_map(Commits::events), hash)
            }
            None => sql::fold::catch_up(&mut conn, log, CATCH_UP_CHUNK),
        };
        let result = match applied {
            Ok(at) if at >= seq => Ok(at),
            // Out of step: the log has it all.
            _ => sql::fold::catch_up(&mut conn, log, CATCH_UP_CHUNK),
        };
        (conn, result)
    }));
    match done {
        Ok((conn, result)) => (Some(conn), result.map_err(|e| e.to_string())),
        Err(_) => (None, Err("the read-model fold panicked".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(hash: u8) -> Arc<Committed> {
        Arc::new(Committed {
            events: Vec::new(),
            last_hash: [hash; 32],
        })
    }

    #[test]
    fn the_fold_takes_every_commit_queued_behind_the_first() {
        let (tx, mut rx) = broadcast::channel(16);
        for h in 1..=3 {
            tx.send(commit(h)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let commits = more_commits(&mut rx, first).expect("not lagged");
        assert_eq!(commits.0.len(), 3);
        assert_eq!(commits.last_hash(), Some([3; 32]));
        assert!(rx.try_recv().is_err(), "all taken");
    }

    #[test]
    fn a_fold_that_fell_behind_says_so_and_reads_the_log() {
        let (tx, mut rx) = broadcast::channel(2);
        tx.send(commit(1)).unwrap();
        let first = rx.try_recv().unwrap();
        for h in 2..=5 {
            tx.send(commit(h)).unwrap();
        }
        assert!(more_commits(&mut rx, first).is_none());
        // None means "catch up from the log" (and maybe deliver), not "nothing".
        assert!(may_deliver(&None));
    }
}
