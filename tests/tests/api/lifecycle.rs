//! Every path of the invoice state diagram, step by step, as both parties see
//! it: each action answers with the invoice, the seller's and the buyer's GET
//! agree with that answer, `version` grows by one per event, and the history
//! names who did what. Money moves exactly as the diagram's edges say.

use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Seller,
    Buyer,
}

/// One invoice followed through its life.
struct Flow<'a> {
    pair: &'a Pair,
    id: String,
    version: u64,
    visible_to_buyer: bool,
    /// Organization behind each event so far, oldest first.
    actors: Vec<String>,
}

fn usd(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

impl<'a> Flow<'a> {
    /// Starts from a freshly created invoice; every creation event is the seller's.
    async fn start(pair: &'a Pair, body: Value) -> Flow<'a> {
        let inv = pair.seller.create_invoice(body).await;
        let submitted = inv["status"] == "SUBMITTED";
        let version = inv["version"].as_u64().expect("version");
        assert!(version >= 1, "{inv}");
        let flow = Flow {
            pair,
            id: s(&inv["id"]),
            version,
            visible_to_buyer: submitted,
            actors: vec![pair.seller.id.clone(); version as usize],
        };
        flow.check_views(&inv).await;
        flow
    }

    fn org(&self, side: Side) -> &Org {
        match side {
            Side::Seller => &self.pair.seller,
            Side::Buyer => &self.pair.buyer,
        }
    }

    /// Takes an action that must move the invoice to `to` with one event.
    async fn act(&mut self, side: Side, action: &str, body: Value, to: &str) -> Value {
        let inv = self.org(side).act(&self.id, action, body).await.ok();
        assert_eq!(inv["status"], to, "{action} by {side:?}: {inv}");
        assert_eq!(
            inv["version"],
            self.version + 1,
            "{action}: one event, one version: {inv}"
        );
        self.version += 1;
        self.actors.push(self.org(side).id.clone());
        if to == "SUBMITTED" {
            self.visible_to_buyer = true;
        }
        self.check_views(&inv).await;
        inv
    }

    /// The seller's GET equals the command's answer; so does the buyer's once
    /// the invoice left DRAFT, and before that the buyer gets a plain 404.
    async fn check_views(&self, inv: &Value) {
        let seller_view = self.pair.seller.invoice(&self.id).await.ok();
        assert_eq!(
            &seller_view, inv,
            "seller's GET differs from the command's answer"
        );
        let buyer_view = self.pair.buyer.invoice(&self.id).await;
        if self.visible_to_buyer {
            assert_eq!(
                &buyer_view.ok(),
                inv,
                "buyer's GET differs from the seller's"
            );
        } else {
            buyer_view.err(404, "NOT_FOUND");
        }
    }

    async fn current(&self) -> Value {
        self.pair.seller.invoice(&self.id).await.ok()
    }

    /// The history: one entry per version, oldest first, each naming the
    /// organization that caused it, and the key only to that organization.
    /// The buyer sees it without the seller's work on drafts (creation and
    /// edits).
    async fn check_history(&self) {
        let path = format!("/api/v1/invoices/{}/history", self.id);
        let h = self.pair.seller.get(&path).await.ok();
        let data = h["data"].as_array().expect("history data");
        assert_eq!(
            data.len() as u64,
            self.version,
            "one history entry per version: {h}"
        );
        let mut last_seq = 0;
        for (i, e) in data.iter().enumerate() {
            assert_eq!(e["version"], i as u64 + 1, "{e}");
            let seq = e["seq"].as_u64().expect("seq");
            assert!(seq > last_seq, "history out of order: {h}");
            last_seq = seq;
            assert!(e["type"].as_str().is_some_and(|t| !t.is_empty()), "{e}");
            assert!(
                chrono::DateTime::parse_from_rfc3339(&s(&e["at"])).is_ok(),
                "{e}"
            );
            assert_eq!(
                e["actor"]["organizationId"], self.actors[i],
                "event {i}: {e}"
            );
            let own_key = if self.actors[i] == self.pair.seller.id {
                json!(self.pair.seller.key_id)
            } else {
                Value::Null
            };
            assert_eq!(e["actor"]["apiKeyId"], own_key, "{e}");
            assert!(e.get("data").is_some(), "{e}");
        }
        if self.visible_to_buyer {
            let draft_work = [
                "InvoiceCreated",
                "InvoiceUpdated",
                "LineItemAdded",
                "LineItemUpdated",
                "LineItemRemoved",
            ];
            let expected: Vec<Value> = data
                .iter()
                .filter(|e| !draft_work.contains(&e["type"].as_str().unwrap_or_default()))
                .map(|e| {
                    let mut e = e.clone();
                    e["actor"]["apiKeyId"] =
                        if e["actor"]["organizationId"] == json!(self.pair.buyer.id) {
                            json!(self.pair.buyer.key_id)
                        } else {
                            Value::Null
                        };
                    e
                })
                .collect();
            assert_eq!(
                self.pair.buyer.get(&path).await.ok(),
                json!({ "data": expected }),
                "buyer's history differs"
            );
        } else {
            self.pair.buyer.get(&path).await.err(404, "NOT_FOUND");
        }
    }
}

/// DRAFT → SUBMITTED → APPROVED → SETTLED → ARCHIVED → (restore) SETTLED → ARCHIVED.
#[tokio::test]
async fn draft_to_settled_to_archived_and_back() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let body = json!({
        "connectionId": pair.conn,
        "number": "INV-LIFE-1",
        "currency": "USD",
        "issueDate": "2030-01-15",
        "dueDate": "2030-02-14",
        "memo": "January retainer",
        "lineItems": [
            line("Design", "2", "100.00", Some("10")),
            line("Hosting", "1", "50.00", None),
        ],
    });
    let mut flow = Flow::start(&pair, body).await;
    let inv = flow.current().await;
    assert_eq!(inv["status"], "DRAFT");
    assert_eq!(inv["number"], "INV-LIFE-1");
    assert_eq!(inv["sellerOrganizationId"], pair.seller.id);
    assert_eq!(inv["buyerOrganizationId"], pair.buyer.id);
    assert_eq!(inv["connectionId"], pair.conn);
    assert_eq!(inv["issueDate"], "2030-01-15");
    assert_eq!(inv["dueDate"], "2030-02-14");
    assert_eq!(inv["subtotal"], "250.00");
    assert_eq!(inv["taxTotal"], "20.00");
    assert_eq!(inv["total"], "270.00");

    flow.act(Side::Seller, "submit", json!({}), "SUBMITTED")
        .await;
    let before = pair.buyer.money("USD").await;
    let inv = flow
        .act(Side::Buyer, "approve", json!({}), "APPROVED")
        .await;
    assert_eq!(inv["approvedAmount"], "270.00");
    let after = pair.buyer.money("USD").await;
    assert_eq!(after.0, before.0, "approval moves no money");
    assert_eq!(
        after.1,
        before.1 + usd("270"),
        "approval reserves the total"
    );
    assert_eq!(after.2, before.2 - usd("270"));

    let seller_before = pair.seller.money("USD").await;
    let paid = pair.buyer.act(&flow.id, "settle", json!({})).await;
    assert_eq!(paid.status, 200, "{}", paid.text());
    flow.version += 1;
    flow.actors.push(pair.buyer.id.clone());
    let inv = flow.current().await;
    assert_eq!(inv["status"], "SETTLED");
    assert_eq!(inv["version"], flow.version);
    flow.check_views(&inv).await;
    let payment_id = s(&inv["paymentId"]);
    let payment = pair
        .buyer
        .get(&format!("/api/v1/payments/{payment_id}"))
        .await
        .ok();
    assert_eq!(payment["status"], "COMPLETED");
    assert_eq!(payment["amount"], "270.00");
    assert_eq!(payment["invoiceId"], flow.id);
    assert_eq!(payment["payerOrganizationId"], pair.buyer.id);
    assert_eq!(payment["payeeOrganizationId"], pair.seller.id);
    assert_eq!(
        pair.seller
            .get(&format!("/api/v1/payments/{payment_id}"))
            .await
            .ok(),
        payment
    );
    let buyer_after = pair.buyer.money("USD").await;
    assert_eq!(buyer_after.0, after.0 - usd("270"), "buyer debited");
    assert_eq!(buyer_after.1, after.1 - usd("270"), "reservation consumed");
    assert_eq!(
        buyer_after.2, after.2,
        "available unchanged by settling a reservation"
    );
    let seller_after = pair.seller.money("USD").await;
    assert_eq!(
        seller_after.0,
        seller_before.0 + usd("270"),
        "seller credited"
    );
    // One SETTLEMENT transaction on each side.
    for (org, kind) in [
        (&pair.buyer, "SETTLEMENT_OUT"),
        (&pair.seller, "SETTLEMENT_IN"),
    ] {
        let txs = org
            .walk(&format!("/api/v1/treasury/me/transactions?type={kind}"), 50)
            .await;
        assert_eq!(txs.len(), 1, "{kind}: {txs:?}");
        assert_eq!(txs[0]["amount"], "270.00");
        assert_eq!(txs[0]["invoiceId"], flow.id);
        assert_eq!(txs[0]["paymentId"], payment_id);
    }

    flow.act(Side::Buyer, "archive", json!({}), "ARCHIVED")
        .await;
    flow.act(Side::Seller, "restore", json!({}), "SETTLED")
        .await;
    flow.act(Side::Seller, "archive", json!({}), "ARCHIVED")
        .await;
    flow.check_history().await;
}

/// SUBMITTED (created with `submit`) → APPROVED_WITH_ADJUSTMENT → SETTLED for the adjusted amount.
#[tokio::test]
async fn adjusted_approval_reserves_and_settles_the_adjusted_amount() {
    let app = spawn_app().await;
    let pair = app.trading_pair("500.00").await;
    let mut body = simple_invoice(&pair.conn, "120.00");
    body["submit"] = json!(true);
    let mut flow = Flow::start(&pair, body).await;
    let inv = flow
        .act(
            Side::Buyer,
            "approve",
            json!({ "adjustedAmount": "80.00", "reason": "two hours not delivered" }),
            "APPROVED_WITH_ADJUSTMENT",
        )
        .await;
    assert_eq!(inv["approvedAmount"], "80.00");
    assert_eq!(inv["adjustmentReason"], "two hours not delivered");
    assert_eq!(inv["total"], "120.00", "the invoice total is not rewritten");
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("500"), usd("80"), usd("420"))
    );

    let paid = pair
        .buyer
        .post("/api/v1/payments/settle", json!({ "invoiceId": flow.id }))
        .await;
    assert_eq!(paid.status, 200, "{}", paid.text());
    flow.version += 1;
    flow.actors.push(pair.buyer.id.clone());
    let inv = flow.current().await;
    assert_eq!(inv["status"], "SETTLED");
    flow.check_views(&inv).await;
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("420"), usd("0"), usd("420"))
    );
    assert_eq!(pair.seller.money("USD").await.0, usd("80"));
    flow.check_history().await;
}

