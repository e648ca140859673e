//! Treasury: balances (now, as of a moment, change log, summary, usage),
//! transactions, withdrawals and refunds. Every lookup is by primary key or
//! an `(owner, seq)` index; lists are keyset pages in log order (see
//! `payments::keyset`).

use super::payments::keyset::{self, Args, ExportChunk, LogPage, Window};
use crate::model::{BalanceChange, Transaction, TransactionType};
use crate::sql::rows::{self, decode, TRANSACTION_COLUMNS};
use crate::sql::{corrupt, SqlError};
use chrono::{Datelike, Duration, NaiveDate};
use ledger_core::domain::balance::Balance;
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::ids::{BalanceId, OrganizationId, RefundId, TransactionId, WithdrawalId};
use ledger_core::money::{Amount, Currency};
use ledger_core::time::Timestamp;
use rusqlite::types::{FromSql, Value as Sql};
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

/// The organization's balances in the order they were opened.
pub fn balances(c: &Connection, org: OrganizationId) -> Result<Vec<Balance>, SqlError> {
    // The (organization_id, currency) index finds them; ordering by seq sorts
    // one row per currency the organization holds.
    rows::balances_where(c, "organization_id = ?1 ORDER BY seq", &[&org.to_string()])
}

/// The balance if it is `org`'s; `None` otherwise (404, whoever owns it).
pub fn own_balance(
    c: &Connection,
    org: OrganizationId,
    id: BalanceId,
) -> Result<Option<Balance>, SqlError> {
    Ok(rows::load_balance(c, &id.to_string())?.filter(|b| b.organization_id == org))
}

/// The change whose figures a balance had at `at`, `None` before its first.
///
/// Changes are read in log order up to the first one made after `at`: a
/// clock that was set back can give a later change an earlier time, and the
/// balance as it stood at `at` is the log's prefix until the clock passed it.
pub fn balance_as_of(
    c: &Connection,
    balance: BalanceId,
    at: Timestamp,
) -> Result<Option<BalanceChange>, SqlError> {
    let sql = as_of_sql();
    let args = vec![Sql::Text(balance.to_string()), Sql::Integer(at.as_micros())];
    Ok(collect(c, &sql, args, change_row)?.pop().map(|(_, ch)| ch))
}

/// One page of a balance's change log, oldest first, and the cursor key
/// (the last change's zero-padded seq) when there are more.
pub fn list_balance_changes(
    c: &Connection,
    balance: BalanceId,
    page: &LogPage<'_>,
) -> Result<(Vec<BalanceChange>, Option<String>), SqlError> {
    let Some(after) = keyset::after_seq_key(page.after_key) else {
        return Ok((Vec::new(), None));
    };
    let sql = changes_sql();
    let args = Args::window_of(balance.to_string(), Window::page(after, page.limit));
    let rows = collect(c, &sql, args.into_vec(), change_row)?;
    Ok(keyset::split(rows, page.limit, seq_cursor))
}

fn as_of_sql() -> String {
    format!(
        "SELECT {CHANGE_COLUMNS} FROM balance_changes
         WHERE balance_id = ?1 AND seq < COALESCE(
             (SELECT seq FROM balance_changes WHERE balance_id = ?1 AND at_micros > ?2
              ORDER BY seq LIMIT 1),
             9223372036854775807)
         ORDER BY seq DESC LIMIT 1"
    )
}

fn changes_sql() -> String {
    format!(
        "SELECT {CHANGE_COLUMNS} FROM balance_changes
         WHERE balance_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4"
    )
}

const CHANGE_COLUMNS: &str = "seq, at_micros, kind, amount, total_after, reserved_after,
    collateral_after, available_after, frozen_after, cause_type, cause_id";

fn change_row(r: &Row<'_>) -> Result<(i64, BalanceChange), SqlError> {
    let seq: i64 = r.get(0)?;
    let cells = Cells::new(r, "balance_changes", seq);
    let change = BalanceChange {
        seq: cells.seq(seq)?,
        at: Timestamp::from_micros(cells.get(1)?),
        kind: cells.get(2)?,
        amount: cells.amount(3)?,
        total_after: cells.amount(4)?,
        reserved_after: cells.amount(5)?,
        collateral_after: cells.amount(6)?,
        available_after: cells.amount(7)?,
        frozen_after: cells.get(8)?,
        cause_type: cells.get(9)?,
        cause_id: cells.get(10)?,
    };
    Ok((seq, change))
}

