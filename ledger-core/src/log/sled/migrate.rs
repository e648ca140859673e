//! Layout 1, written until the block layout: a key per event (`E` ‖ seq →
//! encoded event ‖ chain hash) and per stream version (`S` ‖ stream ‖
//! version → seq). Opening such a log moves it to blocks and stream chunks
//! once. Every step is one atomic sled batch that writes the new keys and
//! removes the old ones they replace, so a crash part-way resumes where it
//! stopped; the stored bytes of each event (and so the chain) are unchanged.

use super::blocks::{self, Block};
use super::{storage, streams, LogError};

const OLD_EVENT: u8 = b'E';
const OLD_STREAM: u8 = b'S';
/// Old keys moved per sled batch.
const STEP: usize = 8192;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub events: u64,
    pub streams: u64,
}

/// Moves whatever layout-1 keys the log holds; `None` if it held none.
pub(super) fn from_layout_1(db: &::sled::Db) -> Result<Option<Migrated>, LogError> {
    let has = |prefix: u8| -> Result<bool, LogError> {
        Ok(db
            .scan_prefix([prefix])
            .next()
            .transpose()
            .map_err(storage)?
            .is_some())
    };
    if !has(OLD_EVENT)? && !has(OLD_STREAM)? {
        return Ok(None);
    }
    let events = move_events(db)?;
    let streams = move_streams(db)?;
    Ok(Some(Migrated { events, streams }))
}

fn old_seq(key: &[u8]) -> Result<u64, LogError> {
    let bytes: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LogError::Storage("malformed layout-1 event key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn move_events(db: &::sled::Db) -> Result<u64, LogError> {
    let mut moved = 0;
    loop {
        // Continue the last block already written, as an append would.
        let last = blocks::last(db)?;
        let mut next = last.as_ref().map_or(1, |b| b.last_seq() + 1);
        let mut open = last.filter(Block::has_room);
        let mut done: Vec<Block> = Vec::new();
        let mut batch = ::sled::Batch::default();
        let mut n = 0;
        // From the next seq, not the prefix's start: sled keeps the leaves
        // emptied by earlier steps for a while, and walking them every step
        // made the move quadratic.
        let mut from = [OLD_EVENT; 9];
        from[1..].copy_from_slice(&next.to_be_bytes());
        for item in db.range(&from[..]..&[OLD_EVENT + 1][..]).take(STEP) {
            let (key, value) = item.map_err(storage)?;
            let seq = old_seq(&key)?;
            if seq != next {
                return Err(LogError::Corrupt {
                    seq: next,
                    reason: format!("missing (sequence jumps to {seq})"),
                });
            }
            if value.len() < 33 {
                return Err(LogError::Corrupt {
                    seq,
                    reason: "record shorter than its hash".into(),
                });
            }
            let (encoded, hash) = value.split_at(value.len() - 32);
            let mut h = [0u8; 32];
            h.copy_from_slice(hash);
            match open.as_mut() {
                Some(b) if b.fits(encoded.len()) => b.push(encoded, &h)?,
                _ => {
                    done.extend(open.take());
                    let mut b = Block::new(seq);
                    b.push(encoded, &h)?;
                    open = Some(b);
                }
            }
            batch.remove(key);
            next = seq + 1;
            n += 1;
        }
        if n == 0 {
            return Ok(moved);
        }
        for b in done.iter().chain(open.iter()).filter(|b| b.dirty) {
            batch.insert(&blocks::key(b.first_seq)[..], b.bytes.as_slice());
        }
        db.apply_batch(batch).map_err(storage)?;
        super::gc::reclaim_after_append(n);
        moved += n as u64;
    }
}

/// The stream (its 17 key bytes) and version of a layout-1 index key.
fn old_stream(key: &[u8]) -> Result<([u8; 17], u64), LogError> {
    let malformed = || LogError::Storage("malformed layout-1 stream key".into());
    let stream: [u8; 17] = key
        .get(1..18)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    let version: [u8; 8] = key
        .get(18..26)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    Ok((stream, u64::from_be_bytes(version)))
}

fn move_streams(db: &::sled::Db) -> Result<u64, LogError> {
    let mut moved = 0;
    // Where the next step starts (see `move_events` for why not the prefix).
    let mut from: Vec<u8> = vec![OLD_STREAM];
    loop {
        let mut batch = ::sled::Batch::default();
        let mut keys = 0;
        let mut whole: Vec<([u8; 17], Vec<u64>)> = Vec::new();
        let mut current: Option<([u8; 17], Vec<u64>)> = None;
        for item in db.range(from.as_slice()..&[OLD_STREAM + 1][..]) {
            let (key, value) = item.map_err(storage)?;
            let (stream, version) = old_stream(&key)?;
            if current.as_ref().is_some_and(|(s, _)| *s != stream) {
                whole.extend(current.take());
                // A stream is moved whole, in one batch.
                if keys >= STEP {
                    from = key.to_vec();
                    break;
                }
            }
            let (_, seqs) = current.get_or_insert_with(|| (stream, Vec::new()));
            if version != seqs.len() as u64 + 1 {
                return Err(LogError::Storage(format!(
                    "layout-1 stream index of {} skips to version {version}",
                    hex::encode(stream)
                )));
            }
            let seq: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| LogError::Storage("malformed layout-1 stream index".into()))?;
            seqs.push(u64::from_be_bytes(seq));
            batch.remove(key);
            keys += 1;
        }
        whole.extend(current.take());
        if whole.is_empty() {
            return Ok(moved);
        }
        for (stream, seqs) in &whole {
            for (chunk, bytes) in streams::chunks(seqs) {
                batch.insert(&streams::key(stream, chunk)[..], bytes);
            }
        }
        db.apply_batch(batch).map_err(storage)?;
        super::gc::reclaim_after_append(keys);
        moved += whole.len() as u64;
    }
}
