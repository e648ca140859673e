//! The server under test: a child process of the release binary, started on
//! the scratch copy, watched through `/healthz`, `/proc/<pid>/status` and its
//! log file, and stopped (SIGTERM) or killed (SIGKILL) on purpose. It is
//! killed on drop, so no exit path of the benchmark leaves it running.

use anyhow::{anyhow, bail, Context};
use expereon_benches::cpu_time;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server is started; the same for every start of one run.
#[derive(Clone)]
pub struct Spec {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_token: String,
    /// Where each start's stderr (its tracing log) goes.
    pub log_dir: PathBuf,
}

/// VmRSS and VmHWM of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// What the server's log said about the SQL read models' catch-up at start.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    pub seq: u64,
    /// Events folded by this catch-up (`folded=`, when the line carries
    /// it); without it, a catch-up is assumed to start from seq 0.
    pub folded: Option<u64>,
    pub elapsed_ms: u64,
}

/// One start, measured from just before the spawn to the first `200` of `/healthz`.
#[derive(Clone, Debug)]
pub struct StartReport {
    pub to_healthy: Duration,
    pub catch_up: Option<CatchUp>,
    pub memory: Option<Memory>,
    /// `logSequence` from `/healthz`.
    pub log_seq: Option<u64>,
}

pub struct Server {
    child: Child,
    pid: u32,
    started: Instant,
    log_path: PathBuf,
    label: &'static str,
}

/// Polling interval for `/healthz` and for a child's exit: the resolution of
/// the start-up and stop times.
const POLL: Duration = Duration::from_millis(20);

impl Server {
    pub fn start(spec: &Spec, label: &'static str) -> anyhow::Result<Server> {
        let log_path = spec.log_dir.join(format!("server-{label}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&spec.binary);
        command.arg("serve");
        // Only the settings chosen here: an EXPEREON_* variable of the
        // caller's shell (a Postgres store, a test clock) would change what
        // is measured.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EXPEREON_") {
                command.env_remove(&key);
            }
        }
        command
            .env("EXPEREON_LISTEN", spec.listen.to_string())
            .env("EXPEREON_DATA_DIR", &spec.data_dir)
            .env("EXPEREON_ADMIN_TOKEN", &spec.admin_token)
            // The default (100/s per key) would measure the limiter.
            .env("EXPEREON_RATE_LIMIT", "1000000")
            // Plain text log lines, so the catch-up line parses.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if std::env::var_os("RUST_LOG").is_none() {
            // The server's default; set explicitly so the catch-up line is logged.
            command.env("RUST_LOG", "info");
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let pid = child.id();
        Ok(Server {
            child,
            pid,
            started,
            log_path,
            label,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Polls `GET /healthz` until it answers 200, the child exits, or `timeout`.
    pub async fn wait_healthy(
        &mut self,
        root: &str,
        timeout: Duration,
    ) -> anyhow::Result<StartReport> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{root}/healthz");
        let deadline = self.started + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server ({}) exited with {status} before it was healthy; log tail:\n{}",
                    self.label,
                    self.log_tail(30)
                );
            }
            // Refused until the listener is bound, which happens only
            // after the write model and the read models are ready.
            if let Ok(response) = client.get(&url).send().await {
                if response.status().as_u16() == 200 {
                    let to_healthy = self.started.elapsed();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    return Ok(StartReport {
                        to_healthy,
                        catch_up: self.catch_up(),
                        memory: self.memory(),
                        log_seq: body.get("logSequence").and_then(|v| v.as_u64()),
                    });
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server ({}) was not healthy after {:?}; log tail:\n{}",
                    self.label,
                    timeout,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// VmRSS and VmHWM, or `None` once the process is gone.
    pub fn memory(&self) -> Option<Memory> {
        read_memory(self.pid)
    }

    /// User + system CPU time the server has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.pid))
    }

    /// The log's length now: marks a window of it for [`Server::log_window`].
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The log between two [`Server::log_len`] marks (capped at 1 GiB).
    pub fn log_window(&self, from: u64, to: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            if f.seek(SeekFrom::Start(from)).is_ok() {
                let len = to.saturating_sub(from).min(1 << 30);
                f.take(len).read_to_end(&mut out).ok();
            }
        }
        strip_ansi(&String::from_utf8_lossy(&out))
    }

    /// The last "SQL read models caught up" line of this start's log.
    pub fn catch_up(&self) -> Option<CatchUp> {
        let text = std::fs::read(&self.log_path).ok()?;
        let text = strip_ansi(&String::from_utf8_lossy(&text));
        text.lines()
            .rev()
            .filter(|l| l.contains("SQL read models caught up"))
            .find_map(parse_catch_up)
    }

    /// SIGTERM, then waits for the exit; SIGKILL after `timeout`. Returns how
    /// long the clean stop took.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        self.signal(libc::SIGTERM)?;
        let asked = Instant::now();
        match self.wait_exit(timeout).await? {
            Some(status) if status.success() => Ok(asked.elapsed()),
            Some(status) => Err(anyhow!(
                "the server ({}) exited with {status} after SIGTERM; log tail:\n{}",
                self.label,
                self.log_tail(20)
            )),
            None => {
                self.child.kill().ok();
                self.child.wait().ok();
                Err(anyhow!(
                    "the server ({}) had not stopped {timeout:?} after SIGTERM; killed",
                    self.label
                ))
            }
        }
    }

