//! Settings: webhook endpoints, their deliveries, test messages and manual
//! redelivery. Endpoint changes are commands (events in the log), read back
//! from the SQL read models (`webhook_endpoints`, secrets blanked); deliveries
//! live in the outbox (`projections::sql::outbox`, rows of the same
//! database), drained by `crate::webhooks`.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{Empty, JsonBody, RequestIdField};
use crate::commands::{execute, json_value, render_view, Request, View};
use crate::error::{ApiError, ApiResult};
use crate::master_key::Purpose;
use crate::paging;
use crate::query::{self, Named, Page, Query};
use crate::views;
use crate::webhooks::{signing, ssrf};
use axum::extract::{Path, State};
use axum::response::Response;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::Command;
use ledger_core::ids::WebhookEndpointId;
use projections::schema;
use projections::sql::outbox::{self, Delivery, DeliveryStatus, Outbox};
use projections::webhooks::{is_valid_filter, TEST_EVENT_TYPE};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::CREATE_WEBHOOK_ENDPOINT, create),
        Route::new(&operations::LIST_WEBHOOK_ENDPOINTS, list),
        Route::new(&operations::GET_WEBHOOK_ENDPOINT, get_one),
        Route::new(&operations::UPDATE_WEBHOOK_ENDPOINT, update),
        Route::new(&operations::DELETE_WEBHOOK_ENDPOINT, remove),
        Route::new(&operations::ROTATE_WEBHOOK_SECRET, rotate_secret),
        Route::new(&operations::TEST_WEBHOOK_ENDPOINT, send_test),
        Route::new(&operations::LIST_WEBHOOK_DELIVERIES, deliveries),
        Route::new(&operations::REDELIVER_WEBHOOK, redeliver),
    ]
}

const MAX_FILTERS: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long a rotated-out secret keeps signing.
const ROTATION_OVERLAP_SECONDS: i64 = 24 * 3600;

