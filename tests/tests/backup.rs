//! `expereon backup`: a hot copy through the admin API, and a cold copy of a
//! stopped server's data directory, both byte for byte the original log.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use std::process::Command;

fn backup(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_expereon-under-test"))
        .arg("backup")
        .args(args)
        .env_remove("EXPEREON_ADMIN_TOKEN")
        .output()
        .expect("running expereon backup")
}

/// The last line of the admin event stream: (seq, hash).
async fn live_head(app: &support::TestApp) -> (u64, String) {
    let text = app
        .admin
        .get("/api/v1/admin/events?after=0&limit=10000")
        .await
        .text();
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("events")).expect("json line");
    (
        last["seq"].as_u64().expect("seq"),
        last["hash"].as_str().expect("hash").to_owned(),
    )
}

fn copy_head(dir: &std::path::Path) -> (u64, String) {
    let log = SledLog::open(dir.join("log")).expect("the copy opens (its tail verifies)");
    let head = log.head();
    (head.last_seq, hex_of(&head.last_hash))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn hot_and_cold_backups_are_the_log_byte_for_byte() {
    let mut app = support::spawn_app().await;
    let pair = app.trading_pair("500.00").await;
    for amount in ["10.00", "20.00", "30.00"] {
        let inv = pair.approved(amount).await;
        pair.buyer
            .act(&support::s(&inv["id"]), "settle", serde_json::json!({}))
            .await
            .ok();
    }
    let expected = live_head(&app).await;
    assert!(expected.0 > 20, "a history worth copying");

    // Hot: the server keeps running (and holds the log's lock).
    let hot = tempfile::tempdir().unwrap();
    let out = backup(&[
        "--url",
        &app.base,
        "--admin-token",
        support::ADMIN_TOKEN,
        "--out",
        &hot.path().join("copy").to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(copy_head(&hot.path().join("copy")), expected);

    // A wrong token is refused and leaves no usable copy.
    let bad = tempfile::tempdir().unwrap();
    let out = backup(&[
        "--url",
        &app.base,
        "--admin-token",
        "wrong",
        "--out",
        &bad.path().join("copy").to_string_lossy(),
    ]);
    assert!(!out.status.success());

    // Cold: from the data directory of the stopped server.
    app.kill_now();
    let cold = tempfile::tempdir().unwrap();
    let data_dir = app.data_dir().join("data");
    let out = backup(&[
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--out",
        &cold.path().join("copy").to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(copy_head(&cold.path().join("copy")), expected);

    // A non-empty destination is refused.
    let out = backup(&[
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--out",
        &cold.path().join("copy").to_string_lossy(),
    ]);
    assert!(!out.status.success());
}
