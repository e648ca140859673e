//! Settlement and the payments read side.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{JsonBody, RequestIdField};
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Format, Named, Page, Period, Query};
use crate::routes::invoices::BULK_MAX;
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use ledger_core::domain::payment::PaymentStatus;
use ledger_core::domain::Command;
use ledger_core::ids::{InvoiceId, PaymentId};
use projections::schema;
use projections::sql::queries::payments::{self, LogPage, PaymentFilter};
use schemars::JsonSchema;
use serde::Deserialize;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::LIST_PAYMENTS, list),
        Route::new(&operations::EXPORT_PAYMENTS, export),
        Route::new(&operations::GET_PAYMENT, get_one),
        Route::new(&operations::SETTLE_INVOICE, settle),
        Route::new(&operations::BULK_SETTLE_INVOICES, bulk_settle),
        Route::new(&operations::SETTLE_ALL_DUE, settle_all_due),
        Route::new(&operations::RETRY_FAILED_PAYMENTS, retry_failed),
    ]
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "SettleRequest")]
struct Settle {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// An approved invoice the caller owes.
    #[schemars(with = "schema::Uuid")]
    invoice_id: String,
}

fn invoice_id(raw: &str) -> ApiResult<InvoiceId> {
    raw.parse()
        .map_err(|_| ApiError::Validation(format!("`{raw}` is not an invoice id")))
}

async fn run(
    caller: &Caller,
    state: &AppState,
    request_id: Option<ledger_core::ids::RequestId>,
    fingerprint: [u8; 32],
    command: Command,
) -> ApiResult<Response> {
    execute(
        state,
        Request {
            actor: caller.actor(),
            request_id,
            fingerprint,
            command,
            render: render_outcome(),
        },
    )
    .await
}

async fn settle(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<Settle>,
) -> ApiResult<Response> {
    let id = invoice_id(&body.value.invoice_id)?;
    run(
        &caller,
        &state,
        body.request_id,
        body.fingerprint,
        Command::SettleInvoice { id },
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "BulkSettleRequest")]
struct BulkSettle {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "Vec<schema::Uuid>", length(min = 1, max = BULK_MAX))]
    invoice_ids: Vec<String>,
}

async fn bulk_settle(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<BulkSettle>,
) -> ApiResult<Response> {
    let ids = &body.value.invoice_ids;
    if ids.is_empty() || ids.len() > BULK_MAX {
        return Err(ApiError::Validation(format!(
            "invoiceIds must hold 1 to {} ids",
            BULK_MAX
        )));
    }
    let commands = ids
        .iter()
        .map(|raw| invoice_id(raw).map(|id| Command::SettleInvoice { id }))
        .collect::<ApiResult<Vec<_>>>()?;
    run(
        &caller,
        &state,
        body.request_id,
        body.fingerprint,
        Command::Bulk(commands),
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "SettleAllDueRequest")]
struct SettleAllDue {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Default today (UTC).
    #[schemars(with = "Option<schema::Date>")]
    as_of: Option<String>,
}

async fn settle_all_due(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<SettleAllDue>,
) -> ApiResult<Response> {
    let as_of = match body.value.as_of.as_deref() {
        Some(d) => crate::input::date("asOf", d)?,
        None => state.clock.now().date(),
    };
    run(
        &caller,
        &state,
        body.request_id,
        body.fingerprint,
        Command::SettleAllDue { as_of },
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "RetryFailedRequest")]
struct RetryFailed {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Default: every FAILED payment the caller pays.
    #[schemars(with = "Option<Vec<schema::Uuid>>", length(max = BULK_MAX))]
    payment_ids: Option<Vec<String>>,
}

async fn retry_failed(
    caller: Caller,
    State(state): State<AppState>,
    body: JsonBody<RetryFailed>,
) -> ApiResult<Response> {
    let ids = match &body.value.payment_ids {
        None => None,
        Some(ids) if ids.len() > BULK_MAX => {
            return Err(ApiError::Validation("at most 500 paymentIds".into()))
        }
        Some(ids) => Some(
            ids.iter()
                .map(|raw| {
                    raw.parse::<PaymentId>()
                        .map_err(|_| ApiError::Validation(format!("`{raw}` is not a payment id")))
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
    };
    run(
        &caller,
        &state,
        body.request_id,
        body.fingerprint,
        Command::RetryFailedPayments { ids },
    )
    .await
}

async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: PaymentId = path_id(&id, "payment")?;
    let org = caller.organization_id;
    let p = state
        .sql(|c| payments::visible_payment(c, org, id))?
        .ok_or(ApiError::NotFound("payment"))?;
    Ok(json_value(&views::payment(&p)))
}

/// The list's and the export's filters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filters {
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Named<PaymentStatus>>,
    #[serde(default, deserialize_with = "query::optional")]
    invoice_id: Option<InvoiceId>,
    #[serde(flatten)]
    period: Period,
}

impl Filters {
    fn filter(&self) -> PaymentFilter {
        PaymentFilter {
            status: self.status.map(|s| s.0),
            invoice: self.invoice_id,
            from: self.period.from(),
            to: self.period.to(),
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(flatten)]
    filters: Filters,
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Format,
    #[serde(flatten)]
    filters: Filters,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let filter = q.filters.filter();
    let org = caller.organization_id;
    let page = LogPage {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
    };
    let (items, next) = state.sql(|c| payments::list_payments(c, org, &filter, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::payment_view).collect(),
        next_cursor: next.map(|k| paging::encode_cursor(&k)),
    }))
}

