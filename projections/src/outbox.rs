//! The webhook outbox: deliveries derived from committed events, kept in their
//! own sled database (`<data dir>/outbox`) so the delivery worker can survive
//! restarts without losing or re-sending anything.
//!
//! Key layout (one tree; integers big-endian so sled order is numeric order):
//! - `C`                              → checkpoint: the last log seq turned into deliveries
//! - `D` delivery(16)                 → encoded [`Delivery`]
//! - `Q` at(8) endpoint(16) delivery(16) → (empty) schedule: PENDING deliveries by next attempt
//! - `N` endpoint(16) delivery(16)    → (empty) an endpoint's deliveries (ids are UUID v7: creation order)
//! - `M` endpoint(16) event id        → delivery(16): one delivery per (endpoint, message)
//!
//! Exactly once into the outbox: the read model is rebuilt from sequence 0 at
//! every start and derives the same messages again; [`Outbox::record`] writes
//! the deliveries for every event up to a seq *and* the checkpoint at that seq
//! in one sled batch, then flushes and `fdatasync`s. After a crash the fold
//! hands over only what lies after the checkpoint: nothing lost, nothing twice
//! (and the `M` index refuses a duplicate regardless).
//!
//! Durability: as for the event log, sled's `flush()` ends in
//! `sync_file_range`, which does not reach the disk's write cache, so every
//! flush is followed by `fdatasync` on sled's data files and any new blob file.

use crate::webhooks::OutboxEntry;
use ledger_core::codec;
use ledger_core::ids::{OrganizationId, WebhookEndpointId};
use ledger_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// One message on its way to one endpoint. Field order is the stored format:
/// add fields only at the end.
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

