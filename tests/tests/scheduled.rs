//! Scheduled work driven by the server's (test) clock: auto-archive.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::s;

/// Polls until the invoice reaches `status`, for at most `secs` (the scheduler
/// ticks once a second, so three seconds without a change is three ticks).
async fn reaches(org: &support::Org, id: &str, status: &str, secs: u64) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if org.invoice(id).await.ok()["status"] == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn settled_and_cancelled_invoices_archive_after_the_configured_days_and_not_before() {
    let app = support::spawn_app_with(&[
        ("EXPEREON_TEST_CLOCK", "true"),
        ("EXPEREON_AUTO_ARCHIVE_DAYS", "3"),
    ])
    .await;
    let pair = app.trading_pair("1000.00").await;
    let settled = pair.approved("10.00").await;
    let settled_id = s(&settled["id"]);
    pair.buyer.act(&settled_id, "settle", json!({})).await.ok();
    let cancelled = pair.draft("5.00").await;
    let cancelled_id = s(&cancelled["id"]);
    pair.seller
        .act(&cancelled_id, "cancel", json!({ "reason": "typo" }))
        .await
        .ok();
    let open = pair.approved("7.00").await;
    let open_id = s(&open["id"]);

    // Two days on: not yet.
    let advance = |seconds: i64| {
        let body = json!({ "advanceSeconds": seconds });
        let admin = &app.admin;
        async move {
            admin
                .send_json(reqwest::Method::POST, "/api/v1/admin/clock", &body)
                .await
        }
    };
    assert_eq!(advance(2 * 86_400).await.status, 200);
    assert!(
        !reaches(&pair.seller, &settled_id, "ARCHIVED", 3).await,
        "archived before its time"
    );
    // Three days and a bit: both archive; the approved one stays as it is.
    assert_eq!(advance(86_400 + 60).await.status, 200);
    assert!(
        reaches(&pair.seller, &settled_id, "ARCHIVED", 15).await,
        "settled invoice not archived"
    );
    assert!(
        reaches(&pair.seller, &cancelled_id, "ARCHIVED", 15).await,
        "cancelled invoice not archived"
    );
    assert_eq!(
        pair.buyer.invoice(&open_id).await.ok()["status"],
        "APPROVED"
    );
    // Archived by the system: the history says who.
    let history = pair
        .seller
        .get(&format!("/api/v1/invoices/{settled_id}/history"))
        .await
        .ok();
    let last = history["data"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["type"], "InvoiceArchived");
    assert_eq!(last["actor"]["organizationId"], serde_json::Value::Null);
    // Restore works and the scheduler archives it again only after another full period.
    pair.seller
        .act(&settled_id, "restore", json!({}))
        .await
        .ok();
    assert!(
        !reaches(&pair.seller, &settled_id, "ARCHIVED", 3).await,
        "re-archived at once after a restore"
    );
}
