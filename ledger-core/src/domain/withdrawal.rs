//! Withdrawals: maker-checker. Submitting holds the funds; a different API key
//! approves (funds leave) or rejects; the submitter may cancel while pending.

use super::command::{Command, Outcome};
use super::ledger::Ledger;
use super::{invoice, misapplied, misrouted, need, Ctx, Decision, DomainError};
use crate::events::{Destination, Event, Hold};
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

    /// Its hold given back: a rejected or cancelled withdrawal moves no money.
    fn released(&self) -> Event {
        Event::ReservationReleased {
            balance_id: self.balance_id,
            hold: Hold::Withdrawal(self.id),
            amount: self.amount,
        }
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

/// The maker-checker steps, by `key` of `org`. A withdrawal holds its funds
/// on its organization's balance under its own hold from submission until it
/// is decided, so every step here is also a step of that balance.
pub(super) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    key: ApiKeyId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    match command {
        Command::SubmitWithdrawal {
            currency,
            amount,
            destination,
        } => submit(ledger, org, key, *currency, *amount, destination, ctx),
        Command::ApproveWithdrawal { id } => approve(ledger, org, key, *id, ctx),
        Command::RejectWithdrawal { id, reason } => {
            let w = own(ledger, org, *id)?;
            w.check_decide("reject", key)?;
            let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
            Ok((
                Outcome::Withdrawal(*id),
                vec![
                    Event::WithdrawalRejected {
                        id: *id,
                        rejected_by: key,
                        reason,
                    },
                    w.released(),
                ],
            ))
        }
        Command::CancelWithdrawal { id } => {
            let w = own(ledger, org, *id)?;
            w.check_cancel(key)?;
            Ok((
                Outcome::Withdrawal(*id),
                vec![Event::WithdrawalCancelled { id: *id }, w.released()],
            ))
        }
        _ => Err(misrouted("withdrawal")),
    }
}

fn submit(
    ledger: &Ledger,
    org: OrganizationId,
    key: ApiKeyId,
    currency: Currency,
    amount: Amount,
    destination: &Destination,
    ctx: &mut Ctx<'_>,
) -> Decision {
    if amount.is_zero() {
        return Err(DomainError::Validation(
            "amount must be greater than zero".into(),
        ));
    }
    let balance = ledger
        .balance_of(org, currency)
        .ok_or_else(|| DomainError::insufficient(currency, amount, Amount::ZERO))?;
    balance.check_not_frozen()?;
    let id: WithdrawalId = ctx.id();
    balance.check_reserve(Hold::Withdrawal(id), amount)?;
    Ok((
        Outcome::Withdrawal(id),
        vec![
            Event::WithdrawalSubmitted {
                id,
                organization_id: org,
                balance_id: balance.id,
                currency,
                amount,
                destination: destination.clone(),
                submitted_by: key,
            },
            Event::FundsReserved {
                balance_id: balance.id,
                hold: Hold::Withdrawal(id),
                amount,
            },
        ],
    ))
}

fn approve(
    ledger: &Ledger,
    org: OrganizationId,
    key: ApiKeyId,
    id: WithdrawalId,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let w = own(ledger, org, id)?;
    w.check_decide("approve", key)?;
    let balance = need(ledger.balances.get(&w.balance_id), "balance")?;
    balance.check_not_frozen()?;
    let transaction_id = ctx.id();
    Ok((
        Outcome::Withdrawal(id),
        vec![
            Event::WithdrawalApproved {
                id,
                approved_by: key,
                transaction_id,
            },
            Event::WithdrawalDebited {
                balance_id: w.balance_id,
                transaction_id,
                withdrawal_id: id,
                amount: w.amount,
            },
        ],
    ))
}

fn own(ledger: &Ledger, org: OrganizationId, id: WithdrawalId) -> Result<&Withdrawal, DomainError> {
    need(
        ledger
            .withdrawals
            .get(&id)
            .filter(|w| w.organization_id == org),
        "withdrawal",
    )
}

pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    match event {
        Event::WithdrawalSubmitted {
            id,
            organization_id,
            balance_id,
            currency,
            amount,
            destination,
            submitted_by,
        } => {
            ledger.withdrawals.insert(
                *id,
                Withdrawal {
                    id: *id,
                    organization_id: *organization_id,
                    balance_id: *balance_id,
                    currency: *currency,
                    amount: *amount,
                    destination: destination.clone(),
                    status: WithdrawalStatus::PendingApproval,
                    submitted_by: *submitted_by,
                    decided_by: None,
                    rejection_reason: None,
                    transaction_id: None,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        Event::WithdrawalApproved { id, .. }
        | Event::WithdrawalRejected { id, .. }
        | Event::WithdrawalCancelled { id } => {
            let w = ledger.withdrawals.get_mut(id).ok_or("unknown withdrawal")?;
            if w.status != WithdrawalStatus::PendingApproval {
                return Err(format!("withdrawal {id} decided twice"));
            }
            w.evolve(event, at);
        }
        _ => return Err(misapplied("withdrawal", event)),
    }
    Ok(())
}
