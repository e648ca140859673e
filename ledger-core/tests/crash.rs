//! Crash test: a child process (this same test binary, re-executed) runs the
//! engine on a sled log under concurrent load and reports every command the
//! engine acknowledged; the parent SIGKILLs it at a random moment, reopens
//! the log and checks that nothing acknowledged was lost and nothing half
//! written is visible.
//!
//! Half of the iterations start from an empty directory; the other half keep
//! reopening one directory that survived every earlier crash, so recovery of a
//! log with history (and of a log crashed during its own recovery) is covered.
//!
//! `EXPEREON_CRASH_ITERATIONS` overrides the number of iterations (default 24).

use ledger_core::domain::{Command, Outcome};
use ledger_core::engine::{
    self, Engine, EngineConfig, EngineError, EngineHandle, Idempotency, Reply, Submission,
};
use ledger_core::events::{Actor, Destination, Event, Hold, RecordedEvent};
use ledger_core::ids::{ApiKeyId, BalanceId, OrganizationId, RequestId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::{
    chain_hash, verify_link, EventLog, Hash, IdempotencyKey, LogError, GENESIS_HASH,
};
use ledger_core::money::{Amount, Currency};
use ledger_core::time::SystemClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use uuid::Uuid;

const CHILD_DIR_ENV: &str = "EXPEREON_CRASH_CHILD_DIR";
const CHILD_TAG_ENV: &str = "EXPEREON_CRASH_CHILD_TAG";
const ITERATIONS_ENV: &str = "EXPEREON_CRASH_ITERATIONS";
const CHILD_TEST: &str = "crash_child";
/// Every line the child means for the parent carries this marker; libtest's own
/// output (which may share a line with ours under `--nocapture`) is ignored.
const MARK: &str = "@@";
const WORKERS: usize = 24;
/// The child gives up on its own after this long, in case the parent died.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Shared between parent and child
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Admin `CreateOrganization`: OrganizationCreated + ApiKeyCreated.
    Org,
    /// Admin `Deposit`: [BalanceOpened] + FundsDeposited.
    Dep,
    /// Organization `SubmitWithdrawal`: WithdrawalSubmitted + FundsReserved.
    Wdr,
    /// Organization `CreateWebhookEndpoint` with a ~100 KB description: one
    /// event big enough that sled stores it (or its tree node) as a separate
    /// blob file, so that path is crashed too.
    Hook,
}

/// The big description of a `Hook` request: its request id, repeated.
fn hook_description(request: RequestId) -> String {
    request.to_string().repeat(2800)
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Org => "ORG",
            Kind::Dep => "DEP",
            Kind::Wdr => "WDR",
            Kind::Hook => "HOOK",
        }
    }
    fn parse(s: &str) -> Kind {
        match s {
            "ORG" => Kind::Org,
            "DEP" => Kind::Dep,
            "WDR" => Kind::Wdr,
            "HOOK" => Kind::Hook,
            other => panic!("unknown command kind {other:?}"),
        }
    }
}

/// What identifies a request, as the HTTP layer would hash method, path and body.
fn fingerprint(kind: Kind, request: RequestId) -> Hash {
    chain_hash(
        &GENESIS_HASH,
        format!("{} {request}", kind.name()).as_bytes(),
    )
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn jpy() -> Currency {
    Currency::parse("JPY").unwrap()
}

// ---------------------------------------------------------------------------
// Child
// ---------------------------------------------------------------------------

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

/// One line to the parent, written and flushed before anything that depends on
/// it happens (a SIGKILL loses only what is still in our own buffers).
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK} {line}");
    let _ = out.flush();
}

