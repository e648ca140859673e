//! `expereon backup --out DIR`: a consistent copy of the event log for
//! auditors, hot from a running server (`--url` + `--admin-token`, through the
//! admin event stream) or from a stopped server's data directory
//! (`--data-dir`). The copy lands at `DIR/log`, a log `replay-tool --data-dir DIR`
//! and `expereon serve` can open. Idempotency records (a retry cache, not
//! history), API logs, the webhook outbox and files are not part of it.

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use clap::Args;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{copy_verified, EventLog, LogError, RawEvent};
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where the copy goes (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// A running server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data_dir")]
    pub url: Option<String>,
    #[arg(long, env = "EXPEREON_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// A stopped server's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

const PAGE: u64 = 10_000;

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("{} is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out)?;
    let copy = SledLog::open(args.out.join("log")).context("creating the copy")?;
    let head = match (&args.url, &args.data_dir) {
        (Some(url), _) => {
            let token = args
                .admin_token
                .as_deref()
                .ok_or_else(|| anyhow!("--url needs --admin-token"))?;
            copy_verified(HttpEvents::new(url, token)?, &copy)?
        }
        (None, Some(dir)) => {
            let source = SledLog::open(dir.join("log"))
                .context("opening the source log (is the server stopped?)")?;
            copy_verified(source.read_raw(1), &copy)?
        }
        (None, None) => bail!("give --url (running server) or --data-dir (stopped server)"),
    };
    println!(
        "backed up {} events to {} (head hash {})",
        head.last_seq,
        args.out.display(),
        hex::encode(head.last_hash)
    );
    Ok(())
}

/// The admin event stream, page by page, as stored events.
struct HttpEvents {
    client: reqwest::blocking::Client,
    base: String,
    token: String,
    after: u64,
    page: std::vec::IntoIter<RawEvent>,
    done: bool,
}

impl HttpEvents {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()?,
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            after: 0,
            page: Vec::new().into_iter(),
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<Vec<RawEvent>, LogError> {
        let url = format!(
            "{}/api/v1/admin/events?after={}&limit={PAGE}",
            self.base, self.after
        );
        let fail = |e: String| LogError::Storage(format!("reading {url}: {e}"));
        let response = self
            .client
            .get(&url)
            .header("x-admin-token", &self.token)
            .send()
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let text = response.text().map_err(|e| fail(e.to_string()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_line(l).map_err(fail))
            .collect()
    }
}

fn parse_line(line: &str) -> Result<RawEvent, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let seq = v["seq"].as_u64().ok_or("line without seq")?;
    let encoded = base64::engine::general_purpose::STANDARD
        .decode(v["encoded"].as_str().ok_or("line without encoded bytes")?)
        .map_err(|e| e.to_string())?;
    let hash: [u8; 32] = hex::decode(v["hash"].as_str().ok_or("line without hash")?)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or("malformed hash")?;
    Ok(RawEvent { seq, encoded, hash })
}

impl Iterator for HttpEvents {
    type Item = Result<RawEvent, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(raw) = self.page.next() {
            self.after = raw.seq;
            return Some(Ok(raw));
        }
        if self.done {
            return None;
        }
        match self.fetch() {
            Ok(page) => {
                self.done = (page.len() as u64) < PAGE;
                self.page = page.into_iter();
                let raw = self.page.next()?;
                self.after = raw.seq;
                Some(Ok(raw))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
