//! `backup --out DIR`: a consistent copy of the log for auditors to work on,
//! from a running server (`--url`, through the admin event stream: hot) or
//! from a stopped server's data directory.
//!
//! Events are read in order, their chain checked from genesis as they come,
//! decoded, and appended to a fresh `SledLog` at `DIR/log` in large batches.
//! Since the log is append-only, the copy is the prefix of the history up to
//! the last event read: consistent by construction. The copy's own chain
//! hash is recomputed by `SledLog::append`; before appending, every event is
//! re-encoded and compared with the stored bytes, so the copy is byte for byte
//! the original and its head hash equals the source's at the same sequence
//! number (checked after every batch, and once more by reopening the copy).
//!
//! Not copied: idempotency records (a 24-hour retry cache, not history, and
//! not exposed by the admin stream).

use crate::source::{Events, Failure, Range, Source};
use anyhow::{anyhow, Context};
use ledger_core::codec;
use ledger_core::events::RecordedEvent;
use ledger_core::log::sled::{SledLog, SledOptions};
use ledger_core::log::{EventLog, Hash, GENESIS_HASH};
use serde_json::json;
use std::io::Write;
use std::path::Path;

const APPEND_BATCH: usize = 20_000;

pub fn run(source: &Source, out_dir: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    crate::fresh_dir(out_dir)?;
    let log_path = out_dir.join("log");
    let started = std::time::Instant::now();
    let mut events = Events::open(source, Range::ALL, "backup")?;
    let log =
        SledLog::open(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(APPEND_BATCH);
    let mut last: (u64, Hash) = (0, GENESIS_HASH);
    let append = |batch: &mut Vec<RecordedEvent>, last: (u64, Hash)| -> Result<(), Failure> {
        if batch.is_empty() {
            return Ok(());
        }
        let head = log
            .append(batch, &[])
            .map_err(|e| Failure::Io(anyhow!("appending to the copy: {e}")))?;
        if (head.last_seq, head.last_hash) != last {
            return Err(Failure::bad(
                last.0,
                "the copy's chain hash differs from the source's (the event does not re-encode to its stored bytes)",
            ));
        }
        batch.clear();
        Ok(())
    };
    while let Some((raw, event)) = events.next()? {
        let again = codec::encode_event(&event)
            .map_err(|e| Failure::bad(raw.seq, format!("does not re-encode: {e}")))?;
        if again != raw.encoded {
            return Err(Failure::bad(
                raw.seq,
                "does not re-encode to its stored bytes (a non-canonical encoding)",
            ));
        }
        last = (raw.seq, raw.hash);
        batch.push(event);
        if batch.len() >= APPEND_BATCH {
            append(&mut batch, last)?;
        }
    }
    append(&mut batch, last)?;
    drop(log);
    // Reopening re-verifies the copy's tail against its head record.
    let reopened = crate::source::open_sled(&log_path, SledOptions::default())
        .map_err(|e| Failure::Io(anyhow!("reopening the copy: {e}")))?;
    let head = reopened.head();
    drop(reopened);
    if (head.last_seq, head.last_hash) != last {
        return Err(Failure::Io(anyhow!(
            "the reopened copy ends at {} instead of {}",
            head.last_seq,
            last.0
        )));
    }
    let manifest = json!({
        "source": source.describe(),
        "createdAt": ledger_core::time::Timestamp::from_datetime(chrono::Utc::now()).rfc3339(),
        "lastSeq": last.0,
        "headHash": hex::encode(last.1),
        "tool": concat!("replay-tool ", env!("CARGO_PKG_VERSION")),
    });
    std::fs::write(
        out_dir.join("BACKUP.json"),
        serde_json::to_vec_pretty(&manifest).map_err(anyhow::Error::from)?,
    )
    .context("writing BACKUP.json")?;
    writeln!(
        out,
        "backup: copied {} events to {} in {:.1?}; head hash {}",
        last.0,
        log_path.display(),
        started.elapsed(),
        hex::encode(last.1)
    )?;
    Ok(())
}
