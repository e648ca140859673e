//! Withdrawals: maker-checker. Submitting holds the funds; a different API key
//! approves (funds leave) or rejects; the submitter may cancel while pending.

use super::DomainError;
use crate::events::{Destination, Event};
use crate::ids::{ApiKeyId, BalanceId, OrganizationId, TransactionId, WithdrawalId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum WithdrawalStatus {
    PendingApproval,
    Completed,
    Rejected,
    Cancelled,
}

impl WithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::PendingApproval => "PENDING_APPROVAL",
            WithdrawalStatus::Completed => "COMPLETED",
            WithdrawalStatus::Rejected => "REJECTED",
            WithdrawalStatus::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Withdrawal {
    pub id: WithdrawalId,
    pub organization_id: OrganizationId,
    pub balance_id: BalanceId,
    pub currency: Currency,
    pub amount: Amount,
    pub destination: Destination,
    pub status: WithdrawalStatus,
    pub submitted_by: ApiKeyId,
    pub decided_by: Option<ApiKeyId>,
    pub rejection_reason: Option<String>,
    pub transaction_id: Option<TransactionId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Withdrawal {
    fn check_pending(&self, action: &'static str) -> Result<(), DomainError> {
        if self.status != WithdrawalStatus::PendingApproval {
            return Err(DomainError::InvalidTransition {
                entity: "withdrawal",
                action,
                current: self.status.as_str(),
            });
        }
        Ok(())
    }

    /// Four eyes: the key that submitted may not decide.
    pub fn check_decide(&self, action: &'static str, by: ApiKeyId) -> Result<(), DomainError> {
        if by == self.submitted_by {
            return Err(DomainError::Forbidden(format!(
                "a withdrawal must be {action}d by a different API key than the one that submitted it"
            )));
        }
        self.check_pending(action)
    }

    pub fn check_cancel(&self, by: ApiKeyId) -> Result<(), DomainError> {
        if by != self.submitted_by {
            return Err(DomainError::Forbidden(
                "only the API key that submitted a withdrawal may cancel it".into(),
            ));
        }
        self.check_pending("cancel")
    }

    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        match event {
            Event::WithdrawalApproved {
                approved_by,
                transaction_id,
                ..
            } => {
                self.status = WithdrawalStatus::Completed;
                self.decided_by = Some(*approved_by);
                self.transaction_id = Some(*transaction_id);
            }
            Event::WithdrawalRejected {
                rejected_by,
                reason,
                ..
            } => {
                self.status = WithdrawalStatus::Rejected;
                self.decided_by = Some(*rejected_by);
                self.rejection_reason = Some(reason.clone());
            }
            Event::WithdrawalCancelled { .. } => self.status = WithdrawalStatus::Cancelled,
            _ => {}
        }
        self.updated_at = at;
    }
}
