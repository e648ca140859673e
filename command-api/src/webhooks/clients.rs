//! HTTP clients for webhook endpoints, one per origin (scheme, host, port),
//! each pinned to the addresses the SSRF guard checked when it was made.
//!
//! A client per attempt (as before) meant a DNS lookup and a new TCP (and TLS)
//! handshake for every delivery. Kept per origin, a client reuses its
//! connections (keep-alive) across deliveries and endpoints of that origin.
//! The pin must not outlive the name's answer for long, or a host that moved
//! (or was re-pointed at a private address) would keep receiving: after
//! [`REPIN_AFTER`] the name is resolved and checked again and a new client
//! replaces the old.

use crate::webhooks::ssrf;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a client's pinned addresses are trusted.
pub const REPIN_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Clients {
    pinned: Mutex<HashMap<String, Pinned>>,
}

struct Pinned {
    client: reqwest::Client,
    at: Instant,
}

impl Clients {
    /// A POST to `url` once it passes the SSRF guard, from the origin's
    /// client (made now, resolving and checking the host, if there is none
    /// or its pin is stale).
    pub async fn post(
        &self,
        url: &str,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = ssrf::check_url(url, allow_private).map_err(|e| format!("refused: {e}"))?;
        let origin = url.origin().ascii_serialization();
        if let Some(client) = self.fresh(&origin, Instant::now()) {
            return Ok(client.post(url));
        }
        let target = match tokio::time::timeout(timeout, ssrf::resolve(&url, allow_private)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("timed out resolving the host".into()),
        };
        let client = pinned_client(&target, timeout)?;
        self.keep(origin, client.clone(), Instant::now());
        Ok(client.post(url))
    }

    fn fresh(&self, origin: &str, now: Instant) -> Option<reqwest::Client> {
        let pinned = self.pinned.lock().ok()?;
        pinned
            .get(origin)
            .filter(|p| now.duration_since(p.at) < REPIN_AFTER)
            .map(|p| p.client.clone())
    }

    /// Keeps `client` for `origin`, dropping stale pins so the map is bounded
    /// by the origins delivered to in the last [`REPIN_AFTER`].
    fn keep(&self, origin: String, client: reqwest::Client, now: Instant) {
        if let Ok(mut pinned) = self.pinned.lock() {
            pinned.retain(|_, p| now.duration_since(p.at) < REPIN_AFTER);
            pinned.insert(origin, Pinned { client, at: now });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pinned.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// A client that connects only to `target`'s addresses (no second lookup).
fn pinned_client(target: &ssrf::Target, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name itself, around the pinned address.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(crate::webhooks::worker::MAX_PER_ENDPOINT)
        .user_agent(concat!("Expereon-Webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(domain) = &target.domain {
        builder = builder.resolve_to_addrs(domain, &target.addrs);
    }
    builder.build().map_err(|e| format!("http client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[test]
    fn a_pin_is_reused_until_it_is_stale_then_dropped() {
        let clients = Clients::default();
        let t0 = Instant::now();
        clients.keep("http://a:80".into(), client(), t0);
        assert!(clients.fresh("http://a:80", t0).is_some());
        assert!(clients
            .fresh("http://a:80", t0 + REPIN_AFTER - Duration::from_millis(1))
            .is_some());
        assert!(clients.fresh("http://a:80", t0 + REPIN_AFTER).is_none());
        assert!(clients.fresh("http://b:80", t0).is_none());
        // Keeping another origin later drops the stale pin.
        clients.keep("http://b:80".into(), client(), t0 + REPIN_AFTER);
        assert_eq!(clients.len(), 1);
        assert!(clients.fresh("http://b:80", t0 + REPIN_AFTER).is_some());
    }
}
