//! `GET /settings/api-logs[/{id}]` and `/export`.

use super::Route;
use crate::api_log::{org_prefix, ApiLogRecord};
use crate::app::AppState;
use crate::auth::Caller;
use crate::commands::json_value;
use crate::error::{ApiError, ApiResult};
use crate::query::{self, Format, Page, Period, Query};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ledger_core::events::Permission;
use ledger_core::ids::ApiKeyId;
use projections::schema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::LIST_API_LOGS, list),
        Route::new(&operations::EXPORT_API_LOGS, export),
        Route::new(&operations::GET_API_LOG, get_one),
    ]
}

/// One authenticated API request. Bodies have secrets redacted and are cut
/// at 64 KiB. Fields in the byte order of their JSON names.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ApiLog")]
pub struct ApiLogView<'a> {
    #[schemars(with = "schema::ApiKeyId")]
    api_key_id: String,
    #[schemars(with = "schema::Timestamp")]
    at: String,
    #[schemars(range(min = 0))]
    duration_ms: f64,
    #[schemars(with = "schema::Uuid")]
    id: String,
    ip: &'a Option<String>,
    method: &'a str,
    path: &'a str,
    query: &'a Option<String>,
    request_body: &'a Option<String>,
    request_id: &'a Option<String>,
    response_body: &'a Option<String>,
    /// The HTTP status answered.
    status: u16,
}

pub fn add_schemas(c: &mut schema::Components) {
    c.add::<ApiLogView>()
        .add::<projections::views::Page<ApiLogView>>();
}

pub fn view(r: &ApiLogRecord) -> ApiLogView<'_> {
    ApiLogView {
        api_key_id: r.api_key_id.to_string(),
        at: r.at.rfc3339(),
        duration_ms: r.duration_micros as f64 / 1000.0,
        id: r.id.to_string(),
        ip: &r.ip,
        method: &r.method,
        path: &r.path,
        query: &r.query,
        request_body: &r.request_body,
        request_id: &r.request_id,
        response_body: &r.response_body,
        status: r.status,
    }
}

/// The permission reading a record's bodies needs: the one reading its
/// resource directly needs, so the API log is no way around a route's 403
/// (a `settings:read` key once read treasury answers here).
fn body_permission(path: &str) -> Permission {
    let resource = path.strip_prefix("/api/v1/").unwrap_or(path);
    match resource.split('/').next().unwrap_or_default() {
        "invoices" | "connections" => Permission::InvoicesRead,
        "payments" => Permission::PaymentsRead,
        "treasury" => Permission::TreasuryRead,
        "storage" => Permission::StorageRead,
        "settings" => Permission::SettingsRead,
        // Nothing else is logged; were it, only a `*` key would read it.
        _ => Permission::All,
    }
}

/// `r` as `caller` may see it: bodies it could not read directly are
/// replaced by a note saying which permission they need.
fn as_seen_by(caller: &Caller, mut r: ApiLogRecord) -> ApiLogRecord {
    let needed = body_permission(&r.path);
    if !caller.allows(needed) {
        let note = format!("[withheld: needs {}]", needed.name());
        r.request_body = r.request_body.map(|_| note.clone());
        r.response_body = r.response_body.map(|_| note);
    }
    r
}

/// The list's and the export's filters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "query::optional")]
    method: Option<Method>,
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Status>,
    #[serde(default, deserialize_with = "query::optional")]
    path: Option<String>,
    #[serde(default, deserialize_with = "query::optional")]
    api_key_id: Option<ApiKeyId>,
    #[serde(flatten)]
    period: Period,
}

/// Compared upper case, as requests record it.
struct Method(String);

impl std::str::FromStr for Method {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Method(s.to_ascii_uppercase()))
    }
}

struct Status(u16);

impl std::str::FromStr for Status {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(Status)
            .map_err(|_| "status must be an HTTP status code")
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(flatten)]
    filter: Filter,
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Format,
    #[serde(flatten)]
    filter: Filter,
}

impl Filter {
    fn keep(&self, r: &ApiLogRecord) -> bool {
        self.method.as_ref().is_none_or(|m| r.method == m.0)
            && self.status.as_ref().is_none_or(|s| r.status == s.0)
            && self.path.as_deref().is_none_or(|p| r.path.starts_with(p))
            && self.api_key_id.is_none_or(|k| r.api_key_id == k)
            && self.period.from().is_none_or(|f| r.at >= f)
            && self.period.to().is_none_or(|t| r.at < t)
    }
}

