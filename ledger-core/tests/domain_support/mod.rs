//! Shared harness for the pure-domain tests (`invoice_state_machine`,
//! `treasury_rules`): a `World` that drives `Ledger::execute` directly (no log,
//! no engine), keeps its own money bookkeeping, and builders for the usual
//! scenery (organizations, connections, invoices in a given state).
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use chrono::{NaiveDate, TimeZone, Utc};
use ledger_core::domain::balance::Balance;
use ledger_core::domain::command::{InvoiceAction, LineItemInput, NewInvoice};
use ledger_core::domain::invoice::{Invoice, InvoiceState, InvoiceStatus};
use ledger_core::domain::payment::Payment;
use ledger_core::domain::refund::Refund;
use ledger_core::domain::withdrawal::Withdrawal;
use ledger_core::domain::{Command, Ctx, DomainError, Ledger, Outcome};
use ledger_core::events::{
    Actor, Destination, Party, Permission, RecordedEvent, StreamId, StreamKind,
};
use ledger_core::ids::*;
use ledger_core::money::{Amount, Currency, Quantity, TaxRate};
use ledger_core::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// money shorthands
// ---------------------------------------------------------------------------

pub fn cur(code: &str) -> Currency {
    Currency::parse(code).unwrap_or_else(|e| panic!("currency {code}: {e}"))
}

/// An amount that may be zero, written as the API would (`"12.50"`).
pub fn amt(code: &str, s: &str) -> Amount {
    Amount::parse_non_negative(cur(code), s).unwrap_or_else(|e| panic!("amount {s} {code}: {e}"))
}

pub fn usd(s: &str) -> Amount {
    amt("USD", s)
}

pub fn fmt(a: Amount, code: &str) -> String {
    a.format(cur(code))
}

pub fn line(description: &str, quantity: &str, unit_price: &str, tax_rate: &str) -> LineItemInput {
    LineItemInput {
        description: description.into(),
        quantity: Quantity::parse(quantity).unwrap_or_else(|e| panic!("quantity {quantity}: {e}")),
        unit_price: unit_price.into(),
        tax_rate: TaxRate::parse(tax_rate).unwrap_or_else(|e| panic!("tax rate {tax_rate}: {e}")),
    }
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub fn destination() -> Destination {
    Destination {
        fields: vec![("iban".into(), "DE89370400440532013000".into())],
    }
}

// ---------------------------------------------------------------------------
// error shapes
// ---------------------------------------------------------------------------

/// The documented error class of a refusal, for table comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Validation,
    /// `InvalidTransition` with this `entity` and `current` state.
    Invalid(&'static str, &'static str),
    Insufficient,
    Forbidden,
    NotFound,
    VersionConflict,
}

pub fn refusal(e: &DomainError) -> Refusal {
    match e {
        DomainError::Validation(_) => Refusal::Validation,
        DomainError::InvalidTransition {
            entity, current, ..
        } => Refusal::Invalid(entity, current),
        DomainError::InsufficientBalance { .. } => Refusal::Insufficient,
        DomainError::Forbidden(_) => Refusal::Forbidden,
        DomainError::NotFound(_) => Refusal::NotFound,
        DomainError::VersionConflict { .. } => Refusal::VersionConflict,
    }
}

// ---------------------------------------------------------------------------
// the world
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Org {
    pub id: OrganizationId,
    pub key: ApiKeyId,
}

impl Org {
    pub fn actor(&self) -> Actor {
        self.with_key(self.key)
    }
    pub fn with_key(&self, key: ApiKeyId) -> Actor {
        Actor::ApiKey {
            organization_id: self.id,
            api_key_id: key,
        }
    }
}

/// Everything a refused command must leave exactly as it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub last_seq: u64,
    pub invoices: HashMap<InvoiceId, Invoice>,
    pub balances: HashMap<BalanceId, Balance>,
    pub payments: HashMap<PaymentId, Payment>,
    pub withdrawals: HashMap<WithdrawalId, Withdrawal>,
    pub refunds: HashMap<RefundId, Refund>,
    pub versions: HashMap<StreamId, u64>,
}

