//! Balances over time, with the test clock: `?asOf=` answers the figures as
//! they stood at each moment, `/changes` lists every movement with the figures
//! after it and its cause, `/summary` adds receivable and payable, `/usage`
//! buckets inflow, outflow and the closing balance.

use crate::harness::*;
use crate::support::*;
use rust_decimal::Decimal;
use serde_json::Value;

async fn as_of(org: &Org, balance: &str, at: &str) -> Value {
    let at = at.replace('+', "%2B");
    org.get(&format!("/api/v1/treasury/me/balances/{balance}?asOf={at}"))
        .await
        .ok()
}

#[track_caller]
fn figures_of(v: &Value) -> (Decimal, Decimal, Decimal, Decimal) {
    (
        dec(&v["total"]),
        dec(&v["reserved"]),
        dec(&v["collateral"]),
        dec(&v["available"]),
    )
}

fn four(
    total: &str,
    reserved: &str,
    collateral: &str,
    available: &str,
) -> (Decimal, Decimal, Decimal, Decimal) {
    (d(total), d(reserved), d(collateral), d(available))
}

/// Usage buckets with movement, as `(start, inflow, outflow, closing)`; the
/// quiet ones (if the server lists them) must carry the closing balance over.
fn usage_rows(v: &Value) -> Vec<(String, Decimal, Decimal, Decimal)> {
    let mut rows = Vec::new();
    let mut last_closing: Option<Decimal> = None;
    for b in v["data"].as_array().expect("usage data") {
        let row = (
            s(&b["start"]),
            dec(&b["inflow"]),
            dec(&b["outflow"]),
            dec(&b["closingBalance"]),
        );
        if row.1.is_zero() && row.2.is_zero() {
            assert_eq!(
                Some(row.3),
                last_closing,
                "a quiet bucket keeps the closing balance: {b}"
            );
            continue;
        }
        last_closing = Some(row.3);
        rows.push(row);
    }
    rows
}

fn row(
    start: &str,
    inflow: &str,
    outflow: &str,
    closing: &str,
) -> (String, Decimal, Decimal, Decimal) {
    (start.to_string(), d(inflow), d(outflow), d(closing))
}

