//! Refunds: against a completed settlement, never more in total than was
//! settled; the payee (who received the settlement) approves and pays.

use super::command::{Command, Outcome};
use super::ledger::Ledger;
use super::{invoice, misapplied, misrouted, need, settlement, Ctx, Decision, DomainError};
use crate::events::Event;
use crate::ids::{InvoiceId, OrganizationId, PaymentId, RefundId, TransactionId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RefundStatus {
    Pending,
    Approved,
    Rejected,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "PENDING",
            RefundStatus::Approved => "APPROVED",
            RefundStatus::Rejected => "REJECTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub transaction_id: TransactionId,
    pub payment_id: PaymentId,
    pub invoice_id: InvoiceId,
    pub payee_organization_id: OrganizationId,
    pub payer_organization_id: OrganizationId,
    pub requested_by: OrganizationId,
    pub currency: Currency,
    pub amount: Amount,
    pub reason: String,
    pub status: RefundStatus,
    pub rejection_reason: Option<String>,
    pub payee_transaction_id: Option<TransactionId>,
    pub payer_transaction_id: Option<TransactionId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Refund {
    pub fn check_decide(
        &self,
        action: &'static str,
        by: OrganizationId,
    ) -> Result<(), DomainError> {
        if by != self.payee_organization_id {
            return Err(DomainError::Forbidden(format!(
                "only the party that received the settlement may {action} a refund"
            )));
        }
        if self.status != RefundStatus::Pending {
            return Err(DomainError::InvalidTransition {
                entity: "refund",
                action,
                current: self.status.as_str(),
            });
        }
        Ok(())
    }

    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        match event {
            Event::RefundApproved {
                payee_transaction_id,
                payer_transaction_id,
                ..
            } => {
                self.status = RefundStatus::Approved;
                self.payee_transaction_id = Some(*payee_transaction_id);
                self.payer_transaction_id = Some(*payer_transaction_id);
            }
            Event::RefundRejected { reason, .. } => {
                self.status = RefundStatus::Rejected;
                self.rejection_reason = Some(reason.clone());
            }
            _ => {}
        }
        self.updated_at = at;
    }
}

/// Asking for a refund of a settlement, and the payee's answer. Approving
/// pays it, from the payee's balance to the payer's: [`settlement`]'s rule.
pub(super) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    match command {
        Command::CreateRefund {
            transaction_id,
            amount,
            reason,
        } => create(ledger, org, *transaction_id, amount, reason, ctx),
        Command::ApproveRefund { id } => settlement::approve_refund(ledger, org, *id, ctx),
        Command::RejectRefund { id, reason } => {
            let r = visible(ledger, org, *id)?;
            r.check_decide("reject", org)?;
            let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
            Ok((
                Outcome::Refund(*id),
                vec![Event::RefundRejected { id: *id, reason }],
            ))
        }
        _ => Err(misrouted("refund")),
    }
}

fn create(
    ledger: &Ledger,
    org: OrganizationId,
    transaction_id: TransactionId,
    amount: &str,
    reason: &str,
    ctx: &mut Ctx<'_>,
) -> Decision {
    // Either side of the settlement may ask; the transaction is either half.
    let payment = ledger
        .settlement_transactions
        .get(&transaction_id)
        .and_then(|p| ledger.payments.get(p))
        .filter(|p| p.payer_organization_id == org || p.payee_organization_id == org);
    let payment = need(payment, "transaction")?;
    let amount = Amount::parse(payment.currency, amount)?;
    if amount > payment.refundable() {
        return Err(DomainError::Validation(format!(
            "refund exceeds what may still be refunded ({})",
            payment.refundable().format(payment.currency)
        )));
    }
    let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
    let id = ctx.id();
    Ok((
        Outcome::Refund(id),
        vec![Event::RefundCreated {
            id,
            transaction_id,
            payment_id: payment.id,
            invoice_id: payment.invoice_id,
            payee_organization_id: payment.payee_organization_id,
            payer_organization_id: payment.payer_organization_id,
            requested_by: org,
            currency: payment.currency,
            amount,
            reason,
        }],
    ))
}

/// A refund is seen by both parties to its settlement, and by no one else.
pub(super) fn visible(
    ledger: &Ledger,
    org: OrganizationId,
    id: RefundId,
) -> Result<&Refund, DomainError> {
    need(
        ledger
            .refunds
            .get(&id)
            .filter(|r| r.payee_organization_id == org || r.payer_organization_id == org),
        "refund",
    )
}

/// A refund's events. What a pending or approved refund claims is counted on
/// its payment (`refunded`) at once, so two refunds can never together exceed
/// the settlement; a rejection gives its share back.
pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::RefundCreated {
            id,
            transaction_id,
            payment_id,
            invoice_id,
            payee_organization_id,
            payer_organization_id,
            requested_by,
            currency,
            amount,
            reason,
        } => {
            let p = ledger
                .payments
                .get_mut(payment_id)
                .ok_or("refund of an unknown payment")?;
            p.refunded = p
                .refunded
                .checked_add(*amount)
                .filter(|r| *r <= p.amount)
                .ok_or_else(|| {
                    format!("refunds of payment {payment_id} exceed the settled amount")
                })?;
            ledger.refunds.insert(
                *id,
                Refund {
                    id: *id,
                    transaction_id: *transaction_id,
                    payment_id: *payment_id,
                    invoice_id: *invoice_id,
                    payee_organization_id: *payee_organization_id,
                    payer_organization_id: *payer_organization_id,
                    requested_by: *requested_by,
                    currency: *currency,
                    amount: *amount,
                    reason: reason.clone(),
                    status: RefundStatus::Pending,
                    rejection_reason: None,
                    payee_transaction_id: None,
                    payer_transaction_id: None,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        Event::RefundApproved { id, .. } | Event::RefundRejected { id, .. } => {
            let r = ledger.refunds.get_mut(id).ok_or("unknown refund")?;
            if r.status != RefundStatus::Pending {
                return Err(format!("refund {id} decided twice"));
            }
            r.evolve(event, at);
            if r.status == RefundStatus::Rejected {
                let (payment_id, amount) = (r.payment_id, r.amount);
                if let Some(p) = ledger.payments.get_mut(&payment_id) {
                    p.refunded = p.refunded.checked_sub(amount).unwrap_or(Amount::ZERO);
                }
            }
        }
        _ => return Err(misapplied("refund", event)),
    }
    Ok(())
}