fn cursor_key(
    org: ledger_core::ids::OrganizationId,
    cursor: Option<&[u8]>,
) -> ApiResult<Option<Vec<u8>>> {
    match cursor {
        None => Ok(None),
        Some(key) => {
            let key = key.to_vec();
            // A cursor only ever walks its own organization's records.
            if !key.starts_with(&org_prefix(org)) {
                return Err(ApiError::Validation("cursor is not valid".into()));
            }
            Ok(Some(key))
        }
    }
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let filter = q.filter;
    let limit = q.page.limit();
    let after = cursor_key(caller.organization_id, q.page.cursor_bytes())?;
    state.api_logs.sync().await;
    let logs = state.api_logs.clone();
    let org = caller.organization_id;
    let (records, next) =
        tokio::task::spawn_blocking(move || logs.scan(org, after, limit, &|r| filter.keep(r)))
            .await
            .map_err(|e| ApiError::internal("api log task", e))??;
    let seen: Vec<ApiLogRecord> = records
        .into_iter()
        .map(|r| as_seen_by(&caller, r))
        .collect();
    Ok(json_value(&projections::views::Page {
        data: seen.iter().map(view).collect(),
        next_cursor: next.map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)),
    }))
}

async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("API log"))?;
    state.api_logs.sync().await;
    let r = state
        .api_logs
        .get(id)?
        .filter(|r| r.organization_id == caller.organization_id)
        .ok_or(ApiError::NotFound("API log"))?;
    Ok(json_value(&view(&as_seen_by(&caller, r))))
}

const COLUMNS: &[&str] = &[
    "id",
    "at",
    "method",
    "path",
    "query",
    "status",
    "durationMs",
    "apiKeyId",
    "requestId",
    "ip",
    "requestBody",
    "responseBody",
];
const CHUNK: usize = 500;

async fn export(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = q.format;
    let filter = std::sync::Arc::new(q.filter);
    state.api_logs.sync().await;
    let logs = state.api_logs.clone();
    let org = caller.organization_id;
    let caller = std::sync::Arc::new(caller);
    let chunks = futures::stream::unfold(
        (None::<Vec<u8>>, true, false),
        move |(after, first, done)| {
            let logs = logs.clone();
            let filter = filter.clone();
            let caller = caller.clone();
            async move {
                if done {
                    return None;
                }
                let scanned = tokio::task::spawn_blocking(move || {
                    logs.scan(org, after, CHUNK, &|r| filter.keep(r))
                })
                .await;
                let (records, next) = match scanned {
                    Ok(Ok(x)) => x,
                    _ => {
                        return Some((
                            Err(std::io::Error::other("reading API logs")),
                            (None, false, true),
                        ))
                    }
                };
                let records: Vec<ApiLogRecord> = records
                    .into_iter()
                    .map(|r| as_seen_by(&caller, r))
                    .collect();
                let bytes = render(&records, format, first);
                let done = next.is_none();
                Some((Ok::<_, std::io::Error>(bytes), (next, false, done)))
            }
        },
    );
    let content_type = match format {
        crate::export::Format::Csv => "text/csv; charset=utf-8",
        crate::export::Format::Jsonl => "application/x-ndjson",
    };
    let mut response = Body::from_stream(chunks).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn render(records: &[ApiLogRecord], format: crate::export::Format, header_row: bool) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        crate::export::Format::Jsonl => {
            for r in records {
                if serde_json::to_writer(&mut out, &view(r)).is_ok() {
                    out.push(b'\n');
                }
            }
        }
        crate::export::Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            if header_row {
                let _ = w.write_record(COLUMNS);
            }
            for r in records {
                let v = projections::views::value(view(r));
                let _ = w.write_record(COLUMNS.iter().map(|c| match &v[*c] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }));
            }
            let _ = w.flush();
            drop(w);
        }
    }
    out
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use crate::openapi::prelude::*;

    pub const LIST_API_LOGS: Op = Op {
        path: "/api/v1/settings/api-logs",
        operation_id: "listApiLogs",
        tag: SETTINGS,
        summary: "List API request logs",
        description: "Needs `settings:read`. Every authenticated request the organization made under `/api/v1`, oldest first, with its bodies (secrets redacted; at most 64 KiB each). A body is shown only to a key that may read its resource directly (`invoices:read` for invoices and connections, `payments:read`, `treasury:read`, `storage:read`, `settings:read`); to others it reads `[withheld: needs <permission>]`. Admin calls are not logged.",
        auth: Auth::Key(SETTINGS_READ),
        query: API_LOG_LIST_QUERY,
        success: Success::Json("ApiLogPage"),
        ..BASE
    };

    pub const EXPORT_API_LOGS: Op = Op {
        path: "/api/v1/settings/api-logs/export",
        operation_id: "exportApiLogs",
        tag: SETTINGS,
        summary: "Export API request logs",
        description: "Needs `settings:read`. Every log record matching the filters, streamed as JSON lines (default) or CSV (`format=csv`, with a header row).",
        auth: Auth::Key(SETTINGS_READ),
        query: API_LOG_EXPORT_QUERY,
        success: Success::ExportInline("ApiLog"),
        ..BASE
    };

    pub const GET_API_LOG: Op = Op {
        path: "/api/v1/settings/api-logs/{id}",
        operation_id: "getApiLog",
        tag: SETTINGS,
        summary: "Get an API request log record",
        description: "Needs `settings:read`.",
        auth: Auth::Key(SETTINGS_READ),
        success: Success::Json("ApiLog"),
        ..BASE
    };
}
