//! Credentials and permissions: 401 for missing, wrong, revoked and expired
//! credentials; 403 for each missing permission; operator routes behind the
//! admin token and absent without one.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const ALL_PERMISSIONS: [&str; 12] = [
    "invoices:read",
    "invoices:write",
    "invoices:approve",
    "payments:read",
    "payments:write",
    "treasury:read",
    "treasury:write",
    "treasury:approve",
    "settings:read",
    "settings:write",
    "storage:read",
    "storage:write",
];

fn all_but(permission: &str) -> Vec<&'static str> {
    ALL_PERMISSIONS
        .iter()
        .copied()
        .filter(|p| *p != permission)
        .collect()
}

struct Case {
    /// Whose call: the seller's or the buyer's side.
    buyer_side: bool,
    method: Method,
    path: String,
    body: Option<Value>,
    permission: &'static str,
}

fn case(
    buyer_side: bool,
    method: Method,
    path: String,
    body: Option<Value>,
    permission: &'static str,
) -> Case {
    Case {
        buyer_side,
        method,
        path,
        body,
        permission,
    }
}

async fn call(org: &Org, c: &Case) -> Resp {
    match &c.body {
        Some(b) => {
            let mut b = b.clone();
            b["requestId"] = json!(rid());
            org.send_json(c.method.clone(), &c.path, &b).await
        }
        None if c.method == Method::GET => org.get(&c.path).await,
        None => org.bodiless(c.method.clone(), &c.path, &rid()).await,
    }
}

