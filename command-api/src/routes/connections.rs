//! Connections between a seller and a buyer organization.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{Empty, JsonBody, OptionalReason, RequestIdField};
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Named, Page, Query};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use ledger_core::domain::connection::ConnectionStatus;
use ledger_core::domain::Command;
use ledger_core::events::Party;
use ledger_core::ids::{ConnectionId, OrganizationId};
use projections::schema;
use projections::sql::queries;
use schemars::JsonSchema;
use serde::Deserialize;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::REQUEST_CONNECTION, request),
        Route::new(&operations::LIST_CONNECTIONS, list),
        Route::new(&operations::GET_CONNECTION, get_one),
        Route::new(&operations::ACCEPT_CONNECTION, accept),
        Route::new(&operations::REJECT_CONNECTION, reject),
    ]
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateConnectionRequest")]
struct RequestConnection {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// The other organization.
    #[schemars(with = "schema::Uuid")]
    counterparty_organization_id: String,
    /// The caller's role in the pair.
    #[schemars(with = "schema::Party")]
    role: String,
}

async fn request(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<RequestConnection>,
) -> ApiResult<Response> {
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
    body: JsonBody<OptionalReason>,
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

fn answerable(_caller: &Caller, id: &str) -> ApiResult<ConnectionId> {
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
    let status = q.status.map(|s| s.0.as_str());
    let org = caller.organization_id;
    let page = queries::PageRequest {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
        descending: false,
    };
    let (items, next) = state.sql(|c| queries::access::connections_of(c, org, status, &page))?;
    Ok(json_value(&views::Page {
        data: items
            .iter()
            .map(|c| views::connection_view(&c.link, c.rejection_reason.as_deref()))
            .collect(),
        next_cursor: next.as_deref().map(paging::encode_cursor),
    }))
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const REQUEST_CONNECTION: Op = Op {
        method: Post,
        path: "/api/v1/connections",
        operation_id: "requestConnection",
        tag: CONNECTIONS,
        summary: "Request a connection",
        description: "Needs `invoices:write` or `invoices:approve`. `role` is the caller's role in the pair. The connection starts PENDING until the counterparty accepts it. Connecting to oneself, or asking for a pair (seller, buyer) that already has a PENDING or ACTIVE connection, is `400`. An unknown counterparty is `404`.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<RequestConnection>),
        success: Success::Json("Connection"),
        fails: &[Fail::Missing("organization")],
        ..BASE
    };

    pub const LIST_CONNECTIONS: Op = Op {
        path: "/api/v1/connections",
        operation_id: "listConnections",
        tag: CONNECTIONS,
        summary: "List connections",
        description:
            "Needs `invoices:read`. The connections the caller is a party to, oldest first.",
        auth: Auth::Key(INVOICES_READ),
        query: &[
            q(
                "status",
                "Only connections in this state.",
                Ty::Schema("ConnectionStatus"),
            ),
            Param::Limit,
            Param::Cursor,
        ],
        success: Success::Json("ConnectionPage"),
        ..BASE
    };

    pub const GET_CONNECTION: Op = Op {
        path: "/api/v1/connections/{id}",
        operation_id: "getConnection",
        tag: CONNECTIONS,
        summary: "Get a connection",
        description: "Needs `invoices:read`. Either party may read it.",
        auth: Auth::Key(INVOICES_READ),
        success: Success::Json("Connection"),
        ..BASE
    };

    pub const ACCEPT_CONNECTION: Op = Op {
        method: Post,
        path: "/api/v1/connections/{id}/accept",
        operation_id: "acceptConnection",
        tag: CONNECTIONS,
        summary: "Accept a connection request",
        description: "Needs `invoices:write` or `invoices:approve`. The counterparty only (the requester is `403`); PENDING → ACTIVE.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Connection"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REJECT_CONNECTION: Op = Op {
        method: Post,
        path: "/api/v1/connections/{id}/reject",
        operation_id: "rejectConnection",
        tag: CONNECTIONS,
        summary: "Reject a connection request",
        description: "Needs `invoices:write` or `invoices:approve`. The counterparty only (the requester is `403`); PENDING → REJECTED, with the optional `reason` shown to both parties as `rejectionReason`.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<OptionalReason>),
        success: Success::Json("Connection"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };
}
