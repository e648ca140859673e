//! Every refused move: for an invoice in each state of the diagram, every
//! action by each party that the contract does not allow is answered 403
//! FORBIDDEN (wrong party) or 400 INVALID_STATE_TRANSITION naming the current
//! state (right party, wrong state), and changes nothing.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Seller,
    Buyer,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Allowed,
    Forbidden,
    Invalid,
    NotFound,
}

const APPROVED_STATES: [&str; 2] = ["APPROVED", "APPROVED_WITH_ADJUSTMENT"];

/// The contract's "Who" column and the state diagram's edges.
fn expected(action: &str, side: Side, state: &str, requester: Option<Side>) -> Expect {
    use Side::*;
    if state == "DRAFT" && side == Buyer {
        return Expect::NotFound;
    }
    let rule = |who: &[Side], from: &[&str]| {
        if !who.contains(&side) {
            Expect::Forbidden
        } else if from.contains(&state) {
            Expect::Allowed
        } else {
            Expect::Invalid
        }
    };
    match action {
        "submit" => rule(&[Seller], &["DRAFT", "DISPUTED"]),
        "edit" => rule(&[Seller], &["DRAFT", "DISPUTED", "INFO_REQUESTED"]),
        "respond-info" => rule(&[Seller], &["INFO_REQUESTED"]),
        "approve" | "dispute" | "request-info" => rule(&[Buyer], &["SUBMITTED"]),
        "cancel" => match side {
            Seller => rule(&[Seller], &["DRAFT", "SUBMITTED", "DISPUTED"]),
            Buyer => rule(&[Buyer], &["DISPUTED"]),
        },
        "request-cancellation" => rule(&[Seller, Buyer], &APPROVED_STATES),
        "accept-cancellation" | "reject-cancellation" => match requester {
            Some(r) if state == "CANCELLATION_REQUESTED" && r == side => Expect::Forbidden,
            Some(_) if state == "CANCELLATION_REQUESTED" => Expect::Allowed,
            _ => Expect::Invalid,
        },
        "settle" => rule(&[Buyer], &APPROVED_STATES),
        "archive" => rule(&[Seller, Buyer], &["SETTLED", "CANCELLED"]),
        "restore" => rule(&[Seller, Buyer], &["ARCHIVED"]),
        other => panic!("no rule for {other}"),
    }
}

/// Actions with a body that passes validation, so only party and state decide.
fn actions() -> Vec<(&'static str, Value)> {
    vec![
        ("submit", json!({})),
        ("edit", json!({ "memo": "edited" })),
        ("respond-info", json!({ "message": "here it is" })),
        ("approve", json!({})),
        ("dispute", json!({ "reason": "wrong" })),
        ("request-info", json!({ "question": "why?" })),
        ("cancel", json!({ "reason": "no longer needed" })),
        (
            "request-cancellation",
            json!({ "reason": "no longer needed" }),
        ),
        ("accept-cancellation", json!({})),
        ("reject-cancellation", json!({})),
        ("settle", json!({})),
        ("archive", json!({})),
        ("restore", json!({})),
    ]
}

async fn attempt(org: &Org, id: &str, action: &str, body: Value) -> Resp {
    if action == "edit" {
        org.patch(&format!("/api/v1/invoices/{id}"), body).await
    } else {
        org.act(id, action, body).await
    }
}

/// An invoice in each state of the diagram, with who requested cancellation.
async fn invoices_in_every_state(pair: &Pair) -> Vec<(&'static str, String, Option<Side>)> {
    let id = |v: Value| s(&v["id"]);
    let ok = |r: Resp| r.ok();
    let mut out = Vec::new();
    out.push(("DRAFT", id(pair.draft("10.00").await), None));
    out.push(("SUBMITTED", id(pair.submitted("10.00").await), None));
    let i = id(pair.submitted("10.00").await);
    ok(pair
        .buyer
        .act(&i, "request-info", json!({ "question": "?" }))
        .await);
    out.push(("INFO_REQUESTED", i, None));
    let i = id(pair.submitted("10.00").await);
    ok(pair
        .buyer
        .act(&i, "dispute", json!({ "reason": "no" }))
        .await);
    out.push(("DISPUTED", i, None));
    out.push(("APPROVED", id(pair.approved("10.00").await), None));
    let i = id(pair.submitted("10.00").await);
    ok(pair
        .buyer
        .act(
            &i,
            "approve",
            json!({ "adjustedAmount": "5.00", "reason": "partial" }),
        )
        .await);
    out.push(("APPROVED_WITH_ADJUSTMENT", i, None));
    let i = id(pair.approved("10.00").await);
    ok(pair
        .seller
        .act(&i, "request-cancellation", json!({ "reason": "r" }))
        .await);
    out.push(("CANCELLATION_REQUESTED", i, Some(Side::Seller)));
    let i = id(pair.approved("10.00").await);
    ok(pair
        .buyer
        .act(&i, "request-cancellation", json!({ "reason": "r" }))
        .await);
    out.push(("CANCELLATION_REQUESTED", i, Some(Side::Buyer)));
    let i = id(pair.submitted("10.00").await);
    ok(pair
        .seller
        .act(&i, "cancel", json!({ "reason": "r" }))
        .await);
    out.push(("CANCELLED", i, None));
    let i = id(pair.approved("10.00").await);
    assert_eq!(pair.buyer.act(&i, "settle", json!({})).await.status, 200);
    out.push(("SETTLED", i.clone(), None));
    let i = id(pair.approved("10.00").await);
    assert_eq!(pair.buyer.act(&i, "settle", json!({})).await.status, 200);
    ok(pair.seller.act(&i, "archive", json!({})).await);
    out.push(("ARCHIVED", i, None));
    out
}

