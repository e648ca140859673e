//! Money that moves because of an invoice, between its buyer's and its
//! seller's balances: the buyer's funds reserved when it approves, released
//! when the invoice is cancelled, moved by the settlement (invoice, payment
//! and both balances at once) and moved back by a refund.
//!
//! These rules read and change several aggregates together, so they live
//! here rather than in any one of them; each aggregate's `decide` calls in
//! for its step (`invoice` for approval and cancellation, `refund` for its
//! approval). A withdrawal's hold is its own affair with its own balance and
//! stays in `withdrawal`.

use super::balance::open_balance;
use super::command::Outcome;
use super::invoice::{self, InvoiceState, InvoiceStatus};
use super::ledger::Ledger;
use super::payment::PaymentStatus;
use super::{need, refund, Ctx, Decision, DomainError};
use crate::events::{Event, Hold, Party};
use crate::ids::{InvoiceId, OrganizationId, PaymentId, RefundId};
use crate::money::Amount;

/// The buyer approves, possibly for less than the total, and the approved
/// amount is reserved on its balance: a settlement can then never fail for
/// want of funds.
pub(super) fn approve_invoice(
    ledger: &Ledger,
    inv: &InvoiceState,
    party: Party,
    adjusted: Option<&str>,
    reason: Option<&str>,
) -> Result<Vec<Event>, DomainError> {
    inv.check(
        "approve",
        party,
        &[Party::Buyer],
        &[InvoiceStatus::Submitted],
    )?;
    let total = inv.total;
    let (amount, adjustment_reason) = match adjusted {
        None => (total, None),
        Some(raw) => {
            let amount = Amount::parse(inv.currency, raw)?;
            if amount >= total {
                return Err(DomainError::Validation(format!(
                    "adjustedAmount must be less than the invoice total {}",
                    total.format(inv.currency)
                )));
            }
            let reason = reason.ok_or_else(|| {
                DomainError::Validation("reason is required with adjustedAmount".into())
            })?;
            (
                amount,
                Some(invoice::required_text(
                    "reason",
                    reason,
                    invoice::MAX_TEXT_CHARS,
                )?),
            )
        }
    };
    if amount.is_zero() {
        return Err(DomainError::Validation(
            "an invoice with a total of zero cannot be approved".into(),
        ));
    }
    let balance = ledger
        .balance_of(inv.buyer_organization_id, inv.currency)
        .ok_or_else(|| DomainError::insufficient(inv.currency, amount, Amount::ZERO))?;
    balance.check_reserve(Hold::Invoice(inv.id), amount)?;
    Ok(vec![
        Event::InvoiceApproved {
            id: inv.id,
            approved_amount: amount,
            adjustment_reason,
        },
        Event::FundsReserved {
            balance_id: balance.id,
            hold: Hold::Invoice(inv.id),
            amount,
        },
    ])
}

/// What a cancelled invoice gives back to its buyer: the reservation its
/// approval made, if any.
pub(super) fn release_invoice_hold(ledger: &Ledger, inv: &InvoiceState) -> Vec<Event> {
    let Some(balance) = ledger.balance_of(inv.buyer_organization_id, inv.currency) else {
        return vec![];
    };
    let hold = Hold::Invoice(inv.id);
    match balance.holds.get(&hold) {
        Some(amount) => vec![Event::ReservationReleased {
            balance_id: balance.id,
            hold,
            amount: *amount,
        }],
        None => vec![],
    }
}

/// The buyer settles an approved invoice: a new payment, or the retry of the
/// one that failed.
pub(super) fn settle(
    ledger: &Ledger,
    org: OrganizationId,
    id: InvoiceId,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let (inv, party) = ledger.visible_invoice(org, id)?;
    inv.check(
        "settle",
        party,
        &[Party::Buyer],
        &[
            InvoiceStatus::Approved,
            InvoiceStatus::ApprovedWithAdjustment,
        ],
    )?;
    // An earlier attempt that failed is retried rather than duplicated.
    if let Some(failed) = ledger
        .failed_by_payer
        .get(&org)
        .into_iter()
        .flatten()
        .find(|p| ledger.payments.get(*p).is_some_and(|p| p.invoice_id == id))
    {
        return retry(ledger, org, *failed, ctx);
    }
    let amount = inv.approved_amount.ok_or(DomainError::InvalidTransition {
        entity: "invoice",
        action: "settle",
        current: inv.status.as_str(),
    })?;
    let payment_id: PaymentId = ctx.id();
    let mut events = vec![Event::PaymentInitiated {
        id: payment_id,
        invoice_id: id,
        payer_organization_id: inv.buyer_organization_id,
        payee_organization_id: inv.seller_organization_id,
        currency: inv.currency,
        amount,
    }];
    attempt_transfer(ledger, inv, payment_id, amount, ctx, &mut events)?;
    Ok((Outcome::Payment(payment_id), events))
}

