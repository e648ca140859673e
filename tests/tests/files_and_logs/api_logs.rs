//! The API log: what is recorded, in what order, with which fields; that
//! secrets never reach it; filters, paging and exports agreeing; privacy.

use crate::common::{all_logs, before_log_reads, pct, upload_raw};
use crate::support::{rid, s, spawn_app, spawn_app_with, Org, Resp};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Instant;

/// One call with an explicit `X-Request-Id` (when given); the response and
/// how long the client waited, in milliseconds.
async fn call(
    org: &Org,
    method: Method,
    path: &str,
    body: Option<&Value>,
    request_id: Option<&str>,
) -> (Resp, f64) {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    if let Some(r) = request_id {
        headers.push(("x-request-id", r));
    }
    let idem = rid();
    if body.is_none() && method != Method::GET {
        headers.push(("idempotency-key", &idem));
    }
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let started = Instant::now();
    let r = org.send(method, path, &headers, bytes).await;
    (r, started.elapsed().as_secs_f64() * 1000.0)
}

struct Expected {
    method: &'static str,
    path: String,
    query: Option<String>,
    key: String,
    request_id: String,
    /// The JSON body sent (None: no body or not JSON).
    request_json: Option<Value>,
    response: Resp,
    client_ms: f64,
}

fn parse_body(v: &Value) -> Option<Value> {
    v.as_str().and_then(|t| serde_json::from_str(t).ok())
}

