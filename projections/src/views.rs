//! The API's JSON shapes, built from domain state. Used both to answer
//! commands (rendered inside the writer, kept for idempotent replays) and to
//! answer reads from the projections, so both always agree byte for byte.

use crate::schema;
use crate::{BalanceChange, Transaction};
use chrono::NaiveDate;
use ledger_core::domain::api_key::ApiKey;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::Connection;
use ledger_core::domain::file::StoredFile;
use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::organization::Organization;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::events::{LineItem, Party};
use ledger_core::ids::{ConnectionId, FileId, InvoiceId, LineItemId, OrganizationId, PaymentId};
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

fn money(a: Amount, c: Currency) -> String {
    a.format(c)
}

fn ts(t: Timestamp) -> String {
    t.rfc3339()
}

/// A view as a `Value`, for the places that put it inside another or
/// compare it. Cannot fail: every key is a string and every value plain data.
pub fn value<T: Serialize>(view: T) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

// Each view below is the one definition of its resource's JSON: built here,
// served through `value`, and described by its derived schema in the OpenAPI
// document. Fields are declared in the byte order of their JSON names, the
// order a `Value` writes them in.

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Organization")]
pub struct OrganizationView<'a> {
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Uuid")]
    id: String,
    name: &'a str,
}

pub fn organization_view(o: &Organization) -> OrganizationView<'_> {
    OrganizationView {
        created_at: ts(o.created_at),
        id: o.id.to_string(),
        name: &o.name,
    }
}

/// [`organization_view`] as a `Value`.
pub fn organization(o: &Organization) -> Value {
    value(organization_view(o))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ApiKey")]
pub struct ApiKeyView<'a> {
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "Option<schema::Timestamp>")]
    expires_at: Option<String>,
    #[schemars(with = "schema::ApiKeyId")]
    id: String,
    name: &'a str,
    #[schemars(with = "schema::Uuid")]
    organization_id: String,
    #[schemars(with = "Vec<schema::Permission>")]
    permissions: Vec<&'static str>,
    #[schemars(with = "Option<schema::Timestamp>")]
    revoked_at: Option<String>,
}

pub fn api_key_view(k: &ApiKey) -> ApiKeyView<'_> {
    ApiKeyView {
        created_at: ts(k.created_at),
        expires_at: k.expires_at.map(ts),
        id: k.id.to_string(),
        name: &k.name,
        organization_id: k.organization_id.to_string(),
        permissions: k.permissions.iter().map(|p| p.name()).collect(),
        revoked_at: k.revoked_at.map(ts),
    }
}

/// [`api_key_view`] as a `Value`.
pub fn api_key(k: &ApiKey) -> Value {
    value(api_key_view(k))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Connection")]
pub struct ConnectionView<'a> {
    #[schemars(with = "schema::Uuid")]
    buyer_organization_id: String,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Uuid")]
    id: String,
    /// Why the counterparty rejected it, if it said so; null otherwise.
    rejection_reason: Option<&'a str>,
    /// Who asked; the other party answers.
    #[schemars(with = "schema::Uuid")]
    requested_by_organization_id: String,
    #[schemars(with = "schema::Uuid")]
    seller_organization_id: String,
    #[schemars(with = "schema::ConnectionStatus")]
    status: &'static str,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
}

/// `rejection_reason` lives beside the resource (see `sql::rows::ConnectionRow`).
pub fn connection_view<'a>(
    c: &'a Connection,
    rejection_reason: Option<&'a str>,
) -> ConnectionView<'a> {
    ConnectionView {
        buyer_organization_id: c.buyer_organization_id.to_string(),
        created_at: ts(c.created_at),
        id: c.id.to_string(),
        rejection_reason,
        requested_by_organization_id: c.requested_by.to_string(),
        seller_organization_id: c.seller_organization_id.to_string(),
        status: c.status.as_str(),
        updated_at: ts(c.updated_at),
    }
}

/// [`connection_view`] as a `Value`.
pub fn connection(c: &Connection, rejection_reason: Option<&str>) -> Value {
    value(connection_view(c, rejection_reason))
}