/// `null` → `Some(None)` (clear), absent → `None` (leave as is).
fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_events(events: Vec<String>) -> ApiResult<Vec<String>> {
    if events.is_empty() {
        return Err(ApiError::Validation(
            "events must name at least one event type (`*` for all)".into(),
        ));
    }
    if events.len() > MAX_FILTERS {
        return Err(ApiError::Validation(format!(
            "at most {MAX_FILTERS} event filters"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if !is_valid_filter(&e) {
            return Err(ApiError::Validation(format!(
                "unknown event type `{}`: use `*`, `<family>.*` or a name from the webhook event list",
                e.chars().take(100).collect::<String>()
            )));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn check_description(d: Option<String>) -> ApiResult<Option<String>> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(ApiError::Validation(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        ))),
        other => Ok(other),
    }
}

async fn check_url(state: &AppState, raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    ssrf::check_endpoint_url(raw, state.config.webhook_allow_private)
        .await
        .map_err(ApiError::Validation)?;
    Ok(raw.to_string())
}

fn outbox_of(state: &AppState) -> ApiResult<&Outbox> {
    Ok(state.projections.outbox())
}

/// The caller's endpoint (not deleted); anything else is 404. Without its
/// secrets: the read models keep none.
fn own_endpoint(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<WebhookEndpoint> {
    let id: WebhookEndpointId = path_id(raw, "webhook endpoint")?;
    state
        .sql(|c| outbox::endpoint(c, id))?
        .filter(|e| e.organization_id == caller.organization_id && !e.deleted)
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// A new signing secret: sealed for the log, and the endpoint view that
/// shows it once (create and rotate only).
fn new_signing_secret(state: &AppState) -> (String, ledger_core::engine::Render) {
    let secret = signing::new_secret();
    let sealed = state
        .master_key
        .seal(Purpose::WebhookSecret, secret.as_bytes());
    let render = render_view(View::with_secret(&state.master_key, &secret));
    (sealed, render)
}

/// One event on its way to one endpoint. Fields in the byte order of their
/// JSON names.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "WebhookDelivery")]
pub struct DeliveryView<'a> {
    attempts: Vec<AttemptView<'a>>,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Uuid")]
    endpoint_id: String,
    /// The message id: the payload's `id` and the `webhook-id` header.
    event_id: &'a str,
    #[schemars(with = "schema::WebhookEventType")]
    event_type: &'a str,
    #[schemars(with = "schema::Uuid")]
    id: String,
    /// When it is tried next (while PENDING).
    #[schemars(with = "Option<schema::Timestamp>")]
    next_attempt_at: Option<String>,
    #[schemars(with = "schema::WebhookPayload")]
    payload: Value,
    #[schemars(with = "schema::DeliveryStatus")]
    status: &'static str,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DeliveryAttempt")]
pub struct AttemptView<'a> {
    #[schemars(with = "schema::Timestamp")]
    at: String,
    duration_ms: u64,
    error: &'a Option<String>,
    /// The start of the response body.
    response_body: &'a Option<String>,
    /// The HTTP status, when a response came back.
    status_code: Option<u16>,
}

pub fn add_schemas(c: &mut schema::Components) {
    c.add::<DeliveryView>().add::<views::Page<DeliveryView>>();
}

pub fn delivery_view(d: &Delivery) -> DeliveryView<'_> {
    DeliveryView {
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptView {
                at: a.at.rfc3339(),
                duration_ms: a.duration_ms,
                error: &a.error,
                response_body: &a.response_body,
                status_code: a.status_code,
            })
            .collect(),
        created_at: d.created_at.rfc3339(),
        endpoint_id: d.endpoint_id.to_string(),
        event_id: &d.event_id,
        event_type: &d.event_type,
        id: d.id.to_string(),
        next_attempt_at: d.next_attempt_at.map(|t| t.rfc3339()),
        payload: serde_json::from_slice::<Value>(&d.payload).unwrap_or(Value::Null),
        status: d.status.as_str(),
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateWebhookEndpointRequest")]
struct CreateEndpoint {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Where events are POSTed.
    #[schemars(url)]
    url: String,
    #[schemars(with = "Vec<schema::WebhookEventFilter>", length(min = 1, max = 50))]
    events: Vec<String>,
    #[schemars(length(max = 500))]
    description: Option<String>,
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<CreateEndpoint>,
) -> ApiResult<Response> {
    let v = body.value;
    let url = check_url(&state, &v.url).await?;
    let events = check_events(v.events)?;
    let description = check_description(v.description)?;
    let (secret, render) = new_signing_secret(&state);
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::CreateWebhookEndpoint {
                url,
                events,
                description,
                secret,
            },
            render,
        },
    )
    .await
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> ApiResult<Response> {
    let (limit, cursor) = (q.limit(), q.cursor()?);
    let org = caller.organization_id;
    // One more than the page: whether a next page exists.
    let mut page = state.sql(|c| outbox::endpoints_of(c, org, cursor, limit + 1))?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last()
            .map(|e| paging::encode_cursor(&e.id.to_string()))
    } else {
        None
    };
    Ok(json_value(&views::Page {
        data: page.iter().map(views::webhook_endpoint_view).collect(),
        next_cursor: next,
    }))
}

async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let e = own_endpoint(&state, &caller, &id)?;
    Ok(json_value(&views::webhook_endpoint(&e)))
}

/// Only the fields sent change.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "UpdateWebhookEndpointRequest")]
struct UpdateEndpoint {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(url)]
    url: Option<String>,
    #[schemars(
        with = "Option<Vec<schema::WebhookEventFilter>>",
        length(min = 1, max = 50)
    )]
    events: Option<Vec<String>>,
    enabled: Option<bool>,
    /// null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>", length(max = 500))]
    description: Option<Option<String>>,
}

async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<UpdateEndpoint>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    let v = body.value;
    let url = match v.url {
        Some(u) => Some(check_url(&state, &u).await?),
        None => None,
    };
    let events = v.events.map(check_events).transpose()?;
    let description = match v.description {
        Some(d) => Some(check_description(d)?),
        None => None,
    };
    let response = execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::UpdateWebhookEndpoint {
                id: endpoint.id,
                url,
                events,
                enabled: v.enabled,
                description,
            },
            render: render_view(View::Resource),
        },
    )
    .await?;
    if v.enabled == Some(true) && response.status().is_success() {
        // Deliveries held while it was disabled go out again.
        let outbox = outbox_of(&state)?.clone();
        let now = state.clock.now();
        tokio::task::spawn_blocking(move || outbox.resume(endpoint.id, now))
            .await
            .map_err(|e| ApiError::internal("webhook outbox", e))?
            .map_err(|e| ApiError::internal("webhook outbox", e))?;
    }
    Ok(response)
}

