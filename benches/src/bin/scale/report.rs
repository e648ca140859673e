//! The results as Markdown, ready to paste into BENCHMARKS.md.

use crate::discover::Discovered;
use crate::load::{Mixed, OpStats, ReadOp, WriteStats, LIFECYCLE};
use crate::server::{Memory, StartReport};
use crate::Args;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::time::Duration;

/// Machine facts from /proc.
#[derive(Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_kib: u64,
    pub loadavg: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_kib,
            loadavg,
        }
    }
}

pub struct Kill {
    pub acked_invoices: u64,
    pub writes: Option<WriteStats>,
    pub checked: u64,
    pub lost: u64,
}

pub struct Report {
    args: Args,
    command: String,
    machine: Machine,
    pub machine_at_end: Option<Machine>,
    binary: PathBuf,
    copied: u64,
    copy_time: Duration,
    stats: Option<serde_json::Value>,
    pub starts: Vec<StartReport>,
    pub memory: Vec<(&'static str, Option<Memory>)>,
    pub fill: Option<(u64, Duration, WriteStats)>,
    pub own_invoices: (u64, u64),
    pub mixed: Option<(Vec<ReadOp>, Mixed)>,
    pub clean_stop: Option<Duration>,
    pub kill: Option<Kill>,
    /// CPU time of the server and of this client during the mixed load.
    pub load_cpu: (Option<Duration>, Option<Duration>),
    /// Handler times during the mixed load, from the server's log.
    pub served: std::collections::BTreeMap<String, Vec<u64>>,
}

impl Report {
    pub fn new(
        args: &Args,
        machine: Machine,
        binary: PathBuf,
        copied: u64,
        copy_time: Duration,
        stats: Option<serde_json::Value>,
    ) -> Report {
        Report {
            args: args.clone(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            machine_at_end: None,
            binary,
            copied,
            copy_time,
            stats,
            starts: Vec::new(),
            memory: Vec::new(),
            fill: None,
            own_invoices: (0, 0),
            mixed: None,
            clean_stop: None,
            kill: None,
            load_cpu: (None, None),
            served: Default::default(),
        }
    }

    fn stat(&self, pointer: &str) -> Option<u64> {
        self.stats.as_ref()?.pointer(pointer)?.as_u64()
    }

    pub fn invoices_in_log(&self) -> Option<u64> {
        self.stat("/streamsByKind/Invoice")
    }

    /// `replay-tool generate` spreads invoices round-robin over its
    /// (seller, buyer) pairs: two organizations each.
    pub fn invoices_per_generated_seller(&self) -> Option<u64> {
        let pairs = self.stat("/organizations")? / 2;
        Some(self.invoices_in_log()? / pairs.max(1))
    }

    pub fn print(&self, found: &Discovered) {
        let events = self
            .stat("/events")
            .or_else(|| self.starts.first().and_then(|s| s.log_seq));
        println!(
            "## Scale: the release server on a {}-event log\n",
            events.map(thousands).unwrap_or_else(|| "?".into())
        );
        self.print_setup(events);
        self.print_starts();
        self.print_memory();
        self.print_latency();
        self.print_served();
        self.print_notes(found);
    }

    fn print_setup(&self, events: Option<u64>) {
        let m = &self.machine;
        println!("| | |\n|---|---|");
        println!(
            "| machine | `{}`, {} cores, {} memory |",
            m.cpu,
            m.cores,
            bytes(m.memory_kib * 1024)
        );
        println!(
            "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
            m.loadavg,
            self.machine_at_end
                .as_ref()
                .map(|e| e.loadavg.clone())
                .unwrap_or_else(|| "?".into())
        );
        let log = match &self.stats {
            Some(_) => format!(
                "{} events, {} invoices, {} organizations (`replay-tool stats`)",
                events.map(thousands).unwrap_or_else(|| "?".into()),
                self.invoices_in_log()
                    .map(thousands)
                    .unwrap_or_else(|| "?".into()),
                self.stat("/organizations")
                    .map(thousands)
                    .unwrap_or_else(|| "?".into()),
            ),
            None => format!(
                "{} events (`/healthz`; `replay-tool stats` not run)",
                events.map(thousands).unwrap_or_else(|| "?".into())
            ),
        };
        println!("| log | {log} |");
        println!(
            "| data directory | {} (`{}`), copied to scratch in {} (so its pages were in the page cache at the first start) |",
            bytes(self.copied),
            self.args.data_dir.display(),
            duration(self.copy_time)
        );
        // The workspace may have moved on since the binary was built.
        let built = std::fs::metadata(&self.binary)
            .and_then(|m| m.modified())
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| "?".into());
        println!(
            "| server | `{}` built {built}; {} now; `EXPEREON_RATE_LIMIT=1000000`, otherwise defaults |",
            self.binary.display(),
            git_describe()
        );
        println!(
            "| client | same machine, reqwest, {} connections ({} readers, {} writers), closed loop |",
            self.args.connections,
            self.args.connections - self.args.writers,
            self.args.writers
        );
        println!("| command | `{}` |", self.command);
        println!();
    }