/// Written with `Display` straight into the output, without a `String`.
pub struct Shown<T>(pub T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An invoice as the API shows it, serialized without building a `Value`
/// (a list page of 50 spent three quarters of its time building them).
///
/// The fields are declared in the byte order of their JSON names: serde_json
/// writes a `Value`'s keys sorted, and invoices were rendered through one
/// before, so responses kept for idempotent replays, webhook payloads and
/// fresh reads have the same bytes (`views::tests` holds this).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Invoice")]
pub struct InvoiceView<'a> {
    adjustment_reason: &'a Option<String>,
    /// The amount approved (and reserved); null until approved.
    #[schemars(with = "Option<schema::Money>")]
    approved_amount: Option<String>,
    #[schemars(with = "Vec<schema::Uuid>")]
    attachments: Vec<Shown<FileId>>,
    #[schemars(with = "schema::Uuid")]
    buyer_organization_id: Shown<OrganizationId>,
    cancellation_reason: &'a Option<String>,
    cancellation_request: Option<CancellationView<'a>>,
    #[schemars(with = "schema::Uuid")]
    connection_id: Shown<ConnectionId>,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    dispute_reason: &'a Option<String>,
    #[schemars(with = "schema::Date")]
    due_date: Shown<NaiveDate>,
    #[schemars(with = "schema::Uuid")]
    id: Shown<InvoiceId>,
    /// The buyer's question.
    info_request: &'a Option<String>,
    /// The seller's answer.
    info_response: &'a Option<String>,
    #[schemars(with = "schema::Date")]
    issue_date: Shown<NaiveDate>,
    line_items: Vec<LineItemView<'a>>,
    memo: &'a Option<String>,
    number: &'a str,
    #[schemars(with = "Option<schema::Uuid>")]
    payment_id: Option<Shown<PaymentId>>,
    #[schemars(with = "schema::Uuid")]
    seller_organization_id: Shown<OrganizationId>,
    #[schemars(with = "schema::InvoiceStatus")]
    status: &'static str,
    /// Sum of the line amounts.
    #[schemars(with = "schema::Money")]
    subtotal: String,
    /// Sum of the line tax amounts.
    #[schemars(with = "schema::Money")]
    tax_total: String,
    /// subtotal + taxTotal.
    #[schemars(with = "schema::Money")]
    total: String,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
    /// Increases by one with every event of the invoice.
    version: u64,
}

/// A pending request to cancel an approved invoice.
/// Fields in the byte order of their JSON names, as in [`InvoiceView`].
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CancellationRequest")]
struct CancellationView<'a> {
    reason: &'a str,
    #[schemars(with = "schema::Party")]
    requested_by: &'static str,
}

/// Fields in the byte order of their JSON names, as in [`InvoiceView`].
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "LineItem")]
struct LineItemView<'a> {
    /// quantity × unitPrice, rounded half away from zero to the currency's minor units.
    #[schemars(with = "schema::Money")]
    amount: String,
    description: &'a str,
    #[schemars(with = "schema::Uuid")]
    id: Shown<LineItemId>,
    #[schemars(with = "schema::Quantity")]
    quantity: Shown<&'a Quantity>,
    /// amount × taxRate / 100, rounded the same way.
    #[schemars(with = "schema::Money")]
    tax_amount: String,
    #[schemars(with = "schema::TaxRate")]
    tax_rate: Shown<&'a TaxRate>,
    #[schemars(with = "schema::Money")]
    unit_price: String,
}

impl<'a> LineItemView<'a> {
    fn new(l: &'a LineItem, c: Currency) -> Self {
        LineItemView {
            amount: money(l.amount, c),
            description: &l.description,
            id: Shown(l.id),
            quantity: Shown(&l.quantity),
            tax_amount: money(l.tax_amount, c),
            tax_rate: Shown(&l.tax_rate),
            unit_price: money(l.unit_price, c),
        }
    }
}

