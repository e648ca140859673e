//! `POST /admin/clock`: moves the server's clock, only when started with
//! `--test-clock` (otherwise the route does not exist). Lets black-box tests
//! drive due dates, retries and retention without sleeping.

use super::Route;
use crate::app::AppState;
use crate::auth::Admin;
use crate::body::JsonBody;
use crate::commands::json_value;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::response::Response;
use ledger_core::time::{Clock, ManualClock, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::GET_CLOCK, get_clock),
        Route::new(&operations::SET_CLOCK, set_clock),
    ]
}

/// Either or both; `now` is applied first. No `requestId`: this call is not
/// idempotent.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "SetClockRequest")]
struct SetClock {
    /// Set the clock to this time.
    #[schemars(with = "Option<projections::schema::Timestamp>")]
    now: Option<String>,
    /// Then move the clock by this many seconds (may be negative).
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
    Ok(json_value(&ClockView::of(clock)))
}

async fn get_clock(_: Admin, State(state): State<AppState>) -> ApiResult<Response> {
    let clock = state.manual_clock.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(json_value(&ClockView::of(clock)))
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Clock")]
pub struct ClockView {
    /// The server's current time.
    #[schemars(with = "projections::schema::Timestamp")]
    now: String,
}

impl ClockView {
    fn of(clock: &ManualClock) -> Self {
        ClockView {
            now: clock.now().rfc3339(),
        }
    }
}

pub fn add_schemas(c: &mut projections::schema::Components) {
    c.add::<ClockView>();
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const GET_CLOCK: Op = Op {
        path: "/api/v1/admin/clock",
        operation_id: "getClock",
        tag: ADMIN,
        summary: "Read the test clock",
        description: "Operator only, and only when the server runs with `--test-clock` (otherwise `404`). The server's current time.",
        auth: Auth::Admin,
        success: Success::Json("Clock"),
        ..BASE
    };

    pub const SET_CLOCK: Op = Op {
        method: Post,
        path: "/api/v1/admin/clock",
        operation_id: "setClock",
        tag: ADMIN,
        summary: "Move the test clock",
        description: "Operator only, and only when the server runs with `--test-clock` (otherwise `404`). Sets the clock to `now`, then moves it by `advanceSeconds` (either or both), so tests can drive due dates, retries and retention without sleeping. Not idempotent: it takes no `requestId`.",
        auth: Auth::Admin,
        body: Body::Optional(json::<SetClock>),
        success: Success::Json("Clock"),
        idempotency: Idem::None,
        ..BASE
    };
}
