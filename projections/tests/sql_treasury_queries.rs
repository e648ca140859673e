//! The payments and treasury queries against the in-memory read model they
//! replace: over the golden log (every v1 event type), every list walked a
//! page at a time gives the items, order and cursors the in-memory lists
//! gave; lookups, `asOf`, summary, usage and export chunks agree. A small
//! hand-made log checks `asOf` when the clock was set back.

use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::events::{Actor, Event, Party, RecordedEvent};
use ledger_core::ids::{BalanceId, OrganizationId, TransactionId};
use ledger_core::money::{Amount, Currency};
use ledger_core::time::Timestamp;
use projections::sql::queries::payments::{self, ExportChunk, LogPage, PaymentFilter};
use projections::sql::queries::treasury::{self, Interval, TransactionFilter};
use projections::sql::{self};
use projections::{BalanceChange, ReadModel, TransactionType};
use rusqlite::Connection;
use std::collections::BTreeMap;

mod support;
use support::golden;

fn fold(events: &[RecordedEvent]) -> (tempfile::TempDir, Connection, ReadModel) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sql::open_writer(&dir.path().join(sql::FILE)).unwrap();
    sql::fold::apply_batch(&mut conn, events, [7; 32]).unwrap();
    let mut m = ReadModel::new();
    for e in events {
        m.apply(e).unwrap();
    }
    (dir, conn, m)
}

fn golden_fold() -> (tempfile::TempDir, Connection, ReadModel) {
    let events: Vec<RecordedEvent> = golden().into_iter().map(|(e, _)| e).collect();
    fold(&events)
}

/// The in-memory lists' paging: items in list order, a page starts at the
/// first item whose key sorts after the cursor.
fn memory_page<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> String,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let start = match cursor {
        None => 0,
        Some(c) => items
            .iter()
            .position(|i| key(i).as_str() > c)
            .unwrap_or(items.len()),
    };
    let mut rest: Vec<T> = items[start..].to_vec();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(&key)
    } else {
        None
    };
    (rest, next)
}

/// Walks a list both ways with `limit`, checking each page and cursor.
fn walk<T: Clone + PartialEq + std::fmt::Debug>(
    what: &str,
    expected: &[T],
    key: impl Fn(&T) -> String,
    limit: usize,
    mut page: impl FnMut(Option<&str>, usize) -> (Vec<T>, Option<String>),
) {
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let want = memory_page(expected, &key, cursor.as_deref(), limit);
        let got = page(cursor.as_deref(), limit);
        assert_eq!(got, want, "{what}: limit {limit} after {cursor:?}");
        seen += got.0.len();
        match got.1 {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected.len(), "{what}: limit {limit}");
}

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

fn orgs(m: &ReadModel) -> Vec<OrganizationId> {
    let mut orgs: Vec<_> = m.ledger.organizations.keys().copied().collect();
    orgs.sort();
    orgs
}

#[test]
fn payment_lists_page_and_filter_as_the_in_memory_lists_did() {
    let (_dir, c, m) = golden_fold();
    let mut listed = 0;
    for org in orgs(&m) {
        let all: Vec<_> = m
            .payments_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| m.ledger.payments[id].clone())
            .collect();
        listed += all.len();
        let mut filters = vec![PaymentFilter::default()];
        for p in &all {
            filters.push(PaymentFilter {
                status: Some(p.status),
                ..Default::default()
            });
            filters.push(PaymentFilter {
                invoice: Some(p.invoice_id),
                ..Default::default()
            });
            filters.push(PaymentFilter {
                from: Some(p.created_at),
                ..Default::default()
            });
            filters.push(PaymentFilter {
                to: Some(p.created_at),
                ..Default::default()
            });
        }
        for f in &filters {
            let expected: Vec<_> = all
                .iter()
                .filter(|p| {
                    f.status.is_none_or(|s| p.status == s)
                        && f.invoice.is_none_or(|i| p.invoice_id == i)
                        && f.from.is_none_or(|t| p.created_at >= t)
                        && f.to.is_none_or(|t| p.created_at < t)
                })
                .cloned()
                .collect();
            for limit in [1, 2, 50] {
                walk(
                    &format!("payments of {org} {f:?}"),
                    &expected,
                    |p| p.id.to_string(),
                    limit,
                    |after_key, limit| {
                        let page = LogPage { after_key, limit };
                        payments::list_payments(&c, org, f, &page).unwrap()
                    },
                );
            }
        }
        for p in &all {
            let got = payments::visible_payment(&c, org, p.id).unwrap();
            assert_eq!(got.as_ref(), Some(p));
        }
    }
    assert!(listed > 0, "the golden log has payments");
    // Either party sees a payment; nobody else does.
    let stranger = OrganizationId::new();
    for p in m.ledger.payments.values() {
        assert_eq!(payments::visible_payment(&c, stranger, p.id).unwrap(), None);
    }
}