pub fn invoice_view(i: &Invoice) -> InvoiceView<'_> {
    let c = i.currency;
    let t = i.totals();
    InvoiceView {
        adjustment_reason: &i.adjustment_reason,
        approved_amount: i.approved_amount.map(|a| money(a, c)),
        attachments: i.attachments.iter().copied().map(Shown).collect(),
        buyer_organization_id: Shown(i.buyer_organization_id),
        cancellation_reason: &i.cancellation_reason,
        cancellation_request: i.cancellation.as_ref().map(|r| CancellationView {
            reason: &r.reason,
            requested_by: match r.by {
                Party::Seller => "SELLER",
                Party::Buyer => "BUYER",
            },
        }),
        connection_id: Shown(i.connection_id),
        created_at: ts(i.created_at),
        currency: c.code(),
        dispute_reason: &i.dispute_reason,
        due_date: Shown(i.due_date),
        id: Shown(i.id),
        info_request: &i.info_request,
        info_response: &i.info_response,
        issue_date: Shown(i.issue_date),
        line_items: i
            .line_items
            .iter()
            .map(|l| LineItemView::new(l, c))
            .collect(),
        memo: &i.memo,
        number: &i.number,
        payment_id: i.payment_id.map(Shown),
        seller_organization_id: Shown(i.seller_organization_id),
        status: i.status.as_str(),
        subtotal: money(t.subtotal, c),
        tax_total: money(t.tax_total, c),
        total: money(t.total, c),
        updated_at: ts(i.updated_at),
        version: i.version,
    }
}

/// The invoice as a `Value`, for the places that put it inside another.
pub fn invoice(i: &Invoice) -> Value {
    value(invoice_view(i))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Payment")]
pub struct PaymentView<'a> {
    #[schemars(with = "schema::Money")]
    amount: String,
    attempts: u32,
    #[schemars(with = "Option<schema::Timestamp>")]
    completed_at: Option<String>,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    failure_reason: &'a Option<String>,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Uuid")]
    invoice_id: String,
    /// The seller.
    #[schemars(with = "schema::Uuid")]
    payee_organization_id: String,
    /// The SETTLEMENT_IN transaction.
    #[schemars(with = "Option<schema::Uuid>")]
    payee_transaction_id: Option<String>,
    /// The buyer.
    #[schemars(with = "schema::Uuid")]
    payer_organization_id: String,
    /// The SETTLEMENT_OUT transaction.
    #[schemars(with = "Option<schema::Uuid>")]
    payer_transaction_id: Option<String>,
    /// Refunded so far.
    #[schemars(with = "schema::Money")]
    refunded_amount: String,
    #[schemars(with = "schema::PaymentStatus")]
    status: &'static str,
}

pub fn payment_view(p: &Payment) -> PaymentView<'_> {
    let c = p.currency;
    PaymentView {
        amount: money(p.amount, c),
        attempts: p.attempts,
        completed_at: p.completed_at.map(ts),
        created_at: ts(p.created_at),
        currency: c.code(),
        failure_reason: &p.failure_reason,
        id: p.id.to_string(),
        invoice_id: p.invoice_id.to_string(),
        payee_organization_id: p.payee_organization_id.to_string(),
        payee_transaction_id: p.payee_transaction_id.map(|t| t.to_string()),
        payer_organization_id: p.payer_organization_id.to_string(),
        payer_transaction_id: p.payer_transaction_id.map(|t| t.to_string()),
        refunded_amount: money(p.refunded, c),
        status: p.status.as_str(),
    }
}

/// [`payment_view`] as a `Value`.
pub fn payment(p: &Payment) -> Value {
    value(payment_view(p))
}

/// One per (organization, currency).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Balance")]
pub struct BalanceView {
    /// total - reserved - collateral.
    #[schemars(with = "schema::Money")]
    available: String,
    /// Set by the operator.
    #[schemars(with = "schema::Money")]
    collateral: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    frozen: bool,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Uuid")]
    organization_id: String,
    /// Held for approved invoices and pending withdrawals.
    #[schemars(with = "schema::Money")]
    reserved: String,
    #[schemars(with = "schema::Money")]
    total: String,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
}

