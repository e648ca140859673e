//! Balances: one per (organization, currency).
//!
//! `available = total − reserved − collateral`, and it is never negative; the
//! reserved figure is exactly the sum of the open holds. Every change goes
//! through a check here first and is asserted again in `evolve`.

use super::DomainError;
use crate::events::{Event, Hold};
use crate::ids::{BalanceId, OrganizationId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Balance {
    pub id: BalanceId,
    pub organization_id: OrganizationId,
    pub currency: Currency,
    pub total: Amount,
    pub reserved: Amount,
    pub collateral: Amount,
    pub frozen: bool,
    pub holds: BTreeMap<Hold, Amount>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Balance {
    pub fn open(
        id: BalanceId,
        organization_id: OrganizationId,
        currency: Currency,
        at: Timestamp,
    ) -> Self {
        Self {
            id,
            organization_id,
            currency,
            total: Amount::ZERO,
            reserved: Amount::ZERO,
            collateral: Amount::ZERO,
            frozen: false,
            holds: BTreeMap::new(),
            created_at: at,
            updated_at: at,
        }
    }

    /// `total − reserved − collateral`; zero if the invariant were ever broken
    /// (which `check_invariants` reports).
    pub fn available(&self) -> Amount {
        self.total
            .checked_sub(self.reserved)
            .and_then(|r| r.checked_sub(self.collateral))
            .unwrap_or(Amount::ZERO)
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        let held = self
            .holds
            .values()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(*a))
            .ok_or("holds overflow")?;
        if held != self.reserved {
            return Err(format!(
                "balance {}: reserved {} but holds sum to {}",
                self.id, self.reserved, held
            ));
        }
        let committed = self
            .reserved
            .checked_add(self.collateral)
            .ok_or("overflow")?;
        if committed > self.total {
            return Err(format!(
                "balance {}: available negative (total {}, reserved {}, collateral {})",
                self.id, self.total, self.reserved, self.collateral
            ));
        }
        Ok(())
    }

    pub fn check_not_frozen(&self) -> Result<(), DomainError> {
        if self.frozen {
            return Err(DomainError::InvalidTransition {
                entity: "balance",
                action: "move funds from",
                current: "FROZEN",
            });
        }
        Ok(())
    }

    pub fn check_available(&self, amount: Amount) -> Result<(), DomainError> {
        if amount > self.available() {
            return Err(DomainError::insufficient(
                self.currency,
                amount,
                self.available(),
            ));
        }
        Ok(())
    }

    pub fn check_reserve(&self, hold: Hold, amount: Amount) -> Result<(), DomainError> {
        if self.holds.contains_key(&hold) {
            return Err(DomainError::Validation(
                "funds are already reserved for this".into(),
            ));
        }
        self.check_available(amount)
    }

    pub fn hold(&self, hold: Hold) -> Result<Amount, DomainError> {
        self.holds
            .get(&hold)
            .copied()
            .ok_or_else(|| DomainError::Validation("no reservation is held for this".into()))
    }

    /// A new collateral figure must still leave `available ≥ 0`.
    pub fn check_collateral(&self, amount: Amount) -> Result<(), DomainError> {
        let room = self
            .total
            .checked_sub(self.reserved)
            .unwrap_or(Amount::ZERO);
        if amount > room {
            return Err(DomainError::insufficient(self.currency, amount, room));
        }
        Ok(())
    }

    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        use Event::*;
        match event {
            FundsDeposited { amount, .. }
            | SettlementCredited { amount, .. }
            | RefundCredited { amount, .. } => self.total = add(self.total, *amount),
            FundsReserved { hold, amount, .. } => {
                self.holds.insert(*hold, *amount);
                self.reserved = add(self.reserved, *amount);
            }
            ReservationReleased { hold, amount, .. } => {
                self.holds.remove(hold);
                self.reserved = sub(self.reserved, *amount);
            }
            SettlementDebited {
                invoice_id, amount, ..
            } => {
                self.holds.remove(&Hold::Invoice(*invoice_id));
                self.reserved = sub(self.reserved, *amount);
                self.total = sub(self.total, *amount);
            }
            WithdrawalDebited {
                withdrawal_id,
                amount,
                ..
            } => {
                self.holds.remove(&Hold::Withdrawal(*withdrawal_id));
                self.reserved = sub(self.reserved, *amount);
                self.total = sub(self.total, *amount);
            }
            RefundDebited { amount, .. } => self.total = sub(self.total, *amount),
            CollateralSet { amount, .. } => self.collateral = *amount,
            BalanceFrozen { .. } => self.frozen = true,
            BalanceUnfrozen { .. } => self.frozen = false,
            _ => {}
        }
        self.updated_at = at;
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }
}

// The decisions have checked these never underflow; saturating keeps a corrupt
// log from panicking the process, and `check_invariants` reports it instead.
fn add(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).unwrap_or(a)
}

fn sub(a: Amount, b: Amount) -> Amount {
    a.checked_sub(b).unwrap_or(Amount::ZERO)
}
