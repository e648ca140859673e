//! `rebuild --out DIR`: every projection rebuilt from sequence 0 into a fresh
//! directory, compared with what else claims to know the same state, and the
//! differences reported.
//!
//! The server's read models are rebuilt from the log too (in memory, and as
//! SQL tables in `<data dir>/read-models.sqlite`); this rebuild writes both
//! from the events it checked and compares them with each other and with
//! what else knows the same state:
//!
//! 1. **write model vs read model**: the projections' fold
//!    (`projections::ReadModel`, fed from the stream this tool checked) against
//!    the write model the server itself would load, `engine::rebuild`, which
//!    reads the log through `SledLog::read_all` (a data directory: the log
//!    itself; `--url`: a scratch copy of the streamed events). Every entity is
//!    rendered with the API's own views and compared, plus the money supply
//!    per currency, every stream's version and the last sequence number.
//! 2. **the projections' indexes vs the entities**: each organization's lists
//!    (invoices — as seller, and as buyer once submitted —, connections, keys,
//!    payments, balances, withdrawals, refunds, endpoints, files) hold exactly
//!    the entities that belong there.
//! 3. **balances vs independent arithmetic**: every balance's total, reserved,
//!    collateral and frozen flag recomputed here from the raw events (not
//!    through the domain's `Balance::evolve`), its change log's last entry, and
//!    its transactions' running totals.
//! 4. **the SQL read models vs the in-memory fold**: `DIR/read-models.sqlite`
//!    is written through the projection's own SQL code
//!    (`projections::sql::fold::apply_batch`, large transactions, see
//!    [`crate::sql_out`]) from the same checked events; then every
//!    aggregate's `state` must decode to exactly the fold's entity (API keys
//!    have their `secret_hash` zeroed and webhook endpoints their secrets
//!    blanked in SQL, on purpose), every balance render the same and hold the
//!    same reservations, every invoice have its line items and list rows, and
//!    every balance change and transaction have its row with the same figures.
//! 5. **the live server** (`--url` with `--api-key`/`--api-secret`): that
//!    organization's balances, invoices, payments, transactions, withdrawals
//!    and refunds as the server answers them now, against the same views of
//!    the rebuilt model. Re-read if the log moved meanwhile.
//!
//! Written to DIR: `summary.json` (counts, supply, what was compared, the
//! differences, the SQL rebuild's throughput), one JSON-lines file per
//! projection, sorted by id, and `read-models.sqlite`, finalized so a server
//! can open it (WAL, schema migrated, position and chain hash recorded; no
//! webhook outbox state, so a server adopting it sends nothing for the past).
//!
//! `--sql-only` writes just `read-models.sqlite` (into any directory that has
//! none), reading and checking the chain as every command does but skipping
//! the in-memory fold and the comparisons; it prints the events/s.

use crate::source::{http_client, Events, Failure, Range, Source};
use crate::sql_out;
use anyhow::{anyhow, Context};
use ledger_core::domain::Ledger;
use ledger_core::events::{Event, Hold, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{EventLog, Hash as ChainHash, GENESIS_HASH};
use ledger_core::money::Amount;
use projections::{views, ReadModel};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::hash::Hash;
use std::io::Write;
use std::path::Path;

/// An organization's API credentials, to compare with the live server.
#[derive(Debug, Clone)]
pub struct OrgCredentials {
    pub key: String,
    pub secret: String,
}

/// Balance figures recomputed from the raw events.
#[derive(Debug, Default, Clone)]
struct Figures {
    total: Amount,
    reserved: Amount,
    collateral: Amount,
    frozen: bool,
    holds: BTreeMap<Hold, Amount>,
}

fn add(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).unwrap_or(a)
}

fn sub(a: Amount, b: Amount) -> Amount {
    a.checked_sub(b).unwrap_or(Amount::ZERO)
}

