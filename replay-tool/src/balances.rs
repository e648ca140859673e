//! `balances --as-of TIME [--org ID]`: every balance as it stood at a moment.
//!
//! The state is the fold of the log's prefix whose events all happened at or
//! before TIME: replay stops at the first event after it. Events are numbered
//! in commit order and the writer stamps them as it commits, so this is the
//! same as "every event with `at` ≤ TIME" whenever the clock never stepped
//! back, and it is what the server's `GET …/balances/{id}?asOf=` answers.
//! Every event folded is chain-checked and re-applied through the domain.

use crate::describe::org_name;
use crate::source::{Events, Failure, Range, Source};
use chrono::{NaiveDate, NaiveTime};
use ledger_core::domain::Ledger;
use ledger_core::ids::OrganizationId;
use ledger_core::time::Timestamp;
use serde_json::{json, Value};
use std::io::Write;

/// RFC 3339 (`2024-03-01T12:00:00Z`), or a date (`2024-03-01`) meaning the
/// end of that day, UTC (the closing balance).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
    let end = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).ok_or("bad time")?;
    Ok(Timestamp::from_datetime(date.and_time(end).and_utc()))
}

/// The ledger as it stood at `as_of`.
pub fn fold_until(source: &Source, as_of: Timestamp) -> Result<Ledger, Failure> {
    let mut events = Events::open(source, Range::ALL, "balances")?;
    let mut ledger = Ledger::new();
    while let Some((_, event)) = events.next()? {
        if event.at > as_of {
            break;
        }
        ledger
            .apply(&event)
            .map_err(|v| Failure::bad(v.seq, v.reason))?;
    }
    Ok(ledger)
}

pub fn rows(ledger: &Ledger, org: Option<OrganizationId>) -> Vec<Value> {
    let mut balances: Vec<_> = ledger
        .balances
        .values()
        .filter(|b| org.is_none_or(|o| o == b.organization_id))
        .collect();
    balances.sort_by_key(|b| (b.organization_id.to_string(), b.currency.code()));
    balances
        .into_iter()
        .map(|b| {
            let mut v = projections::views::balance(b);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "organizationName".into(),
                    json!(org_name(ledger, b.organization_id)),
                );
            }
            v
        })
        .collect()
}

pub fn run(
    source: &Source,
    as_of: Timestamp,
    org: Option<OrganizationId>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ledger = fold_until(source, as_of)?;
    if let Some(o) = org {
        if !ledger.organizations.contains_key(&o) {
            return Err(Failure::Io(anyhow::anyhow!(
                "organization {o} does not exist as of {}",
                as_of.rfc3339()
            )));
        }
    }
    let rows = rows(&ledger, org);
    if as_json {
        let value =
            json!({ "asOf": as_of.rfc3339(), "lastSeq": ledger.last_seq, "balances": rows });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "balances as of {} (after event {})",
        as_of.rfc3339(),
        ledger.last_seq
    )?;
    writeln!(
        out,
        "{:<36}  {:<24}  {:<3}  {:>22}  {:>22}  {:>22}  {:>22}  frozen",
        "organization", "name", "cur", "total", "reserved", "collateral", "available"
    )?;
    for r in &rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        writeln!(
            out,
            "{:<36}  {:<24}  {:<3}  {:>22}  {:>22}  {:>22}  {:>22}  {}",
            s("organizationId"),
            s("organizationName"),
            s("currency"),
            s("total"),
            s("reserved"),
            s("collateral"),
            s("available"),
            if r.get("frozen").and_then(Value::as_bool).unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_means_the_end_of_that_day() {
        let t = parse_time("2024-03-01").unwrap();
        assert_eq!(t.rfc3339(), "2024-03-01T23:59:59.999999Z");
        assert_eq!(
            parse_time("2024-03-01T10:00:00+02:00").unwrap().rfc3339(),
            "2024-03-01T08:00:00.000000Z"
        );
        assert!(parse_time("yesterday").is_err());
    }
}
