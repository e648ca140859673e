//! Resources as rows: the columns analysts query, and the `state` column the
//! projection loads, evolves with the domain's own code and stores back.
//!
//! Rationale for the `state` column: the projection applies events with the
//! aggregates' own `evolve`, and the API renders resources with the same
//! `views` the writer uses, so the SQL read models cannot drift from what the
//! domain means by an event, nor answer in other bytes than the writer does.

use super::{corrupt, SqlError};
use ledger_core::codec;
use ledger_core::domain::api_key::ApiKey;
use ledger_core::domain::balance::Balance;
use ledger_core::domain::connection::Connection as Link;
use ledger_core::domain::file::StoredFile;
use ledger_core::domain::invoice::Invoice;
use ledger_core::domain::organization::Organization;
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::ids::ConnectionId;
use ledger_core::money::{Amount, Currency};
use ledger_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) fn ts(t: Timestamp) -> String {
    t.rfc3339()
}

pub(crate) fn money(a: Amount, c: Currency) -> String {
    a.format(c)
}

fn blob<T: Serialize>(table: &'static str, id: impl ToString, v: &T) -> Result<Vec<u8>, SqlError> {
    codec::encode(v).map_err(|e| corrupt(table, id, e))
}

/// Loads and decodes the `state` of one row.
pub fn load<T: DeserializeOwned>(
    conn: &Connection,
    table: &'static str,
    id: &str,
) -> Result<Option<T>, SqlError> {
    let sql = format!("SELECT state FROM {table} WHERE id = ?1");
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(&sql)?
        .query_row([id], |r| r.get(0))
        .optional()?;
    bytes
        .map(|b| codec::decode(&b).map_err(|e| corrupt(table, id, e)))
        .transpose()
}

/// Decodes a `state` column read by a query.
pub fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, SqlError> {
    codec::decode(bytes).map_err(|e| corrupt(table, "?", e))
}

pub fn save_organization(c: &Connection, o: &Organization, seq: u64) -> Result<(), SqlError> {
    c.prepare_cached(
        "INSERT INTO organizations (id, name, created_at_utc, seq, state) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        o.id.to_string(),
        o.name,
        ts(o.created_at),
        seq as i64,
        blob("organizations", o.id, o)?
    ])?;
    Ok(())
}

/// API keys keep their secret's hash in its own column for authentication
/// (see the migration), and out of `state`.
pub fn save_api_key(c: &Connection, k: &ApiKey, seq: u64) -> Result<(), SqlError> {
    let hash = hex::encode(k.secret_hash);
    let mut k = k.clone();
    k.secret_hash = [0; 32];
    let permissions: Vec<&str> = k.permissions.iter().map(|p| p.name()).collect();
    c.prepare_cached(
        "INSERT INTO api_keys (id, organization_id, name, permissions, expires_at_utc, revoked_at_utc,
                               created_at_utc, seq, state, secret_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET revoked_at_utc = excluded.revoked_at_utc, state = excluded.state",
    )?
    .execute(params![
        k.id.to_string(),
        k.organization_id.to_string(),
        k.name,
        permissions.join(" "),
        k.expires_at.map(ts),
        k.revoked_at.map(ts),
        ts(k.created_at),
        seq as i64,
        blob("api_keys", k.id, &k)?,
        hash
    ])?;
    Ok(())
}

pub fn save_connection(c: &Connection, l: &Link, seq: u64) -> Result<(), SqlError> {
    c.prepare_cached(
        "INSERT INTO connections (id, seller_organization_id, buyer_organization_id,
                                  requested_by_organization_id, status, created_at_utc, updated_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             updated_at_utc = excluded.updated_at_utc, state = excluded.state",
    )?
    .execute(params![
        l.id.to_string(),
        l.seller_organization_id.to_string(),
        l.buyer_organization_id.to_string(),
        l.requested_by.to_string(),
        l.status.as_str(),
        ts(l.created_at),
        ts(l.updated_at),
        seq as i64,
        blob("connections", l.id, l)?
    ])?;
    Ok(())
}

