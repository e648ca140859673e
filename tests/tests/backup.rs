//! `expereon backup`: a hot copy through the admin API, and a cold copy of a
//! stopped server's data directory, both byte for byte the original log and
//! with every stored file it references; servers restored from them answer
//! as the original did, and say so when a file is missing.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "files_and_logs/common.rs"]
mod common;

use common::{files_under, noise, sha256_hex, upload_raw};
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{s, Org, TestApp};

fn expereon(subcommand: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_expereon-under-test"));
    cmd.arg(subcommand).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("EXPEREON_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("running expereon")
}

fn backup(args: &[&str]) -> std::process::Output {
    expereon("backup", args)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

// ---------------------------------------------------------------------------
// files
// ---------------------------------------------------------------------------

fn hot_backup(app: &TestApp, out: &Path) -> std::process::Output {
    backup(&[
        "--url",
        &app.base,
        "--admin-token",
        support::ADMIN_TOKEN,
        "--out",
        &out.to_string_lossy(),
    ])
}

fn cold_backup(data_dir: &Path, out: &Path) -> std::process::Output {
    backup(&[
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ])
}

fn verify_files(data_dir: &Path) -> std::process::Output {
    expereon("verify-files", &["--data-dir", &data_dir.to_string_lossy()])
}

/// Where a server on `data_dir` keeps the file (the local store's layout).
fn stored(data_dir: &Path, org: &Org, file_id: &str) -> PathBuf {
    data_dir
        .join("files")
        .join("files")
        .join(&org.id)
        .join(file_id)
}

/// Uploads `data`; returns the file's id.
async fn upload(org: &Org, name: &str, content_type: &str, data: &[u8]) -> String {
    let meta = upload_raw(org, name, Some(content_type), data).await.ok();
    assert_eq!(meta["sha256"], sha256_hex(data), "{meta}");
    s(&meta["id"])
}

/// What one read answered.
#[derive(PartialEq)]
struct Seen {
    status: u16,
    content_type: Option<String>,
    disposition: Option<String>,
    body: Vec<u8>,
}

/// Every read the organization can make, by path: its lists, each item of
/// them, each invoice's history and attachments, each stored file's bytes
/// and metadata, plus `more` paths (files it may not or no longer read).
async fn reads(org: &Org, more: &[String]) -> BTreeMap<String, Seen> {
    let mut paths: Vec<String> = Vec::new();
    let lists = [
        (
            "/api/v1/connections?limit=200",
            "/api/v1/connections/{}",
            "",
        ),
        (
            "/api/v1/invoices?limit=200",
            "/api/v1/invoices/{}",
            "/history",
        ),
        ("/api/v1/payments?limit=200", "/api/v1/payments/{}", ""),
        (
            "/api/v1/treasury/me/balances",
            "/api/v1/treasury/me/balances/{}",
            "/changes?limit=200",
        ),
        (
            "/api/v1/treasury/me/transactions?limit=200",
            "/api/v1/treasury/me/transactions/{}",
            "",
        ),
        (
            "/api/v1/treasury/me/withdrawals?limit=200",
            "/api/v1/treasury/me/withdrawals/{}",
            "",
        ),
        (
            "/api/v1/treasury/me/refunds?limit=200",
            "/api/v1/treasury/me/refunds/{}",
            "",
        ),
        (
            "/api/v1/storage?limit=200",
            "/api/v1/storage/{}",
            "/metadata",
        ),
        ("/api/v1/settings/api-keys", "/api/v1/settings/api-keys", ""),
    ];
    for (list, item, also) in lists {
        paths.push(list.to_owned());
        let page = org.get(list).await.ok();
        assert!(page["nextCursor"].is_null(), "{list}: one page holds all");
        for entry in page["data"].as_array().expect("data") {
            if !item.contains("{}") {
                continue;
            }
            let path = item.replace("{}", &s(&entry["id"]));
            if !also.is_empty() {
                paths.push(format!("{path}{also}"));
            }
            for file in entry["attachments"].as_array().into_iter().flatten() {
                paths.push(format!("/api/v1/storage/{}", s(file)));
                paths.push(format!("/api/v1/storage/{}/metadata", s(file)));
            }
            paths.push(path);
        }
    }
    paths.push("/api/v1/treasury/me/balances/summary".into());
    paths.extend(more.iter().cloned());
    let mut out = BTreeMap::new();
    for path in paths {
        let r = org.get(&path).await;
        assert!(r.status < 500, "{path}: {}", r.text());
        out.insert(
            path,
            Seen {
                status: r.status,
                content_type: r.header("content-type"),
                disposition: r.header("content-disposition"),
                body: r.bytes,
            },
        );
    }
    out
}

#[track_caller]
fn assert_same_reads(what: &str, got: &BTreeMap<String, Seen>, want: &BTreeMap<String, Seen>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the same resources"
    );
    for (path, w) in want {
        let g = &got[path];
        if g != w {
            let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(1500)]).into_owned();
            panic!(
                "{what}: GET {path} differs\n original: {} {:?} {:?} {} bytes: {}\n restored: {} {:?} {:?} {} bytes: {}",
                w.status,
                w.content_type,
                w.disposition,
                w.body.len(),
                show(&w.body),
                g.status,
                g.content_type,
                g.disposition,
                g.body.len(),
                show(&g.body)
            );
        }
    }
}

