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
use std::sync::Arc;
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
}

/// Where the SQL read models (and with them the webhook outbox) live.
struct SqlSetup {
    path: PathBuf,
    /// The previous version's outbox directory, imported on first start.
    legacy_outbox: Option<PathBuf>,
}

impl Projections {
    /// Opens the SQL read models at `sql_path` (webhook outbox included),
    /// brings them up to the log's head, then follows the engine.
    /// `legacy_outbox` is where the previous version kept its outbox:
    /// imported on the first start, then set aside.
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
        let wake = outbox.clone();
        tokio::spawn(async move {
            let mut writer = Some(conn);
            loop {
                let batch = match events.recv().await {
                    Ok(batch) => Some(batch),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let Some(conn) = writer.take() else { break };
                let target = match batch.as_deref().and_then(|b| b.last()) {
                    Some(last) => last.seq,
                    None => log.head().last_seq,
                };
                let Some((conn, at)) = feed_sql(conn, log.clone(), batch.clone(), target).await
                else {
                    break;
                };
                writer = Some(conn);
                if may_deliver(&batch) {
                    wake.notify();
                }
                applied_tx.send_replace(at);
            }
        });
        Ok(Self {
            applied,
            outbox,
            sql: readers,
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

    /// Waits until the read models have applied `seq` (read-your-writes).
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.applied.clone();
        let _ = rx.wait_for(|applied| *applied >= seq).await;
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

/// Applies a committed batch to the SQL read models, off the async threads;
/// when it does not follow on from where they stand (a lagged subscriber),
/// they catch up from the log instead. Returns the position reached; `None`
/// when they cannot be written: the projection stops rather than let readers
/// wait on a position it will not reach.
async fn feed_sql(
    mut conn: rusqlite::Connection,
    log: Arc<dyn EventLog>,
    batch: Option<Arc<[RecordedEvent]>>,
    seq: u64,
) -> Option<(rusqlite::Connection, u64)> {
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
        Ok((conn, Ok(at))) => Some((conn, at)),
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
