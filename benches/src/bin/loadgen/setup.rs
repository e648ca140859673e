//! The untimed setup: organization pairs, connected and funded; for the
//! reads mix a few invoices per pair to read; for the webhooks mix an
//! endpoint per organization.

use crate::ops;
use anyhow::{bail, Context};
use expereon_benches::client::{
    self, request_id, Api, Auth, Creds, Pair, PairSpec, CURRENCY, DEPOSIT,
};
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Two organizations named after pair `n`, connected, the buyer funded.
async fn create_pair(api: &Api, n: usize) -> anyhow::Result<Pair> {
    let (seller_name, buyer_name) = (format!("Loadgen seller {n}"), format!("Loadgen buyer {n}"));
    let spec = PairSpec {
        seller_name: &seller_name,
        buyer_name: &buyer_name,
        currency: CURRENCY,
        deposit: DEPOSIT,
        reference: "loadgen",
    };
    client::create_pair(api, &spec).await
}

/// Runs `job(i)` for every `i < count` on `concurrency` tasks; the results
/// in order of `i`. The first error stops the other tasks' next jobs.
async fn for_each<T, F, Fut>(count: usize, concurrency: usize, job: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let tasks: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let next = next.clone();
            let job = job.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    match job(i).await {
                        Ok(t) => done.push((i, t)),
                        Err(e) => {
                            // Past `count`: the other tasks take no new job.
                            next.store(count, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                Ok(done)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await.context("a setup task panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

pub async fn create_pairs(
    api: &Api,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Arc<Pair>>> {
    let api = api.clone();
    for_each(count, concurrency, move |i| {
        let api = api.clone();
        async move {
            create_pair(&api, i)
                .await
                .map(Arc::new)
                .with_context(|| format!("setting up pair {i}"))
        }
    })
    .await
}

/// A pair and the invoices filled for it.
pub struct Filled {
    pub pair: Arc<Pair>,
    pub invoices: Vec<String>,
}

/// `per_pair` invoices for each pair, a third each left SUBMITTED,
/// APPROVED and SETTLED, so reads see every common state and the sellers
/// have balances too.
pub async fn fill(
    api: &Api,
    pairs: &[Arc<Pair>],
    per_pair: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Arc<Filled>>> {
    let api = api.clone();
    let pairs: Arc<Vec<Arc<Pair>>> = Arc::new(pairs.to_vec());
    for_each(pairs.len(), concurrency, move |i| {
        let api = api.clone();
        let pair = pairs[i].clone();
        async move {
            let mut invoices = Vec::with_capacity(per_pair);
            for n in 0..per_pair {
                let id = fill_one(&api, &pair, n)
                    .await
                    .with_context(|| format!("filling pair {i}"))?;
                invoices.push(id);
            }
            Ok(Arc::new(Filled { pair, invoices }))
        }
    })
    .await
}

async fn fill_one(api: &Api, pair: &Pair, n: usize) -> anyhow::Result<String> {
    let checks = api.checks();
    let created = checks.ok_json(
        "creating an invoice",
        ops::create_submit(api, pair, n as u64).await,
    )?;
    let id = checks.str_field(&created, "/id")?;
    if n % 3 >= 1 {
        checks.ok_json("approving an invoice", ops::approve(api, pair, &id).await)?;
    }
    if n % 3 == 2 {
        checks.ok_json("settling an invoice", ops::settle(api, pair, &id).await)?;
    }
    Ok(id)
}

/// What to tell the operator when the server's SSRF guard refuses the
/// receiver's loopback URL.
const PRIVATE_URL_HINT: &str = "the server refuses webhook URLs on loopback or \
private addresses (its SSRF guard), and the webhooks mix's receiver is loadgen \
itself on 127.0.0.1: restart the server with EXPEREON_WEBHOOK_ALLOW_PRIVATE=true";

/// `POST /settings/webhooks` for one organization: every event to `url`.
async fn subscribe_one(api: &Api, creds: &Creds, url: &str) -> anyhow::Result<()> {
    const WHAT: &str = "registering a webhook endpoint";
    let answer = api
        .post(
            "/settings/webhooks",
            Auth::Key(creds),
            &json!({
                "requestId": request_id(),
                "url": url,
                "events": ["*"],
                "description": "loadgen receiver",
            }),
        )
        .await
        .context(WHAT)?;
    // The guard's messages say "non-public address" (command-api's
    // webhooks/ssrf.rs); the status alone would not tell it from a typo.
    if !answer.ok() && String::from_utf8_lossy(&answer.body).contains("non-public") {
        bail!(
            "{WHAT} for {url}: HTTP {}: {PRIVATE_URL_HINT}",
            answer.status
        );
    }
    api.checks().ok_json(WHAT, Ok(answer))?;
    Ok(())
}

/// Subscribes the seller and the buyer of every pair to all events at
/// `url`; returns how many endpoints that made.
pub async fn subscribe(
    api: &Api,
    pairs: &[Arc<Pair>],
    url: &str,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let api = api.clone();
    let pairs: Arc<Vec<Arc<Pair>>> = Arc::new(pairs.to_vec());
    let url: Arc<str> = Arc::from(url);
    let count = pairs.len();
    for_each(count, concurrency, move |i| {
        let api = api.clone();
        let pair = pairs[i].clone();
        let url = url.clone();
        async move {
            let (seller, buyer) = tokio::join!(
                subscribe_one(&api, &pair.seller, &url),
                subscribe_one(&api, &pair.buyer, &url),
            );
            seller
                .and(buyer)
                .with_context(|| format!("subscribing pair {i}"))
        }
    })
    .await?;
    Ok(2 * count)
}
