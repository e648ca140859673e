//! Refunds: against a completed settlement, never more in total than was
//! settled; the payee (who received the settlement) approves and pays.

use super::DomainError;
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
