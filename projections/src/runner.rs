//! Keeps the read model up to date with the engine, and lets readers wait for
//! a sequence number (read-your-writes).

use crate::model::ReadModel;
use ledger_core::engine::EngineHandle;
use ledger_core::log::EventLog;
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
}

/// Cheap to clone; shares one read model.
#[derive(Clone)]
pub struct Projections {
    model: Arc<RwLock<ReadModel>>,
    applied: watch::Receiver<u64>,
}

impl Projections {
    /// Builds the read model from sequence 0, then follows the engine.
    pub fn start(log: Arc<dyn EventLog>, engine: &EngineHandle) -> Result<Self, ProjectionError> {
        // Subscribe before catching up so no batch falls between the two.
        let mut events = engine.subscribe();
        let mut model = ReadModel::new();
        catch_up(&mut model, log.as_ref())?;
        let (applied_tx, applied) = watch::channel(model.last_seq());
        let model = Arc::new(RwLock::new(model));
        let shared = model.clone();
        tokio::spawn(async move {
            loop {
                let batch = match events.recv().await {
                    Ok(batch) => Some(batch),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let result = {
                    let Ok(mut m) = shared.write() else { break };
                    match batch {
                        Some(batch) => apply_batch(&mut m, &batch, log.as_ref()),
                        None => catch_up(&mut m, log.as_ref()),
                    }
                    .map(|_| m.last_seq())
                };
                match result {
                    Ok(seq) => {
                        applied_tx.send_replace(seq);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "projection stopped");
                        break;
                    }
                }
            }
        });
        Ok(Self { model, applied })
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

fn catch_up(model: &mut ReadModel, log: &dyn EventLog) -> Result<(), ProjectionError> {
    for event in log.read_all(model.last_seq() + 1) {
        model.apply(&event?)?;
    }
    Ok(())
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
