//! Bulk settlement through HTTP: how many invoices per second
//! `POST /payments/bulk-settle` settles when several calls of up to 500
//! ids are in flight at once (issue 13's "bulk-settle through HTTP" row).
//!
//! Setup (not timed): one seller/buyer pair per concurrent caller; each
//! seller creates and submits `rounds × ids-per-call` invoices, which the
//! buyer approves in bulk. Then every caller settles its own invoices,
//! `ids-per-call` at a time, and the run reports settlements/s over the
//! whole timed phase and each call's latency.

use anyhow::{bail, Context};
use clap::Parser;
use expereon_benches::client::{
    create_pair, invoice_body, request_id, run_main, Api, Auth, Checks, Pair, PairSpec, CURRENCY,
    DEPOSIT,
};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHECKS: Checks = Checks {
    any_2xx: true,
    quote_chars: 400,
    rate_limit_hint: Some("start the server with EXPEREON_RATE_LIMIT=1000000"),
};

#[derive(Parser, Debug)]
#[command(about = "Settlements per second through POST /payments/bulk-settle")]
struct Args {
    /// The server's root URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's operator token (organizations, deposits).
    #[arg(long, env = "EXPEREON_ADMIN_TOKEN")]
    admin_token: String,
    /// Bulk calls in flight at once (one pair each).
    #[arg(long, default_value_t = 3)]
    calls_at_once: usize,
    /// Invoice ids per call (the API allows 500 at most).
    #[arg(long, default_value_t = 500)]
    ids_per_call: usize,
    /// Calls each caller makes, one after another.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Invoices created at once during the setup.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
}

fn main() -> ExitCode {
    run_main("bulksettle", run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.ids_per_call == 0 || args.rounds == 0 || args.calls_at_once == 0 {
        bail!("--calls-at-once, --ids-per-call and --rounds must be positive");
    }
    let connections = args.calls_at_once.max(args.setup_concurrency);
    let api = Api::new(&args.url, &args.admin_token, connections, CHECKS)?;
    api.health().await?;
    let per_caller = args.ids_per_call * args.rounds;
    eprintln!(
        "bulksettle: {} callers, {} invoices each ({} calls of {})",
        args.calls_at_once, per_caller, args.rounds, args.ids_per_call
    );
    let started = Instant::now();
    let mut callers = Vec::new();
    for i in 0..args.calls_at_once {
        let pair = Arc::new(new_pair(&api, i).await?);
        let ids = approved_invoices(&api, &pair, per_caller, args.setup_concurrency).await?;
        callers.push((pair, ids));
    }
    eprintln!(
        "bulksettle: setup done in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|(pair, ids)| {
            let api = api.clone();
            let chunk = args.ids_per_call;
            tokio::spawn(async move { settle_all(&api, &pair, &ids, chunk).await })
        })
        .collect();
    let mut calls = Vec::new();
    let mut settled = 0usize;
    for task in tasks {
        let (n, latencies) = task.await.context("a caller panicked")??;
        settled += n;
        calls.extend(latencies);
    }
    let elapsed = started.elapsed();
    report(settled, elapsed, &mut calls, &args);
    Ok(())
}

async fn new_pair(api: &Api, i: usize) -> anyhow::Result<Pair> {
    let seller = format!("Bulk seller {i}");
    let buyer = format!("Bulk buyer {i}");
    create_pair(
        api,
        &PairSpec {
            seller_name: &seller,
            buyer_name: &buyer,
            currency: CURRENCY,
            deposit: DEPOSIT,
            reference: "bulksettle funding",
        },
    )
    .await
}

/// `count` invoices of `pair`, created and submitted by the seller, then
/// approved by the buyer in bulk: ready to settle.
async fn approved_invoices(
    api: &Api,
    pair: &Arc<Pair>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    let mut next = 0usize;
    while next < count {
        let batch: Vec<_> = (next..count.min(next + concurrency))
            .map(|n| {
                let api = api.clone();
                let pair = pair.clone();
                tokio::spawn(async move {
                    let answer = api
                        .post(
                            "/invoices",
                            Auth::Key(&pair.seller),
                            &invoice_body(&pair, n as u64, "2030-06-30"),
                        )
                        .await;
                    let v = api.checks().ok_json("creating an invoice", answer)?;
                    api.checks().str_field(&v, "/id")
                })
            })
            .collect();
        next += batch.len();
        for task in batch {
            ids.push(task.await.context("a setup task panicked")??);
        }
    }
    for chunk in ids.chunks(500) {
        bulk(api, pair, "/invoices/bulk-approve", chunk).await?;
    }
    Ok(ids)
}

/// Settles `ids` `chunk` at a time, one call after another: the number
/// settled and each call's latency.
async fn settle_all(
    api: &Api,
    pair: &Pair,
    ids: &[String],
    chunk: usize,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let mut latencies = Vec::new();
    let mut settled = 0;
    for part in ids.chunks(chunk) {
        let started = Instant::now();
        settled += bulk(api, pair, "/payments/bulk-settle", part).await?;
        latencies.push(started.elapsed());
    }
    Ok((settled, latencies))
}

/// One bulk call by the buyer on `ids`: how many succeeded, which must be
/// every id sent (a partly failed call would make the rate meaningless).
async fn bulk(api: &Api, pair: &Pair, path: &str, ids: &[String]) -> anyhow::Result<usize> {
    let answer = api
        .post(
            path,
            Auth::Key(&pair.buyer),
            &json!({ "requestId": request_id(), "invoiceIds": ids }),
        )
        .await;
    let v = api.checks().ok_json(path, answer)?;
    let sent = ids.len();
    let succeeded = v
        .get("succeeded")
        .and_then(Value::as_u64)
        .context("a bulk answer without `succeeded`")? as usize;
    if succeeded != sent {
        bail!(
            "{path}: {succeeded} of {sent} succeeded: {}",
            v.to_string().chars().take(400).collect::<String>()
        );
    }
    Ok(succeeded)
}

fn report(settled: usize, elapsed: Duration, calls: &mut [Duration], args: &Args) {
    calls.sort();
    let ms = |q: f64| {
        let i = ((calls.len() as f64 - 1.0) * q).round() as usize;
        calls.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "bulk-settle: {} calls at once, {} ids per call: {settled} settled in {:.2} s = {:.0} settlements/s",
        args.calls_at_once,
        args.ids_per_call,
        elapsed.as_secs_f64(),
        settled as f64 / elapsed.as_secs_f64()
    );
    println!(
        "per call ({} calls): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        calls.len(),
        ms(0.5),
        ms(0.9),
        ms(1.0)
    );
}
