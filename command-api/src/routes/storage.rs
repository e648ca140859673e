//! File storage: uploads streamed to object storage (never buffered whole),
//! metadata in the event log, downloads for the owner and for the counterparty
//! of an invoice the file is attached to.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::{Admin, Caller};
use crate::commands::{execute, json_value, render_outcome, Request as CommandRequest};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Page, Query};
use crate::views;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use ledger_core::domain::file::StoredFile;
use ledger_core::domain::Command;
use ledger_core::ids::{FileId, OrganizationId};
use ledger_core::log::EventLog;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use projections::sql::queries;
use sha2::{Digest, Sha256};
use std::pin::Pin;

const MAX_FILENAME_CHARS: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::UPLOAD_FILE, upload)
            // Uploads enforce EXPEREON_MAX_UPLOAD_BYTES themselves while streaming.
            .with(|r| r.layer(DefaultBodyLimit::disable())),
        Route::new(&operations::LIST_FILES, list),
        Route::new(&operations::DOWNLOAD_FILE, download),
        Route::new(&operations::DELETE_FILE, remove),
        Route::new(&operations::GET_FILE_METADATA, metadata),
    ]
}

/// The operator's route, outside the organizations' rate limits: `expereon
/// backup` reads every file through it.
pub fn admin_routes() -> Vec<Route> {
    vec![Route::new(
        &operations::DOWNLOAD_FILE_AS_ADMIN,
        admin_download,
    )]
}

/// Says where files are kept (`local` or `object`) on every answer of the
/// admin route, a 404 included: a backup copies local files and only checks
/// those in object storage, and a 404 without it comes from a server that
/// does not have the route.
pub const STORAGE_HEADER: &str = "x-expereon-storage";

pub fn object_path(org: OrganizationId, id: FileId) -> ObjectPath {
    ObjectPath::from(format!("files/{org}/{id}"))
}

type ChunkStream<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send + 'a>>;

/// What the first bytes say the content is, when the client did not say.
pub fn sniff(head: &[u8]) -> &'static str {
    const SIGNATURES: [(&[u8], &str); 7] = [
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"PK\x03\x04", "application/zip"),
        (b"<?xml", "application/xml"),
    ];
    if let Some((_, ct)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return ct;
    }
    let trimmed = head.trim_ascii_start();
    if (trimmed.starts_with(b"{") || trimmed.starts_with(b"[")) && std::str::from_utf8(head).is_ok()
    {
        return "application/json";
    }
    if !head.is_empty()
        && std::str::from_utf8(head)
            .is_ok_and(|s| !s.chars().any(|c| c.is_control() && !c.is_whitespace()))
    {
        return "text/plain; charset=utf-8";
    }
    "application/octet-stream"
}

/// `attachment; filename="<ascii-safe>"; filename*=UTF-8''<percent-encoded>`
pub fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | ';' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

struct Upload<'a> {
    filename: String,
    content_type: Option<String>,
    chunks: ChunkStream<'a>,
}

fn valid_filename(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_FILENAME_CHARS {
        return Err(ApiError::Validation(format!(
            "filename must be 1 to {MAX_FILENAME_CHARS} characters without control characters"
        )));
    }
    crate::input::text("filename", name)?;
    Ok(name.to_owned())
}