/// SUBMITTED → DISPUTED → (PATCH) → SUBMITTED → APPROVED with the corrected total.
#[tokio::test]
async fn disputed_invoice_is_corrected_resubmitted_and_approved() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let mut flow = Flow::start(&pair, simple_invoice(&pair.conn, "300.00")).await;
    flow.act(Side::Seller, "submit", json!({}), "SUBMITTED")
        .await;
    let inv = flow
        .act(
            Side::Buyer,
            "dispute",
            json!({ "reason": "wrong rate" }),
            "DISPUTED",
        )
        .await;
    assert_eq!(inv["disputeReason"], "wrong rate");

    let inv = pair
        .seller
        .patch(
            &format!("/api/v1/invoices/{}", flow.id),
            json!({ "expectedVersion": flow.version, "lineItems": [line("Consulting", "1", "250.00", None)] }),
        )
        .await
        .ok();
    assert_eq!(inv["status"], "DISPUTED");
    assert_eq!(inv["total"], "250.00");
    flow.version += 1;
    flow.actors.push(pair.seller.id.clone());
    flow.check_views(&inv).await;

    flow.act(Side::Seller, "submit", json!({}), "SUBMITTED")
        .await;
    let inv = flow
        .act(Side::Buyer, "approve", json!({}), "APPROVED")
        .await;
    assert_eq!(inv["approvedAmount"], "250.00");
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("1000"), usd("250"), usd("750"))
    );
    flow.check_history().await;
}

