//! Payments: lookups by either party, the filtered list, exports.
//!
//! Payments, withdrawals, refunds and transactions are listed in log order
//! (the order they were made), so every page is a keyset range on an
//! `(organization, seq)` index; see `keyset` below for how a cursor resumes.

use crate::sql::rows::decode;
use crate::sql::SqlError;
use ledger_core::domain::payment::{Payment, PaymentStatus};
use ledger_core::ids::{InvoiceId, OrganizationId, PaymentId};
use ledger_core::time::Timestamp;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};

pub use keyset::{ExportChunk, LogPage};

/// The payment as `org` may see it: payer or payee. `None` otherwise (404).
pub fn visible_payment(
    c: &Connection,
    org: OrganizationId,
    id: PaymentId,
) -> Result<Option<Payment>, SqlError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT state FROM payments
             WHERE id = ?1 AND (payer_organization_id = ?2 OR payee_organization_id = ?2)",
        )?
        .query_row([id.to_string(), org.to_string()], |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode("payments", &b)).transpose()
}

/// The payment list's filters (API.md, Payments), already parsed; `from`
/// is inclusive, `to` exclusive, both on the creation time.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub invoice: Option<InvoiceId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One page of the payments `org` is a party to, oldest first, and the
/// cursor key (the last payment's id) when there are more.
pub fn list_payments(
    c: &Connection,
    org: OrganizationId,
    filter: &PaymentFilter,
    page: &LogPage<'_>,
) -> Result<(Vec<Payment>, Option<String>), SqlError> {
    let Some(after) = keyset::after_id(c, "payments", page.after_key)? else {
        return Ok((Vec::new(), None));
    };
    let window = keyset::Window::page(after, page.limit);
    let rows = payments_in(c, org, filter, window)?;
    Ok(keyset::split(rows, page.limit, |(_, p)| p.id.to_string()))
}

/// One chunk of the payments export, with each payment's seq.
pub fn export_payments(
    c: &Connection,
    org: OrganizationId,
    filter: &PaymentFilter,
    chunk: ExportChunk,
) -> Result<Vec<(u64, Payment)>, SqlError> {
    let rows = payments_in(c, org, filter, keyset::Window::chunk(chunk))?;
    Ok(keyset::with_seqs(rows))
}

fn payments_in(
    c: &Connection,
    org: OrganizationId,
    f: &PaymentFilter,
    w: keyset::Window,
) -> Result<Vec<(i64, Payment)>, SqlError> {
    let mut q = keyset::Args::window(org, w);
    let mut extra = String::new();
    if let Some(s) = f.status {
        extra += &format!(" AND status = {}", q.bind(Sql::Text(s.as_str().into())));
    }
    if let Some(t) = f.from {
        extra += &format!(" AND created_at_utc >= {}", q.bind(keyset::time_text(t)));
    }
    if let Some(t) = f.to {
        extra += &format!(" AND created_at_utc < {}", q.bind(keyset::time_text(t)));
    }
    let invoice = f.invoice.map(|inv| q.bind(Sql::Text(inv.to_string())));
    let sql = payments_sql(invoice.as_deref(), &extra);
    keyset::states(c, "payments", &sql, q)
}

/// The payments query; `invoice` is the placeholder of the invoice filter.
fn payments_sql(invoice: Option<&str>, extra: &str) -> String {
    match invoice {
        // An invoice has a payment or two: read those, not the organization's
        // whole range (the planner would pick the party indexes otherwise).
        Some(inv) => format!(
            "SELECT seq, state FROM payments INDEXED BY payments_by_invoice
             WHERE invoice_id = {inv} AND (payer_organization_id = ?1 OR payee_organization_id = ?1)
               AND seq > ?2 AND seq <= ?3{extra}
             ORDER BY seq LIMIT ?4"
        ),
        None => keyset::either_party(
            "payments",
            ("payer_organization_id", "payee_organization_id"),
            extra,
        ),
    }
}

