//! Golden fixture: a log written by version 1 of the format, committed as a
//! portable text file, that every later build must still read to the same
//! bytes and the same figures.
//!
//! `tests/fixtures/golden-v1/events.hex` holds one stored event per line,
//! `seq <encoded event, hex> <chain hash, hex>`; `idempotency.hex` holds the
//! idempotency records of the same commands, `last_seq <encoded record, hex>`.
//! Both were produced once by `generate_golden_fixture` (ignored) from the
//! deterministic scenario below and must never be regenerated: see the README
//! next to them.

use chrono::NaiveDate;
use ledger_core::codec;
use ledger_core::domain::command::{
    InvoiceAction, InvoicePatch, LineItemInput, LineItemPatch, NewInvoice,
};
use ledger_core::domain::connection::ConnectionStatus;
use ledger_core::domain::invoice::{Invoice, InvoiceState, InvoiceStatus};
use ledger_core::domain::payment::PaymentStatus;
use ledger_core::domain::refund::RefundStatus;
use ledger_core::domain::withdrawal::WithdrawalStatus;
use ledger_core::domain::{Command, Ctx, Ledger, Outcome};
use ledger_core::engine;
use ledger_core::events::{Actor, Destination, Party, Permission, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{
    chain_hash, verify_link, EventLog, Hash, IdempotencyKey, IdempotencyRecord, LogError, RawEvent,
    GENESIS_HASH,
};
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many events the golden log holds, and the chain hash after the last.
const GOLDEN_EVENTS: u64 = 91;
const GOLDEN_HEAD_HASH: &str = "0f000e112bde2a940a3a5b58330065f6c928d66a971cf8416d76552821d0cebf";
/// One idempotency record per command that carried a request id (59 of 61).
const GOLDEN_RECORDS: usize = 59;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1")
}

// ---------------------------------------------------------------------------
// Reading the fixture
// ---------------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in fixture: {e}"))
}

fn hash_of(s: &str) -> Hash {
    unhex(s)
        .try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("hash of {} bytes", v.len()))
}

fn fixture_lines(name: &str) -> Vec<String> {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn golden_raw() -> Vec<RawEvent> {
    fixture_lines("events.hex")
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [seq, encoded, hash] = fields.as_slice() else {
                panic!("malformed line in events.hex: {line:?}");
            };
            RawEvent {
                seq: seq.parse().unwrap(),
                encoded: unhex(encoded),
                hash: hash_of(hash),
            }
        })
        .collect()
}

/// The records' `last_seq` (as written in the file) and their stored bytes.
fn golden_records_raw() -> Vec<(u64, Vec<u8>)> {
    fixture_lines("idempotency.hex")
        .iter()
        .map(|line| {
            let (last_seq, encoded) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("malformed line in idempotency.hex: {line:?}"));
            (last_seq.parse().unwrap(), unhex(encoded))
        })
        .collect()
}

/// Every event, checked link by link from genesis.
fn golden_events() -> Vec<RecordedEvent> {
    let mut previous = GENESIS_HASH;
    golden_raw()
        .iter()
        .map(|raw| {
            let event = verify_link(&previous, raw).unwrap_or_else(|e| panic!("{e}"));
            previous = raw.hash;
            event
        })
        .collect()
}

