//! `settle-all-due` settles exactly the caller's approved invoices due on or
//! before `asOf` (default: today in the server's clock) and nothing else.

use crate::harness::*;
use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn settled_ids(v: &Value) -> BTreeSet<String> {
    let results = v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"));
    for r in results {
        assert_eq!(r["ok"], true, "every due invoice settles: {v}");
        assert_eq!(r["status"], "COMPLETED", "{v}");
    }
    results.iter().map(|r| s(&r["id"])).collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn settles_exactly_the_approved_invoices_due_by_as_of() {
    let app = spawn_clock_app().await;
    app.set_clock("2030-03-01T10:00:00Z").await;
    let a = app.create_org("Atlas (buyer)").await;
    let b = app.create_org("Borealis (seller)").await;
    let c = app.create_org("Cobalt (another buyer)").await;
    let b_to_a = app.connect(&b, &a).await;
    let b_to_c = app.connect(&b, &c).await;
    let a_to_c = app.connect(&a, &c).await;
    deposit_ref(&app, &a, "USD", "10000.00", "funding").await;
    deposit_ref(&app, &a, "EUR", "1000.00", "funding").await;
    deposit_ref(&app, &c, "USD", "10000.00", "funding").await;

    let inv = |conn: &str, currency: &str, amount: &str, due: &str| {
        invoice_body(conn, currency, vec![line("Goods", "1", amount, None)], due)
    };
    // Due before, on and after the day it runs (2030-03-15), in two currencies.
    let due_10 = submit_invoice(&b, inv(&b_to_a, "USD", "100.00", "2030-03-10")).await;
    approve(&a, &due_10, None).await;
    let due_15_adjusted = submit_invoice(&b, inv(&b_to_a, "USD", "250.00", "2030-03-15")).await;
    approve(&a, &due_15_adjusted, Some(("200.00", "partial delivery"))).await;
    let due_12_eur = submit_invoice(&b, inv(&b_to_a, "EUR", "40.00", "2030-03-12")).await;
    approve(&a, &due_12_eur, None).await;
    let due_16 = submit_invoice(&b, inv(&b_to_a, "USD", "300.00", "2030-03-16")).await;
    approve(&a, &due_16, None).await;
    let due_later = submit_invoice(&b, inv(&b_to_a, "USD", "700.00", "2030-04-30")).await;
    approve(&a, &due_later, None).await;
    // Due, but not approved: submitted, disputed, info requested.
    let submitted = submit_invoice(&b, inv(&b_to_a, "USD", "11.00", "2030-03-05")).await;
    let disputed = submit_invoice(&b, inv(&b_to_a, "USD", "12.00", "2030-03-05")).await;
    a.act(&disputed, "dispute", json!({ "reason": "wrong goods" }))
        .await
        .ok();
    let questioned = submit_invoice(&b, inv(&b_to_a, "USD", "13.00", "2030-03-05")).await;
    a.act(
        &questioned,
        "request-info",
        json!({ "question": "PO number?" }),
    )
    .await
    .ok();
    // Approved and due, but a cancellation is pending.
    let cancelling = submit_invoice(&b, inv(&b_to_a, "USD", "14.00", "2030-03-05")).await;
    approve(&a, &cancelling, None).await;
    a.act(
        &cancelling,
        "request-cancellation",
        json!({ "reason": "duplicate" }),
    )
    .await
    .ok();
    // Approved and due, already settled by hand.
    let settled_before = submit_invoice(&b, inv(&b_to_a, "USD", "15.00", "2030-03-02")).await;
    approve(&a, &settled_before, None).await;
    settle(&a, &settled_before).await;
    // Approved and due, but someone else pays: C to B, and C to A (A sells).
    let other_buyer = submit_invoice(&b, inv(&b_to_c, "USD", "16.00", "2030-03-05")).await;
    approve(&c, &other_buyer, None).await;
    let a_sells = submit_invoice(&a, inv(&a_to_c, "USD", "17.00", "2030-03-05")).await;
    approve(&c, &a_sells, None).await;

    let orgs = [&a, &b, &c];
    let before = figures(&orgs).await;

    // A day before the first due date: nothing to do.
    let none = a
        .post(
            "/api/v1/payments/settle-all-due",
            json!({ "asOf": "2030-03-09" }),
        )
        .await
        .ok();
    assert!(settled_ids(&none).is_empty(), "{none}");
    assert_eq!(figures(&orgs).await, before);

    // 2030-03-15 late in the day, in the server's clock: asOf defaults to today.
    app.set_clock("2030-03-15T23:59:59Z").await;
    let run = a
        .post("/api/v1/payments/settle-all-due", json!({}))
        .await
        .ok();
    assert_eq!(
        settled_ids(&run),
        set(&[&due_10, &due_15_adjusted, &due_12_eur]),
        "exactly the approved invoices due on or before today: {run}"
    );
    // Bulk rows are compact: each settled invoice's payment says how much.
    let mut amounts = BTreeSet::new();
    for r in run["results"].as_array().unwrap() {
        let invoice = a.invoice(&s(&r["id"])).await.ok();
        let payment = payment_now(&a, &invoice["paymentId"]).await;
        amounts.insert(format!(
            "{} {}",
            s(&payment["currency"]),
            s(&payment["amount"])
        ));
    }
    assert_eq!(
        amounts,
        ["EUR 40.00", "USD 100.00", "USD 200.00"]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        "the adjusted invoice settles at its approved amount"
    );
    for (id, status) in [
        (&due_10, "SETTLED"),
        (&due_15_adjusted, "SETTLED"),
        (&due_12_eur, "SETTLED"),
        (&due_16, "APPROVED"),
        (&due_later, "APPROVED"),
        (&submitted, "SUBMITTED"),
        (&disputed, "DISPUTED"),
        (&questioned, "INFO_REQUESTED"),
        (&cancelling, "CANCELLATION_REQUESTED"),
        (&settled_before, "SETTLED"),
        (&other_buyer, "APPROVED"),
    ] {
        assert_eq!(b.invoice(id).await.ok()["status"], status, "invoice {id}");
    }
    assert_eq!(a.invoice(&a_sells).await.ok()["status"], "APPROVED");
    // A paid 100 + 200 USD and 40 EUR out of its reservations; B got them; C untouched.
    // A USD reserved before: 100 + 200 + 300 + 700 + 14 = 1,314; total 10,000 − 15.
    assert_eq!(a.money("USD").await, trio("9685.00", "1014.00", "8671.00"));
    assert_eq!(a.money("EUR").await, trio("960.00", "0", "960.00"));
    assert_eq!(b.money("USD").await, trio("315.00", "0", "315.00"));
    assert_eq!(b.money("EUR").await, trio("40.00", "0", "40.00"));
    assert_eq!(
        c.money("USD").await,
        before[&(2, "USD".to_string())],
        "another buyer's invoices are not touched"
    );
    assert_eq!(c.balance("EUR").await, None);

    // Run again the same day: nothing left to settle.
    let again = a
        .post("/api/v1/payments/settle-all-due", json!({}))
        .await
        .ok();
    assert!(settled_ids(&again).is_empty(), "{again}");

    // An explicit asOf reaches further than today.
    let ahead = a
        .post(
            "/api/v1/payments/settle-all-due",
            json!({ "asOf": "2030-03-16" }),
        )
        .await
        .ok();
    assert_eq!(settled_ids(&ahead), set(&[&due_16]), "{ahead}");
    assert_eq!(a.money("USD").await, trio("9385.00", "714.00", "8671.00"));

    // The seller cannot settle what it is owed; C settles its own.
    let by_seller = b
        .post(
            "/api/v1/payments/settle-all-due",
            json!({ "asOf": "2030-12-31" }),
        )
        .await
        .ok();
    assert!(
        settled_ids(&by_seller).is_empty(),
        "B buys nothing: {by_seller}"
    );
    let c_run = c
        .post("/api/v1/payments/settle-all-due", json!({}))
        .await
        .ok();
    assert_eq!(
        settled_ids(&c_run),
        set(&[&other_buyer, &a_sells]),
        "{c_run}"
    );
    assert_eq!(a.invoice(&due_later).await.ok()["status"], "APPROVED");
    a.post(
        "/api/v1/payments/settle-all-due",
        json!({ "asOf": "15/03/2030" }),
    )
    .await
    .err(400, "VALIDATION_ERROR");
}
