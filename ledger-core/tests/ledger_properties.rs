//! Property test of the whole write path: random command sequences across
//! 3–5 organizations and three currencies (USD, JPY, KWD), run through the real
//! `Engine` on a `SledLog` in a temporary directory.
//!
//! Nothing here trusts the ledger's own bookkeeping (`Ledger::supply`,
//! `Balance::check_invariants`, `InvoiceStatus::can_become`). The test keeps
//! its own model, folded from the log event by event, and checks:
//! - every balance: total, reserved, collateral ≥ 0, reserved = Σ holds,
//!   available = total − reserved − collateral ≥ 0 (after every event);
//! - per currency: Σ totals = deposits − completed withdrawals, where both
//!   sides of the right-hand side come from the commands the test issued;
//! - every invoice event moves the invoice along an edge of the overview's
//!   state diagram, from a state and by a party the API contract allows;
//! - holds match the state machines (an approved invoice holds exactly its
//!   approved amount at the buyer, a pending withdrawal its amount, nothing
//!   else is held), payments and refunds stay consistent with invoices;
//! - each command's result (success, or which error) is what an independent
//!   reading of the API contract predicts, and a refused command writes nothing;
//! - replaying the log from 0 (`engine::rebuild`) gives the writer's live state,
//!   and the model agrees with it; a restart gives the same state again;
//! - the global sequence is dense from 1, every stream's versions are dense,
//!   `read_stream` agrees with `read_all`, and the hash chain verifies.

use ledger_core::domain::command::{
    InvoiceAction, InvoicePatch, LineItemInput, LineItemPatch, NewInvoice,
};
use ledger_core::domain::{Command, DomainError, Ledger, Outcome};
use ledger_core::engine::{
    self, Engine, EngineConfig, EngineError, EngineHandle, Reply, Submission,
};
use ledger_core::events::{
    Actor, Destination, Event, Hold, LineItem, Party, Permission, RecordedEvent, StreamId,
};
use ledger_core::ids::*;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{verify_link, EventLog, GENESIS_HASH};
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::{ManualClock, Timestamp};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

// ===========================================================================
// The independent model
// ===========================================================================

/// Invoice states, named as in the overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum St {
    Draft,
    Submitted,
    InfoRequested,
    Approved,
    ApprovedAdj,
    Disputed,
    CancelReq,
    Cancelled,
    Settled,
    Archived,
}

impl St {
    fn name(self) -> &'static str {
        match self {
            St::Draft => "DRAFT",
            St::Submitted => "SUBMITTED",
            St::InfoRequested => "INFO_REQUESTED",
            St::Approved => "APPROVED",
            St::ApprovedAdj => "APPROVED_WITH_ADJUSTMENT",
            St::Disputed => "DISPUTED",
            St::CancelReq => "CANCELLATION_REQUESTED",
            St::Cancelled => "CANCELLED",
            St::Settled => "SETTLED",
            St::Archived => "ARCHIVED",
        }
    }

    fn approved(self) -> bool {
        matches!(self, St::Approved | St::ApprovedAdj)
    }

    /// A reservation is held for the invoice in exactly these states.
    fn holds_funds(self) -> bool {
        matches!(self, St::Approved | St::ApprovedAdj | St::CancelReq)
    }
}

/// The edges of the overview's state diagram, plus the two returns the API
/// contract spells out: reject-cancellation goes back to "the approved state
/// it came from" (so also APPROVED_WITH_ADJUSTMENT), and restore returns an
/// archived invoice "to the state it came from".
fn diagram_edge(from: St, to: St) -> bool {
    use St::*;
    matches!(
        (from, to),
        (Draft, Submitted)
            | (Draft, Cancelled)
            | (Submitted, Approved)
            | (Submitted, ApprovedAdj)
            | (Submitted, Disputed)
            | (Submitted, Cancelled)
            | (Submitted, InfoRequested)
            | (InfoRequested, Submitted)
            | (Disputed, Submitted)
            | (Disputed, Cancelled)
            | (Approved, Settled)
            | (ApprovedAdj, Settled)
            | (Approved, CancelReq)
            | (ApprovedAdj, CancelReq)
            | (CancelReq, Cancelled)
            | (CancelReq, Approved)
            // API.md additions
            | (CancelReq, ApprovedAdj)
            | (Settled, Archived)
            | (Cancelled, Archived)
            | (Archived, Settled)
            | (Archived, Cancelled)
    )
}

#[derive(Debug, Clone)]
struct MLine {
    id: LineItemId,
    amount: Decimal,
    tax: Decimal,
}

#[derive(Debug, Clone)]
struct MInv {
    seller: OrganizationId,
    buyer: OrganizationId,
    currency: Currency,
    status: St,
    visible: bool,
    lines: Vec<MLine>,
    approved: Option<Decimal>,
    requester: Option<Party>,
    return_to: Option<St>,
    archived_from: Option<St>,
    due: chrono::NaiveDate,
    due_notified: bool,
    payment: Option<PaymentId>,
}

