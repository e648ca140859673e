//! Invoices: create, read, search, edit, every action of the state diagram,
//! line items, bulk actions and history.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{Empty, JsonBody, NonBlank, OptionalReason, Reason, RequestIdField};
use crate::bulk;
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::openapi::Op;
use crate::paging;
use crate::query::{self, Day, Named, Page, Query};
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::NaiveDate;
use ledger_core::domain::command::{
    InvoiceAction, InvoicePatch, LineItemInput, LineItemPatch, NewInvoice,
};
use ledger_core::domain::invoice::{
    InvoiceStatus, MAX_ATTACHMENTS, MAX_LINE_ITEMS, MAX_NUMBER_CHARS, MAX_TEXT_CHARS,
};
use ledger_core::domain::{Command, Ctx, Ledger};
use ledger_core::events::Actor;
use ledger_core::events::{Party, StreamId, StreamKind};
use ledger_core::ids::OrganizationId;
use ledger_core::ids::{ConnectionId, FileId, InvoiceId, LineItemId};
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use projections::schema;
use projections::sql::queries::{self, InvoiceSort};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
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
    /// The action's route, reading the action's own body type.
    fn route(self) -> Route {
        match self {
            Action::RespondInfo => self.reading::<RespondInfo>(),
            Action::Approve => self.reading::<Approve>(),
            Action::Dispute | Action::RequestCancellation => self.reading::<Reason>(),
            Action::RequestInfo => self.reading::<RequestInfo>(),
            Action::Cancel => self.reading::<OptionalReason>(),
            Action::Submit
            | Action::AcceptCancellation
            | Action::RejectCancellation
            | Action::Archive
            | Action::Restore
            | Action::Settle => self.reading::<Empty>(),
        }
    }

    fn reading<B>(self) -> Route
    where
        B: DeserializeOwned + Into<ActionBody> + Send + 'static,
    {
        Route::new(
            self.operation(),
            move |caller: Caller,
                  state: State<AppState>,
                  Path(id): Path<String>,
                  body: JsonBody<B>| {
                act(caller, state, id, body.map(B::into), self)
            },
        )
    }

    /// What the document says of it, the permission the router checks included.
    pub fn operation(self) -> &'static Op {
        match self {
            Action::Submit => &operations::SUBMIT_INVOICE,
            Action::RespondInfo => &operations::RESPOND_INFO,
            Action::Approve => &operations::APPROVE_INVOICE,
            Action::Dispute => &operations::DISPUTE_INVOICE,
            Action::RequestInfo => &operations::REQUEST_INFO,
            Action::Cancel => &operations::CANCEL_INVOICE,
            Action::RequestCancellation => &operations::REQUEST_CANCELLATION,
            Action::AcceptCancellation => &operations::ACCEPT_CANCELLATION,
            Action::RejectCancellation => &operations::REJECT_CANCELLATION,
            Action::Archive => &operations::ARCHIVE_INVOICE,
            Action::Restore => &operations::RESTORE_INVOICE,
            Action::Settle => &operations::SETTLE_INVOICE_BY_ID,
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
    /// The bulk call's operation, and its preview's.
    pub fn operations(self) -> (&'static Op, &'static Op) {
        match self {
            Bulk::Approve => (
                &operations::BULK_APPROVE_INVOICES,
                &operations::PREVIEW_BULK_APPROVE_INVOICES,
            ),
            Bulk::Cancel => (
                &operations::BULK_CANCEL_INVOICES,
                &operations::PREVIEW_BULK_CANCEL_INVOICES,
            ),
            Bulk::Archive => (
                &operations::BULK_ARCHIVE_INVOICES,
                &operations::PREVIEW_BULK_ARCHIVE_INVOICES,
            ),
            Bulk::Restore => (
                &operations::BULK_RESTORE_INVOICES,
                &operations::PREVIEW_BULK_RESTORE_INVOICES,
            ),
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

pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::new(&operations::CREATE_INVOICE, create),
        Route::new(&operations::LIST_INVOICES, list),
        Route::new(&operations::GET_INVOICE, get_one),
        Route::new(&operations::UPDATE_INVOICE, update),
        Route::new(&operations::GET_INVOICE_HISTORY, history),
        Route::new(&operations::ADD_LINE_ITEM, add_line_item),
        Route::new(&operations::UPDATE_LINE_ITEM, update_line_item),
        Route::new(&operations::REMOVE_LINE_ITEM, remove_line_item),
    ];
    routes.extend(ACTIONS.map(Action::route));
    for kind in BULK {
        let (run, preview) = kind.operations();
        routes.push(Route::new(
            run,
            move |caller: Caller, state: State<AppState>, body: JsonBody<BulkBody>| {
                bulk(caller, state, body, kind)
            },
        ));
        routes.push(Route::new(
            preview,
            move |caller: Caller, state: State<AppState>, body: JsonBody<BulkBody>| {
                bulk_preview(caller, state, body, kind)
            },
        ));
    }
    routes
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

/// A line item. `requestId` applies when it is the body of
/// `POST /invoices/{id}/line-items`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "LineItemInput")]
pub struct LineItemBody {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    description: String,
    #[schemars(with = "schema::Quantity")]
    quantity: String,
    /// In the invoice currency; zero allowed.
    #[schemars(with = "schema::Money")]
    unit_price: String,
    /// Default `"0"`.
    #[schemars(with = "Option<schema::TaxRate>")]
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

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateInvoiceRequest")]
pub struct CreateInvoice {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// An ACTIVE connection where the caller is the seller.
    #[schemars(with = "schema::Uuid")]
    connection_id: String,
    #[schemars(description = format!("Default `INV-000001`, counting per seller. At most {MAX_NUMBER_CHARS} characters."))]
    number: Option<String>,
    #[schemars(with = "schema::Currency")]
    currency: String,
    /// Default today (UTC).
    #[schemars(with = "Option<schema::Date>")]
    issue_date: Option<String>,
    /// Not before `issueDate`.
    #[schemars(with = "schema::Date")]
    due_date: String,
    #[schemars(length(max = MAX_TEXT_CHARS))]
    memo: Option<String>,
    #[schemars(length(max = MAX_LINE_ITEMS))]
    line_items: Vec<LineItemBody>,
    /// File ids, files of the seller.
    #[serde(default)]
    #[schemars(with = "Vec<schema::Uuid>", length(max = MAX_ATTACHMENTS))]
    attachments: Vec<String>,
    /// Submit at once (→ SUBMITTED).
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

/// Only the fields sent change.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "UpdateInvoiceRequest")]
pub struct UpdateInvoice {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// The invoice `version` the edit is based on; stale → 409 VERSION_CONFLICT.
    expected_version: Option<u64>,
    #[schemars(length(max = MAX_NUMBER_CHARS))]
    number: Option<String>,
    /// Not before `issueDate`.
    #[schemars(with = "Option<schema::Date>")]
    due_date: Option<String>,
    /// null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>", length(max = MAX_TEXT_CHARS))]
    memo: Option<Option<String>>,
    /// Replaces every line item.
    #[schemars(length(max = MAX_LINE_ITEMS))]
    line_items: Option<Vec<LineItemBody>>,
    /// Replaces the attachments (file ids, files of the seller).
    #[schemars(with = "Option<Vec<schema::Uuid>>", length(max = MAX_ATTACHMENTS))]
    attachments: Option<Vec<String>>,
}

async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<UpdateInvoice>,
) -> ApiResult<Response> {
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

/// What an action's body may say, whichever action: each action reads its
/// own body type (below, or `body::Empty` and the reasons), turned into this.
#[derive(Default)]
pub struct ActionBody {
    message: Option<String>,
    question: Option<String>,
    reason: Option<String>,
    adjusted_amount: Option<String>,
}

impl From<Empty> for ActionBody {
    fn from(_: Empty) -> Self {
        ActionBody::default()
    }
}

impl From<Reason> for ActionBody {
    fn from(r: Reason) -> Self {
        ActionBody {
            reason: r.reason,
            ..ActionBody::default()
        }
    }
}

impl From<OptionalReason> for ActionBody {
    fn from(r: OptionalReason) -> Self {
        ActionBody {
            reason: r.reason,
            ..ActionBody::default()
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "RespondInfoRequest")]
pub struct RespondInfo {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "NonBlank")]
    message: Option<String>,
}

impl From<RespondInfo> for ActionBody {
    fn from(b: RespondInfo) -> Self {
        ActionBody {
            message: b.message,
            ..ActionBody::default()
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "RequestInfoRequest")]
pub struct RequestInfo {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "NonBlank")]
    question: Option<String>,
}

impl From<RequestInfo> for ActionBody {
    fn from(b: RequestInfo) -> Self {
        ActionBody {
            question: b.question,
            ..ActionBody::default()
        }
    }
}

/// Leave out for a full approval.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "ApproveInvoiceRequest")]
pub struct Approve {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Approve less than `total` (→ APPROVED_WITH_ADJUSTMENT); needs `reason`.
    #[schemars(with = "Option<schema::Money>")]
    adjusted_amount: Option<String>,
    /// Required with `adjustedAmount`.
    #[schemars(length(max = MAX_TEXT_CHARS))]
    reason: Option<String>,
}

impl From<Approve> for ActionBody {
    fn from(b: Approve) -> Self {
        ActionBody {
            adjusted_amount: b.adjusted_amount,
            reason: b.reason,
            ..ActionBody::default()
        }
    }
}

fn required(field: &str, v: Option<String>) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::Validation(format!("{field} is required")))
}

