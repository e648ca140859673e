//! Durable checkpoints of the read models: the whole `ReadModel` encoded with
//! the log's codec at a sequence number, with that event's chain hash.
//!
//! At start the newest checkpoint is loaded and the log replayed after it; a
//! checkpoint that does not decode (older format), is ahead of the log, or
//! whose hash does not match the log at its sequence is ignored, and the read
//! models are rebuilt from sequence 0, which is always possible: the log is
//! the only truth, a checkpoint only saves time.

use crate::model::ReadModel;
use ledger_core::codec;
use ledger_core::log::{EventLog, Hash};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "read-models.snapshot";

#[derive(Serialize)]
struct SnapshotRef<'a> {
    seq: u64,
    hash: Hash,
    model: &'a ReadModel,
}

#[derive(Deserialize)]
struct Snapshot {
    seq: u64,
    hash: Hash,
    model: ReadModel,
}

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

fn hash_at(log: &dyn EventLog, seq: u64) -> Option<Hash> {
    match log.read_raw(seq).next() {
        Some(Ok(raw)) if raw.seq == seq => Some(raw.hash),
        _ => None,
    }
}

impl SnapshotStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The checkpointed read model, if there is one this log vouches for and
    /// it is not past `max_seq`.
    pub fn load(&self, log: &dyn EventLog, max_seq: u64) -> Option<ReadModel> {
        let bytes = std::fs::read(self.path()).ok()?;
        let snapshot: Snapshot = match codec::decode(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "read-model checkpoint unreadable; rebuilding from 0");
                return None;
            }
        };
        if snapshot.seq != snapshot.model.last_seq()
            || snapshot.seq > max_seq
            || snapshot.seq > log.head().last_seq
        {
            tracing::warn!(
                seq = snapshot.seq,
                "read-model checkpoint ahead of the log; rebuilding from 0"
            );
            return None;
        }
        if snapshot.seq > 0 && hash_at(log, snapshot.seq) != Some(snapshot.hash) {
            tracing::warn!(
                seq = snapshot.seq,
                "read-model checkpoint does not match the log; rebuilding from 0"
            );
            return None;
        }
        tracing::info!(
            seq = snapshot.seq,
            "read models loaded from their checkpoint"
        );
        Some(snapshot.model)
    }

    /// Writes a checkpoint of `model` atomically (temp file, fsync, rename,
    /// fsync of the directory): a crash leaves the old checkpoint or the new.
    pub fn save(&self, model: &ReadModel, log: &dyn EventLog) -> std::io::Result<u64> {
        let seq = model.last_seq();
        let hash = if seq == 0 {
            [0; 32]
        } else {
            hash_at(log, seq)
                .ok_or_else(|| std::io::Error::other("checkpoint seq not in the log"))?
        };
        let bytes =
            codec::encode(&SnapshotRef { seq, hash, model }).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path())?;
        File::open(&self.dir)?.sync_all()?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::domain::{Command, Ctx, Ledger};
    use ledger_core::events::Actor;
    use ledger_core::log::sled::SledLog;
    use ledger_core::time::Timestamp;

    /// A log of `n` organizations (two events each) and its read model.
    fn log_with(dir: &Path, names: &[&str]) -> (SledLog, ReadModel) {
        let log = SledLog::open(dir).unwrap();
        let mut ledger = Ledger::new();
        let mut ids = uuid::Uuid::now_v7;
        let mut events = Vec::new();
        for name in names {
            let command = Command::CreateOrganization {
                name: (*name).into(),
                api_key_secret_hash: [1; 32],
            };
            let mut ctx = Ctx {
                now: Timestamp::from_micros(1),
                ids: &mut ids,
            };
            ledger
                .execute(&Actor::Admin, None, &command, &mut ctx, &mut events)
                .unwrap()
                .unwrap();
        }
        log.append(&events, &[]).unwrap();
        let mut model = ReadModel::new();
        for e in &events {
            model.apply(e).unwrap();
        }
        (log, model)
    }

    #[test]
    fn a_checkpoint_round_trips_and_is_refused_by_another_history() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&tmp.path().join("cp")).unwrap();
        let (log, model) = log_with(&tmp.path().join("a"), &["Acme", "Globex"]);
        assert_eq!(store.save(&model, &log).unwrap(), 4);
        let loaded = store.load(&log, u64::MAX).expect("usable checkpoint");
        assert_eq!(loaded.last_seq(), 4);
        assert_eq!(loaded.ledger.organizations.len(), 2);
        // Same length, other events: the hash at seq 4 differs.
        let (other, _) = log_with(&tmp.path().join("b"), &["Initech", "Umbrella"]);
        assert!(store.load(&other, u64::MAX).is_none());
        // A shorter log, or a limit below the checkpoint: refused too.
        let (short, _) = log_with(&tmp.path().join("c"), &["Acme"]);
        assert!(store.load(&short, u64::MAX).is_none());
        assert!(store.load(&log, 3).is_none());
    }
}
