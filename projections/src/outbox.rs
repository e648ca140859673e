//! Webhook deliveries: the records the outbox holds ([`Delivery`] and its
//! [`Attempt`]s), and the previous version's outbox, a sled database at
//! `<data dir>/outbox`, read once to import it into the SQL outbox
//! ([`crate::sql::outbox`]), which holds them since.
//!
//! The previous format (one sled tree; integers big-endian):
//! - `C`                                 → checkpoint: the last log seq turned into deliveries
//! - `D` delivery(16)                    → encoded [`Delivery`]
//! - `Q` at(8) endpoint(16) delivery(16) → (empty) PENDING deliveries by next attempt
//! - `N` endpoint(16) delivery(16)       → (empty) an endpoint's deliveries
//! - `M` endpoint(16) event id           → delivery(16): one delivery per (endpoint, message)
//!
//! Only `C` and `D` are read: the indexes are derived from the deliveries.

use ledger_core::codec;
use ledger_core::ids::{OrganizationId, WebhookEndpointId};
use ledger_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;
use uuid::Uuid;

const CHECKPOINT: u8 = b'C';
const DELIVERY: u8 = b'D';
const SCHEDULE: u8 = b'Q';
const BY_ENDPOINT: u8 = b'N';
const BY_MESSAGE: u8 = b'M';

/// Longest response body kept per attempt.
pub const MAX_RESPONSE_BODY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Storage(String),
    #[error("outbox record: {0}")]
    Codec(#[from] codec::CodecError),
}

fn storage(e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Storage(e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One try at delivering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    /// The HTTP status, when a response came back.
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The first [`MAX_RESPONSE_BODY`] bytes of the response (lossy UTF-8).
    pub response_body: Option<String>,
}

/// One message on its way to one endpoint. Its postcard encoding, field
/// order included, is how the previous version's outbox stored it, which the
/// upgrade reads: change the struct only with a decoder for that format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: WebhookEndpointId,
    pub organization_id: OrganizationId,
    /// The message id: the payload's `id` and the `webhook-id` header.
    pub event_id: String,
    pub event_type: String,
    /// The log position it came from (0 for a test message).
    pub seq: u64,
    pub created_at: Timestamp,
    /// The exact bytes sent and signed on every attempt.
    pub payload: Vec<u8>,
    pub status: DeliveryStatus,
    /// Set while PENDING.
    pub next_attempt_at: Option<Timestamp>,
    pub attempts: Vec<Attempt>,
    /// Attempts made before the last manual redelivery: the retry schedule
    /// counts from here.
    pub schedule_base: u32,
    /// The `requestId`s of the manual redeliveries applied (a retried request
    /// does not send again).
    pub redelivered_by: Vec<Uuid>,
}

impl Delivery {
    pub fn new(
        endpoint_id: WebhookEndpointId,
        organization_id: OrganizationId,
        event_id: String,
        event_type: String,
        seq: u64,
        created_at: Timestamp,
        payload: Vec<u8>,
    ) -> Self {
        Delivery {
            id: Uuid::now_v7(),
            endpoint_id,
            organization_id,
            event_id,
            event_type,
            seq,
            created_at,
            payload,
            status: DeliveryStatus::Pending,
            next_attempt_at: Some(created_at),
            attempts: Vec::new(),
            schedule_base: 0,
            redelivered_by: Vec::new(),
        }
    }

    /// Attempts since the delivery was last (re)started.
    pub fn attempts_in_round(&self) -> usize {
        self.attempts
            .len()
            .saturating_sub(self.schedule_base as usize)
    }
}

/// A PENDING delivery whose attempt time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Timestamp,
    pub endpoint_id: WebhookEndpointId,
    pub delivery_id: Uuid,
}

/// The previous version's outbox, opened to be imported.
pub struct LegacyOutbox {
    db: sled::Db,
}

