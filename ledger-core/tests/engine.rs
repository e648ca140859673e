//! The single-writer engine over a real `SledLog`: group commit, idempotency,
//! per-command failure inside a batch, restart, and recovery from a failing
//! log. A `ProbeLog` wrapper counts appends, can hold the writer inside an
//! append (so the test knows exactly what queues up behind it) and can fail.

use ledger_core::domain::command::{InvoiceAction, LineItemInput, NewInvoice};
use ledger_core::domain::{Command, DomainError, Ledger, Outcome};
use ledger_core::engine::{
    self, Engine, EngineConfig, EngineError, EngineHandle, Idempotency, Render, Rendered, Reply,
    Submission,
};
use ledger_core::events::{Actor, Event, Party, Permission, RecordedEvent};
use ledger_core::ids::{ApiKeyId, ConnectionId, InvoiceId, OrganizationId, RequestId};
use ledger_core::log::sled::SledLog;
use ledger_core::log::{
    verify_link, EventIter, EventLog, Hash, IdempotencyKey, IdempotencyRecord, LogError, LogHead,
    RawIter, GENESIS_HASH,
};
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::{ManualClock, Timestamp};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// A probing EventLog
// ---------------------------------------------------------------------------

const FAIL_NONE: u8 = 0;
/// `append_unsynced` returns an error and writes nothing.
const FAIL_BEFORE_WRITE: u8 = 1;
/// `sync` writes everything, then reports an error (a failed fdatasync).
const FAIL_AFTER_WRITE: u8 = 2;

struct ProbeLog {
    inner: SledLog,
    /// Appends that reached this wrapper (started), and that succeeded.
    started: AtomicUsize,
    appends: AtomicUsize,
    /// Events per successful append, in order.
    batch_sizes: Mutex<Vec<usize>>,
    /// Last sequence number the inner log has made durable.
    durable_seq: AtomicU64,
    /// While set, `append` waits before doing anything.
    hold: AtomicBool,
    /// While set, `sync` waits before doing anything (an fdatasync in flight).
    hold_sync: AtomicBool,
    syncs_started: AtomicUsize,
    fail: AtomicU8,
    fail_idempotency: AtomicBool,
}

impl ProbeLog {
    fn open(dir: &std::path::Path) -> Arc<Self> {
        let inner = SledLog::open(dir).expect("open sled log");
        let durable = inner.head().last_seq;
        Arc::new(Self {
            inner,
            started: AtomicUsize::new(0),
            appends: AtomicUsize::new(0),
            batch_sizes: Mutex::new(Vec::new()),
            durable_seq: AtomicU64::new(durable),
            hold: AtomicBool::new(false),
            hold_sync: AtomicBool::new(false),
            syncs_started: AtomicUsize::new(0),
            fail: AtomicU8::new(FAIL_NONE),
            fail_idempotency: AtomicBool::new(false),
        })
    }

    fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }
}

