//! What the generated log holds that the benchmark can use, read through
//! the admin event stream (`GET /api/v1/admin/events?after=&limit=`):
//! - invoice ids of the generated organizations, sampled at several points
//!   of the log (their owners' secrets are unknown, so as another
//!   organization they answer 404: still a lookup in the full table);
//! - with `--generated-secret`, an API key of a generated seller, to read
//!   as that big seller. `replay-tool generate` stores only a hash for each
//!   key (`[1; 32]`, not the SHA-256 of any known secret), so today no
//!   key matches; see the report for the flag generate would need.

use anyhow::{bail, Context};
use expereon_benches::client::{Api, Auth, Creds};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The stream's largest page.
const PAGE: u64 = 10_000;
/// Pages read from the start of the log looking for the setup's API keys.
const MAX_SETUP_PAGES: u64 = 20;

pub struct Discovered {
    /// Generated invoice ids (any seller), for 404 lookups.
    pub foreign_ids: Vec<String>,
    /// A generated seller with a known secret, and some of its invoice ids.
    pub big_seller: Option<BigSeller>,
    /// Admin-stream pages read and how long that took (not part of any latency).
    pub pages: u64,
    pub api_keys_seen: u64,
}

pub struct BigSeller {
    pub organization_id: String,
    pub creds: Creds,
    pub invoice_ids: Vec<String>,
}

struct Page {
    invoices: Vec<(String, String)>,
    /// (key id, organization id, secret hash bytes)
    keys: Vec<(String, String, Vec<u8>)>,
    last_seq: u64,
    count: u64,
}

async fn page(api: &Api, after: u64) -> anyhow::Result<Page> {
    let answer = api
        .get(
            &format!("/admin/events?after={after}&limit={PAGE}"),
            Auth::Admin,
        )
        .await
        .context("reading the admin event stream")?;
    if answer.status != 200 {
        bail!("GET /admin/events: HTTP {}", answer.status);
    }
    let mut out = Page {
        invoices: Vec::new(),
        keys: Vec::new(),
        last_seq: after,
        count: 0,
    };
    for line in answer.body.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        out.count += 1;
        if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
            out.last_seq = seq;
        }
        let data = v.get("data").cloned().unwrap_or_default();
        let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        match v.get("type").and_then(Value::as_str) {
            Some("InvoiceCreated") => {
                if let (Some(id), Some(seller)) = (text("id"), text("sellerOrganizationId")) {
                    out.invoices.push((id, seller));
                }
            }
            Some("ApiKeyCreated") => {
                if let (Some(id), Some(org)) = (text("id"), text("organizationId")) {
                    out.keys.push((id, org, hash_bytes(data.get("secretHash"))));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The admin event stream shows a key's id as the bare UUID; the API names
/// keys `ek_` + its 32 hex digits.
fn api_key_id(raw: &str) -> String {
    if raw.starts_with("ek_") {
        raw.to_string()
    } else {
        format!("ek_{}", raw.replace('-', ""))
    }
}

/// `[u8; 32]` serializes as an array of numbers; accept hex too.
fn hash_bytes(v: Option<&Value>) -> Vec<u8> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_u64)
            .filter_map(|n| u8::try_from(n).ok())
            .collect(),
        Some(Value::String(s)) => (0..s.len() / 2)
            .filter_map(|i| s.get(2 * i..2 * i + 2))
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// Samples up to `sample` invoice ids from five points of a log of `head`
/// events, and looks for a generated key whose secret is `secret`.
pub async fn discover(
    api: &Api,
    head: u64,
    sample: usize,
    secret: Option<&str>,
) -> anyhow::Result<Discovered> {
    let mut starts: BTreeSet<u64> = [
        0,
        head / 4,
        head / 2,
        head / 4 * 3,
        head.saturating_sub(PAGE),
    ]
    .into_iter()
    .collect();
    let per_window = (sample / starts.len()).max(1);
    let mut invoices: Vec<(String, String)> = Vec::new();
    let mut keys: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut pages = 0;
    // The setup (organizations and keys) comes first: with a secret to
    // match, read from the start until the first invoice, bounded.
    if secret.is_some() {
        let mut after = 0;
        for _ in 0..MAX_SETUP_PAGES {
            let p = page(api, after).await?;
            pages += 1;
            keys.extend(p.keys);
            let done = !p.invoices.is_empty() || p.count == 0;
            invoices.extend(p.invoices.into_iter().take(per_window));
            after = p.last_seq;
            if done {
                break;
            }
        }
        starts.remove(&0);
    }
    for after in starts {
        let p = page(api, after).await?;
        pages += 1;
        keys.extend(p.keys);
        invoices.extend(p.invoices.into_iter().take(per_window));
    }
    let api_keys_seen = keys.len() as u64;
    let big_seller = secret.and_then(|secret| {
        let wanted: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        // Sellers by how many of the sampled invoices are theirs.
        let mut per_seller: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, seller) in &invoices {
            *per_seller.entry(seller.as_str()).or_default() += 1;
        }
        keys.iter()
            .filter(|(_, _, hash)| hash.as_slice() == wanted)
            .filter_map(|(key, org, _)| per_seller.get(org.as_str()).map(|n| (*n, key, org)))
            .max_by_key(|(n, _, _)| *n)
            .map(|(_, key, org)| BigSeller {
                organization_id: org.clone(),
                creds: Creds {
                    key: api_key_id(key),
                    secret: secret.to_string(),
                },
                invoice_ids: invoices
                    .iter()
                    .filter(|(_, s)| s == org)
                    .map(|(id, _)| id.clone())
                    .collect(),
            })
    });
    Ok(Discovered {
        foreign_ids: invoices.into_iter().map(|(id, _)| id).collect(),
        big_seller,
        pages,
        api_keys_seen,
    })
}
