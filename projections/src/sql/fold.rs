//! The projection into SQL: one transaction per batch of committed events.
//!
//! Each event loads the rows it touches, applies the domain's own `evolve`
//! (or, for a new aggregate, the write model's own construction on a scratch
//! ledger), and stores them back with their query columns; balance events
//! also append their change-log entry and transaction. The last applied seq
//! and its chain hash are written in the same transaction.

use super::rows::{self, InvoiceChange};
use super::{corrupt, SqlError};
use crate::model::{balance_change, hold_id, hold_type, transaction_of};
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::{Connection as Link, ConnectionStatus};
use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::{Refund, RefundStatus};
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::domain::Ledger;
use ledger_core::events::{Event, RecordedEvent};
use ledger_core::ids::{BalanceId, InvoiceId, PaymentId};
use ledger_core::log::{EventLog, Hash};
use ledger_core::money::Amount;
use rusqlite::{params, Connection};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// The invoices, payments and balances a batch has touched, kept decoded
/// and written once when the batch ends.
///
/// Rationale: an invoice's lifecycle is four to six events and a balance
/// changes with every reservation and settlement; storing each row after
/// every event rewrote it (and its list rows and index entries) that many
/// times per batch. Rows are the same in the end: the last state is what an
/// upsert of each intermediate one leaves. Everything read while the batch
/// runs (the outbox's subjects included) reads through here.
#[derive(Default)]
pub struct Pending {
    invoices: HashMap<InvoiceId, Slot<Invoice>>,
    /// What of each touched invoice the batch changed (see `InvoiceChange`).
    invoice_changes: HashMap<InvoiceId, InvoiceChange>,
    payments: HashMap<PaymentId, Slot<Payment>>,
    balances: HashMap<BalanceId, Slot<Balance>>,
}

/// A row's state and the seq its insert carries (its first event's, when
/// the batch created it; ignored by the upsert of an existing row).
struct Slot<T> {
    value: T,
    seq: u64,
}

const UNCHANGED: InvoiceChange = InvoiceChange {
    created: false,
    line_items: false,
    attachments: false,
};

/// The row `id` as the batch has it, read by `load` the first time.
fn touch<K: Eq + std::hash::Hash, T>(
    map: &mut HashMap<K, Slot<T>>,
    id: K,
    seq: u64,
    load: impl FnOnce() -> Result<T, SqlError>,
) -> Result<&mut T, SqlError> {
    Ok(match map.entry(id) {
        Entry::Occupied(e) => &mut e.into_mut().value,
        Entry::Vacant(v) => {
            &mut v
                .insert(Slot {
                    value: load()?,
                    seq,
                })
                .value
        }
    })
}

impl Pending {
    fn invoice(
        &mut self,
        c: &Connection,
        id: InvoiceId,
        seq: u64,
    ) -> Result<&mut Invoice, SqlError> {
        touch(&mut self.invoices, id, seq, || load(c, "invoices", id))
    }

    fn put_invoice(&mut self, inv: Invoice, seq: u64, change: InvoiceChange) {
        self.invoice_changes.insert(inv.id, change);
        self.invoices.insert(inv.id, Slot { value: inv, seq });
    }

    fn changed(&mut self, id: InvoiceId, change: InvoiceChange) {
        let was = self.invoice_changes.entry(id).or_insert(UNCHANGED);
        was.created |= change.created;
        was.line_items |= change.line_items;
        was.attachments |= change.attachments;
    }

    fn payment(
        &mut self,
        c: &Connection,
        id: PaymentId,
        seq: u64,
    ) -> Result<&mut Payment, SqlError> {
        touch(&mut self.payments, id, seq, || load(c, "payments", id))
    }

    /// A payment (re)made by its own event: a retry keeps the row's seq.
    fn put_payment(&mut self, p: Payment, seq: u64) {
        let seq = self.payments.get(&p.id).map_or(seq, |s| s.seq);
        self.payments.insert(p.id, Slot { value: p, seq });
    }

