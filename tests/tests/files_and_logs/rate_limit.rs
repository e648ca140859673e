//! Per-key rate limiting: EXPEREON_RATE_LIMIT=5 gives a burst of 10, then
//! 429 RATE_LIMITED with Retry-After; other keys and the operator are
//! unaffected; the key works again after waiting what it was told.

use crate::support::{spawn_app_with, Resp};
use reqwest::Method;
use std::time::{Duration, Instant};

const RATE: u64 = 5;

/// The documented 429 and its Retry-After (whole seconds, at least 1).
#[track_caller]
fn retry_after(r: &Resp) -> u64 {
    let details = r.err(429, "RATE_LIMITED");
    let header = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers));
    let secs: u64 = header
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After `{header}` is not whole seconds"));
    assert!(secs >= 1, "Retry-After {secs}");
    assert!(
        secs <= 2 * RATE,
        "Retry-After {secs} is far longer than a token takes at {RATE}/s"
    );
    if let Some(d) = details.get("retryAfterSeconds") {
        assert_eq!(d, &serde_json::json!(secs), "details agree with the header");
    }
    secs
}

#[tokio::test]
async fn a_burst_over_the_limit_is_refused_with_retry_after_then_the_key_recovers() {
    let app = spawn_app_with(&[("EXPEREON_RATE_LIMIT", &RATE.to_string())]).await;
    // Organizations come from the (exempt) operator API; keys cost the
    // default key one token each.
    let org = app.create_org("Busy Ltd").await;
    let burst = org.key_with(&["*"]).await;
    let other = org.key_with(&["*"]).await;
    let victim = org.key_with(&["*"]).await;

    // ~30 quick calls on one key: the first 2×rate pass, then 429.
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut last_limited = None;
    for _ in 0..30 {
        let r = burst.get("/api/v1/invoices?limit=1").await;
        match r.status {
            200 => {}
            429 => last_limited = Some(retry_after(&r)),
            other => panic!("unexpected {other}: {}", r.text()),
        }
        statuses.push(r.status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let refills = (elapsed * RATE as f64).floor() as usize;
    assert!(
        statuses[..(2 * RATE) as usize].iter().all(|s| *s == 200),
        "the burst allowance (2×{RATE}) passes: {statuses:?}"
    );
    assert!(
        passed <= 2 * RATE as usize + refills + 1,
        "{passed} of 30 passed in {elapsed:.3}s at {RATE}/s with a burst of {}: {statuses:?}",
        2 * RATE
    );
    let first_refused = statuses
        .iter()
        .position(|s| *s == 429)
        .expect("some calls are refused");
    assert!(
        first_refused <= 2 * RATE as usize + refills + 1,
        "{statuses:?}"
    );
    let wait = last_limited.expect("a Retry-After");

    // Other keys are unaffected, and so is the operator, even when it carries
    // the limited key's headers.
    for _ in 0..5 {
        other.get("/api/v1/invoices?limit=1").await.ok();
    }
    for _ in 0..30 {
        let r = app
            .admin
            .send(
                Method::GET,
                "/api/v1/admin/events?after=0&limit=1",
                &[
                    ("x-api-key", &burst.key_id),
                    ("x-api-secret", &burst.secret),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "the admin API is exempt: {}", r.text());
    }
    // Still limited right now.
    let r = burst.get("/api/v1/invoices?limit=1").await;
    let wait = wait.max(if r.status == 429 { retry_after(&r) } else { 0 });

    // The refusals are logged like any other answer.
    let refused = other
        .walk(
            &format!(
                "/api/v1/settings/api-logs?status=429&apiKeyId={}",
                burst.key_id
            ),
            200,
        )
        .await;
    assert!(
        refused.len() >= statuses.iter().filter(|s| **s == 429).count(),
        "every 429 is in the API log: {} logged",
        refused.len()
    );
    assert!(refused.iter().all(|r| r["path"] == "/api/v1/invoices"));

    // Calls presenting a key's id with a wrong secret are not that key's
    // calls: they are refused as unauthenticated and do not spend its budget.
    for _ in 0..30 {
        let r = app
            .anon
            .send(
                Method::GET,
                "/api/v1/invoices?limit=1",
                &[
                    ("x-api-key", &victim.key_id),
                    ("x-api-secret", "es_not-the-secret"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    for i in 0..(2 * RATE) {
        let r = victim.get("/api/v1/invoices?limit=1").await;
        assert_eq!(
            r.status,
            200,
            "call {i} of the real key after a flood of bad secrets: {}",
            r.text()
        );
    }

    // After waiting what it was told (the only sleep), the key works again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = burst.get("/api/v1/invoices?limit=1").await;
    assert_eq!(r.status, 200, "after Retry-After {wait}s: {}", r.text());
    assert!(r.json()["data"].is_array(), "{}", r.text());
}

/// Minting keys does not multiply an organization's allowance: with
/// `EXPEREON_ORG_RATE_LIMIT=5` (a burst of 10), calls spread over four keys,
/// each far under its own limit, are refused once the organization's burst
/// is spent; another organization is unaffected.
#[tokio::test]
async fn an_organizations_keys_share_one_allowance() {
    let app = spawn_app_with(&[
        ("EXPEREON_RATE_LIMIT", "100"),
        ("EXPEREON_ORG_RATE_LIMIT", &RATE.to_string()),
    ])
    .await;
    let org = app.create_org("Many Keys Ltd").await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(org.key_with(&["*"]).await);
    }
    let neighbour = app.create_org("Neighbour Ltd").await;
    // The four key creations spent four of the organization's tokens.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..24 {
        let r = keys[i % 4].get("/api/v1/invoices?limit=1").await;
        match r.status {
            200 => {}
            429 => {
                retry_after(&r);
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
        statuses.push(r.status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refills = (elapsed * RATE as f64).ceil() as usize;
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        passed <= 2 * RATE as usize - 4 + refills + 1,
        "{passed} of 24 passed in {elapsed:.3}s: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    for _ in 0..10 {
        neighbour.get("/api/v1/invoices?limit=1").await.ok();
    }
}
