//! Bulk settlement answers per invoice and moves money only for the ones that
//! succeed; a failed settlement is retried, never duplicated; who may settle
//! and retry; money in currencies with 0 and 3 minor units.

use crate::harness::*;
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn bulk_settle_answers_per_invoice_and_moves_only_the_successes() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let stranger = app.create_org("Stranger").await;
    let ok1 = pair.approved("100.00").await;
    let ok2 = pair.approved("200.00").await;
    let submitted = pair.submitted("50.00").await;
    let (id1, id2, id3) = (s(&ok1["id"]), s(&ok2["id"]), s(&submitted["id"]));
    let unknown = "0190f3c4-0000-7000-8000-000000000000";
    let r = buyer
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": [id1, id3, unknown, id2, id1] }),
        )
        .await
        .ok();
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "one result per id, in order: {r}");
    let summary: Vec<(String, bool, Option<&str>)> = results
        .iter()
        .map(|x| (s(&x["id"]), x["ok"] == true, x["error"]["code"].as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (id1.clone(), true, None),
            (id3.clone(), false, Some("INVALID_STATE_TRANSITION")),
            (unknown.to_string(), false, Some("NOT_FOUND")),
            (id2.clone(), true, None),
            (id1.clone(), false, Some("INVALID_STATE_TRANSITION")),
        ],
        "{r}"
    );
    for x in results.iter().filter(|x| x["ok"] == false) {
        assert!(
            x["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{x}"
        );
    }
    assert_eq!(
        buyer.money("USD").await,
        trio("700.00", "0", "700.00"),
        "the second mention of an invoice pays nothing"
    );
    assert_eq!(seller.money("USD").await, trio("300.00", "0", "300.00"));
    assert_eq!(buyer.walk("/api/v1/payments", 50).await.len(), 2);
    // Validation of the whole call: nothing applied.
    let before = snapshot(&app, &[seller, buyer]).await;
    buyer
        .post("/api/v1/payments/bulk-settle", json!({ "invoiceIds": [] }))
        .await
        .err(400, "VALIDATION_ERROR");
    buyer
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": ["not-an-id"] }),
        )
        .await
        .err(400, "VALIDATION_ERROR");
    let too_many: Vec<String> = (0..501).map(|_| unknown.to_string()).collect();
    buyer
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": too_many }),
        )
        .await
        .err(400, "VALIDATION_ERROR");
    // The seller and a stranger settle nothing of it.
    let ok3 = pair.approved("10.00").await;
    let before_third = snapshot(&app, &[seller, buyer]).await;
    assert_ne!(before, before_third);
    let by_seller = seller
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": [ok3["id"]] }),
        )
        .await
        .ok();
    assert_eq!(
        by_seller["results"][0]["error"]["code"], "FORBIDDEN",
        "{by_seller}"
    );
    let by_stranger = stranger
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": [ok3["id"]] }),
        )
        .await
        .ok();
    assert_eq!(
        by_stranger["results"][0]["error"]["code"], "NOT_FOUND",
        "{by_stranger}"
    );
    assert_eq!(
        snapshot(&app, &[seller, buyer]).await.balances,
        before_third.balances
    );
    // A key without payments:write may not settle at all.
    let approver = buyer
        .key_with(&["invoices:read", "invoices:approve", "payments:read"])
        .await;
    approver
        .post("/api/v1/payments/settle", json!({ "invoiceId": ok3["id"] }))
        .await
        .err(403, "FORBIDDEN");
    approver
        .post("/api/v1/payments/settle-all-due", json!({}))
        .await
        .err(403, "FORBIDDEN");
    // Others' payments are not there.
    let pid = s(&buyer.walk("/api/v1/payments", 50).await[0]["id"]);
    stranger
        .get(&format!("/api/v1/payments/{pid}"))
        .await
        .err(404, "NOT_FOUND");
    assert_eq!(
        seller.get(&format!("/api/v1/payments/{pid}")).await.ok()["id"],
        pid.as_str()
    );
}