fn seq_cursor<T>((seq, _): &(i64, T)) -> String {
    keyset::seq_key(u64::try_from(*seq).unwrap_or(0))
}

/// One currency of the summary: the balance's figures and what approved
/// invoices will move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CurrencySummary {
    pub total: Amount,
    pub reserved: Amount,
    pub collateral: Amount,
    pub available: Amount,
    /// Approved amounts owed to the organization (it is the seller).
    pub receivable: Amount,
    /// Approved amounts the organization owes (it is the buyer).
    pub payable: Amount,
}

/// Statuses in which an approved amount is still to be paid.
const OWED: [InvoiceStatus; 3] = [
    InvoiceStatus::Approved,
    InvoiceStatus::ApprovedWithAdjustment,
    InvoiceStatus::CancellationRequested,
];

/// Approved amounts by the organization's role, through the
/// (organization_id, status) index of its invoice rows.
const OWED_SQL: &str = "SELECT p.invoice_id, p.role, i.currency, i.approved_amount
    FROM invoice_parties p JOIN invoices i ON i.id = p.invoice_id
    WHERE p.organization_id = ?1 AND p.status IN (?2, ?3, ?4) AND i.approved_amount IS NOT NULL";

/// Per currency, the organization's balance and its receivables and payables.
pub fn summary(
    c: &Connection,
    org: OrganizationId,
) -> Result<BTreeMap<Currency, CurrencySummary>, SqlError> {
    let mut out: BTreeMap<Currency, CurrencySummary> = BTreeMap::new();
    for b in balances(c, org)? {
        let s = out.entry(b.currency).or_default();
        s.total = b.total;
        s.reserved = b.reserved;
        s.collateral = b.collateral;
        s.available = b.available();
    }
    // Sums are made here, exactly; SQL would add the TEXT amounts as floats.
    let mut args = vec![Sql::Text(org.to_string())];
    args.extend(OWED.map(|s| Sql::Text(s.as_str().into())));
    let owed = collect(c, OWED_SQL, args, |r| {
        let id: String = r.get(0)?;
        let cells = Cells::new(r, "invoices", id);
        Ok((
            cells.get::<String>(1)?,
            cells.parse::<Currency>(2)?,
            cells.amount(3)?,
        ))
    })?;
    for (role, currency, amount) in owed {
        let s = out.entry(currency).or_default();
        let sum = match role.as_str() {
            "SELLER" => &mut s.receivable,
            _ => &mut s.payable,
        };
        *sum = sum.checked_add(amount).unwrap_or(*sum);
    }
    Ok(out)
}

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The first day of the bucket holding `d` (weeks start on Monday).
    pub fn start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => d,
            Self::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Self::Month => d.with_day(1).unwrap_or(d),
        }
    }
}

/// Money in and out of a balance over one bucket, and its total after the
/// bucket's last movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBucket {
    pub start: NaiveDate,
    pub inflow: Amount,
    pub outflow: Amount,
    pub closing: Amount,
}

impl UsageBucket {
    fn empty(start: NaiveDate) -> Self {
        Self {
            start,
            inflow: Amount::ZERO,
            outflow: Amount::ZERO,
            closing: Amount::ZERO,
        }
    }

    /// Counts one movement; movements come in log order, so the last one
    /// added leaves the closing balance.
    fn add(&mut self, kind: TransactionType, amount: Amount, total_after: Amount) {
        let inflow = matches!(
            kind,
            TransactionType::Deposit | TransactionType::SettlementIn | TransactionType::RefundIn
        );
        let sum = if inflow {
            &mut self.inflow
        } else {
            &mut self.outflow
        };
        *sum = sum.checked_add(amount).unwrap_or(*sum);
        self.closing = total_after;
    }
}

