//! The read model and its fold.

use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::ledger::InvariantViolation;
use ledger_core::domain::Ledger;
use ledger_core::events::{Event, Hold, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::money::{Amount, Currency};
use ledger_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionType {
    Deposit,
    Withdrawal,
    SettlementIn,
    SettlementOut,
    RefundIn,
    RefundOut,
}

impl TransactionType {
    pub const ALL: [TransactionType; 6] = [
        TransactionType::Deposit,
        TransactionType::Withdrawal,
        TransactionType::SettlementIn,
        TransactionType::SettlementOut,
        TransactionType::RefundIn,
        TransactionType::RefundOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::Deposit => "DEPOSIT",
            TransactionType::Withdrawal => "WITHDRAWAL",
            TransactionType::SettlementIn => "SETTLEMENT_IN",
            TransactionType::SettlementOut => "SETTLEMENT_OUT",
            TransactionType::RefundIn => "REFUND_IN",
            TransactionType::RefundOut => "REFUND_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One money movement on a balance (the API's `transactions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: TransactionId,
    pub seq: u64,
    pub kind: TransactionType,
    pub organization_id: OrganizationId,
    pub balance_id: BalanceId,
    pub currency: Currency,
    pub amount: Amount,
    pub total_after: Amount,
    pub reference: Option<String>,
    pub invoice_id: Option<InvoiceId>,
    pub payment_id: Option<PaymentId>,
    pub withdrawal_id: Option<WithdrawalId>,
    pub refund_id: Option<RefundId>,
    pub counterparty_organization_id: Option<OrganizationId>,
    pub created_at: Timestamp,
}

/// One entry of a balance's change log, with the figures after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: String,
    pub amount: Amount,
    pub total_after: Amount,
    pub reserved_after: Amount,
    pub collateral_after: Amount,
    pub available_after: Amount,
    pub frozen_after: bool,
    pub cause_type: String,
    pub cause_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadModel {
    pub ledger: Ledger,
    /// Every invoice in full (the write model keeps only their decision
    /// state), folded with `Invoice::evolve`.
    pub invoices: HashMap<InvoiceId, Invoice>,
    /// Every invoice an organization is party to (as seller, or as buyer once
    /// submitted), in creation order.
    pub invoices_by_org: HashMap<OrganizationId, Vec<InvoiceId>>,
    pub connections_by_org: HashMap<OrganizationId, Vec<ConnectionId>>,
    pub api_keys_by_org: HashMap<OrganizationId, Vec<ApiKeyId>>,
    pub payments_by_org: HashMap<OrganizationId, Vec<PaymentId>>,
    pub withdrawals_by_org: HashMap<OrganizationId, Vec<WithdrawalId>>,
    pub refunds_by_org: HashMap<OrganizationId, Vec<RefundId>>,
    pub endpoints_by_org: HashMap<OrganizationId, Vec<WebhookEndpointId>>,
    pub files_by_org: HashMap<OrganizationId, Vec<FileId>>,
    pub balances_by_org: HashMap<OrganizationId, Vec<BalanceId>>,
    pub transactions: HashMap<TransactionId, Transaction>,
    pub transactions_by_org: HashMap<OrganizationId, Vec<TransactionId>>,
    pub balance_changes: HashMap<BalanceId, Vec<BalanceChange>>,
    /// Why connections were rejected, where a reason was given (the
    /// resource predates reasons, so they are kept beside it).
    #[serde(default)]
    pub connection_reasons: HashMap<ConnectionId, String>,
    /// When set, the fold derives the webhook outbox entries of every event
    /// after this seq into `webhook_outbox` (drained by the runner).
    #[serde(skip)]
    pub webhooks_after: Option<u64>,
    #[serde(skip)]
    pub webhook_outbox: Vec<crate::webhooks::OutboxEntry>,
}

fn push<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, Vec<V>>, key: K, value: V) {
    map.entry(key).or_default().push(value);
}

impl ReadModel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn last_seq(&self) -> u64 {
        self.ledger.last_seq
    }

    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), InvariantViolation> {
        self.ledger.apply(recorded)?;
        self.fold_invoice(recorded);
        self.index(recorded);
        if matches!(self.webhooks_after, Some(after) if recorded.seq > after) {
            let entries = crate::webhooks::outbox_entries(recorded, self);
            self.webhook_outbox.extend(entries);
        }
        Ok(())
    }

    fn fold_invoice(&mut self, recorded: &RecordedEvent) {
        if let Some(inv) = Invoice::created(&recorded.event, recorded.at) {
            self.invoices.insert(inv.id, inv);
        } else if recorded.event.stream().kind == ledger_core::events::StreamKind::Invoice {
            let id = InvoiceId::from_uuid(recorded.event.stream().id);
            if let Some(inv) = self.invoices.get_mut(&id) {
                inv.evolve(&recorded.event, recorded.at);
            }
        }
    }

    fn index(&mut self, recorded: &RecordedEvent) {
        use Event::*;
        match &recorded.event {
            ApiKeyCreated {
                id,
                organization_id,
                ..
            } => push(&mut self.api_keys_by_org, *organization_id, *id),
            ConnectionRequested {
                id,
                seller_organization_id,
                buyer_organization_id,
                ..
            } => {
                push(&mut self.connections_by_org, *seller_organization_id, *id);
                push(&mut self.connections_by_org, *buyer_organization_id, *id);
            }
            ConnectionRejectedBecause {
                id,
                reason: Some(reason),
            } => {
                self.connection_reasons.insert(*id, reason.clone());
            }
            InvoiceCreated {
                id,
                seller_organization_id,
                ..
            } => push(&mut self.invoices_by_org, *seller_organization_id, *id),
            InvoiceSubmitted { id } => {
                // The buyer sees an invoice from its first submission on.
                if let Some(inv) = self.ledger.invoices.get(id) {
                    let buyer = inv.buyer_organization_id;
                    let list = self.invoices_by_org.entry(buyer).or_default();
                    if !list.contains(id) {
                        list.push(*id);
                    }
                }
            }
            PaymentInitiated {
                id,
                payer_organization_id,
                payee_organization_id,
                ..
            } => {
                push(&mut self.payments_by_org, *payer_organization_id, *id);
                push(&mut self.payments_by_org, *payee_organization_id, *id);
            }
            BalanceOpened {
                id,
                organization_id,
                ..
            } => push(&mut self.balances_by_org, *organization_id, *id),
            WithdrawalSubmitted {
                id,
                organization_id,
                ..
            } => push(&mut self.withdrawals_by_org, *organization_id, *id),
            RefundCreated {
                id,
                payee_organization_id,
                payer_organization_id,
                ..
            } => {
                push(&mut self.refunds_by_org, *payee_organization_id, *id);
                push(&mut self.refunds_by_org, *payer_organization_id, *id);
            }
            WebhookEndpointCreated {
                id,
                organization_id,
                ..
            } => push(&mut self.endpoints_by_org, *organization_id, *id),
            FileStored {
                id,
                organization_id,
                ..
            } => push(&mut self.files_by_org, *organization_id, *id),
            _ => {}
        }
        self.index_balance(recorded);
    }

    fn index_balance(&mut self, recorded: &RecordedEvent) {
        let balance_id = BalanceId::from_uuid(recorded.event.stream().id);
        let Some(balance) = self.ledger.balances.get(&balance_id) else {
            return;
        };
        let Some(change) = balance_change(recorded, balance) else {
            return;
        };
        self.balance_changes
            .entry(balance_id)
            .or_default()
            .push(change);
        if let Some(tx) = transaction_of(
            recorded,
            balance.organization_id,
            balance.currency,
            balance.total,
        ) {
            push(&mut self.transactions_by_org, tx.organization_id, tx.id);
            self.transactions.insert(tx.id, tx);
        }
    }
}