#[tokio::test]
async fn every_refused_transition_is_403_or_400_with_the_current_state() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let invoices = invoices_in_every_state(&pair).await;
    let before = app.log_state().await;
    let mut checked = 0;
    for (state, id, requester) in &invoices {
        let snapshot = pair.seller.invoice(id).await.ok();
        assert_eq!(snapshot["status"], *state);
        for side in [Side::Seller, Side::Buyer] {
            let org = match side {
                Side::Seller => &pair.seller,
                Side::Buyer => &pair.buyer,
            };
            for (action, body) in actions() {
                let expect = expected(action, side, state, *requester);
                if expect == Expect::Allowed {
                    continue;
                }
                let r = attempt(org, id, action, body).await;
                let what = format!("{action} by {side:?} in {state}");
                match expect {
                    Expect::Allowed => unreachable!(),
                    Expect::Forbidden => {
                        assert_eq!(r.status, 403, "{what}: {}", r.text());
                        r.err(403, "FORBIDDEN");
                    }
                    Expect::Invalid => {
                        assert_eq!(r.status, 400, "{what}: {}", r.text());
                        r.invalid_transition(state);
                    }
                    Expect::NotFound => {
                        assert_eq!(r.status, 404, "{what}: {}", r.text());
                        r.err(404, "NOT_FOUND");
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(
            pair.seller.invoice(id).await.ok(),
            snapshot,
            "a refused action changed {state}"
        );
    }
    assert!(checked > 200, "only {checked} refusals checked");
    assert_eq!(
        app.log_state().await,
        before,
        "refused actions wrote to the log"
    );
    // The reservations are exactly those of the approved (or cancellation-requested) invoices.
    let mut held = rust_decimal::Decimal::ZERO;
    for inv in pair.buyer.all_invoices("").await {
        if [
            "APPROVED",
            "APPROVED_WITH_ADJUSTMENT",
            "CANCELLATION_REQUESTED",
        ]
        .contains(&inv["status"].as_str().unwrap())
        {
            held += dec(&inv["approvedAmount"]);
        }
    }
    let (_, reserved, _) = pair.buyer.money("USD").await;
    assert_eq!(reserved, held);
}

#[tokio::test]
async fn connections_are_answered_by_the_counterparty_once() {
    let app = spawn_app().await;
    let seller = app.create_org("S").await;
    let buyer = app.create_org("B").await;
    let outsider = app.create_org("O").await;

    let c = seller
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": buyer.id, "role": "SELLER" }),
        )
        .await
        .ok();
    let id = s(&c["id"]);
    assert_eq!(c["sellerOrganizationId"], seller.id);
    assert_eq!(c["buyerOrganizationId"], buyer.id);
    assert_eq!(c["status"], "PENDING");
    assert!(c["createdAt"].is_string());

    // No invoice over a pending connection.
    let r = seller
        .post("/api/v1/invoices", simple_invoice(&id, "1.00"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    r.client_error();

    seller
        .post(&format!("/api/v1/connections/{id}/accept"), json!({}))
        .await
        .err(403, "FORBIDDEN");
    seller
        .post(&format!("/api/v1/connections/{id}/reject"), json!({}))
        .await
        .err(403, "FORBIDDEN");
    outsider
        .post(&format!("/api/v1/connections/{id}/accept"), json!({}))
        .await
        .err(404, "NOT_FOUND");
    let accepted = buyer
        .post(&format!("/api/v1/connections/{id}/accept"), json!({}))
        .await
        .ok();
    assert_eq!(accepted["status"], "ACTIVE");
    for answer in ["accept", "reject"] {
        buyer
            .post(&format!("/api/v1/connections/{id}/{answer}"), json!({}))
            .await
            .invalid_transition("ACTIVE");
    }
    let seen_by_seller = seller.get(&format!("/api/v1/connections/{id}")).await.ok();
    let seen_by_buyer = buyer.get(&format!("/api/v1/connections/{id}")).await.ok();
    assert_eq!(seen_by_seller, seen_by_buyer);
    assert_eq!(seen_by_seller["status"], "ACTIVE");
    for org in [&seller, &buyer] {
        let list = org.walk("/api/v1/connections", 50).await;
        assert_eq!(list, vec![seen_by_seller.clone()]);
    }
    assert!(outsider.walk("/api/v1/connections", 50).await.is_empty());

    // Only the seller of a connection invoices over it.
    buyer
        .post("/api/v1/invoices", simple_invoice(&id, "1.00"))
        .await
        .err(403, "FORBIDDEN");

    // The buyer asks this time; the seller rejects; nothing more can happen.
    let c = outsider
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": seller.id, "role": "BUYER" }),
        )
        .await
        .ok();
    assert_eq!(c["sellerOrganizationId"], seller.id);
    assert_eq!(c["buyerOrganizationId"], outsider.id);
    let rid2 = s(&c["id"]);
    let rejected = seller
        .send(
            Method::POST,
            &format!("/api/v1/connections/{rid2}/reject"),
            &[("idempotency-key", &rid())],
            None,
        )
        .await
        .ok();
    assert_eq!(rejected["status"], "REJECTED");
    seller
        .post(&format!("/api/v1/connections/{rid2}/accept"), json!({}))
        .await
        .invalid_transition("REJECTED");
    let r = seller
        .post("/api/v1/invoices", simple_invoice(&rid2, "1.00"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    r.client_error();
}

#[tokio::test]
async fn a_connection_is_rejected_with_the_counterpartys_reason() {
    let mut app = spawn_app().await;
    let seller = app.create_org("S").await;
    let buyer = app.create_org("B").await;
    let ask =
        |role: &'static str, to: String| json!({ "counterpartyOrganizationId": to, "role": role });

    let with_reason = seller
        .post("/api/v1/connections", ask("SELLER", buyer.id.clone()))
        .await
        .ok();
    let id = s(&with_reason["id"]);
    assert_eq!(with_reason["rejectionReason"], Value::Null);
    let path = format!("/api/v1/connections/{id}/reject");

    // Refused, and nothing changes: a reason too long, of the wrong type,
    // or a field the route does not know.
    for bad in [
        json!({ "reason": "x".repeat(2001) }),
        json!({ "reason": 42 }),
        json!({ "reason": "fine", "why": "unknown field" }),
    ] {
        let r = buyer.post(&path, bad).await;
        assert_eq!(r.status, 400, "{}", r.text());
        r.client_error();
    }
    let still = buyer.get(&format!("/api/v1/connections/{id}")).await.ok();
    assert_eq!(still["status"], "PENDING");

    let reason = "We buy from a single distributor.\nNot now.";
    let rejected = buyer.post(&path, json!({ "reason": reason })).await.ok();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["rejectionReason"], reason);
    // Both parties see the reason, by id and in the list.
    for org in [&seller, &buyer] {
        let one = org.get(&format!("/api/v1/connections/{id}")).await.ok();
        assert_eq!(one, rejected);
        assert_eq!(
            org.walk("/api/v1/connections", 50).await,
            vec![rejected.clone()]
        );
    }

    // Without a reason (and with no body at all) the reason is null.
    let bare = buyer
        .post("/api/v1/connections", ask("BUYER", seller.id.clone()))
        .await
        .ok();
    let bare_id = s(&bare["id"]);
    let rejected_bare = seller
        .send(
            Method::POST,
            &format!("/api/v1/connections/{bare_id}/reject"),
            &[],
            None,
        )
        .await
        .ok();
    assert_eq!(rejected_bare["status"], "REJECTED");
    assert_eq!(rejected_bare["rejectionReason"], Value::Null);

    // The reason is history: read models rebuilt from the log show it too.
    app.kill_now();
    let data = app.data_dir().join("data");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("read-models.sqlite{suffix}")));
    }
    app.start_again().await;
    let seen = buyer.get(&format!("/api/v1/connections/{id}")).await.ok();
    assert_eq!(seen, rejected);
}
