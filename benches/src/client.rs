//! What the `scale` and `loadgen` binaries share as clients of the server's
//! public HTTP API (`/work/shared/API.md`): nothing here reaches into the
//! server's files.
//!
//! The binaries differ in how they judge and quote the answers of their
//! setup calls ([`Checks`]), in what they call their organizations and how
//! they fund them ([`PairSpec`]) and in their invoices' due dates; those
//! stay with them.

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::future::Future;
use std::process::ExitCode;
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

    /// The first `chars` characters of the body, for an error message.
    pub fn snippet(&self, chars: usize) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(chars)
            .collect()
    }
}

/// How a binary judges the answers of its setup calls and what its errors
/// quote of them.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// Any 2xx is success; otherwise only 200.
    pub any_2xx: bool,
    /// Characters of the server's answer an error quotes.
    pub quote_chars: usize,
    /// Said instead of the body on a 429, to tell the operator how to lift
    /// the limit.
    pub rate_limit_hint: Option<&'static str>,
}

impl Checks {
    /// The JSON body of a successful answer, or an error naming `what` and
    /// the status.
    pub fn ok_json(&self, what: &str, answer: anyhow::Result<Answer>) -> anyhow::Result<Value> {
        let answer = answer.with_context(|| what.to_string())?;
        if let (429, Some(hint)) = (answer.status, self.rate_limit_hint) {
            bail!("{what}: HTTP 429: {hint}");
        }
        let ok = if self.any_2xx {
            answer.ok()
        } else {
            answer.status == 200
        };
        if !ok {
            bail!(
                "{what}: HTTP {}: {}",
                answer.status,
                answer.snippet(self.quote_chars)
            );
        }
        answer.json().with_context(|| what.to_string())
    }

    /// The string at `pointer` in `v`.
    pub fn str_field(&self, v: &Value, pointer: &str) -> anyhow::Result<String> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                let text: String = v.to_string().chars().take(self.quote_chars).collect();
                anyhow!("no {pointer} in {text}")
            })
    }
}

/// A request slower than this is a transport error, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One reqwest client for every task of one server life: its pool keeps a
/// keep-alive connection per request in flight, so after the warm-up no
/// request pays for a TCP handshake; a new server life needs a new client,
/// as pooled connections must not outlive the server they were opened to.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `{root}/api/v1`
    base: String,
    /// `http://127.0.0.1:PORT`
    root: String,
    admin_token: String,
    checks: Checks,
}

impl Api {
    /// `connections`: the keep-alive connections kept open, one per request
    /// the caller will have in flight.
    pub fn new(
        root: &str,
        admin_token: &str,
        connections: usize,
        checks: Checks,
    ) -> anyhow::Result<Api> {
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
            checks,
        })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn checks(&self) -> Checks {
        self.checks
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

    async fn healthz(&self) -> anyhow::Result<Answer> {
        self.send(self.client.get(format!("{}/healthz", self.root)))
            .await
    }

    /// `GET /healthz`: fails unless the server answers 2xx.
    pub async fn health(&self) -> anyhow::Result<()> {
        let answer = self
            .healthz()
            .await
            .with_context(|| format!("no answer from {}/healthz", self.root))?;
        if !answer.ok() {
            bail!("{}/healthz: HTTP {}", self.root, answer.status);
        }
        Ok(())
    }

    /// `GET /healthz` → `logSequence`.
    pub async fn log_sequence(&self) -> anyhow::Result<u64> {
        self.health_field("logSequence").await
    }

    /// `GET /healthz` → `projectionSequence`: how far the read models (and
    /// with them the webhook outbox) have caught up with the log.
    pub async fn projection_sequence(&self) -> anyhow::Result<u64> {
        self.health_field("projectionSequence").await
    }

    async fn health_field(&self, name: &str) -> anyhow::Result<u64> {
        self.healthz()
            .await?
            .json()?
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("/healthz has no {name}"))
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let answer = self
            .send(self.client.get(format!("{}/metrics", self.root)))
            .await?;
        if !answer.ok() {
            bail!("{}/metrics: HTTP {}", self.root, answer.status);
        }
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }
}

/// A fresh idempotency key, as a real client sends with every command.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `POST /admin/organizations` → (organization id, its first key).
pub async fn create_organization(api: &Api, name: &str) -> anyhow::Result<(String, Creds)> {
    let checks = api.checks();
    let v = checks.ok_json(
        "creating an organization",
        api.post(
            "/admin/organizations",
            Auth::Admin,
            &json!({ "requestId": request_id(), "name": name }),
        )
        .await,
    )?;
    Ok((
        checks.str_field(&v, "/organization/id")?,
        Creds {
            key: checks.str_field(&v, "/apiKey/id")?,
            secret: checks.str_field(&v, "/apiKey/secret")?,
        },
    ))
}

pub const CURRENCY: &str = "EUR";

/// A buyer's deposit: enough for millions of invoices of about EUR 3,000.
pub const DEPOSIT: &str = "1000000000000.00";