/// A connection as the API shows it: the resource, and why it was rejected
/// (kept beside it, not in it: the resource's encoding predates reasons).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRow {
    pub link: Link,
    pub rejection_reason: Option<String>,
}

/// The columns [`connection_row`] reads, in its order.
pub const CONNECTION_COLUMNS: &str = "state, rejection_reason";

/// A [`ConnectionRow`] from [`CONNECTION_COLUMNS`], the first at column `at`.
pub fn connection_row(r: &rusqlite::Row<'_>, at: usize) -> Result<ConnectionRow, SqlError> {
    let state: Vec<u8> = r.get(at)?;
    Ok(ConnectionRow {
        link: decode("connections", &state)?,
        rejection_reason: r.get(at + 1)?,
    })
}

pub fn load_connection(
    c: &Connection,
    id: ConnectionId,
) -> Result<Option<ConnectionRow>, SqlError> {
    let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = ?1");
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query([id.to_string()])?;
    rows.next()?.map(|r| connection_row(r, 0)).transpose()
}

pub fn save_rejection_reason(
    c: &Connection,
    id: ConnectionId,
    reason: &str,
) -> Result<(), SqlError> {
    c.prepare_cached("UPDATE connections SET rejection_reason = ?2 WHERE id = ?1")?
        .execute(params![id.to_string(), reason])?;
    Ok(())
}

/// The list's sort keys: they order as strings exactly as the fields order,
/// with creation time and id breaking ties.
pub fn invoice_keys(inv: &Invoice) -> (String, String, String) {
    let created = format!("{:020}:{}", inv.created_at.as_micros().max(0), inv.id);
    let due = format!("{}:{created}", inv.due_date);
    let scaled = inv.totals().total.as_decimal() * rust_decimal::Decimal::from(1000);
    let total = format!("{:030}:{created}", scaled.trunc().mantissa().max(0));
    (created, due, total)
}

/// What of an invoice an event changed, so a status change does not rewrite
/// its line items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceChange {
    pub created: bool,
    pub line_items: bool,
    pub attachments: bool,
}

