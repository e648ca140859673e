//! Editing an invoice: PATCH with optimistic concurrency in the editable
//! states, and line items added, changed and removed in DRAFT only.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn version(v: &Value) -> u64 {
    v["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {v}"))
}

#[tokio::test]
async fn patch_honours_expected_version_and_recomputes_totals() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let inv = pair.draft("10.00").await;
    let id = s(&inv["id"]);
    let path = format!("/api/v1/invoices/{id}");
    let v0 = version(&inv);

    let before = app.log_state().await;
    for stale in [v0 - 1, v0 + 1, v0 + 100] {
        pair.seller
            .patch(&path, json!({ "expectedVersion": stale, "memo": "stale" }))
            .await
            .err(409, "VERSION_CONFLICT");
    }
    assert_eq!(
        app.log_state().await,
        before,
        "a conflicting edit wrote to the log"
    );
    assert_eq!(pair.seller.invoice(&id).await.ok(), inv);

    let edited = pair
        .seller
        .patch(
            &path,
            json!({
                "expectedVersion": v0,
                "number": "INV-EDIT-9",
                "dueDate": "2031-12-31",
                "memo": "revised",
                "lineItems": [line("A", "2", "10.00", Some("10")), line("B", "1", "5.55", None)],
            }),
        )
        .await
        .ok();
    assert_eq!(version(&edited), v0 + 1);
    assert_eq!(edited["status"], "DRAFT");
    assert_eq!(edited["number"], "INV-EDIT-9");
    assert_eq!(edited["dueDate"], "2031-12-31");
    assert_eq!(edited["memo"], "revised");
    assert_eq!(edited["subtotal"], "25.55");
    assert_eq!(edited["taxTotal"], "2.00");
    assert_eq!(edited["total"], "27.55");
    assert_eq!(edited["lineItems"].as_array().map(Vec::len), Some(2));
    assert_eq!(edited["currency"], inv["currency"]);
    assert_eq!(edited["connectionId"], inv["connectionId"]);
    assert_eq!(pair.seller.invoice(&id).await.ok(), edited);

    // The version it had is now stale; without expectedVersion, no check.
    pair.seller
        .patch(&path, json!({ "expectedVersion": v0, "memo": "late" }))
        .await
        .err(409, "VERSION_CONFLICT");
    let unchecked = pair
        .seller
        .patch(&path, json!({ "memo": "no check" }))
        .await
        .ok();
    assert_eq!(version(&unchecked), v0 + 2);
    assert_eq!(unchecked["total"], "27.55", "fields not sent are kept");
    assert_eq!(unchecked["number"], "INV-EDIT-9");
}

#[tokio::test]
async fn patch_is_open_in_draft_disputed_and_info_requested_only() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let disputed = pair.submitted("10.00").await;
    let disputed_id = s(&disputed["id"]);
    pair.buyer
        .act(&disputed_id, "dispute", json!({ "reason": "too much" }))
        .await
        .ok();
    let info = pair.submitted("10.00").await;
    let info_id = s(&info["id"]);
    pair.buyer
        .act(&info_id, "request-info", json!({ "question": "PO?" }))
        .await
        .ok();
    for (id, state) in [(&disputed_id, "DISPUTED"), (&info_id, "INFO_REQUESTED")] {
        let cur = pair.seller.invoice(id).await.ok();
        let edited = pair
            .seller
            .patch(
                &format!("/api/v1/invoices/{id}"),
                json!({ "expectedVersion": version(&cur), "memo": "fixed", "lineItems": [line("Fixed", "1", "8.00", None)] }),
            )
            .await
            .ok();
        assert_eq!(edited["status"], state);
        assert_eq!(edited["total"], "8.00");
        assert_eq!(version(&edited), version(&cur) + 1);
        assert_eq!(
            pair.buyer.invoice(id).await.ok(),
            edited,
            "the buyer sees the correction"
        );
        // The buyer may not edit it.
        pair.buyer
            .patch(&format!("/api/v1/invoices/{id}"), json!({ "memo": "mine" }))
            .await
            .err(403, "FORBIDDEN");
    }
    // Corrected, the disputed invoice is resubmitted and approved at its new total.
    pair.seller
        .act(&disputed_id, "submit", json!({}))
        .await
        .ok();
    let approved = pair
        .buyer
        .act(&disputed_id, "approve", json!({}))
        .await
        .ok();
    assert_eq!(approved["approvedAmount"], "8.00");
    // Approved: no more edits.
    pair.seller
        .patch(
            &format!("/api/v1/invoices/{disputed_id}"),
            json!({ "memo": "late" }),
        )
        .await
        .invalid_transition("APPROVED");
}