/// What a binary calls its seller and buyer and how it funds the buyer.
#[derive(Clone, Copy, Debug)]
pub struct PairSpec<'a> {
    pub seller_name: &'a str,
    pub buyer_name: &'a str,
    pub currency: &'a str,
    pub deposit: &'a str,
    /// The deposit's reference.
    pub reference: &'a str,
}

/// A connected seller and buyer; the buyer is funded in `currency`.
#[derive(Clone)]
pub struct Pair {
    pub seller: Creds,
    pub buyer: Creds,
    pub connection: String,
    pub currency: String,
}

/// Two organizations, connected (the seller asks, the buyer accepts), the
/// buyer funded.
pub async fn create_pair(api: &Api, spec: &PairSpec<'_>) -> anyhow::Result<Pair> {
    let checks = api.checks();
    // Independent of each other: created together, which halves this
    // step's wait when many pairs are set up.
    let (seller, buyer) = tokio::join!(
        create_organization(api, spec.seller_name),
        create_organization(api, spec.buyer_name),
    );
    let (_, seller) = seller?;
    let (buyer_id, buyer) = buyer?;
    let conn = checks.ok_json(
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
    let connection = checks.str_field(&conn, "/id")?;
    checks.ok_json(
        "accepting the connection",
        api.post(
            &format!("/connections/{connection}/accept"),
            Auth::Key(&buyer),
            &json!({ "requestId": request_id() }),
        )
        .await,
    )?;
    checks.ok_json(
        "depositing for the buyer",
        api.post(
            &format!("/admin/organizations/{buyer_id}/deposits"),
            Auth::Admin,
            &json!({
                "requestId": request_id(),
                "currency": spec.currency,
                "amount": spec.deposit,
                "reference": spec.reference,
            }),
        )
        .await,
    )?;
    Ok(Pair {
        seller,
        buyer,
        connection,
        currency: spec.currency.to_string(),
    })
}

/// A realistic invoice (three line items and a memo, like `replay-tool
/// generate`'s), submitted in the same call: the body a client would send.
/// `n` spreads the quantities, hence the totals.
pub fn invoice_body(pair: &Pair, n: u64, due_date: &str) -> Value {
    json!({
        "requestId": request_id(),
        "connectionId": pair.connection,
        "currency": pair.currency,
        "dueDate": due_date,
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

/// A binary's `main`: `run` on a multi-threaded runtime. Ctrl-C drops
/// `run`, so its Drop impls still clean up (scale's kill the server and
/// remove the scratch copy). An error goes to stderr as `name: error`.
pub fn run_main(name: &str, run: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Checks = Checks {
        any_2xx: false,
        quote_chars: 5,
        rate_limit_hint: None,
    };
    const LENIENT: Checks = Checks {
        any_2xx: true,
        quote_chars: 3,
        rate_limit_hint: Some("lift the limit"),
    };

    fn answer(status: u16, body: &str) -> anyhow::Result<Answer> {
        Ok(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    fn error(checks: Checks, status: u16, body: &str) -> String {
        match checks.ok_json("doing it", answer(status, body)) {
            Ok(v) => panic!("HTTP {status} was taken for success: {v}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn judges_statuses_as_each_binary_does() -> anyhow::Result<()> {
        assert_eq!(STRICT.ok_json("x", answer(200, r#"{"a":1}"#))?["a"], 1);
        assert_eq!(LENIENT.ok_json("x", answer(201, r#"{"a":1}"#))?["a"], 1);
        assert_eq!(error(STRICT, 201, "{}"), "doing it: HTTP 201: {}");
        assert_eq!(error(STRICT, 429, "slow down"), "doing it: HTTP 429: slow ");
        assert_eq!(
            error(LENIENT, 429, "slow down"),
            "doing it: HTTP 429: lift the limit"
        );
        assert_eq!(error(LENIENT, 500, "broken"), "doing it: HTTP 500: bro");
        Ok(())
    }

    #[test]
    fn str_field_quotes_what_it_searched() -> anyhow::Result<()> {
        let v = json!({ "id": "abc" });
        assert_eq!(STRICT.str_field(&v, "/id")?, "abc");
        let missing = STRICT.str_field(&v, "/x").map_err(|e| e.to_string());
        assert_eq!(missing, Err(r#"no /x in {"id""#.to_string()));
        Ok(())
    }

    #[test]
    fn invoice_body_carries_the_pair_and_due_date() {
        let creds = Creds {
            key: "k".into(),
            secret: "s".into(),
        };
        let pair = Pair {
            seller: creds.clone(),
            buyer: creds,
            connection: "c1".into(),
            currency: CURRENCY.into(),
        };
        let body = invoice_body(&pair, 41, "2030-06-30");
        assert_eq!(body["connectionId"], "c1");
        assert_eq!(body["currency"], "EUR");
        assert_eq!(body["dueDate"], "2030-06-30");
        assert_eq!(body["lineItems"][0]["quantity"], "2");
        assert_eq!(body["lineItems"][2]["quantity"], "2");
    }
}