/// Keyset paging over `seq` for the lists kept in log order.
///
/// The in-memory lists these replace compared cursor keys as strings: the id
/// for payments, withdrawals and refunds (time-ordered v7 UUIDs, so they sort
/// as they were made), the zero-padded seq for transactions and balance
/// changes. A cursor is resolved here to the seq it stands for, so a page is
/// an index range read, and any cursor string resumes where it did before.
pub(crate) mod keyset {
    use crate::sql::rows::decode;
    use crate::sql::SqlError;
    use ledger_core::ids::OrganizationId;
    use ledger_core::time::Timestamp;
    use rusqlite::types::Value as Sql;
    use rusqlite::{params_from_iter, Connection, OptionalExtension};
    use serde::de::DeserializeOwned;

    /// A page of a list in log order: the items after the previous page's
    /// cursor key (none for the first page), at most `limit` of them.
    #[derive(Debug, Clone, Copy)]
    pub struct LogPage<'a> {
        pub after_key: Option<&'a str>,
        pub limit: usize,
    }

    /// A chunk of an export: the items made after seq `after` and at or
    /// before `through` (where the log stood when the export began, so items
    /// made while it streams are left out), at most `limit` of them.
    #[derive(Debug, Clone, Copy)]
    pub struct ExportChunk {
        pub after: u64,
        pub through: u64,
        pub limit: usize,
    }

    /// The seq range `(after, through]` and how many rows to read.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Window {
        pub after: i64,
        pub through: i64,
        pub limit: usize,
    }

    impl Window {
        /// One more row than the page holds tells whether another follows.
        pub(crate) fn page(after: i64, limit: usize) -> Self {
            Self {
                after,
                through: i64::MAX,
                limit: limit.saturating_add(1),
            }
        }

        pub(crate) fn chunk(c: ExportChunk) -> Self {
            let seq = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
            Self {
                after: seq(c.after),
                through: seq(c.through),
                limit: c.limit,
            }
        }
    }

    /// Query arguments, numbered: `?1` the organization (or balance),
    /// `?2`/`?3` the window's seq range, `?4` its limit, then the filters.
    pub(crate) struct Args(Vec<Sql>);

    impl Args {
        pub(crate) fn window(org: OrganizationId, w: Window) -> Self {
            Self::window_of(org.to_string(), w)
        }

        pub(crate) fn window_of(owner: String, w: Window) -> Self {
            Self(vec![
                Sql::Text(owner),
                Sql::Integer(w.after),
                Sql::Integer(w.through),
                Sql::Integer(i64::try_from(w.limit).unwrap_or(i64::MAX)),
            ])
        }

        /// Adds a value and answers its placeholder.
        pub(crate) fn bind(&mut self, v: Sql) -> String {
            self.0.push(v);
            format!("?{}", self.0.len())
        }

        pub(crate) fn into_vec(self) -> Vec<Sql> {
            self.0
        }
    }

    /// Rows of `table` where `?1` is either party, in seq order within the
    /// window: two index range reads merged on seq (SQLite's MERGE of a
    /// compound ORDER BY), so a page reads about what it returns. The second
    /// leg skips rows the first already gave.
    pub(crate) fn either_party(table: &str, (a, b): (&str, &str), extra: &str) -> String {
        format!(
            "SELECT seq, state FROM {table} WHERE {a} = ?1 AND seq > ?2 AND seq <= ?3{extra}
             UNION ALL
             SELECT seq, state FROM {table} WHERE {b} = ?1 AND {a} <> ?1 AND seq > ?2 AND seq <= ?3{extra}
             ORDER BY 1 LIMIT ?4"
        )
    }

    /// Runs a `SELECT seq, state` query and decodes the states.
    pub(crate) fn states<T: DeserializeOwned>(
        c: &Connection,
        table: &'static str,
        sql: &str,
        args: Args,
    ) -> Result<Vec<(i64, T)>, SqlError> {
        let mut stmt = c.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(args.into_vec()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let state: Vec<u8> = row.get(1)?;
            out.push((seq, decode(table, &state)?));
        }
        Ok(out)
    }

    /// Cuts the `limit + 1` rows read down to a page, with the cursor key of
    /// its last item when more follow.
    pub(crate) fn split<T>(
        mut rows: Vec<(i64, T)>,
        limit: usize,
        key: impl Fn(&(i64, T)) -> String,
    ) -> (Vec<T>, Option<String>) {
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        (rows.into_iter().map(|(_, t)| t).collect(), next)
    }

    pub(crate) fn with_seqs<T>(rows: Vec<(i64, T)>) -> Vec<(u64, T)> {
        rows.into_iter()
            .map(|(s, t)| (u64::try_from(s).unwrap_or(0), t))
            .collect()
    }

    /// The seq a page keyed by id resumes after; `None` when nothing can
    /// follow the cursor. A cursor naming a row resumes after that row's
    /// seq; any other string resumes at the first id sorting after it (ids
    /// sort in the order rows were made).
    pub(crate) fn after_id(
        c: &Connection,
        table: &'static str,
        cursor: Option<&str>,
    ) -> Result<Option<i64>, SqlError> {
        let Some(cursor) = cursor else {
            return Ok(Some(0));
        };
        let found: Option<(i64, bool)> = c
            .prepare_cached(&after_id_sql(table))?
            .query_row([cursor], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(found.map(|(seq, named)| if named { seq } else { seq - 1 }))
    }

    fn after_id_sql(table: &str) -> String {
        format!("SELECT seq, id = ?1 FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1")
    }

    /// The plan SQLite makes for `sql` on the read models' schema, one line
    /// per step (`SEARCH … USING INDEX …`, `USE TEMP B-TREE …`).
    #[cfg(test)]
    pub(crate) fn plan(sql: &str) -> Vec<String> {
        let c = Connection::open_in_memory().unwrap();
        for m in crate::sql::MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![Sql::Null; stmt.parameter_count()];
        let lines = stmt
            .query_map(params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap();
        lines.map(Result::unwrap).collect()
    }

    /// Checks that `sql` reads only through indexes, and sorts (a handful of
    /// rows, said the caller) only when `sorts`.
    #[cfg(test)]
    pub(crate) fn assert_indexed(sql: &str, sorts: bool) {
        let plan = plan(sql);
        let searches = plan.iter().filter(|l| l.starts_with("SEARCH"));
        assert!(
            searches.clone().count() > 0 && searches.clone().all(|l| l.contains(" USING ")),
            "{sql}\n{plan:#?}"
        );
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN")),
            "{sql}\n{plan:#?}"
        );
        let sorted = plan.iter().any(|l| l.contains("TEMP B-TREE"));
        assert_eq!(sorted, sorts, "{sql}\n{plan:#?}");
    }

    /// Digits of a seq cursor key.
    const KEY_DIGITS: usize = 20;

    /// A seq's cursor key: zero-padded, so keys sort as strings as seqs do.
    pub(crate) fn seq_key(seq: u64) -> String {
        format!("{seq:020}")
    }

    /// The seq a page keyed by seq resumes after; `None` when no seq's key
    /// sorts after the cursor.
    pub(crate) fn after_seq_key(cursor: Option<&str>) -> Option<i64> {
        match cursor {
            None => Some(0),
            Some(c) => first_seq_after(c)
                .and_then(|s| i64::try_from(s).ok())
                .map(|s| s - 1),
        }
    }

    /// The least seq whose key sorts after `cursor` as a string.
    pub(crate) fn first_seq_after(cursor: &str) -> Option<u64> {
        let bytes = cursor.as_bytes();
        let digits = bytes
            .iter()
            .take(KEY_DIGITS)
            .take_while(|b| b.is_ascii_digit())
            .count();
        // At most 20 digits: fits, and only an empty run fails to parse.
        let prefix: u128 = cursor[..digits].parse().unwrap_or(0);
        let scale = 10u128.pow((KEY_DIGITS - digits) as u32);
        let first = match bytes.get(digits) {
            // A whole key (anything after it sorts it later still).
            _ if digits == KEY_DIGITS => prefix + 1,
            // The cursor is a prefix of keys, or they continue it with a
            // higher byte: every key starting with it follows.
            None => prefix * scale,
            Some(b) if *b < b'0' => prefix * scale,
            // A byte above the digits: only a greater prefix follows.
            Some(_) => (prefix + 1) * scale,
        };
        u64::try_from(first).ok()
    }

    /// A time bound compared with stored RFC 3339 text, which sorts as time
    /// only while it is fixed-width (years 0000 to 9999): a bound outside
    /// those years becomes a string before or after every stored time.
    pub(crate) fn time_text(t: Timestamp) -> Sql {
        const YEAR_0: i64 = -62_167_219_200_000_000;
        const YEAR_10000: i64 = 253_402_300_800_000_000;
        Sql::Text(match t.as_micros() {
            m if m < YEAR_0 => String::new(),
            m if m >= YEAR_10000 => "~".into(),
            _ => t.rfc3339(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_cursor_resumes_at_the_first_seq_whose_key_sorts_after_it() {
            let seqs: Vec<u64> = [0u64, 1, 9, 10, 11, 99, 100, 101, 1234, 1235, 5000]
                .into_iter()
                .chain([u64::MAX - 1, u64::MAX, 10_u64.pow(19), 10_u64.pow(19) - 1])
                .collect();
            let cursors = [
                "00000000000000001234",
                "000000000000000012345",
                "0000000000000000123",
                "000000000000000012",
                "00000000000000001",
                "0000000000000000",
                "0",
                "!",
                "0000000000000000123!",
                "0000000000000000123a",
                "00000000000000009zz",
                "99999999999999999999",
                "1",
                "18446744073709551615",
                "18446744073709551614",
                "a",
                "00000000000000000100x",
            ];
            for c in cursors {
                let first = first_seq_after(c);
                for &s in &seqs {
                    let after = seq_key(s).as_str() > c;
                    let resumed = first.is_some_and(|f| s >= f);
                    assert_eq!(after, resumed, "cursor {c:?}, seq {s}, first {first:?}");
                }
            }
        }

        #[test]
        fn resuming_after_an_id_is_a_primary_key_seek() {
            for table in ["payments", "withdrawals", "refunds"] {
                assert_indexed(&after_id_sql(table), false);
            }
        }

        #[test]
        fn time_bounds_outside_fixed_width_years_sort_before_or_after_all() {
            let now = Timestamp::from_micros(1_900_000_000_000_000);
            let text = |t| match time_text(t) {
                Sql::Text(s) => s,
                _ => unreachable!(),
            };
            assert_eq!(text(now), now.rfc3339());
            assert!(text(Timestamp::from_micros(i64::MAX)).as_str() > now.rfc3339().as_str());
            assert!(text(Timestamp::from_micros(i64::MIN)).as_str() < now.rfc3339().as_str());
            let first = Timestamp::from_micros(-62_167_219_200_000_000);
            assert_eq!(text(first), "0000-01-01T00:00:00.000000Z");
            let last = Timestamp::from_micros(253_402_300_800_000_000 - 1);
            assert_eq!(text(last), "9999-12-31T23:59:59.999999Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::keyset::{assert_indexed, plan};
    use super::payments_sql;

    #[test]
    fn a_payments_page_merges_two_index_ranges_in_seq_order() {
        for extra in [
            "",
            " AND status = ?5 AND created_at_utc >= ?6 AND created_at_utc < ?7",
        ] {
            let sql = payments_sql(None, extra);
            assert_indexed(&sql, false);
            let plan = plan(&sql).join("\n");
            assert!(plan.contains("MERGE (UNION ALL)"), "{plan}");
            assert!(
                plan.contains("payments_by_payer (payer_organization_id=? AND seq>? AND seq<?)")
            );
            assert!(
                plan.contains("payments_by_payee (payee_organization_id=? AND seq>? AND seq<?)")
            );
        }
    }

    #[test]
    fn a_payments_page_of_one_invoice_reads_that_invoice_s_payments() {
        // Sorting an invoice's one or two payments by seq.
        let sql = payments_sql(Some("?5"), " AND status = ?6");
        assert_indexed(&sql, true);
        assert!(plan(&sql)
            .join("\n")
            .contains("payments_by_invoice (invoice_id=?)"));
    }

    #[test]
    fn a_payment_lookup_is_a_primary_key_seek() {
        assert_indexed(
            "SELECT state FROM payments
             WHERE id = ?1 AND (payer_organization_id = ?2 OR payee_organization_id = ?2)",
            false,
        );
    }
}
