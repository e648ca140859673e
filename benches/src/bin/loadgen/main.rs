//! `loadgen`: closed-loop HTTP load on a running Expereon server, the way
//! its clients use it: many connections, each with its own organization
//! pair, every command with a fresh `requestId`. Prints throughput and
//! latency percentiles per operation (issue 13).
//!
//! Setup (organizations, connections, deposits; for `--mix reads` a few
//! invoices per pair; for `--mix webhooks` an endpoint per organization) is
//! not timed; neither is the warm-up, which opens the keep-alive
//! connections. Only answers that arrive inside the measured window count,
//! and only webhook deliveries of events that happened inside it.

mod backlog;
mod deliveries;
mod ops;
mod receiver;
mod report;
mod setup;
mod stats;
mod workload;

use anyhow::{bail, Context};
use clap::Parser;
use deliveries::{Deliveries, WallWindow};
use expereon_benches::client::{self, Api, Checks};
use receiver::Receiver;
use std::time::{Duration, Instant};
use workload::{Mix, Targets};

#[derive(Parser, Clone)]
#[command(
    name = "loadgen",
    about = "Closed-loop HTTP load on a running Expereon server: throughput and latency percentiles",
    after_help = "The server must be started with a high rate limit, e.g.\n  \
EXPEREON_RATE_LIMIT=1000000 EXPEREON_ADMIN_TOKEN=... expereon serve\n\
otherwise it answers 429 past 100 requests/s per API key and loadgen measures the limiter.\n\n\
--mix webhooks also needs EXPEREON_WEBHOOK_ALLOW_PRIVATE=true: the endpoints point at loadgen's\n\
own receiver on 127.0.0.1, which the server's SSRF guard refuses otherwise. The server must run\n\
on this machine, whose clock both the event times and the arrivals are read from.\n\n\
With --json, the table goes to stderr and stdout carries only the JSON object."
)]
struct Args {
    /// The server's root URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's operator token (admin API: organizations, deposits).
    #[arg(long, env = "EXPEREON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Concurrent closed-loop workers, each with one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,
    /// Seller/buyer pairs; worker i uses pair i % pairs [default: --connections,
    /// so no two workers share a pair].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pairs: Option<u64>,
    /// Seconds measured.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    duration_secs: u64,
    /// Seconds of load before the measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// What the workers send. `webhooks` runs `lifecycle` with every
    /// organization subscribed to all events at loadgen's own receiver, and
    /// reports deliveries/s, event-to-delivery latency and the backlog's
    /// drain; the server must run on this machine with
    /// EXPEREON_WEBHOOK_ALLOW_PRIVATE=true, or it refuses the receiver's
    /// loopback URL.
    #[arg(long, value_enum, default_value_t = Mix::Lifecycle)]
    mix: Mix,
    /// With `--mix webhooks`: at most this many seconds to wait after the
    /// load for the server's webhook backlog to drain.
    #[arg(long, default_value_t = 120)]
    drain_timeout_secs: u64,
    /// Invoices created per pair before a `reads` run (a third each left
    /// SUBMITTED, APPROVED, SETTLED).
    #[arg(long, default_value_t = 20)]
    fill_per_pair: usize,
    /// Setup requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    setup_concurrency: u64,
    /// Also print the results as one JSON object on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Open loop instead: start lifecycles at this many commands/s in all
    /// (each command's latency counted from when it was due), with
    /// `--mix lifecycle` or `webhooks`; `--connections` is then only the
    /// keep-alive pool and the pair count's default.
    #[arg(long)]
    rate: Option<f64>,
}

macro_rules! progress {
    ($($t:tt)*) => { eprintln!("loadgen: {}", format_args!($($t)*)) };
}

/// What to tell the operator when the server rate-limits us.
const RATE_LIMIT_HINT: &str = "the server is rate limiting (429): it allows \
EXPEREON_RATE_LIMIT requests/s per API key (default 100); restart it with \
EXPEREON_RATE_LIMIT=1000000 to measure the server rather than its limiter";

/// Characters of a failed answer's body an error quotes.
const QUOTE_CHARS: usize = 200;

/// Any 2xx is success; a 429 in the setup is almost always the default
/// rate limit, so the error says how to lift it rather than quoting it.
const CHECKS: Checks = Checks {
    any_2xx: true,
    quote_chars: QUOTE_CHARS,
    rate_limit_hint: Some(RATE_LIMIT_HINT),
};