/// One gauge of `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> u64 {
    let text = app.anon.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

/// The start-up files check's findings once it is done: (checked, missing, corrupt).
async fn files_check(app: &TestApp) -> (u64, u64, u64) {
    let started = Instant::now();
    while gauge(app, "expereon_files_check_running").await == 1
        || app.anon.get("/healthz").await.ok()["files"]["check"] != "done"
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the files check never ended"
        );
        // Polling a background task's progress.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = app.anon.get("/healthz").await.ok();
    let found = (
        gauge(app, "expereon_files_checked").await,
        gauge(app, "expereon_files_missing").await,
        gauge(app, "expereon_files_corrupt").await,
    );
    assert_eq!(
        (
            health["files"]["checked"].as_u64(),
            health["files"]["missing"].as_u64(),
            health["files"]["corrupt"].as_u64()
        ),
        (Some(found.0), Some(found.1), Some(found.2)),
        "/healthz and /metrics agree: {health}"
    );
    assert_eq!(health["status"], "ok", "files never fail /healthz");
    found
}

#[tokio::test]
async fn servers_restored_from_hot_and_cold_backups_answer_every_read_and_download_as_the_original()
{
    let mut app = support::spawn_app().await;
    let acme = app.create_org("Acme Supplies").await;
    let globex = app.create_org("Globex").await;
    let initech = app.create_org("Initech").await;
    let acme_globex = app.connect(&acme, &globex).await;
    let initech_globex = app.connect(&initech, &globex).await;
    app.deposit(&globex, "USD", "1000.00").await;
    app.deposit(&globex, "EUR", "300.00").await;

    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend_from_slice(&noise(3 * 1024 * 1024 + 17, 11));
    let contract = upload(&acme, "contract.pdf", "application/pdf", &pdf).await;
    let photo = upload(&acme, "delivery photo.png", "image/png", &noise(200_000, 5)).await;
    let note = upload(&acme, "note.txt", "text/plain", b"deliver to gate 4\n").await;
    let empty = upload(&acme, "empty.bin", "application/octet-stream", b"").await;
    let receipt = upload(&globex, "receipt.pdf", "application/pdf", &noise(40_000, 3)).await;
    let spec = upload(&initech, "spec.txt", "text/plain", &noise(9_000, 8)).await;
    let scrapped = upload(
        &acme,
        "scrapped.bin",
        "application/octet-stream",
        &noise(5_000, 1),
    )
    .await;
    acme.delete(&format!("/api/v1/storage/{scrapped}"))
        .await
        .ok();

    // Settled, with two attachments; submitted with one; a draft with one.
    let mut body = support::simple_invoice(&acme_globex, "120.00");
    body["attachments"] = json!([contract, photo]);
    body["submit"] = json!(true);
    let settled = acme.create_invoice(body).await;
    globex
        .act(&s(&settled["id"]), "approve", json!({}))
        .await
        .ok();
    globex
        .act(&s(&settled["id"]), "settle", json!({}))
        .await
        .ok();
    let mut body = support::simple_invoice(&acme_globex, "40.00");
    body["attachments"] = json!([note]);
    body["submit"] = json!(true);
    acme.create_invoice(body).await;
    let mut body = support::simple_invoice(&initech_globex, "75.50");
    body["attachments"] = json!([spec]);
    initech.create_invoice(body).await;
    let mut body = support::simple_invoice(&initech_globex, "10.00");
    body["currency"] = json!("EUR");
    body["submit"] = json!(true);
    let eur = initech.create_invoice(body).await;
    globex.act(&s(&eur["id"]), "approve", json!({})).await.ok();
    globex
        .post(
            "/api/v1/treasury/me/withdrawals",
            json!({ "currency": "USD", "amount": "25.00",
                    "destination": { "iban": "DE89370400440532013000", "holder": "Globex" } }),
        )
        .await
        .ok();

    let orgs = [&acme, &globex, &initech];
    // Files each may not read (another's, unattached) or no longer (deleted).
    let more: Vec<String> = [&scrapped, &receipt, &spec, &empty]
        .iter()
        .map(|id| format!("/api/v1/storage/{id}"))
        .collect();
    let mut original = Vec::new();
    for org in orgs {
        original.push(reads(org, &more).await);
    }
    let downloads = |seen: &BTreeMap<String, Seen>| {
        seen.iter()
            .filter(|(p, v)| {
                v.status == 200 && p.starts_with("/api/v1/storage/") && !p.ends_with("/metadata")
            })
            .count()
    };
    assert_eq!(downloads(&original[0]), 4, "acme reads its four files");
    assert_eq!(
        downloads(&original[1]),
        4,
        "globex: its own and three attached"
    );
    assert_eq!(
        original[0][&format!("/api/v1/storage/{contract}")].body,
        pdf,
        "the original serves the upload"
    );

    let backups = tempfile::tempdir().unwrap();
    let hot = backups.path().join("hot");
    let out = hot_backup(&app, &hot);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("copied 6 of 6 files"),
        "{}",
        output_text(&out)
    );
    app.kill_now();
    let cold = backups.path().join("cold");
    let out = cold_backup(&app.data_dir().join("data"), &cold);
    assert!(out.status.success(), "{}", output_text(&out));

    let live = [
        (&acme, &contract),
        (&acme, &photo),
        (&acme, &note),
        (&acme, &empty),
        (&globex, &receipt),
        (&initech, &spec),
    ];
    for dir in [&hot, &cold] {
        assert_eq!(
            files_under(&dir.join("files")).len(),
            live.len(),
            "every live file, nothing else (no deleted one, no partial copy)"
        );
        for (org, id) in live {
            let copied = std::fs::read(stored(dir, org, id)).expect("copied in the store's layout");
            let original = std::fs::read(stored(&app.data_dir().join("data"), org, id)).unwrap();
            assert!(copied == original, "{id}: the same bytes");
        }
        assert!(!stored(dir, &acme, &scrapped).exists(), "deleted: left out");
        let out = verify_files(dir);
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(
            output_text(&out).contains("checked 6 files"),
            "{}",
            output_text(&out)
        );
    }

    // A restore needs the master key, kept apart from the backup (which
    // names it): without it, or with another, the server refuses to start.
    let key = app.master_key();
    for (name, dir) in [("hot", &hot), ("cold", &cold)] {
        let recorded = std::fs::read_to_string(dir.join("master.key.id")).expect("the key's id");
        assert_eq!(recorded.trim().len(), 16, "{name}");
        assert!(
            !dir.join("master.key").exists(),
            "{name}: the key itself is not in a backup"
        );
        for wrong in [None, Some("07".repeat(32))] {
            let mut serve = Command::new(env!("CARGO_BIN_EXE_expereon-under-test"));
            serve
                .arg("serve")
                .env("EXPEREON_DATA_DIR", dir)
                .env("EXPEREON_LISTEN", "127.0.0.1:0")
                .env_remove("EXPEREON_ADMIN_TOKEN")
                .env_remove("EXPEREON_MASTER_KEY");
            if let Some(k) = &wrong {
                serve.env("EXPEREON_MASTER_KEY", k);
            }
            let out = serve.output().expect("running the server");
            assert!(!out.status.success(), "{name}: started with key {wrong:?}");
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains(recorded.trim()), "{name}: {said}");
        }
        assert!(
            !dir.join("master.key").exists(),
            "{name}: no new key for sealed data"
        );
    }

    for (name, dir) in [("hot", &hot), ("cold", &cold)] {
        let restored = support::spawn_app_on(dir, &[("EXPEREON_MASTER_KEY", &key)]).await;
        for (org, want) in orgs.iter().zip(&original) {
            let got = reads(&org.on(&restored), &more).await;
            assert_same_reads(&format!("{name} backup, {}", org.id), &got, want);
        }
        assert_eq!(files_check(&restored).await, (6, 0, 0), "{name}");
    }
}

