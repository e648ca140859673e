//! Payments: one per settlement of an invoice. PENDING only for the instant of
//! the attempt; COMPLETED, or FAILED (a frozen balance) and retryable.

use super::ledger::Ledger;
use super::misapplied;
use crate::events::Event;
use crate::ids::{InvoiceId, OrganizationId, PaymentId, TransactionId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Completed => "COMPLETED",
            PaymentStatus::Failed => "FAILED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Completed, Self::Failed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub invoice_id: InvoiceId,
    pub payer_organization_id: OrganizationId,
    pub payee_organization_id: OrganizationId,
    pub currency: Currency,
    pub amount: Amount,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    pub attempts: u32,
    pub payer_transaction_id: Option<TransactionId>,
    pub payee_transaction_id: Option<TransactionId>,
    /// Approved and pending refunds against this payment.
    pub refunded: Amount,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl Payment {
    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        match event {
            Event::PaymentCompleted {
                payer_transaction_id,
                payee_transaction_id,
                ..
            } => {
                self.status = PaymentStatus::Completed;
                self.failure_reason = None;
                self.attempts += 1;
                self.payer_transaction_id = Some(*payer_transaction_id);
                self.payee_transaction_id = Some(*payee_transaction_id);
                self.completed_at = Some(at);
            }
            Event::PaymentFailed { reason, .. } => {
                self.status = PaymentStatus::Failed;
                self.failure_reason = Some(reason.clone());
                self.attempts += 1;
            }
            _ => {}
        }
        self.updated_at = at;
    }

    /// What may still be refunded.
    pub fn refundable(&self) -> Amount {
        self.amount
            .checked_sub(self.refunded)
            .unwrap_or(Amount::ZERO)
    }
}

/// A payment's events, and the indexes that follow them: the payer's failed
/// payments (what a retry of all may pick up) and the settlement
/// transactions (what a refund names).
pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::PaymentInitiated {
            id,
            invoice_id,
            payer_organization_id,
            payee_organization_id,
            currency,
            amount,
        } => {
            ledger.payments.insert(
                *id,
                Payment {
                    id: *id,
                    invoice_id: *invoice_id,
                    payer_organization_id: *payer_organization_id,
                    payee_organization_id: *payee_organization_id,
                    currency: *currency,
                    amount: *amount,
                    status: PaymentStatus::Pending,
                    failure_reason: None,
                    attempts: 0,
                    payer_transaction_id: None,
                    payee_transaction_id: None,
                    refunded: Amount::ZERO,
                    created_at: at,
                    completed_at: None,
                    updated_at: at,
                },
            );
        }
        Event::PaymentCompleted { id, .. } | Event::PaymentFailed { id, .. } => {
            let p = ledger.payments.get_mut(id).ok_or("unknown payment")?;
            if p.status == PaymentStatus::Completed {
                return Err(format!("payment {id} completed twice"));
            }
            p.evolve(event, at);
            let failed = ledger
                .failed_by_payer
                .entry(p.payer_organization_id)
                .or_default();
            if p.status == PaymentStatus::Failed {
                failed.insert(*id);
            } else {
                failed.remove(id);
            }
            if let (Some(a), Some(b)) = (p.payer_transaction_id, p.payee_transaction_id) {
                ledger.settlement_transactions.insert(a, *id);
                ledger.settlement_transactions.insert(b, *id);
            }
        }
        _ => return Err(misapplied("payment", event)),
    }
    Ok(())
}