pub fn balance_view(b: &Balance) -> BalanceView {
    let c = b.currency;
    BalanceView {
        available: money(b.available(), c),
        collateral: money(b.collateral, c),
        currency: c.code(),
        frozen: b.frozen,
        id: b.id.to_string(),
        organization_id: b.organization_id.to_string(),
        reserved: money(b.reserved, c),
        total: money(b.total, c),
        updated_at: ts(b.updated_at),
    }
}

/// [`balance_view`] as a `Value`.
pub fn balance(b: &Balance) -> Value {
    value(balance_view(b))
}

/// One change of a balance, with the figures after it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "BalanceChange")]
pub struct BalanceChangeView<'a> {
    #[schemars(with = "schema::Money")]
    amount: String,
    #[schemars(with = "schema::Timestamp")]
    at: String,
    #[schemars(with = "schema::Money")]
    available_after: String,
    cause: CauseView<'a>,
    #[schemars(with = "schema::Money")]
    collateral_after: String,
    frozen_after: bool,
    #[schemars(with = "schema::BalanceChangeKind")]
    kind: &'a str,
    #[schemars(with = "schema::Money")]
    reserved_after: String,
    /// Position in the global log.
    seq: u64,
    #[schemars(with = "schema::Money")]
    total_after: String,
}

/// What made a balance change.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BalanceChangeCause")]
struct CauseView<'a> {
    #[schemars(with = "Option<schema::Uuid>")]
    id: &'a Option<String>,
    #[serde(rename = "type")]
    #[schemars(with = "schema::BalanceChangeCauseType")]
    kind: &'a str,
}

pub fn balance_change_view(ch: &BalanceChange, c: Currency) -> BalanceChangeView<'_> {
    BalanceChangeView {
        amount: money(ch.amount, c),
        at: ts(ch.at),
        available_after: money(ch.available_after, c),
        cause: CauseView {
            id: &ch.cause_id,
            kind: &ch.cause_type,
        },
        collateral_after: money(ch.collateral_after, c),
        frozen_after: ch.frozen_after,
        kind: &ch.kind,
        reserved_after: money(ch.reserved_after, c),
        seq: ch.seq,
        total_after: money(ch.total_after, c),
    }
}

/// [`balance_change_view`] as a `Value`.
pub fn balance_change(ch: &BalanceChange, c: Currency) -> Value {
    value(balance_change_view(ch, c))
}

/// One money movement on a balance.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Transaction")]
pub struct TransactionView<'a> {
    /// Always positive; `type` gives the direction.
    #[schemars(with = "schema::Money")]
    amount: String,
    #[schemars(with = "schema::Uuid")]
    balance_id: String,
    #[schemars(with = "Option<schema::Uuid>")]
    counterparty_organization_id: Option<String>,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "Option<schema::Uuid>")]
    invoice_id: Option<String>,
    #[schemars(with = "Option<schema::Uuid>")]
    payment_id: Option<String>,
    /// A deposit's reference.
    reference: &'a Option<String>,
    #[schemars(with = "Option<schema::Uuid>")]
    refund_id: Option<String>,
    /// The balance's total after it.
    #[schemars(with = "schema::Money")]
    total_after: String,
    #[serde(rename = "type")]
    #[schemars(with = "schema::TransactionType")]
    kind: &'static str,
    #[schemars(with = "Option<schema::Uuid>")]
    withdrawal_id: Option<String>,
}

pub fn transaction_view(t: &Transaction) -> TransactionView<'_> {
    let c = t.currency;
    TransactionView {
        amount: money(t.amount, c),
        balance_id: t.balance_id.to_string(),
        counterparty_organization_id: t.counterparty_organization_id.map(|x| x.to_string()),
        created_at: ts(t.created_at),
        currency: c.code(),
        id: t.id.to_string(),
        invoice_id: t.invoice_id.map(|x| x.to_string()),
        payment_id: t.payment_id.map(|x| x.to_string()),
        reference: &t.reference,
        refund_id: t.refund_id.map(|x| x.to_string()),
        total_after: money(t.total_after, c),
        kind: t.kind.as_str(),
        withdrawal_id: t.withdrawal_id.map(|x| x.to_string()),
    }
}

