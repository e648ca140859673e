//! Streamed exports (CSV or JSON lines).
//!
//! The matching ids are collected first (16 bytes each); rows are then rendered
//! a chunk at a time, each chunk under a short read lock, and sent as they are
//! made. Memory stays bounded by the chunk, not by the export.

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use projections::ReadModel;
use serde_json::Value;

const CHUNK_ROWS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

pub fn format(q: &std::collections::HashMap<String, String>) -> ApiResult<Format> {
    match q.get("format").map(String::as_str) {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") | None => Ok(Format::Jsonl),
        Some(_) => Err(ApiError::Validation("format must be csv or jsonl".into())),
    }
}

/// How one kind of record is exported.
pub struct Exporter<Id> {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub json: fn(&ReadModel, &Id) -> Option<Value>,
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_chunk<Id>(
    model: &ReadModel,
    ids: &[Id],
    exporter: &Exporter<Id>,
    format: Format,
    with_header: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 256);
    match format {
        Format::Jsonl => {
            for id in ids {
                if let Some(v) = (exporter.json)(model, id) {
                    if serde_json::to_writer(&mut out, &v).is_ok() {
                        out.push(b'\n');
                    }
                }
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            if with_header {
                let _ = w.write_record(exporter.columns);
            }
            for id in ids {
                if let Some(v) = (exporter.json)(model, id) {
                    let _ = w.write_record(exporter.columns.iter().map(|c| csv_cell(&v[*c])));
                }
            }
            let _ = w.flush();
            drop(w);
        }
    }
    out
}

pub fn stream<Id: Send + Sync + 'static>(
    state: &AppState,
    ids: Vec<Id>,
    exporter: Exporter<Id>,
    format: Format,
) -> Response {
    let exporter_name = exporter.name;
    struct Cursor<Id> {
        ids: Vec<Id>,
        at: usize,
        done: bool,
        projections: projections::Projections,
        exporter: Exporter<Id>,
    }
    let start = Cursor {
        ids,
        at: 0,
        done: false,
        projections: state.projections.clone(),
        exporter,
    };
    let chunks = futures::stream::unfold(start, move |mut c| async move {
        if c.done {
            return None;
        }
        let end = (c.at + CHUNK_ROWS).min(c.ids.len());
        let chunk = match c.projections.read() {
            Ok(model) => Ok(render_chunk(
                &model,
                &c.ids[c.at..end],
                &c.exporter,
                format,
                c.at == 0,
            )),
            Err(_) => Err(std::io::Error::other("read model unavailable")),
        };
        // The first chunk always goes out (an empty CSV still has its header).
        c.done = end >= c.ids.len() || chunk.is_err();
        c.at = end;
        Some((chunk, c))
    });
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
    response
}
