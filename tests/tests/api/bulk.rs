//! Bulk approve, cancel, archive and restore: a preview changes nothing and
//! predicts the execution; an execution answers per invoice, in order, each
//! invoice succeeding or failing on its own.

use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;

fn usd(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// `(id, ok, error code)` per result, checking the result shape.
fn outcomes(answer: &Value, ids: &[String]) -> Vec<(String, bool, Option<String>)> {
    let results = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {answer}"));
    assert_eq!(results.len(), ids.len(), "one result per id: {answer}");
    results
        .iter()
        .zip(ids)
        .map(|(r, id)| {
            assert_eq!(r["id"], id.as_str(), "results out of order: {answer}");
            let ok = r["ok"]
                .as_bool()
                .unwrap_or_else(|| panic!("ok not a bool: {r}"));
            let code = if ok {
                assert!(r.get("error").is_none_or(Value::is_null), "{r}");
                None
            } else {
                assert!(r["error"]["message"].is_string(), "{r}");
                Some(s(&r["error"]["code"]))
            };
            (id.clone(), ok, code)
        })
        .collect()
}

async fn statuses(org: &Org, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let r = org.invoice(id).await;
        out.push(if r.status == 200 {
            r.json()["status"].clone()
        } else {
            json!(r.status)
        });
    }
    out
}

/// Preview, check it changed nothing, execute, check the execution matched.
async fn preview_then_execute(
    app: &TestApp,
    org: &Org,
    name: &str,
    ids: &[String],
) -> Vec<(String, bool, Option<String>)> {
    let before_log = app.log_state().await;
    let before_status = statuses(org, ids).await;
    let before_money = org.balances().await;
    let preview = org
        .post(
            &format!("/api/v1/invoices/bulk-{name}/preview"),
            json!({ "invoiceIds": ids }),
        )
        .await
        .ok();
    let predicted = outcomes(&preview, ids);
    assert_eq!(
        app.log_state().await,
        before_log,
        "bulk-{name} preview wrote to the log"
    );
    assert_eq!(
        statuses(org, ids).await,
        before_status,
        "bulk-{name} preview changed invoices"
    );
    assert_eq!(
        org.balances().await,
        before_money,
        "bulk-{name} preview changed balances"
    );

    let key = rid();
    let body = json!({ "requestId": key, "invoiceIds": ids });
    let first = org
        .post(&format!("/api/v1/invoices/bulk-{name}"), body.clone())
        .await;
    let done = outcomes(&first.ok(), ids);
    assert_eq!(
        done, predicted,
        "bulk-{name}: the preview did not predict the execution"
    );
    // A replay answers the same and does nothing more.
    let after = app.log_state().await;
    let again = org
        .post(&format!("/api/v1/invoices/bulk-{name}"), body)
        .await;
    again.assert_replay_of(&first);
    assert_eq!(app.log_state().await, after);
    done
}