#[tokio::test]
async fn a_sequence_of_calls_is_logged_in_order_with_its_fields() {
    let app = spawn_app().await;
    let a = app.create_org("Logger Ltd").await;
    let started = chrono::Utc::now();
    let mut expected: Vec<Expected> = Vec::new();
    let tag = rid();

    // 1. k0 creates a second key (the response carries its secret).
    let body = json!({ "requestId": rid(), "name": "second key", "permissions": ["invoices:read", "storage:read"] });
    let req_id = format!("seq-1-{tag}");
    let (r, ms) = call(
        &a,
        Method::POST,
        "/api/v1/settings/api-keys",
        Some(&body),
        Some(&req_id),
    )
    .await;
    let key = r.ok();
    let k1 = a.with_key(&s(&key["id"]), &s(&key["secret"]));
    expected.push(Expected {
        method: "POST",
        path: "/api/v1/settings/api-keys".into(),
        query: None,
        key: a.key_id.clone(),
        request_id: req_id,
        request_json: Some(body),
        response: r,
        client_ms: ms,
    });

    // 2. k1 lists invoices with a query string.
    let req_id = format!("seq-2-{tag}");
    let (r, ms) = call(
        &k1,
        Method::GET,
        "/api/v1/invoices?status=DRAFT&limit=5",
        None,
        Some(&req_id),
    )
    .await;
    r.ok();
    expected.push(Expected {
        method: "GET",
        path: "/api/v1/invoices".into(),
        query: Some("status=DRAFT&limit=5".into()),
        key: k1.key_id.clone(),
        request_id: req_id,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    // 3. k1 tries something its permissions do not allow.
    let body = json!({ "requestId": rid(), "counterpartyOrganizationId": uuid::Uuid::new_v4(), "role": "SELLER" });
    let req_id = format!("seq-3-{tag}");
    let (r, ms) = call(
        &k1,
        Method::POST,
        "/api/v1/connections",
        Some(&body),
        Some(&req_id),
    )
    .await;
    r.err(403, "FORBIDDEN");
    expected.push(Expected {
        method: "POST",
        path: "/api/v1/connections".into(),
        query: None,
        key: k1.key_id.clone(),
        request_id: req_id,
        request_json: Some(body),
        response: r,
        client_ms: ms,
    });

    // 4. k0 asks for a file that does not exist.
    let path = format!("/api/v1/storage/{}", uuid::Uuid::new_v4());
    let req_id = format!("seq-4-{tag}");
    let (r, ms) = call(&a, Method::GET, &path, None, Some(&req_id)).await;
    r.err(404, "NOT_FOUND");
    expected.push(Expected {
        method: "GET",
        path,
        query: None,
        key: a.key_id.clone(),
        request_id: req_id,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    // 5. k0 uploads a small text file (a non-JSON body).
    let req_id = format!("seq-5-{tag}");
    let started_upload = Instant::now();
    let r = a
        .send(
            Method::POST,
            "/api/v1/storage?filename=note.txt",
            &[("content-type", "text/plain"), ("x-request-id", &req_id)],
            Some(b"hello, log".to_vec()),
        )
        .await;
    let ms = started_upload.elapsed().as_secs_f64() * 1000.0;
    let file = r.ok();
    let file_id = s(&file["id"]);
    expected.push(Expected {
        method: "POST",
        path: "/api/v1/storage".into(),
        query: Some("filename=note.txt".into()),
        key: a.key_id.clone(),
        request_id: req_id,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    // 6. k1 downloads it (a non-JSON response).
    let path = format!("/api/v1/storage/{file_id}");
    let req_id = format!("seq-6-{tag}");
    let (r, ms) = call(&k1, Method::GET, &path, None, Some(&req_id)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.bytes, b"hello, log");
    expected.push(Expected {
        method: "GET",
        path,
        query: None,
        key: k1.key_id.clone(),
        request_id: req_id,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    // 7. k0 patches an invoice that does not exist.
    let path = format!("/api/v1/invoices/{}", uuid::Uuid::new_v4());
    let body = json!({ "requestId": rid(), "memo": "nothing here" });
    let req_id = format!("seq-7-{tag}");
    let (r, ms) = call(&a, Method::PATCH, &path, Some(&body), Some(&req_id)).await;
    r.err(404, "NOT_FOUND");
    expected.push(Expected {
        method: "PATCH",
        path,
        query: None,
        key: a.key_id.clone(),
        request_id: req_id,
        request_json: Some(body),
        response: r,
        client_ms: ms,
    });

    // 8. k0 deletes the file (bodiless, Idempotency-Key).
    let path = format!("/api/v1/storage/{file_id}");
    let req_id = format!("seq-8-{tag}");
    let (r, ms) = call(&a, Method::DELETE, &path, None, Some(&req_id)).await;
    r.ok();
    expected.push(Expected {
        method: "DELETE",
        path,
        query: None,
        key: a.key_id.clone(),
        request_id: req_id,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    // 9. No X-Request-Id sent: the server's own id is the one recorded.
    let (r, ms) = call(&a, Method::GET, "/api/v1/settings/api-keys", None, None).await;
    r.ok();
    let generated = r.header("x-request-id").expect("a generated X-Request-Id");
    expected.push(Expected {
        method: "GET",
        path: "/api/v1/settings/api-keys".into(),
        query: None,
        key: a.key_id.clone(),
        request_id: generated,
        request_json: None,
        response: r,
        client_ms: ms,
    });

    let everything = all_logs(&a).await;
    let records = before_log_reads(&everything);
    assert_eq!(
        records.len(),
        expected.len(),
        "one record per call, nothing else (admin calls are not logged): {}",
        serde_json::to_string_pretty(&records).unwrap()
    );
    let finished = chrono::Utc::now();
    let mut previous_at: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut ids = std::collections::HashSet::new();
    for (i, (rec, exp)) in records.iter().zip(&expected).enumerate() {
        let ctx = format!("record {} ({} {}): {rec:#}", i + 1, exp.method, exp.path);
        let keys: std::collections::BTreeSet<&str> = rec
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for field in [
            "id",
            "at",
            "method",
            "path",
            "query",
            "status",
            "durationMs",
            "apiKeyId",
            "requestId",
            "ip",
            "requestBody",
            "responseBody",
        ] {
            assert!(keys.contains(field), "missing `{field}`: {ctx}");
        }
        assert!(ids.insert(s(&rec["id"])), "ids are unique: {ctx}");
        assert_eq!(rec["method"], exp.method, "{ctx}");
        assert_eq!(rec["path"], exp.path.as_str(), "{ctx}");
        assert_eq!(rec["query"], json!(exp.query), "{ctx}");
        assert_eq!(rec["status"], json!(exp.response.status), "{ctx}");
        assert_eq!(rec["apiKeyId"], exp.key.as_str(), "{ctx}");
        assert_eq!(rec["requestId"], exp.request_id.as_str(), "{ctx}");
        assert_eq!(
            exp.response.header("x-request-id").as_deref(),
            Some(exp.request_id.as_str()),
            "the response echoes the request id: {ctx}"
        );
        assert_eq!(rec["ip"], "127.0.0.1", "{ctx}");
        let ms = rec["durationMs"]
            .as_f64()
            .unwrap_or_else(|| panic!("durationMs is a number: {ctx}"));
        assert!(
            ms >= 0.0 && ms <= exp.client_ms + 1.0,
            "durationMs {ms} within the {:.3} ms the client waited: {ctx}",
            exp.client_ms
        );
        let at = chrono::DateTime::parse_from_rfc3339(&s(&rec["at"]))
            .unwrap_or_else(|e| panic!("at is RFC 3339 ({e}): {ctx}"))
            .with_timezone(&chrono::Utc);
        assert!(
            at >= started - chrono::Duration::seconds(1)
                && at <= finished + chrono::Duration::seconds(1),
            "at {at} during the test: {ctx}"
        );
        if let Some(p) = previous_at {
            assert!(at >= p, "records in call order: {ctx}");
        }
        previous_at = Some(at);
        // Bodies: JSON request bodies as sent, JSON responses as received
        // (with the one secret field redacted).
        match &exp.request_json {
            Some(sent) => assert_eq!(
                parse_body(&rec["requestBody"]).as_ref(),
                Some(sent),
                "{ctx}"
            ),
            None if exp.method == "GET" || exp.method == "DELETE" => {
                assert!(
                    rec["requestBody"].is_null() || rec["requestBody"] == "",
                    "no request body: {ctx}"
                )
            }
            None => {
                let b = rec["requestBody"].as_str().unwrap_or("");
                assert!(
                    !b.contains("hello, log"),
                    "a file's bytes are not logged as its body: {ctx}"
                );
            }
        }
        let ct = exp.response.header("content-type").unwrap_or_default();
        if ct.starts_with("application/json") {
            let mut got = parse_body(&rec["responseBody"])
                .unwrap_or_else(|| panic!("a JSON response body: {ctx}"));
            let mut sent = exp.response.json();
            if i == 0 {
                assert_eq!(
                    got["secret"], "[REDACTED]",
                    "the new key's secret is redacted: {ctx}"
                );
                assert_eq!(got["id"], sent["id"], "{ctx}");
                got["secret"] = Value::Null;
                sent["secret"] = Value::Null;
            }
            assert_eq!(got, sent, "{ctx}");
        } else {
            let b = rec["responseBody"].as_str().unwrap_or("");
            assert!(
                !b.contains("hello, log"),
                "downloaded bytes are not logged: {ctx}"
            );
        }
        // The single record reads back the same.
        let one = a
            .get(&format!("/api/v1/settings/api-logs/{}", s(&rec["id"])))
            .await
            .ok();
        assert_eq!(&one, rec, "GET /settings/api-logs/{{id}}");
    }

    // The reads of the log are themselves logged, after the calls.
    let again = all_logs(&a).await;
    assert_eq!(
        &again[..records.len()],
        &records[..],
        "earlier records do not change"
    );
    let reads: Vec<&Value> = again[records.len()..].iter().collect();
    assert!(
        reads
            .iter()
            .any(|r| r["path"] == "/api/v1/settings/api-logs" && r["query"] == "limit=200"),
        "the first listing is logged: {reads:#?}"
    );
}

/// Every stored byte of the organization's log: all pages of the list, each
/// record fetched alone, and both exports.
async fn every_stored_byte(org: &Org) -> (Vec<Value>, String) {
    let records = all_logs(org).await;
    let mut text = serde_json::to_string(&records).unwrap();
    for r in &records {
        let one = org
            .get(&format!("/api/v1/settings/api-logs/{}", s(&r["id"])))
            .await;
        text.push_str(&one.text());
    }
    for format in ["jsonl", "csv"] {
        let r = org
            .get(&format!("/api/v1/settings/api-logs/export?format={format}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        text.push_str(&r.text());
    }
    (records, text)
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let app = spawn_app_with(&[("EXPEREON_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let pair = app.trading_pair("0").await;
    let a = &pair.seller;
    // Things that must never be stored: every API secret (the X-API-Secret
    // header of every call), webhook secrets, and values of secret-named fields.
    let mut secrets: Vec<String> = vec![a.secret.clone()];
    let k1 = a.key_with(&["*"]).await;
    let k2 = a.key_with(&["invoices:read"]).await;
    secrets.push(k1.secret.clone());
    secrets.push(k2.secret.clone());

    // Webhook secrets (whsec_…), on create and on rotation.
    let hook = a
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": "http://127.0.0.1:9/hook", "events": ["payment.settled"] }),
        )
        .await;
    if hook.status == 200 {
        let hook = hook.json();
        secrets.push(s(&hook["secret"]));
        let rotated = a
            .post(
                &format!("/api/v1/settings/webhooks/{}/rotate-secret", s(&hook["id"])),
                json!({}),
            )
            .await
            .ok();
        secrets.push(s(&rotated["secret"]));
    } else {
        eprintln!(
            "webhooks not available ({}): checking API key secrets only",
            hook.status
        );
    }

    // Calls made with each key (so each secret travels in X-API-Secret).
    k1.get("/api/v1/invoices").await.ok();
    k2.get("/api/v1/invoices?limit=1").await.ok();

    // Secret-named fields, at the top level and nested, in bodies the server
    // refuses (they are logged all the same).
    let planted: Vec<String> = (0..6)
        .map(|i| format!("planted-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    secrets.extend(planted.iter().cloned());
    let refused = k1
        .post(
            "/api/v1/settings/api-keys",
            json!({
                "name": "x",
                "permissions": ["*"],
                "password": planted[0],
                "meta": { "apiToken": planted[1], "list": [{ "clientSecret": planted[2] }] },
            }),
        )
        .await;
    refused.client_error();
    // A secret in a free-text field (an invoice memo echoed back in the
    // response): secret-shaped values are masked wherever they appear.
    let mut inv = crate::support::simple_invoice(&pair.conn, "10.00");
    inv["memo"] = json!(format!("ref {} and {}", k2.secret, a.secret));
    let created = a.create_invoice(inv).await;
    assert!(
        s(&created["memo"]).contains(&k2.secret),
        "the memo itself is stored as given"
    );
    // Broken JSON still must not leak the secret it carries.
    let broken = format!(
        "{{\"name\":\"x\",\"permissions\":[\"*\"],\"password\":\"{}\",",
        planted[3]
    );
    let r = a
        .send(
            Method::POST,
            "/api/v1/settings/api-keys",
            &[("content-type", "application/json")],
            Some(broken.into_bytes()),
        )
        .await;
    r.client_error();
    // A JSON body sent without a content type.
    let r = a
        .send(
            Method::POST,
            "/api/v1/settings/api-keys",
            &[],
            Some(
                serde_json::to_vec(&json!({ "name": "y", "permissions": [], "token": planted[4] }))
                    .unwrap(),
            ),
        )
        .await;
    assert_ne!(r.status, 200, "{}", r.text());
    // A secret-named query parameter.
    let r = a
        .get(&format!(
            "/api/v1/invoices?limit=1&access_token={}",
            planted[5]
        ))
        .await;
    assert!(r.status < 500, "{}", r.text());

    let (records, text) = every_stored_byte(a).await;
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "`{secret}` is stored in the API log"
        );
        // Nor its random part without the prefix.
        if let Some((_, rest)) = secret.split_once('_') {
            if rest.len() >= 16 {
                assert!(
                    !text.contains(rest),
                    "the random part of `{secret}` is stored in the API log"
                );
            }
        }
    }
    // The log is still useful: the refused body is there, redacted.
    let refused_rec = records
        .iter()
        .find(|r| {
            r["requestBody"]
                .as_str()
                .is_some_and(|b| b.contains("\"meta\""))
        })
        .expect("the refused request is logged");
    let body = parse_body(&refused_rec["requestBody"]).expect("a JSON body");
    assert_eq!(body["name"], "x");
    assert_eq!(body["password"], "[REDACTED]");
    assert_eq!(body["meta"]["apiToken"], "[REDACTED]");
    assert_eq!(body["meta"]["list"][0]["clientSecret"], "[REDACTED]");
    let created_rec = records
        .iter()
        .find(|r| r["path"] == "/api/v1/invoices" && r["method"] == "POST")
        .expect("the invoice creation is logged");
    let body = parse_body(&created_rec["responseBody"]).expect("a JSON response");
    assert_eq!(
        body["id"], created["id"],
        "the rest of the response is kept"
    );
}

/// A query string for a filter, with `to` bounding it to the calls under test.
struct Case {
    query: String,
    keep: Box<dyn Fn(&Value) -> bool>,
}

#[tokio::test]
async fn filters_paging_and_exports_agree_with_the_list() {
    let app = spawn_app().await;
    let a = app.create_org("Filters Ltd").await;
    let k1 = a.key_with(&["*"]).await;
    // A varied history: methods, statuses, paths and keys.
    let mut file_ids = Vec::new();
    for i in 0..4 {
        a.get("/api/v1/invoices?limit=1").await.ok();
        k1.get(&format!("/api/v1/storage/{}", uuid::Uuid::new_v4()))
            .await
            .err(404, "NOT_FOUND");
        let f = upload_raw(&a, &format!("f{i}.txt"), Some("text/plain"), b"abc")
            .await
            .ok();
        file_ids.push(s(&f["id"]));
        k1.post("/api/v1/invoices", json!({})).await.client_error();
        k1.get("/api/v1/settings/api-keys").await.ok();
    }
    for id in &file_ids[..2] {
        k1.delete(&format!("/api/v1/storage/{id}")).await.ok();
    }
    a.delete(&format!("/api/v1/storage/{}", file_ids[0]))
        .await
        .err(404, "NOT_FOUND");

    // The calls under test end where the first read of the log begins.
    all_logs(&a).await;
    let everything = all_logs(&a).await;
    let base = before_log_reads(&everything);
    assert_eq!(
        base.len(),
        4 * 5 + 2 + 1 + 1,
        "every call is logged (the key creation included)"
    );
    let first_read = &everything[base.len()];
    let to = s(&first_read["at"]);
    assert!(
        s(&base[base.len() - 1]["at"]) < to,
        "the reads start after the calls"
    );
    let to_q = format!("to={}", pct(&to));

    let at = |i: usize| s(&base[i]["at"]);
    let (from5, to10) = (at(5), at(10));
    let k1_id = k1.key_id.clone();
    let k1_id2 = k1.key_id.clone();
    let cases: Vec<Case> = vec![
        Case {
            query: String::new(),
            keep: Box::new(|_| true),
        },
        Case {
            query: "method=POST".into(),
            keep: Box::new(|r| r["method"] == "POST"),
        },
        Case {
            query: "method=DELETE".into(),
            keep: Box::new(|r| r["method"] == "DELETE"),
        },
        Case {
            query: "status=404".into(),
            keep: Box::new(|r| r["status"] == 404),
        },
        Case {
            query: "status=200".into(),
            keep: Box::new(|r| r["status"] == 200),
        },
        Case {
            query: "status=400".into(),
            keep: Box::new(|r| r["status"] == 400),
        },
        Case {
            query: "path=/api/v1/storage".into(),
            keep: Box::new(|r| s(&r["path"]).starts_with("/api/v1/storage")),
        },
        Case {
            query: "path=/api/v1/settings".into(),
            keep: Box::new(|r| s(&r["path"]).starts_with("/api/v1/settings")),
        },
        Case {
            query: format!("apiKeyId={}", k1.key_id),
            keep: Box::new(move |r| r["apiKeyId"] == k1_id.as_str()),
        },
        Case {
            query: format!("from={}", pct(&from5)),
            keep: Box::new(move |r| s(&r["at"]) >= from5),
        },
        Case {
            query: format!("method=GET&status=404&apiKeyId={}", k1.key_id),
            keep: Box::new(move |r| {
                r["method"] == "GET" && r["status"] == 404 && r["apiKeyId"] == k1_id2.as_str()
            }),
        },
        Case {
            query: "path=/api/v1/storage&method=POST".into(),
            keep: Box::new(|r| {
                r["method"] == "POST" && s(&r["path"]).starts_with("/api/v1/storage")
            }),
        },
    ];
    for case in &cases {
        let query = if case.query.is_empty() {
            to_q.clone()
        } else {
            format!("{}&{to_q}", case.query)
        };
        let expected: Vec<Value> = base.iter().filter(|r| (case.keep)(r)).cloned().collect();
        assert!(
            !expected.is_empty(),
            "{query}: the history covers this filter"
        );
        let listed = a
            .walk(&format!("/api/v1/settings/api-logs?{query}"), 200)
            .await;
        assert_eq!(listed, expected, "list ?{query}");
        for limit in [1, 3] {
            let paged = a
                .walk(&format!("/api/v1/settings/api-logs?{query}"), limit)
                .await;
            assert_eq!(paged, expected, "list ?{query} in pages of {limit}");
        }
        // JSON lines: the list's records exactly.
        let r = a
            .get(&format!(
                "/api/v1/settings/api-logs/export?format=jsonl&{query}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .contains("ndjson"),
            "{:?}",
            r.headers
        );
        let lines: Vec<Value> = r
            .text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines, expected, "export jsonl ?{query}");
        // CSV: a header, then one row per record with the same fields.
        let r = a
            .get(&format!(
                "/api/v1/settings/api-logs/export?format=csv&{query}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("text/csv"),
            "{:?}",
            r.headers
        );
        let mut reader = csv::Reader::from_reader(r.bytes.as_slice());
        let header: Vec<String> = reader
            .headers()
            .expect("a header row")
            .iter()
            .map(str::to_owned)
            .collect();
        let rows: Vec<csv::StringRecord> =
            reader.records().map(|x| x.expect("a CSV row")).collect();
        assert_eq!(rows.len(), expected.len(), "export csv ?{query}");
        for (row, rec) in rows.iter().zip(&expected) {
            for (col, cell) in header.iter().zip(row.iter()) {
                match &rec[col.as_str()] {
                    Value::Null => assert_eq!(
                        cell, "",
                        "export csv ?{query}: column {col} of {}",
                        rec["id"]
                    ),
                    Value::String(x) => assert_eq!(
                        cell, x,
                        "export csv ?{query}: column {col} of {}",
                        rec["id"]
                    ),
                    Value::Number(n) => {
                        let got: f64 = cell
                            .parse()
                            .unwrap_or_else(|_| panic!("column {col}: `{cell}` is not a number"));
                        let want = n.as_f64().expect("a number");
                        assert!(
                            (got - want).abs() < 1e-6,
                            "export csv ?{query}: column {col} of {}",
                            rec["id"]
                        );
                    }
                    other => panic!("column {col}: unexpected {other}"),
                }
            }
            assert!(
                header.iter().any(|c| c == "id") && header.iter().any(|c| c == "status"),
                "{header:?}"
            );
        }
    }
    // `to` is exclusive and bounds on the request's start.
    let upto = a
        .walk(&format!("/api/v1/settings/api-logs?to={}", pct(&to10)), 4)
        .await;
    assert_eq!(upto, base[..10].to_vec(), "to={to10}");

    // Bad parameters are refused, not ignored.
    a.get("/api/v1/settings/api-logs?status=abc")
        .await
        .err(400, "VALIDATION_ERROR");
    a.get("/api/v1/settings/api-logs?from=yesterday")
        .await
        .err(400, "VALIDATION_ERROR");
    a.get("/api/v1/settings/api-logs?limit=0")
        .await
        .err(400, "VALIDATION_ERROR");
    a.get("/api/v1/settings/api-logs?cursor=not-a-cursor!")
        .await
        .err(400, "VALIDATION_ERROR");
    a.get("/api/v1/settings/api-logs/export?format=xml")
        .await
        .err(400, "VALIDATION_ERROR");
    // Another organization's cursor walks nothing of ours.
    let b = app.create_org("Other Co").await;
    let page = a
        .get(&format!("/api/v1/settings/api-logs?limit=1&{to_q}"))
        .await
        .ok();
    let cursor = s(&page["nextCursor"]);
    let r = b
        .get(&format!("/api/v1/settings/api-logs?cursor={cursor}"))
        .await;
    assert!(
        r.status == 400 || r.ok()["data"].as_array().is_some_and(|d| d.is_empty()),
        "another organization's cursor: {} {}",
        r.status,
        r.text()
    );
}

#[tokio::test]
async fn admin_calls_are_not_logged_and_logs_stay_within_their_organization() {
    let app = spawn_app().await;
    let a = app.create_org("Private Ltd").await;
    let b = app.create_org("Nosy Co").await;
    // Operator calls, one of them even carrying A's credentials.
    app.deposit(&a, "USD", "100.00").await;
    let r = app
        .admin
        .send(
            Method::GET,
            "/api/v1/admin/events?after=0&limit=10",
            &[("x-api-key", &a.key_id), ("x-api-secret", &a.secret)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .admin
        .send_json(
            Method::POST,
            &format!("/api/v1/admin/organizations/{}/deposits", a.id),
            &json!({ "requestId": rid(), "currency": "USD", "amount": "1.00", "reference": "r" }),
        )
        .await;
    r.ok();
    a.get("/api/v1/invoices").await.ok();
    b.get("/api/v1/connections").await.ok();

    let ours = before_log_reads(&all_logs(&a).await);
    assert_eq!(ours.len(), 1, "only A's own call: {ours:#?}");
    assert_eq!(ours[0]["path"], "/api/v1/invoices");
    let all_a = all_logs(&a).await;
    assert!(
        all_a
            .iter()
            .all(|r| !s(&r["path"]).starts_with("/api/v1/admin")),
        "no admin call is logged: {all_a:#?}"
    );
    let export = a.get("/api/v1/settings/api-logs/export?format=jsonl").await;
    assert!(
        !export.text().contains("/api/v1/admin"),
        "{}",
        export.text()
    );

    // B cannot see A's records, by id, list, filter or export.
    let theirs = all_logs(&b).await;
    let a_ids: Vec<String> = all_a.iter().map(|r| s(&r["id"])).collect();
    assert!(
        theirs.iter().all(|r| !a_ids.contains(&s(&r["id"]))),
        "B lists A's records"
    );
    for id in &a_ids {
        b.get(&format!("/api/v1/settings/api-logs/{id}"))
            .await
            .err(404, "NOT_FOUND");
        a.get(&format!("/api/v1/settings/api-logs/{id}")).await.ok();
    }
    let b_ids: Vec<String> = theirs.iter().map(|r| s(&r["id"])).collect();
    a.get(&format!("/api/v1/settings/api-logs/{}", b_ids[0]))
        .await
        .err(404, "NOT_FOUND");
    b.get("/api/v1/settings/api-logs/not-a-uuid")
        .await
        .err(404, "NOT_FOUND");
    b.get(&format!(
        "/api/v1/settings/api-logs/{}",
        uuid::Uuid::new_v4()
    ))
    .await
    .err(404, "NOT_FOUND");
    let filtered = b
        .walk(
            &format!("/api/v1/settings/api-logs?apiKeyId={}", a.key_id),
            50,
        )
        .await;
    assert!(filtered.is_empty(), "{filtered:#?}");
    // (B's own records name A's ids in their paths: compare record ids.)
    let export = b.get("/api/v1/settings/api-logs/export?format=jsonl").await;
    assert_eq!(export.status, 200, "{}", export.text());
    for line in export.text().lines().filter(|l| !l.trim().is_empty()) {
        let rec: Value = serde_json::from_str(line).expect("a JSON line");
        assert!(
            !a_ids.contains(&s(&rec["id"])),
            "B's export holds A's record {rec}"
        );
        assert_ne!(
            rec["apiKeyId"],
            a.key_id.as_str(),
            "B's export holds A's record {rec}"
        );
    }
    // Reading the log needs settings:read.
    let limited = a.key_with(&["invoices:read"]).await;
    limited
        .get("/api/v1/settings/api-logs")
        .await
        .err(403, "FORBIDDEN");
    limited
        .get(&format!("/api/v1/settings/api-logs/{}", a_ids[0]))
        .await
        .err(403, "FORBIDDEN");
    limited
        .get("/api/v1/settings/api-logs/export")
        .await
        .err(403, "FORBIDDEN");
}

/// Moves the server's test clock.
async fn advance(app: &crate::support::TestApp, seconds: i64) {
    app.admin
        .send_json(
            Method::POST,
            "/api/v1/admin/clock",
            &json!({ "advanceSeconds": seconds }),
        )
        .await
        .ok();
}

#[tokio::test]
async fn records_older_than_the_retention_are_pruned() {
    let app = spawn_app_with(&[
        ("EXPEREON_TEST_CLOCK", "true"),
        ("EXPEREON_API_LOG_RETENTION", "1h"),
    ])
    .await;
    let a = app.create_org("Retention Ltd").await;
    for _ in 0..3 {
        a.get("/api/v1/invoices").await.ok();
    }
    let old = all_logs(&a).await;
    assert_eq!(old.len(), 3, "{old:#?}");

    // 30 minutes on: a newer call; 45 more: the old ones are 75 minutes old,
    // the newer one 45.
    advance(&app, 30 * 60).await;
    a.get("/api/v1/connections").await.ok();
    advance(&app, 45 * 60).await;
    a.get("/api/v1/storage").await.ok();
    let now = all_logs(&a).await;
    let paths: Vec<String> = now.iter().map(|r| s(&r["path"])).collect();
    for r in &old {
        assert!(
            !now.contains(r),
            "a record past the 1h retention is still listed: {r}"
        );
        a.get(&format!("/api/v1/settings/api-logs/{}", s(&r["id"])))
            .await
            .err(404, "NOT_FOUND");
    }
    assert!(
        paths.contains(&"/api/v1/connections".to_owned()),
        "a 45-minute-old record is kept: {paths:?}"
    );
    assert!(paths.contains(&"/api/v1/storage".to_owned()), "{paths:?}");
    let export = a.get("/api/v1/settings/api-logs/export?format=jsonl").await;
    let exported: Vec<String> = export
        .text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| s(&serde_json::from_str::<Value>(l).expect("a JSON line")["id"]))
        .collect();
    for r in &old {
        assert!(
            !exported.contains(&s(&r["id"])),
            "pruned record {} exported",
            r["id"]
        );
    }

    // 20 minutes more: the connections call is now 65 minutes old.
    advance(&app, 20 * 60).await;
    a.get("/api/v1/payments").await.ok();
    let later = all_logs(&a).await;
    let paths: Vec<String> = later.iter().map(|r| s(&r["path"])).collect();
    assert!(
        !paths.contains(&"/api/v1/connections".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/api/v1/storage".to_owned()),
        "a 20-minute-old record is kept: {paths:?}"
    );
    assert!(paths.contains(&"/api/v1/payments".to_owned()), "{paths:?}");
}

/// The API log is no way around a route's 403: a key with `settings:read`
/// alone sees that treasury and invoice calls were made, but their bodies
/// only as a note naming the permission they need, in the list, by id and in
/// exports; a key that may read them sees them.
#[tokio::test]
async fn bodies_are_shown_only_to_keys_that_may_read_them_directly() {
    let app = spawn_app().await;
    let org = app.create_org("Guarded Logs Ltd").await;
    app.deposit(&org, "USD", "12.34").await;
    org.get("/api/v1/treasury/me/balances").await.ok();
    org.get("/api/v1/invoices?limit=5").await.ok();
    let auditor = org.key_with(&["settings:read"]).await;
    auditor
        .get("/api/v1/treasury/me/balances")
        .await
        .err(403, "FORBIDDEN");
    let logs = all_logs(&auditor).await;
    let treasury: Vec<&Value> = logs
        .iter()
        .filter(|r| r["path"] == "/api/v1/treasury/me/balances" && r["status"] == 200)
        .collect();
    assert_eq!(treasury.len(), 1, "{logs:?}");
    assert_eq!(
        treasury[0]["responseBody"],
        "[withheld: needs treasury:read]"
    );
    let invoices = logs
        .iter()
        .find(|r| r["path"] == "/api/v1/invoices")
        .expect("the invoice list call");
    assert_eq!(invoices["responseBody"], "[withheld: needs invoices:read]");
    // Its own kind of call it reads whole.
    let key_calls = logs
        .iter()
        .find(|r| r["path"] == "/api/v1/settings/api-keys" && r["method"] == "POST")
        .expect("the key creation");
    assert!(
        key_calls["responseBody"]
            .as_str()
            .is_some_and(|b| b.contains("settings:read")),
        "{key_calls}"
    );
    let one = auditor
        .get(&format!(
            "/api/v1/settings/api-logs/{}",
            s(&treasury[0]["id"])
        ))
        .await
        .ok();
    assert_eq!(one["responseBody"], "[withheld: needs treasury:read]");
    let export = auditor
        .get("/api/v1/settings/api-logs/export?format=jsonl")
        .await;
    assert_eq!(export.status, 200);
    assert!(!export.text().contains("12.34"), "{}", export.text());
    // The organization's full key reads the same record whole.
    let whole = org
        .get(&format!(
            "/api/v1/settings/api-logs/{}",
            s(&treasury[0]["id"])
        ))
        .await
        .ok();
    assert!(
        whole["responseBody"]
            .as_str()
            .is_some_and(|b| b.contains("12.34")),
        "{whole}"
    );
}
