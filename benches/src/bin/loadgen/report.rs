//! The results: a table for people, one JSON object for scripts.

use crate::deliveries::Deliveries;
use crate::stats::{OpStats, Stats};
use crate::workload::Mix;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// What was run, for the report's header.
pub struct Setting {
    pub url: String,
    pub mix: Mix,
    pub connections: usize,
    /// An open-loop run's commands/s (`--rate`); `None`: closed loop.
    pub rate: Option<f64>,
    pub pairs: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub setup: Duration,
    pub client_cpu: Option<Duration>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// A histogram in ms: its mean, the named quantiles, and its max.
fn percentiles_json(h: &Histogram<u64>, quantiles: &[(&str, f64)]) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let mut out = Map::new();
    out.insert("mean".into(), json!(h.mean() / 1000.0));
    for (name, q) in quantiles {
        out.insert((*name).into(), json!(ms(h.value_at_quantile(*q))));
    }
    out.insert("max".into(), json!(ms(h.max())));
    Value::Object(out)
}

fn latency_json(op: &OpStats) -> Value {
    percentiles_json(
        &op.latency,
        &[("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999)],
    )
}

fn errors_json(op: &OpStats) -> Value {
    let by_status: Map<String, Value> = op
        .by_status
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    json!({
        "total": op.errors(),
        "byStatus": by_status,
        "transport": op.transport,
        "malformed": op.malformed,
    })
}

/// Event-to-delivery latency: percentiles up to p99 and the max (at a few
/// thousand deliveries a p99.9 would be a handful of samples).
fn delivery_latency_json(h: &Histogram<u64>) -> Value {
    percentiles_json(h, &[("p50", 0.50), ("p90", 0.90), ("p99", 0.99)])
}

fn webhooks_json(d: &Deliveries, window: Duration) -> Value {
    let b = &d.backlog;
    json!({
        "endpoints": d.endpoints,
        "receiverUrl": d.receiver_url,
        "received": d.received,
        "ofWindowEvents": d.of_window,
        "arrivedInWindow": d.arrived_in_window,
        "deliveriesPerSec": d.per_sec(window),
        "allArrivedInWindow": d.all_in_window,
        "allPerSec": d.all_per_sec(window),
        "outsideWindow": d.outside_window(),
        "duplicates": d.duplicates,
        "withoutWebhookId": d.without_id,
        "withoutEventTime": d.without_event_time,
        "wholeSecondEventTimes": d.whole_seconds,
        "arrivedBeforeEvent": d.before_event,
        "latencyMs": delivery_latency_json(&d.latency),
        "drain": {
            "complete": b.empty,
            "secs": d.drain.map(|t| t.as_secs_f64()),
            "waitedSecs": b.waited.as_secs_f64(),
            "pending": b.pending,
            "unprojected": b.unprojected,
            "error": b.error,
        },
    })
}

pub fn json(
    setting: &Setting,
    stats: &Stats,
    all: &OpStats,
    deliveries: Option<&Deliveries>,
) -> Value {
    let secs = setting.window.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let lifecycle = setting.mix.commands();
    let operations: Map<String, Value> = setting
        .mix
        .ops()
        .iter()
        .map(|op| {
            let s = &stats.ops[op.index()];
            let v = json!({
                "route": op.route(),
                "ok": s.ok(),
                "perSec": per_sec(s.ok()),
                "latencyMs": latency_json(s),
                "errors": errors_json(s),
            });
            (op.name().to_string(), v)
        })
        .collect();
    let mut errors = errors_json(all);
    if let Some(e) = errors.as_object_mut() {
        e.insert("unmeasured".into(), json!(stats.unmeasured_errors));
    }
    let mut v = json!({
        "url": setting.url,
        "mix": setting.mix.name(),
        "connections": setting.connections,
        "rate": setting.rate,
        "pairs": setting.pairs,
        "warmupSecs": setting.warmup.as_secs_f64(),
        "durationSecs": secs,
        "setupSecs": setting.setup.as_secs_f64(),
        "ok": all.ok(),
        "requestsPerSec": per_sec(all.ok()),
        "commandsPerSec": if lifecycle { json!(per_sec(all.ok())) } else { Value::Null },
        "lifecyclesPerSec": if lifecycle { json!(per_sec(stats.lifecycles)) } else { Value::Null },
        "latencyMs": latency_json(all),
        "operations": operations,
        "errors": errors,
        "rateLimited": stats.saw_429,
        "clientCpuSecs": setting.client_cpu.map(|d| d.as_secs_f64()),
    });
    // Only for the webhooks mix: the other mixes' objects stay as they were.
    if let (Some(d), Some(o)) = (deliveries, v.as_object_mut()) {
        o.insert("webhooks".into(), webhooks_json(d, setting.window));
    }
    v
}

/// A histogram's quantile (or its max, at `None`) in ms, "-" when empty.
fn ms_at(h: &Histogram<u64>, quantile: Option<f64>) -> String {
    if h.is_empty() {
        return "-".to_string();
    }
    let micros = match quantile {
        Some(q) => h.value_at_quantile(q),
        None => h.max(),
    };
    format!("{:.2}", ms(micros))
}

fn row(out: &mut String, name: &str, op: &OpStats, secs: f64) {
    let h = &op.latency;
    let q = |q: f64| ms_at(h, Some(q));
    let max = ms_at(h, None);
    let rate = if secs > 0.0 {
        op.ok() as f64 / secs
    } else {
        0.0
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{name:<15} {rate:>9.1} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        op.ok(),
        op.errors(),
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        max
    );
}

fn error_summary(op: &OpStats) -> String {
    let mut parts: Vec<String> = op
        .by_status
        .iter()
        .map(|(s, n)| format!("HTTP {s}: {n}"))
        .collect();
    if op.transport > 0 {
        parts.push(format!("transport: {}", op.transport));
    }
    if op.malformed > 0 {
        parts.push(format!("2xx without an id: {}", op.malformed));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        format!("{} ({})", op.errors(), parts.join(", "))
    }
}

/// How the drain went, in one line.
fn drain_text(d: &Deliveries) -> String {
    let b = &d.backlog;
    if let Some(drain) = d.drain {
        return format!(
            "the last delivery of a window event arrived {:.3} s after the load stopped (server backlog empty {:.1} s after the last answer)",
            drain.as_secs_f64(),
            b.waited.as_secs_f64()
        );
    }
    let mut missing = Vec::new();
    if let Some(n) = b.pending {
        missing.push(format!("{n} deliveries still pending on the server"));
    }
    if let Some(n) = b.unprojected.filter(|n| *n > 0) {
        missing.push(format!(
            "{n} events not yet projected (their deliveries not yet queued)"
        ));
    }
    if let Some(e) = &b.error {
        missing.push(format!("the server could not be asked: {e}"));
    }
    format!(
        "INCOMPLETE after waiting {:.1} s: {}",
        b.waited.as_secs_f64(),
        missing.join("; ")
    )
}

fn webhooks_text(out: &mut String, d: &Deliveries, window: Duration) {
    let h = &d.latency;
    let q = |q: f64| ms_at(h, Some(q));
    let max = ms_at(h, None);
    let _ = writeln!(
        out,
        "\nwebhooks: {} endpoints (every organization, all events) posting to {}",
        d.endpoints, d.receiver_url
    );
    let _ = writeln!(
        out,
        "deliveries of events in the window: {} ({} arrived in it: {:.1} deliveries/s); of other events: {}; duplicates: {}",
        d.of_window,
        d.arrived_in_window,
        d.per_sec(window),
        d.outside_window(),
        d.duplicates
    );
    let _ = writeln!(
        out,
        "all deliveries that arrived in the window, whatever their event: {} ({:.1}/s)",
        d.all_in_window,
        d.all_per_sec(window)
    );
    let _ = writeln!(
        out,
        "{:<23} {:>8} {:>8} {:>8} {:>8}",
        "event to delivery (ms)", "p50", "p90", "p99", "max"
    );
    let _ = writeln!(
        out,
        "{:<23} {:>8} {:>8} {:>8} {:>8}",
        "",
        q(0.50),
        q(0.90),
        q(0.99),
        max
    );
    let _ = writeln!(
        out,
        "  (from the payload's createdAt, the server's clock, to the arrival at the receiver, loadgen's)"
    );
    if !d.backlog.empty {
        let _ = writeln!(
            out,
            "  note: the drain did not finish: these figures cover only the deliveries that arrived; the missing ones would be later"
        );
    }
    if d.whole_seconds > 0 {
        let _ = writeln!(
            out,
            "  note: {} of these events' times had whole seconds only: their latencies overstate by up to 1 s",
            d.whole_seconds
        );
    }
    if d.before_event > 0 {
        let _ = writeln!(
            out,
            "  note: {} deliveries arrived before their event's time (clock step or skew?), counted as 0 ms",
            d.before_event
        );
    }
    if d.without_event_time > 0 || d.without_id > 0 {
        let _ = writeln!(
            out,
            "  note: {} deliveries without a readable createdAt (not timed), {} without a webhook-id (not deduplicated)",
            d.without_event_time, d.without_id
        );
    }
    let _ = writeln!(out, "drain: {}", drain_text(d));
}

pub fn text(
    setting: &Setting,
    stats: &Stats,
    all: &OpStats,
    deliveries: Option<&Deliveries>,
) -> String {
    let secs = setting.window.as_secs_f64();
    let mut out = String::new();
    let load = match setting.rate {
        Some(rate) => format!("open loop at {rate} commands/s"),
        None => format!("{} connections", setting.connections),
    };
    let _ = writeln!(
        out,
        "loadgen: {} mix against {}: {load} on {} pairs; {:.1} s measured after a {:.1} s warm-up (setup {:.1} s, not timed)",
        setting.mix.name(),
        setting.url,
        setting.pairs,
        secs,
        setting.warmup.as_secs_f64(),
        setting.setup.as_secs_f64(),
    );
    let rate = if secs > 0.0 {
        all.ok() as f64 / secs
    } else {
        0.0
    };
    match setting.mix {
        Mix::Lifecycle | Mix::Webhooks => {
            let _ = writeln!(
                out,
                "throughput: {rate:.1} commands/s, {:.1} lifecycles/s ({} commands answered 2xx in the window)",
                stats.lifecycles as f64 / secs.max(f64::MIN_POSITIVE),
                all.ok()
            );
        }
        Mix::Reads => {
            let _ = writeln!(
                out,
                "throughput: {rate:.1} requests/s ({} answered 2xx in the window)",
                all.ok()
            );
        }
    }
    let _ = writeln!(out, "errors: {}", error_summary(all));
    if stats.unmeasured_errors > 0 {
        let _ = writeln!(
            out,
            "errors outside the window (warm-up, stragglers), not counted above: {}",
            stats.unmeasured_errors
        );
    }
    if let Some(cpu) = setting.client_cpu {
        let _ = writeln!(
            out,
            "loadgen's own CPU in the window: {:.1} s ({:.0} % of one core)",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / secs.max(f64::MIN_POSITIVE)
        );
    }
    let _ = writeln!(
        out,
        "\n{:<15} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency (ms)", "ok/s", "ok", "errors", "p50", "p90", "p99", "p99.9", "max"
    );
    row(&mut out, "all", all, secs);
    for op in setting.mix.ops() {
        row(&mut out, op.name(), &stats.ops[op.index()], secs);
    }
    let _ = writeln!(out);
    for op in setting.mix.ops() {
        let _ = writeln!(out, "{:<15} {}", op.name(), op.route());
    }
    if let Some(d) = deliveries {
        webhooks_text(&mut out, d, setting.window);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;
    use crate::stats::Window;
    use std::time::Instant;

    /// Two connections on two pairs, 2 s measured, nothing else.
    fn two_second_run(mix: Mix) -> Setting {
        Setting {
            url: "http://127.0.0.1:1".into(),
            mix,
            connections: 2,
            rate: None,
            pairs: 2,
            warmup: Duration::ZERO,
            window: Duration::from_secs(2),
            setup: Duration::ZERO,
            client_cpu: None,
        }
    }

    #[test]
    fn reports_rates_percentiles_and_errors() -> anyhow::Result<()> {
        let mut stats = Stats::new()?;
        let now = Instant::now();
        let window = Window {
            from: now - Duration::from_secs(1),
            to: now + Duration::from_secs(60),
        };
        for _ in 0..10 {
            let ok = expereon_benches::client::Answer {
                status: 200,
                body: b"{}".to_vec(),
            };
            stats.record(Op::Approve, Ok(ok), now, &window);
        }
        let limited = expereon_benches::client::Answer {
            status: 429,
            body: Vec::new(),
        };
        stats.record(Op::Settle, Ok(limited), now, &window);
        stats.lifecycles = 4;
        let all = stats.overall()?;
        let setting = two_second_run(Mix::Lifecycle);
        let v = json(&setting, &stats, &all, None);
        assert_eq!(v["ok"], 10);
        assert_eq!(v["commandsPerSec"], 5.0);
        assert_eq!(v["lifecyclesPerSec"], 2.0);
        assert_eq!(v["errors"]["byStatus"]["429"], 1);
        assert_eq!(v["operations"]["settle"]["errors"]["total"], 1);
        assert_eq!(v["rateLimited"], true);
        assert!(v["latencyMs"]["p99"].as_f64().is_some());
        let t = text(&setting, &stats, &all, None);
        assert!(t.contains("5.0 commands/s, 2.0 lifecycles/s"), "{t}");
        assert!(t.contains("errors: 1 (HTTP 429: 1)"), "{t}");
        assert!(v.get("webhooks").is_none());
        assert!(!t.contains("webhooks"), "{t}");
        Ok(())
    }

    #[test]
    fn reports_the_webhook_deliveries_and_their_drain() -> anyhow::Result<()> {
        use crate::backlog::Backlog;
        use crate::deliveries::{Deliveries, WallWindow};
        use crate::receiver::Received;

        let stats = Stats::new()?;
        let all = stats.overall()?;
        let now = Instant::now();
        let window = Window {
            from: now,
            to: now + Duration::from_secs(2),
        };
        let wall = WallWindow::of(&window, (now, 0));
        let incomplete = Backlog {
            empty: false,
            waited: Duration::from_secs(120),
            pending: Some(37),
            unprojected: Some(0),
            error: None,
        };
        let mut d = Deliveries::new(
            &Received::default(),
            &window,
            wall,
            incomplete,
            4,
            "u".into(),
        )?;
        d.latency.record(12_000)?;
        d.arrived_in_window = 10;
        d.duplicates = 3;
        let setting = two_second_run(Mix::Webhooks);
        let v = json(&setting, &stats, &all, Some(&d));
        assert_eq!(v["mix"], "webhooks");
        assert_eq!(v["webhooks"]["deliveriesPerSec"], 5.0);
        assert_eq!(v["webhooks"]["duplicates"], 3);
        let p50 = v["webhooks"]["latencyMs"]["p50"].as_f64().unwrap_or(0.0);
        assert!((p50 - 12.0).abs() < 0.1, "{p50}");
        assert_eq!(v["webhooks"]["drain"]["complete"], false);
        assert_eq!(v["webhooks"]["drain"]["secs"], Value::Null);
        assert_eq!(v["webhooks"]["drain"]["pending"], 37);
        assert!(v["commandsPerSec"].as_f64().is_some());
        let t = text(&setting, &stats, &all, Some(&d));
        assert!(t.contains("5.0 deliveries/s"), "{t}");
        assert!(t.contains("duplicates: 3"), "{t}");
        assert!(
            t.contains("INCOMPLETE after waiting 120.0 s: 37 deliveries still pending"),
            "{t}"
        );
        Ok(())
    }
}
