//! Idempotency: the same requestId with the same method, path and body gets
//! the original answer byte for byte and applies nothing twice; with another
//! body or path it is 409 IDEMPOTENCY_KEY_REUSED; concurrent duplicates make
//! one effect.

use crate::support::*;
use futures::future::join_all;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;

fn usd(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[tokio::test]
async fn a_replayed_create_returns_the_original_bytes_and_creates_nothing() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let key = rid();
    let mut body = simple_invoice(&pair.conn, "42.00");
    body["requestId"] = json!(key);
    let first = pair.seller.post("/api/v1/invoices", body.clone()).await;
    let created = first.ok();
    let after_first = app.log_state().await;

    let again = pair.seller.post("/api/v1/invoices", body.clone()).await;
    assert_eq!(again.status, first.status);
    again.assert_replay_of(&first);
    assert_eq!(
        app.log_state().await,
        after_first,
        "a replay wrote to the log"
    );
    assert_eq!(pair.seller.all_invoices("").await.len(), 1);

    // The invoice moves on; the replay still answers what was answered then.
    let id = s(&created["id"]);
    pair.seller.act(&id, "submit", json!({})).await.ok();
    let later = pair.seller.post("/api/v1/invoices", body.clone()).await;
    later.assert_replay_of(&first);
    assert_eq!(pair.seller.all_invoices("").await.len(), 1);

    // Same key, different body or different path: refused, nothing applied.
    let before = app.log_state().await;
    let mut changed = body.clone();
    changed["lineItems"][0]["unitPrice"] = json!("43.00");
    pair.seller
        .post("/api/v1/invoices", changed)
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    pair.seller
        .post(
            "/api/v1/connections",
            json!({ "requestId": key, "counterpartyOrganizationId": pair.buyer.id, "role": "BUYER" }),
        )
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    pair.seller
        .bodiless(Method::POST, &format!("/api/v1/invoices/{id}/cancel"), &key)
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.log_state().await, before);
    assert_eq!(pair.seller.all_invoices("").await.len(), 1);
    assert_eq!(pair.seller.invoice(&id).await.ok()["status"], "SUBMITTED");
}

