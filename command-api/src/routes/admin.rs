//! Operator routes (`X-Admin-Token`): organizations, deposits, collateral,
//! freezes, and the raw event stream for auditors.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::{new_secret, Admin};
use crate::body::{JsonBody, Reason, RequestIdField};
use crate::commands::{execute, render_view, Request, View};
use crate::error::{ApiError, ApiResult};
use crate::query::{self, Query};

use axum::extract::{Path, State};
use axum::http::{header, HeaderName};
use axum::response::{IntoResponse, Response};
use ledger_core::domain::Command;
use ledger_core::events::{Actor, Event};
use ledger_core::ids::OrganizationId;
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency};
use projections::schema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::CREATE_ORGANIZATION, create_organization),
        Route::new(&operations::CREATE_DEPOSIT, deposit),
        Route::new(&operations::SET_COLLATERAL, collateral),
        Route::new(&operations::FREEZE_BALANCE, freeze),
        Route::new(&operations::UNFREEZE_BALANCE, unfreeze),
        Route::new(&operations::LIST_EVENTS, events),
    ]
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateOrganizationRequest")]
struct CreateOrganization {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// 1 to 200 characters, trimmed.
    #[schemars(length(min = 1, max = 200), pattern(r"\S"))]
    name: String,
}

async fn create_organization(
    _: Admin,
    State(state): State<AppState>,
    body: JsonBody<CreateOrganization>,
) -> ApiResult<Response> {
    let (secret, hash) = new_secret("es_");
    let render = render_view(View::new_organization(&state.master_key, &secret));
    execute(
        &state,
        Request {
            actor: Actor::Admin,
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::CreateOrganization {
                name: body.value.name,
                api_key_secret_hash: hash,
            },
            render,
        },
    )
    .await
}

fn currency(raw: &str) -> ApiResult<Currency> {
    Currency::parse(raw).map_err(|e| ApiError::Validation(e.to_string()))
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "DepositRequest")]
struct Deposit {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "schema::Currency")]
    currency: String,
    /// Greater than zero.
    #[schemars(with = "schema::Money")]
    amount: String,
    /// Kept on the DEPOSIT transaction; at most 200 characters. Default empty.
    #[serde(default)]
    reference: String,
}

async fn deposit(
    _: Admin,
    State(state): State<AppState>,
    Path(org_id): Path<String>,
    body: JsonBody<Deposit>,
) -> ApiResult<Response> {
    let organization_id: OrganizationId = path_id(&org_id, "organization")?;
    let currency = currency(&body.value.currency)?;
    let amount = Amount::parse(currency, &body.value.amount)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    let render = render_view(View::Deposit);
    execute(
        &state,
        Request {
            actor: Actor::Admin,
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::Deposit {
                organization_id,
                currency,
                amount,
                reference: body.value.reference,
            },
            render,
        },
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "SetCollateralRequest")]
struct Collateral {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Zero or more; replaces the current collateral. At most `total - reserved`.
    #[schemars(with = "schema::Money")]
    amount: String,
}

async fn collateral(
    _: Admin,
    State(state): State<AppState>,
    Path((org_id, cur)): Path<(String, String)>,
    body: JsonBody<Collateral>,
) -> ApiResult<Response> {
    let organization_id = path_id(&org_id, "organization")?;
    let currency = currency(&cur)?;
    let amount = Amount::parse_non_negative(currency, &body.value.amount)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    execute(
        &state,
        Request {
            actor: Actor::Admin,
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::SetCollateral {
                organization_id,
                currency,
                amount,
            },
            render: crate::commands::render_outcome(),
        },
    )
    .await
}

async fn freeze(
    admin: Admin,
    state: State<AppState>,
    path: Path<(String, String)>,
    body: JsonBody<Reason>,
) -> ApiResult<Response> {
    freeze_or_unfreeze(admin, state, path, body, true).await
}

async fn unfreeze(
    admin: Admin,
    state: State<AppState>,
    path: Path<(String, String)>,
    body: JsonBody<Reason>,
) -> ApiResult<Response> {
    freeze_or_unfreeze(admin, state, path, body, false).await
}

async fn freeze_or_unfreeze(
    _: Admin,
    State(state): State<AppState>,
    Path((org_id, cur)): Path<(String, String)>,
    body: JsonBody<Reason>,
    freeze: bool,
) -> ApiResult<Response> {
    let organization_id = path_id(&org_id, "organization")?;
    let currency = currency(&cur)?;
    let reason = body.value.required()?;
    let command = if freeze {
        Command::FreezeBalance {
            organization_id,
            currency,
            reason,
        }
    } else {
        Command::UnfreezeBalance {
            organization_id,
            currency,
            reason,
        }
    };
    execute(
        &state,
        Request {
            actor: Actor::Admin,
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command,
            render: crate::commands::render_outcome(),
        },
    )
    .await
}

