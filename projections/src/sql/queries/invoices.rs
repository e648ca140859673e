//! Invoices: lookups as a party may see them, and the filtered, sorted list.

use super::PageRequest;
use crate::sql::rows::decode;
use crate::sql::SqlError;
use chrono::NaiveDate;
use ledger_core::domain::invoice::{Invoice, InvoiceStatus};
use ledger_core::events::Party;
use ledger_core::ids::{ConnectionId, InvoiceId, OrganizationId};
use ledger_core::money::Currency;
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

/// The invoice as `org` may see it: the seller always, the buyer from its
/// first submission on. `None` otherwise (404, whoever owns it).
pub fn visible_invoice(
    c: &Connection,
    org: OrganizationId,
    id: InvoiceId,
) -> Result<Option<Invoice>, SqlError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT i.state FROM invoice_parties p JOIN invoices i ON i.id = p.invoice_id
             WHERE p.organization_id = ?1 AND p.invoice_id = ?2",
        )?
        .query_row([org.to_string(), id.to_string()], |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode("invoices", &b)).transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceSort {
    CreatedAt,
    DueDate,
    Total,
}

impl InvoiceSort {
    fn column(self) -> &'static str {
        match self {
            InvoiceSort::CreatedAt => "p.created_key",
            InvoiceSort::DueDate => "p.due_key",
            InvoiceSort::Total => "p.total_key",
        }
    }
}

/// The invoice list's filters (API.md, Invoices), already parsed.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub status: Option<InvoiceStatus>,
    pub role: Option<Party>,
    pub connection: Option<ConnectionId>,
    pub counterparty: Option<OrganizationId>,
    pub currency: Option<Currency>,
    pub due_before: Option<NaiveDate>,
    pub due_after: Option<NaiveDate>,
    /// Lower-case text searched in the number, memo and line descriptions.
    pub q: Option<String>,
}

/// `%` and `_` are wildcards in LIKE; a search for them means the characters.
fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One page of the invoices `org` may see, and the sort key of the last one
/// when there are more.
pub fn list_invoices(
    c: &Connection,
    org: OrganizationId,
    filter: &InvoiceFilter,
    sort: InvoiceSort,
    page: &PageRequest<'_>,
) -> Result<(Vec<Invoice>, Option<String>), SqlError> {
    let key = sort.column();
    let mut sql = format!(
        "SELECT i.state, {key} FROM invoice_parties p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.organization_id = ?"
    );
    let mut args: Vec<Sql> = vec![Sql::Text(org.to_string())];
    let mut and = |clause: &str, value: Sql| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(s) = filter.status {
        and("p.status = ?", Sql::Text(s.as_str().into()));
    }
    if let Some(r) = filter.role {
        let role = match r {
            Party::Seller => "SELLER",
            Party::Buyer => "BUYER",
        };
        and("p.role = ?", Sql::Text(role.into()));
    }
    if let Some(id) = filter.connection {
        and("p.connection_id = ?", Sql::Text(id.to_string()));
    }
    if let Some(id) = filter.counterparty {
        and("p.counterparty_id = ?", Sql::Text(id.to_string()));
    }
    if let Some(cur) = filter.currency {
        and("p.currency = ?", Sql::Text(cur.code().into()));
    }
    if let Some(d) = filter.due_before {
        and("p.due_date <= ?", Sql::Text(d.to_string()));
    }
    if let Some(d) = filter.due_after {
        and("p.due_date >= ?", Sql::Text(d.to_string()));
    }
    if let Some(after) = page.after_key {
        let op = if page.descending { "<" } else { ">" };
        and(&format!("{key} {op} ?"), Sql::Text(after.to_owned()));
    }
    if let Some(q) = &filter.q {
        let pattern = like_pattern(q);
        sql.push_str(
            " AND (lower(i.number) LIKE ? ESCAPE '\\' OR lower(COALESCE(i.memo, '')) LIKE ? ESCAPE '\\'
               OR EXISTS (SELECT 1 FROM invoice_line_items l WHERE l.invoice_id = i.id
                          AND lower(l.description) LIKE ? ESCAPE '\\'))",
        );
        for _ in 0..3 {
            args.push(Sql::Text(pattern.clone()));
        }
    }
    let order = if page.descending { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY {key} {order} LIMIT ?"));
    args.push(Sql::Integer(page.limit as i64 + 1));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut items: Vec<(Invoice, String)> = Vec::with_capacity(page.limit + 1);
    while let Some(row) = rows.next()? {
        let state: Vec<u8> = row.get(0)?;
        let key: String = row.get(1)?;
        items.push((decode("invoices", &state)?, key));
    }
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        items.last().map(|(_, k)| k.clone())
    } else {
        None
    };
    Ok((items.into_iter().map(|(i, _)| i).collect(), next))
}

/// Approved invoices whose due date has come and whose `payment.due` has not
/// fired yet (index `invoices_due`).
pub fn payment_due(
    c: &Connection,
    today: NaiveDate,
    limit: usize,
) -> Result<Vec<InvoiceId>, SqlError> {
    ids(
        c,
        "SELECT id FROM invoices WHERE payment_due_notified = 0
           AND status IN ('APPROVED', 'APPROVED_WITH_ADJUSTMENT') AND due_date <= ?1
         ORDER BY due_date LIMIT ?2",
        &today.to_string(),
        limit,
    )
}

/// Settled or cancelled invoices unchanged since `before` (index
/// `invoices_by_status_updated`; RFC 3339 UTC text of one width orders as time).
pub fn archivable(
    c: &Connection,
    before: ledger_core::time::Timestamp,
    limit: usize,
) -> Result<Vec<InvoiceId>, SqlError> {
    ids(
        c,
        "SELECT id FROM invoices WHERE status IN ('SETTLED', 'CANCELLED') AND updated_at_utc <= ?1
         ORDER BY updated_at_utc LIMIT ?2",
        &before.rfc3339(),
        limit,
    )
}

fn ids(c: &Connection, sql: &str, arg: &str, limit: usize) -> Result<Vec<InvoiceId>, SqlError> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params![arg, limit as i64], |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|id| {
        let id = id?;
        id.parse()
            .map_err(|e| crate::sql::corrupt("invoices", &id, e))
    })
    .collect()
}
