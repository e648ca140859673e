//! What the treasury tests add to the shared harness (`api/support.rs`, not
//! edited here): a server started with the test clock, its process id for
//! memory readings, and money helpers.
//!
//! The shared harness starts its server with a fixed environment and keeps the
//! process private. `spawn_clock_app` therefore lets it start one as usual (so
//! every `TestApp`/`Org`/`Api` helper is bound to that address), stops that
//! process, and starts the same binary on the same address with
//! `EXPEREON_TEST_CLOCK=true`. The replacement is owned (and stopped) here.

use crate::support::*;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ClockApp {
    app: TestApp,
    child: Option<Child>,
    log_path: PathBuf,
}

impl std::ops::Deref for ClockApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// The pid of the harness's server: the `expereon-under-test` process whose
/// environment names this port and data directory.
fn harness_server_pid(app: &TestApp) -> u32 {
    let listen = format!("EXPEREON_LISTEN=127.0.0.1:{}", app.port);
    let data = format!(
        "EXPEREON_DATA_DIR={}",
        app.data_dir().join("data").display()
    );
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if vars.contains(&listen.as_bytes()) && vars.contains(&data.as_bytes()) {
            return pid;
        }
    }
    panic!(
        "the harness's server process for port {} was not found",
        app.port
    );
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// A server with the test clock on, behind the shared harness's helpers.
pub async fn spawn_clock_app() -> ClockApp {
    let app = spawn_app().await;
    let old = harness_server_pid(&app);
    let killed = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL {old} failed");
    let started = Instant::now();
    while port_open(app.port) {
        assert!(
            started.elapsed() < STARTUP_TIMEOUT,
            "the harness's server kept its port"
        );
        // Polling for the port to close, not guessing a delay.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let log_path = app.data_dir().join("clock-server.log");
    let log = std::fs::File::create(&log_path).expect("server log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_expereon-under-test"));
    cmd.arg("serve");
    for (k, _) in std::env::vars() {
        if k.starts_with("EXPEREON_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("EXPEREON_LISTEN", format!("127.0.0.1:{}", app.port))
        .env("EXPEREON_DATA_DIR", app.data_dir().join("clock-data"))
        .env("EXPEREON_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EXPEREON_TEST_CLOCK", "true")
        .env("EXPEREON_RATE_LIMIT", "1000000")
        .env("EXPEREON_CACHE_BYTES", "16777216")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
    let child = cmd.spawn().expect("starting the server binary");
    let mut out = ClockApp {
        app,
        child: Some(child),
        log_path,
    };
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let clock_url = format!("{}/api/v1/admin/clock", out.base);
    let started = Instant::now();
    loop {
        if let Some(status) = out.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            out.child = None;
            panic!(
                "the test-clock server exited with {status}:\n{}",
                out.server_log()
            );
        }
        let answered = probe
            .get(&clock_url)
            .header("x-admin-token", ADMIN_TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16());
        // The route exists only with the test clock on.
        if let Ok(status) = answered {
            assert_eq!(
                status,
                200,
                "GET /admin/clock on the test-clock server:\n{}",
                out.server_log()
            );
            return out;
        }
        assert!(
            started.elapsed() < STARTUP_TIMEOUT,
            "the test-clock server is not up:\n{}",
            out.server_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl ClockApp {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The server's resident memory in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("server status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS figure");
        kb * 1024
    }

    /// Sets the server's clock to this RFC 3339 moment.
    pub async fn set_clock(&self, now: &str) -> String {
        // The clock seam takes no requestId (it is no command): sent as is.
        let v = self
            .admin
            .send_json(Method::POST, "/api/v1/admin/clock", &json!({ "now": now }))
            .await
            .ok();
        s(&v["now"])
    }

    pub async fn advance(&self, seconds: i64) -> String {
        let v = self
            .admin
            .send_json(
                Method::POST,
                "/api/v1/admin/clock",
                &json!({ "advanceSeconds": seconds }),
            )
            .await
            .ok();
        s(&v["now"])
    }
}

/// The `(total, reserved, available)` figures of every balance of these
/// organizations, keyed `(org index, currency)`.
pub async fn figures(orgs: &[&Org]) -> BTreeMap<(usize, String), (Decimal, Decimal, Decimal)> {
    let mut out = BTreeMap::new();
    for (i, o) in orgs.iter().enumerate() {
        for b in o.balances().await {
            out.insert(
                (i, s(&b["currency"])),
                (dec(&b["total"]), dec(&b["reserved"]), dec(&b["available"])),
            );
        }
    }
    out
}

/// Everything a refused call must leave as it was: every balance of these
/// organizations (whole JSON, `updatedAt` included) and the log position.
pub async fn snapshot(app: &TestApp, orgs: &[&Org]) -> Snapshot {
    let mut balances = Vec::new();
    for o in orgs {
        balances.push(o.get("/api/v1/treasury/me/balances").await.ok());
    }
    Snapshot {
        log_seq: app.log_seq().await,
        balances,
    }
}

pub async fn deposit_ref(
    app: &TestApp,
    org: &Org,
    currency: &str,
    amount: &str,
    reference: &str,
) -> Value {
    app.admin
        .post(
            &format!("/api/v1/admin/organizations/{}/deposits", org.id),
            json!({ "currency": currency, "amount": amount, "reference": reference }),
        )
        .await
        .ok()
}

pub async fn freeze(app: &TestApp, org: &Org, currency: &str) -> Value {
    app.admin
        .post(
            &format!(
                "/api/v1/admin/organizations/{}/balances/{currency}/freeze",
                org.id
            ),
            json!({ "reason": "compliance review" }),
        )
        .await
        .ok()
}

pub async fn unfreeze(app: &TestApp, org: &Org, currency: &str) -> Value {
    app.admin
        .post(
            &format!(
                "/api/v1/admin/organizations/{}/balances/{currency}/unfreeze",
                org.id
            ),
            json!({ "reason": "review passed" }),
        )
        .await
        .ok()
}

pub async fn collateral(app: &TestApp, org: &Org, currency: &str, amount: &str) -> Value {
    app.admin
        .put(
            &format!(
                "/api/v1/admin/organizations/{}/balances/{currency}/collateral",
                org.id
            ),
            json!({ "amount": amount }),
        )
        .await
        .ok()
}

#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub log_seq: u64,
    pub balances: Vec<Value>,
}

impl Drop for ClockApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.server_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- test-clock server log tail ({}) ---",
                self.log_path.display()
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("`{s}`: {e}"))
}

