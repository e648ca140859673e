//! Layout 1, written until the block layout: a key per event (`E` ‖ seq →
//! encoded event ‖ chain hash) and per stream version (`S` ‖ stream ‖
//! version → seq). Opening such a log copies it into a fresh sled directory
//! in the block layout and swaps the two.
//!
//! Why a copy and not a move in place: sled never gives back the tree nodes
//! that removing ten million keys empties, and its memory follows its node
//! count, so a log moved in place kept the memory the blocks were meant to
//! save (793 MB at open for 10M events, against about 80 MB written fresh).
//!
//! The copy goes through `copy_verified` (the chain checked from genesis,
//! every event re-encoding to its stored bytes, versions checked by the
//! appends), then the idempotency records; the head must match the old head
//! record. Crash safety, with `log` the directory and siblings
//! `log.layout2` (the copy) and `log.layout1` (the original, once swapped):
//! the copy is marked complete before the swap; at open, a missing `log` is
//! restored from the complete copy or else from the original, and leftovers
//! are removed. The original is deleted only once the copy is in its place.

use super::{
    storage, stored_head, sync_dir, LogError, SledLog, SledOptions, Store, IDEM, IDEM_TIME,
};
use crate::log::{copy_verified, RawEvent};
use std::path::{Path, PathBuf};

const OLD_EVENT: u8 = b'E';
const OLD_STREAM: u8 = b'S';
/// In the copy's directory once it holds everything.
const COMPLETE: &str = "LAYOUT2-COMPLETE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub events: u64,
    pub idempotency_records: u64,
}

fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf, LogError> {
    let name = dir
        .file_name()
        .ok_or_else(|| LogError::Storage(format!("{} has no directory name", dir.display())))?;
    let mut name = name.to_os_string();
    name.push(format!(".{suffix}"));
    Ok(dir.with_file_name(name))
}

fn parent(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> LogError {
    LogError::Storage(format!("{what} {}: {e}", path.display()))
}

/// Puts the directories back in order after a migration a crash interrupted.
pub(super) fn finish_interrupted(dir: &Path) -> Result<(), LogError> {
    let copy = sibling(dir, "layout2")?;
    let original = sibling(dir, "layout1")?;
    if !dir.exists() && original.exists() {
        let from = if copy.join(COMPLETE).exists() {
            &copy
        } else {
            &original
        };
        std::fs::rename(from, dir).map_err(|e| io("restoring", dir, e))?;
        sync_dir(&parent(dir))?;
    }
    if dir.join(COMPLETE).exists() {
        if original.exists() {
            std::fs::remove_dir_all(&original).map_err(|e| io("removing", &original, e))?;
            sync_dir(&parent(dir))?;
        }
        std::fs::remove_file(dir.join(COMPLETE)).map_err(|e| io("removing", dir, e))?;
    }
    Ok(())
}

/// Whether the open log still holds layout-1 keys.
pub(super) fn is_layout_1(db: &::sled::Db) -> Result<bool, LogError> {
    for prefix in [OLD_EVENT, OLD_STREAM] {
        if db
            .scan_prefix([prefix])
            .next()
            .transpose()
            .map_err(storage)?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn old_events(db: &::sled::Db) -> impl Iterator<Item = Result<RawEvent, LogError>> + '_ {
    db.scan_prefix([OLD_EVENT]).map(|item| {
        let (key, value) = item.map_err(storage)?;
        let seq = key
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| LogError::Storage("malformed layout-1 event key".into()))?;
        if value.len() < 33 {
            return Err(LogError::Corrupt {
                seq,
                reason: "record shorter than its hash".into(),
            });
        }
        let (encoded, hash) = value.split_at(value.len() - 32);
        let mut h = [0u8; 32];
        h.copy_from_slice(hash);
        Ok(RawEvent {
            seq,
            encoded: encoded.to_vec(),
            hash: h,
        })
    })
}

/// Copies the layout-1 log `old` (open on `dir`) into the block layout and
/// puts the copy in its place; `old` is closed on return.
pub(super) fn by_copy(old: Store, dir: &Path, options: &SledOptions) -> Result<Migrated, LogError> {
    let copy_dir = sibling(dir, "layout2")?;
    if copy_dir.exists() {
        // A copy an earlier open did not finish.
        std::fs::remove_dir_all(&copy_dir).map_err(|e| io("removing", &copy_dir, e))?;
    }
    let copy = SledLog::open_with(&copy_dir, options.clone())?;
    let head = copy_verified(old_events(&old.db), &copy)?;
    if let Some(recorded) = stored_head(&old.db)? {
        if recorded != head {
            return Err(LogError::Corrupt {
                seq: recorded.last_seq.min(head.last_seq + 1),
                reason: format!(
                    "the log's head record says {} but its events end at {}",
                    recorded.last_seq, head.last_seq
                ),
            });
        }
    }
    let idempotency_records = copy_idempotency(&old.db, &copy)?;
    copy.close()?;
    wait_closed(&copy_dir)?;
    std::fs::File::create(copy_dir.join(COMPLETE))
        .and_then(|f| f.sync_all())
        .map_err(|e| io("marking", &copy_dir, e))?;
    sync_dir(&copy_dir)?;
    drop(old);
    // sled's own threads may still write into a directory by its path for
    // a moment after the handle is dropped: not into the swapped one.
    wait_closed(dir)?;
    let original = sibling(dir, "layout1")?;
    std::fs::rename(dir, &original).map_err(|e| io("moving", dir, e))?;
    std::fs::rename(&copy_dir, dir).map_err(|e| io("moving", &copy_dir, e))?;
    sync_dir(&parent(dir))?;
    finish_interrupted(dir)?;
    Ok(Migrated {
        events: head.last_seq,
        idempotency_records,
    })
}

/// Waits until no sled handle holds the directory: sled keeps an exclusive
/// `flock` on its `db` file while open, and releases it once its threads end.
/// A log is closed (its journal taken into sled and removed) before that.
pub fn wait_closed(dir: &Path) -> Result<(), LogError> {
    let db = dir.join("db");
    let file = std::fs::File::open(&db).map_err(|e| io("opening", &db, e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        #[cfg(unix)]
        let free = {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is shared.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        };
        #[cfg(not(unix))]
        let free = true;
        if free {
            // Closing `file` releases the lock taken just now.
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(LogError::Storage(format!(
                "{} is still held by sled 30 s after it was closed",
                dir.display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn copy_idempotency(from: &::sled::Db, to: &SledLog) -> Result<u64, LogError> {
    const STEP: usize = 10_000;
    let mut records = 0;
    for prefix in [IDEM, IDEM_TIME] {
        let mut batch = ::sled::Batch::default();
        let mut n = 0;
        for item in from.scan_prefix([prefix]) {
            let (key, value) = item.map_err(storage)?;
            batch.insert(key, value);
            n += 1;
            if prefix == IDEM {
                records += 1;
            }
            if n == STEP {
                to.store
                    .db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(storage)?;
                n = 0;
            }
        }
        to.store.db.apply_batch(batch).map_err(storage)?;
    }
    Ok(records)
}