/// The child: does nothing unless the parent set `EXPEREON_CRASH_CHILD_DIR`.
#[test]
#[ignore = "child process of crash_recovery_under_load; inert without EXPEREON_CRASH_CHILD_DIR"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let tag = std::env::var(CHILD_TAG_ENV).unwrap_or_else(|_| "0".into());
    report("OPENING");
    let log = match open_log(Path::new(&dir)) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            report(&format!("FAIL cannot open the log: {e}"));
            return;
        }
    };
    let (handle, _writer) = match Engine::start(log, Arc::new(SystemClock), EngineConfig::default())
    {
        Ok(started) => started,
        Err(e) => {
            report(&format!("FAIL cannot start the engine: {e}"));
            return;
        }
    };
    report("READY");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        for worker in 0..WORKERS {
            tokio::spawn(work(handle.clone(), tag.clone(), worker));
        }
        tokio::time::sleep(CHILD_LIFETIME).await;
    });
    report("FAIL the child was not killed in time");
}

async fn submit(
    handle: &EngineHandle,
    actor: Actor,
    scope: Uuid,
    kind: Kind,
    request: RequestId,
    command: Command,
) -> Result<Reply, EngineError> {
    handle
        .submit(Submission {
            actor,
            idempotency: Some(Idempotency {
                key: IdempotencyKey {
                    scope,
                    request_id: request,
                },
                fingerprint: fingerprint(kind, request),
            }),
            command,
            render: None,
        })
        .await
}

/// Sends one command; reports SENT before and ACK after it was acknowledged.
/// Returns the outcome and the acknowledged `last_seq`, or `None` after a FAIL.
async fn send(
    handle: &EngineHandle,
    actor: Actor,
    kind: Kind,
    command: Command,
    describe: impl Fn(&Outcome) -> String,
    rng: &mut StdRng,
) -> Option<(Outcome, u64)> {
    send_as(handle, actor, kind, |_| command, describe, rng).await
}

/// [`send`], with the command built from its request id.
async fn send_as(
    handle: &EngineHandle,
    actor: Actor,
    kind: Kind,
    command: impl FnOnce(RequestId) -> Command,
    describe: impl Fn(&Outcome) -> String,
    rng: &mut StdRng,
) -> Option<(Outcome, u64)> {
    let scope = actor
        .organization()
        .map_or(IdempotencyKey::ADMIN_SCOPE, |o| o.as_uuid());
    let request = RequestId::from_uuid(Uuid::new_v4());
    let command = command(request);
    report(&format!("SENT {} {scope} {request}", kind.name()));
    let reply = submit(handle, actor, scope, kind, request, command.clone()).await;
    let (outcome, last_seq) = match reply {
        Ok(Reply::Executed {
            result: Ok(outcome),
            last_seq,
            ..
        }) => (outcome, last_seq),
        other => {
            report(&format!("FAIL {} {request}: {other:?}", kind.name()));
            return None;
        }
    };
    report(&format!(
        "ACK {} {scope} {request} {last_seq} {}",
        kind.name(),
        describe(&outcome)
    ));
    // Now and then, retry the request (must replay the answer, not run again)
    // and reuse its key for something else (must be refused).
    if rng.gen_ratio(1, 6) {
        match submit(handle, actor, scope, kind, request, command.clone()).await {
            Ok(Reply::Replayed(record)) if record.last_seq == last_seq => {}
            other => {
                report(&format!(
                    "FAIL retry of {request} was not replayed: {other:?}"
                ));
                return None;
            }
        }
        let other_kind = if kind == Kind::Org {
            Kind::Dep
        } else {
            Kind::Org
        };
        match submit(handle, actor, scope, other_kind, request, command).await {
            Err(EngineError::IdempotencyKeyReused) => {}
            other => {
                report(&format!(
                    "FAIL reuse of {request} was not refused: {other:?}"
                ));
                return None;
            }
        }
    }
    Some((outcome, last_seq))
}

