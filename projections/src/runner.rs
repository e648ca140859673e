//! Keeps the SQL read models (and with them the webhook outbox) up to date
//! with the engine, one SQL transaction per committed batch, and lets readers
//! wait for a sequence number (read-your-writes).
//!
//! Nothing of the read side is held in memory: a start resumes the database
//! where its last transaction left it and folds only the log's tail.

use crate::sql::outbox::Outbox;
use crate::sql::{self, Readers};
use ledger_core::engine::EngineHandle;
use ledger_core::events::RecordedEvent;
use ledger_core::log::EventLog;
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
        tokio::spawn(async move {
            let mut writer = Some(conn);
            let mut failures: u32 = 0;
            loop {
                let batch = if failures > 0 {
                    // Retrying: the log has every batch missed meanwhile.
                    let pause = Duration::from_millis(100 << failures.min(6)).min(MAX_RETRY_PAUSE);
                    tokio::time::sleep(pause).await;
                    None
                } else {
                    match events.recv().await {
                        Ok(batch) => Some(batch),
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
                let target = match batch.as_deref().and_then(|b| b.last()) {
                    Some(last) => last.seq,
                    None => log.head().last_seq,
                };
                let (conn, result) = feed_sql(conn, log.clone(), batch.clone(), target).await;
                writer = conn;
                match result {
                    Ok(at) => {
                        if failures > 0 {
                            tracing::info!(seq = at, "SQL read models writable again");
                            set_fault(None);
                        }
                        failures = 0;
                        if may_deliver(&batch) {
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
        });
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

/// The projection's own connection, opened again after the task that held
/// it failed.
fn reopen(path: &Path) -> Result<rusqlite::Connection, crate::sql::SqlError> {
    let mut conn = sql::open_writer(path)?;
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    Ok(conn)
}

/// Applies a committed batch to the SQL read models, off the async threads;
/// when it does not follow on from where they stand (a lagged subscriber),
/// they catch up from the log instead. Returns the connection (unless the
/// task holding it failed) and the position reached, or why none was.
async fn feed_sql(
    mut conn: rusqlite::Connection,
    log: Arc<dyn EventLog>,
    batch: Option<Arc<[RecordedEvent]>>,
    seq: u64,
) -> (Option<rusqlite::Connection>, Result<u64, String>) {
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
            // Out of step: the log has it all.
            _ => sql::fold::catch_up(&mut conn, log.as_ref(), CATCH_UP_CHUNK),
        };
        (conn, result)
    })
    .await;
    match done {
        Ok((conn, result)) => (Some(conn), result.map_err(|e| e.to_string())),
        Err(e) => (None, Err(format!("the read-model task failed: {e}"))),
    }
}