pub fn save_invoice(
    c: &Connection,
    inv: &Invoice,
    seq: u64,
    change: InvoiceChange,
) -> Result<(), SqlError> {
    let cur = inv.currency;
    let t = inv.totals();
    let id = inv.id.to_string();
    let cancellation = inv.cancellation.as_ref();
    c.prepare_cached(
        "INSERT INTO invoices (id, number, connection_id, seller_organization_id, buyer_organization_id,
             currency, status, issue_date, due_date, memo, subtotal, tax_total, total, approved_amount,
             adjustment_reason, dispute_reason, info_request, info_response, cancellation_requested_by,
             cancellation_request_reason, cancellation_return_status, cancellation_reason,
             archived_from_status, payment_id, visible_to_buyer, payment_due_notified, version,
             created_at_utc, updated_at_utc, created_micros, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                 ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)
         ON CONFLICT (id) DO UPDATE SET number = excluded.number, status = excluded.status,
             due_date = excluded.due_date, memo = excluded.memo, subtotal = excluded.subtotal,
             tax_total = excluded.tax_total, total = excluded.total,
             approved_amount = excluded.approved_amount, adjustment_reason = excluded.adjustment_reason,
             dispute_reason = excluded.dispute_reason, info_request = excluded.info_request,
             info_response = excluded.info_response,
             cancellation_requested_by = excluded.cancellation_requested_by,
             cancellation_request_reason = excluded.cancellation_request_reason,
             cancellation_return_status = excluded.cancellation_return_status,
             cancellation_reason = excluded.cancellation_reason,
             archived_from_status = excluded.archived_from_status, payment_id = excluded.payment_id,
             visible_to_buyer = excluded.visible_to_buyer,
             payment_due_notified = excluded.payment_due_notified, version = excluded.version,
             updated_at_utc = excluded.updated_at_utc, state = excluded.state",
    )?
    .execute(params![
        id,
        inv.number,
        inv.connection_id.to_string(),
        inv.seller_organization_id.to_string(),
        inv.buyer_organization_id.to_string(),
        cur.code(),
        inv.status.as_str(),
        inv.issue_date.to_string(),
        inv.due_date.to_string(),
        inv.memo,
        money(t.subtotal, cur),
        money(t.tax_total, cur),
        money(t.total, cur),
        inv.approved_amount.map(|a| money(a, cur)),
        inv.adjustment_reason,
        inv.dispute_reason,
        inv.info_request,
        inv.info_response,
        cancellation.map(|r| ledger_core::domain::invoice::party_name(r.by).to_uppercase()),
        cancellation.map(|r| r.reason.clone()),
        cancellation.map(|r| r.return_to.as_str()),
        inv.cancellation_reason,
        inv.archived_from.map(|s| s.as_str()),
        inv.payment_id.map(|p| p.to_string()),
        inv.visible_to_buyer,
        inv.payment_due_notified,
        inv.version as i64,
        ts(inv.created_at),
        ts(inv.updated_at),
        inv.created_at.as_micros(),
        seq as i64,
        blob("invoices", &id, inv)?
    ])?;
    if change.line_items {
        if !change.created {
            c.prepare_cached("DELETE FROM invoice_line_items WHERE invoice_id = ?1")?
                .execute([&id])?;
        }
        let mut insert = c.prepare_cached(
            "INSERT INTO invoice_line_items (invoice_id, position, id, description, quantity,
                 unit_price, tax_rate, amount, tax_amount)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (i, l) in inv.line_items.iter().enumerate() {
            insert.execute(params![
                id,
                i as i64,
                l.id.to_string(),
                l.description,
                l.quantity.to_string(),
                money(l.unit_price, cur),
                l.tax_rate.to_string(),
                money(l.amount, cur),
                money(l.tax_amount, cur),
            ])?;
        }
    }
    if change.attachments {
        if !change.created {
            c.prepare_cached("DELETE FROM invoice_attachments WHERE invoice_id = ?1")?
                .execute([&id])?;
        }
        let mut insert = c.prepare_cached(
            "INSERT INTO invoice_attachments (invoice_id, position, file_id) VALUES (?1, ?2, ?3)",
        )?;
        for (i, f) in inv.attachments.iter().enumerate() {
            insert.execute(params![id, i as i64, f.to_string()])?;
        }
    }
    save_invoice_parties(c, inv)
}

/// An invoice's per-organization list rows in `invoice_parties` (the
/// seller's always, the buyer's once the invoice was submitted), each
/// written only where it changed.
///
/// Rationale: the table has six indexes, most led by the organization, so
/// each row's entries lie on pages of their own. An upsert setting every
/// mutable column rewrote the entries of every index naming one, even when
/// only the status moved; every page it dirtied went to the WAL at commit,
/// and that was the fold's largest cost under a lifecycle load. The insert
/// below does nothing to a row that exists, and each update changes only
/// rows whose values differ.
fn save_invoice_parties(c: &Connection, inv: &Invoice) -> Result<(), SqlError> {
    let (created, due, total) = invoice_keys(inv);
    let mut insert = c.prepare_cached(
        "INSERT INTO invoice_parties (organization_id, invoice_id, role, counterparty_id, connection_id,
             status, currency, due_date, created_key, due_key, total_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (organization_id, invoice_id) DO NOTHING",
    )?;
    let mut set_status = c.prepare_cached(
        "UPDATE invoice_parties SET status = ?3
         WHERE organization_id = ?1 AND invoice_id = ?2 AND status <> ?3",
    )?;
    let mut set_terms = c.prepare_cached(
        "UPDATE invoice_parties SET due_date = ?3, due_key = ?4, total_key = ?5
         WHERE organization_id = ?1 AND invoice_id = ?2
           AND (due_date <> ?3 OR due_key <> ?4 OR total_key <> ?5)",
    )?;
    let id = inv.id.to_string();
    let (status, due_date) = (inv.status.as_str(), inv.due_date.to_string());
    let mut parties = vec![(
        inv.seller_organization_id,
        "SELLER",
        inv.buyer_organization_id,
    )];
    if inv.visible_to_buyer {
        parties.push((
            inv.buyer_organization_id,
            "BUYER",
            inv.seller_organization_id,
        ));
    }
    for (org, role, counterparty) in parties {
        let org = org.to_string();
        insert.execute(params![
            org,
            id,
            role,
            counterparty.to_string(),
            inv.connection_id.to_string(),
            status,
            inv.currency.code(),
            due_date,
            created,
            due,
            total,
        ])?;
        set_status.execute(params![org, id, status])?;
        set_terms.execute(params![org, id, due_date, due, total])?;
    }
    Ok(())
}