#[tokio::test]
async fn bulk_approve_reserves_what_fits_and_reports_the_rest() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let already = s(&pair.approved("10.00").await["id"]);
    let a = s(&pair.submitted("30.00").await["id"]);
    let too_big = s(&pair.submitted("70.00").await["id"]);
    let b = s(&pair.submitted("50.00").await["id"]);
    let draft = s(&pair.draft("1.00").await["id"]);
    let stranger = app.trading_pair("0").await;
    let theirs = s(&stranger.submitted("1.00").await["id"]);
    let never = uuid::Uuid::new_v4().to_string();
    let ids = vec![
        a.clone(),
        too_big.clone(),
        b.clone(),
        draft,
        already,
        theirs,
        never,
    ];

    let preview = pair
        .buyer
        .post(
            "/api/v1/invoices/bulk-approve/preview",
            json!({ "invoiceIds": ids }),
        )
        .await
        .ok();
    let totals = preview["totals"]
        .as_array()
        .unwrap_or_else(|| panic!("no totals: {preview}"));
    let usd_totals = totals
        .iter()
        .find(|t| t["currency"] == "USD")
        .expect("USD totals");
    assert_eq!(dec(&usd_totals["available"]), usd("90"));
    let needed = dec(&usd_totals["needed"]);
    assert!(
        needed == usd("80") || needed == usd("150"),
        "needed is neither what fits (80) nor all that is approvable (150): {needed}"
    );

    let results = preview_then_execute(&app, &pair.buyer, "approve", &ids).await;
    let codes: Vec<Option<&str>> = results.iter().map(|(_, _, c)| c.as_deref()).collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some("INSUFFICIENT_BALANCE"),
            None,
            Some("NOT_FOUND"),
            Some("INVALID_STATE_TRANSITION"),
            Some("NOT_FOUND"),
            Some("NOT_FOUND"),
        ]
    );
    assert_eq!(pair.buyer.invoice(&a).await.ok()["status"], "APPROVED");
    assert_eq!(pair.buyer.invoice(&b).await.ok()["status"], "APPROVED");
    assert_eq!(
        pair.buyer.invoice(&too_big).await.ok()["status"],
        "SUBMITTED"
    );
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("90"), usd("10"))
    );

    // The seller cannot bulk-approve its own invoices.
    let mine = s(&pair.submitted("1.00").await["id"]);
    let r = pair
        .seller
        .post(
            "/api/v1/invoices/bulk-approve",
            json!({ "invoiceIds": [mine] }),
        )
        .await
        .ok();
    assert_eq!(outcomes(&r, &[mine])[0].2.as_deref(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn bulk_cancel_archive_and_restore_act_per_invoice() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let draft = s(&pair.draft("1.00").await["id"]);
    let submitted = s(&pair.submitted("1.00").await["id"]);
    let disputed = s(&pair.submitted("1.00").await["id"]);
    pair.buyer
        .act(&disputed, "dispute", json!({ "reason": "r" }))
        .await
        .ok();
    let approved = s(&pair.approved("1.00").await["id"]);
    let settled = s(&pair.approved("2.00").await["id"]);
    assert_eq!(
        pair.buyer.act(&settled, "settle", json!({})).await.status,
        200
    );

    let ids = vec![
        draft.clone(),
        approved.clone(),
        submitted.clone(),
        disputed.clone(),
    ];
    let done = preview_then_execute(&app, &pair.seller, "cancel", &ids).await;
    let oks: Vec<bool> = done.iter().map(|d| d.1).collect();
    assert_eq!(oks, vec![true, false, true, true]);
    assert_eq!(done[1].2.as_deref(), Some("INVALID_STATE_TRANSITION"));
    assert_eq!(
        statuses(&pair.seller, &ids).await,
        vec![
            json!("CANCELLED"),
            json!("APPROVED"),
            json!("CANCELLED"),
            json!("CANCELLED")
        ]
    );
    assert_eq!(
        pair.buyer.money("USD").await.1,
        usd("1"),
        "the approved reservation is intact"
    );

    let ids = vec![
        draft.clone(),
        settled.clone(),
        approved.clone(),
        submitted.clone(),
    ];
    let done = preview_then_execute(&app, &pair.buyer, "archive", &ids).await;
    let codes: Vec<Option<&str>> = done.iter().map(|d| d.2.as_deref()).collect();
    // The cancelled draft was never the buyer's to see.
    assert_eq!(
        codes,
        vec![
            Some("NOT_FOUND"),
            None,
            Some("INVALID_STATE_TRANSITION"),
            None
        ]
    );

    let ids = vec![
        submitted.clone(),
        approved.clone(),
        settled.clone(),
        draft.clone(),
    ];
    let done = preview_then_execute(&app, &pair.seller, "archive", &ids[3..]).await;
    assert!(done[0].1);
    let done = preview_then_execute(&app, &pair.seller, "restore", &ids).await;
    let oks: Vec<bool> = done.iter().map(|d| d.1).collect();
    assert_eq!(oks, vec![true, false, true, true]);
    assert_eq!(
        statuses(&pair.seller, &ids).await,
        vec![
            json!("CANCELLED"),
            json!("APPROVED"),
            json!("SETTLED"),
            json!("CANCELLED")
        ],
        "restore returns each invoice to the state it was archived from"
    );
}

/// A committed answer never turns into a 500 for its size: 34 drafts of about
/// a megabyte each (480 lines of 2,000 characters) are cancelled in one bulk
/// call with a requestId; the answer is compact rows (the status, no
/// embedded invoices) and its retry replays it; a list page over all of them
/// (over 32 MiB of JSON, once the API log's cap) is served whole.
#[tokio::test]
async fn answers_of_any_size_are_served_and_bulk_answers_are_compact() {
    let app = spawn_app().await;
    let pair = app.trading_pair("10.00").await;
    let description = "d".repeat(2000);
    let lines: Vec<Value> = (0..480)
        .map(|_| line(&description, "1", "0.01", None))
        .collect();
    let mut ids = Vec::new();
    for i in 0..34 {
        let inv = pair
            .seller
            .create_invoice(json!({
                "connectionId": pair.conn,
                "number": format!("BIG-{i}"),
                "currency": "USD",
                "dueDate": "2031-06-30",
                "lineItems": lines,
            }))
            .await;
        ids.push(s(&inv["id"]));
    }
    let body = json!({ "requestId": rid(), "invoiceIds": ids });
    let first = pair
        .seller
        .post("/api/v1/invoices/bulk-cancel", body.clone())
        .await;
    let answer = first.ok();
    assert_eq!(answer["succeeded"], 34, "{answer}");
    assert!(first.text().len() < 16_384, "{} bytes", first.text().len());
    let results = answer["results"].as_array().expect("results");
    for (r, id) in results.iter().zip(&ids) {
        assert_eq!(
            r,
            &json!({ "id": id, "ok": true, "status": "CANCELLED" }),
            "{answer}"
        );
    }
    let again = pair.seller.post("/api/v1/invoices/bulk-cancel", body).await;
    again.assert_replay_of(&first);
    let page = pair.seller.get("/api/v1/invoices?limit=200").await;
    assert!(
        page.text().len() > 32 * 1024 * 1024,
        "{}",
        page.text().len()
    );
    let page = page.ok();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(34));
    assert!(page["data"].as_array().into_iter().flatten().all(
        |i| i["status"] == "CANCELLED" && i["lineItems"].as_array().map(Vec::len) == Some(480)
    ));
}