/// [`transaction_view`] as a `Value`.
pub fn transaction(t: &Transaction) -> Value {
    value(transaction_view(t))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Withdrawal")]
pub struct WithdrawalView<'a> {
    #[schemars(with = "schema::Money")]
    amount: String,
    #[schemars(with = "schema::Uuid")]
    balance_id: String,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    #[schemars(with = "Option<schema::ApiKeyId>")]
    decided_by_api_key_id: Option<String>,
    /// Where the money goes, as the bank needs it (IBAN, account, …).
    destination: BTreeMap<&'a str, &'a str>,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Uuid")]
    organization_id: String,
    rejection_reason: &'a Option<String>,
    #[schemars(with = "schema::WithdrawalStatus")]
    status: &'static str,
    #[schemars(with = "schema::ApiKeyId")]
    submitted_by_api_key_id: String,
    /// The WITHDRAWAL transaction, once completed.
    #[schemars(with = "Option<schema::Uuid>")]
    transaction_id: Option<String>,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
}

pub fn withdrawal_view(w: &Withdrawal) -> WithdrawalView<'_> {
    WithdrawalView {
        amount: money(w.amount, w.currency),
        balance_id: w.balance_id.to_string(),
        created_at: ts(w.created_at),
        currency: w.currency.code(),
        decided_by_api_key_id: w.decided_by.map(|k| k.to_string()),
        // A later field of the same name replaces an earlier one, as the
        // contract's JSON object would.
        destination: w
            .destination
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        id: w.id.to_string(),
        organization_id: w.organization_id.to_string(),
        rejection_reason: &w.rejection_reason,
        status: w.status.as_str(),
        submitted_by_api_key_id: w.submitted_by.to_string(),
        transaction_id: w.transaction_id.map(|t| t.to_string()),
        updated_at: ts(w.updated_at),
    }
}

/// [`withdrawal_view`] as a `Value`.
pub fn withdrawal(w: &Withdrawal) -> Value {
    value(withdrawal_view(w))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Refund")]
pub struct RefundView<'a> {
    #[schemars(with = "schema::Money")]
    amount: String,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "schema::Currency")]
    currency: &'static str,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Uuid")]
    invoice_id: String,
    /// Received the settlement; pays the refund and decides on it.
    #[schemars(with = "schema::Uuid")]
    payee_organization_id: String,
    /// Paid the settlement; receives the refund.
    #[schemars(with = "schema::Uuid")]
    payer_organization_id: String,
    #[schemars(with = "schema::Uuid")]
    payment_id: String,
    reason: &'a str,
    rejection_reason: &'a Option<String>,
    #[schemars(with = "schema::Uuid")]
    requested_by_organization_id: String,
    #[schemars(with = "schema::RefundStatus")]
    status: &'static str,
    /// The settlement transaction refunded.
    #[schemars(with = "schema::Uuid")]
    transaction_id: String,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
}

pub fn refund_view(r: &Refund) -> RefundView<'_> {
    RefundView {
        amount: money(r.amount, r.currency),
        created_at: ts(r.created_at),
        currency: r.currency.code(),
        id: r.id.to_string(),
        invoice_id: r.invoice_id.to_string(),
        payee_organization_id: r.payee_organization_id.to_string(),
        payer_organization_id: r.payer_organization_id.to_string(),
        payment_id: r.payment_id.to_string(),
        reason: &r.reason,
        rejection_reason: &r.rejection_reason,
        requested_by_organization_id: r.requested_by.to_string(),
        status: r.status.as_str(),
        transaction_id: r.transaction_id.to_string(),
        updated_at: ts(r.updated_at),
    }
}

/// [`refund_view`] as a `Value`.
pub fn refund(r: &Refund) -> Value {
    value(refund_view(r))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "WebhookEndpoint")]
pub struct WebhookEndpointView<'a> {
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    description: &'a Option<String>,
    enabled: bool,
    /// Event names, `invoice.*` or `*`.
    events: &'a [String],
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(with = "schema::Timestamp")]
    updated_at: String,
    #[schemars(url)]
    url: &'a str,
}

