//! Refused money moves change nothing: withdrawal maker-checker, refund caps
//! and insufficient funds. Each refusal is compared against a snapshot of
//! every balance involved (whole JSON) and the log position.

use crate::harness::*;
use crate::support::*;
use serde_json::{json, Value};

/// Runs `call`, expects `status code`, and checks that nothing moved.
macro_rules! refused {
    ($app:expr, $orgs:expr, $status:expr, $code:expr, $call:expr) => {{
        let before = snapshot($app, $orgs).await;
        let details = $call.await.err($status, $code);
        assert_eq!(
            snapshot($app, $orgs).await,
            before,
            "a refused call ({}) changed something",
            $code
        );
        details
    }};
}

#[tokio::test]
async fn withdrawal_maker_checker() {
    let app = spawn_app().await;
    let a = app.create_org("Atlas").await;
    let b = app.create_org("Borealis").await;
    app.deposit(&a, "USD", "1000.00").await;
    let orgs = [&a, &b];
    // The maker: treasury:write and treasury:approve, but it submits.
    let maker = a
        .key_with(&["treasury:read", "treasury:write", "treasury:approve"])
        .await;
    let clerk = a.key_with(&["treasury:read", "treasury:write"]).await;
    let checker = a.key_with(&["treasury:approve"]).await;

    let w = submit_withdrawal(&maker, "USD", "400.00").await.ok();
    let wid = s(&w["id"]);
    assert_eq!(w["status"], "PENDING_APPROVAL");
    assert_eq!(w["amount"], "400.00");
    assert_eq!(w["submittedByApiKeyId"], maker.key_id.as_str(), "{w}");
    assert_eq!(a.money("USD").await, trio("1000.00", "400.00", "600.00"));

    // The same key may not approve or reject its own withdrawal, whatever it holds.
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(&maker, "withdrawals", &wid, "approve")
    );
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(&maker, "withdrawals", &wid, "reject")
    );
    // Another key without treasury:approve may not either.
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(&clerk, "withdrawals", &wid, "approve")
    );
    // Only the submitter cancels.
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        clerk.post(
            &format!("/api/v1/treasury/me/withdrawals/{wid}/cancel"),
            json!({})
        )
    );
    // Another organization does not see it at all.
    refused!(
        &app,
        &orgs,
        404,
        "NOT_FOUND",
        decide(&b, "withdrawals", &wid, "approve")
    );
    refused!(
        &app,
        &orgs,
        404,
        "NOT_FOUND",
        b.post(
            &format!("/api/v1/treasury/{}/withdrawals/{wid}/approve", a.id),
            json!({ "reason": "x" })
        )
    );
    // A second key with treasury:approve approves.
    let done = decide(&checker, "withdrawals", &wid, "approve").await.ok();
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["decidedByApiKeyId"], checker.key_id.as_str(), "{done}");
    assert_eq!(a.money("USD").await, trio("600.00", "0", "600.00"));
    let tx = transactions(&a, "type=WITHDRAWAL").await;
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0]["amount"], "400.00");
    assert_eq!(tx[0]["totalAfter"], "600.00");
    // Decided is decided: approve again, reject or cancel now is a state error.
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        decide(&checker, "withdrawals", &wid, "approve")
    );
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        decide(&checker, "withdrawals", &wid, "reject")
    );
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        maker.post(
            &format!("/api/v1/treasury/me/withdrawals/{wid}/cancel"),
            json!({})
        )
    );

    // Reject releases the hold; cancel by the submitter too.
    let w2 = submit_withdrawal(&maker, "USD", "250.00").await.ok();
    let rejected = decide(&checker, "withdrawals", &s(&w2["id"]), "reject")
        .await
        .ok();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["rejectionReason"], "four eyes");
    let w3 = submit_withdrawal(&maker, "USD", "250.00").await.ok();
    let cancelled = maker
        .post(
            &format!("/api/v1/treasury/me/withdrawals/{}/cancel", s(&w3["id"])),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(a.money("USD").await, trio("600.00", "0", "600.00"));
    let listed = a.walk("/api/v1/treasury/me/withdrawals", 2).await;
    let statuses: Vec<&str> = listed.iter().filter_map(|w| w["status"].as_str()).collect();
    assert_eq!(statuses, ["COMPLETED", "REJECTED", "CANCELLED"]);
    assert_eq!(
        a.walk("/api/v1/treasury/me/withdrawals?status=REJECTED", 50)
            .await
            .len(),
        1
    );
    // A reject needs a reason.
    let w4 = submit_withdrawal(&maker, "USD", "1.00").await.ok();
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        checker.post(
            &format!("/api/v1/treasury/me/withdrawals/{}/reject", s(&w4["id"])),
            json!({})
        )
    );
}