fn wait_while(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{what} held for too long");
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl EventLog for ProbeLog {
    fn head(&self) -> LogHead {
        self.inner.head()
    }

    fn append(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        let head = self.append_unsynced(events, idempotency)?;
        self.sync()?;
        Ok(head)
    }

    fn append_unsynced(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        wait_while(&self.hold, "append");
        if self.fail.load(Ordering::SeqCst) == FAIL_BEFORE_WRITE {
            return Err(LogError::Storage("injected: disk full".into()));
        }
        let head = self.inner.append_unsynced(events, idempotency)?;
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.batch_sizes.lock().unwrap().push(events.len());
        Ok(head)
    }

    fn sync(&self) -> Result<(), LogError> {
        let head = self.inner.head();
        self.syncs_started.fetch_add(1, Ordering::SeqCst);
        wait_while(&self.hold_sync, "sync");
        self.inner.sync()?;
        if self.fail.load(Ordering::SeqCst) == FAIL_AFTER_WRITE {
            return Err(LogError::Storage("injected: fdatasync failed".into()));
        }
        self.durable_seq.store(head.last_seq, Ordering::SeqCst);
        Ok(())
    }

    fn read_all(&self, from_seq: u64) -> EventIter<'_> {
        self.inner.read_all(from_seq)
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        self.inner.read_raw(from_seq)
    }

    fn read_stream(
        &self,
        stream: ledger_core::events::StreamId,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.inner.read_stream(stream)
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, LogError> {
        if self.fail_idempotency.load(Ordering::SeqCst) {
            return Err(LogError::Storage("injected: read failed".into()));
        }
        self.inner.idempotency(key)
    }

    fn prune_idempotency(&self, before: Timestamp) -> Result<usize, LogError> {
        self.inner.prune_idempotency(before)
    }

    fn complete_idempotency(
        &self,
        pending: &IdempotencyRecord,
        status: u16,
        body: Vec<u8>,
    ) -> Result<IdempotencyRecord, LogError> {
        self.inner.complete_idempotency(pending, status, body)
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// sled releases its directory lock asynchronously after the last handle is
/// dropped (its I/O threads finish first; sled issues 1234 and 1289), so an
/// immediate reopen in the same process may briefly see the lock held.
fn lock_busy(message: &str) -> bool {
    message.contains("could not acquire lock")
}

fn reopen(dir: &std::path::Path) -> SledLog {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledLog::open(dir) {
            Err(LogError::Storage(m)) if lock_busy(&m) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other.expect("reopen the log"),
        }
    }
}

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2025-03-01T09:00:00Z").unwrap()
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn amount(s: &str) -> Amount {
    Amount::parse(usd(), s).unwrap()
}

fn start(log: Arc<dyn EventLog>, config: EngineConfig) -> (EngineHandle, JoinHandle<()>) {
    Engine::start(log, Arc::new(ManualClock::new(t0())), config).expect("engine starts")
}

fn org_actor(org: OrganizationId, key: ApiKeyId) -> Actor {
    Actor::ApiKey {
        organization_id: org,
        api_key_id: key,
    }
}

fn submission(actor: Actor, command: Command) -> Submission {
    Submission {
        actor,
        idempotency: None,
        command,
        render: None,
    }
}

fn idem(scope: uuid::Uuid, request_id: RequestId, fingerprint: u8) -> Idempotency {
    Idempotency {
        key: IdempotencyKey { scope, request_id },
        fingerprint: [fingerprint; 32] as Hash,
    }
}

/// Renders the outcome with a number no other rendering shares, so the bytes
/// of a replay differ from those of any second decision of the same request.
fn render() -> Render {
    static RENDERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    Box::new(|result: Result<&Outcome, &DomainError>| {
        let n = RENDERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(outcome) => Rendered {
                status: 201,
                body: format!("{outcome:?} | rendering {n}").into_bytes(),
            },
            Err(e) => Rendered {
                status: 400,
                body: format!("refused: {e} | rendering {n}").into_bytes(),
            },
        }
    })
}

async fn submit(handle: &EngineHandle, s: Submission) -> Result<Reply, EngineError> {
    tokio::time::timeout(Duration::from_secs(30), handle.submit(s))
        .await
        .expect("the engine answers")
}

fn executed(reply: Result<Reply, EngineError>) -> (Result<Outcome, DomainError>, u64) {
    match reply {
        Ok(Reply::Executed {
            result, last_seq, ..
        }) => (result, last_seq),
        other => panic!("expected an executed reply, got {other:?}"),
    }
}

fn ok(reply: Result<Reply, EngineError>) -> Outcome {
    match executed(reply) {
        (Ok(outcome), _) => outcome,
        (Err(e), _) => panic!("command refused: {e}"),
    }
}

/// (status, body) of a reply, whether executed now or replayed.
fn bytes_of(reply: &Result<Reply, EngineError>) -> (u16, Vec<u8>) {
    match reply {
        Ok(Reply::Executed {
            rendered: Some(r),
            result: Ok(_),
            ..
        }) => (r.status, r.body.clone()),
        Ok(Reply::Replayed(record)) => (record.status, record.body.clone()),
        other => panic!("expected a rendered success, got {other:?}"),
    }
}

async fn create_org(handle: &EngineHandle, name: &str) -> (OrganizationId, ApiKeyId) {
    let outcome = ok(submit(
        handle,
        submission(
            Actor::Admin,
            Command::CreateOrganization {
                name: name.into(),
                api_key_secret_hash: [7; 32],
            },
        ),
    )
    .await);
    match outcome {
        Outcome::Organization { id, api_key_id } => (id, api_key_id),
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn deposit(org: OrganizationId, value: &str) -> Command {
    Command::Deposit {
        organization_id: org,
        currency: usd(),
        amount: amount(value),
        reference: "wire".into(),
    }
}

async fn connect(
    handle: &EngineHandle,
    seller: (OrganizationId, ApiKeyId),
    buyer: (OrganizationId, ApiKeyId),
) -> ConnectionId {
    let id = match ok(submit(
        handle,
        submission(
            org_actor(seller.0, seller.1),
            Command::RequestConnection {
                counterparty: buyer.0,
                role: Party::Seller,
            },
        ),
    )
    .await)
    {
        Outcome::Connection(id) => id,
        other => panic!("unexpected outcome {other:?}"),
    };
    ok(submit(
        handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::AcceptConnection { id },
        ),
    )
    .await);
    id
}

fn new_invoice(connection_id: ConnectionId, price: &str, submit: bool) -> Command {
    Command::CreateInvoice(NewInvoice {
        connection_id,
        number: None,
        currency: usd(),
        issue_date: None,
        due_date: t0().date() + chrono::Days::new(30),
        memo: Some("consulting".into()),
        line_items: vec![LineItemInput {
            description: "hours".into(),
            quantity: Quantity::parse("2").unwrap(),
            unit_price: price.into(),
            tax_rate: TaxRate::parse("10").unwrap(),
        }],
        attachments: vec![],
        submit,
    })
}

fn balance_total(ledger: &Ledger, org: OrganizationId) -> Amount {
    ledger
        .balance_of(org, usd())
        .map(|b| b.total)
        .unwrap_or(Amount::ZERO)
}

/// The writer's own state, as it stands after what it holds now.
async fn snapshot(handle: &EngineHandle) -> Ledger {
    tokio::time::timeout(
        Duration::from_secs(30),
        handle.inspect(|ledger| ledger.clone()),
    )
    .await
    .expect("the engine answers")
    .expect("the engine runs")
}

fn assert_same_ledger(a: &Ledger, b: &Ledger) {
    assert_eq!(a.last_seq, b.last_seq, "last_seq");
    assert_eq!(a.versions, b.versions, "stream versions");
    assert_eq!(a.organizations, b.organizations, "organizations");
    assert_eq!(a.api_keys, b.api_keys, "api keys");
    assert_eq!(a.connections, b.connections, "connections");
    assert_eq!(a.invoices, b.invoices, "invoices");
    assert_eq!(a.payments, b.payments, "payments");
    assert_eq!(a.balances, b.balances, "balances");
    assert_eq!(a.withdrawals, b.withdrawals, "withdrawals");
    assert_eq!(a.refunds, b.refunds, "refunds");
    assert_eq!(
        a.webhook_endpoints, b.webhook_endpoints,
        "webhook endpoints"
    );
    assert_eq!(a.files, b.files, "files");
    assert_eq!(a.balance_index, b.balance_index, "balance index");
    assert_eq!(
        a.settlement_transactions, b.settlement_transactions,
        "settlement transactions"
    );
    assert_eq!(a.failed_by_payer, b.failed_by_payer, "failed payments");
    assert_eq!(
        a.approved_by_buyer, b.approved_by_buyer,
        "approved invoices"
    );
    assert_eq!(
        a.invoices_by_seller, b.invoices_by_seller,
        "invoice counters"
    );
    assert_eq!(a.supply, b.supply, "supply");
}

/// The log is dense, its streams are dense and its chain verifies.
fn assert_log_sound(log: &dyn EventLog) {
    let mut previous = GENESIS_HASH;
    let mut versions = std::collections::HashMap::new();
    let mut expected = 1;
    let all: Vec<RecordedEvent> = log.read_all(1).map(|e| e.unwrap()).collect();
    for (raw, event) in log.read_raw(1).zip(&all) {
        let raw = raw.unwrap();
        assert_eq!(raw.seq, expected, "global sequence has a gap");
        let verified = verify_link(&previous, &raw).expect("chain verifies");
        assert_eq!(&verified, event);
        let v = versions.entry(event.stream()).or_insert(0u64);
        *v += 1;
        assert_eq!(event.version, *v, "stream version gap at seq {}", event.seq);
        previous = raw.hash;
        expected += 1;
    }
    assert_eq!(log.head().last_seq, expected - 1);
    assert_eq!(log.head().last_hash, previous);
}

fn all_events(log: &dyn EventLog) -> Vec<RecordedEvent> {
    log.read_all(1).map(|e| e.unwrap()).collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

type BoxedReply = Pin<Box<dyn Future<Output = Result<Reply, EngineError>> + Send>>;

/// Polls every submission in order, so they are queued in this order, and
/// waits for all replies.
async fn join_in_order(mut futures: Vec<BoxedReply>) -> Vec<Result<Reply, EngineError>> {
    let mut results: Vec<Option<Result<Reply, EngineError>>> =
        futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

fn boxed(handle: &EngineHandle, s: Submission) -> BoxedReply {
    let handle = handle.clone();
    Box::pin(async move { handle.submit(s).await })
}

/// Holds the writer inside an append (of a warm-up command), queues `subs`
/// behind it in order, releases it, and returns their replies. Everything
/// queued while the writer is held is decided in one batch (up to max_batch).
async fn in_one_batch(
    handle: &EngineHandle,
    probe: &Arc<ProbeLog>,
    subs: Vec<Submission>,
) -> Vec<Result<Reply, EngineError>> {
    probe.hold.store(true, Ordering::SeqCst);
    let started = probe.started.load(Ordering::SeqCst);
    let warm_up = {
        let handle = handle.clone();
        tokio::spawn(async move {
            handle
                .submit(submission(
                    Actor::Admin,
                    Command::CreateOrganization {
                        name: "warm-up".into(),
                        api_key_secret_hash: [1; 32],
                    },
                ))
                .await
        })
    };
    wait_until("the writer is inside an append", || {
        probe.started.load(Ordering::SeqCst) > started
    })
    .await;
    let queued = Arc::new(AtomicUsize::new(0));
    let n = subs.len();
    let futures: Vec<BoxedReply> = subs.into_iter().map(|s| boxed(handle, s)).collect();
    let counter = queued.clone();
    // Poll once: every send completes (the queue has room), in order.
    let joined = tokio::spawn(async move {
        let mut futures = futures;
        let mut first = true;
        std::future::poll_fn(|cx| {
            if first {
                first = false;
                for f in futures.iter_mut() {
                    let _ = f.as_mut().poll(cx);
                }
                counter.store(futures.len(), Ordering::SeqCst);
            }
            Poll::Ready(())
        })
        .await;
        join_in_order(futures).await
    });
    wait_until("all submissions are queued", || {
        queued.load(Ordering::SeqCst) == n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let appends_before = probe.appends();
    probe.hold.store(false, Ordering::SeqCst);
    ok(warm_up.await.unwrap());
    let replies = joined.await.unwrap();
    assert!(probe.appends() <= appends_before + 2);
    replies
}

// ---------------------------------------------------------------------------
// Group commit
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_share_appends() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let mut orgs = Vec::new();
    for i in 0..4 {
        orgs.push(create_org(&handle, &format!("org {i}")).await);
    }
    let before = probe.appends();
    let seq_before = probe.head().last_seq;

    const N: usize = 200;
    let futures: Vec<BoxedReply> = (0..N)
        .map(|i| {
            boxed(
                &handle,
                submission(Actor::Admin, deposit(orgs[i % 4].0, "1.00")),
            )
        })
        .collect();
    let replies = join_in_order(futures).await;
    let appends = probe.appends() - before;
    for reply in replies {
        let (result, last_seq) = executed(reply);
        result.expect("deposit succeeds");
        assert!(last_seq <= probe.durable_seq.load(Ordering::SeqCst));
    }
    assert!(appends >= 1);
    assert!(
        appends < N / 2,
        "{N} concurrent commands took {appends} appends (group commit expected)"
    );
    // 4 balance openings + 200 deposits.
    assert_eq!(probe.head().last_seq, seq_before + 4 + N as u64);
    assert_eq!(*handle.committed().borrow(), probe.head().last_seq);
    let ledger = snapshot(&handle).await;
    for (org, _) in &orgs {
        assert_eq!(balance_total(&ledger, *org), amount("50.00"));
    }
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_queued_behind_an_append_is_committed_in_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, _) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "1.00"))).await);
    let appends_before = probe.appends();

    let subs = (0..64)
        .map(|_| submission(Actor::Admin, deposit(org, "2.00")))
        .collect();
    let replies = in_one_batch(&handle, &probe, subs).await;
    // The warm-up command's append, then exactly one for all 64.
    assert_eq!(probe.appends(), appends_before + 2);
    assert_eq!(*probe.batch_sizes.lock().unwrap().last().unwrap(), 64);
    let mut seqs = Vec::new();
    for reply in replies {
        let (result, last_seq) = executed(reply);
        result.unwrap();
        seqs.push(last_seq);
    }
    // Decided in queue order, each seeing the one before.
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let ledger = snapshot(&handle).await;
    assert_eq!(balance_total(&ledger, org), amount("129.00"));
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_exceeds_max_batch() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let config = EngineConfig {
        max_batch: 4,
        ..EngineConfig::default()
    };
    let (handle, thread) = start(probe.clone(), config);
    let (org, _) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "1.00"))).await);
    let before = probe.batch_sizes.lock().unwrap().len();
    let started_before = probe.started.load(Ordering::SeqCst);
    let subs = (0..10)
        .map(|_| submission(Actor::Admin, deposit(org, "1.00")))
        .collect();
    probe.hold.store(true, Ordering::SeqCst);
    let replies = {
        // in_one_batch asserts at most two appends; do it by hand here.
        let warm = {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .submit(submission(Actor::Admin, deposit(org, "1.00")))
                    .await
            })
        };
        wait_until("the writer is inside an append", || {
            probe.started.load(Ordering::SeqCst) > started_before
        })
        .await;
        let futures: Vec<BoxedReply> = subs_into_futures(&handle, subs);
        let joined = tokio::spawn(join_in_order(futures));
        tokio::time::sleep(Duration::from_millis(100)).await;
        probe.hold.store(false, Ordering::SeqCst);
        ok(warm.await.unwrap());
        joined.await.unwrap()
    };
    for reply in replies {
        ok(reply);
    }
    let sizes = probe.batch_sizes.lock().unwrap()[before..].to_vec();
    assert!(sizes.iter().all(|s| *s <= 4), "batch sizes {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 11);
    assert_eq!(&sizes[..], &[1, 4, 4, 2]);
    drop(handle);
    thread.join().unwrap();
}

