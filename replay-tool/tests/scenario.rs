//! Every subcommand on the scripted scenario's log, checked against figures
//! this test works out itself: balances by hand arithmetic, event counts by
//! counting the events the script recorded, hashes by chaining the encoded
//! events here.

mod support;

use ledger_core::codec::encode_event;
use ledger_core::events::{Event, Hold, RecordedEvent};
use ledger_core::log::{chain_hash, GENESIS_HASH};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use support::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    s: Scenario,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let s = scenario();
    s.script.write(&dir);
    Fixture { _tmp: tmp, dir, s }
}

fn events(f: &Fixture) -> &[RecordedEvent] {
    &f.s.script.events
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// (total, reserved, collateral, available, frozen) of `org`'s `currency` balance.
fn balance_of(
    report: &Value,
    org: &ledger_core::events::Actor,
    currency: &str,
) -> Option<(String, String, String, String, bool)> {
    let id = org_id(org).to_string();
    report["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find_map(|b| {
            (b["organizationId"] == id.as_str() && b["currency"] == currency).then(|| {
                let s = |k: &str| b[k].as_str().expect("string").to_string();
                (
                    s("total"),
                    s("reserved"),
                    s("collateral"),
                    s("available"),
                    b["frozen"].as_bool().expect("bool"),
                )
            })
        })
}

fn figures(
    t: &str,
    r: &str,
    c: &str,
    a: &str,
    frozen: bool,
) -> Option<(String, String, String, String, bool)> {
    Some((t.into(), r.into(), c.into(), a.into(), frozen))
}

#[test]
fn verify_proves_the_scenario_and_states_the_money() {
    let f = fixture();
    let out = ok(&f.dir, &["verify"]);
    let n = events(&f).len();
    assert!(out.contains("verify: OK"), "{out}");
    assert!(out.contains(&format!("events: {n}\n")), "{out}");
    assert!(out.contains("organizations: 3\n"), "{out}");
    // Every chain hash, computed here.
    let mut hash = GENESIS_HASH;
    for e in events(&f) {
        hash = chain_hash(&hash, &encode_event(e).expect("encode"));
    }
    assert!(
        out.contains(&format!("head hash: {}\n", hex::encode(hash))),
        "{out}"
    );
    // Deposits 1000.00 EUR, a 20.00 withdrawal; Beta 790.00 + Acme 190.00 = 980.00.
    assert!(
        out.contains("money EUR: deposited 1000.00 - withdrawn 20.00 = held in balances 980.00"),
        "{out}"
    );
    assert!(
        out.contains("money USD: deposited 500.00 - withdrawn 0.00 = held in balances 500.00"),
        "{out}"
    );
    let streams: BTreeSet<_> = events(&f).iter().map(|e| e.stream()).collect();
    assert!(
        out.contains(&format!("streams: {}\n", streams.len())),
        "{out}"
    );
}