/// The balance's money movements made in `[from, to)`, bucketed by the UTC
/// date they were made; buckets without movements are left out.
pub fn usage(
    c: &Connection,
    balance: BalanceId,
    interval: Interval,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<Vec<UsageBucket>, SqlError> {
    // The change log has one row per transaction, under the transaction's type
    // as its kind, beside reservations and operator changes that move no money.
    let mut args = vec![Sql::Text(balance.to_string())];
    let kinds: Vec<String> = TransactionType::ALL
        .iter()
        .map(|k| {
            args.push(Sql::Text(k.as_str().into()));
            format!("?{}", args.len())
        })
        .collect();
    let mut bounds = String::new();
    for (bound, op) in [(from, ">="), (to, "<")] {
        if let Some(t) = bound {
            args.push(Sql::Integer(t.as_micros()));
            bounds += &format!(" AND at_micros {op} ?{}", args.len());
        }
    }
    let sql = usage_sql(&kinds.join(", "), &bounds);
    let mut buckets: BTreeMap<NaiveDate, UsageBucket> = BTreeMap::new();
    let mut stmt = c.prepare_cached(&sql)?;
    let mut found = stmt.query(params_from_iter(args))?;
    // Folded row by row: a balance's whole history need not be held.
    while let Some(r) = found.next()? {
        let seq: i64 = r.get(0)?;
        let cells = Cells::new(r, "balance_changes", seq);
        let at = Timestamp::from_micros(cells.get(1)?);
        let kind: String = cells.get(2)?;
        let kind = TransactionType::parse(&kind).ok_or_else(|| cells.bad(kind))?;
        let start = interval.start(at.date());
        buckets
            .entry(start)
            .or_insert_with(|| UsageBucket::empty(start))
            .add(kind, cells.amount(3)?, cells.amount(4)?);
    }
    Ok(buckets.into_values().collect())
}

fn usage_sql(kinds: &str, bounds: &str) -> String {
    format!(
        "SELECT seq, at_micros, kind, amount, total_after FROM balance_changes
         WHERE balance_id = ?1 AND kind IN ({kinds}){bounds} ORDER BY seq"
    )
}

/// The transaction list's filters (API.md, Treasury), already parsed; `from`
/// is inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub kind: Option<TransactionType>,
    pub currency: Option<Currency>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

fn transaction_row(r: &Row<'_>) -> Result<(i64, Transaction), SqlError> {
    let t = rows::transaction_row(r)?.map_err(|e| corrupt("transactions", "?", e))?;
    let seq = i64::try_from(t.seq).map_err(|e| corrupt("transactions", t.id, e))?;
    Ok((seq, t))
}

/// The transaction if it moved `org`'s money; `None` otherwise (404).
pub fn own_transaction(
    c: &Connection,
    org: OrganizationId,
    id: TransactionId,
) -> Result<Option<Transaction>, SqlError> {
    Ok(rows::load_transaction(c, id)?.filter(|t| t.organization_id == org))
}

/// One page of the organization's transactions, oldest first, and the
/// cursor key (the last one's zero-padded seq) when there are more.
pub fn list_transactions(
    c: &Connection,
    org: OrganizationId,
    filter: &TransactionFilter,
    page: &LogPage<'_>,
) -> Result<(Vec<Transaction>, Option<String>), SqlError> {
    let Some(after) = keyset::after_seq_key(page.after_key) else {
        return Ok((Vec::new(), None));
    };
    let rows = transactions_in(c, org, filter, Window::page(after, page.limit))?;
    Ok(keyset::split(rows, page.limit, seq_cursor))
}

/// One chunk of the transactions export, with each transaction's seq.
pub fn export_transactions(
    c: &Connection,
    org: OrganizationId,
    filter: &TransactionFilter,
    chunk: ExportChunk,
) -> Result<Vec<(u64, Transaction)>, SqlError> {
    let rows = transactions_in(c, org, filter, Window::chunk(chunk))?;
    Ok(keyset::with_seqs(rows))
}

fn transactions_in(
    c: &Connection,
    org: OrganizationId,
    f: &TransactionFilter,
    w: Window,
) -> Result<Vec<(i64, Transaction)>, SqlError> {
    let mut q = Args::window(org, w);
    let mut extra = String::new();
    if let Some(k) = f.kind {
        extra += &format!(" AND type = {}", q.bind(Sql::Text(k.as_str().into())));
    }
    if let Some(cur) = f.currency {
        extra += &format!(" AND currency = {}", q.bind(Sql::Text(cur.code().into())));
    }
    if let Some(t) = f.from {
        extra += &format!(
            " AND created_micros >= {}",
            q.bind(Sql::Integer(t.as_micros()))
        );
    }
    if let Some(t) = f.to {
        extra += &format!(
            " AND created_micros < {}",
            q.bind(Sql::Integer(t.as_micros()))
        );
    }
    let sql = transactions_sql(&extra);
    collect(c, &sql, q.into_vec(), transaction_row)
}

fn transactions_sql(extra: &str) -> String {
    format!(
        "SELECT {TRANSACTION_COLUMNS} FROM transactions
         WHERE organization_id = ?1 AND seq > ?2 AND seq <= ?3{extra}
         ORDER BY seq LIMIT ?4"
    )
}

/// The withdrawal if it is `org`'s; `None` otherwise (404).
pub fn own_withdrawal(
    c: &Connection,
    org: OrganizationId,
    id: WithdrawalId,
) -> Result<Option<Withdrawal>, SqlError> {
    state_of(
        c,
        "withdrawals",
        "SELECT state FROM withdrawals WHERE id = ?1 AND organization_id = ?2",
        [id.to_string(), org.to_string()],
    )
}

/// One page of the organization's withdrawals, oldest first, and the cursor
/// key (the last one's id) when there are more. `status` is compared as
/// given: one no withdrawal has matches none.
pub fn list_withdrawals(
    c: &Connection,
    org: OrganizationId,
    status: Option<&str>,
    page: &LogPage<'_>,
) -> Result<(Vec<Withdrawal>, Option<String>), SqlError> {
    let Some(after) = keyset::after_id(c, "withdrawals", page.after_key)? else {
        return Ok((Vec::new(), None));
    };
    let mut q = Args::window(org, Window::page(after, page.limit));
    let extra = match status {
        Some(s) => format!(" AND status = {}", q.bind(Sql::Text(s.into()))),
        None => String::new(),
    };
    let sql = withdrawals_sql(&extra);
    let rows: Vec<(i64, Withdrawal)> = keyset::states(c, "withdrawals", &sql, q)?;
    Ok(keyset::split(rows, page.limit, |(_, w)| w.id.to_string()))
}

fn withdrawals_sql(extra: &str) -> String {
    format!(
        "SELECT seq, state FROM withdrawals
         WHERE organization_id = ?1 AND seq > ?2 AND seq <= ?3{extra}
         ORDER BY seq LIMIT ?4"
    )
}

/// The refund as `org` may see it: payee or payer. `None` otherwise (404).
pub fn visible_refund(
    c: &Connection,
    org: OrganizationId,
    id: RefundId,
) -> Result<Option<Refund>, SqlError> {
    state_of(
        c,
        "refunds",
        "SELECT state FROM refunds
         WHERE id = ?1 AND (payee_organization_id = ?2 OR payer_organization_id = ?2)",
        [id.to_string(), org.to_string()],
    )
}

/// One page of the refunds `org` is a party to, oldest first, and the
/// cursor key (the last one's id) when there are more.
pub fn list_refunds(
    c: &Connection,
    org: OrganizationId,
    page: &LogPage<'_>,
) -> Result<(Vec<Refund>, Option<String>), SqlError> {
    let Some(after) = keyset::after_id(c, "refunds", page.after_key)? else {
        return Ok((Vec::new(), None));
    };
    let q = Args::window(org, Window::page(after, page.limit));
    let sql = keyset::either_party(
        "refunds",
        ("payee_organization_id", "payer_organization_id"),
        "",
    );
    let rows: Vec<(i64, Refund)> = keyset::states(c, "refunds", &sql, q)?;
    Ok(keyset::split(rows, page.limit, |(_, r)| r.id.to_string()))
}

fn state_of<T: DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    sql: &str,
    args: [String; 2],
) -> Result<Option<T>, SqlError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached(sql)?
        .query_row(args, |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode(table, &b)).transpose()
}

