//! Every money-moving POST (and the collateral PUT), retried with the same
//! requestId, answers the original bytes and moves money once: the balances
//! of everyone involved and the log position are unchanged by the retry, even
//! when the world moved on between the two calls.

use crate::harness::*;
use crate::support::*;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

/// Sends `body` under a fresh requestId, then again; returns the first answer
/// (a 200). The retry must be byte-identical and change nothing.
async fn twice(
    app: &TestApp,
    api: &Api,
    method: Method,
    path: &str,
    mut body: Value,
    orgs: &[&Org],
) -> Value {
    body["requestId"] = json!(rid());
    let first = api.send_json(method.clone(), path, &body).await;
    let value = first.ok();
    let after_first = snapshot(app, orgs).await;
    let again = api.send_json(method.clone(), path, &body).await;
    assert_eq!(
        again.status,
        200,
        "{method} {path}: retry answered {}: {}",
        again.status,
        again.text()
    );
    assert_eq!(
        again.text(),
        first.text(),
        "{method} {path}: the retry is not byte-identical"
    );
    assert_eq!(
        snapshot(app, orgs).await,
        after_first,
        "{method} {path}: the retry changed something"
    );
    value
}

async fn post_twice(app: &TestApp, api: &Api, path: &str, body: Value, orgs: &[&Org]) -> Value {
    twice(app, api, Method::POST, path, body, orgs).await
}