/// `(total, reserved, available)` from literals.
pub fn trio(total: &str, reserved: &str, available: &str) -> (Decimal, Decimal, Decimal) {
    (d(total), d(reserved), d(available))
}

/// An invoice body in any currency, with explicit lines and dates.
pub fn invoice_body(conn: &str, currency: &str, lines: Vec<Value>, due: &str) -> Value {
    json!({
        "connectionId": conn,
        "currency": currency,
        "dueDate": due,
        "lineItems": lines,
        "submit": true,
    })
}

/// Creates and submits an invoice from `seller`; its id.
pub async fn submit_invoice(seller: &Org, body: Value) -> String {
    let inv = seller.create_invoice(body).await;
    assert_eq!(inv["status"], "SUBMITTED", "{inv}");
    s(&inv["id"])
}

/// Buyer approves (in full, or adjusted); the approved invoice.
pub async fn approve(buyer: &Org, id: &str, adjusted: Option<(&str, &str)>) -> Value {
    let body = match adjusted {
        None => json!({}),
        Some((amount, reason)) => json!({ "adjustedAmount": amount, "reason": reason }),
    };
    buyer.act(id, "approve", body).await.ok()
}

/// `POST /payments/settle`; the payment.
pub async fn settle(buyer: &Org, invoice_id: &str) -> Value {
    buyer
        .post(
            "/api/v1/payments/settle",
            json!({ "invoiceId": invoice_id }),
        )
        .await
        .ok()
}

pub fn destination() -> Value {
    json!({ "iban": "DE89370400440532013000", "holder": "Treasury test" })
}

pub async fn submit_withdrawal(org: &Org, currency: &str, amount: &str) -> Resp {
    org.post(
        "/api/v1/treasury/me/withdrawals",
        json!({ "currency": currency, "amount": amount, "destination": destination() }),
    )
    .await
}

/// `POST /treasury/me/{what}/{id}/{action}` with a reason.
pub async fn decide(org: &Org, what: &str, id: &str, action: &str) -> Resp {
    org.post(
        &format!("/api/v1/treasury/me/{what}/{id}/{action}"),
        json!({ "reason": "four eyes" }),
    )
    .await
}

/// Every transaction of the organization matching `query`, all pages walked.
pub async fn transactions(org: &Org, query: &str) -> Vec<Value> {
    org.walk(&format!("/api/v1/treasury/me/transactions?{query}"), 200)
        .await
}

/// A balance's id in `currency`.
pub async fn balance_id(org: &Org, currency: &str) -> String {
    s(&org
        .balance(currency)
        .await
        .unwrap_or_else(|| panic!("no {currency} balance"))["id"])
}

/// `GET /payments/{id}` as `org`: the payment now (bulk answers carry only
/// its status).
pub async fn payment_now(org: &Org, id: &Value) -> Value {
    org.get(&format!("/api/v1/payments/{}", s(id))).await.ok()
}
