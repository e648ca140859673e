//! The append-only event log.
//!
//! Contract every implementation keeps (checked by the shared tests in
//! `log::sled`, and assumed by the engine and replay-tool):
//! - the global sequence is dense from 1: an append must continue exactly at
//!   `head().next_seq()`; anything else is refused;
//! - per stream, versions are dense from 1 (the expected-version check);
//! - each stored event carries `sha256(previous hash ‖ encoded event)`;
//! - events and idempotency records of one append become durable together or
//!   not at all, before `append` returns.

pub mod sled;

pub mod snapshots;

use crate::codec::CodecError;
use crate::events::{RecordedEvent, StreamId};
use crate::ids::RequestId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The hash before the first event.
pub const GENESIS_HASH: Hash = [0u8; 32];

pub fn chain_hash(previous: &Hash, encoded_event: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(encoded_event);
    h.finalize().into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    /// Sequence number of the last event, 0 when empty.
    pub last_seq: u64,
    pub last_hash: Hash,
}

impl LogHead {
    pub fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }
}

/// Whose idempotency key space a record lives in: an organization's id, or
/// [`IdempotencyKey::ADMIN_SCOPE`] for operator calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub scope: Uuid,
    pub request_id: RequestId,
}

impl IdempotencyKey {
    pub const ADMIN_SCOPE: Uuid = Uuid::nil();

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(self.scope.as_bytes());
        out[16..].copy_from_slice(self.request_id.as_uuid().as_bytes());
        out
    }
}

/// What a command answered, kept so a retry gets the same bytes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: IdempotencyKey,
    /// Hash of what identifies the request (method, path, body); a retry
    /// with another fingerprint is a reuse of the key, not a retry.
    pub fingerprint: Hash,
    pub status: u16,
    pub body: Vec<u8>,
    pub at: Timestamp,
    /// The last event the command produced (0 if none), for read-your-writes.
    pub last_seq: u64,
}

impl IdempotencyRecord {
    /// `status` of a record whose `body` is not a response yet but what the
    /// caller needs to render it (from the read models, after the fact).
    pub const PENDING_RENDER: u16 = 0;

    pub fn is_pending_render(&self) -> bool {
        self.status == Self::PENDING_RENDER
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("event {seq} is corrupt: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("append out of sequence: expected seq {expected}, got {got}")]
    OutOfSequence { expected: u64, got: u64 },
    #[error("version conflict on {stream:?}: expected version {expected}, got {got}")]
    VersionConflict {
        stream: StreamId,
        expected: u64,
        got: u64,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// One stored event, undecoded: what verification works on.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub seq: u64,
    pub encoded: Vec<u8>,
    pub hash: Hash,
}

pub type EventIter<'a> = Box<dyn Iterator<Item = Result<RecordedEvent, LogError>> + Send + 'a>;
pub type RawIter<'a> = Box<dyn Iterator<Item = Result<RawEvent, LogError>> + Send + 'a>;

/// Storage for the event log. A PostgreSQL implementation fits the same shape:
/// one transaction per `append`, the sequence a checked column, the hash
/// computed in the same transaction.
pub trait EventLog: Send + Sync + 'static {
    fn head(&self) -> LogHead;

    /// Durably appends `events` (already numbered, continuing the head) and the
    /// idempotency records, atomically. Returns only once both are durable.
    fn append(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError>;

    /// As [`EventLog::append`], except that the batch is durable only once
    /// a later [`EventLog::sync`] returns: the engine decides the next
    /// batch while this one is being made durable. Until then it survives a
    /// crash or it does not, whole (never in part). By default the append
    /// is durable at once.
    fn append_unsynced(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        self.append(events, idempotency)
    }

    /// Makes every append that returned before this call durable.
    fn sync(&self) -> Result<(), LogError> {
        Ok(())
    }

    fn read_all(&self, from_seq: u64) -> EventIter<'_>;
    fn read_raw(&self, from_seq: u64) -> RawIter<'_>;
    fn read_stream(&self, stream: StreamId) -> Result<Vec<RecordedEvent>, LogError>;

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, LogError>;
    /// Drops idempotency records written before `before`; returns how many.
    fn prune_idempotency(&self, before: Timestamp) -> Result<usize, LogError>;
    /// Replaces a record written with [`IdempotencyRecord::PENDING_RENDER`]
    /// by the response rendered for it, unless another caller did first;
    /// returns the record as it now stands. Made durable with the log's next
    /// commit: the answer is derived data, the decision it describes already is.
    fn complete_idempotency(
        &self,
        pending: &IdempotencyRecord,
        status: u16,
        body: Vec<u8>,
    ) -> Result<IdempotencyRecord, LogError>;
}

/// Checks one raw event against the hash of the one before it.
pub fn verify_link(previous: &Hash, raw: &RawEvent) -> Result<RecordedEvent, LogError> {
    let expected = chain_hash(previous, &raw.encoded);
    if expected != raw.hash {
        return Err(LogError::Corrupt {
            seq: raw.seq,
            reason: "hash chain broken (stored hash does not match contents)".into(),
        });
    }
    let event = crate::codec::decode_event(&raw.encoded).map_err(|e| LogError::Corrupt {
        seq: raw.seq,
        reason: e.to_string(),
    })?;
    if event.seq != raw.seq {
        return Err(LogError::Corrupt {
            seq: raw.seq,
            reason: format!("stored under seq {} but says {}", raw.seq, event.seq),
        });
    }
    Ok(event)
}

/// Reads and decodes the log from `from_seq` on one thread while `apply` runs
/// on the caller's, in order. Rationale: replay is half storage scan and decode,
/// half applying; on two cores the two halves overlap (BENCHMARKS.md).
pub fn replay<E: From<LogError>>(
    log: &dyn EventLog,
    from_seq: u64,
    mut apply: impl FnMut(&RecordedEvent) -> Result<(), E>,
) -> Result<(), E> {
    const CHUNK: usize = 1024;
    std::thread::scope(|scope| {
        // Bounded: the reader stays at most a few chunks ahead.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<RecordedEvent>, LogError>>(4);
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            for event in log.read_all(from_seq) {
                match event {
                    Ok(e) => chunk.push(e),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if chunk.len() == CHUNK
                    && tx
                        .send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))))
                        .is_err()
                {
                    return; // the applier stopped
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk));
            }
        });
        for chunk in rx {
            for event in &chunk? {
                apply(event)?;
            }
        }
        Ok(())
    })
}