#[test]
fn balances_as_of_match_hand_arithmetic() {
    let f = fixture();
    let (acme, beta, gamma) = (f.s.acme, f.s.beta, f.s.gamma);

    let end = json(&ok(
        &f.dir,
        &["balances", "--as-of", "2024-03-05T00:00:00Z", "--json"],
    ));
    assert_eq!(end["lastSeq"], events(&f).len() as u64);
    assert_eq!(
        balance_of(&end, &beta, "EUR"),
        figures("790.00", "300.00", "0.00", "490.00", false)
    );
    assert_eq!(
        balance_of(&end, &acme, "EUR"),
        figures("190.00", "0.00", "0.00", "190.00", false)
    );
    assert_eq!(
        balance_of(&end, &gamma, "USD"),
        figures("500.00", "0.00", "100.00", "400.00", true)
    );
    assert_eq!(end["balances"].as_array().map(Vec::len), Some(3));

    // End of day 2 (a date is the end of that day): invoice 1 settled (Beta
    // −220, Acme +220), invoice 2 approved at 40.00 and still reserved.
    let day2 = json(&ok(
        &f.dir,
        &["balances", "--as-of", "2024-03-02", "--json"],
    ));
    assert_eq!(day2["asOf"], "2024-03-02T23:59:59.999999Z");
    assert_eq!(
        balance_of(&day2, &beta, "EUR"),
        figures("780.00", "40.00", "0.00", "740.00", false)
    );
    assert_eq!(
        balance_of(&day2, &acme, "EUR"),
        figures("220.00", "0.00", "0.00", "220.00", false)
    );
    assert_eq!(
        balance_of(&day2, &gamma, "USD"),
        figures("500.00", "0.00", "0.00", "500.00", false)
    );

    // Day 2 at 10:30: invoice 1 approved (220.00 reserved), not settled;
    // Acme has no balance yet.
    let mid = json(&ok(
        &f.dir,
        &["balances", "--as-of", "2024-03-02T10:30:00Z", "--json"],
    ));
    assert_eq!(
        balance_of(&mid, &beta, "EUR"),
        figures("1000.00", "220.00", "0.00", "780.00", false)
    );
    assert_eq!(balance_of(&mid, &acme, "EUR"), None);

    // Exactly at an event's time, the event counts (at ≤ TIME).
    let at_settle = json(&ok(
        &f.dir,
        &["balances", "--as-of", "2024-03-02T11:00:00Z", "--json"],
    ));
    assert_eq!(
        balance_of(&at_settle, &acme, "EUR"),
        figures("220.00", "0.00", "0.00", "220.00", false)
    );

    // Before anything happened: no balances.
    let before = json(&ok(
        &f.dir,
        &["balances", "--as-of", "2024-02-01", "--json"],
    ));
    assert_eq!(before["balances"].as_array().map(Vec::len), Some(0));

    // --org keeps one organization's balances.
    let only = json(&ok(
        &f.dir,
        &[
            "balances",
            "--as-of",
            "2024-03-05",
            "--org",
            &org_id(&gamma).to_string(),
            "--json",
        ],
    ));
    assert_eq!(only["balances"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        balance_of(&only, &gamma, "USD"),
        figures("500.00", "0.00", "100.00", "400.00", true)
    );

    // The table says the same.
    let table = ok(&f.dir, &["balances", "--as-of", "2024-03-05"]);
    let beta_row = table
        .lines()
        .find(|l| l.starts_with(&org_id(&beta).to_string()))
        .expect("Beta's row");
    for figure in ["Beta AG", "EUR", "790.00", "300.00", "490.00"] {
        assert!(beta_row.contains(figure), "{beta_row}");
    }
}

#[test]
fn stats_count_events_by_type_and_day() {
    let f = fixture();
    let stats = json(&ok(&f.dir, &["stats", "--json"]));
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    for e in events(&f) {
        *by_type.entry(e.event.type_name().to_string()).or_default() += 1;
        *by_day.entry(e.at.date().to_string()).or_default() += 1;
    }
    assert_eq!(stats["events"], events(&f).len() as u64);
    assert_eq!(stats["organizations"], 3);
    let got: BTreeMap<String, u64> =
        serde_json::from_value(stats["eventsByType"].clone()).expect("map");
    assert_eq!(got, by_type);
    let got: BTreeMap<String, u64> =
        serde_json::from_value(stats["eventsByDay"].clone()).expect("map");
    assert_eq!(got, by_day);
    assert_eq!(got.len(), 4, "four days of business");
    // A few by hand: three invoices created and approved, two deposits, one settlement.
    assert_eq!(by_type["InvoiceCreated"], 3);
    assert_eq!(by_type["InvoiceApproved"], 3);
    assert_eq!(by_type["FundsDeposited"], 2);
    assert_eq!(by_type["SettlementDebited"], 1);
    let streams: BTreeSet<_> = events(&f).iter().map(|e| e.stream()).collect();
    assert_eq!(stats["streams"], streams.len() as u64);
    // Organization, API key ×4, connection, invoice ×3, payment, balance ×3, withdrawal, refund.
    let kinds = &stats["streamsByKind"];
    assert_eq!(kinds["Invoice"], 3);
    assert_eq!(kinds["Balance"], 3);
    assert_eq!(kinds["ApiKey"], 4);
    assert_eq!(stats["firstAt"], "2024-03-01T09:00:00.000000Z");
    assert_eq!(stats["lastAt"], "2024-03-04T12:00:00.000000Z");

    let text = ok(&f.dir, &["stats"]);
    assert!(
        text.contains(&format!("events: {}\n", events(&f).len())),
        "{text}"
    );
    assert!(text.contains("2024-03-03"), "{text}");
}

fn seqs_of(jsonl: &str) -> Vec<u64> {
    jsonl
        .lines()
        .map(|l| json(l)["seq"].as_u64().expect("seq"))
        .collect()
}

#[test]
fn export_streams_every_event_with_its_hash() {
    let f = fixture();
    let all = ok(&f.dir, &["export", "--format", "jsonl"]);
    let n = events(&f).len() as u64;
    assert_eq!(seqs_of(&all), (1..=n).collect::<Vec<_>>());
    let mut hash = GENESIS_HASH;
    for (line, e) in all.lines().zip(events(&f)) {
        hash = chain_hash(&hash, &encode_event(e).expect("encode"));
        let v = json(line);
        assert_eq!(v["hash"], hex::encode(hash));
        assert_eq!(v["type"], e.event.type_name());
        assert_eq!(v["version"], e.version);
        assert_eq!(v["at"], e.at.rfc3339());
        assert_eq!(v["stream"]["id"], e.stream().id.to_string());
    }

    // Ranges.
    let range = ok(&f.dir, &["export", "--from-seq", "5", "--to-seq", "9"]);
    assert_eq!(seqs_of(&range), vec![5, 6, 7, 8, 9]);
    let tail = ok(&f.dir, &["export", "--from-seq", &(n - 1).to_string()]);
    assert_eq!(seqs_of(&tail), vec![n - 1, n]);

    // Type patterns: a prefix, an exact name, several.
    let invoices = ok(&f.dir, &["export", "--type", "Invoice*"]);
    let expected: Vec<u64> = events(&f)
        .iter()
        .filter(|e| e.event.type_name().starts_with("Invoice"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs_of(&invoices), expected);
    let deposits = ok(&f.dir, &["export", "--type", "FundsDeposited"]);
    assert_eq!(seqs_of(&deposits).len(), 2);
    let both = ok(&f.dir, &["export", "--type", "FundsDeposited,Refund*"]);
    let expected: Vec<u64> = events(&f)
        .iter()
        .filter(|e| {
            e.event.type_name() == "FundsDeposited" || e.event.type_name().starts_with("Refund")
        })
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs_of(&both), expected);

    // --org: Gamma's own organization, key, balance and that balance's events.
    let gamma = org_id(&f.s.gamma);
    let gamma_balance =
        f.s.script
            .ledger
            .balance_of(gamma, cur("USD"))
            .map(|b| b.id.as_uuid())
            .expect("balance");
    let expected: Vec<u64> = events(&f)
        .iter()
        .filter(|e| match &e.event {
            Event::OrganizationCreated { id, .. } => *id == gamma,
            Event::ApiKeyCreated {
                organization_id, ..
            } => *organization_id == gamma,
            _ => e.stream().id == gamma_balance,
        })
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        expected.len(),
        6,
        "created, key, balance opened, deposit, collateral, freeze"
    );
    let only = ok(&f.dir, &["export", "--org", &gamma.to_string()]);
    assert_eq!(seqs_of(&only), expected);
    // --org with a range and a type.
    let only = ok(
        &f.dir,
        &[
            "export",
            "--org",
            &gamma.to_string(),
            "--type",
            "Balance*",
            "--from-seq",
            "3",
        ],
    );
    let types: Vec<String> = only
        .lines()
        .map(|l| json(l)["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(types, vec!["BalanceOpened", "BalanceFrozen"]);

    // CSV: a header and one record per event.
    let csv_text = ok(&f.dir, &["export", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(&headers[0], "seq");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len() as u64, n);
    let type_col = headers
        .iter()
        .position(|h| h == "type")
        .expect("type column");
    let data_col = headers
        .iter()
        .position(|h| h == "data")
        .expect("data column");
    for (r, e) in records.iter().zip(events(&f)) {
        assert_eq!(&r[type_col], e.event.type_name());
        json(&r[data_col]);
    }
}

#[test]
fn invoice_history_reads_like_the_story() {
    let f = fixture();
    let out = ok(&f.dir, &["invoice", &f.s.inv2.to_string()]);
    let lines: Vec<&str> = out.lines().skip(1).collect();
    // The invoice's own events and its reservation's, in order.
    let expected: Vec<u64> = events(&f)
        .iter()
        .filter(|e| {
            e.stream().id == f.s.inv2.as_uuid()
                || matches!(&e.event,
                    Event::FundsReserved { hold: Hold::Invoice(i), .. }
                    | Event::ReservationReleased { hold: Hold::Invoice(i), .. } if *i == f.s.inv2)
        })
        .map(|e| e.seq)
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq first")
        })
        .collect();
    assert_eq!(seqs, expected, "{out}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{out}"))
            .to_string()
    };
    assert!(find("created INV-").ends_with("-> DRAFT"));
    assert!(find("submitted").ends_with("-> SUBMITTED"));
    let approved = find("approved with adjustment to 40.00 EUR (short delivery)");
    assert!(
        approved.ends_with("-> APPROVED_WITH_ADJUSTMENT"),
        "{approved}"
    );
    assert!(approved.contains("Beta AG"), "{approved}");
    assert!(
        find("40.00 EUR reserved on Beta AG's balance").ends_with("-> APPROVED_WITH_ADJUSTMENT")
    );
    assert!(find("cancellation requested by the buyer: not needed")
        .ends_with("-> CANCELLATION_REQUESTED"));
    assert!(find("cancelled by the").ends_with("-> CANCELLED"));
    assert!(find("reservation of 40.00 EUR released").ends_with("-> CANCELLED"));
    assert!(find("2024-03-03T10:00:00").contains("Acme GmbH"));

    // The settled invoice shows its money moving.
    let out = ok(&f.dir, &["invoice", &f.s.inv1.to_string()]);
    for needle in [
        "220.00 EUR debited from Beta AG",
        "220.00 EUR credited to Acme GmbH",
        "settled by payment",
        "refund: 10.00 EUR debited from Acme GmbH",
        "refund: 10.00 EUR credited to Beta AG",
    ] {
        assert!(out.contains(needle), "{needle}:\n{out}");
    }
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.ends_with("-> SETTLED")),
        "{out}"
    );

    // An unknown invoice: exit 1, said plainly.
    let run = tool(&[
        "--data-dir",
        f.dir.to_str().expect("path"),
        "invoice",
        &uuid::Uuid::now_v7().to_string(),
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("not found"), "{}", run.stdout);
}