/// The payer tries a failed payment again, while its invoice still awaits it.
pub(super) fn retry(
    ledger: &Ledger,
    org: OrganizationId,
    id: PaymentId,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let p = need(
        ledger
            .payments
            .get(&id)
            .filter(|p| p.payer_organization_id == org || p.payee_organization_id == org),
        "payment",
    )?;
    if p.payer_organization_id != org {
        return Err(DomainError::Forbidden(
            "only the payer may retry a payment".into(),
        ));
    }
    if p.status != PaymentStatus::Failed {
        return Err(DomainError::InvalidTransition {
            entity: "payment",
            action: "retry",
            current: p.status.as_str(),
        });
    }
    let inv = need(ledger.invoices.get(&p.invoice_id), "invoice")?;
    if !inv.status.is_approved() {
        return Err(DomainError::InvalidTransition {
            entity: "invoice",
            action: "settle",
            current: inv.status.as_str(),
        });
    }
    let mut events = Vec::new();
    attempt_transfer(ledger, inv, id, p.amount, ctx, &mut events)?;
    Ok((Outcome::Payment(id), events))
}

/// The transfer itself: completes, or fails (frozen side) keeping the reservation.
fn attempt_transfer(
    ledger: &Ledger,
    inv: &InvoiceState,
    payment_id: PaymentId,
    amount: Amount,
    ctx: &mut Ctx<'_>,
    events: &mut Vec<Event>,
) -> Result<(), DomainError> {
    let payer = need(
        ledger.balance_of(inv.buyer_organization_id, inv.currency),
        "balance",
    )?;
    let held = payer.hold(Hold::Invoice(inv.id))?;
    if held != amount {
        return Err(DomainError::Validation(
            "reservation does not match the approved amount".into(),
        ));
    }
    let payee_frozen = ledger
        .balance_of(inv.seller_organization_id, inv.currency)
        .is_some_and(|b| b.frozen);
    let reason = match (payer.frozen, payee_frozen) {
        (true, _) => Some("payer balance is frozen"),
        (_, true) => Some("payee balance is frozen"),
        _ => None,
    };
    if let Some(reason) = reason {
        events.push(Event::PaymentFailed {
            id: payment_id,
            reason: reason.into(),
        });
        return Ok(());
    }
    let payee_balance = open_balance(
        ledger,
        inv.seller_organization_id,
        inv.currency,
        ctx,
        events,
    );
    let payer_tx = ctx.id();
    let payee_tx = ctx.id();
    events.push(Event::PaymentCompleted {
        id: payment_id,
        payer_transaction_id: payer_tx,
        payee_transaction_id: payee_tx,
    });
    events.push(Event::SettlementDebited {
        balance_id: payer.id,
        transaction_id: payer_tx,
        payment_id,
        invoice_id: inv.id,
        counterparty_organization_id: inv.seller_organization_id,
        amount,
    });
    events.push(Event::SettlementCredited {
        balance_id: payee_balance,
        transaction_id: payee_tx,
        payment_id,
        invoice_id: inv.id,
        counterparty_organization_id: inv.buyer_organization_id,
        amount,
    });
    events.push(Event::InvoiceSettled {
        id: inv.id,
        payment_id,
    });
    Ok(())
}

/// The payee approves a refund and pays it at once from its available
/// funds (nothing was reserved for it) to the payer's balance.
pub(super) fn approve_refund(
    ledger: &Ledger,
    org: OrganizationId,
    id: RefundId,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let r = refund::visible(ledger, org, id)?;
    r.check_decide("approve", org)?;
    let payee = need(
        ledger.balance_of(r.payee_organization_id, r.currency),
        "balance",
    )?;
    payee.check_not_frozen()?;
    payee.check_available(r.amount)?;
    let mut events = Vec::new();
    let payer_balance = open_balance(
        ledger,
        r.payer_organization_id,
        r.currency,
        ctx,
        &mut events,
    );
    let payee_tx = ctx.id();
    let payer_tx = ctx.id();
    events.push(Event::RefundApproved {
        id,
        payee_transaction_id: payee_tx,
        payer_transaction_id: payer_tx,
    });
    events.push(Event::RefundDebited {
        balance_id: payee.id,
        transaction_id: payee_tx,
        refund_id: id,
        counterparty_organization_id: r.payer_organization_id,
        amount: r.amount,
    });
    events.push(Event::RefundCredited {
        balance_id: payer_balance,
        transaction_id: payer_tx,
        refund_id: id,
        counterparty_organization_id: r.payee_organization_id,
        amount: r.amount,
    });
    Ok((Outcome::Refund(id), events))
}