fn main() -> std::process::ExitCode {
    client::run_main("loadgen", run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let connections = usize::try_from(args.connections)?;
    let pairs = usize::try_from(args.pairs.unwrap_or(args.connections))?;
    let setup_concurrency = usize::try_from(args.setup_concurrency)?;
    let api = Api::new(
        &args.url,
        &args.admin_token,
        connections.max(setup_concurrency),
        CHECKS,
    )?;
    api.health().await?;

    if args.rate.is_some() && args.mix == Mix::Reads {
        bail!("--rate works with --mix lifecycle or webhooks");
    }
    if args
        .rate
        .is_some_and(|r| r.is_nan() || r <= 0.0 || r.is_infinite())
    {
        bail!("--rate must be a positive number of commands per second");
    }
    let setup_started = Instant::now();
    // Before the setup: a receiver that cannot listen should fail the run
    // before minutes of setup, not after.
    let receiver = match args.mix {
        Mix::Webhooks => Some(Receiver::start().await?),
        Mix::Lifecycle | Mix::Reads => None,
    };
    progress!("setting up {pairs} organization pairs");
    let created = setup::create_pairs(&api, pairs, setup_concurrency).await?;
    let mut endpoints = 0;
    let targets = match args.mix {
        Mix::Lifecycle => Targets::Lifecycle(created),
        Mix::Webhooks => {
            let url = receiver
                .as_ref()
                .map(Receiver::url)
                .context("no webhook receiver")?;
            progress!(
                "subscribing {} organizations to all events at {url}",
                2 * pairs
            );
            endpoints = setup::subscribe(&api, &created, &url, setup_concurrency).await?;
            Targets::Lifecycle(created)
        }
        Mix::Reads => {
            progress!("filling {} invoices per pair", args.fill_per_pair);
            let filled = setup::fill(&api, &created, args.fill_per_pair, setup_concurrency).await?;
            Targets::Reads(filled)
        }
    };
    let setup = setup_started.elapsed();

    let warmup = Duration::from_secs(args.warmup_secs);
    let length = Duration::from_secs(args.duration_secs);
    let start = Instant::now();
    // The server stamps events with the wall clock; this pairs it with the
    // monotonic one the window is kept on.
    let start_wall = chrono::Utc::now().timestamp_micros();
    let window = stats::Window {
        from: start + warmup,
        to: start + warmup + length,
    };
    progress!(
        "{} workers: {} s warm-up, then {} s measured",
        connections,
        args.warmup_secs,
        args.duration_secs
    );
    // On a small machine loadgen competes with the server for the same
    // cores; its own CPU time says how much. Taken at the window's edges,
    // so neither setup nor warm-up is in it.
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(window.from.into()).await;
        let before = expereon_benches::cpu_time("/proc/self/stat");
        tokio::time::sleep_until(window.to.into()).await;
        let after = expereon_benches::cpu_time("/proc/self/stat");
        Some(after?.saturating_sub(before?))
    });
    let stats = match (args.rate, &targets) {
        (None, _) => workload::run(&api, &targets, connections, window).await?,
        (Some(rate), Targets::Lifecycle(pairs)) => {
            progress!("open loop: {rate} commands/s");
            workload::paced(&api, pairs, window, rate).await?
        }
        (Some(_), Targets::Reads(_)) => bail!("--rate works with --mix lifecycle or webhooks"),
    };
    let client_cpu = cpu.await.context("the CPU sampler panicked")?;
    let deliveries = match &receiver {
        Some(receiver) => {
            let cap = Duration::from_secs(args.drain_timeout_secs);
            progress!(
                "load done; {} webhook deliveries so far, waiting (at most {} s) for the server's backlog",
                receiver.count(),
                args.drain_timeout_secs
            );
            let backlog = backlog::wait(&api, cap).await;
            let wall = WallWindow::of(&window, (start, start_wall));
            Some(Deliveries::new(
                &receiver.take(),
                &window,
                wall,
                backlog,
                endpoints,
                receiver.url(),
            )?)
        }
        None => None,
    };

    let all = stats.overall()?;
    let setting = report::Setting {
        url: api.root().to_string(),
        mix: args.mix,
        connections,
        rate: args.rate,
        pairs,
        warmup,
        window: window.length(),
        setup,
        client_cpu,
    };
    let table = report::text(&setting, &stats, &all, deliveries.as_ref());
    if args.json {
        eprint!("{table}");
        println!(
            "{}",
            report::json(&setting, &stats, &all, deliveries.as_ref())
        );
    } else {
        print!("{table}");
    }
    for example in &stats.examples {
        progress!("error: {example}");
    }
    if stats.saw_429 {
        progress!("hint: {RATE_LIMIT_HINT}");
    }
    if let Some(d) = &deliveries {
        if let Some(e) = &d.backlog.error {
            progress!("error: asking the server for its webhook backlog: {e}");
        }
    }
    if all.ok() == 0 {
        bail!("no request succeeded in the measured window");
    }
    if deliveries.as_ref().is_some_and(|d| d.of_window == 0) {
        bail!("no webhook delivery of an event of the measured window arrived");
    }
    Ok(())
}
