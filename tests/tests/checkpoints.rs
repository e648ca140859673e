//! Durable read-model checkpoints: written as events arrive, used at the next
//! start (then only the events after them are replayed), and ignored — the
//! read models rebuilt from sequence 0 — when they cannot be trusted.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn checkpoint_file(app: &support::TestApp) -> PathBuf {
    app.data_dir().join("data/read-models/read-models.snapshot")
}

/// Everything a client can read, as one value to compare across restarts.
async fn views(pair: &support::Pair) -> Value {
    let mut all = Vec::new();
    for org in [&pair.seller, &pair.buyer] {
        for path in [
            "/api/v1/invoices?limit=200",
            "/api/v1/treasury/me/balances",
            "/api/v1/connections",
            "/api/v1/payments",
            "/api/v1/treasury/me/transactions?limit=200",
        ] {
            all.push(org.get(path).await.ok());
        }
    }
    Value::Array(all)
}

#[tokio::test]
async fn checkpoints_are_written_used_at_start_and_ignored_when_untrustworthy() {
    let mut app = support::spawn_app_with(&[("EXPEREON_CHECKPOINT_EVERY", "5")]).await;
    let pair = app.trading_pair("1000.00").await;
    for amount in ["10.00", "20.00", "30.00"] {
        let inv = pair.approved(amount).await;
        pair.buyer
            .act(&support::s(&inv["id"]), "settle", serde_json::json!({}))
            .await
            .ok();
    }
    // Written in the background: wait for it (bounded).
    let started = Instant::now();
    while !checkpoint_file(&app).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no checkpoint written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = views(&pair).await;

    app.restart().await;
    assert!(
        app.log()
            .contains("read models loaded from their checkpoint"),
        "the checkpoint was not used"
    );
    assert_eq!(
        views(&pair).await,
        before,
        "read models differ after starting from the checkpoint"
    );

    // A damaged checkpoint is ignored and the read models are rebuilt from 0.
    app.kill_now();
    let path = checkpoint_file(&app);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes.truncate(middle);
    std::fs::write(&path, bytes).unwrap();
    app.start_again().await;
    assert!(
        app.log().contains("read-model checkpoint unreadable"),
        "the damaged checkpoint was not refused"
    );
    assert_eq!(
        views(&pair).await,
        before,
        "read models differ after a rebuild from 0"
    );
}
