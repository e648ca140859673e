//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json` (no credentials).
//!
//! The document is generated at run time from the operations the router
//! serves: each route file declares an [`Op`] per handler beside it, and
//! registers the pair as a [`crate::routes::Route`]; [`operations`] and the
//! router both read `routes::all()`, so nothing is served undocumented and
//! the permission an operation names is the one the router checks. Response
//! schemas come from the view types (`derived_schemas`, schemars) and, for
//! the shapes not yet typed, from [`schemas`].
//!
//! Error responses (`components/responses`) and their examples
//! (`components/examples`) are shared between operations by name. The error
//! responses of each operation are derived from its [`Op`] (credentials,
//! body, path ids) plus its [`Fail`] list, and their examples are rendered by
//! [`ApiError`] itself, so codes and statuses follow `error.rs`.

use crate::error::ApiError;
use crate::query::Names;
use axum::http::header;
use axum::response::IntoResponse;
use ledger_core::domain::connection::ConnectionStatus;
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::payment::PaymentStatus;
use ledger_core::domain::refund::RefundStatus;
use ledger_core::domain::withdrawal::WithdrawalStatus;
use ledger_core::events::Permission;
use ledger_core::money::Currency;
use projections::schema::Components;
use projections::TransactionType;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// HTTP method of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// Lower case, as OpenAPI path items name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    Public,
    /// `X-Admin-Token` (the configured `EXPEREON_ADMIN_TOKEN`).
    Admin,
    /// `X-API-Key` + `X-API-Secret`, the key holding any one of these
    /// permissions (or `*`).
    Key(&'static [Permission]),
}

/// The request body of an operation.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    None,
    /// A JSON body with required fields, of the type the handler reads.
    Required(JsonType),
    /// A JSON body that may be left out (the call then behaves as `{}`).
    Optional(JsonType),
    /// A file: `multipart/form-data` with a `file` part, or the raw bytes
    /// with their `Content-Type` and `?filename=`.
    Upload,
}