/// SUBMITTED → INFO_REQUESTED → SUBMITTED → CANCELLED (seller) → ARCHIVED → (restore) CANCELLED.
#[tokio::test]
async fn information_request_answered_then_cancelled_archived_restored() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let mut body = simple_invoice(&pair.conn, "75.50");
    body["submit"] = json!(true);
    let mut flow = Flow::start(&pair, body).await;
    let inv = flow
        .act(
            Side::Buyer,
            "request-info",
            json!({ "question": "Which PO?" }),
            "INFO_REQUESTED",
        )
        .await;
    assert_eq!(inv["infoRequest"], "Which PO?");
    flow.act(
        Side::Seller,
        "respond-info",
        json!({ "message": "PO-77" }),
        "SUBMITTED",
    )
    .await;
    let inv = flow
        .act(
            Side::Seller,
            "cancel",
            json!({ "reason": "issued twice" }),
            "CANCELLED",
        )
        .await;
    assert_eq!(inv["approvedAmount"], Value::Null);
    flow.act(Side::Seller, "archive", json!({}), "ARCHIVED")
        .await;
    flow.act(Side::Buyer, "restore", json!({}), "CANCELLED")
        .await;
    flow.check_history().await;
}

/// DISPUTED → CANCELLED, once by the buyer and once by the seller.
#[tokio::test]
async fn disputed_invoice_is_cancelled_by_either_party() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    for canceller in [Side::Buyer, Side::Seller] {
        let mut body = simple_invoice(&pair.conn, "10.00");
        body["submit"] = json!(true);
        let mut flow = Flow::start(&pair, body).await;
        flow.act(
            Side::Buyer,
            "dispute",
            json!({ "reason": "not ordered" }),
            "DISPUTED",
        )
        .await;
        flow.act(
            canceller,
            "cancel",
            json!({ "reason": "agreed" }),
            "CANCELLED",
        )
        .await;
        flow.check_history().await;
    }
}

