//! Durability under load: clients run invoice lifecycles (create+submit,
//! approve, settle) while the server is SIGKILLed at a random moment, ten
//! times, restarting each time. Afterwards every command that got a 2xx is
//! there exactly once, nothing unacknowledged is half-applied, money is
//! conserved, every acknowledged settlement was delivered as a webhook, and
//! the log re-proves itself from genesis (what `replay-tool verify` checks).

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;
#[allow(dead_code)]
mod webhooks_support;

use ledger_core::domain::Ledger;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{verify_link, EventLog, GENESIS_HASH};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{dec, rid, s, simple_invoice, spawn_app_with, Org, Pair};
use webhooks_support::Receiver;

const ROUNDS: usize = 10;
const WORKERS: usize = 6;
const FUNDS: &str = "1000000.00";

/// A command the server acknowledged with a 2xx.
#[derive(Debug, Clone)]
struct Ack {
    step: Step,
    invoice: String,
    request_id: String,
    body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Approve,
    Settle,
}

/// Sends one command with its own `requestId`; `None` when the server went
/// away (killed) before answering.
async fn command(org: &Org, path: &str, body: &Value) -> Option<support::Resp> {
    let bytes = serde_json::to_vec(body).ok()?;
    let headers = [("content-type", "application/json")];
    org.try_send(Method::POST, path, &headers, Some(bytes))
        .await
        .ok()
}

/// Lifecycles until the server stops answering; what it acknowledged goes
/// into `acks`. Any answer but a 2xx or a 5xx (a command cut off by the
/// kill) is a bug.
async fn lifecycles(pair: Pair, acks: Arc<Mutex<Vec<Ack>>>) {
    loop {
        let mut body = simple_invoice(&pair.conn, "12.34");
        body["submit"] = json!(true);
        body["requestId"] = json!(rid());
        let Some(created) = answered(&pair.seller, "/api/v1/invoices", &body).await else {
            return;
        };
        let invoice = s(&created["id"]);
        record(&acks, Step::Create, &invoice, &body);
        let approve = json!({ "requestId": rid() });
        let path = format!("/api/v1/invoices/{invoice}/approve");
        if answered(&pair.buyer, &path, &approve).await.is_none() {
            return;
        }
        record(&acks, Step::Approve, &invoice, &approve);
        let settle = json!({ "requestId": rid(), "invoiceId": invoice });
        if answered(&pair.buyer, "/api/v1/payments/settle", &settle)
            .await
            .is_none()
        {
            return;
        }
        record(&acks, Step::Settle, &invoice, &settle);
    }
}

async fn answered(org: &Org, path: &str, body: &Value) -> Option<Value> {
    let r = command(org, path, body).await?;
    match r.status {
        200 => Some(r.json()),
        500.. => None,
        _ => panic!("{path}: {} {}", r.status, r.text()),
    }
}

fn record(acks: &Arc<Mutex<Vec<Ack>>>, step: Step, invoice: &str, body: &Value) {
    acks.lock().unwrap().push(Ack {
        step,
        invoice: invoice.to_owned(),
        request_id: s(&body["requestId"]),
        body: body.clone(),
    });
}

