//! The server's public HTTP API as loadgen uses it (`/work/shared/API.md`).

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use std::time::Duration;

/// An organization's API key.
#[derive(Clone, Debug)]
pub struct Creds {
    pub key: String,
    pub secret: String,
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    Admin,
    Key(&'a Creds),
}

/// A status and the whole body: reading the body is part of the latency,
/// as it is for a real client.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }

    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(200)
            .collect()
    }
}

/// A request slower than this is a transport error, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One reqwest client for every worker: its pool keeps one keep-alive
/// connection per in-flight request, so after the warm-up no request pays
/// for a TCP handshake.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    root: String,
    admin_token: String,
}

impl Api {
    pub fn new(root: &str, admin_token: &str, connections: usize) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            // A proxy from the environment would be measured too.
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        let root = root.trim_end_matches('/').to_string();
        Ok(Api {
            client,
            base: format!("{root}/api/v1"),
            root,
            admin_token: admin_token.to_string(),
        })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    fn authorize(&self, rb: reqwest::RequestBuilder, auth: Auth<'_>) -> reqwest::RequestBuilder {
        match auth {
            Auth::Admin => rb.header("X-Admin-Token", &self.admin_token),
            Auth::Key(c) => rb
                .header("X-API-Key", &c.key)
                .header("X-API-Secret", &c.secret),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = rb.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(Answer { status, body })
    }

    /// `GET /api/v1{path}`.
    pub async fn get(&self, path: &str, auth: Auth<'_>) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        self.send(self.authorize(self.client.get(url), auth)).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, auth: Auth<'_>, body: &Value) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        self.send(self.authorize(self.client.post(url).json(body), auth))
            .await
    }

    /// `GET /healthz`: fails unless the server answers 200.
    pub async fn health(&self) -> anyhow::Result<()> {
        let answer = self
            .send(self.client.get(format!("{}/healthz", self.root)))
            .await
            .with_context(|| format!("no answer from {}/healthz", self.root))?;
        if !answer.ok() {
            bail!("{}/healthz: HTTP {}", self.root, answer.status);
        }
        Ok(())
    }
}

/// What to tell the operator when the server rate-limits us.
pub const RATE_LIMIT_HINT: &str = "the server is rate limiting (429): it allows \
EXPEREON_RATE_LIMIT requests/s per API key (default 100); restart it with \
EXPEREON_RATE_LIMIT=1000000 to measure the server rather than its limiter";

/// The JSON body of a 2xx answer, or an error naming `what` and the status.
pub fn ok_json(what: &str, answer: anyhow::Result<Answer>) -> anyhow::Result<Value> {
    let answer = answer.with_context(|| what.to_string())?;
    if answer.status == 429 {
        bail!("{what}: HTTP 429: {RATE_LIMIT_HINT}");
    }
    if !answer.ok() {
        bail!("{what}: HTTP {}: {}", answer.status, answer.snippet());
    }
    answer.json().with_context(|| what.to_string())
}

pub fn str_field(v: &Value, pointer: &str) -> anyhow::Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            let text: String = v.to_string().chars().take(200).collect();
            anyhow!("no {pointer} in {text}")
        })
}

/// A fresh idempotency key, as a real client sends with every command.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