pub struct World {
    pub ledger: Ledger,
    /// Every invoice in full, folded from the events with `Invoice::evolve`:
    /// the write model keeps only what decisions need of them
    /// (`InvoiceState`), and must always equal `InvoiceState::of` these.
    pub invoices: HashMap<InvoiceId, Invoice>,
    pub now: Timestamp,
    /// The events of the last command run.
    pub last_events: Vec<RecordedEvent>,
    // Our own bookkeeping of money entering and leaving the system, kept from
    // the commands we ran and their answers, never from `ledger.supply`.
    deposited: BTreeMap<Currency, Amount>,
    withdrawn: BTreeMap<Currency, Amount>,
    submitted_withdrawals: HashMap<WithdrawalId, (Currency, Amount)>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        World {
            ledger: Ledger::new(),
            invoices: HashMap::new(),
            now: Timestamp::from_datetime(Utc.with_ymd_and_hms(2025, 3, 10, 9, 30, 0).unwrap()),
            last_events: Vec::new(),
            deposited: BTreeMap::new(),
            withdrawn: BTreeMap::new(),
            submitted_withdrawals: HashMap::new(),
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.now.date()
    }

    /// Runs one command through `Ledger::execute`. A broken invariant fails
    /// the test; a refusal must come with no events at all.
    pub fn run(&mut self, actor: &Actor, command: Command) -> Result<Outcome, DomainError> {
        let mut fresh = Uuid::now_v7;
        let mut ctx = Ctx {
            now: self.now,
            ids: &mut fresh,
        };
        let mut out = Vec::new();
        let before = self.ledger.last_seq;
        let result = self
            .ledger
            .execute(actor, None, &command, &mut ctx, &mut out)
            .unwrap_or_else(|v| panic!("invariant violated by {command:?}: {v}"));
        if let Err(e) = &result {
            assert!(
                out.is_empty(),
                "refused command {command:?} ({e}) produced events {out:?}"
            );
            assert_eq!(
                self.ledger.last_seq, before,
                "refused command moved last_seq"
            );
        }
        assert_eq!(
            self.ledger.last_seq,
            before + out.len() as u64,
            "last_seq vs events"
        );
        self.book(&command, &result);
        self.fold_invoices(&out);
        self.last_events = out;
        // Money is conserved after every command, not just at the end.
        self.assert_conserved();
        result
    }

    /// Folds the full invoices and checks the write model keeps exactly
    /// their decision state.
    fn fold_invoices(&mut self, events: &[RecordedEvent]) {
        for e in events {
            if let Some(inv) = Invoice::created(&e.event, e.at) {
                self.invoices.insert(inv.id, inv);
                continue;
            }
            if e.event.stream().kind != StreamKind::Invoice {
                continue;
            }
            let id = InvoiceId::from_uuid(e.event.stream().id);
            let full = self
                .invoices
                .get_mut(&id)
                .expect("an event of a known invoice");
            full.evolve(&e.event, e.at);
        }
        for e in events {
            if e.event.stream().kind == StreamKind::Invoice {
                let id = InvoiceId::from_uuid(e.event.stream().id);
                assert_eq!(
                    InvoiceState::of(&self.invoices[&id]),
                    self.ledger.invoices[&id],
                    "the write model's invoice is the decision state of the full one"
                );
            }
        }
    }

