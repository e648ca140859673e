//! Invoices: create, read, search, edit, every action of the state diagram,
//! line items, bulk actions and history.

use super::path_id;
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Day, Named, Page, Query};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use chrono::NaiveDate;
use ledger_core::domain::command::{
    InvoiceAction, InvoicePatch, LineItemInput, LineItemPatch, NewInvoice,
};
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::{Command, Ctx, Ledger};
use ledger_core::events::Actor;
use ledger_core::events::{Party, Permission, StreamId, StreamKind};
use ledger_core::ids::OrganizationId;
use ledger_core::ids::{ConnectionId, FileId, InvoiceId, LineItemId};
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use projections::schema;
use projections::sql::queries::{self, InvoiceSort};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The routes `POST /invoices/{id}/<action>`. Every match on it is
/// exhaustive: an action cannot be routed without saying what it is allowed
/// to do and which command it makes (a name once fell through to settling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Submit,
    RespondInfo,
    Approve,
    Dispute,
    RequestInfo,
    Cancel,
    RequestCancellation,
    AcceptCancellation,
    RejectCancellation,
    Archive,
    Restore,
    Settle,
}

pub const ACTIONS: [Action; 12] = [
    Action::Submit,
    Action::RespondInfo,
    Action::Approve,
    Action::Dispute,
    Action::RequestInfo,
    Action::Cancel,
    Action::RequestCancellation,
    Action::AcceptCancellation,
    Action::RejectCancellation,
    Action::Archive,
    Action::Restore,
    Action::Settle,
];

impl Action {
    /// The path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::RespondInfo => "respond-info",
            Action::Approve => "approve",
            Action::Dispute => "dispute",
            Action::RequestInfo => "request-info",
            Action::Cancel => "cancel",
            Action::RequestCancellation => "request-cancellation",
            Action::AcceptCancellation => "accept-cancellation",
            Action::RejectCancellation => "reject-cancellation",
            Action::Archive => "archive",
            Action::Restore => "restore",
            Action::Settle => "settle",
        }
    }

    /// The permission it needs; `None`: either invoices:write or invoices:approve.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Action::Submit | Action::RespondInfo => Some(Permission::InvoicesWrite),
            Action::Approve | Action::Dispute | Action::RequestInfo => {
                Some(Permission::InvoicesApprove)
            }
            Action::Settle => Some(Permission::PaymentsWrite),
            Action::Cancel
            | Action::RequestCancellation
            | Action::AcceptCancellation
            | Action::RejectCancellation
            | Action::Archive
            | Action::Restore => None,
        }
    }

    /// The command it makes of the invoice and the request's body.
    fn command(self, id: InvoiceId, b: ActionBody) -> ApiResult<Command> {
        let action = match self {
            Action::Settle => return Ok(Command::SettleInvoice { id }),
            Action::Submit => InvoiceAction::Submit,
            Action::RespondInfo => InvoiceAction::RespondInfo {
                message: required("message", b.message)?,
            },
            Action::Approve => InvoiceAction::Approve {
                adjusted_amount: b.adjusted_amount,
                reason: b.reason,
            },
            Action::Dispute => InvoiceAction::Dispute {
                reason: required("reason", b.reason)?,
            },
            Action::RequestInfo => InvoiceAction::RequestInfo {
                question: required("question", b.question)?,
            },
            Action::Cancel => InvoiceAction::Cancel { reason: b.reason },
            Action::RequestCancellation => InvoiceAction::RequestCancellation {
                reason: required("reason", b.reason)?,
            },
            Action::AcceptCancellation => InvoiceAction::AcceptCancellation,
            Action::RejectCancellation => InvoiceAction::RejectCancellation,
            Action::Archive => InvoiceAction::Archive,
            Action::Restore => InvoiceAction::Restore,
        };
        Ok(Command::Invoice { id, action })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.segment())
    }
}

pub const BULK_MAX: usize = 500;

