//! The harness: a real `expereon serve` process per test, on a free port and a
//! fresh data directory, and thin HTTP clients for the operator and for
//! organizations.
//!
//! Shared with other test binaries (`#[path]`), so not every helper is used
//! by each: they declare it with `#[allow(dead_code)]`.

use reqwest::header::HeaderMap;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

#[path = "contract.rs"]
pub mod contract;

pub const ADMIN_TOKEN: &str = "test-admin-token-of-32-characters-at-least";
/// A due date safely after any issue date the server defaults to (today).
pub const DUE: &str = "2031-06-30";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh idempotency key.
pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn dec(v: &Value) -> Decimal {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"));
    Decimal::from_str(s).unwrap_or_else(|e| panic!("`{s}` is not a decimal: {e}"))
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// responses
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    /// `METHOD path`, for failure messages.
    pub what: String,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "{}: {} is not JSON ({e}): {}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "{}: expected 200, got {}: {}",
            self.what,
            self.status,
            self.text()
        );
        self.json()
    }

    /// Asserts the documented error shape `{error:{code,message,details}}`
    /// with this status and code, and returns `details`.
    #[track_caller]
    pub fn err(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}: expected {status} {code}, got {}: {}",
            self.what,
            self.status,
            self.text()
        );
        self.error_shape(code)
    }

    /// The error shape with this code, whatever the status; returns `details`.
    #[track_caller]
    pub fn error_shape(&self, code: &str) -> Value {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "{}: error content-type `{ct}`",
            self.what
        );
        let v = self.json();
        let top = v
            .as_object()
            .unwrap_or_else(|| panic!("{}: error body not an object: {v}", self.what));
        assert_eq!(
            top.len(),
            1,
            "{}: error body has more than `error`: {v}",
            self.what
        );
        let e = &v["error"];
        assert_eq!(e["code"], code, "{}: {v}", self.what);
        assert!(
            e["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
            "{}: error without a message: {v}",
            self.what
        );
        assert!(
            e["details"].is_object(),
            "{}: error details not an object: {v}",
            self.what
        );
        e["details"].clone()
    }

    /// The same status and the same bytes (an idempotent replay).
    #[track_caller]
    pub fn assert_replay_of(&self, original: &Resp) {
        assert_eq!(
            (self.status, self.text()),
            (original.status, original.text()),
            "{}: not a byte-identical replay",
            self.what
        );
        assert_eq!(
            self.bytes, original.bytes,
            "{}: not byte-identical",
            self.what
        );
    }

    /// 400 INVALID_STATE_TRANSITION naming the current state.
    #[track_caller]
    pub fn invalid_transition(&self, current: &str) {
        let details = self.err(400, "INVALID_STATE_TRANSITION");
        assert_eq!(
            details["currentState"],
            current,
            "{}: {}",
            self.what,
            self.text()
        );
    }

    /// Any 4xx with the documented shape (never a 500), returns the code.
    #[track_caller]
    pub fn client_error(&self) -> String {
        assert!(
            (400..500).contains(&self.status),
            "{}: expected a 4xx, got {}: {}",
            self.what,
            self.status,
            self.text()
        );
        let code = s(&self.json()["error"]["code"]);
        self.error_shape(&code);
        code
    }
}

// ---------------------------------------------------------------------------
// clients
// ---------------------------------------------------------------------------

/// An HTTP client bound to one server and one set of credentials.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
    credentials: Vec<(String, String)>,
}

impl Api {
    fn new(base: &str, credentials: Vec<(String, String)>) -> Self {
        Api {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("reqwest client"),
            credentials,
        }
    }