#[test]
fn cursors_that_were_never_issued_resume_where_the_in_memory_lists_did() {
    let (_dir, c, m) = golden_fold();
    let org = orgs(&m)
        .into_iter()
        .max_by_key(|o| m.transactions_by_org.get(o).map_or(0, Vec::len))
        .unwrap();
    let txs: Vec<_> = m.transactions_by_org[&org]
        .iter()
        .map(|id| m.transactions[id].clone())
        .collect();
    let pays: Vec<_> = m
        .payments_by_org
        .get(&org)
        .into_iter()
        .flatten()
        .map(|id| m.ledger.payments[id].clone())
        .collect();
    let mut cursors: Vec<String> = ["", "0", "!", "~", "zzz", "0000000000000000000", "9"]
        .into_iter()
        .map(String::from)
        .collect();
    for t in &txs {
        cursors.push(seq_key(t.seq));
        cursors.push(format!("{}x", seq_key(t.seq)));
        cursors.push(seq_key(t.seq)[..19].to_string());
    }
    for p in &pays {
        let id = p.id.to_string();
        cursors.push(id.clone());
        cursors.push(id[..10].to_string());
        cursors.push(format!("{id}0"));
    }
    for cursor in cursors.iter().filter(|c| !c.is_empty()) {
        let page = LogPage {
            after_key: Some(cursor),
            limit: 3,
        };
        let got = treasury::list_transactions(&c, org, &TransactionFilter::default(), &page);
        let want = memory_page(&txs, |t| seq_key(t.seq), Some(cursor), 3);
        assert_eq!(got.unwrap(), want, "transactions after {cursor:?}");
        let got = payments::list_payments(&c, org, &PaymentFilter::default(), &page);
        let want = memory_page(&pays, |p| p.id.to_string(), Some(cursor), 3);
        assert_eq!(got.unwrap(), want, "payments after {cursor:?}");
    }
}

#[test]
fn transactions_and_balance_changes_are_rebuilt_from_their_columns() {
    let (_dir, c, m) = golden_fold();
    let types: Vec<Option<TransactionType>> = std::iter::once(None)
        .chain(TransactionType::ALL.map(Some))
        .collect();
    for org in orgs(&m) {
        let all: Vec<_> = m
            .transactions_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| m.transactions[id].clone())
            .collect();
        let mut filters: Vec<TransactionFilter> = types
            .iter()
            .map(|&kind| TransactionFilter {
                kind,
                ..Default::default()
            })
            .collect();
        for t in &all {
            filters.push(TransactionFilter {
                currency: Some(t.currency),
                from: Some(t.created_at),
                ..Default::default()
            });
            filters.push(TransactionFilter {
                to: Some(t.created_at),
                ..Default::default()
            });
        }
        for f in &filters {
            let expected: Vec<_> = all
                .iter()
                .filter(|t| {
                    f.kind.is_none_or(|k| t.kind == k)
                        && f.currency.is_none_or(|c| t.currency == c)
                        && f.from.is_none_or(|x| t.created_at >= x)
                        && f.to.is_none_or(|x| t.created_at < x)
                })
                .cloned()
                .collect();
            for limit in [1, 2, 50] {
                walk(
                    &format!("transactions of {org} {f:?}"),
                    &expected,
                    |t| seq_key(t.seq),
                    limit,
                    |after_key, limit| {
                        let page = LogPage { after_key, limit };
                        treasury::list_transactions(&c, org, f, &page).unwrap()
                    },
                );
            }
            let mut exported = Vec::new();
            let mut after = 0;
            loop {
                let chunk = ExportChunk {
                    after,
                    through: m.last_seq(),
                    limit: 2,
                };
                let rows = treasury::export_transactions(&c, org, f, chunk).unwrap();
                let Some((last, _)) = rows.last() else { break };
                after = *last;
                exported.extend(rows.into_iter().map(|(_, t)| t));
            }
            assert_eq!(exported, expected, "export of {org} {f:?}");
        }
        for t in &all {
            let got = treasury::own_transaction(&c, org, t.id).unwrap();
            assert_eq!(got.as_ref(), Some(t));
            let other = OrganizationId::new();
            assert_eq!(treasury::own_transaction(&c, other, t.id).unwrap(), None);
        }
    }
    let unknown = TransactionId::new();
    let org = orgs(&m)[0];
    assert_eq!(treasury::own_transaction(&c, org, unknown).unwrap(), None);

    assert!(!m.balance_changes.is_empty());
    for (balance, changes) in &m.balance_changes {
        for limit in [1, 2, 50] {
            walk(
                &format!("changes of {balance}"),
                changes,
                |ch| seq_key(ch.seq),
                limit,
                |after_key, limit| {
                    let page = LogPage { after_key, limit };
                    treasury::list_balance_changes(&c, *balance, &page).unwrap()
                },
            );
        }
    }
}

