//! Balances: one per (organization, currency).
//!
//! `available = total − reserved − collateral`, and it is never negative; the
//! reserved figure is exactly the sum of the open holds. Every change goes
//! through a check here first and is asserted again in `evolve`.

use super::command::{Command, Outcome};
use super::ledger::{Ledger, Supply};
use super::{invoice, misapplied, misrouted, need, Ctx, Decision, DomainError};
use crate::events::{Event, Hold, StreamKind};
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

    /// What every event must leave true, checked after each in O(1):
    /// available is not negative.
    ///
    /// That `reserved` is the sum of `holds` is kept by construction rather
    /// than re-added here: `check_event` admits a reservation only into a
    /// hold not yet held and within available (so without overflow), and a
    /// release or debit only
    /// of a hold's exact amount, so every event moves both by the same
    /// amount. Summing the holds after each event made it O(holds): settling
    /// 500 of a buyer's 15,000 approved invoices spent half of the writer's
    /// time re-adding them. [`Balance::check_holds`] still sums them, in
    /// debug builds after every event and wherever a balance is read whole.
    pub fn check_invariants(&self) -> Result<(), String> {
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

    /// `reserved` is the sum of `holds`: O(holds).
    pub fn check_holds(&self) -> Result<(), String> {
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

    /// Refuses an event this balance cannot take: nothing may go below zero,
    /// and what a debit or release names must be exactly what is held.
    fn check_event(&self, event: &Event) -> Result<(), String> {
        use Event::*;
        let balance_id = self.id;
        match event {
            FundsReserved { amount, .. } if *amount > self.available() => Err(format!(
                "reservation of {amount} exceeds available on {balance_id}"
            )),
            FundsReserved { hold, .. } if self.holds.contains_key(hold) => {
                Err(format!("second reservation for {hold:?} on {balance_id}"))
            }
            ReservationReleased { hold, amount, .. } if self.holds.get(hold) != Some(amount) => {
                Err(format!("release of {amount} does not match hold {hold:?}"))
            }
            SettlementDebited {
                invoice_id, amount, ..
            } if self.holds.get(&Hold::Invoice(*invoice_id)) != Some(amount) => Err(format!(
                "settlement of {amount} does not match the reservation"
            )),
            WithdrawalDebited {
                withdrawal_id,
                amount,
                ..
            } if self.holds.get(&Hold::Withdrawal(*withdrawal_id)) != Some(amount) => {
                Err(format!("withdrawal of {amount} does not match its hold"))
            }
            RefundDebited { amount, .. } if *amount > self.available() => Err(format!(
                "refund of {amount} exceeds available on {balance_id}"
            )),
            _ => Ok(()),
        }
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
        debug_assert_eq!(self.check_holds(), Ok(()));
    }
}

/// The operator's commands on an organization's balance in one currency,
/// opened by the first of them if it does not exist yet.
pub(super) fn decide(ledger: &Ledger, command: &Command, ctx: &mut Ctx<'_>) -> Decision {
    match command {
        Command::Deposit {
            organization_id,
            currency,
            amount,
            reference,
        } => deposit(ledger, *organization_id, *currency, *amount, reference, ctx),
        Command::SetCollateral {
            organization_id,
            currency,
            amount,
        } => set_collateral(ledger, *organization_id, *currency, *amount, ctx),
        Command::FreezeBalance {
            organization_id,
            currency,
            reason,
        } => set_frozen(ledger, *organization_id, *currency, true, reason, ctx),
        Command::UnfreezeBalance {
            organization_id,
            currency,
            reason,
        } => set_frozen(ledger, *organization_id, *currency, false, reason, ctx),
        _ => Err(misrouted("balance")),
    }
}

fn deposit(
    ledger: &Ledger,
    org: OrganizationId,
    currency: Currency,
    amount: Amount,
    reference: &str,
    ctx: &mut Ctx<'_>,
) -> Decision {
    need(ledger.organizations.get(&org), "organization")?;
    if amount.is_zero() {
        return Err(DomainError::Validation(
            "amount must be greater than zero".into(),
        ));
    }
    let reference = invoice::bounded_text("reference", reference, 200)?;
    // Every sum of money in one currency stays within Amount's cap: bounding what
    // ever came in bounds every balance and every total derived from them.
    let deposited = ledger
        .supply
        .get(&currency)
        .map(|s| s.deposited)
        .unwrap_or(Amount::ZERO);
    if deposited.checked_add(amount).is_none() {
        return Err(DomainError::Validation(format!(
            "this deposit would take the {currency} held in the ledger past its limit"
        )));
    }
    let mut events = Vec::new();
    let balance_id = open_balance(ledger, org, currency, ctx, &mut events);
    let transaction_id = ctx.id();
    events.push(Event::FundsDeposited {
        balance_id,
        transaction_id,
        amount,
        reference,
    });
    Ok((
        Outcome::Transaction {
            id: transaction_id,
            balance_id,
        },
        events,
    ))
}

fn set_collateral(
    ledger: &Ledger,
    org: OrganizationId,
    currency: Currency,
    amount: Amount,
    ctx: &mut Ctx<'_>,
) -> Decision {
    need(ledger.organizations.get(&org), "organization")?;
    let mut events = Vec::new();
    let balance_id = open_balance(ledger, org, currency, ctx, &mut events);
    if let Some(b) = ledger.balances.get(&balance_id) {
        b.check_collateral(amount)?;
    } else if !amount.is_zero() {
        // A balance opened just now holds nothing to set aside.
        return Err(DomainError::insufficient(currency, amount, Amount::ZERO));
    }
    events.push(Event::CollateralSet { balance_id, amount });
    Ok((Outcome::Balance(balance_id), events))
}

fn set_frozen(
    ledger: &Ledger,
    org: OrganizationId,
    currency: Currency,
    freeze: bool,
    reason: &str,
    ctx: &mut Ctx<'_>,
) -> Decision {
    need(ledger.organizations.get(&org), "organization")?;
    let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
    let mut events = Vec::new();
    let balance_id = open_balance(ledger, org, currency, ctx, &mut events);
    let frozen = ledger.balances.get(&balance_id).is_some_and(|b| b.frozen);
    if frozen == freeze {
        return Err(DomainError::InvalidTransition {
            entity: "balance",
            action: if freeze { "freeze" } else { "unfreeze" },
            current: if frozen { "FROZEN" } else { "ACTIVE" },
        });
    }
    events.push(if freeze {
        Event::BalanceFrozen { balance_id, reason }
    } else {
        Event::BalanceUnfrozen { balance_id, reason }
    });
    Ok((Outcome::Balance(balance_id), events))
}

/// The balance's id, with a `BalanceOpened` pushed first if it does not exist
/// yet. `events` are the command's so far, so that one command never opens
/// the same balance twice.
pub(super) fn open_balance(
    ledger: &Ledger,
    org: OrganizationId,
    currency: Currency,
    ctx: &mut Ctx<'_>,
    events: &mut Vec<Event>,
) -> BalanceId {
    if let Some(id) = ledger.balance_index.get(&(org, currency)) {
        return *id;
    }
    if let Some(Event::BalanceOpened { id, .. }) = events.iter().find(|e| {
        matches!(e, Event::BalanceOpened { organization_id, currency: c, .. } if *organization_id == org && *c == currency)
    }) {
        return *id;
    }
    let id = ctx.id();
    events.push(Event::BalanceOpened {
        id,
        organization_id: org,
        currency,
    });
    id
}

/// A balance's events, each checked against the balance first, and the
/// supply of its currency kept with them so that money is seen conserved
/// after every event.
pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    if event.stream().kind != StreamKind::Balance {
        return Err(misapplied("balance", event));
    }
    if let Event::BalanceOpened {
        id,
        organization_id,
        currency,
    } = event
    {
        if ledger
            .balance_index
            .insert((*organization_id, *currency), *id)
            .is_some()
        {
            return Err(format!(
                "second balance for {organization_id} in {currency}"
            ));
        }
        ledger
            .balances
            .insert(*id, Balance::open(*id, *organization_id, *currency, at));
        return Ok(());
    }
    let balance_id = BalanceId::from_uuid(event.stream().id);
    let balance = ledger
        .balances
        .get_mut(&balance_id)
        .ok_or("event for an unknown balance")?;
    let before = balance.total;
    let currency = balance.currency;
    balance.check_event(event)?;
    balance.evolve(event, at);
    balance.check_invariants()?;
    let after = balance.total;
    let supply = ledger.supply.entry(currency).or_default();
    account(supply, event, before, after)?;
    supply.check_conserved(currency)
}

