//! The webhook outbox as rows of the SQL read models.
//!
//! - After a crash the projection resumes at its SQL position and derives
//!   exactly the deliveries it had not committed: the same messages under the
//!   same ids, none twice; a restart on a complete outbox adds nothing.
//! - The upgrade from the previous version's sled outbox imports its
//!   deliveries (attempts included), derives nothing for the history it
//!   covered, everything after its checkpoint, and sets the directory aside.
//! - The payloads derived from the SQL rows are byte for byte those the
//!   in-memory read model derives, for every event of the golden log.

use ledger_core::domain::{Command, Outcome};
use ledger_core::engine::{Engine, EngineConfig, EngineHandle, Reply, Submission};
use ledger_core::events::{Actor, RecordedEvent};
use ledger_core::ids::{OrganizationId, WebhookEndpointId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency};
use ledger_core::time::{ManualClock, Timestamp};
use projections::sql::outbox::{Attempt, Delivery, DeliveryStatus, LegacyOutbox, Outbox};
use projections::sql::{self, rows};
use projections::webhooks::{self, Subject};
use projections::{Projections, ReadModel};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod support;
use support::golden;

async fn run(engine: &EngineHandle, actor: Actor, command: Command) -> (Outcome, u64) {
    let reply = engine
        .submit(Submission {
            actor,
            idempotency: None,
            command,
            render: None,
        })
        .await
        .expect("engine answers");
    match reply {
        Reply::Executed {
            result: Ok(outcome),
            last_seq,
            ..
        } => (outcome, last_seq),
        other => panic!("command failed: {other:?}"),
    }
}

fn event_ids(outbox: &Outbox, endpoint: WebhookEndpointId) -> Vec<String> {
    let (page, _) = outbox.list(endpoint, None, None, 200).expect("list");
    page.into_iter().map(|d| d.event_id).collect()
}

/// A log with an organization, an endpoint for `deposit.*`, an endpoint for
/// `invoice.*` (which hears nothing) and `deposits` deposits.
struct Scene {
    dir: tempfile::TempDir,
    log: Arc<SledLog>,
    clock: Arc<ManualClock>,
    org: OrganizationId,
    endpoint: WebhookEndpointId,
    quiet: WebhookEndpointId,
    /// The seq of each deposit.
    deposits: Vec<u64>,
}

impl Scene {
    fn dyn_log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    fn engine(&self) -> (EngineHandle, std::thread::JoinHandle<()>) {
        Engine::start(self.dyn_log(), self.clock.clone(), EngineConfig::default()).expect("engine")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `while_empty` runs on the log before anything is in it.
async fn scene(deposits: usize, while_empty: impl FnOnce(&Path, &SledLog)) -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(SledLog::open(dir.path().join("log")).expect("log"));
    while_empty(dir.path(), &log);
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_700_000_000_000_000,
    )));
    let dyn_log: Arc<dyn EventLog> = log.clone();
    let (engine, writer) =
        Engine::start(dyn_log, clock.clone(), EngineConfig::default()).expect("engine");
    let (
        Outcome::Organization {
            id: org,
            api_key_id,
        },
        _,
    ) = run(
        &engine,
        Actor::Admin,
        Command::CreateOrganization {
            name: "Hooked".into(),
            api_key_secret_hash: [7; 32],
        },
    )
    .await
    else {
        panic!("not an organization")
    };
    let actor = Actor::ApiKey {
        organization_id: org,
        api_key_id,
    };
    let mut endpoints = Vec::new();
    for filter in ["deposit.*", "invoice.*"] {
        let (Outcome::WebhookEndpoint(id), _) = run(
            &engine,
            actor,
            Command::CreateWebhookEndpoint {
                url: "https://example.com/hook".into(),
                events: vec![filter.into()],
                description: None,
                secret: "whsec_AAAA".into(),
            },
        )
        .await
        else {
            panic!("not an endpoint")
        };
        endpoints.push(id);
    }
    let usd = Currency::parse("USD").expect("USD");
    let mut seqs = Vec::new();
    for i in 1..=deposits {
        let (_, seq) = run(
            &engine,
            Actor::Admin,
            Command::Deposit {
                organization_id: org,
                currency: usd,
                amount: Amount::parse(usd, &format!("{i}.00")).expect("amount"),
                reference: format!("deposit {i}"),
            },
        )
        .await;
        seqs.push(seq);
    }
    drop(engine);
    writer.join().expect("writer stops");
    Scene {
        dir,
        log,
        clock,
        org,
        endpoint: endpoints[0],
        quiet: endpoints[1],
        deposits: seqs,
    }
}

