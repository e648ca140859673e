//! Prometheus text metrics, kept by hand: a few counters and one histogram do
//! not justify a metrics framework.

use ledger_core::engine::{EngineStats, BATCH_BUCKETS, SYNC_BUCKETS_MICROS};
use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_SECONDS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    commands: Mutex<BTreeMap<&'static str, u64>>,
    /// The start-up check of stored files against their `FileStored` facts.
    pub files: FilesCheck,
    /// What came of webhook delivery attempts.
    pub webhooks: WebhookStats,
}

/// How long a delivery took from its event to the receiver's 2xx; webhooks
/// are retried over minutes and hours, so the buckets reach further than
/// the request buckets.
const DELIVERY_BUCKETS_SECONDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0,
];

/// What came of one webhook delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx: the delivery is done.
    Succeeded,
    /// It failed and another attempt is scheduled.
    Retrying,
    /// It failed and nothing more will be tried (schedule used up, or the
    /// endpoint deleted).
    Failed,
}

#[derive(Default)]
pub struct WebhookStats {
    succeeded: AtomicU64,
    retrying: AtomicU64,
    failed: AtomicU64,
    delivery: Mutex<DeliveryLatency>,
}

#[derive(Default)]
struct DeliveryLatency {
    counts: [u64; DELIVERY_BUCKETS_SECONDS.len()],
    sum: f64,
    count: u64,
}

