//! Prometheus text metrics, kept by hand: a few counters and one histogram do
//! not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
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
        engine: &ledger_core::engine::EngineStats,
    ) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP expereon_engine_commands_total Commands decided by the writer."
        );
        let _ = writeln!(out, "# TYPE expereon_engine_commands_total counter");
        let _ = writeln!(
            out,
            "expereon_engine_commands_total {}",
            engine.commands.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP expereon_engine_events_committed_total Events made durable."
        );
        let _ = writeln!(out, "# TYPE expereon_engine_events_committed_total counter");
        let _ = writeln!(
            out,
            "expereon_engine_events_committed_total {}",
            engine.events.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP expereon_engine_commits_total Durable group commits (one fdatasync each)."
        );
        let _ = writeln!(out, "# TYPE expereon_engine_commits_total counter");
        let _ = writeln!(
            out,
            "expereon_engine_commits_total {}",
            engine.commits.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP expereon_engine_failed_commits_total Group commits that failed (the batch answered 500).");
        let _ = writeln!(out, "# TYPE expereon_engine_failed_commits_total counter");
        let _ = writeln!(
            out,
            "expereon_engine_failed_commits_total {}",
            engine.failed_commits.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP expereon_engine_batch_size Commands per writer batch."
        );
        let _ = writeln!(out, "# TYPE expereon_engine_batch_size histogram");
        for (bound, bucket) in ledger_core::engine::BATCH_BUCKETS
            .iter()
            .zip(&engine.batch_size_buckets)
        {
            let _ = writeln!(
                out,
                "expereon_engine_batch_size_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let batches = engine.batches.load(Relaxed);
        let _ = writeln!(
            out,
            "expereon_engine_batch_size_bucket{{le=\"+Inf\"}} {batches}"
        );
        let _ = writeln!(
            out,
            "expereon_engine_batch_size_sum {}",
            engine.commands.load(Relaxed)
        );
        let _ = writeln!(out, "expereon_engine_batch_size_count {batches}");
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
                let route = escape(route);
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
        }
        let _ = writeln!(out, "# HELP expereon_commands_total Commands by outcome.");
        let _ = writeln!(out, "# TYPE expereon_commands_total counter");
        if let Ok(c) = self.commands.lock() {
            for (outcome, n) in c.iter() {
                let _ = writeln!(out, "expereon_commands_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP expereon_log_sequence Last durable event sequence number."
        );
        let _ = writeln!(out, "# TYPE expereon_log_sequence gauge");
        let _ = writeln!(out, "expereon_log_sequence {log_seq}");
        let _ = writeln!(
            out,
            "# HELP expereon_projection_sequence Last event applied to the read models."
        );
        let _ = writeln!(out, "# TYPE expereon_projection_sequence gauge");
        let _ = writeln!(out, "expereon_projection_sequence {projection_seq}");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