    fn print_starts(&self) {
        println!("### Start-up, to the first `200` of `GET /healthz`\n");
        println!("| start | time to healthy | SQL read models caught up (server log) | projection rebuild rate | rest of the start (write model, open) |");
        println!("|---|---|---|---|---|");
        for (i, s) in self.starts.iter().enumerate() {
            let what = match i {
                0 => "(a) first start on the generated log (read models from seq 0)".to_string(),
                1 => format!(
                    "(b) after a clean stop (SIGTERM; the stop took {})",
                    self.clean_stop.map(duration).unwrap_or_else(|| "?".into())
                ),
                _ => match &self.kill {
                    Some(k) => format!(
                        "(c) after SIGKILL under write load ({} writers, {} s; {} of {} checked invoices lost an acknowledged write)",
                        self.args.writers, self.args.kill_after_secs, k.lost, k.checked
                    ),
                    None => "(c) after SIGKILL under write load".into(),
                },
            };
            let (caught, rate, rest) = match s.catch_up {
                Some(c) => {
                    // Events this catch-up folded: the line says so, or
                    // (older servers) a first start folds from seq 0.
                    let folded = c.folded.or((i == 0).then_some(c.seq));
                    let rate = match folded {
                        Some(0) => "— (nothing to fold)".to_string(),
                        Some(n) if c.elapsed_ms > 0 => format!(
                            "**{} events/s** ({} events ÷ elapsed_ms of the log line)",
                            thousands(n * 1000 / c.elapsed_ms),
                            thousands(n)
                        ),
                        _ => "—".into(),
                    };
                    (
                        format!(
                            "to seq {} in {}",
                            thousands(c.seq),
                            duration(Duration::from_millis(c.elapsed_ms))
                        ),
                        rate,
                        duration(
                            s.to_healthy
                                .saturating_sub(Duration::from_millis(c.elapsed_ms)),
                        ),
                    )
                }
                None => {
                    let rate = match (i, s.log_seq) {
                        (0, Some(seq)) if s.to_healthy.as_millis() > 0 => format!(
                            "{} events/s (from wall time: no log line)",
                            thousands((seq as u128 * 1000 / s.to_healthy.as_millis()) as u64)
                        ),
                        _ => "—".into(),
                    };
                    ("no such log line".into(), rate, "?".into())
                }
            };
            println!(
                "| {what} | **{}** | {caught} | {rate} | {rest} |",
                duration(s.to_healthy)
            );
        }
        println!();
    }

    fn print_memory(&self) {
        println!("### Server memory (`/proc/<pid>/status`)\n");
        println!("| when | VmRSS | VmHWM (peak RSS of that process) |");
        println!("|---|---|---|");
        for (when, m) in &self.memory {
            match m {
                Some(m) => println!(
                    "| {when} | {} | {} |",
                    bytes(m.rss_kib * 1024),
                    bytes(m.hwm_kib * 1024)
                ),
                None => println!("| {when} | ? | ? |"),
            }
        }
        println!();
    }

    fn print_latency(&self) {
        let Some((ops, mixed)) = &self.mixed else {
            return;
        };
        let secs = mixed.elapsed.as_secs_f64().max(1e-9);
        println!(
            "### Latency under {} s of mixed load ({} connections: {} readers cycling through the reads, {} writers running lifecycles)\n",
            self.args.duration_secs,
            self.args.connections,
            self.args.connections - self.args.writers,
            self.args.writers
        );
        println!("| operation | as (organization and its size) | requests | errors | per second | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (op, stats) in ops.iter().zip(&mixed.reads) {
            row(&op.label, &op.org, stats, secs);
        }
        let writer_org = format!(
            "own seller and buyer ({} → {} invoices)",
            thousands(self.own_invoices.0),
            thousands(self.own_invoices.1)
        );
        for (write, stats) in LIFECYCLE.iter().zip(&mixed.writes.ops) {
            row(write.label(), &writer_org, stats, secs);
        }
        let total_reads: u64 = mixed.reads.iter().map(|s| s.ok).sum();
        let total_writes: u64 = mixed.writes.ops.iter().map(|s| s.ok).sum();
        println!(
            "| all reads / all writes | | {} / {} | | {:.0} / {:.0} | | | | |",
            thousands(total_reads),
            thousands(total_writes),
            total_reads as f64 / secs,
            total_writes as f64 / secs
        );
        println!(
            "| whole lifecycles (create + submit, approve, settle) | | {} | | {:.1} | | | | |",
            thousands(mixed.writes.lifecycles),
            mixed.writes.lifecycles as f64 / secs
        );
        println!();
    }

