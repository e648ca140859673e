//! Racing writers: concurrent approvals never reserve more than the buyer
//! holds; concurrent edits with the same expectedVersion let one through.

use crate::support::*;
use futures::future::join_all;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;
use std::str::FromStr;

#[tokio::test]
async fn a_hundred_concurrent_approvals_never_overdraw_the_buyer() {
    let app = spawn_app().await;
    let funds = "500.00";
    let pair = app.trading_pair(funds).await;
    // Amounts from 1.01 to 99.xx, in an order unrelated to size.
    let amounts: Vec<String> = (0..100)
        .map(|i| format!("{}.{:02}", (i * 37) % 97 + 1, (i * 13) % 100))
        .collect();
    let created = join_all(amounts.iter().map(|a| {
        let mut body = simple_invoice(&pair.conn, a);
        body["submit"] = json!(true);
        pair.seller.post("/api/v1/invoices", body)
    }))
    .await;
    let invoices: Vec<(String, Decimal)> = created
        .iter()
        .map(|r| {
            let v = r.ok();
            (s(&v["id"]), dec(&v["total"]))
        })
        .collect();
    let total_asked: Decimal = invoices.iter().map(|(_, t)| *t).sum();
    let funds = Decimal::from_str(funds).unwrap();
    assert!(
        total_asked > funds * Decimal::from(4),
        "the test must ask for far more than the funds"
    );

    let answers = join_all(
        invoices
            .iter()
            .map(|(id, _)| pair.buyer.act(id, "approve", json!({}))),
    )
    .await;

    let mut approved = Decimal::ZERO;
    let mut refused = Vec::new();
    for ((id, total), r) in invoices.iter().zip(&answers) {
        if r.status == 200 {
            let v = r.json();
            assert_eq!(v["status"], "APPROVED", "{v}");
            assert_eq!(dec(&v["approvedAmount"]), *total);
            approved += *total;
        } else {
            r.err(400, "INSUFFICIENT_BALANCE");
            refused.push((id.clone(), *total));
        }
    }
    assert!(approved > Decimal::ZERO && !refused.is_empty());

    let (total, reserved, available) = pair.buyer.money("USD").await;
    assert_eq!(total, funds, "approvals move no money");
    assert!(
        available >= Decimal::ZERO,
        "available went negative: {available}"
    );
    assert!(
        reserved <= total,
        "reserved {reserved} exceeds total {total}"
    );
    assert_eq!(
        reserved, approved,
        "reserved differs from the approvals answered 200"
    );
    assert_eq!(available, total - reserved);

    // The read model agrees: the reserved sum is that of the APPROVED invoices.
    let listed = pair.buyer.all_invoices("status=APPROVED&role=buyer").await;
    let listed_sum: Decimal = listed.iter().map(|i| dec(&i["approvedAmount"])).sum();
    assert_eq!(listed_sum, reserved);
    assert_eq!(
        listed.len(),
        answers.iter().filter(|r| r.status == 200).count()
    );
    let status: HashMap<String, String> = pair
        .buyer
        .all_invoices("role=buyer")
        .await
        .into_iter()
        .map(|i| (s(&i["id"]), s(&i["status"])))
        .collect();
    for (id, amount) in &refused {
        assert_eq!(
            status[id], "SUBMITTED",
            "a refused approval changed the invoice"
        );
        // Available only shrank during the race, so each refusal was justified.
        assert!(
            *amount > available,
            "refused {amount} though {available} is still available"
        );
    }
}

#[tokio::test]
async fn concurrent_edits_with_the_same_expected_version_let_exactly_one_through() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let inv = pair.draft("10.00").await;
    let id = s(&inv["id"]);
    let version = inv["version"].as_u64().unwrap();
    let path = format!("/api/v1/invoices/{id}");
    let answers = join_all((0..10).map(|i| {
        pair.seller.patch(
            &path,
            json!({ "expectedVersion": version, "memo": format!("edit {i}") }),
        )
    }))
    .await;
    let winners: Vec<usize> = (0..10).filter(|i| answers[*i].status == 200).collect();
    assert_eq!(winners.len(), 1, "{} edits won the race", winners.len());
    for (i, r) in answers.iter().enumerate() {
        if r.status != 200 {
            r.err(409, "VERSION_CONFLICT");
        } else {
            assert_eq!(r.json()["memo"], format!("edit {i}"));
        }
    }
    let now = pair.seller.invoice(&id).await.ok();
    assert_eq!(now["version"], version + 1);
    assert_eq!(now["memo"], format!("edit {}", winners[0]));
}

/// Twenty settlements of one invoice, each with its own requestId, racing:
/// one pays, the others find it settled, and the money moves once.
#[tokio::test]
async fn racing_settlements_pay_once() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let inv = pair.approved("40.00").await;
    let id = s(&inv["id"]);
    let answers = join_all((0..20).map(|i| {
        let body = json!({ "invoiceId": id });
        let buyer = &pair.buyer;
        let id = &id;
        async move {
            if i % 2 == 0 {
                buyer.post("/api/v1/payments/settle", body).await
            } else {
                buyer.act(id, "settle", json!({})).await
            }
        }
    }))
    .await;
    let paid = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(paid, 1, "{paid} settlements succeeded");
    for r in answers.iter().filter(|r| r.status != 200) {
        r.invalid_transition("SETTLED");
    }
    let money = |t: &str| Decimal::from_str(t).unwrap();
    assert_eq!(
        pair.buyer.money("USD").await,
        (money("60"), money("0"), money("60"))
    );
    assert_eq!(pair.seller.money("USD").await.0, money("40"));
    assert_eq!(pair.buyer.walk("/api/v1/payments", 50).await.len(), 1);
}