const EVENTS_DEFAULT_LIMIT: u64 = 1000;
const EVENTS_MAX_LIMIT: u64 = 10_000;

/// `GET /admin/events?after=SEQ&limit=N`: JSON lines, oldest first, each with
/// its chain hash so an auditor can verify the chain without trusting us.
#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default, deserialize_with = "query::optional")]
    after: Option<Seq>,
    #[serde(default, deserialize_with = "query::optional")]
    limit: Option<EventsLimit>,
}

struct Seq(u64);

impl std::str::FromStr for Seq {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(Seq)
            .map_err(|_| "after must be a sequence number")
    }
}

struct EventsLimit(u64);

impl std::str::FromStr for EventsLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .ok()
            .filter(|n| (1..=EVENTS_MAX_LIMIT).contains(n))
            .map(EventsLimit)
            .ok_or_else(|| format!("limit must be 1 to {EVENTS_MAX_LIMIT}"))
    }
}

async fn events(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    let after = q.after.map_or(0, |s| s.0);
    let limit = q.limit.map_or(EVENTS_DEFAULT_LIMIT, |l| l.0);
    let log = state.log.clone();
    let body = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let mut out = Vec::new();
        for raw in log.read_raw(after.saturating_add(1)).take(limit as usize) {
            let raw = raw.map_err(|e| ApiError::internal("reading the log", e))?;
            let event = ledger_core::codec::decode_event(&raw.encoded)
                .map_err(|e| ApiError::internal("decoding the log", e))?;
            let line = event_line(&event, &raw.encoded, &raw.hash);
            serde_json::to_writer(&mut out, &line)
                .map_err(|e| ApiError::internal("encoding", e))?;
            out.push(b'\n');
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal("event stream task", e))??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                HeaderName::from_static(crate::master_key::ID_HEADER),
                state.master_key.id(),
            ),
        ],
        body,
    )
        .into_response())
}

/// One event as auditors see it: the envelope, the decoded event, and the
/// exact stored bytes (base64) with their chain hash.
pub fn event_line(
    event: &ledger_core::events::RecordedEvent,
    encoded: &[u8],
    hash: &[u8; 32],
) -> AdminEvent {
    use base64::Engine as _;
    let stream = event.stream();
    AdminEvent {
        actor: projections::views::value(event.actor),
        at: event.at.rfc3339(),
        data: event_data(&event.event),
        encoded: base64::engine::general_purpose::STANDARD.encode(encoded),
        hash: hex::encode(hash),
        request_id: event.request_id.map(|r| r.to_string()),
        seq: event.seq,
        stream: StreamView {
            id: stream.id.to_string(),
            kind: format!("{:?}", stream.kind),
        },
        kind: event.event.type_name(),
        version: event.version,
    }
}

/// One line of the global event stream. Fields in the byte order of their
/// JSON names.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "AdminEvent")]
pub struct AdminEvent {
    /// Who caused it.
    pub actor: serde_json::Value,
    #[schemars(with = "schema::Timestamp")]
    pub at: String,
    /// The event's payload.
    pub data: serde_json::Value,
    /// The exact stored bytes, base64.
    pub encoded: String,
    /// Chain hash.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: String,
    #[schemars(with = "Option<schema::Uuid>")]
    pub request_id: Option<String>,
    pub seq: u64,
    pub stream: StreamView,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Version of the event's stream after it.
    pub version: u64,
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "AdminEventStream")]
pub struct StreamView {
    #[schemars(with = "schema::Uuid")]
    pub id: String,
    pub kind: String,
}

pub fn add_schemas(c: &mut schema::Components) {
    c.add::<AdminEvent>();
}

/// The payload of an event, signing secrets withheld: the operator has no
/// route that shows a tenant's secret, so the event stream shows none either
/// (new ones are sealed anyway; logs from before sealing hold them in clear,
/// in `encoded` too, which must stay the stored bytes for the chain).
fn event_data(event: &Event) -> serde_json::Value {
    let mut data = event_payload(event);
    if let serde_json::Value::Object(m) = &mut data {
        if let Some(secret) = m.get_mut("secret") {
            *secret = serde_json::Value::String("[withheld]".into());
        }
    }
    data
}