#[tokio::test]
async fn refund_caps_and_who_decides() {
    let app = spawn_app().await;
    let pair = app.trading_pair("5000.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let third = app.create_org("Outsider").await;
    let orgs = [seller, buyer, &third];
    let inv = pair.approved("1000.00").await;
    let payment = settle(buyer, &s(&inv["id"])).await;
    let out_tx = transactions(buyer, "type=SETTLEMENT_OUT").await.remove(0);
    let in_tx = transactions(seller, "type=SETTLEMENT_IN").await.remove(0);
    assert_eq!(out_tx["paymentId"], payment["id"]);
    let refund = |org: &Org, tx: &Value, amount: &str| {
        let org = org.clone();
        let body =
            json!({ "transactionId": tx["id"], "amount": amount, "reason": "returned goods" });
        async move { org.post("/api/v1/treasury/me/refunds", body).await }
    };

    // Over the settled amount at once.
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "1000.01")
    );
    // 600 pending (from the buyer, against its side) leaves 400 for anyone.
    let r600 = refund(buyer, &out_tx, "600.00").await.ok();
    assert_eq!(r600["status"], "PENDING");
    assert_eq!(r600["amount"], "600.00");
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(seller, &in_tx, "400.01")
    );
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "500.00")
    );
    // Not a settlement transaction, or not one the caller is party to.
    let deposit = transactions(buyer, "type=DEPOSIT").await.remove(0);
    let code = refund(buyer, &deposit, "1.00").await.client_error();
    assert!(code == "NOT_FOUND" || code == "VALIDATION_ERROR", "{code}");
    refused!(
        &app,
        &orgs,
        404,
        "NOT_FOUND",
        refund(&third, &out_tx, "1.00")
    );
    // Bad amounts.
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "0.00")
    );
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "1.001")
    );
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "-5.00")
    );

    // Only the payee (the seller) decides; the payer may not approve its own ask.
    let r600_id = s(&r600["id"]);
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(buyer, "refunds", &r600_id, "approve")
    );
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(buyer, "refunds", &r600_id, "reject")
    );
    refused!(
        &app,
        &orgs,
        404,
        "NOT_FOUND",
        decide(&third, "refunds", &r600_id, "approve")
    );
    let viewer = seller.key_with(&["treasury:read", "treasury:write"]).await;
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        decide(&viewer, "refunds", &r600_id, "approve")
    );

    // Rejecting frees the cap: 500 now fits, then 500 more, then nothing.
    let rejected = decide(seller, "refunds", &r600_id, "reject").await.ok();
    assert_eq!(rejected["status"], "REJECTED");
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        decide(seller, "refunds", &r600_id, "approve")
    );
    let r500 = refund(seller, &in_tx, "500.00").await.ok();
    let approved = decide(seller, "refunds", &s(&r500["id"]), "approve")
        .await
        .ok();
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(seller.money("USD").await, trio("500.00", "0", "500.00"));
    assert_eq!(buyer.money("USD").await, trio("4500.00", "0", "4500.00"));
    let r_rest = refund(buyer, &out_tx, "500.00").await.ok();
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        refund(buyer, &out_tx, "0.01")
    );
    // The payee can approve only with the funds available: spend them first.
    let checker = seller.key_with(&["treasury:approve"]).await;
    let w = submit_withdrawal(seller, "USD", "100.00").await.ok();
    decide(&checker, "withdrawals", &s(&w["id"]), "approve")
        .await
        .ok();
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        decide(seller, "refunds", &s(&r_rest["id"]), "approve")
    );
    // Collateral counts against availability too.
    app.deposit(seller, "USD", "100.00").await;
    collateral(&app, seller, "USD", "1.00").await;
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        decide(seller, "refunds", &s(&r_rest["id"]), "approve")
    );
    collateral(&app, seller, "USD", "0.00").await;
    let ok = decide(seller, "refunds", &s(&r_rest["id"]), "approve")
        .await
        .ok();
    assert_eq!(ok["status"], "APPROVED");
    assert_eq!(seller.money("USD").await, trio("0.00", "0", "0.00"));
    assert_eq!(buyer.money("USD").await, trio("5000.00", "0", "5000.00"));
    let refunds = buyer.walk("/api/v1/treasury/me/refunds", 2).await;
    assert_eq!(
        refunds.len(),
        3,
        "the payer sees every refund of its payment"
    );
    let approved_sum: rust_decimal::Decimal = refunds
        .iter()
        .filter(|r| r["status"] == "APPROVED")
        .map(|r| dec(&r["amount"]))
        .sum();
    assert_eq!(
        approved_sum,
        d("1000.00"),
        "refunded in all: exactly what was settled"
    );
    assert_eq!(transactions(buyer, "type=REFUND_IN").await.len(), 2);
    assert_eq!(transactions(seller, "type=REFUND_OUT").await.len(), 2);
}

