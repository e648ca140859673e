//! Webhook messages, derived purely from a committed event and the read model
//! right after it: which `type` the event is, which organizations it goes to,
//! and the payload they receive. The outbox ([`crate::sql::outbox`]) turns
//! each message into one delivery per matching endpoint.
//!
//! Everything here is a function of the log, so rebuilding the projection
//! from sequence 0 derives exactly the same messages, ids and bytes again;
//! and the derivation is written once ([`route`]), whichever read model
//! (in memory or SQL) the subject and the endpoints are loaded from.

use crate::model::{ReadModel, Transaction};
use crate::schema;
use crate::views;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::Connection;
use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::domain::Ledger;
use ledger_core::events::{Event, RecordedEvent, StreamId, StreamKind};
use ledger_core::ids::{
    BalanceId, ConnectionId, InvoiceId, OrganizationId, PaymentId, RefundId, TransactionId,
    WebhookEndpointId, WithdrawalId,
};
use ledger_core::log::{EventLog, LogError};
use ledger_core::time::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
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

/// Which resource an event is about: what must be loaded to derive its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKey {
    Invoice(InvoiceId),
    Payment(PaymentId),
    /// The balance the deposit landed on, and its DEPOSIT transaction.
    Deposit(BalanceId, TransactionId),
    Withdrawal(WithdrawalId),
    Refund(RefundId),
    Connection(ConnectionId),
}

impl SubjectKey {
    pub fn of(event: &Event) -> Option<SubjectKey> {
        use Event::*;
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
            | InvoicePaymentDue { id, .. } => SubjectKey::Invoice(*id),
            PaymentCompleted { id, .. } | PaymentFailed { id, .. } => SubjectKey::Payment(*id),
            FundsDeposited {
                balance_id,
                transaction_id,
                ..
            } => SubjectKey::Deposit(*balance_id, *transaction_id),
            WithdrawalSubmitted { id, .. }
            | WithdrawalApproved { id, .. }
            | WithdrawalRejected { id, .. }
            | WithdrawalCancelled { id } => SubjectKey::Withdrawal(*id),
            RefundCreated { id, .. } | RefundApproved { id, .. } | RefundRejected { id, .. } => {
                SubjectKey::Refund(*id)
            }
            ConnectionRequested { id, .. } | ConnectionAccepted { id } => {
                SubjectKey::Connection(*id)
            }
            _ => return None,
        })
    }
}

/// The resource an event is about, as it stands after the event. Owned, so
/// it can come from the in-memory model or from the SQL read models alike.
#[derive(Debug, Clone)]
pub enum Subject {
    Invoice(Invoice),
    Payment(Payment),
    Deposit {
        balance: Balance,
        transaction_id: TransactionId,
        /// None only if the read model lacks it (then a stub is sent).
        transaction: Option<Transaction>,
    },
    Withdrawal(Withdrawal),
    Refund(Refund),
    Connection(Connection),
}

impl Subject {
    /// The subject as the in-memory read model holds it.
    pub fn from_model(key: SubjectKey, model: &ReadModel) -> Option<Subject> {
        let ledger = &model.ledger;
        Some(match key {
            SubjectKey::Invoice(id) => Subject::Invoice(model.invoices.get(&id)?.clone()),
            SubjectKey::Payment(id) => Subject::Payment(ledger.payments.get(&id)?.clone()),
            SubjectKey::Deposit(balance, transaction_id) => Subject::Deposit {
                balance: ledger.balances.get(&balance)?.clone(),
                transaction_id,
                transaction: model.transactions.get(&transaction_id).cloned(),
            },
            SubjectKey::Withdrawal(id) => Subject::Withdrawal(ledger.withdrawals.get(&id)?.clone()),
            SubjectKey::Refund(id) => Subject::Refund(ledger.refunds.get(&id)?.clone()),
            SubjectKey::Connection(id) => Subject::Connection(ledger.connections.get(&id)?.clone()),
        })
    }

    /// The organizations party to it, each once: both invoice parties (the
    /// seller alone while the invoice was never submitted), payer and payee,
    /// the balance's or withdrawal's owner, both connection parties.
    pub fn parties(&self) -> Vec<OrganizationId> {
        let mut parties = match self {
            Subject::Invoice(i) if i.visible_to_buyer => {
                vec![i.seller_organization_id, i.buyer_organization_id]
            }
            Subject::Invoice(i) => vec![i.seller_organization_id],
            Subject::Payment(p) => vec![p.payer_organization_id, p.payee_organization_id],
            Subject::Deposit { balance, .. } => vec![balance.organization_id],
            Subject::Withdrawal(w) => vec![w.organization_id],
            Subject::Refund(r) => vec![r.payee_organization_id, r.payer_organization_id],
            Subject::Connection(c) => vec![c.seller_organization_id, c.buyer_organization_id],
        };
        parties.dedup();
        parties
    }