/// The routes `POST /invoices/bulk-<name>` (and their previews); exhaustive
/// like [`Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
    Approve,
    Cancel,
    Archive,
    Restore,
}

pub const BULK: [Bulk; 4] = [Bulk::Approve, Bulk::Cancel, Bulk::Archive, Bulk::Restore];

impl Bulk {
    pub fn segment(self) -> &'static str {
        match self {
            Bulk::Approve => "approve",
            Bulk::Cancel => "cancel",
            Bulk::Archive => "archive",
            Bulk::Restore => "restore",
        }
    }

    /// The permission it needs; `None`: either invoices:write or invoices:approve.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Bulk::Approve => Some(Permission::InvoicesApprove),
            Bulk::Cancel | Bulk::Archive | Bulk::Restore => None,
        }
    }

    /// What it does to each invoice.
    fn action(self, body: &BulkBody) -> InvoiceAction {
        match self {
            Bulk::Approve => InvoiceAction::Approve {
                adjusted_amount: None,
                reason: None,
            },
            Bulk::Cancel => InvoiceAction::Cancel {
                reason: body.reason.clone(),
            },
            Bulk::Archive => InvoiceAction::Archive,
            Bulk::Restore => InvoiceAction::Restore,
        }
    }
}

impl std::fmt::Display for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.segment())
    }
}

