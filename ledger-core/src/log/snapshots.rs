//! Durable snapshots of the write model: the engine's decision state at a
//! sequence number, with that event's chain hash, so a start loads the newest
//! one the log vouches for and replays only the tail after it.
//!
//! One file per snapshot, `write-model-<seq>.snap`:
//! `MAGIC ‖ seq (8, BE) ‖ chain hash at seq (32) ‖ sha256(payload) (32) ‖ payload`,
//! the payload being the [`Ledger`] through the codec. A file that is short,
//! whose checksum or decoding fails, that is past the log's head, or whose
//! hash is not the log's at its seq is refused with a log line naming why,
//! and the next older one is tried; with none usable the start replays from
//! seq 0, which is always possible: the log is the only truth.

use super::{EventLog, Hash};
use crate::codec;
use crate::domain::Ledger;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The last byte is the format: a snapshot of another layout of the write
/// model is refused by name and the log replayed, never misread.
const MAGIC: &[u8; 8] = b"EXWMSNP2";
const HEADER: usize = 8 + 8 + 32 + 32;
/// Snapshots kept: the newest, and one to fall back on if it is damaged.
const KEEP: usize = 2;

#[derive(Debug, Clone)]
pub struct WriteModelSnapshots {
    dir: PathBuf,
}

/// Why a snapshot file was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("checksum mismatch (damaged)")]
    Checksum,
    #[error("does not decode: {0}")]
    Decode(String),
    #[error("at seq {seq}, past the log's head {head}")]
    AheadOfLog { seq: u64, head: u64 },
    #[error("its chain hash at seq {0} is not the log's")]
    OtherHistory(u64),
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    digest: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl WriteModelSnapshots {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("write-model-{seq:020}.snap"))
    }

    /// The snapshot files, newest first.
    pub fn list(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("write-model-"))
                .and_then(|n| n.strip_suffix(".snap"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                found.push((seq, path));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(found)
    }

    /// Writes a snapshot of `ledger` (at `ledger.last_seq`, whose chain hash
    /// is `hash`) atomically: temp file, fsync, rename, fsync of the directory.
    /// Then drops all but the newest [`KEEP`].
    pub fn save(&self, ledger: &Ledger, hash: Hash) -> std::io::Result<PathBuf> {
        let seq = ledger.last_seq;
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        // The payload is encoded straight into the file, hashed on the way,
        // and its checksum written into the header afterwards: a snapshot
        // in memory (then a second copy with its header) added 800 MB to the
        // server's peak at 10M events, on top of the write model's copy.
        f.write_all(MAGIC)?;
        f.write_all(&seq.to_be_bytes())?;
        f.write_all(&hash)?;
        f.write_all(&[0; 32])?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(1 << 20, f),
            digest: Sha256::new(),
        };
        let Hashing { inner, digest } =
            codec::encode_to(ledger, hashing).map_err(std::io::Error::other)?;
        let mut f = inner.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(48))?;
        f.write_all(&digest.finalize())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        for (_, old) in self.list()?.into_iter().skip(KEEP) {
            std::fs::remove_file(old)?;
        }
        Ok(path)
    }

    /// Reads one snapshot file and checks it against `log`.
    pub fn read(&self, path: &Path, log: &dyn EventLog) -> Result<Ledger, Refused> {
        let bytes = std::fs::read(path).map_err(|e| Refused::Unreadable(e.to_string()))?;
        if bytes.len() < HEADER || bytes[..7] != MAGIC[..7] {
            return Err(Refused::Unreadable("not a write-model snapshot".into()));
        }
        if bytes[7] != MAGIC[7] {
            return Err(Refused::Unreadable(format!(
                "snapshot format {} (this version reads format {})",
                bytes[7] as char, MAGIC[7] as char
            )));
        }
        let seq = u64::from_be_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
        let hash: Hash = bytes[16..48].try_into().unwrap_or([0; 32]);
        let payload = &bytes[HEADER..];
        if Sha256::digest(payload).as_slice() != &bytes[48..80] {
            return Err(Refused::Checksum);
        }
        let head = log.head().last_seq;
        if seq > head {
            return Err(Refused::AheadOfLog { seq, head });
        }
        match log.read_raw(seq).next() {
            Some(Ok(raw)) if raw.seq == seq && raw.hash == hash => {}
            _ if seq == 0 => {}
            _ => return Err(Refused::OtherHistory(seq)),
        }
        let ledger: Ledger = codec::decode(payload).map_err(|e| Refused::Decode(e.to_string()))?;
        if ledger.last_seq != seq {
            return Err(Refused::Decode(format!(
                "holds seq {} but is named {seq}",
                ledger.last_seq
            )));
        }
        // Events keep `reserved` equal to the sum of the holds by
        // construction and no longer re-add them (see `check_invariants`):
        // a balance that arrives whole is checked whole.
        for balance in ledger.balances.values() {
            balance
                .check_holds()
                .and_then(|()| balance.check_invariants())
                .map_err(Refused::Decode)?;
        }
        Ok(ledger)
    }

    /// The newest snapshot `log` vouches for; each one refused is named in
    /// the log with why.
    pub fn load(&self, log: &dyn EventLog) -> Option<Ledger> {
        let files = match self.list() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "write-model snapshots unreadable; replaying from seq 0");
                return None;
            }
        };
        for (seq, path) in files {
            match self.read(&path, log) {
                Ok(ledger) => {
                    tracing::info!(seq, path = %path.display(), "write model loaded from its snapshot");
                    return Some(ledger);
                }
                Err(why) => tracing::warn!(
                    seq,
                    path = %path.display(),
                    reason = %why,
                    "write-model snapshot refused; trying an older one"
                ),
            }
        }
        None
    }
}