pub fn webhook_endpoint_view(e: &WebhookEndpoint) -> WebhookEndpointView<'_> {
    WebhookEndpointView {
        created_at: ts(e.created_at),
        description: &e.description,
        enabled: e.enabled,
        events: &e.events,
        id: e.id.to_string(),
        updated_at: ts(e.updated_at),
        url: &e.url,
    }
}

/// [`webhook_endpoint_view`] as a `Value`.
pub fn webhook_endpoint(e: &WebhookEndpoint) -> Value {
    value(webhook_endpoint_view(e))
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "File")]
pub struct FileView<'a> {
    content_type: &'a str,
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    filename: &'a str,
    #[schemars(with = "schema::Uuid")]
    id: String,
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    sha256: String,
    /// Bytes.
    size: u64,
}

pub fn file_view(f: &StoredFile) -> FileView<'_> {
    FileView {
        content_type: &f.content_type,
        created_at: ts(f.created_at),
        filename: &f.filename,
        id: f.id.to_string(),
        sha256: hex::encode(f.sha256),
        size: f.size,
    }
}

/// [`file_view`] as a `Value`.
pub fn file(f: &StoredFile) -> Value {
    value(file_view(f))
}

/// The component schemas of the views above, derived from their types.
pub fn add_schemas(c: &mut crate::schema::Components) {
    c.add::<InvoiceView>()
        .add::<OrganizationView>()
        .add::<ApiKeyView>()
        .add::<ConnectionView>()
        .add::<PaymentView>()
        .add::<BalanceView>()
        .add::<BalanceChangeView>()
        .add::<TransactionView>()
        .add::<WithdrawalView>()
        .add::<RefundView>()
        .add::<WebhookEndpointView>()
        .add::<FileView>()
        .add::<crate::webhooks::Payload>()
        .add::<ApiKeyCreated>()
        .add::<OrganizationCreated>()
        .add::<WebhookEndpointWithSecret>()
        .add::<DeletedWebhookEndpoint>()
        .add::<Page<InvoiceView>>()
        .add::<Page<FileView>>()
        .add::<Page<WebhookEndpointView>>()
        .add::<Page<ConnectionView>>()
        .add::<Page<PaymentView>>()
        .add::<Page<TransactionView>>()
        .add::<Page<WithdrawalView>>()
        .add::<Page<RefundView>>()
        .add::<Page<ApiKeyView>>()
        .add::<Page<BalanceView>>()
        .add::<Page<BalanceChangeView>>();
}

/// An API key with its secret, which this answer alone shows.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "ApiKeyCreated")]
pub struct ApiKeyCreated<'a> {
    #[serde(flatten)]
    pub key: ApiKeyView<'a>,
    /// Send as `X-API-Secret`.
    pub secret: &'a str,
}

/// A new organization and its first API key (named `default`, every
/// permission), whose secret this answer alone shows.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "OrganizationCreated")]
pub struct OrganizationCreated<'a> {
    pub api_key: FirstApiKey<'a>,
    pub organization: OrganizationView<'a>,
}

/// The organization's first API key. The secret is shown here only.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "FirstApiKey")]
pub struct FirstApiKey<'a> {
    /// Send as `X-API-Key`.
    #[schemars(with = "schema::ApiKeyId")]
    pub id: String,
    #[schemars(with = "Vec<schema::Permission>")]
    pub permissions: [&'static str; 1],
    /// Send as `X-API-Secret`.
    pub secret: &'a str,
}

/// A webhook endpoint with its signing secret (shown on creation and
/// rotation only).
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "WebhookEndpointWithSecret")]
pub struct WebhookEndpointWithSecret<'a> {
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView<'a>,
    /// `whsec_` then the base64 key.
    #[schemars(pattern("^whsec_"))]
    pub secret: &'a str,
}

/// A webhook endpoint as it was, marked deleted.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "DeletedWebhookEndpoint")]
pub struct DeletedWebhookEndpoint<'a> {
    #[schemars(extend("const" = true))]
    pub deleted: bool,
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView<'a>,
}