fn collect<T>(
    c: &Connection,
    sql: &str,
    args: Vec<Sql>,
    row: impl Fn(&Row<'_>) -> Result<T, SqlError>,
) -> Result<Vec<T>, SqlError> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut found = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = found.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}

/// A row's cells, read back into domain values; a value that does not parse
/// is a corrupt row, named by table and id.
struct Cells<'a, 'r> {
    row: &'a Row<'r>,
    table: &'static str,
    id: String,
}

impl<'a, 'r> Cells<'a, 'r> {
    fn new(row: &'a Row<'r>, table: &'static str, id: impl ToString) -> Self {
        Self {
            row,
            table,
            id: id.to_string(),
        }
    }

    fn bad(&self, reason: impl Display) -> SqlError {
        corrupt(self.table, &self.id, reason)
    }

    fn get<T: FromSql>(&self, i: usize) -> Result<T, SqlError> {
        Ok(self.row.get(i)?)
    }

    fn parse<T: FromStr>(&self, i: usize) -> Result<T, SqlError>
    where
        T::Err: Display,
    {
        let s: String = self.get(i)?;
        s.parse().map_err(|e| self.bad(e))
    }

    fn amount(&self, i: usize) -> Result<Amount, SqlError> {
        let s: String = self.get(i)?;
        Amount::parse_stored(&s).map_err(|e| self.bad(e))
    }

