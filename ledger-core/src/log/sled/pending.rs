//! Journal entries sled has not taken in yet.
//!
//! Readers look here first, then in sled. An entry leaves only after the
//! applier's `apply_batch` put it into sled, so whatever a reader misses here
//! it finds there (as long as it looks here *before* looking in sled).
//!
//! Bounded: an append waits while more than [`MAX_BYTES`] of journal records
//! are unapplied, so memory follows the applier's lag, never history.

use super::journal::{Entry, Stored};
use crate::events::StreamId;
use crate::log::{IdempotencyKey, IdempotencyRecord, LogError, RawEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Unapplied journal bytes past which appends wait for the applier.
pub(super) const MAX_BYTES: usize = 32 * 1024 * 1024;

/// How long an entry waits for others to go into sled with it. sled's cost
/// is per `apply_batch` more than per key (a write of its buffer and its
/// I/O threads' wake-ups): applying each group commit at once cost about
/// 500 µs of CPU per command at 600 commands/s (BENCHMARKS.md).
pub(super) const GATHER: Duration = Duration::from_millis(100);

pub(super) struct Item {
    pub id: u64,
    /// The journal file the entry was written to.
    pub file: u64,
    pub entry: Arc<Entry>,
    bytes: usize,
    queued: Instant,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    next_id: u64,
    bytes: usize,
    /// The newest unapplied record per key, and the item that holds it.
    idempotency: HashMap<IdempotencyKey, (IdempotencyRecord, u64)>,
    /// The newest unapplied version per stream, and the item that holds it.
    versions: HashMap<StreamId, (u64, u64)>,
    failed: Option<LogError>,
    stopping: bool,
}

#[derive(Default)]
pub(super) struct Pending {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// What the applier takes in one go.
pub(super) enum Work {
    Items(Vec<(u64, u64, Arc<Entry>)>),
    /// Nothing came within the wait.
    Idle,
    /// Stopping, and nothing is left.
    Stop,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves consistent data (every
        // update is a few map operations): go on with it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the log takes no more appends, if it does not.
    pub fn failed(&self) -> Option<LogError> {
        self.lock().failed.clone()
    }

    pub fn fail(&self, error: LogError) {
        let mut q = self.lock();
        q.failed.get_or_insert(error);
        self.changed.notify_all();
    }

    /// Waits while the queue is over its bound (an applier behind). Fails
    /// when the applier has stopped for good.
    pub fn wait_for_room(&self) -> Result<(), LogError> {
        let mut q = self.lock();
        loop {
            if let Some(e) = &q.failed {
                return Err(e.clone());
            }
            if q.bytes < MAX_BYTES {
                return Ok(());
            }
            q = self
                .changed
                .wait_timeout(q, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Queues an entry written to journal file `file`.
    pub fn push(&self, file: u64, entry: Entry, bytes: usize) {
        let mut q = self.lock();
        let id = q.next_id;
        q.next_id += 1;
        match &entry {
            Entry::Batch {
                events,
                idempotency,
            } => {
                for e in events {
                    q.versions.insert(e.stream, (e.version, id));
                }
                for r in idempotency {
                    q.idempotency.insert(r.key, (r.clone(), id));
                }
            }
            Entry::Completion(r) => {
                q.idempotency.insert(r.key, (r.clone(), id));
            }
        }
        q.bytes += bytes;
        q.items.push_back(Item {
            id,
            file,
            entry: Arc::new(entry),
            bytes,
            queued: Instant::now(),
        });
        // The applier sleeps until the first entry's time is up; wake it
        // only to start that clock or when enough has queued.
        if q.items.len() == 1 || q.bytes >= MAX_BYTES / 2 {
            self.changed.notify_all();
        }
    }

    /// The applier's next work: up to `max` entries, once the first has
    /// waited [`GATHER`] (or half the bound has queued, or the log is
    /// closing); `Idle` after `wait` with nothing queued.
    pub fn take(&self, max: usize, wait: Duration) -> Work {
        let mut q = self.lock();
        let idle_until = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let due = match q.items.front() {
                None if q.stopping => return Work::Stop,
                None if now >= idle_until => return Work::Idle,
                None => idle_until,
                Some(first) => {
                    let due = first.queued + GATHER;
                    if q.stopping || now >= due || q.bytes >= MAX_BYTES / 2 {
                        return Work::Items(
                            q.items
                                .iter()
                                .take(max)
                                .map(|i| (i.id, i.file, i.entry.clone()))
                                .collect(),
                        );
                    }
                    due
                }
            };
            q = self
                .changed
                .wait_timeout(q, due.saturating_duration_since(now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Drops the entries up to item `through`: sled holds them now.
    pub fn applied(&self, through: u64) {
        let mut q = self.lock();
        while q.items.front().is_some_and(|i| i.id <= through) {
            let Some(item) = q.items.pop_front() else {
                break;
            };
            q.bytes -= item.bytes;
            match &*item.entry {
                Entry::Batch {
                    events,
                    idempotency,
                } => {
                    for e in events {
                        if q.versions.get(&e.stream).is_some_and(|v| v.1 == item.id) {
                            q.versions.remove(&e.stream);
                        }
                    }
                    for r in idempotency {
                        forget(&mut q.idempotency, &r.key, item.id);
                    }
                }
                Entry::Completion(r) => forget(&mut q.idempotency, &r.key, item.id),
            }
        }
        self.changed.notify_all();
    }

    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    pub fn idempotency(&self, key: &IdempotencyKey) -> Option<IdempotencyRecord> {
        self.lock().idempotency.get(key).map(|(r, _)| r.clone())
    }

    pub fn version(&self, stream: StreamId) -> Option<u64> {
        self.lock().versions.get(&stream).map(|v| v.0)
    }

    /// Unapplied events from `from` on, at most `max`, in order.
    pub fn events_from(&self, from: u64, max: usize) -> Vec<RawEvent> {
        let q = self.lock();
        let mut out = Vec::new();
        for item in &q.items {
            let Entry::Batch { events, .. } = &*item.entry else {
                continue;
            };
            if events.last().is_none_or(|e| e.seq < from) {
                continue;
            }
            for e in events.iter().filter(|e| e.seq >= from) {
                if out.len() == max {
                    return out;
                }
                out.push(RawEvent {
                    seq: e.seq,
                    encoded: e.encoded.clone(),
                    hash: e.hash,
                });
            }
        }
        out
    }

    /// Unapplied events of one stream, in order.
    pub fn stream(&self, stream: StreamId) -> Vec<Stored> {
        let q = self.lock();
        if !q.versions.contains_key(&stream) {
            return Vec::new();
        }
        q.items
            .iter()
            .filter_map(|i| match &*i.entry {
                Entry::Batch { events, .. } => Some(events),
                Entry::Completion(_) => None,
            })
            .flatten()
            .filter(|e| e.stream == stream)
            .cloned()
            .collect()
    }
}

fn forget(
    map: &mut HashMap<IdempotencyKey, (IdempotencyRecord, u64)>,
    key: &IdempotencyKey,
    id: u64,
) {
    if map.get(key).is_some_and(|(_, holder)| *holder == id) {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(n: u8, body: usize) -> Entry {
        Entry::Completion(IdempotencyRecord {
            key: IdempotencyKey {
                scope: uuid::Uuid::from_bytes([n; 16]),
                request_id: crate::ids::RequestId::from_uuid(uuid::Uuid::from_bytes([n; 16])),
            },
            fingerprint: [n; 32],
            status: 200,
            body: vec![n; body],
            at: crate::time::Timestamp::from_micros(0),
            last_seq: 0,
        })
    }

    #[test]
    fn appends_wait_while_the_queue_is_over_its_bound_and_go_on_once_applied() {
        let pending = Pending::default();
        pending.push(1, completion(1, 10), MAX_BYTES);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(pending.wait_for_room()).unwrap());
            assert!(
                rx.recv_timeout(Duration::from_millis(300)).is_err(),
                "an append went on past the bound"
            );
            pending.applied(0);
            assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap().is_ok());
        });
        assert!(pending.wait_for_room().is_ok(), "room again");
    }

    #[test]
    fn a_failed_log_refuses_appends_even_with_room() {
        let pending = Pending::default();
        assert_eq!(pending.failed(), None);
        assert!(pending.wait_for_room().is_ok());
        let broken = LogError::Storage("disk gone".into());
        pending.fail(broken.clone());
        pending.fail(LogError::Storage("a later one".into()));
        assert_eq!(
            pending.failed(),
            Some(broken.clone()),
            "the first failure stands"
        );
        assert_eq!(pending.wait_for_room(), Err(broken));
    }
}