/// A moment in 50..450 ms, different each round (no RNG crate needed: the
/// clock's nanoseconds are random enough for where a kill lands).
fn random_delay() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(50 + u64::from(nanos % 400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_commands_survive_random_kills_under_load() {
    let mut app = spawn_app_with(&[("EXPEREON_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let rx = Receiver::start().await;
    let pairs: Vec<Pair> = {
        let mut pairs = Vec::new();
        for _ in 0..WORKERS {
            pairs.push(app.trading_pair(FUNDS).await);
        }
        pairs
    };
    for p in &pairs {
        p.seller
            .post(
                "/api/v1/settings/webhooks",
                json!({ "url": rx.url("/settled"), "events": ["invoice.settled"] }),
            )
            .await
            .ok();
    }
    let acks = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        let workers: Vec<_> = pairs
            .iter()
            .map(|p| tokio::spawn(lifecycles(p.clone(), acks.clone())))
            .collect();
        tokio::time::sleep(random_delay()).await;
        app.kill_now();
        for w in workers {
            w.await.expect("a worker panicked");
        }
        app.start_again().await;
        assert!(
            !acks.lock().unwrap().is_empty() || round == 0,
            "nothing acknowledged after {} rounds",
            round + 1
        );
    }
    let acks = acks.lock().unwrap().clone();
    let settled: BTreeSet<String> = acks
        .iter()
        .filter(|a| a.step == Step::Settle)
        .map(|a| a.invoice.clone())
        .collect();
    assert!(
        settled.len() >= ROUNDS,
        "too little got through to test anything: {} settlements",
        settled.len()
    );

    let count = |step| acks.iter().filter(|a| a.step == step).count();
    eprintln!(
        "{ROUNDS} kills; acknowledged: {} creates, {} approvals, {} settlements",
        count(Step::Create),
        count(Step::Approve),
        count(Step::Settle)
    );
    acknowledged_effects_are_there(&pairs, &acks).await;
    exactly_once_on_retry(&pairs, &acks).await;
    nothing_half_applied(&pairs).await;
    every_settlement_was_delivered(&rx, &settled).await;

    app.kill_now();
    the_log_re_proves_itself(&app.data_dir().join("log"));
}

/// Each acknowledged step shows in the invoice's state.
async fn acknowledged_effects_are_there(pairs: &[Pair], acks: &[Ack]) {
    let mut furthest: BTreeMap<&str, Step> = BTreeMap::new();
    for a in acks {
        let e = furthest.entry(&a.invoice).or_insert(a.step);
        if a.step as u8 > *e as u8 {
            *e = a.step;
        }
    }
    let seller_of = |invoice: &str| {
        pairs.iter().find(|p| {
            acks.iter()
                .any(|a| a.invoice == invoice && a.body["connectionId"] == p.conn.as_str())
        })
    };
    for (invoice, step) in furthest {
        let pair = seller_of(invoice).expect("the acknowledged create names its pair");
        let status = s(&pair.seller.invoice(invoice).await.ok()["status"]);
        let allowed: &[&str] = match step {
            Step::Create => &["SUBMITTED", "APPROVED", "SETTLED"],
            Step::Approve => &["APPROVED", "SETTLED"],
            Step::Settle => &["SETTLED"],
        };
        assert!(
            allowed.contains(&status.as_str()),
            "{invoice}: acknowledged {step:?} but the invoice is {status}"
        );
    }
}

/// Sending an acknowledged command again with its `requestId` replays the
/// first answer: it was applied once, and stays applied once.
async fn exactly_once_on_retry(pairs: &[Pair], acks: &[Ack]) {
    for a in acks.iter().filter(|a| a.step == Step::Create) {
        let pair = pairs
            .iter()
            .find(|p| a.body["connectionId"] == p.conn.as_str())
            .expect("pair");
        let r = command(&pair.seller, "/api/v1/invoices", &a.body)
            .await
            .expect("the server answers");
        assert_eq!(r.status, 200, "{}: {}", a.request_id, r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(
            s(&r.json()["id"]),
            a.invoice,
            "a retry made another invoice"
        );
    }
}

/// Per pair: every invoice is in a whole state, the buyer's reservations are
/// exactly its approved invoices, and what left the buyer reached the seller.
async fn nothing_half_applied(pairs: &[Pair]) {
    for p in pairs {
        let invoices = p.seller.all_invoices("").await;
        let mut approved = Decimal::ZERO;
        let mut settled = Decimal::ZERO;
        for inv in &invoices {
            match inv["status"].as_str() {
                Some("APPROVED") => approved += dec(&inv["total"]),
                Some("SETTLED") => settled += dec(&inv["total"]),
                Some("SUBMITTED") => {}
                other => panic!("{}: unexpected status {other:?}", inv["id"]),
            }
        }
        let (buyer_total, buyer_reserved, _) = p.buyer.money("USD").await;
        let (seller_total, seller_reserved, _) = p.seller.money("USD").await;
        let funds: Decimal = FUNDS.parse().expect("funds");
        assert_eq!(buyer_reserved, approved, "reservations = approved invoices");
        assert_eq!(seller_reserved, Decimal::ZERO);
        assert_eq!(seller_total, settled, "the seller holds what was settled");
        assert_eq!(buyer_total + seller_total, funds, "money conserved");
        let payments = p.buyer.walk("/api/v1/payments?status=COMPLETED", 200).await;
        let paid: BTreeSet<String> = payments.iter().map(|x| s(&x["invoiceId"])).collect();
        assert_eq!(paid.len(), payments.len(), "one payment per invoice");
        let settled_ids: BTreeSet<String> = invoices
            .iter()
            .filter(|i| i["status"] == "SETTLED")
            .map(|i| s(&i["id"]))
            .collect();
        assert_eq!(
            paid, settled_ids,
            "a payment for each settled invoice, no other"
        );
    }
}

/// The outbox is derived from the log: a settlement acknowledged before a
/// kill is delivered after the restart.
async fn every_settlement_was_delivered(rx: &Receiver, settled: &BTreeSet<String>) {
    let delivered = |rx: &Receiver| -> BTreeSet<String> {
        rx.on("/settled")
            .iter()
            .map(|r| s(&r.json()["data"]["id"]))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !settled.is_subset(&delivered(rx)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = delivered(rx);
    let missing: Vec<_> = settled.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "settlements never delivered: {missing:?}"
    );
}

/// The hash chain from genesis, dense sequence numbers ending at the head,
/// and every domain invariant while replaying, with nothing left in transit.
fn the_log_re_proves_itself(dir: &std::path::Path) {
    let log = SledLog::open(dir).expect("opening the log");
    let head = log.head();
    let mut previous = GENESIS_HASH;
    let mut ledger = Ledger::new();
    let mut seq = 0;
    for raw in log.read_raw(1) {
        let raw = raw.expect("reading the log");
        assert_eq!(raw.seq, seq + 1, "sequence not dense");
        let event = verify_link(&previous, &raw).expect("hash chain");
        ledger
            .apply(&event)
            .unwrap_or_else(|v| panic!("invariant broken at {}: {}", v.seq, v.reason));
        previous = raw.hash;
        seq = raw.seq;
    }
    assert_eq!(seq, head.last_seq, "the log ends where its head says");
    assert_eq!(previous, head.last_hash);
    ledger.check_settled().expect("nothing left in transit");
}