/// A page of a list, in the list's order.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}Page")]
pub struct Page<T = Value> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::domain::invoice::{CancellationRequest, InvoiceStatus};
    use ledger_core::ids::{InvoiceId, LineItemId};

    fn invoice(filled: bool) -> Invoice {
        let c = Currency::parse("EUR").expect("currency");
        let at = Timestamp::parse_rfc3339("2026-03-04T05:06:07.089Z").expect("time");
        let amount = |s: &str| Amount::parse(c, s).expect("amount");
        let text = |s: &str| filled.then(|| s.to_string());
        let line = |n: &str| LineItem {
            id: LineItemId::new(),
            description: format!("line \"{n}\" ü"),
            quantity: Quantity::parse("1.5").expect("quantity"),
            unit_price: amount("10.00"),
            tax_rate: TaxRate::parse("0.2").expect("rate"),
            amount: amount("15.00"),
            tax_amount: amount("3.00"),
        };
        Invoice {
            id: InvoiceId::new(),
            connection_id: ConnectionId::new(),
            seller_organization_id: OrganizationId::new(),
            buyer_organization_id: OrganizationId::new(),
            number: "INV-1".into(),
            currency: c,
            issue_date: NaiveDate::from_ymd_opt(2026, 3, 4).expect("date"),
            due_date: NaiveDate::from_ymd_opt(2026, 4, 4).expect("date"),
            memo: text("memo"),
            line_items: if filled {
                vec![line("a"), line("b")]
            } else {
                vec![]
            },
            attachments: if filled {
                vec![FileId::new(), FileId::new()]
            } else {
                vec![]
            },
            status: InvoiceStatus::CancellationRequested,
            approved_amount: filled.then(|| amount("30.00")),
            adjustment_reason: text("adjusted"),
            dispute_reason: text("disputed"),
            info_request: text("why"),
            info_response: text("because"),
            cancellation: filled.then(|| CancellationRequest {
                by: Party::Buyer,
                reason: "no longer needed".into(),
                return_to: InvoiceStatus::Approved,
            }),
            cancellation_reason: text("cancelled"),
            archived_from: None,
            payment_id: filled.then(PaymentId::new),
            visible_to_buyer: true,
            payment_due_notified: false,
            version: 7,
            created_at: at,
            updated_at: at.plus_seconds(60),
        }
    }

    /// The typed view writes the bytes a `Value` of it would: its fields are
    /// declared in key order, so stored responses and webhook payloads made
    /// through `Value`s equal fresh reads byte for byte.
    #[test]
    fn invoice_view_writes_the_bytes_of_its_value() {
        for filled in [true, false] {
            let i = invoice(filled);
            let typed = serde_json::to_string(&invoice_view(&i)).expect("typed");
            let value = serde_json::to_string(&super::invoice(&i)).expect("value");
            assert_eq!(typed, value);
            let v = super::invoice(&i);
            assert_eq!(
                v["lineItems"].as_array().map(Vec::len),
                Some(if filled { 2 } else { 0 })
            );
            assert_eq!(v["total"], if filled { "36.00" } else { "0.00" });
            assert_eq!(v["dueDate"], "2026-04-04");
            if filled {
                assert_eq!(v["cancellationRequest"]["requestedBy"], "BUYER");
                assert_eq!(v["lineItems"][0]["quantity"], "1.5");
                assert_eq!(v["lineItems"][0]["taxRate"], "0.2");
                assert_eq!(v["approvedAmount"], "30.00");
                assert_eq!(v["attachments"][1], i.attachments[1].to_string());
            } else {
                assert!(v["cancellationRequest"].is_null() && v["paymentId"].is_null());
            }
        }
    }

    #[test]
    fn a_page_lists_its_items_and_cursor() {
        let i = invoice(false);
        let page = Page {
            data: vec![invoice_view(&i)],
            next_cursor: Some("abc".into()),
        };
        let v: Value =
            serde_json::from_str(&serde_json::to_string(&page).expect("page")).expect("json");
        assert_eq!(v["nextCursor"], "abc");
        assert_eq!(v["data"][0]["id"], i.id.to_string());
    }
}
