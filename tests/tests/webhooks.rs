//! Webhooks, black-box: the real server, a real receiver on 127.0.0.1, and an
//! independent Standard Webhooks verifier.

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;
mod webhooks_support;

use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use support::{s, simple_invoice, spawn_app_with, Org, TestApp, DUE};
use webhooks_support::{assert_signed, expected_signature, verifies, Behavior, Receiver};

/// API.md's list.
const EVENT_TYPES: [&str; 27] = [
    "invoice.created",
    "invoice.updated",
    "invoice.submitted",
    "invoice.approved",
    "invoice.approved_with_adjustment",
    "invoice.disputed",
    "invoice.info_requested",
    "invoice.info_provided",
    "invoice.cancellation_requested",
    "invoice.cancellation_rejected",
    "invoice.cancelled",
    "invoice.settled",
    "invoice.archived",
    "invoice.restored",
    "payment.due",
    "payment.settled",
    "payment.failed",
    "deposit.received",
    "withdrawal.submitted",
    "withdrawal.approved",
    "withdrawal.rejected",
    "withdrawal.cancelled",
    "refund.created",
    "refund.approved",
    "refund.rejected",
    "connection.requested",
    "connection.accepted",
];

const WAIT: Duration = Duration::from_secs(30);
const ALLOW_PRIVATE: (&str, &str) = ("EXPEREON_WEBHOOK_ALLOW_PRIVATE", "true");

/// A server whose webhooks may target the loopback receiver, with a fast
/// retry schedule.
async fn server(extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ALLOW_PRIVATE,
        (
            "EXPEREON_WEBHOOK_RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms",
        ),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

/// Creates an endpoint; returns `(id, secret)`.
async fn endpoint(org: &Org, url: &str, events: &[&str]) -> (String, String) {
    let v = org
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": url, "events": events, "description": "test" }),
        )
        .await
        .ok();
    let secret = s(&v["secret"]);
    assert!(secret.starts_with("whsec_"), "{secret}");
    (s(&v["id"]), secret)
}

async fn deliveries(org: &Org, endpoint: &str) -> Vec<Value> {
    org.walk(
        &format!("/api/v1/settings/webhooks/{endpoint}/deliveries"),
        200,
    )
    .await
}

