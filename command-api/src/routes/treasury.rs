//! Treasury: balances (now, as of a moment, change log, summary, usage),
//! transactions, withdrawals and refunds. `{orgId}` is the caller's own
//! organization or `me`; anything else is 404.

use super::{path_id, Route};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{JsonBody, OptionalReason, Reason, RequestIdField};
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::query::{self, Format, Instant, Named, Page, Period, Query};
use crate::views;
use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::response::Response;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::withdrawal::WithdrawalStatus;
use ledger_core::domain::Command;
use ledger_core::events::Destination;
use ledger_core::ids::{BalanceId, OrganizationId, RefundId, TransactionId, WithdrawalId};
use ledger_core::money::{Amount, Currency};
use projections::schema;
use projections::sql::queries::payments::LogPage;
use projections::sql::queries::treasury::{self, Interval, TransactionFilter};
use projections::BalanceChange;
use projections::TransactionType;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::LIST_BALANCES, balances),
        Route::new(&operations::GET_BALANCE_SUMMARY, summary),
        Route::new(&operations::GET_BALANCE, balance),
        Route::new(&operations::LIST_BALANCE_CHANGES, changes),
        Route::new(&operations::GET_BALANCE_USAGE, usage),
        Route::new(&operations::LIST_TRANSACTIONS, transactions),
        Route::new(&operations::EXPORT_TRANSACTIONS, export_transactions),
        Route::new(&operations::GET_TRANSACTION, transaction),
        Route::new(&operations::CREATE_WITHDRAWAL, submit_withdrawal),
        Route::new(&operations::LIST_WITHDRAWALS, withdrawals),
        Route::new(&operations::GET_WITHDRAWAL, withdrawal),
        Route::new(&operations::APPROVE_WITHDRAWAL, approve_withdrawal),
        Route::new(&operations::REJECT_WITHDRAWAL, reject_withdrawal),
        Route::new(&operations::CANCEL_WITHDRAWAL, cancel_withdrawal),
        Route::new(&operations::CREATE_REFUND, create_refund),
        Route::new(&operations::LIST_REFUNDS, refunds),
        Route::new(&operations::GET_REFUND, refund),
        Route::new(&operations::APPROVE_REFUND, approve_refund),
        Route::new(&operations::REJECT_REFUND, reject_refund),
    ]
}

/// The path's organization must be the caller's own (or `me`).
pub fn own_org(caller: &Caller, raw: &str) -> ApiResult<OrganizationId> {
    if raw == "me" || raw.parse::<OrganizationId>().ok() == Some(caller.organization_id) {
        Ok(caller.organization_id)
    } else {
        Err(ApiError::NotFound("organization"))
    }
}

async fn balances(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let balances = state.sql(|c| treasury::balances(c, org))?;
    Ok(json_value(&views::Page {
        data: balances.iter().map(views::balance_view).collect(),
        next_cursor: None,
    }))
}

