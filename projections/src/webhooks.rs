//! Webhook messages, derived purely from a committed event and the read model
//! right after it: which `type` the event is, which organizations it goes to,
//! and the payload they receive. The outbox ([`crate::outbox`]) turns each
//! message into one delivery per matching endpoint.
//!
//! Everything here is a function of the log, so rebuilding the projection
//! from sequence 0 derives exactly the same messages, ids and bytes again.

use crate::model::ReadModel;
use crate::views;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::Connection;
use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::events::{Event, RecordedEvent};
use ledger_core::ids::{OrganizationId, TransactionId, WebhookEndpointId};
use ledger_core::time::Timestamp;
use serde_json::{json, Value};

/// Every event type an endpoint can subscribe to (API.md, Webhooks).
pub const EVENT_TYPES: [&str; 27] = [
    "invoice.created",
    "invoice.updated",
    "invoice.submitted",
    "invoice.approved",
    "invoice.approved_with_adjustment",
    "invoice.disputed",
    "invoice.info_requested",
    "invoice.info_provided",
    "invoice.cancellation_requested",
    "invoice.cancellation_rejected",
    "invoice.cancelled",
    "invoice.settled",
    "invoice.archived",
    "invoice.restored",
    "payment.due",
    "payment.settled",
    "payment.failed",
    "deposit.received",
    "withdrawal.submitted",
    "withdrawal.approved",
    "withdrawal.rejected",
    "withdrawal.cancelled",
    "refund.created",
    "refund.approved",
    "refund.rejected",
    "connection.requested",
    "connection.accepted",
];

/// Sent by `POST /settings/webhooks/{id}/test`, whatever the endpoint's filter.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// An endpoint filter: `*`, `<family>.*` for a family that has events, or an
/// exact event type.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter == "*" || EVENT_TYPES.contains(&filter) {
        return true;
    }
    filter.strip_suffix(".*").is_some_and(|family| {
        EVENT_TYPES
            .iter()
            .any(|t| t.split_once('.').is_some_and(|(f, _)| f == family))
    })
}

/// One message to one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMessage {
    /// `evt_<seq>_<party index>`: stable across rebuilds and retries; it is
    /// the `webhook-id` header and the payload's `id`.
    pub event_id: String,
    pub event_type: &'static str,
    pub organization_id: OrganizationId,
    /// The log position it came from.
    pub seq: u64,
    pub created_at: Timestamp,
    /// `{id, type, createdAt, organizationId, data}` as JSON bytes: what is
    /// sent and signed, byte for byte, on every attempt.
    pub payload: Vec<u8>,
}

/// A message and the endpoints it goes to, as they stood right after the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message: WebhookMessage,
    pub endpoints: Vec<WebhookEndpointId>,
}

/// The webhook type of an event, if it has one.
pub fn event_type(event: &Event) -> Option<&'static str> {
    use Event::*;
    Some(match event {
        InvoiceCreated { .. } => "invoice.created",
        InvoiceUpdated { .. }
        | LineItemAdded { .. }
        | LineItemUpdated { .. }
        | LineItemRemoved { .. } => "invoice.updated",
        InvoiceSubmitted { .. } => "invoice.submitted",
        InvoiceApproved {
            adjustment_reason: None,
            ..
        } => "invoice.approved",
        InvoiceApproved {
            adjustment_reason: Some(_),
            ..
        } => "invoice.approved_with_adjustment",
        InvoiceDisputed { .. } => "invoice.disputed",
        InvoiceInfoRequested { .. } => "invoice.info_requested",
        InvoiceInfoProvided { .. } => "invoice.info_provided",
        InvoiceCancellationRequested { .. } => "invoice.cancellation_requested",
        InvoiceCancellationRejected { .. } => "invoice.cancellation_rejected",
        InvoiceCancelled { .. } => "invoice.cancelled",
        InvoiceSettled { .. } => "invoice.settled",
        InvoiceArchived { .. } => "invoice.archived",
        InvoiceRestored { .. } => "invoice.restored",
        InvoicePaymentDue { .. } => "payment.due",
        PaymentCompleted { .. } => "payment.settled",
        PaymentFailed { .. } => "payment.failed",
        FundsDeposited { .. } => "deposit.received",
        WithdrawalSubmitted { .. } => "withdrawal.submitted",
        WithdrawalApproved { .. } => "withdrawal.approved",
        WithdrawalRejected { .. } => "withdrawal.rejected",
        WithdrawalCancelled { .. } => "withdrawal.cancelled",
        RefundCreated { .. } => "refund.created",
        RefundApproved { .. } => "refund.approved",
        RefundRejected { .. } => "refund.rejected",
        ConnectionRequested { .. } => "connection.requested",
        ConnectionAccepted { .. } => "connection.accepted",
        _ => return None,
    })
}