/// Copies stored events, in order from sequence 1, into `to` (an empty log),
/// checking the chain from genesis and that every event re-encodes to its
/// stored bytes, so the copy is byte for byte the original and ends on the
/// same head hash. The log is append-only, so any prefix is a consistent copy.
pub fn copy_verified(
    source: impl Iterator<Item = Result<RawEvent, LogError>>,
    to: &dyn EventLog,
) -> Result<LogHead, LogError> {
    if to.head().last_seq != 0 {
        return Err(LogError::Storage("the destination log is not empty".into()));
    }
    extend_verified(source, to)
}

/// Like [`copy_verified`], but continues a copy: `source` starts at the event
/// after `to`'s head and must chain onto it. A hot backup uses it to take in
/// events that happened while it copied files.
pub fn extend_verified(
    source: impl Iterator<Item = Result<RawEvent, LogError>>,
    to: &dyn EventLog,
) -> Result<LogHead, LogError> {
    const BATCH: usize = 10_000;
    let start = to.head();
    let mut previous = start.last_hash;
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<RecordedEvent>, expected: &Hash| -> Result<(), LogError> {
        if batch.is_empty() {
            return Ok(());
        }
        let head = to.append(batch, &[])?;
        batch.clear();
        if head.last_hash != *expected {
            return Err(LogError::Corrupt {
                seq: head.last_seq,
                reason: "the copy's chain differs from the source's".into(),
            });
        }
        Ok(())
    };
    for (expected_seq, raw) in (start.last_seq + 1..).zip(source) {
        let raw = raw?;
        if raw.seq != expected_seq {
            return Err(LogError::Corrupt {
                seq: expected_seq,
                reason: format!("missing (the source jumps to {})", raw.seq),
            });
        }
        let event = verify_link(&previous, &raw)?;
        if crate::codec::encode_event(&event)? != raw.encoded {
            return Err(LogError::Corrupt {
                seq: raw.seq,
                reason: "does not re-encode to its stored bytes".into(),
            });
        }
        previous = raw.hash;
        batch.push(event);
        if batch.len() == BATCH {
            flush(&mut batch, &previous)?;
        }
    }
    flush(&mut batch, &previous)?;
    Ok(to.head())
}
