//! After the load (the `webhooks` mix): waits, up to a cap, until the server
//! has nothing left to deliver, judged from the outside: the read models
//! (which queue the deliveries) have caught up with the log as it stood when
//! the load ended, and the `expereon_webhook_backlog` gauge of `/metrics`
//! (deliveries PENDING) is zero. Only then can the receiver's last arrival be
//! called the end of the drain; anything the server queued for other
//! clients' endpoints is waited for too.

use expereon_benches::client::Api;
use std::time::{Duration, Instant};

/// Rarely enough not to load the server it waits for (counting a large
/// backlog for `/metrics` takes it tens of milliseconds). The drain itself
/// is timed by the receiver's arrivals, so this only delays the report.
const POLL: Duration = Duration::from_millis(500);

/// How often the operator hears that loadgen is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What the wait found.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    /// The server had nothing left to deliver before the cap.
    pub empty: bool,
    /// How long loadgen waited, from the load's last answer.
    pub waited: Duration,
    /// At the last look: deliveries still PENDING on the server.
    pub pending: Option<u64>,
    /// At the last look: events the read models had yet to project, so
    /// their deliveries were not even queued.
    pub unprojected: Option<u64>,
    /// Why the wait stopped early, when the server could not be asked.
    pub error: Option<String>,
}

/// The value of the `expereon_webhook_backlog` gauge in Prometheus text.
pub fn gauge(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix("expereon_webhook_backlog")?;
        // Another metric that merely starts with the name has no space here.
        let value = value.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v.max(0.0) as u64)
    })
}

/// One look at the server: (events not yet projected, deliveries pending).
async fn look(api: &Api, last_seq: u64) -> anyhow::Result<(u64, u64)> {
    let projected = api.projection_sequence().await?;
    let metrics = api.metrics().await?;
    let pending = gauge(&metrics)
        .ok_or_else(|| anyhow::anyhow!("/metrics has no expereon_webhook_backlog"))?;
    Ok((last_seq.saturating_sub(projected), pending))
}

/// Waits until the server has delivered everything it queued for events up
/// to the log's current end, or `cap` has passed.
pub async fn wait(api: &Api, cap: Duration) -> Backlog {
    let started = Instant::now();
    let mut backlog = Backlog::default();
    let last_seq = match api.log_sequence().await {
        Ok(seq) => seq,
        Err(e) => {
            backlog.error = Some(format!("{e:#}"));
            return backlog;
        }
    };
    let mut told = started;
    loop {
        match look(api, last_seq).await {
            Ok((unprojected, pending)) => {
                backlog.unprojected = Some(unprojected);
                backlog.pending = Some(pending);
                backlog.empty = unprojected == 0 && pending == 0;
            }
            // A server that stopped answering would only make loadgen sit
            // out the cap; the load's results are still worth reporting.
            Err(e) => {
                backlog.error = Some(format!("{e:#}"));
                break;
            }
        }
        backlog.waited = started.elapsed();
        if backlog.empty || backlog.waited >= cap {
            break;
        }
        if told.elapsed() >= PROGRESS_EVERY {
            told = Instant::now();
            eprintln!(
                "loadgen: waiting for the server's webhook backlog: {} deliveries pending, {} events to project ({:.0} s of at most {:.0} s)",
                backlog.pending.unwrap_or(0),
                backlog.unprojected.unwrap_or(0),
                backlog.waited.as_secs_f64(),
                cap.as_secs_f64()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    backlog.waited = started.elapsed();
    backlog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_backlog_gauge() {
        let text = "# HELP expereon_webhook_backlog Webhook deliveries scheduled.\n\
                    # TYPE expereon_webhook_backlog gauge\n\
                    expereon_webhook_backlog_other 9\n\
                    expereon_webhook_backlog 42\n\
                    expereon_webhook_attempts_total{outcome=\"succeeded\"} 7\n";
        assert_eq!(gauge(text), Some(42));
        assert_eq!(gauge("expereon_webhook_backlog 0\n"), Some(0));
        assert_eq!(gauge("expereon_webhook_backlog 1e3"), Some(1000));
        assert_eq!(gauge("expereon_log_sequence 5\n"), None);
    }
}