    fn book(&mut self, command: &Command, result: &Result<Outcome, DomainError>) {
        match (command, result) {
            (
                Command::Deposit {
                    currency, amount, ..
                },
                Ok(_),
            ) => add_to(&mut self.deposited, *currency, *amount),
            (
                Command::SubmitWithdrawal {
                    currency, amount, ..
                },
                Ok(Outcome::Withdrawal(id)),
            ) => {
                self.submitted_withdrawals.insert(*id, (*currency, *amount));
            }
            (Command::ApproveWithdrawal { id }, Ok(_)) => {
                let (currency, amount) = self.submitted_withdrawals[id];
                add_to(&mut self.withdrawn, currency, amount);
            }
            (Command::Bulk(_), Ok(_)) => panic!("bookkeeping does not follow bulk commands"),
            _ => {}
        }
    }

    /// Runs a command that must succeed.
    pub fn ok(&mut self, actor: &Actor, command: Command) -> Outcome {
        let shown = format!("{command:?}");
        self.run(actor, command)
            .unwrap_or_else(|e| panic!("{shown} refused: {e:?}"))
    }

    pub fn snapshot(&self) -> Snapshot {
        let l = &self.ledger;
        Snapshot {
            last_seq: l.last_seq,
            invoices: self.invoices.clone(),
            balances: l.balances.clone(),
            payments: l.payments.clone().into_iter().collect(),
            withdrawals: l.withdrawals.clone().into_iter().collect(),
            refunds: l.refunds.clone().into_iter().collect(),
            versions: l.versions.clone(),
        }
    }

    /// Runs a command that must be refused with `expected`, changing nothing.
    pub fn refused(&mut self, actor: &Actor, command: Command, expected: Refusal) -> DomainError {
        let before = self.snapshot();
        let shown = format!("{command:?}");
        let err = match self.run(actor, command) {
            Ok(o) => panic!("{shown} was accepted ({o:?}); expected {expected:?}"),
            Err(e) => e,
        };
        assert_eq!(refusal(&err), expected, "{shown}: {err}");
        assert!(self.last_events.is_empty());
        assert!(
            self.snapshot() == before,
            "{shown} was refused but changed the ledger"
        );
        err
    }

    // --- conservation -----------------------------------------------------

    /// Per currency: the balances' totals add up to deposits − completed
    /// withdrawals as we booked them; every balance is internally sound.
    pub fn assert_conserved(&self) {
        let mut totals: BTreeMap<Currency, Amount> = BTreeMap::new();
        for b in self.ledger.balances.values() {
            add_to(&mut totals, b.currency, b.total);
            let held = b
                .holds
                .values()
                .fold(Amount::ZERO, |acc, a| acc.checked_add(*a).unwrap());
            assert_eq!(held, b.reserved, "balance {} reserved ≠ sum of holds", b.id);
            let committed = b.reserved.checked_add(b.collateral).unwrap();
            assert!(
                committed <= b.total,
                "balance {} has negative available",
                b.id
            );
        }
        let mut currencies: Vec<Currency> = totals.keys().copied().collect();
        currencies.extend(self.deposited.keys().copied());
        currencies.sort();
        currencies.dedup();
        for c in currencies {
            let deposited = self.deposited.get(&c).copied().unwrap_or(Amount::ZERO);
            let withdrawn = self.withdrawn.get(&c).copied().unwrap_or(Amount::ZERO);
            let expected = deposited
                .checked_sub(withdrawn)
                .unwrap_or_else(|| panic!("{c}: booked more withdrawn than deposited"));
            let held = totals.get(&c).copied().unwrap_or(Amount::ZERO);
            assert_eq!(
                held,
                expected,
                "{c}: balances hold {} but deposits − withdrawals = {}",
                held.format(c),
                expected.format(c)
            );
        }
    }

    pub fn booked_deposits(&self, c: Currency) -> Amount {
        self.deposited.get(&c).copied().unwrap_or(Amount::ZERO)
    }

    pub fn booked_withdrawals(&self, c: Currency) -> Amount {
        self.withdrawn.get(&c).copied().unwrap_or(Amount::ZERO)
    }

    // --- builders ---------------------------------------------------------