#[tokio::test]
async fn line_items_are_edited_in_draft_and_refused_otherwise() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let mut body = simple_invoice(&pair.conn, "10.00");
    body["lineItems"] = json!([
        line("Keep", "1", "10.00", None),
        line("Change", "2", "3.00", Some("10"))
    ]);
    let inv = pair.seller.create_invoice(body).await;
    let id = s(&inv["id"]);
    let items = format!("/api/v1/invoices/{id}/line-items");
    let keep = inv["lineItems"][0].clone();
    let change_id = s(&inv["lineItems"][1]["id"]);
    assert_eq!(inv["total"], "16.60");

    let added = pair
        .seller
        .post(&items, line("Added", "4", "0.25", Some("50")))
        .await
        .ok();
    assert_eq!(version(&added), version(&inv) + 1);
    let lines = added["lineItems"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    let new_line = lines
        .iter()
        .find(|l| l["description"] == "Added")
        .expect("added line");
    assert_eq!(new_line["amount"], "1.00");
    assert_eq!(new_line["taxAmount"], "0.50");
    assert_eq!(added["total"], "18.10");
    assert_eq!(pair.seller.invoice(&id).await.ok(), added);

    let changed = pair
        .seller
        .patch(&format!("{items}/{change_id}"), json!({ "quantity": "5" }))
        .await
        .ok();
    assert_eq!(version(&changed), version(&added) + 1);
    let line_after = changed["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == change_id.as_str())
        .expect("same line id after update")
        .clone();
    assert_eq!(
        line_after["quantity"]
            .as_str()
            .map(|q| q.parse::<f64>().unwrap()),
        Some(5.0)
    );
    assert_eq!(line_after["unitPrice"], "3.00", "unchanged fields kept");
    assert_eq!(line_after["amount"], "15.00");
    assert_eq!(line_after["taxAmount"], "1.50");
    assert_eq!(changed["lineItems"][0], keep, "other lines untouched");
    assert_eq!(changed["total"], "28.00");

    let removed = pair
        .seller
        .delete(&format!("{items}/{change_id}"))
        .await
        .ok();
    assert_eq!(version(&removed), version(&changed) + 1);
    assert!(removed["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["id"] != change_id.as_str()));
    assert_eq!(removed["total"], "11.50");

    // Unknown line: 404; already removed: 404.
    let before = app.log_state().await;
    let ghost = uuid::Uuid::new_v4();
    pair.seller
        .patch(&format!("{items}/{ghost}"), json!({ "quantity": "1" }))
        .await
        .err(404, "NOT_FOUND");
    pair.seller
        .delete(&format!("{items}/{change_id}"))
        .await
        .err(404, "NOT_FOUND");
    assert_eq!(app.log_state().await, before);

    // Beyond DRAFT, line items are frozen, for the seller (400) and the buyer (403).
    let submitted = pair.seller.act(&id, "submit", json!({})).await.ok();
    let disputed = pair.submitted("5.00").await;
    let disputed_id = s(&disputed["id"]);
    pair.buyer
        .act(&disputed_id, "dispute", json!({ "reason": "r" }))
        .await
        .ok();
    let approved = pair.approved("5.00").await;
    let cases = [
        (submitted, "SUBMITTED"),
        (pair.seller.invoice(&disputed_id).await.ok(), "DISPUTED"),
        (approved, "APPROVED"),
    ];
    let before = app.log_state().await;
    for (inv, state) in &cases {
        let id = s(&inv["id"]);
        let items = format!("/api/v1/invoices/{id}/line-items");
        let line_id = s(&inv["lineItems"][0]["id"]);
        let item = format!("{items}/{line_id}");
        pair.seller
            .post(&items, line("X", "1", "1.00", None))
            .await
            .invalid_transition(state);
        pair.seller
            .patch(&item, json!({ "quantity": "2" }))
            .await
            .invalid_transition(state);
        pair.seller.delete(&item).await.invalid_transition(state);
        pair.buyer
            .post(&items, line("X", "1", "1.00", None))
            .await
            .err(403, "FORBIDDEN");
        pair.buyer
            .patch(&item, json!({ "quantity": "2" }))
            .await
            .err(403, "FORBIDDEN");
        pair.buyer.delete(&item).await.err(403, "FORBIDDEN");
        assert_eq!(pair.seller.invoice(&id).await.ok(), *inv);
    }
    assert_eq!(app.log_state().await, before);

    // A draft emptied of its lines cannot be submitted.
    let lonely = pair.draft("1.00").await;
    let lonely_id = s(&lonely["id"]);
    let only = s(&lonely["lineItems"][0]["id"]);
    pair.seller
        .bodiless(
            Method::DELETE,
            &format!("/api/v1/invoices/{lonely_id}/line-items/{only}"),
            &rid(),
        )
        .await
        .ok();
    let r = pair.seller.act(&lonely_id, "submit", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    r.client_error();
}