impl Figures {
    fn apply(&mut self, event: &Event) {
        use Event::*;
        match event {
            FundsDeposited { amount, .. }
            | SettlementCredited { amount, .. }
            | RefundCredited { amount, .. } => self.total = add(self.total, *amount),
            FundsReserved { hold, amount, .. } => {
                self.holds.insert(*hold, *amount);
                self.reserved = add(self.reserved, *amount);
            }
            ReservationReleased { hold, .. } => {
                let held = self.holds.remove(hold).unwrap_or(Amount::ZERO);
                self.reserved = sub(self.reserved, held);
            }
            SettlementDebited {
                invoice_id, amount, ..
            } => {
                let held = self
                    .holds
                    .remove(&Hold::Invoice(*invoice_id))
                    .unwrap_or(Amount::ZERO);
                self.reserved = sub(self.reserved, held);
                self.total = sub(self.total, *amount);
            }
            WithdrawalDebited {
                withdrawal_id,
                amount,
                ..
            } => {
                let held = self
                    .holds
                    .remove(&Hold::Withdrawal(*withdrawal_id))
                    .unwrap_or(Amount::ZERO);
                self.reserved = sub(self.reserved, held);
                self.total = sub(self.total, *amount);
            }
            RefundDebited { amount, .. } => self.total = sub(self.total, *amount),
            CollateralSet { amount, .. } => self.collateral = *amount,
            BalanceFrozen { .. } => self.frozen = true,
            BalanceUnfrozen { .. } => self.frozen = false,
            _ => {}
        }
    }
}

struct Folded {
    model: ReadModel,
    figures: HashMap<BalanceId, Figures>,
    by_type: BTreeMap<&'static str, u64>,
    last_hash: [u8; 32],
}

fn fold(
    source: &Source,
    mut also: impl FnMut(&RecordedEvent, ChainHash) -> Result<(), Failure>,
) -> Result<Folded, Failure> {
    let mut events = Events::open(source, Range::ALL, "rebuild")?;
    let mut folded = Folded {
        model: ReadModel::new(),
        figures: HashMap::new(),
        by_type: BTreeMap::new(),
        last_hash: GENESIS_HASH,
    };
    while let Some((raw, event)) = events.next()? {
        folded
            .model
            .apply(&event)
            .map_err(|v| Failure::bad(v.seq, v.reason))?;
        if let Event::BalanceOpened { id, .. } = &event.event {
            folded.figures.insert(*id, Figures::default());
        } else if event.stream().kind == ledger_core::events::StreamKind::Balance {
            let id = BalanceId::from_uuid(event.stream().id);
            folded.figures.entry(id).or_default().apply(&event.event);
        }
        *folded.by_type.entry(event.event.type_name()).or_default() += 1;
        folded.last_hash = raw.hash;
        also(&event, raw.hash)?;
    }
    Ok(folded)
}

/// Compares two maps of entities through their views.
/// `a` and `b` are maps of either kind the write model keeps (`HashMap`, or
/// `Dense` for its large tables).
fn compare<'m, K, V: 'm>(
    what: &str,
    a: impl IntoIterator<Item = (&'m K, &'m V)>,
    b: impl IntoIterator<Item = (&'m K, &'m V)>,
    view: impl Fn(&V) -> Value,
    diffs: &mut Vec<String>,
) where
    K: Ord + Display + Copy + 'm,
{
    let a: BTreeMap<K, &V> = a.into_iter().map(|(k, v)| (*k, v)).collect();
    let b: BTreeMap<K, &V> = b.into_iter().map(|(k, v)| (*k, v)).collect();
    let keys: BTreeSet<K> = a.keys().chain(b.keys()).copied().collect();
    for k in keys {
        match (a.get(&k), b.get(&k)) {
            (Some(x), Some(y)) => {
                let (vx, vy) = (view(x), view(y));
                if vx != vy {
                    diffs.push(format!("{what} {k}: {}", first_difference(&vx, &vy)));
                }
            }
            (Some(_), None) => diffs.push(format!("{what} {k}: in the write model only")),
            (None, Some(_)) => diffs.push(format!("{what} {k}: in the read model only")),
            (None, None) => {}
        }
    }
}

