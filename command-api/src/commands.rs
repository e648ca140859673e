//! Sending a command to the engine and turning its reply into a response:
//! the one path every mutating route takes.

use crate::app::AppState;
use crate::bulk;
use crate::error::ApiError;
use crate::master_key::{self, MasterKey, Purpose};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::domain::api_key::ApiKey;
use ledger_core::domain::organization::Organization;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::{Command, Outcome};
use ledger_core::engine::{Idempotency, Render, Rendered, Reply, Submission};
use ledger_core::events::Actor;
use ledger_core::ids::*;
use ledger_core::log::{EventLog, Hash, IdempotencyKey, IdempotencyRecord};
use projections::sql::{rows, SqlError};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
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

pub fn json_value<T: Serialize + ?Sized>(value: &T) -> Response {
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// How a success is shown. Kept, with the outcome, in the idempotency record
/// until the response is rendered, so a retry renders what the first call
/// would have (secrets included: they exist nowhere else, which is why they
/// are kept sealed with the master key, and so is the answer showing them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum View {
    /// The resource the outcome names.
    Resource,
    /// The resource plus the `secret` shown only now (API keys, webhook
    /// endpoints); sealed, see [`View::with_secret`].
    WithSecret(String),
    /// The resource plus `"deleted": true`.
    Deleted,
    /// `{organization, apiKey: {id, secret, permissions: ["*"]}}`; sealed.
    NewOrganization { secret: String },
    /// The DEPOSIT transaction as `GET /treasury/{orgId}/transactions/{id}` shows it
    /// (what [`View::Resource`] shows of a transaction too; kept so that
    /// stored recipes naming it still read).
    Deposit,
}

impl View {
    pub fn with_secret(key: &MasterKey, secret: &str) -> View {
        View::WithSecret(key.seal(Purpose::KeptAnswer, secret.as_bytes()))
    }

    pub fn new_organization(key: &MasterKey, secret: &str) -> View {
        View::NewOrganization {
            secret: key.seal(Purpose::KeptAnswer, secret.as_bytes()),
        }
    }

    /// The view with its secret opened, and whether it had one (then the
    /// answer rendered from it is kept sealed too).
    fn opened(self, key: &MasterKey) -> Result<(View, bool), ApiError> {
        let open = |s: &str| {
            key.open_str(Purpose::KeptAnswer, s)
                .map_err(|e| ApiError::internal("opening a kept secret", e))
        };
        Ok(match self {
            View::WithSecret(s) => (View::WithSecret(open(&s)?), true),
            View::NewOrganization { secret } => (
                View::NewOrganization {
                    secret: open(&secret)?,
                },
                true,
            ),
            other => (other, false),
        })
    }
}

/// A kept answer as the client gets it: opened if it was sealed.
fn unsealed(key: &MasterKey, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if master_key::is_sealed(&body) {
        key.open(Purpose::KeptAnswer, &body)
            .map_err(|e| ApiError::internal("opening a kept answer", e))
    } else {
        Ok(body)
    }
}

/// [`Outcome`] in a storable form: bulk refusals already as their error rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Stored {
    Organization(OrganizationId, ApiKeyId),
    ApiKey(ApiKeyId),
    WebhookEndpoint(WebhookEndpointId),
    Connection(ConnectionId),
    Invoice(InvoiceId),
    Payment(PaymentId),
    Transaction(TransactionId, BalanceId),
    Balance(BalanceId),
    Withdrawal(WithdrawalId),
    Refund(RefundId),
    File(FileId),
    Bulk(Vec<(Option<uuid::Uuid>, Result<Stored, bulk::ItemError>)>),
    Nothing,
}

impl From<&Outcome> for Stored {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Organization { id, api_key_id } => Stored::Organization(*id, *api_key_id),
            Outcome::ApiKey(id) => Stored::ApiKey(*id),
            Outcome::WebhookEndpoint(id) => Stored::WebhookEndpoint(*id),
            Outcome::Connection(id) => Stored::Connection(*id),
            Outcome::Invoice(id) => Stored::Invoice(*id),
            Outcome::Payment(id) => Stored::Payment(*id),
            Outcome::Transaction { id, balance_id } => Stored::Transaction(*id, *balance_id),
            Outcome::Balance(id) => Stored::Balance(*id),
            Outcome::Withdrawal(id) => Stored::Withdrawal(*id),
            Outcome::Refund(id) => Stored::Refund(*id),
            Outcome::File(id) => Stored::File(*id),
            Outcome::Bulk(results) => Stored::Bulk(
                results
                    .iter()
                    .map(|(subject, result)| {
                        let row = match result {
                            Ok(o) => Ok(Stored::from(o)),
                            Err(e) => Err(ApiError::from(e.clone()).into()),
                        };
                        (*subject, row)
                    })
                    .collect(),
            ),
            Outcome::Nothing => Stored::Nothing,
        }
    }
}

/// What the writer keeps for a success: how to render it, and what.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recipe {
    view: View,
    outcome: Stored,
}

