//! Treasury: balances (now, as of a moment, change log, summary, usage),
//! transactions, withdrawals and refunds. `{orgId}` is the caller's own
//! organization or `me`; anything else is 404.

use super::payments::time_param;
use super::{path_id, Query};
use crate::app::AppState;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::commands::{execute, json_value, render_outcome, Request};
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::views;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{Datelike, Duration as Days, NaiveDate};
use ledger_core::domain::Command;
use ledger_core::events::{Destination, Party, Permission};
use ledger_core::ids::{BalanceId, OrganizationId, RefundId, TransactionId, WithdrawalId};
use ledger_core::money::{Amount, Currency};
use ledger_core::time::Timestamp;
use projections::{Transaction, TransactionType};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/treasury/{org_id}/balances", get(balances))
        .route("/treasury/{org_id}/balances/summary", get(summary))
        .route("/treasury/{org_id}/balances/{balance_id}", get(balance))
        .route(
            "/treasury/{org_id}/balances/{balance_id}/changes",
            get(changes),
        )
        .route("/treasury/{org_id}/balances/{balance_id}/usage", get(usage))
        .route("/treasury/{org_id}/transactions", get(transactions))
        .route(
            "/treasury/{org_id}/transactions/export",
            get(export_transactions),
        )
        .route("/treasury/{org_id}/transactions/{id}", get(transaction))
        .route(
            "/treasury/{org_id}/withdrawals",
            post(submit_withdrawal).get(withdrawals),
        )
        .route("/treasury/{org_id}/withdrawals/{id}", get(withdrawal))
        .route(
            "/treasury/{org_id}/withdrawals/{id}/approve",
            post(approve_withdrawal),
        )
        .route(
            "/treasury/{org_id}/withdrawals/{id}/reject",
            post(reject_withdrawal),
        )
        .route(
            "/treasury/{org_id}/withdrawals/{id}/cancel",
            post(cancel_withdrawal),
        )
        .route(
            "/treasury/{org_id}/refunds",
            post(create_refund).get(refunds),
        )
        .route("/treasury/{org_id}/refunds/{id}", get(refund))
        .route(
            "/treasury/{org_id}/refunds/{id}/approve",
            post(approve_refund),
        )
        .route(
            "/treasury/{org_id}/refunds/{id}/reject",
            post(reject_refund),
        )
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
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let model = state.read_model()?;
    let data: Vec<Value> = model
        .balances_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.balances.get(id))
        .map(views::balance)
        .collect();
    Ok(json_value(&json!({ "data": data, "nextCursor": null })))
}

fn own_balance<'a>(
    model: &'a projections::ReadModel,
    org: OrganizationId,
    raw: &str,
) -> ApiResult<&'a ledger_core::domain::balance::Balance> {
    let id: BalanceId = path_id(raw, "balance")?;
    model
        .ledger
        .balances
        .get(&id)
        .filter(|b| b.organization_id == org)
        .ok_or(ApiError::NotFound("balance"))
}

async fn balance(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let model = state.read_model()?;
    let b = own_balance(&model, org, &id)?;
    let Some(as_of) = time_param(&q, "asOf")? else {
        return Ok(json_value(&views::balance(b)));
    };
    let c = b.currency;
    // The last change at or before the moment holds the figures as they stood.
    let last = model
        .balance_changes
        .get(&b.id)
        .and_then(|changes| changes.iter().take_while(|ch| ch.at <= as_of).last());
    let zero = Amount::ZERO.format(c);
    Ok(json_value(&json!({
        "id": b.id.to_string(),
        "organizationId": b.organization_id.to_string(),
        "currency": c.code(),
        "asOf": as_of.rfc3339(),
        "total": last.map(|l| l.total_after.format(c)).unwrap_or(zero.clone()),
        "reserved": last.map(|l| l.reserved_after.format(c)).unwrap_or(zero.clone()),
        "collateral": last.map(|l| l.collateral_after.format(c)).unwrap_or(zero.clone()),
        "available": last.map(|l| l.available_after.format(c)).unwrap_or(zero),
        "frozen": last.is_some_and(|l| l.frozen_after),
        "seq": last.map(|l| l.seq),
    })))
}