async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::DeleteWebhookEndpoint { id: endpoint.id },
            render: render_view(View::Deleted),
        },
    )
    .await
}

async fn rotate_secret(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    let (secret, render) = new_signing_secret(&state);
    let previous_valid_until = state.clock.now().plus_seconds(ROTATION_OVERLAP_SECONDS);
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::RotateWebhookSecret {
                id: endpoint.id,
                secret,
                previous_valid_until,
            },
            render,
        },
    )
    .await
}

/// Queues a `webhook.test` message to this endpoint, whatever its filter.
/// With a `requestId`, the message id derives from it: a retry returns the
/// same delivery instead of sending again.
async fn send_test(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    let outbox = outbox_of(&state)?.clone();
    let event_id = format!(
        "evt_test_{}",
        body.request_id
            .map(|r| r.as_uuid())
            .unwrap_or_else(Uuid::now_v7)
            .simple()
    );
    let now = state.clock.now();
    let data = json!({
        "endpointId": endpoint.id.to_string(),
        "message": "This is a test event from Expereon.",
    });
    let payload = projections::webhooks::payload(
        &event_id,
        TEST_EVENT_TYPE,
        now,
        caller.organization_id,
        data,
    );
    let delivery = Delivery::new(
        endpoint.id,
        caller.organization_id,
        event_id,
        TEST_EVENT_TYPE.to_string(),
        0,
        now,
        payload,
    );
    let stored = tokio::task::spawn_blocking(move || outbox.insert(delivery))
        .await
        .map_err(|e| ApiError::internal("webhook outbox", e))?
        .map_err(|e| ApiError::internal("webhook outbox", e))?;
    Ok(json_value(&delivery_view(&stored)))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Named<DeliveryStatus>>,
}

async fn deliveries(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    let limit = q.page.limit();
    let before = q
        .page
        .cursor()?
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::Validation("cursor is not valid".into())))
        .transpose()?;
    let status = q.status.map(|s| s.0);
    let (page, next) = outbox_of(&state)?
        .list(endpoint.id, before, status, limit)
        .map_err(|e| ApiError::internal("webhook outbox", e))?;
    Ok(json_value(&views::Page {
        data: page.iter().map(delivery_view).collect(),
        next_cursor: next.map(|n| paging::encode_cursor(&n.to_string())),
    }))
}

