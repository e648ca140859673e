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
use ledger_core::ids::{BalanceId, InvoiceId};
use ledger_core::log::{EventLog, Hash};
use ledger_core::money::Amount;
use rusqlite::{params, Connection};

/// Applies `events` (consecutive, starting right after the database's
/// position) in one transaction, ending at `last_hash`.
pub fn apply_batch(
    conn: &mut Connection,
    events: &[RecordedEvent],
    last_hash: Hash,
) -> Result<u64, SqlError> {
    let tx = conn.transaction()?;
    let (mut at, _) = super::position(&tx)?;
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
        apply(&tx, e)?;
        super::outbox::derive(&tx, e)?;
        at = e.seq;
    }
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
        let at = apply_batch(conn, batch, hash)?;
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

fn only<K, V>(map: std::collections::HashMap<K, V>, what: &'static str) -> Result<V, SqlError> {
    map.into_values()
        .next()
        .ok_or_else(|| corrupt(what, "?", "creation event made nothing"))
}

fn apply(c: &Connection, r: &RecordedEvent) -> Result<(), SqlError> {
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
        ConnectionAccepted { id } | ConnectionRejected { id } => {
            let mut l: Link = load(c, "connections", id)?;
            l.status = if matches!(r.event, ConnectionAccepted { .. }) {
                ConnectionStatus::Active
            } else {
                ConnectionStatus::Rejected
            };
            l.updated_at = at;
            rows::save_connection(c, &l, seq)
        }
        InvoiceCreated { .. } => {
            let inv = Invoice::created(&r.event, at)
                .ok_or_else(|| corrupt("invoices", "?", "not a creation event"))?;
            let change = InvoiceChange {
                created: true,
                line_items: true,
                attachments: true,
            };
            rows::save_invoice(c, &inv, seq, change)?;
            invoice_history(c, r, &inv)
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
            let mut inv: Invoice = load(c, "invoices", id)?;
            inv.evolve(&r.event, at);
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
                _ => InvoiceChange {
                    created: false,
                    line_items: false,
                    attachments: false,
                },
            };
            rows::save_invoice(c, &inv, seq, change)?;
            invoice_history(c, r, &inv)
        }
        PaymentInitiated { .. } => {
            let p = only(created(&r.event, at)?.payments, "payments")?;
            rows::save_payment(c, &p, seq)
        }
        PaymentCompleted { id, .. } | PaymentFailed { id, .. } => {
            let mut p: Payment = load(c, "payments", id)?;
            p.evolve(&r.event, at);
            rows::save_payment(c, &p, seq)
        }
        BalanceOpened { .. } => {
            let b = only(created(&r.event, at)?.balances, "balances")?;
            rows::save_balance(c, &b, seq)
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
        | BalanceUnfrozen { .. } => balance_event(c, r),
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
            let payment: Payment = load(c, "payments", payment_id)?;
            let mut scratch = Ledger::new();
            scratch.payments.insert(payment.id, payment);
            scratch
                .evolve_detached(&r.event, at)
                .map_err(|e| corrupt("refunds", "?", e))?;
            let refund = only(scratch.refunds, "refunds")?;
            let payment = only(scratch.payments, "payments")?;
            rows::save_refund(c, &refund, seq)?;
            rows::save_payment(c, &payment, seq)
        }
        RefundApproved { id, .. } | RefundRejected { id, .. } => {
            let mut refund: Refund = load(c, "refunds", id)?;
            refund.evolve(&r.event, at);
            rows::save_refund(c, &refund, seq)?;
            if refund.status == RefundStatus::Rejected {
                let mut p: Payment = load(c, "payments", refund.payment_id)?;
                p.refunded = p
                    .refunded
                    .checked_sub(refund.amount)
                    .unwrap_or(Amount::ZERO);
                rows::save_payment(c, &p, seq)?;
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

fn balance_event(c: &Connection, r: &RecordedEvent) -> Result<(), SqlError> {
    use Event::*;
    let id = BalanceId::from_uuid(r.event.stream().id);
    let mut b = rows::load_balance(c, &id.to_string())?.ok_or_else(|| missing("balances", id))?;
    evolve_figures(&mut b, &r.event, r.at);
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
    rows::save_balance(c, &b, r.seq)?;
    if let Some(ch) = balance_change(r, &b) {
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