/// What the in-memory `asOf` answered: the last of the changes made up to
/// the first one made after the moment.
fn memory_as_of(changes: &[BalanceChange], at: Timestamp) -> Option<BalanceChange> {
    changes.iter().take_while(|ch| ch.at <= at).last().cloned()
}

#[test]
fn as_of_answers_the_last_change_at_or_before_the_moment() {
    let (_dir, c, m) = golden_fold();
    for (balance, changes) in &m.balance_changes {
        let mut moments = vec![Timestamp::from_micros(0), Timestamp::from_micros(i64::MAX)];
        for ch in changes {
            let t = ch.at.as_micros();
            moments.extend([t - 1, t, t + 1].map(Timestamp::from_micros));
        }
        for at in moments {
            let got = treasury::balance_as_of(&c, *balance, at).unwrap();
            assert_eq!(got, memory_as_of(changes, at), "{balance} as of {at}");
        }
    }
}

fn recorded(seq: u64, version: u64, at: i64, event: Event) -> RecordedEvent {
    RecordedEvent {
        seq,
        version,
        at: Timestamp::from_micros(at),
        actor: Actor::Admin,
        request_id: None,
        event,
    }
}

/// A balance funded by deposits of 1, 2, 3… made at `times` (micros).
fn deposits(times: &[i64]) -> (BalanceId, Vec<RecordedEvent>) {
    let balance = BalanceId::new();
    let usd = Currency::parse("USD").unwrap();
    let mut events = vec![recorded(
        1,
        1,
        times[0],
        Event::BalanceOpened {
            id: balance,
            organization_id: OrganizationId::new(),
            currency: usd,
        },
    )];
    for (i, &at) in times.iter().enumerate() {
        let n = i as u64 + 2;
        events.push(recorded(
            n,
            n,
            at,
            Event::FundsDeposited {
                balance_id: balance,
                transaction_id: TransactionId::new(),
                amount: Amount::parse(usd, &(i + 1).to_string()).unwrap(),
                reference: format!("d{i}"),
            },
        ));
    }
    (balance, events)
}

#[test]
fn as_of_reads_the_log_up_to_the_first_change_made_after_the_moment() {
    // The clock was set back between the second and third deposits.
    let (balance, events) = deposits(&[1_000, 3_000, 2_000, 4_000]);
    let (_dir, c, m) = fold(&events);
    let changes = &m.balance_changes[&balance];
    let total = |at: i64| {
        treasury::balance_as_of(&c, balance, Timestamp::from_micros(at))
            .unwrap()
            .map(|ch| ch.total_after.format(Currency::parse("USD").unwrap()))
    };
    assert_eq!(total(999), None);
    assert_eq!(total(1_000).as_deref(), Some("1.00"));
    // At 2500 the third deposit (made "at 2000") had not been made yet.
    assert_eq!(total(2_500).as_deref(), Some("1.00"));
    assert_eq!(total(3_000).as_deref(), Some("6.00"));
    assert_eq!(total(4_000).as_deref(), Some("10.00"));
    for at in 0..5_000 {
        let t = Timestamp::from_micros(at);
        let got = treasury::balance_as_of(&c, balance, t).unwrap();
        assert_eq!(got, memory_as_of(changes, t), "as of {at}");
    }
}