fn subs_into_futures(handle: &EngineHandle, subs: Vec<Submission>) -> Vec<BoxedReply> {
    subs.into_iter().map(|s| boxed(handle, s)).collect()
}

/// Pipelining: while one batch's fdatasync is in flight, the writer decides
/// and appends the next one (on the state the first left), and neither is
/// answered nor published before it is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_decides_the_next_batch_while_one_is_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, _) = create_org(&handle, "acme").await;
    let seq_before = *handle.committed().borrow();
    let appends = probe.appends();
    let syncs = probe.syncs_started.load(Ordering::SeqCst);
    probe.hold_sync.store(true, Ordering::SeqCst);
    let spawn_deposit = |value: &'static str| {
        let handle = handle.clone();
        tokio::spawn(async move {
            handle
                .submit(submission(Actor::Admin, deposit(org, value)))
                .await
        })
    };
    let first = spawn_deposit("1.00");
    wait_until("the first batch's fdatasync is in flight", || {
        probe.syncs_started.load(Ordering::SeqCst) > syncs
    })
    .await;
    let second = spawn_deposit("2.00");
    wait_until("the second batch is appended meanwhile", || {
        probe.appends() >= appends + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "answered before durable"
    );
    assert_eq!(*handle.committed().borrow(), seq_before, "published early");

    probe.hold_sync.store(false, Ordering::SeqCst);
    let (r1, s1) = executed(first.await.unwrap());
    let (r2, s2) = executed(second.await.unwrap());
    r1.expect("first deposit");
    r2.expect("second deposit");
    assert!(s1 < s2);
    assert!(s2 <= probe.durable_seq.load(Ordering::SeqCst));
    assert_eq!(*handle.committed().borrow(), probe.head().last_seq);
    assert_eq!(balance_total(&snapshot(&handle).await, org), amount("3.00"));
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_exactly_the_committed_events() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let mut rx = handle.subscribe();
    let (org, _) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "3.00"))).await);
    // A refused command publishes nothing.
    let refused = submit(
        &handle,
        submission(
            Actor::Admin,
            Command::Deposit {
                organization_id: org,
                currency: usd(),
                amount: Amount::ZERO,
                reference: "nothing".into(),
            },
        ),
    )
    .await;
    assert!(matches!(
        executed(refused).0,
        Err(DomainError::Validation(_))
    ));
    let mut received = Vec::new();
    while received.len() < all_events(probe.as_ref()).len() {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a batch arrives")
            .expect("not lagged");
        // Each batch carries the chain hash the log has after its last event.
        let last = batch.events.last().expect("a batch has events").seq;
        let raw = probe.read_raw(last).next().expect("in the log").unwrap();
        assert_eq!((raw.seq, raw.hash), (last, batch.last_hash));
        received.extend(batch.events.iter().cloned());
    }
    assert_eq!(received, all_events(probe.as_ref()));
    assert!(rx.try_recv().is_err());
    drop(handle);
    thread.join().unwrap();
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_replays_the_same_bytes_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, key) = create_org(&handle, "acme").await;
    let request = RequestId::new();
    let sub = || Submission {
        actor: org_actor(org, key),
        idempotency: Some(idem(org.as_uuid(), request, 1)),
        command: Command::CreateApiKey {
            name: "second".into(),
            permissions: vec![Permission::TreasuryApprove],
            secret_hash: [2; 32],
            expires_at: None,
        },
        render: Some(render()),
    };
    let first = submit(&handle, sub()).await;
    let (status, body) = bytes_of(&first);
    let (result, first_seq) = executed(first);
    let created = match result.unwrap() {
        Outcome::ApiKey(id) => id,
        other => panic!("unexpected {other:?}"),
    };
    let head = probe.head();
    let appends = probe.appends();

    for _ in 0..3 {
        let again = submit(&handle, sub()).await;
        assert_eq!(bytes_of(&again), (status, body.clone()));
        match again {
            Ok(Reply::Replayed(record)) => {
                assert_eq!(record.last_seq, first_seq);
                assert_eq!(record.key.request_id, request);
            }
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    assert_eq!(probe.head(), head, "a replay appends nothing");
    assert_eq!(probe.appends(), appends);
    let ledger = snapshot(&handle).await;
    let keys: Vec<_> = ledger
        .api_keys
        .values()
        .filter(|k| k.organization_id == org)
        .collect();
    assert_eq!(keys.len(), 2, "the key was created once");
    assert!(ledger.api_keys.contains_key(&created));

    // The same request id in another organization's scope is another request.
    let (other_org, other_key) = create_org(&handle, "globex").await;
    let other = submit(
        &handle,
        Submission {
            actor: org_actor(other_org, other_key),
            idempotency: Some(idem(other_org.as_uuid(), request, 1)),
            command: Command::CreateApiKey {
                name: "second".into(),
                permissions: vec![Permission::TreasuryApprove],
                secret_hash: [2; 32],
                expires_at: None,
            },
            render: Some(render()),
        },
    )
    .await;
    assert!(matches!(other, Ok(Reply::Executed { result: Ok(_), .. })));
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_with_another_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, _) = create_org(&handle, "acme").await;
    let request = RequestId::new();
    let scope = IdempotencyKey::ADMIN_SCOPE;
    let sub = |fingerprint: u8, value: &str| Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(scope, request, fingerprint)),
        command: deposit(org, value),
        render: Some(render()),
    };
    ok(submit(&handle, sub(1, "10.00")).await);
    let head = probe.head();
    let reused = submit(&handle, sub(2, "99.00")).await;
    assert_eq!(reused.unwrap_err(), EngineError::IdempotencyKeyReused);
    assert_eq!(probe.head(), head, "nothing appended");
    // The original is still replayable.
    assert!(matches!(
        submit(&handle, sub(1, "10.00")).await,
        Ok(Reply::Replayed(_))
    ));

    // Inside one batch: the first use wins, a different fingerprint is
    // refused, the same fingerprint follows the first.
    let request2 = RequestId::new();
    let mk = |fingerprint: u8, value: &str| Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(scope, request2, fingerprint)),
        command: deposit(org, value),
        render: Some(render()),
    };
    let replies = in_one_batch(
        &handle,
        &probe,
        vec![mk(5, "1.00"), mk(6, "2.00"), mk(5, "1.00")],
    )
    .await;
    let mut replies = replies.into_iter();
    let first = replies.next().unwrap();
    let first_bytes = bytes_of(&first);
    assert_eq!(
        replies.next().unwrap().unwrap_err(),
        EngineError::IdempotencyKeyReused
    );
    assert_eq!(bytes_of(&replies.next().unwrap()), first_bytes);
    let ledger = snapshot(&handle).await;
    assert_eq!(balance_total(&ledger, org), amount("11.00"));
    drop(handle);
    thread.join().unwrap();
}

