//! API logs: every authenticated request under `/api/v1` (admin excluded) is
//! recorded with its bodies (secrets redacted, 64 KiB each at most).
//!
//! Recording is off the request path: the middleware hands the record to a
//! bounded channel (waiting, never dropping, when it is full) and a writer
//! thread stores records in batches, a transaction each, in an SQLite
//! database of their own (`<data dir>/api-logs.sqlite`, see [`sqlite`]). A
//! record can be lost only if the process dies between answering and that
//! batch's commit, or the machine before the commit reaches the disk.
//!
//! Versions before kept them in a sled database (`<data dir>/api-logs`),
//! which cost ~100 µs of CPU per request and contended with the event log
//! for sled's process-wide batch lock; [`legacy`] moves such a store over.

mod legacy;
mod sqlite;
mod writer;

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;
use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ledger_core::codec;
use ledger_core::ids::{ApiKeyId, OrganizationId};
use ledger_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub const MAX_BODY_RECORDED: usize = 64 * 1024;
const CHANNEL: usize = 65_536;
const MAX_BATCH: usize = 4096;
/// How much of a body is redacted before the record is cut to
/// [`MAX_BODY_RECORDED`]: twice that, so a secret cut in half at the end of
/// the prefix lies past the part that is kept.
const REDACT_PREFIX: usize = 2 * MAX_BODY_RECORDED;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiLogRecord {
    pub id: Uuid,
    pub at: Timestamp,
    pub organization_id: OrganizationId,
    pub api_key_id: ApiKeyId,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub duration_micros: u64,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

enum Message {
    Record(Box<ApiLogRecord>),
    /// Drop the records older than this (retention).
    Prune(Timestamp),
    /// Answered once everything sent before it is stored.
    Sync(oneshot::Sender<()>),
    /// As `Sync`, and the database file then holds it all, fsynced.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct ApiLogs {
    tx: mpsc::Sender<Message>,
    readers: Arc<sqlite::Readers>,
    /// Clock time (µs) of the last prune request.
    last_prune: Arc<AtomicI64>,
}

/// Retention is applied at most this often (clock time), as records arrive.
const PRUNE_EVERY_MICROS: i64 = 60_000_000;

fn record_key(org: OrganizationId, at: Timestamp, id: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(41);
    k.push(b'r');
    k.extend_from_slice(org.as_uuid().as_bytes());
    k.extend_from_slice(&at.as_micros().to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn org_prefix(org: OrganizationId) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(org.as_uuid().as_bytes());
    k
}

impl ApiLogs {
    /// Opens the store in `data_dir` (moving a sled store of an earlier
    /// version into it first) and starts its writer.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(sqlite::FILE);
        let mut conn =
            sqlite::open_writer(&path).with_context(|| format!("opening {}", path.display()))?;
        let sled_dir = data_dir.join(legacy::DIR);
        if sled_dir.exists() {
            legacy::import(&sled_dir, &mut conn)
                .with_context(|| format!("moving {} into SQLite", sled_dir.display()))?;
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        writer::spawn(conn, rx).context("starting the API log writer")?;
        Ok(Self {
            tx,
            readers: Arc::new(sqlite::Readers::new(path)),
            last_prune: Arc::new(AtomicI64::new(i64::MIN)),
        })
    }

    /// Has the writer drop records older than `retention` before `now`, at
    /// most once a minute; in order with the records, so a later `sync` sees it.
    pub async fn prune_if_due(&self, now: Timestamp, retention: std::time::Duration) {
        let last = self.last_prune.load(Ordering::SeqCst);
        if now.as_micros().saturating_sub(last).saturating_abs() < PRUNE_EVERY_MICROS {
            return;
        }
        if self
            .last_prune
            .compare_exchange(last, now.as_micros(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let before = Timestamp::from_micros(now.as_micros().saturating_sub(retention));
        let _ = self.tx.send(Message::Prune(before)).await;
    }

    pub async fn record(&self, record: ApiLogRecord) {
        // Waiting on a full channel slows requests instead of losing records.
        let _ = self.tx.send(Message::Record(Box::new(record))).await;
    }

    /// Waits until every record sent before this call is stored.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Sync(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stores and flushes to disk every record sent before this call (at a
    /// clean stop).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).await.is_err() || rx.await.is_err() {
            tracing::error!("flushing API log records failed: the writer is gone");
        }
    }

    pub fn get(&self, id: Uuid) -> Result<Option<ApiLogRecord>, ApiError> {
        self.readers
            .with(|conn| sqlite::value_by_id(conn, id.as_bytes()))?
            .map(|v| load(&v))
            .transpose()
    }

    /// Records of `org` after `after` (a record key), oldest first, at most `n`.
    pub fn scan(
        &self,
        org: OrganizationId,
        after: Option<Vec<u8>>,
        n: usize,
        keep: &dyn Fn(&ApiLogRecord) -> bool,
    ) -> Result<(Vec<ApiLogRecord>, Option<Vec<u8>>), ApiError> {
        let prefix = org_prefix(org);
        let mut upper = prefix.clone();
        upper.push(0xff);
        // Every record key of the org is longer than its prefix, so "after
        // the prefix" starts at its first record.
        let after = after.unwrap_or_else(|| prefix.clone());
        let mut out = Vec::new();
        let mut last = None;
        let mut more = false;
        self.readers.with(|conn| {
            sqlite::each_between(conn, &after, &upper, |k, v| {
                let rec = load(v)?;
                if keep(&rec) {
                    if out.len() == n {
                        more = true;
                        return Ok(false);
                    }
                    out.push(rec);
                    last = Some(k.to_vec());
                }
                Ok(true)
            })
        })?;
        Ok((out, if more { last } else { None }))
    }

    /// Drops records older than `before` now, on a connection of its own
    /// (the writer's prunes go through [`ApiLogs::prune_if_due`]).
    pub fn prune(&self, before: Timestamp) -> Result<usize, ApiError> {
        let internal = |e: rusqlite::Error| ApiError::internal("api log", e);
        let conn = rusqlite::Connection::open(self.readers.path()).map_err(internal)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(internal)?;
        sqlite::prune(&conn, before.as_micros()).map_err(internal)
    }
}

/// zstd's frame magic number, as its first four bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Encodings shorter than this are stored plain: zstd builds its tables
/// for every frame, which made it the writer's top cost for the many small
/// records, and saves little on them.
const COMPRESS_FROM: usize = 1024;

/// A record as stored: its postcard encoding, zstd-compressed from
/// [`COMPRESS_FROM`] bytes. A page of 50 invoices is about 50 KB of JSON
/// and compresses several times over; stored plain, the API log of a 60 s
/// read load grew by gigabytes.
fn store(
    compressor: &mut zstd::bulk::Compressor,
    record: &ApiLogRecord,
) -> anyhow::Result<Vec<u8>> {
    let plain = codec::encode(record)?;
    if plain.len() < COMPRESS_FROM {
        return Ok(plain);
    }
    Ok(compressor.compress(&plain)?)
}

/// Reads a stored record. Small records (and all written before
/// compression) are plain codec output, whose first byte is its schema
/// version (1), never the first byte of zstd's magic.
fn load(bytes: &[u8]) -> Result<ApiLogRecord, ApiError> {
    let plain = if bytes.starts_with(&ZSTD_MAGIC) {
        std::borrow::Cow::Owned(
            zstd::stream::decode_all(bytes).map_err(|e| ApiError::internal("api log", e))?,
        )
    } else {
        std::borrow::Cow::Borrowed(bytes)
    };
    codec::decode(&plain).map_err(|e| ApiError::internal("api log", e))
}

/// Replaces secrets in a JSON body, then cuts it to the recorded size.
pub fn redact(raw: &[u8]) -> String {
    // Most bodies name no secret: then the JSON walk below would change
    // nothing, and parsing and re-serializing a page of 50 invoices was a
    // quarter of the server's CPU under a read load. Such a body is kept as
    // sent, token-shaped text still masked.
    if !names_a_secret(raw) {
        let text = match std::str::from_utf8(raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(raw),
        };
        return truncate(mask_tokens(&text), MAX_BODY_RECORDED);
    }
    let text = match serde_json::from_slice::<Value>(raw) {
        Ok(mut v) => {
            redact_value(&mut v);
            v.to_string()
        }
        // Not JSON (or broken JSON): still mask what follows a secret-named key.
        Err(_) => mask_secret_fields(&String::from_utf8_lossy(raw)),
    };
    let text = mask_tokens(&text);
    truncate(text, MAX_BODY_RECORDED)
}

/// What a key's name contains when its value is masked (any case).
const SECRET_WORDS: [&str; 4] = ["secret", "password", "token", "passphrase"];

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|s| k.contains(s))
}

