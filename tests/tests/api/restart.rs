//! Restarts: every read model answers exactly as before, idempotency records
//! survive, and every acknowledged write is still there, whether the server
//! was stopped with SIGTERM or killed.

use crate::support::*;
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Everything an organization can read, keyed by path.
async fn snapshot(org: &Org) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let invoices = org.get("/api/v1/invoices?limit=200").await.ok();
    for inv in invoices["data"].as_array().unwrap() {
        let id = s(&inv["id"]);
        for path in [
            format!("/api/v1/invoices/{id}"),
            format!("/api/v1/invoices/{id}/history"),
        ] {
            out.insert(path.clone(), org.get(&path).await.ok());
        }
    }
    out.insert("invoices".into(), invoices);
    for path in [
        "/api/v1/invoices?limit=200&sort=dueDate",
        "/api/v1/invoices?limit=200&sort=total",
        "/api/v1/connections?limit=200",
        "/api/v1/payments?limit=200",
        "/api/v1/treasury/me/balances",
        "/api/v1/treasury/me/balances/summary",
        "/api/v1/treasury/me/transactions?limit=200",
        "/api/v1/treasury/me/withdrawals?limit=200",
        "/api/v1/settings/api-keys",
    ] {
        out.insert(path.into(), org.get(path).await.ok());
    }
    let balances = org.balances().await;
    for b in balances {
        let id = s(&b["id"]);
        let path = format!("/api/v1/treasury/me/balances/{id}/changes?limit=200");
        out.insert(path.clone(), org.get(&path).await.ok());
    }
    let connections = org.walk("/api/v1/connections", 200).await;
    for c in connections {
        let path = format!("/api/v1/connections/{}", s(&c["id"]));
        out.insert(path.clone(), org.get(&path).await.ok());
    }
    out
}

#[tokio::test]
async fn read_models_answer_the_same_after_a_restart() {
    let mut app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    app.deposit(&pair.buyer, "EUR", "300.00").await;
    let other = app.create_org("Other").await;
    other
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": pair.buyer.id, "role": "SELLER" }),
        )
        .await
        .ok();

    // An invoice in most states, two currencies.
    pair.draft("1.00").await;
    pair.submitted("2.00").await;
    pair.approved("3.00").await;
    let disputed = s(&pair.submitted("4.00").await["id"]);
    pair.buyer
        .act(&disputed, "dispute", json!({ "reason": "r" }))
        .await
        .ok();
    let adjusted = s(&pair.submitted("50.00").await["id"]);
    pair.buyer
        .act(
            &adjusted,
            "approve",
            json!({ "adjustedAmount": "45.00", "reason": "r" }),
        )
        .await
        .ok();
    let settled = s(&pair.approved("60.00").await["id"]);
    assert_eq!(
        pair.buyer.act(&settled, "settle", json!({})).await.status,
        200
    );
    let archived = s(&pair.approved("7.00").await["id"]);
    assert_eq!(
        pair.buyer.act(&archived, "settle", json!({})).await.status,
        200
    );
    pair.seller.act(&archived, "archive", json!({})).await.ok();
    let requested = s(&pair.approved("8.00").await["id"]);
    pair.seller
        .act(&requested, "request-cancellation", json!({ "reason": "r" }))
        .await
        .ok();
    let mut eur = simple_invoice(&pair.conn, "90.00");
    eur["currency"] = json!("EUR");
    eur["submit"] = json!(true);
    let eur = s(&pair.seller.create_invoice(eur).await["id"]);
    pair.buyer.act(&eur, "approve", json!({})).await.ok();
    pair.buyer
        .post(
            "/api/v1/treasury/me/withdrawals",
            json!({ "currency": "EUR", "amount": "10.00", "destination": { "iban": "DE89370400440532013000" } }),
        )
        .await
        .ok();
    let revoked = pair.seller.key_with(&["invoices:read"]).await;
    pair.seller
        .delete(&format!("/api/v1/settings/api-keys/{}", revoked.key_id))
        .await
        .ok();
    let reader = pair.buyer.key_with(&["invoices:read"]).await;
    // A request to replay after the restart.
    let mut replayable = simple_invoice(&pair.conn, "11.11");
    replayable["requestId"] = json!(rid());
    let original = pair
        .seller
        .post("/api/v1/invoices", replayable.clone())
        .await;
    original.ok();

    let seller_before = snapshot(&pair.seller).await;
    let buyer_before = snapshot(&pair.buyer).await;
    let other_before = snapshot(&other).await;
    let log_before = app.log_state().await;
    let events_before = app
        .admin
        .get("/api/v1/admin/events?after=0&limit=10000")
        .await
        .text();

    app.restart().await;

    assert_eq!(app.log_state().await, log_before);
    assert_eq!(
        app.admin
            .get("/api/v1/admin/events?after=0&limit=10000")
            .await
            .text(),
        events_before,
        "the event stream changed"
    );
    for (who, before, org) in [
        ("seller", &seller_before, &pair.seller),
        ("buyer", &buyer_before, &pair.buyer),
        ("other", &other_before, &other),
    ] {
        let after = snapshot(org).await;
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{who}"
        );
        for (path, v) in before {
            assert_eq!(&after[path], v, "{who}: {path} changed across the restart");
        }
    }
    // Keys: still valid, still revoked.
    reader.get("/api/v1/invoices").await.ok();
    revoked
        .get("/api/v1/invoices")
        .await
        .err(401, "UNAUTHORIZED");
    // Idempotency records survive.
    let replay = pair.seller.post("/api/v1/invoices", replayable).await;
    replay.assert_replay_of(&original);
    assert_eq!(app.log_state().await, log_before);
    // And the ledger goes on from where it was.
    let answer = pair
        .buyer
        .act(&requested, "reject-cancellation", json!({}))
        .await
        .ok();
    assert_eq!(answer["status"], "APPROVED");
    let (total, reserved, available) = pair.buyer.money("USD").await;
    let expected_reserved: rust_decimal::Decimal = ["3.00", "45.00", "8.00"]
        .iter()
        .map(|a| a.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(reserved, expected_reserved);
    assert_eq!(total, "933.00".parse().unwrap());
    assert_eq!(available, total - reserved);
}