#[test]
fn a_page_boundary_falls_where_the_cursor_says_even_as_rows_are_added() {
    let (balance, events) = deposits(&[1_000, 2_000, 3_000, 4_000]);
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sql::open_writer(&dir.path().join(sql::FILE)).unwrap();
    sql::fold::apply_batch(&mut conn, &events[..4], [1; 32]).unwrap();
    let first = LogPage {
        after_key: None,
        limit: 2,
    };
    let (page, next) = treasury::list_balance_changes(&conn, balance, &first).unwrap();
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(next.as_deref(), Some("00000000000000000003"));
    // A deposit lands between the pages: the next page starts after seq 3
    // and now reaches it.
    sql::fold::apply_batch(&mut conn, &events[4..], [2; 32]).unwrap();
    let second = LogPage {
        after_key: next.as_deref(),
        limit: 2,
    };
    let (page, next) = treasury::list_balance_changes(&conn, balance, &second).unwrap();
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(next, None);
    // An export begun before it leaves it out.
    let org = m_org(&events);
    let chunk = ExportChunk {
        after: 0,
        through: 4,
        limit: 10,
    };
    let rows = treasury::export_transactions(&conn, org, &TransactionFilter::default(), chunk);
    assert_eq!(
        rows.unwrap().iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [2, 3, 4]
    );
}

fn m_org(events: &[RecordedEvent]) -> OrganizationId {
    match &events[0].event {
        Event::BalanceOpened {
            organization_id, ..
        } => *organization_id,
        other => panic!("not a balance: {other:?}"),
    }
}

#[test]
fn balances_withdrawals_and_refunds_read_as_the_in_memory_model() {
    let (_dir, c, m) = golden_fold();
    let (mut withdrawals, mut refunds) = (0, 0);
    for org in orgs(&m) {
        let own: Vec<_> = m
            .balances_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| projections::views::balance(&m.ledger.balances[id]))
            .collect();
        let got: Vec<_> = treasury::balances(&c, org)
            .unwrap()
            .iter()
            .map(projections::views::balance)
            .collect();
        assert_eq!(got, own, "balances of {org}");
        for id in m.balances_by_org.get(&org).into_iter().flatten() {
            let b = treasury::own_balance(&c, org, *id).unwrap().unwrap();
            assert_eq!(
                projections::views::balance(&b),
                projections::views::balance(&m.ledger.balances[id])
            );
            let stranger = OrganizationId::new();
            assert!(treasury::own_balance(&c, stranger, *id).unwrap().is_none());
        }

        let all: Vec<_> = m
            .withdrawals_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| m.ledger.withdrawals[id].clone())
            .collect();
        withdrawals += all.len();
        let mut statuses: Vec<Option<&str>> = vec![None, Some("NOPE"), Some("")];
        statuses.extend(all.iter().map(|w| Some(w.status.as_str())));
        for status in statuses {
            let expected: Vec<_> = all
                .iter()
                .filter(|w| status.is_none_or(|s| w.status.as_str() == s))
                .cloned()
                .collect();
            for limit in [1, 2] {
                walk(
                    &format!("withdrawals of {org} {status:?}"),
                    &expected,
                    |w| w.id.to_string(),
                    limit,
                    |after_key, limit| {
                        let page = LogPage { after_key, limit };
                        treasury::list_withdrawals(&c, org, status, &page).unwrap()
                    },
                );
            }
        }
        for w in &all {
            let got = treasury::own_withdrawal(&c, org, w.id).unwrap();
            assert_eq!(got.as_ref(), Some(w));
        }

        let all: Vec<_> = m
            .refunds_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| m.ledger.refunds[id].clone())
            .collect();
        refunds += all.len();
        for limit in [1, 2] {
            walk(
                &format!("refunds of {org}"),
                &all,
                |r| r.id.to_string(),
                limit,
                |after_key, limit| {
                    let page = LogPage { after_key, limit };
                    treasury::list_refunds(&c, org, &page).unwrap()
                },
            );
        }
        for r in &all {
            let got = treasury::visible_refund(&c, org, r.id).unwrap();
            assert_eq!(got.as_ref(), Some(r));
            let stranger = OrganizationId::new();
            assert_eq!(treasury::visible_refund(&c, stranger, r.id).unwrap(), None);
        }
    }
    assert!(withdrawals > 0 && refunds > 0, "the golden log has both");
    for w in m.ledger.withdrawals.values() {
        let stranger = OrganizationId::new();
        assert_eq!(treasury::own_withdrawal(&c, stranger, w.id).unwrap(), None);
    }
}