async fn act(
    caller: Caller,
    State(state): State<AppState>,
    id: String,
    body: JsonBody<ActionBody>,
    action: Action,
) -> ApiResult<Response> {
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

/// Only the fields sent change.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "LineItemPatchRequest")]
pub struct LineItemPatchBody {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    description: Option<String>,
    #[schemars(with = "Option<schema::Quantity>")]
    quantity: Option<String>,
    /// In the invoice currency; zero allowed.
    #[schemars(with = "Option<schema::Money>")]
    unit_price: Option<String>,
    #[schemars(with = "Option<schema::TaxRate>")]
    tax_rate: Option<String>,
}

async fn update_line_item(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, line_item_id)): Path<(String, String)>,
    body: JsonBody<LineItemPatchBody>,
) -> ApiResult<Response> {
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
    body: JsonBody<Empty>,
) -> ApiResult<Response> {
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

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "BulkInvoiceRequest")]
pub struct BulkBody {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "Vec<schema::Uuid>", length(min = 1, max = BULK_MAX))]
    invoice_ids: Vec<String>,
    /// bulk-cancel only: the cancellation reason for every invoice.
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
) -> bulk::Preview {
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
        results.push(bulk::PreviewRow {
            ok: result.is_ok(),
            error: result.err().map(|e| ApiError::from(e).into()),
            id: id.to_string(),
        });
    }
    let totals = needed
        .iter()
        .map(|(c, amount)| bulk::PreviewTotal {
            available: available(*c).format(*c),
            currency: c.code(),
            needed: amount.format(*c),
        })
        .collect();
    bulk::Preview::of(results, totals)
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const CREATE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices",
        operation_id: "createInvoice",
        tag: INVOICES,
        summary: "Create an invoice",
        description: "Seller, `invoices:write`. Over an ACTIVE connection where the caller is the seller (the buyer is `403`; a connection that is not ACTIVE is `400`; an unknown one `404`). Starts DRAFT, or SUBMITTED with `submit: true`. `number` defaults to `INV-000001`, counting per seller; `issueDate` to today (UTC); `dueDate` must not be before `issueDate`. Line `amount` = quantity × unitPrice and `taxAmount` = amount × taxRate / 100, each rounded half away from zero to the currency's minor units; `subtotal`, `taxTotal` and `total` are sums of the line figures. Submitting needs at least one line item and a total above zero.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Required(json::<CreateInvoice>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::Missing("connection")],
        ..BASE
    };

    pub const LIST_INVOICES: Op = Op {
        path: "/api/v1/invoices",
        operation_id: "listInvoices",
        tag: INVOICES,
        summary: "List and search invoices",
        description: "Needs `invoices:read`. The invoices the caller is a party to (a buyer sees an invoice from SUBMITTED on). Default order: `createdAt` descending (newest first).",
        auth: Auth::Key(INVOICES_READ),
        query: INVOICE_LIST_QUERY,
        success: Success::Json("InvoicePage"),
        ..BASE
    };

    pub const GET_INVOICE: Op = Op {
        path: "/api/v1/invoices/{id}",
        operation_id: "getInvoice",
        tag: INVOICES,
        summary: "Get an invoice",
        description: "Needs `invoices:read`. Either party; a DRAFT is `404` to the buyer.",
        auth: Auth::Key(INVOICES_READ),
        success: Success::Json("Invoice"),
        ..BASE
    };

    pub const UPDATE_INVOICE: Op = Op {
        method: Patch,
        path: "/api/v1/invoices/{id}",
        operation_id: "updateInvoice",
        tag: INVOICES,
        summary: "Edit an invoice",
        description: "Seller, `invoices:write`, in DRAFT, DISPUTED or INFO_REQUESTED (other states: `400 INVALID_STATE_TRANSITION`; the buyer: `403`). Only the fields sent change; `memo: null` clears the memo; `lineItems` replaces all line items. With `expectedVersion`, a stale version is `409 VERSION_CONFLICT` (`details.currentVersion`). Correct a DISPUTED invoice here, then resubmit it.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Required(json::<UpdateInvoice>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State, Fail::Version],
        ..BASE
    };

    pub const GET_INVOICE_HISTORY: Op = Op {
        path: "/api/v1/invoices/{id}/history",
        operation_id: "getInvoiceHistory",
        tag: INVOICES,
        summary: "Invoice history",
        description: "Needs `invoices:read`. Either party (a DRAFT's history is `404` to the buyer). The invoice's events, oldest first; `version` increases by one with each. The buyer does not see the seller's work on drafts (`InvoiceCreated`, `InvoiceUpdated`, `LineItem*`: the invoice as submitted is what it gets), and `actor.apiKeyId` is shown only to the organization that acted (else null).",
        auth: Auth::Key(INVOICES_READ),
        success: Success::Json("InvoiceHistory"),
        ..BASE
    };

    pub const ADD_LINE_ITEM: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/line-items",
        operation_id: "addLineItem",
        tag: INVOICES,
        summary: "Add a line item",
        description: "Seller, `invoices:write`, DRAFT only. Answers the invoice.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Required(json::<LineItemBody>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const UPDATE_LINE_ITEM: Op = Op {
        method: Patch,
        path: "/api/v1/invoices/{id}/line-items/{lineItemId}",
        operation_id: "updateLineItem",
        tag: INVOICES,
        summary: "Edit a line item",
        description: "Seller, `invoices:write`, DRAFT only. Only the fields sent change; the line's amounts are recomputed. Answers the invoice.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Optional(json::<LineItemPatchBody>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REMOVE_LINE_ITEM: Op = Op {
        method: Delete,
        path: "/api/v1/invoices/{id}/line-items/{lineItemId}",
        operation_id: "removeLineItem",
        tag: INVOICES,
        summary: "Remove a line item",
        description: "Seller, `invoices:write`, DRAFT only. Answers the invoice. For idempotency send `{\"requestId\"}` or an `Idempotency-Key` header.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const SUBMIT_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/submit",
        operation_id: "submitInvoice",
        tag: INVOICES,
        summary: "Submit an invoice",
        description: "Seller, `invoices:write`. DRAFT → SUBMITTED, or DISPUTED → SUBMITTED (resubmission after correcting it). Needs at least one line item and a total above zero.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const RESPOND_INFO: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/respond-info",
        operation_id: "respondInfo",
        tag: INVOICES,
        summary: "Answer the buyer's question",
        description: "Seller, `invoices:write`. INFO_REQUESTED → SUBMITTED; the message is kept as `infoResponse`.",
        auth: Auth::Key(INVOICES_WRITE),
        body: Body::Required(json::<RespondInfo>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const APPROVE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/approve",
        operation_id: "approveInvoice",
        tag: INVOICES,
        summary: "Approve an invoice",
        description: "Buyer, `invoices:approve`. SUBMITTED → APPROVED, or APPROVED_WITH_ADJUSTMENT when `adjustedAmount` (less than `total`, with a `reason`) is given. Reserves the approved amount from the buyer's balance in the invoice currency; not enough available is `400 INSUFFICIENT_BALANCE` and nothing changes.",
        auth: Auth::Key(INVOICES_APPROVE),
        body: Body::Optional(json::<Approve>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State, Fail::Funds],
        ..BASE
    };

    pub const DISPUTE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/dispute",
        operation_id: "disputeInvoice",
        tag: INVOICES,
        summary: "Dispute an invoice",
        description: "Buyer, `invoices:approve`. SUBMITTED → DISPUTED. The seller may then correct it (PATCH) and resubmit, or cancel it; the buyer may cancel it too.",
        auth: Auth::Key(INVOICES_APPROVE),
        body: Body::Required(json::<Reason>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REQUEST_INFO: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/request-info",
        operation_id: "requestInfo",
        tag: INVOICES,
        summary: "Ask the seller a question",
        description: "Buyer, `invoices:approve`. SUBMITTED → INFO_REQUESTED; the question is kept as `infoRequest`.",
        auth: Auth::Key(INVOICES_APPROVE),
        body: Body::Required(json::<RequestInfo>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const CANCEL_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/cancel",
        operation_id: "cancelInvoice",
        tag: INVOICES,
        summary: "Cancel an invoice",
        description: "`invoices:write` or `invoices:approve`. The seller from DRAFT, SUBMITTED or DISPUTED; the buyer from DISPUTED only. → CANCELLED. An approved invoice is cancelled through `request-cancellation` instead.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<OptionalReason>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REQUEST_CANCELLATION: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/request-cancellation",
        operation_id: "requestCancellation",
        tag: INVOICES,
        summary: "Ask to cancel an approved invoice",
        description: "`invoices:write` or `invoices:approve`, either party. APPROVED or APPROVED_WITH_ADJUSTMENT → CANCELLATION_REQUESTED; the reservation is kept until the counterparty answers.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<Reason>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const ACCEPT_CANCELLATION: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/accept-cancellation",
        operation_id: "acceptCancellation",
        tag: INVOICES,
        summary: "Accept a cancellation request",
        description: "`invoices:write` or `invoices:approve`; the counterparty of the requester only (the requester is `403`). CANCELLATION_REQUESTED → CANCELLED; the buyer's reservation is released.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REJECT_CANCELLATION: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/reject-cancellation",
        operation_id: "rejectCancellation",
        tag: INVOICES,
        summary: "Reject a cancellation request",
        description: "`invoices:write` or `invoices:approve`; the counterparty of the requester only (the requester is `403`). CANCELLATION_REQUESTED → the approved state it came from.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const ARCHIVE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/archive",
        operation_id: "archiveInvoice",
        tag: INVOICES,
        summary: "Archive an invoice",
        description: "`invoices:write` or `invoices:approve`, either party. SETTLED or CANCELLED → ARCHIVED. The server may also archive such invoices automatically after a configured number of days.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::State],
        ..BASE
    };

    pub const RESTORE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/restore",
        operation_id: "restoreInvoice",
        tag: INVOICES,
        summary: "Restore an archived invoice",
        description: "`invoices:write` or `invoices:approve`, either party. ARCHIVED → the state it was archived from.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Invoice"),
        fails: &[Fail::State],
        ..BASE
    };

    pub const SETTLE_INVOICE_BY_ID: Op = Op {
        method: Post,
        path: "/api/v1/invoices/{id}/settle",
        operation_id: "settleInvoiceById",
        tag: INVOICES,
        summary: "Settle an approved invoice",
        description: "Buyer, `payments:write`. Same as `POST /api/v1/payments/settle` for this invoice, and answers the payment. APPROVED or APPROVED_WITH_ADJUSTMENT → SETTLED: the reservation is debited from the buyer and the seller credited. When either balance is frozen the payment is FAILED (still `200`), the invoice stays approved and the reservation is kept; settling again retries that payment.",
        auth: Auth::Key(PAYMENTS_WRITE),
        body: Body::Optional(json::<Empty>),
        success: Success::Json("Payment"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const BULK_APPROVE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-approve",
        operation_id: "bulkApproveInvoices",
        tag: INVOICES,
        summary: "Approve many invoices",
        description: "Buyer, `invoices:approve`. Approves each invoice in full (no adjustment), in order; each succeeds or fails on its own (a failure, e.g. `INSUFFICIENT_BALANCE`, does not undo the others). Answers a result per invoice. The request as a whole is idempotent.",
        auth: Auth::Key(INVOICES_APPROVE),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("InvoiceBulkResult"),
        ..BASE
    };

    pub const PREVIEW_BULK_APPROVE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-approve/preview",
        operation_id: "previewBulkApproveInvoices",
        tag: INVOICES,
        summary: "Preview a bulk approval",
        description: "Buyer, `invoices:approve`. What `bulk-approve` would do, changing nothing: a result per invoice (each checked against what the earlier ones would reserve) and, per currency, the amount needed against the amount available.",
        auth: Auth::Key(INVOICES_APPROVE),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("BulkPreview"),
        ..BASE
    };

    pub const BULK_CANCEL_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-cancel",
        operation_id: "bulkCancelInvoices",
        tag: INVOICES,
        summary: "Cancel many invoices",
        description: "`invoices:write` or `invoices:approve`. Cancels each invoice under the rules of `POST /invoices/{id}/cancel`, with the optional `reason`; each succeeds or fails on its own.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("InvoiceBulkResult"),
        ..BASE
    };

    pub const PREVIEW_BULK_CANCEL_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-cancel/preview",
        operation_id: "previewBulkCancelInvoices",
        tag: INVOICES,
        summary: "Preview a bulk cancellation",
        description:
            "`invoices:write` or `invoices:approve`. What `bulk-cancel` would do, changing nothing.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("BulkPreview"),
        ..BASE
    };

    pub const BULK_ARCHIVE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-archive",
        operation_id: "bulkArchiveInvoices",
        tag: INVOICES,
        summary: "Archive many invoices",
        description: "`invoices:write` or `invoices:approve`. Archives each SETTLED or CANCELLED invoice; each succeeds or fails on its own.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("InvoiceBulkResult"),
        ..BASE
    };

    pub const PREVIEW_BULK_ARCHIVE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-archive/preview",
        operation_id: "previewBulkArchiveInvoices",
        tag: INVOICES,
        summary: "Preview a bulk archive",
        description: "`invoices:write` or `invoices:approve`. What `bulk-archive` would do, changing nothing.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("BulkPreview"),
        ..BASE
    };

    pub const BULK_RESTORE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-restore",
        operation_id: "bulkRestoreInvoices",
        tag: INVOICES,
        summary: "Restore many invoices",
        description: "`invoices:write` or `invoices:approve`. Restores each ARCHIVED invoice; each succeeds or fails on its own.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("InvoiceBulkResult"),
        ..BASE
    };

    pub const PREVIEW_BULK_RESTORE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/invoices/bulk-restore/preview",
        operation_id: "previewBulkRestoreInvoices",
        tag: INVOICES,
        summary: "Preview a bulk restore",
        description: "`invoices:write` or `invoices:approve`. What `bulk-restore` would do, changing nothing.",
        auth: Auth::Key(INVOICES_EITHER),
        body: Body::Required(json::<BulkBody>),
        success: Success::Json("BulkPreview"),
        ..BASE
    };
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