pub fn save_payment(c: &Connection, p: &Payment, seq: u64) -> Result<(), SqlError> {
    let cur = p.currency;
    c.prepare_cached(
        "INSERT INTO payments (id, invoice_id, payer_organization_id, payee_organization_id, currency,
             amount, status, failure_reason, attempts, payer_transaction_id, payee_transaction_id,
             refunded_amount, created_at_utc, completed_at_utc, updated_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             failure_reason = excluded.failure_reason, attempts = excluded.attempts,
             payer_transaction_id = excluded.payer_transaction_id,
             payee_transaction_id = excluded.payee_transaction_id,
             refunded_amount = excluded.refunded_amount, completed_at_utc = excluded.completed_at_utc,
             updated_at_utc = excluded.updated_at_utc, state = excluded.state",
    )?
    .execute(params![
        p.id.to_string(),
        p.invoice_id.to_string(),
        p.payer_organization_id.to_string(),
        p.payee_organization_id.to_string(),
        cur.code(),
        money(p.amount, cur),
        p.status.as_str(),
        p.failure_reason,
        p.attempts,
        p.payer_transaction_id.map(|t| t.to_string()),
        p.payee_transaction_id.map(|t| t.to_string()),
        money(p.refunded, cur),
        ts(p.created_at),
        p.completed_at.map(ts),
        ts(p.updated_at),
        seq as i64,
        blob("payments", p.id, p)?
    ])?;
    Ok(())
}

/// Balances have no `state` column: their figures are columns, and their
/// holds rows of `balance_holds` (a balance may hold many reservations, which
/// must not be rewritten with every change).
pub fn save_balance(c: &Connection, b: &Balance, seq: u64) -> Result<(), SqlError> {
    let cur = b.currency;
    c.prepare_cached(
        "INSERT INTO balances (id, organization_id, currency, total, reserved, collateral, available,
             frozen, created_at_utc, updated_at_utc, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET total = excluded.total, reserved = excluded.reserved,
             collateral = excluded.collateral, available = excluded.available,
             frozen = excluded.frozen, updated_at_utc = excluded.updated_at_utc",
    )?
    .execute(params![
        b.id.to_string(),
        b.organization_id.to_string(),
        cur.code(),
        money(b.total, cur),
        money(b.reserved, cur),
        money(b.collateral, cur),
        money(b.available(), cur),
        b.frozen,
        ts(b.created_at),
        ts(b.updated_at),
        seq as i64,
    ])?;
    Ok(())
}

const BALANCE_COLUMNS: &str =
    "id, organization_id, currency, total, reserved, collateral, frozen, created_at_utc, updated_at_utc";

/// A balance from its row; `holds` is left empty (see `balance_holds`).
fn balance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Balance, String>> {
    let id: String = r.get(0)?;
    let org: String = r.get(1)?;
    let currency: String = r.get(2)?;
    let total: String = r.get(3)?;
    let reserved: String = r.get(4)?;
    let collateral: String = r.get(5)?;
    let frozen: bool = r.get(6)?;
    let created: String = r.get(7)?;
    let updated: String = r.get(8)?;
    Ok((|| {
        let amount = |s: &str| Amount::parse_stored(s).map_err(|e| e.to_string());
        let time = |s: &str| Timestamp::parse_rfc3339(s).ok_or_else(|| format!("bad time {s}"));
        Ok(Balance {
            id: id
                .parse()
                .map_err(|e: ledger_core::ids::IdError| e.to_string())?,
            organization_id: org
                .parse()
                .map_err(|e: ledger_core::ids::IdError| e.to_string())?,
            currency: Currency::parse(&currency).map_err(|e| e.to_string())?,
            total: amount(&total)?,
            reserved: amount(&reserved)?,
            collateral: amount(&collateral)?,
            frozen,
            holds: Default::default(),
            created_at: time(&created)?,
            updated_at: time(&updated)?,
        })
    })())
}

