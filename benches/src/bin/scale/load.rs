//! Closed-loop load: each task sends its next request when the previous
//! answer is in. Readers cycle through the read operations; writers run
//! whole invoice lifecycles (create + submit, approve, settle). Every task
//! keeps its own histograms, merged at the end, so recording costs no lock.

use crate::api::{status_rank, Write};
use expereon_benches::client::{Answer, Api, Auth, Creds, Pair};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail at run time.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

/// What one operation saw.
pub struct OpStats {
    pub latency: Histogram<u64>,
    pub ok: u64,
    /// Answers with another status than expected, by status.
    pub bad_status: BTreeMap<u16, u64>,
    /// No answer: connection refused or reset, timeout.
    pub transport: u64,
    /// The first few errors, for the log.
    pub examples: Vec<String>,
}

impl OpStats {
    pub fn new() -> OpStats {
        OpStats {
            latency: histogram(),
            ok: 0,
            bad_status: BTreeMap::new(),
            transport: 0,
            examples: Vec::new(),
        }
    }

    pub fn errors(&self) -> u64 {
        self.transport + self.bad_status.values().sum::<u64>()
    }

    /// Records one request; returns the answer when it had the expected status.
    pub fn record(
        &mut self,
        answer: anyhow::Result<Answer>,
        started: Instant,
        expect: u16,
    ) -> Option<Answer> {
        let micros = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
        match answer {
            Ok(a) if a.status == expect => {
                self.latency.saturating_record(micros.max(1));
                self.ok += 1;
                Some(a)
            }
            Ok(a) => {
                *self.bad_status.entry(a.status).or_default() += 1;
                self.example(format!("HTTP {}: {}", a.status, a.snippet(200)));
                None
            }
            Err(e) => {
                self.transport += 1;
                self.example(format!("{e:#}"));
                None
            }
        }
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 3 {
            self.examples.push(text);
        }
    }

    pub fn merge(&mut self, other: OpStats) {
        // Same bounds everywhere, so adding cannot fail; if it did the
        // counts below would still be right.
        self.latency.add(&other.latency).ok();
        self.ok += other.ok;
        for (s, n) in other.bad_status {
            *self.bad_status.entry(s).or_default() += n;
        }
        self.transport += other.transport;
        for e in other.examples {
            self.example(e);
        }
    }
}

/// A read operation of the mixed load.
#[derive(Clone)]
pub struct ReadOp {
    pub label: String,
    /// Which organization and how large, for the report.
    pub org: String,
    pub creds: Creds,
    pub target: Target,
    /// 200, or 404 for another organization's invoice.
    pub expect: u16,
}

#[derive(Clone)]
pub enum Target {
    /// `GET /invoices/{id}` with an id drawn at random from these.
    Invoice(Arc<Vec<String>>),
    /// A fixed path under `/api/v1`.
    Path(String),
}

/// splitmix64: enough to pick ids, and no shared state between tasks.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if n == 0 {
            0
        } else {
            (z % n as u64) as usize
        }
    }
}

/// A bound on requests per task, on top of the deadline.
const MAX_REQUESTS_PER_TASK: u64 = 50_000_000;

async fn reader(api: Api, ops: Arc<Vec<ReadOp>>, index: usize, deadline: Instant) -> Vec<OpStats> {
    let mut stats: Vec<OpStats> = ops.iter().map(|_| OpStats::new()).collect();
    let mut rng = Rng::new(0x5EED ^ index as u64);
    for n in 0..MAX_REQUESTS_PER_TASK {
        if Instant::now() >= deadline || ops.is_empty() {
            break;
        }
        // Each reader starts at another operation, so all are in flight at once.
        let i = (index + n as usize) % ops.len();
        let op = &ops[i];
        let path = match &op.target {
            Target::Invoice(ids) if ids.is_empty() => continue,
            Target::Invoice(ids) => format!("/invoices/{}", ids[rng.below(ids.len())]),
            Target::Path(p) => p.clone(),
        };
        let started = Instant::now();
        let answer = api.get(&path, Auth::Key(&op.creds)).await;
        stats[i].record(answer, started, op.expect);
    }
    stats
}

/// What the writers saw, one entry per [`Write`] in lifecycle order.
pub struct WriteStats {
    pub ops: [OpStats; 3],
    pub lifecycles: u64,
}

impl WriteStats {
    fn new() -> WriteStats {
        WriteStats {
            ops: [OpStats::new(), OpStats::new(), OpStats::new()],
            lifecycles: 0,
        }
    }

    pub fn merge(&mut self, other: WriteStats) {
        for (a, b) in self.ops.iter_mut().zip(other.ops) {
            a.merge(b);
        }
        self.lifecycles += other.lifecycles;
    }
}

pub const LIFECYCLE: [Write; 3] = [Write::CreateSubmit, Write::Approve, Write::Settle];

/// Acknowledged writes: invoice id → the status its last acknowledged command left.
pub type Acked = Arc<Mutex<BTreeMap<String, &'static str>>>;

/// How a group of writer tasks runs.
pub struct Plan {
    pub tasks: usize,
    /// Lifecycles to start, over all tasks.
    pub limit: u64,
    /// How many of the three commands lifecycle `n` runs (the fill leaves
    /// some invoices SUBMITTED or APPROVED).
    pub steps: fn(u64) -> usize,
    pub deadline: Instant,
    pub stop: Arc<AtomicBool>,
    /// Every acknowledged step goes here when given.
    pub acked: Option<Acked>,
}

