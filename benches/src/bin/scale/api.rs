//! The HTTP calls the benchmark makes, as a client of the public API
//! (`/work/shared/API.md`): nothing here reaches into the server's files.

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
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

/// An answer: status and body (the body is read whole, so the latency
/// includes the transfer).
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }

    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(300).collect()
    }
}

/// One client per server life: pooled keep-alive connections must not
/// outlive the server they were opened to.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    admin_token: String,
}

/// A request that takes longer is an error (counted), not a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Api {
    pub fn new(root: &str, admin_token: &str, connections: usize) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            client,
            root: root.to_string(),
            admin_token: admin_token.to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.root)
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
        self.send(self.authorize(self.client.get(self.url(path)), auth))
            .await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, auth: Auth<'_>, body: &Value) -> anyhow::Result<Answer> {
        self.send(self.authorize(self.client.post(self.url(path)).json(body), auth))
            .await
    }

    /// `GET /healthz` → `logSequence`.
    pub async fn log_sequence(&self) -> anyhow::Result<u64> {
        let answer = self
            .send(self.client.get(format!("{}/healthz", self.root)))
            .await?;
        answer
            .json()?
            .get("logSequence")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("/healthz has no logSequence"))
    }
}

/// Fails with the status and the start of the body unless the status is 200.
pub fn ok_json(what: &str, answer: anyhow::Result<Answer>) -> anyhow::Result<Value> {
    let answer = answer.with_context(|| what.to_string())?;
    if answer.status != 200 {
        bail!("{what}: HTTP {}: {}", answer.status, answer.text());
    }
    answer.json().with_context(|| what.to_string())
}

pub fn str_field(v: &Value, pointer: &str) -> anyhow::Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no {pointer} in {}", short(v)))
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `POST /admin/organizations` → (organization id, its first key).
pub async fn create_organization(api: &Api, name: &str) -> anyhow::Result<(String, Creds)> {
    let v = ok_json(
        "creating an organization",
        api.post(
            "/admin/organizations",
            Auth::Admin,
            &json!({ "requestId": request_id(), "name": name }),
        )
        .await,
    )?;
    Ok((
        str_field(&v, "/organization/id")?,
        Creds {
            key: str_field(&v, "/apiKey/id")?,
            secret: str_field(&v, "/apiKey/secret")?,
        },
    ))
}

/// The benchmark's own seller and buyer, connected, the buyer funded.
#[derive(Clone)]
pub struct Pair {
    pub seller: Creds,
    pub buyer: Creds,
    pub connection: String,
}

pub const CURRENCY: &str = "EUR";

pub async fn create_pair(api: &Api) -> anyhow::Result<Pair> {
    let (_, seller) = create_organization(api, "Scale bench seller").await?;
    let (buyer_id, buyer) = create_organization(api, "Scale bench buyer").await?;
    let conn = ok_json(
        "requesting the connection",
        api.post(
            "/connections",
            Auth::Key(&seller),
            &json!({
                "requestId": request_id(),
                "counterpartyOrganizationId": buyer_id,
                "role": "SELLER",
            }),
        )
        .await,
    )?;
    let connection = str_field(&conn, "/id")?;
    ok_json(
        "accepting the connection",
        api.post(
            &format!("/connections/{connection}/accept"),
            Auth::Key(&buyer),
            &json!({ "requestId": request_id() }),
        )
        .await,
    )?;
    ok_json(
        "depositing for the buyer",
        api.post(
            &format!("/admin/organizations/{buyer_id}/deposits"),
            Auth::Admin,
            // Enough for millions of invoices of about EUR 3,000.
            &json!({
                "requestId": request_id(),
                "currency": CURRENCY,
                "amount": "1000000000000.00",
                "reference": "scale bench",
            }),
        )
        .await,
    )?;
    Ok(Pair {
        seller,
        buyer,
        connection,
    })
}

/// The invoice body: like `replay-tool generate`'s (three line items and a
/// memo), with due dates spread over three years so `sort=dueDate` has
/// something to sort.
pub fn invoice_body(pair: &Pair, n: u64) -> Value {
    let due = chrono::NaiveDate::from_ymd_opt(2030, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(n % 1096)))
        .map(|d| d.to_string())
        .unwrap_or_else(|| "2031-06-30".into());
    json!({
        "requestId": request_id(),
        "connectionId": pair.connection,
        "currency": CURRENCY,
        "dueDate": due,
        "memo": "Services rendered under MSA 2024-117",
        "submit": true,
        "lineItems": [
            { "description": "Consulting services, senior engineer (hours)",
              "quantity": (1 + n % 40).to_string(), "unitPrice": "150.00", "taxRate": "19" },
            { "description": "Travel expenses, on-site visit",
              "quantity": "1", "unitPrice": "420.35", "taxRate": "0" },
            { "description": "Software licence, monthly seat",
              "quantity": (1 + n % 5).to_string(), "unitPrice": "99.99", "taxRate": "19" },
        ],
    })
}

/// The three write commands of a lifecycle, as the API takes them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Write {
    CreateSubmit,
    Approve,
    Settle,
}

impl Write {
    pub fn label(self) -> &'static str {
        match self {
            Write::CreateSubmit => "`POST /invoices` (create + submit)",
            Write::Approve => "`POST /invoices/{id}/approve`",
            Write::Settle => "`POST /payments/settle`",
        }
    }

    /// The invoice status the command leaves behind.
    pub fn status(self) -> &'static str {
        match self {
            Write::CreateSubmit => "SUBMITTED",
            Write::Approve => "APPROVED",
            Write::Settle => "SETTLED",
        }
    }

    pub async fn send(
        self,
        api: &Api,
        pair: &Pair,
        invoice: Option<&str>,
        n: u64,
    ) -> anyhow::Result<Answer> {
        match (self, invoice) {
            (Write::CreateSubmit, _) => {
                api.post("/invoices", Auth::Key(&pair.seller), &invoice_body(pair, n))
                    .await
            }
            (Write::Approve, Some(id)) => {
                api.post(
                    &format!("/invoices/{id}/approve"),
                    Auth::Key(&pair.buyer),
                    &json!({ "requestId": request_id() }),
                )
                .await
            }
            (Write::Settle, Some(id)) => {
                api.post(
                    "/payments/settle",
                    Auth::Key(&pair.buyer),
                    &json!({ "requestId": request_id(), "invoiceId": id }),
                )
                .await
            }
            (_, None) => bail!("{self:?} needs an invoice id"),
        }
    }
}

/// Rank of an invoice status along the lifecycle, to check after a crash
/// that no acknowledged step was lost (a later state is fine: a command in
/// flight at the kill may have committed without its answer arriving).
pub fn status_rank(status: &str) -> u8 {
    match status {
        "SUBMITTED" => 1,
        "APPROVED" => 2,
        "SETTLED" => 3,
        _ => 0,
    }
}
