//! Events stored in blocks: one sled key per run of consecutive events.
//!
//! Why blocks: sled keeps an in-memory page-table entry per tree node and
//! splits a leaf past 16 keys, so its resident memory follows the number of
//! keys, whatever the cache size. With a key per event (and one per stream
//! version) that was about 711 MB at 10M events (BENCHMARKS.md). A block
//! holds up to [`MAX_EVENTS`] events or about [`MAX_BYTES`] bytes.
//!
//! Key: `B` ‖ seq of the block's first event (big-endian). Value: records
//! back to back, each `len (u32, big-endian) ‖ encoded event ‖ chain hash`;
//! the records' seqs follow the key's densely. Only the last block grows:
//! an append extends it while it has room (rewriting one small value), then
//! starts the next.

use super::{storage, LogError, RawEvent};
use crate::log::Hash;

pub(super) const PREFIX: u8 = b'B';
pub(super) const MAX_EVENTS: usize = 32;
/// A block stops taking events at this size; one bigger event gets a block
/// of its own. Small enough that rewriting the last block per append stays
/// cheap, and well under sled's blob threshold (an eighth of a segment).
pub(super) const MAX_BYTES: usize = 16 * 1024;
const LEN_BYTES: usize = 4;
const HASH_BYTES: usize = 32;

pub(super) fn key(first_seq: u64) -> [u8; 9] {
    let mut k = [PREFIX; 9];
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

pub(super) fn seq_of_key(key: &[u8]) -> Result<u64, LogError> {
    let bytes: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LogError::Storage("malformed block key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A block being written: the last one of the log, or one an append starts.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub first_seq: u64,
    pub count: usize,
    pub bytes: Vec<u8>,
    /// Changed since it was read or written.
    pub dirty: bool,
}

impl Block {
    pub fn new(first_seq: u64) -> Self {
        Self {
            first_seq,
            count: 0,
            bytes: Vec::new(),
            dirty: true,
        }
    }

    /// A stored block, its framing checked.
    pub fn stored(first_seq: u64, bytes: &[u8]) -> Result<Self, LogError> {
        let count = decode(first_seq, bytes)?.len();
        Ok(Self {
            first_seq,
            count,
            bytes: bytes.to_vec(),
            dirty: false,
        })
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count as u64 - 1
    }

    /// Whether a record of this encoded size goes into this block.
    pub fn fits(&self, encoded_len: usize) -> bool {
        self.count == 0
            || (self.count < MAX_EVENTS && self.bytes.len() + record_len(encoded_len) <= MAX_BYTES)
    }

    pub fn push(&mut self, encoded: &[u8], hash: &Hash) -> Result<(), LogError> {
        let len = u32::try_from(encoded.len())
            .map_err(|_| LogError::Storage("event larger than 4 GiB".into()))?;
        self.bytes.reserve(record_len(encoded.len()));
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(encoded);
        self.bytes.extend_from_slice(hash);
        self.count += 1;
        self.dirty = true;
        Ok(())
    }
}

fn record_len(encoded_len: usize) -> usize {
    LEN_BYTES + encoded_len + HASH_BYTES
}

/// The records of a stored block, as raw events numbered from `first_seq`,
/// each checked to carry the seq of its place.
pub(super) fn decode(first_seq: u64, value: &[u8]) -> Result<Vec<RawEvent>, LogError> {
    let records = records(first_seq, value)?;
    for r in &records {
        check_position(r.seq, &r.encoded)?;
    }
    Ok(records)
}

/// The records of a stored block, framing checked only.
pub(super) fn records(first_seq: u64, value: &[u8]) -> Result<Vec<RawEvent>, LogError> {
    let mut out = Vec::new();
    let mut rest = value;
    let mut seq = first_seq;
    while !rest.is_empty() {
        let cut = || LogError::Corrupt {
            seq,
            reason: "its block's framing is broken (record cut short)".into(),
        };
        let (len, tail) = rest.split_first_chunk::<LEN_BYTES>().ok_or_else(cut)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || tail.len() < len + HASH_BYTES {
            return Err(cut());
        }
        let (encoded, tail) = tail.split_at(len);
        let (hash, tail) = tail.split_at(HASH_BYTES);
        let mut h = [0u8; HASH_BYTES];
        h.copy_from_slice(hash);
        out.push(RawEvent {
            seq,
            encoded: encoded.to_vec(),
            hash: h,
        });
        rest = tail;
        seq += 1;
    }
    if out.is_empty() {
        return Err(LogError::Corrupt {
            seq: first_seq,
            reason: "its block is empty".into(),
        });
    }
    Ok(out)
}

/// A record removed from a block moves the ones after it down a seq, and
/// swapped records trade places: each event carries its seq, so say so
/// rather than only that the chain breaks there.
fn check_position(seq: u64, encoded: &[u8]) -> Result<(), LogError> {
    match crate::codec::encoded_seq(encoded) {
        Some(own) if own > seq => Err(LogError::Corrupt {
            seq,
            reason: format!("missing (event {own} is stored where {seq} belongs)"),
        }),
        Some(own) if own < seq => Err(LogError::Corrupt {
            seq,
            reason: format!("out of order (event {own} found where {seq} belongs)"),
        }),
        // Unreadable bytes are for the hash and the decoder to name.
        _ => Ok(()),
    }
}

/// The stored block whose range starts at or before `seq`: the one holding
/// it, if any holds it.
pub(super) fn at_or_before(
    db: &::sled::Db,
    seq: u64,
) -> Result<Option<(u64, ::sled::IVec)>, LogError> {
    match db.range(key(0)..=key(seq)).next_back() {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item.map_err(storage)?;
            Ok(Some((seq_of_key(&k)?, v)))
        }
    }
}

/// The first stored block starting at or after `seq`.
fn at_or_after(db: &::sled::Db, seq: u64) -> Result<Option<(u64, ::sled::IVec)>, LogError> {
    match db.range(key(seq)..=key(u64::MAX)).next() {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item.map_err(storage)?;
            Ok(Some((seq_of_key(&k)?, v)))
        }
    }
}