fn load<T: serde::de::DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    id: impl ToString,
) -> Result<Option<T>, SqlError> {
    rows::load(c, table, &id.to_string())
}

/// The resource an outcome names, as the read models hold it now.
fn resource(c: &Connection, outcome: &Stored) -> Result<Value, SqlError> {
    use projections::views as v;
    let found = match outcome {
        Stored::Organization(id, _) => load(c, "organizations", id)?.map(|o| v::organization(&o)),
        Stored::ApiKey(id) => load(c, "api_keys", id)?.map(|k| v::api_key(&k)),
        Stored::WebhookEndpoint(id) => {
            load(c, "webhook_endpoints", id)?.map(|e| v::webhook_endpoint(&e))
        }
        Stored::Connection(id) => rows::load_connection(c, *id)?
            .map(|x| v::connection(&x.link, x.rejection_reason.as_deref())),
        Stored::Invoice(id) => load(c, "invoices", id)?.map(|i| v::invoice(&i)),
        Stored::Payment(id) => load(c, "payments", id)?.map(|p| v::payment(&p)),
        Stored::Transaction(id, _) => rows::load_transaction(c, *id)?.map(|t| v::transaction(&t)),
        Stored::Balance(id) => rows::load_balance(c, &id.to_string())?.map(|b| v::balance(&b)),
        Stored::Withdrawal(id) => load(c, "withdrawals", id)?.map(|w| v::withdrawal(&w)),
        Stored::Refund(id) => load(c, "refunds", id)?.map(|r| v::refund(&r)),
        Stored::File(id) => load(c, "files", id)?.map(|f| v::file(&f)),
        Stored::Bulk(results) => {
            let mut rows = Vec::with_capacity(results.len());
            for (subject, result) in results {
                let id = subject.map(|s| s.to_string());
                rows.push(match result {
                    // Compact: the resource's status, not the resource. A
                    // bulk answer embedding 500 invoices of a megabyte each
                    // was hundreds of megabytes.
                    Ok(o) => bulk::Row {
                        error: None,
                        id,
                        ok: true,
                        status: status_of(c, o)?.and_then(|s| s.as_str().map(str::to_owned)),
                    },
                    Err(e) => bulk::Row {
                        error: Some(e.clone()),
                        id,
                        ok: false,
                        status: None,
                    },
                });
            }
            Some(v::value(bulk::BulkResult::of(rows)))
        }
        Stored::Nothing => Some(json!({})),
    };
    Ok(found.unwrap_or(Value::Null))
}

/// The status of the resource an outcome names. Invoices and payments (what
/// bulk calls act on) read their status column, not their whole state: a
/// bulk answer over 500 one-megabyte invoices decoded them all for a word.
fn status_of(c: &Connection, outcome: &Stored) -> Result<Option<Value>, SqlError> {
    use rusqlite::OptionalExtension;
    let column = |table: &str, id: String| -> Result<Option<Value>, SqlError> {
        let sql = format!("SELECT status FROM {table} WHERE id = ?1");
        let status: Option<String> = c
            .prepare_cached(&sql)?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(status.map(Value::String))
    };
    match outcome {
        Stored::Invoice(id) => column("invoices", id.to_string()),
        Stored::Payment(id) => column("payments", id.to_string()),
        other => Ok(resource(c, other)?.get("status").cloned()),
    }
}

/// Renders a success from the read models.
fn render_recipe(c: &Connection, recipe: &Recipe) -> Result<Value, SqlError> {
    use projections::views as v;
    Ok(match (&recipe.view, &recipe.outcome) {
        (View::Resource, o) => resource(c, o)?,
        (View::WithSecret(secret), Stored::ApiKey(id)) => {
            let key: Option<ApiKey> = load(c, "api_keys", id)?;
            key.map(|k| {
                v::value(v::ApiKeyCreated {
                    key: v::api_key_view(&k),
                    secret,
                })
            })
            .unwrap_or(Value::Null)
        }
        (View::WithSecret(secret), Stored::WebhookEndpoint(id)) => {
            let endpoint: Option<WebhookEndpoint> = load(c, "webhook_endpoints", id)?;
            endpoint
                .map(|e| {
                    v::value(v::WebhookEndpointWithSecret {
                        endpoint: v::webhook_endpoint_view(&e),
                        secret,
                    })
                })
                .unwrap_or(Value::Null)
        }
        (View::Deleted, Stored::WebhookEndpoint(id)) => {
            let endpoint: Option<WebhookEndpoint> = load(c, "webhook_endpoints", id)?;
            endpoint
                .map(|e| {
                    v::value(v::DeletedWebhookEndpoint {
                        deleted: true,
                        endpoint: v::webhook_endpoint_view(&e),
                    })
                })
                .unwrap_or(Value::Null)
        }
        (View::NewOrganization { secret }, Stored::Organization(id, api_key_id)) => {
            let organization: Option<Organization> = load(c, "organizations", id)?;
            organization
                .map(|o| {
                    v::value(v::OrganizationCreated {
                        api_key: v::FirstApiKey {
                            id: api_key_id.to_string(),
                            permissions: ["*"],
                            secret,
                        },
                        organization: v::organization_view(&o),
                    })
                })
                .unwrap_or(Value::Null)
        }
        (_, o) => resource(c, o)?,
    })
}

