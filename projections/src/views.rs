//! The API's JSON shapes, built from domain state. Used both to answer
//! commands (rendered inside the writer, kept for idempotent replays) and to
//! answer reads from the projections, so both always agree byte for byte.

use crate::{BalanceChange, Transaction};
use ledger_core::domain::api_key::ApiKey;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::Connection;
use ledger_core::domain::file::StoredFile;
use ledger_core::domain::invoice::{party_name, Invoice};
use ledger_core::domain::organization::Organization;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::events::LineItem;
use ledger_core::money::{Amount, Currency};
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

pub fn connection(c: &Connection) -> Value {
    json!({
        "id": c.id.to_string(),
        "sellerOrganizationId": c.seller_organization_id.to_string(),
        "buyerOrganizationId": c.buyer_organization_id.to_string(),
        "requestedByOrganizationId": c.requested_by.to_string(),
        "status": c.status.as_str(),
        "createdAt": ts(c.created_at),
        "updatedAt": ts(c.updated_at),
    })
}

fn line_item(l: &LineItem, c: Currency) -> Value {
    json!({
        "id": l.id.to_string(),
        "description": l.description,
        "quantity": l.quantity.to_string(),
        "unitPrice": money(l.unit_price, c),
        "taxRate": l.tax_rate.to_string(),
        "amount": money(l.amount, c),
        "taxAmount": money(l.tax_amount, c),
    })
}

pub fn invoice(i: &Invoice) -> Value {
    let c = i.currency;
    let t = i.totals();
    json!({
        "id": i.id.to_string(),
        "number": i.number,
        "connectionId": i.connection_id.to_string(),
        "sellerOrganizationId": i.seller_organization_id.to_string(),
        "buyerOrganizationId": i.buyer_organization_id.to_string(),
        "currency": c.code(),
        "status": i.status.as_str(),
        "issueDate": i.issue_date.to_string(),
        "dueDate": i.due_date.to_string(),
        "memo": i.memo,
        "lineItems": i.line_items.iter().map(|l| line_item(l, c)).collect::<Vec<_>>(),
        "subtotal": money(t.subtotal, c),
        "taxTotal": money(t.tax_total, c),
        "total": money(t.total, c),
        "approvedAmount": i.approved_amount.map(|a| money(a, c)),
        "adjustmentReason": i.adjustment_reason,
        "disputeReason": i.dispute_reason,
        "infoRequest": i.info_request,
        "infoResponse": i.info_response,
        "cancellationRequest": i.cancellation.as_ref().map(|r| json!({
            "requestedBy": party_name(r.by).to_uppercase(),
            "reason": r.reason,
        })),
        "cancellationReason": i.cancellation_reason,
        "attachments": i.attachments.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        "paymentId": i.payment_id.map(|p| p.to_string()),
        "version": i.version,
        "createdAt": ts(i.created_at),
        "updatedAt": ts(i.updated_at),
    })
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
pub struct Page {
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
}