pub fn router() -> Router<AppState> {
    let mut r = Router::new()
        .route("/invoices", post(create).get(list))
        .route("/invoices/{id}", get(get_one).patch(update))
        .route("/invoices/{id}/history", get(history))
        .route("/invoices/{id}/line-items", post(add_line_item))
        .route(
            "/invoices/{id}/line-items/{line_item_id}",
            patch(update_line_item).delete(remove_line_item),
        );
    for action in ACTIONS {
        r = r.route(
            &format!("/invoices/{{id}}/{action}"),
            post(
                move |caller: Caller,
                      state: State<AppState>,
                      Path(id): Path<String>,
                      body: JsonBody<ActionBody>| {
                    act(caller, state, id, body, action)
                },
            ),
        );
    }
    for kind in BULK {
        r = r
            .route(
                &format!("/invoices/bulk-{kind}"),
                post(
                    move |caller: Caller, state: State<AppState>, body: JsonBody<BulkBody>| {
                        bulk(caller, state, body, kind)
                    },
                ),
            )
            .route(
                &format!("/invoices/bulk-{kind}/preview"),
                post(
                    move |caller: Caller, state: State<AppState>, body: JsonBody<BulkBody>| {
                        bulk_preview(caller, state, body, kind)
                    },
                ),
            );
    }
    r
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn validation(e: impl std::fmt::Display) -> ApiError {
    ApiError::Validation(e.to_string())
}

fn date(field: &str, s: &str) -> ApiResult<NaiveDate> {
    crate::input::date(field, s)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineItemBody {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    description: String,
    quantity: String,
    unit_price: String,
    tax_rate: Option<String>,
}

impl LineItemBody {
    fn parse(self) -> ApiResult<LineItemInput> {
        Ok(LineItemInput {
            description: self.description,
            quantity: Quantity::parse(&self.quantity).map_err(validation)?,
            unit_price: self.unit_price,
            tax_rate: match self.tax_rate {
                Some(t) => TaxRate::parse(&t).map_err(validation)?,
                None => TaxRate::ZERO,
            },
        })
    }
}

fn parse_items(items: Vec<LineItemBody>) -> ApiResult<Vec<LineItemInput>> {
    items.into_iter().map(LineItemBody::parse).collect()
}

fn parse_files(files: Vec<String>) -> ApiResult<Vec<FileId>> {
    files
        .iter()
        .map(|f| {
            f.parse()
                .map_err(|_| ApiError::Validation(format!("attachment `{f}` is not a file id")))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvoice {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    connection_id: String,
    number: Option<String>,
    currency: String,
    issue_date: Option<String>,
    due_date: String,
    memo: Option<String>,
    line_items: Vec<LineItemBody>,
    #[serde(default)]
    attachments: Vec<String>,
    #[serde(default)]
    submit: bool,
}

impl CreateInvoice {
    fn parse(self) -> ApiResult<NewInvoice> {
        let currency = Currency::parse(&self.currency).map_err(validation)?;
        // Check amounts against the currency here too, so the error names the field.
        for (i, item) in self.line_items.iter().enumerate() {
            Amount::parse_non_negative(currency, &item.unit_price)
                .map_err(|e| ApiError::Validation(format!("lineItems[{i}].unitPrice: {e}")))?;
        }
        Ok(NewInvoice {
            connection_id: self
                .connection_id
                .parse::<ConnectionId>()
                .map_err(|_| ApiError::Validation("connectionId must be a UUID".into()))?,
            number: self.number,
            currency,
            issue_date: self
                .issue_date
                .as_deref()
                .map(|d| date("issueDate", d))
                .transpose()?,
            due_date: date("dueDate", &self.due_date)?,
            memo: self.memo,
            line_items: parse_items(self.line_items)?,
            attachments: parse_files(self.attachments)?,
            submit: self.submit,
        })
    }
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<CreateInvoice>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesWrite)?;
    let new = body.value.parse()?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::CreateInvoice(new),
            render: render_outcome(),
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateInvoice {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    expected_version: Option<u64>,
    number: Option<String>,
    due_date: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    memo: Option<Option<String>>,
    line_items: Option<Vec<LineItemBody>>,
    attachments: Option<Vec<String>>,
}

async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<UpdateInvoice>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesWrite)?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let v = body.value;
    let patch = InvoicePatch {
        expected_version: v.expected_version,
        number: v.number,
        due_date: v
            .due_date
            .as_deref()
            .map(|d| date("dueDate", d))
            .transpose()?,
        memo: v.memo,
        line_items: v.line_items.map(parse_items).transpose()?,
        attachments: v.attachments.map(parse_files).transpose()?,
    };
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::UpdateInvoice { id, patch },
            render: render_outcome(),
        },
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionBody {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    message: Option<String>,
    question: Option<String>,
    reason: Option<String>,
    adjusted_amount: Option<String>,
}

fn required(field: &str, v: Option<String>) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::Validation(format!("{field} is required")))
}

fn require(caller: &Caller, permission: Option<Permission>) -> ApiResult<()> {
    match permission {
        Some(p) => caller.require(p),
        None => caller.require_any(Permission::InvoicesWrite, Permission::InvoicesApprove),
    }
}

async fn act(
    caller: Caller,
    State(state): State<AppState>,
    id: String,
    body: JsonBody<ActionBody>,
    action: Action,
) -> ApiResult<Response> {
    require(&caller, action.permission())?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let command = action.command(id, body.value)?;
    execute(
        &state,
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

async fn add_line_item(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<LineItemBody>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesWrite)?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let item = body.value.parse()?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::AddLineItem { id, item },
            render: render_outcome(),
        },
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineItemPatchBody {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    description: Option<String>,
    quantity: Option<String>,
    unit_price: Option<String>,
    tax_rate: Option<String>,
}

async fn update_line_item(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, line_item_id)): Path<(String, String)>,
    body: JsonBody<LineItemPatchBody>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesWrite)?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let line_item_id: LineItemId = path_id(&line_item_id, "line item")?;
    let v = body.value;
    let patch = LineItemPatch {
        description: v.description,
        quantity: v
            .quantity
            .map(|q| Quantity::parse(&q))
            .transpose()
            .map_err(validation)?,
        unit_price: v.unit_price,
        tax_rate: v
            .tax_rate
            .map(|t| TaxRate::parse(&t))
            .transpose()
            .map_err(validation)?,
    };
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::UpdateLineItem {
                id,
                line_item_id,
                patch,
            },
            render: render_outcome(),
        },
    )
    .await
}