async fn work(handle: EngineHandle, tag: String, worker: usize) {
    let mut rng = StdRng::from_entropy();
    for round in 0.. {
        let name = format!("Crash Co {tag}-{worker}-{round}");
        let Some((
            Outcome::Organization {
                id: org,
                api_key_id,
            },
            _,
        )) = send(
            &handle,
            Actor::Admin,
            Kind::Org,
            Command::CreateOrganization {
                name,
                api_key_secret_hash: [worker as u8; 32],
            },
            |o| match o {
                Outcome::Organization { id, api_key_id } => {
                    format!("{id} {}", api_key_id.as_uuid())
                }
                other => format!("unexpected {other:?}"),
            },
            &mut rng,
        )
        .await
        else {
            return;
        };
        let mut deposited: Option<(Currency, Amount)> = None;
        for _ in 0..rng.gen_range(1..=3) {
            let currency = if rng.gen_bool(0.5) { usd() } else { jpy() };
            let minor: i64 = rng.gen_range(1..1_000_000);
            let amount = Amount::from_decimal(
                currency,
                rust_decimal::Decimal::new(minor, currency.minor_units()),
            )
            .unwrap();
            let text = amount.format(currency);
            let Some(_) = send(
                &handle,
                Actor::Admin,
                Kind::Dep,
                Command::Deposit {
                    organization_id: org,
                    currency,
                    amount,
                    reference: format!("crash-{tag}-{worker}-{round}"),
                },
                |_| format!("{org} {currency} {text}"),
                &mut rng,
            )
            .await
            else {
                return;
            };
            deposited.get_or_insert((currency, amount));
        }
        if let Some((currency, amount)) = deposited.filter(|_| rng.gen_bool(0.5)) {
            let text = amount.format(currency);
            let actor = Actor::ApiKey {
                organization_id: org,
                api_key_id,
            };
            let Some(_) = send(
                &handle,
                actor,
                Kind::Wdr,
                Command::SubmitWithdrawal {
                    currency,
                    amount,
                    destination: Destination {
                        fields: vec![("iban".into(), "DE89370400440532013000".into())],
                    },
                },
                |_| format!("{org} {currency} {text}"),
                &mut rng,
            )
            .await
            else {
                return;
            };
        }
        if rng.gen_ratio(1, 8) {
            let actor = Actor::ApiKey {
                organization_id: org,
                api_key_id,
            };
            let Some(_) = send_as(
                &handle,
                actor,
                Kind::Hook,
                |request| Command::CreateWebhookEndpoint {
                    url: "https://crash.example/hooks".into(),
                    events: vec!["*".into()],
                    description: Some(hook_description(request)),
                    secret: "whsec_crash".into(),
                },
                |_| format!("{org}"),
                &mut rng,
            )
            .await
            else {
                return;
            };
        }
    }
}

// ---------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sent {
    kind: Kind,
    key: IdempotencyKey,
}

#[derive(Debug, Clone)]
struct Ack {
    kind: Kind,
    key: IdempotencyKey,
    last_seq: u64,
    org: OrganizationId,
    /// ORG: the default API key; otherwise unused.
    api_key: Option<ApiKeyId>,
    /// DEP and WDR: the currency and amount.
    money: Option<(Currency, Amount)>,
}

/// What one run of the child reported.
#[derive(Debug, Default)]
struct Transcript {
    ready: bool,
    sent: Vec<Sent>,
    acks: Vec<Ack>,
    failures: Vec<String>,
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_else(|e| panic!("bad uuid {s:?}: {e}"))
}

impl Transcript {
    fn take(&mut self, line: &str) {
        let Some(at) = line.find(MARK) else {
            return;
        };
        let words: Vec<&str> = line[at + MARK.len()..].split_whitespace().collect();
        match words.as_slice() {
            ["OPENING"] => {}
            ["READY"] => self.ready = true,
            ["FAIL", ..] => self.failures.push(line.to_string()),
            ["SENT", kind, scope, request] => self.sent.push(Sent {
                kind: Kind::parse(kind),
                key: IdempotencyKey {
                    scope: uuid(scope),
                    request_id: RequestId::from_uuid(uuid(request)),
                },
            }),
            ["ACK", kind, scope, request, last_seq, rest @ ..] => {
                let kind = Kind::parse(kind);
                let (org, api_key, money) = match (kind, rest) {
                    (Kind::Org, [org, key]) => (
                        OrganizationId::from_uuid(uuid(org)),
                        Some(ApiKeyId::from_uuid(uuid(key))),
                        None,
                    ),
                    (Kind::Hook, [org]) => (OrganizationId::from_uuid(uuid(org)), None, None),
                    (Kind::Dep | Kind::Wdr, [org, currency, amount]) => {
                        let currency = Currency::parse(currency).unwrap();
                        (
                            OrganizationId::from_uuid(uuid(org)),
                            None,
                            Some((currency, Amount::parse(currency, amount).unwrap())),
                        )
                    }
                    _ => panic!("malformed ACK line {line:?}"),
                };
                self.acks.push(Ack {
                    kind,
                    key: IdempotencyKey {
                        scope: uuid(scope),
                        request_id: RequestId::from_uuid(uuid(request)),
                    },
                    last_seq: last_seq.parse().unwrap(),
                    org,
                    api_key,
                    money,
                });
            }
            _ => panic!("unexpected line from the child: {line:?}"),
        }
    }
}

