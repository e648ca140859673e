//! Settings: API keys.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::{new_secret, Caller};
use crate::body::{Empty, JsonBody, RequestIdField};
use crate::commands::{execute, json_value, render_outcome, render_view, Request, View};
use crate::error::{ApiError, ApiResult};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use ledger_core::domain::Command;
use ledger_core::events::Permission;
use ledger_core::ids::ApiKeyId;
use ledger_core::time::Timestamp;
use projections::schema;
use projections::sql::queries;
use schemars::JsonSchema;
use serde::Deserialize;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::CREATE_API_KEY, create_key),
        Route::new(&operations::LIST_API_KEYS, list_keys),
        Route::new(&operations::GET_API_KEY, get_key),
        Route::new(&operations::REVOKE_API_KEY, revoke_key),
    ]
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateApiKeyRequest")]
struct CreateKey {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// 1 to 200 characters, not blank.
    #[schemars(length(min = 1, max = 200), pattern(r"\S"))]
    name: String,
    /// Each must be held by the calling key.
    #[schemars(with = "Vec<schema::Permission>", length(min = 1, max = MAX_PERMISSIONS))]
    permissions: Vec<String>,
    /// In the future. Default: never.
    #[schemars(with = "Option<schema::Timestamp>")]
    expires_at: Option<String>,
}

const MAX_PERMISSIONS: usize = 20;

async fn create_key(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let v = body.value;
    if v.permissions.len() > MAX_PERMISSIONS {
        return Err(ApiError::Validation("too many permissions".into()));
    }
    let permissions = v
        .permissions
        .iter()
        .map(|p| {
            Permission::parse(p)
                .ok_or_else(|| ApiError::Validation(format!("unknown permission `{p}`")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    // A key cannot grant what its creator lacks.
    if let Some(p) = permissions.iter().find(|p| !caller.allows(**p)) {
        return Err(ApiError::Forbidden(format!(
            "cannot grant `{}`: the calling key lacks it",
            p.name()
        )));
    }
    let expires_at = v
        .expires_at
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| ApiError::Validation("expiresAt must be an RFC 3339 time".into()))
        })
        .transpose()?;
    let (secret, secret_hash) = new_secret("es_");
    let render = render_view(View::with_secret(&state.master_key, &secret));
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::CreateApiKey {
                name: v.name,
                permissions,
                secret_hash,
                expires_at,
            },
            render,
        },
    )
    .await
}

async fn list_keys(caller: Caller, State(state): State<AppState>) -> ApiResult<Response> {
    let org = caller.organization_id;
    let keys = state.sql(|c| queries::access::api_keys_of(c, org))?;
    Ok(json_value(&views::Page {
        data: keys.iter().map(views::api_key_view).collect(),
        next_cursor: None,
    }))
}

async fn get_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: ApiKeyId = path_id(&id, "API key")?;
    let org = caller.organization_id;
    let k = state
        .sql(|c| queries::access::api_key_of(c, org, id))?
        .ok_or(ApiError::NotFound("API key"))?;
    Ok(json_value(&views::api_key(&k)))
}

async fn revoke_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let id: ApiKeyId = path_id(&id, "API key")?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::RevokeApiKey { id },
            render: render_outcome(),
        },
    )
    .await
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const CREATE_API_KEY: Op = Op {
        method: Post,
        path: "/api/v1/settings/api-keys",
        operation_id: "createApiKey",
        tag: SETTINGS,
        summary: "Create an API key",
        description: "Needs `settings:write`. A key cannot be granted a permission the calling key lacks (`403`). The secret is in this response only (and in an idempotent replay of it); it is stored hashed.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Required(json::<CreateKey>),
        success: Success::Json("ApiKeyCreated"),
        fails: &[Fail::Party],
        ..BASE
    };

    pub const LIST_API_KEYS: Op = Op {
        path: "/api/v1/settings/api-keys",
        operation_id: "listApiKeys",
        tag: SETTINGS,
        summary: "List API keys",
        description: "Needs `settings:read`. The organization's keys, revoked ones included, without secrets. All of them in one page (`nextCursor` is always null).",
        auth: Auth::Key(SETTINGS_READ),
        success: Success::Json("ApiKeyPage"),
        ..BASE
    };

    pub const GET_API_KEY: Op = Op {
        path: "/api/v1/settings/api-keys/{id}",
        operation_id: "getApiKey",
        tag: SETTINGS,
        summary: "Get an API key",
        description: "Needs `settings:read`. Without its secret.",
        auth: Auth::Key(SETTINGS_READ),
        success: Success::Json("ApiKey"),
        ..BASE
    };

    pub const REVOKE_API_KEY: Op = Op {
        method: Delete,
        path: "/api/v1/settings/api-keys/{id}",
        operation_id: "revokeApiKey",
        tag: SETTINGS,
        summary: "Revoke an API key",
        description: "Needs `settings:write`. The key is refused (`401`) from the next request on. Revoking a revoked key changes nothing and answers it again.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("ApiKey"),
        ..BASE
    };
}