async fn remove_line_item(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, line_item_id)): Path<(String, String)>,
    body: JsonBody<ActionBody>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesWrite)?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let line_item_id: LineItemId = path_id(&line_item_id, "line item")?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::RemoveLineItem { id, line_item_id },
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
    let id: InvoiceId = path_id(&id, "invoice")?;
    let org = caller.organization_id;
    let inv = state
        .sql(|c| queries::visible_invoice(c, org, id))?
        .ok_or(ApiError::NotFound("invoice"))?;
    Ok(json_value(&views::invoice_view(&inv)))
}

async fn history(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesRead)?;
    let id: InvoiceId = path_id(&id, "invoice")?;
    let org = caller.organization_id;
    let invoice = state
        .sql(|c| queries::visible_invoice(c, org, id))?
        .ok_or(ApiError::NotFound("invoice"))?;
    let is_seller = invoice.seller_organization_id == org;
    let log = state.log.clone();
    let stream = StreamId {
        kind: StreamKind::Invoice,
        id: id.as_uuid(),
    };
    let events = tokio::task::spawn_blocking(move || log.read_stream(stream))
        .await
        .map_err(|e| ApiError::internal("history task", e))?
        .map_err(|e| ApiError::internal("reading invoice history", e))?;
    let data = events
        .iter()
        .filter(|e| is_seller || !is_draft_work(&e.event))
        .map(|e| {
            let line = crate::routes::admin::event_line(e, &[], &[0; 32]);
            let actor_org = e.actor.organization();
            // Which key acted is the acting organization's business.
            let key = e.actor.api_key().filter(|_| actor_org == Some(org));
            HistoryEvent {
                actor: HistoryActor {
                    api_key_id: key.map(|k| k.to_string()),
                    organization_id: actor_org.map(|o| o.to_string()),
                },
                at: e.at.rfc3339(),
                data: Some(line.data),
                seq: e.seq,
                kind: e.event.type_name(),
                version: e.version,
            }
        })
        .collect();
    Ok(json_value(&History { data }))
}

// The history's answer. Fields in the byte order of their JSON names.

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "InvoiceHistory")]
struct History {
    data: Vec<HistoryEvent>,
}

/// One event of an invoice's history.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "InvoiceEvent")]
struct HistoryEvent {
    actor: HistoryActor,
    #[schemars(with = "schema::Timestamp")]
    at: String,
    /// The event's payload.
    data: Option<serde_json::Value>,
    /// Position in the global log.
    seq: u64,
    /// The event type, e.g. `InvoiceApproved`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The invoice version after this event.
    version: u64,
}

/// Who caused it (both null for the operator or the system).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "InvoiceEventActor")]
struct HistoryActor {
    #[schemars(with = "Option<schema::ApiKeyId>")]
    api_key_id: Option<String>,
    #[schemars(with = "Option<schema::Uuid>")]
    organization_id: Option<String>,
}

pub fn add_schemas(c: &mut schema::Components) {
    c.add::<History>();
}

/// The seller's work on a draft (creation and edits): not the buyer's to
/// see. The buyer sees the invoice as submitted, and what happened to it
/// from then on; an edit made while it is back with the seller (disputed,
/// asked for information) shows in the next submission.
fn is_draft_work(event: &ledger_core::events::Event) -> bool {
    use ledger_core::events::Event::*;
    matches!(
        event,
        InvoiceCreated { .. }
            | InvoiceUpdated { .. }
            | LineItemAdded { .. }
            | LineItemUpdated { .. }
            | LineItemRemoved { .. }
    )
}

/// `GET /invoices`: filters, sort and page.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Named<InvoiceStatus>>,
    #[serde(default, deserialize_with = "query::optional")]
    role: Option<Role>,
    #[serde(default, deserialize_with = "query::optional")]
    connection_id: Option<ConnectionId>,
    #[serde(default, deserialize_with = "query::optional")]
    counterparty_organization_id: Option<OrganizationId>,
    #[serde(default, deserialize_with = "query::optional")]
    currency: Option<Currency>,
    #[serde(default, deserialize_with = "query::optional")]
    due_before: Option<Day>,
    #[serde(default, deserialize_with = "query::optional")]
    due_after: Option<Day>,
    #[serde(default, deserialize_with = "query::optional")]
    q: Option<String>,
    #[serde(default, deserialize_with = "query::optional")]
    sort: Option<Sort>,
    #[serde(default, deserialize_with = "query::optional")]
    order: Option<Order>,
}