/// Waits until every delivery of the endpoint has left PENDING; returns them.
async fn settled_deliveries(org: &Org, endpoint: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let all = deliveries(org, endpoint).await;
        if all.len() >= n && all.iter().all(|d| d["status"] != "PENDING") {
            return all;
        }
        assert!(
            start.elapsed() < WAIT,
            "deliveries of {endpoint} still pending: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> Value {
    app.admin.post(path, body).await.ok()
}

/// Moves the server's test clock.
async fn advance_days(app: &TestApp, days: i64) -> Value {
    app.admin
        .send_json(
            Method::POST,
            "/api/v1/admin/clock",
            &json!({ "advanceSeconds": days * 86_400 }),
        )
        .await
        .ok()
}

async fn server_today(app: &TestApp) -> chrono::NaiveDate {
    let v = app.admin.get("/api/v1/admin/clock").await.ok();
    chrono::DateTime::parse_from_rfc3339(&s(&v["now"]))
        .expect("clock time")
        .date_naive()
}

/// Who should hear what: `(receiver path, type, resource id)` as a multiset.
#[derive(Default)]
struct Expect(BTreeMap<(String, String, String), usize>);

impl Expect {
    fn add(&mut self, paths: &[&str], event_type: &str, id: &str) {
        for p in paths {
            *self
                .0
                .entry((p.to_string(), event_type.to_owned(), id.to_owned()))
                .or_default() += 1;
        }
    }
    fn on(&self, path: &str) -> BTreeMap<(String, String, String), usize> {
        self.0
            .iter()
            .filter(|((p, _, _), _)| p == path)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
    fn total(&self, path: &str) -> usize {
        self.on(path).values().sum()
    }
}

fn got(r: &Receiver, path: &str) -> BTreeMap<(String, String, String), usize> {
    let mut m = BTreeMap::new();
    for x in r.on(path) {
        let v = x.json();
        *m.entry((path.to_owned(), s(&v["type"]), s(&v["data"]["id"])))
            .or_default() += 1;
    }
    m
}

// ---------------------------------------------------------------------------

/// Drives every event type of API.md's list and checks each reaches exactly
/// the organizations party to it (and their matching endpoints), signed.
#[tokio::test]
async fn every_event_type_reaches_the_right_parties_and_no_one_else() {
    let app = server(&[("EXPEREON_TEST_CLOCK", "true")]).await;
    let rx = Receiver::start().await;
    let seller = app.create_org("Seller Ltd").await;
    let buyer = app.create_org("Buyer Inc").await;
    let outsider = app.create_org("Outsider GmbH").await;

    let (s_all, s_secret) = endpoint(&seller, &rx.url("/s"), &["*"]).await;
    let (_, b_secret) = endpoint(&buyer, &rx.url("/b"), &["*"]).await;
    let (_, o_secret) = endpoint(&outsider, &rx.url("/o"), &["*"]).await;
    // Filters: a family, and exact names.
    let (_, s_inv_secret) = endpoint(&seller, &rx.url("/s-invoice"), &["invoice.*"]).await;
    let (_, b_exact_secret) = endpoint(
        &buyer,
        &rx.url("/b-exact"),
        &["payment.due", "refund.created"],
    )
    .await;
    // Disabled and deleted endpoints hear nothing.
    let (off, _) = endpoint(&seller, &rx.url("/s-off"), &["*"]).await;
    seller
        .patch(
            &format!("/api/v1/settings/webhooks/{off}"),
            json!({ "enabled": false }),
        )
        .await
        .ok();
    let (gone, _) = endpoint(&buyer, &rx.url("/b-gone"), &["*"]).await;
    buyer
        .delete(&format!("/api/v1/settings/webhooks/{gone}"))
        .await
        .ok();

    let mut exp = Expect::default();
    const BOTH: [&str; 2] = ["/s", "/b"];
    const S: [&str; 1] = ["/s"];
    const B: [&str; 1] = ["/b"];

    // connections
    let c = seller
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": buyer.id, "role": "SELLER" }),
        )
        .await
        .ok();
    let conn = s(&c["id"]);
    exp.add(&BOTH, "connection.requested", &conn);
    buyer
        .post(&format!("/api/v1/connections/{conn}/accept"), json!({}))
        .await
        .ok();
    exp.add(&BOTH, "connection.accepted", &conn);

    // deposit
    let tx = app.deposit(&buyer, "USD", "100000.00").await;
    exp.add(&B, "deposit.received", &s(&tx["id"]));

    // invoice A: draft edits (seller alone), then the buyer's side of the machine
    let a = seller
        .create_invoice(simple_invoice(&conn, "1000.00"))
        .await;
    let a_id = s(&a["id"]);
    exp.add(&S, "invoice.created", &a_id);
    seller
        .patch(
            &format!("/api/v1/invoices/{a_id}"),
            json!({ "memo": "draft memo" }),
        )
        .await
        .ok();
    exp.add(&S, "invoice.updated", &a_id);
    seller
        .post(
            &format!("/api/v1/invoices/{a_id}/line-items"),
            json!({ "description": "Extra", "quantity": "1", "unitPrice": "100.00" }),
        )
        .await
        .ok();
    exp.add(&S, "invoice.updated", &a_id);
    seller.act(&a_id, "submit", json!({})).await.ok();
    exp.add(&BOTH, "invoice.submitted", &a_id);
    buyer
        .act(&a_id, "request-info", json!({ "question": "PO number?" }))
        .await
        .ok();
    exp.add(&BOTH, "invoice.info_requested", &a_id);
    seller
        .act(&a_id, "respond-info", json!({ "message": "PO-1" }))
        .await
        .ok();
    exp.add(&BOTH, "invoice.info_provided", &a_id);
    buyer
        .act(&a_id, "dispute", json!({ "reason": "wrong amount" }))
        .await
        .ok();
    exp.add(&BOTH, "invoice.disputed", &a_id);
    seller
        .patch(
            &format!("/api/v1/invoices/{a_id}"),
            json!({ "memo": "corrected" }),
        )
        .await
        .ok();
    exp.add(&BOTH, "invoice.updated", &a_id);
    seller.act(&a_id, "submit", json!({})).await.ok();
    exp.add(&BOTH, "invoice.submitted", &a_id);
    buyer.act(&a_id, "approve", json!({})).await.ok();
    exp.add(&BOTH, "invoice.approved", &a_id);
    let pay = buyer
        .post("/api/v1/payments/settle", json!({ "invoiceId": a_id }))
        .await
        .ok();
    assert_eq!(pay["status"], "COMPLETED", "{pay}");
    let pay_id = s(&pay["id"]);
    exp.add(&BOTH, "invoice.settled", &a_id);
    exp.add(&BOTH, "payment.settled", &pay_id);
    seller.act(&a_id, "archive", json!({})).await.ok();
    exp.add(&BOTH, "invoice.archived", &a_id);
    buyer.act(&a_id, "restore", json!({})).await.ok();
    exp.add(&BOTH, "invoice.restored", &a_id);

    // invoice C: adjusted approval, cancellation rejected, then accepted
    let mut body = simple_invoice(&conn, "500.00");
    body["submit"] = json!(true);
    let c_inv = seller.create_invoice(body).await;
    let c_id = s(&c_inv["id"]);
    exp.add(&S, "invoice.created", &c_id);
    exp.add(&BOTH, "invoice.submitted", &c_id);
    buyer
        .act(
            &c_id,
            "approve",
            json!({ "adjustedAmount": "400.00", "reason": "partial delivery" }),
        )
        .await
        .ok();
    exp.add(&BOTH, "invoice.approved_with_adjustment", &c_id);
    seller
        .act(&c_id, "request-cancellation", json!({ "reason": "oops" }))
        .await
        .ok();
    exp.add(&BOTH, "invoice.cancellation_requested", &c_id);
    buyer
        .act(&c_id, "reject-cancellation", json!({}))
        .await
        .ok();
    exp.add(&BOTH, "invoice.cancellation_rejected", &c_id);
    buyer
        .act(
            &c_id,
            "request-cancellation",
            json!({ "reason": "no longer needed" }),
        )
        .await
        .ok();
    exp.add(&BOTH, "invoice.cancellation_requested", &c_id);
    seller
        .act(&c_id, "accept-cancellation", json!({}))
        .await
        .ok();
    exp.add(&BOTH, "invoice.cancelled", &c_id);

    // invoice D: a draft cancelled is the seller's business alone
    let d = seller.create_invoice(simple_invoice(&conn, "10.00")).await;
    let d_id = s(&d["id"]);
    exp.add(&S, "invoice.created", &d_id);
    seller
        .act(&d_id, "cancel", json!({ "reason": "typo" }))
        .await
        .ok();
    exp.add(&S, "invoice.cancelled", &d_id);

    // invoice E: due today, so payment.due fires once approved
    let today = server_today(&app).await;
    let mut body = simple_invoice(&conn, "50.00");
    body["submit"] = json!(true);
    body["dueDate"] = json!(today.to_string());
    let e = seller.create_invoice(body).await;
    let e_id = s(&e["id"]);
    exp.add(&S, "invoice.created", &e_id);
    exp.add(&BOTH, "invoice.submitted", &e_id);
    buyer.act(&e_id, "approve", json!({})).await.ok();
    exp.add(&BOTH, "invoice.approved", &e_id);
    exp.add(&BOTH, "payment.due", &e_id);
    exp.add(&["/b-exact"], "payment.due", &e_id);
    rx.wait_for("/b-exact", 1, WAIT).await;

    // payment.failed: the payee's balance is frozen
    admin_post(
        &app,
        &format!(
            "/api/v1/admin/organizations/{}/balances/USD/freeze",
            seller.id
        ),
        json!({ "reason": "review" }),
    )
    .await;
    let failed = buyer
        .post("/api/v1/payments/settle", json!({ "invoiceId": e_id }))
        .await
        .ok();
    assert_eq!(failed["status"], "FAILED", "{failed}");
    exp.add(&BOTH, "payment.failed", &s(&failed["id"]));
    admin_post(
        &app,
        &format!(
            "/api/v1/admin/organizations/{}/balances/USD/unfreeze",
            seller.id
        ),
        json!({ "reason": "cleared" }),
    )
    .await;

    // refunds against the settlement of invoice A
    let payment = buyer.get(&format!("/api/v1/payments/{pay_id}")).await.ok();
    let payer_tx = s(&payment["payerTransactionId"]);
    let r1 = buyer
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": payer_tx, "amount": "10.00", "reason": "damaged" }),
        )
        .await
        .ok();
    let r1_id = s(&r1["id"]);
    exp.add(&BOTH, "refund.created", &r1_id);
    exp.add(&["/b-exact"], "refund.created", &r1_id);
    seller
        .post(
            &format!("/api/v1/treasury/me/refunds/{r1_id}/approve"),
            json!({}),
        )
        .await
        .ok();
    exp.add(&BOTH, "refund.approved", &r1_id);
    let r2 = buyer
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": payer_tx, "amount": "5.00", "reason": "late" }),
        )
        .await
        .ok();
    let r2_id = s(&r2["id"]);
    exp.add(&BOTH, "refund.created", &r2_id);
    exp.add(&["/b-exact"], "refund.created", &r2_id);
    seller
        .post(
            &format!("/api/v1/treasury/me/refunds/{r2_id}/reject"),
            json!({ "reason": "not late" }),
        )
        .await
        .ok();
    exp.add(&BOTH, "refund.rejected", &r2_id);

    // withdrawals are the buyer's alone
    let approver = buyer.key_with(&["treasury:approve", "treasury:read"]).await;
    let withdraw = |amount: &str| json!({ "currency": "USD", "amount": amount, "destination": { "iban": "DE89370400440532013000" } });
    let w1 = buyer
        .post("/api/v1/treasury/me/withdrawals", withdraw("100.00"))
        .await
        .ok();
    let w1_id = s(&w1["id"]);
    exp.add(&B, "withdrawal.submitted", &w1_id);
    approver
        .post(
            &format!("/api/v1/treasury/me/withdrawals/{w1_id}/approve"),
            json!({}),
        )
        .await
        .ok();
    exp.add(&B, "withdrawal.approved", &w1_id);
    let w2 = buyer
        .post("/api/v1/treasury/me/withdrawals", withdraw("20.00"))
        .await
        .ok();
    let w2_id = s(&w2["id"]);
    exp.add(&B, "withdrawal.submitted", &w2_id);
    approver
        .post(
            &format!("/api/v1/treasury/me/withdrawals/{w2_id}/reject"),
            json!({ "reason": "unknown account" }),
        )
        .await
        .ok();
    exp.add(&B, "withdrawal.rejected", &w2_id);
    let w3 = buyer
        .post("/api/v1/treasury/me/withdrawals", withdraw("30.00"))
        .await
        .ok();
    let w3_id = s(&w3["id"]);
    exp.add(&B, "withdrawal.submitted", &w3_id);
    buyer
        .post(
            &format!("/api/v1/treasury/me/withdrawals/{w3_id}/cancel"),
            json!({}),
        )
        .await
        .ok();
    exp.add(&B, "withdrawal.cancelled", &w3_id);

    // The seller's invoice.* endpoint hears the seller's invoice events.
    let seller_invoice: Vec<_> = exp
        .on("/s")
        .into_iter()
        .filter(|((_, t, _), _)| t.starts_with("invoice."))
        .collect();
    for ((_, t, id), n) in seller_invoice {
        for _ in 0..n {
            exp.add(&["/s-invoice"], &t, &id);
        }
    }

    // Every type of the list is exercised, by both parties where it concerns both.
    let covered: BTreeSet<&str> = exp.0.keys().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        covered,
        EVENT_TYPES.iter().copied().collect::<BTreeSet<_>>()
    );

    for path in ["/s", "/b", "/s-invoice", "/b-exact"] {
        rx.wait_for(path, exp.total(path), WAIT).await;
    }
    // Everything is in: the outbox has nothing left for anyone.
    settled_deliveries(&seller, &s_all, exp.total("/s")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["/s", "/b", "/s-invoice", "/b-exact"] {
        assert_eq!(
            got(&rx, path),
            exp.on(path),
            "{path} heard something else than expected"
        );
    }
    for path in ["/o", "/s-off", "/b-gone"] {
        assert_eq!(rx.count(path), 0, "{path} must hear nothing");
    }

    // Each message is signed for its endpoint and addressed to its organization.
    for (path, secret, org) in [
        ("/s", &s_secret, &seller.id),
        ("/b", &b_secret, &buyer.id),
        ("/s-invoice", &s_inv_secret, &seller.id),
        ("/b-exact", &b_exact_secret, &buyer.id),
    ] {
        for r in rx.on(path) {
            assert_signed(secret, &r);
            assert!(
                !verifies(&o_secret, &r),
                "another endpoint's secret must not verify"
            );
            let v = r.json();
            assert_eq!(&v["organizationId"], org, "{path}: {v}");
            assert!(v["createdAt"].is_string());
        }
    }
    // The buyer's copy of an event is its own message (distinct ids per party).
    let s_ids: BTreeSet<String> = rx.on("/s").iter().map(|r| r.id.clone()).collect();
    let b_ids: BTreeSet<String> = rx.on("/b").iter().map(|r| r.id.clone()).collect();
    assert!(s_ids.is_disjoint(&b_ids));
    // The payload is the resource after the event.
    let approved = rx
        .on("/b")
        .into_iter()
        .find(|r| r.event_type() == "invoice.approved_with_adjustment")
        .expect("adjusted approval");
    assert_eq!(
        approved.json()["data"]["status"],
        "APPROVED_WITH_ADJUSTMENT"
    );
    assert_eq!(approved.json()["data"]["approvedAmount"], "400.00");
}