/// Moves the supply by what `event` did to a balance whose total went from
/// `before` to `after`. A transfer's debit puts the money in transit until
/// its credit takes it out.
fn account(
    supply: &mut Supply,
    event: &Event,
    before: Amount,
    after: Amount,
) -> Result<(), String> {
    use Event::*;
    let overflow = || "supply overflow".to_string();
    match event {
        FundsDeposited { amount, .. } => {
            supply.deposited = supply.deposited.checked_add(*amount).ok_or_else(overflow)?;
        }
        WithdrawalDebited { amount, .. } => {
            supply.withdrawn = supply.withdrawn.checked_add(*amount).ok_or_else(overflow)?;
        }
        SettlementDebited { amount, .. } | RefundDebited { amount, .. } => {
            supply.in_transit = supply
                .in_transit
                .checked_add(*amount)
                .ok_or_else(overflow)?;
        }
        SettlementCredited { amount, .. } | RefundCredited { amount, .. } => {
            supply.in_transit = supply
                .in_transit
                .checked_sub(*amount)
                .ok_or("credited more than was debited")?;
        }
        _ => {}
    }
    supply.balances_total = supply
        .balances_total
        .checked_sub(before)
        .and_then(|t| t.checked_add(after))
        .ok_or("balances total out of range")?;
    Ok(())
}

