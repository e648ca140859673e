//! The API's JSON shapes, built from domain state. Used both to answer
//! commands (rendered inside the writer, kept for idempotent replays) and to
//! answer reads from the projections, so both always agree byte for byte.

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
use serde::Serialize;
use serde_json::{json, Value};

fn money(a: Amount, c: Currency) -> String {
    a.format(c)
}

fn ts(t: Timestamp) -> String {
    t.rfc3339()
}

pub fn organization(o: &Organization) -> Value {
    json!({ "id": o.id.to_string(), "name": o.name, "createdAt": ts(o.created_at) })
}

pub fn api_key(k: &ApiKey) -> Value {
    json!({
        "id": k.id.to_string(),
        "organizationId": k.organization_id.to_string(),
        "name": k.name,
        "permissions": k.permissions.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "createdAt": ts(k.created_at),
        "expiresAt": k.expires_at.map(ts),
        "revokedAt": k.revoked_at.map(ts),
    })
}

/// `rejection_reason` lives beside the resource (see `sql::rows::ConnectionRow`).
pub fn connection(c: &Connection, rejection_reason: Option<&str>) -> Value {
    json!({
        "id": c.id.to_string(),
        "sellerOrganizationId": c.seller_organization_id.to_string(),
        "buyerOrganizationId": c.buyer_organization_id.to_string(),
        "requestedByOrganizationId": c.requested_by.to_string(),
        "status": c.status.as_str(),
        "rejectionReason": rejection_reason,
        "createdAt": ts(c.created_at),
        "updatedAt": ts(c.updated_at),
    })
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
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView<'a> {
    adjustment_reason: &'a Option<String>,
    approved_amount: Option<String>,
    attachments: Vec<Shown<FileId>>,
    buyer_organization_id: Shown<OrganizationId>,
    cancellation_reason: &'a Option<String>,
    cancellation_request: Option<CancellationView<'a>>,
    connection_id: Shown<ConnectionId>,
    created_at: String,
    currency: &'static str,
    dispute_reason: &'a Option<String>,
    due_date: Shown<NaiveDate>,
    id: Shown<InvoiceId>,
    info_request: &'a Option<String>,
    info_response: &'a Option<String>,
    issue_date: Shown<NaiveDate>,
    line_items: Vec<LineItemView<'a>>,
    memo: &'a Option<String>,
    number: &'a str,
    payment_id: Option<Shown<PaymentId>>,
    seller_organization_id: Shown<OrganizationId>,
    status: &'static str,
    subtotal: String,
    tax_total: String,
    total: String,
    updated_at: String,
    version: u64,
}

/// Fields in the byte order of their JSON names, as in [`InvoiceView`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CancellationView<'a> {
    reason: &'a str,
    requested_by: &'static str,
}

/// Fields in the byte order of their JSON names, as in [`InvoiceView`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LineItemView<'a> {
    amount: String,
    description: &'a str,
    id: Shown<LineItemId>,
    quantity: Shown<&'a Quantity>,
    tax_amount: String,
    tax_rate: Shown<&'a TaxRate>,
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
    // Cannot fail: every key is a string and every value plain data.
    serde_json::to_value(invoice_view(i)).unwrap_or(Value::Null)
}

pub fn payment(p: &Payment) -> Value {
    json!({
        "id": p.id.to_string(),
        "invoiceId": p.invoice_id.to_string(),
        "payerOrganizationId": p.payer_organization_id.to_string(),
        "payeeOrganizationId": p.payee_organization_id.to_string(),
        "currency": p.currency.code(),
        "amount": money(p.amount, p.currency),
        "status": p.status.as_str(),
        "failureReason": p.failure_reason,
        "attempts": p.attempts,
        "payerTransactionId": p.payer_transaction_id.map(|t| t.to_string()),
        "payeeTransactionId": p.payee_transaction_id.map(|t| t.to_string()),
        "refundedAmount": money(p.refunded, p.currency),
        "createdAt": ts(p.created_at),
        "completedAt": p.completed_at.map(ts),
    })
}