/// When to pull the plug.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the child said its engine is running (under load).
    AfterReady(Duration),
    /// This long after spawning: during start-up, sled recovery or rebuild.
    AfterSpawn(Duration),
}

fn spawn_child(dir: &Path, tag: usize) -> Child {
    Process::new(std::env::current_exe().unwrap())
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_TAG_ENV, tag.to_string())
        .env_remove("RUST_TEST_THREADS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test process")
}

/// Runs the child on `dir` and SIGKILLs it as `kill_at` says; returns what it reported.
fn run_and_kill(dir: &Path, tag: usize, kill_at: KillAt) -> Transcript {
    let spawned = Instant::now();
    let mut child = spawn_child(dir, tag);
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });

    let mut transcript = Transcript::default();
    let deadline = match kill_at {
        KillAt::AfterSpawn(d) => spawned + d,
        KillAt::AfterReady(d) => {
            let give_up = spawned + Duration::from_secs(30);
            while !transcript.ready {
                let left = give_up.saturating_duration_since(Instant::now());
                match lines_rx.recv_timeout(left) {
                    Ok(line) => transcript.take(&line),
                    Err(_) => break,
                }
            }
            if !transcript.ready {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the child never became ready: {:?}\nstderr:\n{}",
                    transcript.failures,
                    stderr_reader.join().unwrap()
                );
            }
            Instant::now() + d
        }
    };
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let exited_early = child.try_wait().expect("poll the child");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    reader.join().unwrap();
    for line in lines_rx.try_iter() {
        transcript.take(&line);
    }
    let stderr = stderr_reader.join().unwrap();
    if let Some(early) = exited_early {
        panic!("the child exited before it was killed ({early}); stderr:\n{stderr}");
    }
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "child status {status}"
        );
    }
    assert!(
        transcript.failures.is_empty(),
        "the child reported failures: {:#?}\nstderr:\n{stderr}",
        transcript.failures
    );
    transcript
}

/// Everything a directory has been sent and acknowledged over all its crashes.
#[derive(Debug, Default)]
struct History {
    sent: Vec<Sent>,
    acks: Vec<Ack>,
}

#[derive(Debug, Default)]
struct Checked {
    head: u64,
    acks: usize,
    committed_unacked: usize,
    lost_unacked: usize,
    /// Big events stored, and sled blob files in the directory.
    hooks: usize,
    blob_files: usize,
}

fn scope_of(actor: &Actor) -> Uuid {
    actor
        .organization()
        .map_or(IdempotencyKey::ADMIN_SCOPE, |o| o.as_uuid())
}