/// DRAFT → CANCELLED → ARCHIVED → (restore) CANCELLED, never seen by the buyer.
#[tokio::test]
async fn cancelled_draft_stays_the_sellers_alone() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let mut flow = Flow::start(&pair, simple_invoice(&pair.conn, "10.00")).await;
    flow.act(
        Side::Seller,
        "cancel",
        json!({ "reason": "typo" }),
        "CANCELLED",
    )
    .await;
    flow.act(Side::Seller, "archive", json!({}), "ARCHIVED")
        .await;
    flow.act(Side::Seller, "restore", json!({}), "CANCELLED")
        .await;
    flow.check_history().await;
    assert!(
        pair.buyer.all_invoices("").await.is_empty(),
        "the buyer lists an invoice it never saw submitted"
    );
}

/// SUBMITTED → CANCELLED by the seller.
#[tokio::test]
async fn submitted_invoice_is_cancelled_by_the_seller() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let mut flow = Flow::start(&pair, simple_invoice(&pair.conn, "10.00")).await;
    flow.act(Side::Seller, "submit", json!({}), "SUBMITTED")
        .await;
    flow.act(
        Side::Seller,
        "cancel",
        json!({ "reason": "duplicate" }),
        "CANCELLED",
    )
    .await;
    flow.check_history().await;
}

/// APPROVED → CANCELLATION_REQUESTED (buyer) → CANCELLED (seller accepts): the reservation is released.
#[tokio::test]
async fn accepted_cancellation_releases_the_reservation() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let mut body = simple_invoice(&pair.conn, "60.00");
    body["submit"] = json!(true);
    let mut flow = Flow::start(&pair, body).await;
    flow.act(Side::Buyer, "approve", json!({}), "APPROVED")
        .await;
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("60"), usd("40"))
    );
    flow.act(
        Side::Buyer,
        "request-cancellation",
        json!({ "reason": "project stopped" }),
        "CANCELLATION_REQUESTED",
    )
    .await;
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("60"), usd("40")),
        "still reserved while requested"
    );
    flow.act(Side::Seller, "accept-cancellation", json!({}), "CANCELLED")
        .await;
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("0"), usd("100"))
    );
    flow.check_history().await;
}