/// `webhook.test` goes out whatever the filter; signatures verify with an
/// independent implementation; after a rotation both secrets verify.
#[tokio::test]
async fn signatures_verify_and_a_rotation_signs_with_both_secrets() {
    let app = server(&[]).await;
    let rx = Receiver::start().await;
    let org = app.create_org("Hooks Inc").await;
    let (id, old) = endpoint(&org, &rx.url("/hook"), &["refund.rejected"]).await;

    let d = org
        .post(&format!("/api/v1/settings/webhooks/{id}/test"), json!({}))
        .await
        .ok();
    assert_eq!(d["eventType"], "webhook.test");
    let first = rx.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_signed(&old, &first);
    assert_eq!(first.json()["type"], "webhook.test");
    assert_eq!(first.json()["data"]["endpointId"], id.as_str());
    assert_eq!(
        first.signature.split(' ').count(),
        1,
        "one secret, one signature"
    );
    // Recompute by hand too.
    let (_, sig) = first.signature.split_once(',').expect("v1,<sig>");
    assert_eq!(
        sig,
        expected_signature(&old, &first.id, &first.timestamp, &first.body)
    );
    // Tampering is detected.
    let mut tampered = first.clone();
    tampered.body.extend_from_slice(b" ");
    assert!(!verifies(&old, &tampered));

    let rotated = org
        .post(
            &format!("/api/v1/settings/webhooks/{id}/rotate-secret"),
            json!({}),
        )
        .await
        .ok();
    let new = s(&rotated["secret"]);
    assert!(new.starts_with("whsec_") && new != old);
    org.post(&format!("/api/v1/settings/webhooks/{id}/test"), json!({}))
        .await
        .ok();
    let second = rx.wait_for("/hook", 2, WAIT).await.remove(1);
    let sigs: Vec<&str> = second.signature.split(' ').collect();
    assert_eq!(sigs.len(), 2, "{}", second.signature);
    assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    assert_signed(&new, &second);
    assert!(
        verifies(&old, &second),
        "the old secret still verifies for 24 h"
    );
    let with = |secret: &str| {
        format!(
            "v1,{}",
            expected_signature(secret, &second.id, &second.timestamp, &second.body)
        )
    };
    assert!(sigs.contains(&with(&new).as_str()) && sigs.contains(&with(&old).as_str()));

    // The secret is shown only on create and rotate.
    let v = org
        .get(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .ok();
    assert!(v.get("secret").is_none(), "{v}");
}

/// Fails 3 times, then succeeds: exactly 4 attempts, one webhook-id, all listed.
/// A receiver that never recovers: 1 + 5 retries, then FAILED; redelivered by hand.
#[tokio::test]
async fn retries_follow_the_schedule_and_every_attempt_is_listed() {
    let app = server(&[]).await;
    let rx = Receiver::start().await;
    rx.set("/flaky", Behavior::FailFirst(3));
    rx.set("/down", Behavior::Fail);
    let org = app.create_org("Retry Co").await;
    let (flaky, secret) = endpoint(&org, &rx.url("/flaky"), &["deposit.received"]).await;
    let (down, _) = endpoint(&org, &rx.url("/down"), &["deposit.*"]).await;
    let started = Instant::now();
    app.deposit(&org, "EUR", "12.34").await;

    let got = rx.wait_for("/flaky", 4, WAIT).await;
    let all = settled_deliveries(&org, &flaky, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_after = rx.on("/flaky");
    assert_eq!(got_after.len(), 4, "exactly 4 attempts");
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one webhook-id for every attempt"
    );
    for r in &got {
        assert_signed(&secret, r);
    }
    // The schedule spaces them (200 ms each).
    for w in got.windows(2) {
        assert!(
            w[1].at.duration_since(w[0].at) >= Duration::from_millis(150),
            "retried too soon"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d["status"], "SUCCEEDED");
    assert_eq!(d["eventId"], got[0].id.as_str());
    assert_eq!(d["eventType"], "deposit.received");
    assert!(d["nextAttemptAt"].is_null());
    let attempts = d["attempts"].as_array().expect("attempts");
    let codes: Vec<u64> = attempts
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, vec![500, 500, 500, 200]);
    for a in &attempts[..3] {
        assert!(a["error"].is_string() && a["responseBody"] == "boom", "{a}");
        assert!(a["durationMs"].is_u64() && a["at"].is_string());
    }
    assert!(attempts[3]["error"].is_null());

    // Never recovers: the first attempt and 5 retries, then FAILED.
    let failed = settled_deliveries(&org, &down, 1).await;
    assert_eq!(failed[0]["status"], "FAILED");
    assert_eq!(failed[0]["attempts"].as_array().map(Vec::len), Some(6));
    assert_eq!(rx.count("/down"), 6);
    assert_eq!(
        org.walk(
            &format!("/api/v1/settings/webhooks/{down}/deliveries?status=FAILED"),
            10
        )
        .await
        .len(),
        1
    );
    // Redeliver by hand, once the receiver is back.
    rx.set("/down", Behavior::Ok);
    let delivery = s(&failed[0]["id"]);
    let key = support::rid();
    let path = format!("/api/v1/settings/webhooks/{down}/deliveries/{delivery}/redeliver");
    let r = org.post(&path, json!({ "requestId": key })).await.ok();
    assert_eq!(r["status"], "PENDING");
    let done = settled_deliveries(&org, &down, 1).await;
    assert_eq!(done[0]["status"], "SUCCEEDED");
    assert_eq!(done[0]["attempts"].as_array().map(Vec::len), Some(7));
    // The same request again changes nothing.
    org.post(&path, json!({ "requestId": key })).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count("/down"), 7);

    // `/metrics` counted each attempt by what came of it: /flaky failed 3
    // times and then succeeded; /down failed 5 times with a retry left, then
    // for good, and succeeded when redelivered. Nothing is left to send.
    let metrics = app.anon.get("/metrics").await.text();
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{line}` in\n{metrics}"))
    };
    assert_eq!(
        value("expereon_webhook_attempts_total{outcome=\"succeeded\"}"),
        2.0
    );
    assert_eq!(
        value("expereon_webhook_attempts_total{outcome=\"retrying\"}"),
        8.0
    );
    assert_eq!(
        value("expereon_webhook_attempts_total{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(value("expereon_webhook_backlog"), 0.0);
    assert_eq!(value("expereon_webhook_delivery_seconds_count"), 2.0);
    // The first success came after three 200 ms waits; the second only after
    // the redelivery, later still.
    assert!(value("expereon_webhook_delivery_seconds_sum") >= 0.6 * 2.0);
    assert_eq!(
        value("expereon_webhook_delivery_seconds_bucket{le=\"0.5\"}"),
        0.0
    );
}

/// A receiver that never answers holds its own few slots until the timeout;
/// other endpoints (of the same organization or another) are served at once.
#[tokio::test]
async fn a_hanging_receiver_does_not_delay_other_endpoints() {
    let app = server(&[("EXPEREON_WEBHOOK_TIMEOUT", "5s")]).await;
    let rx = Receiver::start().await;
    rx.set("/hang", Behavior::Hang);
    let a = app.create_org("Slow Partner").await;
    let b = app.create_org("Other Org").await;
    let (hang, _) = endpoint(&a, &rx.url("/hang"), &["*"]).await;
    endpoint(&a, &rx.url("/fast-a"), &["*"]).await;
    endpoint(&b, &rx.url("/fast-b"), &["*"]).await;

    const N: usize = 12;
    for i in 0..N {
        app.deposit(&a, "USD", &format!("{}.00", i + 1)).await;
        app.deposit(&b, "USD", &format!("{}.00", i + 1)).await;
    }
    let last_sent = Instant::now();
    rx.wait_for("/fast-a", N, WAIT).await;
    rx.wait_for("/fast-b", N, WAIT).await;
    let waited = last_sent.elapsed();
    assert!(
        waited < Duration::from_millis(3000),
        "fast endpoints waited {waited:?} after the last event, behind a receiver that hangs for 5 s"
    );
    // Each fast message arrived soon after its event: none waited for a hang to time out.
    for r in rx.on("/fast-a").iter().chain(&rx.on("/fast-b")) {
        assert!(
            r.latency() < Duration::from_millis(2500),
            "{} took {:?}",
            r.id,
            r.latency()
        );
    }
    // The hanging endpoint held at most its per-endpoint share at once.
    let most = rx.most_concurrent("/hang");
    assert!(
        (1..=4).contains(&most),
        "{most} requests to the hanging endpoint at once"
    );
    // Its attempts time out and are recorded as such, and retried.
    let start = Instant::now();
    loop {
        let ds = deliveries(&a, &hang).await;
        let timed_out = ds
            .iter()
            .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
            .filter(|at| {
                at["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("timed out"))
            })
            .count();
        if timed_out >= 1 {
            assert!(
                ds.iter().all(|d| d["status"] == "PENDING"),
                "still retrying"
            );
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "no timed-out attempt recorded: {ds:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILL with deliveries pending: after a restart every pending delivery is
/// made, and none that had succeeded is sent again.
#[tokio::test]
async fn deliveries_survive_a_sigkill_without_repeats() {
    // Retries far enough apart that /down's deliveries are still PENDING at the kill.
    let schedule = vec!["1s"; 20].join(",");
    let mut app = spawn_app_with(&[
        ALLOW_PRIVATE,
        ("EXPEREON_WEBHOOK_RETRY_SCHEDULE", &schedule),
    ])
    .await;
    let rx = Receiver::start().await;
    rx.set("/down", Behavior::Fail);
    let org = app.create_org("Durable Ltd").await;
    let (ok, ok_secret) = endpoint(&org, &rx.url("/ok"), &["deposit.received"]).await;
    let (down, down_secret) = endpoint(&org, &rx.url("/down"), &["deposit.received"]).await;

    const FIRST: usize = 15;
    for i in 0..FIRST {
        app.deposit(&org, "USD", &format!("{}.00", i + 1)).await;
    }
    // All of /ok's succeeded (and that is recorded); /down's are failing, pending.
    let succeeded = settled_deliveries(&org, &ok, FIRST).await;
    assert!(succeeded.iter().all(|d| d["status"] == "SUCCEEDED"));
    let succeeded_ids: BTreeSet<String> = succeeded.iter().map(|d| s(&d["eventId"])).collect();
    rx.wait_for("/down", FIRST, WAIT).await;
    assert!(deliveries(&org, &down)
        .await
        .iter()
        .all(|d| d["status"] == "PENDING"));

    // More events, then SIGKILL straight away: some may not even be attempted.
    const MORE: usize = 10;
    for i in 0..MORE {
        app.deposit(&org, "USD", &format!("{}.50", i + 1)).await;
    }
    app.crash_restart().await;
    rx.set("/down", Behavior::Ok);

    // Everything arrives...
    let total = FIRST + MORE;
    let distinct = |path: &str| {
        rx.on(path)
            .into_iter()
            .map(|r| r.id)
            .collect::<BTreeSet<_>>()
    };
    let start = Instant::now();
    while distinct("/ok").len() < total || distinct("/down").len() < total {
        assert!(
            start.elapsed() < WAIT,
            "after the restart: /ok {} and /down {} of {total}",
            distinct("/ok").len(),
            distinct("/down").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok_all = settled_deliveries(&org, &ok, total).await;
    let down_all = settled_deliveries(&org, &down, total).await;
    assert_eq!(
        ok_all.len(),
        total,
        "one delivery per event, none duplicated in the outbox"
    );
    assert_eq!(down_all.len(), total);
    assert!(ok_all
        .iter()
        .chain(&down_all)
        .all(|d| d["status"] == "SUCCEEDED"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...and what had succeeded before the kill was not sent again.
    let mut times: HashMap<String, usize> = HashMap::new();
    for r in rx.on("/ok") {
        assert_signed(&ok_secret, &r);
        *times.entry(r.id).or_default() += 1;
    }
    for id in &succeeded_ids {
        assert_eq!(
            times.get(id),
            Some(&1),
            "{id} succeeded before the kill and was sent again"
        );
    }
    for r in rx.on("/down") {
        assert_signed(&down_secret, &r);
    }
    // The same messages under the same ids on both endpoints.
    assert_eq!(distinct("/ok"), distinct("/down"));
}

/// With the guard on, loopback/private/link-local targets are refused (400),
/// as are bad URLs and unknown event types.
#[tokio::test]
async fn the_ssrf_guard_refuses_private_targets() {
    let app = spawn_app_with(&[]).await;
    let org = app.create_org("Guarded").await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://172.20.0.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        // IPv6 spellings of private IPv4 targets: translated, NAT64, 6to4, Teredo.
        "http://[::ffff:0:7f00:1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:7f00:1::]/hook",
        "http://[2001:0:7f00:1::1]/hook",
        "http://2130706433/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let r = org
            .post(
                "/api/v1/settings/webhooks",
                json!({ "url": url, "events": ["*"] }),
            )
            .await;
        r.err(400, "VALIDATION_ERROR");
    }
    let long = format!("https://example.com/{}", "a".repeat(2048));
    org.post(
        "/api/v1/settings/webhooks",
        json!({ "url": long, "events": ["*"] }),
    )
    .await
    .err(400, "VALIDATION_ERROR");
    for events in [
        json!([]),
        json!(["invoice.nope"]),
        json!(["nope.*"]),
        json!(["webhook.test"]),
    ] {
        org.post(
            "/api/v1/settings/webhooks",
            json!({ "url": "https://example.com/h", "events": events }),
        )
        .await
        .err(400, "VALIDATION_ERROR");
    }
    // A public target is fine, and cannot be moved to a private one.
    let v = org
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": "https://203.0.113.7/hook", "events": ["invoice.*", "payment.due"] }),
        )
        .await
        .ok();
    let id = s(&v["id"]);
    org.patch(
        &format!("/api/v1/settings/webhooks/{id}"),
        json!({ "url": "http://127.0.0.1/x" }),
    )
    .await
    .err(400, "VALIDATION_ERROR");
}

/// Endpoint CRUD, permissions, isolation between organizations, and paging
/// of the delivery log.
#[tokio::test]
async fn endpoints_are_managed_per_organization() {
    let app = server(&[]).await;
    let rx = Receiver::start().await;
    let org = app.create_org("Owner").await;
    let other = app.create_org("Other").await;
    let (id, secret) = endpoint(&org, &rx.url("/e"), &["*"]).await;
    let key = secret.strip_prefix("whsec_").expect("prefix");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("base64");
    assert_eq!(bytes.len(), 32);

    let v = org
        .get(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .ok();
    assert_eq!(v["url"], rx.url("/e"));
    assert_eq!(v["events"], json!(["*"]));
    assert_eq!(v["enabled"], true);
    assert_eq!(v["description"], "test");
    let list = org.walk("/api/v1/settings/webhooks", 10).await;
    assert_eq!(list.len(), 1);
    let v = org
        .patch(
            &format!("/api/v1/settings/webhooks/{id}"),
            json!({ "events": ["invoice.*", "payment.settled"], "description": null, "enabled": false }),
        )
        .await
        .ok();
    assert_eq!(v["events"], json!(["invoice.*", "payment.settled"]));
    assert!(v["description"].is_null());
    assert_eq!(v["enabled"], false);

    // Other organizations see nothing of it.
    other
        .get(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .err(404, "NOT_FOUND");
    other
        .get(&format!("/api/v1/settings/webhooks/{id}/deliveries"))
        .await
        .err(404, "NOT_FOUND");
    other
        .post(&format!("/api/v1/settings/webhooks/{id}/test"), json!({}))
        .await
        .err(404, "NOT_FOUND");
    other
        .delete(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .err(404, "NOT_FOUND");
    assert!(other.walk("/api/v1/settings/webhooks", 10).await.is_empty());

    // Permissions.
    let reader = org.key_with(&["settings:read"]).await;
    reader
        .get(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .ok();
    reader
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": rx.url("/x"), "events": ["*"] }),
        )
        .await
        .err(403, "FORBIDDEN");
    reader
        .post(
            &format!("/api/v1/settings/webhooks/{id}/rotate-secret"),
            json!({}),
        )
        .await
        .err(403, "FORBIDDEN");
    let nobody = org.key_with(&["invoices:read"]).await;
    nobody
        .get("/api/v1/settings/webhooks")
        .await
        .err(403, "FORBIDDEN");

    // Enabled again, then five test deliveries (one of them retried with the
    // same requestId), paged two at a time, newest first.
    org.patch(
        &format!("/api/v1/settings/webhooks/{id}"),
        json!({ "enabled": true }),
    )
    .await
    .ok();
    let same = support::rid();
    let first = org
        .post(
            &format!("/api/v1/settings/webhooks/{id}/test"),
            json!({ "requestId": same }),
        )
        .await
        .ok();
    let again = org
        .post(
            &format!("/api/v1/settings/webhooks/{id}/test"),
            json!({ "requestId": same }),
        )
        .await
        .ok();
    assert_eq!(
        first["id"], again["id"],
        "a retried test request is the same delivery"
    );
    for _ in 0..4 {
        org.post(&format!("/api/v1/settings/webhooks/{id}/test"), json!({}))
            .await
            .ok();
    }
    rx.wait_for("/e", 5, WAIT).await;
    let all = settled_deliveries(&org, &id, 5).await;
    assert_eq!(all.len(), 5);
    let paged = org
        .walk(&format!("/api/v1/settings/webhooks/{id}/deliveries"), 2)
        .await;
    let ids: Vec<&Value> = paged.iter().map(|d| &d["id"]).collect();
    assert_eq!(ids, all.iter().map(|d| &d["id"]).collect::<Vec<_>>());
    assert_eq!(ids.iter().map(|v| s(v)).collect::<BTreeSet<_>>().len(), 5);
    assert_eq!(
        all.last().map(|d| &d["id"]),
        Some(&first["id"]),
        "newest first"
    );

    // Deleted: gone for its owner too; its deliveries with it.
    let deleted = org
        .delete(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .ok();
    assert_eq!(deleted["deleted"], true);
    org.get(&format!("/api/v1/settings/webhooks/{id}"))
        .await
        .err(404, "NOT_FOUND");
    assert!(org.walk("/api/v1/settings/webhooks", 10).await.is_empty());
    org.get(&format!("/api/v1/settings/webhooks/{id}/deliveries"))
        .await
        .err(404, "NOT_FOUND");
}

/// payment.due fires once per invoice, to buyer and seller, when the due date
/// arrives on the (test) clock, or at approval when it is already due.
#[tokio::test]
async fn payment_due_fires_exactly_once_per_invoice() {
    let app = server(&[("EXPEREON_TEST_CLOCK", "true")]).await;
    let rx = Receiver::start().await;
    let pair = app.trading_pair("10000.00").await;
    endpoint(&pair.seller, &rx.url("/seller"), &["payment.due"]).await;
    endpoint(&pair.buyer, &rx.url("/buyer"), &["payment.*"]).await;
    let today = server_today(&app).await;

    let create = |due: chrono::NaiveDate| {
        let mut b = simple_invoice(&pair.conn, "100.00");
        b["submit"] = json!(true);
        b["dueDate"] = json!(due.to_string());
        b
    };
    // Due in two days; and one already due at approval; and one never approved.
    let later = pair
        .seller
        .create_invoice(create(today + chrono::Days::new(2)))
        .await;
    let now_due = pair.seller.create_invoice(create(today)).await;
    let _unapproved = pair.seller.create_invoice(create(today)).await;
    let far = pair
        .seller
        .create_invoice(simple_invoice(&pair.conn, "1.00"))
        .await;
    assert_eq!(far["dueDate"], DUE);
    for inv in [&later, &now_due] {
        pair.buyer
            .act(&s(&inv["id"]), "approve", json!({}))
            .await
            .ok();
    }
    // At approval, the invoice already due.
    let first = rx.wait_for("/seller", 1, WAIT).await;
    rx.wait_for("/buyer", 1, WAIT).await;
    assert_eq!(first[0].json()["data"]["id"], now_due["id"]);
    assert_eq!(first[0].json()["type"], "payment.due");
    // Ticks pass; the other is not due yet.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((rx.count("/seller"), rx.count("/buyer")), (1, 1));

    // Two days later: the second fires.
    advance_days(&app, 2).await;
    rx.wait_for("/seller", 2, WAIT).await;
    rx.wait_for("/buyer", 2, WAIT).await;
    // And never again, however much time passes.
    advance_days(&app, 30).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let per_invoice = |path: &str| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for r in rx.on(path) {
            assert_eq!(r.event_type(), "payment.due");
            *m.entry(s(&r.json()["data"]["id"])).or_default() += 1;
        }
        m
    };
    let expected: BTreeMap<String, usize> = [(s(&later["id"]), 1), (s(&now_due["id"]), 1)]
        .into_iter()
        .collect();
    assert_eq!(per_invoice("/seller"), expected);
    assert_eq!(per_invoice("/buyer"), expected);
}

/// Disabling an endpoint holds its pending deliveries (no attempts, nothing
/// new queued); enabling it sends them.
#[tokio::test]
async fn disabling_an_endpoint_holds_its_deliveries_until_enabled() {
    let schedule = vec!["1s"; 20].join(",");
    let app = spawn_app_with(&[
        ALLOW_PRIVATE,
        ("EXPEREON_WEBHOOK_RETRY_SCHEDULE", &schedule),
    ])
    .await;
    let rx = Receiver::start().await;
    rx.set("/p", Behavior::Fail);
    let org = app.create_org("Pausing").await;
    let (id, secret) = endpoint(&org, &rx.url("/p"), &["deposit.received"]).await;
    app.deposit(&org, "USD", "1.00").await;
    rx.wait_for("/p", 1, WAIT).await;
    let path = format!("/api/v1/settings/webhooks/{id}");
    org.patch(&path, json!({ "enabled": false })).await.ok();
    // Nothing new is queued while disabled.
    app.deposit(&org, "USD", "2.00").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = deliveries(&org, &id).await;
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["status"], "PENDING");
    assert!(held[0]["nextAttemptAt"].is_null(), "held: {}", held[0]);
    let attempts = held[0]["attempts"].as_array().map(Vec::len).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.count("/p"), attempts, "no attempts while disabled");

    rx.set("/p", Behavior::Ok);
    org.patch(&path, json!({ "enabled": true })).await.ok();
    let done = settled_deliveries(&org, &id, 1).await;
    assert_eq!(done[0]["status"], "SUCCEEDED");
    let last = rx.on("/p").pop().expect("delivered");
    assert_signed(&secret, &last);
    assert_eq!(last.json()["data"]["amount"], "1.00");
}

/// Deliveries to one endpoint reuse the worker's connections (keep-alive)
/// instead of a new TCP connection each: twenty deliveries arrive over at
/// most as many connections as an endpoint may have requests in flight.
#[tokio::test]
async fn deliveries_to_an_endpoint_reuse_their_connections() {
    let app = server(&[]).await;
    let rx = Receiver::start().await;
    let org = app.create_org("Pooled Co").await;
    endpoint(&org, &rx.url("/pooled"), &["deposit.received"]).await;
    let n = 20;
    for i in 0..n {
        app.deposit(&org, "EUR", &format!("{}.00", i + 1)).await;
    }
    let got = rx.wait_for("/pooled", n, WAIT).await;
    assert_eq!(got.len(), n);
    let peers: BTreeSet<_> = got.iter().map(|r| r.peer).collect();
    assert!(
        peers.len() <= 4,
        "{n} deliveries came over {} connections",
        peers.len()
    );
}