fn events(log: &SledLog, through: u64) -> Vec<RecordedEvent> {
    log.read_all(1)
        .map(|e| e.expect("event"))
        .take_while(|e| e.seq <= through)
        .collect()
}

/// Folds `events` into the database at `path` as one committed batch.
fn fold(path: &Path, log: &SledLog, events: &[RecordedEvent]) {
    let mut conn = sql::open_writer(path).expect("db");
    let last = events.last().expect("events").seq;
    let hash = sql::hash_at(log, last).expect("hash");
    sql::fold::apply_batch(&mut conn, events, hash).expect("batch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_derives_exactly_what_the_outbox_lacks() {
    // Both databases are set up while the log is empty: they deliver everything.
    let mut setup = Vec::new();
    let scene = scene(3, |dir, log| {
        for name in ["complete.sqlite", "crashed.sqlite"] {
            let path = dir.join(name);
            sql::outbox::open_projection(&path, log, None).expect("set up");
            setup.push(path);
        }
    })
    .await;
    let (complete, crashed) = (&setup[0], &setup[1]);
    let (engine, writer) = scene.engine();
    let last = *scene.deposits.last().expect("deposits");

    let projections =
        Projections::start(scene.dyn_log(), &engine, complete, None).expect("projections");
    let outbox = projections.outbox().clone();
    let all = event_ids(&outbox, scene.endpoint);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(event_ids(&outbox, scene.quiet).is_empty());
    drop((projections, outbox));

    // A crash after the batch of the first deposit committed, before the
    // others': the database stands there, with that deposit's delivery.
    let first = scene.deposits[0];
    fold(crashed, &scene.log, &events(&scene.log, first));
    let projections =
        Projections::start(scene.dyn_log(), &engine, crashed, None).expect("projections");
    let outbox = projections.outbox().clone();
    let recovered = event_ids(&outbox, scene.endpoint);
    assert_eq!(recovered.len(), 3, "{recovered:?}");
    assert_eq!(
        recovered.iter().collect::<BTreeSet<_>>(),
        all.iter().collect::<BTreeSet<_>>(),
        "the same messages, under the same ids"
    );
    let conn = sql::open_reader(crashed).expect("reader");
    assert_eq!(sql::position(&conn).expect("position").0, last);
    drop((projections, outbox, conn));

    // A restart on the complete outbox adds nothing.
    let projections =
        Projections::start(scene.dyn_log(), &engine, complete, None).expect("projections");
    let outbox = projections.outbox().clone();
    assert_eq!(event_ids(&outbox, scene.endpoint), all);

    // Only the organization's own endpoint, and only matching types, got anything.
    let other = OrganizationId::new();
    let mut model = ReadModel::new();
    for e in events(&scene.log, scene.log.head().last_seq) {
        model.apply(&e).expect("apply");
    }
    assert!(webhooks::targets(&model, other, "deposit.received").is_empty());
    assert!(webhooks::targets(&model, scene.org, "payment.due").is_empty());
    assert_eq!(
        webhooks::targets(&model, scene.org, "invoice.created"),
        vec![scene.quiet]
    );
    assert_eq!(
        webhooks::targets(&model, scene.org, "deposit.received"),
        vec![scene.endpoint]
    );
    drop(model);
    drop((projections, outbox));
    drop(engine);
    writer.join().expect("writer stops");
}

/// What the previous version's outbox held for the events through `through`
/// (as its in-memory derivation made them), the first one SUCCEEDED.
fn legacy_deliveries(log: &SledLog, through: u64) -> Vec<Delivery> {
    let mut model = ReadModel::new();
    model.webhooks_after = Some(0);
    for e in events(log, through) {
        model.apply(&e).expect("apply");
    }
    let mut out = Vec::new();
    for entry in std::mem::take(&mut model.webhook_outbox) {
        let m = entry.message;
        for endpoint in entry.endpoints {
            out.push(Delivery::new(
                endpoint,
                m.organization_id,
                m.event_id.clone(),
                m.event_type.to_string(),
                m.seq,
                m.created_at,
                m.payload.clone(),
            ));
        }
    }
    if let Some(d) = out.first_mut() {
        d.attempts.push(Attempt {
            at: d.created_at,
            status_code: Some(204),
            duration_ms: 3,
            error: None,
            response_body: None,
        });
        d.status = DeliveryStatus::Succeeded;
        d.next_attempt_at = None;
    }
    out
}

async fn upgrade(existing_sql: bool) {
    let scene = scene(3, |_, _| {}).await;
    let checkpoint = scene.deposits[1];
    let last = scene.deposits[2];
    let legacy = scene.path("outbox");
    let previous = legacy_deliveries(&scene.log, checkpoint);
    assert_eq!(previous.len(), 2);
    LegacyOutbox::write(&legacy, checkpoint, &previous).expect("legacy outbox");
    let db = scene.path(sql::FILE);
    if existing_sql {
        // The previous version kept SQL read models too (no outbox in them),
        // already past the outbox's checkpoint.
        let mut conn = sql::open_writer(&db).expect("db");
        sql::fold::catch_up(&mut conn, scene.log.as_ref(), 2).expect("catch up");
        assert_eq!(sql::position(&conn).expect("position").0, last);
    }

    let (engine, writer) = scene.engine();
    let projections =
        Projections::start(scene.dyn_log(), &engine, &db, Some(&legacy)).expect("projections");
    let outbox = projections.outbox().clone();
    let (mut now, _) = outbox.list(scene.endpoint, None, None, 50).expect("list");
    now.reverse();
    assert_eq!(now.len(), 3, "{now:#?}");
    assert_eq!(
        &now[..2],
        &previous[..],
        "imported as they were, attempts included"
    );
    assert_eq!(now[2].seq, last, "derived after the checkpoint only");
    assert_eq!(now[2].event_id, format!("evt_{last}_0"));
    assert!(!legacy.exists());
    assert!(scene.path("outbox.imported").exists());
    let conn = sql::open_reader(&db).expect("reader");
    assert_eq!(
        sql::outbox::webhooks_from_seq(&conn).expect("from"),
        Some(checkpoint)
    );
    drop((projections, outbox, conn));

    // A second start imports nothing again and derives nothing again.
    let projections =
        Projections::start(scene.dyn_log(), &engine, &db, Some(&legacy)).expect("projections");
    let outbox = projections.outbox().clone();
    assert_eq!(event_ids(&outbox, scene.endpoint).len(), 3);
    assert!(!scene.path("outbox.imported.1").exists());
    drop((projections, outbox));
    drop(engine);
    writer.join().expect("writer stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_imports_the_sled_outbox_and_resends_nothing() {
    upgrade(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_refolds_sql_read_models_that_ran_ahead_of_the_sled_outbox() {
    upgrade(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_without_its_outbox_sends_no_history() {
    // A restored backup: the log alone. Its history was delivered, or not,
    // by the server it came from.
    let scene = scene(2, |_, _| {}).await;
    let db = scene.path(sql::FILE);
    let (engine, writer) = scene.engine();
    let projections = Projections::start(scene.dyn_log(), &engine, &db, None).expect("projections");
    let outbox = projections.outbox().clone();
    assert!(event_ids(&outbox, scene.endpoint).is_empty());
    // What comes next is delivered.
    let usd = Currency::parse("USD").expect("USD");
    let (_, seq) = run(
        &engine,
        Actor::Admin,
        Command::Deposit {
            organization_id: scene.org,
            currency: usd,
            amount: Amount::parse(usd, "9.00").expect("amount"),
            reference: "after".into(),
        },
    )
    .await;
    projections
        .wait_for(seq, std::time::Duration::from_secs(30))
        .await
        .expect("the read models reach the deposit");
    assert_eq!(
        event_ids(&outbox, scene.endpoint),
        vec![format!("evt_{seq}_0")]
    );
    drop((projections, outbox));
    drop(engine);
    writer.join().expect("writer stops");
}

#[test]
fn the_worker_api_keeps_the_schedule_and_pages_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(sql::FILE);
    drop(sql::open_writer(&path).expect("db"));
    let outbox = Outbox::open(sql::Readers::new(&path)).expect("outbox");
    let ep = WebhookEndpointId::new();
    let org = OrganizationId::new();
    let at = |s: i64| Timestamp::from_micros(s * 1_000_000);
    let mut ids = Vec::new();
    for seq in 1..=5u64 {
        let d = Delivery::new(
            ep,
            org,
            format!("evt_{seq}_0"),
            "deposit.received".into(),
            seq,
            at(seq as i64),
            br#"{"id":"x"}"#.to_vec(),
        );
        ids.push(outbox.insert(d).expect("insert").id);
    }
    // The same message again is the same delivery.
    let again = Delivery::new(
        ep,
        org,
        "evt_3_0".into(),
        "x".into(),
        3,
        at(3),
        b"{}".to_vec(),
    );
    assert_eq!(outbox.insert(again).expect("insert").id, ids[2]);

    // Paging, newest first, with a status filter.
    let (p1, c1) = outbox.list(ep, None, None, 2).expect("list");
    let (p2, c2) = outbox.list(ep, c1, None, 2).expect("list");
    let (p3, c3) = outbox.list(ep, c2, None, 2).expect("list");
    let seqs: Vec<u64> = p1.iter().chain(&p2).chain(&p3).map(|d| d.seq).collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    assert!(c3.is_none());

    // The schedule follows updates.
    assert_eq!(outbox.due(at(3), 10).expect("due").len(), 3);
    let later = at(100);
    outbox
        .update(ids[0], |d| {
            d.attempts.push(Attempt {
                at: at(1),
                status_code: Some(500),
                duration_ms: 7,
                error: Some("HTTP 500".into()),
                response_body: Some("boom".into()),
            });
            d.next_attempt_at = Some(later);
        })
        .expect("update");
    assert_eq!(outbox.due(at(3), 10).expect("due").len(), 2);
    assert_eq!(outbox.next_due().expect("next"), Some(at(2)));
    let done = outbox
        .update(ids[1], |d| d.status = DeliveryStatus::Succeeded)
        .expect("update")
        .expect("known");
    assert_eq!(done.next_attempt_at, None, "only PENDING is scheduled");
    let (failed, _) = outbox
        .list(ep, None, Some(DeliveryStatus::Succeeded), 10)
        .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(outbox.pending_count().expect("count"), 4);

    // Held (disabled endpoint), then resumed.
    outbox
        .update(ids[2], |d| d.next_attempt_at = None)
        .expect("update");
    assert_eq!(outbox.pending_count().expect("count"), 3);
    assert_eq!(outbox.resume(ep, at(50)).expect("resume"), 1);
    assert_eq!(outbox.resume(ep, at(50)).expect("resume"), 0);

    // Attempts and redeliveries read back in order.
    let request = uuid::Uuid::now_v7();
    let d = outbox
        .update(ids[0], |d| {
            d.status = DeliveryStatus::Pending;
            d.schedule_base = 1;
            d.redelivered_by.push(request);
        })
        .expect("update")
        .expect("known");
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].response_body.as_deref(), Some("boom"));
    assert_eq!(d.redelivered_by, vec![request]);
    assert_eq!(d.attempts_in_round(), 0);
    assert_eq!(outbox.get(ids[0]).expect("get"), Some(d));

    // Many at once (the worker's batches): in order, an unknown id is None,
    // and each change lands on its own delivery.
    let unknown = uuid::Uuid::now_v7();
    type Change = Box<dyn FnOnce(&mut Delivery)>;
    let changes: Vec<(uuid::Uuid, Change)> = vec![
        (ids[3], Box::new(|d| d.status = DeliveryStatus::Succeeded)),
        (unknown, Box::new(|d| d.status = DeliveryStatus::Failed)),
        (ids[4], Box::new(|d| d.status = DeliveryStatus::Failed)),
    ];
    let done = outbox
        .update_many(
            changes
                .into_iter()
                .map(|(id, f)| (id, move |d: &mut Delivery| f(d)))
                .collect(),
        )
        .expect("update_many");
    let statuses: Vec<Option<DeliveryStatus>> =
        done.iter().map(|d| d.as_ref().map(|d| d.status)).collect();
    assert_eq!(
        statuses,
        vec![
            Some(DeliveryStatus::Succeeded),
            None,
            Some(DeliveryStatus::Failed)
        ]
    );
    assert_eq!(done[0].as_ref().map(|d| d.id), Some(ids[3]));
    assert_eq!(outbox.get(ids[4]).expect("get"), done[2].clone());
}

#[test]
fn sql_payloads_are_the_in_memory_payloads_byte_for_byte() {
    let events = golden();
    // Every organization listens to everything, on an endpoint of its own.
    let mut memory = ReadModel::new();
    for (e, _) in &events {
        memory.apply(e).expect("apply");
    }
    let listening: HashMap<OrganizationId, WebhookEndpointId> = memory
        .ledger
        .organizations
        .keys()
        .map(|org| (*org, WebhookEndpointId::new()))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = sql::open_writer(&dir.path().join(sql::FILE)).expect("db");
    conn.execute(
        "INSERT INTO webhook_outbox_state (id, webhooks_from_seq, created_at_utc) VALUES (1, 0, 'now')",
        [],
    )
    .expect("set up");
    for (org, id) in &listening {
        let endpoint = ledger_core::domain::webhook_endpoint::WebhookEndpoint {
            id: *id,
            organization_id: *org,
            url: "https://example.com/all".into(),
            events: vec!["*".into()],
            description: None,
            enabled: true,
            secret: String::new(),
            previous_secret: None,
            deleted: false,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        };
        rows::save_webhook_endpoint(&conn, &endpoint, 0).expect("endpoint");
    }
    for part in events.chunks(7) {
        let batch: Vec<RecordedEvent> = part.iter().map(|(e, _)| e.clone()).collect();
        sql::fold::apply_batch(&mut conn, &batch, part.last().expect("part").1).expect("batch");
    }

    // The in-memory derivation, event by event, to the same endpoints.
    let mut model = ReadModel::new();
    let mut expected: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (e, _) in &events {
        model.apply(e).expect("apply");
        let entries: Result<_, std::convert::Infallible> = webhooks::route(
            e,
            |key| Ok(Subject::from_model(key, &model)),
            |org, _| Ok(listening.get(&org).into_iter().copied().collect()),
        );
        for entry in entries.unwrap_or_else(|never| match never {}) {
            for endpoint in entry.endpoints {
                expected.push((
                    endpoint.to_string(),
                    entry.message.event_id.clone(),
                    entry.message.payload.clone(),
                ));
            }
        }
    }
    let mut stmt = conn
        .prepare(
            "SELECT endpoint_id, event_id, payload FROM webhook_deliveries ORDER BY seq, event_id, endpoint_id",
        )
        .expect("query");
    let ours: BTreeSet<String> = listening.values().map(|id| id.to_string()).collect();
    let got: Vec<(String, String, Vec<u8>)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?.into_bytes()))
        })
        .expect("rows")
        .map(|r| r.expect("row"))
        .filter(|(endpoint, _, _)| ours.contains(endpoint))
        .collect();
    expected.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert!(expected.len() > 20, "the golden log makes messages");
    let types: BTreeSet<String> = expected
        .iter()
        .map(|(_, _, p)| {
            serde_json::from_slice::<serde_json::Value>(p).expect("json")["type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(types.contains("deposit.received"), "{types:?}");
    assert_eq!(got_sorted, expected);
}