/// CANCELLATION_REQUESTED → rejected → back to the approved state it came from,
/// reservation kept; then it still settles.
#[tokio::test]
async fn rejected_cancellation_returns_to_the_approved_state_it_came_from() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;

    let mut body = simple_invoice(&pair.conn, "30.00");
    body["submit"] = json!(true);
    let mut plain = Flow::start(&pair, body.clone()).await;
    plain
        .act(Side::Buyer, "approve", json!({}), "APPROVED")
        .await;
    plain
        .act(
            Side::Seller,
            "request-cancellation",
            json!({ "reason": "price error" }),
            "CANCELLATION_REQUESTED",
        )
        .await;
    plain
        .act(Side::Buyer, "reject-cancellation", json!({}), "APPROVED")
        .await;

    let mut adjusted = Flow::start(&pair, body).await;
    adjusted
        .act(
            Side::Buyer,
            "approve",
            json!({ "adjustedAmount": "25.00", "reason": "late" }),
            "APPROVED_WITH_ADJUSTMENT",
        )
        .await;
    adjusted
        .act(
            Side::Buyer,
            "request-cancellation",
            json!({ "reason": "changed mind" }),
            "CANCELLATION_REQUESTED",
        )
        .await;
    let inv = adjusted
        .act(
            Side::Seller,
            "reject-cancellation",
            json!({}),
            "APPROVED_WITH_ADJUSTMENT",
        )
        .await;
    assert_eq!(inv["approvedAmount"], "25.00");
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("100"), usd("55"), usd("45"))
    );

    for flow in [&mut plain, &mut adjusted] {
        let r = pair.buyer.act(&flow.id, "settle", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        flow.version += 1;
        flow.actors.push(pair.buyer.id.clone());
        let inv = flow.current().await;
        assert_eq!(inv["status"], "SETTLED");
        flow.check_views(&inv).await;
        flow.check_history().await;
    }
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("45"), usd("0"), usd("45"))
    );
    assert_eq!(pair.seller.money("USD").await.0, usd("55"));
}

/// Not enough available funds: 400 INSUFFICIENT_BALANCE and nothing changes.
#[tokio::test]
async fn approval_beyond_available_funds_is_refused_without_effect() {
    let app = spawn_app().await;
    let pair = app.trading_pair("50.00").await;
    let inv = pair.submitted("50.01").await;
    let id = s(&inv["id"]);
    let before = app.log_state().await;
    pair.buyer
        .act(&id, "approve", json!({}))
        .await
        .err(400, "INSUFFICIENT_BALANCE");
    assert_eq!(
        app.log_state().await,
        before,
        "a refused approval wrote to the log"
    );
    assert_eq!(pair.buyer.invoice(&id).await.ok(), inv);
    assert_eq!(
        pair.buyer.money("USD").await,
        (usd("50"), usd("0"), usd("50"))
    );
    // A buyer with no balance in the currency at all is refused the same way.
    let mut eur = simple_invoice(&pair.conn, "1.00");
    eur["currency"] = json!("EUR");
    eur["submit"] = json!(true);
    let eur = pair.seller.create_invoice(eur).await;
    pair.buyer
        .act(&s(&eur["id"]), "approve", json!({}))
        .await
        .err(400, "INSUFFICIENT_BALANCE");
}

/// The seller's drafts are the seller's: a memo and a price changed before
/// submitting, and which of the seller's keys acted, never reach the buyer
/// through the history.
#[tokio::test]
async fn the_buyer_never_sees_the_sellers_drafts_or_keys_in_the_history() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let draft = pair
        .seller
        .create_invoice(json!({
            "connectionId": pair.conn,
            "currency": "USD",
            "dueDate": "2031-06-30",
            "memo": "internal: try 99.99 first",
            "lineItems": [line("Consulting", "1", "99.99", None)],
        }))
        .await;
    let id = s(&draft["id"]);
    pair.seller
        .patch(
            &format!("/api/v1/invoices/{id}"),
            json!({ "memo": "Consulting, June", "lineItems": [line("Consulting", "1", "80.00", None)] }),
        )
        .await
        .ok();
    pair.seller.act(&id, "submit", json!({})).await.ok();
    pair.buyer.act(&id, "approve", json!({})).await.ok();
    let path = format!("/api/v1/invoices/{id}/history");
    let seen = pair.buyer.get(&path).await;
    let text = seen.text();
    assert!(!text.contains("internal: try"), "{text}");
    assert!(!text.contains("99.99"), "{text}");
    assert!(!text.contains(&pair.seller.key_id), "{text}");
    let types: Vec<String> = seen.ok()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| s(&e["type"]))
        .collect();
    assert_eq!(types[0], "InvoiceSubmitted", "{types:?}");
    assert!(types.contains(&"InvoiceApproved".to_string()), "{types:?}");
    assert!(
        text.contains(&pair.buyer.key_id),
        "the buyer's own key: {text}"
    );
    // The seller sees its whole history, but not which key the buyer used.
    let own = pair.seller.get(&path).await.text();
    assert!(own.contains("internal: try") && own.contains(&pair.seller.key_id));
    assert!(!own.contains(&pair.buyer.key_id), "{own}");
}