pub fn render_outcome() -> Render {
    render_view(View::Resource)
}

/// A success is kept as its recipe, rendered from the read models once they
/// hold the command's effect; a refusal is rendered now (it needs no state),
/// so a retry of a refused request replays the same error.
pub fn render_view(view: View) -> Render {
    Box::new(move |result| match result {
        Ok(outcome) => Rendered {
            status: IdempotencyRecord::PENDING_RENDER,
            body: serde_json::to_vec(&Recipe {
                view,
                outcome: Stored::from(outcome),
            })
            .unwrap_or_default(),
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

/// The response for what the writer kept: a recipe is rendered now, from the
/// read models (which have reached the command), and the rendered bytes
/// replace the recipe in the idempotency record, first renderer wins, so
/// every later retry gets exactly these bytes.
async fn finish(
    state: &AppState,
    key: Option<IdempotencyKey>,
    rendered: Rendered,
) -> Result<(u16, Vec<u8>), ApiError> {
    let master_key = &state.master_key;
    if rendered.status != IdempotencyRecord::PENDING_RENDER {
        return Ok((rendered.status, unsealed(master_key, rendered.body)?));
    }
    let recipe: Recipe = serde_json::from_slice(&rendered.body)
        .map_err(|e| ApiError::internal("decoding a kept answer", e))?;
    let (view, secret) = recipe.view.opened(master_key)?;
    let recipe = Recipe { view, ..recipe };
    let value = state.sql(|c| render_recipe(c, &recipe))?;
    let body = serde_json::to_vec(&value).map_err(|e| ApiError::internal("rendering", e))?;
    let Some(key) = key else {
        return Ok((200, body));
    };
    let kept = if secret {
        master_key.seal(Purpose::KeptAnswer, &body).into_bytes()
    } else {
        body
    };
    // In place, not on the blocking pool: a lookup and a compare-and-swap
    // of a recent key are in sled's cache and take microseconds, and the
    // hand-off to another thread cost every command about a millisecond.
    let completed = match state.log.idempotency(&key) {
        Ok(Some(pending)) if pending.is_pending_render() => state
            .log
            .complete_idempotency(&pending, 200, kept)
            .map(Some),
        other => other,
    }
    .map_err(|e| ApiError::internal("keeping the answer", e))?;
    match completed {
        Some(record) if !record.is_pending_render() => {
            Ok((record.status, unsealed(master_key, record.body)?))
        }
        _ => Err(ApiError::Internal("the kept answer vanished".into())),
    }
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
    state.disk.check()?;
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
            wait_for_read_models(state, last_seq).await?;
            let rendered = rendered
                .ok_or_else(|| ApiError::Internal("command answered without a body".into()))?;
            let (code, body) = finish(state, idempotency.map(|i| i.key), rendered).await?;
            Ok(json_bytes(status(code), body))
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
            wait_for_read_models(state, record.last_seq).await?;
            let key = record.key;
            let (code, body) = finish(
                state,
                Some(key),
                Rendered {
                    status: record.status,
                    body: record.body,
                },
            )
            .await?;
            let mut response = json_bytes(status(code), body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

/// Read-your-writes, bounded: a command's answer is read from the read
/// models, and if they cannot reach it in `projection_wait` (they cannot be
/// written, see `Projections::fault`) the client gets 503 rather than a
/// request that never ends; the command itself is durable.
async fn wait_for_read_models(state: &AppState, seq: u64) -> Result<(), ApiError> {
    let limit = state.config.projection_wait;
    state.projections.wait_for(seq, limit).await.map_err(|behind| {
        tracing::warn!(%behind, "answering 503: the read models are behind a committed command");
        ApiError::Unanswered(format!("the read models are at seq {}, the request at {}", behind.at, behind.seq))
    })
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bulk call's recipe as the previous version kept it (its error rows
    /// were their own `{code, message}` struct) still reads, and renders the
    /// same rows.
    #[test]
    fn a_bulk_recipe_kept_before_still_reads() {
        let kept = r#"{"view":"Resource","outcome":{"Bulk":[
            [null,{"Err":{"code":"NOT_FOUND","message":"invoice not found"}}],
            ["0190a0b0-0000-7000-8000-000000000001",{"Err":{"code":"VALIDATION_ERROR","message":"x"}}]
        ]}}"#;
        let recipe: Recipe = serde_json::from_str(kept).expect("a kept recipe reads");
        let Stored::Bulk(rows) = &recipe.outcome else {
            panic!("not a bulk outcome: {recipe:?}");
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].1.as_ref().err(),
            Some(&bulk::ItemError {
                code: "NOT_FOUND".into(),
                message: "invoice not found".into()
            })
        );
        // And what is kept now is what was kept then.
        let again = serde_json::to_value(&recipe).expect("json");
        let before: Value = serde_json::from_str(kept).expect("json");
        assert_eq!(again, before);
    }
}