/// For each route: a key with every permission but the one it needs gets 403
/// and changes nothing; a key with only that permission gets through.
#[tokio::test]
async fn each_missing_permission_is_forbidden() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let inv = |v: Value| s(&v["id"]);
    let draft = inv(pair.draft("10.00").await);
    let draft2 = inv(pair.draft("10.00").await);
    let draft3 = inv(pair.draft("10.00").await);
    let info = inv(pair.submitted("10.00").await);
    pair.buyer
        .act(&info, "request-info", json!({ "question": "?" }))
        .await
        .ok();
    let to_approve = inv(pair.submitted("10.00").await);
    let to_dispute = inv(pair.submitted("10.00").await);
    let to_question = inv(pair.submitted("10.00").await);
    let to_bulk = inv(pair.submitted("10.00").await);
    let to_settle = inv(pair.approved("10.00").await);
    let iv = |id: &str, action: &str| format!("/api/v1/invoices/{id}/{action}");
    let cases = vec![
        case(
            false,
            Method::GET,
            "/api/v1/invoices".into(),
            None,
            "invoices:read",
        ),
        case(
            false,
            Method::GET,
            format!("/api/v1/invoices/{draft}"),
            None,
            "invoices:read",
        ),
        case(
            false,
            Method::GET,
            iv(&draft, "history"),
            None,
            "invoices:read",
        ),
        case(
            false,
            Method::POST,
            "/api/v1/invoices".into(),
            Some(simple_invoice(&pair.conn, "5.00")),
            "invoices:write",
        ),
        case(
            false,
            Method::PATCH,
            format!("/api/v1/invoices/{draft}"),
            Some(json!({ "memo": "m" })),
            "invoices:write",
        ),
        case(
            false,
            Method::POST,
            iv(&draft2, "line-items"),
            Some(line("Extra", "1", "1.00", None)),
            "invoices:write",
        ),
        case(
            false,
            Method::POST,
            iv(&draft3, "submit"),
            None,
            "invoices:write",
        ),
        case(
            false,
            Method::POST,
            iv(&info, "respond-info"),
            Some(json!({ "message": "PO-1" })),
            "invoices:write",
        ),
        case(
            true,
            Method::POST,
            iv(&to_approve, "approve"),
            Some(json!({})),
            "invoices:approve",
        ),
        case(
            true,
            Method::POST,
            iv(&to_dispute, "dispute"),
            Some(json!({ "reason": "no" })),
            "invoices:approve",
        ),
        case(
            true,
            Method::POST,
            iv(&to_question, "request-info"),
            Some(json!({ "question": "?" })),
            "invoices:approve",
        ),
        case(
            true,
            Method::POST,
            "/api/v1/invoices/bulk-approve".into(),
            Some(json!({ "invoiceIds": [to_bulk] })),
            "invoices:approve",
        ),
        case(
            true,
            Method::POST,
            "/api/v1/payments/settle".into(),
            Some(json!({ "invoiceId": to_settle })),
            "payments:write",
        ),
        case(
            true,
            Method::GET,
            "/api/v1/payments".into(),
            None,
            "payments:read",
        ),
        case(
            true,
            Method::GET,
            "/api/v1/treasury/me/balances".into(),
            None,
            "treasury:read",
        ),
        case(
            true,
            Method::GET,
            "/api/v1/treasury/me/transactions".into(),
            None,
            "treasury:read",
        ),
        case(
            true,
            Method::POST,
            format!("/api/v1/treasury/{}/withdrawals", pair.buyer.id),
            Some(
                json!({ "currency": "USD", "amount": "1.00", "destination": { "iban": "DE89370400440532013000" } }),
            ),
            "treasury:write",
        ),
        case(
            true,
            Method::GET,
            "/api/v1/settings/api-keys".into(),
            None,
            "settings:read",
        ),
        case(
            true,
            Method::POST,
            "/api/v1/settings/api-keys".into(),
            Some(json!({ "name": "k", "permissions": ["settings:write"] })),
            "settings:write",
        ),
    ];
    for c in &cases {
        let owner = if c.buyer_side {
            &pair.buyer
        } else {
            &pair.seller
        };
        let what = format!("{} {} without {}", c.method, c.path, c.permission);
        let before = app.log_state().await;
        let lacking = owner.key_with(&all_but(c.permission)).await;
        let after_key = app.log_state().await;
        assert!(after_key.0 > before.0);
        let r = call(&lacking, c).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        r.err(403, "FORBIDDEN");
        assert_eq!(
            app.log_state().await,
            after_key,
            "{what}: a forbidden call wrote to the log"
        );

        let only = owner.key_with(&[c.permission]).await;
        let r = call(&only, c).await;
        assert_eq!(
            r.status,
            200,
            "{} {} with only {}: {}",
            c.method,
            c.path,
            c.permission,
            r.text()
        );
    }

    // Actions open to both parties still need an invoice permission.
    let read_only = pair.seller.key_with(&["invoices:read"]).await;
    read_only
        .act(&draft, "cancel", json!({ "reason": "r" }))
        .await
        .err(403, "FORBIDDEN");
    pair.seller.invoice(&draft).await.ok()["status"]
        .as_str()
        .filter(|s| *s == "DRAFT")
        .expect("still a draft");
}

