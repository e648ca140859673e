//! The workload the benches share: realistic invoice lifecycles between
//! organization pairs.
//!
//! One lifecycle is four commands and ten events:
//!
//! | command                          | events                                                        |
//! |----------------------------------|---------------------------------------------------------------|
//! | `CreateInvoice` (`submit: true`) | InvoiceCreated (3 line items, memo), InvoiceSubmitted         |
//! | approve (buyer)                  | InvoiceApproved, FundsReserved                                |
//! | `SettleInvoice` (buyer)          | PaymentInitiated, PaymentCompleted, SettlementDebited, SettlementCredited, InvoiceSettled |
//! | archive (seller)                 | InvoiceArchived                                               |
//!
//! The same commands run either straight against a [`Ledger`] ([`DirectWriter`],
//! used to fill logs without the engine) or through the engine by many
//! concurrent submitters ([`drive`]).

use chrono::NaiveDate;
use ledger_core::domain::command::{InvoiceAction, LineItemInput, NewInvoice};
use ledger_core::domain::{Command, Ctx, Ledger, Outcome};
use ledger_core::engine::{EngineHandle, Idempotency, Reply, Submission};
use ledger_core::events::{Actor, Party, RecordedEvent, StreamId};
use ledger_core::ids::{ConnectionId, InvoiceId, OrganizationId, RequestId};
use ledger_core::log::{
    EventIter, EventLog, IdempotencyKey, IdempotencyRecord, LogError, LogHead, RawIter,
};
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::{Clock, SystemClock, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The HTTP client of the `scale` and `loadgen` binaries.
pub mod client;

/// Events one invoice lifecycle appends (checked by [`DirectWriter`] and [`drive`]).
pub const EVENTS_PER_LIFECYCLE: u64 = 10;
/// Commands one invoice lifecycle submits.
pub const COMMANDS_PER_LIFECYCLE: u64 = 4;

/// Enough for millions of lifecycles (one is about EUR 3,008.56).
const DEPOSIT: &str = "100000000000000.00";

/// A seller and a buyer with an active connection (seller → buyer) and a
/// funded buyer balance.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub seller: Actor,
    pub buyer: Actor,
    pub connection: ConnectionId,
}

pub fn currency() -> Currency {
    Currency::parse("EUR").expect("EUR is supported")
}

fn org_of(actor: &Actor) -> OrganizationId {
    actor.organization().expect("an organization's actor")
}

pub fn create_organization(name: &str) -> Command {
    Command::CreateOrganization {
        name: name.to_owned(),
        api_key_secret_hash: [7u8; 32],
    }
}

pub fn request_connection(buyer: OrganizationId) -> Command {
    Command::RequestConnection {
        counterparty: buyer,
        role: Party::Seller,
    }
}

pub fn deposit(organization_id: OrganizationId) -> Command {
    let currency = currency();
    Command::Deposit {
        organization_id,
        currency,
        amount: Amount::parse(currency, DEPOSIT).expect("valid deposit"),
        reference: "wire 2024-03-01 ref 0001".into(),
    }
}

fn line(description: &str, quantity: &str, unit_price: &str, tax: &str) -> LineItemInput {
    LineItemInput {
        description: description.into(),
        quantity: Quantity::parse(quantity).expect("valid quantity"),
        unit_price: unit_price.into(),
        tax_rate: TaxRate::parse(tax).expect("valid tax rate"),
    }
}

/// A typical B2B invoice: three line items, a memo, submitted at once.
pub fn new_invoice(connection_id: ConnectionId) -> Command {
    Command::CreateInvoice(NewInvoice {
        connection_id,
        number: None,
        currency: currency(),
        issue_date: None,
        due_date: NaiveDate::from_ymd_opt(2035, 12, 31).expect("valid date"),
        memo: Some("Services rendered under MSA 2024-117, PO 4500012345".into()),
        line_items: vec![
            line(
                "Consulting services, senior engineer (hours)",
                "12.5",
                "150.00",
                "19",
            ),
            line("Travel expenses, Berlin on-site visit", "1", "420.35", "0"),
            line("Software licence, monthly seat", "3", "99.99", "19"),
        ],
        attachments: vec![],
        submit: true,
    })
}