#[test]
fn summary_and_usage_add_up_as_the_in_memory_routes_did() {
    let (_dir, c, m) = golden_fold();
    for org in orgs(&m) {
        let mut want: BTreeMap<Currency, treasury::CurrencySummary> = BTreeMap::new();
        for id in m.balances_by_org.get(&org).into_iter().flatten() {
            let b = &m.ledger.balances[id];
            let s = want.entry(b.currency).or_default();
            s.total = b.total;
            s.reserved = b.reserved;
            s.collateral = b.collateral;
            s.available = b.available();
        }
        for id in m.invoices_by_org.get(&org).into_iter().flatten() {
            let inv = &m.invoices[id];
            let owed =
                inv.status.is_approved() || inv.status == InvoiceStatus::CancellationRequested;
            let (Some(amount), true) = (inv.approved_amount, owed) else {
                continue;
            };
            let s = want.entry(inv.currency).or_default();
            match inv.party_of(org) {
                Some(Party::Seller) => s.receivable = s.receivable.checked_add(amount).unwrap(),
                Some(Party::Buyer) => s.payable = s.payable.checked_add(amount).unwrap(),
                None => {}
            }
        }
        assert_eq!(
            treasury::summary(&c, org).unwrap(),
            want,
            "summary of {org}"
        );

        for id in m.balances_by_org.get(&org).into_iter().flatten() {
            let txs: Vec<_> = m.transactions_by_org[&org]
                .iter()
                .map(|t| &m.transactions[t])
                .filter(|t| t.balance_id == *id)
                .collect();
            let mut bounds = vec![(None, None)];
            for t in &txs {
                bounds.push((Some(t.created_at), None));
                bounds.push((None, Some(t.created_at)));
            }
            for interval in [Interval::Day, Interval::Week, Interval::Month] {
                for (from, to) in &bounds {
                    let mut want: BTreeMap<_, (Amount, Amount, Amount)> = BTreeMap::new();
                    for t in txs.iter().filter(|t| {
                        from.is_none_or(|f| t.created_at >= f)
                            && to.is_none_or(|x| t.created_at < x)
                    }) {
                        let e = want.entry(interval.start(t.created_at.date())).or_insert((
                            Amount::ZERO,
                            Amount::ZERO,
                            Amount::ZERO,
                        ));
                        let inflow = matches!(
                            t.kind,
                            TransactionType::Deposit
                                | TransactionType::SettlementIn
                                | TransactionType::RefundIn
                        );
                        if inflow {
                            e.0 = e.0.checked_add(t.amount).unwrap();
                        } else {
                            e.1 = e.1.checked_add(t.amount).unwrap();
                        }
                        e.2 = t.total_after;
                    }
                    let got: BTreeMap<_, _> = treasury::usage(&c, *id, interval, *from, *to)
                        .unwrap()
                        .into_iter()
                        .map(|u| (u.start, (u.inflow, u.outflow, u.closing)))
                        .collect();
                    assert_eq!(got, want, "usage of {id} {interval:?} {from:?}..{to:?}");
                }
            }
        }
    }
}

#[test]
fn payment_export_chunks_walk_every_payment_once() {
    let (_dir, c, m) = golden_fold();
    for org in orgs(&m) {
        let expected: Vec<_> = m
            .payments_by_org
            .get(&org)
            .into_iter()
            .flatten()
            .map(|id| m.ledger.payments[id].clone())
            .collect();
        let mut got = Vec::new();
        let mut after = 0;
        loop {
            let chunk = ExportChunk {
                after,
                through: m.last_seq(),
                limit: 1,
            };
            let rows = payments::export_payments(&c, org, &PaymentFilter::default(), chunk);
            let rows = rows.unwrap();
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            got.extend(rows.into_iter().map(|(_, p)| p));
        }
        assert_eq!(got, expected, "payments export of {org}");
    }
}