fn own_balance(state: &AppState, org: OrganizationId, raw: &str) -> ApiResult<Balance> {
    let id: BalanceId = path_id(raw, "balance")?;
    state
        .sql(|c| treasury::own_balance(c, org, id))?
        .ok_or(ApiError::NotFound("balance"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BalanceQuery {
    #[serde(default, deserialize_with = "query::optional")]
    as_of: Option<Instant>,
}

async fn balance(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<BalanceQuery>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let b = own_balance(&state, org, &id)?;
    let Some(Instant(as_of)) = q.as_of else {
        return Ok(json_value(&views::balance(&b)));
    };
    let c = b.currency;
    let last = state.sql(|conn| treasury::balance_as_of(conn, b.id, as_of))?;
    let last = last.as_ref();
    let figure = |f: fn(&BalanceChange) -> Amount| last.map_or(Amount::ZERO, f).format(c);
    Ok(json_value(&BalanceAsOf {
        as_of: as_of.rfc3339(),
        available: figure(|l| l.available_after),
        collateral: figure(|l| l.collateral_after),
        currency: c.code(),
        frozen: last.is_some_and(|l| l.frozen_after),
        id: b.id.to_string(),
        organization_id: b.organization_id.to_string(),
        reserved: figure(|l| l.reserved_after),
        seq: last.map(|l| l.seq),
        total: figure(|l| l.total_after),
    }))
}

// The treasury's own answers. Fields in the byte order of their JSON names,
// as `projections::views` declares them.

/// A balance as it stood at `asOf`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "BalanceAsOf")]
struct BalanceAsOf {
    #[schemars(with = "schema::Timestamp")]
    as_of: String,
    #[schemars(with = "schema::Money")]
    available: String,
    #[schemars(with = "schema::Money")]
    collateral: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    frozen: bool,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Uuid")]
    organization_id: String,
    #[schemars(with = "schema::Money")]
    reserved: String,
    /// The last change at or before `asOf`; null before the first.
    seq: Option<u64>,
    #[schemars(with = "schema::Money")]
    total: String,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "BalanceSummary")]
struct BalanceSummary {
    #[schemars(with = "schema::Money")]
    available: String,
    #[schemars(with = "schema::Money")]
    collateral: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    /// Approved amounts of invoices the caller owes.
    #[schemars(with = "schema::Money")]
    payable: String,
    /// Approved amounts of invoices owed to the caller.
    #[schemars(with = "schema::Money")]
    receivable: String,
    #[schemars(with = "schema::Money")]
    reserved: String,
    #[schemars(with = "schema::Money")]
    total: String,
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BalanceSummaryList")]
struct BalanceSummaryList {
    data: Vec<BalanceSummary>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "BalanceUsage")]
struct BalanceUsage {
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    data: Vec<UsageBucket>,
    #[schemars(schema_with = "interval_schema")]
    interval: &'static str,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "UsageBucket")]
struct UsageBucket {
    /// `total` after the interval's last transaction.
    #[schemars(with = "schema::Money")]
    closing_balance: String,
    #[schemars(with = "schema::Money")]
    inflow: String,
    #[schemars(with = "schema::Money")]
    outflow: String,
    /// First day of the interval.
    #[schemars(with = "schema::Date")]
    start: String,
}

fn interval_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = [Interval::Day, Interval::Week, Interval::Month]
        .iter()
        .map(|i| i.as_str())
        .collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// The component schemas of the answers above.
pub fn add_schemas(c: &mut schema::Components) {
    c.add::<BalanceAsOf>()
        .add::<BalanceSummaryList>()
        .add::<BalanceUsage>();
}

async fn changes(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<Page>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let b = own_balance(&state, org, &id)?;
    let page = LogPage {
        after_key: q.cursor()?,
        limit: q.limit(),
    };
    let (items, next) = state.sql(|c| treasury::list_balance_changes(c, b.id, &page))?;
    Ok(json_value(&views::Page {
        data: items
            .iter()
            .map(|ch| views::balance_change_view(ch, b.currency))
            .collect(),
        next_cursor: next.map(|k| paging::encode_cursor(&k)),
    }))
}

async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let rows = state.sql(|c| treasury::summary(c, org))?;
    let data = rows
        .iter()
        .map(|(c, r)| BalanceSummary {
            available: r.available.format(*c),
            collateral: r.collateral.format(*c),
            currency: c.code(),
            payable: r.payable.format(*c),
            receivable: r.receivable.format(*c),
            reserved: r.reserved.format(*c),
            total: r.total.format(*c),
        })
        .collect();
    Ok(json_value(&BalanceSummaryList { data }))
}

#[derive(Deserialize)]
struct UsageQuery {
    #[serde(default, deserialize_with = "query::optional")]
    interval: Option<Named<Interval>>,
    #[serde(flatten)]
    period: Period,
}

async fn usage(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let interval = q.interval.map_or(Interval::Day, |i| i.0);
    let (from, to) = (q.period.from(), q.period.to());
    let b = own_balance(&state, org, &id)?;
    let c = b.currency;
    let buckets = state.sql(|conn| treasury::usage(conn, b.id, interval, from, to))?;
    let data = buckets
        .iter()
        .map(|u| UsageBucket {
            closing_balance: u.closing.format(c),
            inflow: u.inflow.format(c),
            outflow: u.outflow.format(c),
            start: u.start.to_string(),
        })
        .collect();
    Ok(json_value(&BalanceUsage {
        currency: c.code(),
        data,
        interval: interval.as_str(),
    }))
}

/// The transaction list's and export's filters.
#[derive(Deserialize)]
pub struct TransactionFilters {
    #[serde(default, rename = "type", deserialize_with = "query::optional")]
    kind: Option<Named<TransactionType>>,
    #[serde(default, deserialize_with = "query::optional")]
    currency: Option<Currency>,
    #[serde(flatten)]
    period: Period,
}

impl TransactionFilters {
    pub fn filter(&self) -> TransactionFilter {
        TransactionFilter {
            kind: self.kind.map(|k| k.0),
            currency: self.currency,
            from: self.period.from(),
            to: self.period.to(),
        }
    }
}

#[derive(Deserialize)]
struct TransactionsQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(flatten)]
    filters: TransactionFilters,
}