    fn balance(
        &mut self,
        c: &Connection,
        id: BalanceId,
        seq: u64,
    ) -> Result<&mut Balance, SqlError> {
        touch(&mut self.balances, id, seq, || {
            rows::load_balance(c, &id.to_string())?.ok_or_else(|| missing("balances", id))
        })
    }

    /// The invoice as the batch has left it so far, if it touched it.
    pub fn touched_invoice(&self, id: InvoiceId) -> Option<&Invoice> {
        self.invoices.get(&id).map(|s| &s.value)
    }

    pub fn touched_payment(&self, id: PaymentId) -> Option<&Payment> {
        self.payments.get(&id).map(|s| &s.value)
    }

    pub fn touched_balance(&self, id: BalanceId) -> Option<&Balance> {
        self.balances.get(&id).map(|s| &s.value)
    }

    fn flush(self, c: &Connection) -> Result<(), SqlError> {
        for (id, slot) in &self.invoices {
            let change = self.invoice_changes.get(id).copied().unwrap_or(UNCHANGED);
            rows::save_invoice(c, &slot.value, slot.seq, change)?;
        }
        for slot in self.payments.values() {
            rows::save_payment(c, &slot.value, slot.seq)?;
        }
        for slot in self.balances.values() {
            rows::save_balance(c, &slot.value, slot.seq)?;
        }
        Ok(())
    }
}

/// Applies `events` (consecutive, starting right after the database's
/// position) in one transaction, ending at `last_hash`.
pub fn apply_batch<'a>(
    conn: &mut Connection,
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    last_hash: Hash,
) -> Result<u64, SqlError> {
    let tx = conn.transaction()?;
    let (mut at, _) = super::position(&tx)?;
    let mut pending = Pending::default();
    let webhooks_from = super::outbox::webhooks_from_seq(&tx)?;
    for e in events {
        if e.seq <= at {
            continue;
        }
        if e.seq != at + 1 {
            return Err(corrupt(
                "projection_state",
                1,
                format!("expected seq {}, got {}", at + 1, e.seq),
            ));
        }
        apply(&tx, &mut pending, e)?;
        super::outbox::derive(&tx, &pending, webhooks_from, e)?;
        at = e.seq;
    }
    pending.flush(&tx)?;
    tx.prepare_cached(
        "INSERT INTO projection_state (id, last_seq, last_hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash",
    )?
    .execute(params![at as i64, hex::encode(last_hash)])?;
    tx.commit()?;
    Ok(at)
}

/// Brings the database up to the log's head, `chunk` events per transaction.
pub fn catch_up(conn: &mut Connection, log: &dyn EventLog, chunk: usize) -> Result<u64, SqlError> {
    let (from, _) = super::position(conn)?;
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(chunk);
    let mut last = from;
    let flush = |conn: &mut Connection, batch: &mut Vec<RecordedEvent>| -> Result<u64, SqlError> {
        let seq = batch.last().map(|e| e.seq).unwrap_or(0);
        let hash = super::hash_at(log, seq).ok_or_else(|| corrupt("log", seq, "no hash"))?;
        let at = apply_batch(conn, batch.iter(), hash)?;
        batch.clear();
        Ok(at)
    };
    ledger_core::log::replay(log, from + 1, |e: &RecordedEvent| {
        batch.push(e.clone());
        if batch.len() >= chunk {
            last = flush(conn, &mut batch)?;
        }
        Ok::<(), SqlError>(())
    })?;
    if !batch.is_empty() {
        last = flush(conn, &mut batch)?;
    }
    Ok(last)
}

fn missing(table: &'static str, id: impl ToString) -> SqlError {
    corrupt(table, id, "an event names a row that does not exist")
}

fn load<T: serde::de::DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    id: impl ToString,
) -> Result<T, SqlError> {
    let id = id.to_string();
    rows::load(c, table, &id)?.ok_or_else(|| missing(table, id))
}

/// What a creation event makes, built by the write model's own code.
fn created(event: &Event, at: ledger_core::time::Timestamp) -> Result<Ledger, SqlError> {
    let mut scratch = Ledger::new();
    scratch
        .evolve_detached(event, at)
        .map_err(|e| corrupt("event", event.type_name(), e))?;
    Ok(scratch)
}