const PAYMENT_COLUMNS: &[&str] = &[
    "id",
    "invoiceId",
    "payerOrganizationId",
    "payeeOrganizationId",
    "currency",
    "amount",
    "status",
    "failureReason",
    "attempts",
    "createdAt",
    "completedAt",
];

async fn export(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = q.format;
    let filter = q.filters.filter();
    let org = caller.organization_id;
    let exporter = crate::export::Exporter {
        name: "payments",
        columns: PAYMENT_COLUMNS,
        read: Box::new(move |c, chunk| {
            let rows = payments::export_payments(c, org, &filter, chunk)?;
            Ok(rows
                .into_iter()
                .map(|(seq, p)| (seq, views::payment(&p)))
                .collect())
        }),
    };
    crate::export::stream(&state, exporter, format)
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use super::*;
    use crate::openapi::prelude::*;

    pub const LIST_PAYMENTS: Op = Op {
        path: "/api/v1/payments",
        operation_id: "listPayments",
        tag: PAYMENTS,
        summary: "List payments",
        description: "Needs `payments:read`. Payments the caller pays or receives, oldest first. `from`/`to` filter on `createdAt`.",
        auth: Auth::Key(PAYMENTS_READ),
        query: PAYMENT_LIST_QUERY,
        success: Success::Json("PaymentPage"),
        ..BASE
    };

    pub const EXPORT_PAYMENTS: Op = Op {
        path: "/api/v1/payments/export",
        operation_id: "exportPayments",
        tag: PAYMENTS,
        summary: "Export payments",
        description: "Needs `payments:read`. Every payment matching the filters, streamed as JSON lines (default) or CSV (`format=csv`, with a header row), as an attachment.",
        auth: Auth::Key(PAYMENTS_READ),
        query: PAYMENT_EXPORT_QUERY,
        success: Success::Export("Payment"),
        ..BASE
    };

    pub const GET_PAYMENT: Op = Op {
        path: "/api/v1/payments/{id}",
        operation_id: "getPayment",
        tag: PAYMENTS,
        summary: "Get a payment",
        description: "Needs `payments:read`. Payer and payee both see it.",
        auth: Auth::Key(PAYMENTS_READ),
        success: Success::Json("Payment"),
        ..BASE
    };

    pub const SETTLE_INVOICE: Op = Op {
        method: Post,
        path: "/api/v1/payments/settle",
        operation_id: "settleInvoice",
        tag: PAYMENTS,
        summary: "Settle an approved invoice",
        description: "Buyer, `payments:write`. APPROVED or APPROVED_WITH_ADJUSTMENT → SETTLED: the reservation is debited from the buyer and the seller credited, one SETTLEMENT transaction on each side. When either party's balance in that currency is frozen the payment is FAILED (still `200`), the invoice stays approved and the reservation is kept; once unfrozen, `retry-failed` (or settling again) completes it.",
        auth: Auth::Key(PAYMENTS_WRITE),
        body: Body::Required(json::<Settle>),
        success: Success::Json("Payment"),
        fails: &[Fail::Party, Fail::State, Fail::Missing("invoice")],
        ..BASE
    };

    pub const BULK_SETTLE_INVOICES: Op = Op {
        method: Post,
        path: "/api/v1/payments/bulk-settle",
        operation_id: "bulkSettleInvoices",
        tag: PAYMENTS,
        summary: "Settle many invoices",
        description: "Buyer, `payments:write`. Settles each invoice as `POST /payments/settle` would; each succeeds or fails on its own. Answers a result per invoice, with the payment when it succeeded.",
        auth: Auth::Key(PAYMENTS_WRITE),
        body: Body::Required(json::<BulkSettle>),
        success: Success::Json("PaymentBulkResult"),
        ..BASE
    };

    pub const SETTLE_ALL_DUE: Op = Op {
        method: Post,
        path: "/api/v1/payments/settle-all-due",
        operation_id: "settleAllDue",
        tag: PAYMENTS,
        summary: "Settle every due invoice",
        description: "Buyer, `payments:write`. Settles every approved invoice the caller owes with `dueDate <= asOf` (default: today, UTC). Answers a result per invoice (an empty list when none is due).",
        auth: Auth::Key(PAYMENTS_WRITE),
        body: Body::Optional(json::<SettleAllDue>),
        success: Success::Json("PaymentBulkResult"),
        ..BASE
    };

    pub const RETRY_FAILED_PAYMENTS: Op = Op {
        method: Post,
        path: "/api/v1/payments/retry-failed",
        operation_id: "retryFailedPayments",
        tag: PAYMENTS,
        summary: "Retry failed payments",
        description: "Payer, `payments:write`. Retries the given FAILED payments, or all of the caller's when `paymentIds` is left out. Answers a result per payment.",
        auth: Auth::Key(PAYMENTS_WRITE),
        body: Body::Optional(json::<RetryFailed>),
        success: Success::Json("PaymentBulkResult"),
        ..BASE
    };
}
