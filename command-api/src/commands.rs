//! Sending a command to the engine and turning its reply into a response:
//! the one path every mutating route takes.

use crate::app::AppState;
use crate::error::ApiError;
use crate::views;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::domain::{Command, Ledger, Outcome};
use ledger_core::engine::{Idempotency, Render, Rendered, Reply, Submission};
use ledger_core::events::Actor;
use ledger_core::ids::RequestId;
use ledger_core::log::{Hash, IdempotencyKey};
use serde_json::{json, Value};

pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub fn json_value(value: &Value) -> Response {
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// Renders any outcome as the resource it names, from the state right after
/// the command.
pub fn outcome_view(ledger: &Ledger, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Organization { id, .. } => ledger.organizations.get(id).map(views::organization),
        Outcome::ApiKey(id) => ledger.api_keys.get(id).map(views::api_key),
        Outcome::WebhookEndpoint(id) => ledger
            .webhook_endpoints
            .get(id)
            .map(views::webhook_endpoint),
        Outcome::Connection(id) => ledger.connections.get(id).map(views::connection),
        Outcome::Invoice(id) => ledger.invoices.get(id).map(views::invoice),
        Outcome::Payment(id) => ledger.payments.get(id).map(views::payment),
        Outcome::Transaction { id, balance_id } => ledger.balances.get(balance_id).map(|b| {
            json!({
                "id": id.to_string(),
                "type": "DEPOSIT",
                "balanceId": b.id.to_string(),
                "organizationId": b.organization_id.to_string(),
                "currency": b.currency.code(),
                "totalAfter": b.total.format(b.currency),
                "balance": views::balance(b),
            })
        }),
        Outcome::Balance(id) => ledger.balances.get(id).map(views::balance),
        Outcome::Withdrawal(id) => ledger.withdrawals.get(id).map(views::withdrawal),
        Outcome::Refund(id) => ledger.refunds.get(id).map(views::refund),
        Outcome::File(id) => ledger.files.get(id).map(views::file),
        Outcome::Bulk(results) => Some(json!({
            "results": results.iter().map(|(subject, result)| match result {
                Ok(o) => json!({
                    "id": subject.map(|s| s.to_string()),
                    "ok": true,
                    "data": outcome_view(ledger, o),
                }),
                Err(e) => {
                    let e = ApiError::from(e.clone());
                    json!({
                        "id": subject.map(|s| s.to_string()),
                        "ok": false,
                        "error": { "code": e.code(), "message": e.to_string() },
                    })
                }
            }).collect::<Vec<_>>(),
            "succeeded": results.iter().filter(|(_, r)| r.is_ok()).count(),
            "failed": results.iter().filter(|(_, r)| r.is_err()).count(),
        })),
        Outcome::Nothing => Some(json!({})),
    }
    .unwrap_or(Value::Null)
}

pub fn render_outcome() -> Render {
    render_with(outcome_view)
}

/// Renders a success with `f`; a refusal as the error response it maps to, so
/// a retry of a refused request replays the same error.
pub fn render_with(f: impl FnOnce(&Ledger, &Outcome) -> Value + Send + 'static) -> Render {
    Box::new(move |ledger, result| match result {
        Ok(outcome) => Rendered {
            status: 200,
            body: serde_json::to_vec(&f(ledger, outcome)).unwrap_or_default(),
        },
        Err(e) => {
            let e = ApiError::from(e.clone());
            Rendered {
                status: e.status().as_u16(),
                body: e.body(),
            }
        }
    })
}

/// Who the idempotency key belongs to.
pub fn scope_of(actor: &Actor) -> uuid::Uuid {
    actor
        .organization()
        .map(|o| o.as_uuid())
        .unwrap_or(IdempotencyKey::ADMIN_SCOPE)
}

pub struct Request {
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub fingerprint: Hash,
    pub command: Command,
    pub render: Render,
}

/// Runs a command through the engine; answers once it is durable and the read
/// models have caught up with it (read-your-writes).
pub async fn execute(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let idempotency = req.request_id.map(|request_id| Idempotency {
        key: IdempotencyKey {
            scope: scope_of(&req.actor),
            request_id,
        },
        fingerprint: req.fingerprint,
    });
    let reply = state
        .engine
        .submit(Submission {
            actor: req.actor,
            idempotency,
            command: req.command,
            render: Some(req.render),
        })
        .await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            state.metrics.observe_command("failed");
            return Err(e.into());
        }
    };
    match reply {
        Reply::Executed {
            result: Ok(_),
            rendered,
            last_seq,
        } => {
            state.metrics.observe_command("committed");
            state.projections.wait_for(last_seq).await;
            let rendered = rendered
                .ok_or_else(|| ApiError::Internal("command answered without a body".into()))?;
            Ok(json_bytes(status(rendered.status), rendered.body))
        }
        Reply::Executed {
            result: Err(e),
            rendered,
            ..
        } => {
            state.metrics.observe_command("rejected");
            match rendered {
                Some(r) => Ok(json_bytes(status(r.status), r.body)),
                None => Err(e.into()),
            }
        }
        Reply::Replayed(record) => {
            state.metrics.observe_command("replayed");
            state.projections.wait_for(record.last_seq).await;
            let mut response = json_bytes(status(record.status), record.body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}