fn event_payload(event: &Event) -> serde_json::Value {
    // Externally tagged: `{ "InvoiceCreated": {...} }`; the payload alone
    // reads better. (The tag is the variant's, which is not always the type
    // name: `ConnectionRejectedBecause` is a `ConnectionRejected`.)
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .next()
            .map_or(serde_json::Value::Null, |(_, payload)| payload),
        Ok(other) => other,
        Err(_) => serde_json::Value::Null,
    }
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const CREATE_ORGANIZATION: Op = Op {
        method: Post,
        path: "/api/v1/admin/organizations",
        operation_id: "createOrganization",
        tag: ADMIN,
        summary: "Create an organization",
        description: "Operator only. Creates the organization and its first API key (named `default`, permissions `[\"*\"]`). The key's secret is in this response only (and in an idempotent replay of it).",
        auth: Auth::Admin,
        body: Body::Required(json::<CreateOrganization>),
        success: Success::Json("OrganizationCreated"),
        ..BASE
    };

    pub const CREATE_DEPOSIT: Op = Op {
        method: Post,
        path: "/api/v1/admin/organizations/{orgId}/deposits",
        operation_id: "createDeposit",
        tag: ADMIN,
        summary: "Deposit funds",
        description: "Operator only. Credits the organization's balance in `currency` (created on first use) and answers the DEPOSIT transaction. The `reference` is kept on the transaction. Allowed on a frozen balance.",
        auth: Auth::Admin,
        body: Body::Required(json::<Deposit>),
        success: Success::Json("Transaction"),
        ..BASE
    };

    pub const SET_COLLATERAL: Op = Op {
        method: Put,
        path: "/api/v1/admin/organizations/{orgId}/balances/{currency}/collateral",
        operation_id: "setCollateral",
        tag: ADMIN,
        summary: "Set the collateral of a balance",
        description: "Operator only. Sets (replaces) the collateral held on the balance; `\"0\"` removes it. Collateral is not available: `available = total - reserved - collateral`. More than `total - reserved` is `400 INSUFFICIENT_BALANCE`.",
        auth: Auth::Admin,
        body: Body::Required(json::<Collateral>),
        success: Success::Json("Balance"),
        fails: &[Fail::Funds],
        ..BASE
    };

    pub const FREEZE_BALANCE: Op = Op {
        method: Post,
        path: "/api/v1/admin/organizations/{orgId}/balances/{currency}/freeze",
        operation_id: "freezeBalance",
        tag: ADMIN,
        summary: "Freeze a balance",
        description: "Operator only. No funds leave a frozen balance: settlements from or to it fail (the payment is FAILED, the invoice stays approved, the reservation is kept), withdrawals cannot be submitted or approved. Freezing a frozen balance is `400 INVALID_STATE_TRANSITION` (`currentState: FROZEN`).",
        auth: Auth::Admin,
        body: Body::Required(json::<Reason>),
        success: Success::Json("Balance"),
        fails: &[Fail::State],
        ..BASE
    };

    pub const UNFREEZE_BALANCE: Op = Op {
        method: Post,
        path: "/api/v1/admin/organizations/{orgId}/balances/{currency}/unfreeze",
        operation_id: "unfreezeBalance",
        tag: ADMIN,
        summary: "Unfreeze a balance",
        description: "Operator only. Failed payments can then be completed with `POST /api/v1/payments/retry-failed`. Unfreezing a balance that is not frozen is `400 INVALID_STATE_TRANSITION` (`currentState: ACTIVE`).",
        auth: Auth::Admin,
        body: Body::Required(json::<Reason>),
        success: Success::Json("Balance"),
        fails: &[Fail::State],
        ..BASE
    };

    pub const LIST_EVENTS: Op = Op {
        path: "/api/v1/admin/events",
        operation_id: "listEvents",
        tag: ADMIN,
        summary: "Global event stream",
        description: "Operator only. Every event of the log after sequence `after`, oldest first, as JSON lines, each with its stored bytes (base64) and chain hash so an auditor can verify the chain. Page by passing the last `seq` seen as `after`; an empty body means nothing newer.",
        auth: Auth::Admin,
        query: &[
            q(
                "after",
                "Return events with a sequence number greater than this.",
                Ty::Int {
                    min: 0,
                    max: u64::MAX,
                    default: Some(0),
                },
            ),
            q(
                "limit",
                "At most this many events.",
                Ty::Int {
                    min: 1,
                    max: 10_000,
                    default: Some(1000),
                },
            ),
        ],
        success: Success::JsonLines("AdminEvent"),
        ..BASE
    };
}