#[tokio::test]
async fn a_failed_settlement_is_retried_not_duplicated() {
    let app = spawn_app().await;
    let pair = app.trading_pair("500.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let inv = pair.approved("120.00").await;
    let id = s(&inv["id"]);
    freeze(&app, buyer, "USD").await;
    let p1 = settle(buyer, &id).await;
    assert_eq!(p1["status"], "FAILED");
    assert!(
        p1["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "{p1}"
    );
    assert_eq!(
        buyer.money("USD").await,
        trio("500.00", "120.00", "380.00"),
        "the reservation is kept"
    );
    // Settling again (still frozen) retries the same payment.
    let p2 = settle(buyer, &id).await;
    assert_eq!(p2["id"], p1["id"], "one payment per invoice");
    assert_eq!(p2["status"], "FAILED");
    assert_eq!(p2["attempts"], 2);
    // The payee may not retry; a stranger does not see the payment.
    let by_payee = seller
        .post(
            "/api/v1/payments/retry-failed",
            json!({ "paymentIds": [p1["id"]] }),
        )
        .await
        .ok();
    assert_eq!(by_payee["results"][0]["ok"], false, "{by_payee}");
    assert_eq!(
        by_payee["results"][0]["error"]["code"], "FORBIDDEN",
        "{by_payee}"
    );
    let empty = seller
        .post("/api/v1/payments/retry-failed", json!({}))
        .await
        .ok();
    assert_eq!(
        empty["results"],
        json!([]),
        "the payee has nothing of its own to retry: {empty}"
    );
    unfreeze(&app, buyer, "USD").await;
    // settle-all-due picks the failed one up and completes it, once.
    let run = buyer
        .post(
            "/api/v1/payments/settle-all-due",
            json!({ "asOf": "2099-12-31" }),
        )
        .await
        .ok();
    assert_eq!(run["results"][0]["ok"], true, "{run}");
    assert_eq!(run["results"][0]["status"], "COMPLETED", "{run}");
    let p1_now = payment_now(buyer, &p1["id"]).await;
    assert_eq!(p1_now["status"], "COMPLETED", "{p1_now}");
    assert_eq!(p1_now["attempts"], 3, "{p1_now}");
    let payments = buyer.walk("/api/v1/payments", 50).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert!(payments[0]["completedAt"].is_string());
    assert_eq!(buyer.money("USD").await, trio("380.00", "0", "380.00"));
    assert_eq!(seller.money("USD").await, trio("120.00", "0", "120.00"));
    // Retrying a completed payment is a state error, per payment.
    let again = buyer
        .post(
            "/api/v1/payments/retry-failed",
            json!({ "paymentIds": [p1["id"]] }),
        )
        .await
        .ok();
    assert_eq!(
        again["results"][0]["error"]["code"], "INVALID_STATE_TRANSITION",
        "{again}"
    );
    assert_eq!(buyer.money("USD").await, trio("380.00", "0", "380.00"));
}

#[tokio::test]
async fn currencies_with_zero_and_three_minor_units() {
    let app = spawn_app().await;
    let a = app.create_org("Tokyo").await;
    let b = app.create_org("Kuwait").await;
    let conn = app.connect(&b, &a).await;
    let dep = app.deposit(&a, "JPY", "150000").await;
    assert_eq!(dep["amount"], "150000");
    let dep = app.deposit(&a, "KWD", "12.5").await;
    assert_eq!(
        dep["amount"], "12.500",
        "written with the currency's three minor units"
    );
    for (currency, amount) in [
        ("JPY", "1.5"),
        ("KWD", "0.0001"),
        ("USD", "0"),
        ("USD", "-1.00"),
        ("XXQ", "1"),
    ] {
        let r = app
            .admin
            .post(
                &format!("/api/v1/admin/organizations/{}/deposits", a.id),
                json!({ "currency": currency, "amount": amount, "reference": "bad" }),
            )
            .await;
        r.err(400, "VALIDATION_ERROR");
    }
    // 1.5 × 999 JPY = 1498.5 → 1499 (half away from zero).
    let inv = submit_invoice(
        &b,
        invoice_body(&conn, "JPY", vec![line("Tea", "1.5", "999", None)], DUE),
    )
    .await;
    let v = approve(&a, &inv, None).await;
    assert_eq!(v["total"], "1499");
    let p = settle(&a, &inv).await;
    assert_eq!(p["amount"], "1499");
    b.post(
        "/api/v1/invoices",
        invoice_body(&conn, "KWD", vec![line("Dates", "2", "1.2345", None)], DUE),
    )
    .await
    .err(400, "VALIDATION_ERROR");
    let inv = submit_invoice(
        &b,
        invoice_body(&conn, "KWD", vec![line("Dates", "3", "1.111", None)], DUE),
    )
    .await;
    approve(&a, &inv, None).await;
    assert_eq!(settle(&a, &inv).await["amount"], "3.333");
    let checker = a.key_with(&["treasury:approve"]).await;
    let w = submit_withdrawal(&a, "KWD", "1.5").await.ok();
    assert_eq!(w["amount"], "1.500");
    decide(&checker, "withdrawals", &s(&w["id"]), "approve")
        .await
        .ok();
    let bal = a.balance("KWD").await.expect("KWD balance");
    assert_eq!(
        (bal["total"].as_str(), bal["available"].as_str()),
        (Some("7.667"), Some("7.667")),
        "{bal}"
    );
    let bal = a.balance("JPY").await.expect("JPY balance");
    assert_eq!(bal["total"], "148501");
    let txs = transactions(&a, "currency=KWD").await;
    let amounts: Vec<&str> = txs.iter().filter_map(|t| t["amount"].as_str()).collect();
    assert_eq!(amounts, ["12.500", "3.333", "1.500"]);
    let csv = a
        .get("/api/v1/treasury/me/transactions/export?format=csv&currency=JPY")
        .await;
    assert_eq!(csv.status, 200);
    let mut reader = csv::Reader::from_reader(csv.bytes.as_slice());
    let headers = reader.headers().expect("header").clone();
    let amount_col = headers
        .iter()
        .position(|h| h == "amount")
        .expect("amount column");
    let amounts: Vec<String> = reader
        .records()
        .map(|r| r.expect("row")[amount_col].to_string())
        .collect();
    assert_eq!(amounts, ["150000", "1499"]);
}