#[tokio::test]
async fn replayed_money_movements_apply_once() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;

    // Operator deposit.
    let deposit =
        json!({ "requestId": rid(), "currency": "USD", "amount": "100.00", "reference": "wire 1" });
    let path = format!("/api/v1/admin/organizations/{}/deposits", pair.buyer.id);
    let d1 = app.admin.post(&path, deposit.clone()).await;
    d1.ok();
    let d2 = app.admin.post(&path, deposit.clone()).await;
    d2.assert_replay_of(&d1);
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("0"), usd("100"))
    );
    let mut other = deposit.clone();
    other["amount"] = json!("200.00");
    app.admin
        .post(&path, other)
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(pair.buyer.money("USD").await.0, usd("100"));

    // Approval.
    let inv = pair.submitted("30.00").await;
    let id = s(&inv["id"]);
    let approve = json!({ "requestId": rid() });
    let a1 = pair.buyer.act(&id, "approve", approve.clone()).await;
    a1.ok();
    let a2 = pair.buyer.act(&id, "approve", approve.clone()).await;
    a2.assert_replay_of(&a1);
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("30"), usd("70"))
    );

    // Settlement, through both routes.
    let settle = json!({ "requestId": rid(), "invoiceId": id });
    let s1 = pair
        .buyer
        .post("/api/v1/payments/settle", settle.clone())
        .await;
    s1.ok();
    let s2 = pair
        .buyer
        .post("/api/v1/payments/settle", settle.clone())
        .await;
    s2.assert_replay_of(&s1);
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("70"), usd("0"), usd("70"))
    );
    assert_eq!(pair.seller.money("USD").await.0, usd("30"));
    assert_eq!(pair.buyer.walk("/api/v1/payments", 50).await.len(), 1);
    assert_eq!(
        pair.seller
            .walk("/api/v1/treasury/me/transactions?type=SETTLEMENT_IN", 50)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn request_ids_are_scoped_to_the_organization() {
    let app = spawn_app().await;
    let one = app.trading_pair("0").await;
    let two = app.trading_pair("0").await;
    let key = rid();
    let mut a = simple_invoice(&one.conn, "1.00");
    a["requestId"] = json!(key);
    let mut b = simple_invoice(&two.conn, "1.00");
    b["requestId"] = json!(key);
    let ia = one.seller.create_invoice(a).await;
    let ib = two.seller.create_invoice(b).await;
    assert_ne!(ia["id"], ib["id"]);
    assert_eq!(one.seller.all_invoices("").await.len(), 1);
    assert_eq!(two.seller.all_invoices("").await.len(), 1);
}

#[tokio::test]
async fn bodiless_actions_are_idempotent_through_the_header() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let inv = pair.draft("10.00").await;
    let id = s(&inv["id"]);
    let key = rid();
    let path = format!("/api/v1/invoices/{id}/submit");
    let first = pair.seller.bodiless(Method::POST, &path, &key).await;
    assert_eq!(first.ok()["status"], "SUBMITTED");
    let state = app.log_state().await;
    let again = pair.seller.bodiless(Method::POST, &path, &key).await;
    again.assert_replay_of(&first);
    assert_eq!(app.log_state().await, state);
    // Without the key, a second submit is a plain refused transition.
    pair.seller
        .send(Method::POST, &path, &[], None)
        .await
        .invalid_transition("SUBMITTED");

    // Same key on another invoice's path.
    let other = pair.draft("10.00").await;
    pair.seller
        .bodiless(
            Method::POST,
            &format!("/api/v1/invoices/{}/submit", s(&other["id"])),
            &key,
        )
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        pair.seller.invoice(&s(&other["id"])).await.ok()["status"],
        "DRAFT"
    );

    // Approve and settle by header alone.
    let approve_key = rid();
    let approve = format!("/api/v1/invoices/{id}/approve");
    let a1 = pair
        .buyer
        .bodiless(Method::POST, &approve, &approve_key)
        .await;
    a1.ok();
    let a2 = pair
        .buyer
        .bodiless(Method::POST, &approve, &approve_key)
        .await;
    a2.assert_replay_of(&a1);
    assert_eq!(pair.buyer.money("USD").await.1, usd("10"));
    let settle_key = rid();
    let settle = format!("/api/v1/invoices/{id}/settle");
    let p1 = pair
        .buyer
        .bodiless(Method::POST, &settle, &settle_key)
        .await;
    p1.ok();
    let p2 = pair
        .buyer
        .bodiless(Method::POST, &settle, &settle_key)
        .await;
    p2.assert_replay_of(&p1);
    assert_eq!(pair.buyer.money("USD").await.0, usd("90"));

    // DELETE of a line item, replayed.
    let mut body = simple_invoice(&pair.conn, "1.00");
    body["lineItems"] = json!([line("a", "1", "1.00", None), line("b", "1", "2.00", None)]);
    let draft = pair.seller.create_invoice(body).await;
    let line_id = s(&draft["lineItems"][0]["id"]);
    let del_path = format!("/api/v1/invoices/{}/line-items/{line_id}", s(&draft["id"]));
    let del_key = rid();
    let d1 = pair
        .seller
        .bodiless(Method::DELETE, &del_path, &del_key)
        .await;
    assert_eq!(d1.ok()["lineItems"].as_array().map(Vec::len), Some(1));
    let d2 = pair
        .seller
        .bodiless(Method::DELETE, &del_path, &del_key)
        .await;
    d2.assert_replay_of(&d1);
    let now = pair.seller.invoice(&s(&draft["id"])).await.ok();
    assert_eq!(now["lineItems"].as_array().map(Vec::len), Some(1));
    assert_eq!(now["version"], draft["version"].as_u64().unwrap() + 1);
}

