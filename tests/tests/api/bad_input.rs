//! Bad input on every POST, PATCH and PUT: malformed JSON, wrong types,
//! missing fields, amounts with too many decimals, unknown currencies,
//! oversized bodies. Each is a documented 4xx with the error shape, never a
//! 500, and the log does not move. The valid body of each route is then
//! accepted, so each refusal was about the input alone.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A copy of `v` with the field at `pointer` replaced.
fn with(v: &Value, pointer: &str, value: Value) -> Value {
    let mut out = v.clone();
    *out.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {v}")) = value;
    out
}

/// A copy of `v` without the field at `pointer`.
fn without(v: &Value, pointer: &str) -> Value {
    let mut v = v.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = if parent.is_empty() {
        &mut v
    } else {
        v.pointer_mut(parent).expect("parent")
    };
    parent
        .as_object_mut()
        .expect("object")
        .remove(key)
        .unwrap_or_else(|| panic!("no {pointer}"));
    v
}

/// The ways a money field can be wrong.
fn bad_money(v: &Value, pointer: &str, too_precise: &str) -> Vec<(String, Value)> {
    vec![
        (
            format!("{pointer} as a JSON number"),
            with(v, pointer, json!(12.5)),
        ),
        (
            format!("{pointer} with extra decimals"),
            with(v, pointer, json!(too_precise)),
        ),
        (
            format!("{pointer} negative"),
            with(v, pointer, json!("-1.00")),
        ),
        (
            format!("{pointer} not a number"),
            with(v, pointer, json!("ten")),
        ),
        (format!("{pointer} empty"), with(v, pointer, json!(""))),
        (
            format!("{pointer} exponent"),
            with(v, pointer, json!("1e3")),
        ),
    ]
}

fn bad_currency(v: &Value, pointer: &str) -> Vec<(String, Value)> {
    vec![
        (format!("{pointer} unknown"), with(v, pointer, json!("ZZZ"))),
        (
            format!("{pointer} not a code"),
            with(v, pointer, json!("DOLLARS")),
        ),
        (format!("{pointer} a number"), with(v, pointer, json!(840))),
    ]
}

struct Target {
    api: Api,
    method: Method,
    path: String,
    valid: Value,
    /// Bodies that must each be refused with 400.
    bad: Vec<(String, Value)>,
    /// Whether the valid body is sent at the end and must be accepted.
    try_valid: bool,
}

impl Target {
    fn new(api: &Api, method: Method, path: String, valid: Value) -> Target {
        Target {
            api: api.clone(),
            method,
            path,
            valid,
            bad: Vec::new(),
            try_valid: true,
        }
    }

    /// The valid body has effects outside this test's control (a delivery).
    fn refusals_only(mut self) -> Self {
        self.try_valid = false;
        self
    }

    fn missing(mut self, fields: &[&str]) -> Self {
        for f in fields {
            let b = without(&self.valid, f);
            self.bad.push((format!("missing {f}"), b));
        }
        self
    }

    fn bad(mut self, cases: Vec<(String, Value)>) -> Self {
        self.bad.extend(cases);
        self
    }

    fn case(mut self, what: &str, body: Value) -> Self {
        self.bad.push((what.to_owned(), body));
        self
    }

    async fn raw(&self, content_type: &str, bytes: Vec<u8>) -> Resp {
        self.api
            .send(
                self.method.clone(),
                &self.path,
                &[("content-type", content_type)],
                Some(bytes),
            )
            .await
    }

