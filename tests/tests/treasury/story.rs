//! One money story across three organizations and two currencies, checked at
//! every step against figures worked out by hand, and at the end against the
//! conservation rule: per currency, the sum of all totals equals deposits
//! minus completed withdrawals.

use crate::harness::*;
use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Every balance of A, B and C as `(org, currency) → (total, reserved, available)`.
type Book = BTreeMap<(usize, String), (Decimal, Decimal, Decimal)>;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn book(entries: &[(usize, &str, (Decimal, Decimal, Decimal))]) -> Book {
    entries
        .iter()
        .map(|(o, c, f)| ((*o, c.to_string()), *f))
        .collect()
}

#[track_caller]
fn same_book(actual: &Book, expected: &Book, step: &str) {
    assert_eq!(
        actual, expected,
        "after {step}: balances (total, reserved, available) differ from the hand-worked figures"
    );
}

/// The payer's or payee's settlement transaction of a payment.
async fn settlement_tx(org: &Org, payment_id: &str, kind: &str) -> Value {
    let txs = transactions(org, &format!("type={kind}")).await;
    let mine: Vec<&Value> = txs
        .iter()
        .filter(|t| t["paymentId"] == payment_id)
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "{kind} transactions for payment {payment_id}: {txs:?}"
    );
    mine[0].clone()
}

