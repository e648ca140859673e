//! `--url` and `--data-dir` give identical results for the same history.
//!
//! The real server (command-api) runs in this process on 127.0.0.1:0 with an
//! admin token; the history is made through its engine (the same writer the
//! HTTP routes use). Then, with the server running: every read subcommand
//! through `--url`, a hot `backup --url`, and `rebuild --url` compared with
//! the live views of an organization through its API key. After a clean
//! stop, the same subcommands on a copy of its data directory must print
//! exactly the same, and so must they on the hot backup.

mod support;

use clap::Parser;
use command_api::app::{router, start, AppState};
use command_api::config::Config;
use ledger_core::domain::command::{InvoiceAction, LineItemInput, NewInvoice};
use ledger_core::domain::{Command, Outcome};
use ledger_core::engine::{Reply, Submission};
use ledger_core::events::{Actor, Party};
use ledger_core::ids::InvoiceId;
use ledger_core::money::{Quantity, TaxRate};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use support::*;

const TOKEN: &str = "audit-token-for-tests-32-characters-at-least";
const SECRET: &str = "es_replay_tool_test_secret";

#[derive(Parser)]
struct ServerArgs {
    #[command(flatten)]
    config: Config,
}

fn submit(
    rt: &tokio::runtime::Runtime,
    state: &AppState,
    actor: Actor,
    command: Command,
) -> Outcome {
    let reply = rt
        .block_on(state.engine.submit(Submission {
            actor,
            idempotency: None,
            command,
            render: None,
        }))
        .expect("engine");
    match reply {
        Reply::Executed { result: Ok(o), .. } => o,
        other => panic!("command failed: {other:?}"),
    }
}

