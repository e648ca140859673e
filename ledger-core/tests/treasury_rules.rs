//! Treasury rules through the pure `Ledger`: settlement (and its failure and
//! retry), withdrawals (maker-checker), refunds, and money conservation. The
//! expectations are written from API.md (Payments, Treasury).
//!
//! `World::run` also checks, after every single command, that per currency
//! the balances' totals equal deposits − completed withdrawals as this test
//! booked them itself (never read from `ledger.supply`).

mod domain_support;

use domain_support::*;
use ledger_core::domain::command::InvoiceAction;
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::payment::PaymentStatus;
use ledger_core::domain::refund::RefundStatus;
use ledger_core::domain::withdrawal::WithdrawalStatus;
use ledger_core::domain::{Command, DomainError, Outcome};
use ledger_core::events::{Event, Hold, Party};
use ledger_core::ids::{ApiKeyId, InvoiceId, PaymentId, RefundId, TransactionId, WithdrawalId};

use InvoiceStatus as St;

// ---------------------------------------------------------------------------
// Settlement
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SettleExp {
    /// COMPLETED; (buyer total, buyer reserved, seller total) afterwards.
    Completed(&'static str, &'static str, &'static str),
    /// FAILED with a reason mentioning this; nothing moved.
    Failed(&'static str),
}

/// The standard invoice (110.00 USD, or approved at `adjusted`), buyer funded
/// with 1000.00; the seller holds `seller_funds` (no balance when empty); the
/// balance of `frozen` is frozen before settling.
fn check_settle(
    adjusted: Option<&str>,
    seller_funds: &str,
    frozen: Option<Party>,
    expect: SettleExp,
) {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    if !seller_funds.is_empty() {
        s.w.deposit(&seller, "USD", seller_funds);
    }
    let id = match adjusted {
        Some(a) => s.approved_adjusted(a),
        None => s.approved(),
    };
    let approved = s.w.status(id);
    let amount = s.w.invoice(id).approved_amount.unwrap();
    match frozen {
        Some(Party::Buyer) => s.w.freeze(&buyer, "USD"),
        Some(Party::Seller) => s.w.freeze(&seller, "USD"),
        None => {}
    }
    let label = format!("adjusted {adjusted:?} seller funds {seller_funds:?} frozen {frozen:?}");
    let buyer_before = s.w.figures(&buyer, "USD");
    let seller_before = s.w.figures(&seller, "USD");

    let payment_id = s.w.settle(&buyer, id);
    let p = s.w.payment(payment_id).clone();
    assert_eq!(p.invoice_id, id, "{label}");
    assert_eq!(
        (p.payer_organization_id, p.payee_organization_id),
        (buyer.id, seller.id),
        "{label}"
    );
    assert_eq!(p.amount, amount, "{label}: the approved amount is paid");
    assert_eq!(p.currency, cur("USD"));
    assert_eq!(p.attempts, 1, "{label}");
    match expect {
        SettleExp::Completed(buyer_total, buyer_reserved, seller_total) => {
            assert_eq!(p.status, PaymentStatus::Completed, "{label}");
            assert_eq!(p.failure_reason, None, "{label}");
            assert!(p.completed_at.is_some(), "{label}");
            let inv = s.w.invoice(id);
            assert_eq!(inv.status, St::Settled, "{label}");
            assert_eq!(inv.payment_id, Some(payment_id), "{label}");
            let b = s.w.balance(&buyer, "USD").unwrap();
            assert_eq!(fmt(b.total, "USD"), buyer_total, "{label}");
            assert_eq!(fmt(b.reserved, "USD"), buyer_reserved, "{label}");
            assert!(
                !b.holds.contains_key(&Hold::Invoice(id)),
                "{label}: reservation spent"
            );
            let sb =
                s.w.balance(&seller, "USD")
                    .expect("seller balance opened on first use");
            assert_eq!(fmt(sb.total, "USD"), seller_total, "{label}");
            // One SETTLEMENT transaction for each side, for the approved amount.
            let (out_tx, in_tx) = (
                p.payer_transaction_id.unwrap(),
                p.payee_transaction_id.unwrap(),
            );
            assert_ne!(out_tx, in_tx);
            let debits: Vec<_> =
                s.w.last_events
                    .iter()
                    .filter_map(|e| match &e.event {
                        Event::SettlementDebited {
                            balance_id,
                            transaction_id,
                            payment_id,
                            invoice_id,
                            counterparty_organization_id,
                            amount,
                        } => Some((
                            *balance_id,
                            *transaction_id,
                            *payment_id,
                            *invoice_id,
                            *counterparty_organization_id,
                            *amount,
                        )),
                        _ => None,
                    })
                    .collect();
            let credits: Vec<_> =
                s.w.last_events
                    .iter()
                    .filter_map(|e| match &e.event {
                        Event::SettlementCredited {
                            balance_id,
                            transaction_id,
                            payment_id,
                            invoice_id,
                            counterparty_organization_id,
                            amount,
                        } => Some((
                            *balance_id,
                            *transaction_id,
                            *payment_id,
                            *invoice_id,
                            *counterparty_organization_id,
                            *amount,
                        )),
                        _ => None,
                    })
                    .collect();
            // SETTLEMENT_OUT on the buyer naming the seller, SETTLEMENT_IN on the seller naming the buyer.
            assert_eq!(
                debits,
                [(b.id, out_tx, payment_id, id, seller.id, amount)],
                "{label}"
            );
            assert_eq!(
                credits,
                [(sb.id, in_tx, payment_id, id, buyer.id, amount)],
                "{label}"
            );
            assert_eq!(
                s.w.ledger.settlement_transactions.get(&out_tx),
                Some(&payment_id)
            );
            assert_eq!(
                s.w.ledger.settlement_transactions.get(&in_tx),
                Some(&payment_id)
            );
            let opened = s.w.event_names().contains(&"BalanceOpened");
            assert_eq!(
                opened,
                seller_funds.is_empty(),
                "{label}: seller balance opened iff it did not exist"
            );
        }
        SettleExp::Failed(why) => {
            assert_eq!(p.status, PaymentStatus::Failed, "{label}");
            let reason = p.failure_reason.clone().unwrap_or_default();
            assert!(reason.contains(why), "{label}: failure reason {reason:?}");
            assert_eq!(p.payer_transaction_id, None);
            assert_eq!(s.w.status(id), approved, "{label}: invoice stays approved");
            assert_eq!(s.w.invoice(id).payment_id, None, "{label}");
            let b = s.w.balance(&buyer, "USD").unwrap();
            assert_eq!(
                b.holds.get(&Hold::Invoice(id)),
                Some(&amount),
                "{label}: reservation kept"
            );
            assert_eq!(
                s.w.figures(&buyer, "USD"),
                buyer_before,
                "{label}: buyer unchanged"
            );
            assert_eq!(
                s.w.figures(&seller, "USD"),
                seller_before,
                "{label}: seller unchanged"
            );
            assert!(s.w.ledger.failed_by_payer[&buyer.id].contains(&payment_id));
        }
    }
}

#[test]
fn settlement_moves_the_approved_amount_or_fails_on_a_frozen_balance() {
    use SettleExp::{Completed, Failed};
    #[rustfmt::skip]
    let cases: &[(Option<&str>, &str, Option<Party>, SettleExp)] = &[
        // adjusted       seller   frozen              buyer total, reserved, seller total
        (None,           "",      None,               Completed("890.00", "0.00", "110.00")),
        (None,           "5.00",  None,               Completed("890.00", "0.00", "115.00")),
        (Some("80.00"),  "",      None,               Completed("920.00", "0.00", "80.00")),
        (Some("0.01"),   "1.00",  None,               Completed("999.99", "0.00", "1.01")),
        (None,           "",      Some(Party::Buyer),  Failed("frozen")),
        (None,           "5.00",  Some(Party::Seller), Failed("frozen")),
        // freezing opens the seller's balance; it is still frozen
        (None,           "",      Some(Party::Seller), Failed("frozen")),
        (Some("80.00"),  "",      Some(Party::Buyer),  Failed("frozen")),
    ];
    for (adjusted, seller_funds, frozen, expect) in cases {
        check_settle(*adjusted, seller_funds, *frozen, *expect);
    }
}

#[test]
fn settling_leaves_other_reservations_alone() {
    let mut s = Scene::new("500.00");
    let buyer = s.buyer;
    let a = s.approved();
    let b = s.approved_adjusted("40.00");
    s.w.settle(&buyer, a);
    let bal = s.w.balance(&buyer, "USD").unwrap();
    assert_eq!(fmt(bal.total, "USD"), "390.00");
    assert_eq!(fmt(bal.reserved, "USD"), "40.00");
    assert_eq!(fmt(bal.holds[&Hold::Invoice(b)], "USD"), "40.00");
    assert_eq!(fmt(bal.available(), "USD"), "350.00");
}

#[derive(Debug, Clone, Copy)]
enum Via {
    RetryPayment,
    RetryFailedAll,
    RetryFailedIds,
    SettleAgain,
    SettleAllDue,
}

fn retry(s: &mut Scene, how: Via, invoice: InvoiceId, payment: PaymentId) {
    let buyer = s.buyer;
    let today = s.w.today();
    let command = match how {
        Via::RetryPayment => Command::RetryPayment { id: payment },
        Via::RetryFailedAll => Command::RetryFailedPayments { ids: None },
        Via::RetryFailedIds => Command::RetryFailedPayments {
            ids: Some(vec![payment]),
        },
        Via::SettleAgain => Command::SettleInvoice { id: invoice },
        Via::SettleAllDue => Command::SettleAllDue { as_of: today },
    };
    match s.w.ok(&buyer.actor(), command) {
        Outcome::Payment(p) => assert_eq!(p, payment, "{how:?}: the same payment is retried"),
        Outcome::Bulk(results) => {
            assert_eq!(results.len(), 1, "{how:?}: {results:?}");
            assert_eq!(results[0].1, Ok(Outcome::Payment(payment)), "{how:?}");
        }
        other => panic!("{how:?}: {other:?}"),
    }
}

/// A settlement that failed on `frozen`'s balance: retried `retries_frozen`
/// times while still frozen (each fails again), then once after unfreezing.
fn check_retry(frozen: Party, how: Via, retries_frozen: u32) {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let id = s.approved_adjusted("75.00");
    let org = if frozen == Party::Buyer {
        buyer
    } else {
        seller
    };
    s.w.freeze(&org, "USD");
    let payment = s.w.settle(&buyer, id);
    let label = format!("{frozen:?} frozen, {how:?} after {retries_frozen} frozen retries");
    assert_eq!(
        s.w.payment(payment).status,
        PaymentStatus::Failed,
        "{label}"
    );
    for i in 0..retries_frozen {
        retry(&mut s, how, id, payment);
        let p = s.w.payment(payment);
        assert_eq!(p.status, PaymentStatus::Failed, "{label}");
        assert_eq!(p.attempts, 2 + i, "{label}: attempts counted");
        assert_eq!(s.w.status(id), St::ApprovedWithAdjustment, "{label}");
    }
    s.w.unfreeze(&org, "USD");
    retry(&mut s, how, id, payment);
    let p = s.w.payment(payment);
    assert_eq!(p.status, PaymentStatus::Completed, "{label}");
    assert_eq!(p.failure_reason, None, "{label}");
    assert_eq!(p.attempts, 2 + retries_frozen, "{label}: attempts counted");
    assert_eq!(s.w.ledger.payments.len(), 1, "{label}: no second payment");
    assert_eq!(s.w.status(id), St::Settled, "{label}");
    assert_eq!(s.w.invoice(id).payment_id, Some(payment), "{label}");
    assert_eq!(
        s.w.figures(&buyer, "USD"),
        Some(("925.00".into(), "0.00".into(), "925.00".into())),
        "{label}"
    );
    assert_eq!(
        fmt(s.w.balance(&seller, "USD").unwrap().total, "USD"),
        "75.00",
        "{label}"
    );
    assert!(
        !s.w.ledger.failed_by_payer[&buyer.id].contains(&payment),
        "{label}"
    );
    // Completed: nothing left to retry.
    s.w.refused(
        &buyer.actor(),
        Command::RetryPayment { id: payment },
        Refusal::Invalid("payment", "COMPLETED"),
    );
}

#[test]
fn failed_settlements_complete_once_unfrozen() {
    #[rustfmt::skip]
    let cases: &[(Party, Via, u32)] = &[
        (Party::Buyer,  Via::RetryPayment,   0),
        (Party::Buyer,  Via::RetryFailedAll, 0),
        (Party::Buyer,  Via::RetryFailedIds, 0),
        (Party::Buyer,  Via::SettleAgain,    0),
        (Party::Buyer,  Via::SettleAllDue,   0),
        (Party::Seller, Via::RetryPayment,   0),
        (Party::Seller, Via::RetryFailedAll, 0),
        (Party::Seller, Via::SettleAgain,    0),
        (Party::Buyer,  Via::RetryPayment,   2),
        (Party::Seller, Via::RetryFailedAll, 1),
        (Party::Buyer,  Via::SettleAgain,    1),
        (Party::Seller, Via::RetryFailedIds, 2),
    ];
    for (frozen, how, n) in cases {
        check_retry(*frozen, *how, *n);
    }
}

#[test]
fn only_the_payer_retries_and_only_while_the_invoice_is_approved() {
    let mut s = Scene::new("1000.00");
    let (seller, buyer, stranger) = (s.seller, s.buyer, s.stranger);
    let id = s.approved();
    s.w.freeze(&buyer, "USD");
    let payment = s.w.settle(&buyer, id);
    s.w.unfreeze(&buyer, "USD");
    s.w.refused(
        &seller.actor(),
        Command::RetryPayment { id: payment },
        Refusal::Forbidden,
    );
    s.w.refused(
        &stranger.actor(),
        Command::RetryPayment { id: payment },
        Refusal::NotFound,
    );
    s.w.refused(
        &seller.actor(),
        Command::SettleInvoice { id },
        Refusal::Forbidden,
    );
    s.w.refused(
        &stranger.actor(),
        Command::SettleInvoice { id },
        Refusal::NotFound,
    );
    // The cancellation is accepted: the reservation goes, the failed payment
    // can no longer complete.
    s.w.act_ok(&seller, id, request_cancellation());
    s.w.act_ok(&buyer, id, InvoiceAction::AcceptCancellation);
    assert_eq!(
        fmt(s.w.balance(&buyer, "USD").unwrap().reserved, "USD"),
        "0.00"
    );
    s.w.refused(
        &buyer.actor(),
        Command::RetryPayment { id: payment },
        Refusal::Invalid("invoice", "CANCELLED"),
    );
    assert_eq!(s.w.payment(payment).status, PaymentStatus::Failed);
    assert_eq!(
        fmt(
            s.w.balance(&seller, "USD")
                .map_or(ledger_core::money::Amount::ZERO, |b| b.total),
            "USD"
        ),
        "0.00"
    );
}

#[test]
fn settle_all_due_settles_the_callers_approved_invoices_due_by_the_date() {
    let mut s = Scene::new("1000.00");
    let (seller, buyer) = (s.seller, s.buyer);
    let today = s.w.today();
    let yesterday = today.pred_opt().unwrap();
    let tomorrow = today.succ_opt().unwrap();
    let invoice = |s: &mut Scene, due, approve_it: bool| {
        let mut new =
            s.w.new_invoice(s.connection, "USD", Scene::std_lines(), true);
        new.issue_date = Some(yesterday);
        new.due_date = due;
        let id = s.w.create_invoice(&seller, new);
        if approve_it {
            s.w.act_ok(&buyer, id, approve());
        }
        id
    };
    let overdue = invoice(&mut s, yesterday, true);
    let due = invoice(&mut s, today, true);
    let later = invoice(&mut s, tomorrow, true);
    let unapproved = invoice(&mut s, yesterday, false);
    // Another buyer's approved invoice, due: not the caller's.
    let other_buyer = s.w.org("Other Buyer");
    s.w.deposit(&other_buyer, "USD", "500.00");
    let conn = s.w.connect(&seller, &other_buyer);
    let mut new = s.w.new_invoice(conn, "USD", Scene::std_lines(), true);
    new.issue_date = Some(yesterday);
    new.due_date = yesterday;
    let theirs = s.w.create_invoice(&seller, new);
    s.w.act_ok(&other_buyer, theirs, approve());

    match s
        .w
        .ok(&buyer.actor(), Command::SettleAllDue { as_of: today })
    {
        Outcome::Bulk(results) => {
            let mut settled: Vec<_> = results
                .iter()
                .map(|(subject, r)| (*subject, r.is_ok()))
                .collect();
            settled.sort();
            let mut expected = vec![(Some(overdue.as_uuid()), true), (Some(due.as_uuid()), true)];
            expected.sort();
            assert_eq!(settled, expected);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.w.status(overdue), St::Settled);
    assert_eq!(s.w.status(due), St::Settled);
    assert_eq!(s.w.status(later), St::Approved);
    assert_eq!(s.w.status(unapproved), St::Submitted);
    assert_eq!(s.w.status(theirs), St::Approved);
    assert_eq!(
        s.w.figures(&buyer, "USD"),
        Some(("780.00".into(), "110.00".into(), "670.00".into()))
    );
    assert_eq!(
        fmt(s.w.balance(&seller, "USD").unwrap().total, "USD"),
        "220.00"
    );
}

// ---------------------------------------------------------------------------
// Withdrawals
// ---------------------------------------------------------------------------

/// `(deposit, collateral, approved invoice?, amount)` → the hold and the
/// balance's `(total, reserved, available)` after submitting, or the refusal.
fn check_submit_withdrawal(
    deposit: &str,
    collateral: &str,
    invoice_reserved: bool,
    amount: &str,
    expect: Result<(&str, &str, &str), Refusal>,
) {
    let mut s = Scene::new(deposit);
    let buyer = s.buyer;
    if invoice_reserved {
        s.approved();
    }
    if !collateral.is_empty() {
        s.w.set_collateral(&buyer, "USD", collateral);
    }
    let label = format!(
        "deposit {deposit:?} collateral {collateral:?} invoice {invoice_reserved} amount {amount}"
    );
    let command = Command::SubmitWithdrawal {
        currency: cur("USD"),
        amount: usd(amount),
        destination: destination(),
    };
    match expect {
        Ok((total, reserved, available)) => {
            let id = match s.w.ok(&buyer.actor(), command) {
                Outcome::Withdrawal(id) => id,
                other => panic!("{label}: {other:?}"),
            };
            let w = &s.w.ledger.withdrawals[&id];
            assert_eq!(w.status, WithdrawalStatus::PendingApproval, "{label}");
            assert_eq!(w.submitted_by, buyer.key, "{label}");
            assert_eq!(fmt(w.amount, "USD"), amount, "{label}");
            let b = s.w.balance(&buyer, "USD").unwrap();
            assert_eq!(
                b.holds.get(&Hold::Withdrawal(id)),
                Some(&usd(amount)),
                "{label}: held"
            );
            assert_eq!(
                s.w.figures(&buyer, "USD"),
                Some((total.into(), reserved.into(), available.into())),
                "{label}"
            );
        }
        Err(refusal) => {
            s.w.refused(&buyer.actor(), command, refusal);
        }
    }
}

/// `(deposit, collateral, approved invoice?, amount, Ok((total, reserved, available)) | refusal)`.
type SubmitCase = (
    &'static str,
    &'static str,
    bool,
    &'static str,
    Result<(&'static str, &'static str, &'static str), Refusal>,
);

#[test]
fn submitting_a_withdrawal_holds_the_amount() {
    use Refusal::{Insufficient, Validation};
    #[rustfmt::skip]
    let cases: &[SubmitCase] = &[
        // deposit   collateral invoice amount      total      reserved  available
        ("100.00",  "",        false,  "60.00",    Ok(("100.00", "60.00",  "40.00"))),
        ("100.00",  "",        false,  "100.00",   Ok(("100.00", "100.00", "0.00"))),
        ("100.00",  "",        false,  "100.01",   Err(Insufficient)),
        ("100.00",  "30.00",   false,  "70.00",    Ok(("100.00", "70.00",  "0.00"))),
        ("100.00",  "30.00",   false,  "70.01",    Err(Insufficient)),
        ("200.00",  "",        true,   "90.00",    Ok(("200.00", "200.00", "0.00"))),
        ("200.00",  "",        true,   "90.01",    Err(Insufficient)),
        ("",        "",        false,  "0.01",     Err(Insufficient)),
        ("100.00",  "",        false,  "0.00",     Err(Validation)),
    ];
    for (deposit, collateral, inv, amount, expect) in cases {
        check_submit_withdrawal(deposit, collateral, *inv, amount, expect.clone());
    }
}

#[test]
fn pending_withdrawals_count_against_available() {
    let mut s = Scene::new("100.00");
    let buyer = s.buyer;
    let submit = |amount: &str| Command::SubmitWithdrawal {
        currency: cur("USD"),
        amount: usd(amount),
        destination: destination(),
    };
    s.w.ok(&buyer.actor(), submit("60.00"));
    let err =
        s.w.refused(&buyer.actor(), submit("40.01"), Refusal::Insufficient);
    assert_eq!(
        err,
        DomainError::InsufficientBalance {
            currency: cur("USD"),
            needed: "40.01".into(),
            available: "40.00".into(),
        }
    );
    s.w.ok(&buyer.actor(), submit("40.00"));
    // …and hold back an invoice approval too.
    let id = s.submitted();
    s.w.refused(
        &buyer.actor(),
        Command::Invoice {
            id,
            action: approve(),
        },
        Refusal::Insufficient,
    );
}

#[test]
fn a_frozen_balance_cannot_be_withdrawn_from() {
    let mut s = Scene::new("100.00");
    let buyer = s.buyer;
    s.w.freeze(&buyer, "USD");
    s.w.refused(
        &buyer.actor(),
        Command::SubmitWithdrawal {
            currency: cur("USD"),
            amount: usd("10.00"),
            destination: destination(),
        },
        Refusal::Invalid("balance", "FROZEN"),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Approve,
    Reject,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The API key that submitted.
    Submitter,
    /// Another key of the same organization.
    OtherKey,
    /// Another organization.
    OtherOrg,
}

struct WithdrawalScene {
    s: Scene,
    other_key: ApiKeyId,
    id: WithdrawalId,
}

/// Buyer deposited 100.00, submitted a withdrawal of 60.00 with its default key.
fn withdrawal_scene() -> WithdrawalScene {
    let mut s = Scene::new("100.00");
    let buyer = s.buyer;
    let other_key = s.w.api_key(&buyer);
    let id = match s.w.ok(
        &buyer.actor(),
        Command::SubmitWithdrawal {
            currency: cur("USD"),
            amount: usd("60.00"),
            destination: destination(),
        },
    ) {
        Outcome::Withdrawal(id) => id,
        other => panic!("{other:?}"),
    };
    WithdrawalScene { s, other_key, id }
}

fn decide(ws: &WithdrawalScene, decision: Decision) -> Command {
    let id = ws.id;
    match decision {
        Decision::Approve => Command::ApproveWithdrawal { id },
        Decision::Reject => Command::RejectWithdrawal {
            id,
            reason: "unknown IBAN".into(),
        },
        Decision::Cancel => Command::CancelWithdrawal { id },
    }
}

fn actor_for(ws: &WithdrawalScene, by: By) -> ledger_core::events::Actor {
    match by {
        By::Submitter => ws.s.buyer.actor(),
        By::OtherKey => ws.s.buyer.with_key(ws.other_key),
        By::OtherOrg => ws.s.stranger.actor(),
    }
}

/// Decision on a pending withdrawal → its new state and the balance's
/// `(total, reserved, available)`, or the refusal.
fn check_withdrawal_decision(
    decision: Decision,
    by: By,
    expect: Result<(WithdrawalStatus, &str, &str, &str), Refusal>,
) {
    let mut ws = withdrawal_scene();
    let label = format!("{decision:?} by {by:?}");
    let actor = actor_for(&ws, by);
    let command = decide(&ws, decision);
    let buyer = ws.s.buyer;
    match expect {
        Ok((status, total, reserved, available)) => {
            ws.s.w.ok(&actor, command);
            let w = &ws.s.w.ledger.withdrawals[&ws.id];
            assert_eq!(w.status, status, "{label}");
            let b = ws.s.w.balance(&buyer, "USD").unwrap();
            assert!(
                !b.holds.contains_key(&Hold::Withdrawal(ws.id)),
                "{label}: hold gone"
            );
            assert_eq!(
                ws.s.w.figures(&buyer, "USD"),
                Some((total.into(), reserved.into(), available.into())),
                "{label}"
            );
            if status == WithdrawalStatus::Completed {
                assert_eq!(w.decided_by, Some(ws.other_key), "{label}");
                assert!(w.transaction_id.is_some(), "{label}");
                assert_eq!(ws.s.w.booked_withdrawals(cur("USD")), usd("60.00"));
            }
        }
        Err(refusal) => {
            ws.s.w.refused(&actor, command, refusal);
            assert_eq!(
                ws.s.w.ledger.withdrawals[&ws.id].status,
                WithdrawalStatus::PendingApproval
            );
        }
    }
}

/// `(decision, by, Ok((status, total, reserved, available)) | refusal)`.
type DecisionCase = (
    Decision,
    By,
    Result<(WithdrawalStatus, &'static str, &'static str, &'static str), Refusal>,
);

#[test]
fn withdrawal_decisions_need_four_eyes_and_cancel_needs_the_submitter() {
    use By::{OtherKey, OtherOrg, Submitter};
    use Decision::{Approve, Cancel, Reject};
    use Refusal::{Forbidden, NotFound};
    use WithdrawalStatus::{Cancelled, Completed, Rejected};
    #[rustfmt::skip]
    let cases: &[DecisionCase] = &[
        // decision by          status     total     reserved available
        (Approve, Submitter, Err(Forbidden)),
        (Approve, OtherKey,  Ok((Completed, "40.00",  "0.00", "40.00"))),
        (Approve, OtherOrg,  Err(NotFound)),
        (Reject,  Submitter, Err(Forbidden)),
        (Reject,  OtherKey,  Ok((Rejected,  "100.00", "0.00", "100.00"))),
        (Reject,  OtherOrg,  Err(NotFound)),
        (Cancel,  Submitter, Ok((Cancelled, "100.00", "0.00", "100.00"))),
        (Cancel,  OtherKey,  Err(Forbidden)),
        (Cancel,  OtherOrg,  Err(NotFound)),
    ];
    for (decision, by, expect) in cases {
        check_withdrawal_decision(*decision, *by, expect.clone());
    }
}

/// After the withdrawal reached `terminal` (through the only way there),
/// every further decision: the wrong key → 403 as ever, the right one → 400.
fn check_withdrawal_after(terminal: WithdrawalStatus, decision: Decision, by: By, expect: Refusal) {
    let mut ws = withdrawal_scene();
    let (via, via_by) = match terminal {
        WithdrawalStatus::Completed => (Decision::Approve, By::OtherKey),
        WithdrawalStatus::Rejected => (Decision::Reject, By::OtherKey),
        WithdrawalStatus::Cancelled => (Decision::Cancel, By::Submitter),
        WithdrawalStatus::PendingApproval => unreachable!(),
    };
    let actor = actor_for(&ws, via_by);
    let command = decide(&ws, via);
    ws.s.w.ok(&actor, command);
    let actor = actor_for(&ws, by);
    let command = decide(&ws, decision);
    ws.s.w.refused(&actor, command, expect);
}

#[test]
fn decided_withdrawals_stay_decided() {
    use By::{OtherKey, Submitter};
    use Decision::{Approve, Cancel, Reject};
    use Refusal::{Forbidden, Invalid};
    use WithdrawalStatus::{Cancelled, Completed, Rejected};
    #[rustfmt::skip]
    let cases: &[(WithdrawalStatus, Decision, By, Refusal)] = &[
        (Completed, Approve, OtherKey,  Invalid("withdrawal", "COMPLETED")),
        (Completed, Reject,  OtherKey,  Invalid("withdrawal", "COMPLETED")),
        (Completed, Cancel,  Submitter, Invalid("withdrawal", "COMPLETED")),
        (Completed, Approve, Submitter, Forbidden),
        (Completed, Cancel,  OtherKey,  Forbidden),
        (Rejected,  Approve, OtherKey,  Invalid("withdrawal", "REJECTED")),
        (Rejected,  Reject,  OtherKey,  Invalid("withdrawal", "REJECTED")),
        (Rejected,  Cancel,  Submitter, Invalid("withdrawal", "REJECTED")),
        (Rejected,  Reject,  Submitter, Forbidden),
        (Cancelled, Approve, OtherKey,  Invalid("withdrawal", "CANCELLED")),
        (Cancelled, Reject,  OtherKey,  Invalid("withdrawal", "CANCELLED")),
        (Cancelled, Cancel,  Submitter, Invalid("withdrawal", "CANCELLED")),
        (Cancelled, Cancel,  OtherKey,  Forbidden),
    ];
    for (terminal, decision, by, expect) in cases {
        check_withdrawal_after(*terminal, *decision, *by, expect.clone());
    }
}

#[test]
fn approving_a_withdrawal_from_a_frozen_balance_is_refused_and_keeps_the_hold() {
    let mut ws = withdrawal_scene();
    let buyer = ws.s.buyer;
    ws.s.w.freeze(&buyer, "USD");
    let actor = actor_for(&ws, By::OtherKey);
    let command = decide(&ws, Decision::Approve);
    ws.s.w
        .refused(&actor, command, Refusal::Invalid("balance", "FROZEN"));
    assert_eq!(
        fmt(
            ws.s.w.balance(&buyer, "USD").unwrap().holds[&Hold::Withdrawal(ws.id)],
            "USD"
        ),
        "60.00"
    );
    ws.s.w.unfreeze(&buyer, "USD");
    let command = decide(&ws, Decision::Approve);
    ws.s.w.ok(&actor, command);
    assert_eq!(
        ws.s.w.figures(&buyer, "USD"),
        Some(("40.00".into(), "0.00".into(), "40.00".into()))
    );
}

// ---------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------

struct RefundScene {
    s: Scene,
    payment: PaymentId,
    /// The buyer's SETTLEMENT_OUT and the seller's SETTLEMENT_IN.
    payer_tx: TransactionId,
    payee_tx: TransactionId,
    buyer_deposit_tx: TransactionId,
}

/// Buyer deposited 1000.00 and settled an invoice for `settled` (110.00, or
/// adjusted below that); the seller starts with no money of its own.
fn refund_scene(adjusted: Option<&str>) -> RefundScene {
    let mut s = Scene::new("");
    let buyer = s.buyer;
    let buyer_deposit_tx = s.w.deposit(&buyer, "USD", "1000.00");
    let id = match adjusted {
        Some(a) => s.approved_adjusted(a),
        None => s.approved(),
    };
    let payment = s.w.settle(&buyer, id);
    let p = s.w.payment(payment);
    let (payer_tx, payee_tx) = (
        p.payer_transaction_id.unwrap(),
        p.payee_transaction_id.unwrap(),
    );
    RefundScene {
        s,
        payment,
        payer_tx,
        payee_tx,
        buyer_deposit_tx,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Seller,
    Buyer,
    Stranger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// The buyer's SETTLEMENT_OUT.
    Out,
    /// The seller's SETTLEMENT_IN.
    In,
    /// The buyer's DEPOSIT: not a settlement.
    Deposit,
}

impl RefundScene {
    fn org(&self, side: Side) -> Org {
        match side {
            Side::Seller => self.s.seller,
            Side::Buyer => self.s.buyer,
            Side::Stranger => self.s.stranger,
        }
    }

    fn tx(&self, tx: Tx) -> TransactionId {
        match tx {
            Tx::Out => self.payer_tx,
            Tx::In => self.payee_tx,
            Tx::Deposit => self.buyer_deposit_tx,
        }
    }

    fn create(&mut self, side: Side, tx: Tx, amount: &str) -> Result<Outcome, DomainError> {
        let actor = self.org(side).actor();
        let transaction_id = self.tx(tx);
        self.s.w.run(
            &actor,
            Command::CreateRefund {
                transaction_id,
                amount: amount.into(),
                reason: "returned goods".into(),
            },
        )
    }

    fn create_ok(&mut self, side: Side, tx: Tx, amount: &str) -> RefundId {
        match self.create(side, tx, amount) {
            Ok(Outcome::Refund(id)) => id,
            other => panic!("refund of {amount} by {side:?} on {tx:?}: {other:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Pending,
    Approved,
    Rejected,
}

/// Earlier refunds `(side, tx, amount, what became of it)`, then a new one.
fn check_refund_cap(
    adjusted: Option<&str>,
    earlier: &[(Side, Tx, &str, Then)],
    new: (Side, Tx, &str),
    expect: Result<(), Refusal>,
) {
    let mut rs = refund_scene(adjusted);
    let seller = rs.s.seller;
    for (side, tx, amount, then) in earlier {
        let id = rs.create_ok(*side, *tx, amount);
        match then {
            Then::Pending => {}
            Then::Approved => {
                rs.s.w.ok(&seller.actor(), Command::ApproveRefund { id });
            }
            Then::Rejected => {
                rs.s.w.ok(
                    &seller.actor(),
                    Command::RejectRefund {
                        id,
                        reason: "not returned".into(),
                    },
                );
            }
        }
    }
    let (side, tx, amount) = new;
    let label = format!("{earlier:?} then {new:?} on {adjusted:?}");
    match expect {
        Ok(()) => {
            let id = rs.create_ok(side, tx, amount);
            let r = &rs.s.w.ledger.refunds[&id];
            assert_eq!(r.status, RefundStatus::Pending, "{label}");
            assert_eq!(fmt(r.amount, "USD"), amount, "{label}");
            assert_eq!(r.payment_id, rs.payment, "{label}");
            assert_eq!(r.requested_by, rs.org(side).id, "{label}");
            assert_eq!(
                (r.payee_organization_id, r.payer_organization_id),
                (rs.s.seller.id, rs.s.buyer.id),
                "{label}"
            );
        }
        Err(refusal) => {
            let actor = rs.org(side).actor();
            let transaction_id = rs.tx(tx);
            rs.s.w.refused(
                &actor,
                Command::CreateRefund {
                    transaction_id,
                    amount: amount.into(),
                    reason: "returned goods".into(),
                },
                refusal,
            );
        }
    }
}

/// `(adjusted approval, earlier refunds, the new refund, expected)`.
type CapCase = (
    Option<&'static str>,
    &'static [(Side, Tx, &'static str, Then)],
    (Side, Tx, &'static str),
    Result<(), Refusal>,
);

#[test]
fn refunds_are_capped_at_the_settled_amount_less_earlier_refunds() {
    use Side::{Buyer, Seller, Stranger};
    use Then::{Approved, Pending, Rejected};
    use Tx::{Deposit, In, Out};
    let ok = Ok(());
    let over = Err(Refusal::Validation);
    #[rustfmt::skip]
    let cases: &[CapCase] = &[
        // against either side's settlement transaction
        (None, &[], (Buyer,  Out, "110.00"), ok.clone()),
        (None, &[], (Seller, In,  "110.00"), ok.clone()),
        (None, &[], (Buyer,  Out, "0.01"),   ok.clone()),
        (None, &[], (Buyer,  Out, "110.01"), over.clone()),
        (None, &[], (Seller, In,  "110.01"), over.clone()),
        (None, &[], (Buyer,  Out, "0.00"),   Err(Refusal::Validation)),
        (None, &[], (Buyer,  Out, "1.001"),  Err(Refusal::Validation)),
        // not a settlement, or not the caller's to see
        (None, &[], (Buyer,    Deposit, "1.00"), Err(Refusal::NotFound)),
        (None, &[], (Stranger, Out,     "1.00"), Err(Refusal::NotFound)),
        (None, &[], (Stranger, In,      "1.00"), Err(Refusal::NotFound)),
        // the settled amount of an adjusted approval is the approved amount
        (Some("80.00"), &[], (Buyer, Out, "80.00"), ok.clone()),
        (Some("80.00"), &[], (Buyer, Out, "80.01"), over.clone()),
        // pending and approved refunds count, from either side; rejected ones do not
        (None, &[(Buyer, Out, "60.00", Pending)],  (Buyer,  Out, "50.00"), ok.clone()),
        (None, &[(Buyer, Out, "60.00", Pending)],  (Buyer,  Out, "50.01"), over.clone()),
        (None, &[(Buyer, Out, "60.00", Approved)], (Buyer,  Out, "50.00"), ok.clone()),
        (None, &[(Buyer, Out, "60.00", Approved)], (Seller, In,  "50.01"), over.clone()),
        (None, &[(Seller, In, "60.00", Pending)],  (Buyer,  Out, "50.01"), over.clone()),
        (None, &[(Buyer, Out, "60.00", Rejected)], (Buyer,  Out, "110.00"), ok.clone()),
        (None, &[(Buyer, Out, "60.00", Rejected), (Seller, In, "60.00", Approved)], (Buyer, Out, "50.00"), ok.clone()),
        (None, &[(Buyer, Out, "60.00", Rejected), (Seller, In, "60.00", Approved)], (Buyer, Out, "50.01"), over.clone()),
        (None, &[(Buyer, Out, "110.00", Approved)], (Buyer, Out, "0.01"),  over.clone()),
        (Some("80.00"), &[(Buyer, Out, "30.00", Pending), (Buyer, Out, "30.00", Approved)], (Seller, In, "20.00"), ok.clone()),
        (Some("80.00"), &[(Buyer, Out, "30.00", Pending), (Buyer, Out, "30.00", Approved)], (Seller, In, "20.01"), over.clone()),
    ];
    for (adjusted, earlier, new, expect) in cases {
        check_refund_cap(*adjusted, earlier, *new, expect.clone());
    }
}

#[test]
fn a_refund_needs_a_reason() {
    let mut rs = refund_scene(None);
    let buyer = rs.s.buyer;
    let transaction_id = rs.payer_tx;
    rs.s.w.refused(
        &buyer.actor(),
        Command::CreateRefund {
            transaction_id,
            amount: "10.00".into(),
            reason: "  ".into(),
        },
        Refusal::Validation,
    );
}

/// A pending refund of 60.00 (created by `created_by`), decided by `by` →
/// its new state and `(seller total, buyer total)`, or the refusal.
fn check_refund_decision(
    created_by: Side,
    by: Side,
    approve_it: bool,
    expect: Result<(RefundStatus, &str, &str), Refusal>,
) {
    let mut rs = refund_scene(None);
    let tx = if created_by == Side::Buyer {
        Tx::Out
    } else {
        Tx::In
    };
    let id = rs.create_ok(created_by, tx, "60.00");
    let actor = rs.org(by).actor();
    let command = if approve_it {
        Command::ApproveRefund { id }
    } else {
        Command::RejectRefund {
            id,
            reason: "goods not returned".into(),
        }
    };
    let label = format!(
        "created by {created_by:?}, {} by {by:?}",
        if approve_it { "approve" } else { "reject" }
    );
    let (seller, buyer) = (rs.s.seller, rs.s.buyer);
    match expect {
        Ok((status, seller_total, buyer_total)) => {
            rs.s.w.ok(&actor, command);
            let r = &rs.s.w.ledger.refunds[&id];
            assert_eq!(r.status, status, "{label}");
            let s_total = fmt(rs.s.w.balance(&seller, "USD").unwrap().total, "USD");
            let b_total = fmt(rs.s.w.balance(&buyer, "USD").unwrap().total, "USD");
            assert_eq!(
                (s_total.as_str(), b_total.as_str()),
                (seller_total, buyer_total),
                "{label}"
            );
            if status == RefundStatus::Approved {
                let names = rs.s.w.event_names();
                assert_eq!(
                    names,
                    ["RefundApproved", "RefundDebited", "RefundCredited"],
                    "{label}"
                );
                // REFUND_OUT from the payee naming the payer, REFUND_IN to the payer naming the payee.
                let moves: Vec<_> =
                    rs.s.w
                        .last_events
                        .iter()
                        .filter_map(|e| match &e.event {
                            Event::RefundDebited {
                                balance_id,
                                counterparty_organization_id,
                                amount,
                                ..
                            }
                            | Event::RefundCredited {
                                balance_id,
                                counterparty_organization_id,
                                amount,
                                ..
                            } => Some((
                                *balance_id,
                                *counterparty_organization_id,
                                fmt(*amount, "USD"),
                            )),
                            _ => None,
                        })
                        .collect();
                let seller_balance = rs.s.w.balance(&seller, "USD").unwrap().id;
                let buyer_balance = rs.s.w.balance(&buyer, "USD").unwrap().id;
                assert_eq!(
                    moves,
                    [
                        (seller_balance, buyer.id, "60.00".to_string()),
                        (buyer_balance, seller.id, "60.00".to_string())
                    ],
                    "{label}"
                );
                // Approved refunds keep counting against the cap.
                assert_eq!(
                    fmt(rs.s.w.payment(rs.payment).refundable(), "USD"),
                    "50.00",
                    "{label}"
                );
            } else {
                // A rejected refund frees its share of the cap again.
                assert_eq!(
                    fmt(rs.s.w.payment(rs.payment).refundable(), "USD"),
                    "110.00",
                    "{label}"
                );
            }
        }
        Err(refusal) => {
            rs.s.w.refused(&actor, command, refusal);
            assert_eq!(rs.s.w.ledger.refunds[&id].status, RefundStatus::Pending);
        }
    }
}

/// `(created by, decided by, approve?, Ok((status, seller total, buyer total)) | refusal)`.
type RefundDecisionCase = (
    Side,
    Side,
    bool,
    Result<(RefundStatus, &'static str, &'static str), Refusal>,
);

#[test]
fn only_the_payee_decides_a_refund() {
    use RefundStatus::{Approved, Rejected};
    use Side::{Buyer, Seller, Stranger};
    #[rustfmt::skip]
    let cases: &[RefundDecisionCase] = &[
        // created by decided by approve  status     seller    buyer
        (Buyer,  Seller,   true,  Ok((Approved, "50.00",  "950.00"))),
        (Seller, Seller,   true,  Ok((Approved, "50.00",  "950.00"))),
        (Buyer,  Seller,   false, Ok((Rejected, "110.00", "890.00"))),
        (Seller, Seller,   false, Ok((Rejected, "110.00", "890.00"))),
        (Buyer,  Buyer,    true,  Err(Refusal::Forbidden)),
        (Seller, Buyer,    true,  Err(Refusal::Forbidden)),
        (Buyer,  Buyer,    false, Err(Refusal::Forbidden)),
        (Buyer,  Stranger, true,  Err(Refusal::NotFound)),
        (Seller, Stranger, false, Err(Refusal::NotFound)),
    ];
    for (created_by, by, approve_it, expect) in cases {
        check_refund_decision(*created_by, *by, *approve_it, expect.clone());
    }
}

#[test]
fn decided_refunds_stay_decided() {
    #[rustfmt::skip]
    let cases: &[(bool, bool, Side, Refusal)] = &[
        // first approve?  then approve?  by      expected
        (true,  true,  Side::Seller, Refusal::Invalid("refund", "APPROVED")),
        (true,  false, Side::Seller, Refusal::Invalid("refund", "APPROVED")),
        (false, true,  Side::Seller, Refusal::Invalid("refund", "REJECTED")),
        (false, false, Side::Seller, Refusal::Invalid("refund", "REJECTED")),
        (true,  true,  Side::Buyer,  Refusal::Forbidden),
        (false, false, Side::Buyer,  Refusal::Forbidden),
    ];
    for (first, then, by, expect) in cases {
        let mut rs = refund_scene(None);
        let seller = rs.s.seller;
        let id = rs.create_ok(Side::Buyer, Tx::Out, "10.00");
        let decision = |approve_it: bool| {
            if approve_it {
                Command::ApproveRefund { id }
            } else {
                Command::RejectRefund {
                    id,
                    reason: "no".into(),
                }
            }
        };
        rs.s.w.ok(&seller.actor(), decision(*first));
        let actor = rs.org(*by).actor();
        rs.s.w.refused(&actor, decision(*then), expect.clone());
    }
}

#[derive(Debug, Clone, Copy)]
enum PayeeState {
    /// The seller has a pending withdrawal of this much.
    Withdrawing(&'static str),
    /// The seller withdrew this much (completed).
    Withdrew(&'static str),
    Collateral(&'static str),
    Frozen,
}

/// The seller (payee) received 110.00; with `state`, approving a refund of
/// `amount` succeeds or is refused with `expect`, changing nothing.
fn check_payee_funds(state: PayeeState, amount: &str, expect: Result<(), Refusal>) {
    let mut rs = refund_scene(None);
    let seller = rs.s.seller;
    match state {
        PayeeState::Withdrawing(a) | PayeeState::Withdrew(a) => {
            let id = match rs.s.w.ok(
                &seller.actor(),
                Command::SubmitWithdrawal {
                    currency: cur("USD"),
                    amount: usd(a),
                    destination: destination(),
                },
            ) {
                Outcome::Withdrawal(id) => id,
                other => panic!("{other:?}"),
            };
            if matches!(state, PayeeState::Withdrew(_)) {
                let checker = rs.s.w.api_key(&seller);
                rs.s.w
                    .ok(&seller.with_key(checker), Command::ApproveWithdrawal { id });
            }
        }
        PayeeState::Collateral(a) => rs.s.w.set_collateral(&seller, "USD", a),
        PayeeState::Frozen => rs.s.w.freeze(&seller, "USD"),
    }
    let id = rs.create_ok(Side::Buyer, Tx::Out, amount);
    let label = format!("{state:?}, refund {amount}");
    match expect {
        Ok(()) => {
            rs.s.w.ok(&seller.actor(), Command::ApproveRefund { id });
            assert_eq!(
                rs.s.w.ledger.refunds[&id].status,
                RefundStatus::Approved,
                "{label}"
            );
        }
        Err(refusal) => {
            rs.s.w
                .refused(&seller.actor(), Command::ApproveRefund { id }, refusal);
            assert_eq!(
                rs.s.w.ledger.refunds[&id].status,
                RefundStatus::Pending,
                "{label}"
            );
        }
    }
}

#[test]
fn approving_a_refund_needs_the_payees_available_funds() {
    use PayeeState::{Collateral, Frozen, Withdrawing, Withdrew};
    use Refusal::Insufficient;
    #[rustfmt::skip]
    let cases: &[(PayeeState, &str, Result<(), Refusal>)] = &[
        (Withdrawing("50.00"),  "60.00",  Ok(())),
        (Withdrawing("50.01"),  "60.00",  Err(Insufficient)),
        (Withdrew("50.00"),     "60.00",  Ok(())),
        (Withdrew("100.00"),    "10.01",  Err(Insufficient)),
        (Collateral("50.00"),   "60.00",  Ok(())),
        (Collateral("50.01"),   "60.00",  Err(Insufficient)),
        (Collateral("110.00"),  "0.01",   Err(Insufficient)),
        (Frozen,                "10.00",  Err(Refusal::Invalid("balance", "FROZEN"))),
    ];
    for (state, amount, expect) in cases {
        check_payee_funds(*state, amount, expect.clone());
    }
}

// ---------------------------------------------------------------------------
// Money conservation over a long, mixed, multi-currency story.
// ---------------------------------------------------------------------------

#[test]
fn money_is_conserved_across_a_mixed_story() {
    let mut w = World::new();
    let a = w.org("A");
    let b = w.org("B");
    let c = w.org("C");
    let b_checker = w.api_key(&b);
    let a_checker = w.api_key(&a);
    let ab = w.connect(&a, &b); // A sells to B
    let ca = w.connect(&c, &a); // C sells to A
    w.deposit(&b, "USD", "5000.00");
    w.deposit(&b, "JPY", "100000");
    w.deposit(&a, "KWD", "12.345");
    w.deposit(&c, "USD", "0.01");

    let invoice = |w: &mut World, seller: &Org, conn, code: &str, lines| {
        let new = w.new_invoice(conn, code, lines, true);
        w.create_invoice(seller, new)
    };
    let usd1 = invoice(&mut w, &a, ab, "USD", vec![line("x", "3", "333.33", "7.5")]);
    let jpy1 = invoice(&mut w, &a, ab, "JPY", vec![line("y", "1.5", "999", "7.5")]);
    let kwd1 = invoice(&mut w, &c, ca, "KWD", vec![line("z", "2.5", "1.001", "10")]);
    let usd2 = invoice(&mut w, &a, ab, "USD", vec![line("w", "1", "250.00", "0")]);

    w.act_ok(&b, usd1, approve());
    w.act_ok(&b, jpy1, approve_adjusted("1500", "discount"));
    w.act_ok(&a, kwd1, approve());
    w.act_ok(&b, usd2, approve());
    w.ok(&b.actor(), Command::SettleInvoice { id: usd1 });
    w.ok(&b.actor(), Command::SettleInvoice { id: jpy1 });
    w.freeze(&c, "KWD");
    let failed = match w.ok(&a.actor(), Command::SettleInvoice { id: kwd1 }) {
        Outcome::Payment(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(w.payment(failed).status, PaymentStatus::Failed);
    w.unfreeze(&c, "KWD");
    w.ok(&a.actor(), Command::RetryFailedPayments { ids: None });
    assert_eq!(w.payment(failed).status, PaymentStatus::Completed);
    w.act_ok(&a, usd2, request_cancellation());
    w.act_ok(&b, usd2, InvoiceAction::AcceptCancellation);

    // A withdraws some of its USD, B some JPY (one rejected, one cancelled).
    let submit = |w: &mut World, org: &Org, code: &str, amount: &str| match w.ok(
        &org.actor(),
        Command::SubmitWithdrawal {
            currency: cur(code),
            amount: amt(code, amount),
            destination: destination(),
        },
    ) {
        Outcome::Withdrawal(id) => id,
        other => panic!("{other:?}"),
    };
    let wa = submit(&mut w, &a, "USD", "500.00");
    w.ok(
        &a.with_key(a_checker),
        Command::ApproveWithdrawal { id: wa },
    );
    let wb1 = submit(&mut w, &b, "JPY", "1000");
    w.ok(
        &b.with_key(b_checker),
        Command::RejectWithdrawal {
            id: wb1,
            reason: "no".into(),
        },
    );
    let wb2 = submit(&mut w, &b, "JPY", "2000");
    w.ok(&b.actor(), Command::CancelWithdrawal { id: wb2 });
    let wb3 = submit(&mut w, &b, "JPY", "98500");
    w.ok(
        &b.with_key(b_checker),
        Command::ApproveWithdrawal { id: wb3 },
    );

    // Refunds on the USD settlement: one approved, one rejected.
    let usd_payment = w.invoice(usd1).payment_id.unwrap();
    let out_tx = w.payment(usd_payment).payer_transaction_id.unwrap();
    let refund = |w: &mut World, org: &Org, amount: &str| match w.ok(
        &org.actor(),
        Command::CreateRefund {
            transaction_id: out_tx,
            amount: amount.into(),
            reason: "r".into(),
        },
    ) {
        Outcome::Refund(id) => id,
        other => panic!("{other:?}"),
    };
    let r1 = refund(&mut w, &b, "100.00");
    w.ok(&a.actor(), Command::ApproveRefund { id: r1 });
    let r2 = refund(&mut w, &b, "50.00");
    w.ok(
        &a.actor(),
        Command::RejectRefund {
            id: r2,
            reason: "no".into(),
        },
    );

    // Hand-computed end state.
    // USD: B paid 1074.99 (999.99 + 75.00 tax), got 100.00 back; A got 1074.99,
    // refunded 100.00, withdrew 500.00.
    let expect = [
        (&a, "USD", "474.99"),
        (&b, "USD", "4025.01"),
        (&c, "USD", "0.01"),
        (&a, "JPY", "1500"),
        (&b, "JPY", "0"),
        (&a, "KWD", "9.592"),
        (&c, "KWD", "2.753"),
    ];
    for (org, code, total) in expect {
        let got = w.balance(org, code).map(|b| fmt(b.total, code));
        assert_eq!(got.as_deref(), Some(total), "{code} of {:?}", org.id);
    }
    assert_eq!(w.booked_deposits(cur("USD")), usd("5000.01"));
    assert_eq!(w.booked_withdrawals(cur("USD")), usd("500.00"));
    assert_eq!(w.booked_withdrawals(cur("JPY")), amt("JPY", "98500"));
    w.assert_conserved();
    // And, by our own sums: 474.99 + 4025.01 + 0.01 = 5000.01 − 500.00.
    assert_eq!(fmt(w.balance(&b, "USD").unwrap().reserved, "USD"), "0.00");
}

#[test]
fn conservation_check_can_fail() {
    // The checker itself must catch a ledger whose balances drift from the
    // booked deposits: tamper with a copy and expect the assertion to fire.
    let mut s = Scene::new("10.00");
    let buyer = s.buyer;
    let balance_id = s.w.balance(&buyer, "USD").unwrap().id;
    s.w.ledger.balances.get_mut(&balance_id).unwrap().total = usd("10.01");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.w.assert_conserved()));
    assert!(caught.is_err(), "a drifted balance went unnoticed");
}