    /// The server's own view of the same load: handler time per route.
    fn print_served(&self) {
        if self.served.is_empty() {
            return;
        }
        println!("Server-side handler time during the same load (the server's `served` log lines; excludes queueing before the handler and the transfer):\n");
        println!("| route → status | requests | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|");
        for (route, times) in &self.served {
            let mut t = times.clone();
            t.sort_unstable();
            let q = |p: f64| {
                let i = ((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1;
                micros(t[i])
            };
            if t.is_empty() {
                continue;
            }
            println!(
                "| `{route}` | {} | {} | {} | {} | {} |",
                thousands(t.len() as u64),
                q(0.5),
                q(0.9),
                q(0.99),
                micros(t[t.len() - 1])
            );
        }
        println!();
    }

    fn print_notes(&self, found: &Discovered) {
        println!("Notes:\n");
        if let Some((n, took, stats)) = &self.fill {
            println!(
                "- Setup, not timed above: the benchmark's own seller was filled with {} invoices (a third each SUBMITTED, APPROVED, SETTLED) in {} ({} write errors).",
                thousands(*n),
                duration(*took),
                stats.ops.iter().map(OpStats::errors).sum::<u64>()
            );
        }
        println!(
            "- Latency is client-side, from sending the request to the last byte of the body, on the same {}-core machine as the server (the client's CPU competes with it). Only answers with the expected status are in the percentiles; the rest are counted as errors.",
            self.machine.cores
        );
        if let (Some(server), Some(client), Some((_, m))) =
            (self.load_cpu.0, self.load_cpu.1, &self.mixed)
        {
            let secs = m.elapsed.as_secs_f64().max(1e-9);
            println!(
                "- CPU during the mixed load: server {:.1} s ({:.0}% of one core), this client {:.1} s ({:.0}%), over {:.1} s on {} cores; the rest went to whatever else ran (see the load average).",
                server.as_secs_f64(),
                100.0 * server.as_secs_f64() / secs,
                client.as_secs_f64(),
                100.0 * client.as_secs_f64() / secs,
                secs,
                self.machine.cores
            );
        }
        if found.big_seller.is_none() && self.args.generated_secret.is_some() {
            println!(
                "- `--generated-secret` was given, but none of the {} API keys created at the start of the log has its SHA-256 (or the key was refused).",
                found.api_keys_seen
            );
        }
        if found.big_seller.is_none() {
            println!(
                "- **Reads as a big generated seller were not measured**: `replay-tool generate` stores each key's secret hash as `[1; 32]` (`[i; 32]` for the second key), the SHA-256 of no known secret, so no generated organization can be called. It needs a flag such as `--api-secret SECRET` that stores `SHA-256(SECRET)` (what `command_api::auth::hash_secret` computes) as every generated key's `api_key_secret_hash`/`secret_hash`; then run this with `--generated-secret SECRET` and the list rows are measured for a seller with about {} invoices.",
                self.invoices_per_generated_seller()
                    .map(thousands)
                    .unwrap_or_else(|| "invoices ÷ pairs".into())
            );
        }
        if !found.foreign_ids.is_empty() {
            println!(
                "- `GET /invoices/{{id}}` → 404: ids of generated invoices sampled from five points of the log through `GET /admin/events` ({} pages), asked for by the benchmark's seller; they belong to other organizations, so the answer is 404 after the lookup.",
                found.pages
            );
        }
        if let Some(k) = &self.kill {
            let writes = k
                .writes
                .as_ref()
                .map(|w| w.ops.iter().map(|s| s.ok).sum::<u64>())
                .unwrap_or(0);
            println!(
                "- SIGKILL: {} writes on {} invoices were acknowledged before the kill; after the restart {} of them were read back ({} lost or behind).",
                thousands(writes),
                thousands(k.acked_invoices),
                thousands(k.checked),
                k.lost
            );
        }
        for (op, stats) in self
            .mixed
            .iter()
            .flat_map(|(ops, m)| ops.iter().map(|o| o.label.clone()).zip(m.reads.iter()))
            .chain(self.mixed.iter().flat_map(|(_, m)| {
                LIFECYCLE
                    .iter()
                    .map(|w| w.label().to_string())
                    .zip(m.writes.ops.iter())
            }))
        {
            if stats.errors() > 0 {
                println!(
                    "- errors of {op}: {} without an answer, by status {:?}; e.g. {}",
                    stats.transport,
                    stats.bad_status,
                    stats.examples.join(" | ")
                );
            }
        }
        println!();
    }
}

fn row(label: &str, org: &str, stats: &OpStats, secs: f64) {
    let h: &Histogram<u64> = &stats.latency;
    let q = |p: f64| {
        if h.is_empty() {
            "—".to_string()
        } else {
            micros(h.value_at_quantile(p))
        }
    };
    println!(
        "| {label} | {org} | {} | {} | {:.1} | {} | {} | {} | {} |",
        thousands(stats.ok),
        thousands(stats.errors()),
        stats.ok as f64 / secs,
        q(0.5),
        q(0.9),
        q(0.99),
        if h.is_empty() {
            "—".into()
        } else {
            micros(h.max())
        }
    );
}

fn git_describe() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if dirty > 0 {
                format!("workspace at `{head}` plus uncommitted changes in {dirty} files")
            } else {
                format!("workspace at `{head}`")
            }
        }
        None => "commit unknown".into(),
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn micros(us: u64) -> String {
    if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.2} GiB", n / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(micros(1234), "1.23 ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1.50 s");
    }
}
