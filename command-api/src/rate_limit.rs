//! Token buckets per API key and per organization: a key may make
//! `EXPEREON_RATE_LIMIT` requests a second, an organization all its keys
//! together `EXPEREON_ORG_RATE_LIMIT` (default four times the per-key rate,
//! so minting keys does not multiply an organization's allowance); bursts up
//! to twice the rate. A request needs a token from both buckets and takes
//! them only when both have one. Over either limit → 429 RATE_LIMITED with
//! `Retry-After`. The admin API is exempt (its routes are not behind this
//! layer). Buckets belong to authenticated keys only.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets idle this long are dropped, bounding the map by active keys.
const IDLE_EVICT_SECS: f64 = 300.0;
const MAX_BUCKETS: usize = 100_000;
/// Refills are summed in floating point: a token due now may be 1e-16 short.
const EPSILON: f64 = 1e-9;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets of one rate, by name.
struct Buckets {
    per_second: f64,
    burst: f64,
    map: HashMap<String, Bucket>,
}

impl Buckets {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self::with(per_second, per_second * 2.0)
    }

    fn with(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            map: HashMap::new(),
        }
    }

    /// The bucket of `name`, refilled up to `now`.
    fn refilled(&mut self, name: &str, now: Instant) -> &mut Bucket {
        if self.map.len() >= MAX_BUCKETS {
            self.map
                .retain(|_, b| now.duration_since(b.last).as_secs_f64() < IDLE_EVICT_SECS);
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let bucket = self.map.entry(name.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.last = now;
        bucket
    }

    /// Seconds until the bucket holding `tokens` has one.
    fn wait(&self, tokens: f64) -> u64 {
        ((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64
    }
}

pub struct RateLimiter {
    /// Organizations' buckets, then keys': locked in that order.
    buckets: Mutex<(Buckets, Buckets)>,
}

impl RateLimiter {
    pub fn new(per_key: u32, per_organization: u32) -> Self {
        Self {
            buckets: Mutex::new((Buckets::new(per_organization), Buckets::new(per_key))),
        }
    }

    /// Takes a token for `key` of `organization`; when either has none left,
    /// takes nothing and says how many seconds until both have one.
    pub fn check(&self, organization: &str, key: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut guard) = self.buckets.lock() else {
            return Ok(());
        };
        let (orgs, keys) = &mut *guard;
        let org = orgs.refilled(organization, now);
        let key = keys.refilled(key, now);
        if org.tokens + EPSILON >= 1.0 && key.tokens + EPSILON >= 1.0 {
            org.tokens = (org.tokens - 1.0).max(0.0);
            key.tokens = (key.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let (org_tokens, key_tokens) = (org.tokens, key.tokens);
        // A bucket with a token to spare says 1 s, never more than the one
        // without, which says at least that.
        Err(orgs.wait(org_tokens).max(keys.wait(key_tokens)))
    }
}

/// Failed admin authentications per client address: a burst of
/// [`ADMIN_FAILURE_BURST`], then one more every [`ADMIN_FAILURE_EVERY_SECS`]
/// seconds. Past that, the address's admin requests get 429 before their
/// token is even compared, so guessing runs at a few tries a minute rather
/// than a thousand a second. Successful calls cost nothing.
pub struct AdminThrottle {
    buckets: Mutex<Buckets>,
}

pub const ADMIN_FAILURE_BURST: f64 = 10.0;
pub const ADMIN_FAILURE_EVERY_SECS: f64 = 6.0;

impl Default for AdminThrottle {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(Buckets::with(
                1.0 / ADMIN_FAILURE_EVERY_SECS,
                ADMIN_FAILURE_BURST,
            )),
        }
    }
}

impl AdminThrottle {
    /// Whether `address` may try a token now; if not, seconds to wait.
    pub fn check(&self, address: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let tokens = buckets.refilled(address, now).tokens;
        if tokens + EPSILON >= 1.0 {
            Ok(())
        } else {
            Err(buckets.wait(tokens))
        }
    }

    /// Counts a wrong or missing token from `address`.
    pub fn failed(&self, address: &str, now: Instant) {
        if let Ok(mut buckets) = self.buckets.lock() {
            let bucket = buckets.refilled(address, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
    }
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Only calls that authenticate as a key spend its tokens: anyone who
    // knows a key's id (it is not secret) must not be able to exhaust it.
    // Calls with bad credentials are answered 401 without a bucket.
    let identity = request
        .extensions()
        .get::<crate::auth::Authentication>()
        .and_then(crate::auth::Authentication::identity);
    if let Some((org, key)) = identity {
        let checked = state
            .rate_limiter
            .check(&org.to_string(), &key.to_string(), Instant::now());
        if let Err(retry_after_secs) = checked {
            return ApiError::RateLimited { retry_after_secs }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_twice_the_rate_passes_then_the_bucket_refills() {
        let rl = RateLimiter::new(5, 1000);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rl.check("o", "k", t0).is_ok());
        }
        assert_eq!(rl.check("o", "k", t0), Err(1));
        assert!(rl.check("o", "other", t0).is_ok(), "buckets are per key");
        assert!(rl.check("o", "k", t0 + Duration::from_millis(250)).is_ok());
    }

    #[test]
    fn an_organizations_keys_share_its_bucket() {
        let rl = RateLimiter::new(5, 2);
        let t0 = Instant::now();
        for key in ["a", "b", "c", "d"] {
            assert!(rl.check("o", key, t0).is_ok(), "{key}");
        }
        // Four of the organization's burst of four are spent, by four keys
        // well under their own limits.
        assert_eq!(rl.check("o", "e", t0), Err(1));
        assert!(rl.check("p", "e", t0).is_ok(), "another organization");
        // A refused call takes no token from the key: after the org refills,
        // the key still has its whole burst.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..4 {
            assert!(rl.check("o", "e", t1).is_ok());
        }
        assert_eq!(rl.check("o", "e", t1), Err(1));
    }

    #[test]
    fn failed_admin_tokens_are_throttled_per_address() {
        let throttle = AdminThrottle::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(throttle.check("1.2.3.4", t0).is_ok());
            throttle.failed("1.2.3.4", t0);
        }
        assert_eq!(throttle.check("1.2.3.4", t0), Err(6));
        assert!(throttle.check("5.6.7.8", t0).is_ok(), "per address");
        // One more try after six seconds, not before.
        assert!(throttle
            .check("1.2.3.4", t0 + Duration::from_secs(5))
            .is_err());
        assert!(throttle
            .check("1.2.3.4", t0 + Duration::from_secs(6))
            .is_ok());
    }

    #[test]
    fn the_wait_is_what_the_missing_part_of_a_token_takes() {
        let rl = RateLimiter::new(1, 1000);
        let t0 = Instant::now();
        assert!(rl.check("o", "k", t0).is_ok());
        assert!(rl.check("o", "k", t0).is_ok());
        // Half a token back after 0.5 s: the other half takes 0.5 s, so 1.
        assert_eq!(rl.check("o", "k", t0 + Duration::from_millis(500)), Err(1));
        let slow = RateLimiter::new(1000, 1);
        assert!(slow.check("o", "a", t0).is_ok());
        assert!(slow.check("o", "b", t0).is_ok());
        // A quarter token back: three quarters of a second, so 1 s, not 2.
        assert_eq!(
            slow.check("o", "c", t0 + Duration::from_millis(250)),
            Err(1)
        );
    }

    #[test]
    fn idle_buckets_are_evicted_once_there_are_too_many() {
        let rl = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS {
            let _ = rl.check("o", &i.to_string(), t0);
        }
        let keys = |rl: &RateLimiter| rl.buckets.lock().map(|b| b.1.map.len()).unwrap_or(0);
        assert_eq!(keys(&rl), MAX_BUCKETS);
        // Still in use 10 s later: nothing is evicted.
        let _ = rl.check("o", "new", t0 + Duration::from_secs(10));
        assert_eq!(keys(&rl), MAX_BUCKETS + 1);
        // Idle for longer than IDLE_EVICT_SECS: all but the newest go.
        let later = t0 + Duration::from_secs(IDLE_EVICT_SECS as u64 + 20);
        let _ = rl.check("o", "newer", later);
        assert_eq!(keys(&rl), 1);
    }

    #[test]
    fn the_wait_is_the_longer_of_the_two() {
        let rl = RateLimiter::new(1, 100);
        let t0 = Instant::now();
        assert!(rl.check("o", "k", t0).is_ok());
        assert!(rl.check("o", "k", t0).is_ok());
        assert_eq!(rl.check("o", "k", t0), Err(1));
        let slow = RateLimiter::new(100, 1);
        assert!(slow.check("o", "k", t0).is_ok());
        assert!(slow.check("o", "k", t0).is_ok());
        assert_eq!(slow.check("o", "k2", t0), Err(1));
    }
}