#[tokio::test]
async fn every_money_moving_post_moves_money_once() {
    let app = spawn_clock_app().await;
    app.set_clock("2030-07-01T09:00:00Z").await;
    let a = app.create_org("Atlas").await;
    let b = app.create_org("Borealis").await;
    let conn = app.connect(&b, &a).await;
    let orgs = [&a, &b];
    let admin = &app.admin;
    let org_path = |o: &Org, rest: &str| format!("/api/v1/admin/organizations/{}/{rest}", o.id);

    // --- operator: deposit, collateral, freeze, unfreeze ---------------------
    let deposit_body = json!({ "currency": "USD", "amount": "5000.00", "reference": "wire 1" });
    let mut keyed = deposit_body.clone();
    keyed["requestId"] = json!(rid());
    let first = admin
        .send_json(Method::POST, &org_path(&a, "deposits"), &keyed)
        .await;
    first.ok();
    assert_eq!(a.money("USD").await, trio("5000.00", "0", "5000.00"));
    // Another deposit lands in between; the retry still answers what it did then.
    app.deposit(&a, "USD", "1000.00").await;
    let before = snapshot(&app, &orgs).await;
    let again = admin
        .send_json(Method::POST, &org_path(&a, "deposits"), &keyed)
        .await;
    assert_eq!(
        (again.status, again.text()),
        (200, first.text()),
        "deposit retry"
    );
    assert_eq!(
        snapshot(&app, &orgs).await,
        before,
        "a deposit retry deposited again"
    );
    // The same key with another amount is refused and deposits nothing.
    let mut changed = keyed.clone();
    changed["amount"] = json!("5001.00");
    admin
        .send_json(Method::POST, &org_path(&a, "deposits"), &changed)
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(snapshot(&app, &orgs).await, before);
    // Eight identical deposits at once: one lands, the rest replay or wait.
    let mut burst = deposit_body.clone();
    burst["requestId"] = json!(rid());
    burst["amount"] = json!("10.00");
    let a_deposits = org_path(&a, "deposits");
    let answers =
        join_all((0..8).map(|_| admin.send_json(Method::POST, &a_deposits, &burst))).await;
    let originals: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert!(!originals.is_empty());
    for r in &answers {
        if r.status == 200 {
            assert_eq!(
                r.bytes, originals[0].bytes,
                "concurrent duplicates answer the same bytes"
            );
        } else {
            r.err(409, "REQUEST_IN_PROGRESS");
        }
    }
    assert_eq!(
        a.money("USD").await,
        trio("6010.00", "0", "6010.00"),
        "one of eight concurrent duplicates landed"
    );

    post_twice(
        &app,
        admin,
        &org_path(&b, "deposits"),
        json!({ "currency": "USD", "amount": "100.00", "reference": "b" }),
        &orgs,
    )
    .await;
    let v = twice(
        &app,
        admin,
        Method::PUT,
        &org_path(&a, "balances/USD/collateral"),
        json!({ "amount": "10.00" }),
        &orgs,
    )
    .await;
    assert_eq!(v["collateral"], "10.00");
    let v = post_twice(
        &app,
        admin,
        &org_path(&b, "balances/USD/freeze"),
        json!({ "reason": "kyc" }),
        &orgs,
    )
    .await;
    assert_eq!(v["frozen"], true);

    // --- settlements: with B frozen, settle fails; retry-failed after unfreeze --
    let mut inv = Vec::new();
    for amount in ["100.00", "200.00", "300.00", "400.00", "500.00", "600.00"] {
        let id = submit_invoice(
            &b,
            invoice_body(
                &conn,
                "USD",
                vec![line("Goods", "1", amount, None)],
                "2030-07-10",
            ),
        )
        .await;
        approve(&a, &id, None).await;
        inv.push(id);
    }
    assert_eq!(a.money("USD").await, trio("6010.00", "2100.00", "3900.00"));
    let failed = post_twice(
        &app,
        &a,
        "/api/v1/payments/settle",
        json!({ "invoiceId": inv[0] }),
        &orgs,
    )
    .await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let v = post_twice(
        &app,
        admin,
        &org_path(&b, "balances/USD/unfreeze"),
        json!({ "reason": "cleared" }),
        &orgs,
    )
    .await;
    assert_eq!(v["frozen"], false);
    let retried = post_twice(&app, &a, "/api/v1/payments/retry-failed", json!({}), &orgs).await;
    assert_eq!(retried["results"][0]["status"], "COMPLETED", "{retried}");
    let payment = payment_now(&a, &failed["id"]).await;
    assert_eq!(payment["attempts"], 2, "{payment}");
    assert_eq!(b.money("USD").await, trio("200.00", "0", "200.00"));

    let paid = post_twice(
        &app,
        &a,
        "/api/v1/payments/settle",
        json!({ "invoiceId": inv[1] }),
        &orgs,
    )
    .await;
    assert_eq!(paid["status"], "COMPLETED");
    let paid = post_twice(
        &app,
        &a,
        &format!("/api/v1/invoices/{}/settle", inv[2]),
        json!({}),
        &orgs,
    )
    .await;
    assert_eq!(paid["status"], "COMPLETED");
    let bulk = post_twice(
        &app,
        &a,
        "/api/v1/payments/bulk-settle",
        json!({ "invoiceIds": [inv[3]] }),
        &orgs,
    )
    .await;
    assert_eq!(bulk["results"][0]["ok"], true, "{bulk}");
    // settle-all-due on 2030-07-10 settles the last two; a retry after another
    // invoice falls due settles nothing more.
    app.set_clock("2030-07-10T12:00:00Z").await;
    let mut due = json!({ "requestId": rid() });
    let first = a
        .send_json(Method::POST, "/api/v1/payments/settle-all-due", &due)
        .await;
    assert_eq!(
        first.ok()["results"].as_array().map(Vec::len),
        Some(2),
        "{}",
        first.text()
    );
    let late = submit_invoice(
        &b,
        invoice_body(
            &conn,
            "USD",
            vec![line("Late", "1", "50.00", None)],
            "2030-07-10",
        ),
    )
    .await;
    approve(&a, &late, None).await;
    // (Balances only here: the scheduler may log `payment.due` for the late
    // invoice at any moment now, so the log position is not compared.)
    let before = snapshot(&app, &orgs).await.balances;
    let payments_before = a.walk("/api/v1/payments", 50).await.len();
    let again = a
        .send_json(Method::POST, "/api/v1/payments/settle-all-due", &due)
        .await;
    assert_eq!(
        (again.status, again.text()),
        (200, first.text()),
        "settle-all-due retry"
    );
    assert_eq!(
        snapshot(&app, &orgs).await.balances,
        before,
        "a settle-all-due retry settled more"
    );
    assert_eq!(a.walk("/api/v1/payments", 50).await.len(), payments_before);
    assert_eq!(a.invoice(&late).await.ok()["status"], "APPROVED");
    due["requestId"] = json!(rid());
    let fresh = a
        .send_json(Method::POST, "/api/v1/payments/settle-all-due", &due)
        .await
        .ok();
    assert_eq!(
        fresh["results"][0]["id"],
        late.as_str(),
        "a new requestId runs again: {fresh}"
    );
    // A: 6,010 − 2,150 paid; B: 100 + 2,150.
    assert_eq!(a.money("USD").await, trio("3860.00", "0", "3850.00"));
    assert_eq!(b.money("USD").await, trio("2250.00", "0", "2250.00"));

    // --- withdrawals -------------------------------------------------------------
    let checker = a.key_with(&["treasury:approve"]).await;
    let wd =
        |amount: &str| json!({ "currency": "USD", "amount": amount, "destination": destination() });
    let w1 = post_twice(
        &app,
        &a,
        "/api/v1/treasury/me/withdrawals",
        wd("100.00"),
        &orgs,
    )
    .await;
    assert_eq!(
        a.money("USD").await,
        trio("3860.00", "100.00", "3750.00"),
        "one hold, not two"
    );
    let w1 = post_twice(
        &app,
        &checker,
        &format!("/api/v1/treasury/me/withdrawals/{}/approve", s(&w1["id"])),
        json!({}),
        &orgs,
    )
    .await;
    assert_eq!(w1["status"], "COMPLETED");
    let w2 = post_twice(
        &app,
        &a,
        "/api/v1/treasury/me/withdrawals",
        wd("200.00"),
        &orgs,
    )
    .await;
    let w2 = post_twice(
        &app,
        &checker,
        &format!("/api/v1/treasury/me/withdrawals/{}/reject", s(&w2["id"])),
        json!({ "reason": "unknown account" }),
        &orgs,
    )
    .await;
    assert_eq!(w2["status"], "REJECTED");
    let w3 = post_twice(
        &app,
        &a,
        "/api/v1/treasury/me/withdrawals",
        wd("300.00"),
        &orgs,
    )
    .await;
    let w3 = post_twice(
        &app,
        &a,
        &format!("/api/v1/treasury/me/withdrawals/{}/cancel", s(&w3["id"])),
        json!({}),
        &orgs,
    )
    .await;
    assert_eq!(w3["status"], "CANCELLED");
    assert_eq!(
        a.money("USD").await,
        trio("3760.00", "0", "3750.00"),
        "one withdrawal of 100.00 left"
    );

    // --- refunds -------------------------------------------------------------------
    let out = transactions(&a, "type=SETTLEMENT_OUT").await;
    let tx = out
        .iter()
        .find(|t| t["amount"] == "500.00")
        .expect("the 500.00 settlement");
    let refund_body =
        |amount: &str| json!({ "transactionId": tx["id"], "amount": amount, "reason": "returned" });
    let r1 = post_twice(
        &app,
        &a,
        "/api/v1/treasury/me/refunds",
        refund_body("120.00"),
        &orgs,
    )
    .await;
    let r1 = post_twice(
        &app,
        &b,
        &format!("/api/v1/treasury/me/refunds/{}/approve", s(&r1["id"])),
        json!({}),
        &orgs,
    )
    .await;
    assert_eq!(r1["status"], "APPROVED");
    let r2 = post_twice(
        &app,
        &b,
        "/api/v1/treasury/me/refunds",
        refund_body("30.00"),
        &orgs,
    )
    .await;
    let r2 = post_twice(
        &app,
        &b,
        &format!("/api/v1/treasury/me/refunds/{}/reject", s(&r2["id"])),
        json!({ "reason": "not ours" }),
        &orgs,
    )
    .await;
    assert_eq!(r2["status"], "REJECTED");
    assert_eq!(
        a.walk("/api/v1/treasury/me/refunds", 50).await.len(),
        2,
        "one refund per create, not two"
    );

    // Bodiless calls carry the key in `Idempotency-Key`.
    let bodiless_twice = |org: &Org, path: String| {
        let (app, org) = (&app, org.clone());
        async move {
            let key = rid();
            let first = org.bodiless(Method::POST, &path, &key).await;
            let value = first.ok();
            let after_first = snapshot(app, &orgs).await;
            let again = org.bodiless(Method::POST, &path, &key).await;
            assert_eq!(
                (again.status, again.text()),
                (200, first.text()),
                "{path}: bodiless retry"
            );
            assert_eq!(
                snapshot(app, &orgs).await,
                after_first,
                "{path}: the bodiless retry changed something"
            );
            value
        }
    };
    let last = submit_invoice(
        &b,
        invoice_body(
            &conn,
            "USD",
            vec![line("Last", "1", "25.00", None)],
            "2030-12-31",
        ),
    )
    .await;
    approve(&a, &last, None).await;
    let paid = bodiless_twice(&a, format!("/api/v1/invoices/{last}/settle")).await;
    assert_eq!(paid["status"], "COMPLETED");
    let w4 = submit_withdrawal(&a, "USD", "5.00").await.ok();
    let w4 = bodiless_twice(
        &a,
        format!("/api/v1/treasury/me/withdrawals/{}/cancel", s(&w4["id"])),
    )
    .await;
    assert_eq!(w4["status"], "CANCELLED");

    // The end: each move counted once.
    assert_eq!(a.money("USD").await, trio("3855.00", "0", "3845.00"));
    assert_eq!(b.money("USD").await, trio("2155.00", "0", "2155.00"));
    assert_eq!(transactions(&a, "type=DEPOSIT").await.len(), 3);
    assert_eq!(transactions(&a, "type=WITHDRAWAL").await.len(), 1);
    assert_eq!(transactions(&a, "type=SETTLEMENT_OUT").await.len(), 8);
    assert_eq!(transactions(&a, "type=REFUND_IN").await.len(), 1);
    assert_eq!(a.walk("/api/v1/payments", 50).await.len(), 8);
}
