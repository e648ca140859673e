//! The API log's writer: a thread of its own that owns the database's write
//! connection and stores what the request path sends it, a batch per
//! transaction. A thread rather than a task, so no SQLite call ever holds a
//! tokio worker.

use super::{record_key, sqlite, ApiLogRecord, Message, MAX_BATCH};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Starts the writer; it stops when every sender is gone.
pub fn spawn(conn: Connection, rx: mpsc::Receiver<Message>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("api-log-writer".into())
        .spawn(move || write_loop(conn, rx))
        .map(drop)
}

/// A record as stored.
struct Row {
    key: Vec<u8>,
    id: [u8; 16],
    at_micros: i64,
    value: Vec<u8>,
}

/// What one batch of messages asks for, in the order it is done.
#[derive(Default)]
struct Batch {
    rows: Vec<Row>,
    prune: Option<i64>,
    checkpoint: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Message>) {
    // One compression context for every record: making one per record (as
    // `zstd::bulk::compress` does) was the writer's largest single cost.
    let mut compressor = match zstd::bulk::Compressor::new(1) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no zstd context; API log records are not stored");
            return;
        }
    };
    let mut messages = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        messages.push(first);
        while messages.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        for message in messages.drain(..) {
            batch.add(message, &mut compressor);
        }
        batch.apply(&mut conn);
    }
}

impl Batch {
    fn add(&mut self, message: Message, compressor: &mut zstd::bulk::Compressor) {
        match message {
            Message::Record(r) => self.add_record(&r, compressor),
            Message::Prune(before) => {
                self.prune = self.prune.max(Some(before.as_micros()));
            }
            Message::Sync(w) => self.waiters.push(w),
            Message::Flush(w) => {
                self.checkpoint = true;
                self.waiters.push(w);
            }
        }
    }

    fn add_record(&mut self, r: &ApiLogRecord, compressor: &mut zstd::bulk::Compressor) {
        match super::store(compressor, r) {
            Ok(value) => self.rows.push(Row {
                key: record_key(r.organization_id, r.at, r.id),
                id: *r.id.as_bytes(),
                at_micros: r.at.as_micros(),
                value,
            }),
            Err(e) => tracing::error!(error = %e, id = %r.id, "encoding an API log record"),
        }
    }

    /// Stores the records, then prunes, then checkpoints, then answers the
    /// waiters (whatever failed: they wait for the attempt, not success).
    fn apply(self, conn: &mut Connection) {
        let rows = self.rows.iter().map(|r| {
            (
                r.key.as_slice(),
                r.id.as_slice(),
                r.at_micros,
                r.value.as_slice(),
            )
        });
        if !self.rows.is_empty() {
            if let Err(e) = sqlite::insert(conn, rows) {
                tracing::error!(error = %e, records = self.rows.len(), "storing API log records failed");
            }
        }
        if let Some(before) = self.prune {
            if let Err(e) = sqlite::prune(conn, before) {
                tracing::error!(error = %e, "pruning API log records");
            }
        }
        if self.checkpoint {
            match sqlite::checkpoint(conn) {
                Ok(true) => {}
                Ok(false) => tracing::warn!("API log checkpoint left part of the WAL (busy)"),
                Err(e) => tracing::error!(error = %e, "flushing API log records failed"),
            }
        }
        for w in self.waiters {
            let _ = w.send(());
        }
    }
}
