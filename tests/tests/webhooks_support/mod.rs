//! A real webhook receiver on 127.0.0.1 (axum), and an independent
//! implementation of the Standard Webhooks verification scheme.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the receiver answers on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 200.
    Ok,
    /// 500 for the first n requests, then 200.
    FailFirst(u32),
    /// 503, always.
    Fail,
    /// Never answers (holds the request an hour).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The sender's end of the connection: requests on one kept-alive
    /// connection share it.
    pub peer: std::net::SocketAddr,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub x_signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub at: Instant,
    pub wall: chrono::DateTime<chrono::Utc>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not JSON ({e})"))
    }
    /// From the event's `createdAt` to arrival here.
    pub fn latency(&self) -> Duration {
        let created = self.json()["createdAt"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let created = chrono::DateTime::parse_from_rfc3339(&created).expect("createdAt");
        (self.wall - created.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    behaviors: HashMap<String, Behavior>,
    calls: HashMap<String, u32>,
    /// Requests being answered now, and the most ever at once, per path.
    open: HashMap<String, usize>,
    most_open: HashMap<String, usize>,
}

/// Counts a request as open until its handler finishes or is dropped (the
/// client gave up and closed the connection).
struct Open {
    inner: Arc<Mutex<Inner>>,
    path: String,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(n) = g.open.get_mut(&self.path) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("receiver addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base, inner }
    }

    /// The URL of a path on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn set(&self, path: &str, behavior: Behavior) {
        self.inner
            .lock()
            .unwrap()
            .behaviors
            .insert(path.to_owned(), behavior);
    }

    /// Everything received on `path`, in arrival order.
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The most requests to `path` that were open at the same time.
    pub fn most_concurrent(&self, path: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .most_open
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn count(&self, path: &str) -> usize {
        self.on(path).len()
    }

    /// Waits (polling) until `path` has received at least `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.on(path);
            if got.len() >= n {
                return got;
            }
            if start.elapsed() > within {
                let types: Vec<String> = got.iter().map(Received::event_type).collect();
                panic!(
                    "{path}: {} of {n} requests after {within:?}: {types:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    let (id, timestamp, signature, x_signature, content_type) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            header("x-signature"),
            header("content-type"),
        )
    };
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    let (behavior, n) = {
        let mut g = inner.lock().unwrap();
        g.received.push(Received {
            path: path.clone(),
            peer,
            id,
            timestamp,
            signature,
            x_signature,
            content_type,
            body,
            at: Instant::now(),
            wall: chrono::Utc::now(),
        });
        let n = {
            let c = g.calls.entry(path.clone()).or_default();
            *c += 1;
            *c
        };
        let open = {
            let o = g.open.entry(path.clone()).or_default();
            *o += 1;
            *o
        };
        let most = g.most_open.entry(path.clone()).or_default();
        *most = (*most).max(open);
        (g.behaviors.get(&path).copied().unwrap_or(Behavior::Ok), n)
    };
    let _open = Open {
        inner: inner.clone(),
        path: path.clone(),
    };
    match behavior {
        Behavior::Ok => (StatusCode::OK, "ok").into_response(),
        Behavior::FailFirst(k) if n <= k => {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        }
        Behavior::FailFirst(_) => (StatusCode::OK, "ok at last").into_response(),
        Behavior::Fail => (
            StatusCode::SERVICE_UNAVAILABLE,
            Body::from("down for maintenance"),
        )
            .into_response(),
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

// ---------------------------------------------------------------------------
// Standard Webhooks verification, written from the spec
// (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md),
// independent of the server's code.
// ---------------------------------------------------------------------------

/// The expected `v1` signature (base64 only) for a message under a `whsec_` secret.
pub fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether any `v1,` signature in the header is valid for this secret.
pub fn verifies(secret: &str, r: &Received) -> bool {
    let expected = expected_signature(secret, &r.id, &r.timestamp, &r.body);
    r.signature
        .split(' ')
        .filter_map(|part| part.split_once(','))
        .any(|(version, sig)| {
            version == "v1" && constant_time_eq(sig.as_bytes(), expected.as_bytes())
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks everything a receiver checks: headers present, `X-Signature` equal
/// to `webhook-signature`, JSON content type, payload id = `webhook-id`, and a
/// valid signature under `secret`.
#[track_caller]
pub fn assert_signed(secret: &str, r: &Received) {
    assert!(r.id.starts_with("evt_"), "webhook-id `{}`", r.id);
    assert!(
        r.timestamp.parse::<i64>().is_ok(),
        "webhook-timestamp `{}`",
        r.timestamp
    );
    assert_eq!(
        r.signature, r.x_signature,
        "X-Signature must equal webhook-signature"
    );
    assert!(
        r.content_type.starts_with("application/json"),
        "content-type `{}`",
        r.content_type
    );
    assert_eq!(r.json()["id"], r.id.as_str(), "payload id = webhook-id");
    assert!(
        verifies(secret, r),
        "signature `{}` does not verify for {}",
        r.signature,
        r.id
    );
}