pub fn balance(b: &Balance) -> Value {
    let c = b.currency;
    json!({
        "id": b.id.to_string(),
        "organizationId": b.organization_id.to_string(),
        "currency": c.code(),
        "total": money(b.total, c),
        "reserved": money(b.reserved, c),
        "collateral": money(b.collateral, c),
        "available": money(b.available(), c),
        "frozen": b.frozen,
        "updatedAt": ts(b.updated_at),
    })
}

pub fn balance_change(ch: &BalanceChange, c: Currency) -> Value {
    json!({
        "seq": ch.seq,
        "at": ts(ch.at),
        "kind": ch.kind,
        "amount": money(ch.amount, c),
        "totalAfter": money(ch.total_after, c),
        "reservedAfter": money(ch.reserved_after, c),
        "collateralAfter": money(ch.collateral_after, c),
        "availableAfter": money(ch.available_after, c),
        "frozenAfter": ch.frozen_after,
        "cause": { "type": ch.cause_type, "id": ch.cause_id },
    })
}

pub fn transaction(t: &Transaction) -> Value {
    let c = t.currency;
    json!({
        "id": t.id.to_string(),
        "type": t.kind.as_str(),
        "balanceId": t.balance_id.to_string(),
        "currency": c.code(),
        "amount": money(t.amount, c),
        "totalAfter": money(t.total_after, c),
        "reference": t.reference,
        "invoiceId": t.invoice_id.map(|x| x.to_string()),
        "paymentId": t.payment_id.map(|x| x.to_string()),
        "withdrawalId": t.withdrawal_id.map(|x| x.to_string()),
        "refundId": t.refund_id.map(|x| x.to_string()),
        "counterpartyOrganizationId": t.counterparty_organization_id.map(|x| x.to_string()),
        "createdAt": ts(t.created_at),
    })
}

pub fn withdrawal(w: &Withdrawal) -> Value {
    let destination: serde_json::Map<String, Value> = w
        .destination
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": w.id.to_string(),
        "organizationId": w.organization_id.to_string(),
        "balanceId": w.balance_id.to_string(),
        "currency": w.currency.code(),
        "amount": money(w.amount, w.currency),
        "destination": destination,
        "status": w.status.as_str(),
        "submittedByApiKeyId": w.submitted_by.to_string(),
        "decidedByApiKeyId": w.decided_by.map(|k| k.to_string()),
        "rejectionReason": w.rejection_reason,
        "transactionId": w.transaction_id.map(|t| t.to_string()),
        "createdAt": ts(w.created_at),
        "updatedAt": ts(w.updated_at),
    })
}

pub fn refund(r: &Refund) -> Value {
    json!({
        "id": r.id.to_string(),
        "transactionId": r.transaction_id.to_string(),
        "paymentId": r.payment_id.to_string(),
        "invoiceId": r.invoice_id.to_string(),
        "payeeOrganizationId": r.payee_organization_id.to_string(),
        "payerOrganizationId": r.payer_organization_id.to_string(),
        "requestedByOrganizationId": r.requested_by.to_string(),
        "currency": r.currency.code(),
        "amount": money(r.amount, r.currency),
        "reason": r.reason,
        "status": r.status.as_str(),
        "rejectionReason": r.rejection_reason,
        "createdAt": ts(r.created_at),
        "updatedAt": ts(r.updated_at),
    })
}

pub fn webhook_endpoint(e: &WebhookEndpoint) -> Value {
    json!({
        "id": e.id.to_string(),
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "enabled": e.enabled,
        "createdAt": ts(e.created_at),
        "updatedAt": ts(e.updated_at),
    })
}

pub fn file(f: &StoredFile) -> Value {
    json!({
        "id": f.id.to_string(),
        "filename": f.filename,
        "contentType": f.content_type,
        "size": f.size,
        "sha256": hex::encode(f.sha256),
        "createdAt": ts(f.created_at),
    })
}

/// `{ "data": [...], "nextCursor": ... }`
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T = Value> {
    pub data: Vec<T>,
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