pub fn approve(id: InvoiceId) -> Command {
    Command::Invoice {
        id,
        action: InvoiceAction::Approve {
            adjusted_amount: None,
            reason: None,
        },
    }
}

pub fn settle(id: InvoiceId) -> Command {
    Command::SettleInvoice { id }
}

pub fn archive(id: InvoiceId) -> Command {
    Command::Invoice {
        id,
        action: InvoiceAction::Archive,
    }
}

fn invoice_of(outcome: Outcome) -> InvoiceId {
    match outcome {
        Outcome::Invoice(id) => id,
        other => panic!("expected an invoice, got {other:?}"),
    }
}

fn organization_of(outcome: Outcome) -> Actor {
    match outcome {
        Outcome::Organization { id, api_key_id } => Actor::ApiKey {
            organization_id: id,
            api_key_id,
        },
        other => panic!("expected an organization, got {other:?}"),
    }
}

fn connection_of(outcome: Outcome) -> ConnectionId {
    match outcome {
        Outcome::Connection(id) => id,
        other => panic!("expected a connection, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Straight against a Ledger
// ---------------------------------------------------------------------------

/// Decides the workload with `Ledger::execute` (no engine, no log) and hands
/// out the recorded events in order, numbered from 1: appending everything it
/// hands out to an empty log gives a valid log.
pub struct DirectWriter {
    pub ledger: Ledger,
    clock: SystemClock,
    pairs: Vec<Pair>,
    pending: VecDeque<RecordedEvent>,
    interleave: usize,
    next_pair: usize,
}

impl DirectWriter {
    /// Sets up `pairs` organization pairs (each with one lifecycle run); each round then runs `interleave`
    /// lifecycles stage by stage (all creates, then all approvals, ...), so up
    /// to `interleave` invoices are open at once as under concurrent load.
    pub fn new(pairs: usize, interleave: usize) -> Self {
        let mut w = Self {
            ledger: Ledger::new(),
            clock: SystemClock,
            pairs: Vec::new(),
            pending: VecDeque::new(),
            interleave: interleave.max(1),
            next_pair: 0,
        };
        for i in 0..pairs.max(1) {
            let seller = organization_of(w.exec(
                Actor::Admin,
                &create_organization(&format!("Seller {i} GmbH")),
            ));
            let buyer = organization_of(
                w.exec(Actor::Admin, &create_organization(&format!("Buyer {i} AG"))),
            );
            let connection = connection_of(w.exec(seller, &request_connection(org_of(&buyer))));
            w.exec(buyer, &Command::AcceptConnection { id: connection });
            w.exec(Actor::Admin, &deposit(org_of(&buyer)));
            let pair = Pair {
                seller,
                buyer,
                connection,
            };
            w.pairs.push(pair);
            // The first settlement also opens the seller's balance (one more
            // event); do it here so every later lifecycle is exactly 10 events.
            let id = invoice_of(w.exec(seller, &new_invoice(connection)));
            w.exec(buyer, &approve(id));
            w.exec(buyer, &settle(id));
            w.exec(seller, &archive(id));
        }
        w
    }

    fn exec(&mut self, actor: Actor, command: &Command) -> Outcome {
        let mut ids = Uuid::now_v7;
        let mut ctx = Ctx {
            now: self.clock.now(),
            ids: &mut ids,
        };
        let mut out = Vec::new();
        match self
            .ledger
            .execute(&actor, None, command, &mut ctx, &mut out)
        {
            Ok(Ok(outcome)) => {
                self.pending.extend(out);
                outcome
            }
            Ok(Err(e)) => panic!("command refused: {e}"),
            Err(violation) => panic!("invariant violated: {violation}"),
        }
    }

    /// One round of `interleave` lifecycles.
    pub fn round(&mut self) {
        let before = self.ledger.last_seq;
        let mut open = Vec::with_capacity(self.interleave);
        for _ in 0..self.interleave {
            let pair = self.pairs[self.next_pair % self.pairs.len()];
            self.next_pair += 1;
            let id = invoice_of(self.exec(pair.seller, &new_invoice(pair.connection)));
            open.push((pair, id));
        }
        for (pair, id) in &open {
            self.exec(pair.buyer, &approve(*id));
        }
        for (pair, id) in &open {
            self.exec(pair.buyer, &settle(*id));
        }
        for (pair, id) in &open {
            self.exec(pair.seller, &archive(*id));
        }
        assert_eq!(
            self.ledger.last_seq - before,
            EVENTS_PER_LIFECYCLE * self.interleave as u64,
            "a lifecycle no longer produces {EVENTS_PER_LIFECYCLE} events"
        );
    }

    /// The next `n` events (deciding more lifecycles as needed).
    pub fn take(&mut self, n: usize) -> Vec<RecordedEvent> {
        while self.pending.len() < n {
            self.round();
        }
        self.pending.drain(..n).collect()
    }

    /// Everything decided and not yet handed out.
    pub fn take_pending(&mut self) -> Vec<RecordedEvent> {
        self.pending.drain(..).collect()
    }
}

// ---------------------------------------------------------------------------
// Through the engine
// ---------------------------------------------------------------------------

/// Submits one command and insists it succeeded.
pub async fn submit_ok(
    handle: &EngineHandle,
    actor: Actor,
    command: Command,
    idempotent: bool,
) -> Outcome {
    let idempotency = match (idempotent, actor.organization()) {
        (true, Some(org)) => Some(Idempotency {
            key: IdempotencyKey {
                scope: org.as_uuid(),
                request_id: RequestId::new(),
            },
            fingerprint: [1u8; 32],
        }),
        _ => None,
    };
    let reply = handle
        .submit(Submission {
            actor,
            idempotency,
            command,
            render: None,
        })
        .await
        .expect("engine available");
    match reply {
        Reply::Executed {
            result: Ok(outcome),
            ..
        } => outcome,
        other => panic!("command did not succeed: {other:?}"),
    }
}

/// Creates `pairs` organization pairs through the engine, each with one
/// lifecycle already run.
pub async fn engine_setup(handle: &EngineHandle, pairs: usize) -> Vec<Pair> {
    let mut out = Vec::new();
    for i in 0..pairs.max(1) {
        let seller = organization_of(
            submit_ok(
                handle,
                Actor::Admin,
                create_organization(&format!("Seller {i} GmbH")),
                false,
            )
            .await,
        );
        let buyer = organization_of(
            submit_ok(
                handle,
                Actor::Admin,
                create_organization(&format!("Buyer {i} AG")),
                false,
            )
            .await,
        );
        let connection = connection_of(
            submit_ok(handle, seller, request_connection(org_of(&buyer)), false).await,
        );
        submit_ok(
            handle,
            buyer,
            Command::AcceptConnection { id: connection },
            false,
        )
        .await;
        submit_ok(handle, Actor::Admin, deposit(org_of(&buyer)), false).await;
        let pair = Pair {
            seller,
            buyer,
            connection,
        };
        // Opens the seller's balance, so every later lifecycle is exactly 10 events.
        lifecycle(handle, pair, false).await;
        out.push(pair);
    }
    out
}

/// One invoice lifecycle, each command waiting for the one before.
pub async fn lifecycle(handle: &EngineHandle, pair: Pair, idempotent: bool) {
    let id = invoice_of(
        submit_ok(
            handle,
            pair.seller,
            new_invoice(pair.connection),
            idempotent,
        )
        .await,
    );
    submit_ok(handle, pair.buyer, approve(id), idempotent).await;
    submit_ok(handle, pair.buyer, settle(id), idempotent).await;
    submit_ok(handle, pair.seller, archive(id), idempotent).await;
}

/// Runs `lifecycles` lifecycles from `concurrency` tokio tasks (must be called
/// inside a runtime) and returns the number of events committed meanwhile.
pub async fn drive(
    handle: &EngineHandle,
    pairs: &[Pair],
    lifecycles: u64,
    concurrency: usize,
    idempotent: bool,
) -> u64 {
    let committed = handle.committed();
    let before = *committed.borrow();
    let concurrency = concurrency.max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..concurrency.min(lifecycles) {
        let handle = handle.clone();
        let pairs = pairs.to_vec();
        tasks.spawn(async move {
            let mut n = task;
            while n < lifecycles {
                lifecycle(&handle, pairs[n as usize % pairs.len()], idempotent).await;
                n += concurrency;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("submitter task panicked");
    }
    let after = *committed.borrow();
    after - before
}

// ---------------------------------------------------------------------------
// Where the writer's time goes
// ---------------------------------------------------------------------------

/// Wraps a log and counts appends, the events in them and the time spent in
/// them, so a bench can report the mean group-commit size and how much of the
/// wall time the writer spent inside `append` (encode + hash + sled + flush +
/// fdatasync) versus deciding.
pub struct TimedLog<L> {
    inner: L,
    appends: AtomicU64,
    events: AtomicU64,
    nanos: AtomicU64,
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
}

/// A snapshot of a [`TimedLog`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub appends: u64,
    pub events: u64,
    /// Time inside appends (with `append_unsynced`, not waiting for the disk).
    pub nanos: u64,
    /// Syncs (the engine's syncer thread) and the time inside them.
    pub syncs: u64,
    pub sync_nanos: u64,
}

impl AppendStats {
    pub fn since(self, earlier: AppendStats) -> AppendStats {
        AppendStats {
            appends: self.appends - earlier.appends,
            events: self.events - earlier.events,
            nanos: self.nanos - earlier.nanos,
            syncs: self.syncs - earlier.syncs,
            sync_nanos: self.sync_nanos - earlier.sync_nanos,
        }
    }

    pub fn mean_sync(&self) -> Duration {
        Duration::from_nanos(self.sync_nanos / self.syncs.max(1))
    }

    pub fn events_per_append(&self) -> f64 {
        self.events as f64 / self.appends.max(1) as f64
    }

    pub fn mean_append(&self) -> Duration {
        Duration::from_nanos(self.nanos / self.appends.max(1))
    }
}

impl<L: EventLog> TimedLog<L> {
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            appends: AtomicU64::new(0),
            events: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_nanos: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> AppendStats {
        AppendStats {
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            nanos: self.nanos.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_nanos: self.sync_nanos.load(Ordering::Relaxed),
        }
    }

    fn timed<T>(&self, events: usize, append: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = append();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }
}

impl<L: EventLog> EventLog for TimedLog<L> {
    fn head(&self) -> LogHead {
        self.inner.head()
    }

    fn append(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        self.timed(events.len(), || self.inner.append(events, idempotency))
    }

    // The engine appends without waiting and syncs on its syncer thread
    // (pipelining): both are forwarded, so the bench measures that path.
    fn append_unsynced(
        &self,
        events: &[RecordedEvent],
        idempotency: &[IdempotencyRecord],
    ) -> Result<LogHead, LogError> {
        self.timed(events.len(), || {
            self.inner.append_unsynced(events, idempotency)
        })
    }

    fn sync(&self) -> Result<(), LogError> {
        let start = Instant::now();
        let result = self.inner.sync();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }

    fn read_all(&self, from_seq: u64) -> EventIter<'_> {
        self.inner.read_all(from_seq)
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        self.inner.read_raw(from_seq)
    }

    fn read_stream(&self, stream: StreamId) -> Result<Vec<RecordedEvent>, LogError> {
        self.inner.read_stream(stream)
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, LogError> {
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
// CPU time, to tell the code's cost from the machine's contention
// ---------------------------------------------------------------------------

fn schedstat_on_cpu(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Time the calling thread has spent on a CPU (Linux `schedstat`; zero elsewhere).
pub fn thread_cpu() -> Duration {
    schedstat_on_cpu("/proc/thread-self/schedstat").unwrap_or_default()
}

/// utime + stime of the process whose `/proc/<pid>/stat` (or
/// `/proc/self/stat`) `stat` names, exited threads included; `None` where
/// the file cannot be read (not Linux, or the process is gone).
pub fn cpu_time(stat: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The command name may hold spaces; the fields after its `)` do not.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|t| *t > 0)?;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// User + system time of this whole process, exited threads included (zero
/// where [`cpu_time`] cannot tell).
pub fn process_cpu() -> Duration {
    cpu_time("/proc/self/stat").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_cpu_time() {
        assert!(cpu_time("/proc/self/stat").is_some());
    }
}
