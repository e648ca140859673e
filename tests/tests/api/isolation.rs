//! Organizations never see each other's resources: every id-taking route
//! answers another organization's id exactly as it answers an id that never
//! existed (404 NOT_FOUND, same body), and a draft is the seller's alone.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn unknown() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn call(org: &Org, method: &Method, path: &str, body: &Option<Value>) -> Resp {
    match body {
        Some(b) => {
            let mut b = b.clone();
            b["requestId"] = json!(rid());
            org.send_json(method.clone(), path, &b).await
        }
        None if *method == Method::GET => org.get(path).await,
        None => org.bodiless(method.clone(), path, &rid()).await,
    }
}

/// `make(id)` builds the request; someone else's id and a never-issued id must
/// get the same 404 with the same body.
async fn same_as_unknown(
    org: &Org,
    method: Method,
    theirs: &str,
    never: &str,
    make: impl Fn(&str) -> (String, Option<Value>),
) {
    let (path, body) = make(theirs);
    let r = call(org, &method, &path, &body).await;
    assert_eq!(
        r.status,
        404,
        "{method} {path}: someone else's id: {}",
        r.text()
    );
    r.err(404, "NOT_FOUND");
    let (unknown_path, unknown_body) = make(never);
    let u = call(org, &method, &unknown_path, &unknown_body).await;
    assert_eq!(
        u.status,
        404,
        "{method} {unknown_path}: unknown id: {}",
        u.text()
    );
    assert_eq!(
        r.text(),
        u.text(),
        "{method} {path}: the answer for someone else's id differs from an unknown id's"
    );
    assert!(
        !r.text().contains(theirs),
        "{method} {path}: the id is echoed back"
    );
}

