//! `X-Request-Id` on every response, generated or echoed; `/metrics` in the
//! Prometheus text format.

use crate::support::*;
use reqwest::Method;
use serde_json::json;
use std::collections::{HashMap, HashSet};

#[tokio::test]
async fn every_response_carries_a_request_id_echoed_when_sent() {
    let app = spawn_app().await;
    let pair = app.trading_pair("10.00").await;
    let inv = pair.submitted("1.00").await;
    let id = s(&inv["id"]);
    let replay = json!({ "requestId": rid(), "memo": "m" });
    let draft = s(&pair.draft("1.00").await["id"]);
    pair.seller
        .patch(&format!("/api/v1/invoices/{draft}"), replay.clone())
        .await
        .ok();
    let huge = vec![b' '; 1024 * 1024 + 1024];

    /// Client, method, path, body, expected status.
    type Probe<'a> = (&'a Api, Method, String, Option<Vec<u8>>, u16);
    let requests: Vec<Probe> = vec![
        (&app.anon, Method::GET, "/healthz".into(), None, 200),
        (&app.anon, Method::GET, "/metrics".into(), None, 200),
        (
            &app.anon,
            Method::GET,
            "/api/v1/openapi.json".into(),
            None,
            200,
        ),
        (
            &pair.seller.api,
            Method::GET,
            "/api/v1/invoices".into(),
            None,
            200,
        ),
        (
            &pair.seller.api,
            Method::GET,
            format!("/api/v1/invoices/{id}"),
            None,
            200,
        ),
        (&app.anon, Method::GET, "/api/v1/invoices".into(), None, 401),
        (
            &pair.seller.api,
            Method::GET,
            "/api/v1/no-such-route".into(),
            None,
            404,
        ),
        (
            &pair.seller.api,
            Method::DELETE,
            "/api/v1/invoices".into(),
            None,
            405,
        ),
        (
            &pair.seller.api,
            Method::GET,
            format!("/api/v1/invoices/{}", uuid::Uuid::new_v4()),
            None,
            404,
        ),
        (
            &pair.seller.api,
            Method::POST,
            format!("/api/v1/invoices/{id}/approve"),
            Some(b"{}".to_vec()),
            403,
        ),
        (
            &pair.seller.api,
            Method::POST,
            format!("/api/v1/invoices/{id}/submit"),
            Some(b"{}".to_vec()),
            400,
        ),
        (
            &pair.seller.api,
            Method::POST,
            "/api/v1/invoices".into(),
            Some(b"{".to_vec()),
            400,
        ),
        (
            &pair.seller.api,
            Method::POST,
            "/api/v1/invoices".into(),
            Some(huge),
            413,
        ),
        (
            &pair.seller.api,
            Method::PATCH,
            format!("/api/v1/invoices/{draft}"),
            Some(serde_json::to_vec(&replay).unwrap()),
            200,
        ),
        (
            &pair.seller.api,
            Method::PATCH,
            format!("/api/v1/invoices/{draft}"),
            Some(
                serde_json::to_vec(&json!({ "requestId": replay["requestId"], "memo": "other" }))
                    .unwrap(),
            ),
            409,
        ),
        (
            &app.admin,
            Method::GET,
            "/api/v1/admin/events?after=0".into(),
            None,
            200,
        ),
        (
            &app.admin,
            Method::POST,
            "/api/v1/admin/organizations".into(),
            Some(br#"{"name":"Traced"}"#.to_vec()),
            200,
        ),
    ];
    let mut generated = HashSet::new();
    for (i, (client, method, path, body, status)) in requests.iter().enumerate() {
        let headers = [("content-type", "application/json")];
        let r = client
            .send(method.clone(), path, &headers, body.clone())
            .await;
        assert_eq!(r.status, *status, "{method} {path}: {}", r.text());
        if r.status >= 400 {
            r.client_error();
        }
        let generated_id = r.header("x-request-id").unwrap_or_default();
        assert!(
            !generated_id.trim().is_empty(),
            "{method} {path}: no X-Request-Id"
        );
        assert!(
            generated.insert(generated_id.clone()),
            "{method} {path}: request id {generated_id} reused"
        );

        let mine = format!("trace-{i}-{}", uuid::Uuid::new_v4());
        let headers = [
            ("content-type", "application/json"),
            ("x-request-id", mine.as_str()),
        ];
        let r = client
            .send(method.clone(), path, &headers, body.clone())
            .await;
        assert_eq!(
            r.header("x-request-id").as_deref(),
            Some(mine.as_str()),
            "{method} {path}: not echoed"
        );
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = spawn_app().await;
    let org = app.create_org("A").await;
    org.get("/api/v1/invoices").await.ok();
    app.anon
        .get("/api/v1/invoices")
        .await
        .err(401, "UNAUTHORIZED");
    let r = app.anon.get("/metrics").await;
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    let text = r.text();

    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "bad metric name: {line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type: {line}"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                (Some("HELP"), Some(name), _) => {
                    assert!(valid_name(name), "bad metric name: {line}")
                }
                _ => {}
            }
            continue;
        }
        assert!(
            !line.starts_with('#') || line.starts_with("# "),
            "bad comment: {line}"
        );
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                for pair in split_labels(labels) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(valid_name(k), "bad label name: {line}");
                    assert!(
                        v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                        "bad label value: {line}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "bad metric name: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|f| {
                    types
                        .get(*f)
                        .is_some_and(|t| t == "histogram" || t == "summary")
                })
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        samples += 1;
    }
    assert!(samples > 0, "no samples:\n{text}");

    // The group commits' durations: creating the organization wrote, so at
    // least one, and the buckets count up to the total.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let syncs = value("expereon_log_sync_seconds_count");
    assert!(syncs >= 1.0, "{syncs} syncs");
    assert_eq!(
        value("expereon_log_sync_seconds_bucket{le=\"+Inf\"}"),
        syncs
    );
    assert!(value("expereon_log_sync_seconds_sum") > 0.0);
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("expereon_log_sync_seconds_bucket"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(buckets.len(), 11);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

/// Splits `a="x",b="y,z"` at the commas between labels.
fn split_labels(labels: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in labels.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A request id the server will not carry (too long, blank, or with
/// characters a log line should not hold) is replaced by a fresh one, in the
/// response and in the API log alike; one it can carry is kept in both.
#[tokio::test]
async fn unusable_request_ids_are_replaced_and_usable_ones_kept() {
    let app = spawn_app().await;
    let org = app.create_org("Ids").await;
    let long = "x".repeat(129);
    let longest = "y".repeat(128);
    for (sent, kept) in [
        (long.as_str(), false),
        ("has space", false),
        ("tab\there", false),
        (longest.as_str(), true),
        ("ok-Id_1.2:3", true),
    ] {
        let r = org
            .send(
                reqwest::Method::GET,
                "/api/v1/connections",
                &[("x-request-id", sent)],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        let echoed = r.header("x-request-id").unwrap_or_default();
        if kept {
            assert_eq!(echoed, sent);
        } else {
            assert!(
                uuid::Uuid::parse_str(&echoed).is_ok(),
                "{sent:?} → {echoed:?}"
            );
        }
        let logged = org
            .get("/api/v1/settings/api-logs?path=/api/v1/connections&limit=200")
            .await
            .ok();
        let ids: Vec<&str> = logged["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["requestId"].as_str())
            .collect();
        assert!(ids.contains(&echoed.as_str()), "{sent:?}: {ids:?}");
    }
}