fn delivery_key(id: Uuid) -> [u8; 17] {
    let mut k = [DELIVERY; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Signed micros mapped to an order-preserving unsigned key.
fn time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(bytes: &[u8]) -> Option<Timestamp> {
    let b: [u8; 8] = bytes.try_into().ok()?;
    Some(Timestamp::from_micros(
        (u64::from_be_bytes(b) ^ (1 << 63)) as i64,
    ))
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

fn uuid_at(bytes: &[u8], from: usize) -> Option<Uuid> {
    bytes
        .get(from..from + 16)
        .and_then(|b| Uuid::from_slice(b).ok())
}

/// Cheap to clone; every clone shares one database.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    dir: PathBuf,
    data_files: Vec<File>,
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Serialises read-modify-write of deliveries (attempt results, redelivery).
    write: Mutex<()>,
    /// Woken when deliveries become due sooner than the worker's next tick.
    wake: tokio::sync::Notify,
}

impl Outbox {
    /// Opens (or creates) the outbox. A new outbox starts its checkpoint at
    /// `head_if_new`, the log's current head: events committed before webhooks
    /// existed are not sent.
    pub fn open(dir: impl AsRef<Path>, head_if_new: u64) -> Result<Self, OutboxError> {
        let dir = dir.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(storage)?;
        let mut data_files = Vec::new();
        for name in ["db", "conf"] {
            let path = dir.join(name);
            if path.exists() {
                data_files.push(File::open(&path).map_err(storage)?);
            }
        }
        let outbox = Outbox {
            inner: Arc::new(Inner {
                db,
                dir,
                data_files,
                synced_blobs: Mutex::new(HashSet::new()),
                write: Mutex::new(()),
                wake: tokio::sync::Notify::new(),
            }),
        };
        if outbox
            .inner
            .db
            .get([CHECKPOINT])
            .map_err(storage)?
            .is_none()
        {
            outbox
                .inner
                .db
                .insert([CHECKPOINT], &head_if_new.to_be_bytes())
                .map_err(storage)?;
            outbox.make_durable()?;
            sync_dir(&outbox.inner.dir)?;
        }
        Ok(outbox)
    }

    /// The last log seq whose messages are in the outbox.
    pub fn checkpoint(&self) -> Result<u64, OutboxError> {
        let Some(v) = self.inner.db.get([CHECKPOINT]).map_err(storage)? else {
            return Ok(0);
        };
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| OutboxError::Storage("malformed checkpoint".into()))?;
        Ok(u64::from_be_bytes(b))
    }

    /// Creates a PENDING delivery per (entry, endpoint) and moves the
    /// checkpoint to `through_seq`, in one batch, durably. Returns how many
    /// deliveries were created.
    pub fn record(&self, through_seq: u64, entries: &[OutboxEntry]) -> Result<usize, OutboxError> {
        let _guard = self.lock()?;
        let checkpoint = self.checkpoint()?;
        if through_seq <= checkpoint && entries.is_empty() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut created = 0;
        for entry in entries {
            let m = &entry.message;
            if m.seq <= checkpoint {
                continue;
            }
            for endpoint in &entry.endpoints {
                let d = Delivery::new(
                    *endpoint,
                    m.organization_id,
                    m.event_id.clone(),
                    m.event_type.to_string(),
                    m.seq,
                    m.created_at,
                    m.payload.clone(),
                );
                if self.put_new(&mut batch, &d)? {
                    created += 1;
                }
            }
        }
        batch.insert(&[CHECKPOINT], &through_seq.max(checkpoint).to_be_bytes());
        self.inner.db.apply_batch(batch).map_err(storage)?;
        // Nothing new to lose when no delivery was created: the same fold
        // would derive nothing again.
        if created > 0 {
            self.make_durable()?;
            self.inner.wake.notify_one();
        }
        Ok(created)
    }

    /// Adds one delivery made outside the fold (a test message), durably.
    /// When the endpoint already has a delivery for that message id, returns
    /// that one instead.
    pub fn insert(&self, delivery: Delivery) -> Result<Delivery, OutboxError> {
        let _guard = self.lock()?;
        if let Some(existing) = self.by_message(delivery.endpoint_id, &delivery.event_id)? {
            return Ok(existing);
        }
        let mut batch = sled::Batch::default();
        self.put_new(&mut batch, &delivery)?;
        self.inner.db.apply_batch(batch).map_err(storage)?;
        self.make_durable()?;
        self.inner.wake.notify_one();
        Ok(delivery)
    }

    fn put_new(&self, batch: &mut sled::Batch, d: &Delivery) -> Result<bool, OutboxError> {
        let mkey = message_key(d.endpoint_id, &d.event_id);
        if self.inner.db.contains_key(&mkey).map_err(storage)? {
            return Ok(false);
        }
        batch.insert(mkey, d.id.as_bytes());
        batch.insert(delivery_key(d.id).as_slice(), codec::encode(d)?);
        batch.insert(endpoint_key(d.endpoint_id, d.id).as_slice(), &[]);
        if let (DeliveryStatus::Pending, Some(at)) = (d.status, d.next_attempt_at) {
            batch.insert(schedule_key(at, d.endpoint_id, d.id).as_slice(), &[]);
        }
        Ok(true)
    }

    pub fn get(&self, id: Uuid) -> Result<Option<Delivery>, OutboxError> {
        match self.inner.db.get(delivery_key(id)).map_err(storage)? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn by_message(
        &self,
        endpoint: WebhookEndpointId,
        event_id: &str,
    ) -> Result<Option<Delivery>, OutboxError> {
        match self
            .inner
            .db
            .get(message_key(endpoint, event_id))
            .map_err(storage)?
        {
            Some(v) => match uuid_at(&v, 0) {
                Some(id) => self.get(id),
                None => Err(OutboxError::Storage("malformed message index".into())),
            },
            None => Ok(None),
        }
    }

    /// Changes a delivery with `f` and keeps the schedule index in step, then
    /// makes it durable. Returns the delivery as it now stands (None: unknown id).
    pub fn update(
        &self,
        id: Uuid,
        f: impl FnOnce(&mut Delivery),
    ) -> Result<Option<Delivery>, OutboxError> {
        let updated = {
            let _guard = self.lock()?;
            let Some(before) = self.get(id)? else {
                return Ok(None);
            };
            let mut after = before.clone();
            f(&mut after);
            after.id = before.id;
            after.endpoint_id = before.endpoint_id;
            let mut batch = sled::Batch::default();
            if let (DeliveryStatus::Pending, Some(at)) = (before.status, before.next_attempt_at) {
                batch.remove(schedule_key(at, before.endpoint_id, id).as_slice());
            }
            if after.status != DeliveryStatus::Pending {
                after.next_attempt_at = None;
            }
            if let (DeliveryStatus::Pending, Some(at)) = (after.status, after.next_attempt_at) {
                batch.insert(schedule_key(at, after.endpoint_id, id).as_slice(), &[]);
            }
            batch.insert(delivery_key(id).as_slice(), codec::encode(&after)?);
            self.inner.db.apply_batch(batch).map_err(storage)?;
            after
        };
        // Flushed outside the lock: concurrent attempts share the sync work.
        self.make_durable()?;
        if updated.status == DeliveryStatus::Pending {
            self.inner.wake.notify_one();
        }
        Ok(Some(updated))
    }

    /// Puts the endpoint's held deliveries (PENDING without a next attempt:
    /// held while it was disabled) back on the schedule at `now`. Returns how many.
    pub fn resume(
        &self,
        endpoint: WebhookEndpointId,
        now: Timestamp,
    ) -> Result<usize, OutboxError> {
        let resumed = {
            let _guard = self.lock()?;
            let mut batch = sled::Batch::default();
            let mut n = 0;
            let start = endpoint_key(endpoint, Uuid::nil());
            let end = endpoint_key(endpoint, Uuid::from_bytes([0xff; 16]));
            for item in self.inner.db.range(start..end) {
                let (key, _) = item.map_err(storage)?;
                let Some(id) = uuid_at(&key, 17) else {
                    continue;
                };
                let Some(mut d) = self.get(id)? else { continue };
                if d.status != DeliveryStatus::Pending || d.next_attempt_at.is_some() {
                    continue;
                }
                d.next_attempt_at = Some(now);
                batch.insert(schedule_key(now, endpoint, id).as_slice(), &[]);
                batch.insert(delivery_key(id).as_slice(), codec::encode(&d)?);
                n += 1;
            }
            if n > 0 {
                self.inner.db.apply_batch(batch).map_err(storage)?;
            }
            n
        };
        if resumed > 0 {
            self.make_durable()?;
            self.inner.wake.notify_one();
        }
        Ok(resumed)
    }

    /// PENDING deliveries due at `now`, earliest first, at most `limit`.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, OutboxError> {
        let start = [SCHEDULE];
        let mut end = [SCHEDULE; 9];
        end[1..].copy_from_slice(&time_bytes(Timestamp::from_micros(
            now.as_micros().saturating_add(1),
        )));
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .range(start.as_slice()..end.as_slice())
            .take(limit)
        {
            let (key, _) = item.map_err(storage)?;
            let (Some(at), Some(endpoint), Some(delivery_id)) = (
                key.get(1..9).and_then(time_of),
                uuid_at(&key, 9),
                uuid_at(&key, 25),
            ) else {
                return Err(OutboxError::Storage("malformed schedule key".into()));
            };
            out.push(Due {
                at,
                endpoint_id: WebhookEndpointId::from_uuid(endpoint),
                delivery_id,
            });
        }
        Ok(out)
    }

    /// The earliest scheduled attempt, if any.
    pub fn next_due(&self) -> Result<Option<Timestamp>, OutboxError> {
        match self.inner.db.scan_prefix([SCHEDULE]).next() {
            Some(item) => {
                let (key, _) = item.map_err(storage)?;
                Ok(key.get(1..9).and_then(time_of))
            }
            None => Ok(None),
        }
    }

    /// How many deliveries are PENDING (the schedule's size).
    pub fn pending_count(&self) -> usize {
        self.inner.db.scan_prefix([SCHEDULE]).count()
    }

    /// An endpoint's deliveries, newest first, after the cursor (a delivery
    /// id), optionally only those in `status`. Returns the page and the cursor
    /// of the next one.
    pub fn list(
        &self,
        endpoint: WebhookEndpointId,
        before: Option<Uuid>,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<Uuid>), OutboxError> {
        let start = endpoint_key(endpoint, Uuid::nil());
        let end = match before {
            Some(c) => endpoint_key(endpoint, c),
            None => endpoint_key(endpoint, Uuid::from_bytes([0xff; 16])),
        };
        let mut page = Vec::new();
        let mut more = false;
        for item in self.inner.db.range(start..end).rev() {
            let (key, _) = item.map_err(storage)?;
            let Some(id) = uuid_at(&key, 17) else {
                return Err(OutboxError::Storage("malformed endpoint index".into()));
            };
            let Some(d) = self.get(id)? else { continue };
            if status.is_some_and(|s| s != d.status) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(d);
        }
        let next = if more {
            page.last().map(|d| d.id)
        } else {
            None
        };
        Ok((page, next))
    }

    /// Resolves when deliveries were added or rescheduled since the last call.
    pub async fn changed(&self) {
        self.inner.wake.notified().await
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, OutboxError> {
        self.inner
            .write
            .lock()
            .map_err(|_| OutboxError::Storage("outbox lock poisoned".into()))
    }

    fn make_durable(&self) -> Result<(), OutboxError> {
        self.inner.db.flush().map_err(storage)?;
        self.sync_new_blobs()?;
        for f in &self.inner.data_files {
            f.sync_data().map_err(storage)?;
        }
        Ok(())
    }

    /// sled writes large items to files under `blobs/` and never syncs them.
    fn sync_new_blobs(&self) -> Result<(), OutboxError> {
        let blob_dir = self.inner.dir.join("blobs");
        let entries = match std::fs::read_dir(&blob_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(storage(e)),
        };
        let mut synced = self
            .inner
            .synced_blobs
            .lock()
            .map_err(|_| OutboxError::Storage("blob sync state poisoned".into()))?;
        let mut any = false;
        for entry in entries {
            let entry = entry.map_err(storage)?;
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            File::open(entry.path())
                .and_then(|f| f.sync_data())
                .map_err(storage)?;
            synced.insert(name);
            any = true;
        }
        if any {
            sync_dir(&blob_dir)?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::WebhookMessage;

    fn entry(seq: u64, endpoint: WebhookEndpointId) -> OutboxEntry {
        OutboxEntry {
            message: WebhookMessage {
                event_id: format!("evt_{seq}_0"),
                event_type: "invoice.created",
                organization_id: OrganizationId::new(),
                seq,
                created_at: Timestamp::from_micros(seq as i64 * 1_000_000),
                payload: b"{}".to_vec(),
            },
            endpoints: vec![endpoint],
        }
    }

    #[test]
    fn record_is_exactly_once_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ep = WebhookEndpointId::new();
        {
            let o = Outbox::open(dir.path(), 0).unwrap();
            assert_eq!(o.record(2, &[entry(1, ep), entry(2, ep)]).unwrap(), 2);
            // The same messages again (a rebuild that re-derives them) are ignored.
            assert_eq!(o.record(2, &[entry(2, ep)]).unwrap(), 0);
        }
        let o = Outbox::open(dir.path(), 99).unwrap();
        assert_eq!(o.checkpoint().unwrap(), 2);
        assert_eq!(o.record(3, &[entry(2, ep), entry(3, ep)]).unwrap(), 1);
        let (all, next) = o.list(ep, None, None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert!(next.is_none());
        assert_eq!(all[0].event_id, "evt_3_0", "newest first");
    }

    #[test]
    fn the_schedule_follows_updates() {
        let dir = tempfile::tempdir().unwrap();
        let ep = WebhookEndpointId::new();
        let o = Outbox::open(dir.path(), 0).unwrap();
        o.record(1, &[entry(1, ep)]).unwrap();
        let now = Timestamp::from_micros(10_000_000);
        let due = o.due(now, 10).unwrap();
        assert_eq!(due.len(), 1);
        let id = due[0].delivery_id;
        let later = now.plus_seconds(60);
        o.update(id, |d| d.next_attempt_at = Some(later)).unwrap();
        assert!(o.due(now, 10).unwrap().is_empty());
        assert_eq!(o.due(later, 10).unwrap().len(), 1);
        assert_eq!(o.next_due().unwrap(), Some(later));
        o.update(id, |d| d.status = DeliveryStatus::Succeeded)
            .unwrap();
        assert!(o.due(later, 10).unwrap().is_empty());
        assert_eq!(o.pending_count(), 0);
        assert_eq!(o.get(id).unwrap().unwrap().next_attempt_at, None);
    }

    #[test]
    fn held_deliveries_leave_the_schedule_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let ep = WebhookEndpointId::new();
        let o = Outbox::open(dir.path(), 0).unwrap();
        o.record(2, &[entry(1, ep), entry(2, ep)]).unwrap();
        let now = Timestamp::from_micros(100_000_000);
        let id = o.due(now, 10).unwrap()[0].delivery_id;
        o.update(id, |d| d.next_attempt_at = None).unwrap();
        assert_eq!(o.due(now, 10).unwrap().len(), 1, "held: off the schedule");
        assert_eq!(o.get(id).unwrap().unwrap().status, DeliveryStatus::Pending);
        assert_eq!(o.resume(ep, now).unwrap(), 1);
        assert_eq!(o.due(now, 10).unwrap().len(), 2);
        assert_eq!(o.resume(ep, now).unwrap(), 0);
    }

    #[test]
    fn paging_walks_newest_first_with_a_status_filter() {
        let dir = tempfile::tempdir().unwrap();
        let ep = WebhookEndpointId::new();
        let o = Outbox::open(dir.path(), 0).unwrap();
        let entries: Vec<_> = (1..=5).map(|s| entry(s, ep)).collect();
        o.record(5, &entries).unwrap();
        let (p1, c1) = o.list(ep, None, None, 2).unwrap();
        let (p2, c2) = o.list(ep, c1, None, 2).unwrap();
        let (p3, c3) = o.list(ep, c2, None, 2).unwrap();
        let seqs: Vec<u64> = p1.iter().chain(&p2).chain(&p3).map(|d| d.seq).collect();
        assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
        assert!(c3.is_none());
        let first = p3[0].id;
        o.update(first, |d| d.status = DeliveryStatus::Failed)
            .unwrap();
        let (failed, _) = o.list(ep, None, Some(DeliveryStatus::Failed), 10).unwrap();
        assert_eq!(failed.len(), 1);
    }
}