#[tokio::test]
async fn as_of_changes_summary_and_usage_follow_the_clock() {
    let app = spawn_clock_app().await;
    // T0 Thursday 2030-01-10 09:00: A is funded.
    app.set_clock("2030-01-10T09:00:00Z").await;
    let a = app.create_org("Atlas").await;
    let b = app.create_org("Borealis").await;
    let conn = app.connect(&b, &a).await;
    let dep1 = deposit_ref(&app, &a, "USD", "1000.00", "opening").await;
    let usd = balance_id(&a, "USD").await;

    // T1 15:30: A approves a 400.00 invoice (reserve).
    app.set_clock("2030-01-10T15:30:00Z").await;
    let inv = submit_invoice(
        &b,
        invoice_body(
            &conn,
            "USD",
            vec![line("Ore", "1", "400.00", None)],
            "2030-02-01",
        ),
    )
    .await;
    approve(&a, &inv, None).await;

    // T2 next day 10:00: settled.
    app.set_clock("2030-01-11T10:00:00Z").await;
    let payment = settle(&a, &inv).await;
    assert_eq!(payment["status"], "COMPLETED");

    // T3 2030-01-12 08:00: a withdrawal of 100.00 is held, approved a minute later.
    app.set_clock("2030-01-12T08:00:00Z").await;
    let checker = a.key_with(&["treasury:approve"]).await;
    let w = submit_withdrawal(&a, "USD", "100.00").await.ok();
    let wid = s(&w["id"]);
    app.advance(60).await;
    decide(&checker, "withdrawals", &wid, "approve").await.ok();

    // T4 2030-01-14 12:00: 50.00 more, 200.00 set aside as collateral, and
    // a 120.00 invoice approved and left open.
    app.set_clock("2030-01-14T12:00:00Z").await;
    let dep2 = deposit_ref(&app, &a, "USD", "50.00", "top-up").await;
    app.advance(1).await;
    collateral(&app, &a, "USD", "200.00").await;
    app.advance(1).await;
    let open = submit_invoice(
        &b,
        invoice_body(
            &conn,
            "USD",
            vec![line("Ore", "1", "120.00", None)],
            "2030-02-01",
        ),
    )
    .await;
    approve(&a, &open, None).await;

    // Much later, the figures as they stood at each moment.
    app.set_clock("2030-03-01T00:00:00Z").await;
    let cases = [
        ("2030-01-10T08:59:59Z", four("0", "0", "0", "0")),
        ("2030-01-10T09:00:00Z", four("1000", "0", "0", "1000")),
        ("2030-01-10T15:29:59Z", four("1000", "0", "0", "1000")),
        ("2030-01-10T16:00:00Z", four("1000", "400", "0", "600")),
        ("2030-01-11T09:59:59Z", four("1000", "400", "0", "600")),
        ("2030-01-11T10:00:00Z", four("600", "0", "0", "600")),
        ("2030-01-12T08:00:30Z", four("600", "100", "0", "500")),
        ("2030-01-12T08:01:00Z", four("500", "0", "0", "500")),
        ("2030-01-13T23:59:59Z", four("500", "0", "0", "500")),
        ("2030-01-14T12:00:00Z", four("550", "0", "0", "550")),
        ("2030-01-14T12:00:01Z", four("550", "0", "200", "350")),
        ("2030-01-14T12:00:02Z", four("550", "120", "200", "230")),
        ("2030-02-01T00:00:00Z", four("550", "120", "200", "230")),
        // An offset other than Z names the same instant.
        ("2030-01-11T11:00:00+01:00", four("600", "0", "0", "600")),
        // A bare date is the start of that day (UTC).
        ("2030-01-11", four("1000", "400", "0", "600")),
    ];
    for (at, want) in cases {
        let v = as_of(&a, &usd, at).await;
        assert_eq!(figures_of(&v), want, "asOf {at}: {v}");
        assert_eq!(v["id"], usd.as_str());
        assert_eq!(v["currency"], "USD");
    }
    let now = a
        .get(&format!("/api/v1/treasury/me/balances/{usd}"))
        .await
        .ok();
    assert_eq!(figures_of(&now), four("550", "120", "200", "230"), "{now}");
    // The seller's balance opened with the settlement: nothing before it.
    let b_usd = balance_id(&b, "USD").await;
    assert_eq!(
        figures_of(&as_of(&b, &b_usd, "2030-01-11T09:59:59Z").await),
        four("0", "0", "0", "0")
    );
    assert_eq!(
        figures_of(&as_of(&b, &b_usd, "2030-01-11T10:00:00Z").await),
        four("400", "0", "0", "400")
    );
    a.get(&format!(
        "/api/v1/treasury/me/balances/{usd}?asOf=yesterday"
    ))
    .await
    .err(400, "VALIDATION_ERROR");
    // Another organization's balance is not there for A, as of any time.
    a.get(&format!(
        "/api/v1/treasury/me/balances/{b_usd}?asOf=2030-01-12"
    ))
    .await
    .err(404, "NOT_FOUND");
    a.get(&format!("/api/v1/treasury/{}/balances/{usd}", b.id))
        .await
        .err(404, "NOT_FOUND");

    // --- the change log: every movement, the figures after it, its cause ------
    let changes = a
        .walk(&format!("/api/v1/treasury/me/balances/{usd}/changes"), 3)
        .await;
    let pid = s(&payment["id"]);
    // kind, at, amount, totalAfter, reservedAfter, availableAfter, cause type, cause id
    type Change<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<String>,
    );
    let expected: Vec<Change> = vec![
        (
            "DEPOSIT",
            "2030-01-10T09:00:00",
            "1000.00",
            "1000.00",
            "0.00",
            "1000.00",
            "transaction",
            Some(s(&dep1["id"])),
        ),
        (
            "RESERVE",
            "2030-01-10T15:30:00",
            "400.00",
            "1000.00",
            "400.00",
            "600.00",
            "invoice",
            Some(inv.clone()),
        ),
        (
            "SETTLEMENT_OUT",
            "2030-01-11T10:00:00",
            "400.00",
            "600.00",
            "0.00",
            "600.00",
            "payment",
            Some(pid.clone()),
        ),
        (
            "RESERVE",
            "2030-01-12T08:00:00",
            "100.00",
            "600.00",
            "100.00",
            "500.00",
            "withdrawal",
            Some(wid.clone()),
        ),
        (
            "WITHDRAWAL",
            "2030-01-12T08:01:00",
            "100.00",
            "500.00",
            "0.00",
            "500.00",
            "withdrawal",
            Some(wid.clone()),
        ),
        (
            "DEPOSIT",
            "2030-01-14T12:00:00",
            "50.00",
            "550.00",
            "0.00",
            "550.00",
            "transaction",
            Some(s(&dep2["id"])),
        ),
        (
            "COLLATERAL",
            "2030-01-14T12:00:01",
            "200.00",
            "550.00",
            "0.00",
            "350.00",
            "operator",
            None,
        ),
        (
            "RESERVE",
            "2030-01-14T12:00:02",
            "120.00",
            "550.00",
            "120.00",
            "230.00",
            "invoice",
            Some(open.clone()),
        ),
    ];
    assert_eq!(
        changes.len(),
        expected.len(),
        "one entry per movement: {changes:#?}"
    );
    let mut last_seq = 0;
    for (ch, (kind, at, amount, total, reserved, available, cause, cause_id)) in
        changes.iter().zip(&expected)
    {
        assert_eq!(ch["kind"], *kind, "{ch}");
        assert!(s(&ch["at"]).starts_with(at), "at {at}: {ch}");
        assert_eq!(dec(&ch["amount"]), d(amount), "{ch}");
        assert_eq!(dec(&ch["totalAfter"]), d(total), "{ch}");
        assert_eq!(dec(&ch["reservedAfter"]), d(reserved), "{ch}");
        assert_eq!(dec(&ch["availableAfter"]), d(available), "{ch}");
        assert_eq!(ch["cause"]["type"], *cause, "{ch}");
        if let Some(id) = cause_id {
            assert_eq!(ch["cause"]["id"], id.as_str(), "{ch}");
        }
        let seq = ch["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "changes come in log order: {ch}");
        last_seq = seq;
        // asOf at a change's own moment gives that change's figures.
        let v = as_of(&a, &usd, &s(&ch["at"])).await;
        assert_eq!(dec(&v["total"]), d(total), "asOf {}: {v}", ch["at"]);
        assert_eq!(dec(&v["available"]), d(available), "asOf {}: {v}", ch["at"]);
    }

    // --- summary: receivable and payable per currency --------------------------
    let summary = a.get("/api/v1/treasury/me/balances/summary").await.ok();
    let usd_row = summary["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["currency"] == "USD"))
        .unwrap_or_else(|| panic!("no USD row: {summary}"))
        .clone();
    assert_eq!(dec(&usd_row["total"]), d("550"), "{usd_row}");
    assert_eq!(dec(&usd_row["reserved"]), d("120"), "{usd_row}");
    assert_eq!(dec(&usd_row["available"]), d("230"), "{usd_row}");
    assert_eq!(
        dec(&usd_row["payable"]),
        d("120"),
        "A owes the open approved invoice: {usd_row}"
    );
    assert_eq!(dec(&usd_row["receivable"]), d("0"), "{usd_row}");
    let summary = b.get("/api/v1/treasury/me/balances/summary").await.ok();
    let usd_row = summary["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["currency"] == "USD"))
        .unwrap_or_else(|| panic!("no USD row: {summary}"))
        .clone();
    assert_eq!(dec(&usd_row["total"]), d("400"), "{usd_row}");
    assert_eq!(
        dec(&usd_row["receivable"]),
        d("120"),
        "B is owed the open approved invoice: {usd_row}"
    );
    assert_eq!(dec(&usd_row["payable"]), d("0"), "{usd_row}");
    assert_eq!(
        a.get(&format!("/api/v1/treasury/{}/balances/summary", a.id))
            .await
            .ok(),
        a.get("/api/v1/treasury/me/balances/summary").await.ok(),
        "`me` and the own id are the same"
    );
    a.get(&format!("/api/v1/treasury/{}/balances/summary", b.id))
        .await
        .err(404, "NOT_FOUND");

    // --- usage: day, week, month --------------------------------------------------
    let usage = |q: &str| {
        let a = a.clone();
        let path = format!("/api/v1/treasury/me/balances/{usd}/usage?{q}");
        async move { a.get(&path).await.ok() }
    };
    let day = usage("interval=day").await;
    assert_eq!(
        usage_rows(&day),
        vec![
            row("2030-01-10", "1000", "0", "1000"),
            row("2030-01-11", "0", "400", "600"),
            row("2030-01-12", "0", "100", "500"),
            row("2030-01-14", "50", "0", "550"),
        ],
        "{day}"
    );
    let week = usage("interval=week").await;
    assert_eq!(
        usage_rows(&week),
        vec![
            row("2030-01-07", "1000", "500", "500"),
            row("2030-01-14", "50", "0", "550")
        ],
        "weeks start on Monday: {week}"
    );
    let month = usage("interval=month").await;
    assert_eq!(
        usage_rows(&month),
        vec![row("2030-01-01", "1050", "500", "550")],
        "{month}"
    );
    let window = usage("interval=day&from=2030-01-11&to=2030-01-13").await;
    assert_eq!(
        usage_rows(&window),
        vec![
            row("2030-01-11", "0", "400", "600"),
            row("2030-01-12", "0", "100", "500")
        ],
        "from inclusive, to exclusive: {window}"
    );
    let seller_day = b
        .get(&format!(
            "/api/v1/treasury/me/balances/{b_usd}/usage?interval=day"
        ))
        .await
        .ok();
    assert_eq!(
        usage_rows(&seller_day),
        vec![row("2030-01-11", "400", "0", "400")],
        "{seller_day}"
    );
    a.get(&format!(
        "/api/v1/treasury/me/balances/{usd}/usage?interval=hour"
    ))
    .await
    .err(400, "VALIDATION_ERROR");

    // Transactions carry the clock's times too, and filter by them.
    let txs = transactions(&a, "from=2030-01-11&to=2030-01-13").await;
    let kinds: Vec<&str> = txs.iter().filter_map(|t| t["type"].as_str()).collect();
    assert_eq!(kinds, ["SETTLEMENT_OUT", "WITHDRAWAL"], "{txs:?}");
}