/// Makes a stored file and the directories naming it durable, up to the
/// store's root: the `FileStored` event that follows must never point at a
/// file a power loss took back (object storage is durable when a put ends).
fn sync_to_disk(root: &std::path::Path, file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

struct Written {
    size: u64,
    sha256: [u8; 32],
    head: Vec<u8>,
}

/// Streams the chunks into the store; past the limit the upload is aborted and
/// nothing is left behind.
async fn write_object(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    mut chunks: ChunkStream<'_>,
    max: u64,
    idle: std::time::Duration,
) -> ApiResult<Written> {
    let upload = store
        .put_multipart(path)
        .await
        .map_err(|e| ApiError::internal("starting upload", e))?;
    let mut writer = WriteMultipart::new(upload);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head = Vec::new();
    loop {
        // An upload that stalls is abandoned, and what it wrote removed.
        let next = match tokio::time::timeout(idle, chunks.next()).await {
            Ok(next) => next,
            Err(_) => {
                let _ = writer.abort().await;
                return Err(ApiError::request_timeout(idle));
            }
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        size += chunk.len() as u64;
        if size > max {
            let _ = writer.abort().await;
            return Err(ApiError::PayloadTooLarge {
                limit: usize::try_from(max).unwrap_or(usize::MAX),
            });
        }
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        hasher.update(&chunk);
        if let Err(e) = writer.wait_for_capacity(2).await {
            return Err(ApiError::internal("uploading", e));
        }
        writer.write(&chunk);
    }
    writer
        .finish()
        .await
        .map_err(|e| ApiError::internal("finishing upload", e))?;
    Ok(Written {
        size,
        sha256: hasher.finalize().into(),
        head,
    })
}

/// `?filename=` names a raw upload's bytes (a multipart part names itself).
#[derive(serde::Deserialize)]
struct UploadQuery {
    #[serde(default, deserialize_with = "query::optional")]
    filename: Option<String>,
}

async fn open_upload(
    state: &AppState,
    q: &UploadQuery,
    request: Request,
) -> ApiResult<(Upload<'static>, Option<Multipart>)> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("multipart/form-data"))
    {
        let multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| ApiError::Validation(format!("malformed multipart body: {e}")))?;
        return Ok((
            Upload {
                filename: String::new(),
                content_type: None,
                chunks: Box::pin(futures::stream::empty()),
            },
            Some(multipart),
        ));
    }
    let filename = valid_filename(q.filename.as_deref().unwrap_or(""))?;
    let content_type = content_type
        .filter(|c| !c.is_empty())
        .map(|c| crate::input::content_type(&c))
        .transpose()?;
    let chunks = request
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| ApiError::Validation(format!("reading the body: {e}"))));
    Ok((
        Upload {
            filename,
            content_type,
            chunks: Box::pin(chunks),
        },
        None,
    ))
}