const INVOICE_ACTIONS: [(&str, &str); 12] = [
    ("submit", "{}"),
    ("respond-info", r#"{"message":"m"}"#),
    ("approve", "{}"),
    ("dispute", r#"{"reason":"r"}"#),
    ("request-info", r#"{"question":"q"}"#),
    ("cancel", r#"{"reason":"r"}"#),
    ("request-cancellation", r#"{"reason":"r"}"#),
    ("accept-cancellation", "{}"),
    ("reject-cancellation", "{}"),
    ("settle", "{}"),
    ("archive", "{}"),
    ("restore", "{}"),
];

/// Every route about one invoice, as `viewer` calls it.
async fn invoice_routes_hide(viewer: &Org, invoice: &str, line_item: &str) {
    let never = unknown();
    let m = Method::GET;
    same_as_unknown(viewer, m.clone(), invoice, &never, |id| {
        (format!("/api/v1/invoices/{id}"), None)
    })
    .await;
    same_as_unknown(viewer, m, invoice, &never, |id| {
        (format!("/api/v1/invoices/{id}/history"), None)
    })
    .await;
    same_as_unknown(viewer, Method::PATCH, invoice, &never, |id| {
        (
            format!("/api/v1/invoices/{id}"),
            Some(json!({ "memo": "x" })),
        )
    })
    .await;
    for (action, body) in INVOICE_ACTIONS {
        let body: Value = serde_json::from_str(body).unwrap();
        same_as_unknown(viewer, Method::POST, invoice, &never, |id| {
            (
                format!("/api/v1/invoices/{id}/{action}"),
                Some(body.clone()),
            )
        })
        .await;
    }
    same_as_unknown(viewer, Method::POST, invoice, &never, |id| {
        (
            format!("/api/v1/invoices/{id}/line-items"),
            Some(line("x", "1", "1.00", None)),
        )
    })
    .await;
    for method in [Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({ "description": "x" }));
        same_as_unknown(viewer, method, invoice, &never, |id| {
            (
                format!("/api/v1/invoices/{id}/line-items/{line_item}"),
                body.clone(),
            )
        })
        .await;
    }
    same_as_unknown(viewer, Method::POST, invoice, &never, |id| {
        (
            "/api/v1/payments/settle".into(),
            Some(json!({ "invoiceId": id })),
        )
    })
    .await;
    // Bulk calls answer per invoice, and say no more than for an unknown id.
    for name in ["approve", "cancel", "archive", "restore"] {
        for suffix in ["/preview", ""] {
            let path = format!("/api/v1/invoices/bulk-{name}{suffix}");
            let theirs = viewer
                .post(&path, json!({ "invoiceIds": [invoice] }))
                .await
                .ok();
            let never_r = viewer
                .post(&path, json!({ "invoiceIds": [never] }))
                .await
                .ok();
            let (a, b) = (&theirs["results"][0], &never_r["results"][0]);
            assert_eq!(a["id"], invoice, "{path}: {theirs}");
            assert_eq!(a["ok"], false, "{path}: {theirs}");
            assert_eq!(a["error"]["code"], "NOT_FOUND", "{path}: {theirs}");
            assert_eq!(
                a["error"], b["error"],
                "{path}: differs from an unknown id's"
            );
        }
    }
}

#[tokio::test]
async fn another_organizations_ids_are_not_found_on_every_route() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let outsider = app.create_org("Outsider").await;
    app.deposit(&outsider, "USD", "10.00").await;

    let draft = pair.draft("10.00").await;
    let submitted = pair.submitted("20.00").await;
    let settled = pair.approved("30.00").await;
    let settled_id = s(&settled["id"]);
    assert_eq!(
        buyer.act(&settled_id, "settle", json!({})).await.status,
        200
    );
    let settled = seller.invoice(&settled_id).await.ok();
    let payment_id = s(&settled["paymentId"]);
    let seller_tx = seller
        .walk("/api/v1/treasury/me/transactions?type=SETTLEMENT_IN", 50)
        .await;
    let seller_tx = s(&seller_tx[0]["id"]);
    let buyer_deposit = buyer
        .walk("/api/v1/treasury/me/transactions?type=DEPOSIT", 50)
        .await;
    let buyer_deposit = s(&buyer_deposit[0]["id"]);
    let balance_id = s(&buyer.balance("USD").await.expect("buyer balance")["id"]);
    let withdrawal = buyer
        .post(
            &format!("/api/v1/treasury/{}/withdrawals", buyer.id),
            json!({ "currency": "USD", "amount": "5.00", "destination": { "iban": "DE89370400440532013000" } }),
        )
        .await
        .ok();
    let withdrawal_id = s(&withdrawal["id"]);
    let refund = seller
        .post(
            "/api/v1/treasury/me/refunds",
            json!({ "transactionId": seller_tx, "amount": "1.00", "reason": "goodwill" }),
        )
        .await
        .ok();
    let refund_id = s(&refund["id"]);
    let pending_conn = buyer
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": seller.id, "role": "SELLER" }),
        )
        .await
        .ok();
    let pending_conn = s(&pending_conn["id"]);
    let line_item = s(&draft["lineItems"][0]["id"]);

    let before = app.log_state().await;
    let o = &outsider;
    let never = unknown();

    // Invoices, the submitted one and the draft, on every route.
    for inv in [&submitted, &draft, &settled] {
        invoice_routes_hide(o, &s(&inv["id"]), &line_item).await;
    }
    // Connections.
    for conn in [&pair.conn, &pending_conn] {
        same_as_unknown(o, Method::GET, conn, &never, |id| {
            (format!("/api/v1/connections/{id}"), None)
        })
        .await;
        for answer in ["accept", "reject"] {
            same_as_unknown(o, Method::POST, conn, &never, |id| {
                (
                    format!("/api/v1/connections/{id}/{answer}"),
                    Some(json!({})),
                )
            })
            .await;
        }
        same_as_unknown(o, Method::POST, conn, &never, |id| {
            ("/api/v1/invoices".into(), Some(simple_invoice(id, "1.00")))
        })
        .await;
    }
    // Payments.
    same_as_unknown(o, Method::GET, &payment_id, &never, |id| {
        (format!("/api/v1/payments/{id}"), None)
    })
    .await;
    // Treasury, with their organization in the path...
    for org_id in [&seller.id, &buyer.id] {
        for sub in [
            "balances",
            "balances/summary",
            "transactions",
            "withdrawals",
            "refunds",
        ] {
            same_as_unknown(o, Method::GET, org_id, &never, |id| {
                (format!("/api/v1/treasury/{id}/{sub}"), None)
            })
            .await;
        }
        same_as_unknown(o, Method::POST, org_id, &never, |id| {
            (
                format!("/api/v1/treasury/{id}/withdrawals"),
                Some(json!({ "currency": "USD", "amount": "1.00", "destination": { "iban": "DE89370400440532013000" } })),
            )
        })
        .await;
    }
    // ...and their ids under our own.
    for sub in ["", "/changes", "/usage"] {
        same_as_unknown(o, Method::GET, &balance_id, &never, |id| {
            (format!("/api/v1/treasury/me/balances/{id}{sub}"), None)
        })
        .await;
    }
    for tx in [&seller_tx, &buyer_deposit] {
        same_as_unknown(o, Method::GET, tx, &never, |id| {
            (format!("/api/v1/treasury/me/transactions/{id}"), None)
        })
        .await;
    }
    same_as_unknown(o, Method::POST, &seller_tx, &never, |id| {
        (
            "/api/v1/treasury/me/refunds".into(),
            Some(json!({ "transactionId": id, "amount": "1.00", "reason": "r" })),
        )
    })
    .await;
    same_as_unknown(o, Method::GET, &withdrawal_id, &never, |id| {
        (format!("/api/v1/treasury/me/withdrawals/{id}"), None)
    })
    .await;
    for action in ["approve", "reject", "cancel"] {
        same_as_unknown(o, Method::POST, &withdrawal_id, &never, |id| {
            (
                format!("/api/v1/treasury/me/withdrawals/{id}/{action}"),
                Some(json!({ "reason": "r" })),
            )
        })
        .await;
    }
    same_as_unknown(o, Method::GET, &refund_id, &never, |id| {
        (format!("/api/v1/treasury/me/refunds/{id}"), None)
    })
    .await;
    for action in ["approve", "reject"] {
        same_as_unknown(o, Method::POST, &refund_id, &never, |id| {
            (
                format!("/api/v1/treasury/me/refunds/{id}/{action}"),
                Some(json!({ "reason": "r" })),
            )
        })
        .await;
    }
    // Settings.
    let never_key = format!("ek_{}", uuid::Uuid::new_v4().simple());
    for method in [Method::GET, Method::DELETE] {
        same_as_unknown(o, method, &seller.key_id, &never_key, |id| {
            (format!("/api/v1/settings/api-keys/{id}"), None)
        })
        .await;
    }

    // Lists show none of it.
    for path in [
        "/api/v1/invoices",
        "/api/v1/connections",
        "/api/v1/payments",
        "/api/v1/treasury/me/withdrawals",
        "/api/v1/treasury/me/refunds",
    ] {
        assert!(
            o.walk(path, 50).await.is_empty(),
            "{path} shows someone else's items"
        );
    }
    let txs = o.walk("/api/v1/treasury/me/transactions", 50).await;
    assert_eq!(txs.len(), 1, "only the outsider's own deposit: {txs:?}");
    let keys = o.get("/api/v1/settings/api-keys").await.ok();
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(1), "{keys}");

    assert_eq!(app.log_state().await, before, "a probe changed something");
    // Their own views are untouched by the probes.
    assert_eq!(seller.invoice(&s(&submitted["id"])).await.ok(), submitted);
}

#[tokio::test]
async fn a_draft_is_the_sellers_alone_until_submitted() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let draft = pair.draft("10.00").await;
    let id = s(&draft["id"]);
    let line_item = s(&draft["lineItems"][0]["id"]);
    let before = app.log_state().await;
    invoice_routes_hide(&pair.buyer, &id, &line_item).await;
    for query in ["", "status=DRAFT", "role=buyer"] {
        assert!(
            pair.buyer.all_invoices(query).await.is_empty(),
            "buyer lists a draft ({query})"
        );
    }
    assert_eq!(app.log_state().await, before);

    let submitted = pair.seller.act(&id, "submit", json!({})).await.ok();
    assert_eq!(pair.buyer.invoice(&id).await.ok(), submitted);
    let listed = pair.buyer.all_invoices("").await;
    assert_eq!(listed, vec![submitted]);
}