/// The change-log entry a balance event makes, with the balance's figures
/// right after it; `None` for events that are not balance changes.
pub(crate) fn balance_change(
    recorded: &RecordedEvent,
    balance: &ledger_core::domain::balance::Balance,
) -> Option<BalanceChange> {
    use Event::*;
    let (kind, amount, cause_type, cause_id): (&'static str, Amount, &'static str, Option<String>) =
        match &recorded.event {
            FundsDeposited {
                amount,
                transaction_id,
                ..
            } => (
                "DEPOSIT",
                *amount,
                "transaction",
                Some(transaction_id.to_string()),
            ),
            FundsReserved { hold, amount, .. } => {
                ("RESERVE", *amount, hold_type(hold), Some(hold_id(hold)))
            }
            ReservationReleased { hold, amount, .. } => {
                ("RELEASE", *amount, hold_type(hold), Some(hold_id(hold)))
            }
            SettlementDebited {
                amount, payment_id, ..
            } => (
                "SETTLEMENT_OUT",
                *amount,
                "payment",
                Some(payment_id.to_string()),
            ),
            SettlementCredited {
                amount, payment_id, ..
            } => (
                "SETTLEMENT_IN",
                *amount,
                "payment",
                Some(payment_id.to_string()),
            ),
            WithdrawalDebited {
                amount,
                withdrawal_id,
                ..
            } => (
                "WITHDRAWAL",
                *amount,
                "withdrawal",
                Some(withdrawal_id.to_string()),
            ),
            RefundDebited {
                amount, refund_id, ..
            } => ("REFUND_OUT", *amount, "refund", Some(refund_id.to_string())),
            RefundCredited {
                amount, refund_id, ..
            } => ("REFUND_IN", *amount, "refund", Some(refund_id.to_string())),
            CollateralSet { amount, .. } => ("COLLATERAL", *amount, "operator", None),
            BalanceFrozen { .. } => ("FREEZE", Amount::ZERO, "operator", None),
            BalanceUnfrozen { .. } => ("UNFREEZE", Amount::ZERO, "operator", None),
            _ => return None,
        };
    Some(BalanceChange {
        seq: recorded.seq,
        at: recorded.at,
        kind: kind.to_owned(),
        amount,
        total_after: balance.total,
        reserved_after: balance.reserved,
        collateral_after: balance.collateral,
        available_after: balance.available(),
        frozen_after: balance.frozen,
        cause_type: cause_type.to_owned(),
        cause_id,
    })
}

