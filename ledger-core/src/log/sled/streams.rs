//! Per stream, the seqs of its events in version order, [`CHUNK`] versions
//! to a key (for the same reason events are stored in blocks: sled's memory
//! follows its key count).
//!
//! Key: `V` ‖ stream (17 bytes) ‖ chunk number (big-endian); value: the seqs
//! (u64, big-endian) of versions `chunk·CHUNK + 1 ..`, densely. The last
//! chunk of a stream tells its current version.

use super::{storage, LogError};
use crate::events::StreamId;

pub(super) const PREFIX: u8 = b'V';
pub(super) const CHUNK: usize = 64;
const SEQ_BYTES: usize = 8;

pub(super) fn key(stream: &[u8; 17], chunk: u64) -> [u8; 26] {
    let mut k = [PREFIX; 26];
    k[1..18].copy_from_slice(stream);
    k[18..].copy_from_slice(&chunk.to_be_bytes());
    k
}

fn prefix(stream: StreamId) -> [u8; 18] {
    let mut p = [PREFIX; 18];
    p[1..].copy_from_slice(&stream.to_bytes());
    p
}

/// The last chunk of a stream: what an append extends.
#[derive(Debug, Clone, Default)]
pub(super) struct Tip {
    pub chunk: u64,
    pub seqs: Vec<u8>,
}

impl Tip {
    pub fn version(&self) -> u64 {
        self.chunk * CHUNK as u64 + (self.seqs.len() / SEQ_BYTES) as u64
    }

    /// Records `seq` as the stream's next version. Returns the chunk it
    /// filled (number, seqs) when this starts a new one, to be stored: an
    /// append may fill several chunks of one stream.
    pub fn push(&mut self, seq: u64) -> Option<(u64, Vec<u8>)> {
        let mut full = None;
        if self.seqs.len() == CHUNK * SEQ_BYTES {
            full = Some((self.chunk, std::mem::take(&mut self.seqs)));
            self.chunk += 1;
        }
        self.seqs.extend_from_slice(&seq.to_be_bytes());
        full
    }

    pub fn key(&self, stream: StreamId) -> [u8; 26] {
        key(&stream.to_bytes(), self.chunk)
    }
}

fn chunk_of_key(k: &[u8]) -> Result<u64, LogError> {
    let bytes: [u8; 8] = k
        .get(18..26)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LogError::Storage("malformed stream index key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn check_chunk(value: &[u8]) -> Result<(), LogError> {
    if value.is_empty() || !value.len().is_multiple_of(SEQ_BYTES) || value.len() > CHUNK * SEQ_BYTES
    {
        return Err(LogError::Storage("malformed stream index chunk".into()));
    }
    Ok(())
}

/// The stream's last chunk as stored (empty for a stream without events).
pub(super) fn tip(db: &::sled::Db, stream: StreamId) -> Result<Tip, LogError> {
    match db.scan_prefix(prefix(stream)).next_back() {
        None => Ok(Tip::default()),
        Some(item) => {
            let (k, v) = item.map_err(storage)?;
            check_chunk(&v)?;
            Ok(Tip {
                chunk: chunk_of_key(&k)?,
                seqs: v.to_vec(),
            })
        }
    }
}

/// The seqs of the stream's events, in version order.
pub(super) fn seqs(db: &::sled::Db, stream: StreamId) -> Result<Vec<u64>, LogError> {
    let mut out = Vec::new();
    for (expected, item) in (0u64..).zip(db.scan_prefix(prefix(stream))) {
        let (k, v) = item.map_err(storage)?;
        if chunk_of_key(&k)? != expected {
            return Err(LogError::Storage("stream index has a gap".into()));
        }
        check_chunk(&v)?;
        out.extend(v.chunks_exact(SEQ_BYTES).map(|b| {
            let mut a = [0u8; SEQ_BYTES];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        }));
    }
    Ok(out)
}
