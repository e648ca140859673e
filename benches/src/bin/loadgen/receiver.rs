//! loadgen's own webhook receiver (the `webhooks` mix): the HTTP server every
//! organization's endpoint points at. It answers 200 at once and only notes
//! when each delivery arrived and what event it carries, so what is measured
//! is the server's delivery, not the receiver's work. It runs on loadgen's
//! runtime, so its CPU is in loadgen's own CPU figure.

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The path the endpoints are registered with.
const PATH: &str = "/webhooks";

/// When an event happened, as a delivery's payload says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTime {
    /// Microseconds since the Unix epoch, on the server's clock.
    pub micros: i64,
    /// Whether the timestamp carried a fraction of a second. Without one the
    /// event may have happened up to a second after `micros`, so a latency
    /// computed from it overstates by up to a second.
    pub subsecond: bool,
}

/// The payload's `createdAt` (`{id, type, createdAt, organizationId, data}`):
/// the time the server recorded the event, RFC 3339 with microseconds. The
/// `webhook-timestamp` header is no substitute: it is when the attempt was
/// sent, in whole seconds.
pub fn event_time(body: &[u8]) -> Option<EventTime> {
    let payload: Value = serde_json::from_slice(body).ok()?;
    let text = payload.get("createdAt")?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(EventTime {
        micros: at.timestamp_micros(),
        // RFC 3339 puts a '.' only before the fraction of a second.
        subsecond: text.contains('.'),
    })
}

/// One delivery, as it reached the receiver.
pub struct Arrival {
    /// None when the body had no readable `createdAt`.
    pub event: Option<EventTime>,
    /// Wall clock, µs since the epoch: what the event's time is compared with.
    pub wall_micros: i64,
    /// Monotonic: what the measured window and the load's end are compared with.
    pub at: Instant,
}

/// Everything received so far.
#[derive(Default)]
pub struct Received {
    /// Each `webhook-id` once: the first arrival of each message.
    pub arrivals: Vec<Arrival>,
    /// Arrivals of a `webhook-id` already seen (a retry of a delivery the
    /// server did not see succeed): not in `arrivals`.
    pub duplicates: u64,
    /// Arrivals without a `webhook-id` header: in `arrivals`, never deduplicated.
    pub without_id: u64,
    seen: HashSet<String>,
}

impl Received {
    fn note(&mut self, id: Option<&str>, arrival: Arrival) {
        match id {
            Some(id) if !self.seen.insert(id.to_string()) => self.duplicates += 1,
            Some(_) => self.arrivals.push(arrival),
            None => {
                self.without_id += 1;
                self.arrivals.push(arrival);
            }
        }
    }
}

type Inbox = Arc<Mutex<Received>>;

fn lock(inbox: &Inbox) -> MutexGuard<'_, Received> {
    // Nothing panics while holding the lock, and counts are worth more than
    // a second panic if something ever did.
    inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // Taken first: parsing the body is the receiver's time, not the server's.
    let at = Instant::now();
    let wall_micros = chrono::Utc::now().timestamp_micros();
    let arrival = Arrival {
        event: event_time(&body),
        wall_micros,
        at,
    };
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    lock(&inbox).note(id, arrival);
    StatusCode::OK
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free loopback port: the server must run on this machine,
    /// which also puts the event's time and the arrival on one clock.
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver to 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("the webhook receiver's address")?;
        let inbox = Inbox::default();
        let app = Router::new()
            .route(PATH, post(receive))
            .with_state(inbox.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("loadgen: the webhook receiver stopped: {e}");
            }
        });
        Ok(Receiver { addr, inbox, task })
    }

    /// What the endpoints are registered with.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Deliveries received so far (each `webhook-id` once).
    pub fn count(&self) -> usize {
        lock(&self.inbox).arrivals.len()
    }

    /// Everything received so far; the receiver keeps counting from zero.
    pub fn take(&self) -> Received {
        std::mem::take(&mut *lock(&self.inbox))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_event_time_from_the_payload() {
        let body = br#"{"createdAt":"2024-05-01T12:00:00.250001Z","data":{},"id":"evt_7_0","organizationId":"x","type":"invoice.created"}"#;
        assert_eq!(
            event_time(body),
            Some(EventTime {
                micros: 1_714_564_800_250_001,
                subsecond: true
            })
        );
        let whole = br#"{"createdAt":"2024-05-01T14:00:00+02:00"}"#;
        assert_eq!(
            event_time(whole),
            Some(EventTime {
                micros: 1_714_564_800_000_000,
                subsecond: false
            })
        );
        assert_eq!(event_time(b"not json"), None);
        assert_eq!(event_time(br#"{"createdAt":"yesterday"}"#), None);
        assert_eq!(event_time(br#"{"id":"evt_1_0"}"#), None);
    }

    fn arrival() -> Arrival {
        Arrival {
            event: None,
            wall_micros: 0,
            at: Instant::now(),
        }
    }

    #[test]
    fn counts_each_webhook_id_once() {
        let mut r = Received::default();
        r.note(Some("evt_1_0"), arrival());
        r.note(Some("evt_1_1"), arrival());
        r.note(Some("evt_1_0"), arrival());
        r.note(None, arrival());
        assert_eq!(r.arrivals.len(), 3);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.without_id, 1);
    }
}