/// The resource an event is about, as it stands after the event.
enum Subject<'a> {
    Invoice(&'a Invoice),
    Payment(&'a Payment),
    Deposit(&'a Balance, TransactionId),
    Withdrawal(&'a Withdrawal),
    Refund(&'a Refund),
    Connection(&'a Connection),
}

impl Subject<'_> {
    fn of<'m>(event: &Event, model: &'m ReadModel) -> Option<Subject<'m>> {
        use Event::*;
        let ledger = &model.ledger;
        Some(match event {
            InvoiceCreated { id, .. }
            | InvoiceUpdated { id, .. }
            | LineItemAdded { id, .. }
            | LineItemUpdated { id, .. }
            | LineItemRemoved { id, .. }
            | InvoiceSubmitted { id }
            | InvoiceApproved { id, .. }
            | InvoiceDisputed { id, .. }
            | InvoiceInfoRequested { id, .. }
            | InvoiceInfoProvided { id, .. }
            | InvoiceCancellationRequested { id, .. }
            | InvoiceCancellationRejected { id }
            | InvoiceCancelled { id, .. }
            | InvoiceSettled { id, .. }
            | InvoiceArchived { id }
            | InvoiceRestored { id }
            | InvoicePaymentDue { id, .. } => Subject::Invoice(ledger.invoices.get(id)?),
            PaymentCompleted { id, .. } | PaymentFailed { id, .. } => {
                Subject::Payment(ledger.payments.get(id)?)
            }
            FundsDeposited {
                balance_id,
                transaction_id,
                ..
            } => Subject::Deposit(ledger.balances.get(balance_id)?, *transaction_id),
            WithdrawalSubmitted { id, .. }
            | WithdrawalApproved { id, .. }
            | WithdrawalRejected { id, .. }
            | WithdrawalCancelled { id } => Subject::Withdrawal(ledger.withdrawals.get(id)?),
            RefundCreated { id, .. } | RefundApproved { id, .. } | RefundRejected { id, .. } => {
                Subject::Refund(ledger.refunds.get(id)?)
            }
            ConnectionRequested { id, .. } | ConnectionAccepted { id } => {
                Subject::Connection(ledger.connections.get(id)?)
            }
            _ => return None,
        })
    }

    /// The organizations party to it, each once: both invoice parties (the
    /// seller alone while the invoice was never submitted), payer and payee,
    /// the balance's or withdrawal's owner, both connection parties.
    fn parties(&self) -> Vec<OrganizationId> {
        let mut parties = match self {
            Subject::Invoice(i) if i.visible_to_buyer => {
                vec![i.seller_organization_id, i.buyer_organization_id]
            }
            Subject::Invoice(i) => vec![i.seller_organization_id],
            Subject::Payment(p) => vec![p.payer_organization_id, p.payee_organization_id],
            Subject::Deposit(b, _) => vec![b.organization_id],
            Subject::Withdrawal(w) => vec![w.organization_id],
            Subject::Refund(r) => vec![r.payee_organization_id, r.payer_organization_id],
            Subject::Connection(c) => vec![c.seller_organization_id, c.buyer_organization_id],
        };
        parties.dedup();
        parties
    }

    fn data(&self, model: &ReadModel) -> Value {
        match self {
            Subject::Invoice(i) => views::invoice(i),
            Subject::Payment(p) => views::payment(p),
            Subject::Deposit(b, transaction_id) => {
                // The DEPOSIT transaction, with the balance it landed on.
                let mut v = match model.transactions.get(transaction_id) {
                    Some(t) => views::transaction(t),
                    None => json!({ "id": transaction_id.to_string(), "type": "DEPOSIT" }),
                };
                if let Value::Object(m) = &mut v {
                    m.insert(
                        "organizationId".into(),
                        Value::String(b.organization_id.to_string()),
                    );
                    m.insert("balance".into(), views::balance(b));
                }
                v
            }
            Subject::Withdrawal(w) => views::withdrawal(w),
            Subject::Refund(r) => views::refund(r),
            Subject::Connection(c) => views::connection(c),
        }
    }
}

/// The webhook body: `{id, type, createdAt, organizationId, data}`.
pub fn payload(
    event_id: &str,
    event_type: &str,
    created_at: Timestamp,
    organization_id: OrganizationId,
    data: Value,
) -> Vec<u8> {
    let body = json!({
        "id": event_id,
        "type": event_type,
        "createdAt": created_at.rfc3339(),
        "organizationId": organization_id.to_string(),
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The messages one event makes, one per party, in party order.
pub fn messages(recorded: &RecordedEvent, model: &ReadModel) -> Vec<WebhookMessage> {
    let Some(event_type) = event_type(&recorded.event) else {
        return Vec::new();
    };
    let Some(subject) = Subject::of(&recorded.event, model) else {
        return Vec::new();
    };
    let data = subject.data(model);
    subject
        .parties()
        .into_iter()
        .enumerate()
        .map(|(i, org)| message(recorded, event_type, i, org, data.clone()))
        .collect()
}

fn message(
    recorded: &RecordedEvent,
    event_type: &'static str,
    index: usize,
    org: OrganizationId,
    data: Value,
) -> WebhookMessage {
    let event_id = format!("evt_{}_{}", recorded.seq, index);
    WebhookMessage {
        payload: payload(&event_id, event_type, recorded.at, org, data),
        event_id,
        event_type,
        organization_id: org,
        seq: recorded.seq,
        created_at: recorded.at,
    }
}

/// The organization's enabled, not deleted endpoints whose filter wants the type.
pub fn targets(model: &ReadModel, org: OrganizationId, event_type: &str) -> Vec<WebhookEndpointId> {
    model
        .endpoints_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.webhook_endpoints.get(id))
        .filter(|e| e.enabled && !e.deleted && e.wants(event_type))
        .map(|e| e.id)
        .collect()
}

/// What the outbox must hold for this event: each message that has at least
/// one endpoint to go to. Cheap when nobody listens (no payload is built).
pub fn outbox_entries(recorded: &RecordedEvent, model: &ReadModel) -> Vec<OutboxEntry> {
    let Some(event_type) = event_type(&recorded.event) else {
        return Vec::new();
    };
    let Some(subject) = Subject::of(&recorded.event, model) else {
        return Vec::new();
    };
    let routed: Vec<(usize, OrganizationId, Vec<WebhookEndpointId>)> = subject
        .parties()
        .into_iter()
        .enumerate()
        .map(|(i, org)| (i, org, targets(model, org, event_type)))
        .filter(|(_, _, endpoints)| !endpoints.is_empty())
        .collect();
    if routed.is_empty() {
        return Vec::new();
    }
    let data = subject.data(model);
    routed
        .into_iter()
        .map(|(i, org, endpoints)| OutboxEntry {
            message: message(recorded, event_type, i, org, data.clone()),
            endpoints,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_against_the_event_list() {
        assert!(is_valid_filter("*"));
        assert!(is_valid_filter("invoice.*"));
        assert!(is_valid_filter("payment.due"));
        assert!(is_valid_filter("deposit.*"));
        assert!(!is_valid_filter("invoice.nope"));
        assert!(!is_valid_filter("nope.*"));
        assert!(!is_valid_filter("invoice"));
        assert!(!is_valid_filter(""));
        assert!(!is_valid_filter("webhook.test"));
    }

    #[test]
    fn every_listed_type_is_produced_by_some_event() {
        // The inverse direction is the match in `event_type`; this catches a typo.
        for t in EVENT_TYPES {
            assert!(t.contains('.'), "{t}");
        }
        assert_eq!(EVENT_TYPES.len(), 27);
    }
}