/// Runs independent commands as one bulk command; every one must succeed.
fn bulk(
    rt: &tokio::runtime::Runtime,
    state: &AppState,
    actor: Actor,
    commands: Vec<Command>,
) -> Vec<Outcome> {
    match submit(rt, state, actor, Command::Bulk(commands)) {
        Outcome::Bulk(results) => results
            .into_iter()
            .map(|(_, r)| r.unwrap_or_else(|e| panic!("refused: {e}")))
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// A small history: two pairs trading, settlements, a cancellation, a
/// withdrawal; `rounds` invoices per pair.
fn populate(
    rt: &tokio::runtime::Runtime,
    state: &AppState,
    rounds: usize,
) -> (Actor, Vec<InvoiceId>) {
    let secret_hash = command_api::auth::hash_secret(SECRET);
    let new_org = |name: &str| {
        org(submit(
            rt,
            state,
            Actor::Admin,
            Command::CreateOrganization {
                name: name.into(),
                api_key_secret_hash: secret_hash,
            },
        ))
    };
    let sellers = [new_org("North Seller"), new_org("South Seller")];
    let buyers = [new_org("North Buyer"), new_org("South Buyer")];
    let mut invoices = Vec::new();
    for (i, (seller, buyer)) in sellers.iter().zip(&buyers).enumerate() {
        let currency = cur(if i == 0 { "EUR" } else { "USD" });
        submit(
            rt,
            state,
            Actor::Admin,
            Command::Deposit {
                organization_id: org_id(buyer),
                currency,
                amount: amount(currency.code(), "10000000.00"),
                reference: format!("wire {i}"),
            },
        );
        let connection = match submit(
            rt,
            state,
            *seller,
            Command::RequestConnection {
                counterparty: org_id(buyer),
                role: Party::Seller,
            },
        ) {
            Outcome::Connection(id) => id,
            other => panic!("{other:?}"),
        };
        submit(
            rt,
            state,
            *buyer,
            Command::AcceptConnection { id: connection },
        );
        // In bulk, 250 invoices a call, so the writer commits each call at once.
        let mut r = 0;
        while r < rounds {
            let batch: Vec<usize> = (r..(r + 250).min(rounds)).collect();
            r += batch.len();
            let creates = batch
                .iter()
                .map(|r| {
                    Command::CreateInvoice(NewInvoice {
                        connection_id: connection,
                        number: None,
                        currency,
                        issue_date: None,
                        due_date: chrono::NaiveDate::from_ymd_opt(2030, 1, 31).expect("date"),
                        memo: Some(format!("round {r}")),
                        line_items: vec![LineItemInput {
                            description: "Consulting".into(),
                            quantity: Quantity::parse(&format!("{}", r % 9 + 1)).expect("qty"),
                            unit_price: "125.50".into(),
                            tax_rate: TaxRate::parse("7.5").expect("tax"),
                        }],
                        attachments: vec![],
                        submit: true,
                    })
                })
                .collect();
            let ids: Vec<InvoiceId> = bulk(rt, state, *seller, creates)
                .into_iter()
                .map(invoice_of)
                .collect();
            invoices.extend(&ids);
            let each =
                |f: &dyn Fn(InvoiceId) -> Command, keep: &dyn Fn(usize) -> bool| -> Vec<Command> {
                    ids.iter()
                        .enumerate()
                        .filter(|(i, _)| keep(*i))
                        .map(|(_, id)| f(*id))
                        .collect()
                };
            let approve = |id| Command::Invoice {
                id,
                action: InvoiceAction::Approve {
                    adjusted_amount: None,
                    reason: None,
                },
            };
            bulk(rt, state, *buyer, each(&approve, &|_| true));
            bulk(
                rt,
                state,
                *buyer,
                each(&|id| Command::SettleInvoice { id }, &|i| i % 3 != 2),
            );
            let request = |id| Command::Invoice {
                id,
                action: InvoiceAction::RequestCancellation {
                    reason: "not needed".into(),
                },
            };
            bulk(rt, state, *buyer, each(&request, &|i| i % 3 == 2));
            let accept = |id| Command::Invoice {
                id,
                action: InvoiceAction::AcceptCancellation,
            };
            bulk(rt, state, *seller, each(&accept, &|i| i % 3 == 2));
        }
    }
    (buyers[0], invoices)
}

/// The read subcommands whose output must not depend on the source.
fn reads(invoice: &str) -> Vec<Vec<String>> {
    [
        vec!["verify"],
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["balances", "--as-of", "2100-01-01", "--json"],
        vec!["balances", "--as-of", "2100-01-01"],
        vec!["export"],
        vec![
            "export",
            "--format",
            "csv",
            "--from-seq",
            "7",
            "--to-seq",
            "40",
        ],
        vec!["export", "--type", "Settlement*,FundsReserved"],
        vec!["invoice", invoice],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

fn run_with(source: &[String], args: &[String]) -> String {
    let all: Vec<&str> = source.iter().chain(args).map(String::as_str).collect();
    let run = tool(&all);
    assert_eq!(
        run.code, 0,
        "replay-tool {all:?}:\n{}\n{}",
        run.stdout, run.stderr
    );
    run.stdout
}

fn data_dir_source(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.to_str().expect("path").into()]
}

#[test]
fn url_and_data_dir_agree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("server");
    let args = ServerArgs::try_parse_from([
        "expereon",
        "--data-dir",
        data.to_str().expect("path"),
        "--admin-token",
        TOKEN,
        "--listen",
        "127.0.0.1:0",
    ])
    .expect("server config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = {
        let _guard = rt.enter();
        start(args.config).expect("server starts")
    };
    let state = started.state.clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(started.state);
    let server = rt.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });

    // More events than one page of the admin stream (10,000 a call).
    let (buyer, invoices) = populate(&rt, &state, 650);
    let url: Vec<String> = vec![
        "--url".into(),
        format!("http://{addr}"),
        "--admin-token".into(),
        TOKEN.into(),
    ];
    let invoice = invoices[4].to_string();
    let live: Vec<String> = reads(&invoice)
        .iter()
        .map(|args| run_with(&url, args))
        .collect();
    assert!(live[0].contains("verify: OK"), "{}", live[0]);
    let events: u64 = live[0]
        .lines()
        .find_map(|l| l.strip_prefix("events: "))
        .and_then(|n| n.parse().ok())
        .expect("event count");
    assert!(
        events > 10_000,
        "only {events} events: the stream needs more than one page"
    );

    // A wrong token is refused, exit 2.
    let run = tool(&[
        "--url",
        &format!("http://{addr}"),
        "--admin-token",
        "wrong",
        "verify",
    ]);
    assert_eq!(run.code, 2, "{}", run.stdout);

    // A hot backup, and a rebuild compared with the live server's views of
    // North Buyer (its API key and secret).
    let hot = tmp.path().join("hot-backup");
    run_with(
        &url,
        &[
            "backup".into(),
            "--out".into(),
            hot.to_str().expect("path").into(),
        ],
    );
    let rebuilt_live = tmp.path().join("rebuilt-url");
    let key = buyer.api_key().expect("key").to_string();
    let out = run_with(
        &url,
        &[
            "rebuild".into(),
            "--out".into(),
            rebuilt_live.to_str().expect("path").into(),
            "--api-key".into(),
            key,
            "--api-secret".into(),
            SECRET.into(),
        ],
    );
    assert!(out.contains("the live server's views"), "{out}");
    assert!(out.contains("differences: none"), "{out}");

    // Stop the server cleanly; its writer stops once every handle is gone.
    let _ = stop.send(());
    rt.block_on(server).expect("join").expect("serve");
    drop(state);
    started.writer.join().expect("writer");
    drop(rt);

    let copy = tmp.path().join("copy");
    copy_when_settled(&data, &copy);
    for (i, (args, live_out)) in reads(&invoice).iter().zip(&live).enumerate() {
        assert_eq!(
            &run_with(&data_dir_source(&copy), args),
            live_out,
            "`{args:?}` differs"
        );
        // The hot backup holds the same history (the server was idle meanwhile).
        if [0, 2, 5].contains(&i) {
            assert_eq!(
                &run_with(&data_dir_source(&hot), args),
                live_out,
                "`{args:?}` differs on the backup"
            );
        }
    }
    let rebuilt_dir = tmp.path().join("rebuilt-dir");
    let out = run_with(
        &data_dir_source(&copy),
        &[
            "rebuild".into(),
            "--out".into(),
            rebuilt_dir.to_str().expect("path").into(),
        ],
    );
    assert!(out.contains("differences: none"), "{out}");
    for file in [
        "balances.jsonl",
        "invoices.jsonl",
        "transactions.jsonl",
        "payments.jsonl",
    ] {
        let a = std::fs::read(rebuilt_live.join(file)).expect("read");
        let b = std::fs::read(rebuilt_dir.join(file)).expect("read");
        assert!(a == b, "{file} differs between --url and --data-dir");
    }
    // The SQL read models too, row for row.
    let sql = projections::sql::FILE;
    assert_eq!(
        sql_dump(&rebuilt_live.join(sql)),
        sql_dump(&rebuilt_dir.join(sql)),
        "the SQL read models differ between --url and --data-dir"
    );
}

/// Copies the data directory of a server stopped in this process once
/// nothing changes in it any more. The last handles on the log and the
/// SQLite files may go on other threads (the fold's, the API log's) a
/// moment after the server returns: the log then takes its journal into
/// sled and removes it, SQLite removes its `-wal` files.
fn copy_when_settled(data: &Path, copy: &Path) {
    fn listing(dir: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                listing(&entry.path(), out);
            } else if let Ok(modified) = meta.modified() {
                out.push((entry.path(), meta.len(), modified));
            }
        }
        out.sort();
    }
    ledger_core::log::sled::wait_closed(&data.join("log")).expect("the log closes");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut before = Vec::new();
    listing(data, &mut before);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut now = Vec::new();
        listing(data, &mut now);
        if now == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the data directory still changes 30 s after the server stopped"
        );
        before = now;
    }
    copy_dir(data, copy);
}
