//! The SQL read models and the write-model snapshots, across crashes:
//! - killed (SIGKILL) while projecting under load, the server restarts, and
//!   its read-model database equals one rebuilt from seq 0 from the same log
//!   by the same projection code, table by table, row by row (webhook
//!   deliveries included: each exists exactly once; only their delivery
//!   progress may differ);
//! - a damaged write-model snapshot is refused with a log line naming it and
//!   why, and the server starts from the older one (or the log) all the same;
//! - read models that cannot be written make committed commands answer 503
//!   in bounded time and `/healthz` fail, and recover by themselves.

use crate::support::*;
use futures::future::join_all;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Columns that record what happened to a delivery after it was derived:
/// the live server has tried to send; a rebuild has not.
const DELIVERY_PROGRESS: [&str; 5] = [
    // A delivery's id is drawn when it is derived (UUID v7, for its order
    // among the endpoint's deliveries); what identifies it across a rebuild
    // is (endpoint_id, event_id), which is unique.
    "id",
    "status",
    "next_attempt_at_utc",
    "next_attempt_micros",
    "schedule_base",
];

/// Columns a live database and a rebuild may disagree on: when migrations
/// ran and the outbox was set up, and what happened to deliveries since.
fn may_differ(table: &str, column: &str) -> bool {
    let when = ["schema_migrations", "webhook_outbox_state"].contains(&table)
        && ["applied_at_utc", "created_at_utc"].contains(&column);
    let progress = table == "webhook_deliveries" && DELIVERY_PROGRESS.contains(&column);
    when || progress
}

fn open(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open read models")
}

/// Every table's rows, sorted, with the columns that may differ left out.
fn tables(c: &Connection) -> BTreeMap<String, Vec<Vec<String>>> {
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for table in names {
        // Attempts and redeliveries are delivery progress too.
        if ["webhook_attempts", "webhook_redeliveries"].contains(&table.as_str())
            || table.starts_with("sqlite_")
        {
            continue;
        }
        let mut stmt = c.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let keep: Vec<usize> = (0..columns.len())
            .filter(|&i| !may_differ(&table, &columns[i]))
            .collect();
        let mut rows: Vec<Vec<String>> = stmt
            .query_map([], |r| {
                Ok(keep
                    .iter()
                    .map(|&i| match r.get::<_, Sql>(i).unwrap() {
                        Sql::Null => "NULL".to_string(),
                        Sql::Integer(n) => n.to_string(),
                        Sql::Real(f) => format!("{f:?}"),
                        Sql::Text(t) => t,
                        Sql::Blob(b) => format!("{b:02x?}"),
                    })
                    .collect())
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.insert(table, rows);
    }
    out
}

/// The read models rebuilt from seq 0 of the server's log (stopped), with
/// the projection code the server runs, into a fresh file.
fn rebuilt(data: &Path) -> (tempfile::TempDir, Connection) {
    let log = ledger_core::log::sled::SledLog::open(data.join("log")).expect("open the log");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(projections::sql::FILE);
    let mut conn = projections::sql::open_writer(&path).unwrap();
    // As the server's database for a new log: deliveries derived from seq 0.
    conn.execute(
        "INSERT INTO webhook_outbox_state (id, webhooks_from_seq, created_at_utc) VALUES (1, 0, '')",
        [],
    )
    .unwrap();
    projections::sql::fold::catch_up(&mut conn, &log, 4096).unwrap();
    drop(conn);
    let conn = open(&path);
    (dir, conn)
}

/// Invoice lifecycles from `pairs` organization pairs at once, until stopped.
async fn load(app: &TestApp, pairs: &[Pair], rounds: usize) {
    let work = pairs.iter().map(|pair| async move {
        for i in 0..rounds {
            let mut body = simple_invoice(&pair.conn, &format!("{}.00", i + 1));
            body["submit"] = json!(true);
            let Ok(r) = pair
                .seller
                .try_send(
                    reqwest::Method::POST,
                    "/api/v1/invoices",
                    &[("content-type", "application/json")],
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await
            else {
                return; // the server is gone
            };
            if r.status != 200 {
                return;
            }
            let id = s(&r.json()["id"]);
            for (org, path, body) in [
                (
                    &pair.buyer,
                    format!("/api/v1/invoices/{id}/approve"),
                    json!({}),
                ),
                (
                    &pair.buyer,
                    "/api/v1/payments/settle".to_string(),
                    json!({ "invoiceId": id }),
                ),
            ] {
                let sent = org
                    .try_send(
                        reqwest::Method::POST,
                        &path,
                        &[("content-type", "application/json")],
                        Some(serde_json::to_vec(&body).unwrap()),
                    )
                    .await;
                if sent.map(|r| r.status != 200).unwrap_or(true) {
                    return;
                }
            }
        }
    });
    let _ = app; // the load talks to the pairs' clients
    join_all(work).await;
}

#[tokio::test]
async fn killed_while_projecting_the_read_models_equal_a_rebuild_from_the_log() {
    let mut app = spawn_app_with(&[("EXPEREON_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let mut pairs = Vec::new();
    for _ in 0..4 {
        let pair = app.trading_pair("1000000.00").await;
        // Deliveries to a port nobody listens on: derived, tried, pending.
        for org in [&pair.seller, &pair.buyer] {
            org.post(
                "/api/v1/settings/webhooks",
                json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] }),
            )
            .await
            .ok();
        }
        pairs.push(pair);
    }
    for round in 0..3 {
        let driving = load(&app, &pairs, 1000);
        let killing = async {
            // Under load the projection is almost always inside a batch.
            tokio::time::sleep(std::time::Duration::from_millis(1000 + 300 * round)).await;
        };
        tokio::select! {
            _ = driving => {},
            _ = killing => {},
        }
        app.kill_now();
        app.start_again().await;
    }
    // Settle: stop cleanly so nothing moves while the files are compared.
    app.restart().await;
    let seller = pairs[0].seller.clone();
    assert!(!seller.all_invoices("").await.is_empty());
    app.kill_now();
    let data = app.data_dir().join("data");
    let live = open(&data.join(projections::sql::FILE));
    let (_dir, fresh) = rebuilt(&data);
    let (live, fresh) = (tables(&live), tables(&fresh));
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &fresh {
        let theirs = &live[table];
        assert_eq!(theirs.len(), rows.len(), "rows of {table}: live vs rebuild");
        if let Some((a, b)) = theirs.iter().zip(rows).find(|(a, b)| a != b) {
            panic!("table {table} differs from a rebuild:\nlive    {a:.600?}\nrebuild {b:.600?}");
        }
    }
    assert!(
        fresh["webhook_deliveries"].len() > 50,
        "the load derived deliveries"
    );
}

#[tokio::test]
async fn a_damaged_write_model_snapshot_is_refused_and_the_server_starts() {
    let mut app = spawn_app_with(&[("EXPEREON_SNAPSHOT_EVERY", "40")]).await;
    let pair = app.trading_pair("5000.00").await;
    for i in 0..25 {
        let inv = pair
            .seller
            .create_invoice(json!({
                "connectionId": pair.conn, "currency": "USD", "dueDate": DUE, "submit": true,
                "lineItems": [line("Widgets", "1", &format!("{}.00", i + 1), None)],
            }))
            .await;
        pair.buyer
            .act(&s(&inv["id"]), "approve", json!({}))
            .await
            .ok();
    }
    let before = (
        pair.buyer.balances().await,
        pair.seller.all_invoices("").await,
    );
    // A clean stop writes a snapshot at the last seq; damage it.
    app.restart().await;
    app.kill_now();
    let dir = app.data_dir().join("data").join("write-model");
    let mut snaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    assert!(snaps.len() >= 2, "snapshots: {snaps:?}");
    let newest = snaps.last().unwrap().clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&newest, &bytes).unwrap();

    app.start_again().await;
    let log = app.log();
    let name = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("write-model snapshot refused")
                && l.contains(&name)
                && l.contains("checksum mismatch")),
        "no log line names the refused snapshot and why:\n{log}"
    );
    assert!(
        log.contains("write model loaded from its snapshot"),
        "{log}"
    );
    let after = (
        pair.buyer.balances().await,
        pair.seller.all_invoices("").await,
    );
    assert_eq!(after, before);
    // And it decides on the right state: the approved invoices settle.
    let first = s(&before.1.last().unwrap()["id"]);
    pair.buyer
        .post("/api/v1/payments/settle", json!({ "invoiceId": first }))
        .await
        .ok();
}

