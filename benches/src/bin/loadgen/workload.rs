//! The closed-loop workers: each sends its next request as soon as the
//! previous answer is in, so the offered load is `connections` requests in
//! flight, whatever the server's speed.

use crate::ops::{self, Op};
use crate::setup::Filled;
use crate::stats::{Stats, Window};
use anyhow::{bail, Context};
use expereon_benches::client::{Api, Pair};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// create+submit, approve, settle, over and over: three commands per invoice.
    Lifecycle,
    /// get an invoice, list invoices, list balances, as seller and buyer in turn.
    Reads,
    /// lifecycle, with every organization subscribed to all webhook events
    /// at loadgen's own receiver (needs EXPEREON_WEBHOOK_ALLOW_PRIVATE=true
    /// on the server, on this machine).
    Webhooks,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Lifecycle => "lifecycle",
            Mix::Reads => "reads",
            Mix::Webhooks => "webhooks",
        }
    }

    pub fn ops(self) -> &'static [Op] {
        match self {
            Mix::Lifecycle | Mix::Webhooks => &[Op::CreateSubmit, Op::Approve, Op::Settle],
            Mix::Reads => &[Op::GetInvoice, Op::ListInvoices, Op::ListBalances],
        }
    }

    /// Whether the workers run lifecycles, so requests are commands.
    pub fn commands(self) -> bool {
        match self {
            Mix::Lifecycle | Mix::Webhooks => true,
            Mix::Reads => false,
        }
    }
}

/// After an error a worker pauses this long: a failing server answers
/// fast, and a worker retrying at once would only spin the client's CPU
/// (it costs throughput only when there are errors, which are reported).
const ERROR_PAUSE: Duration = Duration::from_millis(10);

async fn lifecycle_worker(
    api: Api,
    pair: Arc<Pair>,
    window: Window,
    worker: usize,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::new()?;
    // Spreads the line items' quantities, hence the totals, over workers.
    let mut n = worker as u64;
    while !window.over() {
        n += 1;
        if !lifecycle(&api, &pair, n, Instant::now(), &mut stats, &window).await {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    Ok(stats)
}

/// One invoice through create+submit, approve and settle, each answer
/// recorded; false after the first failure (the rest is not sent). The first
/// command's latency counts from `first_due`, the moment it was meant to be
/// sent: an open-loop run that falls behind its schedule shows it.
async fn lifecycle(
    api: &Api,
    pair: &Pair,
    n: u64,
    first_due: Instant,
    stats: &mut Stats,
    window: &Window,
) -> bool {
    let answer = ops::create_submit(api, pair, n).await;
    let Some(answer) = stats.record(Op::CreateSubmit, answer, first_due, window) else {
        return false;
    };
    let Some(invoice) = ops::invoice_id(&answer) else {
        stats.malformed(Op::CreateSubmit, window);
        return false;
    };
    if window.over() {
        return true;
    }
    let started = Instant::now();
    let answer = ops::approve(api, pair, &invoice).await;
    if stats.record(Op::Approve, answer, started, window).is_none() {
        return false;
    }
    if window.over() {
        return true;
    }
    let started = Instant::now();
    let answer = ops::settle(api, pair, &invoice).await;
    if stats.record(Op::Settle, answer, started, window).is_none() {
        return false;
    }
    if window.contains(Instant::now()) {
        stats.lifecycles += 1;
    }
    true
}

/// Lifecycles in flight at once past which an open-loop run gives up: the
/// server is not keeping up with the rate asked for.
const MAX_PACED_IN_FLIGHT: usize = 10_000;

/// Open loop: a lifecycle starts every `3 / rate` seconds (three commands
/// each), on pair after pair, whether or not earlier ones were answered, so
/// the server sees `rate` commands/s as long as it keeps up, and the
/// latencies are those of that rate (not of however fast a closed loop
/// happens to go).
pub async fn paced(
    api: &Api,
    pairs: &[Arc<Pair>],
    window: Window,
    rate: f64,
) -> anyhow::Result<Stats> {
    if pairs.is_empty() || rate.is_nan() || rate <= 0.0 {
        bail!("an open-loop run needs pairs and a positive --rate");
    }
    let every = Duration::from_secs_f64(3.0 / rate);
    let start = Instant::now();
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for k in 0u64.. {
        let due = start + every.mul_f64(k as f64);
        if due >= window.to {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= MAX_PACED_IN_FLIGHT {
            bail!(
                "{MAX_PACED_IN_FLIGHT} lifecycles in flight: the server does not keep up with {rate} commands/s"
            );
        }
        let (api, pair, in_flight) = (
            api.clone(),
            pairs[k as usize % pairs.len()].clone(),
            in_flight.clone(),
        );
        in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        handles.push(tokio::spawn(async move {
            let mut stats = Stats::new()?;
            lifecycle(&api, &pair, k, due, &mut stats, &window).await;
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, anyhow::Error>(stats)
        }));
    }
    let mut total = Stats::new()?;
    for handle in handles {
        total.merge(&handle.await.context("a lifecycle panicked")??)?;
    }
    Ok(total)
}

/// splitmix64: picks invoice ids with no state shared between workers.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

async fn reads_worker(
    api: Api,
    filled: Arc<Filled>,
    window: Window,
    worker: usize,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::new()?;
    let mut rng = Rng(0x5EED ^ worker as u64);
    // Workers start at different operations, so all three are in flight at once.
    let mut k = worker;
    while !window.over() {
        // Operation k % 3, party (k / 3) % 2: every combination in six rounds.
        let creds = match (k / 3) % 2 {
            0 => &filled.pair.seller,
            _ => &filled.pair.buyer,
        };
        let started = Instant::now();
        let (op, answer) = match k % 3 {
            0 if !filled.invoices.is_empty() => {
                let id = &filled.invoices[rng.below(filled.invoices.len())];
                (Op::GetInvoice, ops::get_invoice(&api, creds, id).await)
            }
            0 | 1 => (Op::ListInvoices, ops::list_invoices(&api, creds).await),
            _ => (Op::ListBalances, ops::list_balances(&api, creds).await),
        };
        if stats.record(op, answer, started, &window).is_none() {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        k += 1;
    }
    Ok(stats)
}

/// What the workers need for a mix: the pairs, filled or not.
pub enum Targets {
    Lifecycle(Vec<Arc<Pair>>),
    Reads(Vec<Arc<Filled>>),
}

/// Starts `connections` workers now, worker `i` on pair `i % pairs`, and
/// merges what they saw once the window is over.
pub async fn run(
    api: &Api,
    targets: &Targets,
    connections: usize,
    window: Window,
) -> anyhow::Result<Stats> {
    let empty = match targets {
        Targets::Lifecycle(pairs) => pairs.is_empty(),
        Targets::Reads(filled) => filled.is_empty(),
    };
    if empty {
        bail!("no organization pairs to run on");
    }
    let handles: Vec<_> = (0..connections)
        .map(|i| match targets {
            Targets::Lifecycle(pairs) => {
                let pair = pairs[i % pairs.len()].clone();
                tokio::spawn(lifecycle_worker(api.clone(), pair, window, i))
            }
            Targets::Reads(filled) => {
                let filled = filled[i % filled.len()].clone();
                tokio::spawn(reads_worker(api.clone(), filled, window, i))
            }
        })
        .collect();
    let mut total = Stats::new()?;
    for handle in handles {
        let stats = handle.await.context("a worker panicked")??;
        total.merge(&stats)?;
    }
    Ok(total)
}