/// Runs lifecycles until the plan's limit, its deadline or its `stop`.
async fn writer(api: Api, pair: Arc<Pair>, counter: Arc<AtomicU64>, plan: Arc<Plan>) -> WriteStats {
    let mut stats = WriteStats::new();
    'lifecycles: loop {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if n >= plan.limit {
            break;
        }
        let mut invoice: Option<String> = None;
        for (k, write) in LIFECYCLE.iter().enumerate().take((plan.steps)(n)) {
            if Instant::now() >= plan.deadline || plan.stop.load(Ordering::Relaxed) {
                break 'lifecycles;
            }
            let started = Instant::now();
            let answer = write.send(&api, &pair, invoice.as_deref(), n).await;
            let Some(answer) = stats.ops[k].record(answer, started, 200) else {
                continue 'lifecycles;
            };
            if *write == Write::CreateSubmit {
                match answer
                    .json()
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string))
                {
                    Some(id) => invoice = Some(id),
                    None => continue 'lifecycles,
                }
            }
            if let (Some(acked), Some(id)) = (&plan.acked, &invoice) {
                if let Ok(mut map) = acked.lock() {
                    map.insert(id.clone(), write.status());
                }
            }
        }
        stats.lifecycles += 1;
    }
    stats
}

fn all_steps(_: u64) -> usize {
    3
}

/// The fill's status mix: a third each SUBMITTED, APPROVED and SETTLED.
fn fill_steps(n: u64) -> usize {
    1 + (n % 3) as usize
}

/// Fills the benchmark's seller with `count` invoices from `tasks` tasks;
/// returns their ids and what the writes cost.
pub async fn fill(
    api: &Api,
    pair: &Arc<Pair>,
    count: u64,
    tasks: usize,
    max_time: Duration,
) -> (Vec<String>, WriteStats) {
    let acked: Acked = Arc::default();
    let plan = Plan {
        tasks,
        limit: count,
        steps: fill_steps,
        deadline: Instant::now() + max_time,
        stop: Arc::default(),
        acked: Some(acked.clone()),
    };
    let stats = run_writers(api, pair, plan).await;
    let ids = acked
        .lock()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    (ids, stats)
}

async fn run_writers(api: &Api, pair: &Arc<Pair>, plan: Plan) -> WriteStats {
    let counter = Arc::new(AtomicU64::new(0));
    let plan = Arc::new(plan);
    let handles: Vec<_> = (0..plan.tasks)
        .map(|_| {
            tokio::spawn(writer(
                api.clone(),
                pair.clone(),
                counter.clone(),
                plan.clone(),
            ))
        })
        .collect();
    let mut total = WriteStats::new();
    for h in handles {
        if let Ok(s) = h.await {
            total.merge(s);
        }
    }
    total
}

/// The mixed load's result.
pub struct Mixed {
    pub reads: Vec<OpStats>,
    pub writes: WriteStats,
    pub elapsed: Duration,
}

/// `readers` tasks on `ops` and `writers` tasks running lifecycles, for `duration`.
pub async fn mixed(
    api: &Api,
    pair: &Arc<Pair>,
    ops: Arc<Vec<ReadOp>>,
    readers: usize,
    writers: usize,
    duration: Duration,
) -> Mixed {
    let started = Instant::now();
    let deadline = started + duration;
    let read_handles: Vec<_> = (0..readers)
        .map(|i| tokio::spawn(reader(api.clone(), ops.clone(), i, deadline)))
        .collect();
    let plan = Plan {
        tasks: writers,
        limit: u64::MAX,
        steps: all_steps,
        deadline,
        stop: Arc::default(),
        acked: None,
    };
    let writes = run_writers(api, pair, plan).await;
    let mut reads: Vec<OpStats> = ops.iter().map(|_| OpStats::new()).collect();
    for h in read_handles {
        if let Ok(stats) = h.await {
            for (a, b) in reads.iter_mut().zip(stats) {
                a.merge(b);
            }
        }
    }
    Mixed {
        reads,
        writes,
        elapsed: started.elapsed(),
    }
}

/// Write load that is cut by a SIGKILL: the writers run until `stop` is
/// set; every acknowledged step is recorded in `acked`.
pub fn spawn_writers_until_stopped(
    api: &Api,
    pair: &Arc<Pair>,
    tasks: usize,
    stop: Arc<AtomicBool>,
    acked: Acked,
    max_time: Duration,
) -> tokio::task::JoinHandle<WriteStats> {
    let api = api.clone();
    let pair = pair.clone();
    let plan = Plan {
        tasks,
        limit: u64::MAX,
        steps: all_steps,
        deadline: Instant::now() + max_time,
        stop,
        acked: Some(acked),
    };
    tokio::spawn(async move { run_writers(&api, &pair, plan).await })
}

/// After the crash and restart: every acknowledged step must still be
/// there. Checks up to `max` invoices (the most recent ids are as good as
/// any: ids are UUIDv7, so the last in order are the newest). Returns
/// (checked, missing or behind, examples).
pub async fn check_acked(
    api: &Api,
    pair: &Pair,
    acked: &BTreeMap<String, &'static str>,
    max: usize,
) -> (u64, u64, Vec<String>) {
    let mut checked = 0;
    let mut lost = 0;
    let mut examples = Vec::new();
    for (id, expected) in acked.iter().rev().take(max) {
        checked += 1;
        let answer = api
            .get(&format!("/invoices/{id}"), Auth::Key(&pair.seller))
            .await;
        let status = match answer {
            Ok(a) if a.status == 200 => a
                .json()
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_string)),
            Ok(a) => Some(format!("HTTP {}", a.status)),
            Err(e) => Some(format!("{e:#}")),
        };
        let status = status.unwrap_or_default();
        if status_rank(&status) < status_rank(expected) {
            lost += 1;
            if examples.len() < 5 {
                examples.push(format!("{id}: acknowledged {expected}, now {status}"));
            }
        }
    }
    (checked, lost, examples)
}
