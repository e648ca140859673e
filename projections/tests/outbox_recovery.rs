//! The outbox after a crash: the projection, rebuilt from sequence 0 at start,
//! hands the outbox exactly the messages after its checkpoint, so deliveries
//! the crash kept from being written are created, and none twice.

use ledger_core::domain::{Command, Outcome};
use ledger_core::engine::{Engine, EngineConfig, EngineHandle, Reply, Submission};
use ledger_core::events::{Actor, RecordedEvent};
use ledger_core::ids::{OrganizationId, WebhookEndpointId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency};
use ledger_core::time::{ManualClock, Timestamp};
use projections::outbox::Outbox;
use projections::{webhooks, Projections, ReadModel};
use std::collections::BTreeSet;
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_derives_exactly_what_the_outbox_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(SledLog::open(dir.path().join("log")).expect("log"));
    let dyn_log: Arc<dyn EventLog> = log.clone();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_700_000_000_000_000,
    )));
    let (engine, writer) =
        Engine::start(dyn_log.clone(), clock.clone(), EngineConfig::default()).expect("engine");
    let projections =
        Projections::start_with_outbox(dyn_log.clone(), &engine, &dir.path().join("outbox"))
            .expect("projections");

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
    let (Outcome::WebhookEndpoint(endpoint), _) = run(
        &engine,
        Actor::ApiKey {
            organization_id: org,
            api_key_id,
        },
        Command::CreateWebhookEndpoint {
            url: "https://example.com/hook".into(),
            events: vec!["deposit.*".into()],
            description: None,
            secret: "whsec_AAAA".into(),
        },
    )
    .await
    else {
        panic!("not an endpoint")
    };
    let usd = Currency::parse("USD").expect("USD");
    let mut after_first = 0;
    let mut last = 0;
    for i in 1..=3 {
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
        if i == 1 {
            after_first = seq;
        }
        last = seq;
    }
    projections.wait_for(last).await;
    let outbox = projections.outbox().expect("outbox").clone();
    let all = event_ids(&outbox, endpoint);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(outbox.checkpoint().expect("checkpoint"), last);
    drop(projections);
    drop(outbox);
    drop(engine);
    writer.join().expect("writer stops");

    // A crash after the first deposit's deliveries were written, before the
    // others': an outbox holding exactly that, with its checkpoint there.
    let crashed = dir.path().join("outbox-crashed");
    {
        let partial = Outbox::open(&crashed, 0).expect("outbox");
        let mut model = ReadModel::new();
        model.webhooks_after = Some(0);
        for e in log.read_all(1) {
            let e: RecordedEvent = e.expect("event");
            if e.seq > after_first {
                break;
            }
            model.apply(&e).expect("apply");
        }
        let entries = std::mem::take(&mut model.webhook_outbox);
        assert_eq!(entries.len(), 1);
        partial.record(after_first, &entries).expect("record");
    }

    // Restart on it: the two missing deliveries appear, the first stays single.
    let (engine, writer) =
        Engine::start(dyn_log.clone(), clock.clone(), EngineConfig::default()).expect("engine");
    let projections =
        Projections::start_with_outbox(dyn_log.clone(), &engine, &crashed).expect("projections");
    let outbox = projections.outbox().expect("outbox").clone();
    let recovered = event_ids(&outbox, endpoint);
    assert_eq!(recovered.len(), 3, "{recovered:?}");
    assert_eq!(
        recovered.iter().collect::<BTreeSet<_>>(),
        all.iter().collect::<BTreeSet<_>>(),
        "the same messages, under the same ids"
    );
    assert_eq!(outbox.checkpoint().expect("checkpoint"), last);
    drop(projections);
    drop(outbox);

    // And a restart on the complete outbox adds nothing.
    let projections =
        Projections::start_with_outbox(dyn_log.clone(), &engine, &dir.path().join("outbox"))
            .expect("projections");
    let outbox = projections.outbox().expect("outbox").clone();
    assert_eq!(event_ids(&outbox, endpoint), all);

    // Only the organization's own endpoint, and only matching types, got anything.
    let other = OrganizationId::new();
    let model = projections.read().expect("model");
    assert!(webhooks::targets(&model, other, "deposit.received").is_empty());
    assert!(webhooks::targets(&model, org, "invoice.created").is_empty());
    assert_eq!(
        webhooks::targets(&model, org, "deposit.received"),
        vec![endpoint]
    );
    drop(model);
    drop(projections);
    drop(engine);
    writer.join().expect("writer stops");
}