/// The caller's side of an invoice; either case, as clients write both.
struct Role(Party);

impl std::str::FromStr for Role {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seller" | "SELLER" => Ok(Role(Party::Seller)),
            "buyer" | "BUYER" => Ok(Role(Party::Buyer)),
            _ => Err("role must be seller or buyer"),
        }
    }
}

struct Sort(InvoiceSort);

impl std::str::FromStr for Sort {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "createdAt" => Ok(Sort(InvoiceSort::CreatedAt)),
            "dueDate" => Ok(Sort(InvoiceSort::DueDate)),
            "total" => Ok(Sort(InvoiceSort::Total)),
            _ => Err("sort must be createdAt, dueDate or total"),
        }
    }
}

struct Order {
    descending: bool,
}

impl std::str::FromStr for Order {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "asc" => Ok(Order { descending: false }),
            "desc" => Ok(Order { descending: true }),
            _ => Err("order must be asc or desc"),
        }
    }
}

impl ListQuery {
    fn filter(&self) -> queries::InvoiceFilter {
        queries::InvoiceFilter {
            status: self.status.map(|s| s.0),
            role: self.role.as_ref().map(|r| r.0),
            connection: self.connection_id,
            counterparty: self.counterparty_organization_id,
            currency: self.currency,
            due_before: self.due_before.map(|d| d.0),
            due_after: self.due_after.map(|d| d.0),
            q: self.q.as_deref().map(str::to_lowercase),
        }
    }
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::InvoicesRead)?;
    let filter = q.filter();
    let sort = q.sort.as_ref().map_or(InvoiceSort::CreatedAt, |s| s.0);
    // Newest first by default; the other sorts ascend.
    let descending = q
        .order
        .as_ref()
        .map_or(sort == InvoiceSort::CreatedAt, |o| o.descending);
    let org = caller.organization_id;
    let page = queries::PageRequest {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
        descending,
    };
    let (items, next) = state.sql(|c| queries::list_invoices(c, org, &filter, sort, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::invoice_view).collect(),
        next_cursor: next.as_deref().map(paging::encode_cursor),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkBody {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    invoice_ids: Vec<String>,
    reason: Option<String>,
}

fn bulk_commands(kind: Bulk, body: &BulkBody) -> ApiResult<Vec<Command>> {
    if body.invoice_ids.is_empty() || body.invoice_ids.len() > BULK_MAX {
        return Err(ApiError::Validation(format!(
            "invoiceIds must hold 1 to {BULK_MAX} ids"
        )));
    }
    body.invoice_ids
        .iter()
        .map(|raw| {
            let id: InvoiceId = raw
                .parse()
                .map_err(|_| ApiError::Validation(format!("`{raw}` is not an invoice id")))?;
            Ok(Command::Invoice {
                id,
                action: kind.action(body),
            })
        })
        .collect()
}

async fn bulk(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<BulkBody>,
    kind: Bulk,
) -> ApiResult<Response> {
    require(&caller, kind.permission())?;
    let commands = bulk_commands(kind, &body.value)?;
    execute(
        &state,
        Request {
            actor: caller.actor(),
            request_id: body.request_id,
            fingerprint: body.fingerprint,
            command: Command::Bulk(commands),
            render: render_outcome(),
        },
    )
    .await
}

/// What a bulk call would do, changing nothing. Approvals are checked in
/// order against what the earlier ones would reserve.
async fn bulk_preview(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<BulkBody>,
    kind: Bulk,
) -> ApiResult<Response> {
    require(&caller, kind.permission())?;
    let commands = bulk_commands(kind, &body.value)?;
    let actor = caller.actor();
    let org = caller.organization_id;
    let now = state.clock.now();
    let preview = state
        .engine
        .inspect(move |ledger| preview(ledger, &actor, org, kind, &commands, now))
        .await?;
    Ok(json_value(&preview))
}

/// The bulk call's results as the engine would decide them now, approvals
/// checked in order against what the earlier ones would reserve.
fn preview(
    ledger: &Ledger,
    actor: &Actor,
    org: OrganizationId,
    kind: Bulk,
    commands: &[Command],
    now: Timestamp,
) -> serde_json::Value {
    let mut needed: BTreeMap<Currency, Amount> = BTreeMap::new();
    let mut results = Vec::with_capacity(commands.len());
    let mut new_id = uuid::Uuid::now_v7;
    let mut ctx = Ctx {
        now,
        ids: &mut new_id,
    };
    let available = |c: Currency| {
        ledger
            .balance_of(org, c)
            .map(|b| b.available())
            .unwrap_or(Amount::ZERO)
    };
    for command in commands {
        let Command::Invoice { id, .. } = command else {
            continue;
        };
        let mut result = ledger.decide(actor, command, &mut ctx).map(|_| ());
        if let (Ok(()), Bulk::Approve) = (&result, kind) {
            if let Some(inv) = ledger.invoices.get(id) {
                let want = needed.entry(inv.currency).or_insert(Amount::ZERO);
                let total = want.checked_add(inv.total).unwrap_or(*want);
                let have = available(inv.currency);
                if total > have {
                    result = Err(ledger_core::domain::DomainError::insufficient(
                        inv.currency,
                        total,
                        have,
                    ));
                } else {
                    *want = total;
                }
            }
        }
        results.push(match result {
            Ok(()) => json!({ "id": id.to_string(), "ok": true }),
            Err(e) => {
                let e = ApiError::from(e);
                json!({ "id": id.to_string(), "ok": false, "error": { "code": e.code(), "message": e.to_string() } })
            }
        });
    }
    let totals: Vec<_> = needed
        .iter()
        .map(|(c, amount)| {
            json!({ "currency": c.code(), "needed": amount.format(*c), "available": available(*c).format(*c) })
        })
        .collect();
    json!({
        "results": results,
        "succeeded": results.iter().filter(|r| r["ok"] == true).count(),
        "failed": results.iter().filter(|r| r["ok"] == false).count(),
        "totals": totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_body() -> ActionBody {
        ActionBody {
            message: Some("m".into()),
            question: Some("q".into()),
            reason: Some("r".into()),
            adjusted_amount: None,
            ..ActionBody::default()
        }
    }

    #[test]
    fn only_the_settle_route_settles_and_every_other_names_its_own_action() {
        let id: InvoiceId = uuid::Uuid::now_v7().to_string().parse().unwrap();
        let mut segments = std::collections::BTreeSet::new();
        for action in ACTIONS {
            assert!(segments.insert(action.segment()), "{action} twice");
            let command = action.command(id, full_body()).unwrap();
            let expected = match action {
                Action::Settle => "SettleInvoice".to_owned(),
                other => format!("Invoice {}", other.segment()),
            };
            let made = match &command {
                Command::SettleInvoice { .. } => "SettleInvoice".to_owned(),
                Command::Invoice { action, .. } => format!("Invoice {}", action.name()),
                other => panic!("{action}: {other:?}"),
            };
            assert_eq!(made, expected);
        }
        assert_eq!(segments.len(), ACTIONS.len());
    }

    #[test]
    fn bulk_routes_make_their_own_action() {
        let body = BulkBody {
            _request_id: None,
            invoice_ids: vec![uuid::Uuid::now_v7().to_string()],
            reason: Some("r".into()),
        };
        for kind in BULK {
            let commands = bulk_commands(kind, &body).unwrap();
            let [Command::Invoice { action, .. }] = commands.as_slice() else {
                panic!("{kind}: {commands:?}");
            };
            assert_eq!(action.name(), kind.segment());
        }
    }
}