#[test]
fn rebuild_writes_every_projection_and_finds_no_difference() {
    let f = fixture();
    let out_dir = f.dir.parent().expect("parent").join("rebuilt");
    let out = ok(
        &f.dir,
        &["rebuild", "--out", out_dir.to_str().expect("path")],
    );
    assert!(out.contains("differences: none"), "{out}");
    let summary = json(&std::fs::read_to_string(out_dir.join("summary.json")).expect("summary"));
    assert_eq!(summary["lastSeq"], events(&f).len() as u64);
    assert_eq!(summary["differences"].as_array().map(Vec::len), Some(0));
    let counts = &summary["counts"];
    assert_eq!(counts["organizations"], 3);
    assert_eq!(counts["invoices"], 3);
    assert_eq!(counts["payments"], 1);
    assert_eq!(counts["balances"], 3);
    assert_eq!(counts["withdrawals"], 1);
    assert_eq!(counts["refunds"], 1);
    // 2 deposits, settlement out + in, 1 withdrawal, refund out + in.
    assert_eq!(counts["transactions"], 7);
    assert_eq!(summary["supply"]["EUR"]["balancesTotal"], "980.00");
    assert_eq!(summary["supply"]["USD"]["deposited"], "500.00");

    let invoices = std::fs::read_to_string(out_dir.join("invoices.jsonl")).expect("invoices");
    let statuses: BTreeMap<String, String> = invoices
        .lines()
        .map(|l| {
            let v = json(l);
            (
                v["id"].as_str().unwrap_or("").to_string(),
                v["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(statuses[&f.s.inv1.to_string()], "SETTLED");
    assert_eq!(statuses[&f.s.inv2.to_string()], "CANCELLED");
    assert_eq!(statuses[&f.s.inv3.to_string()], "APPROVED");
    let balances = std::fs::read_to_string(out_dir.join("balances.jsonl")).expect("balances");
    let beta = org_id(&f.s.beta).to_string();
    let beta_eur = balances
        .lines()
        .map(json)
        .find(|b| b["organizationId"] == beta.as_str())
        .expect("Beta's balance");
    assert_eq!(beta_eur["total"], "790.00");
    assert_eq!(beta_eur["available"], "490.00");

    // The output directory must be fresh.
    let again = tool(&[
        "--data-dir",
        f.dir.to_str().expect("path"),
        "rebuild",
        "--out",
        out_dir.to_str().expect("path"),
    ]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
}

/// The rebuilt SQL read models, checked here against this test's own fold of
/// the script's events (not the tool's comparison): every aggregate's state,
/// balances, changes, transactions; the position and its chain hash; the
/// schema as the migrations make it; and the server's own opening keeps it.
#[test]
fn rebuild_writes_the_sql_read_models_and_they_equal_the_fold() {
    use projections::sql::{self, rows};
    let f = fixture();
    let out_dir = f.dir.parent().expect("parent").join("rebuilt");
    let out = ok(
        &f.dir,
        &["rebuild", "--out", out_dir.to_str().expect("path")],
    );
    assert!(out.contains("differences: none"), "{out}");
    assert!(out.contains("compared: SQL read models"), "{out}");
    assert!(out.contains("events/s"), "{out}");
    let path = out_dir.join(sql::FILE);
    for leftover in [
        "read-models.sqlite.partial",
        "read-models.sqlite-wal",
        "read-models.sqlite-shm",
    ] {
        assert!(!out_dir.join(leftover).exists(), "{leftover} left behind");
    }
    let n = events(&f).len() as u64;
    let summary = json(&std::fs::read_to_string(out_dir.join("summary.json")).expect("summary"));
    assert_eq!(summary["sql"]["events"], n);
    assert_eq!(summary["sql"]["lastSeq"], n);
    assert!(summary["sql"]["eventsPerSecond"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(
        summary["sql"]["bytes"],
        std::fs::metadata(&path).expect("file").len()
    );

    let mut m = projections::ReadModel::new();
    let mut head = GENESIS_HASH;
    for e in events(&f) {
        m.apply(e).expect("apply");
        head = chain_hash(&head, &encode_event(e).expect("encode"));
    }
    let conn = sql::open_reader(&path).expect("open");
    assert_eq!(sql::position(&conn).expect("position"), (n, head));
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode.to_lowercase(), "wal");
    // No outbox set up: a server adopting the file sends nothing for the past.
    let outbox: i64 = conn
        .query_row("SELECT COUNT(*) FROM webhook_outbox_state", [], |r| {
            r.get(0)
        })
        .expect("outbox state");
    assert_eq!(outbox, 0);
    let l = &m.ledger;
    assert_eq!(m.invoices.len(), 3);
    for inv in m.invoices.values() {
        assert_row(&conn, "invoices", inv.id, inv);
    }
    for p in l.payments.values() {
        assert_row(&conn, "payments", p.id, p);
    }
    for w in l.withdrawals.values() {
        assert_row(&conn, "withdrawals", w.id, w);
    }
    for r in l.refunds.values() {
        assert_row(&conn, "refunds", r.id, r);
    }
    for k in l.api_keys.values() {
        let mut row: ledger_core::domain::api_key::ApiKey =
            rows::load(&conn, "api_keys", &k.id.to_string())
                .expect("load")
                .expect("row");
        assert_eq!(
            row.secret_hash, [0; 32],
            "no secret hash in the read models"
        );
        row.secret_hash = k.secret_hash;
        assert_eq!(&row, k);
    }
    for b in l.balances.values() {
        let row = rows::load_balance(&conn, &b.id.to_string())
            .expect("load")
            .expect("row");
        assert_eq!(
            projections::views::balance(&row),
            projections::views::balance(b)
        );
    }
    for t in m.transactions.values() {
        let row = rows::load_transaction(&conn, t.id)
            .expect("load")
            .expect("row");
        assert_eq!(&row, t);
    }
    let changes: i64 = conn
        .query_row("SELECT COUNT(*) FROM balance_changes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        changes as usize,
        m.balance_changes.values().map(Vec::len).sum::<usize>()
    );
    // The schema (tables and the indexes dropped for the load and made
    // again) is exactly what the migrations make.
    let schema = |c: &rusqlite::Connection| -> Vec<(String, String, Option<String>)> {
        c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("schema")
    };
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = sql::open_writer(&fresh_dir.path().join(sql::FILE)).expect("fresh");
    assert_eq!(schema(&conn), schema(&fresh));
    drop(conn);

    // The server's own opening against its log keeps the file (a refused
    // one would be emptied and folded again from seq 0).
    wait_unlocked(&f.dir);
    let log = ledger_core::log::sled::SledLog::open(f.dir.join("log")).expect("log");
    let conn = sql::open_checked(&path, &log).expect("open_checked");
    assert_eq!(sql::position(&conn).expect("position"), (n, head));
}

/// `--sql-only` writes the same tables as the full rebuild, into a directory
/// that may hold other files, and never over an existing database.
#[test]
fn rebuild_sql_only_writes_just_the_database_and_never_overwrites_one() {
    let f = fixture();
    let parent = f.dir.parent().expect("parent");
    let full = parent.join("full");
    ok(&f.dir, &["rebuild", "--out", full.to_str().expect("path")]);
    let only = parent.join("only");
    std::fs::create_dir_all(&only).expect("mkdir");
    std::fs::write(only.join("notes.txt"), "kept").expect("write");
    let out = ok(
        &f.dir,
        &[
            "rebuild",
            "--sql-only",
            "--sql-batch",
            "5",
            "--out",
            only.to_str().expect("path"),
        ],
    );
    assert!(
        out.contains(&format!("sql: {} events", events(&f).len())),
        "{out}"
    );
    assert!(out.contains("events/s"), "{out}");
    let mut names: Vec<String> = std::fs::read_dir(&only)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt", "read-models.sqlite"]);
    let path = only.join(projections::sql::FILE);
    assert_eq!(
        sql_dump(&path),
        sql_dump(&full.join(projections::sql::FILE))
    );

    let before = std::fs::read(&path).expect("read");
    let again = tool(&[
        "--data-dir",
        f.dir.to_str().expect("path"),
        "rebuild",
        "--sql-only",
        "--out",
        only.to_str().expect("path"),
    ]);
    assert_eq!(again.code, 2, "{}", again.stdout);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

#[test]
fn a_backup_is_the_same_history() {
    let f = fixture();
    let backup = f.dir.parent().expect("parent").join("backup");
    let out = ok(&f.dir, &["backup", "--out", backup.to_str().expect("path")]);
    assert!(
        out.contains(&format!("copied {} events", events(&f).len())),
        "{out}"
    );
    assert!(backup.join("BACKUP.json").exists());
    assert_eq!(ok(&backup, &["verify"]), ok(&f.dir, &["verify"]));
    assert_eq!(ok(&backup, &["export"]), ok(&f.dir, &["export"]));
    // The copy's stored bytes are the original's, event for event.
    let original = sled::open(f.dir.join("log")).expect("open");
    let copy = sled::open(backup.join("log")).expect("open");
    for seq in 1..=events(&f).len() as u64 {
        assert_eq!(
            ledger_core::log::sled::raw::stored(&original, seq).expect("get"),
            ledger_core::log::sled::raw::stored(&copy, seq).expect("get")
        );
    }
}

#[test]
fn generate_writes_exactly_n_valid_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("gen");
    let run = tool(&[
        "generate",
        "--out",
        dir.to_str().expect("path"),
        "--events",
        "5000",
        "--pairs",
        "3",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = ok(&dir, &["verify"]);
    assert!(
        out.contains("verify: OK") && out.contains("events: 5000\n"),
        "{out}"
    );
    let stats = json(&ok(&dir, &["stats", "--json"]));
    let by_type = &stats["eventsByType"];
    for kind in [
        "InvoiceSettled",
        "InvoiceDisputed",
        "InvoiceCancelled",
        "RefundApproved",
        "WithdrawalApproved",
        "InvoiceArchived",
    ] {
        assert!(
            by_type[kind].as_u64().unwrap_or(0) > 0,
            "no {kind} in {by_type}"
        );
    }
    assert_eq!(stats["organizations"], 6);
    // The same seed gives the same log.
    let dir2 = tmp.path().join("gen2");
    let run = tool(&[
        "generate",
        "--out",
        dir2.to_str().expect("path"),
        "--events",
        "5000",
        "--pairs",
        "3",
    ]);
    assert_eq!(run.code, 0);
    assert_eq!(ok(&dir2, &["verify"]), out);
}

#[test]
fn usage_errors_exit_2() {
    let run = tool(&["verify"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tool(&["--data-dir", tmp.path().to_str().expect("path"), "verify"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no event log"), "{}", run.stderr);
    let run = tool(&["--url", "http://127.0.0.1:9", "verify"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("admin-token"), "{}", run.stderr);
}

/// The row `id` of `table` decodes to exactly `expected`.
fn assert_row<T>(conn: &rusqlite::Connection, table: &'static str, id: impl ToString, expected: &T)
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let id = id.to_string();
    let row: T = projections::sql::rows::load(conn, table, &id)
        .expect("load")
        .unwrap_or_else(|| panic!("no row {table}/{id}"));
    assert_eq!(&row, expected, "{table}/{id}");
}