impl MInv {
    fn total(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount + l.tax).sum()
    }

    fn party(&self, org: Option<OrganizationId>) -> Option<Party> {
        let org = org?;
        if org == self.seller {
            Some(Party::Seller)
        } else if org == self.buyer {
            Some(Party::Buyer)
        } else {
            None
        }
    }

    /// What the organization may see: the seller always, the buyer once submitted.
    fn visible_party(&self, org: OrganizationId) -> Option<Party> {
        match self.party(Some(org)) {
            Some(Party::Buyer) if !self.visible => None,
            p => p,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CStatus {
    Pending,
    Active,
    Rejected,
}

#[derive(Debug, Clone)]
struct MConn {
    seller: OrganizationId,
    buyer: OrganizationId,
    requested_by: OrganizationId,
    status: CStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PStatus {
    Pending,
    Completed,
    Failed,
}

#[derive(Debug, Clone)]
struct MPay {
    invoice: InvoiceId,
    payer: OrganizationId,
    payee: OrganizationId,
    currency: Currency,
    amount: Decimal,
    status: PStatus,
    attempts: u32,
    payer_tx: Option<TransactionId>,
    payee_tx: Option<TransactionId>,
}

#[derive(Debug, Clone)]
struct MBal {
    org: OrganizationId,
    currency: Currency,
    total: Decimal,
    reserved: Decimal,
    collateral: Decimal,
    frozen: bool,
    holds: BTreeMap<Hold, Decimal>,
}

impl MBal {
    fn available(&self) -> Decimal {
        self.total - self.reserved - self.collateral
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WStatus {
    Pending,
    Completed,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone)]
struct MWd {
    org: OrganizationId,
    balance: BalanceId,
    currency: Currency,
    amount: Decimal,
    status: WStatus,
    submitted_by: ApiKeyId,
    transaction: Option<TransactionId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone)]
struct MRefund {
    payment: PaymentId,
    payee: OrganizationId,
    payer: OrganizationId,
    currency: Currency,
    amount: Decimal,
    status: RStatus,
}

/// The test's own ledger, folded from the log. Vectors keep creation order so
/// generated indices pick entities deterministically.
#[derive(Debug, Clone, Default)]
struct Model {
    last_seq: u64,
    versions: HashMap<StreamId, u64>,
    orgs: Vec<OrganizationId>,
    keys: HashMap<ApiKeyId, OrganizationId>,
    connections: HashMap<ConnectionId, MConn>,
    connection_order: Vec<ConnectionId>,
    invoices: HashMap<InvoiceId, MInv>,
    invoice_order: Vec<InvoiceId>,
    payments: HashMap<PaymentId, MPay>,
    payment_order: Vec<PaymentId>,
    balances: HashMap<BalanceId, MBal>,
    balance_index: HashMap<(OrganizationId, Currency), BalanceId>,
    withdrawals: HashMap<WithdrawalId, MWd>,
    withdrawal_order: Vec<WithdrawalId>,
    refunds: HashMap<RefundId, MRefund>,
    refund_order: Vec<RefundId>,
    settlement_tx: HashMap<TransactionId, PaymentId>,
    /// Per currency, from the log: deposited, withdrawn, in transit.
    deposited: HashMap<Currency, Decimal>,
    withdrawn: HashMap<Currency, Decimal>,
    in_transit: HashMap<Currency, Decimal>,
}

fn dec(a: Amount) -> Decimal {
    a.as_decimal()
}

fn round_to(currency: Currency, d: Decimal) -> Decimal {
    d.round_dp_with_strategy(
        currency.minor_units(),
        RoundingStrategy::MidpointAwayFromZero,
    )
}

/// The API contract's line arithmetic, recomputed independently.
fn check_line(currency: Currency, item: &LineItem) -> Result<MLine, String> {
    let amount = round_to(currency, item.quantity.as_decimal() * dec(item.unit_price));
    let tax = round_to(
        currency,
        amount * item.tax_rate.as_decimal() / Decimal::ONE_HUNDRED,
    );
    if dec(item.amount) != amount || dec(item.tax_amount) != tax {
        return Err(format!(
            "line {}: {} × {} at {}% should be {amount} + {tax}, event says {} + {}",
            item.id, item.quantity, item.unit_price, item.tax_rate, item.amount, item.tax_amount
        ));
    }
    Ok(MLine {
        id: item.id,
        amount,
        tax,
    })
}

fn check_balance(id: BalanceId, b: &MBal) -> Result<(), String> {
    let zero = Decimal::ZERO;
    if b.total < zero || b.reserved < zero || b.collateral < zero {
        return Err(format!("balance {id} went negative: {b:?}"));
    }
    let held: Decimal = b.holds.values().copied().sum();
    if held != b.reserved {
        return Err(format!(
            "balance {id}: reserved {} ≠ Σ holds {held}",
            b.reserved
        ));
    }
    if b.holds.values().any(|h| *h <= zero) {
        return Err(format!(
            "balance {id}: a hold of zero or less: {:?}",
            b.holds
        ));
    }
    if b.available() < zero {
        return Err(format!(
            "balance {id}: available {} < 0 ({b:?})",
            b.available()
        ));
    }
    Ok(())
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

impl Model {
    fn balance_mut(&mut self, id: BalanceId) -> Result<&mut MBal, String> {
        self.balances
            .get_mut(&id)
            .ok_or_else(|| format!("event on unknown balance {id}"))
    }

    fn balance_of(&self, org: OrganizationId, currency: Currency) -> Option<&MBal> {
        self.balance_index
            .get(&(org, currency))
            .and_then(|id| self.balances.get(id))
    }

    fn frozen(&self, org: OrganizationId, currency: Currency) -> bool {
        self.balance_of(org, currency).is_some_and(|b| b.frozen)
    }

    fn refunded(&self, payment: PaymentId) -> Decimal {
        self.refunds
            .values()
            .filter(|r| r.payment == payment && r.status != RStatus::Rejected)
            .map(|r| r.amount)
            .sum()
    }

    /// Applies one event, checking everything that can be checked locally.
    fn apply(&mut self, rec: &RecordedEvent) -> Result<(), String> {
        ensure!(
            rec.seq == self.last_seq + 1,
            "global sequence not dense: expected {}, got {}",
            self.last_seq + 1,
            rec.seq
        );
        let stream = rec.stream();
        let version = self.versions.get(&stream).copied().unwrap_or(0);
        ensure!(
            rec.version == version + 1,
            "stream {stream:?} not dense at seq {}: expected version {}, got {}",
            rec.seq,
            version + 1,
            rec.version
        );
        self.apply_event(rec)
            .map_err(|e| format!("seq {} {}: {e}", rec.seq, rec.event.type_name()))?;
        self.versions.insert(stream, rec.version);
        self.last_seq = rec.seq;
        Ok(())
    }

    fn apply_event(&mut self, rec: &RecordedEvent) -> Result<(), String> {
        use Event::*;
        let actor_org = rec.actor.organization();
        match &rec.event {
            OrganizationCreated { id, .. } => {
                ensure!(
                    rec.actor == Actor::Admin,
                    "organization created by {:?}",
                    rec.actor
                );
                self.orgs.push(*id);
            }
            ApiKeyCreated {
                id,
                organization_id,
                ..
            } => {
                ensure!(
                    rec.actor == Actor::Admin || actor_org == Some(*organization_id),
                    "API key created for another organization"
                );
                self.keys.insert(*id, *organization_id);
            }
            ApiKeyRevoked { .. } => {}
            ConnectionRequested {
                id,
                seller_organization_id: seller,
                buyer_organization_id: buyer,
                requested_by,
            } => {
                ensure!(seller != buyer, "connection to itself");
                ensure!(
                    actor_org == Some(*requested_by),
                    "requested by someone else"
                );
                ensure!(
                    requested_by == seller || requested_by == buyer,
                    "requester is not a party"
                );
                let duplicate = self.connections.values().any(|c| {
                    c.seller == *seller && c.buyer == *buyer && c.status != CStatus::Rejected
                });
                ensure!(
                    !duplicate,
                    "a second live connection for the same pair and roles"
                );
                self.connections.insert(
                    *id,
                    MConn {
                        seller: *seller,
                        buyer: *buyer,
                        requested_by: *requested_by,
                        status: CStatus::Pending,
                    },
                );
                self.connection_order.push(*id);
            }
            ConnectionAccepted { id }
            | ConnectionRejected { id }
            | ConnectionRejectedBecause { id, .. } => {
                let c = self.connections.get_mut(id).ok_or("unknown connection")?;
                ensure!(
                    c.status == CStatus::Pending,
                    "answered a {:?} connection",
                    c.status
                );
                let org = actor_org.ok_or("connection answered by a non-organization")?;
                ensure!(
                    (org == c.seller || org == c.buyer) && org != c.requested_by,
                    "connection answered by {org}, not the counterparty"
                );
                c.status = if matches!(rec.event, ConnectionAccepted { .. }) {
                    CStatus::Active
                } else {
                    CStatus::Rejected
                };
            }
            InvoiceCreated {
                id,
                connection_id,
                seller_organization_id,
                buyer_organization_id,
                currency,
                issue_date,
                due_date,
                line_items,
                ..
            } => {
                let c = self
                    .connections
                    .get(connection_id)
                    .ok_or("unknown connection")?;
                ensure!(
                    c.status == CStatus::Active,
                    "invoice over a {:?} connection",
                    c.status
                );
                ensure!(
                    c.seller == *seller_organization_id && c.buyer == *buyer_organization_id,
                    "invoice parties differ from the connection's"
                );
                ensure!(
                    actor_org == Some(c.seller),
                    "invoice created by a non-seller"
                );
                ensure!(due_date >= issue_date, "due before issue");
                let lines = line_items
                    .iter()
                    .map(|l| check_line(*currency, l))
                    .collect::<Result<Vec<_>, _>>()?;
                ensure!(!self.invoices.contains_key(id), "invoice id reused");
                self.invoices.insert(
                    *id,
                    MInv {
                        seller: c.seller,
                        buyer: c.buyer,
                        currency: *currency,
                        status: St::Draft,
                        visible: false,
                        lines,
                        approved: None,
                        requester: None,
                        return_to: None,
                        archived_from: None,
                        due: *due_date,
                        due_notified: false,
                        payment: None,
                    },
                );
                self.invoice_order.push(*id);
            }
            InvoiceUpdated { .. }
            | LineItemAdded { .. }
            | LineItemUpdated { .. }
            | LineItemRemoved { .. } => self.apply_invoice_edit(rec)?,
            InvoiceSubmitted { .. }
            | InvoiceInfoRequested { .. }
            | InvoiceInfoProvided { .. }
            | InvoiceApproved { .. }
            | InvoiceDisputed { .. }
            | InvoiceCancelled { .. }
            | InvoiceCancellationRequested { .. }
            | InvoiceCancellationRejected { .. }
            | InvoiceSettled { .. }
            | InvoiceArchived { .. }
            | InvoiceRestored { .. } => self.apply_invoice_transition(rec)?,
            InvoicePaymentDue { id, due_date } => {
                let inv = self.invoices.get_mut(id).ok_or("unknown invoice")?;
                ensure!(rec.actor == Actor::System, "payment.due by {:?}", rec.actor);
                ensure!(
                    inv.status.approved(),
                    "payment due in {}",
                    inv.status.name()
                );
                ensure!(!inv.due_notified, "payment due notified twice");
                ensure!(*due_date == inv.due, "payment due for another date");
                inv.due_notified = true;
            }
            PaymentInitiated {
                id,
                invoice_id,
                payer_organization_id,
                payee_organization_id,
                currency,
                amount,
            } => {
                let inv = self
                    .invoices
                    .get(invoice_id)
                    .ok_or("payment for unknown invoice")?;
                ensure!(
                    inv.status.approved(),
                    "payment for a {} invoice",
                    inv.status.name()
                );
                ensure!(
                    actor_org == Some(inv.buyer),
                    "payment initiated by a non-buyer"
                );
                ensure!(
                    *payer_organization_id == inv.buyer && *payee_organization_id == inv.seller,
                    "payment parties differ from the invoice's"
                );
                ensure!(*currency == inv.currency, "payment in another currency");
                ensure!(
                    Some(dec(*amount)) == inv.approved,
                    "payment amount ≠ approved amount"
                );
                let existing = self.payments.values().any(|p| p.invoice == *invoice_id);
                ensure!(!existing, "a second payment for invoice {invoice_id}");
                self.payments.insert(
                    *id,
                    MPay {
                        invoice: *invoice_id,
                        payer: inv.buyer,
                        payee: inv.seller,
                        currency: *currency,
                        amount: dec(*amount),
                        status: PStatus::Pending,
                        attempts: 0,
                        payer_tx: None,
                        payee_tx: None,
                    },
                );
                self.payment_order.push(*id);
            }
            PaymentCompleted {
                id,
                payer_transaction_id,
                payee_transaction_id,
            } => {
                let p = self.payments.get(id).ok_or("unknown payment")?.clone();
                ensure!(p.status != PStatus::Completed, "payment completed twice");
                ensure!(
                    actor_org == Some(p.payer),
                    "payment completed by a non-payer"
                );
                ensure!(
                    !self.frozen(p.payer, p.currency) && !self.frozen(p.payee, p.currency),
                    "payment completed with a frozen balance"
                );
                let p = self.payments.get_mut(id).ok_or("unknown payment")?;
                p.status = PStatus::Completed;
                p.attempts += 1;
                p.payer_tx = Some(*payer_transaction_id);
                p.payee_tx = Some(*payee_transaction_id);
                self.settlement_tx.insert(*payer_transaction_id, *id);
                self.settlement_tx.insert(*payee_transaction_id, *id);
            }
            PaymentFailed { id, .. } => {
                let p = self.payments.get(id).ok_or("unknown payment")?.clone();
                ensure!(p.status != PStatus::Completed, "a completed payment failed");
                ensure!(
                    self.frozen(p.payer, p.currency) || self.frozen(p.payee, p.currency),
                    "payment failed although neither balance is frozen"
                );
                let p = self.payments.get_mut(id).ok_or("unknown payment")?;
                p.status = PStatus::Failed;
                p.attempts += 1;
            }
            BalanceOpened {
                id,
                organization_id,
                currency,
            } => {
                ensure!(
                    self.balance_index
                        .insert((*organization_id, *currency), *id)
                        .is_none(),
                    "a second balance for one organization and currency"
                );
                self.balances.insert(
                    *id,
                    MBal {
                        org: *organization_id,
                        currency: *currency,
                        total: Decimal::ZERO,
                        reserved: Decimal::ZERO,
                        collateral: Decimal::ZERO,
                        frozen: false,
                        holds: BTreeMap::new(),
                    },
                );
            }
            FundsDeposited { .. }
            | FundsReserved { .. }
            | ReservationReleased { .. }
            | SettlementDebited { .. }
            | SettlementCredited { .. }
            | WithdrawalDebited { .. }
            | RefundDebited { .. }
            | RefundCredited { .. }
            | CollateralSet { .. }
            | BalanceFrozen { .. }
            | BalanceUnfrozen { .. } => {
                self.apply_balance(rec)?;
                let id = BalanceId::from_uuid(rec.stream().id);
                check_balance(id, &self.balances[&id])?;
            }
            WithdrawalSubmitted {
                id,
                organization_id,
                balance_id,
                currency,
                amount,
                submitted_by,
                ..
            } => {
                let b = self
                    .balances
                    .get(balance_id)
                    .ok_or("withdrawal from unknown balance")?;
                ensure!(
                    b.org == *organization_id && b.currency == *currency,
                    "withdrawal from another organization's balance"
                );
                ensure!(!b.frozen, "withdrawal submitted from a frozen balance");
                ensure!(
                    rec.actor
                        == Actor::ApiKey {
                            organization_id: *organization_id,
                            api_key_id: *submitted_by
                        },
                    "submitted_by is not the actor"
                );
                self.withdrawals.insert(
                    *id,
                    MWd {
                        org: *organization_id,
                        balance: *balance_id,
                        currency: *currency,
                        amount: dec(*amount),
                        status: WStatus::Pending,
                        submitted_by: *submitted_by,
                        transaction: None,
                    },
                );
                self.withdrawal_order.push(*id);
            }
            WithdrawalApproved {
                id,
                approved_by,
                transaction_id,
            } => {
                let w = self
                    .withdrawals
                    .get(id)
                    .ok_or("unknown withdrawal")?
                    .clone();
                ensure!(
                    w.status == WStatus::Pending,
                    "decided a {:?} withdrawal",
                    w.status
                );
                ensure!(
                    *approved_by != w.submitted_by,
                    "withdrawal approved by its submitter"
                );
                ensure!(
                    rec.actor.api_key() == Some(*approved_by),
                    "approved_by is not the actor"
                );
                ensure!(actor_org == Some(w.org), "approved by another organization");
                ensure!(
                    !self.balances[&w.balance].frozen,
                    "approved on a frozen balance"
                );
                let w = self.withdrawals.get_mut(id).ok_or("unknown withdrawal")?;
                w.status = WStatus::Completed;
                w.transaction = Some(*transaction_id);
            }
            WithdrawalRejected {
                id, rejected_by, ..
            } => {
                let w = self.withdrawals.get_mut(id).ok_or("unknown withdrawal")?;
                ensure!(
                    w.status == WStatus::Pending,
                    "decided a {:?} withdrawal",
                    w.status
                );
                ensure!(
                    *rejected_by != w.submitted_by,
                    "withdrawal rejected by its submitter"
                );
                ensure!(
                    rec.actor.api_key() == Some(*rejected_by),
                    "rejected_by is not the actor"
                );
                ensure!(actor_org == Some(w.org), "rejected by another organization");
                w.status = WStatus::Rejected;
            }
            WithdrawalCancelled { id } => {
                let w = self.withdrawals.get_mut(id).ok_or("unknown withdrawal")?;
                ensure!(
                    w.status == WStatus::Pending,
                    "cancelled a {:?} withdrawal",
                    w.status
                );
                ensure!(
                    rec.actor.api_key() == Some(w.submitted_by),
                    "withdrawal cancelled by a key other than its submitter"
                );
                w.status = WStatus::Cancelled;
            }
            RefundCreated {
                id,
                transaction_id,
                payment_id,
                invoice_id,
                payee_organization_id,
                payer_organization_id,
                requested_by,
                currency,
                amount,
                ..
            } => {
                let p = self
                    .payments
                    .get(payment_id)
                    .ok_or("refund of unknown payment")?;
                ensure!(
                    p.status == PStatus::Completed,
                    "refund of a {:?} payment",
                    p.status
                );
                ensure!(
                    Some(*transaction_id) == p.payer_tx || Some(*transaction_id) == p.payee_tx,
                    "refund against a transaction that is not the payment's"
                );
                ensure!(
                    *payee_organization_id == p.payee
                        && *payer_organization_id == p.payer
                        && *invoice_id == p.invoice
                        && *currency == p.currency,
                    "refund facts differ from the payment's"
                );
                ensure!(
                    actor_org == Some(*requested_by)
                        && (*requested_by == p.payer || *requested_by == p.payee),
                    "refund requested by a non-party"
                );
                let amount = dec(*amount);
                ensure!(amount > Decimal::ZERO, "refund of zero");
                ensure!(
                    self.refunded(*payment_id) + amount <= p.amount,
                    "refunds exceed the settled amount"
                );
                self.refunds.insert(
                    *id,
                    MRefund {
                        payment: *payment_id,
                        payee: p.payee,
                        payer: p.payer,
                        currency: p.currency,
                        amount,
                        status: RStatus::Pending,
                    },
                );
                self.refund_order.push(*id);
            }
            RefundApproved { id, .. } | RefundRejected { id, .. } => {
                let r = self.refunds.get_mut(id).ok_or("unknown refund")?;
                ensure!(
                    r.status == RStatus::Pending,
                    "decided a {:?} refund",
                    r.status
                );
                ensure!(actor_org == Some(r.payee), "refund decided by a non-payee");
                r.status = if matches!(rec.event, RefundApproved { .. }) {
                    RStatus::Approved
                } else {
                    RStatus::Rejected
                };
            }
            WebhookEndpointCreated { .. }
            | WebhookEndpointUpdated { .. }
            | WebhookEndpointDeleted { .. }
            | WebhookSecretRotated { .. }
            | FileStored { .. }
            | FileDeleted { .. } => return Err("an event this test never asks for".into()),
        }
        Ok(())
    }

    fn apply_invoice_edit(&mut self, rec: &RecordedEvent) -> Result<(), String> {
        use Event::*;
        let id = InvoiceId::from_uuid(rec.stream().id);
        let inv = self.invoices.get_mut(&id).ok_or("unknown invoice")?;
        ensure!(
            inv.party(rec.actor.organization()) == Some(Party::Seller),
            "invoice edited by a non-seller"
        );
        let currency = inv.currency;
        match &rec.event {
            InvoiceUpdated { line_items, .. } => {
                ensure!(
                    matches!(inv.status, St::Draft | St::Disputed | St::InfoRequested),
                    "invoice updated in {}",
                    inv.status.name()
                );
                if let Some(items) = line_items {
                    inv.lines = items
                        .iter()
                        .map(|l| check_line(currency, l))
                        .collect::<Result<_, _>>()?;
                }
            }
            LineItemAdded { item, .. } | LineItemUpdated { item, .. } => {
                ensure!(
                    inv.status == St::Draft,
                    "line edited in {}",
                    inv.status.name()
                );
                let line = check_line(currency, item)?;
                match inv.lines.iter_mut().find(|l| l.id == line.id) {
                    Some(slot) if matches!(rec.event, LineItemUpdated { .. }) => *slot = line,
                    None if matches!(rec.event, LineItemAdded { .. }) => inv.lines.push(line),
                    _ => return Err("line added twice or updated while absent".into()),
                }
            }
            LineItemRemoved { line_item_id, .. } => {
                ensure!(
                    inv.status == St::Draft,
                    "line removed in {}",
                    inv.status.name()
                );
                let before = inv.lines.len();
                inv.lines.retain(|l| l.id != *line_item_id);
                ensure!(inv.lines.len() + 1 == before, "removed an absent line");
            }
            _ => unreachable!(),
        }
        Ok(())
    }

    /// The invoice state machine: for each event, the states it may start
    /// from, who may cause it, and where it leads; then the edge check.
    fn apply_invoice_transition(&mut self, rec: &RecordedEvent) -> Result<(), String> {
        use Event::*;
        use St::*;
        let id = InvoiceId::from_uuid(rec.stream().id);
        let payments = &self.payments;
        let inv = self.invoices.get_mut(&id).ok_or("unknown invoice")?;
        let party = inv.party(rec.actor.organization());
        let before = inv.status;
        let from = |allowed: &[St]| -> Result<(), String> {
            if allowed.contains(&before) {
                Ok(())
            } else {
                Err(format!("not allowed from {}", before.name()))
            }
        };
        let by = |allowed: &[Party]| -> Result<(), String> {
            match party {
                Some(p) if allowed.contains(&p) => Ok(()),
                _ => Err(format!("not allowed for {:?} ({party:?})", rec.actor)),
            }
        };
        let after = match &rec.event {
            InvoiceSubmitted { .. } => {
                from(&[Draft, Disputed])?;
                by(&[Party::Seller])?;
                ensure!(
                    !inv.lines.is_empty() && inv.total() > Decimal::ZERO,
                    "submitted with total {}",
                    inv.total()
                );
                inv.visible = true;
                Submitted
            }
            InvoiceInfoRequested { .. } => {
                from(&[Submitted])?;
                by(&[Party::Buyer])?;
                InfoRequested
            }
            InvoiceInfoProvided { .. } => {
                from(&[InfoRequested])?;
                by(&[Party::Seller])?;
                // Back in SUBMITTED, the invoice must again be approvable.
                ensure!(
                    !inv.lines.is_empty() && inv.total() > Decimal::ZERO,
                    "back to SUBMITTED with {} lines and total {}",
                    inv.lines.len(),
                    inv.total()
                );
                Submitted
            }
            InvoiceApproved {
                approved_amount,
                adjustment_reason,
                ..
            } => {
                from(&[Submitted])?;
                by(&[Party::Buyer])?;
                let amount = dec(*approved_amount);
                let total = inv.total();
                ensure!(amount > Decimal::ZERO, "approved an amount of {amount}");
                match adjustment_reason {
                    None => ensure!(amount == total, "approved {amount} of {total}"),
                    Some(_) => ensure!(
                        amount > Decimal::ZERO && amount < total,
                        "adjusted to {amount} of {total}"
                    ),
                }
                inv.approved = Some(amount);
                if adjustment_reason.is_some() {
                    ApprovedAdj
                } else {
                    Approved
                }
            }
            InvoiceDisputed { .. } => {
                from(&[Submitted])?;
                by(&[Party::Buyer])?;
                Disputed
            }
            InvoiceCancelled { by: claimed, .. } => {
                ensure!(
                    Some(*claimed) == party,
                    "cancelled `by` {claimed:?} but actor is {party:?}"
                );
                match before {
                    Draft | Submitted => by(&[Party::Seller])?,
                    Disputed => by(&[Party::Seller, Party::Buyer])?,
                    CancelReq => {
                        let requester = inv.requester.ok_or("no requester")?;
                        by(&[requester.other()])?
                    }
                    _ => from(&[])?,
                }
                inv.requester = None;
                Cancelled
            }
            InvoiceCancellationRequested { by: claimed, .. } => {
                from(&[Approved, ApprovedAdj])?;
                by(&[Party::Seller, Party::Buyer])?;
                ensure!(
                    Some(*claimed) == party,
                    "requested `by` {claimed:?} but actor is {party:?}"
                );
                inv.requester = Some(*claimed);
                inv.return_to = Some(before);
                CancelReq
            }
            InvoiceCancellationRejected { .. } => {
                from(&[CancelReq])?;
                let requester = inv.requester.take().ok_or("no requester")?;
                by(&[requester.other()])?;
                inv.return_to.take().ok_or("nowhere to return to")?
            }
            InvoiceSettled { payment_id, .. } => {
                from(&[Approved, ApprovedAdj])?;
                by(&[Party::Buyer])?;
                let p = payments
                    .get(payment_id)
                    .ok_or("settled by an unknown payment")?;
                ensure!(p.invoice == id, "settled by another invoice's payment");
                ensure!(
                    p.status == PStatus::Completed,
                    "settled by a {:?} payment",
                    p.status
                );
                inv.payment = Some(*payment_id);
                Settled
            }
            InvoiceArchived { .. } => {
                from(&[Settled, Cancelled])?;
                if rec.actor != Actor::System {
                    by(&[Party::Seller, Party::Buyer])?;
                }
                inv.archived_from = Some(before);
                Archived
            }
            InvoiceRestored { .. } => {
                from(&[Archived])?;
                by(&[Party::Seller, Party::Buyer])?;
                inv.archived_from
                    .take()
                    .ok_or("restored without an origin")?
            }
            _ => unreachable!(),
        };
        ensure!(
            before != after && diagram_edge(before, after),
            "invoice {id} moved {} -> {}: not an edge of the state diagram",
            before.name(),
            after.name()
        );
        inv.status = after;
        Ok(())
    }

    fn apply_balance(&mut self, rec: &RecordedEvent) -> Result<(), String> {
        use Event::*;
        let id = BalanceId::from_uuid(rec.stream().id);
        let (org, currency) = {
            let b = self.balance_mut(id)?;
            (b.org, b.currency)
        };
        match &rec.event {
            FundsDeposited { amount, .. } => {
                ensure!(rec.actor == Actor::Admin, "deposit by {:?}", rec.actor);
                let amount = dec(*amount);
                ensure!(amount > Decimal::ZERO, "deposit of zero");
                self.balance_mut(id)?.total += amount;
                *self.deposited.entry(currency).or_default() += amount;
            }
            FundsReserved { hold, amount, .. } => {
                let amount = dec(*amount);
                match hold {
                    Hold::Invoice(inv_id) => {
                        let inv = self
                            .invoices
                            .get(inv_id)
                            .ok_or("hold for unknown invoice")?;
                        ensure!(
                            inv.status.approved(),
                            "hold for a {} invoice",
                            inv.status.name()
                        );
                        ensure!(
                            inv.buyer == org && inv.currency == currency,
                            "invoice hold on a balance not the buyer's"
                        );
                        ensure!(Some(amount) == inv.approved, "hold ≠ approved amount");
                    }
                    Hold::Withdrawal(w_id) => {
                        let w = self
                            .withdrawals
                            .get(w_id)
                            .ok_or("hold for unknown withdrawal")?;
                        ensure!(
                            w.status == WStatus::Pending,
                            "hold for a decided withdrawal"
                        );
                        ensure!(
                            w.balance == id && w.amount == amount,
                            "withdrawal hold mismatch"
                        );
                    }
                }
                let b = self.balance_mut(id)?;
                ensure!(
                    b.holds.insert(*hold, amount).is_none(),
                    "second hold for {hold:?}"
                );
                b.reserved += amount;
            }
            ReservationReleased { hold, amount, .. } => {
                match hold {
                    Hold::Invoice(inv_id) => {
                        let inv = &self.invoices[inv_id];
                        ensure!(
                            inv.status == St::Cancelled,
                            "invoice hold released in {}",
                            inv.status.name()
                        );
                    }
                    Hold::Withdrawal(w_id) => {
                        let w = &self.withdrawals[w_id];
                        ensure!(
                            matches!(w.status, WStatus::Rejected | WStatus::Cancelled),
                            "withdrawal hold released while {:?}",
                            w.status
                        );
                    }
                }
                let b = self.balance_mut(id)?;
                let held = b.holds.remove(hold);
                ensure!(
                    held == Some(dec(*amount)),
                    "released {amount} but held {held:?}"
                );
                b.reserved -= dec(*amount);
            }
            SettlementDebited {
                transaction_id,
                payment_id,
                invoice_id,
                counterparty_organization_id,
                amount,
                ..
            } => {
                let p = self.payments.get(payment_id).ok_or("unknown payment")?;
                let amount = dec(*amount);
                ensure!(
                    p.status == PStatus::Completed
                        && p.payer == org
                        && p.invoice == *invoice_id
                        && p.payee == *counterparty_organization_id
                        && p.payer_tx == Some(*transaction_id)
                        && p.amount == amount
                        && p.currency == currency,
                    "settlement debit does not match payment {p:?}"
                );
                let b = self.balance_mut(id)?;
                let held = b.holds.remove(&Hold::Invoice(*invoice_id));
                ensure!(
                    held == Some(amount),
                    "debited {amount} but the hold was {held:?}"
                );
                b.reserved -= amount;
                b.total -= amount;
                *self.in_transit.entry(currency).or_default() += amount;
            }
            SettlementCredited {
                transaction_id,
                payment_id,
                invoice_id,
                counterparty_organization_id,
                amount,
                ..
            } => {
                let p = self.payments.get(payment_id).ok_or("unknown payment")?;
                let amount = dec(*amount);
                ensure!(
                    p.status == PStatus::Completed
                        && p.payee == org
                        && p.invoice == *invoice_id
                        && p.payer == *counterparty_organization_id
                        && p.payee_tx == Some(*transaction_id)
                        && p.amount == amount
                        && p.currency == currency,
                    "settlement credit does not match payment {p:?}"
                );
                self.balance_mut(id)?.total += amount;
                *self.in_transit.entry(currency).or_default() -= amount;
            }
            WithdrawalDebited {
                transaction_id,
                withdrawal_id,
                amount,
                ..
            } => {
                let w = self
                    .withdrawals
                    .get(withdrawal_id)
                    .ok_or("unknown withdrawal")?;
                let amount = dec(*amount);
                ensure!(
                    w.status == WStatus::Completed
                        && w.balance == id
                        && w.amount == amount
                        && w.transaction == Some(*transaction_id),
                    "withdrawal debit does not match {w:?}"
                );
                let b = self.balance_mut(id)?;
                let held = b.holds.remove(&Hold::Withdrawal(*withdrawal_id));
                ensure!(
                    held == Some(amount),
                    "debited {amount} but the hold was {held:?}"
                );
                b.reserved -= amount;
                b.total -= amount;
                *self.withdrawn.entry(currency).or_default() += amount;
            }
            RefundDebited {
                refund_id,
                counterparty_organization_id,
                amount,
                ..
            } => {
                let r = self.refunds.get(refund_id).ok_or("unknown refund")?;
                let amount = dec(*amount);
                ensure!(
                    r.status == RStatus::Approved
                        && r.payee == org
                        && r.payer == *counterparty_organization_id
                        && r.amount == amount
                        && r.currency == currency,
                    "refund debit does not match {r:?}"
                );
                let b = self.balance_mut(id)?;
                ensure!(!b.frozen, "refund debited from a frozen balance");
                b.total -= amount;
                *self.in_transit.entry(currency).or_default() += amount;
            }
            RefundCredited {
                refund_id,
                counterparty_organization_id,
                amount,
                ..
            } => {
                let r = self.refunds.get(refund_id).ok_or("unknown refund")?;
                let amount = dec(*amount);
                ensure!(
                    r.status == RStatus::Approved
                        && r.payer == org
                        && r.payee == *counterparty_organization_id
                        && r.amount == amount
                        && r.currency == currency,
                    "refund credit does not match {r:?}"
                );
                self.balance_mut(id)?.total += amount;
                *self.in_transit.entry(currency).or_default() -= amount;
            }
            CollateralSet { amount, .. } => {
                ensure!(
                    rec.actor == Actor::Admin,
                    "collateral set by {:?}",
                    rec.actor
                );
                self.balance_mut(id)?.collateral = dec(*amount);
            }
            BalanceFrozen { .. } | BalanceUnfrozen { .. } => {
                ensure!(rec.actor == Actor::Admin, "freeze by {:?}", rec.actor);
                let freeze = matches!(rec.event, BalanceFrozen { .. });
                let b = self.balance_mut(id)?;
                ensure!(b.frozen != freeze, "frozen state did not change");
                b.frozen = freeze;
            }
            _ => unreachable!(),
        }
        Ok(())
    }

    /// Checks that hold only between commands (a transfer's two halves are in).
    fn check_between_commands(
        &self,
        deposits: &HashMap<Currency, Decimal>,
        withdrawn: &HashMap<Currency, Decimal>,
    ) -> Result<(), String> {
        let mut totals: HashMap<Currency, Decimal> = HashMap::new();
        for (id, b) in &self.balances {
            check_balance(*id, b)?;
            *totals.entry(b.currency).or_default() += b.total;
        }
        for c in currencies() {
            let get = |m: &HashMap<Currency, Decimal>| m.get(&c).copied().unwrap_or_default();
            let total = get(&totals);
            ensure!(
                total == get(deposits) - get(withdrawn),
                "{c}: Σ totals {total} ≠ deposits {} − completed withdrawals {} (issued commands)",
                get(deposits),
                get(withdrawn)
            );
            ensure!(
                get(&self.deposited) == get(deposits) && get(&self.withdrawn) == get(withdrawn),
                "{c}: the log's deposits/withdrawals differ from the commands that succeeded"
            );
            ensure!(
                get(&self.in_transit).is_zero(),
                "{c}: money left in transit"
            );
        }
        // Holds are exactly what the state machines say is held.
        let mut expected: BTreeMap<Hold, (BalanceId, Decimal)> = BTreeMap::new();
        for (id, inv) in &self.invoices {
            if inv.status.holds_funds() {
                let bal = self.balance_index[&(inv.buyer, inv.currency)];
                expected.insert(
                    Hold::Invoice(*id),
                    (bal, inv.approved.ok_or("no approved amount")?),
                );
            }
        }
        for (id, w) in &self.withdrawals {
            if w.status == WStatus::Pending {
                expected.insert(Hold::Withdrawal(*id), (w.balance, w.amount));
            }
        }
        let mut actual = BTreeMap::new();
        for (id, b) in &self.balances {
            for (hold, amount) in &b.holds {
                actual.insert(*hold, (*id, *amount));
            }
        }
        ensure!(
            expected == actual,
            "holds {actual:?} but the state machines say {expected:?}"
        );
        // Payments agree with invoices.
        for (id, p) in &self.payments {
            let inv = &self.invoices[&p.invoice];
            let settled = inv.status == St::Settled
                || (inv.status == St::Archived && inv.archived_from == Some(St::Settled));
            ensure!(
                (p.status == PStatus::Completed) == settled,
                "payment {id} {:?} but invoice {}",
                p.status,
                inv.status.name()
            );
            ensure!(p.status != PStatus::Pending, "payment {id} left pending");
            ensure!(self.refunded(*id) <= p.amount, "payment {id} over-refunded");
        }
        Ok(())
    }
}

// ===========================================================================
// Predicting each command's result from the contract
// ===========================================================================

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Done,
    Validation,
    Transition,
    Insufficient,
    Forbidden,
    NotFound,
    Conflict,
}

fn kind_of(result: &Result<Outcome, DomainError>) -> Kind {
    match result {
        Ok(_) => Kind::Done,
        Err(DomainError::Validation(_)) => Kind::Validation,
        Err(DomainError::InvalidTransition { .. }) => Kind::Transition,
        Err(DomainError::InsufficientBalance { .. }) => Kind::Insufficient,
        Err(DomainError::Forbidden(_)) => Kind::Forbidden,
        Err(DomainError::NotFound(_)) => Kind::NotFound,
        Err(DomainError::VersionConflict { .. }) => Kind::Conflict,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    One(Kind),
    /// A composite command: Ok, with these part results (in any order).
    Parts(Vec<Kind>),
}

type Predicted = Result<(), Kind>;

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn parse_price(currency: Currency, s: &str) -> Option<Decimal> {
    Amount::parse_non_negative(currency, s).ok().map(dec)
}

/// Contract line arithmetic on the inputs; None if an input is invalid.
fn input_total(currency: Currency, items: &[LineItemInput]) -> Option<Decimal> {
    let mut total = Decimal::ZERO;
    for i in items {
        if blank(&i.description) {
            return None;
        }
        let amount = round_to(
            currency,
            i.quantity.as_decimal() * parse_price(currency, &i.unit_price)?,
        );
        let tax = round_to(
            currency,
            amount * i.tax_rate.as_decimal() / Decimal::ONE_HUNDRED,
        );
        total += amount + tax;
    }
    Some(total)
}

fn org_of(actor: &Actor) -> OrganizationId {
    actor.organization().expect("an organization's command")
}

impl Model {
    fn predict(&self, actor: &Actor, command: &Command) -> Expect {
        match command {
            Command::SettleAllDue { as_of } => {
                let org = org_of(actor);
                let n = self
                    .invoices
                    .values()
                    .filter(|i| i.buyer == org && i.status.approved() && i.due <= *as_of)
                    .count();
                Expect::Parts(vec![Kind::Done; n])
            }
            Command::RetryFailedPayments { ids } => {
                let org = org_of(actor);
                let ids: Vec<PaymentId> = match ids {
                    Some(ids) => ids.clone(),
                    // Every failed payment of the caller that can still be settled.
                    None => self
                        .payments
                        .iter()
                        .filter(|(_, p)| {
                            p.payer == org
                                && p.status == PStatus::Failed
                                && self.invoices[&p.invoice].status.approved()
                        })
                        .map(|(id, _)| *id)
                        .collect(),
                };
                // Parts run in order: a retry that completes a payment makes
                // a later retry of the same payment an invalid transition.
                let mut completed = Vec::new();
                let parts = ids
                    .iter()
                    .map(|id| match self.predict_retry(org, *id) {
                        Ok(()) if completed.contains(id) => Kind::Transition,
                        Ok(()) => {
                            let p = &self.payments[id];
                            if !self.frozen(p.payer, p.currency)
                                && !self.frozen(p.payee, p.currency)
                            {
                                completed.push(*id);
                            }
                            Kind::Done
                        }
                        Err(kind) => kind,
                    })
                    .collect();
                Expect::Parts(parts)
            }
            other => Expect::One(self.predict_one(actor, other).err().unwrap_or(Kind::Done)),
        }
    }

    fn predict_one(&self, actor: &Actor, command: &Command) -> Predicted {
        use Kind::*;
        let check = |cond: bool, kind: Kind| if cond { Ok(()) } else { Err(kind) };
        match command {
            Command::CreateOrganization { .. } | Command::CreateApiKey { .. } => Ok(()),
            Command::Deposit {
                organization_id,
                amount,
                ..
            } => {
                check(self.orgs.contains(organization_id), NotFound)?;
                check(!amount.is_zero(), Validation)
            }
            Command::SetCollateral {
                organization_id,
                currency,
                amount,
            } => {
                check(self.orgs.contains(organization_id), NotFound)?;
                let room = self
                    .balance_of(*organization_id, *currency)
                    .map(|b| b.total - b.reserved)
                    .unwrap_or_default();
                check(dec(*amount) <= room, Insufficient)
            }
            Command::FreezeBalance {
                organization_id,
                currency,
                ..
            } => check(!self.frozen(*organization_id, *currency), Transition),
            Command::UnfreezeBalance {
                organization_id,
                currency,
                ..
            } => check(self.frozen(*organization_id, *currency), Transition),
            Command::RequestConnection { counterparty, role } => {
                let org = org_of(actor);
                check(self.orgs.contains(counterparty), NotFound)?;
                check(*counterparty != org, Validation)?;
                let (seller, buyer) = match role {
                    Party::Seller => (org, *counterparty),
                    Party::Buyer => (*counterparty, org),
                };
                let live = self.connections.values().any(|c| {
                    c.seller == seller && c.buyer == buyer && c.status != CStatus::Rejected
                });
                check(!live, Validation)
            }
            Command::AcceptConnection { id } | Command::RejectConnection { id, .. } => {
                let org = org_of(actor);
                let c = self
                    .connections
                    .get(id)
                    .filter(|c| c.seller == org || c.buyer == org)
                    .ok_or(NotFound)?;
                check(c.requested_by != org, Forbidden)?;
                check(c.status == CStatus::Pending, Transition)
            }
            Command::CreateInvoice(new) => {
                let org = org_of(actor);
                let c = self
                    .connections
                    .get(&new.connection_id)
                    .filter(|c| c.seller == org || c.buyer == org)
                    .ok_or(NotFound)?;
                check(c.seller == org, Forbidden)?;
                check(c.status == CStatus::Active, Validation)?;
                let total = input_total(new.currency, &new.line_items).ok_or(Validation)?;
                if new.submit {
                    check(
                        !new.line_items.is_empty() && total > Decimal::ZERO,
                        Validation,
                    )?;
                }
                Ok(())
            }
            Command::AddLineItem { id, item } => {
                let (inv, party) = self.visible(actor, *id)?;
                check(party == Party::Seller, Forbidden)?;
                check(inv.status == St::Draft, Transition)?;
                input_total(inv.currency, std::slice::from_ref(item)).ok_or(Validation)?;
                Ok(())
            }
            Command::UpdateLineItem {
                id,
                line_item_id,
                patch,
            } => {
                let (inv, party) = self.visible(actor, *id)?;
                check(party == Party::Seller, Forbidden)?;
                check(inv.status == St::Draft, Transition)?;
                check(inv.lines.iter().any(|l| l.id == *line_item_id), NotFound)?;
                if let Some(p) = &patch.unit_price {
                    parse_price(inv.currency, p).ok_or(Validation)?;
                }
                Ok(())
            }
            Command::RemoveLineItem { id, line_item_id } => {
                let (inv, party) = self.visible(actor, *id)?;
                check(party == Party::Seller, Forbidden)?;
                check(inv.status == St::Draft, Transition)?;
                check(inv.lines.iter().any(|l| l.id == *line_item_id), NotFound)
            }
            Command::UpdateInvoice { id, patch } => {
                let (inv, party) = self.visible(actor, *id)?;
                // Who may edit, and when, before whether the version is current.
                check(party == Party::Seller, Forbidden)?;
                check(
                    matches!(inv.status, St::Draft | St::Disputed | St::InfoRequested),
                    Transition,
                )?;
                if let Some(expected) = patch.expected_version {
                    let current = self.versions[&invoice_stream(*id)];
                    check(expected == current, Conflict)?;
                }
                if let Some(items) = &patch.line_items {
                    input_total(inv.currency, items).ok_or(Validation)?;
                }
                Ok(())
            }
            Command::Invoice { id, action } => self.predict_action(actor, *id, action),
            Command::SettleInvoice { id } => {
                let (inv, party) = self.visible(actor, *id)?;
                check(party == Party::Buyer, Forbidden)?;
                check(inv.status.approved(), Transition)
            }
            Command::RetryPayment { id } => self.predict_retry(org_of(actor), *id),
            Command::SubmitWithdrawal {
                currency, amount, ..
            } => {
                let org = org_of(actor);
                check(!amount.is_zero(), Validation)?;
                let b = self.balance_of(org, *currency).ok_or(Insufficient)?;
                check(!b.frozen, Transition)?;
                check(dec(*amount) <= b.available(), Insufficient)
            }
            Command::ApproveWithdrawal { id }
            | Command::RejectWithdrawal { id, .. }
            | Command::CancelWithdrawal { id } => {
                let org = org_of(actor);
                let key = actor.api_key();
                let w = self
                    .withdrawals
                    .get(id)
                    .filter(|w| w.org == org)
                    .ok_or(NotFound)?;
                match command {
                    Command::CancelWithdrawal { .. } => {
                        check(key == Some(w.submitted_by), Forbidden)?;
                        check(w.status == WStatus::Pending, Transition)
                    }
                    Command::RejectWithdrawal { reason, .. } => {
                        check(key != Some(w.submitted_by), Forbidden)?;
                        check(w.status == WStatus::Pending, Transition)?;
                        check(!blank(reason), Validation)
                    }
                    _ => {
                        check(key != Some(w.submitted_by), Forbidden)?;
                        check(w.status == WStatus::Pending, Transition)?;
                        check(!self.balances[&w.balance].frozen, Transition)
                    }
                }
            }
            Command::CreateRefund {
                transaction_id,
                amount,
                reason,
            } => {
                let org = org_of(actor);
                let p = self
                    .settlement_tx
                    .get(transaction_id)
                    .and_then(|p| self.payments.get(p).map(|x| (*p, x)))
                    .filter(|(_, p)| p.payer == org || p.payee == org);
                let (pid, p) = p.ok_or(NotFound)?;
                let amount = Amount::parse(p.currency, amount).map_err(|_| Validation)?;
                check(dec(amount) <= p.amount - self.refunded(pid), Validation)?;
                check(!blank(reason), Validation)
            }
            Command::ApproveRefund { id } | Command::RejectRefund { id, .. } => {
                let org = org_of(actor);
                let r = self
                    .refunds
                    .get(id)
                    .filter(|r| r.payer == org || r.payee == org)
                    .ok_or(NotFound)?;
                check(r.payee == org, Forbidden)?;
                check(r.status == RStatus::Pending, Transition)?;
                match command {
                    Command::RejectRefund { reason, .. } => check(!blank(reason), Validation),
                    _ => {
                        let b = self.balance_of(r.payee, r.currency).ok_or(NotFound)?;
                        check(!b.frozen, Transition)?;
                        check(r.amount <= b.available(), Insufficient)
                    }
                }
            }
            Command::MarkPaymentDue { id, .. } | Command::AutoArchive { id } => {
                check(self.invoices.contains_key(id), NotFound)
            }
            other => panic!("the test does not issue {other:?}"),
        }
    }

    fn visible(&self, actor: &Actor, id: InvoiceId) -> Result<(&MInv, Party), Kind> {
        let inv = self.invoices.get(&id).ok_or(Kind::NotFound)?;
        let party = inv.visible_party(org_of(actor)).ok_or(Kind::NotFound)?;
        Ok((inv, party))
    }

    fn predict_retry(&self, org: OrganizationId, id: PaymentId) -> Predicted {
        use Kind::*;
        let p = self
            .payments
            .get(&id)
            .filter(|p| p.payer == org || p.payee == org)
            .ok_or(NotFound)?;
        if p.payer != org {
            return Err(Forbidden);
        }
        if p.status != PStatus::Failed || !self.invoices[&p.invoice].status.approved() {
            return Err(Transition);
        }
        Ok(())
    }

    fn predict_action(&self, actor: &Actor, id: InvoiceId, action: &InvoiceAction) -> Predicted {
        use Kind::*;
        use St::*;
        let (inv, party) = self.visible(actor, id)?;
        let who = |parties: &[Party]| {
            if parties.contains(&party) {
                Ok(())
            } else {
                Err(Forbidden)
            }
        };
        let from = |states: &[St]| {
            if states.contains(&inv.status) {
                Ok(())
            } else {
                Err(Transition)
            }
        };
        let text = |s: &str| if blank(s) { Err(Validation) } else { Ok(()) };
        match action {
            InvoiceAction::Submit => {
                who(&[Party::Seller])?;
                from(&[Draft, Disputed])?;
                if inv.lines.is_empty() || inv.total().is_zero() {
                    return Err(Validation);
                }
                Ok(())
            }
            InvoiceAction::RespondInfo { message } => {
                who(&[Party::Seller])?;
                from(&[InfoRequested])?;
                // It returns to SUBMITTED, so the submit rule applies again.
                if inv.lines.is_empty() || inv.total().is_zero() {
                    return Err(Validation);
                }
                text(message)
            }
            InvoiceAction::Approve {
                adjusted_amount,
                reason,
            } => {
                who(&[Party::Buyer])?;
                from(&[Submitted])?;
                let total = inv.total();
                let amount = match adjusted_amount {
                    None => total,
                    Some(raw) => {
                        let a = dec(Amount::parse(inv.currency, raw).map_err(|_| Validation)?);
                        if a >= total {
                            return Err(Validation);
                        }
                        text(reason.as_deref().unwrap_or(""))?;
                        a
                    }
                };
                let b = self
                    .balance_of(inv.buyer, inv.currency)
                    .ok_or(Insufficient)?;
                if amount > b.available() {
                    return Err(Insufficient);
                }
                Ok(())
            }
            InvoiceAction::Dispute { reason } => {
                who(&[Party::Buyer])?;
                from(&[Submitted])?;
                text(reason)
            }
            InvoiceAction::RequestInfo { question } => {
                who(&[Party::Buyer])?;
                from(&[Submitted])?;
                text(question)
            }
            InvoiceAction::Cancel { .. } => match party {
                Party::Seller => from(&[Draft, Submitted, Disputed]),
                Party::Buyer => from(&[Disputed]),
            },
            InvoiceAction::RequestCancellation { reason } => {
                from(&[Approved, ApprovedAdj])?;
                text(reason)
            }
            InvoiceAction::AcceptCancellation | InvoiceAction::RejectCancellation => {
                from(&[CancelReq])?;
                let requester = inv
                    .requester
                    .expect("a requester while CANCELLATION_REQUESTED");
                who(&[requester.other()])
            }
            InvoiceAction::Archive => from(&[Settled, Cancelled]),
            InvoiceAction::Restore => from(&[Archived]),
        }
    }
}

fn invoice_stream(id: InvoiceId) -> StreamId {
    Event::InvoiceArchived { id }.stream()
}

// ===========================================================================
// Generated operations
// ===========================================================================

const QUANTITIES: [&str; 5] = ["1", "2", "3", "0.5", "1.25"];
const TAX_RATES: [&str; 4] = ["0", "7.5", "10", "8.25"];

fn currencies() -> [Currency; 3] {
    ["USD", "JPY", "KWD"].map(|c| Currency::parse(c).unwrap())
}

/// The right party for an action, a wrong one, or an organization outside the invoice.
#[derive(Debug, Clone, Copy)]
enum Who {
    Right,
    Seller,
    Buyer,
    Stranger,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Submit,
    RespondInfo,
    Approve,
    /// Approve a percentage of the total (100 % or more is invalid).
    ApproveAdjusted(u8),
    Dispute,
    RequestInfo,
    Cancel,
    RequestCancellation,
    AcceptCancellation,
    RejectCancellation,
    Archive,
    Restore,
}

impl Act {
    /// The states the action starts from, per the contract.
    fn starts_from(self, s: St) -> bool {
        use St::*;
        match self {
            Act::Submit => matches!(s, Draft | Disputed),
            Act::RespondInfo => s == InfoRequested,
            Act::Approve | Act::ApproveAdjusted(_) | Act::Dispute | Act::RequestInfo => {
                s == Submitted
            }
            Act::Cancel => matches!(s, Draft | Submitted | Disputed),
            Act::RequestCancellation => s.approved(),
            Act::AcceptCancellation | Act::RejectCancellation => s == CancelReq,
            Act::Archive => matches!(s, Settled | Cancelled),
            Act::Restore => s == Archived,
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    qty: u8,
    price_minor: u32,
    tax: u8,
    bad: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        org: u8,
        cur: u8,
        minor: u32,
    },
    RequestConnection {
        a: u8,
        b: u8,
        a_sells: bool,
    },
    AnswerConnection {
        conn: u8,
        by_requester: bool,
        accept: bool,
    },
    CreateInvoice {
        conn: u8,
        as_buyer: bool,
        cur: u8,
        lines: Vec<Line>,
        submit: bool,
        due_days: u8,
    },
    AddLine {
        inv: u8,
        line: Line,
    },
    EditLine {
        inv: u8,
        line: u8,
        price_minor: u32,
        remove: bool,
    },
    ReplaceLines {
        inv: u8,
        lines: Vec<Line>,
        stale: bool,
    },
    /// `targeted`: pick among invoices in a state the action starts from.
    Act {
        inv: u8,
        targeted: bool,
        who: Who,
        act: Act,
        blank: bool,
    },
    Settle {
        inv: u8,
        targeted: bool,
        who: Who,
    },
    SettleAllDue {
        org: u8,
        days_ahead: u8,
    },
    RetryFailed {
        org: u8,
        explicit: Option<Vec<u8>>,
    },
    Freeze {
        org: u8,
        cur: u8,
        unfreeze: bool,
    },
    Collateral {
        org: u8,
        cur: u8,
        minor: u32,
    },
    Withdraw {
        org: u8,
        cur: u8,
        minor: u32,
        second_key: bool,
    },
    DecideWithdrawal {
        w: u8,
        decision: u8,
        second_key: bool,
        blank: bool,
    },
    CreateRefund {
        pay: u8,
        payer_tx: bool,
        who: Who,
        pct: u8,
        blank: bool,
    },
    DecideRefund {
        refund: u8,
        approve: bool,
        who: Who,
    },
    System {
        inv: u8,
        archive: bool,
        days_ahead: u8,
    },
    AdvanceDays(u8),
    Concurrent(Vec<Op>),
}

fn recent_index() -> impl Strategy<Value = u8> {
    prop_oneof![3 => 0..3u8, 1 => any::<u8>()]
}

fn line() -> impl Strategy<Value = Line> {
    (
        0..QUANTITIES.len() as u8,
        0..60_000u32,
        0..TAX_RATES.len() as u8,
        prop::bool::weighted(0.04),
    )
        .prop_map(|(qty, price_minor, tax, bad)| Line {
            qty,
            price_minor,
            tax,
            bad,
        })
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        12 => Just(Who::Right),
        1 => Just(Who::Seller),
        1 => Just(Who::Buyer),
        1 => Just(Who::Stranger),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => Just(Act::Submit),
        2 => Just(Act::RespondInfo),
        8 => Just(Act::Approve),
        3 => (1..=110u8).prop_map(Act::ApproveAdjusted),
        2 => Just(Act::Dispute),
        2 => Just(Act::RequestInfo),
        2 => Just(Act::Cancel),
        3 => Just(Act::RequestCancellation),
        2 => Just(Act::AcceptCancellation),
        2 => Just(Act::RejectCancellation),
        2 => Just(Act::Archive),
        2 => Just(Act::Restore),
    ]
}

fn simple_op() -> impl Strategy<Value = Op> {
    let small = any::<u8>();
    prop_oneof![
        6 => (small, small, 0..2_000_000u32).prop_map(|(org, cur, minor)| Op::Deposit { org, cur, minor }),
        2 => (small, small, any::<bool>()).prop_map(|(a, b, a_sells)| Op::RequestConnection { a, b, a_sells }),
        3 => (recent_index(), prop::bool::weighted(0.1), prop::bool::weighted(0.8))
            .prop_map(|(conn, by_requester, accept)| Op::AnswerConnection { conn, by_requester, accept }),
        9 => (small, prop::bool::weighted(0.05), small, prop::collection::vec(line(), 0..4), prop::bool::weighted(0.7), 0..20u8)
            .prop_map(|(conn, as_buyer, cur, lines, submit, due_days)| Op::CreateInvoice { conn, as_buyer, cur, lines, submit, due_days }),
        1 => (recent_index(), line()).prop_map(|(inv, line)| Op::AddLine { inv, line }),
        1 => (recent_index(), small, 0..150_000u32, any::<bool>())
            .prop_map(|(inv, line, price_minor, remove)| Op::EditLine { inv, line, price_minor, remove }),
        1 => (recent_index(), prop::collection::vec(line(), 0..3), prop::bool::weighted(0.2))
            .prop_map(|(inv, lines, stale)| Op::ReplaceLines { inv, lines, stale }),
        24 => (recent_index(), prop::bool::weighted(0.85), who(), act(), prop::bool::weighted(0.05))
            .prop_map(|(inv, targeted, who, act, blank)| Op::Act { inv, targeted, who, act, blank }),
        7 => (recent_index(), prop::bool::weighted(0.85), who())
            .prop_map(|(inv, targeted, who)| Op::Settle { inv, targeted, who }),
        1 => (small, 0..30u8).prop_map(|(org, days_ahead)| Op::SettleAllDue { org, days_ahead }),
        2 => (small, prop::option::weighted(0.3, prop::collection::vec(small, 0..3)))
            .prop_map(|(org, explicit)| Op::RetryFailed { org, explicit }),
        3 => (small, small, prop::bool::weighted(0.5)).prop_map(|(org, cur, unfreeze)| Op::Freeze { org, cur, unfreeze }),
        2 => (small, small, 0..1_000_000u32).prop_map(|(org, cur, minor)| Op::Collateral { org, cur, minor }),
        4 => (small, small, 0..1_000_000u32, prop::bool::weighted(0.2))
            .prop_map(|(org, cur, minor, second_key)| Op::Withdraw { org, cur, minor, second_key }),
        4 => (recent_index(), 0..3u8, prop::bool::weighted(0.8), prop::bool::weighted(0.05))
            .prop_map(|(w, decision, second_key, blank)| Op::DecideWithdrawal { w, decision, second_key, blank }),
        5 => (recent_index(), any::<bool>(), who(), 1..=120u8, prop::bool::weighted(0.05))
            .prop_map(|(pay, payer_tx, who, pct, blank)| Op::CreateRefund { pay, payer_tx, who, pct, blank }),
        4 => (recent_index(), prop::bool::weighted(0.7), who())
            .prop_map(|(refund, approve, who)| Op::DecideRefund { refund, approve, who }),
        1 => (recent_index(), any::<bool>(), 0..30u8).prop_map(|(inv, archive, days_ahead)| Op::System { inv, archive, days_ahead }),
        1 => (1..10u8).prop_map(Op::AdvanceDays),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => simple_op(),
        1 => prop::collection::vec(simple_op(), 2..7).prop_map(Op::Concurrent),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    orgs: usize,
    /// Opening deposits per (org, currency), in minor units (0 = none).
    opening: Vec<u32>,
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        3..=5usize,
        prop::collection::vec(prop_oneof![1 => Just(0u32), 3 => 1..3_000_000u32], 15),
        prop::collection::vec(op(), 1..100),
    )
        .prop_map(|(orgs, opening, ops)| Scenario { orgs, opening, ops })
}

// ===========================================================================
// Running a scenario through the real engine
// ===========================================================================

#[derive(Debug, Clone, Copy)]
struct Org {
    id: OrganizationId,
    key: ApiKeyId,
    second: ApiKeyId,
}

impl Org {
    fn actor(&self) -> Actor {
        Actor::ApiKey {
            organization_id: self.id,
            api_key_id: self.key,
        }
    }
    fn second_actor(&self) -> Actor {
        Actor::ApiKey {
            organization_id: self.id,
            api_key_id: self.second,
        }
    }
}

type BoxedReply = Pin<Box<dyn Future<Output = Result<Reply, EngineError>> + Send>>;

/// Polls every submission in order (so they queue in this order and are
/// decided in this order), then waits for all replies.
async fn join_in_order(mut futures: Vec<BoxedReply>) -> Vec<Result<Reply, EngineError>> {
    let mut results: Vec<Option<Result<Reply, EngineError>>> =
        futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

fn amount_of(currency: Currency, minor: u32) -> Amount {
    Amount::from_decimal(
        currency,
        Decimal::new(i64::from(minor), currency.minor_units()),
    )
    .unwrap()
}

fn price_string(currency: Currency, l: &Line) -> String {
    if l.bad {
        // More decimals than any of the three currencies allows.
        "1.2345".into()
    } else {
        Decimal::new(i64::from(l.price_minor), currency.minor_units()).to_string()
    }
}

fn line_input(currency: Currency, l: &Line) -> LineItemInput {
    LineItemInput {
        description: "work".into(),
        quantity: Quantity::parse(QUANTITIES[l.qty as usize % QUANTITIES.len()]).unwrap(),
        unit_price: price_string(currency, l),
        tax_rate: TaxRate::parse(TAX_RATES[l.tax as usize % TAX_RATES.len()]).unwrap(),
    }
}

fn destination() -> Destination {
    Destination {
        fields: vec![("iban".into(), "DE89370400440532013000".into())],
    }
}

fn text(blank: bool, s: &str) -> String {
    if blank {
        "   ".into()
    } else {
        s.into()
    }
}

/// Picks `idx` counting back from the most recent.
fn recent<T: Copy>(items: &[T], idx: u8) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[items.len() - 1 - idx as usize % items.len()])
    }
}

struct Run {
    log: Option<Arc<SledLog>>,
    handle: Option<EngineHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    clock: ManualClock,
    model: Model,
    orgs: Vec<Org>,
    /// Bookkeeping from the issued commands alone.
    deposits: HashMap<Currency, Decimal>,
    withdrawn: HashMap<Currency, Decimal>,
    submitted_withdrawals: HashMap<WithdrawalId, (Currency, Decimal)>,
    /// Recent commands, for failure messages.
    trace: VecDeque<String>,
    commands: usize,
}

impl Run {
    fn log(&self) -> &Arc<SledLog> {
        self.log.as_ref().expect("log open")
    }

    fn handle(&self) -> &EngineHandle {
        self.handle.as_ref().expect("engine running")
    }

    fn today(&self) -> chrono::NaiveDate {
        use ledger_core::time::Clock;
        self.clock.now().date()
    }

    fn org(&self, idx: u8) -> Org {
        self.orgs[idx as usize % self.orgs.len()]
    }

    fn cur(idx: u8) -> Currency {
        currencies()[idx as usize % 3]
    }

    fn fail(&self, msg: String) -> ! {
        let trace: Vec<&String> = self.trace.iter().collect();
        panic!("{msg}\nrecent commands (oldest first):\n{trace:#?}");
    }

    /// Submits commands concurrently (one queue, in order) and checks each
    /// reply in order against the model.
    async fn run(&mut self, commands: Vec<(Actor, Command)>) -> Vec<Result<Outcome, DomainError>> {
        if commands.is_empty() {
            return Vec::new();
        }
        let futures: Vec<BoxedReply> = commands
            .iter()
            .map(|(actor, command)| {
                let handle = self.handle().clone();
                let s = Submission {
                    actor: *actor,
                    idempotency: None,
                    command: command.clone(),
                    render: None,
                };
                Box::pin(async move { handle.submit(s).await }) as BoxedReply
            })
            .collect();
        let replies = join_in_order(futures).await;
        let mut events: VecDeque<RecordedEvent> = self
            .log()
            .read_all(self.model.last_seq + 1)
            .map(|e| e.expect("log reads"))
            .collect();
        let mut results = Vec::new();
        for ((actor, command), reply) in commands.into_iter().zip(replies) {
            results.push(self.check_reply(actor, command, reply, &mut events));
        }
        if let Some(e) = events.front() {
            self.fail(format!("events beyond the last reply: {e:?}"));
        }
        results
    }

    fn check_reply(
        &mut self,
        actor: Actor,
        command: Command,
        reply: Result<Reply, EngineError>,
        events: &mut VecDeque<RecordedEvent>,
    ) -> Result<Outcome, DomainError> {
        self.commands += 1;
        let expect = self.model.predict(&actor, &command);
        let (result, last_seq) = match reply {
            Ok(Reply::Executed {
                result, last_seq, ..
            }) => (result, last_seq),
            other => self.fail(format!("{command:?}: unexpected engine reply {other:?}")),
        };
        self.trace
            .push_back(format!("{actor:?} {command:?} -> {result:?}"));
        if self.trace.len() > 25 {
            self.trace.pop_front();
        }
        let got = match (&expect, &result) {
            (Expect::Parts(_), Ok(Outcome::Bulk(parts))) => {
                let mut kinds: Vec<Kind> = parts.iter().map(|(_, r)| kind_of(r)).collect();
                kinds.sort();
                Expect::Parts(kinds)
            }
            _ => Expect::One(kind_of(&result)),
        };
        let expect = match expect {
            Expect::Parts(mut kinds) => {
                kinds.sort();
                Expect::Parts(kinds)
            }
            one => one,
        };
        if got != expect {
            self.fail(format!(
                "{command:?} by {actor:?}: the contract predicts {expect:?}, the ledger answered {result:?}"
            ));
        }
        let before = self.model.clone();
        if result.is_err() && last_seq != before.last_seq {
            self.fail(format!("refused {command:?} moved the log to {last_seq}"));
        }
        if last_seq < before.last_seq {
            self.fail(format!("last_seq went back to {last_seq}"));
        }
        while events.front().is_some_and(|e| e.seq <= last_seq) {
            let e = events.pop_front().unwrap();
            if let Err(msg) = self.model.apply(&e) {
                self.fail(format!("after {command:?}: {msg}"));
            }
        }
        if self.model.last_seq != last_seq {
            self.fail(format!(
                "reply says seq {last_seq}, the log holds up to {}",
                self.model.last_seq
            ));
        }
        if let Ok(outcome) = &result {
            self.book(&command, outcome, &before);
            if let Err(msg) = self.postcondition(&actor, &command, outcome, &before) {
                self.fail(format!("{command:?}: {msg}"));
            }
        }
        if let Err(msg) = self
            .model
            .check_between_commands(&self.deposits, &self.withdrawn)
        {
            self.fail(format!("after {command:?}: {msg}"));
        }
        result
    }

    /// The test's own record of money in and out, from commands and outcomes.
    fn book(&mut self, command: &Command, outcome: &Outcome, _before: &Model) {
        match (command, outcome) {
            (
                Command::Deposit {
                    currency, amount, ..
                },
                Outcome::Transaction { .. },
            ) => {
                *self.deposits.entry(*currency).or_default() += dec(*amount);
            }
            (
                Command::SubmitWithdrawal {
                    currency, amount, ..
                },
                Outcome::Withdrawal(id),
            ) => {
                self.submitted_withdrawals
                    .insert(*id, (*currency, dec(*amount)));
            }
            (Command::ApproveWithdrawal { .. }, Outcome::Withdrawal(id)) => {
                let (currency, amount) = self.submitted_withdrawals[id];
                *self.withdrawn.entry(currency).or_default() += amount;
            }
            _ => {}
        }
    }

    /// What a successful command must have done.
    fn postcondition(
        &self,
        actor: &Actor,
        command: &Command,
        outcome: &Outcome,
        before: &Model,
    ) -> Result<(), String> {
        let after = &self.model;
        let total_of = |m: &Model, org: OrganizationId, c: Currency| {
            m.balance_of(org, c).map(|b| b.total).unwrap_or_default()
        };
        match command {
            Command::Deposit {
                organization_id,
                currency,
                amount,
                ..
            } => {
                let delta = total_of(after, *organization_id, *currency)
                    - total_of(before, *organization_id, *currency);
                ensure!(delta == dec(*amount), "deposit moved the total by {delta}");
            }
            Command::Invoice { id, action } => {
                let (b, a) = (&before.invoices[id], &after.invoices[id]);
                let want = match action {
                    InvoiceAction::Submit | InvoiceAction::RespondInfo { .. } => St::Submitted,
                    InvoiceAction::Approve {
                        adjusted_amount: None,
                        ..
                    } => St::Approved,
                    InvoiceAction::Approve { .. } => St::ApprovedAdj,
                    InvoiceAction::Dispute { .. } => St::Disputed,
                    InvoiceAction::RequestInfo { .. } => St::InfoRequested,
                    InvoiceAction::Cancel { .. } | InvoiceAction::AcceptCancellation => {
                        St::Cancelled
                    }
                    InvoiceAction::RequestCancellation { .. } => St::CancelReq,
                    InvoiceAction::RejectCancellation => b.return_to.ok_or("no return state")?,
                    InvoiceAction::Archive => St::Archived,
                    InvoiceAction::Restore => b.archived_from.ok_or("no origin")?,
                };
                ensure!(
                    a.status == want,
                    "invoice is {} instead of {}",
                    a.status.name(),
                    want.name()
                );
                if let InvoiceAction::Approve {
                    adjusted_amount, ..
                } = action
                {
                    let amount = match adjusted_amount {
                        Some(s) => dec(Amount::parse(a.currency, s).map_err(|e| e.to_string())?),
                        None => b.total(),
                    };
                    let held = after
                        .balance_of(a.buyer, a.currency)
                        .and_then(|bal| bal.holds.get(&Hold::Invoice(*id)).copied());
                    ensure!(held == Some(amount), "approved {amount} but holds {held:?}");
                }
            }
            Command::SettleInvoice { id } => {
                let inv = &before.invoices[id];
                let amount = inv.approved.ok_or("settled without an approved amount")?;
                let frozen = before.frozen(inv.buyer, inv.currency)
                    || before.frozen(inv.seller, inv.currency);
                let payment = match outcome {
                    Outcome::Payment(p) => after.payments.get(p).ok_or("unknown payment")?,
                    other => return Err(format!("outcome {other:?}")),
                };
                let buyer_delta = total_of(before, inv.buyer, inv.currency)
                    - total_of(after, inv.buyer, inv.currency);
                let seller_delta = total_of(after, inv.seller, inv.currency)
                    - total_of(before, inv.seller, inv.currency);
                if frozen {
                    ensure!(
                        payment.status == PStatus::Failed,
                        "payment {:?} despite a frozen balance",
                        payment.status
                    );
                    ensure!(
                        after.invoices[id].status == inv.status,
                        "invoice moved on a failed payment"
                    );
                    ensure!(
                        buyer_delta.is_zero() && seller_delta.is_zero(),
                        "money moved on a failed payment"
                    );
                } else {
                    ensure!(
                        payment.status == PStatus::Completed,
                        "payment {:?}",
                        payment.status
                    );
                    ensure!(
                        after.invoices[id].status == St::Settled,
                        "invoice not settled"
                    );
                    ensure!(
                        buyer_delta == amount && seller_delta == amount,
                        "settled {amount}: buyer −{buyer_delta}, seller +{seller_delta}"
                    );
                }
            }
            Command::ApproveWithdrawal { id } => {
                let w = &before.withdrawals[id];
                let delta =
                    total_of(before, w.org, w.currency) - total_of(after, w.org, w.currency);
                ensure!(
                    delta == w.amount,
                    "withdrawal of {} moved {delta}",
                    w.amount
                );
                ensure!(
                    after.withdrawals[id].status == WStatus::Completed,
                    "not completed"
                );
            }
            Command::SubmitWithdrawal {
                currency, amount, ..
            } => {
                let org = org_of(actor);
                let Outcome::Withdrawal(id) = outcome else {
                    return Err(format!("outcome {outcome:?}"));
                };
                let held = after
                    .balance_of(org, *currency)
                    .and_then(|b| b.holds.get(&Hold::Withdrawal(*id)).copied());
                ensure!(held == Some(dec(*amount)), "withdrawal holds {held:?}");
            }
            Command::ApproveRefund { id } => {
                let r = &before.refunds[id];
                let payee =
                    total_of(before, r.payee, r.currency) - total_of(after, r.payee, r.currency);
                let payer =
                    total_of(after, r.payer, r.currency) - total_of(before, r.payer, r.currency);
                ensure!(
                    payee == r.amount && payer == r.amount,
                    "refund of {} moved {payee}/{payer}",
                    r.amount
                );
            }
            Command::SetCollateral {
                organization_id,
                currency,
                amount,
            } => {
                let c = after
                    .balance_of(*organization_id, *currency)
                    .map(|b| b.collateral);
                ensure!(c == Some(dec(*amount)), "collateral is {c:?}");
            }
            Command::FreezeBalance {
                organization_id,
                currency,
                ..
            } => {
                ensure!(after.frozen(*organization_id, *currency), "not frozen");
            }
            Command::UnfreezeBalance {
                organization_id,
                currency,
                ..
            } => {
                ensure!(!after.frozen(*organization_id, *currency), "still frozen");
            }
            Command::AcceptConnection { id } => {
                ensure!(
                    after.connections[id].status == CStatus::Active,
                    "not active"
                );
            }
            Command::CreateInvoice(new) => {
                let Outcome::Invoice(id) = outcome else {
                    return Err(format!("outcome {outcome:?}"));
                };
                let inv = after.invoices.get(id).ok_or("no invoice")?;
                let want = if new.submit { St::Submitted } else { St::Draft };
                ensure!(inv.status == want, "created as {}", inv.status.name());
                let total =
                    input_total(new.currency, &new.line_items).ok_or("invalid input accepted")?;
                ensure!(
                    inv.total() == total,
                    "total {} ≠ contract arithmetic {total}",
                    inv.total()
                );
            }
            _ => {}
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Turning generated operations into commands
    // -----------------------------------------------------------------------

    fn invoice_actor(&self, inv: InvoiceId, who: Who, right: Option<Party>) -> Actor {
        let m = &self.model.invoices[&inv];
        let by_org = |org: OrganizationId| {
            self.orgs
                .iter()
                .find(|o| o.id == org)
                .expect("known organization")
                .actor()
        };
        match (who, right) {
            (Who::Right, Some(Party::Seller)) | (Who::Seller, _) => by_org(m.seller),
            (Who::Right, Some(Party::Buyer)) | (Who::Buyer, _) => by_org(m.buyer),
            (Who::Right, None) => by_org(if inv.as_uuid().as_bytes()[15] & 1 == 0 {
                m.seller
            } else {
                m.buyer
            }),
            (Who::Stranger, _) => self
                .orgs
                .iter()
                .find(|o| o.id != m.seller && o.id != m.buyer)
                .expect("3+ organizations")
                .actor(),
        }
    }

    /// The `idx`-th most recent invoice, among those in a state `fits` (when
    /// `targeted` and there is one), else among all.
    fn pick_invoice(
        &self,
        idx: u8,
        targeted: bool,
        fits: impl Fn(St) -> bool,
    ) -> Option<InvoiceId> {
        let m = &self.model;
        let fitting: Vec<InvoiceId> = m
            .invoice_order
            .iter()
            .copied()
            .filter(|id| fits(m.invoices[id].status))
            .collect();
        targeted
            .then(|| recent(&fitting, idx))
            .flatten()
            .or_else(|| recent(&m.invoice_order, idx))
    }

    fn plan(&self, op: &Op) -> Vec<(Actor, Command)> {
        let m = &self.model;
        let one = |actor: Actor, command: Command| vec![(actor, command)];
        match op {
            Op::Deposit { org, cur, minor } => one(
                Actor::Admin,
                Command::Deposit {
                    organization_id: self.org(*org).id,
                    currency: Self::cur(*cur),
                    amount: amount_of(Self::cur(*cur), *minor),
                    reference: format!("wire {minor}"),
                },
            ),
            Op::RequestConnection { a, b, a_sells } => one(
                self.org(*a).actor(),
                Command::RequestConnection {
                    counterparty: self.org(*b).id,
                    role: if *a_sells {
                        Party::Seller
                    } else {
                        Party::Buyer
                    },
                },
            ),
            Op::AnswerConnection {
                conn,
                by_requester,
                accept,
            } => {
                let pending: Vec<ConnectionId> = m
                    .connection_order
                    .iter()
                    .copied()
                    .filter(|c| m.connections[c].status == CStatus::Pending)
                    .collect();
                let Some(id) =
                    recent(&pending, *conn).or_else(|| recent(&m.connection_order, *conn))
                else {
                    return vec![];
                };
                let c = &m.connections[&id];
                let org = if *by_requester {
                    c.requested_by
                } else if c.requested_by == c.seller {
                    c.buyer
                } else {
                    c.seller
                };
                let actor = self.orgs.iter().find(|o| o.id == org).unwrap().actor();
                one(
                    actor,
                    if *accept {
                        Command::AcceptConnection { id }
                    } else {
                        Command::RejectConnection {
                            id,
                            // Half give a reason (a short one: the bound on
                            // its length is the black-box tests').
                            reason: (id.as_uuid().as_bytes()[15] % 2 == 0)
                                .then(|| "not a customer of ours".to_string()),
                        }
                    },
                )
            }
            Op::CreateInvoice {
                conn,
                as_buyer,
                cur,
                lines,
                submit,
                due_days,
            } => {
                let active: Vec<ConnectionId> = m
                    .connection_order
                    .iter()
                    .copied()
                    .filter(|c| m.connections[c].status == CStatus::Active)
                    .collect();
                let Some(id) =
                    recent(&active, *conn).or_else(|| recent(&m.connection_order, *conn))
                else {
                    return vec![];
                };
                let c = &m.connections[&id];
                let org = if *as_buyer { c.buyer } else { c.seller };
                let actor = self.orgs.iter().find(|o| o.id == org).unwrap().actor();
                let currency = Self::cur(*cur);
                one(
                    actor,
                    Command::CreateInvoice(NewInvoice {
                        connection_id: id,
                        number: None,
                        currency,
                        issue_date: None,
                        due_date: self.today() + chrono::Days::new(u64::from(*due_days)),
                        memo: None,
                        line_items: lines.iter().map(|l| line_input(currency, l)).collect(),
                        attachments: vec![],
                        submit: *submit,
                    }),
                )
            }
            Op::AddLine { inv, line } => {
                let Some(id) = self.pick_invoice(*inv, true, |s| s == St::Draft) else {
                    return vec![];
                };
                let currency = m.invoices[&id].currency;
                one(
                    self.invoice_actor(id, Who::Seller, None),
                    Command::AddLineItem {
                        id,
                        item: line_input(currency, line),
                    },
                )
            }
            Op::EditLine {
                inv,
                line,
                price_minor,
                remove,
            } => {
                let Some(id) = self.pick_invoice(*inv, true, |s| s == St::Draft) else {
                    return vec![];
                };
                let i = &m.invoices[&id];
                let line_item_id = i
                    .lines
                    .get(*line as usize % i.lines.len().max(1))
                    .map(|l| l.id)
                    .unwrap_or_else(LineItemId::new);
                let actor = self.invoice_actor(id, Who::Seller, None);
                if *remove {
                    one(actor, Command::RemoveLineItem { id, line_item_id })
                } else {
                    let price = Decimal::new(i64::from(*price_minor), i.currency.minor_units());
                    one(
                        actor,
                        Command::UpdateLineItem {
                            id,
                            line_item_id,
                            patch: LineItemPatch {
                                unit_price: Some(price.to_string()),
                                ..LineItemPatch::default()
                            },
                        },
                    )
                }
            }
            Op::ReplaceLines { inv, lines, stale } => {
                let editable = |s| matches!(s, St::Draft | St::Disputed | St::InfoRequested);
                let Some(id) = self.pick_invoice(*inv, true, editable) else {
                    return vec![];
                };
                let currency = m.invoices[&id].currency;
                let version = m.versions[&invoice_stream(id)];
                one(
                    self.invoice_actor(id, Who::Seller, None),
                    Command::UpdateInvoice {
                        id,
                        patch: InvoicePatch {
                            expected_version: Some(if *stale {
                                version.saturating_sub(1)
                            } else {
                                version
                            }),
                            line_items: Some(
                                lines.iter().map(|l| line_input(currency, l)).collect(),
                            ),
                            ..InvoicePatch::default()
                        },
                    },
                )
            }
            Op::Act {
                inv,
                targeted,
                who,
                act,
                blank,
            } => {
                let Some(id) = self.pick_invoice(*inv, *targeted, |s| act.starts_from(s)) else {
                    // No invoice yet: an unknown id is simply not found.
                    return one(
                        self.org(*inv).actor(),
                        Command::Invoice {
                            id: InvoiceId::new(),
                            action: InvoiceAction::Submit,
                        },
                    )
                    .into_iter()
                    .filter(|_| *blank)
                    .collect();
                };
                let i = &m.invoices[&id];
                let reason = |s: &str| text(*blank, s);
                let (action, right) = match act {
                    Act::Submit => (InvoiceAction::Submit, Some(Party::Seller)),
                    Act::RespondInfo => (
                        InvoiceAction::RespondInfo {
                            message: reason("here you go"),
                        },
                        Some(Party::Seller),
                    ),
                    Act::Approve => (
                        InvoiceAction::Approve {
                            adjusted_amount: None,
                            reason: None,
                        },
                        Some(Party::Buyer),
                    ),
                    Act::ApproveAdjusted(pct) => {
                        let adjusted = round_to(
                            i.currency,
                            i.total() * Decimal::from(*pct) / Decimal::ONE_HUNDRED,
                        )
                        .trunc_with_scale(i.currency.minor_units());
                        (
                            InvoiceAction::Approve {
                                adjusted_amount: Some(adjusted.to_string()),
                                reason: Some(reason("partial delivery")),
                            },
                            Some(Party::Buyer),
                        )
                    }
                    Act::Dispute => (
                        InvoiceAction::Dispute {
                            reason: reason("wrong quantity"),
                        },
                        Some(Party::Buyer),
                    ),
                    Act::RequestInfo => (
                        InvoiceAction::RequestInfo {
                            question: reason("which order?"),
                        },
                        Some(Party::Buyer),
                    ),
                    Act::Cancel => (
                        InvoiceAction::Cancel {
                            reason: Some(reason("duplicate")),
                        },
                        if i.status == St::Disputed {
                            None
                        } else {
                            Some(Party::Seller)
                        },
                    ),
                    Act::RequestCancellation => (
                        InvoiceAction::RequestCancellation {
                            reason: reason("not delivered"),
                        },
                        None,
                    ),
                    Act::AcceptCancellation | Act::RejectCancellation => (
                        if matches!(act, Act::AcceptCancellation) {
                            InvoiceAction::AcceptCancellation
                        } else {
                            InvoiceAction::RejectCancellation
                        },
                        i.requester.map(Party::other),
                    ),
                    Act::Archive => (InvoiceAction::Archive, None),
                    Act::Restore => (InvoiceAction::Restore, None),
                };
                one(
                    self.invoice_actor(id, *who, right),
                    Command::Invoice { id, action },
                )
            }
            Op::Settle { inv, targeted, who } => {
                let Some(id) = self.pick_invoice(*inv, *targeted, St::approved) else {
                    return vec![];
                };
                one(
                    self.invoice_actor(id, *who, Some(Party::Buyer)),
                    Command::SettleInvoice { id },
                )
            }
            Op::SettleAllDue { org, days_ahead } => one(
                self.org(*org).actor(),
                Command::SettleAllDue {
                    as_of: self.today() + chrono::Days::new(u64::from(*days_ahead)),
                },
            ),
            Op::RetryFailed { org, explicit } => {
                let ids = explicit.as_ref().map(|picks| {
                    picks
                        .iter()
                        .map(|p| recent(&m.payment_order, *p).unwrap_or_else(PaymentId::new))
                        .collect()
                });
                one(self.org(*org).actor(), Command::RetryFailedPayments { ids })
            }
            Op::Freeze { org, cur, unfreeze } => {
                let mut frozen: Vec<(BalanceId, OrganizationId, Currency)> = m
                    .balances
                    .iter()
                    .filter(|(_, b)| b.frozen)
                    .map(|(id, b)| (*id, b.org, b.currency))
                    .collect();
                frozen.sort();
                // Unfreezing mostly targets a frozen balance.
                let (organization_id, currency) = match recent(&frozen, *org) {
                    Some((_, o, c)) if *unfreeze && *cur % 4 != 0 => (o, c),
                    _ => (self.org(*org).id, Self::cur(*cur)),
                };
                let reason = "compliance review".to_string();
                one(
                    Actor::Admin,
                    if *unfreeze {
                        Command::UnfreezeBalance {
                            organization_id,
                            currency,
                            reason,
                        }
                    } else {
                        Command::FreezeBalance {
                            organization_id,
                            currency,
                            reason,
                        }
                    },
                )
            }
            Op::Collateral { org, cur, minor } => one(
                Actor::Admin,
                Command::SetCollateral {
                    organization_id: self.org(*org).id,
                    currency: Self::cur(*cur),
                    amount: amount_of(Self::cur(*cur), *minor),
                },
            ),
            Op::Withdraw {
                org,
                cur,
                minor,
                second_key,
            } => {
                let o = self.org(*org);
                one(
                    if *second_key {
                        o.second_actor()
                    } else {
                        o.actor()
                    },
                    Command::SubmitWithdrawal {
                        currency: Self::cur(*cur),
                        amount: amount_of(Self::cur(*cur), *minor),
                        destination: destination(),
                    },
                )
            }
            Op::DecideWithdrawal {
                w,
                decision,
                second_key,
                blank,
            } => {
                let pending: Vec<WithdrawalId> = m
                    .withdrawal_order
                    .iter()
                    .copied()
                    .filter(|w| m.withdrawals[w].status == WStatus::Pending)
                    .collect();
                let Some(id) = recent(&pending, *w).or_else(|| recent(&m.withdrawal_order, *w))
                else {
                    return vec![];
                };
                let wd = &m.withdrawals[&id];
                let o = *self.orgs.iter().find(|o| o.id == wd.org).unwrap();
                // `second_key`: the key that did not submit (right for approve
                // and reject, wrong for cancel).
                let other = if wd.submitted_by == o.key {
                    o.second_actor()
                } else {
                    o.actor()
                };
                let same = if wd.submitted_by == o.key {
                    o.actor()
                } else {
                    o.second_actor()
                };
                let (actor, command) = match decision % 3 {
                    0 => (
                        if *second_key { other } else { same },
                        Command::ApproveWithdrawal { id },
                    ),
                    1 => (
                        if *second_key { other } else { same },
                        Command::RejectWithdrawal {
                            id,
                            reason: text(*blank, "wrong account"),
                        },
                    ),
                    _ => (
                        if *second_key { same } else { other },
                        Command::CancelWithdrawal { id },
                    ),
                };
                one(actor, command)
            }
            Op::CreateRefund {
                pay,
                payer_tx,
                who,
                pct,
                blank,
            } => {
                let completed: Vec<PaymentId> = m
                    .payment_order
                    .iter()
                    .copied()
                    .filter(|p| m.payments[p].status == PStatus::Completed)
                    .collect();
                let Some(pid) = recent(&completed, *pay) else {
                    return vec![];
                };
                let p = &m.payments[&pid];
                let tx = if *payer_tx { p.payer_tx } else { p.payee_tx }.unwrap();
                let amount = round_to(
                    p.currency,
                    p.amount * Decimal::from(*pct) / Decimal::ONE_HUNDRED,
                )
                .trunc_with_scale(p.currency.minor_units());
                let actor = self.invoice_actor(p.invoice, *who, None);
                one(
                    actor,
                    Command::CreateRefund {
                        transaction_id: tx,
                        amount: amount.to_string(),
                        reason: text(*blank, "damaged goods"),
                    },
                )
            }
            Op::DecideRefund {
                refund,
                approve,
                who,
            } => {
                let pending: Vec<RefundId> = m
                    .refund_order
                    .iter()
                    .copied()
                    .filter(|r| m.refunds[r].status == RStatus::Pending)
                    .collect();
                let Some(id) =
                    recent(&pending, *refund).or_else(|| recent(&m.refund_order, *refund))
                else {
                    return vec![];
                };
                let r = &m.refunds[&id];
                let inv = m.payments[&r.payment].invoice;
                // The payee of the settlement is the invoice's seller.
                let actor = self.invoice_actor(inv, *who, Some(Party::Seller));
                one(
                    actor,
                    if *approve {
                        Command::ApproveRefund { id }
                    } else {
                        Command::RejectRefund {
                            id,
                            reason: "not agreed".into(),
                        }
                    },
                )
            }
            Op::System {
                inv,
                archive,
                days_ahead,
            } => {
                let Some(id) = recent(&m.invoice_order, *inv) else {
                    return vec![];
                };
                one(
                    Actor::System,
                    if *archive {
                        Command::AutoArchive { id }
                    } else {
                        Command::MarkPaymentDue {
                            id,
                            today: self.today() + chrono::Days::new(u64::from(*days_ahead)),
                        }
                    },
                )
            }
            Op::AdvanceDays(_) => vec![],
            Op::Concurrent(ops) => ops.iter().flat_map(|o| self.plan(o)).collect(),
        }
    }

    // -----------------------------------------------------------------------
    // Checkpoints
    // -----------------------------------------------------------------------

    /// The writer's live state.
    async fn live_ledger(&self) -> Ledger {
        self.handle()
            .inspect(|ledger| ledger.clone())
            .await
            .expect("the engine runs")
    }

    async fn checkpoint(&self) -> Ledger {
        let live = self.live_ledger().await;
        let rebuilt = engine::rebuild(self.log().as_ref()).expect("the log replays");
        assert_same_ledger(&live, &rebuilt);
        if let Err(msg) = compare_model(&self.model, &rebuilt) {
            self.fail(format!("model and replayed ledger differ: {msg}"));
        }
        live
    }

    async fn restart(&mut self) {
        drop(self.handle.take());
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("writer stops cleanly");
        let log = self.log.take().expect("log open");
        let dir = log.dir().to_path_buf();
        let head = log.head();
        // Every other reference to the log went with the writer thread.
        assert_eq!(Arc::strong_count(&log), 1);
        drop(log);
        let log = Arc::new(reopen(&dir));
        assert_eq!(log.head(), head);
        self.log = Some(log);
        let (handle, thread) = Engine::start(
            self.log().clone(),
            Arc::new(self.clock.clone()),
            EngineConfig::default(),
        )
        .expect("restart");
        self.handle = Some(handle);
        self.thread = Some(thread);
    }
}

/// sled releases its directory lock asynchronously after the last handle is
/// dropped (its I/O threads finish first; sled issues 1234 and 1289), so an
/// immediate reopen in the same process may briefly see the lock held.
fn lock_busy(message: &str) -> bool {
    message.contains("could not acquire lock")
}

fn reopen(dir: &std::path::Path) -> SledLog {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledLog::open(dir) {
            Err(ledger_core::log::LogError::Storage(m))
                if lock_busy(&m) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other.expect("reopen the log"),
        }
    }
}

fn assert_same_ledger(a: &Ledger, b: &Ledger) {
    assert_eq!(a.last_seq, b.last_seq, "last_seq");
    assert_eq!(a.versions, b.versions, "stream versions");
    assert_eq!(a.organizations, b.organizations, "organizations");
    assert_eq!(a.api_keys, b.api_keys, "api keys");
    assert_eq!(a.connections, b.connections, "connections");
    assert_eq!(a.invoices, b.invoices, "invoices");
    assert_eq!(a.payments, b.payments, "payments");
    assert_eq!(a.balances, b.balances, "balances");
    assert_eq!(a.withdrawals, b.withdrawals, "withdrawals");
    assert_eq!(a.refunds, b.refunds, "refunds");
    assert_eq!(a.balance_index, b.balance_index, "balance index");
    assert_eq!(
        a.settlement_transactions, b.settlement_transactions,
        "settlement transactions"
    );
    assert_eq!(a.failed_by_payer, b.failed_by_payer, "failed payments");
    assert_eq!(
        a.approved_by_buyer, b.approved_by_buyer,
        "approved invoices"
    );
    assert_eq!(
        a.invoices_by_seller, b.invoices_by_seller,
        "invoice counters"
    );
    assert_eq!(a.supply, b.supply, "supply");
}

/// The test's model against a ledger replayed from the log.
fn compare_model(m: &Model, l: &Ledger) -> Result<(), String> {
    ensure!(
        m.last_seq == l.last_seq,
        "last_seq {} vs {}",
        m.last_seq,
        l.last_seq
    );
    // The ledger keeps invoices' versions on the invoices themselves.
    for (stream, v) in &m.versions {
        ensure!(
            l.version(*stream) == *v,
            "stream {stream:?} at version {} vs {v}",
            l.version(*stream)
        );
    }
    let others = m
        .versions
        .keys()
        .filter(|s| s.kind != ledger_core::events::StreamKind::Invoice)
        .count();
    ensure!(
        l.versions.len() == others,
        "the ledger's version map holds {} streams, not the {others} that are no invoices",
        l.versions.len()
    );
    ensure!(m.balances.len() == l.balances.len(), "balance count");
    for (id, b) in &m.balances {
        let lb = l.balances.get(id).ok_or("missing balance")?;
        let holds: BTreeMap<Hold, Decimal> = lb.holds.iter().map(|(h, a)| (*h, dec(*a))).collect();
        ensure!(
            b.total == dec(lb.total)
                && b.reserved == dec(lb.reserved)
                && b.collateral == dec(lb.collateral)
                && b.frozen == lb.frozen
                && b.holds == holds
                && b.org == lb.organization_id
                && b.currency == lb.currency,
            "balance {id}: model {b:?}, ledger {lb:?}"
        );
    }
    ensure!(m.invoices.len() == l.invoices.len(), "invoice count");
    for (id, i) in &m.invoices {
        let li = l.invoices.get(id).ok_or("missing invoice")?;
        ensure!(
            li.status.as_str() == i.status.name(),
            "invoice {id}: model {}, ledger {}",
            i.status.name(),
            li.status.as_str()
        );
        ensure!(
            li.version == m.versions[&invoice_stream(*id)],
            "invoice {id} version {}",
            li.version
        );
        ensure!(
            li.approved_amount.map(dec) == i.approved,
            "invoice {id} approved amount"
        );
        ensure!(dec(li.total) == i.total(), "invoice {id} total");
        ensure!(li.payment_id == i.payment, "invoice {id} payment");
    }
    ensure!(m.payments.len() == l.payments.len(), "payment count");
    for (id, p) in &m.payments {
        let lp = l.payments.get(id).ok_or("missing payment")?;
        let status = match p.status {
            PStatus::Pending => "PENDING",
            PStatus::Completed => "COMPLETED",
            PStatus::Failed => "FAILED",
        };
        ensure!(
            lp.status.as_str() == status
                && dec(lp.amount) == p.amount
                && lp.attempts == p.attempts
                && dec(lp.refunded) == m.refunded(*id),
            "payment {id}: model {p:?}, ledger {lp:?}"
        );
    }
    for (id, w) in &m.withdrawals {
        let lw = l.withdrawals.get(id).ok_or("missing withdrawal")?;
        let status = match w.status {
            WStatus::Pending => "PENDING_APPROVAL",
            WStatus::Completed => "COMPLETED",
            WStatus::Rejected => "REJECTED",
            WStatus::Cancelled => "CANCELLED",
        };
        ensure!(
            lw.status.as_str() == status,
            "withdrawal {id}: {status} vs {}",
            lw.status.as_str()
        );
    }
    for (id, r) in &m.refunds {
        let lr = l.refunds.get(id).ok_or("missing refund")?;
        let status = match r.status {
            RStatus::Pending => "PENDING",
            RStatus::Approved => "APPROVED",
            RStatus::Rejected => "REJECTED",
        };
        ensure!(
            lr.status.as_str() == status,
            "refund {id}: {status} vs {}",
            lr.status.as_str()
        );
    }
    for (id, c) in &m.connections {
        let lc = l.connections.get(id).ok_or("missing connection")?;
        let status = match c.status {
            CStatus::Pending => "PENDING",
            CStatus::Active => "ACTIVE",
            CStatus::Rejected => "REJECTED",
        };
        ensure!(lc.status.as_str() == status, "connection {id}");
    }
    Ok(())
}

/// Dense sequence, dense stream versions, streams agree with the global
/// order, and the hash chain verifies from genesis to the head.
fn check_log(log: &SledLog) {
    let all: Vec<RecordedEvent> = log.read_all(1).map(|e| e.expect("read_all")).collect();
    let mut previous = GENESIS_HASH;
    let mut count = 0u64;
    for (raw, event) in log.read_raw(1).zip(&all) {
        let raw = raw.expect("read_raw");
        count += 1;
        assert_eq!(raw.seq, count, "global sequence not dense");
        let verified = verify_link(&previous, &raw).expect("hash chain verifies");
        assert_eq!(
            &verified, event,
            "read_raw and read_all disagree at {}",
            raw.seq
        );
        previous = raw.hash;
    }
    assert_eq!(count, all.len() as u64);
    assert_eq!(log.head().last_seq, count);
    assert_eq!(log.head().last_hash, previous);
    let mut streams: HashMap<StreamId, Vec<RecordedEvent>> = HashMap::new();
    for e in &all {
        streams.entry(e.stream()).or_default().push(e.clone());
    }
    for (stream, events) in streams {
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e.version,
                i as u64 + 1,
                "stream {stream:?} versions not dense"
            );
        }
        assert_eq!(
            log.read_stream(stream).expect("read_stream"),
            events,
            "read_stream {stream:?}"
        );
    }
}

async fn run_scenario(s: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledLog::open(dir.path()).unwrap());
    let clock = ManualClock::new(Timestamp::parse_rfc3339("2025-01-06T10:00:00Z").unwrap());
    let (handle, thread) = Engine::start(
        log.clone(),
        Arc::new(clock.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    let mut run = Run {
        log: Some(log),
        handle: Some(handle),
        thread: Some(thread),
        clock,
        model: Model::default(),
        orgs: Vec::new(),
        deposits: HashMap::new(),
        withdrawn: HashMap::new(),
        submitted_withdrawals: HashMap::new(),
        trace: VecDeque::new(),
        commands: 0,
    };

    // Prelude: organizations, a second API key each, a ring of active
    // connections, opening deposits. Each step is one concurrent group.
    let created = run
        .run(
            (0..s.orgs)
                .map(|i| {
                    (
                        Actor::Admin,
                        Command::CreateOrganization {
                            name: format!("org {i}"),
                            api_key_secret_hash: [i as u8; 32],
                        },
                    )
                })
                .collect(),
        )
        .await;
    let first: Vec<(OrganizationId, ApiKeyId)> = created
        .into_iter()
        .map(|r| match r {
            Ok(Outcome::Organization { id, api_key_id }) => (id, api_key_id),
            other => panic!("{other:?}"),
        })
        .collect();
    let seconds = run
        .run(
            first
                .iter()
                .map(|(id, key)| {
                    (
                        Actor::ApiKey {
                            organization_id: *id,
                            api_key_id: *key,
                        },
                        Command::CreateApiKey {
                            name: "approver".into(),
                            permissions: vec![
                                Permission::TreasuryApprove,
                                Permission::TreasuryWrite,
                            ],
                            secret_hash: [9; 32],
                            expires_at: None,
                        },
                    )
                })
                .collect(),
        )
        .await;
    run.orgs = first
        .iter()
        .zip(seconds)
        .map(|((id, key), second)| match second {
            Ok(Outcome::ApiKey(second)) => Org {
                id: *id,
                key: *key,
                second,
            },
            other => panic!("{other:?}"),
        })
        .collect();
    let n = run.orgs.len();
    let requests: Vec<(Actor, Command)> = (0..n)
        .map(|i| {
            (
                run.orgs[i].actor(),
                Command::RequestConnection {
                    counterparty: run.orgs[(i + 1) % n].id,
                    role: Party::Seller,
                },
            )
        })
        .collect();
    let requested = run.run(requests).await;
    let accepts: Vec<(Actor, Command)> = requested
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(Outcome::Connection(id)) => (
                run.orgs[(i + 1) % n].actor(),
                Command::AcceptConnection { id },
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    run.run(accepts).await;
    let mut deposits = Vec::new();
    for (i, org) in run.orgs.clone().iter().enumerate() {
        for (c, currency) in currencies().into_iter().enumerate() {
            let minor = s.opening[(i * 3 + c) % s.opening.len()];
            if minor > 0 {
                deposits.push((
                    Actor::Admin,
                    Command::Deposit {
                        organization_id: org.id,
                        currency,
                        amount: amount_of(currency, minor),
                        reference: "opening".into(),
                    },
                ));
            }
        }
    }
    run.run(deposits).await;

    for (i, op) in s.ops.iter().enumerate() {
        if let Op::AdvanceDays(days) = op {
            run.clock.advance_seconds(i64::from(*days) * 86_400);
        }
        let commands = run.plan(op);
        run.run(commands).await;
        if i % 20 == 19 {
            run.checkpoint().await;
        }
    }

    let live = run.checkpoint().await;
    check_log(run.log());
    run.restart().await;
    let restarted = run.live_ledger().await;
    assert_same_ledger(&live, &restarted);
    // The restarted writer continues the same log.
    let org = run.orgs[0];
    run.run(vec![(
        Actor::Admin,
        Command::Deposit {
            organization_id: org.id,
            currency: currencies()[0],
            amount: amount_of(currencies()[0], 100),
            reference: "after restart".into(),
        },
    )])
    .await;
    run.checkpoint().await;
    check_log(run.log());
    assert!(run.commands > 0);
    drop(run.handle.take());
    if let Some(t) = run.thread.take() {
        t.join().unwrap();
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_command_sequences_keep_the_ledger_sound(s in scenario()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = quietly(|| rt.block_on(run_scenario(s)));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an error without printing it: shrinking
/// re-runs failing cases many times, and proptest reports the minimal one.
fn quietly(f: impl FnOnce()) -> Result<(), String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}

/// The path the property test found: the seller empties an invoice while the
/// buyer's question is open, answers it, and the invoice is back in SUBMITTED
/// with nothing to approve. Approving it then reserves zero.
#[test]
fn an_invoice_emptied_while_info_is_requested_is_not_approvable_at_zero() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SledLog::open(dir.path()).unwrap());
        let clock = ManualClock::new(Timestamp::parse_rfc3339("2025-01-06T10:00:00Z").unwrap());
        let (handle, thread) = Engine::start(
            log.clone(),
            Arc::new(clock.clone()),
            EngineConfig::default(),
        )
        .unwrap();
        let submit = |actor: Actor, command: Command| {
            let handle = handle.clone();
            async move {
                match handle
                    .submit(Submission {
                        actor,
                        idempotency: None,
                        command,
                        render: None,
                    })
                    .await
                {
                    Ok(Reply::Executed { result, .. }) => result,
                    other => panic!("unexpected reply {other:?}"),
                }
            }
        };
        let usd = currencies()[0];
        let mut orgs = Vec::new();
        for name in ["seller", "buyer"] {
            match submit(
                Actor::Admin,
                Command::CreateOrganization {
                    name: name.into(),
                    api_key_secret_hash: [0; 32],
                },
            )
            .await
            {
                Ok(Outcome::Organization { id, api_key_id }) => orgs.push(Actor::ApiKey {
                    organization_id: id,
                    api_key_id,
                }),
                other => panic!("{other:?}"),
            }
        }
        let (seller, buyer) = (orgs[0], orgs[1]);
        let connection = match submit(
            seller,
            Command::RequestConnection {
                counterparty: buyer.organization().unwrap(),
                role: Party::Seller,
            },
        )
        .await
        {
            Ok(Outcome::Connection(id)) => id,
            other => panic!("{other:?}"),
        };
        submit(buyer, Command::AcceptConnection { id: connection })
            .await
            .unwrap();
        submit(
            Actor::Admin,
            Command::Deposit {
                organization_id: buyer.organization().unwrap(),
                currency: usd,
                amount: amount_of(usd, 10_000),
                reference: "opening".into(),
            },
        )
        .await
        .unwrap();
        let line = Line {
            qty: 0,
            price_minor: 2_500,
            tax: 0,
            bad: false,
        };
        let invoice = match submit(
            seller,
            Command::CreateInvoice(NewInvoice {
                connection_id: connection,
                number: None,
                currency: usd,
                issue_date: None,
                due_date: chrono::NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
                memo: None,
                line_items: vec![line_input(usd, &line)],
                attachments: vec![],
                submit: true,
            }),
        )
        .await
        {
            Ok(Outcome::Invoice(id)) => id,
            other => panic!("{other:?}"),
        };
        let act = |action| Command::Invoice {
            id: invoice,
            action,
        };
        submit(
            buyer,
            act(InvoiceAction::RequestInfo {
                question: "which order?".into(),
            }),
        )
        .await
        .unwrap();
        // Each of these may be refused; what must not happen is an invoice
        // back in SUBMITTED with nothing on it, or a reservation of zero.
        let _ = submit(
            seller,
            Command::UpdateInvoice {
                id: invoice,
                patch: InvoicePatch {
                    line_items: Some(vec![]),
                    ..InvoicePatch::default()
                },
            },
        )
        .await;
        let _ = submit(
            seller,
            act(InvoiceAction::RespondInfo {
                message: "see the new lines".into(),
            }),
        )
        .await;
        let _ = submit(
            buyer,
            act(InvoiceAction::Approve {
                adjusted_amount: None,
                reason: None,
            }),
        )
        .await;
        drop(handle);
        thread.join().unwrap();

        let mut model = Model::default();
        for event in log.read_all(1) {
            let event = event.unwrap();
            if let Err(msg) = model.apply(&event) {
                panic!("{msg}");
            }
        }
    });
}