fn first_difference(a: &Value, b: &Value) -> String {
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            let (vx, vy) = (
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
            );
            if vx != vy {
                return format!("`{k}` is {vx} vs {vy}");
            }
        }
    }
    format!("{a} vs {b}")
}

fn compare_models(write: &Ledger, read: &Ledger, diffs: &mut Vec<String>) {
    compare(
        "organization",
        &write.organizations,
        &read.organizations,
        views::organization,
        diffs,
    );
    compare(
        "API key",
        &write.api_keys,
        &read.api_keys,
        views::api_key,
        diffs,
    );
    compare(
        "connection",
        &write.connections,
        &read.connections,
        |c| views::connection(c, None),
        diffs,
    );
    // Both sides keep the write model's decision state of an invoice; the
    // full invoices are the read model's, compared with SQL in `sql_out`.
    compare(
        "invoice",
        &write.invoices,
        &read.invoices,
        |s| serde_json::to_value(s).unwrap_or(Value::Null),
        diffs,
    );
    compare(
        "payment",
        &write.payments,
        &read.payments,
        views::payment,
        diffs,
    );
    compare(
        "balance",
        &write.balances,
        &read.balances,
        views::balance,
        diffs,
    );
    compare(
        "withdrawal",
        &write.withdrawals,
        &read.withdrawals,
        views::withdrawal,
        diffs,
    );
    compare(
        "refund",
        &write.refunds,
        &read.refunds,
        views::refund,
        diffs,
    );
    compare(
        "webhook endpoint",
        &write.webhook_endpoints,
        &read.webhook_endpoints,
        views::webhook_endpoint,
        diffs,
    );
    compare("file", &write.files, &read.files, views::file, diffs);
    if write.supply != read.supply {
        diffs.push("money supply per currency differs between the write and read models".into());
    }
    if write.versions != read.versions {
        diffs.push("stream versions differ between the write and read models".into());
    }
    if write.last_seq != read.last_seq {
        diffs.push(format!(
            "the write model ends at {} and the read model at {}",
            write.last_seq, read.last_seq
        ));
    }
}

/// `index[org]` must hold exactly `expected[org]`, once each.
fn check_index<K: Copy + Ord + Display + Eq + Hash>(
    what: &str,
    index: &HashMap<OrganizationId, Vec<K>>,
    expected: impl IntoIterator<Item = (OrganizationId, K)>,
    diffs: &mut Vec<String>,
) {
    let mut want: BTreeMap<OrganizationId, BTreeSet<K>> = BTreeMap::new();
    for (org, k) in expected {
        want.entry(org).or_default().insert(k);
    }
    let orgs: BTreeSet<OrganizationId> = want.keys().chain(index.keys()).copied().collect();
    for org in orgs {
        let listed = index.get(&org).map(Vec::as_slice).unwrap_or(&[]);
        let have: BTreeSet<K> = listed.iter().copied().collect();
        if have.len() != listed.len() {
            diffs.push(format!(
                "organization {org}: its {what} list has duplicates"
            ));
        }
        let wanted = want.remove(&org).unwrap_or_default();
        for k in wanted.difference(&have) {
            diffs.push(format!(
                "organization {org}: {what} {k} missing from its list"
            ));
        }
        for k in have.difference(&wanted) {
            diffs.push(format!(
                "organization {org}: {what} {k} listed but not its own"
            ));
        }
    }
}

