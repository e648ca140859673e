//! Shared by the replay-tool tests: running the binary, a scripted ledger
//! built straight through the domain (`Ledger::execute`, every event applied
//! and checked) and written with `SledLog::append`, and raw sled tampering.
#![allow(dead_code)]

use chrono::NaiveDate;
use ledger_core::domain::command::{InvoiceAction, LineItemInput, NewInvoice};
use ledger_core::domain::{Command, Ctx, Ledger, Outcome};
use ledger_core::events::{Actor, Destination, Party, Permission, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::log::sled::{raw, SledLog};
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use std::path::Path;
use std::process::Command as Process;
use uuid::Uuid;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `replay-tool` with `args`. A log still locked for a moment by a
/// handle this test process just closed (sled finishes closing on its own
/// threads, and a child forked meanwhile by another test thread holds a
/// copy of the descriptor until it execs) is waited for, not reported.
pub fn tool(args: &[&str]) -> Run {
    for _ in 0..100 {
        let output = Process::new(env!("CARGO_BIN_EXE_replay-tool"))
            .args(args)
            .env_remove("EXPEREON_ADMIN_TOKEN")
            .output()
            .expect("run replay-tool");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if !(run.code == 2 && run.stderr.contains("could not acquire lock")) {
            return run;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the log stayed locked: {args:?}");
}

/// Waits until nothing holds the sled lock on `<data_dir>/log/db`.
pub fn wait_unlocked(data_dir: &Path) {
    let path = data_dir.join("log").join("db");
    for _ in 0..200 {
        let file = std::fs::File::open(&path).expect("open db file");
        if file.try_lock().is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{} stayed locked", path.display());
}

/// Runs `replay-tool --data-dir DIR args…`, expecting success.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["--data-dir", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let run = tool(&all);
    assert_eq!(
        run.code, 0,
        "replay-tool {all:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    run.stdout
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}

pub fn cur(code: &str) -> Currency {
    Currency::parse(code).expect("currency")
}

pub fn amount(code: &str, s: &str) -> Amount {
    Amount::parse(cur(code), s).expect("amount")
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("time")
}

fn line(description: &str, quantity: &str, unit_price: &str, tax: &str) -> LineItemInput {
    LineItemInput {
        description: description.into(),
        quantity: Quantity::parse(quantity).expect("quantity"),
        unit_price: unit_price.into(),
        tax_rate: TaxRate::parse(tax).expect("tax"),
    }
}

/// Drives the domain directly, recording every event with the time it is given.
pub struct Script {
    pub ledger: Ledger,
    pub events: Vec<RecordedEvent>,
    pub now: Timestamp,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    pub fn new() -> Self {
        Script {
            ledger: Ledger::new(),
            events: Vec::new(),
            now: ts("2024-03-01T00:00:00Z"),
        }
    }

    pub fn at(&mut self, time: &str) -> &mut Self {
        self.now = ts(time);
        self
    }

    pub fn exec(&mut self, actor: Actor, command: Command) -> Outcome {
        let mut ids = Uuid::now_v7;
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut ids,
        };
        match self
            .ledger
            .execute(&actor, None, &command, &mut ctx, &mut self.events)
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => panic!("refused: {e} ({command:?})"),
            Err(v) => panic!("invariant: {v}"),
        }
    }

    /// Writes every event recorded so far into `<dir>/log`, in two appends.
    pub fn write(&self, dir: &Path) {
        let log = SledLog::open(dir.join("log")).expect("open log");
        let half = self.events.len() / 2;
        log.append(&self.events[..half], &[]).expect("append");
        log.append(&self.events[half..], &[]).expect("append");
        assert_eq!(log.head().last_seq, self.events.len() as u64);
    }
}

pub fn org(outcome: Outcome) -> Actor {
    match outcome {
        Outcome::Organization { id, api_key_id } => Actor::ApiKey {
            organization_id: id,
            api_key_id,
        },
        other => panic!("expected an organization, got {other:?}"),
    }
}

pub fn org_id(actor: &Actor) -> OrganizationId {
    actor.organization().expect("organization actor")
}

pub fn invoice_of(outcome: Outcome) -> InvoiceId {
    match outcome {
        Outcome::Invoice(id) => id,
        other => panic!("expected an invoice, got {other:?}"),
    }
}

/// The scripted ledger the scenario tests check against, with the ids the
/// checks need.
pub struct Scenario {
    pub script: Script,
    pub acme: Actor,
    pub beta: Actor,
    pub gamma: Actor,
    pub inv1: InvoiceId,
    pub inv2: InvoiceId,
    pub inv3: InvoiceId,
}

/// Four days of business between Acme (seller), Beta (buyer) and Gamma:
///
/// - day 1: three organizations; Beta gets EUR 1000.00, Gamma USD 500.00;
///   Acme and Beta connect.
/// - day 2: invoice 1 (2 × 100.00 + 10 % tax = 220.00) approved and settled;
///   invoice 2 (50.00) approved with an adjustment to 40.00.
/// - day 3: invoice 2's cancellation requested by Beta, accepted by Acme
///   (40.00 released); invoice 3 (3 × 100.00 = 300.00) approved and left
///   open; Acme withdraws 20.00 (approved by its second key).
/// - day 4: a refund of 10.00 on invoice 1 (Acme → Beta); Gamma's USD
///   collateral set to 100.00, then the balance frozen.
///
/// By hand, at the end: Beta EUR 1000 − 220 + 10 = 790.00 total, 300.00
/// reserved, 490.00 available; Acme EUR 220 − 20 − 10 = 190.00; Gamma USD
/// 500.00 total, 100.00 collateral, 400.00 available, frozen.
pub fn scenario() -> Scenario {
    let mut s = Script::new();
    let new_org = |s: &mut Script, name: &str| {
        org(s.exec(
            Actor::Admin,
            Command::CreateOrganization {
                name: name.into(),
                api_key_secret_hash: [9u8; 32],
            },
        ))
    };
    s.at("2024-03-01T09:00:00Z");
    let acme = new_org(&mut s, "Acme GmbH");
    let beta = new_org(&mut s, "Beta AG");
    let gamma = new_org(&mut s, "Gamma Ltd");
    s.at("2024-03-01T09:10:00Z");
    let acme_second = match s.exec(
        acme,
        Command::CreateApiKey {
            name: "approver".into(),
            permissions: vec![Permission::All],
            secret_hash: [8u8; 32],
            expires_at: None,
        },
    ) {
        Outcome::ApiKey(id) => id,
        other => panic!("{other:?}"),
    };
    s.at("2024-03-01T09:20:00Z");
    s.exec(
        Actor::Admin,
        Command::Deposit {
            organization_id: org_id(&beta),
            currency: cur("EUR"),
            amount: amount("EUR", "1000.00"),
            reference: "wire 1".into(),
        },
    );
    s.at("2024-03-01T09:30:00Z");
    s.exec(
        Actor::Admin,
        Command::Deposit {
            organization_id: org_id(&gamma),
            currency: cur("USD"),
            amount: amount("USD", "500.00"),
            reference: "wire 2".into(),
        },
    );
    s.at("2024-03-01T10:00:00Z");
    let connection = match s.exec(
        acme,
        Command::RequestConnection {
            counterparty: org_id(&beta),
            role: Party::Seller,
        },
    ) {
        Outcome::Connection(id) => id,
        other => panic!("{other:?}"),
    };
    s.at("2024-03-01T10:05:00Z");
    s.exec(beta, Command::AcceptConnection { id: connection });

    let invoice = |s: &mut Script, lines: Vec<LineItemInput>| {
        invoice_of(s.exec(
            acme,
            Command::CreateInvoice(NewInvoice {
                connection_id: connection,
                number: None,
                currency: cur("EUR"),
                issue_date: None,
                due_date: NaiveDate::from_ymd_opt(2024, 4, 30).expect("date"),
                memo: None,
                line_items: lines,
                attachments: vec![],
                submit: true,
            }),
        ))
    };
    let approve = InvoiceAction::Approve {
        adjusted_amount: None,
        reason: None,
    };
    s.at("2024-03-02T09:00:00Z");
    let inv1 = invoice(&mut s, vec![line("Widgets", "2", "100.00", "10")]);
    s.at("2024-03-02T10:00:00Z");
    s.exec(
        beta,
        Command::Invoice {
            id: inv1,
            action: approve.clone(),
        },
    );
    s.at("2024-03-02T11:00:00Z");
    s.exec(beta, Command::SettleInvoice { id: inv1 });
    s.at("2024-03-02T12:00:00Z");
    let inv2 = invoice(&mut s, vec![line("Gadget", "1", "50.00", "0")]);
    s.at("2024-03-02T13:00:00Z");
    s.exec(
        beta,
        Command::Invoice {
            id: inv2,
            action: InvoiceAction::Approve {
                adjusted_amount: Some("40.00".into()),
                reason: Some("short delivery".into()),
            },
        },
    );
    s.at("2024-03-03T09:00:00Z");
    s.exec(
        beta,
        Command::Invoice {
            id: inv2,
            action: InvoiceAction::RequestCancellation {
                reason: "not needed".into(),
            },
        },
    );
    s.at("2024-03-03T10:00:00Z");
    s.exec(
        acme,
        Command::Invoice {
            id: inv2,
            action: InvoiceAction::AcceptCancellation,
        },
    );
    s.at("2024-03-03T11:00:00Z");
    let inv3 = invoice(&mut s, vec![line("Service", "3", "100.00", "0")]);
    s.at("2024-03-03T12:00:00Z");
    s.exec(
        beta,
        Command::Invoice {
            id: inv3,
            action: approve,
        },
    );
    s.at("2024-03-03T13:00:00Z");
    let withdrawal = match s.exec(
        acme,
        Command::SubmitWithdrawal {
            currency: cur("EUR"),
            amount: amount("EUR", "20.00"),
            destination: Destination {
                fields: vec![("iban".into(), "DE89370400440532013000".into())],
            },
        },
    ) {
        Outcome::Withdrawal(id) => id,
        other => panic!("{other:?}"),
    };
    s.at("2024-03-03T14:00:00Z");
    s.exec(
        Actor::ApiKey {
            organization_id: org_id(&acme),
            api_key_id: acme_second,
        },
        Command::ApproveWithdrawal { id: withdrawal },
    );
    s.at("2024-03-04T09:00:00Z");
    let payer_tx = s
        .ledger
        .invoices
        .get(&inv1)
        .and_then(|i| i.payment_id)
        .and_then(|p| s.ledger.payments.get(&p))
        .and_then(|p| p.payer_transaction_id)
        .expect("settled");
    let refund = match s.exec(
        beta,
        Command::CreateRefund {
            transaction_id: payer_tx,
            amount: "10.00".into(),
            reason: "one widget broken".into(),
        },
    ) {
        Outcome::Refund(id) => id,
        other => panic!("{other:?}"),
    };
    s.at("2024-03-04T10:00:00Z");
    s.exec(acme, Command::ApproveRefund { id: refund });
    s.at("2024-03-04T11:00:00Z");
    s.exec(
        Actor::Admin,
        Command::SetCollateral {
            organization_id: org_id(&gamma),
            currency: cur("USD"),
            amount: amount("USD", "100.00"),
        },
    );
    s.at("2024-03-04T12:00:00Z");
    s.exec(
        Actor::Admin,
        Command::FreezeBalance {
            organization_id: org_id(&gamma),
            currency: cur("USD"),
            reason: "audit".into(),
        },
    );
    Scenario {
        script: s,
        acme,
        beta,
        gamma,
        inv1,
        inv2,
        inv3,
    }
}

// ---------------------------------------------------------------------------
// tampering, through a raw sled handle on the closed log
// ---------------------------------------------------------------------------

/// Opens the closed log raw. No background flusher: it would keep the
/// directory locked for a moment after the handle is dropped.
pub fn with_raw_db(data_dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = sled::Config::new()
        .path(data_dir.join("log"))
        .flush_every_ms(None)
        .open()
        .expect("raw sled open");
    f(&db);
    db.flush().expect("raw flush");
    drop(db);
    wait_unlocked(data_dir);
}

/// Flips the lowest bit of the byte `from_end` bytes before the end of the
/// stored value (the last 32 bytes are the chain hash, the rest the event).
pub fn flip_byte(data_dir: &Path, seq: u64, from_end: usize) {
    with_raw_db(data_dir, |db| {
        let mut value = raw::stored(db, seq).expect("get").expect("event exists");
        let at = value.len() - 1 - from_end.min(value.len() - 1);
        value[at] ^= 0x01;
        raw::store(db, seq, &value).expect("store");
    });
}

pub fn delete_event(data_dir: &Path, seq: u64) {
    with_raw_db(data_dir, |db| {
        raw::remove(db, seq).expect("remove");
    });
}

pub fn swap_events(data_dir: &Path, a: u64, b: u64) {
    with_raw_db(data_dir, |db| {
        let va = raw::stored(db, a).expect("get").expect("a");
        let vb = raw::stored(db, b).expect("get").expect("b");
        raw::store(db, a, &vb).expect("store");
        raw::store(db, b, &va).expect("store");
    });
}

/// Every row of every table of a read-model database, rendered and sorted
/// per table, except `schema_migrations` (it records when it was applied).
pub fn sql_dump(path: &Path) -> Vec<(String, Vec<String>)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database");
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations'
             ORDER BY name",
        )
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("tables");
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t}"))
                .expect("prepare");
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.join(" | "))
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            rows.sort();
            (t, rows)
        })
        .collect()
}
