//! The one place bytes are made. Everything persisted goes through here.
//!
//! Rationale for postcard: bincode 1 is unmaintained and its 3.0 release is a
//! `compile_error!` stub; postcard is maintained, has a documented stable wire
//! format, is compact (varints) and fast. Every encoded value starts with a
//! schema-version byte so a future envelope change can be detected and migrated.

use serde::{de::DeserializeOwned, Serialize};

use crate::events::RecordedEvent;

/// Version of the envelope layout. Bump only with a decoder for the old one kept.
pub const SCHEMA_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("unknown schema version {0} (this build reads {SCHEMA_VERSION})")]
    UnknownSchema(u8),
    #[error("undecodable record: {0}")]
    Decode(String),
    #[error("unencodable value: {0}")]
    Encode(String),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.push(SCHEMA_VERSION);
    postcard::to_extend(value, out).map_err(|e| CodecError::Encode(e.to_string()))
}

/// As [`encode`], written to `w` as it is produced: a large value (the write
/// model's snapshot, 400 MB at 10M events) never exists twice in memory.
pub fn encode_to<T: Serialize, W: std::io::Write>(value: &T, mut w: W) -> Result<W, CodecError> {
    w.write_all(&[SCHEMA_VERSION])
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    postcard::to_io(value, w).map_err(|e| CodecError::Encode(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&SCHEMA_VERSION, rest)) => {
            let (value, tail) =
                postcard::take_from_bytes(rest).map_err(|e| CodecError::Decode(e.to_string()))?;
            if tail.is_empty() {
                Ok(value)
            } else {
                Err(CodecError::Decode(format!("{} trailing bytes", tail.len())))
            }
        }
        Some((&other, _)) => Err(CodecError::UnknownSchema(other)),
    }
}

pub fn encode_event(event: &RecordedEvent) -> Result<Vec<u8>, CodecError> {
    encode(event)
}

pub fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, CodecError> {
    decode(bytes)
}

/// The seq an encoded event carries (its first field), read without
/// decoding the rest; None if the bytes do not start like an event.
pub fn encoded_seq(bytes: &[u8]) -> Option<u64> {
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, rest)) => postcard::take_from_bytes::<u64>(rest)
            .ok()
            .map(|(seq, _)| seq),
        _ => None,
    }
}