fn only<K, V>(map: impl IntoIterator<Item = (K, V)>, what: &'static str) -> Result<V, SqlError> {
    map.into_iter()
        .next()
        .map(|(_, v)| v)
        .ok_or_else(|| corrupt(what, "?", "creation event made nothing"))
}

fn apply(c: &Connection, pending: &mut Pending, r: &RecordedEvent) -> Result<(), SqlError> {
    use Event::*;
    let (seq, at) = (r.seq, r.at);
    match &r.event {
        OrganizationCreated { .. } => {
            let o = only(created(&r.event, at)?.organizations, "organizations")?;
            rows::save_organization(c, &o, seq)
        }
        ApiKeyCreated { .. } => {
            let k = only(created(&r.event, at)?.api_keys, "api_keys")?;
            rows::save_api_key(c, &k, seq)
        }
        ApiKeyRevoked { id } => {
            let mut k: ledger_core::domain::api_key::ApiKey = load(c, "api_keys", id)?;
            k.revoked_at = Some(at);
            rows::save_api_key(c, &k, seq)
        }
        ConnectionRequested { .. } => {
            let l = only(created(&r.event, at)?.connections, "connections")?;
            rows::save_connection(c, &l, seq)
        }
        ConnectionAccepted { id }
        | ConnectionRejected { id }
        | ConnectionRejectedBecause { id, .. } => {
            let mut l: Link = load(c, "connections", id)?;
            l.status = if matches!(r.event, ConnectionAccepted { .. }) {
                ConnectionStatus::Active
            } else {
                ConnectionStatus::Rejected
            };
            l.updated_at = at;
            rows::save_connection(c, &l, seq)?;
            match &r.event {
                ConnectionRejectedBecause {
                    reason: Some(reason),
                    ..
                } => rows::save_rejection_reason(c, l.id, reason),
                _ => Ok(()),
            }
        }
        InvoiceCreated { .. } => {
            let inv = Invoice::created(&r.event, at)
                .ok_or_else(|| corrupt("invoices", "?", "not a creation event"))?;
            let change = InvoiceChange {
                created: true,
                line_items: true,
                attachments: true,
            };
            invoice_history(c, r, &inv)?;
            pending.put_invoice(inv, seq, change);
            Ok(())
        }
        InvoiceUpdated { .. }
        | LineItemAdded { .. }
        | LineItemUpdated { .. }
        | LineItemRemoved { .. }
        | InvoiceSubmitted { .. }
        | InvoiceInfoRequested { .. }
        | InvoiceInfoProvided { .. }
        | InvoiceApproved { .. }
        | InvoiceDisputed { .. }
        | InvoiceCancelled { .. }
        | InvoiceCancellationRequested { .. }
        | InvoiceCancellationRejected { .. }
        | InvoiceSettled { .. }
        | InvoiceArchived { .. }
        | InvoiceRestored { .. }
        | InvoicePaymentDue { .. } => {
            let id = InvoiceId::from_uuid(r.event.stream().id);
            let inv = pending.invoice(c, id, seq)?;
            inv.evolve(&r.event, at);
            invoice_history(c, r, inv)?;
            let change = match &r.event {
                InvoiceUpdated {
                    line_items,
                    attachments,
                    ..
                } => InvoiceChange {
                    created: false,
                    line_items: line_items.is_some(),
                    attachments: attachments.is_some(),
                },
                LineItemAdded { .. } | LineItemUpdated { .. } | LineItemRemoved { .. } => {
                    InvoiceChange {
                        created: false,
                        line_items: true,
                        attachments: false,
                    }
                }
                _ => UNCHANGED,
            };
            pending.changed(id, change);
            Ok(())
        }
        PaymentInitiated { .. } => {
            let p = only(created(&r.event, at)?.payments, "payments")?;
            pending.put_payment(p, seq);
            Ok(())
        }
        PaymentCompleted { id, .. } | PaymentFailed { id, .. } => {
            pending.payment(c, *id, seq)?.evolve(&r.event, at);
            Ok(())
        }
        BalanceOpened { .. } => {
            let b = only(created(&r.event, at)?.balances, "balances")?;
            pending.balances.insert(b.id, Slot { value: b, seq });
            Ok(())
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
        | BalanceUnfrozen { .. } => balance_event(c, pending, r),
        WithdrawalSubmitted { .. } => {
            let w = only(created(&r.event, at)?.withdrawals, "withdrawals")?;
            rows::save_withdrawal(c, &w, seq)
        }
        WithdrawalApproved { id, .. }
        | WithdrawalRejected { id, .. }
        | WithdrawalCancelled { id } => {
            let mut w: Withdrawal = load(c, "withdrawals", id)?;
            w.evolve(&r.event, at);
            rows::save_withdrawal(c, &w, seq)
        }
        RefundCreated { payment_id, .. } => {
            // The write model checks the refund against its payment and counts
            // it as refunded: give it the payment, take both back.
            let payment = pending.payment(c, *payment_id, seq)?.clone();
            let mut scratch = Ledger::new();
            scratch.payments.insert(payment.id, payment);
            scratch
                .evolve_detached(&r.event, at)
                .map_err(|e| corrupt("refunds", "?", e))?;
            let refund = only(scratch.refunds, "refunds")?;
            let payment = only(scratch.payments, "payments")?;
            rows::save_refund(c, &refund, seq)?;
            pending.put_payment(payment, seq);
            Ok(())
        }
        RefundApproved { id, .. } | RefundRejected { id, .. } => {
            let mut refund: Refund = load(c, "refunds", id)?;
            refund.evolve(&r.event, at);
            rows::save_refund(c, &refund, seq)?;
            if refund.status == RefundStatus::Rejected {
                let p = pending.payment(c, refund.payment_id, seq)?;
                p.refunded = p
                    .refunded
                    .checked_sub(refund.amount)
                    .unwrap_or(Amount::ZERO);
            }
            Ok(())
        }
        WebhookEndpointCreated { .. } => {
            let e = only(
                created(&r.event, at)?.webhook_endpoints,
                "webhook_endpoints",
            )?;
            rows::save_webhook_endpoint(c, &e, seq)
        }
        WebhookEndpointUpdated { id, .. }
        | WebhookEndpointDeleted { id }
        | WebhookSecretRotated { id, .. } => {
            let mut e: WebhookEndpoint = load(c, "webhook_endpoints", id)?;
            e.evolve(&r.event, at);
            rows::save_webhook_endpoint(c, &e, seq)
        }
        FileStored { .. } => {
            let f = only(created(&r.event, at)?.files, "files")?;
            rows::save_file(c, &f, seq)
        }
        FileDeleted { id } => {
            let mut f: ledger_core::domain::file::StoredFile = load(c, "files", id)?;
            f.deleted = true;
            rows::save_file(c, &f, seq)
        }
    }
}

fn invoice_history(c: &Connection, r: &RecordedEvent, inv: &Invoice) -> Result<(), SqlError> {
    c.prepare_cached(
        "INSERT INTO invoice_history (seq, invoice_id, version, type, status_after, at_utc,
             actor_organization_id, actor_api_key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.seq as i64,
        inv.id.to_string(),
        r.version as i64,
        r.event.type_name(),
        inv.status.as_str(),
        rows::ts(r.at),
        r.actor.organization().map(|o| o.to_string()),
        r.actor.api_key().map(|k| k.to_string()),
    ])?;
    Ok(())
}