    /// Every bad body, plus the ways any body can be broken.
    async fn check_refusals(&self) {
        let what = |w: &str| format!("{} {}: {w}", self.method, self.path);
        for (w, body) in &self.bad {
            let mut body = body.clone();
            body["requestId"] = json!(rid());
            let r = self
                .api
                .send_json(self.method.clone(), &self.path, &body)
                .await;
            assert_eq!(r.status, 400, "{}: {}", what(w), r.text());
            r.err(400, "VALIDATION_ERROR");
        }
        let nested = format!(r#"{{"memo": {}"#, "[".repeat(100_000));
        for (w, raw) in [
            ("malformed JSON", br#"{"requestId": "#.to_vec()),
            ("trailing garbage", br#"{} {"#.to_vec()),
            ("an array", b"[]".to_vec()),
            ("a string", br#""hello""#.to_vec()),
            ("null", b"null".to_vec()),
            ("invalid UTF-8", b"{\"memo\": \"\xff\xfe\"}".to_vec()),
            ("nested 100 000 deep", nested.into_bytes()),
        ] {
            let r = self.raw("application/json", raw).await;
            assert_eq!(r.status, 400, "{}: {}", what(w), r.text());
            r.err(400, "VALIDATION_ERROR");
        }
        let mut unknown = self.valid.clone();
        unknown["requestId"] = json!(rid());
        unknown["colour"] = json!("blue");
        let r = self
            .api
            .send_json(self.method.clone(), &self.path, &unknown)
            .await;
        assert_eq!(r.status, 400, "{}: {}", what("unknown field"), r.text());
        r.err(400, "VALIDATION_ERROR");
        let mut bad_key = self.valid.clone();
        bad_key["requestId"] = json!("not-a-uuid");
        let r = self
            .api
            .send_json(self.method.clone(), &self.path, &bad_key)
            .await;
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            what("requestId not a UUID"),
            r.text()
        );
        r.err(400, "VALIDATION_ERROR");

        // Over 1 MiB: refused for its size, whatever it holds.
        let mut huge = self.valid.clone();
        huge["requestId"] = json!(rid());
        huge["padding"] = json!("x".repeat(1024 * 1024 + 1024));
        let r = self
            .raw("application/json", serde_json::to_vec(&huge).unwrap())
            .await;
        assert_eq!(r.status, 413, "{}: {}", what("oversized"), r.text());
        r.err(413, "PAYLOAD_TOO_LARGE");

        // Not JSON at all.
        let r = self
            .raw("text/plain", serde_json::to_vec(&self.valid).unwrap())
            .await;
        r.client_error();
    }

    async fn check_valid(&self) {
        if !self.try_valid {
            return;
        }
        let mut body = self.valid.clone();
        body["requestId"] = json!(rid());
        let r = self
            .api
            .send_json(self.method.clone(), &self.path, &body)
            .await;
        assert_eq!(
            r.status,
            200,
            "{} {}: the valid body: {}",
            self.method,
            self.path,
            r.text()
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_documented_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let third = app.create_org("Third").await;
    let draft = pair.draft("10.00").await;
    let draft_id = s(&draft["id"]);
    let line_id = s(&draft["lineItems"][0]["id"]);
    let mut to_act = Vec::new();
    for _ in 0..6 {
        to_act.push(s(&pair.submitted("10.00").await["id"]));
    }
    let info = s(&pair.submitted("10.00").await["id"]);
    buyer
        .act(&info, "request-info", json!({ "question": "?" }))
        .await
        .ok();
    let approved = s(&pair.approved("10.00").await["id"]);
    let to_submit = s(&pair.draft("10.00").await["id"]);
    let to_cancel = s(&pair.draft("10.00").await["id"]);
    let to_settle = s(&pair.approved("10.00").await["id"]);
    let org_path = format!("/api/v1/admin/organizations/{}", buyer.id);
    let inv_path = |id: &str, action: &str| format!("/api/v1/invoices/{id}/{action}");

    let invoice = json!({
        "connectionId": pair.conn,
        "number": "INV-BAD-1",
        "currency": "USD",
        "issueDate": "2030-01-01",
        "dueDate": DUE,
        "memo": "m",
        "lineItems": [line("Work", "1.5", "0.99", Some("7.5"))],
        "attachments": [],
        "submit": false,
    });
    let mut jpy = invoice.clone();
    jpy["currency"] = json!("JPY");
    jpy["lineItems"][0]["unitPrice"] = json!("1.5");
    let mut kwd = invoice.clone();
    kwd["currency"] = json!("KWD");
    kwd["lineItems"][0]["unitPrice"] = json!("1.0005");
    let l = "/lineItems/0";

    let targets = vec![
        Target::new(&app.admin, Method::POST, "/api/v1/admin/organizations".into(), json!({ "name": "New Co" }))
            .missing(&["/name"])
            .case("name a number", json!({ "name": 7 }))
            .case("name with a newline", json!({ "name": "New\nCo" }))
            .case("name with a left-to-right isolate", json!({ "name": "New \u{2066}Co" })),
        Target::new(
            &app.admin,
            Method::POST,
            format!("{org_path}/deposits"),
            json!({ "currency": "USD", "amount": "10.00", "reference": "wire" }),
        )
        .missing(&["/currency", "/amount"])
        .bad(bad_money(&json!({ "currency": "USD", "amount": "10.00", "reference": "wire" }), "/amount", "1.005"))
        .bad(bad_currency(&json!({ "currency": "USD", "amount": "10.00", "reference": "wire" }), "/currency"))
        .case("zero amount", json!({ "currency": "USD", "amount": "0.00", "reference": "wire" }))
        .case("JPY with decimals", json!({ "currency": "JPY", "amount": "10.5", "reference": "wire" }))
        .case("KWD with four decimals", json!({ "currency": "KWD", "amount": "1.0005", "reference": "wire" })),
        Target::new(&app.admin, Method::PUT, format!("{org_path}/balances/USD/collateral"), json!({ "amount": "1.00" }))
            .missing(&["/amount"])
            .bad(bad_money(&json!({ "amount": "1.00" }), "/amount", "1.001")),
        Target::new(&app.admin, Method::POST, format!("{org_path}/balances/EUR/freeze"), json!({ "reason": "audit" }))
            .missing(&["/reason"])
            .case("reason a number", json!({ "reason": 1 })),
        Target::new(
            seller,
            Method::POST,
            "/api/v1/connections".into(),
            json!({ "counterpartyOrganizationId": third.id, "role": "SELLER" }),
        )
        .missing(&["/counterpartyOrganizationId", "/role"])
        .case("unknown role", json!({ "counterpartyOrganizationId": third.id, "role": "BROKER" }))
        .case("id not a uuid", json!({ "counterpartyOrganizationId": "acme", "role": "SELLER" }))
        .case("id a number", json!({ "counterpartyOrganizationId": 12, "role": "SELLER" })),
        Target::new(seller, Method::POST, "/api/v1/invoices".into(), invoice.clone())
            .missing(&["/connectionId", "/currency", "/dueDate", "/lineItems"])
            .missing(&["/lineItems/0/description", "/lineItems/0/quantity", "/lineItems/0/unitPrice"])
            .bad(bad_money(&invoice, &format!("{l}/unitPrice"), "0.999"))
            .bad(bad_currency(&invoice, "/currency"))
            .case("JPY unit price with decimals", jpy)
            .case("KWD unit price with four decimals", kwd)
            .case("quantity as a number", with(&invoice, &format!("{l}/quantity"), json!(2)))
            .case("quantity zero", with(&invoice, &format!("{l}/quantity"), json!("0")))
            .case("quantity negative", with(&invoice, &format!("{l}/quantity"), json!("-1")))
            .case("quantity with 7 decimals", with(&invoice, &format!("{l}/quantity"), json!("1.0000001")))
            .case("tax rate over 100", with(&invoice, &format!("{l}/taxRate"), json!("100.5")))
            .case("tax rate negative", with(&invoice, &format!("{l}/taxRate"), json!("-1")))
            .case("tax rate a number", with(&invoice, &format!("{l}/taxRate"), json!(7.5)))
            .case("lineItems an object", with(&invoice, "/lineItems", json!({ "a": 1 })))
            .case("lineItems entry a string", with(&invoice, "/lineItems", json!(["Work"])))
            .case("dueDate not a date", with(&invoice, "/dueDate", json!("30/06/2031")))
            .case("dueDate impossible", with(&invoice, "/dueDate", json!("2031-02-30")))
            .case("dueDate before issueDate", with(&invoice, "/dueDate", json!("2029-12-31")))
            .case("dueDate with a five-digit year", with(&invoice, "/dueDate", json!("+99999-01-01")))
            .case("dueDate with a one-digit month", with(&invoice, "/dueDate", json!("2031-6-30")))
            .case("issueDate with a time", with(&invoice, "/issueDate", json!("2030-01-01T00:00:00Z")))
            .case("memo with a NUL", with(&invoice, "/memo", json!("a\u{0}b")))
            .case("memo with a right-to-left override", with(&invoice, "/memo", json!("pay \u{202E}0001")))
            .case("memo with an escape sequence", with(&invoice, "/memo", json!("\u{1b}[2J")))
            .case("description with a bell", with(&invoice, &format!("{l}/description"), json!("Work\u{7}")))
            .case("number with a newline", with(&invoice, "/number", json!("INV\n1")))
            .case("connectionId not a uuid", with(&invoice, "/connectionId", json!("conn-1")))
            .case("connectionId a number", with(&invoice, "/connectionId", json!(1)))
            .case("submit a string", with(&invoice, "/submit", json!("yes")))
            .case("number empty", with(&invoice, "/number", json!("")))
            .case("memo a number", with(&invoice, "/memo", json!(5)))
            .case("attachments not ids", with(&invoice, "/attachments", json!(["file.pdf"])))
            .case(
                "a line beyond any amount",
                with(&invoice, l, line("Everything", "1000000000", "999999999999999.99", Some("100"))),
            )
            .case("unit price beyond any amount", with(&invoice, &format!("{l}/unitPrice"), json!("1".repeat(40))))
            .case("number of 65 characters", with(&invoice, "/number", json!("N".repeat(65))))
            .case("memo of 2001 characters", with(&invoice, "/memo", json!("m".repeat(2001)))),
        Target::new(
            seller,
            Method::PATCH,
            format!("/api/v1/invoices/{draft_id}"),
            json!({ "memo": "better", "dueDate": DUE }),
        )
        .case("dueDate not a date", json!({ "dueDate": "tomorrow" }))
        .case("expectedVersion a string", json!({ "expectedVersion": "one" }))
        .case("lineItems with a bad price", json!({ "lineItems": [line("Work", "1", "5.001", None)] }))
        .case("lineItems with a numeric price", json!({ "lineItems": [{ "description": "Work", "quantity": "1", "unitPrice": 5 }] }))
        .case("lineItems missing a quantity", json!({ "lineItems": [{ "description": "Work", "unitPrice": "5.00" }] }))
        .case("number a number", json!({ "number": 12 })),
        Target::new(
            seller,
            Method::POST,
            inv_path(&draft_id, "line-items"),
            line("More work", "3", "2.50", Some("10")),
        )
        .missing(&["/description", "/quantity", "/unitPrice"])
        .bad(bad_money(&line("More work", "3", "2.50", Some("10")), "/unitPrice", "2.505"))
        .case("quantity as a number", json!({ "description": "w", "quantity": 1, "unitPrice": "1.00" }))
        .case("tax rate over 100", line("w", "1", "1.00", Some("101")))
        .case("empty description", line("", "1", "1.00", None)),
        Target::new(
            seller,
            Method::PATCH,
            format!("{}/{line_id}", inv_path(&draft_id, "line-items")),
            json!({ "quantity": "2", "unitPrice": "3.00" }),
        )
        .bad(bad_money(&json!({ "quantity": "2", "unitPrice": "3.00" }), "/unitPrice", "3.001"))
        .case("quantity zero", json!({ "quantity": "0" }))
        .case("quantity a number", json!({ "quantity": 3 })),
        Target::new(
            buyer,
            Method::POST,
            inv_path(&to_act[0], "approve"),
            json!({ "adjustedAmount": "8.00", "reason": "partial delivery" }),
        )
        .bad(bad_money(&json!({ "adjustedAmount": "8.00", "reason": "partial delivery" }), "/adjustedAmount", "8.001"))
        .missing(&["/reason"])
        .case("adjusted zero", json!({ "adjustedAmount": "0.00", "reason": "r" }))
        .case("adjusted above the total", json!({ "adjustedAmount": "10.01", "reason": "r" }))
        .case("adjusted equal to the total", json!({ "adjustedAmount": "10.00", "reason": "r" })),
        Target::new(buyer, Method::POST, inv_path(&to_act[1], "dispute"), json!({ "reason": "wrong" }))
            .missing(&["/reason"])
            .case("reason blank", json!({ "reason": "  " }))
            .case("reason a number", json!({ "reason": 3 })),
        Target::new(buyer, Method::POST, inv_path(&to_act[2], "request-info"), json!({ "question": "PO?" }))
            .missing(&["/question"]),
        Target::new(seller, Method::POST, inv_path(&info, "respond-info"), json!({ "message": "PO-1" }))
            .missing(&["/message"]),
        Target::new(buyer, Method::POST, inv_path(&approved, "request-cancellation"), json!({ "reason": "stop" }))
            .missing(&["/reason"]),
        Target::new(seller, Method::POST, inv_path(&to_submit, "submit"), json!({})),
        Target::new(seller, Method::POST, inv_path(&to_cancel, "cancel"), json!({ "reason": "duplicate" }))
            .case("reason a number", json!({ "reason": 7 }))
            .case("reason a list", json!({ "reason": ["a"] })),
        Target::new(
            buyer,
            Method::POST,
            "/api/v1/invoices/bulk-approve".into(),
            json!({ "invoiceIds": [to_act[4]] }),
        )
        .missing(&["/invoiceIds"])
        .case("ids a string", json!({ "invoiceIds": to_act[4] }))
        .case("an id not a uuid", json!({ "invoiceIds": ["inv-1"] }))
        .case("no ids", json!({ "invoiceIds": [] }))
        .case(
            "501 ids",
            json!({ "invoiceIds": (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect::<Vec<_>>() }),
        ),
        Target::new(
            buyer,
            Method::POST,
            "/api/v1/invoices/bulk-approve/preview".into(),
            json!({ "invoiceIds": [to_act[5]] }),
        )
        .missing(&["/invoiceIds"]),
        Target::new(buyer, Method::POST, "/api/v1/payments/settle".into(), json!({ "invoiceId": to_settle }))
            .missing(&["/invoiceId"])
            .case("id not a uuid", json!({ "invoiceId": "x" }))
            .case("id a number", json!({ "invoiceId": 5 })),
        Target::new(
            seller,
            Method::POST,
            "/api/v1/settings/api-keys".into(),
            json!({ "name": "ci", "permissions": ["invoices:read"] }),
        )
        .missing(&["/name", "/permissions"])
        .case("unknown permission", json!({ "name": "ci", "permissions": ["invoices:delete"] }))
        .case("permissions a string", json!({ "name": "ci", "permissions": "*" }))
        .case("expiresAt not a time", json!({ "name": "ci", "permissions": ["*"], "expiresAt": "soon" })),
        Target::new(
            buyer,
            Method::POST,
            "/api/v1/treasury/me/withdrawals".into(),
            json!({ "currency": "USD", "amount": "1.00", "destination": { "iban": "DE89370400440532013000" } }),
        )
        .missing(&["/currency", "/amount"])
        .bad(bad_money(
            &json!({ "currency": "USD", "amount": "1.00", "destination": { "iban": "DE89370400440532013000" } }),
            "/amount",
            "1.001",
        ))
        .bad(bad_currency(
            &json!({ "currency": "USD", "amount": "1.00", "destination": { "iban": "DE89370400440532013000" } }),
            "/currency",
        )),
    ];

    let before = app.log_state().await;
    for t in &targets {
        t.check_refusals().await;
    }
    assert_eq!(
        app.log_state().await,
        before,
        "refused input wrote to the log"
    );
    assert_eq!(seller.invoice(&draft_id).await.ok(), draft);
    for t in &targets {
        t.check_valid().await;
    }
}

/// Line figures and formatting: amount = quantity × unitPrice rounded half
/// away from zero to the currency's minor units, tax on the rounded amount,
/// totals summed from lines, every amount written with exactly the minor units.
#[tokio::test]
async fn money_is_rounded_per_line_and_written_with_the_currencys_minor_units() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let create = |currency: &str, lines: Vec<Value>| json!({ "connectionId": pair.conn, "currency": currency, "dueDate": DUE, "lineItems": lines });
    let usd = pair
        .seller
        .create_invoice(create(
            "USD",
            vec![
                line("Rounded", "1.5", "0.99", Some("50")),
                line("Plain", "3", "4.5", None),
                line("Down", "1", "0.01", Some("7.5")),
            ],
        ))
        .await;
    let lines = &usd["lineItems"];
    assert_eq!(lines[0]["amount"], "1.49", "1.5 × 0.99 = 1.485 → 1.49");
    assert_eq!(lines[0]["taxAmount"], "0.75", "1.49 × 50 % = 0.745 → 0.75");
    assert_eq!(lines[0]["unitPrice"], "0.99");
    assert_eq!(lines[1]["unitPrice"], "4.50");
    assert_eq!(lines[1]["amount"], "13.50");
    assert_eq!(lines[1]["taxAmount"], "0.00");
    assert_eq!(lines[2]["amount"], "0.01");
    assert_eq!(
        lines[2]["taxAmount"], "0.00",
        "0.01 × 7.5 % = 0.00075 → 0.00"
    );
    assert_eq!(usd["subtotal"], "15.00");
    assert_eq!(usd["taxTotal"], "0.75");
    assert_eq!(usd["total"], "15.75");

    let jpy = pair
        .seller
        .create_invoice(create(
            "JPY",
            vec![
                line("Yen", "3", "333", Some("10")),
                line("Half", "0.5", "5", None),
            ],
        ))
        .await;
    assert_eq!(jpy["lineItems"][0]["amount"], "999");
    assert_eq!(jpy["lineItems"][0]["taxAmount"], "100", "99.9 → 100");
    assert_eq!(
        jpy["lineItems"][1]["amount"], "3",
        "2.5 → 3, half away from zero"
    );
    assert_eq!(jpy["total"], "1102");

    let kwd = pair
        .seller
        .create_invoice(create(
            "KWD",
            vec![
                line("Dinar", "1", "3.765", Some("10")),
                line("Round", "1", "2", None),
            ],
        ))
        .await;
    assert_eq!(kwd["lineItems"][0]["amount"], "3.765");
    assert_eq!(kwd["lineItems"][0]["taxAmount"], "0.377", "0.3765 → 0.377");
    assert_eq!(kwd["lineItems"][1]["unitPrice"], "2.000");
    assert_eq!(kwd["total"], "6.142");
}

/// The remaining POST and PATCH routes: connections, bodiless invoice actions,
/// the other bulk calls, payments, treasury, webhooks and the operator.
#[tokio::test]
async fn bad_input_on_the_remaining_routes_is_refused_the_same_way() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let id = |v: Value| s(&v["id"]);
    let third = app.create_org("Third").await;
    let fourth = app.create_org("Fourth").await;
    let conn_to_accept = id(third
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": seller.id, "role": "BUYER" }),
        )
        .await
        .ok());
    let conn_to_reject = id(fourth
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": seller.id, "role": "BUYER" }),
        )
        .await
        .ok());
    let mut cancellation = Vec::new();
    for _ in 0..2 {
        let i = id(pair.approved("10.00").await);
        buyer
            .act(&i, "request-cancellation", json!({ "reason": "r" }))
            .await
            .ok();
        cancellation.push(i);
    }
    let settled = id(pair.approved("10.00").await);
    assert_eq!(buyer.act(&settled, "settle", json!({})).await.status, 200);
    let archived = id(pair.approved("10.00").await);
    assert_eq!(buyer.act(&archived, "settle", json!({})).await.status, 200);
    seller.act(&archived, "archive", json!({})).await.ok();
    let to_settle = id(pair.approved("10.00").await);
    let to_bulk_settle = id(pair.approved("10.00").await);
    let draft = id(pair.draft("10.00").await);
    let cancelled = id(pair.submitted("10.00").await);
    seller
        .act(&cancelled, "cancel", json!({ "reason": "r" }))
        .await
        .ok();
    let bulk_archived = id(pair.approved("10.00").await);
    assert_eq!(
        buyer.act(&bulk_archived, "settle", json!({})).await.status,
        200
    );
    seller.act(&bulk_archived, "archive", json!({})).await.ok();

    let destination = json!({ "iban": "DE89370400440532013000" });
    let mut withdrawals = Vec::new();
    for _ in 0..3 {
        withdrawals.push(id(buyer
            .post(
                "/api/v1/treasury/me/withdrawals",
                json!({ "currency": "USD", "amount": "1.00", "destination": destination }),
            )
            .await
            .ok()));
    }
    let approver = buyer.key_with(&["treasury:approve"]).await;
    let settlement_tx = seller
        .walk("/api/v1/treasury/me/transactions?type=SETTLEMENT_IN", 50)
        .await;
    let settlement_tx = s(&settlement_tx[0]["id"]);
    let mut refunds = Vec::new();
    for _ in 0..2 {
        refunds.push(id(seller
            .post(
                "/api/v1/treasury/me/refunds",
                json!({ "transactionId": settlement_tx, "amount": "1.00", "reason": "r" }),
            )
            .await
            .ok()));
    }
    let endpoint = id(seller
        .post(
            "/api/v1/settings/webhooks",
            json!({ "url": "https://93.184.216.34/hooks/a", "events": ["invoice.*"] }),
        )
        .await
        .ok());
    app.admin
        .post(
            &format!(
                "/api/v1/admin/organizations/{}/balances/EUR/freeze",
                buyer.id
            ),
            json!({ "reason": "audit" }),
        )
        .await
        .ok();

    let inv = |i: &str, action: &str| format!("/api/v1/invoices/{i}/{action}");
    let w = |i: &str, action: &str| format!("/api/v1/treasury/me/withdrawals/{i}/{action}");
    let r = |i: &str, action: &str| format!("/api/v1/treasury/me/refunds/{i}/{action}");
    let post = Method::POST;
    let bulk = |ids: &[&String]| json!({ "invoiceIds": ids });
    let refund = json!({ "transactionId": settlement_tx, "amount": "1.00", "reason": "goodwill" });
    let hook = json!({ "url": "https://93.184.216.34/hooks/b", "events": ["payment.settled"] });
    let targets = vec![
        Target::new(
            seller,
            post.clone(),
            format!("/api/v1/connections/{conn_to_accept}/accept"),
            json!({}),
        ),
        Target::new(
            seller,
            post.clone(),
            format!("/api/v1/connections/{conn_to_reject}/reject"),
            json!({}),
        ),
        Target::new(
            seller,
            post.clone(),
            inv(&cancellation[0], "accept-cancellation"),
            json!({}),
        ),
        Target::new(
            seller,
            post.clone(),
            inv(&cancellation[1], "reject-cancellation"),
            json!({}),
        ),
        Target::new(buyer, post.clone(), inv(&settled, "archive"), json!({})),
        Target::new(buyer, post.clone(), inv(&archived, "restore"), json!({})),
        Target::new(buyer, post.clone(), inv(&to_settle, "settle"), json!({})),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-cancel".into(),
            bulk(&[&draft]),
        )
        .missing(&["/invoiceIds"])
        .case("ids a number", json!({ "invoiceIds": 5 }))
        .case(
            "reason a number",
            json!({ "invoiceIds": [draft], "reason": 5 }),
        ),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-cancel/preview".into(),
            bulk(&[&draft]),
        )
        .missing(&["/invoiceIds"]),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-archive".into(),
            bulk(&[&cancelled]),
        )
        .missing(&["/invoiceIds"])
        .case("an id not a uuid", json!({ "invoiceIds": ["nope"] })),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-archive/preview".into(),
            bulk(&[&cancelled]),
        )
        .missing(&["/invoiceIds"]),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-restore".into(),
            bulk(&[&bulk_archived]),
        )
        .missing(&["/invoiceIds"])
        .case("no ids", json!({ "invoiceIds": [] })),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/invoices/bulk-restore/preview".into(),
            bulk(&[&bulk_archived]),
        )
        .missing(&["/invoiceIds"]),
        Target::new(
            buyer,
            post.clone(),
            "/api/v1/payments/bulk-settle".into(),
            bulk(&[&to_bulk_settle]),
        )
        .missing(&["/invoiceIds"])
        .case("an id not a uuid", json!({ "invoiceIds": ["x"] }))
        .case("no ids", json!({ "invoiceIds": [] })),
        Target::new(
            buyer,
            post.clone(),
            "/api/v1/payments/settle-all-due".into(),
            json!({ "asOf": "2020-01-01" }),
        )
        .case("asOf not a date", json!({ "asOf": "yesterday" }))
        .case("asOf a number", json!({ "asOf": 20200101 })),
        Target::new(
            buyer,
            post.clone(),
            "/api/v1/payments/retry-failed".into(),
            json!({ "paymentIds": [] }),
        )
        .case("an id not a uuid", json!({ "paymentIds": ["p-1"] }))
        .case("ids a string", json!({ "paymentIds": "all" })),
        Target::new(
            &approver,
            post.clone(),
            w(&withdrawals[0], "approve"),
            json!({}),
        ),
        Target::new(
            &approver,
            post.clone(),
            w(&withdrawals[1], "reject"),
            json!({ "reason": "unknown IBAN" }),
        )
        .missing(&["/reason"])
        .case("reason a number", json!({ "reason": 1 })),
        Target::new(buyer, post.clone(), w(&withdrawals[2], "cancel"), json!({})),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/treasury/me/refunds".into(),
            refund.clone(),
        )
        .missing(&["/transactionId", "/amount", "/reason"])
        .bad(bad_money(&refund, "/amount", "1.001"))
        .case(
            "transactionId not a uuid",
            with(&refund, "/transactionId", json!("tx")),
        ),
        Target::new(seller, post.clone(), r(&refunds[0], "approve"), json!({})),
        Target::new(
            seller,
            post.clone(),
            r(&refunds[1], "reject"),
            json!({ "reason": "duplicate" }),
        )
        .missing(&["/reason"]),
        Target::new(
            seller,
            post.clone(),
            "/api/v1/settings/webhooks".into(),
            hook.clone(),
        )
        .missing(&["/url", "/events"])
        .case("url not a url", with(&hook, "/url", json!("not a url")))
        .case("url a number", with(&hook, "/url", json!(443)))
        .case("events a string", with(&hook, "/events", json!("*")))
        .case(
            "an unknown event",
            with(&hook, "/events", json!(["invoice.exploded"])),
        ),
        Target::new(
            seller,
            Method::PATCH,
            format!("/api/v1/settings/webhooks/{endpoint}"),
            json!({ "description": "ERP", "enabled": false }),
        )
        .case("enabled a string", json!({ "enabled": "no" }))
        .case("url not a url", json!({ "url": "ftp:/x" }))
        .case(
            "an unknown event",
            json!({ "events": ["nothing.happened"] }),
        ),
        Target::new(
            seller,
            post.clone(),
            format!("/api/v1/settings/webhooks/{endpoint}/rotate-secret"),
            json!({}),
        ),
        Target::new(
            seller,
            post.clone(),
            format!("/api/v1/settings/webhooks/{endpoint}/test"),
            json!({}),
        )
        .refusals_only(),
        Target::new(
            &app.admin,
            post.clone(),
            format!(
                "/api/v1/admin/organizations/{}/balances/EUR/unfreeze",
                buyer.id
            ),
            json!({ "reason": "cleared" }),
        )
        .missing(&["/reason"]),
    ];

    let before = app.log_state().await;
    for t in &targets {
        t.check_refusals().await;
    }
    assert_eq!(
        app.log_state().await,
        before,
        "refused input wrote to the log"
    );
    for t in &targets {
        t.check_valid().await;
    }
}