pub fn load_balance(c: &Connection, id: &str) -> Result<Option<Balance>, SqlError> {
    let sql = format!("SELECT {BALANCE_COLUMNS} FROM balances WHERE id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id], balance_row)
        .optional()?;
    row.map(|r| r.map_err(|e| corrupt("balances", id, e)))
        .transpose()
}

pub fn balances_where(
    c: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Balance>, SqlError> {
    let sql = format!("SELECT {BALANCE_COLUMNS} FROM balances WHERE {clause}");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, balance_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.map_err(|e| corrupt("balances", "?", e))?);
    }
    Ok(out)
}

pub fn save_withdrawal(c: &Connection, w: &Withdrawal, seq: u64) -> Result<(), SqlError> {
    let cur = w.currency;
    let destination = serde_json::to_string(&w.destination.fields).unwrap_or_default();
    c.prepare_cached(
        "INSERT INTO withdrawals (id, organization_id, balance_id, currency, amount, destination_json,
             status, submitted_by_api_key_id, decided_by_api_key_id, rejection_reason, transaction_id,
             created_at_utc, updated_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             decided_by_api_key_id = excluded.decided_by_api_key_id,
             rejection_reason = excluded.rejection_reason, transaction_id = excluded.transaction_id,
             updated_at_utc = excluded.updated_at_utc, state = excluded.state",
    )?
    .execute(params![
        w.id.to_string(),
        w.organization_id.to_string(),
        w.balance_id.to_string(),
        cur.code(),
        money(w.amount, cur),
        destination,
        w.status.as_str(),
        w.submitted_by.to_string(),
        w.decided_by.map(|k| k.to_string()),
        w.rejection_reason,
        w.transaction_id.map(|t| t.to_string()),
        ts(w.created_at),
        ts(w.updated_at),
        seq as i64,
        blob("withdrawals", w.id, w)?
    ])?;
    Ok(())
}

pub fn save_refund(c: &Connection, r: &Refund, seq: u64) -> Result<(), SqlError> {
    let cur = r.currency;
    c.prepare_cached(
        "INSERT INTO refunds (id, transaction_id, payment_id, invoice_id, payee_organization_id,
             payer_organization_id, requested_by_organization_id, currency, amount, reason, status,
             rejection_reason, payee_transaction_id, payer_transaction_id, created_at_utc,
             updated_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             rejection_reason = excluded.rejection_reason,
             payee_transaction_id = excluded.payee_transaction_id,
             payer_transaction_id = excluded.payer_transaction_id,
             updated_at_utc = excluded.updated_at_utc, state = excluded.state",
    )?
    .execute(params![
        r.id.to_string(),
        r.transaction_id.to_string(),
        r.payment_id.to_string(),
        r.invoice_id.to_string(),
        r.payee_organization_id.to_string(),
        r.payer_organization_id.to_string(),
        r.requested_by.to_string(),
        cur.code(),
        money(r.amount, cur),
        r.reason,
        r.status.as_str(),
        r.rejection_reason,
        r.payee_transaction_id.map(|t| t.to_string()),
        r.payer_transaction_id.map(|t| t.to_string()),
        ts(r.created_at),
        ts(r.updated_at),
        seq as i64,
        blob("refunds", r.id, r)?
    ])?;
    Ok(())
}