    fn seq(&self, seq: i64) -> Result<u64, SqlError> {
        u64::try_from(seq).map_err(|e| self.bad(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::queries::payments::keyset::{assert_indexed, plan};

    fn uses(sql: &str, index: &str) {
        let plan = plan(sql).join("\n");
        assert!(plan.contains(index), "{sql}\n{plan}");
    }

    #[test]
    fn list_pages_are_index_ranges_in_seq_order() {
        let transactions =
            transactions_sql(" AND type = ?5 AND currency = ?6 AND created_micros >= ?7");
        assert_indexed(&transactions, false);
        uses(
            &transactions,
            "transactions_by_organization (organization_id=? AND seq>? AND seq<?)",
        );
        let withdrawals = withdrawals_sql(" AND status = ?5");
        assert_indexed(&withdrawals, false);
        uses(
            &withdrawals,
            "withdrawals_by_organization (organization_id=? AND seq>? AND seq<?)",
        );
        assert_indexed(&changes_sql(), false);
        uses(
            &changes_sql(),
            "balance_changes_by_balance (balance_id=? AND seq>? AND seq<?)",
        );
        let refunds = keyset::either_party(
            "refunds",
            ("payee_organization_id", "payer_organization_id"),
            "",
        );
        assert_indexed(&refunds, false);
        uses(&refunds, "MERGE (UNION ALL)");
    }

    #[test]
    fn balance_reads_stay_on_the_balance_s_own_rows() {
        assert_indexed(&as_of_sql(), false);
        uses(
            &as_of_sql(),
            "balance_changes_by_balance (balance_id=? AND seq<?)",
        );
        let usage = usage_sql("?2, ?3", " AND at_micros >= ?4 AND at_micros < ?5");
        assert_indexed(&usage, false);
        uses(&usage, "balance_changes_by_balance (balance_id=?)");
        // One row per currency the organization holds, sorted by opening.
        assert_indexed(
            "SELECT id FROM balances WHERE organization_id = ?1 ORDER BY seq",
            true,
        );
        assert_indexed(OWED_SQL, false);
        uses(
            OWED_SQL,
            "invoice_parties_status (organization_id=? AND status=?)",
        );
    }

    #[test]
    fn lookups_are_primary_key_seeks() {
        let transaction = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = ?1");
        assert_indexed(&transaction, false);
        assert_indexed(
            "SELECT state FROM withdrawals WHERE id = ?1 AND organization_id = ?2",
            false,
        );
        assert_indexed(
            "SELECT state FROM refunds
             WHERE id = ?1 AND (payee_organization_id = ?2 OR payer_organization_id = ?2)",
            false,
        );
    }
}