/// Prose keeps its line breaks and tabs, and any script, and the buyer sees
/// exactly what the seller wrote.
#[tokio::test]
async fn prose_with_line_breaks_tabs_and_any_script_is_kept_as_written() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let memo = "Lieferung März:\n\t— Teil 1\r\n\t— 部分 2 🙂";
    let created = pair
        .seller
        .create_invoice(json!({
            "connectionId": pair.conn,
            "currency": "USD",
            "dueDate": "2031-06-30",
            "memo": memo,
            "lineItems": [line("Zeile\teins\nzwei", "1", "5.00", None)],
            "submit": true,
        }))
        .await;
    let seen = pair.buyer.invoice(&s(&created["id"])).await.ok();
    assert_eq!(seen["memo"], json!(memo));
    assert_eq!(
        seen["lineItems"][0]["description"],
        json!("Zeile\teins\nzwei")
    );
}

/// Each action reads its own body, as the document describes it: a field of
/// another action's body is refused (it used to be accepted and ignored, so
/// a client misspelling its intent got a 200), the log does not move, and
/// the action's own body then goes through.
#[tokio::test]
async fn an_action_refuses_the_fields_of_other_actions() {
    let app = spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    let draft = s(&pair.draft("10.00").await["id"]);
    let submitted = s(&pair.submitted("10.00").await["id"]);
    let cases = [
        (
            &pair.seller,
            &draft,
            "submit",
            json!({ "reason": "r" }),
            json!({}),
        ),
        (
            &pair.buyer,
            &submitted,
            "approve",
            json!({ "question": "?" }),
            json!({ "reason": "fine" }),
        ),
        (
            &pair.buyer,
            &submitted,
            "dispute",
            json!({ "reason": "r", "message": "m" }),
            json!({ "reason": "wrong amount" }),
        ),
    ];
    for (org, id, action, refused, accepted) in cases {
        let before = app.log_state().await;
        let r = org.act(id, action, refused.clone()).await;
        r.err(400, "VALIDATION_ERROR");
        assert!(r.text().contains("unknown field"), "{action}: {}", r.text());
        assert_eq!(app.log_state().await, before, "{action} {refused}");
        if action != "dispute" {
            org.act(id, action, accepted).await.ok();
        }
    }
    // The reason a dispute needs, and nothing else, is what it takes.
    let other = s(&pair.submitted("10.00").await["id"]);
    pair.buyer
        .act(&other, "dispute", json!({ "reason": "wrong amount" }))
        .await
        .ok();
}

/// Freezing needs a reason that says something, as the document says.
#[tokio::test]
async fn a_freeze_without_a_real_reason_is_refused() {
    let app = spawn_app().await;
    let org = app.create_org("F").await;
    app.deposit(&org, "USD", "10.00").await;
    let path = format!("/api/v1/admin/organizations/{}/balances/USD/freeze", org.id);
    for body in [json!({ "reason": "   " }), json!({})] {
        let before = app.log_state().await;
        app.admin
            .post(&path, body.clone())
            .await
            .err(400, "VALIDATION_ERROR");
        assert_eq!(app.log_state().await, before, "{body}");
    }
    app.admin
        .post(&path, json!({ "reason": "sanctions check" }))
        .await
        .ok();
}