#[derive(Deserialize)]
struct TransactionsExportQuery {
    #[serde(default)]
    format: Format,
    #[serde(flatten)]
    filters: TransactionFilters,
}

async fn transactions(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    Query(q): Query<TransactionsQuery>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let filter = q.filters.filter();
    let page = LogPage {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
    };
    let (items, next) = state.sql(|c| treasury::list_transactions(c, org, &filter, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::transaction_view).collect(),
        next_cursor: next.map(|k| paging::encode_cursor(&k)),
    }))
}

async fn transaction(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let id: TransactionId = path_id(&id, "transaction")?;
    let t = state
        .sql(|c| treasury::own_transaction(c, org, id))?
        .ok_or(ApiError::NotFound("transaction"))?;
    Ok(json_value(&views::transaction(&t)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateWithdrawalRequest")]
struct SubmitWithdrawal {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    #[schemars(with = "schema::Currency")]
    currency: String,
    /// Greater than zero, at most the available balance.
    #[schemars(with = "schema::Money")]
    amount: String,
    #[schemars(with = "DestinationSchema")]
    destination: BTreeMap<String, String>,
}

/// Where a withdrawal's money goes, as the document shows it.
struct DestinationSchema;

impl JsonSchema for DestinationSchema {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Destination".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "Where the money goes: string fields, one of which is a non-blank `iban` or `accountNumber`; at most 20 fields, names up to 64 and values up to 256 characters.",
            "additionalProperties": { "type": "string", "maxLength": 256 },
            "maxProperties": 20,
            "anyOf": [ { "required": ["iban"] }, { "required": ["accountNumber"] } ],
            "examples": [{ "iban": "DE89370400440532013000", "bic": "COBADEFFXXX" }],
        })
    }
}

const MAX_DESTINATION_FIELDS: usize = 20;

async fn submit_withdrawal(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    body: JsonBody<SubmitWithdrawal>,
) -> ApiResult<Response> {
    own_org(&caller, &org)?;
    let v = &body.value;
    let currency = Currency::parse(&v.currency).map_err(|e| ApiError::Validation(e.to_string()))?;
    let amount =
        Amount::parse(currency, &v.amount).map_err(|e| ApiError::Validation(e.to_string()))?;
    let has_account = ["iban", "accountNumber"]
        .iter()
        .any(|k| v.destination.get(*k).is_some_and(|s| !s.trim().is_empty()));
    if !has_account
        || v.destination.len() > MAX_DESTINATION_FIELDS
        || v.destination
            .iter()
            .any(|(k, x)| k.len() > 64 || x.len() > 256)
    {
        return Err(ApiError::Validation(
            "destination needs an iban or accountNumber (at most 20 fields, short values)".into(),
        ));
    }
    let destination = Destination {
        fields: v
            .destination
            .iter()
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect(),
    };
    command(
        &state,
        &caller,
        body.request_id,
        body.fingerprint,
        Command::SubmitWithdrawal {
            currency,
            amount,
            destination,
        },
    )
    .await
}