async fn upload(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> ApiResult<Response> {
    // Before the bytes are stored, not only before their event.
    state.disk.check()?;
    let request_id = crate::body::idempotency_key(request.headers())?;
    let id = FileId::new();
    let path = object_path(caller.organization_id, id);
    let (upload, written) = receive(&state, &q, request, &path).await?;
    make_durable(&state, &path).await?;
    let content_type = upload
        .content_type
        .unwrap_or_else(|| sniff(&written.head).to_owned());
    let mut fp = Sha256::new();
    fp.update(b"POST /api/v1/storage\n");
    fp.update(upload.filename.as_bytes());
    fp.update(b"\n");
    fp.update(content_type.as_bytes());
    fp.update(written.sha256);
    let result = execute(
        &state,
        CommandRequest {
            actor: caller.actor(),
            request_id,
            fingerprint: fp.finalize().into(),
            command: Command::StoreFile {
                id,
                filename: upload.filename,
                content_type,
                size: written.size,
                sha256: written.sha256,
            },
            render: render_outcome(),
        },
    )
    .await;
    // A replay or a refusal leaves the bytes just written unreferenced.
    let orphan = match &result {
        Ok(r) => !r.status().is_success() || r.headers().contains_key("idempotent-replayed"),
        Err(_) => true,
    };
    if orphan {
        let _ = state.files.delete(&path).await;
    }
    result
}

/// Streams the upload's bytes (raw, or the multipart body's `file` part) into
/// the store at `path`.
async fn receive(
    state: &AppState,
    q: &UploadQuery,
    request: Request,
    path: &ObjectPath,
) -> ApiResult<(Upload<'static>, Written)> {
    let max = state.config.max_upload_bytes;
    let idle = state.config.request_body_timeout;
    let (mut upload, multipart) = open_upload(state, q, request).await?;
    let Some(mut multipart) = multipart else {
        let chunks = std::mem::replace(&mut upload.chunks, Box::pin(futures::stream::empty()));
        let written = write_object(state.files.as_ref(), path, chunks, max, idle).await?;
        return Ok((upload, written));
    };
    loop {
        let field = tokio::time::timeout(idle, multipart.next_field())
            .await
            .map_err(|_| ApiError::request_timeout(idle))?
            .map_err(|e| ApiError::Validation(format!("malformed multipart body: {e}")))?
            .ok_or_else(|| ApiError::Validation("the multipart body has no `file` part".into()))?;
        if field.name() != Some("file") {
            continue;
        }
        upload.filename =
            valid_filename(field.file_name().or(q.filename.as_deref()).unwrap_or(""))?;
        upload.content_type = field
            .content_type()
            .filter(|c| *c != "application/octet-stream")
            .map(crate::input::content_type)
            .transpose()?;
        let chunks =
            field.map(|r| r.map_err(|e| ApiError::Validation(format!("reading the upload: {e}"))));
        let written = write_object(state.files.as_ref(), path, Box::pin(chunks), max, idle).await?;
        return Ok((upload, written));
    }
}

/// Local bytes reach the disk before their event is written; bytes that
/// cannot are removed and the upload refused.
async fn make_durable(state: &AppState, path: &ObjectPath) -> ApiResult<()> {
    let Some(root) = state.local_files.clone() else {
        return Ok(());
    };
    let local = root.join(path.as_ref());
    let synced = tokio::task::spawn_blocking(move || sync_to_disk(&root, &local)).await;
    if !matches!(synced, Ok(Ok(()))) {
        let _ = state.files.delete(path).await;
        return Err(ApiError::internal(
            "syncing an upload",
            format!("{synced:?}"),
        ));
    }
    Ok(())
}

async fn download(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: FileId = path_id(&id, "file")?;
    let org = caller.organization_id;
    let file = state
        .sql(|c| queries::access::readable_file(c, org, id))?
        .ok_or(ApiError::NotFound("file"))?;
    let got = state
        .files
        .get(&object_path(file.organization_id, file.id))
        .await
        .map_err(|e| ApiError::internal("reading stored file", e))?;
    let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
    let mut response = Body::from_stream(stream).into_response();
    file_headers(&mut response, &file, file.size);
    Ok(response)
}

fn file_headers(response: &mut Response, file: &StoredFile, length: u64) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// `GET|HEAD /admin/files/{id}`: any organization's live file.
async fn admin_download(
    _: Admin,
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
) -> Response {
    let kind = if state.local_files.is_some() {
        "local"
    } else {
        "object"
    };
    let mut response = admin_file(&state, &method, &id)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response
        .headers_mut()
        .insert(STORAGE_HEADER, HeaderValue::from_static(kind));
    response
}

async fn admin_file(state: &AppState, method: &Method, id: &str) -> ApiResult<Response> {
    let id: FileId = path_id(id, "file")?;
    // A backup learns of files from the log itself, which may be a batch
    // ahead of the read models.
    let head = state.log.head().last_seq;
    let _ = state
        .projections
        .wait_for(head, state.config.projection_wait)
        .await;
    let file = state
        .sql(|c| queries::access::file(c, id))?
        .filter(|f| !f.deleted)
        .ok_or(ApiError::NotFound("file"))?;
    let path = object_path(file.organization_id, file.id);
    let stored = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => ApiError::NotFound("file"),
        e => ApiError::internal("reading stored file", e),
    };
    if *method == Method::HEAD {
        let meta = state.files.head(&path).await.map_err(stored)?;
        let mut response = Body::empty().into_response();
        file_headers(&mut response, &file, meta.size);
        return Ok(response);
    }
    let got = state.files.get(&path).await.map_err(stored)?;
    // The object's own length, not the recorded one: a copy that differs
    // must arrive whole for the backup to see how.
    let length = got.meta.size;
    let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
    let mut response = Body::from_stream(stream).into_response();
    file_headers(&mut response, &file, length);
    Ok(response)
}

async fn metadata(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: FileId = path_id(&id, "file")?;
    let org = caller.organization_id;
    let file = state
        .sql(|c| queries::access::readable_file(c, org, id))?
        .ok_or(ApiError::NotFound("file"))?;
    Ok(json_value(&views::file(&file)))
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> ApiResult<Response> {
    let org = caller.organization_id;
    let page = queries::PageRequest {
        after_key: q.cursor()?,
        limit: q.limit(),
        descending: false,
    };
    let (items, next) = state.sql(|c| queries::access::files_of(c, org, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::file_view).collect(),
        next_cursor: next.as_deref().map(paging::encode_cursor),
    }))
}

