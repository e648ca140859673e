//! Server settings: flags or `EXPEREON_*` environment variables (API.md, Running).

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve on.
    #[arg(long, env = "EXPEREON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Event log, read models and files.
    #[arg(long, env = "EXPEREON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Operator token; admin routes answer 404 when unset.
    #[arg(long, env = "EXPEREON_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Key that encrypts secrets at rest (64 hex digits); unset: the key
    /// file `master.key` in the data directory, created on first start.
    #[arg(long, env = "EXPEREON_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Delays between webhook attempts.
    #[arg(long, env = "EXPEREON_WEBHOOK_RETRY_SCHEDULE", default_value = "1m,5m,30m,2h,12h", value_parser = parse_schedule)]
    pub webhook_retry_schedule: Schedule,
    /// Per webhook attempt.
    #[arg(long, env = "EXPEREON_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// Allow loopback/private webhook targets (off: SSRF guard).
    #[arg(long, env = "EXPEREON_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// How long idempotency records are kept.
    #[arg(long, env = "EXPEREON_IDEMPOTENCY_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_retention: Duration,
    /// Requests per second per API key (burst 2×).
    #[arg(long, env = "EXPEREON_RATE_LIMIT", default_value_t = 100)]
    pub rate_limit: u32,
    /// Requests per second per organization, all its keys together (burst
    /// 2×); unset: four times `EXPEREON_RATE_LIMIT`.
    #[arg(long, env = "EXPEREON_ORG_RATE_LIMIT")]
    pub org_rate_limit: Option<u32>,
    /// A connection that has not sent a request's whole header after this
    /// long is closed.
    #[arg(long, env = "EXPEREON_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long is refused (408): a
    /// JSON body must arrive whole within it, an upload may not stall longer.
    #[arg(long, env = "EXPEREON_REQUEST_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_body_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    #[arg(long, env = "EXPEREON_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest upload accepted.
    #[arg(long, env = "EXPEREON_MAX_UPLOAD_BYTES", default_value_t = 26_214_400)]
    pub max_upload_bytes: u64,
    /// Largest JSON body accepted.
    #[arg(long, env = "EXPEREON_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Settled and cancelled invoices are archived after this many days (0: never).
    #[arg(long, env = "EXPEREON_AUTO_ARCHIVE_DAYS", default_value_t = 0)]
    pub auto_archive_days: u32,
    /// Test seam: the server's clock starts at the system time and only moves
    /// through `POST /api/v1/admin/clock`. Never enable in production.
    #[arg(long, env = "EXPEREON_TEST_CLOCK", default_value_t = false)]
    pub test_clock: bool,
    /// Where files go: unset for `<data dir>/files` on the local filesystem, or
    /// `s3://bucket[/prefix]` (credentials and endpoint from the usual AWS_* variables).
    #[arg(long, env = "EXPEREON_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// At start, check every stored file against the size and SHA-256 of
    /// its `FileStored` event, in the background (`/metrics`, `/healthz`).
    #[arg(long, env = "EXPEREON_VERIFY_FILES_AT_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_files_at_start: bool,
    /// Below this much free disk space under the data directory, writes are
    /// refused (503) so the log never meets a full disk.
    #[arg(
        long,
        env = "EXPEREON_MIN_FREE_DISK_BYTES",
        default_value_t = 268_435_456
    )]
    pub min_free_disk_bytes: u64,
    /// How long API log records are kept.
    #[arg(long, env = "EXPEREON_API_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub api_log_retention: Duration,
    /// A durable write-model snapshot is written every this many events (and
    /// one at a clean stop); a start replays only the log after the newest.
    #[arg(long, env = "EXPEREON_SNAPSHOT_EVERY", default_value_t = 1_000_000)]
    pub snapshot_every_events: u64,
    /// Longest wait for the read models to reach a committed command before
    /// its answer is 503 (the command stays committed: retrying with the same
    /// requestId returns its answer once they have).
    #[arg(long, env = "EXPEREON_PROJECTION_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub projection_wait: Duration,
    /// sled page cache size.
    #[arg(long, env = "EXPEREON_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

/// `500ms`, `10s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s, 5m, 2h"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h, d)")),
    };
    Ok(Duration::from_secs(secs))
}

pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let steps: Result<Vec<_>, _> = s.split(',').map(parse_duration).collect();
    let steps = steps?;
    if steps.is_empty() || steps.len() > 20 {
        return Err("the retry schedule needs 1 to 20 delays".into());
    }
    Ok(Schedule(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_default_schedule_parses() {
        let s = parse_schedule("1m,5m,30m,2h,12h").unwrap();
        assert_eq!(s.0.len(), 5);
        assert_eq!(s.0[4], Duration::from_secs(12 * 3600));
    }
}