impl WebhookStats {
    /// `since_event`: for a success, the time from the event to now.
    pub fn observe(&self, outcome: AttemptOutcome, since_event: Duration) {
        let counter = match outcome {
            AttemptOutcome::Succeeded => &self.succeeded,
            AttemptOutcome::Retrying => &self.retrying,
            AttemptOutcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
        if outcome != AttemptOutcome::Succeeded {
            return;
        }
        if let Ok(mut h) = self.delivery.lock() {
            let secs = since_event.as_secs_f64();
            for (i, bound) in DELIVERY_BUCKETS_SECONDS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// `backlog`: deliveries scheduled and not yet sent (the outbox's count).
    fn render(&self, out: &mut String, backlog: usize) {
        scalar(
            out,
            "gauge",
            "expereon_webhook_backlog",
            "Webhook deliveries scheduled and not yet done (PENDING, not held).",
            backlog,
        );
        let _ = writeln!(
            out,
            "# HELP expereon_webhook_attempts_total Webhook delivery attempts by outcome."
        );
        let _ = writeln!(out, "# TYPE expereon_webhook_attempts_total counter");
        for (outcome, n) in [
            ("succeeded", &self.succeeded),
            ("retrying", &self.retrying),
            ("failed", &self.failed),
        ] {
            let _ = writeln!(
                out,
                "expereon_webhook_attempts_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
        self.render_delivery_latency(out);
    }

    fn render_delivery_latency(&self, out: &mut String) {
        let Ok(h) = self.delivery.lock() else {
            return;
        };
        let buckets = DELIVERY_BUCKETS_SECONDS
            .iter()
            .zip(&h.counts)
            .map(|(bound, n)| (bound.to_string(), *n));
        histogram(
            out,
            "expereon_webhook_delivery_seconds",
            "Time from an event to its delivery's 2xx, per delivered message.",
            buckets,
            h.count,
            h.sum,
        );
    }
}

/// Progress and findings of the start-up files check (`background.rs`).
#[derive(Default)]
pub struct FilesCheck {
    state: AtomicU8,
    pub checked: AtomicU64,
    /// Absent, or present but unreadable.
    pub missing: AtomicU64,
    /// Present with another size or SHA-256 than recorded.
    pub corrupt: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesCheckState {
    Off,
    Running,
    Done,
}

impl FilesCheck {
    pub fn set_state(&self, state: FilesCheckState) {
        let v = match state {
            FilesCheckState::Off => 0,
            FilesCheckState::Running => 1,
            FilesCheckState::Done => 2,
        };
        self.state.store(v, Relaxed);
    }

    pub fn state(&self) -> FilesCheckState {
        match self.state.load(Relaxed) {
            1 => FilesCheckState::Running,
            2 => FilesCheckState::Done,
            _ => FilesCheckState::Off,
        }
    }

    fn render(&self, out: &mut String) {
        let gauges = [
            (
                "expereon_files_check_running",
                "1 while the start-up check of stored files runs.",
                u64::from(self.state() == FilesCheckState::Running),
            ),
            (
                "expereon_files_checked",
                "Stored files the start-up check has verified against their FileStored event.",
                self.checked.load(Relaxed),
            ),
            (
                "expereon_files_missing",
                "Live files found absent or unreadable by the start-up check.",
                self.missing.load(Relaxed),
            ),
            (
                "expereon_files_corrupt",
                "Live files found with another size or SHA-256 than their FileStored event.",
                self.corrupt.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            scalar(out, "gauge", name, help, value);
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// `outcome`: committed, rejected (domain error), replayed, failed.
    pub fn observe_command(&self, outcome: &'static str) {
        if let Ok(mut c) = self.commands.lock() {
            *c.entry(outcome).or_default() += 1;
        }
    }

    pub fn render(
        &self,
        log_seq: u64,
        projection_seq: u64,
        engine: &EngineStats,
        disk: &crate::disk::DiskGuard,
        webhook_backlog: usize,
    ) -> String {
        let mut out = String::new();
        render_engine(&mut out, engine);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        self.render_commands(&mut out);
        scalar(
            &mut out,
            "gauge",
            "expereon_log_sequence",
            "Last durable event sequence number.",
            log_seq,
        );
        scalar(
            &mut out,
            "gauge",
            "expereon_projection_sequence",
            "Last event applied to the read models.",
            projection_seq,
        );
        self.files.render(&mut out);
        render_disk(&mut out, disk);
        self.webhooks.render(&mut out, webhook_backlog);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP expereon_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE expereon_http_requests_total counter");
        if let Ok(r) = self.requests.lock() {
            for ((method, route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "expereon_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP expereon_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE expereon_http_request_duration_seconds histogram"
        );
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                render_route_latency(out, &escape(route), h);
            }
        }
    }

    fn render_commands(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP expereon_commands_total Commands by outcome.");
        let _ = writeln!(out, "# TYPE expereon_commands_total counter");
        if let Ok(c) = self.commands.lock() {
            for (outcome, n) in c.iter() {
                let _ = writeln!(out, "expereon_commands_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
    }
}

/// One sample without labels, after its HELP and TYPE lines.
fn scalar(out: &mut String, kind: &str, name: &str, help: &str, value: impl Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

fn render_engine(out: &mut String, engine: &EngineStats) {
    let counters = [
        (
            "expereon_engine_commands_total",
            "Commands decided by the writer.",
            &engine.commands,
        ),
        (
            "expereon_engine_events_committed_total",
            "Events made durable.",
            &engine.events,
        ),
        (
            "expereon_engine_commits_total",
            "Durable group commits (one fdatasync each).",
            &engine.commits,
        ),
        (
            "expereon_engine_failed_commits_total",
            "Group commits that failed (the batch answered 500).",
            &engine.failed_commits,
        ),
    ];
    for (name, help, value) in counters {
        scalar(out, "counter", name, help, value.load(Relaxed));
    }
    render_batch_sizes(out, engine);
    render_syncs(out, engine);
}

fn render_syncs(out: &mut String, engine: &EngineStats) {
    let buckets = SYNC_BUCKETS_MICROS
        .iter()
        .zip(&engine.sync_buckets)
        .map(|(bound, n)| ((*bound as f64 / 1e6).to_string(), n.load(Relaxed)));
    histogram(
        out,
        "expereon_log_sync_seconds",
        "Time a group commit took to make its batches durable (the fdatasync every answer waits for).",
        buckets,
        engine.syncs.load(Relaxed),
        engine.sync_micros.load(Relaxed) as f64 / 1e6,
    );
}

fn render_batch_sizes(out: &mut String, engine: &EngineStats) {
    let buckets = BATCH_BUCKETS
        .iter()
        .zip(&engine.batch_size_buckets)
        .map(|(bound, n)| (bound.to_string(), n.load(Relaxed)));
    histogram(
        out,
        "expereon_engine_batch_size",
        "Commands per writer batch.",
        buckets,
        engine.batches.load(Relaxed),
        // Every command is decided in exactly one batch.
        engine.commands.load(Relaxed) as f64,
    );
}

/// A histogram from cumulative buckets (upper bound, count), its total
/// count (the `+Inf` bucket) and its sum.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: impl Iterator<Item = (String, u64)>,
    count: u64,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// `route` comes escaped.
fn render_route_latency(out: &mut String, route: &str, h: &Histogram) {
    for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "expereon_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
            h.counts[i]
        );
    }
    let _ = writeln!(
        out,
        "expereon_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(
        out,
        "expereon_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
        h.sum
    );
    let _ = writeln!(
        out,
        "expereon_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
        h.count
    );
}

fn render_disk(out: &mut String, disk: &crate::disk::DiskGuard) {
    scalar(
        out,
        "gauge",
        "expereon_disk_free_bytes",
        "Free disk space under the data directory at the last measure.",
        disk.free_bytes(),
    );
    scalar(
        out,
        "gauge",
        "expereon_disk_low",
        "1 while free disk space is below EXPEREON_MIN_FREE_DISK_BYTES (writes refused).",
        u8::from(disk.is_low()),
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