/// Webhook endpoints are stored without their signing secrets.
pub fn save_webhook_endpoint(
    c: &Connection,
    e: &WebhookEndpoint,
    seq: u64,
) -> Result<(), SqlError> {
    let mut e = e.clone();
    e.secret = String::new();
    e.previous_secret = None;
    c.prepare_cached(
        "INSERT INTO webhook_endpoints (id, organization_id, url, events, description, enabled, deleted,
             created_at_utc, updated_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events,
             description = excluded.description, enabled = excluded.enabled,
             deleted = excluded.deleted, updated_at_utc = excluded.updated_at_utc,
             state = excluded.state",
    )?
    .execute(params![
        e.id.to_string(),
        e.organization_id.to_string(),
        e.url,
        e.events.join(" "),
        e.description,
        e.enabled,
        e.deleted,
        ts(e.created_at),
        ts(e.updated_at),
        seq as i64,
        blob("webhook_endpoints", e.id, &e)?
    ])?;
    Ok(())
}

pub fn save_file(c: &Connection, f: &StoredFile, seq: u64) -> Result<(), SqlError> {
    c.prepare_cached(
        "INSERT INTO files (id, organization_id, filename, content_type, size_bytes, sha256, deleted,
             created_at_utc, seq, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET deleted = excluded.deleted, state = excluded.state",
    )?
    .execute(params![
        f.id.to_string(),
        f.organization_id.to_string(),
        f.filename,
        f.content_type,
        f.size as i64,
        hex::encode(f.sha256),
        f.deleted,
        ts(f.created_at),
        seq as i64,
        blob("files", f.id, f)?
    ])?;
    Ok(())
}

/// The columns [`transaction_row`] reads, in its order.
pub const TRANSACTION_COLUMNS: &str =
    "id, seq, type, organization_id, balance_id, currency, amount, \
     total_after, reference, invoice_id, payment_id, withdrawal_id, refund_id, \
     counterparty_organization_id, created_micros";

fn parse_opt<T: std::str::FromStr>(v: Option<String>) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    v.map(|s| s.parse::<T>().map_err(|e| e.to_string()))
        .transpose()
}

/// A transaction from its row (transactions have no `state`: every field is a column).
pub fn transaction_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<crate::Transaction, String>> {
    let id: String = r.get(0)?;
    let seq: i64 = r.get(1)?;
    let kind: String = r.get(2)?;
    let org: String = r.get(3)?;
    let balance: String = r.get(4)?;
    let currency: String = r.get(5)?;
    let amount: String = r.get(6)?;
    let total_after: String = r.get(7)?;
    let reference: Option<String> = r.get(8)?;
    let invoice: Option<String> = r.get(9)?;
    let payment: Option<String> = r.get(10)?;
    let withdrawal: Option<String> = r.get(11)?;
    let refund: Option<String> = r.get(12)?;
    let counterparty: Option<String> = r.get(13)?;
    let created: i64 = r.get(14)?;
    Ok((|| {
        let money = |s: &str| Amount::parse_stored(s).map_err(|e| e.to_string());
        Ok(crate::Transaction {
            id: id
                .parse()
                .map_err(|e: ledger_core::ids::IdError| e.to_string())?,
            seq: seq.max(0) as u64,
            kind: crate::TransactionType::parse(&kind).ok_or_else(|| format!("type {kind}"))?,
            organization_id: org
                .parse()
                .map_err(|e: ledger_core::ids::IdError| e.to_string())?,
            balance_id: balance
                .parse()
                .map_err(|e: ledger_core::ids::IdError| e.to_string())?,
            currency: Currency::parse(&currency).map_err(|e| e.to_string())?,
            amount: money(&amount)?,
            total_after: money(&total_after)?,
            reference,
            invoice_id: parse_opt(invoice)?,
            payment_id: parse_opt(payment)?,
            withdrawal_id: parse_opt(withdrawal)?,
            refund_id: parse_opt(refund)?,
            counterparty_organization_id: parse_opt(counterparty)?,
            created_at: Timestamp::from_micros(created),
        })
    })())
}

pub fn load_transaction(
    c: &Connection,
    id: ledger_core::ids::TransactionId,
) -> Result<Option<crate::Transaction>, SqlError> {
    let sql = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id.to_string()], transaction_row)
        .optional()?;
    row.map(|r| r.map_err(|e| corrupt("transactions", id, e)))
        .transpose()
}