impl LegacyOutbox {
    /// Opens the sled outbox at `dir` (which must exist).
    pub fn open(dir: &Path) -> Result<Self, OutboxError> {
        // Whoever just wrote it (the fixtures, `write`) may still hold its
        // lock a moment; CI met that once.
        ledger_core::log::sled::when_unlocked(std::time::Duration::from_secs(2), || {
            sled::Config::new().path(dir).flush_every_ms(None).open()
        })
        .map(|db| Self { db })
        .map_err(storage)
    }

    /// The last log seq whose deliveries it holds.
    pub fn checkpoint(&self) -> Result<u64, OutboxError> {
        let Some(v) = self.db.get([CHECKPOINT]).map_err(storage)? else {
            return Ok(0);
        };
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| OutboxError::Storage("malformed checkpoint".into()))?;
        Ok(u64::from_be_bytes(b))
    }

    /// Every delivery it holds, in id order.
    pub fn deliveries(&self) -> impl Iterator<Item = Result<Delivery, OutboxError>> + '_ {
        self.db.scan_prefix([DELIVERY]).map(|item| {
            let (_, v) = item.map_err(storage)?;
            Ok(codec::decode(&v)?)
        })
    }

    /// Writes an outbox in the previous version's format (its every key), so
    /// the upgrade can be tested against the real thing.
    pub fn write(dir: &Path, checkpoint: u64, deliveries: &[Delivery]) -> Result<(), OutboxError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(storage)?;
        let mut batch = sled::Batch::default();
        for d in deliveries {
            batch.insert(message_key(d.endpoint_id, &d.event_id), d.id.as_bytes());
            batch.insert(delivery_key(d.id).as_slice(), codec::encode(d)?);
            batch.insert(endpoint_key(d.endpoint_id, d.id).as_slice(), &[]);
            if let (DeliveryStatus::Pending, Some(at)) = (d.status, d.next_attempt_at) {
                batch.insert(schedule_key(at, d.endpoint_id, d.id).as_slice(), &[]);
            }
        }
        batch.insert(&[CHECKPOINT], &checkpoint.to_be_bytes());
        db.apply_batch(batch).map_err(storage)?;
        db.flush().map_err(storage)?;
        Ok(())
    }
}

fn delivery_key(id: Uuid) -> [u8; 17] {
    let mut k = [DELIVERY; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Signed micros mapped to an order-preserving unsigned key.
fn time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

fn schedule_key(at: Timestamp, endpoint: WebhookEndpointId, id: Uuid) -> [u8; 41] {
    let mut k = [SCHEDULE; 41];
    k[1..9].copy_from_slice(&time_bytes(at));
    k[9..25].copy_from_slice(endpoint.as_uuid().as_bytes());
    k[25..].copy_from_slice(id.as_bytes());
    k
}

fn endpoint_key(endpoint: WebhookEndpointId, id: Uuid) -> [u8; 33] {
    let mut k = [BY_ENDPOINT; 33];
    k[1..17].copy_from_slice(endpoint.as_uuid().as_bytes());
    k[17..].copy_from_slice(id.as_bytes());
    k
}

fn message_key(endpoint: WebhookEndpointId, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + event_id.len());
    k.push(BY_MESSAGE);
    k.extend_from_slice(endpoint.as_uuid().as_bytes());
    k.extend_from_slice(event_id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_outbox_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let ep = WebhookEndpointId::new();
        let mut d = Delivery::new(
            ep,
            OrganizationId::new(),
            "evt_3_0".into(),
            "deposit.received".into(),
            3,
            Timestamp::from_micros(1_000_000),
            b"{}".to_vec(),
        );
        d.attempts.push(Attempt {
            at: Timestamp::from_micros(2_000_000),
            status_code: Some(500),
            duration_ms: 12,
            error: Some("HTTP 500".into()),
            response_body: Some("boom".into()),
        });
        LegacyOutbox::write(dir.path(), 7, std::slice::from_ref(&d)).unwrap();
        let o = LegacyOutbox::open(dir.path()).unwrap();
        assert_eq!(o.checkpoint().unwrap(), 7);
        let all: Vec<Delivery> = o.deliveries().collect::<Result<_, _>>().unwrap();
        assert_eq!(all, vec![d]);
    }
}