// The decisions have checked these never underflow; saturating keeps a corrupt
// log from panicking the process, and `check_invariants` reports it instead.
fn add(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).unwrap_or(a)
}

fn sub(a: Amount, b: Amount) -> Amount {
    a.checked_sub(b).unwrap_or(Amount::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Ledger;
    use crate::ids::InvoiceId;

    fn amount(s: &str) -> Amount {
        Amount::parse_stored(s).expect("amount")
    }

    /// `reserved` stays the sum of the holds without being re-added after
    /// each event, because every event that moves one moves the other by
    /// the same amount; these are the events that would not.
    #[test]
    fn only_events_that_keep_reserved_the_sum_of_the_holds_apply() {
        let usd = Currency::parse("USD").expect("USD");
        let at = Timestamp::from_micros(0);
        let (id, org) = (BalanceId::new(), OrganizationId::new());
        let mut ledger = Ledger::default();
        let apply = |ledger: &mut Ledger, e: Event| ledger.evolve_detached(&e, at);
        let reserve = |hold, a: &str| Event::FundsReserved {
            balance_id: id,
            hold,
            amount: amount(a),
        };
        apply(
            &mut ledger,
            Event::BalanceOpened {
                id,
                organization_id: org,
                currency: usd,
            },
        )
        .expect("opened");
        apply(
            &mut ledger,
            Event::FundsDeposited {
                balance_id: id,
                transaction_id: crate::ids::TransactionId::new(),
                amount: amount("100"),
                reference: "wire".into(),
            },
        )
        .expect("deposited");
        let (a, b) = (
            Hold::Invoice(InvoiceId::new()),
            Hold::Invoice(InvoiceId::new()),
        );
        apply(&mut ledger, reserve(a, "10")).expect("reserved");
        let before = ledger.balances[&id].clone();

        let err = apply(&mut ledger, reserve(a, "5")).expect_err("a second reservation of a hold");
        assert!(err.contains("second reservation"), "{err}");
        let err = apply(&mut ledger, reserve(b, "90.01")).expect_err("more than available");
        assert!(err.contains("exceeds available"), "{err}");
        let release = |hold, a: &str| Event::ReservationReleased {
            balance_id: id,
            hold,
            amount: amount(a),
        };
        let err = apply(&mut ledger, release(a, "9")).expect_err("a release of another amount");
        assert!(err.contains("does not match hold"), "{err}");
        let err = apply(&mut ledger, release(b, "10")).expect_err("a release of no hold");
        assert!(err.contains("does not match hold"), "{err}");
        assert_eq!(
            ledger.balances[&id], before,
            "a refused event changes nothing"
        );

        apply(&mut ledger, reserve(b, "90")).expect("the rest of available");
        apply(&mut ledger, release(a, "10")).expect("released");
        let balance = &ledger.balances[&id];
        assert_eq!(
            (balance.reserved, balance.available()),
            (amount("90"), amount("10"))
        );
        assert_eq!(balance.check_holds(), Ok(()));
    }

    #[test]
    fn available_may_not_go_negative_and_holds_must_sum_to_reserved() {
        let usd = Currency::parse("USD").expect("USD");
        let mut b = Balance::open(
            BalanceId::new(),
            OrganizationId::new(),
            usd,
            Timestamp::from_micros(0),
        );
        b.total = amount("50");
        b.reserved = amount("30");
        b.collateral = amount("20");
        b.holds
            .insert(Hold::Invoice(InvoiceId::new()), amount("30"));
        assert_eq!((b.check_invariants(), b.check_holds()), (Ok(()), Ok(())));
        b.collateral = amount("20.01");
        assert!(b
            .check_invariants()
            .expect_err("negative")
            .contains("available negative"));
        b.collateral = amount("20");
        b.reserved = amount("29");
        assert!(b
            .check_holds()
            .expect_err("off by one")
            .contains("holds sum to 30"));
    }
}