/// The balance figures after an event, as `Balance::evolve` computes them;
/// the reservations themselves are rows of `balance_holds`.
fn evolve_figures(b: &mut Balance, event: &Event, at: ledger_core::time::Timestamp) {
    use Event::*;
    let add = |a: Amount, x: Amount| a.checked_add(x).unwrap_or(a);
    let sub = |a: Amount, x: Amount| a.checked_sub(x).unwrap_or(Amount::ZERO);
    match event {
        FundsDeposited { amount, .. }
        | SettlementCredited { amount, .. }
        | RefundCredited { amount, .. } => b.total = add(b.total, *amount),
        FundsReserved { amount, .. } => b.reserved = add(b.reserved, *amount),
        ReservationReleased { amount, .. } => b.reserved = sub(b.reserved, *amount),
        SettlementDebited { amount, .. } | WithdrawalDebited { amount, .. } => {
            b.reserved = sub(b.reserved, *amount);
            b.total = sub(b.total, *amount);
        }
        RefundDebited { amount, .. } => b.total = sub(b.total, *amount),
        CollateralSet { amount, .. } => b.collateral = *amount,
        BalanceFrozen { .. } => b.frozen = true,
        BalanceUnfrozen { .. } => b.frozen = false,
        _ => {}
    }
    b.updated_at = at;
}

