//! Settings: API keys.

use super::path_id;
use crate::app::AppState;
use crate::auth::{new_secret, Caller};
use crate::body::JsonBody;
use crate::commands::{execute, json_value, render_outcome, render_view, Request, View};
use crate::error::{ApiError, ApiResult};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, post};
use axum::Router;
use ledger_core::domain::Command;
use ledger_core::events::Permission;
use ledger_core::ids::ApiKeyId;
use ledger_core::time::Timestamp;
use projections::sql::queries;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/api-keys", post(create_key).get(list_keys))
        .route("/settings/api-keys/{id}", delete(revoke_key).get(get_key))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKey {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    name: String,
    permissions: Vec<String>,
    expires_at: Option<String>,
}

const MAX_PERMISSIONS: usize = 20;

async fn create_key(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<CreateKey>,
) -> ApiResult<Response> {
    caller.require(Permission::SettingsWrite)?;
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
    caller.require(Permission::SettingsRead)?;
    let org = caller.organization_id;
    let data: Vec<Value> = state
        .sql(|c| queries::access::api_keys_of(c, org))?
        .iter()
        .map(views::api_key)
        .collect();
    Ok(json_value(&json!({ "data": data, "nextCursor": null })))
}

async fn get_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::SettingsRead)?;
    let id: ApiKeyId = path_id(&id, "API key")?;
    let org = caller.organization_id;
    let k = state
        .sql(|c| queries::access::api_key_of(c, org, id))?
        .ok_or(ApiError::NotFound("API key"))?;
    Ok(json_value(&views::api_key(&k)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
}

async fn revoke_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    caller.require(Permission::SettingsWrite)?;
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