#[tokio::test]
async fn three_organizations_two_currencies_every_figure_by_hand() {
    let app = spawn_app().await;
    let a = app.create_org("Atlas Buying").await;
    let b = app.create_org("Borealis Supply").await;
    let c = app.create_org("Cobalt Trading").await;
    let orgs = [&a, &b, &c];
    let b_to_a = app.connect(&b, &a).await;
    let c_to_a = app.connect(&c, &a).await;
    let b_to_c = app.connect(&b, &c).await;
    let a_to_c = app.connect(&a, &c).await;

    // --- deposits: USD 11,500.00 and EUR 4,850.00 in all -----------------
    let dep = deposit_ref(&app, &a, "USD", "10000.00", "wire 001").await;
    assert_eq!(dep["type"], "DEPOSIT");
    assert_eq!(dep["amount"], "10000.00");
    assert_eq!(dep["reference"], "wire 001");
    deposit_ref(&app, &a, "EUR", "4000.00", "wire 002").await;
    deposit_ref(&app, &c, "USD", "1500.00", "wire 003").await;
    deposit_ref(&app, &c, "EUR", "600.00", "wire 004").await;
    deposit_ref(&app, &b, "EUR", "250.00", "wire 005").await;
    let collateral_view = collateral(&app, &a, "USD", "1000.00").await;
    assert_eq!(
        collateral_view["collateral"], "1000.00",
        "{collateral_view}"
    );
    assert_eq!(collateral_view["available"], "9000.00", "{collateral_view}");
    same_book(
        &figures(&orgs).await,
        &book(&[
            (A, "EUR", trio("4000.00", "0", "4000.00")),
            (A, "USD", trio("10000.00", "0", "9000.00")),
            (B, "EUR", trio("250.00", "0", "250.00")),
            (C, "EUR", trio("600.00", "0", "600.00")),
            (C, "USD", trio("1500.00", "0", "1500.00")),
        ]),
        "deposits and collateral",
    );

    // --- invoices and approvals --------------------------------------------
    // I1 B→A USD: 3 × 450.00 + 150.00 at 10 % = 1,350.00 + 165.00 = 1,515.00.
    let i1 = submit_invoice(
        &b,
        invoice_body(
            &b_to_a,
            "USD",
            vec![
                line("Pallets", "3", "450.00", None),
                line("Freight", "1", "150.00", Some("10")),
            ],
            DUE,
        ),
    )
    .await;
    // I2 B→A USD: 2 × 1,000.00 at 7.5 % = 2,150.00, approved adjusted to 2,000.00.
    let i2 = submit_invoice(
        &b,
        invoice_body(
            &b_to_a,
            "USD",
            vec![line("Steel", "2", "1000.00", Some("7.5"))],
            DUE,
        ),
    )
    .await;
    // I3 C→A EUR: 1.5 × 533.33 = 799.995 → 800.00.
    let i3 = submit_invoice(
        &c,
        invoice_body(
            &c_to_a,
            "EUR",
            vec![line("Audit", "1.5", "533.33", None)],
            DUE,
        ),
    )
    .await;
    // I4 A→C EUR 250.00; I5 B→C USD 4 × 175.25 = 701.00; I6 B→A USD 300.00
    // (approved, never settled); I7 C→A USD 99.99 (never approved).
    let i4 = submit_invoice(
        &a,
        invoice_body(
            &a_to_c,
            "EUR",
            vec![line("Licence", "1", "250.00", None)],
            DUE,
        ),
    )
    .await;
    let i5 = submit_invoice(
        &b,
        invoice_body(
            &b_to_c,
            "USD",
            vec![line("Crates", "4", "175.25", None)],
            DUE,
        ),
    )
    .await;
    let i6 = submit_invoice(
        &b,
        invoice_body(
            &b_to_a,
            "USD",
            vec![line("Spare parts", "1", "300.00", None)],
            DUE,
        ),
    )
    .await;
    let i7 = submit_invoice(
        &c,
        invoice_body(
            &c_to_a,
            "USD",
            vec![line("Samples", "1", "99.99", None)],
            DUE,
        ),
    )
    .await;

    let v = approve(&a, &i1, None).await;
    assert_eq!(
        (
            v["status"].as_str(),
            v["total"].as_str(),
            v["approvedAmount"].as_str()
        ),
        (Some("APPROVED"), Some("1515.00"), Some("1515.00"))
    );
    let v = approve(&a, &i2, Some(("2000.00", "short delivery"))).await;
    assert_eq!(v["status"], "APPROVED_WITH_ADJUSTMENT");
    assert_eq!(v["total"], "2150.00");
    assert_eq!(v["approvedAmount"], "2000.00");
    let v = approve(&a, &i3, None).await;
    assert_eq!(v["approvedAmount"], "800.00");
    approve(&c, &i4, None).await;
    approve(&c, &i5, None).await;
    approve(&a, &i6, None).await;
    same_book(
        &figures(&orgs).await,
        &book(&[
            // 1,515 + 2,000 + 300 reserved; 10,000 − 3,815 − 1,000 collateral.
            (A, "EUR", trio("4000.00", "800.00", "3200.00")),
            (A, "USD", trio("10000.00", "3815.00", "5185.00")),
            (B, "EUR", trio("250.00", "0", "250.00")),
            (C, "EUR", trio("600.00", "250.00", "350.00")),
            (C, "USD", trio("1500.00", "701.00", "799.00")),
        ]),
        "approvals",
    );

    // --- settlements ---------------------------------------------------------
    let p1 = settle(&a, &i1).await;
    assert_eq!(
        (p1["status"].as_str(), p1["amount"].as_str()),
        (Some("COMPLETED"), Some("1515.00")),
        "{p1}"
    );
    assert_eq!(p1["payerOrganizationId"], a.id.as_str());
    assert_eq!(p1["payeeOrganizationId"], b.id.as_str());
    // The invoice alias settles the same way.
    let p2 = a.act(&i2, "settle", json!({})).await.ok();
    assert_eq!(
        (p2["status"].as_str(), p2["amount"].as_str()),
        (Some("COMPLETED"), Some("2000.00")),
        "{p2}"
    );
    assert_eq!(a.invoice(&i2).await.ok()["status"], "SETTLED");
    assert_eq!(a.invoice(&i2).await.ok()["paymentId"], p2["id"]);
    same_book(
        &figures(&orgs).await,
        &book(&[
            (A, "EUR", trio("4000.00", "800.00", "3200.00")),
            (A, "USD", trio("6485.00", "300.00", "5185.00")),
            (B, "EUR", trio("250.00", "0", "250.00")),
            (B, "USD", trio("3515.00", "0", "3515.00")),
            (C, "EUR", trio("600.00", "250.00", "350.00")),
            (C, "USD", trio("1500.00", "701.00", "799.00")),
        ]),
        "two USD settlements",
    );

    // --- a freeze makes settlements fail, keeping everything in place --------
    let frozen = freeze(&app, &c, "EUR").await;
    assert_eq!(frozen["frozen"], true, "{frozen}");
    let before_fail = figures(&orgs).await;
    let p3 = settle(&a, &i3).await;
    assert_eq!(p3["status"], "FAILED", "{p3}");
    assert!(
        p3["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "a failed payment says why: {p3}"
    );
    let p4 = settle(&c, &i4).await;
    assert_eq!(p4["status"], "FAILED", "{p4}");
    assert!(
        p4["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "{p4}"
    );
    assert_eq!(
        figures(&orgs).await,
        before_fail,
        "a failed settlement moved money"
    );
    for (buyer, inv) in [(&a, &i3), (&c, &i4)] {
        let v = buyer.invoice(inv).await.ok();
        assert_eq!(
            v["status"], "APPROVED",
            "a failed settlement leaves the invoice approved: {v}"
        );
    }
    assert!(transactions(&a, "type=SETTLEMENT_OUT&currency=EUR")
        .await
        .is_empty());
    let failed = a.walk("/api/v1/payments?status=FAILED", 50).await;
    assert_eq!(
        failed.len(),
        2,
        "A sees both failed payments (payer of one, payee of the other)"
    );

    // A retry while still frozen fails again and still moves nothing.
    let again = a
        .post("/api/v1/payments/retry-failed", json!({}))
        .await
        .ok();
    assert_eq!(
        again["results"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert_eq!(again["results"][0]["status"], "FAILED", "{again}");
    assert_eq!(figures(&orgs).await, before_fail);

    // --- unfreeze, retry-failed completes them ---------------------------------
    let thawed = unfreeze(&app, &c, "EUR").await;
    assert_eq!(thawed["frozen"], false);
    let retried = a
        .post("/api/v1/payments/retry-failed", json!({}))
        .await
        .ok();
    let results = retried["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "A retries only what it pays: {retried}");
    assert_eq!(results[0]["ok"], true, "{retried}");
    assert_eq!(results[0]["status"], "COMPLETED");
    let p3_now = payment_now(&a, &p3["id"]).await;
    assert_eq!(p3_now["status"], "COMPLETED");
    assert_eq!(
        p3_now["attempts"], 3,
        "settle, retry while frozen, retry: {p3_now}"
    );
    let retried = c
        .post(
            "/api/v1/payments/retry-failed",
            json!({ "paymentIds": [p4["id"]] }),
        )
        .await
        .ok();
    assert_eq!(retried["results"][0]["ok"], true, "{retried}");
    assert_eq!(retried["results"][0]["status"], "COMPLETED", "{retried}");
    let p4_now = payment_now(&c, &p4["id"]).await;
    assert_eq!(p4_now["attempts"], 2, "{p4_now}");
    assert_eq!(a.invoice(&i3).await.ok()["status"], "SETTLED");
    assert_eq!(c.invoice(&i4).await.ok()["status"], "SETTLED");
    let p5 = settle(&c, &i5).await;
    assert_eq!(p5["status"], "COMPLETED");
    same_book(
        &figures(&orgs).await,
        &book(&[
            (A, "EUR", trio("3450.00", "0.00", "3450.00")),
            (A, "USD", trio("6485.00", "300.00", "5185.00")),
            (B, "EUR", trio("250.00", "0", "250.00")),
            (B, "USD", trio("4216.00", "0", "4216.00")),
            (C, "EUR", trio("1150.00", "0", "1150.00")),
            (C, "USD", trio("799.00", "0", "799.00")),
        ]),
        "the retried settlements",
    );

    // --- withdrawals, maker-checker ------------------------------------------
    let b_checker = b.key_with(&["treasury:read", "treasury:approve"]).await;
    let a_checker = a.key_with(&["treasury:approve"]).await;
    let w1 = submit_withdrawal(&b, "USD", "1000.00").await.ok();
    assert_eq!(w1["status"], "PENDING_APPROVAL");
    assert_eq!(
        b.money("USD").await,
        trio("4216.00", "1000.00", "3216.00"),
        "a submitted withdrawal holds its amount"
    );
    let w1 = decide(&b_checker, "withdrawals", &s(&w1["id"]), "approve")
        .await
        .ok();
    assert_eq!(w1["status"], "COMPLETED", "{w1}");
    let w2 = submit_withdrawal(&a, "EUR", "450.00").await.ok();
    let w2 = decide(&a_checker, "withdrawals", &s(&w2["id"]), "reject")
        .await
        .ok();
    assert_eq!(w2["status"], "REJECTED");
    let w3 = submit_withdrawal(&c, "USD", "99.00").await.ok();
    assert_eq!(c.money("USD").await, trio("799.00", "99.00", "700.00"));
    let w3 = c
        .post(
            &format!("/api/v1/treasury/me/withdrawals/{}/cancel", s(&w3["id"])),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(w3["status"], "CANCELLED");
    let w4 = submit_withdrawal(&b, "EUR", "50.00").await.ok();
    decide(&b_checker, "withdrawals", &s(&w4["id"]), "approve")
        .await
        .ok();

    // --- refunds -----------------------------------------------------------------
    // A (the payer) asks back 215.00 of I1 against its own SETTLEMENT_OUT; B pays.
    let a_out = settlement_tx(&a, &s(&p1["id"]), "SETTLEMENT_OUT").await;
    assert_eq!(a_out["amount"], "1515.00");
    let r1 = a
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": a_out["id"], "amount": "215.00", "reason": "damaged pallet" }),
        )
        .await
        .ok();
    assert_eq!(r1["status"], "PENDING");
    let r1 = decide(&b, "refunds", &s(&r1["id"]), "approve").await.ok();
    assert_eq!(r1["status"], "APPROVED", "{r1}");
    // B offers 100.00 of I2 against its SETTLEMENT_IN, then rejects it: no move.
    let b_in = settlement_tx(&b, &s(&p2["id"]), "SETTLEMENT_IN").await;
    let r2 = b
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": b_in["id"], "amount": "100.00", "reason": "goodwill" }),
        )
        .await
        .ok();
    let r2 = decide(&b, "refunds", &s(&r2["id"]), "reject").await.ok();
    assert_eq!(r2["status"], "REJECTED");
    // C (payee of I3) refunds 80.00 to A.
    let c_in = settlement_tx(&c, &s(&p3["id"]), "SETTLEMENT_IN").await;
    let r3 = c
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": c_in["id"], "amount": "80.00", "reason": "hours overbilled" }),
        )
        .await
        .ok();
    decide(&c, "refunds", &s(&r3["id"]), "approve").await.ok();

    // --- the end: every figure by hand -----------------------------------------
    // A USD: 10,000 − 1,515 − 2,000 + 215 = 6,700; 300 reserved (I6); 1,000 collateral.
    // A EUR: 4,000 − 800 + 250 + 80 = 3,530.
    // B USD: 1,515 + 2,000 + 701 − 1,000 − 215 = 3,001.   B EUR: 250 − 50 = 200.
    // C USD: 1,500 − 701 = 799.                            C EUR: 600 + 800 − 250 − 80 = 1,070.
    let expected = book(&[
        (A, "EUR", trio("3530.00", "0", "3530.00")),
        (A, "USD", trio("6700.00", "300.00", "5400.00")),
        (B, "EUR", trio("200.00", "0", "200.00")),
        (B, "USD", trio("3001.00", "0", "3001.00")),
        (C, "EUR", trio("1070.00", "0", "1070.00")),
        (C, "USD", trio("799.00", "0", "799.00")),
    ]);
    let actual = figures(&orgs).await;
    same_book(&actual, &expected, "the whole story");
    for o in orgs {
        for bal in o.balances().await {
            let (t, r, av) = (
                dec(&bal["total"]),
                dec(&bal["reserved"]),
                dec(&bal["available"]),
            );
            assert_eq!(
                av,
                t - r - dec(&bal["collateral"]),
                "available = total − reserved − collateral: {bal}"
            );
        }
    }

    // Conservation, from the API's own records: deposits − completed withdrawals.
    for (currency, hand) in [("USD", "10500.00"), ("EUR", "4800.00")] {
        let sum: Decimal = actual
            .iter()
            .filter(|((_, c), _)| c == currency)
            .map(|(_, f)| f.0)
            .sum();
        assert_eq!(sum, d(hand), "{currency}: the sum of all totals");
        let mut deposits = Decimal::ZERO;
        let mut withdrawn = Decimal::ZERO;
        for o in orgs {
            for t in transactions(o, &format!("currency={currency}&type=DEPOSIT")).await {
                deposits += dec(&t["amount"]);
            }
            for w in o.walk("/api/v1/treasury/me/withdrawals", 50).await {
                if w["currency"] == currency && w["status"] == "COMPLETED" {
                    withdrawn += dec(&w["amount"]);
                }
            }
        }
        assert_eq!(
            sum,
            deposits - withdrawn,
            "{currency}: sum of totals ≠ deposits − completed withdrawals"
        );
    }

    // Each transaction's totalAfter chains: the last one of each balance is its total.
    for (i, o) in orgs.iter().enumerate() {
        for currency in ["USD", "EUR"] {
            let txs = transactions(o, &format!("currency={currency}")).await;
            let Some(last) = txs.last() else { continue };
            assert_eq!(
                dec(&last["totalAfter"]),
                expected[&(i, currency.to_string())].0,
                "{currency}: {last}"
            );
            let mut running = Decimal::ZERO;
            for t in &txs {
                let amount = dec(&t["amount"]);
                assert!(amount > Decimal::ZERO, "amounts are positive: {t}");
                match t["type"].as_str() {
                    Some("DEPOSIT" | "SETTLEMENT_IN" | "REFUND_IN") => running += amount,
                    Some("WITHDRAWAL" | "SETTLEMENT_OUT" | "REFUND_OUT") => running -= amount,
                    other => panic!("unknown type {other:?}: {t}"),
                }
                assert_eq!(dec(&t["totalAfter"]), running, "totalAfter: {t}");
            }
        }
    }
    // The invoices ended where the story left them.
    for (seller, inv, status) in [
        (&b, &i1, "SETTLED"),
        (&b, &i2, "SETTLED"),
        (&c, &i3, "SETTLED"),
        (&a, &i4, "SETTLED"),
        (&b, &i5, "SETTLED"),
        (&b, &i6, "APPROVED"),
        (&c, &i7, "SUBMITTED"),
    ] {
        let seen = seller.invoice(inv).await.ok();
        assert_eq!(seen["status"], status, "{seen}");
    }
}