fn balance_event(c: &Connection, pending: &mut Pending, r: &RecordedEvent) -> Result<(), SqlError> {
    use Event::*;
    let id = BalanceId::from_uuid(r.event.stream().id);
    let b = pending.balance(c, id, r.seq)?;
    evolve_figures(b, &r.event, r.at);
    let b = &*b;
    match &r.event {
        FundsReserved { hold, amount, .. } => {
            c.prepare_cached(
                "INSERT INTO balance_holds (balance_id, hold_type, hold_id, amount) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                id.to_string(),
                hold_type(hold),
                hold_id(hold),
                rows::money(*amount, b.currency)
            ])?;
        }
        ReservationReleased { hold, .. } => release(c, id, hold_type(hold), &hold_id(hold))?,
        SettlementDebited { invoice_id, .. } => release(c, id, "invoice", &invoice_id.to_string())?,
        WithdrawalDebited { withdrawal_id, .. } => {
            release(c, id, "withdrawal", &withdrawal_id.to_string())?
        }
        _ => {}
    }
    if let Some(ch) = balance_change(r, b) {
        let cur = b.currency;
        c.prepare_cached(
            "INSERT INTO balance_changes (seq, balance_id, organization_id, currency, at_utc, at_micros,
                 kind, amount, total_after, reserved_after, collateral_after, available_after,
                 frozen_after, cause_type, cause_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            ch.seq as i64,
            id.to_string(),
            b.organization_id.to_string(),
            cur.code(),
            rows::ts(ch.at),
            ch.at.as_micros(),
            ch.kind,
            rows::money(ch.amount, cur),
            rows::money(ch.total_after, cur),
            rows::money(ch.reserved_after, cur),
            rows::money(ch.collateral_after, cur),
            rows::money(ch.available_after, cur),
            ch.frozen_after,
            ch.cause_type,
            ch.cause_id,
        ])?;
    }
    if let Some(t) = transaction_of(r, b.organization_id, b.currency, b.total) {
        let cur = t.currency;
        c.prepare_cached(
            "INSERT INTO transactions (id, seq, type, organization_id, balance_id, currency, amount,
                 total_after, reference, invoice_id, payment_id, withdrawal_id, refund_id,
                 counterparty_organization_id, created_at_utc, created_micros)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            t.id.to_string(),
            t.seq as i64,
            t.kind.as_str(),
            t.organization_id.to_string(),
            t.balance_id.to_string(),
            cur.code(),
            rows::money(t.amount, cur),
            rows::money(t.total_after, cur),
            t.reference,
            t.invoice_id.map(|x| x.to_string()),
            t.payment_id.map(|x| x.to_string()),
            t.withdrawal_id.map(|x| x.to_string()),
            t.refund_id.map(|x| x.to_string()),
            t.counterparty_organization_id.map(|x| x.to_string()),
            rows::ts(t.created_at),
            t.created_at.as_micros(),
        ])?;
    }
    Ok(())
}

fn release(c: &Connection, balance: BalanceId, kind: &str, id: &str) -> Result<(), SqlError> {
    c.prepare_cached(
        "DELETE FROM balance_holds WHERE balance_id = ?1 AND hold_type = ?2 AND hold_id = ?3",
    )?
    .execute(params![balance.to_string(), kind, id])?;
    Ok(())
}