/// A request body's type: [`json`] of the type its handler deserializes,
/// which adds the type's derived schema to the components and names it (and
/// gives the Rust type's name, which `tests/openapi.rs` finds among the
/// handler's arguments).
pub type JsonType = fn(&mut Components) -> (String, &'static str);

/// The [`JsonType`] of `T`.
pub fn json<T: JsonSchema>(c: &mut Components) -> (String, &'static str) {
    (c.name_of::<T>(), std::any::type_name::<T>())
}

/// What a `200` answers; names are component schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    /// `application/json` with this schema.
    Json(&'static str),
    /// Like [`Success::Json`], and `503` with the same schema while the
    /// server cannot serve (a health check).
    JsonOr503(&'static str),
    /// `application/x-ndjson`: one JSON object of this schema per line.
    JsonLines(&'static str),
    /// A streamed export: JSON lines of this schema (default) or CSV with one
    /// column per field (`?format=csv`).
    Export(&'static str),
    /// Like [`Success::Export`], without a `Content-Disposition` header.
    ExportInline(&'static str),
    /// Plain text of this media type.
    Text(&'static str),
    /// A stored file's bytes, with its `Content-Type` and `Content-Disposition`.
    File,
}

/// Failures an operation has beyond those derived from its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// `400 INVALID_STATE_TRANSITION`: the right party, but the resource's
    /// current state does not allow it (`details.currentState`).
    State,
    /// `400 INSUFFICIENT_BALANCE`: not enough available funds.
    Funds,
    /// `403 FORBIDDEN`: valid credentials and permission, but the wrong party.
    Party,
    /// `404 NOT_FOUND` for a resource named in the body.
    Missing(&'static str),
    /// `409 VERSION_CONFLICT`: stale `expectedVersion`.
    Version,
}

/// A query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `limit` (components/parameters/Limit).
    Limit,
    /// `cursor` (components/parameters/Cursor).
    Cursor,
    /// `from`, inclusive (components/parameters/From).
    From,
    /// `to`, exclusive (components/parameters/To).
    To,
    /// `format=csv|jsonl` (components/parameters/Format).
    Format,
    Query {
        name: &'static str,
        description: &'static str,
        schema: Ty,
    },
}

/// The schema of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Uuid,
    Date,
    /// An RFC 3339 time, or a date meaning midnight UTC.
    Instant,
    Currency,
    Int {
        min: u64,
        max: u64,
        default: Option<u64>,
    },
    Enum {
        values: &'static [&'static str],
        default: Option<&'static str>,
    },
    /// A component schema.
    Schema(&'static str),
}

/// One row of the table: one (method, path) the router serves.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub method: Method,
    /// The full path, OpenAPI style (`/api/v1/invoices/{id}`).
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Who may call it, the permission, state rules (markdown).
    pub description: &'static str,
    pub auth: Auth,
    pub query: &'static [Param],
    pub body: Body,
    pub success: Success,
    pub fails: &'static [Fail],
    /// How a repeated `requestId` is handled (ignored for GET).
    pub idempotency: Idem,
}

/// Idempotency of a mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idem {
    /// Through the engine: the stored answer is replayed byte for byte
    /// (`Idempotent-Replayed: true`); a different request with the same key is
    /// `409 IDEMPOTENCY_KEY_REUSED`.
    Replayed,
    /// Takes a `requestId` / `Idempotency-Key`, and a retry with it has no
    /// further effect; the operation says how (no 409s, no replay header).
    Keyed,
    /// Takes no key.
    None,
}

impl Op {
    /// Takes a `requestId` / `Idempotency-Key`.
    pub fn is_idempotent(&self) -> bool {
        self.method != Method::Get && self.idempotency != Idem::None
    }

    /// Replays its stored answer for a repeated `requestId`.
    pub fn replays(&self) -> bool {
        self.method != Method::Get && self.idempotency == Idem::Replayed
    }

    fn json_body(&self) -> bool {
        matches!(self.body, Body::Required(_) | Body::Optional(_))
    }
}

pub const SYSTEM: &str = "System";
pub const ADMIN: &str = "Admin";
pub const CONNECTIONS: &str = "Connections";
pub const INVOICES: &str = "Invoices";
pub const PAYMENTS: &str = "Payments";
pub const TREASURY: &str = "Treasury";
pub const SETTINGS: &str = "Settings";
pub const STORAGE: &str = "Storage";

const TAGS: [(&str, &str); 8] = [
    (SYSTEM, "Liveness, metrics and this document. No credentials."),
    (ADMIN, "Operator calls, authorised by `X-Admin-Token`. All answer 404 when the server has no admin token configured."),
    (CONNECTIONS, "A seller and a buyer organization trade only over an ACTIVE connection."),
    (INVOICES, "Invoices, their state machine, line items, bulk actions and history."),
    (PAYMENTS, "Settlement of approved invoices and the payments read side."),
    (TREASURY, "Balances, transactions, withdrawals and refunds. `{orgId}` is the caller's own organization id or `me`; any other id is 404."),
    (SETTINGS, "API keys, webhook endpoints and their deliveries, and the API request log."),
    (STORAGE, "Files (invoice attachments): upload, download, metadata, delete."),
];

// Permissions, as keys name them.
pub const INVOICES_READ: &[Permission] = &[Permission::InvoicesRead];
pub const INVOICES_WRITE: &[Permission] = &[Permission::InvoicesWrite];
pub const INVOICES_APPROVE: &[Permission] = &[Permission::InvoicesApprove];
pub const INVOICES_EITHER: &[Permission] =
    &[Permission::InvoicesWrite, Permission::InvoicesApprove];
pub const PAYMENTS_READ: &[Permission] = &[Permission::PaymentsRead];
pub const PAYMENTS_WRITE: &[Permission] = &[Permission::PaymentsWrite];
pub const TREASURY_READ: &[Permission] = &[Permission::TreasuryRead];
pub const TREASURY_WRITE: &[Permission] = &[Permission::TreasuryWrite];
pub const TREASURY_APPROVE: &[Permission] = &[Permission::TreasuryApprove];
pub const SETTINGS_READ: &[Permission] = &[Permission::SettingsRead];
pub const SETTINGS_WRITE: &[Permission] = &[Permission::SettingsWrite];
pub const STORAGE_READ: &[Permission] = &[Permission::StorageRead];
pub const STORAGE_WRITE: &[Permission] = &[Permission::StorageWrite];

pub const fn q(name: &'static str, description: &'static str, schema: Ty) -> Param {
    Param::Query {
        name,
        description,
        schema,
    }
}

pub const fn one_of(values: &'static [&'static str]) -> Ty {
    Ty::Enum {
        values,
        default: None,
    }
}

const BALANCE_CHANGE_KINDS: &[&str] = &[
    "DEPOSIT",
    "RESERVE",
    "RELEASE",
    "SETTLEMENT_OUT",
    "SETTLEMENT_IN",
    "WITHDRAWAL",
    "REFUND_OUT",
    "REFUND_IN",
    "COLLATERAL",
    "FREEZE",
    "UNFREEZE",
];

pub const PAGE: &[Param] = &[Param::Limit, Param::Cursor];

pub const INVOICE_LIST_QUERY: &[Param] = &[
    q("status", "Only invoices in this state.", Ty::Schema("InvoiceStatus")),
    q(
        "role",
        "Only invoices where the caller is this party (`SELLER`/`BUYER` are accepted too).",
        one_of(&["seller", "buyer"]),
    ),
    q("connectionId", "Only invoices over this connection.", Ty::Uuid),
    q("counterpartyOrganizationId", "Only invoices with this counterparty.", Ty::Uuid),
    q("currency", "Only invoices in this currency.", Ty::Currency),
    q("dueBefore", "Only invoices with `dueDate <= dueBefore` (inclusive).", Ty::Date),
    q("dueAfter", "Only invoices with `dueDate >= dueAfter` (inclusive).", Ty::Date),
    q(
        "q",
        "Case-insensitive substring search over the invoice number, memo and line item descriptions.",
        Ty::Str,
    ),
    q(
        "sort",
        "Sort field. Ties are broken by creation time, then id.",
        Ty::Enum {
            values: &["createdAt", "dueDate", "total"],
            default: Some("createdAt"),
        },
    ),
    q(
        "order",
        "Sort direction. Default: `desc` for `sort=createdAt` (newest first), `asc` for `dueDate` and `total`.",
        one_of(&["asc", "desc"]),
    ),
    Param::Limit,
    Param::Cursor,
];

pub const PAYMENT_LIST_QUERY: &[Param] = &[
    q(
        "status",
        "Only payments in this state.",
        Ty::Schema("PaymentStatus"),
    ),
    q("invoiceId", "Only the payments of this invoice.", Ty::Uuid),
    Param::From,
    Param::To,
    Param::Limit,
    Param::Cursor,
];

pub const PAYMENT_EXPORT_QUERY: &[Param] = &[
    Param::Format,
    q(
        "status",
        "Only payments in this state.",
        Ty::Schema("PaymentStatus"),
    ),
    q("invoiceId", "Only the payments of this invoice.", Ty::Uuid),
    Param::From,
    Param::To,
];

pub const TRANSACTION_LIST_QUERY: &[Param] = &[
    q(
        "type",
        "Only transactions of this type.",
        Ty::Schema("TransactionType"),
    ),
    q(
        "currency",
        "Only transactions in this currency.",
        Ty::Currency,
    ),
    Param::From,
    Param::To,
    Param::Limit,
    Param::Cursor,
];

pub const TRANSACTION_EXPORT_QUERY: &[Param] = &[
    Param::Format,
    q(
        "type",
        "Only transactions of this type.",
        Ty::Schema("TransactionType"),
    ),
    q(
        "currency",
        "Only transactions in this currency.",
        Ty::Currency,
    ),
    Param::From,
    Param::To,
];

const API_LOG_FILTERS: [Param; 6] = [
    q(
        "method",
        "Only requests with this HTTP method (case-insensitive).",
        Ty::Str,
    ),
    q(
        "status",
        "Only requests answered with this HTTP status.",
        Ty::Int {
            min: 100,
            max: 599,
            default: None,
        },
    ),
    q(
        "path",
        "Only requests whose path starts with this.",
        Ty::Str,
    ),
    q(
        "apiKeyId",
        "Only requests made with this API key.",
        Ty::Schema("ApiKeyId"),
    ),
    Param::From,
    Param::To,
];

pub const API_LOG_LIST_QUERY: &[Param] = &[
    API_LOG_FILTERS[0],
    API_LOG_FILTERS[1],
    API_LOG_FILTERS[2],
    API_LOG_FILTERS[3],
    API_LOG_FILTERS[4],
    API_LOG_FILTERS[5],
    Param::Limit,
    Param::Cursor,
];

pub const API_LOG_EXPORT_QUERY: &[Param] = &[
    Param::Format,
    API_LOG_FILTERS[0],
    API_LOG_FILTERS[1],
    API_LOG_FILTERS[2],
    API_LOG_FILTERS[3],
    API_LOG_FILTERS[4],
    API_LOG_FILTERS[5],
];

/// Defaults every entry overrides what it needs of.
pub const BASE: Op = Op {
    method: Method::Get,
    path: "",
    operation_id: "",
    tag: "",
    summary: "",
    description: "",
    auth: Auth::Public,
    query: &[],
    body: Body::None,
    success: Success::Json("Empty"),
    fails: &[],
    idempotency: Idem::Replayed,
};

/// What a route file needs to declare its operations.
pub mod prelude {
    pub use super::Method::{Delete, Get, Patch, Post, Put};
    pub use super::{
        json, one_of, q, Auth, Body, Fail, Idem, Op, Param, Success, Ty, ADMIN,
        API_LOG_EXPORT_QUERY, API_LOG_LIST_QUERY, BASE, CONNECTIONS, INVOICES, INVOICES_APPROVE,
        INVOICES_EITHER, INVOICES_READ, INVOICES_WRITE, INVOICE_LIST_QUERY, PAGE, PAYMENTS,
        PAYMENTS_READ, PAYMENTS_WRITE, PAYMENT_EXPORT_QUERY, PAYMENT_LIST_QUERY, SETTINGS,
        SETTINGS_READ, SETTINGS_WRITE, STORAGE, STORAGE_READ, STORAGE_WRITE, SYSTEM,
        TRANSACTION_EXPORT_QUERY, TRANSACTION_LIST_QUERY, TREASURY, TREASURY_APPROVE,
        TREASURY_READ, TREASURY_WRITE,
    };
}

// ---------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------

/// Every operation the router serves (see [`crate::routes::Route`]).
pub fn operations() -> Vec<&'static Op> {
    crate::routes::all().into_iter().map(|r| r.op).collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(op.method.as_str().to_owned(), operation(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Expereon API",
            "version": "1",
            "summary": "Event-sourced B2B financial ledger: connections, invoices, settlement, treasury.",
            "description": info_description(),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{ "url": "/", "description": "This server. Paths carry the `/api/v1` base path." }],
        "tags": TAGS.iter().map(|(name, description)| json!({ "name": name, "description": description })).collect::<Vec<_>>(),
        "paths": paths,
        "webhooks": webhooks(),
        "components": {
            "schemas": schemas(),
            "responses": shared_responses(),
            "examples": examples(),
            "parameters": parameters(),
            "headers": headers(),
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "The API key id. Always sent with `X-API-Secret`.",
                },
                "apiSecret": {
                    "type": "apiKey", "in": "header", "name": "X-API-Secret",
                    "description": "The API key's secret, shown once when the key is created.",
                },
                "adminToken": {
                    "type": "apiKey", "in": "header", "name": "X-Admin-Token",
                    "description": "The server's configured `EXPEREON_ADMIN_TOKEN`. Admin routes answer 404 when none is configured.",
                },
            },
        },
    })
}

