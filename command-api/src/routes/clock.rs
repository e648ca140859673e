//! `POST /admin/clock`: moves the server's clock, only when started with
//! `--test-clock` (otherwise the route does not exist). Lets black-box tests
//! drive due dates, retries and retention without sleeping.

use crate::app::AppState;
use crate::auth::Admin;
use crate::body::JsonBody;
use crate::commands::json_value;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use ledger_core::time::{Clock, Timestamp};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/clock", post(set_clock).get(get_clock))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetClock {
    now: Option<String>,
    advance_seconds: Option<i64>,
}

async fn set_clock(
    _: Admin,
    State(state): State<AppState>,
    body: JsonBody<SetClock>,
) -> ApiResult<Response> {
    let clock = state.manual_clock.as_ref().ok_or(ApiError::RouteNotFound)?;
    if let Some(now) = body.value.now.as_deref() {
        let t = Timestamp::parse_rfc3339(now)
            .ok_or_else(|| ApiError::Validation("now must be an RFC 3339 time".into()))?;
        clock.set(t);
    }
    if let Some(s) = body.value.advance_seconds {
        clock.advance_seconds(s);
    }
    Ok(json_value(&json!({ "now": clock.now().rfc3339() })))
}

async fn get_clock(_: Admin, State(state): State<AppState>) -> ApiResult<Response> {
    let clock = state.manual_clock.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(json_value(&json!({ "now": clock.now().rfc3339() })))
}