    /// SIGKILL (`kill -9`), then waits for the exit.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGKILL)?;
        match self.wait_exit(Duration::from_secs(30)).await? {
            Some(_) => Ok(()),
            None => bail!("the server ({}) survived SIGKILL for 30 s", self.label),
        }
    }

    fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        // Never signal a pid that might have been reused: only a child we
        // have not reaped yet is still ours.
        if let Some(status) = self.child.try_wait()? {
            bail!("the server ({}) had already exited: {status}", self.label);
        }
        let pid = libc::pid_t::try_from(self.pid)?;
        // SAFETY: kill(2) has no memory effects; the pid is our unreaped child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

pub fn read_memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Free bytes on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Server-side time per route from the server's `served` log lines
/// (`request{method=GET route=/api/v1/invoices ...}: ... served status=200 ms=1.23`):
/// (method route, status) → handler times in µs. Shows how much of the
/// client's latency is the handler and how much is queueing.
pub fn served_times(log: &str) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for line in log.lines().filter(|l| l.contains(" served ")) {
        // The span's fields open with `request{` and close with `}:`;
        // a route holds braces of its own (`/invoices/{id}`).
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix("request{").unwrap_or(t).strip_prefix(name))
                .map(|v| {
                    let v = v.trim_end_matches(':');
                    if v.matches('}').count() > v.matches('{').count() {
                        v.strip_suffix('}').unwrap_or(v)
                    } else {
                        v
                    }
                })
        };
        let (Some(method), Some(route), Some(status), Some(ms)) = (
            field("method="),
            field("route="),
            field("status="),
            field("ms=").and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        out.entry(format!("{method} {route} → {status}"))
            .or_default()
            .push((ms * 1000.0) as u64);
    }
    out
}

fn parse_catch_up(line: &str) -> Option<CatchUp> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix(name))
            .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
    };
    Some(CatchUp {
        seq: field("seq=")?,
        folded: field("folded="),
        elapsed_ms: field("elapsed_ms=")?,
    })
}

/// Removes ANSI escape sequences, in case the log is coloured despite NO_COLOR.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ending with a letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = strip_ansi(&String::from_utf8_lossy(&bytes));
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_catch_up_line_plain_and_coloured() {
        let plain = "2025-01-01T00:00:00.000Z  INFO projections::runner: SQL read models caught up seq=1000000 elapsed_ms=9876";
        let c = parse_catch_up(plain).map(|c| (c.seq, c.folded, c.elapsed_ms));
        assert_eq!(c, Some((1_000_000, None, 9876)));
        let folded = "INFO projections::runner: SQL read models caught up seq=1008181 folded=0 elapsed_ms=0 events_per_sec=0";
        let c = parse_catch_up(folded).map(|c| (c.seq, c.folded, c.elapsed_ms));
        assert_eq!(c, Some((1_008_181, Some(0), 0)));
        let coloured = "\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m SQL read models caught up \u{1b}[3mseq\u{1b}[0m\u{1b}[2m=\u{1b}[0m42 \u{1b}[3melapsed_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m7";
        let c = parse_catch_up(&strip_ansi(coloured)).map(|c| (c.seq, c.elapsed_ms));
        assert_eq!(c, Some((42, 7)));
    }

    #[test]
    fn parses_served_lines() {
        let log = "2026-12-06T23:12:03.670760Z  INFO request{method=POST route=/api/v1/invoices/{id}/approve request_id=6210}: command_api::app: served status=200 ms=39.219991\n\
                   2026-12-06T23:12:03.670760Z  INFO command_api::app: serving address=127.0.0.1:1";
        let t = served_times(log);
        assert_eq!(
            t.get("POST /api/v1/invoices/{id}/approve → 200"),
            Some(&vec![39_219])
        );
        assert_eq!(t.len(), 1);
    }
}