    pub fn with_credentials(&self, credentials: &[(&str, &str)]) -> Api {
        Api {
            base: self.base.clone(),
            client: self.client.clone(),
            credentials: credentials
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The most general request: credentials, then `extra` headers, then the body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        self.try_send(method, path, extra, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `send`, but a transport failure (server gone) is an `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, String> {
        let what = format!("{method} {path}");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in &self.credentials {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| format!("{what}: reading body: {e}"))?
            .to_vec();
        contract::check(
            &what,
            status,
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            &bytes,
        );
        Ok(Resp {
            status,
            headers,
            bytes,
            what,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    /// JSON exactly as given.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            Some(bytes),
        )
        .await
    }

    /// POST with a fresh `requestId` added when the body has none.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send_json(Method::POST, path, &with_request_id(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send_json(Method::PATCH, path, &with_request_id(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send_json(Method::PUT, path, &with_request_id(body))
            .await
    }

    /// A bodiless call carrying its key in `Idempotency-Key`.
    pub async fn bodiless(&self, method: Method, path: &str, key: &str) -> Resp {
        self.send(method, path, &[("idempotency-key", key)], None)
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.bodiless(Method::DELETE, path, &rid()).await
    }
}

fn with_request_id(mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        m.entry("requestId").or_insert_with(|| Value::String(rid()));
    }
    body
}

/// An organization and a client holding its API key.
#[derive(Clone)]
pub struct Org {
    pub id: String,
    pub key_id: String,
    pub secret: String,
    pub api: Api,
}

impl std::ops::Deref for Org {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Org {
    /// The same organization speaking with another of its keys.
    pub fn with_key(&self, key_id: &str, secret: &str) -> Org {
        Org {
            id: self.id.clone(),
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            api: self
                .api
                .with_credentials(&[("x-api-key", key_id), ("x-api-secret", secret)]),
        }
    }

    /// The same organization and key, speaking to another server (one
    /// restored from a backup, say).
    pub fn on(&self, app: &TestApp) -> Org {
        Org {
            id: self.id.clone(),
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
            api: Api::new(
                &app.base,
                vec![
                    ("x-api-key".into(), self.key_id.clone()),
                    ("x-api-secret".into(), self.secret.clone()),
                ],
            ),
        }
    }

    /// A new key with these permissions (`POST /settings/api-keys`), and this
    /// organization speaking with it.
    pub async fn key_with(&self, permissions: &[&str]) -> Org {
        let key = self
            .post(
                "/api/v1/settings/api-keys",
                json!({ "name": "limited", "permissions": permissions }),
            )
            .await
            .ok();
        self.with_key(&s(&key["id"]), &s(&key["secret"]))
    }

    pub async fn invoice(&self, id: &str) -> Resp {
        self.get(&format!("/api/v1/invoices/{id}")).await
    }

    /// `POST /invoices/{id}/{action}`.
    pub async fn act(&self, id: &str, action: &str, body: Value) -> Resp {
        self.post(&format!("/api/v1/invoices/{id}/{action}"), body)
            .await
    }

    pub async fn create_invoice(&self, body: Value) -> Value {
        self.post("/api/v1/invoices", body).await.ok()
    }

    /// Every invoice the organization sees with this query, walking all pages.
    pub async fn all_invoices(&self, query: &str) -> Vec<Value> {
        self.walk(&format!("/api/v1/invoices?{query}"), 200).await
    }

    /// All items of a list, page by page with `limit`, checking the page shape.
    pub async fn walk(&self, path_and_query: &str, limit: usize) -> Vec<Value> {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut url = format!("{path_and_query}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&url).await.ok();
            let data = page["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{url}: no data array: {page}"));
            assert!(
                data.len() <= limit,
                "{url}: {} items over limit {limit}",
                data.len()
            );
            out.extend(data.iter().cloned());
            match &page["nextCursor"] {
                Value::Null => return out,
                Value::String(c) => cursor = Some(c.clone()),
                other => panic!("{url}: nextCursor is {other}"),
            }
        }
        panic!("{path_and_query}: paging never ended");
    }

    pub async fn balances(&self) -> Vec<Value> {
        let v = self.get("/api/v1/treasury/me/balances").await.ok();
        v["data"].as_array().expect("balances data").clone()
    }

    /// The balance in `currency`, if one was opened.
    pub async fn balance(&self, currency: &str) -> Option<Value> {
        self.balances()
            .await
            .into_iter()
            .find(|b| b["currency"] == currency)
    }

    /// `(total, reserved, available)` in `currency` (zeros before first use).
    pub async fn money(&self, currency: &str) -> (Decimal, Decimal, Decimal) {
        match self.balance(currency).await {
            Some(b) => (dec(&b["total"]), dec(&b["reserved"]), dec(&b["available"])),
            None => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
        }
    }
}

// ---------------------------------------------------------------------------
// the server
// ---------------------------------------------------------------------------

pub struct TestApp {
    pub base: String,
    pub port: u16,
    /// Operator client (`X-Admin-Token`).
    pub admin: Api,
    /// No credentials at all.
    pub anon: Api,
    admin_token: Option<String>,
    /// Extra environment for the server, applied after the defaults.
    extra_env: Vec<(String, String)>,
    /// A start counts once `/healthz` answers at all, 503 included.
    unhealthy_start: bool,
    child: Option<Child>,
    log_path: PathBuf,
    // Last: removed after the child is gone.
    data_dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    TestApp::start(Some(ADMIN_TOKEN)).await
}

/// A server with no operator token configured (admin routes disabled).
pub async fn spawn_app_without_admin() -> TestApp {
    TestApp::start(None).await
}

/// A server with extra `EXPEREON_*` settings (overriding the harness defaults,
/// e.g. `EXPEREON_RATE_LIMIT`).
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    TestApp::start_with(Some(ADMIN_TOKEN), env).await
}

/// A server on an existing data directory (a backup, say) instead of a
/// fresh one, with extra settings (its master key, say); `data_dir()` then
/// holds only the server's own log.
pub async fn spawn_app_on(data_dir: &std::path::Path, env: &[(&str, &str)]) -> TestApp {
    let dir = data_dir.to_string_lossy().into_owned();
    let mut all = vec![("EXPEREON_DATA_DIR", dir.as_str())];
    all.extend_from_slice(env);
    TestApp::start_with(Some(ADMIN_TOKEN), &all).await
}

impl TestApp {
    /// The master key the server created in its data directory.
    pub fn master_key(&self) -> String {
        let path = self.data_dir().join("data").join("master.key");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_owned()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl TestApp {
    async fn start(admin_token: Option<&str>) -> TestApp {
        TestApp::start_with(admin_token, &[]).await
    }

    async fn start_with(admin_token: Option<&str>, env: &[(&str, &str)]) -> TestApp {
        let data_dir = tempfile::Builder::new()
            .prefix("expereon-test-")
            .tempdir()
            .expect("tempdir");
        let log_path = data_dir.path().join("server.log");
        let mut app = TestApp {
            base: String::new(),
            port: 0,
            admin: Api::new("", vec![]),
            anon: Api::new("", vec![]),
            admin_token: admin_token.map(str::to_owned),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unhealthy_start: false,
            child: None,
            log_path,
            data_dir,
        };
        // The port is free when chosen but another test may take it before the
        // server binds it: try again with another.
        for attempt in 0.. {
            app.port = free_port();
            app.base = format!("http://127.0.0.1:{}", app.port);
            match app.launch().await {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("binding") => continue,
                Err(log) => panic!("the server did not start:\n{log}"),
            }
        }
        let token = admin_token.unwrap_or("");
        app.admin = Api::new(&app.base, vec![("x-admin-token".into(), token.into())]);
        app.anon = Api::new(&app.base, vec![]);
        app
    }

    /// From the next start on, a start counts once `/healthz` answers, even
    /// 503 (a server started into a fault).
    pub fn expect_unhealthy_start(&mut self) {
        self.unhealthy_start = true;
    }

    /// One more `EXPEREON_*` setting, from the next start on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != key);
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process and waits for `/healthz`; on failure, the log.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("server log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_expereon-under-test"));
        cmd.arg("serve");
        for (k, _) in std::env::vars() {
            if k.starts_with("EXPEREON_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("EXPEREON_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("EXPEREON_DATA_DIR", self.data_dir.path().join("data"))
            // Not under test here; high enough that concurrency tests never meet it.
            .env("EXPEREON_RATE_LIMIT", "100000")
            .env("EXPEREON_CACHE_BYTES", "16777216")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        match &self.admin_token {
            Some(t) => cmd.env("EXPEREON_ADMIN_TOKEN", t),
            None => cmd.env_remove("EXPEREON_ADMIN_TOKEN"),
        };
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting the server binary");
        self.child = Some(child);
        let health = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if let Ok(r) = health.get(format!("{}/healthz", self.base)).send().await {
                let status = r.status().as_u16();
                if status == 200 || (self.unhealthy_start && status == 503) {
                    return Ok(());
                }
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                self.kill();
                return Err(format!(
                    "not healthy after {STARTUP_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            // Polling for readiness, not synchronising on a guess.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM, waits for it to exit, and starts it
    /// again on the same data directory and port.
    pub async fn restart(&mut self) {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        let stopping = Instant::now();
        loop {
            if child.try_wait().expect("waiting for the server").is_some() {
                break;
            }
            if stopping.elapsed() > STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not stop on SIGTERM:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(log) = self.launch().await {
            panic!("the server did not restart:\n{log}");
        }
    }

    /// Kills the server (SIGKILL, no chance to tidy up) and starts it again
    /// on the same data directory and port.
    pub async fn crash_restart(&mut self) {
        self.kill_now();
        self.start_again().await;
    }

    /// SIGKILL now, wherever the server is; waits until it is gone.
    pub fn kill_now(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("killing the server");
        child.wait().expect("reaping the server");
    }

    /// Starts a stopped server again on the same data directory and port.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        if let Err(log) = self.launch().await {
            panic!("the server did not start again:\n{log}");
        }
    }

    // --- operator helpers -------------------------------------------------

    pub async fn create_org(&self, name: &str) -> Org {
        let v = self
            .admin
            .post("/api/v1/admin/organizations", json!({ "name": name }))
            .await
            .ok();
        assert_eq!(v["apiKey"]["permissions"], json!(["*"]));
        let key_id = s(&v["apiKey"]["id"]);
        let secret = s(&v["apiKey"]["secret"]);
        Org {
            id: s(&v["organization"]["id"]),
            api: Api::new(
                &self.base,
                vec![
                    ("x-api-key".into(), key_id.clone()),
                    ("x-api-secret".into(), secret.clone()),
                ],
            ),
            key_id,
            secret,
        }
    }

    pub async fn deposit(&self, org: &Org, currency: &str, amount: &str) -> Value {
        self.admin
            .post(
                &format!("/api/v1/admin/organizations/{}/deposits", org.id),
                json!({ "currency": currency, "amount": amount, "reference": "test funding" }),
            )
            .await
            .ok()
    }

    /// An ACTIVE connection with `seller` selling to `buyer`; its id.
    pub async fn connect(&self, seller: &Org, buyer: &Org) -> String {
        let c = seller
            .post(
                "/api/v1/connections",
                json!({ "counterpartyOrganizationId": buyer.id, "role": "SELLER" }),
            )
            .await
            .ok();
        assert_eq!(c["status"], "PENDING");
        let id = s(&c["id"]);
        let c = buyer
            .post(&format!("/api/v1/connections/{id}/accept"), json!({}))
            .await
            .ok();
        assert_eq!(c["status"], "ACTIVE");
        id
    }

    /// A seller, a buyer funded with `funds` USD, and their connection.
    pub async fn trading_pair(&self, funds: &str) -> Pair {
        let seller = self.create_org("Seller Ltd").await;
        let buyer = self.create_org("Buyer Inc").await;
        let conn = self.connect(&seller, &buyer).await;
        if funds != "0" {
            self.deposit(&buyer, "USD", funds).await;
        }
        Pair {
            seller,
            buyer,
            conn,
        }
    }

    /// The last durable event sequence, from `/healthz`.
    pub async fn log_seq(&self) -> u64 {
        let v = self.anon.get("/healthz").await.ok();
        v["logSequence"]
            .as_u64()
            .unwrap_or_else(|| panic!("healthz without logSequence: {v}"))
    }

    /// Lines of the global event stream (`/admin/events?after=0`).
    pub async fn event_lines(&self) -> usize {
        let r = self
            .admin
            .get("/api/v1/admin/events?after=0&limit=10000")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.text().lines().filter(|l| !l.trim().is_empty()).count()
    }

    /// Log position and event count together: both must stay put when nothing
    /// is applied.
    pub async fn log_state(&self) -> (u64, usize) {
        (self.log_seq().await, self.event_lines().await)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            eprintln!("--- server log tail ({}) ---", self.log_path.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[derive(Clone)]
pub struct Pair {
    pub seller: Org,
    pub buyer: Org,
    pub conn: String,
}

// ---------------------------------------------------------------------------
// invoice bodies
// ---------------------------------------------------------------------------

pub fn line(description: &str, quantity: &str, unit_price: &str, tax_rate: Option<&str>) -> Value {
    let mut l =
        json!({ "description": description, "quantity": quantity, "unitPrice": unit_price });
    if let Some(t) = tax_rate {
        l["taxRate"] = json!(t);
    }
    l
}

/// A USD invoice of one line: quantity 1 × `amount`, no tax (total = amount).
pub fn simple_invoice(conn: &str, amount: &str) -> Value {
    json!({
        "connectionId": conn,
        "currency": "USD",
        "dueDate": DUE,
        "lineItems": [line("Consulting", "1", amount, None)],
    })
}

impl Pair {
    pub async fn draft(&self, amount: &str) -> Value {
        let inv = self
            .seller
            .create_invoice(simple_invoice(&self.conn, amount))
            .await;
        assert_eq!(inv["status"], "DRAFT");
        inv
    }

    pub async fn submitted(&self, amount: &str) -> Value {
        let mut body = simple_invoice(&self.conn, amount);
        body["submit"] = json!(true);
        let inv = self.seller.create_invoice(body).await;
        assert_eq!(inv["status"], "SUBMITTED");
        inv
    }

    pub async fn approved(&self, amount: &str) -> Value {
        let inv = self.submitted(amount).await;
        let inv = self
            .buyer
            .act(&s(&inv["id"]), "approve", json!({}))
            .await
            .ok();
        assert_eq!(inv["status"], "APPROVED");
        inv
    }
}

/// Every regular file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}
