//! Exports agree with the list endpoints: the CSV parses with a standard CSV
//! reader (quotes, commas and newlines in a reference survive), and the CSV
//! and JSON lines exports hold exactly the rows of the list (all pages
//! walked), field for field, with the same sums, with and without filters.

use crate::harness::*;
use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const AWKWARD_REFERENCE: &str = "Wire \"ACME, Inc.\"\nsecond line; ünïcode, €";

/// `GET` an export; checks the content type and returns the body.
async fn export(org: &Org, path: &str, content_type: &str) -> Vec<u8> {
    let r = org.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with(content_type), "{path}: content-type {ct}");
    r.bytes
}

/// CSV rows as column → value maps, read with the `csv` crate.
fn csv_rows(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().expect("CSV header").clone();
    for required in ["id", "amount", "currency", "createdAt"] {
        assert!(
            headers.iter().any(|h| h == required),
            "no `{required}` column: {headers:?}"
        );
    }
    reader
        .records()
        .map(|r| {
            let r = r.expect("a well-formed CSV row");
            assert_eq!(r.len(), headers.len(), "ragged row {r:?}");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn jsonl_rows(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "JSON lines end with a newline"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// A JSON field as the CSV writes it: strings as they are, null as empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sums(rows: impl Iterator<Item = (String, Decimal)>) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for (k, v) in rows {
        *out.entry(k).or_insert(Decimal::ZERO) += v;
    }
    out
}

/// The list (every page, small pages) against both exports of the same query.
async fn agree(org: &Org, list_path: &str, export_path: &str, query: &str, group: &str) -> usize {
    let sep = |q: &str| {
        if q.is_empty() {
            String::new()
        } else {
            format!("&{q}")
        }
    };
    let listed = org.walk(&format!("{list_path}?{}", query), 7).await;
    let by_id: BTreeMap<String, &Value> = listed.iter().map(|v| (s(&v["id"]), v)).collect();
    assert_eq!(
        by_id.len(),
        listed.len(),
        "{list_path}?{query}: an item listed twice"
    );

    let csv = csv_rows(
        &export(
            org,
            &format!("{export_path}?format=csv{}", sep(query)),
            "text/csv",
        )
        .await,
    );
    assert_eq!(
        csv.len(),
        listed.len(),
        "{export_path}?{query}: CSV rows vs list items"
    );
    for row in &csv {
        let item = by_id
            .get(&row["id"])
            .unwrap_or_else(|| panic!("CSV row not in the list: {row:?}"));
        for (column, value) in row {
            assert_eq!(
                value,
                &cell(&item[column.as_str()]),
                "column `{column}` of {row:?} vs {item}"
            );
        }
    }
    let jsonl = jsonl_rows(
        &export(
            org,
            &format!("{export_path}?format=jsonl{}", sep(query)),
            "application/x-ndjson",
        )
        .await,
    );
    assert_eq!(
        jsonl.len(),
        listed.len(),
        "{export_path}?{query}: JSON lines vs list items"
    );
    for v in &jsonl {
        let item = by_id
            .get(&s(&v["id"]))
            .unwrap_or_else(|| panic!("JSON line not in the list: {v}"));
        assert_eq!(v, *item, "a JSON line differs from the list item");
    }
    let list_sums = sums(listed.iter().map(|v| {
        (
            format!("{} {}", cell(&v[group]), s(&v["currency"])),
            dec(&v["amount"]),
        )
    }));
    let csv_sums = sums(
        csv.iter()
            .map(|r| (format!("{} {}", r[group], r["currency"]), d(&r["amount"]))),
    );
    let jsonl_sums = sums(jsonl.iter().map(|v| {
        (
            format!("{} {}", cell(&v[group]), s(&v["currency"])),
            dec(&v["amount"]),
        )
    }));
    assert_eq!(csv_sums, list_sums, "{export_path}?{query}: CSV sums");
    assert_eq!(jsonl_sums, list_sums, "{export_path}?{query}: JSONL sums");
    listed.len()
}

#[tokio::test]
async fn exports_match_the_lists() {
    let app = spawn_clock_app().await;
    app.set_clock("2030-05-01T08:00:00Z").await;
    let a = app.create_org("Atlas").await;
    let b = app.create_org("Borealis").await;
    let conn = app.connect(&b, &a).await;
    // 23 USD and 5 EUR deposits, an hour apart, one with an awkward reference.
    for i in 0..23 {
        let amount = format!("{}.{:02}", 500 + i * 13, (i * 7) % 100);
        let reference = if i == 5 {
            AWKWARD_REFERENCE.to_string()
        } else {
            format!("wire {i}")
        };
        deposit_ref(&app, &a, "USD", &amount, &reference).await;
        app.advance(3600).await;
    }
    for i in 0..5 {
        deposit_ref(&app, &a, "EUR", &format!("{}.50", 100 + i), "sepa").await;
        app.advance(3600).await;
    }
    // 31 invoices approved in bulk and settled in bulk, 3 of them failing on a freeze.
    let mut ids = Vec::new();
    for i in 0..34 {
        let body = invoice_body(
            &conn,
            "USD",
            vec![line("Item", "1", &format!("{}.25", 10 + i), None)],
            DUE,
        );
        ids.push(submit_invoice(&b, body).await);
    }
    let approved = a
        .post(
            "/api/v1/invoices/bulk-approve",
            json!({ "invoiceIds": ids }),
        )
        .await
        .ok();
    assert!(
        approved["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true),
        "{approved}"
    );
    app.advance(3600).await;
    let settled = a
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": ids[..31] }),
        )
        .await
        .ok();
    assert!(
        settled["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true),
        "{settled}"
    );
    freeze(&app, &b, "USD").await;
    app.advance(3600).await;
    let failing = a
        .post(
            "/api/v1/payments/bulk-settle",
            json!({ "invoiceIds": ids[31..] }),
        )
        .await
        .ok();
    for r in failing["results"].as_array().unwrap() {
        assert_eq!(r["status"], "FAILED", "{failing}");
    }
    unfreeze(&app, &b, "USD").await;
    // A withdrawal and a refund in the mix.
    let checker = a.key_with(&["treasury:approve"]).await;
    let w = submit_withdrawal(&a, "USD", "123.45").await.ok();
    decide(&checker, "withdrawals", &s(&w["id"]), "approve")
        .await
        .ok();
    let tx = transactions(&a, "type=SETTLEMENT_OUT").await.remove(0);
    let r = a
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": tx["id"], "amount": "1.25", "reason": "short" }),
        )
        .await
        .ok();
    decide(&b, "refunds", &s(&r["id"]), "approve").await.ok();

    let tx_list = "/api/v1/treasury/me/transactions";
    let tx_export = "/api/v1/treasury/me/transactions/export";
    // A: 28 deposits + 31 settlements + 1 withdrawal + 1 refund in.
    assert_eq!(agree(&a, tx_list, tx_export, "", "type").await, 61);
    // B: 31 settlements in + 1 refund out.
    assert_eq!(agree(&b, tx_list, tx_export, "", "type").await, 32);
    assert_eq!(
        agree(&a, tx_list, tx_export, "type=DEPOSIT&currency=USD", "type").await,
        23
    );
    assert_eq!(
        agree(&a, tx_list, tx_export, "currency=EUR", "type").await,
        5
    );
    // From inclusive, to exclusive: deposits 3..=9 (08:00 + 3h … 08:00 + 9h).
    assert_eq!(
        agree(
            &a,
            tx_list,
            tx_export,
            "from=2030-05-01T11:00:00Z&to=2030-05-01T18:00:00Z",
            "type"
        )
        .await,
        7
    );
    assert_eq!(
        agree(
            &a,
            tx_list,
            tx_export,
            "type=WITHDRAWAL&currency=EUR",
            "type"
        )
        .await,
        0
    );
    // The awkward reference comes back exactly through the CSV reader.
    let csv = csv_rows(
        &export(
            &a,
            &format!("{tx_export}?format=csv&type=DEPOSIT"),
            "text/csv",
        )
        .await,
    );
    assert_eq!(
        csv.iter()
            .filter(|r| r["reference"] == AWKWARD_REFERENCE)
            .count(),
        1,
        "{csv:?}"
    );
    // An empty CSV is still a header.
    let empty = export(
        &a,
        &format!("{tx_export}?format=csv&type=REFUND_OUT"),
        "text/csv",
    )
    .await;
    let mut reader = csv::Reader::from_reader(empty.as_slice());
    assert!(reader
        .headers()
        .expect("header")
        .iter()
        .any(|h| h == "amount"));
    assert_eq!(reader.records().count(), 0);

    let pay_list = "/api/v1/payments";
    let pay_export = "/api/v1/payments/export";
    assert_eq!(agree(&a, pay_list, pay_export, "", "status").await, 34);
    assert_eq!(agree(&b, pay_list, pay_export, "", "status").await, 34);
    assert_eq!(
        agree(&a, pay_list, pay_export, "status=FAILED", "status").await,
        3
    );
    assert_eq!(
        agree(&b, pay_list, pay_export, "status=COMPLETED", "status").await,
        31
    );
    assert_eq!(
        agree(
            &a,
            pay_list,
            pay_export,
            &format!("invoiceId={}", ids[3]),
            "status"
        )
        .await,
        1
    );
    // Payments were made at 2030-05-02T13:00 (settled) and 14:00 (failed).
    assert_eq!(
        agree(
            &a,
            pay_list,
            pay_export,
            "from=2030-05-02T13:30:00Z",
            "status"
        )
        .await,
        3
    );
    assert_eq!(
        agree(
            &a,
            pay_list,
            pay_export,
            "to=2030-05-02T13:30:00Z",
            "status"
        )
        .await,
        31
    );

    // Who may export what.
    let reader = a.key_with(&["invoices:read"]).await;
    reader
        .get(&format!("{pay_export}?format=csv"))
        .await
        .err(403, "FORBIDDEN");
    reader
        .get(&format!("{tx_export}?format=csv"))
        .await
        .err(403, "FORBIDDEN");
    b.get(&format!(
        "/api/v1/treasury/{}/transactions/export?format=csv",
        a.id
    ))
    .await
    .err(404, "NOT_FOUND");
    a.get(&format!("{tx_export}?format=xlsx"))
        .await
        .err(400, "VALIDATION_ERROR");
    a.get(&format!("{pay_export}?format=csv&status=LOST"))
        .await
        .err(400, "VALIDATION_ERROR");
}