async fn command(
    state: &AppState,
    caller: &Caller,
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

/// A decision on one pending withdrawal or refund (approve, reject, cancel):
/// the caller, the path's organization and id, and the body's reason,
/// extracted in the order every handler took them.
struct Decision<B> {
    caller: Caller,
    state: AppState,
    org: String,
    id: String,
    body: JsonBody<B>,
}

impl<B: DeserializeOwned + Send> FromRequest<AppState> for Decision<B> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> ApiResult<Self> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let Path((org, id)) = Path::<(String, String)>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ApiError::RouteNotFound)?;
        let request = axum::extract::Request::from_parts(parts, body);
        let body = JsonBody::<B>::from_request(request, state).await?;
        Ok(Decision {
            caller,
            state: state.clone(),
            org,
            id,
            body,
        })
    }
}

impl<B> Decision<B> {
    /// The same checks for all, then the command `make` builds from the id
    /// and the body.
    async fn decide<Id: std::str::FromStr>(
        self,
        what: &'static str,
        make: impl FnOnce(Id, B) -> ApiResult<Command>,
    ) -> ApiResult<Response> {
        let Decision {
            caller,
            state,
            org,
            id,
            body,
        } = self;
        own_org(&caller, &org)?;
        let id: Id = path_id(&id, what)?;
        let command_ = make(id, body.value)?;
        command(&state, &caller, body.request_id, body.fingerprint, command_).await
    }
}

async fn approve_withdrawal(d: Decision<OptionalReason>) -> ApiResult<Response> {
    d.decide("withdrawal", |id, _| Ok(Command::ApproveWithdrawal { id }))
        .await
}

async fn reject_withdrawal(d: Decision<Reason>) -> ApiResult<Response> {
    d.decide("withdrawal", |id, r| {
        Ok(Command::RejectWithdrawal {
            id,
            reason: r.required()?,
        })
    })
    .await
}

async fn cancel_withdrawal(d: Decision<OptionalReason>) -> ApiResult<Response> {
    d.decide("withdrawal", |id, _| Ok(Command::CancelWithdrawal { id }))
        .await
}

#[derive(Deserialize)]
struct WithdrawalsQuery {
    #[serde(flatten)]
    page: Page,
    #[serde(default, deserialize_with = "query::optional")]
    status: Option<Named<WithdrawalStatus>>,
}

async fn withdrawals(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    Query(q): Query<WithdrawalsQuery>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let status = q.status.map(|s| s.0.as_str());
    let page = LogPage {
        after_key: q.page.cursor()?,
        limit: q.page.limit(),
    };
    let (items, next) = state.sql(|c| treasury::list_withdrawals(c, org, status, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::withdrawal_view).collect(),
        next_cursor: next.map(|k| paging::encode_cursor(&k)),
    }))
}

