//! Stored events through a raw sled handle on a closed log, by seq, whatever
//! the layout: for the tests that tamper with a log behind its back (as a
//! faulty disk or an attacker would) and that compare stored bytes, so the
//! layout stays known in this directory only. Not used by the server.

use super::blocks::{self, Block};
use super::{storage, LogError};

/// The stored value of event `seq`: encoded event ‖ chain hash.
pub fn stored(db: &::sled::Db, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
    let Some((first, value)) = blocks::at_or_before(db, seq)? else {
        return Ok(None);
    };
    Ok(blocks::records(first, &value)?
        .into_iter()
        .find(|r| r.seq == seq)
        .map(|raw| {
            let mut value = raw.encoded;
            value.extend_from_slice(&raw.hash);
            value
        }))
}

/// Replaces the stored value (encoded event ‖ 32-byte hash) of event `seq`,
/// or adds it after the last event when `seq` is the next one.
pub fn store(db: &::sled::Db, seq: u64, value: &[u8]) -> Result<(), LogError> {
    rewrite(db, seq, |records| {
        let record = split(value)?;
        match seq.checked_sub(records.first().map_or(seq, |r| r.0)) {
            Some(i) if (i as usize) < records.len() => records[i as usize] = record,
            Some(i) if i as usize == records.len() => records.push(record),
            _ => return Err(LogError::Storage(format!("no event {seq} to replace"))),
        }
        Ok(())
    })
}

/// Removes event `seq` from its block; the events after it in that block
/// move down a seq, as a hole in a log would look.
pub fn remove(db: &::sled::Db, seq: u64) -> Result<(), LogError> {
    rewrite(db, seq, |records| {
        let i = records
            .iter()
            .position(|r| r.0 == seq)
            .ok_or_else(|| LogError::Storage(format!("no event {seq}")))?;
        records.remove(i);
        Ok(())
    })
}

type Record = (u64, Vec<u8>, [u8; 32]);

fn split(value: &[u8]) -> Result<Record, LogError> {
    if value.len() < 33 {
        return Err(LogError::Storage(
            "a stored value is no longer than its hash".into(),
        ));
    }
    let (encoded, hash) = value.split_at(value.len() - 32);
    let mut h = [0u8; 32];
    h.copy_from_slice(hash);
    Ok((0, encoded.to_vec(), h))
}

/// Edits the records of the block holding `seq` (or the last block, for the
/// seq after it) and stores the block back, or removes it once empty.
fn rewrite(
    db: &::sled::Db,
    seq: u64,
    edit: impl FnOnce(&mut Vec<Record>) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let (first, value) = blocks::at_or_before(db, seq)?
        .ok_or_else(|| LogError::Storage(format!("no block at or before {seq}")))?;
    let mut records: Vec<Record> = blocks::records(first, &value)?
        .into_iter()
        .map(|r| (r.seq, r.encoded, r.hash))
        .collect();
    edit(&mut records)?;
    if records.is_empty() {
        db.remove(blocks::key(first)).map_err(storage)?;
        return Ok(());
    }
    let mut block = Block::new(first);
    for (_, encoded, hash) in &records {
        block.push(encoded, hash)?;
    }
    db.insert(blocks::key(first), block.bytes)
        .map_err(storage)?;
    Ok(())
}

/// Removes the whole stored block holding event `seq`; returns the seqs it held.
pub fn remove_block(db: &::sled::Db, seq: u64) -> Result<std::ops::RangeInclusive<u64>, LogError> {
    let (first, value) = blocks::at_or_before(db, seq)?
        .ok_or_else(|| LogError::Storage(format!("no block at or before {seq}")))?;
    let count = blocks::records(first, &value)?.len() as u64;
    db.remove(blocks::key(first)).map_err(storage)?;
    Ok(first..=first + count - 1)
}

/// Every stored event from `from_seq` on, in order, without the checks
/// [`super::SledLog::open`] makes first: for a log whose tail is too damaged
/// to open, read to find its first bad event.
pub fn events(
    db: &::sled::Db,
    from_seq: u64,
) -> impl Iterator<Item = Result<crate::log::RawEvent, LogError>> + '_ {
    blocks::Reader::new(db, from_seq)
}