/// Whether any secret word appears anywhere in `raw`, in any case: if none
/// does, no key can be secret-named.
fn names_a_secret(raw: &[u8]) -> bool {
    let lower = raw.to_ascii_lowercase();
    SECRET_WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if is_secret_key(k) && !x.is_null() {
                    *x = Value::String("[REDACTED]".into());
                } else {
                    redact_value(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// Masks the value after any secret-named key (`"password": "…"`,
/// `token=…`) in text that is not valid JSON: broken JSON bodies, form-like
/// bodies and query strings.
pub fn mask_secret_fields(text: &str) -> String {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let skip_space = |mut j: usize| {
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        // Keys are words (quoted or not); anything else is copied as is.
        if !(is_word(bytes[i]) && (i == 0 || !is_word(bytes[i - 1]))) {
            let ch_len = text[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            out.push_str(&text[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && is_word(bytes[j]) {
            j += 1;
        }
        let key = &text[i..j];
        out.push_str(key);
        i = j;
        if !is_secret_key(key) {
            continue;
        }
        // `key` `"`? spaces (`:` | `=`) spaces, then the value.
        if j < bytes.len() && bytes[j] == b'"' {
            j += 1;
        }
        j = skip_space(j);
        if j >= bytes.len() || !matches!(bytes[j], b':' | b'=') {
            continue;
        }
        j = skip_space(j + 1);
        out.push_str(&text[i..j]);
        if j < bytes.len() && bytes[j] == b'"' {
            let mut k = j + 1;
            while k < bytes.len() && bytes[k] != b'"' {
                k += if bytes[k] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"[REDACTED]");
            if k < bytes.len() {
                out.push('"');
            }
            i = (k + 1).min(bytes.len());
        } else {
            let mut k = j;
            while k < bytes.len()
                && !matches!(bytes[k], b',' | b'&' | b';' | b'}' | b']')
                && !bytes[k].is_ascii_whitespace()
            {
                k += 1;
            }
            if k > j {
                out.push_str("[REDACTED]");
            }
            i = k;
        }
    }
    out
}

/// Masks anything shaped like one of our secrets (`whsec_…`, `es_…`) wherever it
/// appears, for bodies that are not JSON or hide secrets in other fields.
fn mask_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let token_byte =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'=');
    // Where a prefix occurs, found with a vectorized search: most bodies
    // have none, and a byte-by-byte scan of a 64 KiB page showed in profiles.
    let mut starts: Vec<(usize, usize)> = ["whsec_", "es_"]
        .into_iter()
        .flat_map(|p| memchr::memmem::find_iter(bytes, p.as_bytes()).map(move |i| (i, p.len())))
        .collect();
    starts.sort_unstable();
    let mut out = String::with_capacity(text.len());
    // `text[..copied]` is in `out`; the rest is copied in runs.
    let mut copied = 0;
    for (i, len) in starts {
        // Both prefixes are ASCII, so `i` is a char boundary.
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if i < copied || !boundary {
            continue;
        }
        let mut j = i + len;
        while j < bytes.len() && token_byte(bytes[j]) {
            j += 1;
        }
        if j - i - len >= 16 {
            out.push_str(&text[copied..i]);
            out.push_str("[REDACTED]");
            copied = j;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if !path.starts_with("/api/v1/") || path.starts_with("/api/v1/admin") {
        return next.run(request).await;
    }
    let Some((organization_id, api_key_id)) = request
        .extensions()
        .get::<auth::Authentication>()
        .and_then(auth::Authentication::identity)
    else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let at = state.clock.now();
    let method = request.method().to_string();
    let query = request
        .uri()
        .query()
        .map(|q| mask_tokens(&mask_secret_fields(q)));
    let request_id = request
        .headers()
        .get(crate::app::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = crate::listener::client_ip(request.extensions()).map(|ip| ip.to_string());
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut partial = Partial {
        organization_id,
        api_key_id,
        at,
        method,
        path,
        query,
        request_id,
        ip,
        request_body: None,
        started,
    };
    // Uploads are files, streamed under their own limit: never buffered here.
    let upload = request.method() == axum::http::Method::POST && partial.path == "/api/v1/storage";
    let request = if upload {
        partial.request_body = Some("[upload body not recorded]".to_owned());
        request
    } else if crate::body::is_json(content_type.as_deref()) || content_type.is_none() {
        let (parts, body) = request.into_parts();
        match crate::body::read_whole(body, &state).await {
            Ok(bytes) => {
                partial.request_body = (!bytes.is_empty()).then(|| redact(&bytes));
                Request::from_parts(parts, Body::from(bytes))
            }
            Err(e) => return finish(&state, e.into_response(), partial).await,
        }
    } else {
        partial.request_body = Some(format!(
            "[{} body not recorded]",
            content_type.unwrap_or_default()
        ));
        request
    };
    let response = next.run(request).await;
    finish(&state, response, partial).await
}

struct Partial {
    organization_id: OrganizationId,
    api_key_id: ApiKeyId,
    at: Timestamp,
    method: String,
    path: String,
    query: Option<String>,
    request_id: Option<String>,
    ip: Option<String>,
    request_body: Option<String>,
    started: Instant,
}

async fn finish(state: &AppState, response: Response, p: Partial) -> Response {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (response, response_body) = if crate::body::is_json(content_type.as_deref()) {
        let (parts, body) = response.into_parts();
        // JSON answers are built whole in memory before they get here, so
        // collecting one costs no copy. Whatever its size it goes out as it
        // is: only the record is cut (an answer over a cap here once turned
        // a committed bulk command into a 500, and its every retry too).
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                let recorded = Some(redact(&bytes[..bytes.len().min(REDACT_PREFIX)]));
                (Response::from_parts(parts, Body::from(bytes)), recorded)
            }
            // A body that failed while streaming: the client would have got
            // a broken answer anyway.
            Err(e) => (
                ApiError::internal("reading a response body", e).into_response(),
                None,
            ),
        }
    } else {
        (
            response,
            content_type.map(|ct| format!("[{ct} body not recorded]")),
        )
    };
    if state.disk.is_low() {
        // Observability gives way to the ledger when the disk is nearly
        // full (see `disk.rs`); the server's log says so.
        return response;
    }
    state
        .api_logs
        .record(ApiLogRecord {
            id: Uuid::now_v7(),
            at: p.at,
            organization_id: p.organization_id,
            api_key_id: p.api_key_id,
            method: p.method,
            path: p.path,
            query: p.query,
            status,
            duration_micros: p.started.elapsed().as_micros() as u64,
            request_id: p.request_id,
            ip: p.ip,
            request_body: p.request_body,
            response_body,
        })
        .await;
    state
        .api_logs
        .prune_if_due(p.at, state.config.api_log_retention)
        .await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_and_secret_shaped_values_are_redacted() {
        let body = br#"{"name":"k","secret":"es_abcdefghijklmnopqrstuvwxyz012345","nested":{"apiToken":"t","x":"whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVg"},"memo":"pay es_abcdefghijklmnopqrstuv now"}"#;
        let out = redact(body);
        assert!(!out.contains("es_abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!out.contains("whsec_QUJD"));
        assert!(!out.contains("\"t\""));
        assert!(!out.contains("es_abcdefghijklmnopqrstuv"));
        assert!(out.contains("\"name\":\"k\""));
    }

    #[test]
    fn secret_fields_in_broken_json_forms_and_queries_are_masked() {
        let out = redact(br#"{"name":"x","password":"hunter2","nested":{"apiToken": "t0k\"en"},"#);
        assert!(!out.contains("hunter2") && !out.contains("t0k"), "{out}");
        assert!(out.contains(r#""name":"x""#), "{out}");
        assert_eq!(
            mask_secret_fields(r#"{"password":"a","token":"b","x":"c""#),
            r#"{"password":"[REDACTED]","token":"[REDACTED]","x":"c""#
        );
        let out = redact(b"user=bob&password=hunter2&client_secret=abc;x=1");
        assert_eq!(
            out,
            "user=bob&password=[REDACTED]&client_secret=[REDACTED];x=1"
        );
        assert_eq!(
            mask_secret_fields("limit=1&access_token=xyz"),
            "limit=1&access_token=[REDACTED]"
        );
        assert_eq!(
            mask_secret_fields("status=DRAFT&limit=5"),
            "status=DRAFT&limit=5"
        );
        assert_eq!(mask_secret_fields(r#"{"token":"#), r#"{"token":"#);
        assert_eq!(
            mask_secret_fields("é secret: hunter2 é"),
            "é secret: [REDACTED] é"
        );
        // Misaligned quotes do not hide a secret.
        let out = mask_secret_fields(r#"{"name":"x, "password":"hunter2"}"#);
        assert!(!out.contains("hunter2"), "{out}");
        let out = mask_secret_fields(r#"{"client secret" : "s3cr3t"}"#);
        assert!(!out.contains("s3cr3t"), "{out}");
    }

    #[test]
    fn bodies_are_cut_at_64_kib_on_a_char_boundary() {
        let long = "é".repeat(40_000);
        let out = redact(long.as_bytes());
        assert!(out.len() <= MAX_BODY_RECORDED);
        assert!(out.chars().all(|c| c == 'é'));
    }

    /// The run-copying `mask_tokens` against the char-by-char one it
    /// replaced, which is kept here as the reference.
    fn mask_tokens_by_char(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let boundary =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            let prefix = ["whsec_", "es_"]
                .into_iter()
                .find(|p| boundary && text[i..].starts_with(p));
            if let Some(p) = prefix {
                let mut j = i + p.len();
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || matches!(bytes[j], b'-' | b'_' | b'+' | b'/' | b'='))
                {
                    j += 1;
                }
                if j - i - p.len() >= 16 {
                    out.push_str("[REDACTED]");
                    i = j;
                    continue;
                }
            }
            let ch_len = text[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            out.push_str(&text[i..i + ch_len]);
            i += ch_len;
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn mask_tokens_masks_what_the_char_by_char_version_did(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("(es_|whsec_|xes_|_es_)[A-Za-z0-9+/=_-]{0,24}").expect("regex"),
                    proptest::string::string_regex("[ a-z0-9_\"é€😀:,{}]{0,6}").expect("regex"),
                ],
                0..12,
            )
        ) {
            let text: String = parts.concat();
            proptest::prop_assert_eq!(mask_tokens(&text), mask_tokens_by_char(&text));
        }
    }

    #[test]
    fn a_body_naming_no_secret_is_kept_as_sent_with_tokens_masked() {
        let body = "{ \"memo\": \"pay es_abcdefghijklmnopqrstuv\",\n  \"b\": 1, \"a\": \"é\" }";
        assert_eq!(
            redact(body.as_bytes()),
            "{ \"memo\": \"pay [REDACTED]\",\n  \"b\": 1, \"a\": \"é\" }"
        );
        // A secret word anywhere, in any case, sends it through the JSON walk.
        let out = redact(br#"{ "b": 1, "apiTOKEN": "t" }"#);
        assert_eq!(out, r#"{"apiTOKEN":"[REDACTED]","b":1}"#);
        let out = redact(br#"{ "b": 1, "memo": "PassPhrase" }"#);
        assert_eq!(out, r#"{"b":1,"memo":"PassPhrase"}"#);
    }

    fn record(body: &str) -> ApiLogRecord {
        ApiLogRecord {
            id: Uuid::now_v7(),
            at: Timestamp::from_micros(1_700_000_000_000_000),
            organization_id: OrganizationId::new(),
            api_key_id: ApiKeyId::new(),
            method: "GET".into(),
            path: "/api/v1/invoices".into(),
            query: Some("limit=50".into()),
            status: 200,
            duration_micros: 1234,
            request_id: Some("r".into()),
            ip: Some("127.0.0.1".into()),
            request_body: None,
            response_body: Some(body.into()),
        }
    }

    #[test]
    fn records_are_stored_compressed_and_records_stored_plain_still_read() {
        let page = format!("{{\"data\":[{}]}}", vec![r#"{"id":"018cc258-5ca0-7e23-b21f-84fee4a2a2ec","status":"SETTLED","total":"100.00"}"#; 500].join(","));
        let r = record(&page);
        let mut compressor = zstd::bulk::Compressor::new(1).expect("a context");
        let stored = store(&mut compressor, &r).expect("stored");
        assert!(stored.starts_with(&ZSTD_MAGIC));
        // The context is reused: the next record is a frame of its own.
        let other = record(&page.replace("SETTLED", "PENDING"));
        let again = store(&mut compressor, &other).expect("stored");
        assert!(again.starts_with(&ZSTD_MAGIC));
        assert_eq!(load(&again).expect("loaded"), other);
        assert!(
            stored.len() * 10 < page.len(),
            "{} bytes for {}",
            stored.len(),
            page.len()
        );
        let back = load(&stored).expect("loaded");
        assert_eq!(back.response_body, r.response_body);
        assert_eq!(back.id, r.id);
        // As written before compression.
        let plain = codec::encode(&r).expect("encoded");
        assert_eq!(plain[0], codec::SCHEMA_VERSION);
        assert_ne!(plain[0], ZSTD_MAGIC[0]);
        assert_eq!(load(&plain).expect("plain").response_body, r.response_body);
        assert!(
            load(&ZSTD_MAGIC).is_err(),
            "a damaged record is an error, not a panic"
        );
    }

    #[test]
    fn records_under_a_kibibyte_are_stored_plain() {
        let mut compressor = zstd::bulk::Compressor::new(1).expect("a context");
        let small = record(r#"{"data":[],"nextCursor":null}"#);
        let stored = store(&mut compressor, &small).expect("stored");
        assert_eq!(stored, codec::encode(&small).expect("encoded"));
        assert!(stored.len() < COMPRESS_FROM);
        assert_eq!(load(&stored).expect("loaded"), small);
        // Just past the bound, it is compressed.
        let mut edge = small.clone();
        let short =
            COMPRESS_FROM - stored.len() + edge.response_body.as_ref().map_or(0, |b| b.len());
        edge.response_body = Some("x".repeat(short));
        let edge_plain = codec::encode(&edge).expect("encoded");
        assert!(edge_plain.len() >= COMPRESS_FROM, "{}", edge_plain.len());
        let stored = store(&mut compressor, &edge).expect("stored");
        assert!(stored.starts_with(&ZSTD_MAGIC));
        assert_eq!(load(&stored).expect("loaded"), edge);
    }
}