fn golden_records() -> Vec<IdempotencyRecord> {
    golden_records_raw()
        .iter()
        .map(|(_, bytes)| {
            codec::decode::<IdempotencyRecord>(bytes).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn golden_chain_is_dense_and_verifies_from_genesis() {
    let raw = golden_raw();
    assert_eq!(raw.len() as u64, GOLDEN_EVENTS);
    let mut previous = GENESIS_HASH;
    for (i, r) in raw.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "fixture sequence is not dense");
        assert_eq!(chain_hash(&previous, &r.encoded), r.hash, "seq {}", r.seq);
        let event = verify_link(&previous, r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.seq, r.seq);
        previous = r.hash;
    }
    assert_eq!(hex::encode(previous), GOLDEN_HEAD_HASH);
}

#[test]
fn golden_events_reencode_to_identical_bytes() {
    for raw in golden_raw() {
        let event = codec::decode_event(&raw.encoded)
            .unwrap_or_else(|e| panic!("seq {} no longer decodes: {e}", raw.seq));
        let again = codec::encode_event(&event).unwrap();
        assert_eq!(
            hex::encode(&again),
            hex::encode(&raw.encoded),
            "seq {} ({}) re-encodes differently",
            raw.seq,
            event.event.type_name()
        );
    }
}

#[test]
fn golden_idempotency_records_decode_and_reencode_to_identical_bytes() {
    let raw = golden_records_raw();
    assert_eq!(raw.len(), GOLDEN_RECORDS);
    let events = golden_events();
    for (last_seq, bytes) in raw {
        let record: IdempotencyRecord =
            codec::decode(&bytes).unwrap_or_else(|e| panic!("record no longer decodes: {e}"));
        assert_eq!(record.last_seq, last_seq);
        assert!(record.last_seq >= 1 && record.last_seq <= GOLDEN_EVENTS);
        assert_eq!(
            hex::encode(codec::encode(&record).unwrap()),
            hex::encode(&bytes)
        );
        // It answers for the command whose last event it points at.
        let last = &events[record.last_seq as usize - 1];
        assert_eq!(last.request_id, Some(record.key.request_id));
        assert_eq!(last.at, record.at);
        let scope = last
            .actor
            .organization()
            .map_or(IdempotencyKey::ADMIN_SCOPE, |o| o.as_uuid());
        assert_eq!(record.key.scope, scope);
        assert_eq!(record.status, 200);
    }
}

#[test]
fn golden_log_covers_every_v1_event_type_and_actor() {
    const V1_TYPES: [&str; 51] = [
        "OrganizationCreated",
        "ApiKeyCreated",
        "ApiKeyRevoked",
        "ConnectionRequested",
        "ConnectionAccepted",
        "ConnectionRejected",
        "InvoiceCreated",
        "InvoiceUpdated",
        "LineItemAdded",
        "LineItemUpdated",
        "LineItemRemoved",
        "InvoiceSubmitted",
        "InvoiceInfoRequested",
        "InvoiceInfoProvided",
        "InvoiceApproved",
        "InvoiceDisputed",
        "InvoiceCancelled",
        "InvoiceCancellationRequested",
        "InvoiceCancellationRejected",
        "InvoiceSettled",
        "InvoiceArchived",
        "InvoiceRestored",
        "InvoicePaymentDue",
        "PaymentInitiated",
        "PaymentCompleted",
        "PaymentFailed",
        "BalanceOpened",
        "FundsDeposited",
        "FundsReserved",
        "ReservationReleased",
        "SettlementDebited",
        "SettlementCredited",
        "WithdrawalDebited",
        "RefundDebited",
        "RefundCredited",
        "CollateralSet",
        "BalanceFrozen",
        "BalanceUnfrozen",
        "WithdrawalSubmitted",
        "WithdrawalApproved",
        "WithdrawalRejected",
        "WithdrawalCancelled",
        "RefundCreated",
        "RefundApproved",
        "RefundRejected",
        "WebhookEndpointCreated",
        "WebhookEndpointUpdated",
        "WebhookEndpointDeleted",
        "WebhookSecretRotated",
        "FileStored",
        "FileDeleted",
    ];
    let events = golden_events();
    let seen: BTreeSet<&str> = events.iter().map(|e| e.event.type_name()).collect();
    let expected: BTreeSet<&str> = V1_TYPES.into_iter().collect();
    assert_eq!(seen, expected);
    assert!(events.iter().any(|e| e.actor == Actor::Admin));
    assert!(events
        .iter()
        .any(|e| e.actor == Actor::System && e.request_id.is_none()));
    assert!(events
        .iter()
        .any(|e| matches!(e.actor, Actor::ApiKey { .. })));
}

#[test]
fn golden_log_replays_to_the_scenarios_figures() {
    let mut ledger = Ledger::new();
    for event in golden_events() {
        ledger
            .apply(&event)
            .unwrap_or_else(|e| panic!("replaying the golden log: {e}"));
    }
    assert_golden_figures(&ledger, &golden_events());
}

#[test]
fn golden_log_imports_into_sled_and_reopens() {
    let raw = golden_raw();
    let events = golden_events();
    let records = golden_records();
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path()).unwrap();
        // One append per command, with its idempotency record, as the engine does.
        let mut start = 0;
        while start < events.len() {
            let request = events[start].request_id;
            let mut end = start + 1;
            while end < events.len() && events[end].request_id == request {
                end += 1;
            }
            let batch_records: Vec<IdempotencyRecord> = records
                .iter()
                .filter(|r| Some(r.key.request_id) == request)
                .cloned()
                .collect();
            let head = log.append(&events[start..end], &batch_records).unwrap();
            assert_eq!(head.last_seq, end as u64);
            assert_eq!(head.last_hash, raw[end - 1].hash, "sled chains differently");
            start = end;
        }
    }
    let log = open_log(dir.path()).unwrap_or_else(|e| panic!("reopen: {e}"));
    let head = log.head();
    assert_eq!(head.last_seq, GOLDEN_EVENTS);
    assert_eq!(hex::encode(head.last_hash), GOLDEN_HEAD_HASH);
    let stored: Vec<RawEvent> = log.read_raw(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(stored.len(), raw.len());
    for (s, g) in stored.iter().zip(&raw) {
        assert_eq!((s.seq, &s.encoded, s.hash), (g.seq, &g.encoded, g.hash));
    }
    let read: Vec<RecordedEvent> = log.read_all(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(read, events);
    for record in &records {
        assert_eq!(log.idempotency(&record.key).unwrap().as_ref(), Some(record));
    }
    let ledger = engine::rebuild(&log).unwrap_or_else(|e| panic!("rebuild: {e}"));
    assert_golden_figures(&ledger, &events);
    // A stream read gives the same invoice history as the global log.
    let inv1 = invoice(&full_invoices(&events), "ACME-2024-001").id;
    let stream = log
        .read_stream(events_of_invoice(&events, inv1)[0].stream())
        .unwrap();
    assert_eq!(stream, events_of_invoice(&events, inv1));
    // The log refuses to fork: the next append must continue at seq 92.
    let mut again = events[0].clone();
    again.seq = 1;
    assert!(log.append(&[again], &[]).is_err());
}

/// Writes the golden log as the sled layout before blocks stored it: a key
/// per event (`E` seq → encoded ‖ hash), per stream version (`S` stream
/// version → seq), and the head record (`H` → last seq ‖ last hash).
fn write_layout_1(dir: &Path, raw: &[RawEvent], events: &[RecordedEvent]) {
    let db = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .unwrap();
    for (r, e) in raw.iter().zip(events) {
        let mut key = vec![b'E'];
        key.extend_from_slice(&r.seq.to_be_bytes());
        let mut value = r.encoded.clone();
        value.extend_from_slice(&r.hash);
        db.insert(key, value).unwrap();
        let mut key = vec![b'S'];
        key.extend_from_slice(&e.stream().to_bytes());
        key.extend_from_slice(&e.version.to_be_bytes());
        db.insert(key, &r.seq.to_be_bytes()[..]).unwrap();
    }
    let last = raw.last().unwrap();
    let mut head = last.seq.to_be_bytes().to_vec();
    head.extend_from_slice(&last.hash);
    db.insert([b'H'], head).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_golden_log_in_the_key_per_event_layout_moves_to_blocks_and_reads_the_same() {
    let raw = golden_raw();
    let events = golden_events();
    let dir = tempfile::tempdir().unwrap();
    write_layout_1(dir.path(), &raw, &events);
    let log = open_log(dir.path()).unwrap_or_else(|e| panic!("open layout 1: {e}"));
    assert_eq!(log.head().last_seq, GOLDEN_EVENTS);
    assert_eq!(hex::encode(log.head().last_hash), GOLDEN_HEAD_HASH);
    let stored: Vec<RawEvent> = log.read_raw(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(stored.len(), raw.len());
    for (s, g) in stored.iter().zip(&raw) {
        assert_eq!((s.seq, &s.encoded, s.hash), (g.seq, &g.encoded, g.hash));
    }
    // Every stream reads as the global log filtered to it.
    let streams: BTreeSet<_> = events.iter().map(|e| e.stream().to_bytes()).collect();
    for stream in streams {
        let of_stream: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| e.stream().to_bytes() == stream)
            .cloned()
            .collect();
        assert_eq!(log.read_stream(of_stream[0].stream()).unwrap(), of_stream);
    }
    let ledger = engine::rebuild(&log).unwrap_or_else(|e| panic!("rebuild: {e}"));
    assert_golden_figures(&ledger, &events);
    // Versions continue from the moved index: a wrong one is refused, the next accepted.
    let last = events.last().unwrap().clone();
    let mut next = last.clone();
    next.seq = GOLDEN_EVENTS + 1;
    assert!(matches!(
        log.append(std::slice::from_ref(&next), &[]),
        Err(LogError::VersionConflict { .. })
    ));
    next.version = last.version + 1;
    log.append(&[next], &[]).unwrap();
    drop(log);
    // Nothing of the old layout is left, and the move is not redone.
    let log = open_log(dir.path()).unwrap();
    assert_eq!(log.head().last_seq, GOLDEN_EVENTS + 1);
    drop(log);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(db.scan_prefix([b'E']).next().is_none());
    assert!(db.scan_prefix([b'S']).next().is_none());
}

/// Opens the log, waiting out sled's lock on the directory: a dropped sled
/// `Db` releases its file lock only when its background threads let go, so an
/// immediate reopen (same process, or the next process) can briefly find it
/// held. Any other error is returned at once.
fn open_log(dir: &Path) -> Result<SledLog, LogError> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match SledLog::open(dir) {
            Err(LogError::Storage(msg))
                if msg.contains("could not acquire lock") && Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn events_of_invoice(events: &[RecordedEvent], id: InvoiceId) -> Vec<RecordedEvent> {
    events
        .iter()
        .filter(|e| e.stream().id == id.as_uuid())
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// The figures, computed by hand from the scenario (see `scenario` below)
// ---------------------------------------------------------------------------

fn cur(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

fn amt(code: &str, s: &str) -> Amount {
    Amount::parse_non_negative(cur(code), s).unwrap()
}

fn org(ledger: &Ledger, name: &str) -> OrganizationId {
    ledger
        .organizations
        .values()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no organization {name}"))
        .id
}

/// Every invoice in full, folded from the log: the write model keeps only
/// their decision state, which must be exactly `InvoiceState::of` these.
fn full_invoices(events: &[RecordedEvent]) -> HashMap<InvoiceId, Invoice> {
    let mut all: HashMap<InvoiceId, Invoice> = HashMap::new();
    for e in events {
        if let Some(inv) = Invoice::created(&e.event, e.at) {
            all.insert(inv.id, inv);
        } else if let Some(inv) = all.get_mut(&InvoiceId::from_uuid(e.event.stream().id)) {
            inv.evolve(&e.event, e.at);
        }
    }
    all
}

fn invoice<'a>(all: &'a HashMap<InvoiceId, Invoice>, number: &str) -> &'a Invoice {
    all.values()
        .find(|i| i.number == number)
        .unwrap_or_else(|| panic!("no invoice {number}"))
}

fn assert_golden_figures(ledger: &Ledger, events: &[RecordedEvent]) {
    let full = full_invoices(events);
    for (id, inv) in &full {
        assert_eq!(
            InvoiceState::of(inv),
            ledger.invoices[id],
            "decision state of {id}"
        );
    }
    assert_eq!(ledger.last_seq, GOLDEN_EVENTS);
    ledger.check_settled().unwrap();
    let (usd, jpy) = (cur("USD"), cur("JPY"));

    // Two organizations; three API keys (the two defaults and Globex's
    // "treasury-approver", revoked at the end).
    assert_eq!(ledger.organizations.len(), 2);
    let acme = org(ledger, "Acme Supplies GmbH");
    let globex = org(ledger, "Globex Trading KK");
    assert_eq!(ledger.api_keys.len(), 3);
    let approver = ledger
        .api_keys
        .values()
        .find(|k| k.name == "treasury-approver")
        .unwrap();
    assert_eq!(approver.organization_id, globex);
    assert_eq!(
        approver.permissions,
        vec![Permission::TreasuryRead, Permission::TreasuryApprove]
    );
    assert!(approver.revoked_at.is_some());
    assert_eq!(
        ledger
            .api_keys
            .values()
            .filter(|k| k.revoked_at.is_none())
            .count(),
        2
    );

    // Connections: Acme sells to Globex (accepted); Acme buying from Globex (rejected).
    assert_eq!(ledger.connections.len(), 2);
    for c in ledger.connections.values() {
        if c.seller_organization_id == acme {
            assert_eq!(
                (c.buyer_organization_id, c.status),
                (globex, ConnectionStatus::Active)
            );
        } else {
            assert_eq!(
                (c.seller_organization_id, c.buyer_organization_id, c.status),
                (globex, acme, ConnectionStatus::Rejected)
            );
        }
    }

    // ACME-2024-001 (USD), after add/update/remove of lines:
    //   Widgets       10   × 19.99  = 199.90, tax 8.25 % = 16.49175 -> 16.49
    //   Installation  1.5  × 120.00 = 180.00, tax 0 %              ->  0.00
    //   Shipping      1    × 30.00  =  30.00, tax 8.25 % =  2.475   ->  2.48
    //   subtotal 409.90, tax 18.97, total 428.87; approved with adjustment at 400.00.
    let inv1 = invoice(&full, "ACME-2024-001");
    assert_eq!(inv1.currency, usd);
    let t = inv1.totals();
    assert_eq!(
        (t.subtotal, t.tax_total, t.total),
        (
            amt("USD", "409.90"),
            amt("USD", "18.97"),
            amt("USD", "428.87")
        )
    );
    assert_eq!(inv1.line_items.len(), 3);
    let shipping = inv1
        .line_items
        .iter()
        .find(|l| l.description == "Shipping")
        .unwrap();
    assert_eq!(
        (shipping.unit_price, shipping.amount, shipping.tax_amount),
        (amt("USD", "30.00"), amt("USD", "30.00"), amt("USD", "2.48"))
    );
    assert_eq!(inv1.status, InvoiceStatus::Archived);
    assert_eq!(inv1.archived_from, Some(InvoiceStatus::Settled));
    assert_eq!(inv1.approved_amount, Some(amt("USD", "400.00")));
    assert_eq!(
        inv1.adjustment_reason.as_deref(),
        Some("Installation at the agreed flat rate")
    );
    assert_eq!(
        inv1.memo.as_deref(),
        Some("January deliveries (revised shipping)")
    );
    assert_eq!(
        inv1.info_request.as_deref(),
        Some("Please attach the delivery note.")
    );
    assert!(inv1.payment_due_notified);
    assert_eq!(inv1.attachments.len(), 1);
    // Created, line added/updated/removed, updated, submitted, info requested,
    // info provided, approved, payment due, settled, archived: 12 events.
    assert_eq!(inv1.version, 12);
    assert_eq!(
        inv1.issue_date,
        NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
    );
    assert_eq!(inv1.due_date, NaiveDate::from_ymd_opt(2024, 2, 14).unwrap());

    // INV-000002 (JPY, numbered automatically as Acme's second invoice):
    //   Consulting 3 × 33333 = 99999, tax 10 % = 9999.9 -> 10000; total 109999.
    //   Approved, cancellation requested by the buyer, accepted by the seller.
    let inv2 = invoice(&full, "INV-000002");
    assert_eq!(inv2.currency, jpy);
    assert_eq!(inv2.totals().total, amt("JPY", "109999"));
    assert_eq!(inv2.totals().tax_total, amt("JPY", "10000"));
    assert_eq!(inv2.status, InvoiceStatus::Cancelled);
    assert_eq!(inv2.approved_amount, Some(amt("JPY", "109999")));
    assert_eq!(
        inv2.cancellation_reason.as_deref(),
        Some("Project postponed")
    );

    // ACME-2024-003 (USD): 1.5 × 0.99 = 1.485 -> 1.49, tax 50 % = 0.745 -> 0.75;
    //   total 2.24. Disputed, cancelled by the seller, archived, restored.
    let inv3 = invoice(&full, "ACME-2024-003");
    assert_eq!(inv3.totals().total, amt("USD", "2.24"));
    assert_eq!(inv3.status, InvoiceStatus::Cancelled);
    assert_eq!(
        inv3.dispute_reason.as_deref(),
        Some("Support was not ordered")
    );
    assert_eq!(inv3.archived_from, None);

    // ACME-2024-004 (USD): 4 × 12.50 = 50.00, tax 19 % = 9.50; total 59.50.
    //   Approved; cancellation requested and rejected; first settlement fails
    //   (payee frozen), the retry completes; auto-archived.
    let inv4 = invoice(&full, "ACME-2024-004");
    assert_eq!(inv4.totals().total, amt("USD", "59.50"));
    assert_eq!(inv4.status, InvoiceStatus::Archived);
    assert_eq!(inv4.archived_from, Some(InvoiceStatus::Settled));
    assert!(inv4.cancellation.is_none());
    assert_eq!(ledger.invoices.len(), 4);
    assert_eq!(ledger.invoices_by_seller.get(&acme), Some(&4));

    // Payments: 400.00 (50.00 refunded; the 20.00 refund was rejected) and
    // 59.50 (one failed attempt, one completed).
    let pay1 = &ledger.payments[&inv1.payment_id.unwrap()];
    assert_eq!(
        (pay1.status, pay1.amount, pay1.refunded, pay1.attempts),
        (
            PaymentStatus::Completed,
            amt("USD", "400.00"),
            amt("USD", "50.00"),
            1
        )
    );
    assert_eq!(
        (pay1.payer_organization_id, pay1.payee_organization_id),
        (globex, acme)
    );
    let pay2 = &ledger.payments[&inv4.payment_id.unwrap()];
    assert_eq!(
        (pay2.status, pay2.amount, pay2.refunded, pay2.attempts),
        (
            PaymentStatus::Completed,
            amt("USD", "59.50"),
            Amount::ZERO,
            2
        )
    );
    assert_eq!(ledger.payments.len(), 2);
    assert!(ledger.failed_by_payer.values().all(|s| s.is_empty()));

    // Refunds: 50.00 approved, 20.00 rejected.
    assert_eq!(ledger.refunds.len(), 2);
    for r in ledger.refunds.values() {
        let expected = if r.amount == amt("USD", "50.00") {
            RefundStatus::Approved
        } else {
            assert_eq!(r.amount, amt("USD", "20.00"));
            RefundStatus::Rejected
        };
        assert_eq!((r.status, r.requested_by), (expected, globex));
    }

    // Withdrawals: Globex 120000 JPY approved by the second key; Globex
    // 1000.00 USD rejected; Acme 75.00 USD cancelled.
    assert_eq!(ledger.withdrawals.len(), 3);
    let mut w: Vec<(OrganizationId, String, WithdrawalStatus)> = ledger
        .withdrawals
        .values()
        .map(|w| (w.organization_id, w.amount.format(w.currency), w.status))
        .collect();
    w.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        w,
        vec![
            (globex, "1000.00".into(), WithdrawalStatus::Rejected),
            (globex, "120000".into(), WithdrawalStatus::Completed),
            (acme, "75.00".into(), WithdrawalStatus::Cancelled),
        ]
    );
    let jpy_withdrawal = ledger
        .withdrawals
        .values()
        .find(|w| w.status == WithdrawalStatus::Completed)
        .unwrap();
    assert_eq!(jpy_withdrawal.decided_by, Some(approver.id));

    // Balances.
    // Globex USD: 10000.00 − 400.00 (inv1) + 50.00 (refund) − 59.50 (inv4)
    //             + 0.01 (bulk deposit) = 9590.51; nothing reserved.
    let b = ledger.balance_of(globex, usd).unwrap();
    assert_eq!(
        (b.total, b.reserved, b.collateral),
        (amt("USD", "9590.51"), Amount::ZERO, Amount::ZERO)
    );
    assert!(!b.frozen && b.holds.is_empty());
    // Acme USD: 250.00 + 400.00 − 50.00 + 59.50 = 659.50; collateral 100.00,
    //           so 559.50 available; frozen and unfrozen again.
    let b = ledger.balance_of(acme, usd).unwrap();
    assert_eq!(
        (b.total, b.reserved, b.collateral),
        (amt("USD", "659.50"), Amount::ZERO, amt("USD", "100.00"))
    );
    assert_eq!(b.available(), amt("USD", "559.50"));
    assert!(!b.frozen);
    // Globex JPY: 500000 − 120000 (withdrawal) = 380000; the 109999 hold for
    //             INV-000002 was released on cancellation.
    let b = ledger.balance_of(globex, jpy).unwrap();
    assert_eq!((b.total, b.reserved), (amt("JPY", "380000"), Amount::ZERO));
    // Acme JPY: opened by the bulk deposit of 1000.
    let b = ledger.balance_of(acme, jpy).unwrap();
    assert_eq!((b.total, b.reserved), (amt("JPY", "1000"), Amount::ZERO));
    assert_eq!(ledger.balances.len(), 4);

    // Conservation per currency.
    // USD: deposited 10000.00 + 250.00 + 0.01 = 10250.01, withdrawn 0,
    //      balances 9590.51 + 659.50 = 10250.01.
    let s = ledger.supply[&usd];
    assert_eq!(
        (s.deposited, s.withdrawn, s.balances_total, s.in_transit),
        (
            amt("USD", "10250.01"),
            Amount::ZERO,
            amt("USD", "10250.01"),
            Amount::ZERO
        )
    );
    // JPY: deposited 500000 + 1000 = 501000, withdrawn 120000,
    //      balances 380000 + 1000 = 381000.
    let s = ledger.supply[&jpy];
    assert_eq!(
        (s.deposited, s.withdrawn, s.balances_total, s.in_transit),
        (
            amt("JPY", "501000"),
            amt("JPY", "120000"),
            amt("JPY", "381000"),
            Amount::ZERO
        )
    );

    // Webhook endpoints: the ERP one disabled, its secret rotated; the staging one deleted.
    assert_eq!(ledger.webhook_endpoints.len(), 2);
    let erp = ledger
        .webhook_endpoints
        .values()
        .find(|e| e.url == "https://erp.acme.example/hooks/expereon")
        .unwrap();
    assert!(!erp.enabled && !erp.deleted);
    assert_eq!(erp.description, None);
    assert_eq!(erp.secret, "whsec_golden_2");
    assert_eq!(
        erp.previous_secret,
        Some((
            "whsec_golden_1".to_string(),
            Timestamp::parse_rfc3339("2024-01-16T09:00:00Z").unwrap()
        ))
    );
    assert!(ledger
        .webhook_endpoints
        .values()
        .any(|e| e.url == "https://staging.acme.example/hooks" && e.deleted));

    // Files: the purchase order stays (attached to a submitted invoice); the scratch file is deleted.
    assert_eq!(ledger.files.len(), 2);
    for f in ledger.files.values() {
        assert_eq!(f.organization_id, acme);
        assert_eq!(f.deleted, f.filename == "scratch.csv");
    }
    let po = ledger
        .files
        .values()
        .find(|f| f.filename == "po-4711.pdf")
        .unwrap();
    assert_eq!((po.size, po.sha256), (48213, [0xab; 32]));
    assert_eq!(inv1.attachments, vec![po.id]);
}

// ---------------------------------------------------------------------------
// The scenario and the generator (run once; never again)
// ---------------------------------------------------------------------------

/// 2024-01-15T09:00:00Z; each command happens one minute after the previous.
const START_MICROS: i64 = 1_705_309_200_000_000;
const ID_BASE: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0000;
const REQUEST_BASE: u128 = 0x0000_0000_0000_4000_9000_0000_0000_0000;

struct Scenario {
    ledger: Ledger,
    events: Vec<RecordedEvent>,
    records: Vec<IdempotencyRecord>,
    next_id: u128,
    step: u64,
}

impl Scenario {
    fn new() -> Self {
        Self {
            ledger: Ledger::new(),
            events: Vec::new(),
            records: Vec::new(),
            next_id: 0,
            step: 0,
        }
    }

    fn full(&self) -> HashMap<InvoiceId, Invoice> {
        full_invoices(&self.events)
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(START_MICROS).plus_seconds(60 * self.step as i64)
    }

    /// Runs one command with a deterministic clock, ids and request id; panics if refused.
    fn execute(&mut self, actor: Actor, with_request: bool, command: Command) -> Outcome {
        self.step += 1;
        let now = self.now();
        let request = with_request
            .then(|| RequestId::from_uuid(Uuid::from_u128(REQUEST_BASE + u128::from(self.step))));
        let mut next_id = self.next_id;
        let mut ids = || {
            next_id += 1;
            Uuid::from_u128(ID_BASE + next_id)
        };
        let mut ctx = Ctx { now, ids: &mut ids };
        let before = self.events.len();
        let outcome = self
            .ledger
            .execute(&actor, request, &command, &mut ctx, &mut self.events)
            .unwrap_or_else(|e| panic!("step {}: invariant: {e}", self.step))
            .unwrap_or_else(|e| panic!("step {}: refused: {e}", self.step));
        self.next_id = next_id;
        assert!(
            self.events.len() > before,
            "step {} produced no events",
            self.step
        );
        if let Some(request_id) = request {
            let scope = actor
                .organization()
                .map_or(IdempotencyKey::ADMIN_SCOPE, |o| o.as_uuid());
            self.records.push(IdempotencyRecord {
                key: IdempotencyKey { scope, request_id },
                fingerprint: chain_hash(
                    &GENESIS_HASH,
                    format!("golden step {}", self.step).as_bytes(),
                ),
                status: 200,
                body: format!(
                    "{{\"step\":{},\"lastSeq\":{}}}",
                    self.step, self.ledger.last_seq
                )
                .into_bytes(),
                at: now,
                last_seq: self.ledger.last_seq,
            });
        }
        outcome
    }

    fn admin(&mut self, command: Command) -> Outcome {
        self.execute(Actor::Admin, true, command)
    }

    fn system(&mut self, command: Command) -> Outcome {
        self.execute(Actor::System, false, command)
    }

    fn org(&mut self, who: (OrganizationId, ApiKeyId), command: Command) -> Outcome {
        let actor = Actor::ApiKey {
            organization_id: who.0,
            api_key_id: who.1,
        };
        self.execute(actor, true, command)
    }

    fn file_id(&mut self) -> FileId {
        self.next_id += 1;
        FileId::from_uuid(Uuid::from_u128(ID_BASE + self.next_id))
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn line(description: &str, quantity: &str, unit_price: &str, tax_rate: &str) -> LineItemInput {
    LineItemInput {
        description: description.into(),
        quantity: Quantity::parse(quantity).unwrap(),
        unit_price: unit_price.into(),
        tax_rate: TaxRate::parse(tax_rate).unwrap(),
    }
}

fn action(id: InvoiceId, action: InvoiceAction) -> Command {
    Command::Invoice { id, action }
}

/// The golden scenario. Every figure asserted in `assert_golden_figures` follows from it.
fn scenario() -> Scenario {
    let mut s = Scenario::new();
    let (usd, jpy) = (cur("USD"), cur("JPY"));
    let Outcome::Organization {
        id: a,
        api_key_id: a1,
    } = s.admin(Command::CreateOrganization {
        name: "Acme Supplies GmbH".into(),
        api_key_secret_hash: [0x11; 32],
    })
    else {
        unreachable!()
    };
    let Outcome::Organization {
        id: b,
        api_key_id: b1,
    } = s.admin(Command::CreateOrganization {
        name: "Globex Trading KK".into(),
        api_key_secret_hash: [0x22; 32],
    })
    else {
        unreachable!()
    };
    let acme = (a, a1);
    let globex = (b, b1);
    let deposit = |org, currency, amount: &str, reference: &str| Command::Deposit {
        organization_id: org,
        currency,
        amount: Amount::parse(currency, amount).unwrap(),
        reference: reference.into(),
    };
    s.admin(deposit(b, usd, "10000.00", "wire-0001"));
    s.admin(deposit(b, jpy, "500000", "wire-0002"));
    s.admin(deposit(a, usd, "250.00", "wire-0003"));
    let Outcome::ApiKey(b2) = s.org(
        globex,
        Command::CreateApiKey {
            name: "treasury-approver".into(),
            permissions: vec![Permission::TreasuryRead, Permission::TreasuryApprove],
            secret_hash: [0x33; 32],
            expires_at: Some(Timestamp::from_micros(START_MICROS).plus_seconds(365 * 86_400)),
        },
    ) else {
        unreachable!()
    };
    let approver = (b, b2);
    let Outcome::Connection(conn) = s.org(
        acme,
        Command::RequestConnection {
            counterparty: b,
            role: Party::Seller,
        },
    ) else {
        unreachable!()
    };
    s.org(globex, Command::AcceptConnection { id: conn });
    let po = s.file_id();
    s.org(
        acme,
        Command::StoreFile {
            id: po,
            filename: "po-4711.pdf".into(),
            content_type: "application/pdf".into(),
            size: 48213,
            sha256: [0xab; 32],
        },
    );
    let Outcome::WebhookEndpoint(erp) = s.org(
        acme,
        Command::CreateWebhookEndpoint {
            url: "https://erp.acme.example/hooks/expereon".into(),
            events: vec!["invoice.*".into(), "payment.completed".into()],
            description: Some("ERP".into()),
            secret: "whsec_golden_1".into(),
        },
    ) else {
        unreachable!()
    };

    // ACME-2024-001: drafted, edited line by line, submitted, questioned,
    // approved with an adjustment, due, settled, partly refunded, archived.
    let Outcome::Invoice(inv1) = s.org(
        acme,
        Command::CreateInvoice(NewInvoice {
            connection_id: conn,
            number: Some("ACME-2024-001".into()),
            currency: usd,
            issue_date: Some(date(2024, 1, 15)),
            due_date: date(2024, 2, 14),
            memo: Some("January deliveries".into()),
            line_items: vec![
                line("Widgets", "10", "19.99", "8.25"),
                line("Installation", "1.5", "120.00", "0"),
                line("Shipping", "1", "25.50", "8.25"),
            ],
            attachments: vec![po],
            submit: false,
        }),
    ) else {
        unreachable!()
    };
    s.org(
        acme,
        Command::AddLineItem {
            id: inv1,
            item: line("Rush fee", "1", "10.00", "0"),
        },
    );
    let lines = &s.full()[&inv1].line_items;
    let shipping = lines
        .iter()
        .find(|l| l.description == "Shipping")
        .unwrap()
        .id;
    let rush = lines
        .iter()
        .find(|l| l.description == "Rush fee")
        .unwrap()
        .id;
    s.org(
        acme,
        Command::UpdateLineItem {
            id: inv1,
            line_item_id: shipping,
            patch: LineItemPatch {
                unit_price: Some("30.00".into()),
                ..LineItemPatch::default()
            },
        },
    );
    s.org(
        acme,
        Command::RemoveLineItem {
            id: inv1,
            line_item_id: rush,
        },
    );
    s.org(
        acme,
        Command::UpdateInvoice {
            id: inv1,
            patch: InvoicePatch {
                expected_version: Some(4),
                memo: Some(Some("January deliveries (revised shipping)".into())),
                ..InvoicePatch::default()
            },
        },
    );
    s.org(acme, action(inv1, InvoiceAction::Submit));
    s.org(
        globex,
        action(
            inv1,
            InvoiceAction::RequestInfo {
                question: "Please attach the delivery note.".into(),
            },
        ),
    );
    s.org(
        acme,
        action(
            inv1,
            InvoiceAction::RespondInfo {
                message: "The delivery note is page 2 of po-4711.pdf.".into(),
            },
        ),
    );
    s.org(
        globex,
        action(
            inv1,
            InvoiceAction::Approve {
                adjusted_amount: Some("400.00".into()),
                reason: Some("Installation at the agreed flat rate".into()),
            },
        ),
    );
    s.system(Command::MarkPaymentDue {
        id: inv1,
        today: date(2024, 2, 14),
    });
    let Outcome::Payment(pay1) = s.org(globex, Command::SettleInvoice { id: inv1 }) else {
        unreachable!()
    };
    let payer_tx = s.ledger.payments[&pay1].payer_transaction_id.unwrap();
    let payee_tx = s.ledger.payments[&pay1].payee_transaction_id.unwrap();
    let Outcome::Refund(ref1) = s.org(
        globex,
        Command::CreateRefund {
            transaction_id: payer_tx,
            amount: "50.00".into(),
            reason: "Two widgets arrived damaged".into(),
        },
    ) else {
        unreachable!()
    };
    s.org(acme, Command::ApproveRefund { id: ref1 });
    let Outcome::Refund(ref2) = s.org(
        globex,
        Command::CreateRefund {
            transaction_id: payee_tx,
            amount: "20.00".into(),
            reason: "Late delivery".into(),
        },
    ) else {
        unreachable!()
    };
    s.org(
        acme,
        Command::RejectRefund {
            id: ref2,
            reason: "Delivered on time per carrier record".into(),
        },
    );
    s.org(acme, action(inv1, InvoiceAction::Archive));

    // Withdrawals: approved by a second key, rejected, cancelled.
    let Outcome::Withdrawal(wd1) = s.org(
        globex,
        Command::SubmitWithdrawal {
            currency: jpy,
            amount: Amount::parse(jpy, "120000").unwrap(),
            destination: Destination {
                fields: vec![
                    ("accountNumber".into(), "1234567".into()),
                    ("bankCode".into(), "0005".into()),
                    ("branchCode".into(), "123".into()),
                ],
            },
        },
    ) else {
        unreachable!()
    };
    s.org(approver, Command::ApproveWithdrawal { id: wd1 });
    let Outcome::Withdrawal(wd2) = s.org(
        globex,
        Command::SubmitWithdrawal {
            currency: usd,
            amount: Amount::parse(usd, "1000.00").unwrap(),
            destination: Destination {
                fields: vec![("iban".into(), "DE89370400440532013000".into())],
            },
        },
    ) else {
        unreachable!()
    };
    s.org(
        approver,
        Command::RejectWithdrawal {
            id: wd2,
            reason: "Destination not on the allow-list".into(),
        },
    );
    let Outcome::Withdrawal(wd3) = s.org(
        acme,
        Command::SubmitWithdrawal {
            currency: usd,
            amount: Amount::parse(usd, "75.00").unwrap(),
            destination: Destination {
                fields: vec![("iban".into(), "GB29NWBK60161331926819".into())],
            },
        },
    ) else {
        unreachable!()
    };
    s.org(acme, Command::CancelWithdrawal { id: wd3 });

    // INV-000002 (JPY): created submitted, approved, cancelled by agreement.
    let Outcome::Invoice(inv2) = s.org(
        acme,
        Command::CreateInvoice(NewInvoice {
            connection_id: conn,
            number: None,
            currency: jpy,
            issue_date: None,
            due_date: date(2024, 3, 31),
            memo: None,
            line_items: vec![line("Consulting", "3", "33333", "10")],
            attachments: vec![],
            submit: true,
        }),
    ) else {
        unreachable!()
    };
    s.org(
        globex,
        action(
            inv2,
            InvoiceAction::Approve {
                adjusted_amount: None,
                reason: None,
            },
        ),
    );
    s.org(
        globex,
        action(
            inv2,
            InvoiceAction::RequestCancellation {
                reason: "Project postponed".into(),
            },
        ),
    );
    s.org(acme, action(inv2, InvoiceAction::AcceptCancellation));

    // ACME-2024-003: disputed, cancelled, archived, restored.
    let Outcome::Invoice(inv3) = s.org(
        acme,
        Command::CreateInvoice(NewInvoice {
            connection_id: conn,
            number: Some("ACME-2024-003".into()),
            currency: usd,
            issue_date: Some(date(2024, 1, 15)),
            due_date: date(2024, 1, 31),
            memo: None,
            line_items: vec![line("Support hours", "1.5", "0.99", "50")],
            attachments: vec![],
            submit: true,
        }),
    ) else {
        unreachable!()
    };
    s.org(
        globex,
        action(
            inv3,
            InvoiceAction::Dispute {
                reason: "Support was not ordered".into(),
            },
        ),
    );
    s.org(
        acme,
        action(
            inv3,
            InvoiceAction::Cancel {
                reason: Some("Raised in error".into()),
            },
        ),
    );
    s.org(globex, action(inv3, InvoiceAction::Archive));
    s.org(globex, action(inv3, InvoiceAction::Restore));

    // ACME-2024-004: cancellation refused, settlement fails on a frozen
    // payee balance, the retry completes, the scheduler archives it.
    let Outcome::Invoice(inv4) = s.org(
        acme,
        Command::CreateInvoice(NewInvoice {
            connection_id: conn,
            number: Some("ACME-2024-004".into()),
            currency: usd,
            issue_date: Some(date(2024, 1, 15)),
            due_date: date(2024, 2, 29),
            memo: None,
            line_items: vec![line("Spare parts", "4", "12.50", "19")],
            attachments: vec![],
            submit: true,
        }),
    ) else {
        unreachable!()
    };
    s.org(
        globex,
        action(
            inv4,
            InvoiceAction::Approve {
                adjusted_amount: None,
                reason: None,
            },
        ),
    );
    s.org(
        acme,
        action(
            inv4,
            InvoiceAction::RequestCancellation {
                reason: "Wrong price list".into(),
            },
        ),
    );
    s.org(globex, action(inv4, InvoiceAction::RejectCancellation));
    s.admin(Command::FreezeBalance {
        organization_id: a,
        currency: usd,
        reason: "Compliance review".into(),
    });
    let Outcome::Payment(pay2) = s.org(globex, Command::SettleInvoice { id: inv4 }) else {
        unreachable!()
    };
    s.admin(Command::UnfreezeBalance {
        organization_id: a,
        currency: usd,
        reason: "Review cleared".into(),
    });
    s.org(globex, Command::RetryPayment { id: pay2 });
    s.admin(Command::SetCollateral {
        organization_id: a,
        currency: usd,
        amount: Amount::parse(usd, "100.00").unwrap(),
    });

    // Settings, files, a refused connection, a revoked key.
    s.org(
        acme,
        Command::UpdateWebhookEndpoint {
            id: erp,
            url: None,
            events: None,
            enabled: Some(false),
            description: Some(None),
        },
    );
    s.org(
        acme,
        Command::RotateWebhookSecret {
            id: erp,
            secret: "whsec_golden_2".into(),
            previous_valid_until: Timestamp::parse_rfc3339("2024-01-16T09:00:00Z").unwrap(),
        },
    );
    let Outcome::WebhookEndpoint(staging) = s.org(
        acme,
        Command::CreateWebhookEndpoint {
            url: "https://staging.acme.example/hooks".into(),
            events: vec!["*".into()],
            description: None,
            secret: "whsec_staging".into(),
        },
    ) else {
        unreachable!()
    };
    s.org(acme, Command::DeleteWebhookEndpoint { id: staging });
    let scratch = s.file_id();
    s.org(
        acme,
        Command::StoreFile {
            id: scratch,
            filename: "scratch.csv".into(),
            content_type: "text/csv".into(),
            size: 1024,
            sha256: [0xcd; 32],
        },
    );
    s.org(acme, Command::DeleteFile { id: scratch });
    let Outcome::Connection(reverse) = s.org(
        acme,
        Command::RequestConnection {
            counterparty: b,
            role: Party::Buyer,
        },
    ) else {
        unreachable!()
    };
    s.org(
        globex,
        Command::RejectConnection {
            id: reverse,
            reason: None,
        },
    );
    s.org(globex, Command::RevokeApiKey { id: b2 });
    s.admin(Command::Bulk(vec![
        deposit(a, jpy, "1000", "bulk-0001"),
        deposit(b, usd, "0.01", "bulk-0002"),
    ]));
    s.system(Command::AutoArchive { id: inv4 });
    assert_eq!(s.step, 61);
    s
}

/// Writes the fixture. Refuses to overwrite it: a committed golden log is
/// never regenerated (set EXPEREON_GOLDEN_OUT to write a copy elsewhere).
#[test]
#[ignore = "run once to produce tests/fixtures/golden-v1; never again"]
fn generate_golden_fixture() {
    let dir = std::env::var_os("EXPEREON_GOLDEN_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(fixture_dir);
    for name in ["events.hex", "idempotency.hex"] {
        assert!(
            !dir.join(name).exists(),
            "{} exists: the golden fixture is never regenerated",
            dir.join(name).display()
        );
    }
    std::fs::create_dir_all(&dir).unwrap();
    let s = scenario();
    let mut events = String::from(
        "# Expereon golden log, format v1. One stored event per line:\n\
         # <seq> <codec::encode_event bytes, hex> <sha256(previous hash || encoded), hex>\n",
    );
    let mut previous = GENESIS_HASH;
    for (i, event) in s.events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1);
        let encoded = codec::encode_event(event).unwrap();
        let hash = chain_hash(&previous, &encoded);
        events.push_str(&format!(
            "{} {} {}\n",
            event.seq,
            hex::encode(&encoded),
            hex::encode(hash)
        ));
        previous = hash;
    }
    let mut records = String::from(
        "# Expereon golden idempotency records, format v1. One record per line:\n\
         # <last_seq> <codec::encode(IdempotencyRecord) bytes, hex>\n",
    );
    for record in &s.records {
        records.push_str(&format!(
            "{} {}\n",
            record.last_seq,
            hex::encode(codec::encode(record).unwrap())
        ));
    }
    std::fs::write(dir.join("events.hex"), events).unwrap();
    std::fs::write(dir.join("idempotency.hex"), records).unwrap();
    eprintln!(
        "wrote {} events (head hash {}) and {} idempotency records to {}",
        s.events.len(),
        hex::encode(previous),
        s.records.len(),
        dir.display()
    );
}

// ---------------------------------------------------------------------------
// The write-model snapshot format
// ---------------------------------------------------------------------------

/// `tests/fixtures/write-model-v2/golden.snap`: the golden log's write model
/// at its head, as format 2 of the snapshot file stores it.
fn snapshot_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/write-model-v2/golden.snap")
}

/// The golden log in a fresh sled log, in one append.
fn golden_sled(dir: &Path) -> SledLog {
    let log = open_log(dir).unwrap();
    log.append(&golden_events(), &[]).unwrap();
    assert_eq!(hex::encode(log.head().last_hash), GOLDEN_HEAD_HASH);
    log
}

fn golden_ledger() -> Ledger {
    let mut ledger = Ledger::new();
    for event in golden_events() {
        ledger.apply(&event).unwrap();
    }
    ledger
}

/// Snapshots written by this format must keep loading into the same write
/// model. A change to the write model's layout that breaks this must bump the
/// format byte (so older files are refused by name and the log replayed) and
/// add a fixture of the new format; this one then expects that refusal.
#[test]
fn a_format_2_write_model_snapshot_still_loads_into_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = golden_sled(&dir.path().join("log"));
    let snapshots =
        ledger_core::log::snapshots::WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let file = dir
        .path()
        .join("wm")
        .join(format!("write-model-{GOLDEN_EVENTS:020}.snap"));
    std::fs::copy(snapshot_fixture(), &file).unwrap();
    let loaded = snapshots
        .read(&file, &log)
        .unwrap_or_else(|why| panic!("the format-2 fixture is refused: {why}"));
    assert_eq!(loaded, golden_ledger());
}

#[test]
#[ignore = "writes the format-2 snapshot fixture once; never regenerate it"]
fn generate_write_model_snapshot_fixture() {
    let out = snapshot_fixture();
    assert!(
        !out.exists(),
        "{} exists: fixtures are never regenerated",
        out.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let log = golden_sled(&dir.path().join("log"));
    let snapshots =
        ledger_core::log::snapshots::WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let written = snapshots
        .save(&golden_ledger(), log.head().last_hash)
        .unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::copy(written, out).unwrap();
}

/// Events written since the v1 fixture, pinned byte for byte the same way:
/// a rejection with its reason (a variant appended after v1's) and a webhook
/// endpoint whose secret is sealed (the same `String` slot, holding a
/// `sealed:v1:` value). Later builds must decode these bytes to these
/// events and encode these events to these bytes.
#[test]
fn events_added_after_v1_keep_their_bytes() {
    let at = Timestamp::from_micros(1_765_000_000_000_000);
    let uuid = |n: u128| Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n);
    let org = Actor::ApiKey {
        organization_id: OrganizationId::from_uuid(uuid(1)),
        api_key_id: ApiKeyId::from_uuid(uuid(2)),
    };
    let cases = [
        (
            RecordedEvent {
                seq: 92,
                version: 2,
                at,
                actor: org,
                request_id: None,
                event: ledger_core::events::Event::ConnectionRejectedBecause {
                    id: ConnectionId::from_uuid(uuid(3)),
                    reason: Some("We buy from one distributor.".into()),
                },
            },
            "015c0280c0bae0c2d0a206021001900000000070008000000000000001100190000000007000800000000000000200331001900000000070008000000000000003011c5765206275792066726f6d206f6e65206469737472696275746f722e",
        ),
        (
            RecordedEvent {
                seq: 93,
                version: 1,
                at,
                actor: org,
                request_id: Some(RequestId::from_uuid(uuid(4))),
                event: ledger_core::events::Event::WebhookEndpointCreated {
                    id: WebhookEndpointId::from_uuid(uuid(5)),
                    organization_id: OrganizationId::from_uuid(uuid(1)),
                    url: "https://example.com/hooks".into(),
                    events: vec!["invoice.*".into()],
                    description: None,
                    secret: "sealed:v1:0011223344556677:AAAA".into(),
                },
            },
            "015d0180c0bae0c2d0a20602100190000000007000800000000000000110019000000000700080000000000000020110019000000000700080000000000000042d100190000000007000800000000000000510019000000000700080000000000000011968747470733a2f2f6578616d706c652e636f6d2f686f6f6b730109696e766f6963652e2a001f7365616c65643a76313a303031313232333334343535363637373a41414141",
        ),
    ];
    for (event, pinned) in cases {
        let bytes = codec::encode_event(&event).unwrap();
        assert_eq!(hex::encode(&bytes), pinned, "{}", event.event.type_name());
        assert_eq!(codec::decode_event(&unhex(pinned)).unwrap(), event);
    }
}