/// Webhook endpoints, API logs and stored files: the same rule.
#[tokio::test]
async fn settings_and_storage_ids_are_not_found_across_organizations() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let seller = &pair.seller;
    let outsider = app.create_org("Outsider").await;
    let other_buyer = app.create_org("Other buyer").await;
    let outsider_conn = app.connect(&outsider, &other_buyer).await;

    let endpoint = seller
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": "https://93.184.216.34/hooks/expereon", "events": ["invoice.*"] }),
        )
        .await
        .ok();
    let endpoint = s(&endpoint["id"]);
    let file = seller
        .send(
            Method::POST,
            "/api/v1/storage?filename=po.txt",
            &[("content-type", "text/plain"), ("idempotency-key", &rid())],
            Some(b"purchase order 77".to_vec()),
        )
        .await
        .ok();
    let file = s(&file["id"]);
    let logs = seller.get("/api/v1/settings/api-logs?limit=1").await.ok();
    let log_id = s(&logs["data"][0]["id"]);

    let o = &outsider;
    let never = unknown();
    same_as_unknown(o, Method::GET, &endpoint, &never, |id| {
        (format!("/api/v1/settings/webhooks/{id}"), None)
    })
    .await;
    same_as_unknown(o, Method::PATCH, &endpoint, &never, |id| {
        (
            format!("/api/v1/settings/webhooks/{id}"),
            Some(json!({ "description": "mine now" })),
        )
    })
    .await;
    same_as_unknown(o, Method::DELETE, &endpoint, &never, |id| {
        (format!("/api/v1/settings/webhooks/{id}"), None)
    })
    .await;
    for sub in ["rotate-secret", "test"] {
        same_as_unknown(o, Method::POST, &endpoint, &never, |id| {
            (
                format!("/api/v1/settings/webhooks/{id}/{sub}"),
                Some(json!({})),
            )
        })
        .await;
    }
    same_as_unknown(o, Method::GET, &endpoint, &never, |id| {
        (format!("/api/v1/settings/webhooks/{id}/deliveries"), None)
    })
    .await;
    same_as_unknown(o, Method::GET, &log_id, &never, |id| {
        (format!("/api/v1/settings/api-logs/{id}"), None)
    })
    .await;
    for sub in ["", "/metadata"] {
        same_as_unknown(o, Method::GET, &file, &never, |id| {
            (format!("/api/v1/storage/{id}{sub}"), None)
        })
        .await;
    }
    same_as_unknown(o, Method::DELETE, &file, &never, |id| {
        (format!("/api/v1/storage/{id}"), None)
    })
    .await;
    // Attaching someone else's file to one's own invoice.
    same_as_unknown(o, Method::POST, &file, &never, |id| {
        let mut body = simple_invoice(&outsider_conn, "1.00");
        body["attachments"] = json!([id]);
        ("/api/v1/invoices".into(), Some(body))
    })
    .await;
    // Still the seller's, untouched.
    seller
        .get(&format!("/api/v1/settings/webhooks/{endpoint}"))
        .await
        .ok();
    seller
        .get(&format!("/api/v1/storage/{file}/metadata"))
        .await
        .ok();
}
