//! Connections between a seller and a buyer organization.

use super::path_id;
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Named, Page, Query};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use ledger_core::domain::connection::ConnectionStatus;
use ledger_core::domain::Command;
use ledger_core::events::{Party, Permission};
use ledger_core::ids::{ConnectionId, OrganizationId};
use projections::sql::queries;
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connections", post(request).get(list))
        .route("/connections/{id}", get(get_one))
        .route("/connections/{id}/accept", post(accept))
        .route("/connections/{id}/reject", post(reject))
}

fn require_write(caller: &Caller) -> ApiResult<()> {
    caller.require_any(Permission::InvoicesWrite, Permission::InvoicesApprove)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestConnection {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    counterparty_organization_id: String,
    role: String,
}

async fn request(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<RequestConnection>,
) -> ApiResult<Response> {
    require_write(&caller)?;
    let counterparty: OrganizationId = body
        .value
        .counterparty_organization_id
        .parse()
        .map_err(|_| ApiError::Validation("counterpartyOrganizationId must be a UUID".into()))?;
    let role = match body.value.role.as_str() {
        "SELLER" => Party::Seller,
        "BUYER" => Party::Buyer,
        _ => return Err(ApiError::Validation("role must be SELLER or BUYER".into())),
    };
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::RequestConnection { counterparty, role },
            render: render_outcome(),
        },
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rejection {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    reason: Option<String>,
}

async fn accept(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let id = answerable(&caller, &id)?;
    answer(caller, &state, body, Command::AcceptConnection { id }).await
}

async fn reject(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Rejection>,
) -> ApiResult<Response> {
    let id = answerable(&caller, &id)?;
    let reason = body.value.reason.clone();
    answer(
        caller,
        &state,
        body,
        Command::RejectConnection { id, reason },
    )
    .await
}

fn answerable(caller: &Caller, id: &str) -> ApiResult<ConnectionId> {
    require_write(caller)?;
    path_id(id, "connection")
}

async fn answer<T>(
    caller: Caller,
    state: &AppState,
    body: JsonBody<T>,
    command: Command,
) -> ApiResult<Response> {
    execute(
        state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command,
            render: render_outcome(),
        },
    )
    .await
}

async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesRead)?;
    let id: ConnectionId = path_id(&id, "connection")?;
    let org = caller.organization_id;
    let c = state
        .sql(|c| queries::access::connection_of(c, org, id))?
        .ok_or(ApiError::NotFound("connection"))?;
    Ok(json_value(&views::connection(
        &c.link,
        c.rejection_reason.as_deref(),
    )))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Named<ConnectionStatus>>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesRead)?;
    let status = q.status.map(|s| s.0.as_str());
    let org = caller.organization_id;
    let page = queries::PageRequest {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
        descending: false,
    };
    let (items, next) = state.sql(|c| queries::access::connections_of(c, org, status, &page))?;
    Ok(json_value(&json!({
        "data": items
            .iter()
            .map(|c| views::connection(&c.link, c.rejection_reason.as_deref()))
            .collect::<Vec<_>>(),
        "nextCursor": next.as_deref().map(paging::encode_cursor),
    })))
}