async fn trading_pair(
    handle: &EngineHandle,
) -> (
    (OrganizationId, ApiKeyId),
    (OrganizationId, ApiKeyId),
    ConnectionId,
) {
    let seller = create_org(handle, "seller").await;
    let buyer = create_org(handle, "buyer").await;
    let connection = connect(handle, seller, buyer).await;
    (seller, buyer, connection)
}

fn invoices_created(log: &dyn EventLog) -> Vec<InvoiceId> {
    all_events(log)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::InvoiceCreated { id, .. } => Some(id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_duplicates_create_one_invoice() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (seller, _, connection) = trading_pair(&handle).await;
    let request = RequestId::new();
    let sub = move || Submission {
        actor: org_actor(seller.0, seller.1),
        idempotency: Some(idem(seller.0.as_uuid(), request, 9)),
        command: new_invoice(connection, "150.00", true),
        render: Some(render()),
    };

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let handle = handle.clone();
            let s = sub();
            tokio::spawn(async move { handle.submit(s).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let first = bytes_of(&replies[0]);
    for r in &replies {
        assert_eq!(bytes_of(r), first, "every duplicate sees the same bytes");
    }
    let created = invoices_created(probe.as_ref());
    assert_eq!(created.len(), 1, "exactly one invoice");
    let ids: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            Ok(Reply::Executed {
                result: Ok(Outcome::Invoice(id)),
                ..
            }) => Some(*id),
            _ => None,
        })
        .collect();
    assert!(ids.iter().all(|id| *id == created[0]));
    let inv = snapshot(&handle).await.invoices[&created[0]].clone();
    assert_eq!((inv.status.as_str(), inv.version), ("SUBMITTED", 2));

    // Again with all twenty forced into one batch: one leader, nineteen followers.
    let request = RequestId::new();
    let subs = (0..20)
        .map(|_| Submission {
            actor: org_actor(seller.0, seller.1),
            idempotency: Some(idem(seller.0.as_uuid(), request, 3)),
            command: new_invoice(connection, "7.00", false),
            render: Some(render()),
        })
        .collect();
    let replies = in_one_batch(&handle, &probe, subs).await;
    let first = bytes_of(&replies[0]);
    assert!(replies.iter().all(|r| bytes_of(r) == first));
    assert_eq!(invoices_created(probe.as_ref()).len(), 2);
    // And a later retry replays from the log.
    let later = submit(
        &handle,
        Submission {
            actor: org_actor(seller.0, seller.1),
            idempotency: Some(idem(seller.0.as_uuid(), request, 3)),
            command: new_invoice(connection, "7.00", false),
            render: Some(render()),
        },
    )
    .await;
    assert!(matches!(later, Ok(Reply::Replayed(_))));
    assert_eq!(bytes_of(&later), first);
    assert_eq!(invoices_created(probe.as_ref()).len(), 2);
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

// ---------------------------------------------------------------------------
// Failure isolation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_error_fails_only_its_own_command_in_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (seller, buyer, connection) = trading_pair(&handle).await;
    ok(submit(
        &handle,
        submission(Actor::Admin, deposit(buyer.0, "100.00")),
    )
    .await);
    let invoice = match ok(submit(
        &handle,
        submission(
            org_actor(seller.0, seller.1),
            new_invoice(connection, "40.00", true),
        ),
    )
    .await)
    {
        Outcome::Invoice(id) => id,
        other => panic!("unexpected {other:?}"),
    };
    let seq_before = probe.head().last_seq;
    let approve = |who: (OrganizationId, ApiKeyId)| {
        submission(
            org_actor(who.0, who.1),
            Command::Invoice {
                id: invoice,
                action: InvoiceAction::Approve {
                    adjusted_amount: None,
                    reason: None,
                },
            },
        )
    };
    let subs = vec![
        submission(Actor::Admin, deposit(buyer.0, "5.00")), // ok: +1 event
        approve(seller),                                    // 403: the seller may not approve
        approve(buyer),                                     // ok: 88.00 reserved, +2 events
        approve(buyer),                                     // 400: already approved
        submission(
            org_actor(buyer.0, buyer.1),
            Command::SubmitWithdrawal {
                currency: usd(),
                amount: amount("17.01"),
                destination: ledger_core::events::Destination {
                    fields: vec![("iban".into(), "DE89370400440532013000".into())],
                },
            },
        ), // 400: 105 − 88 = 17.00 available
        submission(
            org_actor(buyer.0, buyer.1),
            Command::CreateApiKey {
                name: "x".into(),
                permissions: vec![],
                secret_hash: [0; 32],
                expires_at: None,
            },
        ), // 400: no permissions
        submission(Actor::Admin, deposit(seller.0, "1.00")), // ok: +2 events (balance opened)
    ];
    let replies = in_one_batch(&handle, &probe, subs).await;
    let results: Vec<(Result<Outcome, DomainError>, u64)> =
        replies.into_iter().map(executed).collect();
    // The warm-up organization takes two events before the batch.
    let base = seq_before + 2;
    let expect_seq = [
        base + 1,
        base + 1,
        base + 3,
        base + 3,
        base + 3,
        base + 3,
        base + 5,
    ];
    for (i, ((result, last_seq), want)) in results.iter().zip(expect_seq).enumerate() {
        assert_eq!(*last_seq, want, "command {i}: {result:?}");
    }
    assert!(results[0].0.is_ok());
    assert!(matches!(results[1].0, Err(DomainError::Forbidden(_))));
    assert!(results[2].0.is_ok());
    assert!(matches!(
        results[3].0,
        Err(DomainError::InvalidTransition { .. })
    ));
    assert!(matches!(
        results[4].0,
        Err(DomainError::InsufficientBalance { .. })
    ));
    assert!(matches!(results[5].0, Err(DomainError::Validation(_))));
    assert!(results[6].0.is_ok());
    assert_eq!(probe.head().last_seq, base + 5);

    let ledger = snapshot(&handle).await;
    let rebuilt = engine::rebuild(probe.as_ref()).unwrap();
    assert_same_ledger(&ledger, &rebuilt);
    let b = ledger.balance_of(buyer.0, usd()).unwrap();
    assert_eq!(b.total, amount("105.00"));
    assert_eq!(b.reserved, amount("88.00"));
    assert!(ledger.withdrawals.is_empty());
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

// ---------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_rebuilds_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledLog::open(dir.path()).unwrap());
    let (handle, thread) = start(log.clone(), EngineConfig::default());
    let (seller, buyer, connection) = trading_pair(&handle).await;
    ok(submit(
        &handle,
        submission(Actor::Admin, deposit(buyer.0, "500.00")),
    )
    .await);
    let mut invoices = Vec::new();
    for price in ["10.00", "20.00", "30.00"] {
        match ok(submit(
            &handle,
            submission(
                org_actor(seller.0, seller.1),
                new_invoice(connection, price, true),
            ),
        )
        .await)
        {
            Outcome::Invoice(id) => invoices.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    for id in &invoices {
        ok(submit(
            &handle,
            submission(
                org_actor(buyer.0, buyer.1),
                Command::Invoice {
                    id: *id,
                    action: InvoiceAction::Approve {
                        adjusted_amount: None,
                        reason: None,
                    },
                },
            ),
        )
        .await);
    }
    ok(submit(
        &handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::SettleInvoice { id: invoices[0] },
        ),
    )
    .await);
    ok(submit(
        &handle,
        submission(
            Actor::Admin,
            Command::FreezeBalance {
                organization_id: seller.0,
                currency: usd(),
                reason: "review".into(),
            },
        ),
    )
    .await);
    // A failed payment (frozen payee) and a pending withdrawal survive too.
    ok(submit(
        &handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::SettleInvoice { id: invoices[1] },
        ),
    )
    .await);
    ok(submit(
        &handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::SubmitWithdrawal {
                currency: usd(),
                amount: amount("12.34"),
                destination: ledger_core::events::Destination {
                    fields: vec![("accountNumber".into(), "123".into())],
                },
            },
        ),
    )
    .await);
    let request = RequestId::new();
    let idem_sub = || Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(IdempotencyKey::ADMIN_SCOPE, request, 4)),
        command: deposit(seller.0, "1.50"),
        render: Some(render()),
    };
    let original = submit(&handle, idem_sub()).await;
    let original_bytes = bytes_of(&original);
    let before = snapshot(&handle).await;
    assert_eq!(
        before.failed_by_payer.get(&buyer.0).map(|s| s.len()),
        Some(1)
    );

    drop(handle);
    thread
        .join()
        .expect("the writer stops when every handle is dropped");
    let head_before = log.head();
    drop(log);

    let log = Arc::new(reopen(dir.path()));
    assert_eq!(log.head(), head_before);
    let (handle, thread) = start(log.clone(), EngineConfig::default());
    let after = snapshot(&handle).await;
    assert_same_ledger(&before, &after);
    assert_same_ledger(&after, &engine::rebuild(log.as_ref()).unwrap());

    // Idempotency records survive the restart.
    let replay = submit(&handle, idem_sub()).await;
    assert!(matches!(replay, Ok(Reply::Replayed(_))));
    assert_eq!(bytes_of(&replay), original_bytes);
    // And the sequence continues where it stopped.
    let (_, last_seq) =
        executed(submit(&handle, submission(Actor::Admin, deposit(buyer.0, "1.00"))).await);
    assert_eq!(last_seq, head_before.last_seq + 1);
    assert_log_sound(log.as_ref());
    drop(handle);
    thread.join().unwrap();
}