async fn changes(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let limit = paging::limit(q.get("limit").map(String::as_str))?;
    let cursor = paging::decode_cursor(q.get("cursor").map(String::as_str))?;
    let model = state.read_model()?;
    let b = own_balance(&model, org, &id)?;
    let items: Vec<_> = model
        .balance_changes
        .get(&b.id)
        .into_iter()
        .flatten()
        .collect();
    let (page, next) = paging::page(items, |ch| format!("{:020}", ch.seq), cursor, limit, false);
    Ok(json_value(&json!({
        "data": page.into_iter().map(|ch| views::balance_change(ch, b.currency)).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let model = state.read_model()?;
    #[derive(Default)]
    struct Row {
        total: Amount,
        reserved: Amount,
        collateral: Amount,
        available: Amount,
        receivable: Amount,
        payable: Amount,
    }
    let mut rows: BTreeMap<Currency, Row> = BTreeMap::new();
    for b in model
        .balances_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.balances.get(id))
    {
        let r = rows.entry(b.currency).or_default();
        r.total = b.total;
        r.reserved = b.reserved;
        r.collateral = b.collateral;
        r.available = b.available();
    }
    for inv in model
        .invoices_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.invoices.get(id))
    {
        let (Some(amount), true) = (
            inv.approved_amount,
            inv.status.is_approved()
                || inv.status == ledger_core::domain::invoice::InvoiceStatus::CancellationRequested,
        ) else {
            continue;
        };
        let r = rows.entry(inv.currency).or_default();
        match inv.party_of(org) {
            Some(Party::Seller) => {
                r.receivable = r.receivable.checked_add(amount).unwrap_or(r.receivable)
            }
            Some(Party::Buyer) => r.payable = r.payable.checked_add(amount).unwrap_or(r.payable),
            None => {}
        }
    }
    let data: Vec<Value> = rows
        .iter()
        .map(|(c, r)| {
            json!({
                "currency": c.code(),
                "total": r.total.format(*c),
                "reserved": r.reserved.format(*c),
                "collateral": r.collateral.format(*c),
                "available": r.available.format(*c),
                "receivable": r.receivable.format(*c),
                "payable": r.payable.format(*c),
            })
        })
        .collect();
    Ok(json_value(&json!({ "data": data })))
}

fn bucket_start(d: NaiveDate, interval: &str) -> NaiveDate {
    match interval {
        "week" => d - Days::days(i64::from(d.weekday().num_days_from_monday())),
        "month" => d.with_day(1).unwrap_or(d),
        _ => d,
    }
}

fn is_inflow(kind: TransactionType) -> bool {
    matches!(
        kind,
        TransactionType::Deposit | TransactionType::SettlementIn | TransactionType::RefundIn
    )
}

async fn usage(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let interval = q.get("interval").map(String::as_str).unwrap_or("day");
    if !["day", "week", "month"].contains(&interval) {
        return Err(ApiError::Validation(
            "interval must be day, week or month".into(),
        ));
    }
    let from = time_param(&q, "from")?;
    let to = time_param(&q, "to")?;
    let model = state.read_model()?;
    let b = own_balance(&model, org, &id)?;
    let c = b.currency;
    let mut buckets: BTreeMap<NaiveDate, (Amount, Amount, Amount)> = BTreeMap::new();
    let txs = model
        .transactions_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|t| model.transactions.get(t))
        .filter(|t| t.balance_id == b.id)
        .filter(|t| from.is_none_or(|f| t.created_at >= f) && to.is_none_or(|x| t.created_at < x));
    for t in txs {
        let e = buckets
            .entry(bucket_start(t.created_at.date(), interval))
            .or_insert((Amount::ZERO, Amount::ZERO, Amount::ZERO));
        if is_inflow(t.kind) {
            e.0 = e.0.checked_add(t.amount).unwrap_or(e.0);
        } else {
            e.1 = e.1.checked_add(t.amount).unwrap_or(e.1);
        }
        e.2 = t.total_after;
    }
    let data: Vec<Value> = buckets
        .iter()
        .map(|(start, (inflow, outflow, closing))| {
            json!({
                "start": start.to_string(),
                "inflow": inflow.format(c),
                "outflow": outflow.format(c),
                "closingBalance": closing.format(c),
            })
        })
        .collect();
    Ok(json_value(
        &json!({ "interval": interval, "currency": c.code(), "data": data }),
    ))
}

pub struct TransactionFilter {
    kind: Option<TransactionType>,
    currency: Option<Currency>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
}

impl TransactionFilter {
    pub fn parse(q: &std::collections::HashMap<String, String>) -> ApiResult<Self> {
        Ok(Self {
            kind: q
                .get("type")
                .map(|s| {
                    TransactionType::parse(s)
                        .ok_or_else(|| ApiError::Validation(format!("unknown type `{s}`")))
                })
                .transpose()?,
            currency: q
                .get("currency")
                .map(|c| Currency::parse(c).map_err(|e| ApiError::Validation(e.to_string())))
                .transpose()?,
            from: time_param(q, "from")?,
            to: time_param(q, "to")?,
        })
    }

    pub fn matches(&self, t: &Transaction) -> bool {
        self.kind.is_none_or(|k| t.kind == k)
            && self.currency.is_none_or(|c| t.currency == c)
            && self.from.is_none_or(|f| t.created_at >= f)
            && self.to.is_none_or(|x| t.created_at < x)
    }
}

async fn transactions(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let filter = TransactionFilter::parse(&q)?;
    let limit = paging::limit(q.get("limit").map(String::as_str))?;
    let cursor = paging::decode_cursor(q.get("cursor").map(String::as_str))?;
    let model = state.read_model()?;
    let items: Vec<&Transaction> = model
        .transactions_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|t| model.transactions.get(t))
        .filter(|t| filter.matches(t))
        .collect();
    let (page, next) = paging::page(items, |t| format!("{:020}", t.seq), cursor, limit, false);
    Ok(json_value(&json!({
        "data": page.into_iter().map(views::transaction).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

async fn transaction(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let id: TransactionId = path_id(&id, "transaction")?;
    let model = state.read_model()?;
    let t = model
        .transactions
        .get(&id)
        .filter(|t| t.organization_id == org)
        .ok_or(ApiError::NotFound("transaction"))?;
    Ok(json_value(&views::transaction(t)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmitWithdrawal {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    currency: String,
    amount: String,
    destination: BTreeMap<String, String>,
}

const MAX_DESTINATION_FIELDS: usize = 20;

async fn submit_withdrawal(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    body: JsonBody<SubmitWithdrawal>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryWrite)?;
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    reason: Option<String>,
}

fn reason(r: Option<String>) -> ApiResult<String> {
    r.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::Validation("reason is required".into()))
}

/// A decision on one pending withdrawal or refund: the same checks for all,
/// then the command `make` builds from the id and the body's reason.
async fn decide_on<Id: std::str::FromStr>(
    (caller, state, org, id, body): (Caller, AppState, String, String, JsonBody<ReasonBody>),
    permission: Permission,
    what: &'static str,
    make: impl FnOnce(Id, Option<String>) -> ApiResult<Command>,
) -> ApiResult<Response> {
    caller.require(permission)?;
    own_org(&caller, &org)?;
    let id: Id = path_id(&id, what)?;
    let command_ = make(id, body.value.reason)?;
    command(&state, &caller, body.request_id, body.fingerprint, command_).await
}

type DecisionArgs = (
    Caller,
    State<AppState>,
    Path<(String, String)>,
    JsonBody<ReasonBody>,
);

fn unpack(
    (caller, State(state), Path((org, id)), body): DecisionArgs,
) -> (Caller, AppState, String, String, JsonBody<ReasonBody>) {
    (caller, state, org, id, body)
}

async fn approve_withdrawal(
    c: Caller,
    s: State<AppState>,
    p: Path<(String, String)>,
    b: JsonBody<ReasonBody>,
) -> ApiResult<Response> {
    decide_on(
        unpack((c, s, p, b)),
        Permission::TreasuryApprove,
        "withdrawal",
        |id, _| Ok(Command::ApproveWithdrawal { id }),
    )
    .await
}

async fn reject_withdrawal(
    c: Caller,
    s: State<AppState>,
    p: Path<(String, String)>,
    b: JsonBody<ReasonBody>,
) -> ApiResult<Response> {
    decide_on(
        unpack((c, s, p, b)),
        Permission::TreasuryApprove,
        "withdrawal",
        |id, r| {
            Ok(Command::RejectWithdrawal {
                id,
                reason: reason(r)?,
            })
        },
    )
    .await
}

async fn cancel_withdrawal(
    c: Caller,
    s: State<AppState>,
    p: Path<(String, String)>,
    b: JsonBody<ReasonBody>,
) -> ApiResult<Response> {
    decide_on(
        unpack((c, s, p, b)),
        Permission::TreasuryWrite,
        "withdrawal",
        |id, _| Ok(Command::CancelWithdrawal { id }),
    )
    .await
}

async fn withdrawals(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let limit = paging::limit(q.get("limit").map(String::as_str))?;
    let cursor = paging::decode_cursor(q.get("cursor").map(String::as_str))?;
    let model = state.read_model()?;
    let items: Vec<_> = model
        .withdrawals_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.withdrawals.get(id))
        .filter(|w| q.get("status").is_none_or(|s| w.status.as_str() == s))
        .collect();
    let (page, next) = paging::page(items, |w| w.id.to_string(), cursor, limit, false);
    Ok(json_value(&json!({
        "data": page.into_iter().map(views::withdrawal).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

async fn withdrawal(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let id: WithdrawalId = path_id(&id, "withdrawal")?;
    let model = state.read_model()?;
    let w = model
        .ledger
        .withdrawals
        .get(&id)
        .filter(|w| w.organization_id == org)
        .ok_or(ApiError::NotFound("withdrawal"))?;
    Ok(json_value(&views::withdrawal(w)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRefund {
    #[serde(rename = "requestId")]
    _request_id: Option<String>,
    transaction_id: String,
    amount: String,
    reason: String,
}

async fn create_refund(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    body: JsonBody<CreateRefund>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryWrite)?;
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

async fn approve_refund(
    c: Caller,
    s: State<AppState>,
    p: Path<(String, String)>,
    b: JsonBody<ReasonBody>,
) -> ApiResult<Response> {
    decide_on(
        unpack((c, s, p, b)),
        Permission::TreasuryApprove,
        "refund",
        |id, _| Ok(Command::ApproveRefund { id }),
    )
    .await
}

async fn reject_refund(
    c: Caller,
    s: State<AppState>,
    p: Path<(String, String)>,
    b: JsonBody<ReasonBody>,
) -> ApiResult<Response> {
    decide_on(
        unpack((c, s, p, b)),
        Permission::TreasuryApprove,
        "refund",
        |id, r| {
            Ok(Command::RejectRefund {
                id,
                reason: reason(r)?,
            })
        },
    )
    .await
}

async fn refunds(
    caller: Caller,
    State(state): State<AppState>,
    Path(org): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let limit = paging::limit(q.get("limit").map(String::as_str))?;
    let cursor = paging::decode_cursor(q.get("cursor").map(String::as_str))?;
    let model = state.read_model()?;
    let items: Vec<_> = model
        .refunds_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.refunds.get(id))
        .collect();
    let (page, next) = paging::page(items, |r| r.id.to_string(), cursor, limit, false);
    Ok(json_value(&json!({
        "data": page.into_iter().map(views::refund).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

async fn refund(
    caller: Caller,
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let id: RefundId = path_id(&id, "refund")?;
    let model = state.read_model()?;
    let r = model
        .ledger
        .refunds
        .get(&id)
        .filter(|r| r.payee_organization_id == org || r.payer_organization_id == org)
        .ok_or(ApiError::NotFound("refund"))?;
    Ok(json_value(&views::refund(r)))
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
    q: Query,
) -> ApiResult<Response> {
    caller.require(Permission::TreasuryRead)?;
    let org = own_org(&caller, &org)?;
    let format = crate::export::format(&q)?;
    let filter = TransactionFilter::parse(&q)?;
    let ids: Vec<TransactionId> = {
        let model = state.read_model()?;
        model
            .transactions_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .filter(|id| {
                model
                    .transactions
                    .get(id)
                    .is_some_and(|t| filter.matches(t))
            })
            .copied()
            .collect()
    };
    let exporter = crate::export::Exporter {
        name: "transactions",
        columns: TRANSACTION_COLUMNS,
        json: |model, id| model.transactions.get(id).map(views::transaction),
    };
    Ok(crate::export::stream(&state, ids, exporter, format))
}