#[tokio::test]
async fn insufficient_funds_change_nothing() {
    let app = spawn_app().await;
    let pair = app.trading_pair("500.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let orgs = [seller, buyer];
    // Withdrawals: more than available, in a currency never funded, frozen.
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        submit_withdrawal(buyer, "USD", "500.01")
    );
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        submit_withdrawal(buyer, "EUR", "1.00")
    );
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        submit_withdrawal(seller, "USD", "1.00")
    );
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        submit_withdrawal(buyer, "USD", "1.001")
    );
    refused!(
        &app,
        &orgs,
        400,
        "VALIDATION_ERROR",
        buyer.post(
            "/api/v1/treasury/me/withdrawals",
            json!({ "currency": "USD", "amount": "1.00", "destination": {} })
        )
    );
    // Approval beyond what is available (one cent over).
    let inv = pair.submitted("400.00").await;
    let big = pair.submitted("100.01").await;
    approve(buyer, &s(&inv["id"]), None).await;
    assert_eq!(buyer.money("USD").await, trio("500.00", "400.00", "100.00"));
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        buyer.act(&s(&big["id"]), "approve", json!({}))
    );
    assert_eq!(
        buyer.invoice(&s(&big["id"])).await.ok()["status"],
        "SUBMITTED"
    );
    // A held withdrawal competes for the same funds.
    let w = submit_withdrawal(buyer, "USD", "60.00").await.ok();
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        submit_withdrawal(buyer, "USD", "40.01")
    );
    let small = pair.submitted("40.01").await;
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        buyer.act(&s(&small["id"]), "approve", json!({}))
    );
    // Adjusting down to what fits works.
    let fits = approve(buyer, &s(&small["id"]), Some(("40.00", "what we can pay"))).await;
    assert_eq!(fits["approvedAmount"], "40.00");
    assert_eq!(buyer.money("USD").await, trio("500.00", "500.00", "0.00"));
    // Collateral over what is free.
    refused!(
        &app,
        &orgs,
        400,
        "INSUFFICIENT_BALANCE",
        app.admin.put(
            &format!(
                "/api/v1/admin/organizations/{}/balances/USD/collateral",
                buyer.id
            ),
            json!({ "amount": "0.01" })
        )
    );
    // A frozen balance accepts no withdrawal and no approval.
    let checker = buyer.key_with(&["treasury:approve"]).await;
    freeze(&app, buyer, "USD").await;
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        decide(&checker, "withdrawals", &s(&w["id"]), "approve")
    );
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        submit_withdrawal(buyer, "USD", "1.00")
    );
    // Freezing twice is a state error too.
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        app.admin.post(
            &format!(
                "/api/v1/admin/organizations/{}/balances/USD/freeze",
                buyer.id
            ),
            json!({ "reason": "again" })
        )
    );
    unfreeze(&app, buyer, "USD").await;
    let done = decide(&checker, "withdrawals", &s(&w["id"]), "approve")
        .await
        .ok();
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(buyer.money("USD").await, trio("440.00", "440.00", "0.00"));
    // Settling an invoice that is not approved moves nothing.
    refused!(
        &app,
        &orgs,
        400,
        "INVALID_STATE_TRANSITION",
        buyer.post("/api/v1/payments/settle", json!({ "invoiceId": big["id"] }))
    );
    // The seller may not settle.
    refused!(
        &app,
        &orgs,
        403,
        "FORBIDDEN",
        seller.post("/api/v1/payments/settle", json!({ "invoiceId": inv["id"] }))
    );
}