/// The read models cannot be written while another process holds SQLite's
/// write lock (as an analyst's read-write session could). A committed
/// command then answers 503 within `EXPEREON_PROJECTION_WAIT` instead of
/// hanging, `/healthz` answers 503 naming why, and once the lock goes the
/// projection catches up by itself: the retry with the same requestId gets
/// the command's answer, and the money is there once.
#[tokio::test]
async fn read_models_that_cannot_be_written_answer_503_and_recover() {
    let app = spawn_app_with(&[("EXPEREON_PROJECTION_WAIT", "1s")]).await;
    let org = app.create_org("Locked Ltd").await;
    let lock =
        Connection::open(app.data_dir().join("data").join(projections::sql::FILE)).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let path = format!("/api/v1/admin/organizations/{}/deposits", org.id);
    let body =
        json!({ "requestId": rid(), "currency": "USD", "amount": "5.00", "reference": "wire 1" });
    let started = std::time::Instant::now();
    let r = app.admin.post(&path, body.clone()).await;
    r.err(503, "UNAVAILABLE");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
    // SQLite gives up on the lock after its busy timeout: then the server
    // says it is unhealthy, and why.
    let unhealthy = wait_for_health(&app, 503).await;
    let fault = unhealthy["projectionFault"].as_str().expect("a reason");
    assert!(
        fault.contains("locked") || fault.contains("busy"),
        "{fault}"
    );
    lock.execute_batch("ROLLBACK").expect("release the lock");
    drop(lock);
    let healthy = wait_for_health(&app, 200).await;
    assert_eq!(healthy["projectionFault"], serde_json::Value::Null);
    assert_eq!(healthy["projectionSequence"], healthy["logSequence"]);
    let again = app.admin.post(&path, body).await;
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    again.ok();
    assert_eq!(org.money("USD").await.0.to_string(), "5.00");
}

/// Polls `/healthz` until it answers `status` (at most 30 s), returning its body.
async fn wait_for_health(app: &TestApp, status: u16) -> serde_json::Value {
    for _ in 0..300 {
        let r = app.anon.get("/healthz").await;
        if r.status == status {
            return r.json();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/healthz never answered {status}");
}
