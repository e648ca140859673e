//! The SQL read models across restarts: a start resumes the database exactly
//! where its last transaction left it (nothing is rebuilt), and a database
//! that cannot be trusted — missing, or of another log — is rebuilt from the
//! log, answering exactly as before.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use serde_json::Value;

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

/// `(seq, folded)` of the last "SQL read models caught up" line of the log.
fn caught_up(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("SQL read models caught up"))
        .unwrap_or_else(|| panic!("no catch-up line:\n{log}"));
    let field = |name: &str| -> u64 {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} in {line}"));
        line[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (field("seq"), field("folded"))
}

#[tokio::test]
async fn a_start_resumes_the_read_models_and_rebuilds_only_what_it_cannot_trust() {
    let mut app = support::spawn_app().await;
    let pair = app.trading_pair("1000.00").await;
    for amount in ["10.00", "20.00", "30.00"] {
        let inv = pair.approved(amount).await;
        pair.buyer
            .act(&support::s(&inv["id"]), "settle", serde_json::json!({}))
            .await
            .ok();
    }
    let before = views(&pair).await;
    let db = app.data_dir().join("data").join("read-models.sqlite");

    // A clean restart folds nothing: the database is where it stopped.
    app.restart().await;
    let (seq, folded) = caught_up(&app.log());
    assert!(seq > 0);
    assert_eq!(folded, 0, "a restart rebuilt read models");
    assert_eq!(views(&pair).await, before);

    // Deleted (as an operator may, the server stopped): rebuilt from the log.
    app.kill_now();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    app.start_again().await;
    assert_eq!(caught_up(&app.log()), (seq, seq));
    assert_eq!(
        views(&pair).await,
        before,
        "read models differ after a rebuild"
    );

    // Another log's database in its place: refused, rebuilt from 0.
    let mut other = support::spawn_app().await;
    let other_pair = other.trading_pair("5.00").await;
    other_pair.approved("1.00").await;
    other.restart().await;
    other.kill_now();
    app.kill_now();
    let theirs = other.data_dir().join("data").join("read-models.sqlite");
    // The database with its write-ahead log (a killed server leaves one).
    for suffix in ["", "-wal", "-shm"] {
        let ours = format!("{}{suffix}", db.display());
        let _ = std::fs::remove_file(&ours);
        let from = format!("{}{suffix}", theirs.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, &ours).unwrap();
        }
    }
    app.start_again().await;
    assert!(
        app.log().contains("read-model database refused"),
        "another log's read models were used"
    );
    assert_eq!(
        views(&pair).await,
        before,
        "read models differ after a rebuild"
    );
}

#[tokio::test]
async fn the_previous_versions_read_model_checkpoints_are_removed() {
    let mut app = support::spawn_app().await;
    app.kill_now();
    let old = app.data_dir().join("data").join("read-models");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("read-models.snapshot"), b"old format").unwrap();
    app.start_again().await;
    assert!(!old.exists(), "the old checkpoints are still there");
}