/// The last stored block, if the log has events.
pub(super) fn last(db: &::sled::Db) -> Result<Option<Block>, LogError> {
    match db.scan_prefix([PREFIX]).next_back() {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item.map_err(storage)?;
            Ok(Some(Block::stored(seq_of_key(&k)?, &v)?))
        }
    }
}

/// One stored event, if the log holds it.
pub(super) fn event(db: &::sled::Db, seq: u64) -> Result<Option<RawEvent>, LogError> {
    let Some((first, value)) = at_or_before(db, seq)? else {
        return Ok(None);
    };
    Ok(decode(first, &value)?.into_iter().find(|r| r.seq == seq))
}

/// Events in order from a seq, a block at a time. Each step looks the next
/// seq up afresh rather than holding a sled iterator, so events appended
/// while it runs (which may extend the block it just read) are seen, and a
/// block missing from the middle is named instead of skipped.
pub(super) struct Reader<'a> {
    db: &'a ::sled::Db,
    next: u64,
    buffered: std::vec::IntoIter<RawEvent>,
    done: bool,
}

impl<'a> Reader<'a> {
    pub fn new(db: &'a ::sled::Db, from_seq: u64) -> Self {
        Self {
            db,
            next: from_seq.max(1),
            buffered: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Buffers the events from `next` on that one block holds; false at the
    /// end of the log.
    fn refill(&mut self) -> Result<bool, LogError> {
        if self.refill_from_block_before()? {
            return Ok(true);
        }
        // No block holds `next`: the end of the log, unless a later one exists.
        match at_or_after(self.db, self.next)? {
            None => Ok(false),
            // Written since the lookup above.
            Some((first, value)) if first == self.next => {
                self.buffered = decode(first, &value)?.into_iter();
                Ok(true)
            }
            // An append since the first lookup may have extended the block
            // before as well as started this one (one atomic batch).
            Some(_) if self.refill_from_block_before()? => Ok(true),
            Some((first, _)) => Err(LogError::Corrupt {
                seq: self.next,
                reason: format!("missing (sequence jumps to {first})"),
            }),
        }
    }

    /// Buffers the events from `next` on in the block that starts at or
    /// before it; false if it holds none.
    fn refill_from_block_before(&mut self) -> Result<bool, LogError> {
        if let Some((first, value)) = at_or_before(self.db, self.next)? {
            let wanted: Vec<RawEvent> = decode(first, &value)?
                .into_iter()
                .filter(|r| r.seq >= self.next)
                .collect();
            if !wanted.is_empty() {
                self.buffered = wanted.into_iter();
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<RawEvent, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(raw) = self.buffered.next() {
                self.next = raw.seq + 1;
                return Some(Ok(raw));
            }
            if self.done {
                return None;
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_of(records: &[&[u8]]) -> Block {
        let mut b = Block::new(7);
        for (i, r) in records.iter().enumerate() {
            b.push(r, &[i as u8; 32]).unwrap();
        }
        b
    }

    #[test]
    fn records_come_back_numbered_from_the_first_seq() {
        let b = block_of(&[b"one", b"three"]);
        let got = records(7, &b.bytes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].seq, &got[0].encoded[..], got[0].hash),
            (7, &b"one"[..], [0; 32])
        );
        assert_eq!(
            (got[1].seq, &got[1].encoded[..], got[1].hash),
            (8, &b"three"[..], [1; 32])
        );
        assert_eq!(b.last_seq(), 8);
    }

    #[test]
    fn a_block_cut_short_or_with_an_empty_record_is_named() {
        let b = block_of(&[b"one", b"three"]);
        // Cutting the whole last record leaves a well-formed block of one.
        for cut in 1..(4 + 5 + 32) {
            match records(7, &b.bytes[..b.bytes.len() - cut]) {
                Err(LogError::Corrupt { seq, reason }) => {
                    assert_eq!(seq, 8, "cut {cut}");
                    assert!(reason.contains("framing"), "{reason}");
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        // A zero length with a hash after it is not a record.
        let mut zero = 0u32.to_be_bytes().to_vec();
        zero.extend_from_slice(&[0; 32]);
        assert!(matches!(
            records(3, &zero),
            Err(LogError::Corrupt { seq: 3, .. })
        ));
        assert!(matches!(
            records(3, &[]),
            Err(LogError::Corrupt { seq: 3, .. })
        ));
    }
}
