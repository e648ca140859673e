//! Latency histograms and error counts. Each worker keeps its own
//! [`Stats`], merged once at the end, so recording a sample takes no lock.

use crate::ops::Op;
use expereon_benches::client::Answer;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The measured part of the run: answers that arrive in it are counted,
/// those of the warm-up and the stragglers after it are not.
#[derive(Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub to: Instant,
}

impl Window {
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.from && t <= self.to
    }

    pub fn over(&self) -> bool {
        Instant::now() >= self.to
    }

    pub fn length(&self) -> Duration {
        self.to.saturating_duration_since(self.from)
    }
}

/// Microseconds, 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// What one operation saw inside the window.
#[derive(Clone)]
pub struct OpStats {
    /// Latency of the 2xx answers only: an error is counted, not sampled.
    pub latency: Histogram<u64>,
    pub by_status: BTreeMap<u16, u64>,
    /// No answer: refused, reset, timed out.
    pub transport: u64,
    /// A 2xx whose body lacked what the next step needs (an invoice id).
    pub malformed: u64,
}

impl OpStats {
    fn new() -> anyhow::Result<OpStats> {
        Ok(OpStats {
            latency: histogram()?,
            by_status: BTreeMap::new(),
            transport: 0,
            malformed: 0,
        })
    }

    pub fn ok(&self) -> u64 {
        self.latency.len()
    }

    pub fn errors(&self) -> u64 {
        self.transport + self.malformed + self.by_status.values().sum::<u64>()
    }

    fn merge(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        for (status, n) in &other.by_status {
            *self.by_status.entry(*status).or_default() += n;
        }
        self.transport += other.transport;
        self.malformed += other.malformed;
        Ok(())
    }
}

/// The first errors seen, for the operator (bounded: a dead server would
/// otherwise fill memory with the same message).
const EXAMPLES: usize = 5;

pub struct Stats {
    /// Indexed by [`Op::index`].
    pub ops: Vec<OpStats>,
    /// Lifecycles whose settlement was answered inside the window.
    pub lifecycles: u64,
    /// Errors of the warm-up and after the window: not in the results, but
    /// a 429 there still deserves the hint.
    pub unmeasured_errors: u64,
    pub saw_429: bool,
    pub examples: Vec<String>,
}

impl Stats {
    pub fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            ops: Op::ALL
                .iter()
                .map(|_| OpStats::new())
                .collect::<anyhow::Result<_>>()?,
            lifecycles: 0,
            unmeasured_errors: 0,
            saw_429: false,
            examples: Vec::new(),
        })
    }

    /// Records the request `op` started at `started`; gives the answer
    /// back when it is a 2xx, inside the window or not.
    pub fn record(
        &mut self,
        op: Op,
        answer: anyhow::Result<Answer>,
        started: Instant,
        window: &Window,
    ) -> Option<Answer> {
        let done = Instant::now();
        let counted = window.contains(done);
        let error = match answer {
            Ok(a) if a.ok() => {
                if counted {
                    let micros =
                        u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                    self.ops[op.index()]
                        .latency
                        .saturating_record(micros.max(1));
                }
                return Some(a);
            }
            Ok(a) => {
                self.saw_429 |= a.status == 429;
                if counted {
                    *self.ops[op.index()].by_status.entry(a.status).or_default() += 1;
                }
                format!(
                    "{}: HTTP {}: {}",
                    op.name(),
                    a.status,
                    a.snippet(crate::QUOTE_CHARS)
                )
            }
            Err(e) => {
                if counted {
                    self.ops[op.index()].transport += 1;
                }
                format!("{}: {e:#}", op.name())
            }
        };
        if !counted {
            self.unmeasured_errors += 1;
        }
        self.example(error);
        None
    }

    /// A 2xx that cannot be used: an error of `op`, though its latency was sampled.
    pub fn malformed(&mut self, op: Op, window: &Window) {
        if window.contains(Instant::now()) {
            self.ops[op.index()].malformed += 1;
        } else {
            self.unmeasured_errors += 1;
        }
        self.example(format!("{}: a 2xx without an invoice id", op.name()));
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }

    pub fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b)?;
        }
        self.lifecycles += other.lifecycles;
        self.unmeasured_errors += other.unmeasured_errors;
        self.saw_429 |= other.saw_429;
        for e in &other.examples {
            self.example(e.clone());
        }
        Ok(())
    }

    /// Every operation together.
    pub fn overall(&self) -> anyhow::Result<OpStats> {
        let mut all = OpStats::new()?;
        for op in &self.ops {
            all.merge(op)?;
        }
        Ok(all)
    }
}
