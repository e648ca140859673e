//! Streamed exports (CSV or JSON lines).
//!
//! Rows are read from the SQL read models a chunk at a time, each chunk one
//! keyset query over `seq` (after the last row sent, up to where the log
//! stood when the export began), rendered and sent as it is made. Memory
//! stays bounded by the chunk, not by the export.
//!
//! An export reads through a connection of its own with a small page cache:
//! it reads each page of its range once, so the pool's 16 MiB caches would
//! only hold megabytes for as long as it streams, and lose their hot pages.

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use projections::sql::queries::payments::ExportChunk;
use projections::sql::SqlError;
use serde_json::Value;

const CHUNK_ROWS: usize = 1000;

/// The export connection's page cache, in KiB.
const CACHE_KIB: i64 = 1024;

pub use crate::query::Format;

/// Reads one chunk of an export: its rows rendered as the API shows them,
/// each with the seq the next chunk resumes after.
pub type ReadChunk =
    dyn Fn(&rusqlite::Connection, ExportChunk) -> Result<Vec<(u64, Value)>, SqlError> + Send + Sync;

/// How one kind of record is exported.
pub struct Exporter {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub read: Box<ReadChunk>,
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_chunk(rows: &[(u64, Value)], columns: &[&str], format: Format, header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    match format {
        Format::Jsonl => {
            for (_, v) in rows {
                if serde_json::to_writer(&mut out, v).is_ok() {
                    out.push(b'\n');
                }
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            if header {
                let _ = w.write_record(columns);
            }
            for (_, v) in rows {
                let _ = w.write_record(columns.iter().map(|c| csv_cell(&v[*c])));
            }
            let _ = w.flush();
            drop(w);
        }
    }
    out
}

fn export_connection(state: &AppState) -> ApiResult<rusqlite::Connection> {
    let unavailable = |e: SqlError| ApiError::internal("SQL read models", e);
    let path = state.projections.sql().path();
    let conn = projections::sql::open_reader(path).map_err(unavailable)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(|e| unavailable(e.into()))?;
    Ok(conn)
}

/// Where an export stands between chunks.
struct Progress {
    conn: rusqlite::Connection,
    exporter: Exporter,
    format: Format,
    /// The log position when the export began: rows made later are left out.
    through: u64,
    /// The seq of the last row sent.
    after: u64,
    /// False once a chunk came back short (or failed).
    more: bool,
}

impl Progress {
    /// Reads and renders the next chunk; `None` when no rows are left (the
    /// first chunk is rendered even then, for the CSV header).
    fn next_chunk(&mut self, header: bool) -> ApiResult<Option<Vec<u8>>> {
        let chunk = ExportChunk {
            after: self.after,
            through: self.through,
            limit: CHUNK_ROWS,
        };
        // One statement: one consistent snapshot of the chunk.
        let rows = (self.exporter.read)(&self.conn, chunk)
            .map_err(|e| ApiError::internal("SQL read models", e))?;
        self.more = rows.len() >= CHUNK_ROWS;
        match rows.last() {
            Some((last, _)) => self.after = *last,
            None if !header => return Ok(None),
            None => {}
        }
        let columns = self.exporter.columns;
        Ok(Some(render_chunk(&rows, columns, self.format, header)))
    }
}

/// The export as a streamed response. The first chunk is read before the
/// response starts, so a failing read is a 500 rather than a cut-off body.
pub fn stream(state: &AppState, exporter: Exporter, format: Format) -> ApiResult<Response> {
    let exporter_name = exporter.name;
    let conn = export_connection(state)?;
    let (through, _) =
        projections::sql::position(&conn).map_err(|e| ApiError::internal("SQL read models", e))?;
    let mut progress = Progress {
        conn,
        exporter,
        format,
        through,
        after: 0,
        more: true,
    };
    let first = progress.next_chunk(true)?.unwrap_or_default();
    let chunks = futures::stream::unfold(
        (Some(first), Some(progress)),
        |(pending, progress)| async move {
            if let Some(bytes) = pending {
                return Some((Ok(bytes), (None, progress)));
            }
            let mut progress = progress.filter(|p| p.more)?;
            // The query blocks on SQLite: off the async threads.
            let read = tokio::task::spawn_blocking(move || {
                let chunk = progress.next_chunk(false);
                (chunk, progress)
            })
            .await;
            let failed = match read {
                Ok((Ok(Some(bytes)), progress)) => {
                    return Some((Ok(bytes), (None, Some(progress))))
                }
                Ok((Ok(None), _)) => return None,
                Ok((Err(e), _)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // An error ends the body abruptly, so the client cannot take a
            // partial export for a whole one.
            tracing::error!(error = %failed, "export chunk failed");
            let e = std::io::Error::other("read model unavailable");
            Some((Err(e), (None, None)))
        },
    );
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", exporter_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