#[tokio::test]
async fn twenty_concurrent_identical_creates_make_one_invoice() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let mut body = simple_invoice(&pair.conn, "99.99");
    body["requestId"] = json!(rid());
    let before = app.log_seq().await;
    let answers =
        join_all((0..20).map(|_| pair.seller.post("/api/v1/invoices", body.clone()))).await;
    let originals: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert!(
        !originals.is_empty(),
        "no duplicate got the original answer"
    );
    for r in &answers {
        if r.status != 200 {
            r.err(409, "REQUEST_IN_PROGRESS");
        }
        if r.status == 200 {
            r.assert_replay_of(originals[0]);
        }
    }
    let listed = pair.seller.all_invoices("").await;
    assert_eq!(
        listed.len(),
        1,
        "{} invoices from one requestId",
        listed.len()
    );
    assert_eq!(listed[0], originals[0].json());
    assert!(app.log_seq().await > before);
}

#[tokio::test]
async fn twenty_concurrent_identical_approvals_reserve_once() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let inv = pair.submitted("250.00").await;
    let id = s(&inv["id"]);
    let body = json!({ "requestId": rid() });
    let answers = join_all((0..20).map(|_| pair.buyer.act(&id, "approve", body.clone()))).await;
    let ok: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty());
    for r in &answers {
        if r.status == 200 {
            r.assert_replay_of(ok[0]);
        } else {
            r.err(409, "REQUEST_IN_PROGRESS");
        }
    }
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("1000"), usd("250"), usd("750"))
    );
    assert_eq!(
        pair.buyer.invoice(&id).await.ok()["version"],
        inv["version"].as_u64().unwrap() + 1,
        "approved more than once"
    );
}

/// API.md: the same requestId, method, path and body get "the original status
/// and body" — a refusal included — and another body with that requestId is 409.
#[tokio::test]
async fn a_refused_request_is_replayed_as_refused() {
    let app = spawn_app().await;
    let pair = app.trading_pair("5.00").await;
    let inv = pair.submitted("10.00").await;
    let id = s(&inv["id"]);
    let body = json!({ "requestId": rid() });
    let refused = pair.buyer.act(&id, "approve", body.clone()).await;
    refused.err(400, "INSUFFICIENT_BALANCE");
    app.deposit(&pair.buyer, "USD", "100.00").await;
    let retried = pair.buyer.act(&id, "approve", body.clone()).await;
    assert_eq!(
        (retried.status, retried.text()),
        (refused.status, refused.text())
    );
    assert_eq!(pair.buyer.invoice(&id).await.ok()["status"], "SUBMITTED");
    let mut other = body.clone();
    other["reason"] = json!("a different body");
    pair.buyer
        .act(&id, "approve", other)
        .await
        .err(409, "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn an_idempotency_key_must_be_a_uuid() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let id = s(&pair.draft("1.00").await["id"]);
    let before = app.log_state().await;
    for key in ["abc", "", "550e8400-e29b-41d4-a716-44665544000Z"] {
        let r = pair
            .seller
            .bodiless(Method::POST, &format!("/api/v1/invoices/{id}/submit"), key)
            .await;
        assert_eq!(r.status, 400, "Idempotency-Key `{key}`: {}", r.text());
        r.err(400, "VALIDATION_ERROR");
        assert!(
            r.text().contains("Idempotency-Key must be a UUID"),
            "{}",
            r.text()
        );
        // Beside a valid body key, the error still names the header.
        let body = serde_json::to_vec(&json!({ "requestId": rid() })).unwrap();
        let r = pair
            .seller
            .send(
                Method::POST,
                &format!("/api/v1/invoices/{id}/submit"),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                Some(body),
            )
            .await;
        r.err(400, "VALIDATION_ERROR");
        assert!(
            r.text().contains("Idempotency-Key must be a UUID"),
            "{}",
            r.text()
        );
    }
    assert_eq!(app.log_state().await, before);
}