fn check_indexes(m: &ReadModel, diffs: &mut Vec<String>) {
    let l = &m.ledger;
    check_index(
        "invoice",
        &m.invoices_by_org,
        l.invoices.values().flat_map(|i| {
            let mut v = vec![(i.seller_organization_id, i.id)];
            if i.visible_to_buyer {
                v.push((i.buyer_organization_id, i.id));
            }
            v
        }),
        diffs,
    );
    check_index(
        "connection",
        &m.connections_by_org,
        l.connections.values().flat_map(|c| {
            [
                (c.seller_organization_id, c.id),
                (c.buyer_organization_id, c.id),
            ]
        }),
        diffs,
    );
    check_index(
        "API key",
        &m.api_keys_by_org,
        l.api_keys.values().map(|k| (k.organization_id, k.id)),
        diffs,
    );
    check_index(
        "payment",
        &m.payments_by_org,
        l.payments.values().flat_map(|p| {
            [
                (p.payer_organization_id, p.id),
                (p.payee_organization_id, p.id),
            ]
        }),
        diffs,
    );
    check_index(
        "balance",
        &m.balances_by_org,
        l.balances.values().map(|b| (b.organization_id, b.id)),
        diffs,
    );
    check_index(
        "withdrawal",
        &m.withdrawals_by_org,
        l.withdrawals.values().map(|w| (w.organization_id, w.id)),
        diffs,
    );
    check_index(
        "refund",
        &m.refunds_by_org,
        l.refunds.values().flat_map(|r| {
            [
                (r.payee_organization_id, r.id),
                (r.payer_organization_id, r.id),
            ]
        }),
        diffs,
    );
    check_index(
        "webhook endpoint",
        &m.endpoints_by_org,
        l.webhook_endpoints
            .values()
            .map(|e| (e.organization_id, e.id)),
        diffs,
    );
    check_index(
        "file",
        &m.files_by_org,
        l.files.values().map(|f| (f.organization_id, f.id)),
        diffs,
    );
    check_index(
        "transaction",
        &m.transactions_by_org,
        m.transactions.values().map(|t| (t.organization_id, t.id)),
        diffs,
    );
}

