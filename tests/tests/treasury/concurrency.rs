//! 200 settlements and withdrawals at once against shared balances: available
//! never drops below zero (not in any reading taken meanwhile, not after any
//! entry of the change logs) and money is conserved.

use crate::harness::*;
use crate::support::*;
use futures::future::join_all;
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const INVOICES_PER_SELLER: usize = 50;

enum Outcome {
    Settled,
    Withdrawn(usize, Decimal),
    Refused(usize),
}

#[tokio::test]
async fn concurrent_settlements_and_withdrawals_never_overdraw() {
    let app = spawn_app().await;
    let a = app.create_org("Atlas (pays everyone)").await;
    let b = app.create_org("Borealis (sells)").await;
    let c = app.create_org("Cobalt (sells)").await;
    let orgs = [&a, &b, &c];
    app.deposit(&a, "USD", "10000.00").await;
    let b_to_a = app.connect(&b, &a).await;
    let c_to_a = app.connect(&c, &a).await;
    // 100 invoices of 60.00 reserve 6,000.00 of A's 10,000.00: 4,000.00 stay available.
    let mut invoices = Vec::new();
    for (seller, conn) in [(&b, &b_to_a), (&c, &c_to_a)] {
        let mut ids = Vec::new();
        for _ in 0..INVOICES_PER_SELLER {
            ids.push(
                submit_invoice(
                    seller,
                    invoice_body(conn, "USD", vec![line("Unit", "1", "60.00", None)], DUE),
                )
                .await,
            );
        }
        let r = a
            .post(
                "/api/v1/invoices/bulk-approve",
                json!({ "invoiceIds": ids }),
            )
            .await
            .ok();
        assert_eq!(
            r["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["ok"] == true)
                .count(),
            ids.len(),
            "{r}"
        );
        invoices.extend(ids);
    }
    assert_eq!(a.money("USD").await, trio("10000.00", "6000.00", "4000.00"));
    let checkers = [
        a.key_with(&["treasury:approve"]).await,
        b.key_with(&["treasury:approve"]).await,
    ];

    // A reader checks the invariant on every balance all along.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let watched: Vec<Org> = orgs.iter().map(|o| (*o).clone()).collect();
        tokio::spawn(async move {
            let mut readings = 0;
            while !stop.load(Ordering::Relaxed) {
                for o in &watched {
                    for bal in o.balances().await {
                        let (t, r, c, av) = (
                            dec(&bal["total"]),
                            dec(&bal["reserved"]),
                            dec(&bal["collateral"]),
                            dec(&bal["available"]),
                        );
                        assert!(
                            av >= Decimal::ZERO && t - r - c >= Decimal::ZERO,
                            "overdrawn mid-flight: {bal}"
                        );
                        assert_eq!(av, t - r - c, "{bal}");
                        readings += 1;
                    }
                }
            }
            readings
        })
    };

    // 100 settlements, 50 withdrawals of 90.00 by A (4,000 available: exactly
    // 44 fit), 50 of 70.00 by B (whose money arrives with the settlements).
    let mut tasks = Vec::new();
    for id in &invoices {
        let a = a.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let p = a
                .post("/api/v1/payments/settle", json!({ "invoiceId": id }))
                .await
                .ok();
            assert_eq!(p["status"], "COMPLETED", "{p}");
            Outcome::Settled
        }));
    }
    for i in 0..100 {
        let (org, who, amount) = if i % 2 == 0 {
            (a.clone(), 0, "90.00")
        } else {
            (b.clone(), 1, "70.00")
        };
        let checker = checkers[who].clone();
        tasks.push(tokio::spawn(async move {
            let r = submit_withdrawal(&org, "USD", amount).await;
            if r.status != 200 {
                r.err(400, "INSUFFICIENT_BALANCE");
                return Outcome::Refused(who);
            }
            let w = decide(&checker, "withdrawals", &s(&r.json()["id"]), "approve")
                .await
                .ok();
            assert_eq!(w["status"], "COMPLETED", "{w}");
            Outcome::Withdrawn(who, dec(&w["amount"]))
        }));
    }
    assert_eq!(tasks.len(), 200);
    let outcomes: Vec<Outcome> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let readings = watcher.await.expect("watcher");
    assert!(readings > 0);

    let settled = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Settled))
        .count();
    let mut withdrawn = [Decimal::ZERO; 2];
    let mut count = [0usize; 2];
    let mut refused = [0usize; 2];
    for o in &outcomes {
        match o {
            Outcome::Withdrawn(who, amount) => {
                withdrawn[*who] += amount;
                count[*who] += 1;
            }
            Outcome::Refused(who) => refused[*who] += 1,
            Outcome::Settled => {}
        }
    }
    assert_eq!(settled, 100);
    // A's settlements use their reservations, so its 4,000.00 fund exactly 44 × 90.00.
    assert_eq!(
        (count[0], refused[0]),
        (44, 6),
        "A's withdrawals: 4,000.00 available, 90.00 each"
    );
    assert!(
        count[1] <= 42,
        "B cannot withdraw more than the 3,000.00 it received"
    );
    assert_eq!(count[1] + refused[1], 50);

    // Conservation and the hand-worked totals.
    let a_total = d("10000.00") - d("6000.00") - withdrawn[0];
    let b_total = d("3000.00") - withdrawn[1];
    assert_eq!(a.money("USD").await, (a_total, Decimal::ZERO, a_total));
    assert_eq!(b.money("USD").await, (b_total, Decimal::ZERO, b_total));
    assert_eq!(c.money("USD").await, trio("3000.00", "0", "3000.00"));
    let sum: Decimal = figures(&orgs).await.values().map(|f| f.0).sum();
    assert_eq!(
        sum,
        d("10000.00") - withdrawn[0] - withdrawn[1],
        "sum of totals = deposits − completed withdrawals"
    );
    for id in &invoices {
        assert_eq!(a.invoice(id).await.ok()["status"], "SETTLED");
    }
    assert_eq!(
        a.walk("/api/v1/payments?status=COMPLETED", 200).await.len(),
        100
    );

    // Every entry of every change log: nothing ever went below zero, and the
    // figures chain from one movement to the next.
    for o in orgs {
        for bal in o.balances().await {
            let changes = o
                .walk(
                    &format!("/api/v1/treasury/me/balances/{}/changes", s(&bal["id"])),
                    200,
                )
                .await;
            let (mut total, mut reserved) = (Decimal::ZERO, Decimal::ZERO);
            for ch in &changes {
                let amount = dec(&ch["amount"]);
                match ch["kind"].as_str() {
                    Some("DEPOSIT" | "SETTLEMENT_IN" | "REFUND_IN") => total += amount,
                    Some("RESERVE") => reserved += amount,
                    Some("RELEASE") => reserved -= amount,
                    Some("SETTLEMENT_OUT" | "WITHDRAWAL") => {
                        total -= amount;
                        reserved -= amount;
                    }
                    other => panic!("unexpected change {other:?}: {ch}"),
                }
                assert_eq!(
                    (dec(&ch["totalAfter"]), dec(&ch["reservedAfter"])),
                    (total, reserved),
                    "{ch}"
                );
                // No collateral in this story: available is total − reserved.
                let free = total - reserved;
                assert!(free >= Decimal::ZERO, "overdrawn after {ch}");
                assert_eq!(dec(&ch["availableAfter"]), free, "{ch}");
            }
            assert_eq!(total, dec(&bal["total"]));
        }
    }
}
