//! Shared renderings of events: the JSON line shape (the admin stream's,
//! computed here from the stored bytes), who acted, and which organizations
//! an event concerns.

use crate::source::Raw;
use ledger_core::domain::Ledger;
use ledger_core::events::{Actor, Event, RecordedEvent};
use ledger_core::ids::OrganizationId;
use serde_json::{json, Value};

pub fn stream_kind(event: &RecordedEvent) -> String {
    format!("{:?}", event.stream().kind)
}

/// The event's payload alone (serde's external tag removed), as the admin stream shows it.
pub fn event_data(event: &Event) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut m)) => m.remove(event.type_name()).unwrap_or(Value::Null),
        Ok(other) => other,
        Err(_) => Value::Null,
    }
}

/// One event as a JSON line: the admin stream's fields, decoded here, plus its chain hash.
pub fn event_json(raw: Raw<'_>, event: &RecordedEvent) -> Value {
    let stream = event.stream();
    json!({
        "seq": event.seq,
        "version": event.version,
        "stream": { "kind": format!("{:?}", stream.kind), "id": stream.id.to_string() },
        "at": event.at.rfc3339(),
        "actor": event.actor,
        "requestId": event.request_id.map(|r| r.to_string()),
        "type": event.event.type_name(),
        "data": event_data(&event.event),
        "hash": hex::encode(raw.hash),
    })
}

/// `admin`, `system`, or `<organization name> (key ek_…)`.
pub fn actor(ledger: &Ledger, actor: &Actor) -> String {
    match actor {
        Actor::System => "system".into(),
        Actor::Admin => "admin".into(),
        Actor::ApiKey {
            organization_id,
            api_key_id,
        } => format!("{} (key {api_key_id})", org_name(ledger, *organization_id)),
    }
}

pub fn org_name(ledger: &Ledger, id: OrganizationId) -> String {
    ledger
        .organizations
        .get(&id)
        .map(|o| o.name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// Every organization an event concerns: those it names, and those owning
/// the aggregate it belongs to, looked up in `ledger` (the state with the
/// event applied). Both parties of an invoice count, drafts included: this
/// is the auditor's view, not the API's.
pub fn organizations(ledger: &Ledger, event: &Event) -> Vec<OrganizationId> {
    use Event::*;
    let mut out = Vec::with_capacity(2);
    match event {
        OrganizationCreated { id, .. } => out.push(*id),
        ApiKeyCreated {
            organization_id, ..
        } => out.push(*organization_id),
        ApiKeyRevoked { id } => out.extend(ledger.api_keys.get(id).map(|k| k.organization_id)),
        ConnectionRequested {
            seller_organization_id,
            buyer_organization_id,
            ..
        } => out.extend([*seller_organization_id, *buyer_organization_id]),
        ConnectionAccepted { id }
        | ConnectionRejected { id }
        | ConnectionRejectedBecause { id, .. } => {
            if let Some(c) = ledger.connections.get(id) {
                out.extend([c.seller_organization_id, c.buyer_organization_id]);
            }
        }
        PaymentInitiated {
            payer_organization_id,
            payee_organization_id,
            ..
        } => out.extend([*payer_organization_id, *payee_organization_id]),
        PaymentCompleted { id, .. } | PaymentFailed { id, .. } => {
            if let Some(p) = ledger.payments.get(id) {
                out.extend([p.payer_organization_id, p.payee_organization_id]);
            }
        }
        BalanceOpened {
            organization_id, ..
        } => out.push(*organization_id),
        FundsDeposited { .. }
        | FundsReserved { .. }
        | ReservationReleased { .. }
        | WithdrawalDebited { .. }
        | CollateralSet { .. }
        | BalanceFrozen { .. }
        | BalanceUnfrozen { .. }
        | SettlementDebited { .. }
        | SettlementCredited { .. }
        | RefundDebited { .. }
        | RefundCredited { .. } => {
            let balance = ledger_core::ids::BalanceId::from_uuid(event.stream().id);
            out.extend(ledger.balances.get(&balance).map(|b| b.organization_id));
            match event {
                SettlementDebited {
                    counterparty_organization_id,
                    ..
                }
                | SettlementCredited {
                    counterparty_organization_id,
                    ..
                }
                | RefundDebited {
                    counterparty_organization_id,
                    ..
                }
                | RefundCredited {
                    counterparty_organization_id,
                    ..
                } => out.push(*counterparty_organization_id),
                _ => {}
            }
        }
        WithdrawalSubmitted {
            organization_id, ..
        } => out.push(*organization_id),
        WithdrawalApproved { id, .. }
        | WithdrawalRejected { id, .. }
        | WithdrawalCancelled { id } => {
            out.extend(ledger.withdrawals.get(id).map(|w| w.organization_id))
        }
        RefundCreated {
            payee_organization_id,
            payer_organization_id,
            ..
        } => out.extend([*payee_organization_id, *payer_organization_id]),
        RefundApproved { id, .. } | RefundRejected { id, .. } => {
            if let Some(r) = ledger.refunds.get(id) {
                out.extend([r.payee_organization_id, r.payer_organization_id]);
            }
        }
        WebhookEndpointCreated {
            organization_id, ..
        } => out.push(*organization_id),
        WebhookEndpointUpdated { id, .. }
        | WebhookEndpointDeleted { id }
        | WebhookSecretRotated { id, .. } => {
            out.extend(ledger.webhook_endpoints.get(id).map(|e| e.organization_id))
        }
        FileStored {
            organization_id, ..
        } => out.push(*organization_id),
        FileDeleted { id } => out.extend(ledger.files.get(id).map(|f| f.organization_id)),
        // Every invoice event.
        _ => {
            let invoice = ledger_core::ids::InvoiceId::from_uuid(event.stream().id);
            if let Some(i) = ledger.invoices.get(&invoice) {
                out.extend([i.seller_organization_id, i.buyer_organization_id]);
            }
        }
    }
    out.dedup();
    out
}