fn check_balances(folded: &Folded, diffs: &mut Vec<String>) {
    let m = &folded.model;
    let ids: BTreeSet<BalanceId> = m
        .ledger
        .balances
        .keys()
        .chain(folded.figures.keys())
        .copied()
        .collect();
    // Transactions per balance, in log order.
    let mut txs: HashMap<BalanceId, Vec<&projections::Transaction>> = HashMap::new();
    for t in m.transactions.values() {
        txs.entry(t.balance_id).or_default().push(t);
    }
    for id in ids {
        let (Some(b), Some(f)) = (m.ledger.balances.get(&id), folded.figures.get(&id)) else {
            diffs.push(format!(
                "balance {id}: known to only one of the read model and the raw events"
            ));
            continue;
        };
        let c = b.currency;
        let mut field = |name: &str, projected: Amount, recomputed: Amount| {
            if projected != recomputed {
                diffs.push(format!(
                    "balance {id}: {name} is {} but the events add up to {}",
                    projected.format(c),
                    recomputed.format(c)
                ));
            }
        };
        field("total", b.total, f.total);
        field("reserved", b.reserved, f.reserved);
        field("collateral", b.collateral, f.collateral);
        if b.frozen != f.frozen {
            diffs.push(format!(
                "balance {id}: frozen is {} but the events say {}",
                b.frozen, f.frozen
            ));
        }
        if let Some(last) = m.balance_changes.get(&id).and_then(|c| c.last()) {
            if last.total_after != b.total
                || last.reserved_after != b.reserved
                || last.collateral_after != b.collateral
                || last.available_after != b.available()
                || last.frozen_after != b.frozen
            {
                diffs.push(format!(
                    "balance {id}: its change log's last entry (seq {}) disagrees with it",
                    last.seq
                ));
            }
        }
        let mut list = txs.remove(&id).unwrap_or_default();
        list.sort_by_key(|t| t.seq);
        let mut running = Amount::ZERO;
        for t in list {
            use projections::TransactionType::*;
            running = match t.kind {
                Deposit | SettlementIn | RefundIn => add(running, t.amount),
                Withdrawal | SettlementOut | RefundOut => sub(running, t.amount),
            };
            if running != t.total_after {
                diffs.push(format!(
                    "transaction {}: totalAfter {} but the transactions before it add up to {}",
                    t.id,
                    t.total_after.format(c),
                    running.format(c)
                ));
                break;
            }
        }
        if running != b.total {
            diffs.push(format!(
                "balance {id}: its transactions add up to {} but its total is {}",
                running.format(c),
                b.total.format(c)
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// the live server
// ---------------------------------------------------------------------------

fn get_all(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    creds: &OrgCredentials,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{base}/api/v1{path}"))
            .header("X-API-Key", &creds.key)
            .header("X-API-Secret", &creds.secret)
            .query(&[("limit", "200")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let response = request.send().with_context(|| format!("GET {path}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(anyhow!(
                "GET {path}: {status}: {}",
                response.text().unwrap_or_default()
            ));
        }
        let page: Value = response
            .json()
            .with_context(|| format!("GET {path}: not JSON"))?;
        if let Some(items) = page.get("data").and_then(Value::as_array) {
            out.extend(items.iter().cloned());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
            _ => return Ok(out),
        }
    }
}

fn compare_live(what: &str, live: Vec<Value>, rebuilt: Vec<Value>, diffs: &mut Vec<String>) {
    let key = |v: &Value| {
        v.get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let live: BTreeMap<String, Value> = live.into_iter().map(|v| (key(&v), v)).collect();
    let rebuilt: BTreeMap<String, Value> = rebuilt.into_iter().map(|v| (key(&v), v)).collect();
    let ids: BTreeSet<&String> = live.keys().chain(rebuilt.keys()).collect();
    for id in ids {
        match (live.get(id), rebuilt.get(id)) {
            (Some(l), Some(r)) if l != r => diffs.push(format!(
                "live {what} {id}: {} (live vs rebuilt)",
                first_difference(l, r)
            )),
            (Some(_), None) => diffs.push(format!(
                "live {what} {id}: served but not in the rebuilt model"
            )),
            (None, Some(_)) => diffs.push(format!(
                "live {what} {id}: in the rebuilt model but not served"
            )),
            _ => {}
        }
    }
}

fn live_diffs(base: &str, creds: &OrgCredentials, m: &ReadModel) -> anyhow::Result<Vec<String>> {
    let key = ApiKeyId::parse(&creds.key).map_err(|e| anyhow!("--api-key: {e}"))?;
    let org = m
        .ledger
        .api_keys
        .get(&key)
        .map(|k| k.organization_id)
        .ok_or_else(|| anyhow!("API key {key} is not in the log"))?;
    let client = http_client()?;
    let mut diffs = Vec::new();
    let l = &m.ledger;
    fn listed<'m, K: Eq + Hash + 'm, V: 'm>(
        index: &HashMap<OrganizationId, Vec<K>>,
        org: OrganizationId,
        items: impl IntoIterator<Item = (&'m K, &'m V)>,
        view: impl Fn(&V) -> Value,
    ) -> Vec<Value> {
        let items: HashMap<&K, &V> = items.into_iter().collect();
        index
            .get(&org)
            .into_iter()
            .flatten()
            .filter_map(|id| items.get(id).copied())
            .map(view)
            .collect()
    }
    compare_live(
        "balance",
        get_all(&client, base, "/treasury/me/balances", creds)?,
        listed(&m.balances_by_org, org, &l.balances, views::balance),
        &mut diffs,
    );
    compare_live(
        "invoice",
        get_all(&client, base, "/invoices", creds)?,
        listed(&m.invoices_by_org, org, &m.invoices, views::invoice),
        &mut diffs,
    );
    compare_live(
        "payment",
        get_all(&client, base, "/payments", creds)?,
        listed(&m.payments_by_org, org, &l.payments, views::payment),
        &mut diffs,
    );
    compare_live(
        "transaction",
        get_all(&client, base, "/treasury/me/transactions", creds)?,
        listed(
            &m.transactions_by_org,
            org,
            &m.transactions,
            views::transaction,
        ),
        &mut diffs,
    );
    compare_live(
        "withdrawal",
        get_all(&client, base, "/treasury/me/withdrawals", creds)?,
        listed(
            &m.withdrawals_by_org,
            org,
            &l.withdrawals,
            views::withdrawal,
        ),
        &mut diffs,
    );
    compare_live(
        "refund",
        get_all(&client, base, "/treasury/me/refunds", creds)?,
        listed(&m.refunds_by_org, org, &l.refunds, views::refund),
        &mut diffs,
    );
    Ok(diffs)
}

/// The log's last sequence number as the server streams it now.
fn server_head(base: &str, token: &str, after: u64) -> anyhow::Result<u64> {
    let client = http_client()?;
    let mut last = after;
    loop {
        let body = client
            .get(format!("{base}/api/v1/admin/events"))
            .query(&[("after", last), ("limit", crate::source::PAGE)])
            .header("X-Admin-Token", token)
            .send()?
            .error_for_status()?
            .bytes()?;
        let lines: Vec<&[u8]> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let Some(line) = lines.last() else {
            return Ok(last);
        };
        let v: Value = serde_json::from_slice(line)?;
        last = v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("event line without seq"))?;
        if (lines.len() as u64) < crate::source::PAGE {
            return Ok(last);
        }
    }
}

// ---------------------------------------------------------------------------
// output
// ---------------------------------------------------------------------------

fn write_jsonl<'a, T: 'a>(
    dir: &Path,
    name: &str,
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> String,
    view: impl Fn(&T) -> Value,
) -> anyhow::Result<usize> {
    let mut rows: Vec<(String, Value)> = items.into_iter().map(|t| (key(t), view(t))).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join(name);
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for (_, v) in &rows {
        serde_json::to_writer(&mut w, v)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(rows.len())
}

fn write_projections(dir: &Path, m: &ReadModel) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let l = &m.ledger;
    let mut counts = BTreeMap::new();
    let id = |s: String| s;
    counts.insert(
        "organizations",
        write_jsonl(
            dir,
            "organizations.jsonl",
            l.organizations.values(),
            |o| id(o.id.to_string()),
            views::organization,
        )?,
    );
    counts.insert(
        "apiKeys",
        write_jsonl(
            dir,
            "api_keys.jsonl",
            l.api_keys.values(),
            |k| k.id.to_string(),
            views::api_key,
        )?,
    );
    counts.insert(
        "connections",
        write_jsonl(
            dir,
            "connections.jsonl",
            l.connections.values(),
            |c| c.id.to_string(),
            |c| views::connection(c, m.connection_reasons.get(&c.id).map(String::as_str)),
        )?,
    );
    counts.insert(
        "invoices",
        write_jsonl(
            dir,
            "invoices.jsonl",
            m.invoices.values(),
            |i| i.id.to_string(),
            views::invoice,
        )?,
    );
    counts.insert(
        "payments",
        write_jsonl(
            dir,
            "payments.jsonl",
            l.payments.values(),
            |p| p.id.to_string(),
            views::payment,
        )?,
    );
    counts.insert(
        "balances",
        write_jsonl(
            dir,
            "balances.jsonl",
            l.balances.values(),
            |b| b.id.to_string(),
            views::balance,
        )?,
    );
    counts.insert(
        "transactions",
        write_jsonl(
            dir,
            "transactions.jsonl",
            m.transactions.values(),
            |t| format!("{:020}", t.seq),
            views::transaction,
        )?,
    );
    counts.insert(
        "withdrawals",
        write_jsonl(
            dir,
            "withdrawals.jsonl",
            l.withdrawals.values(),
            |w| w.id.to_string(),
            views::withdrawal,
        )?,
    );
    counts.insert(
        "refunds",
        write_jsonl(
            dir,
            "refunds.jsonl",
            l.refunds.values(),
            |r| r.id.to_string(),
            views::refund,
        )?,
    );
    counts.insert(
        "webhookEndpoints",
        write_jsonl(
            dir,
            "webhook_endpoints.jsonl",
            l.webhook_endpoints.values(),
            |e| e.id.to_string(),
            views::webhook_endpoint,
        )?,
    );
    counts.insert(
        "files",
        write_jsonl(
            dir,
            "files.jsonl",
            l.files.values(),
            |f| f.id.to_string(),
            views::file,
        )?,
    );
    // Balance change logs, one line per change, by balance then sequence.
    let mut changes: Vec<(String, u64, Value)> = Vec::new();
    for (id, list) in &m.balance_changes {
        let currency = l.balances.get(id).map(|b| b.currency);
        for ch in list {
            if let Some(c) = currency {
                let mut v = views::balance_change(ch, c);
                if let Value::Object(o) = &mut v {
                    o.insert("balanceId".into(), json!(id.to_string()));
                }
                changes.push((id.to_string(), ch.seq, v));
            }
        }
    }
    changes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let n = changes.len();
    write_jsonl(
        dir,
        "balance_changes.jsonl",
        changes.iter(),
        |(b, s, _)| format!("{b}{s:020}"),
        |(_, _, v)| v.clone(),
    )?;
    counts.insert("balanceChanges", n);
    Ok(counts)
}

pub fn run(
    source: &Source,
    out_dir: &Path,
    live: Option<&OrgCredentials>,
    sql_batch: usize,
    out: &mut dyn Write,
) -> Result<bool, Failure> {
    crate::fresh_dir(out_dir)?;
    let mut sql = sql_out::Writer::create(out_dir, sql_batch)?;
    // For --url, the streamed events also go to a scratch log that the
    // engine's own loader then reads, as the server would at start.
    let scratch = match source {
        Source::Url { .. } => Some(tempfile::tempdir().context("creating a scratch directory")?),
        Source::DataDir(_) => None,
    };
    let scratch_log = match &scratch {
        Some(dir) => Some(
            SledLog::open(dir.path().join("log"))
                .map_err(|e| Failure::Io(anyhow!("scratch log: {e}")))?,
        ),
        None => None,
    };
    let mut pending: Vec<RecordedEvent> = Vec::new();
    let append = |log: &SledLog, pending: &mut Vec<RecordedEvent>| -> Result<(), Failure> {
        log.append(pending, &[])
            .map_err(|e| Failure::Io(anyhow!("scratch log: {e}")))?;
        pending.clear();
        Ok(())
    };
    let mut folded = fold(source, |event, hash| {
        if let Some(log) = &scratch_log {
            pending.push(event.clone());
            if pending.len() >= 20_000 {
                append(log, &mut pending)?;
            }
        }
        sql.push(event.clone(), hash)
    })?;
    let mut compared = Vec::new();
    let mut diffs = Vec::new();

    let write_model = match (&scratch_log, source) {
        (Some(log), _) => {
            append(log, &mut pending)?;
            ledger_core::engine::rebuild(log)
        }
        (None, Source::DataDir(dir)) => {
            let log = crate::source::open_log(dir)?;
            ledger_core::engine::rebuild(&log)
        }
        (None, Source::Url { .. }) => return Err(Failure::Io(anyhow!("no scratch log"))),
    }
    .map_err(|e| match e {
        ledger_core::engine::StartError::Invariant(v) => Failure::bad(v.seq, v.reason),
        other => Failure::Io(anyhow!("engine::rebuild: {other}")),
    })?;
    drop(scratch_log);
    compared.push(
        "write model (engine::rebuild via SledLog::read_all) vs read model (projections fold)",
    );
    compare_models(&write_model, &folded.model.ledger, &mut diffs);
    drop(write_model);

    compared.push("per-organization indexes of the read model vs the entities");
    check_indexes(&folded.model, &mut diffs);
    compared.push(
        "balances, change logs and transactions vs arithmetic recomputed from the raw events",
    );
    check_balances(&folded, &mut diffs);

    if let (Some(creds), Source::Url { base, token }) = (live, source) {
        compared.push("the live server's views for the given organization vs the rebuilt views");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = live_diffs(base, creds, &folded.model)?;
            // The server may have moved on while we read: read the rest and retry.
            let head = server_head(base, token, folded.model.last_seq())?;
            if head == folded.model.last_seq() || attempts >= 3 {
                diffs.extend(live);
                break;
            }
            // The SQL writer skips what it has and applies what is new.
            folded = fold(source, |event, hash| sql.push(event.clone(), hash))?;
        }
    } else if live.is_some() {
        return Err(Failure::Io(anyhow!("--api-key/--api-secret need --url")));
    }

    let sql_stats = sql.finish()?;
    compared.push(
        "SQL read models (read-models.sqlite, written by the projection's SQL fold) vs the in-memory fold: \
         every aggregate's state, balances and their holds, line items, invoice lists, \
         balance changes, transactions",
    );
    diffs.extend(sql_out::compare(&sql_stats.path, &folded.model)?);

    let counts = write_projections(out_dir, &folded.model)?;
    let l = &folded.model.ledger;
    let supply: BTreeMap<&str, Value> = l
        .supply
        .iter()
        .map(|(c, s)| {
            (
                c.code(),
                json!({
                    "deposited": s.deposited.format(*c),
                    "withdrawn": s.withdrawn.format(*c),
                    "balancesTotal": s.balances_total.format(*c),
                    "inTransit": s.in_transit.format(*c),
                }),
            )
        })
        .collect();
    let summary = json!({
        "lastSeq": l.last_seq,
        "headHash": hex::encode(folded.last_hash),
        "streams": l.stream_count(),
        "eventsByType": folded.by_type,
        "counts": counts,
        "supply": supply,
        "compared": compared,
        "differences": diffs,
        "sql": sql_stats.json(),
    });
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary).map_err(anyhow::Error::from)?,
    )
    .context("writing summary.json")?;

    writeln!(
        out,
        "rebuild: folded {} events into {}",
        l.last_seq,
        out_dir.display()
    )?;
    for (name, n) in &counts {
        writeln!(out, "  {name:<18} {n:>10}")?;
    }
    print_sql(&sql_stats, out)?;
    for c in &compared {
        writeln!(out, "compared: {c}")?;
    }
    if diffs.is_empty() {
        writeln!(out, "differences: none")?;
    } else {
        writeln!(out, "differences: {}", diffs.len())?;
        for d in &diffs {
            writeln!(out, "  {d}")?;
        }
    }
    Ok(diffs.is_empty())
}

fn print_sql(stats: &sql_out::Stats, out: &mut dyn Write) -> Result<(), Failure> {
    writeln!(
        out,
        "sql: {} events into {} ({:.1} MiB) in {:.1?} ({:.1?} applying, {:.1?} finalizing of which {:.1?} indexing): {:.0} events/s ({:.0} events/s wall), {} events per transaction",
        stats.events,
        stats.path.display(),
        stats.bytes as f64 / (1024.0 * 1024.0),
        stats.wall,
        stats.apply,
        stats.finalize,
        stats.indexing,
        stats.events_per_second(),
        stats.wall_events_per_second(),
        stats.batch,
    )?;
    Ok(())
}

/// `rebuild --sql-only`: the SQL read models alone, from the checked chain.
pub fn run_sql_only(
    source: &Source,
    out_dir: &Path,
    sql_batch: usize,
    out: &mut dyn Write,
) -> Result<bool, Failure> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut sql = sql_out::Writer::create(out_dir, sql_batch)?;
    let mut events = Events::open(source, Range::ALL, "rebuild --sql-only")?;
    while let Some((raw, event)) = events.next()? {
        let hash = raw.hash;
        sql.push(event, hash)?;
    }
    drop(events);
    let stats = sql.finish()?;
    print_sql(&stats, out)?;
    Ok(true)
}