#[tokio::test]
async fn acknowledged_writes_survive_stop_and_kill() {
    let mut app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    for round in 0..3 {
        // Concurrent creations, then approvals and a settlement: several
        // group commits, balances and transactions in play.
        let created = join_all((0..30).map(|i| {
            let mut body = simple_invoice(&pair.conn, &format!("{}.00", i + 1));
            body["submit"] = json!(true);
            pair.seller.post("/api/v1/invoices", body)
        }))
        .await;
        let acknowledged: Vec<Value> = created.iter().map(Resp::ok).collect();
        let to_approve: Vec<String> = acknowledged[..5].iter().map(|i| s(&i["id"])).collect();
        let approvals = join_all(
            to_approve
                .iter()
                .map(|id| pair.buyer.act(id, "approve", json!({}))),
        )
        .await;
        for r in &approvals {
            r.ok();
        }
        let paid = pair
            .buyer
            .act(&s(&acknowledged[0]["id"]), "settle", json!({}))
            .await;
        assert_eq!(paid.status, 200, "{}", paid.text());

        let seller_before = snapshot(&pair.seller).await;
        let buyer_before = snapshot(&pair.buyer).await;
        let log_before = app.log_state().await;
        match round {
            0 => app.restart().await,
            _ => app.crash_restart().await,
        }
        assert_eq!(
            app.log_state().await,
            log_before,
            "round {round}: the log changed"
        );
        for (who, org, before) in [
            ("seller", &pair.seller, &seller_before),
            ("buyer", &pair.buyer, &buyer_before),
        ] {
            let after = snapshot(org).await;
            for (path, v) in before {
                assert_eq!(
                    after.get(path),
                    Some(v),
                    "round {round}, {who}: {path} changed"
                );
            }
            assert_eq!(after.len(), before.len(), "round {round}, {who}");
        }
    }
}

/// Killed while answering: every request that got its 200 is there afterwards,
/// exactly as answered.
#[tokio::test]
async fn a_kill_mid_flight_loses_no_acknowledged_write() {
    let mut app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let total = 60;
    for i in 0..total {
        let seller = pair.seller.clone();
        let mut body = simple_invoice(&pair.conn, &format!("{}.00", i + 1));
        body["requestId"] = json!(rid());
        let tx = tx.clone();
        tokio::spawn(async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let r = seller
                .try_send(
                    reqwest::Method::POST,
                    "/api/v1/invoices",
                    &[("content-type", "application/json")],
                    Some(bytes),
                )
                .await;
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let mut answers = Vec::new();
    while answers.len() < 5 {
        answers.push(rx.recv().await.expect("an answer"));
    }
    app.kill_now();
    while let Some(a) = rx.recv().await {
        answers.push(a);
    }
    assert_eq!(answers.len(), total);
    app.start_again().await;

    let acknowledged: Vec<Value> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .filter(|r| r.status == 200)
        .map(Resp::json)
        .collect();
    assert!(acknowledged.len() >= 5);
    for r in answers.iter().filter_map(|a| a.as_ref().ok()) {
        assert!(
            r.status == 200 || r.status >= 500,
            "unexpected answer: {} {}",
            r.status,
            r.text()
        );
    }
    let listed = pair.seller.all_invoices("").await;
    assert!(listed.len() >= acknowledged.len());
    for inv in &acknowledged {
        assert_eq!(
            &pair.seller.invoice(&s(&inv["id"])).await.ok(),
            inv,
            "an acknowledged invoice is lost or changed after the kill"
        );
    }
}

/// API logs are stored off the request path, a batch at a time, and not
/// fsynced with each batch (they are a record of traffic, not the ledger's
/// evidence); a clean stop stores and checkpoints whatever is still queued.
#[tokio::test]
async fn api_logs_of_requests_just_before_a_clean_stop_survive_it() {
    let mut app = spawn_app().await;
    let org = app.create_org("Logged").await;
    for n in 1..=20 {
        org.get(&format!("/api/v1/invoices?limit={n}")).await.ok();
    }
    app.restart().await;
    let logs = org
        .walk("/api/v1/settings/api-logs?path=/api/v1/invoices", 100)
        .await;
    for n in 1..=20 {
        let query = format!("limit={n}");
        assert!(
            logs.iter().any(|r| r["query"] == query.as_str()),
            "the request with {query} is in the API log after the restart: {logs:?}"
        );
    }
}