async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let id: FileId = path_id(&id, "file")?;
    let request_id = crate::body::idempotency_key(&headers)?;
    let fingerprint: [u8; 32] =
        Sha256::digest(format!("DELETE /api/v1/storage/{id}").as_bytes()).into();
    let response = execute(
        &state,
        CommandRequest {
            actor: caller.actor(),
            request_id,
            fingerprint,
            command: Command::DeleteFile { id },
            render: render_outcome(),
        },
    )
    .await?;
    // Refusals come back as responses too (they are kept for idempotent replay).
    if response.status().is_success() {
        // The metadata is gone from the ledger; the bytes go now (a crash here only leaves an orphan).
        let _ = state
            .files
            .delete(&object_path(caller.organization_id, id))
            .await;
    }
    Ok(response)
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use crate::openapi::prelude::*;

    pub const DOWNLOAD_FILE_AS_ADMIN: Op = Op {
        path: "/api/v1/admin/files/{id}",
        operation_id: "downloadFileAsAdmin",
        tag: ADMIN,
        summary: "Download any stored file",
        description: "Operator only, for `expereon backup`. The bytes of any organization's file that is not deleted, as `GET /storage/{id}` serves them. `HEAD` answers whether the stored object exists, its size in `Content-Length`, and, like `GET`, says in `X-Expereon-Storage` where files are kept (`local` or `object`). `404` when the file is unknown, deleted, or its object is missing.",
        auth: Auth::Admin,
        success: Success::File,
        ..BASE
    };

    pub const UPLOAD_FILE: Op = Op {
        method: Post,
        path: "/api/v1/storage",
        operation_id: "uploadFile",
        tag: STORAGE,
        summary: "Upload a file",
        description: "Needs `storage:write`. Either `multipart/form-data` with a `file` part (its filename and content type are used), or the raw bytes with their `Content-Type` and `?filename=`. Streamed to storage; over the configured limit (`EXPEREON_MAX_UPLOAD_BYTES`) is `413` and nothing is kept. A missing content type is sniffed from the first bytes. Idempotent through the `Idempotency-Key` header (same filename, content type and bytes).",
        auth: Auth::Key(STORAGE_WRITE),
        query: &[q(
            "filename",
            "The file's name, for a raw (non-multipart) upload: 1 to 255 characters, no control characters.",
            Ty::Str,
        )],
        body: Body::Upload,
        success: Success::Json("File"),
        ..BASE
    };

    pub const LIST_FILES: Op = Op {
        path: "/api/v1/storage",
        operation_id: "listFiles",
        tag: STORAGE,
        summary: "List files",
        description:
            "Needs `storage:read`. The organization's own files (not deleted), oldest first.",
        auth: Auth::Key(STORAGE_READ),
        query: PAGE,
        success: Success::Json("FilePage"),
        ..BASE
    };

    pub const DOWNLOAD_FILE: Op = Op {
        path: "/api/v1/storage/{id}",
        operation_id: "downloadFile",
        tag: STORAGE,
        summary: "Download a file",
        description: "Needs `storage:read`. The bytes, with the file's `Content-Type` and a `Content-Disposition: attachment`. The owner may read it, and so may the counterparty of an invoice it is attached to that the counterparty can see.",
        auth: Auth::Key(STORAGE_READ),
        success: Success::File,
        ..BASE
    };

    pub const DELETE_FILE: Op = Op {
        method: Delete,
        path: "/api/v1/storage/{id}",
        operation_id: "deleteFile",
        tag: STORAGE,
        summary: "Delete a file",
        description: "Needs `storage:write`; the owner only. A file attached to an invoice that is no longer a DRAFT cannot be deleted (`400`). Answers the deleted file's metadata. Idempotent through the `Idempotency-Key` header.",
        auth: Auth::Key(STORAGE_WRITE),
        success: Success::Json("File"),
        ..BASE
    };

    pub const GET_FILE_METADATA: Op = Op {
        path: "/api/v1/storage/{id}/metadata",
        operation_id: "getFileMetadata",
        tag: STORAGE,
        summary: "Get a file's metadata",
        description: "Needs `storage:read`. Same visibility as the download.",
        auth: Auth::Key(STORAGE_READ),
        success: Success::Json("File"),
        ..BASE
    };
}