    pub fn org(&mut self, name: &str) -> Org {
        match self.ok(
            &Actor::Admin,
            Command::CreateOrganization {
                name: name.into(),
                api_key_secret_hash: [7; 32],
            },
        ) {
            Outcome::Organization { id, api_key_id } => Org {
                id,
                key: api_key_id,
            },
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    /// A second API key of `org` (all permissions).
    pub fn api_key(&mut self, org: &Org) -> ApiKeyId {
        match self.ok(
            &org.actor(),
            Command::CreateApiKey {
                name: "checker".into(),
                permissions: vec![Permission::All],
                secret_hash: [9; 32],
                expires_at: None,
            },
        ) {
            Outcome::ApiKey(id) => id,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    pub fn deposit(&mut self, org: &Org, code: &str, amount: &str) -> TransactionId {
        match self.ok(
            &Actor::Admin,
            Command::Deposit {
                organization_id: org.id,
                currency: cur(code),
                amount: amt(code, amount),
                reference: "wire 42".into(),
            },
        ) {
            Outcome::Transaction { id, .. } => id,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    pub fn set_collateral(&mut self, org: &Org, code: &str, amount: &str) {
        self.ok(
            &Actor::Admin,
            Command::SetCollateral {
                organization_id: org.id,
                currency: cur(code),
                amount: amt(code, amount),
            },
        );
    }

    pub fn freeze(&mut self, org: &Org, code: &str) {
        self.ok(
            &Actor::Admin,
            Command::FreezeBalance {
                organization_id: org.id,
                currency: cur(code),
                reason: "compliance review".into(),
            },
        );
    }

    pub fn unfreeze(&mut self, org: &Org, code: &str) {
        self.ok(
            &Actor::Admin,
            Command::UnfreezeBalance {
                organization_id: org.id,
                currency: cur(code),
                reason: "review done".into(),
            },
        );
    }

    /// An ACTIVE connection, `seller` selling to `buyer`.
    pub fn connect(&mut self, seller: &Org, buyer: &Org) -> ConnectionId {
        let id = match self.ok(
            &seller.actor(),
            Command::RequestConnection {
                counterparty: buyer.id,
                role: Party::Seller,
            },
        ) {
            Outcome::Connection(id) => id,
            other => panic!("unexpected outcome {other:?}"),
        };
        self.ok(&buyer.actor(), Command::AcceptConnection { id });
        id
    }

    pub fn new_invoice(
        &self,
        connection_id: ConnectionId,
        code: &str,
        lines: Vec<LineItemInput>,
        submit: bool,
    ) -> NewInvoice {
        NewInvoice {
            connection_id,
            number: None,
            currency: cur(code),
            issue_date: None,
            due_date: self.today(),
            memo: None,
            line_items: lines,
            attachments: vec![],
            submit,
        }
    }

    pub fn create_invoice(&mut self, seller: &Org, new: NewInvoice) -> InvoiceId {
        match self.ok(&seller.actor(), Command::CreateInvoice(new)) {
            Outcome::Invoice(id) => id,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    pub fn act(
        &mut self,
        org: &Org,
        id: InvoiceId,
        action: InvoiceAction,
    ) -> Result<Outcome, DomainError> {
        self.run(&org.actor(), Command::Invoice { id, action })
    }

    pub fn act_ok(&mut self, org: &Org, id: InvoiceId, action: InvoiceAction) {
        self.ok(&org.actor(), Command::Invoice { id, action });
    }

    pub fn settle(&mut self, buyer: &Org, id: InvoiceId) -> PaymentId {
        match self.ok(&buyer.actor(), Command::SettleInvoice { id }) {
            Outcome::Payment(p) => p,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    // --- reading ----------------------------------------------------------

    pub fn invoice(&self, id: InvoiceId) -> &Invoice {
        &self.invoices[&id]
    }

    pub fn status(&self, id: InvoiceId) -> InvoiceStatus {
        self.invoice(id).status
    }

    pub fn invoice_stream_version(&self, id: InvoiceId) -> u64 {
        self.ledger.version(StreamId {
            kind: StreamKind::Invoice,
            id: id.as_uuid(),
        })
    }

    pub fn balance(&self, org: &Org, code: &str) -> Option<&Balance> {
        self.ledger.balance_of(org.id, cur(code))
    }

    /// `(total, reserved, available)` formatted, `None` if no balance was opened.
    pub fn figures(&self, org: &Org, code: &str) -> Option<(String, String, String)> {
        self.balance(org, code).map(|b| {
            (
                fmt(b.total, code),
                fmt(b.reserved, code),
                fmt(b.available(), code),
            )
        })
    }

    pub fn payment(&self, id: PaymentId) -> &Payment {
        &self.ledger.payments[&id]
    }

    pub fn event_names(&self) -> Vec<&'static str> {
        self.last_events
            .iter()
            .map(|e| e.event.type_name())
            .collect()
    }
}

fn add_to(map: &mut BTreeMap<Currency, Amount>, c: Currency, a: Amount) {
    let slot = map.entry(c).or_insert(Amount::ZERO);
    *slot = slot.checked_add(a).expect("bookkeeping overflow");
}

// ---------------------------------------------------------------------------
// A seller, a buyer over an active connection, and an unrelated organization.
// ---------------------------------------------------------------------------

pub struct Scene {
    pub w: World,
    pub seller: Org,
    pub buyer: Org,
    pub stranger: Org,
    pub connection: ConnectionId,
}

/// The standard invoice: 10 × 10.00 USD at 10 % → subtotal 100.00, tax 10.00, total 110.00.
pub const STD_TOTAL: &str = "110.00";

impl Scene {
    /// `buyer_funds` USD deposited to the buyer (none when empty).
    pub fn new(buyer_funds: &str) -> Self {
        let mut w = World::new();
        let seller = w.org("Seller GmbH");
        let buyer = w.org("Buyer Ltd");
        let stranger = w.org("Stranger Inc");
        let connection = w.connect(&seller, &buyer);
        if !buyer_funds.is_empty() {
            w.deposit(&buyer, "USD", buyer_funds);
        }
        Scene {
            w,
            seller,
            buyer,
            stranger,
            connection,
        }
    }

    pub fn std_lines() -> Vec<LineItemInput> {
        vec![line("consulting", "10", "10.00", "10")]
    }

    pub fn draft(&mut self) -> InvoiceId {
        let new = self
            .w
            .new_invoice(self.connection, "USD", Self::std_lines(), false);
        self.w.create_invoice(&self.seller, new)
    }

    pub fn submitted(&mut self) -> InvoiceId {
        let new = self
            .w
            .new_invoice(self.connection, "USD", Self::std_lines(), true);
        self.w.create_invoice(&self.seller, new)
    }

    pub fn approved(&mut self) -> InvoiceId {
        let id = self.submitted();
        self.w.act_ok(&self.buyer, id, approve());
        id
    }

    pub fn approved_adjusted(&mut self, amount: &str) -> InvoiceId {
        let id = self.submitted();
        self.w.act_ok(
            &self.buyer,
            id,
            approve_adjusted(amount, "two units damaged"),
        );
        id
    }

    pub fn settled(&mut self) -> (InvoiceId, PaymentId) {
        let id = self.approved();
        let buyer = self.buyer;
        let p = self.w.settle(&buyer, id);
        (id, p)
    }
}

pub fn approve() -> InvoiceAction {
    InvoiceAction::Approve {
        adjusted_amount: None,
        reason: None,
    }
}

pub fn approve_adjusted(amount: &str, reason: &str) -> InvoiceAction {
    InvoiceAction::Approve {
        adjusted_amount: Some(amount.into()),
        reason: Some(reason.into()),
    }
}

pub fn request_cancellation() -> InvoiceAction {
    InvoiceAction::RequestCancellation {
        reason: "order withdrawn".into(),
    }
}