/// A call whose body (when it may have one) is not even JSON.
async fn not_json(org: &Org, method: &Method, path: &str) -> Resp {
    let body = (*method != Method::GET).then(|| b"{not json".to_vec());
    org.send(
        method.clone(),
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// Every operation of the served document that names permissions: a key
/// holding all the others gets `403 FORBIDDEN` before anything of the request
/// is looked at (a body that is not even JSON, ids that exist nowhere), and a
/// key holding the named ones is not refused for want of a permission. The
/// router checks what the document says, for routes no hand-written case
/// lists.
#[tokio::test]
async fn every_operation_checks_the_permission_it_documents() {
    let app = spawn_app().await;
    let org = app.create_org("P").await;
    let doc = app.anon.get("/api/v1/openapi.json").await.ok();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(names) = op["x-permissions"].as_array() else {
                continue;
            };
            let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
            let path = path
                .split('/')
                .map(|s| match s {
                    "{orgId}" => "me".to_owned(),
                    s if s.starts_with('{') => uuid::Uuid::now_v7().to_string(),
                    s => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let what = format!("{method} {path} needs {names:?}");
            let others: Vec<&str> = ALL_PERMISSIONS
                .iter()
                .copied()
                .filter(|p| !names.contains(p))
                .collect();
            let before = app.log_state().await;
            let lacking = org.key_with(&others).await;
            let after_key = app.log_state().await;
            let r = not_json(&lacking, &method, &path).await;
            r.err(403, "FORBIDDEN");
            assert!(
                names.iter().all(|n| r.text().contains(n)),
                "{what}: the refusal names the permission: {}",
                r.text()
            );
            assert!(after_key.0 > before.0);
            assert_eq!(app.log_state().await, after_key, "{what}: wrote to the log");

            let holder = org.key_with(&names).await;
            let r = not_json(&holder, &method, &path).await;
            assert_ne!(r.status, 403, "{what}: refused with it: {}", r.text());
            assert_ne!(r.status, 401, "{what}: {}", r.text());
            checked += 1;
        }
    }
    assert!(checked > 70, "{checked} operations checked");
}

#[tokio::test]
async fn missing_wrong_and_mixed_credentials_are_401() {
    let app = spawn_app().await;
    let a = app.create_org("A").await;
    let b = app.create_org("B").await;
    let path = "/api/v1/invoices";
    a.get(path).await.ok();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no credentials", vec![]),
        ("key without secret", vec![("x-api-key", &a.key_id)]),
        ("secret without key", vec![("x-api-secret", &a.secret)]),
        (
            "wrong secret",
            vec![
                ("x-api-key", &a.key_id),
                ("x-api-secret", "es_not-the-secret"),
            ],
        ),
        (
            "unknown key",
            vec![
                ("x-api-key", "ek_00000000000000000000000000000000"),
                ("x-api-secret", &a.secret),
            ],
        ),
        (
            "garbage key",
            vec![("x-api-key", "not a key"), ("x-api-secret", &a.secret)],
        ),
        (
            "another key's secret",
            vec![("x-api-key", &a.key_id), ("x-api-secret", &b.secret)],
        ),
        ("admin token instead", vec![("x-admin-token", ADMIN_TOKEN)]),
    ];
    for (what, headers) in cases {
        let client = app.anon.with_credentials(&headers);
        let r = client.get(path).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        r.err(401, "UNAUTHORIZED");
        let r = client.post(path, json!({})).await;
        assert_eq!(r.status, 401, "{what} (POST): {}", r.text());
        r.err(401, "UNAUTHORIZED");
    }
    // The operator token is checked too.
    for token in [None, Some("wrong-token"), Some("")] {
        let client = match token {
            Some(t) => app.anon.with_credentials(&[("x-admin-token", t)]),
            None => app.anon.clone(),
        };
        let r = client
            .post("/api/v1/admin/organizations", json!({ "name": "X" }))
            .await;
        assert_eq!(r.status, 401, "admin token {token:?}: {}", r.text());
        r.err(401, "UNAUTHORIZED");
        client
            .get("/api/v1/admin/events?after=0")
            .await
            .err(401, "UNAUTHORIZED");
    }
    // An organization's key is no operator credential.
    a.post("/api/v1/admin/organizations", json!({ "name": "X" }))
        .await
        .err(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_and_secrets_are_shown_only_once() {
    let app = spawn_app().await;
    let org = app.create_org("A").await;
    let created = org
        .post(
            "/api/v1/settings/api-keys",
            json!({ "name": "ci", "permissions": ["invoices:read", "settings:read"] }),
        )
        .await
        .ok();
    assert_eq!(created["name"], "ci");
    assert_eq!(
        created["permissions"],
        json!(["invoices:read", "settings:read"])
    );
    assert!(created["createdAt"].is_string());
    assert!(created.get("expiresAt").is_some());
    let key = org.with_key(&s(&created["id"]), &s(&created["secret"]));
    key.get("/api/v1/invoices").await.ok();

    let listed = org.get("/api/v1/settings/api-keys").await.ok();
    let items = listed["data"].as_array().expect("data");
    assert_eq!(items.len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains(&key.secret)
            && items.iter().all(|k| k.get("secret").is_none()),
        "a secret is shown again: {listed}"
    );

    // Revoking another organization's key is not possible, nor visible.
    let other = app.create_org("B").await;
    other
        .delete(&format!("/api/v1/settings/api-keys/{}", key.key_id))
        .await
        .err(404, "NOT_FOUND");
    key.get("/api/v1/invoices").await.ok();

    org.delete(&format!("/api/v1/settings/api-keys/{}", key.key_id))
        .await
        .ok();
    let r = key.get("/api/v1/invoices").await;
    r.err(401, "UNAUTHORIZED");
    key.get("/api/v1/settings/api-keys")
        .await
        .err(401, "UNAUTHORIZED");
    // The organization's other key is untouched.
    org.get("/api/v1/invoices").await.ok();
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let org = app.create_org("A").await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(4);
    let created = org
        .post(
            "/api/v1/settings/api-keys",
            json!({
                "name": "short-lived",
                "permissions": ["invoices:read"],
                "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        )
        .await
        .ok();
    let key = org.with_key(&s(&created["id"]), &s(&created["secret"]));
    key.get("/api/v1/invoices").await.ok();
    // The only sleep of the suite: waiting for a wall-clock expiry.
    let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(500)).await;
    key.get("/api/v1/invoices").await.err(401, "UNAUTHORIZED");
    org.get("/api/v1/invoices").await.ok();
}

#[tokio::test]
async fn admin_routes_are_absent_without_a_configured_token() {
    let app = spawn_app_without_admin().await;
    for token in [None, Some("anything"), Some("")] {
        let client = match token {
            Some(t) => app.anon.with_credentials(&[("x-admin-token", t)]),
            None => app.anon.clone(),
        };
        let r = client
            .post("/api/v1/admin/organizations", json!({ "name": "X" }))
            .await;
        assert_eq!(r.status, 404, "{token:?}: {}", r.text());
        r.err(404, "NOT_FOUND");
        client
            .get("/api/v1/admin/events?after=0")
            .await
            .err(404, "NOT_FOUND");
    }
    assert_eq!(app.log_seq().await, 0);
}

/// The admin token moves every organization's money: a server refuses to
/// start with one shorter than 32 characters, and says why.
#[test]
fn a_short_admin_token_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_expereon-under-test"))
        .arg("serve")
        .env("EXPEREON_ADMIN_TOKEN", "x".repeat(31))
        .env("EXPEREON_DATA_DIR", dir.path())
        .env("EXPEREON_LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .expect("running the server");
    assert!(!out.status.success(), "started with a 31-character token");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("EXPEREON_ADMIN_TOKEN has 31 characters; it must have at least 32"),
        "{said}"
    );
}

/// Guessing the admin token: after 10 failures an address is answered 429
/// with `Retry-After` before its token is even compared (the right one
/// included); another address is not held back.
#[tokio::test]
async fn failed_admin_tokens_are_throttled_per_address() {
    let app = spawn_app().await;
    let wrong = app.anon.with_credentials(&[("x-admin-token", "wrong")]);
    for i in 0..10 {
        let r = wrong.get("/api/v1/admin/events?after=0&limit=1").await;
        assert_eq!(r.status, 401, "try {i}: {}", r.text());
    }
    let r = wrong.get("/api/v1/admin/events?after=0&limit=1").await;
    r.err(429, "RATE_LIMITED");
    let wait: u64 = r
        .header("retry-after")
        .and_then(|h| h.parse().ok())
        .expect("Retry-After");
    assert!((1..=6).contains(&wait), "{wait}");
    app.admin
        .get("/api/v1/admin/events?after=0&limit=1")
        .await
        .err(429, "RATE_LIMITED");
    // The operator at another address (127.0.0.2 is loopback too) is served.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let r = elsewhere
        .get(format!("{}/api/v1/admin/events?after=0&limit=1", app.base))
        .header("x-admin-token", ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}