/// Reopens the crashed log and checks everything this test can know about it.
fn check_after_crash(dir: &Path, history: &History) -> Checked {
    let log = open_log(dir).unwrap_or_else(|e| panic!("reopen after SIGKILL: {e}"));
    let head = log.head();

    // The chain: dense from 1, every link verifies from genesis, every event decodes.
    let mut previous = GENESIS_HASH;
    let mut events: Vec<RecordedEvent> = Vec::new();
    for raw in log.read_raw(1) {
        let raw = raw.unwrap_or_else(|e| panic!("read_raw: {e}"));
        assert_eq!(raw.seq, events.len() as u64 + 1, "sequence is not dense");
        let event = verify_link(&previous, &raw).unwrap_or_else(|e| panic!("{e}"));
        previous = raw.hash;
        events.push(event);
    }
    assert_eq!(
        events.len() as u64,
        head.last_seq,
        "head disagrees with the stored events"
    );
    assert_eq!(
        previous, head.last_hash,
        "head hash disagrees with the chain"
    );
    let decoded: Vec<RecordedEvent> = log
        .read_all(1)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("read_all: {e}"));
    assert_eq!(decoded, events, "read_all disagrees with read_raw");

    // The write model loads: every invariant re-checked, nothing left in transit.
    let ledger = engine::rebuild(&log).unwrap_or_else(|e| panic!("rebuild after crash: {e}"));
    assert_eq!(ledger.last_seq, head.last_seq);
    ledger.check_settled().unwrap();

    // Every command's events, grouped by request id (every command here has one).
    let mut groups: BTreeMap<RequestId, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in &events {
        let request = event
            .request_id
            .unwrap_or_else(|| panic!("event {} has no request id", event.seq));
        groups.entry(request).or_default().push(event);
    }
    let sent: HashMap<RequestId, &Sent> =
        history.sent.iter().map(|s| (s.key.request_id, s)).collect();

    // Each committed command is whole, was really sent, and its idempotency
    // record (same atomic batch) is there and points at its last event.
    for (request, group) in &groups {
        let s = sent
            .get(request)
            .unwrap_or_else(|| panic!("events for request {request} nobody sent"));
        let first = group[0].seq;
        for (i, e) in group.iter().enumerate() {
            assert_eq!(
                e.seq,
                first + i as u64,
                "request {request}: events not contiguous"
            );
            assert_eq!(
                scope_of(&e.actor),
                s.key.scope,
                "request {request}: wrong actor"
            );
        }
        let last = group.last().unwrap().seq;
        let record = log
            .idempotency(&s.key)
            .unwrap()
            .unwrap_or_else(|| panic!("request {request}: events without idempotency record"));
        assert_eq!(record.key, s.key);
        assert_eq!(record.fingerprint, fingerprint(s.kind, *request));
        assert_eq!(record.status, 200);
        assert_eq!(
            record.last_seq, last,
            "request {request}: record points elsewhere"
        );
        check_shape(s.kind, group, &ledger);
    }

    // Every request sent: with a record exactly when its events are there.
    let mut unacked_committed = 0;
    let mut unacked_lost = 0;
    let acked: HashMap<RequestId, &Ack> =
        history.acks.iter().map(|a| (a.key.request_id, a)).collect();
    for s in &history.sent {
        let record = log.idempotency(&s.key).unwrap();
        match (&record, groups.contains_key(&s.key.request_id)) {
            (Some(r), true) => assert!(r.last_seq <= head.last_seq),
            (None, false) => {}
            (Some(r), false) => panic!("record without events: {r:?}"),
            (None, true) => unreachable!("checked above"),
        }
        if !acked.contains_key(&s.key.request_id) {
            if record.is_some() {
                unacked_committed += 1;
            } else {
                unacked_lost += 1;
            }
        }
    }

    // Every acknowledged command survived, exactly as acknowledged.
    for ack in &history.acks {
        let request = ack.key.request_id;
        let record = log
            .idempotency(&ack.key)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {request} lost its idempotency record"));
        assert_eq!(record.last_seq, ack.last_seq, "acknowledged {request}");
        assert!(
            ack.last_seq <= head.last_seq,
            "acknowledged {request} beyond head"
        );
        let group = groups
            .get(&request)
            .unwrap_or_else(|| panic!("acknowledged {request} lost its events"));
        assert_eq!(group.last().unwrap().seq, ack.last_seq);
        assert_eq!(sent[&request].kind, ack.kind);
        match (ack.kind, &group.last().unwrap().event, ack.money) {
            (
                Kind::Org,
                Event::ApiKeyCreated {
                    id,
                    organization_id,
                    ..
                },
                _,
            ) => {
                assert_eq!(*organization_id, ack.org);
                assert_eq!(Some(*id), ack.api_key);
            }
            (
                Kind::Dep,
                Event::FundsDeposited {
                    balance_id, amount, ..
                },
                Some((c, a)),
            ) => {
                assert_eq!(*amount, a);
                assert_eq!(
                    ledger.balance_of(ack.org, c).map(|b| b.id),
                    Some(*balance_id)
                );
            }
            (
                Kind::Wdr,
                Event::FundsReserved {
                    balance_id, amount, ..
                },
                Some((c, a)),
            ) => {
                assert_eq!(*amount, a);
                assert_eq!(
                    ledger.balance_of(ack.org, c).map(|b| b.id),
                    Some(*balance_id)
                );
            }
            (
                Kind::Hook,
                Event::WebhookEndpointCreated {
                    organization_id, ..
                },
                _,
            ) => assert_eq!(*organization_id, ack.org),
            (kind, event, _) => panic!("acknowledged {kind:?} {request} ends in {event:?}"),
        }
    }

    // The balances are exactly the sum of their stored deposits and holds.
    let mut totals: HashMap<BalanceId, (Amount, Amount)> = HashMap::new();
    for e in &events {
        match &e.event {
            Event::FundsDeposited {
                balance_id, amount, ..
            } => {
                let t = totals
                    .entry(*balance_id)
                    .or_insert((Amount::ZERO, Amount::ZERO));
                t.0 = t.0.checked_add(*amount).unwrap();
            }
            Event::FundsReserved {
                balance_id, amount, ..
            } => {
                let t = totals
                    .entry(*balance_id)
                    .or_insert((Amount::ZERO, Amount::ZERO));
                t.1 = t.1.checked_add(*amount).unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(totals.len(), ledger.balances.len());
    for (id, (total, reserved)) in totals {
        let b = &ledger.balances[&id];
        assert_eq!((b.total, b.reserved), (total, reserved), "balance {id}");
    }
    for org in ledger.organizations.keys() {
        assert!(
            ledger.api_keys.values().any(|k| k.organization_id == *org),
            "organization {org} without its API key"
        );
    }

    // A retry of an acknowledged command through a restarted engine is replayed.
    replay_some(log, history);

    Checked {
        head: head.last_seq,
        acks: history.acks.len(),
        committed_unacked: unacked_committed,
        lost_unacked: unacked_lost,
        hooks: events
            .iter()
            .filter(|e| matches!(e.event, Event::WebhookEndpointCreated { .. }))
            .count(),
        blob_files: std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count()),
    }
}

/// The events of one complete command of `kind`, nothing more, nothing less.
fn check_shape(kind: Kind, group: &[&RecordedEvent], ledger: &ledger_core::domain::Ledger) {
    let events: Vec<&Event> = group.iter().map(|e| &e.event).collect();
    match (kind, events.as_slice()) {
        (
            Kind::Org,
            [Event::OrganizationCreated { id, .. }, Event::ApiKeyCreated {
                organization_id, ..
            }],
        ) => assert_eq!(id, organization_id),
        (Kind::Dep, [Event::FundsDeposited { balance_id, .. }]) => {
            assert!(ledger.balances.contains_key(balance_id));
        }
        (
            Kind::Dep,
            [Event::BalanceOpened { id, .. }, Event::FundsDeposited { balance_id, .. }],
        ) => assert_eq!(id, balance_id),
        (
            Kind::Wdr,
            [Event::WithdrawalSubmitted {
                id,
                balance_id,
                amount,
                ..
            }, Event::FundsReserved {
                balance_id: held_on,
                hold,
                amount: held,
            }],
        ) => {
            assert_eq!(*hold, Hold::Withdrawal(*id));
            assert_eq!((balance_id, amount), (held_on, held));
        }
        (
            Kind::Hook,
            [Event::WebhookEndpointCreated {
                organization_id,
                description,
                ..
            }],
        ) => {
            assert_eq!(Some(*organization_id), group[0].actor.organization());
            let request = group[0].request_id.unwrap();
            assert!(
                description.as_deref() == Some(hook_description(request).as_str()),
                "webhook endpoint of {request}: description damaged"
            );
        }
        (kind, events) => panic!("a {kind:?} command stored as {events:?}"),
    }
}

/// Restarts the engine on the recovered log and retries the last few
/// acknowledged requests: each must come back as the recorded answer.
fn replay_some(log: SledLog, history: &History) {
    let log = Arc::new(log);
    let (handle, writer) =
        Engine::start(log.clone(), Arc::new(SystemClock), EngineConfig::default())
            .unwrap_or_else(|e| panic!("engine start after crash: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for ack in history.acks.iter().rev().take(5) {
        let actor = match ack.kind {
            Kind::Wdr | Kind::Hook => Actor::ApiKey {
                organization_id: ack.org,
                // The key does not matter: a replay is answered before deciding.
                api_key_id: ApiKeyId::from_uuid(Uuid::nil()),
            },
            _ => Actor::Admin,
        };
        let reply = runtime.block_on(submit(
            &handle,
            actor,
            ack.key.scope,
            ack.kind,
            ack.key.request_id,
            Command::CreateOrganization {
                name: "must not be created".into(),
                api_key_secret_hash: [0; 32],
            },
        ));
        match reply {
            Ok(Reply::Replayed(record)) => assert_eq!(record.last_seq, ack.last_seq),
            other => panic!(
                "retry of acknowledged {:?} after a crash: {other:?}",
                ack.key
            ),
        }
    }
    let head_before = log.head();
    drop(handle);
    writer.join().unwrap();
    assert_eq!(log.head(), head_before);
    assert_eq!(Arc::strong_count(&log), 1, "the engine kept the log open");
}

#[test]
fn crash_recovery_under_load() {
    let iterations: usize = std::env::var(ITERATIONS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let started = Instant::now();
    let mut rng = StdRng::from_entropy();
    let reopened = tempfile::tempdir().unwrap();
    let mut reopened_history = History::default();
    let mut total_acks = 0;
    let mut under_load = 0;

    for i in 0..iterations {
        // Odd iterations keep appending to the one long-lived directory.
        let fresh_dir;
        let (dir, fresh): (PathBuf, bool) = if i % 2 == 0 {
            fresh_dir = tempfile::tempdir().unwrap();
            (fresh_dir.path().to_path_buf(), true)
        } else {
            (reopened.path().to_path_buf(), false)
        };
        // One in five kills lands during start-up, recovery or rebuild.
        let kill_at = if i % 5 == 4 {
            KillAt::AfterSpawn(Duration::from_millis(rng.gen_range(5..150)))
        } else {
            KillAt::AfterReady(Duration::from_millis(rng.gen_range(50..400)))
        };
        let transcript = run_and_kill(&dir, i, kill_at);
        let acks_now = transcript.acks.len();
        total_acks += acks_now;
        if acks_now > 0 {
            under_load += 1;
        }
        let checked = if fresh {
            let history = History {
                sent: transcript.sent,
                acks: transcript.acks,
            };
            check_after_crash(&dir, &history)
        } else {
            reopened_history.sent.extend(transcript.sent);
            reopened_history.acks.extend(transcript.acks);
            check_after_crash(&dir, &reopened_history)
        };
        eprintln!(
            "crash {i:2} ({}, {kill_at:?}): {acks_now} acks now, {} checked, head {}, \
             {} committed but unacknowledged, {} never committed, \
             {} big events, {} sled blob files",
            if fresh { "fresh" } else { "reopened" },
            checked.acks,
            checked.head,
            checked.committed_unacked,
            checked.lost_unacked,
            checked.hooks,
            checked.blob_files,
        );
    }
    eprintln!(
        "{iterations} crashes in {:.1?}: {total_acks} acknowledged commands checked",
        started.elapsed()
    );
    // The test proves nothing if the child never got going before the kill.
    assert!(
        under_load * 2 >= iterations,
        "only {under_load} of {iterations} children acknowledged anything before the kill"
    );
}
