//! The invoice list: each filter returns exactly the invoices the contract's
//! definition selects (computed here from the unfiltered list), sorting orders
//! by the field, and cursor paging walks every item once.

use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::HashSet;

struct World {
    me: Org,
    other_seller: Org,
    buyer_one: Org,
    buyer_two: Org,
    conn_one: String,
    conn_two: String,
    conn_in: String,
}

#[allow(clippy::too_many_arguments)]
async fn invoice(
    org: &Org,
    conn: &str,
    currency: &str,
    due: &str,
    number: &str,
    memo: &str,
    desc: &str,
    amount: &str,
) -> Value {
    org.create_invoice(json!({
        "connectionId": conn,
        "number": number,
        "currency": currency,
        "issueDate": "2031-01-01",
        "dueDate": due,
        "memo": memo,
        "lineItems": [line(desc, "1", amount, None)],
    }))
    .await
}

/// `me` sells to two buyers and buys from `other_seller`; invoices in several
/// states, currencies, due dates and texts.
async fn world(app: &TestApp) -> World {
    let me = app.create_org("Me").await;
    let buyer_one = app.create_org("Buyer One").await;
    let buyer_two = app.create_org("Buyer Two").await;
    let other_seller = app.create_org("Supplier").await;
    let conn_one = app.connect(&me, &buyer_one).await;
    let conn_two = app.connect(&me, &buyer_two).await;
    let conn_in = app.connect(&other_seller, &me).await;
    app.deposit(&buyer_one, "USD", "1000.00").await;
    let rows = [
        (
            &conn_one,
            "USD",
            "2031-01-10",
            "A-100",
            "alpha retainer",
            "Design work",
            "10.00",
            "draft",
        ),
        (
            &conn_one,
            "USD",
            "2031-02-10",
            "A-101",
            "beta support",
            "Hosting fees",
            "250.00",
            "submit",
        ),
        (
            &conn_one,
            "EUR",
            "2031-03-10",
            "A-102",
            "gamma launch",
            "Design review",
            "75.00",
            "submit",
        ),
        (
            &conn_one,
            "USD",
            "2031-04-10",
            "A-103",
            "delta",
            "Travel",
            "5.00",
            "approve",
        ),
        (
            &conn_two,
            "USD",
            "2031-05-10",
            "B-200",
            "epsilon",
            "Design sprint",
            "999.99",
            "submit",
        ),
        (
            &conn_two,
            "EUR",
            "2031-06-10",
            "B-201",
            "zeta",
            "Licences",
            "12.34",
            "cancel",
        ),
        (
            &conn_two,
            "USD",
            "2031-01-20",
            "B-202",
            "eta",
            "Support",
            "60.00",
            "dispute",
        ),
        (
            &conn_two,
            "USD",
            "2031-02-20",
            "B-203",
            "theta",
            "Design audit",
            "0.50",
            "draft",
        ),
    ];
    for (conn, cur, due, number, memo, desc, amount, fate) in rows {
        let inv = invoice(&me, conn, cur, due, number, memo, desc, amount).await;
        let id = s(&inv["id"]);
        let buyer = if *conn == conn_one {
            &buyer_one
        } else {
            &buyer_two
        };
        match fate {
            "draft" => {}
            "submit" => {
                me.act(&id, "submit", json!({})).await.ok();
            }
            "approve" => {
                me.act(&id, "submit", json!({})).await.ok();
                buyer.act(&id, "approve", json!({})).await.ok();
            }
            "cancel" => {
                me.act(&id, "submit", json!({})).await.ok();
                me.act(&id, "cancel", json!({ "reason": "r" })).await.ok();
            }
            "dispute" => {
                me.act(&id, "submit", json!({})).await.ok();
                buyer
                    .act(&id, "dispute", json!({ "reason": "r" }))
                    .await
                    .ok();
            }
            other => panic!("{other}"),
        }
    }
    // Bought by `me`: two submitted, one draft it must never see.
    for (due, number, memo, amount, submit) in [
        ("2031-03-20", "S-1", "supplies omega", "40.00", true),
        ("2031-07-01", "S-2", "supplies kit", "15.00", true),
        ("2031-08-01", "S-3", "hidden draft", "1.00", false),
    ] {
        let inv = invoice(
            &other_seller,
            &conn_in,
            "USD",
            due,
            number,
            memo,
            "Paper",
            amount,
        )
        .await;
        if submit {
            other_seller
                .act(&s(&inv["id"]), "submit", json!({}))
                .await
                .ok();
        }
    }
    World {
        me,
        other_seller,
        buyer_one,
        buyer_two,
        conn_one,
        conn_two,
        conn_in,
    }
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|i| s(&i["id"])).collect()
}