pub(crate) fn hold_type(hold: &Hold) -> &'static str {
    match hold {
        Hold::Invoice(_) => "invoice",
        Hold::Withdrawal(_) => "withdrawal",
    }
}

pub(crate) fn hold_id(hold: &Hold) -> String {
    match hold {
        Hold::Invoice(id) => id.to_string(),
        Hold::Withdrawal(id) => id.to_string(),
    }
}

pub(crate) fn transaction_of(
    recorded: &RecordedEvent,
    organization_id: OrganizationId,
    currency: Currency,
    total_after: Amount,
) -> Option<Transaction> {
    use Event::*;
    let mut tx = Transaction {
        id: TransactionId::from_uuid(uuid::Uuid::nil()),
        seq: recorded.seq,
        kind: TransactionType::Deposit,
        organization_id,
        balance_id: BalanceId::from_uuid(recorded.event.stream().id),
        currency,
        amount: Amount::ZERO,
        total_after,
        reference: None,
        invoice_id: None,
        payment_id: None,
        withdrawal_id: None,
        refund_id: None,
        counterparty_organization_id: None,
        created_at: recorded.at,
    };
    match &recorded.event {
        FundsDeposited {
            transaction_id,
            amount,
            reference,
            ..
        } => {
            tx.id = *transaction_id;
            tx.amount = *amount;
            tx.reference = Some(reference.clone());
        }
        SettlementDebited {
            transaction_id,
            payment_id,
            invoice_id,
            counterparty_organization_id,
            amount,
            ..
        }
        | SettlementCredited {
            transaction_id,
            payment_id,
            invoice_id,
            counterparty_organization_id,
            amount,
            ..
        } => {
            tx.id = *transaction_id;
            tx.kind = if matches!(recorded.event, SettlementDebited { .. }) {
                TransactionType::SettlementOut
            } else {
                TransactionType::SettlementIn
            };
            tx.amount = *amount;
            tx.payment_id = Some(*payment_id);
            tx.invoice_id = Some(*invoice_id);
            tx.counterparty_organization_id = Some(*counterparty_organization_id);
        }
        WithdrawalDebited {
            transaction_id,
            withdrawal_id,
            amount,
            ..
        } => {
            tx.id = *transaction_id;
            tx.kind = TransactionType::Withdrawal;
            tx.amount = *amount;
            tx.withdrawal_id = Some(*withdrawal_id);
        }
        RefundDebited {
            transaction_id,
            refund_id,
            counterparty_organization_id,
            amount,
            ..
        }
        | RefundCredited {
            transaction_id,
            refund_id,
            counterparty_organization_id,
            amount,
            ..
        } => {
            tx.id = *transaction_id;
            tx.kind = if matches!(recorded.event, RefundDebited { .. }) {
                TransactionType::RefundOut
            } else {
                TransactionType::RefundIn
            };
            tx.amount = *amount;
            tx.refund_id = Some(*refund_id);
            tx.counterparty_organization_id = Some(*counterparty_organization_id);
        }
        _ => return None,
    }
    Some(tx)
}