    /// The payload's `data`: the resource as the API shows it.
    pub fn data(&self) -> Value {
        match self {
            Subject::Invoice(i) => views::invoice(i),
            Subject::Payment(p) => views::payment(p),
            Subject::Deposit {
                balance,
                transaction_id,
                transaction,
            } => {
                // The DEPOSIT transaction, with the balance it landed on.
                let mut v = match transaction {
                    Some(t) => views::transaction(t),
                    None => json!({ "id": transaction_id.to_string(), "type": "DEPOSIT" }),
                };
                if let Value::Object(m) = &mut v {
                    m.insert(
                        "organizationId".into(),
                        Value::String(balance.organization_id.to_string()),
                    );
                    m.insert("balance".into(), views::balance(balance));
                }
                v
            }
            Subject::Withdrawal(w) => views::withdrawal(w),
            Subject::Refund(r) => views::refund(r),
            // Requested or accepted: never a rejection reason.
            Subject::Connection(c) => views::connection(c, None),
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
    serde_json::to_vec(&Payload {
        created_at: created_at.rfc3339(),
        data,
        id: event_id,
        organization_id: organization_id.to_string(),
        kind: event_type,
    })
    .unwrap_or_default()
}

/// The JSON body POSTed to an endpoint. Fields in the byte order of their
/// JSON names, the order payloads were always written in.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "WebhookPayload")]
pub struct Payload<'a> {
    #[schemars(with = "schema::Timestamp")]
    created_at: String,
    #[schemars(with = "EventData")]
    data: Value,
    /// The message id (also the `webhook-id` header); stable across retries.
    id: &'a str,
    /// The receiving organization.
    #[schemars(with = "schema::Uuid")]
    organization_id: String,
    #[serde(rename = "type")]
    #[schemars(with = "schema::WebhookEventType")]
    kind: &'a str,
}

/// A payload's `data`, for the document.
struct EventData;

impl JsonSchema for EventData {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventData".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "The object the event is about (an Invoice, Payment, Transaction, Withdrawal, Refund or Connection).",
        })
    }
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

/// What the outbox must hold for this event: each message that has at least
/// one endpoint to go to, given where the subject and the endpoints are
/// read from (the in-memory model, or the SQL read models). Cheap when the
/// event has no webhook type (nothing is loaded) or nobody listens (no
/// payload is built).
pub fn route<E>(
    recorded: &RecordedEvent,
    load: impl FnOnce(SubjectKey) -> Result<Option<Subject>, E>,
    mut targets: impl FnMut(OrganizationId, &'static str) -> Result<Vec<WebhookEndpointId>, E>,
) -> Result<Vec<OutboxEntry>, E> {
    let Some(event_type) = event_type(&recorded.event) else {
        return Ok(Vec::new());
    };
    let Some(key) = SubjectKey::of(&recorded.event) else {
        return Ok(Vec::new());
    };
    let Some(subject) = load(key)? else {
        return Ok(Vec::new());
    };
    let mut routed: Vec<(usize, OrganizationId, Vec<WebhookEndpointId>)> = Vec::new();
    for (i, org) in subject.parties().into_iter().enumerate() {
        let endpoints = targets(org, event_type)?;
        if !endpoints.is_empty() {
            routed.push((i, org, endpoints));
        }
    }
    if routed.is_empty() {
        return Ok(Vec::new());
    }
    let data = subject.data();
    Ok(routed
        .into_iter()
        .map(|(i, org, endpoints)| OutboxEntry {
            message: message(recorded, event_type, i, org, data.clone()),
            endpoints,
        })
        .collect())
}

/// The organization's enabled, not deleted endpoints whose filter wants the type.
pub fn targets(model: &ReadModel, org: OrganizationId, event_type: &str) -> Vec<WebhookEndpointId> {
    model
        .endpoints_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| model.ledger.webhook_endpoints.get(id))
        .filter(|e| wanted_by(e, event_type))
        .map(|e| e.id)
        .collect()
}

/// Whether the endpoint takes a new message of this type now.
pub fn wanted_by(e: &WebhookEndpoint, event_type: &str) -> bool {
    e.enabled && !e.deleted && e.wants(event_type)
}

/// [`route`] over the in-memory read model.
pub fn outbox_entries(recorded: &RecordedEvent, model: &ReadModel) -> Vec<OutboxEntry> {
    let routed: Result<_, std::convert::Infallible> = route(
        recorded,
        |key| Ok(Subject::from_model(key, model)),
        |org, event_type| Ok(targets(model, org, event_type)),
    );
    routed.unwrap_or_else(|never| match never {})
}

/// An endpoint as its own event stream leaves it, signing secrets included
/// (the read models keep none). None when the log has no such endpoint.
pub fn endpoint_from_log(
    log: &dyn EventLog,
    id: WebhookEndpointId,
) -> Result<Option<WebhookEndpoint>, LogError> {
    let events = log.read_stream(StreamId {
        kind: StreamKind::WebhookEndpoint,
        id: id.as_uuid(),
    })?;
    // The write model's own fold, on a scratch ledger holding only this stream.
    let mut scratch = Ledger::new();
    for e in &events {
        scratch
            .evolve_detached(&e.event, e.at)
            .map_err(|reason| LogError::Corrupt { seq: e.seq, reason })?;
    }
    Ok(scratch.webhook_endpoints.remove(&id))
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