async fn withdrawal(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let id: WithdrawalId = path_id(&id, "withdrawal")?;
    let w = state
        .sql(|c| treasury::own_withdrawal(c, org, id))?
        .ok_or(ApiError::NotFound("withdrawal"))?;
    Ok(json_value(&views::withdrawal(&w)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CreateRefundRequest")]
struct CreateRefund {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// A SETTLEMENT_IN or SETTLEMENT_OUT transaction of the caller.
    #[schemars(with = "schema::Uuid")]
    transaction_id: String,
    /// Greater than zero; with earlier refunds, at most the settled amount.
    #[schemars(with = "schema::Money")]
    amount: String,
    reason: String,
}

async fn create_refund(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    body: JsonBody<CreateRefund>,
) -> ApiResult<Response> {
    own_org(&caller, &org)?;
    let v = body.value;
    let transaction_id: TransactionId = v
        .transaction_id
        .parse()
        .map_err(|_| ApiError::Validation("transactionId must be a UUID".into()))?;
    let cmd = Command::CreateRefund {
        transaction_id,
        amount: v.amount,
        reason: v.reason,
    };
    command(&state, &caller, body.request_id, body.fingerprint, cmd).await
}

async fn approve_refund(d: Decision<OptionalReason>) -> ApiResult<Response> {
    d.decide("refund", |id, _| Ok(Command::ApproveRefund { id }))
        .await
}

async fn reject_refund(d: Decision<Reason>) -> ApiResult<Response> {
    d.decide("refund", |id, r| {
        Ok(Command::RejectRefund {
            id,
            reason: r.required()?,
        })
    })
    .await
}

async fn refunds(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    Query(q): Query<Page>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let page = LogPage {
        after_key: q.cursor()?,
        limit: q.limit(),
    };
    let (items, next) = state.sql(|c| treasury::list_refunds(c, org, &page))?;
    Ok(json_value(&views::Page {
        data: items.iter().map(views::refund_view).collect(),
        next_cursor: next.map(|k| paging::encode_cursor(&k)),
    }))
}

async fn refund(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let id: RefundId = path_id(&id, "refund")?;
    let r = state
        .sql(|c| treasury::visible_refund(c, org, id))?
        .ok_or(ApiError::NotFound("refund"))?;
    Ok(json_value(&views::refund(&r)))
}

const TRANSACTION_COLUMNS: &[&str] = &[
    "id",
    "type",
    "currency",
    "amount",
    "totalAfter",
    "reference",
    "invoiceId",
    "paymentId",
    "withdrawalId",
    "refundId",
    "counterpartyOrganizationId",
    "createdAt",
];

async fn export_transactions(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    Query(q): Query<TransactionsExportQuery>,
) -> ApiResult<Response> {
    let org = own_org(&caller, &org)?;
    let format = q.format;
    let filter = q.filters.filter();
    let exporter = crate::export::Exporter {
        name: "transactions",
        columns: TRANSACTION_COLUMNS,
        read: Box::new(move |c, chunk| {
            let rows = treasury::export_transactions(c, org, &filter, chunk)?;
            Ok(rows
                .into_iter()
                .map(|(seq, t)| (seq, views::transaction(&t)))
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

    pub const LIST_BALANCES: Op = Op {
        path: "/api/v1/treasury/{orgId}/balances",
        operation_id: "listBalances",
        tag: TREASURY,
        summary: "List balances",
        description: "Needs `treasury:read`. One balance per currency the organization has used; `available = total - reserved - collateral`. All of them in one page (`nextCursor` is always null).",
        auth: Auth::Key(TREASURY_READ),
        success: Success::Json("BalancePage"),
        ..BASE
    };

    pub const GET_BALANCE_SUMMARY: Op = Op {
        path: "/api/v1/treasury/{orgId}/balances/summary",
        operation_id: "getBalanceSummary",
        tag: TREASURY,
        summary: "Balance summary per currency",
        description: "Needs `treasury:read`. Per currency: the balance figures, `receivable` (approved amounts of invoices owed to the caller, including those with a pending cancellation request) and `payable` (the same owed by the caller).",
        auth: Auth::Key(TREASURY_READ),
        success: Success::Json("BalanceSummaryList"),
        ..BASE
    };

    pub const GET_BALANCE: Op = Op {
        path: "/api/v1/treasury/{orgId}/balances/{balanceId}",
        operation_id: "getBalance",
        tag: TREASURY,
        summary: "Get a balance, now or as of a moment",
        description: "Needs `treasury:read`. Without `asOf`, the balance now. With `asOf`, the figures as they stood after the last change at or before that moment (all zero before the first one), as a `BalanceAsOf`.",
        auth: Auth::Key(TREASURY_READ),
        query: &[q("asOf", "A moment in the past (RFC 3339 time, or a date meaning midnight UTC).", Ty::Instant)],
        success: Success::Json("BalanceLookup"),
        ..BASE
    };

    pub const LIST_BALANCE_CHANGES: Op = Op {
        path: "/api/v1/treasury/{orgId}/balances/{balanceId}/changes",
        operation_id: "listBalanceChanges",
        tag: TREASURY,
        summary: "Balance change log",
        description: "Needs `treasury:read`. Every change of the balance, oldest first, with the figures after it and its cause.",
        auth: Auth::Key(TREASURY_READ),
        query: PAGE,
        success: Success::Json("BalanceChangePage"),
        ..BASE
    };

    pub const GET_BALANCE_USAGE: Op = Op {
        path: "/api/v1/treasury/{orgId}/balances/{balanceId}/usage",
        operation_id: "getBalanceUsage",
        tag: TREASURY,
        summary: "Balance usage over time",
        description: "Needs `treasury:read`. A time series of the balance's transactions: per interval (UTC days, ISO weeks from Monday, or calendar months) with at least one transaction, the inflow (deposits, settlements and refunds received), outflow (withdrawals, settlements and refunds paid) and the closing total.",
        auth: Auth::Key(TREASURY_READ),
        query: &[
            q(
                "interval",
                "Bucket size.",
                Ty::Enum {
                    values: &["day", "week", "month"],
                    default: Some("day"),
                },
            ),
            Param::From,
            Param::To,
        ],
        success: Success::Json("BalanceUsage"),
        ..BASE
    };

    pub const LIST_TRANSACTIONS: Op = Op {
        path: "/api/v1/treasury/{orgId}/transactions",
        operation_id: "listTransactions",
        tag: TREASURY,
        summary: "List transactions",
        description: "Needs `treasury:read`. Money movements on the organization's balances, oldest first. `amount` is always positive; `type` gives the direction.",
        auth: Auth::Key(TREASURY_READ),
        query: TRANSACTION_LIST_QUERY,
        success: Success::Json("TransactionPage"),
        ..BASE
    };

    pub const EXPORT_TRANSACTIONS: Op = Op {
        path: "/api/v1/treasury/{orgId}/transactions/export",
        operation_id: "exportTransactions",
        tag: TREASURY,
        summary: "Export transactions",
        description: "Needs `treasury:read`. Every transaction matching the filters, streamed as JSON lines (default) or CSV (`format=csv`, with a header row), as an attachment.",
        auth: Auth::Key(TREASURY_READ),
        query: TRANSACTION_EXPORT_QUERY,
        success: Success::Export("Transaction"),
        ..BASE
    };

    pub const GET_TRANSACTION: Op = Op {
        path: "/api/v1/treasury/{orgId}/transactions/{id}",
        operation_id: "getTransaction",
        tag: TREASURY,
        summary: "Get a transaction",
        description: "Needs `treasury:read`.",
        auth: Auth::Key(TREASURY_READ),
        success: Success::Json("Transaction"),
        ..BASE
    };

    pub const CREATE_WITHDRAWAL: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/withdrawals",
        operation_id: "createWithdrawal",
        tag: TREASURY,
        summary: "Submit a withdrawal",
        description: "Needs `treasury:write`. Holds the amount (reserved) and waits in PENDING_APPROVAL for another API key to approve it. Not enough available is `400 INSUFFICIENT_BALANCE`; a frozen balance is `400 INVALID_STATE_TRANSITION`.",
        auth: Auth::Key(TREASURY_WRITE),
        body: Body::Required(json::<SubmitWithdrawal>),
        success: Success::Json("Withdrawal"),
        fails: &[Fail::Funds, Fail::State],
        ..BASE
    };

    pub const LIST_WITHDRAWALS: Op = Op {
        path: "/api/v1/treasury/{orgId}/withdrawals",
        operation_id: "listWithdrawals",
        tag: TREASURY,
        summary: "List withdrawals",
        description: "Needs `treasury:read`. Oldest first.",
        auth: Auth::Key(TREASURY_READ),
        query: &[
            q(
                "status",
                "Only withdrawals in this state.",
                Ty::Schema("WithdrawalStatus"),
            ),
            Param::Limit,
            Param::Cursor,
        ],
        success: Success::Json("WithdrawalPage"),
        ..BASE
    };

    pub const GET_WITHDRAWAL: Op = Op {
        path: "/api/v1/treasury/{orgId}/withdrawals/{id}",
        operation_id: "getWithdrawal",
        tag: TREASURY,
        summary: "Get a withdrawal",
        description: "Needs `treasury:read`.",
        auth: Auth::Key(TREASURY_READ),
        success: Success::Json("Withdrawal"),
        ..BASE
    };

    pub const APPROVE_WITHDRAWAL: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/withdrawals/{id}/approve",
        operation_id: "approveWithdrawal",
        tag: TREASURY,
        summary: "Approve a withdrawal",
        description: "Needs `treasury:approve`, and a different API key than the one that submitted it (else `403`). PENDING_APPROVAL → COMPLETED: the balance is debited and a WITHDRAWAL transaction recorded. A frozen balance is `400 INVALID_STATE_TRANSITION`.",
        auth: Auth::Key(TREASURY_APPROVE),
        body: Body::Optional(json::<OptionalReason>),
        success: Success::Json("Withdrawal"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const REJECT_WITHDRAWAL: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/withdrawals/{id}/reject",
        operation_id: "rejectWithdrawal",
        tag: TREASURY,
        summary: "Reject a withdrawal",
        description: "Needs `treasury:approve`, and a different API key than the one that submitted it (else `403`). PENDING_APPROVAL → REJECTED; the hold is released.",
        auth: Auth::Key(TREASURY_APPROVE),
        body: Body::Required(json::<Reason>),
        success: Success::Json("Withdrawal"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const CANCEL_WITHDRAWAL: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/withdrawals/{id}/cancel",
        operation_id: "cancelWithdrawal",
        tag: TREASURY,
        summary: "Cancel a withdrawal",
        description: "Needs `treasury:write`; only the API key that submitted it (else `403`). PENDING_APPROVAL → CANCELLED; the hold is released.",
        auth: Auth::Key(TREASURY_WRITE),
        body: Body::Optional(json::<OptionalReason>),
        success: Success::Json("Withdrawal"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };

    pub const CREATE_REFUND: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/refunds",
        operation_id: "createRefund",
        tag: TREASURY,
        summary: "Request a refund",
        description: "Needs `treasury:write`. Against a SETTLEMENT transaction of either party (an unknown or unrelated transaction is `404`); the total refunded may not exceed the settled amount (`400`). Starts PENDING until the payee (the party that received the settlement) approves or rejects it.",
        auth: Auth::Key(TREASURY_WRITE),
        body: Body::Required(json::<CreateRefund>),
        success: Success::Json("Refund"),
        fails: &[Fail::Missing("transaction")],
        ..BASE
    };

    pub const LIST_REFUNDS: Op = Op {
        path: "/api/v1/treasury/{orgId}/refunds",
        operation_id: "listRefunds",
        tag: TREASURY,
        summary: "List refunds",
        description:
            "Needs `treasury:read`. Refunds the organization pays or receives, oldest first.",
        auth: Auth::Key(TREASURY_READ),
        query: PAGE,
        success: Success::Json("RefundPage"),
        ..BASE
    };

    pub const GET_REFUND: Op = Op {
        path: "/api/v1/treasury/{orgId}/refunds/{id}",
        operation_id: "getRefund",
        tag: TREASURY,
        summary: "Get a refund",
        description: "Needs `treasury:read`. Payer and payee both see it.",
        auth: Auth::Key(TREASURY_READ),
        success: Success::Json("Refund"),
        ..BASE
    };

    pub const APPROVE_REFUND: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/refunds/{id}/approve",
        operation_id: "approveRefund",
        tag: TREASURY,
        summary: "Approve a refund",
        description: "Needs `treasury:approve`; the payee only (else `403`). PENDING → APPROVED: moves the amount from the payee to the payer (REFUND_OUT and REFUND_IN transactions). The payee lacking available funds is `400 INSUFFICIENT_BALANCE`; a frozen payee balance `400 INVALID_STATE_TRANSITION`.",
        auth: Auth::Key(TREASURY_APPROVE),
        body: Body::Optional(json::<OptionalReason>),
        success: Success::Json("Refund"),
        fails: &[Fail::Party, Fail::State, Fail::Funds],
        ..BASE
    };

    pub const REJECT_REFUND: Op = Op {
        method: Post,
        path: "/api/v1/treasury/{orgId}/refunds/{id}/reject",
        operation_id: "rejectRefund",
        tag: TREASURY,
        summary: "Reject a refund",
        description: "Needs `treasury:approve`; the payee only (else `403`). PENDING → REJECTED.",
        auth: Auth::Key(TREASURY_APPROVE),
        body: Body::Required(json::<Reason>),
        success: Success::Json("Refund"),
        fails: &[Fail::Party, Fail::State],
        ..BASE
    };
}