#[tokio::test]
async fn missing_and_corrupt_files_fail_the_backup_and_are_reported_by_the_restored_server() {
    let mut app = support::spawn_app().await;
    let org = app.create_org("Files Ltd").await;
    let gone = upload(&org, "gone.pdf", "application/pdf", &noise(70_000, 1)).await;
    let bent = upload(&org, "bent.pdf", "application/pdf", &noise(50_000, 2)).await;
    let kept = upload(&org, "kept.txt", "text/plain", b"still here\n").await;

    // The operator's route: any organization's file, its size, where it is kept.
    let head = app
        .admin
        .send(
            Method::HEAD,
            &format!("/api/v1/admin/files/{kept}"),
            &[],
            None,
        )
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("11"));
    assert_eq!(head.header("x-expereon-storage").as_deref(), Some("local"));
    let got = app.admin.get(&format!("/api/v1/admin/files/{kept}")).await;
    assert_eq!(
        (got.status, got.bytes.as_slice()),
        (200, &b"still here\n"[..])
    );
    org.get(&format!("/api/v1/admin/files/{kept}"))
        .await
        .err(401, "UNAUTHORIZED");

    // A restored server checks every file at start, and says which fail.
    let backups = tempfile::tempdir().unwrap();
    let good = backups.path().join("good");
    let out = hot_backup(&app, &good);
    assert!(out.status.success(), "{}", output_text(&out));
    std::fs::remove_file(stored(&good, &org, &gone)).unwrap();
    let bent_copy = stored(&good, &org, &bent);
    let mut bytes = std::fs::read(&bent_copy).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&bent_copy, &bytes).unwrap();

    let out = verify_files(&good);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("MISSING: files/{}/{gone}", org.id)),
        "{text}"
    );
    assert!(
        text.contains(&format!("CORRUPT: files/{}/{bent}", org.id)),
        "{text}"
    );
    assert!(!text.contains(&kept.to_string()), "{text}");

    let key = app.master_key();
    let restored = support::spawn_app_on(&good, &[("EXPEREON_MASTER_KEY", &key)]).await;
    assert_eq!(files_check(&restored).await, (3, 1, 1));
    let log = restored.log();
    for id in [&gone, &bent] {
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains(id.as_str())
                && l.contains("does not match its FileStored event")),
            "a warning names {id}:\n{log}"
        );
    }
    let download = org
        .on(&restored)
        .get(&format!("/api/v1/storage/{kept}"))
        .await;
    assert_eq!(download.bytes, b"still here\n");
    drop(restored);

    // The check can be turned off (big stores).
    let quiet = support::spawn_app_with(&[
        ("EXPEREON_DATA_DIR", &good.to_string_lossy()),
        ("EXPEREON_VERIFY_FILES_AT_START", "false"),
        ("EXPEREON_MASTER_KEY", &key),
    ])
    .await;
    let health = quiet.anon.get("/healthz").await.ok();
    assert_eq!(health["files"]["check"], "off", "{health}");
    drop(quiet);

    // A backup of a store that lost a file copies everything else, then
    // fails naming it: hot, and cold.
    std::fs::remove_file(stored(&app.data_dir().join("data"), &org, &gone)).unwrap();
    let hot = backups.path().join("hot");
    let out = hot_backup(&app, &hot);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("MISSING: files/{}/{gone}", org.id)),
        "{text}"
    );
    assert!(text.contains("backup incomplete: 1 of 3 files"), "{text}");
    app.kill_now();
    let cold = backups.path().join("cold");
    let out = cold_backup(&app.data_dir().join("data"), &cold);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("MISSING: files/{}/{gone}", org.id)),
        "{text}"
    );
    for dir in [&hot, &cold] {
        assert_eq!(copy_head(dir).0, copy_head(&good).0, "the whole log");
        assert!(stored(dir, &org, &bent).exists() && stored(dir, &org, &kept).exists());
        assert!(!stored(dir, &org, &gone).exists());
    }
}