// ---------------------------------------------------------------------------
// A failing log
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_answers_internal_and_the_engine_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, key) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "100.00"))).await);
    let head = probe.head();
    let before = snapshot(&handle).await;

    probe.fail.store(FAIL_BEFORE_WRITE, Ordering::SeqCst);
    let request = RequestId::new();
    let keyed = || Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(IdempotencyKey::ADMIN_SCOPE, request, 1)),
        command: deposit(org, "50.00"),
        render: Some(render()),
    };
    let failed = submit(&handle, keyed()).await;
    assert!(
        matches!(failed, Err(EngineError::Internal(_))),
        "{failed:?}"
    );
    let failed = submit(
        &handle,
        submission(
            org_actor(org, key),
            Command::CreateApiKey {
                name: "k".into(),
                permissions: vec![Permission::All],
                secret_hash: [3; 32],
                expires_at: None,
            },
        ),
    )
    .await;
    assert!(
        matches!(failed, Err(EngineError::Internal(_))),
        "{failed:?}"
    );
    assert_eq!(probe.head(), head, "nothing reached the log");
    probe.fail.store(FAIL_NONE, Ordering::SeqCst);

    // Nothing of the failed batches stayed in the writer's state.
    let recovered = snapshot(&handle).await;
    assert_same_ledger(&before, &recovered);
    // Later commands work and continue the sequence densely.
    let (_, last_seq) =
        executed(submit(&handle, submission(Actor::Admin, deposit(org, "30.00"))).await);
    assert_eq!(last_seq, head.last_seq + 1);
    // The failed request left no idempotency record: retrying it executes it.
    let retried = submit(&handle, keyed()).await;
    assert!(
        matches!(retried, Ok(Reply::Executed { result: Ok(_), .. })),
        "{retried:?}"
    );
    let ledger = snapshot(&handle).await;
    assert_eq!(balance_total(&ledger, org), amount("180.00"));
    assert_same_ledger(&ledger, &engine::rebuild(probe.as_ref()).unwrap());
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_a_batch_fails_the_whole_batch_and_nothing_is_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (seller, buyer, connection) = trading_pair(&handle).await;
    ok(submit(
        &handle,
        submission(Actor::Admin, deposit(buyer.0, "100.00")),
    )
    .await);
    let invoice = match ok(submit(
        &handle,
        submission(
            org_actor(seller.0, seller.1),
            new_invoice(connection, "10.00", true),
        ),
    )
    .await)
    {
        Outcome::Invoice(id) => id,
        other => panic!("unexpected {other:?}"),
    };
    ok(submit(
        &handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::Invoice {
                id: invoice,
                action: InvoiceAction::Approve {
                    adjusted_amount: None,
                    reason: None,
                },
            },
        ),
    )
    .await);
    let before = snapshot(&handle).await;
    let head = probe.head();

    // Hold the writer inside the append of a batch that starts with the
    // settlement, then make that append fail.
    let settle = submission(
        org_actor(buyer.0, buyer.1),
        Command::SettleInvoice { id: invoice },
    );
    let subs = vec![settle, submission(Actor::Admin, deposit(seller.0, "1.00"))];
    probe.hold.store(true, Ordering::SeqCst);
    let warm_started = probe.started.load(Ordering::SeqCst);
    let futures = subs_into_futures(&handle, subs);
    let joined = tokio::spawn(join_in_order(futures));
    wait_until("the writer is inside the batch's append", || {
        probe.started.load(Ordering::SeqCst) > warm_started
    })
    .await;
    // Whatever is in this append fails; anything queued later succeeds.
    probe.fail.store(FAIL_BEFORE_WRITE, Ordering::SeqCst);
    probe.hold.store(false, Ordering::SeqCst);
    let replies = joined.await.unwrap();
    probe.fail.store(FAIL_NONE, Ordering::SeqCst);
    // The settle was certainly in the failed append (it was queued first); the
    // deposit either shared it or came after.
    assert!(
        matches!(replies[0], Err(EngineError::Internal(_))),
        "{:?}",
        replies[0]
    );
    let deposit_failed = matches!(replies[1], Err(EngineError::Internal(_)));
    let ledger = snapshot(&handle).await;
    let rebuilt = engine::rebuild(probe.as_ref()).unwrap();
    assert_same_ledger(&ledger, &rebuilt);
    assert_eq!(
        ledger.invoices[&invoice].status,
        before.invoices[&invoice].status
    );
    assert!(ledger.payments.is_empty(), "no half-applied settlement");
    let b = ledger.balance_of(buyer.0, usd()).unwrap();
    assert_eq!(b.total, amount("100.00"));
    assert_eq!(b.reserved, amount("22.00"));
    let expected_seq = if deposit_failed {
        head.last_seq
    } else {
        head.last_seq + 2
    };
    assert_eq!(probe.head().last_seq, expected_seq);

    // The settlement goes through on retry, exactly once.
    ok(submit(
        &handle,
        submission(
            org_actor(buyer.0, buyer.1),
            Command::SettleInvoice { id: invoice },
        ),
    )
    .await);
    let ledger = snapshot(&handle).await;
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(balance_total(&ledger, buyer.0), amount("78.00"));
    assert_eq!(
        ledger.balance_of(buyer.0, usd()).unwrap().reserved,
        Amount::ZERO
    );
    assert_same_ledger(&ledger, &engine::rebuild(probe.as_ref()).unwrap());
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_after_writing_is_not_applied_twice_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, _) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "100.00"))).await);
    let request = RequestId::new();
    let keyed = || Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(IdempotencyKey::ADMIN_SCOPE, request, 1)),
        command: deposit(org, "50.00"),
        render: Some(render()),
    };
    probe.fail.store(FAIL_AFTER_WRITE, Ordering::SeqCst);
    let failed = submit(&handle, keyed()).await;
    assert!(
        matches!(failed, Err(EngineError::Internal(_))),
        "{failed:?}"
    );
    probe.fail.store(FAIL_NONE, Ordering::SeqCst);

    // The writer's state is the log's (which did receive the batch) ...
    let ledger = snapshot(&handle).await;
    assert_same_ledger(&ledger, &engine::rebuild(probe.as_ref()).unwrap());
    assert_eq!(balance_total(&ledger, org), amount("150.00"));
    // ... and the client's retry replays instead of depositing again.
    let retried = submit(&handle, keyed()).await;
    assert!(matches!(retried, Ok(Reply::Replayed(_))), "{retried:?}");
    let ledger = snapshot(&handle).await;
    assert_eq!(balance_total(&ledger, org), amount("150.00"));
    let (_, last_seq) =
        executed(submit(&handle, submission(Actor::Admin, deposit(org, "1.00"))).await);
    assert_eq!(last_seq, probe.head().last_seq);
    assert_log_sound(probe.as_ref());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idempotency_lookup_fails_only_that_command() {
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (org, _) = create_org(&handle, "acme").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(org, "1.00"))).await);
    probe.fail_idempotency.store(true, Ordering::SeqCst);
    let keyed = Submission {
        actor: Actor::Admin,
        idempotency: Some(idem(IdempotencyKey::ADMIN_SCOPE, RequestId::new(), 1)),
        command: deposit(org, "50.00"),
        render: None,
    };
    let replies = in_one_batch(
        &handle,
        &probe,
        vec![keyed, submission(Actor::Admin, deposit(org, "2.00"))],
    )
    .await;
    probe.fail_idempotency.store(false, Ordering::SeqCst);
    assert!(
        matches!(replies[0], Err(EngineError::Internal(_))),
        "{:?}",
        replies[0]
    );
    assert!(matches!(
        replies[1],
        Ok(Reply::Executed { result: Ok(_), .. })
    ));
    let ledger = snapshot(&handle).await;
    assert_eq!(balance_total(&ledger, org), amount("3.00"));
    assert_same_ledger(&ledger, &engine::rebuild(probe.as_ref()).unwrap());
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_the_ledger_cannot_hold_fails_alone_and_as_a_domain_error() {
    // Amounts are capped (10^15 per amount, 10^18 per sum). A deposit that
    // would take a currency past what the ledger can add up must be refused
    // like any other bad input — not break an invariant, which answers 500
    // and takes every other command of its group commit down with it.
    let dir = tempfile::tempdir().unwrap();
    let probe = ProbeLog::open(dir.path());
    let (handle, thread) = start(probe.clone(), EngineConfig::default());
    let (whale, _) = create_org(&handle, "whale").await;
    let (minnow, _) = create_org(&handle, "minnow").await;
    ok(submit(&handle, submission(Actor::Admin, deposit(minnow, "1.00"))).await);
    let max = amount("1000000000000000");
    let big = |org| Command::Deposit {
        organization_id: org,
        currency: usd(),
        amount: max,
        reference: "treasury".into(),
    };
    // Half the sum cap, in deposits that are each valid.
    let fill: Vec<BoxedReply> = (0..500)
        .map(|_| boxed(&handle, submission(Actor::Admin, big(whale))))
        .collect();
    for reply in join_in_order(fill).await {
        ok(reply);
    }
    let before = snapshot(&handle).await;

    let mut refused_or_taken = Vec::new();
    for _ in 0..600 {
        let replies = in_one_batch(
            &handle,
            &probe,
            vec![
                submission(Actor::Admin, deposit(minnow, "1.00")),
                submission(Actor::Admin, big(whale)),
                submission(Actor::Admin, deposit(minnow, "1.00")),
            ],
        )
        .await;
        let mut replies = replies.into_iter();
        let first = replies.next().unwrap();
        let whale_reply = replies.next().unwrap();
        let last = replies.next().unwrap();
        assert!(
            matches!(whale_reply, Ok(Reply::Executed { .. })),
            "the large deposit was not decided as a command: {whale_reply:?}"
        );
        ok(first);
        ok(last);
        let (result, _) = executed(whale_reply);
        let refused = result.is_err();
        refused_or_taken.push(refused);
        if refused {
            break;
        }
    }
    // Sooner or later the cap is reached and the deposit is refused.
    assert_eq!(refused_or_taken.last(), Some(&true));
    let after = snapshot(&handle).await;
    assert_same_ledger(&after, &engine::rebuild(probe.as_ref()).unwrap());
    assert!(balance_total(&after, whale) > balance_total(&before, whale));
    drop(handle);
    thread.join().unwrap();
}

