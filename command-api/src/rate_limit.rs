//! Per-API-key token buckets: `EXPEREON_RATE_LIMIT` requests a second, bursts
//! up to twice that. Over the limit → 429 RATE_LIMITED with `Retry-After`.
//! The admin API is exempt (its routes are not behind this layer). Buckets
//! belong to authenticated keys only.

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

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            burst: per_second * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; when none is left, how many seconds until one is.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| now.duration_since(b.last).as_secs_f64() < IDLE_EVICT_SECS);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Only calls that authenticate as a key spend its tokens: anyone who
    // knows a key's id (it is not secret) must not be able to exhaust it.
    // Calls with bad credentials are answered 401 without a bucket.
    let key =
        crate::auth::identify(&state, request.headers()).map(|(_, key_id)| key_id.to_string());
    if let Some(key) = key {
        if let Err(retry_after_secs) = state.rate_limiter.check(&key, Instant::now()) {
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
        let rl = RateLimiter::new(5);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rl.check("k", t0).is_ok());
        }
        assert_eq!(rl.check("k", t0), Err(1));
        assert!(rl.check("other", t0).is_ok(), "buckets are per key");
        assert!(rl.check("k", t0 + Duration::from_millis(250)).is_ok());
    }
}