fn matches_text(inv: &Value, q: &str) -> bool {
    inv["number"].as_str().is_some_and(|n| n.contains(q))
        || inv["memo"].as_str().is_some_and(|m| m.contains(q))
        || inv["lineItems"].as_array().is_some_and(|ls| {
            ls.iter()
                .any(|l| l["description"].as_str().is_some_and(|d| d.contains(q)))
        })
}

#[tokio::test]
async fn every_filter_selects_exactly_what_it_names() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let me = &w.me;
    let all = me.all_invoices("").await;
    assert_eq!(
        all.len(),
        10,
        "8 sold (drafts included) and 2 bought: {:?}",
        ids(&all)
    );
    assert!(
        all.iter().all(|i| i["number"] != "S-3"),
        "a supplier's draft is listed"
    );
    let counterparty = |i: &Value| {
        if i["sellerOrganizationId"] == me.id.as_str() {
            s(&i["buyerOrganizationId"])
        } else {
            s(&i["sellerOrganizationId"])
        }
    };
    type Pred<'a> = Box<dyn Fn(&Value) -> bool + 'a>;
    let cases: Vec<(String, Pred)> = vec![
        (
            "status=SUBMITTED".into(),
            Box::new(|i: &Value| i["status"] == "SUBMITTED"),
        ),
        (
            "status=DRAFT".into(),
            Box::new(|i: &Value| i["status"] == "DRAFT"),
        ),
        (
            "status=CANCELLED".into(),
            Box::new(|i: &Value| i["status"] == "CANCELLED"),
        ),
        (
            "role=seller".into(),
            Box::new(|i: &Value| i["sellerOrganizationId"] == me.id.as_str()),
        ),
        (
            "role=buyer".into(),
            Box::new(|i: &Value| i["buyerOrganizationId"] == me.id.as_str()),
        ),
        (
            format!("connectionId={}", w.conn_two),
            Box::new(|i: &Value| i["connectionId"] == w.conn_two.as_str()),
        ),
        (
            format!("connectionId={}", w.conn_in),
            Box::new(|i: &Value| i["connectionId"] == w.conn_in.as_str()),
        ),
        (
            format!("counterpartyOrganizationId={}", w.buyer_one.id),
            Box::new(|i: &Value| counterparty(i) == w.buyer_one.id),
        ),
        (
            format!("counterpartyOrganizationId={}", w.other_seller.id),
            Box::new(|i: &Value| counterparty(i) == w.other_seller.id),
        ),
        (
            "currency=EUR".into(),
            Box::new(|i: &Value| i["currency"] == "EUR"),
        ),
        (
            "dueBefore=2031-03-01".into(),
            Box::new(|i: &Value| s(&i["dueDate"]).as_str() < "2031-03-01"),
        ),
        (
            "dueAfter=2031-03-01".into(),
            Box::new(|i: &Value| s(&i["dueDate"]).as_str() > "2031-03-01"),
        ),
        (
            "dueAfter=2031-02-15&dueBefore=2031-05-01".into(),
            Box::new(|i: &Value| {
                let d = s(&i["dueDate"]);
                d.as_str() > "2031-02-15" && d.as_str() < "2031-05-01"
            }),
        ),
        (
            "q=Design".into(),
            Box::new(|i: &Value| matches_text(i, "Design")),
        ),
        (
            "q=A-10".into(),
            Box::new(|i: &Value| matches_text(i, "A-10")),
        ),
        (
            "q=supplies".into(),
            Box::new(|i: &Value| matches_text(i, "supplies")),
        ),
        (
            "q=nothing-matches-this".into(),
            Box::new(|i: &Value| matches_text(i, "nothing-matches-this")),
        ),
        (
            "role=seller&currency=USD&status=DRAFT".into(),
            Box::new(|i: &Value| {
                i["sellerOrganizationId"] == me.id.as_str()
                    && i["currency"] == "USD"
                    && i["status"] == "DRAFT"
            }),
        ),
        (
            format!("role=buyer&counterpartyOrganizationId={}", w.buyer_two.id),
            Box::new(|_: &Value| false),
        ),
    ];
    for (query, pred) in &cases {
        let expected: Vec<Value> = all.iter().filter(|i| pred(i)).cloned().collect();
        if !query.contains("nothing") && !query.starts_with("role=buyer&") {
            assert!(
                !expected.is_empty() && expected.len() < all.len(),
                "{query}: a filter test that cannot fail"
            );
        }
        let got = me.all_invoices(query).await;
        assert_eq!(ids(&got), ids(&expected), "{query}");
        assert_eq!(
            got, expected,
            "{query}: listed invoices differ from the unfiltered list's"
        );
    }
    // The buyers see only what was submitted to them.
    for (buyer, conn) in [(&w.buyer_one, &w.conn_one), (&w.buyer_two, &w.conn_two)] {
        let theirs: Vec<Value> = all
            .iter()
            // All but the drafts were submitted at some point.
            .filter(|i| i["connectionId"] == conn.as_str() && i["status"] != "DRAFT")
            .cloned()
            .collect();
        let mut listed = buyer.all_invoices("").await;
        let mut expected = theirs.clone();
        listed.sort_by_key(|i| s(&i["id"]));
        expected.sort_by_key(|i| s(&i["id"]));
        assert_eq!(listed, expected);
    }
    // Nonsense filter values are refused, not ignored.
    for query in [
        "status=LOST",
        "role=broker",
        "sort=colour",
        "dueBefore=soon",
        "dueAfter=2031-13-01",
        "currency=ZZZ",
        "connectionId=abc",
        "counterpartyOrganizationId=abc",
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=%%%",
    ] {
        let r = me.get(&format!("/api/v1/invoices?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        r.err(400, "VALIDATION_ERROR");
    }
}

/// Whether `keys` is ordered one way or the other, all the way.
fn monotonic<T: PartialOrd + std::fmt::Debug>(keys: &[T]) -> bool {
    keys.windows(2).all(|w| w[0] <= w[1]) || keys.windows(2).all(|w| w[0] >= w[1])
}

#[tokio::test]
async fn sorting_orders_by_the_field_and_paging_walks_every_item_once() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let me = &w.me;
    let all = me.all_invoices("").await;
    let all_ids: HashSet<String> = ids(&all).into_iter().collect();

    for (query, key) in [
        ("sort=dueDate", "dueDate"),
        ("sort=createdAt", "createdAt"),
        ("", "createdAt"),
    ] {
        let list = me.all_invoices(query).await;
        assert_eq!(
            ids(&list).into_iter().collect::<HashSet<_>>(),
            all_ids,
            "{query}"
        );
        // Dates and RFC 3339 times, compared as instants.
        let keys: Vec<chrono::DateTime<chrono::FixedOffset>> = list
            .iter()
            .map(|i| {
                let v = s(&i[key]);
                chrono::DateTime::parse_from_rfc3339(&v)
                    .or_else(|_| chrono::DateTime::parse_from_rfc3339(&format!("{v}T00:00:00Z")))
                    .unwrap_or_else(|e| panic!("{key} `{v}`: {e}"))
            })
            .collect();
        assert!(monotonic(&keys), "{query}: not ordered by {key}: {keys:?}");
        let distinct: HashSet<_> = keys.iter().collect();
        assert!(distinct.len() > 2, "{query}: ordering untested");
    }
    let by_total = me.all_invoices("sort=total&currency=USD").await;
    let totals: Vec<Decimal> = by_total.iter().map(|i| dec(&i["total"])).collect();
    assert!(
        totals.len() > 3 && monotonic(&totals),
        "not ordered by total: {totals:?}"
    );

    // limit=2 and limit=1 walk the same items in the same order as one big page.
    for query in [
        "",
        "sort=dueDate",
        "sort=total",
        "role=seller",
        "status=SUBMITTED",
    ] {
        let whole = me.all_invoices(query).await;
        let path = format!("/api/v1/invoices?{query}");
        for limit in [1, 2, 3] {
            let paged = me.walk(&path, limit).await;
            let paged_ids = ids(&paged);
            let unique: HashSet<&String> = paged_ids.iter().collect();
            assert_eq!(
                unique.len(),
                paged_ids.len(),
                "{query} limit={limit}: duplicates"
            );
            assert_eq!(
                paged_ids,
                ids(&whole),
                "{query} limit={limit}: gaps or reordering"
            );
        }
    }
    // Default page size: 50.
    let first = me.get("/api/v1/invoices").await.ok();
    assert_eq!(first["data"].as_array().map(Vec::len), Some(10));
    assert_eq!(first["nextCursor"], Value::Null);

    // Items created while walking neither repeat nor hide the ones already there.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut created = 0;
    loop {
        let mut url = "/api/v1/invoices?limit=2".to_string();
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = me.get(&url).await.ok();
        seen.extend(ids(page["data"].as_array().unwrap()));
        if created < 3 {
            invoice(
                me,
                &w.conn_one,
                "USD",
                "2031-09-09",
                &format!("NEW-{created}"),
                "new",
                "New",
                "1.00",
            )
            .await;
            created += 1;
        }
        match &page["nextCursor"] {
            Value::String(c) => cursor = Some(c.clone()),
            _ => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an item was listed twice while paging"
    );
    assert!(
        all_ids.iter().all(|id| unique.contains(id)),
        "an item was skipped while paging"
    );

    // Connections page the same way.
    let conns = me.walk("/api/v1/connections", 200).await;
    assert_eq!(conns.len(), 3);
    assert_eq!(me.walk("/api/v1/connections", 1).await, conns);
}

/// Every other route taking a query refuses a nonsense value with 400
/// `VALIDATION_ERROR` saying what it expected (a status filter used to match
/// nothing instead), and a blank value means the parameter was left out.
#[tokio::test]
async fn every_query_refuses_nonsense_and_takes_blank_as_absent() {
    let app = spawn_app().await;
    let pair = app.trading_pair("100.00").await;
    let buyer = &pair.buyer;
    let balance = s(&buyer.balance("USD").await.expect("a USD balance")["id"]);
    let nowhere = "0190e0a0-0000-7000-8000-000000000001";
    let b = format!("/api/v1/treasury/me/balances/{balance}");
    let cases: Vec<(String, &str)> = vec![
        (
            "/api/v1/connections?status=LOST".into(),
            "unknown status `LOST`",
        ),
        (
            "/api/v1/payments?status=LOST".into(),
            "unknown status `LOST`",
        ),
        (
            "/api/v1/payments?invoiceId=abc".into(),
            "`abc` is not a valid invoice id",
        ),
        (
            "/api/v1/payments?from=soon".into(),
            "`soon` is not an RFC 3339 time",
        ),
        ("/api/v1/payments/export?format=xml".into(), "xml"),
        (
            "/api/v1/treasury/me/transactions?type=GIFT".into(),
            "unknown type `GIFT`",
        ),
        (
            "/api/v1/treasury/me/transactions?currency=ZZZ".into(),
            "ZZZ",
        ),
        (
            "/api/v1/treasury/me/transactions?to=later".into(),
            "`later` is not",
        ),
        (
            "/api/v1/treasury/me/transactions/export?format=pdf".into(),
            "pdf",
        ),
        (
            "/api/v1/treasury/me/withdrawals?status=LOST".into(),
            "unknown status `LOST`",
        ),
        (
            "/api/v1/treasury/me/refunds?limit=0".into(),
            "limit must be an integer from 1 to 200",
        ),
        (format!("{b}?asOf=soon"), "`soon` is not an RFC 3339 time"),
        (format!("{b}/changes?cursor=%25%25"), "cursor is not valid"),
        (
            format!("{b}/usage?interval=hour"),
            "unknown interval `hour`",
        ),
        (
            "/api/v1/settings/api-logs?status=teapot".into(),
            "status must be an HTTP status code",
        ),
        (
            "/api/v1/settings/api-logs?apiKeyId=abc".into(),
            "`abc` is not a valid API key id",
        ),
        ("/api/v1/settings/api-logs/export?format=xls".into(), "xls"),
        (
            "/api/v1/settings/webhooks?limit=500".into(),
            "limit must be",
        ),
        (
            format!("/api/v1/settings/webhooks/{nowhere}/deliveries?status=LOST"),
            "unknown status",
        ),
        ("/api/v1/storage?limit=ten".into(), "limit must be"),
    ];
    for (path, says) in &cases {
        let r = buyer.get(path).await;
        r.err(400, "VALIDATION_ERROR");
        let message = s(&r.json()["error"]["message"]);
        assert!(message.contains(says), "{path}: `{message}`");
    }
    for (path, says) in [
        (
            "/api/v1/admin/events?after=-1",
            "after must be a sequence number",
        ),
        ("/api/v1/admin/events?limit=0", "limit must be 1 to 10000"),
    ] {
        let r = app.admin.get(path).await;
        r.err(400, "VALIDATION_ERROR");
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }

    // Blank is absent: the same answer as without the parameter.
    for (blank, absent) in [
        ("/api/v1/connections?status=&limit=", "/api/v1/connections"),
        (
            "/api/v1/treasury/me/transactions?type=&from=&cursor=",
            "/api/v1/treasury/me/transactions",
        ),
        (
            "/api/v1/treasury/me/withdrawals?status=",
            "/api/v1/treasury/me/withdrawals",
        ),
    ] {
        let with_blank = buyer.get(blank).await.ok();
        assert_eq!(with_blank, buyer.get(absent).await.ok(), "{blank}");
        assert!(
            !with_blank["data"].as_array().unwrap().is_empty() || blank.contains("withdrawals"),
            "{blank}"
        );
    }
}