/// Sends a delivery again from now, with a fresh retry schedule (whatever
/// its status). The same `requestId` again changes nothing more.
async fn redeliver(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
    let endpoint = own_endpoint(&state, &caller, &id)?;
    let delivery_id = Uuid::parse_str(&delivery_id).map_err(|_| ApiError::NotFound("delivery"))?;
    let outbox = outbox_of(&state)?.clone();
    match outbox.get(delivery_id) {
        Ok(Some(d)) if d.endpoint_id == endpoint.id => {}
        Ok(_) => return Err(ApiError::NotFound("delivery")),
        Err(e) => return Err(ApiError::internal("webhook outbox", e)),
    }
    let now = state.clock.now();
    let request = body.request_id.map(|r| r.as_uuid());
    let updated = tokio::task::spawn_blocking(move || {
        outbox.update(delivery_id, |d| {
            if request.is_some_and(|r| d.redelivered_by.contains(&r)) {
                return;
            }
            d.status = DeliveryStatus::Pending;
            d.next_attempt_at = Some(now);
            d.schedule_base = u32::try_from(d.attempts.len()).unwrap_or(u32::MAX);
            if let Some(r) = request {
                d.redelivered_by.push(r);
            }
        })
    })
    .await
    .map_err(|e| ApiError::internal("webhook outbox", e))?
    .map_err(|e| ApiError::internal("webhook outbox", e))?
    .ok_or(ApiError::NotFound("delivery"))?;
    Ok(json_value(&delivery_view(&updated)))
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const CREATE_WEBHOOK_ENDPOINT: Op = Op {
        method: Post,
        path: "/api/v1/settings/webhooks",
        operation_id: "createWebhookEndpoint",
        tag: SETTINGS,
        summary: "Create a webhook endpoint",
        description: "Needs `settings:write`. `events` filters what is sent: `*`, a family (`invoice.*`) or exact event names (see the `webhooks` section). The URL must be https or http to a public address (loopback and private targets are refused unless the server allows them). The signing secret (`whsec_...`) is in this response only (and in an idempotent replay of it) and on rotation.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Required(json::<CreateEndpoint>),
        success: Success::Json("WebhookEndpointWithSecret"),
        ..BASE
    };

    pub const LIST_WEBHOOK_ENDPOINTS: Op = Op {
        path: "/api/v1/settings/webhooks",
        operation_id: "listWebhookEndpoints",
        tag: SETTINGS,
        summary: "List webhook endpoints",
        description:
            "Needs `settings:read`. Without secrets, oldest first; deleted endpoints are left out.",
        auth: Auth::Key(SETTINGS_READ),
        query: PAGE,
        success: Success::Json("WebhookEndpointPage"),
        ..BASE
    };

    pub const GET_WEBHOOK_ENDPOINT: Op = Op {
        path: "/api/v1/settings/webhooks/{id}",
        operation_id: "getWebhookEndpoint",
        tag: SETTINGS,
        summary: "Get a webhook endpoint",
        description: "Needs `settings:read`. Without its secret.",
        auth: Auth::Key(SETTINGS_READ),
        success: Success::Json("WebhookEndpoint"),
        ..BASE
    };

    pub const UPDATE_WEBHOOK_ENDPOINT: Op = Op {
        method: Patch,
        path: "/api/v1/settings/webhooks/{id}",
        operation_id: "updateWebhookEndpoint",
        tag: SETTINGS,
        summary: "Edit a webhook endpoint",
        description: "Needs `settings:write`. Only the fields sent change; `description: null` clears it; `enabled: false` pauses deliveries to it.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<UpdateEndpoint>),
        success: Success::Json("WebhookEndpoint"),
        ..BASE
    };

    pub const DELETE_WEBHOOK_ENDPOINT: Op = Op {
        method: Delete,
        path: "/api/v1/settings/webhooks/{id}",
        operation_id: "deleteWebhookEndpoint",
        tag: SETTINGS,
        summary: "Delete a webhook endpoint",
        description: "Needs `settings:write`. Nothing more is sent to it; it is `404` afterwards. Answers the endpoint with `deleted: true`.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("DeletedWebhookEndpoint"),
        ..BASE
    };

    pub const ROTATE_WEBHOOK_SECRET: Op = Op {
        method: Post,
        path: "/api/v1/settings/webhooks/{id}/rotate-secret",
        operation_id: "rotateWebhookSecret",
        tag: SETTINGS,
        summary: "Rotate a webhook endpoint's secret",
        description: "Needs `settings:write`. Answers the endpoint with its new secret. For 24 hours the previous secret keeps signing too, so receivers can switch over.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("WebhookEndpointWithSecret"),
        ..BASE
    };

    pub const TEST_WEBHOOK_ENDPOINT: Op = Op {
        method: Post,
        path: "/api/v1/settings/webhooks/{id}/test",
        operation_id: "testWebhookEndpoint",
        tag: SETTINGS,
        summary: "Send a test event",
        description: "Needs `settings:write`. Queues a `webhook.test` event to this endpoint whatever its filter, and answers its delivery. With a `requestId`, a retry answers the same delivery instead of sending again.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("WebhookDelivery"),
        idempotency: Idem::Keyed,
        ..BASE
    };

    pub const LIST_WEBHOOK_DELIVERIES: Op = Op {
        path: "/api/v1/settings/webhooks/{id}/deliveries",
        operation_id: "listWebhookDeliveries",
        tag: SETTINGS,
        summary: "List an endpoint's deliveries",
        description: "Needs `settings:read`. Newest first, each with its attempts.",
        auth: Auth::Key(SETTINGS_READ),
        query: &[
            q(
                "status",
                "Only deliveries in this state.",
                Ty::Schema("DeliveryStatus"),
            ),
            Param::Limit,
            Param::Cursor,
        ],
        success: Success::Json("WebhookDeliveryPage"),
        ..BASE
    };

    pub const REDELIVER_WEBHOOK: Op = Op {
        method: Post,
        path: "/api/v1/settings/webhooks/{id}/deliveries/{deliveryId}/redeliver",
        operation_id: "redeliverWebhook",
        tag: SETTINGS,
        summary: "Send a delivery again",
        description: "Needs `settings:write`. Whatever its status, the delivery becomes PENDING and is sent from now with a fresh retry schedule. With a `requestId`, a retry of this call changes nothing more.",
        auth: Auth::Key(SETTINGS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("WebhookDelivery"),
        idempotency: Idem::Keyed,
        ..BASE
    };
}