/// API.md: the same requestId gets "the original status and body". A refusal
/// is an answer too: retrying it after the state changed must not turn it
/// into a success (the client would see two different answers to one request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_replays_its_refusal_even_after_the_state_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SledLog::open(dir.path()).unwrap());
    let (handle, _writer) = start(log.clone(), EngineConfig::default());
    let (seller, buyer, connection) = trading_pair(&handle).await;
    let invoice = match ok(submit(
        &handle,
        submission(
            org_actor(seller.0, seller.1),
            new_invoice(connection, "50.00", true),
        ),
    )
    .await)
    {
        Outcome::Invoice(id) => id,
        other => panic!("unexpected {other:?}"),
    };
    let request = RequestId::new();
    let approve = || Submission {
        actor: org_actor(buyer.0, buyer.1),
        idempotency: Some(idem(buyer.0.as_uuid(), request, 9)),
        command: Command::Invoice {
            id: invoice,
            action: InvoiceAction::Approve {
                adjusted_amount: None,
                reason: None,
            },
        },
        render: Some(render()),
    };
    let refused = submit(&handle, approve()).await;
    let (status, body) = match &refused {
        Ok(Reply::Executed {
            result: Err(DomainError::InsufficientBalance { .. }),
            rendered: Some(r),
            ..
        }) => (r.status, r.body.clone()),
        other => panic!("expected a rendered refusal, got {other:?}"),
    };
    assert_eq!(status, 400, "no funds yet: refused");
    // Funds arrive; the same request (same key, same fingerprint) is retried.
    ok(submit(
        &handle,
        submission(Actor::Admin, deposit(buyer.0, "1000.00")),
    )
    .await);
    let replayed = submit(&handle, approve()).await;
    assert!(
        matches!(replayed, Ok(Reply::Replayed(_))),
        "replayed, not decided again: {replayed:?}"
    );
    assert_eq!(bytes_of(&replayed), (status, body));
    let ledger = snapshot(&handle).await;
    assert_eq!(
        ledger.invoices[&invoice].status,
        ledger_core::domain::invoice::InvoiceStatus::Submitted,
        "the retry applied nothing"
    );
}