/// The document as served, built once.
pub fn document_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default())
}

pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_bytes(),
    )
}

fn info_description() -> String {
    let limit = crate::paging::MAX_LIMIT;
    let default_limit = crate::paging::DEFAULT_LIMIT;
    let bulk = crate::routes::invoices::BULK_MAX;
    format!(
        r#"Expereon is an event-sourced ledger for business-to-business invoicing and settlement. This document lists exactly the routes this server serves.

## Conventions
- Base path `/api/v1`; JSON bodies (`Content-Type: application/json`), `camelCase` fields, UTF-8. Unknown body fields are refused (`400 VALIDATION_ERROR`).
- Every success is `200` with the resource, or for lists `{{ "data": [...], "nextCursor": "..." | null }}`.
- Every response carries `X-Request-Id`: the one the client sent (up to 128 visible ASCII characters), otherwise one generated by the server.
- Timestamps are RFC 3339 in UTC (`2025-01-31T12:00:00Z`); dates are `YYYY-MM-DD`. Time filters (`from`, `to`, `asOf`) take an RFC 3339 time or a date meaning midnight UTC.

## Authentication and permissions
- Organization calls: `X-API-Key: <key id>` and `X-API-Secret: <secret>`. Missing, invalid, revoked or expired credentials are `401 UNAUTHORIZED`.
- Operator calls (`/api/v1/admin/...`): `X-Admin-Token`. Admin routes answer `404` when the server has no admin token configured.
- Each operation names the permission it needs (in its description, its security requirement and `x-permissions`); a key lacking it gets `403 FORBIDDEN`. Permissions: `invoices:read`, `invoices:write` (seller side), `invoices:approve` (buyer side), `payments:read`, `payments:write`, `treasury:read`, `treasury:write`, `treasury:approve`, `settings:read`, `settings:write`, `storage:read`, `storage:write`, or `*` (all).
- Who may act: the wrong party for an action (a seller approving, a buyer submitting, a requester accepting its own request) is `403 FORBIDDEN`; the right party in the wrong state is `400 INVALID_STATE_TRANSITION` with `details.currentState`; a resource the caller may not see at all (another organization's, or a draft to the buyer) is `404 NOT_FOUND`, never revealing that it exists.

## Idempotency
Every POST, PUT, PATCH and DELETE accepts a `requestId` (UUID) in the body, or, for calls without a body, an `Idempotency-Key` header (both may be sent if they are equal). It is scoped to the organization (or to the operator). Retrying with the same `requestId`, method, path and body answers the original status and body byte for byte, with an `Idempotent-Replayed: true` header, and applies nothing twice. The same `requestId` with a different method, path or body is `409 IDEMPOTENCY_KEY_REUSED`; a duplicate sent while the original is still being processed gets `409 REQUEST_IN_PROGRESS` or the original response. Records are kept at least 24 hours (configurable). The record is written atomically with the events the request produced. A request without a `requestId` is not deduplicated. A `500` is safe to retry with the same `requestId`. Uploads (`POST /api/v1/storage`) and `DELETE /api/v1/storage/{{id}}` take the key in the `Idempotency-Key` header only. `POST .../webhooks/{{id}}/test` and `.../redeliver` use it so that a retry does not send again, without replay or `409`. `POST /api/v1/admin/clock` takes none.

## Money
- Amounts are decimal **strings** (schema `Money`, e.g. `"1250.00"`), never JSON numbers, with an ISO 4217 `currency`. An amount with more decimals than the currency's minor units (USD/EUR 2, JPY 0, KWD 3, …) is `400`, even if the extra digits are zeros; signs and exponents are refused. Amounts are greater than zero unless stated.
- Responses write money with exactly the currency's minor units (`"4.50"`, `"999"`, `"3.765"`).
- `quantity` is a decimal string greater than 0 with up to 6 decimals; `taxRate` is a percentage string from 0 to 100 with up to 4 decimals (`"7.5"`).
- Line `amount` = quantity × unitPrice, rounded half away from zero to the currency's minor units; line `taxAmount` = that rounded amount × taxRate / 100, rounded the same way. Invoice `subtotal`, `taxTotal` and `total` are sums of the per-line figures.

## Paging and lists
- `?limit=` 1..{limit} (default {default_limit}); `?cursor=` is the opaque `nextCursor` of the previous page; `nextCursor` is null on the last page. Pages stay stable when items are added.
- `GET /api/v1/invoices` sorts by `createdAt` descending (newest first) by default; `sort=dueDate|createdAt|total` and `order=asc|desc` change it (`dueDate` and `total` default to ascending). `dueBefore` and `dueAfter` are inclusive.
- Other lists are oldest first (webhook deliveries: newest first). `from` is inclusive and `to` exclusive, on the record's creation time.
- Exports (`.../export?format=csv|jsonl`) stream every matching record, JSON lines by default.

## Errors
`{{ "error": {{ "code": "INVALID_STATE_TRANSITION", "message": "...", "details": {{...}} }} }}` (schema `Error`). Statuses: `400` VALIDATION_ERROR, INVALID_STATE_TRANSITION, INSUFFICIENT_BALANCE; `401` UNAUTHORIZED; `403` FORBIDDEN; `404` NOT_FOUND; `405` METHOD_NOT_ALLOWED; `409` VERSION_CONFLICT, IDEMPOTENCY_KEY_REUSED, REQUEST_IN_PROGRESS; `413` PAYLOAD_TOO_LARGE; `415` (code VALIDATION_ERROR) a body that is not JSON; `429` RATE_LIMITED, with `Retry-After`; `500` INTERNAL, which never leaks internals; `503` UNAVAILABLE while the server shuts down, while its free disk space is below `EXPEREON_MIN_FREE_DISK_BYTES` (writes only; `details`: `freeBytes`, `floorBytes`), or when a committed command's answer cannot be read back in time.

## Webhooks
Endpoints (`/api/v1/settings/webhooks`) receive the events of the `webhooks` section of this document as `POST` JSON `{{ "id", "type", "createdAt", "organizationId", "data" }}`, with the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 over "{{id}}.{{timestamp}}.{{body}}" keyed by the base64-decoded part of the whsec_ secret>`), and `X-Signature` carrying the same value. A 2xx within the timeout (10 s) is success; otherwise retries follow after 1 m, 5 m, 30 m, 2 h and 12 h (configurable), after which the delivery is FAILED and can be redelivered by hand. Each event goes to every enabled endpoint of each organization party to it whose filter matches; drafts are the seller's alone.

## Bulk calls
Bulk calls take up to {bulk} ids and answer `{{ "results": [ {{ "id", "ok": true|false, "status"?, "error"?: {{ "code", "message" }} }} ], "succeeded", "failed" }}`: compact rows (the resource's status after the action, no embedded resource), so an answer stays small whatever the items hold; each item succeeds or fails on its own. Their `/preview` twins answer the same results plus totals and change nothing.
"#
    )
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// The `{name}` segments of a path, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The resource a path parameter names, and its description.
fn path_param(path: &str, name: &str) -> (&'static str, Value) {
    let segments: Vec<&str> = path.split('/').collect();
    let before = segments
        .iter()
        .position(|s| *s == format!("{{{name}}}"))
        .and_then(|i| i.checked_sub(1))
        .map(|i| segments[i])
        .unwrap_or("");
    let admin = path.starts_with("/api/v1/admin/");
    match name {
        "orgId" if admin => (
            "organization",
            json!({ "description": "The organization's id.", "schema": { "type": "string", "format": "uuid" } }),
        ),
        "orgId" => (
            "organization",
            json!({
                "description": "The caller's own organization id, or `me`. Any other organization is `404`.",
                "schema": { "anyOf": [ { "type": "string", "format": "uuid" }, { "const": "me" } ] },
            }),
        ),
        "currency" => (
            "balance",
            json!({ "description": "The balance's currency (created on first use).", "schema": r("Currency") }),
        ),
        "balanceId" => ("balance", uuid_param("The balance's id.")),
        "lineItemId" => ("line item", uuid_param("The line item's id.")),
        "id" if before == "api-keys" => (
            "API key",
            json!({ "description": "The API key's id.", "schema": r("ApiKeyId") }),
        ),
        _ => {
            let resource = match before {
                "connections" => "connection",
                "invoices" => "invoice",
                "payments" => "payment",
                "transactions" => "transaction",
                "withdrawals" => "withdrawal",
                "refunds" => "refund",
                "api-keys" => "API key",
                "webhooks" => "webhook endpoint",
                "storage" => "file",
                "api-logs" => "API log",
                "deliveries" => "delivery",
                _ => "resource",
            };
            (resource, uuid_param(&format!("The {resource}'s id.")))
        }
    }
}

fn uuid_param(description: &str) -> Value {
    json!({ "description": description, "schema": { "type": "string", "format": "uuid" } })
}

fn param_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Uuid => json!({ "type": "string", "format": "uuid" }),
        Ty::Date => json!({ "type": "string", "format": "date" }),
        Ty::Instant => r("Instant"),
        Ty::Currency => r("Currency"),
        Ty::Int { min, max, default } => {
            let mut s = json!({ "type": "integer", "minimum": min });
            if max != u64::MAX {
                s["maximum"] = json!(max);
            }
            if let Some(d) = default {
                s["default"] = json!(d);
            }
            s
        }
        Ty::Enum { values, default } => {
            let mut s = json!({ "type": "string", "enum": values });
            if let Some(d) = default {
                s["default"] = json!(d);
            }
            s
        }
        Ty::Schema(name) => r(name),
    }
}

fn query_param(p: &Param) -> Value {
    let shared = match p {
        Param::Limit => "Limit",
        Param::Cursor => "Cursor",
        Param::From => "From",
        Param::To => "To",
        Param::Format => "Format",
        Param::Query {
            name,
            description,
            schema,
        } => {
            return json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": param_schema(*schema),
            })
        }
    };
    json!({ "$ref": format!("#/components/parameters/{shared}") })
}

fn operation(op: &Op) -> Value {
    let mut parameters: Vec<Value> = path_params(op.path)
        .into_iter()
        .map(|name| {
            let (_, mut p) = path_param(op.path, name);
            p["name"] = json!(name);
            p["in"] = json!("path");
            p["required"] = json!(true);
            p
        })
        .collect();
    parameters.extend(op.query.iter().map(query_param));
    if op.is_idempotent() {
        parameters.push(json!({ "$ref": "#/components/parameters/IdempotencyKey" }));
    }
    let mut o = json!({
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "parameters": parameters,
        "responses": responses(op),
    });
    match op.auth {
        Auth::Public => o["security"] = json!([]),
        Auth::Admin => o["security"] = json!([{ "adminToken": [] }]),
        Auth::Key(permissions) => {
            let permissions: Vec<&str> = permissions.iter().map(|p| p.name()).collect();
            // OpenAPI 3.1 lets apiKey requirements name roles: the permission.
            o["security"] = Value::Array(
                permissions
                    .iter()
                    .map(|p| json!({ "apiKey": [p], "apiSecret": [] }))
                    .collect(),
            );
            o["x-permissions"] = json!(permissions);
        }
    }
    match op.body {
        Body::None => {}
        Body::Required(schema) | Body::Optional(schema) => {
            let (name, _) = schema(&mut Components::requests());
            o["requestBody"] = json!({
                "required": matches!(op.body, Body::Required(_)),
                "content": { "application/json": { "schema": r(&name) } },
            });
        }
        Body::Upload => {
            o["requestBody"] = json!({
                "required": true,
                "content": {
                    "multipart/form-data": {
                        "schema": r("FileUpload"),
                        "encoding": { "file": { "contentType": "*/*" } },
                    },
                    "*/*": {
                        "schema": { "type": "string", "contentMediaType": "application/octet-stream" },
                    },
                },
            });
        }
    }
    o
}

fn success(op: &Op) -> Value {
    let mut headers = json!({ "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } });
    if op.replays() {
        headers["Idempotent-Replayed"] =
            json!({ "$ref": "#/components/headers/IdempotentReplayed" });
    }
    let (description, content) = match op.success {
        Success::Json(schema) | Success::JsonOr503(schema) => {
            ("OK", json!({ "application/json": { "schema": r(schema) } }))
        }
        Success::JsonLines(schema) => (
            "OK: JSON lines, one object per line (the schema describes one line).",
            json!({ "application/x-ndjson": { "schema": r(schema) } }),
        ),
        Success::Export(schema) => {
            headers["Content-Disposition"] =
                json!({ "$ref": "#/components/headers/ContentDisposition" });
            (
                "OK: a streamed attachment. JSON lines (one object per line, the schema describes one line), or CSV with a header row and one column per field of the schema (null as an empty cell).",
                json!({
                    "application/x-ndjson": { "schema": r(schema) },
                    "text/csv": { "schema": { "type": "string" } },
                }),
            )
        }
        Success::ExportInline(schema) => (
            "OK: a stream of JSON lines (one object per line, the schema describes one line), or CSV with a header row and one column per field of the schema (null as an empty cell).",
            json!({
                "application/x-ndjson": { "schema": r(schema) },
                "text/csv": { "schema": { "type": "string" } },
            }),
        ),
        Success::File => {
            headers["Content-Disposition"] =
                json!({ "$ref": "#/components/headers/ContentDisposition" });
            (
                "OK: the file's bytes, with the `Content-Type` it was stored with.",
                json!({ "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } }),
            )
        }
        Success::Text(media) => {
            let mut content = Map::new();
            content.insert(media.to_owned(), json!({ "schema": { "type": "string" } }));
            ("OK", Value::Object(content))
        }
    };
    json!({ "description": description, "headers": headers, "content": content })
}

/// An error the operation may answer, rendered by `ApiError` itself.
struct Documented {
    error: ApiError,
    /// Example key, unique within the operation.
    key: String,
    when: String,
}

fn documented_errors(op: &Op) -> Vec<Documented> {
    let mut out = Vec::new();
    let mut add = |error: ApiError, key: &str, when: &str| {
        out.push(Documented {
            error,
            key: key.to_owned(),
            when: when.to_owned(),
        })
    };
    let has_body = !matches!(op.body, Body::None);
    let idempotent = op.is_idempotent();
    let params = path_params(op.path);
    // 400
    if has_body || idempotent || !op.query.is_empty() || params.contains(&"currency") {
        add(
            ApiError::Validation("dueDate must be a date YYYY-MM-DD".into()),
            "VALIDATION_ERROR",
            "VALIDATION_ERROR: a malformed or invalid body, query, header or path parameter, or a request the rules refuse.",
        );
    }
    if op.fails.contains(&Fail::State) {
        add(
            ApiError::InvalidState {
                message: "cannot do this while it is in state APPROVED".into(),
                current: "APPROVED",
            },
            "INVALID_STATE_TRANSITION",
            "INVALID_STATE_TRANSITION: the current state does not allow this (`details.currentState`).",
        );
    }
    if op.fails.contains(&Fail::Funds) {
        add(
            ApiError::InsufficientBalance {
                message: "insufficient available balance in USD: needed 1250.00, available 100.00".into(),
                details: json!({ "currency": "USD", "needed": "1250.00", "available": "100.00" }),
            },
            "INSUFFICIENT_BALANCE",
            "INSUFFICIENT_BALANCE: not enough available funds (`details.currency`, `needed`, `available`); nothing changed.",
        );
    }
    // 401, 403
    match op.auth {
        Auth::Public => {}
        Auth::Admin => add(
            ApiError::Unauthorized("missing admin token"),
            "UNAUTHORIZED_ADMIN",
            "UNAUTHORIZED: missing or wrong `X-Admin-Token`.",
        ),
        Auth::Key(permissions) => {
            let permissions: Vec<&str> = permissions.iter().map(|p| p.name()).collect();
            add(
                ApiError::Unauthorized("missing or invalid API credentials"),
                "UNAUTHORIZED",
                "UNAUTHORIZED: missing, invalid, revoked or expired API credentials.",
            );
            let names = permissions
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(" or ");
            let key = format!("FORBIDDEN_{}", permissions.join("_or_").replace(':', "-"));
            add(
                ApiError::Forbidden(format!("this API key lacks the {names} permission")),
                &key,
                &format!("FORBIDDEN: the API key lacks the {names} permission."),
            );
            if op.fails.contains(&Fail::Party) {
                add(
                    ApiError::Forbidden("this party may not do this".into()),
                    "FORBIDDEN_PARTY",
                    "FORBIDDEN: valid credentials and permission, but the rules of this operation refuse this caller (the wrong party, or as the description says).",
                );
            }
        }
    }
    // 404
    if op.auth == Auth::Admin {
        add(
            ApiError::RouteNotFound,
            "NOT_FOUND_ADMIN_DISABLED",
            "NOT_FOUND: admin routes are disabled (no admin token configured).",
        );
    }
    let mut resources: Vec<&str> = params.iter().map(|p| path_param(op.path, p).0).collect();
    resources.extend(op.fails.iter().filter_map(|f| match f {
        Fail::Missing(what) => Some(*what),
        _ => None,
    }));
    // The admin currency path parameter opens a balance; it is never missing.
    if op.auth == Auth::Admin {
        resources.retain(|r| *r != "balance");
    }
    resources.dedup();
    for what in resources {
        add(
            ApiError::NotFound(static_name(what)),
            &format!("NOT_FOUND_{}", what.replace(' ', "_")),
            &format!("NOT_FOUND: no such {what}, or the caller may not see it."),
        );
    }
    // 409
    if op.fails.contains(&Fail::Version) {
        add(
            ApiError::VersionConflict {
                message: "expected version 3, current version 4".into(),
                current: 4,
            },
            "VERSION_CONFLICT",
            "VERSION_CONFLICT: `expectedVersion` is stale (`details.currentVersion`).",
        );
    }
    if op.replays() {
        add(
            ApiError::IdempotencyKeyReused,
            "IDEMPOTENCY_KEY_REUSED",
            "IDEMPOTENCY_KEY_REUSED: this `requestId` was used for a different method, path or body.",
        );
        add(
            ApiError::RequestInProgress,
            "REQUEST_IN_PROGRESS",
            "REQUEST_IN_PROGRESS: the original request with this `requestId` is still being processed.",
        );
    }
    if has_body {
        let (limit, what, key) = match op.body {
            Body::Upload => (
                26_214_400,
                "the upload is over `EXPEREON_MAX_UPLOAD_BYTES`",
                "PAYLOAD_TOO_LARGE_UPLOAD",
            ),
            _ => (
                1_048_576,
                "the body is over the configured limit",
                "PAYLOAD_TOO_LARGE",
            ),
        };
        add(
            ApiError::PayloadTooLarge { limit },
            key,
            &format!("PAYLOAD_TOO_LARGE: {what} (`details.limitBytes`)."),
        );
        add(
            ApiError::RequestTimeout { limit_secs: 30 },
            "REQUEST_TIMEOUT",
            "REQUEST_TIMEOUT: the body stalled for `EXPEREON_REQUEST_BODY_TIMEOUT` (a JSON body must arrive whole within it; `details.limitSeconds`); nothing was done.",
        );
    }
    if op.json_body() {
        add(
            ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ),
            "UNSUPPORTED_MEDIA_TYPE",
            "VALIDATION_ERROR: a non-empty body that is not `application/json`.",
        );
    }
    if matches!(op.auth, Auth::Key(_) | Auth::Admin) {
        add(
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            "RATE_LIMITED",
            "RATE_LIMITED: over the per-key or the per-organization rate limit, or (admin routes) too many failed admin tokens from this address; retry after `Retry-After` seconds.",
        );
    }
    add(
        ApiError::Internal(String::new()),
        "INTERNAL",
        "INTERNAL: an unexpected failure; nothing internal is revealed. Safe to retry with the same `requestId`.",
    );
    if op.replays() {
        add(
            ApiError::Unavailable,
            "UNAVAILABLE",
            "UNAVAILABLE: the server is shutting down; or its free disk space is below `EXPEREON_MIN_FREE_DISK_BYTES` and nothing was written (retry later); or the command was recorded but the read models could not reach it within `EXPEREON_PROJECTION_WAIT` (see `/healthz`); retry with the same `requestId` to get its answer.",
        );
    }
    out
}

/// `ApiError::NotFound` takes a `&'static str`.
fn static_name(what: &str) -> &'static str {
    const NAMES: [&str; 15] = [
        "organization",
        "balance",
        "line item",
        "connection",
        "invoice",
        "payment",
        "transaction",
        "withdrawal",
        "refund",
        "API key",
        "webhook endpoint",
        "file",
        "API log",
        "delivery",
        "resource",
    ];
    NAMES.into_iter().find(|n| *n == what).unwrap_or("resource")
}

/// An operation's error responses by status: the name of the shared
/// response (components/responses) and the response itself. A response is
/// named by its status and example keys, which determine it.
fn error_responses(op: &Op) -> Vec<(u16, String, Value)> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<Documented>> = Default::default();
    for d in documented_errors(op) {
        by_status
            .entry(d.error.status().as_u16())
            .or_default()
            .push(d);
    }
    by_status
        .into_iter()
        .map(|(status, errors)| {
            let name = std::iter::once(status.to_string())
                .chain(errors.iter().map(|d| d.key.clone()))
                .collect::<Vec<_>>()
                .join("_");
            let description = errors
                .iter()
                .map(|d| d.when.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let examples: Map<String, Value> = errors
                .iter()
                .map(|d| {
                    let reference = json!({ "$ref": format!("#/components/examples/{}", d.key) });
                    (d.key.clone(), reference)
                })
                .collect();
            let mut headers =
                json!({ "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } });
            if status == 429 {
                headers["Retry-After"] = json!({ "$ref": "#/components/headers/RetryAfter" });
            }
            let response = json!({
                "description": description,
                "headers": headers,
                "content": { "application/json": { "schema": r("Error"), "examples": examples } },
            });
            (status, name, response)
        })
        .collect()
}

fn responses(op: &Op) -> Value {
    let mut out = Map::new();
    out.insert("200".into(), success(op));
    if let Success::JsonOr503(schema) = op.success {
        out.insert(
            "503".into(),
            json!({
                "description": "Unavailable: the same body, saying why.",
                "headers": { "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } },
                "content": { "application/json": { "schema": r(schema) } },
            }),
        );
    }
    for (status, name, _) in error_responses(op) {
        out.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    Value::Object(out)
}

/// Every error response the operations reference.
fn shared_responses() -> Value {
    let mut out = Map::new();
    for op in operations() {
        for (_, name, response) in error_responses(op) {
            out.insert(name, response);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------

/// Every error example the operations reference, rendered by `ApiError`.
/// A key names one example: the keys carry whatever makes examples differ.
fn examples() -> Value {
    let mut out = Map::new();
    for op in operations() {
        for d in documented_errors(op) {
            let body: Value = serde_json::from_slice(&d.error.body()).unwrap_or(Value::Null);
            let example = json!({ "summary": d.when, "value": body });
            debug_assert!(
                out.get(&d.key).is_none_or(|e| *e == example),
                "two different error examples named {}",
                d.key
            );
            out.insert(d.key, example);
        }
    }
    Value::Object(out)
}

/// A string enum of the domain's names for `T`, in its order.
fn names<T: Names>() -> Value {
    json!({ "type": "string", "enum": T::all().iter().map(|v| v.name()).collect::<Vec<_>>() })
}

/// `{"$ref": "#/components/schemas/<name>"}`
fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_codes() -> Vec<&'static str> {
    vec![
        "VALIDATION_ERROR",
        "INVALID_STATE_TRANSITION",
        "INSUFFICIENT_BALANCE",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "VERSION_CONFLICT",
        "IDEMPOTENCY_KEY_REUSED",
        "REQUEST_IN_PROGRESS",
        "PAYLOAD_TOO_LARGE",
        "REQUEST_TIMEOUT",
        "RATE_LIMITED",
        "UNAVAILABLE",
        "INTERNAL",
    ]
}

/// Every component schema.
/// The schemas of the responses whose types describe themselves: the views
/// of `projections::views` and the answers route files define.
pub fn derived_schemas() -> Map<String, Value> {
    let mut derived = projections::schema::Components::default();
    projections::views::add_schemas(&mut derived);
    crate::routes::treasury::add_schemas(&mut derived);
    crate::routes::api_logs::add_schemas(&mut derived);
    crate::routes::webhooks::add_schemas(&mut derived);
    crate::routes::invoices::add_schemas(&mut derived);
    crate::routes::health::add_schemas(&mut derived);
    crate::routes::admin::add_schemas(&mut derived);
    crate::routes::clock::add_schemas(&mut derived);
    crate::bulk::add_schemas(&mut derived);
    derived.add::<crate::error::ErrorBody>();
    let mut schemas = derived.into_schemas();
    // Request bodies, from the types their handlers deserialize.
    let mut requests = Components::requests();
    for op in operations() {
        if let Body::Required(body) | Body::Optional(body) = op.body {
            body(&mut requests);
        }
    }
    schemas.extend(requests.into_schemas());
    schemas
}

pub fn schemas() -> Value {
    let currencies: Vec<&str> = Currency::all().map(Currency::code).collect();
    let minor_units = Currency::all()
        .map(|c| format!("{} {}", c.code(), c.minor_units()))
        .collect::<Vec<_>>()
        .join(", ");
    let permissions: Vec<&str> = Permission::NAMES.iter().map(|(n, _)| *n).collect();
    // The schemas derived from response and request types; the rest are
    // written out below.
    let mut s = derived_schemas();
    // ------------------------------------------------------- primitives
    s.insert(
        "ApiKeyId".into(),
        json!({
            "type": "string",
            "pattern": "^ek_[0-9a-f]{32}$",
            "description": "An API key id: `ek_` then 32 hex digits. Sent as `X-API-Key`.",
        }),
    );
    s.insert("Money".into(), json!({
        "type": "string",
        "pattern": "^[0-9]+(\\.[0-9]{1,3})?$",
        "description": "A decimal amount as a string, never a JSON number. Input: digits with an optional fraction of at most the currency's minor units (more is 400, even zeros), no sign or exponent, at most 10^15. Output: exactly the currency's minor units (`\"4.50\"` USD, `\"999\"` JPY, `\"3.765\"` KWD).",
        "examples": ["1250.00"],
    }));
    s.insert("Quantity".into(), json!({
        "type": "string",
        "pattern": "^[0-9]+(\\.[0-9]{1,6})?$",
        "description": "A decimal string greater than 0, at most 6 decimals, at most 1000000000.",
        "examples": ["1.5"],
    }));
    s.insert(
        "TaxRate".into(),
        json!({
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]{1,4})?$",
            "description": "A percentage as a decimal string from 0 to 100, at most 4 decimals.",
            "examples": ["7.5"],
        }),
    );
    s.insert(
        "Currency".into(),
        json!({
            "type": "string",
            "enum": currencies,
            "description": format!("An ISO 4217 code, upper case. Minor units: {minor_units}."),
        }),
    );
    s.insert(
        "Date".into(),
        json!({ "type": "string", "format": "date", "description": "`YYYY-MM-DD`." }),
    );
    s.insert(
        "Timestamp".into(),
        json!({ "type": "string", "format": "date-time", "description": "RFC 3339, UTC." }),
    );
    s.insert(
        "Instant".into(),
        json!({
            "description": "An RFC 3339 time, or a date meaning midnight UTC.",
            "anyOf": [
                { "type": "string", "format": "date-time" },
                { "type": "string", "format": "date" },
            ],
        }),
    );
    s.insert("RequestId".into(), json!({
        "type": "string",
        "format": "uuid",
        "description": "Idempotency key (see Idempotency). Equivalent to the `Idempotency-Key` header; if both are sent they must be equal.",
    }));
    s.insert(
        "Permission".into(),
        json!({ "type": "string", "enum": permissions }),
    );
    s.insert("InvoiceStatus".into(), names::<InvoiceStatus>());
    s.insert("PaymentStatus".into(), names::<PaymentStatus>());
    s.insert("ConnectionStatus".into(), names::<ConnectionStatus>());
    s.insert("WithdrawalStatus".into(), names::<WithdrawalStatus>());
    s.insert("RefundStatus".into(), names::<RefundStatus>());
    s.insert("TransactionType".into(), names::<TransactionType>());
    s.insert(
        "Party".into(),
        json!({ "type": "string", "enum": ["SELLER", "BUYER"] }),
    );
    s.insert(
        "ErrorCode".into(),
        json!({ "type": "string", "enum": error_codes() }),
    );
    // ----------------------------------------------------------- errors
    // --------------------------------------------------------- requests
    // -------------------------------------------------------- resources
    s.insert(
        "BalanceLookup".into(),
        json!({
            "description": "`Balance` without `asOf`, `BalanceAsOf` with it.",
            "oneOf": [r("Balance"), r("BalanceAsOf")],
        }),
    );
    s.insert(
        "BalanceChangeKind".into(),
        json!({ "type": "string", "enum": BALANCE_CHANGE_KINDS }),
    );
    s.insert(
        "BalanceChangeCauseType".into(),
        json!({
            "type": "string",
            "enum": ["transaction", "invoice", "withdrawal", "payment", "refund", "operator"],
        }),
    );
    s.insert(
        "WebhookEventType".into(),
        json!({
            "type": "string",
            "enum": projections::webhooks::EVENT_TYPES.iter().chain([&projections::webhooks::TEST_EVENT_TYPE]).collect::<Vec<_>>(),
            "description": "`webhook.test` is sent only by `POST /settings/webhooks/{id}/test`.",
        }),
    );
    s.insert(
        "WebhookEventFilter".into(),
        json!({
            "type": "string",
            "minLength": 1,
            "description": "`*` (everything), `<family>.*` (e.g. `invoice.*`), or an exact event type.",
            "examples": ["invoice.*", "payment.settled", "*"],
        }),
    );
    s.insert(
        "DeliveryStatus".into(),
        names::<projections::sql::outbox::DeliveryStatus>(),
    );
    s.insert(
        "FileUpload".into(),
        json!({
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "string",
                    "contentMediaType": "application/octet-stream",
                    "description": "The file; its part's filename and content type are kept.",
                },
            },
        }),
    );
    s.insert(
        "OpenApiDocument".into(),
        json!({ "type": "object", "required": ["openapi", "info", "paths"] }),
    );
    // ------------------------------------------------------------ pages
    // ------------------------------------------------------------- bulk
    Value::Object(s)
}

/// What an endpoint receives (OpenAPI 3.1 `webhooks`).
fn webhooks() -> Value {
    let header = |name: &str, description: &str| json!({ "name": name, "in": "header", "required": true, "description": description, "schema": { "type": "string" } });
    json!({
        "event": {
            "post": {
                "operationId": "receiveWebhookEvent",
                "tags": [SETTINGS],
                "summary": "An event delivered to a webhook endpoint",
                "description": "Sent to every enabled endpoint whose filter matches the event type (`webhook.test` whatever the filter). The body is signed: verify `webhook-signature` before trusting it, and use `webhook-id` to drop duplicates.",
                "parameters": [
                    header("webhook-id", "The message id, equal to the body's `id`; the same on every retry."),
                    header("webhook-timestamp", "Unix seconds when this attempt was signed."),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256 over \"{webhook-id}.{webhook-timestamp}.{body}\">`, keyed by the base64-decoded part of the endpoint's `whsec_` secret; during a secret rotation, one signature per valid secret, space separated."),
                    header("X-Signature", "The same value as `webhook-signature`."),
                ],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": r("WebhookPayload") } },
                },
                "responses": {
                    "2XX": { "description": "Received. Anything else, or no answer within the timeout, is retried later." },
                },
            },
        },
    })
}

fn parameters() -> Value {
    json!({
        "Limit": {
            "name": "limit", "in": "query", "required": false,
            "description": "Page size.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": crate::paging::MAX_LIMIT,
                "default": crate::paging::DEFAULT_LIMIT,
            },
        },
        "Cursor": {
            "name": "cursor", "in": "query", "required": false,
            "description": "The `nextCursor` of the previous page (opaque).",
            "schema": { "type": "string" },
        },
        "From": {
            "name": "from", "in": "query", "required": false,
            "description": "Created at or after (inclusive): an RFC 3339 time, or a date meaning midnight UTC.",
            "schema": r("Instant"),
        },
        "To": {
            "name": "to", "in": "query", "required": false,
            "description": "Created before (exclusive): an RFC 3339 time, or a date meaning midnight UTC.",
            "schema": r("Instant"),
        },
        "Format": {
            "name": "format", "in": "query", "required": false,
            "description": "Export format.",
            "schema": { "type": "string", "enum": ["jsonl", "csv"], "default": "jsonl" },
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "The request's `requestId`, for calls without a body; if the body has a `requestId` too they must be equal.",
            "schema": { "type": "string", "format": "uuid" },
        },
    })
}

fn headers() -> Value {
    json!({
        "XRequestId": {
            "description": "The client's `X-Request-Id`, or one the server generated.",
            "schema": { "type": "string" },
        },
        "IdempotentReplayed": {
            "description": "`true` when this is the stored answer to an earlier request with the same `requestId`.",
            "schema": { "type": "string", "enum": ["true"] },
        },
        "RetryAfter": {
            "description": "Seconds to wait before retrying.",
            "schema": { "type": "integer", "minimum": 1 },
        },
        "ContentDisposition": {
            "description": "`attachment; filename=\"<name>.<csv|jsonl>\"`.",
            "schema": { "type": "string" },
        },
    })
}
