//! The write model: every aggregate, and the decisions that span them.

use super::api_key::{self, ApiKey};
use super::balance::{self, Balance};
use super::command::*;
use super::connection::{self, Connection, ConnectionStatus};
use super::file::{self, StoredFile};
use super::invoice::{self, InvoiceState, InvoiceStatus};
use super::organization::{self, Organization};
use super::payment::Payment;
use super::refund::{self, Refund};
use super::webhook_endpoint::{self, WebhookEndpoint};
use super::withdrawal::{self, Withdrawal};
use super::{need, settlement, Ctx, DomainError};
use crate::events::{Actor, Event, LineItem, Party, RecordedEvent, StreamId, StreamKind};
use crate::ids::*;
use crate::money::{line_figures, Amount, Currency};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};

/// Per currency: what came in, what left, what all balances hold, and what is
/// between the two halves of a transfer (a settlement or refund debited from
/// one side and not yet credited to the other). After every event
/// `balances_total + in_transit == deposited − withdrawn`; after every command
/// `in_transit == 0` as well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Supply {
    pub deposited: Amount,
    pub withdrawn: Amount,
    pub balances_total: Amount,
    pub in_transit: Amount,
}

/// A map for the tables of a million entries whose values are large. A
/// `HashMap` keeps each value in its slot, and its slots are 44–88% full
/// (the table doubles), so a table of 918k invoices costs 2M slots × 153 B.
/// An `IndexMap` keeps the entries in one vector (with their hash) and only
/// an 8-byte index per slot: 18–29 bytes more per entry, against the empty
/// slots' 14–129% of an entry's size. Its order is insertion order until a removal swaps
/// the last entry in; nothing here depends on the order. Serialized as a map,
/// as a `HashMap` is, so snapshots read the same either way.
pub type Dense<K, V> = IndexMap<K, V>;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    pub organizations: HashMap<OrganizationId, Organization>,
    pub api_keys: HashMap<ApiKeyId, ApiKey>,
    pub connections: HashMap<ConnectionId, Connection>,
    pub invoices: Dense<InvoiceId, InvoiceState>,
    pub payments: Dense<PaymentId, Payment>,
    pub balances: HashMap<BalanceId, Balance>,
    pub withdrawals: Dense<WithdrawalId, Withdrawal>,
    pub refunds: Dense<RefundId, Refund>,
    pub webhook_endpoints: HashMap<WebhookEndpointId, WebhookEndpoint>,
    pub files: HashMap<FileId, StoredFile>,

    // indexes, all derived from the events
    pub balance_index: HashMap<(OrganizationId, Currency), BalanceId>,
    pub settlement_transactions: HashMap<TransactionId, PaymentId>,
    pub approved_by_buyer: HashMap<OrganizationId, BTreeSet<InvoiceId>>,
    pub failed_by_payer: HashMap<OrganizationId, BTreeSet<PaymentId>>,
    pub invoices_by_seller: HashMap<OrganizationId, u64>,
    pub file_invoices: HashMap<FileId, BTreeSet<InvoiceId>>,
    pub supply: HashMap<Currency, Supply>,
    pub versions: HashMap<StreamId, u64>,
    pub last_seq: u64,
}

/// A broken invariant: a bug, never a user error. The engine refuses to commit
/// a batch that produces one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated at seq {seq}: {reason}")]
pub struct InvariantViolation {
    pub seq: u64,
    pub reason: String,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream's last version. An invoice carries its own (most streams
    /// are invoices, and a second map of a million entries is memory the
    /// decisions do not need); `versions` holds the other streams'.
    pub fn version(&self, stream: StreamId) -> u64 {
        if stream.kind == StreamKind::Invoice {
            return self
                .invoices
                .get(&InvoiceId::from_uuid(stream.id))
                .map_or(0, |i| i.version);
        }
        self.versions.get(&stream).copied().unwrap_or(0)
    }

    /// How many streams have events: the invoices (which keep their own
    /// versions) and the others in `versions`.
    pub fn stream_count(&self) -> usize {
        self.versions.len() + self.invoices.len()
    }

    pub fn balance_of(&self, org: OrganizationId, currency: Currency) -> Option<&Balance> {
        self.balance_index
            .get(&(org, currency))
            .and_then(|id| self.balances.get(id))
    }

    /// The invoice as `org` may see it, with `org`'s party; 404 otherwise
    /// (another organization's, or a draft to the buyer).
    pub fn visible_invoice(
        &self,
        org: OrganizationId,
        id: InvoiceId,
    ) -> Result<(&InvoiceState, Party), DomainError> {
        let inv = need(self.invoices.get(&id), "invoice")?;
        let party = need(inv.party_of(org), "invoice")?;
        Ok((inv, party))
    }

    // ------------------------------------------------------------------
    // decide
    // ------------------------------------------------------------------

    /// Decides one command against the current state. Pure: reads `self` and
    /// `ctx`, returns the events to append or why not.
    pub fn decide(
        &self,
        actor: &Actor,
        command: &Command,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        match actor {
            Actor::Admin => self.decide_admin(command, ctx),
            Actor::System => self.decide_system(command, ctx),
            Actor::ApiKey {
                organization_id,
                api_key_id,
            } => self.decide_org(*organization_id, *api_key_id, command, ctx),
        }
    }

    fn decide_admin(
        &self,
        command: &Command,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        match command {
            Command::CreateOrganization {
                name,
                api_key_secret_hash,
            } => organization::create(name, api_key_secret_hash, ctx),
            Command::Deposit { .. }
            | Command::SetCollateral { .. }
            | Command::FreezeBalance { .. }
            | Command::UnfreezeBalance { .. } => balance::decide(self, command, ctx),
            _ => Err(DomainError::Forbidden("not an operator command".into())),
        }
    }

    fn decide_system(
        &self,
        command: &Command,
        _ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        match command {
            Command::MarkPaymentDue { id, today } => {
                let inv = need(self.invoices.get(id), "invoice")?;
                if !inv.status.is_approved() || inv.payment_due_notified || inv.due_date > *today {
                    return Ok((Outcome::Invoice(*id), vec![]));
                }
                Ok((
                    Outcome::Invoice(*id),
                    vec![Event::InvoicePaymentDue {
                        id: *id,
                        due_date: inv.due_date,
                    }],
                ))
            }
            Command::AutoArchive { id } => {
                let inv = need(self.invoices.get(id), "invoice")?;
                if !matches!(
                    inv.status,
                    InvoiceStatus::Settled | InvoiceStatus::Cancelled
                ) {
                    return Ok((Outcome::Invoice(*id), vec![]));
                }
                Ok((
                    Outcome::Invoice(*id),
                    vec![Event::InvoiceArchived { id: *id }],
                ))
            }
            _ => Err(DomainError::Forbidden("not a scheduled command".into())),
        }
    }

    fn decide_org(
        &self,
        org: OrganizationId,
        key: ApiKeyId,
        command: &Command,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        use Command::*;
        match command {
            CreateApiKey { .. } | RevokeApiKey { .. } => api_key::decide(self, org, command, ctx),
            CreateWebhookEndpoint { .. }
            | UpdateWebhookEndpoint { .. }
            | DeleteWebhookEndpoint { .. }
            | RotateWebhookSecret { .. } => webhook_endpoint::decide(self, org, command, ctx),
            RequestConnection { .. } | AcceptConnection { .. } | RejectConnection { .. } => {
                connection::decide(self, org, command, ctx)
            }
            Command::CreateInvoice(new) => self.decide_create_invoice(org, new, ctx),
            Command::UpdateInvoice { id, patch } => {
                self.decide_update_invoice(org, *id, patch, ctx)
            }
            Command::AddLineItem { id, item } => {
                let (inv, party) = self.visible_invoice(org, *id)?;
                inv.check_line_items_editable(party)?;
                if inv.line_count as usize >= invoice::MAX_LINE_ITEMS {
                    return Err(DomainError::Validation(format!(
                        "an invoice holds at most {} line items",
                        invoice::MAX_LINE_ITEMS
                    )));
                }
                let item = make_line_item(inv.currency, ctx.id(), item)?;
                Ok((
                    Outcome::Invoice(*id),
                    vec![Event::LineItemAdded { id: *id, item }],
                ))
            }
            Command::UpdateLineItem {
                id,
                line_item_id,
                patch,
            } => {
                let (inv, party) = self.visible_invoice(org, *id)?;
                inv.check_line_items_editable(party)?;
                let old = inv.line_item(*line_item_id)?;
                let input = LineItemInput {
                    description: patch
                        .description
                        .clone()
                        .unwrap_or_else(|| old.description.clone()),
                    quantity: patch.quantity.unwrap_or(old.quantity),
                    unit_price: patch
                        .unit_price
                        .clone()
                        .unwrap_or_else(|| old.unit_price.format(inv.currency)),
                    tax_rate: patch.tax_rate.unwrap_or(old.tax_rate),
                };
                let item = make_line_item(inv.currency, *line_item_id, &input)?;
                Ok((
                    Outcome::Invoice(*id),
                    vec![Event::LineItemUpdated { id: *id, item }],
                ))
            }
            Command::RemoveLineItem { id, line_item_id } => {
                let (inv, party) = self.visible_invoice(org, *id)?;
                inv.check_line_items_editable(party)?;
                inv.line_item(*line_item_id)?;
                Ok((
                    Outcome::Invoice(*id),
                    vec![Event::LineItemRemoved {
                        id: *id,
                        line_item_id: *line_item_id,
                    }],
                ))
            }
            Command::Invoice { id, action } => self.decide_invoice_action(org, *id, action),
            SettleInvoice { id } => settlement::settle(self, org, *id, ctx),
            RetryPayment { id } => settlement::retry(self, org, *id, ctx),
            SubmitWithdrawal { .. }
            | ApproveWithdrawal { .. }
            | RejectWithdrawal { .. }
            | CancelWithdrawal { .. } => withdrawal::decide(self, org, key, command, ctx),
            CreateRefund { .. } | ApproveRefund { .. } | RejectRefund { .. } => {
                refund::decide(self, org, command, ctx)
            }
            StoreFile { .. } | DeleteFile { .. } => file::decide(self, org, command),
            Command::Bulk(_)
            | Command::SettleAllDue { .. }
            | Command::RetryFailedPayments { .. } => Err(DomainError::Validation(
                "composite commands are expanded before deciding".into(),
            )),
            Command::CreateOrganization { .. }
            | Command::Deposit { .. }
            | Command::SetCollateral { .. }
            | Command::FreezeBalance { .. }
            | Command::UnfreezeBalance { .. } => {
                Err(DomainError::Forbidden("operator command".into()))
            }
            Command::MarkPaymentDue { .. } | Command::AutoArchive { .. } => {
                Err(DomainError::Forbidden("scheduled command".into()))
            }
        }
    }

    fn check_attachments(&self, org: OrganizationId, files: &[FileId]) -> Result<(), DomainError> {
        if files.len() > invoice::MAX_ATTACHMENTS {
            return Err(DomainError::Validation(format!(
                "at most {} attachments",
                invoice::MAX_ATTACHMENTS
            )));
        }
        for f in files {
            need(
                self.files
                    .get(f)
                    .filter(|x| x.organization_id == org && !x.deleted),
                "file",
            )?;
        }
        Ok(())
    }

    fn decide_create_invoice(
        &self,
        org: OrganizationId,
        new: &NewInvoice,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        let conn = need(
            self.connections
                .get(&new.connection_id)
                .filter(|c| c.party_of(org).is_some()),
            "connection",
        )?;
        if conn.seller_organization_id != org {
            return Err(DomainError::Forbidden(
                "only the seller of a connection may invoice over it".into(),
            ));
        }
        if conn.status != ConnectionStatus::Active {
            return Err(DomainError::Validation(format!(
                "connection is {}, not ACTIVE",
                conn.status.as_str()
            )));
        }
        self.check_attachments(org, &new.attachments)?;
        let line_items = make_line_items(new.currency, &new.line_items, ctx)?;
        let issue_date = new.issue_date.unwrap_or_else(|| ctx.now.date());
        if new.due_date < issue_date {
            return Err(DomainError::Validation(
                "dueDate must not be before issueDate".into(),
            ));
        }
        let number = match &new.number {
            Some(n) => invoice::required_text("number", n, invoice::MAX_NUMBER_CHARS)?,
            None => format!(
                "INV-{:06}",
                self.invoices_by_seller.get(&org).copied().unwrap_or(0) + 1
            ),
        };
        let memo = match &new.memo {
            Some(m) => Some(invoice::bounded_text("memo", m, invoice::MAX_TEXT_CHARS)?),
            None => None,
        };
        let id: InvoiceId = ctx.id();
        let mut events = vec![Event::InvoiceCreated {
            id,
            connection_id: conn.id,
            seller_organization_id: conn.seller_organization_id,
            buyer_organization_id: conn.buyer_organization_id,
            number,
            currency: new.currency,
            issue_date,
            due_date: new.due_date,
            memo,
            line_items: line_items.clone(),
            attachments: new.attachments.clone(),
        }];
        if new.submit {
            if line_items.is_empty() || invoice::totals(&line_items).total.is_zero() {
                return Err(DomainError::Validation(
                    "an invoice needs at least one line item and a total above zero to be submitted".into(),
                ));
            }
            events.push(Event::InvoiceSubmitted { id });
        }
        Ok((Outcome::Invoice(id), events))
    }

    fn decide_update_invoice(
        &self,
        org: OrganizationId,
        id: InvoiceId,
        patch: &InvoicePatch,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        let (inv, party) = self.visible_invoice(org, id)?;
        // Who may PATCH comes first: a stale version never turns a 403 into a 409.
        inv.check_editable(party)?;
        if let Some(expected) = patch.expected_version {
            if expected != inv.version {
                return Err(DomainError::VersionConflict {
                    expected,
                    current: inv.version,
                });
            }
        }
        if let Some(files) = &patch.attachments {
            self.check_attachments(org, files)?;
        }
        let line_items = match &patch.line_items {
            Some(items) => Some(make_line_items(inv.currency, items, ctx)?),
            None => None,
        };
        if let Some(d) = patch.due_date {
            if d < inv.issue_date {
                return Err(DomainError::Validation(
                    "dueDate must not be before issueDate".into(),
                ));
            }
        }
        let number = match &patch.number {
            Some(n) => Some(invoice::required_text(
                "number",
                n,
                invoice::MAX_NUMBER_CHARS,
            )?),
            None => None,
        };
        let memo = match &patch.memo {
            Some(Some(m)) => Some(Some(invoice::bounded_text(
                "memo",
                m,
                invoice::MAX_TEXT_CHARS,
            )?)),
            Some(None) => Some(None),
            None => None,
        };
        Ok((
            Outcome::Invoice(id),
            vec![Event::InvoiceUpdated {
                id,
                number,
                due_date: patch.due_date,
                memo,
                line_items,
                attachments: patch.attachments.clone(),
            }],
        ))
    }

    fn decide_invoice_action(
        &self,
        org: OrganizationId,
        id: InvoiceId,
        action: &InvoiceAction,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        use InvoiceStatus as S;
        let (inv, party) = self.visible_invoice(org, id)?;
        let text = |field: &str, v: &str| invoice::required_text(field, v, invoice::MAX_TEXT_CHARS);
        let events = match action {
            InvoiceAction::Submit => {
                inv.check_submit(party)?;
                vec![Event::InvoiceSubmitted { id }]
            }
            InvoiceAction::RespondInfo { message } => {
                inv.check("respond to", party, &[Party::Seller], &[S::InfoRequested])?;
                // It goes back to SUBMITTED, so it must still be submittable.
                inv.check_submittable()?;
                vec![Event::InvoiceInfoProvided {
                    id,
                    message: text("message", message)?,
                }]
            }
            InvoiceAction::Approve {
                adjusted_amount,
                reason,
            } => {
                let adjusted = adjusted_amount.as_deref();
                settlement::approve_invoice(self, inv, party, adjusted, reason.as_deref())?
            }
            InvoiceAction::Dispute { reason } => {
                inv.check("dispute", party, &[Party::Buyer], &[S::Submitted])?;
                vec![Event::InvoiceDisputed {
                    id,
                    reason: text("reason", reason)?,
                }]
            }
            InvoiceAction::RequestInfo { question } => {
                inv.check(
                    "request information on",
                    party,
                    &[Party::Buyer],
                    &[S::Submitted],
                )?;
                vec![Event::InvoiceInfoRequested {
                    id,
                    question: text("question", question)?,
                }]
            }
            InvoiceAction::Cancel { reason } => {
                inv.check_cancel(party)?;
                let reason = invoice::optional_text("reason", reason.as_deref())?;
                vec![Event::InvoiceCancelled {
                    id,
                    by: party,
                    reason,
                }]
            }
            InvoiceAction::RequestCancellation { reason } => {
                inv.check(
                    "request cancellation of",
                    party,
                    &[Party::Seller, Party::Buyer],
                    &[S::Approved, S::ApprovedWithAdjustment],
                )?;
                vec![Event::InvoiceCancellationRequested {
                    id,
                    by: party,
                    reason: text("reason", reason)?,
                }]
            }
            InvoiceAction::AcceptCancellation => {
                inv.check_answer_cancellation("accept the cancellation of", party)?;
                let mut events = vec![Event::InvoiceCancelled {
                    id,
                    by: party,
                    reason: inv.cancellation().map(|c| c.reason.clone()),
                }];
                events.extend(settlement::release_invoice_hold(self, inv));
                events
            }
            InvoiceAction::RejectCancellation => {
                inv.check_answer_cancellation("reject the cancellation of", party)?;
                vec![Event::InvoiceCancellationRejected { id }]
            }
            InvoiceAction::Archive => {
                inv.check(
                    "archive",
                    party,
                    &[Party::Seller, Party::Buyer],
                    &[S::Settled, S::Cancelled],
                )?;
                vec![Event::InvoiceArchived { id }]
            }
            InvoiceAction::Restore => {
                inv.check(
                    "restore",
                    party,
                    &[Party::Seller, Party::Buyer],
                    &[S::Archived],
                )?;
                vec![Event::InvoiceRestored { id }]
            }
        };
        Ok((Outcome::Invoice(id), events))
    }
}

fn subject_of(command: &Command) -> Option<uuid::Uuid> {
    match command {
        Command::Invoice { id, .. } | Command::SettleInvoice { id } => Some(id.as_uuid()),
        Command::RetryPayment { id } => Some(id.as_uuid()),
        _ => None,
    }
}

fn make_line_item(
    currency: Currency,
    id: LineItemId,
    input: &LineItemInput,
) -> Result<LineItem, DomainError> {
    let description =
        invoice::required_text("description", &input.description, invoice::MAX_TEXT_CHARS)?;
    let unit_price = Amount::parse_non_negative(currency, &input.unit_price)?;
    let figures = line_figures(currency, input.quantity, unit_price, input.tax_rate)?;
    Ok(LineItem {
        id,
        description,
        quantity: input.quantity,
        unit_price,
        tax_rate: input.tax_rate,
        amount: figures.amount,
        tax_amount: figures.tax_amount,
    })
}

fn make_line_items(
    currency: Currency,
    inputs: &[LineItemInput],
    ctx: &mut Ctx<'_>,
) -> Result<Vec<LineItem>, DomainError> {
    if inputs.len() > invoice::MAX_LINE_ITEMS {
        return Err(DomainError::Validation(format!(
            "an invoice holds at most {} line items",
            invoice::MAX_LINE_ITEMS
        )));
    }
    inputs
        .iter()
        .map(|i| make_line_item(currency, ctx.id(), i))
        .collect()
}

/// Whose scheduled or composite work a command expands into.
impl Ledger {
    /// Composite commands become the independent commands they stand for,
    /// resolved against the state at the moment they run.
    pub fn expand(&self, actor: &Actor, command: &Command) -> Option<Vec<Command>> {
        match command {
            Command::Bulk(commands) => Some(commands.clone()),
            Command::SettleAllDue { as_of } => {
                let org = actor.organization()?;
                Some(
                    self.approved_by_buyer
                        .get(&org)
                        .into_iter()
                        .flatten()
                        .filter(|id| self.invoices.get(*id).is_some_and(|i| i.due_date <= *as_of))
                        .map(|id| Command::SettleInvoice { id: *id })
                        .collect(),
                )
            }
            Command::RetryFailedPayments { ids } => {
                let org = actor.organization()?;
                let ids: Vec<PaymentId> = match ids {
                    Some(ids) => ids.clone(),
                    // Only payments whose invoice can still be settled are worth retrying.
                    None => self
                        .failed_by_payer
                        .get(&org)
                        .into_iter()
                        .flatten()
                        .filter(|p| {
                            self.payments
                                .get(*p)
                                .and_then(|p| self.invoices.get(&p.invoice_id))
                                .is_some_and(|i| i.status.is_approved())
                        })
                        .copied()
                        .collect(),
                };
                Some(
                    ids.into_iter()
                        .map(|id| Command::RetryPayment { id })
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Decides `command`, records its events (numbered after `last_seq`) into
    /// `out` and applies them. Composite commands run each part on its own,
    /// against the state the parts before it left. The outer `Err` is a broken
    /// invariant: the state must then be rebuilt from the log.
    pub fn execute(
        &mut self,
        actor: &Actor,
        request_id: Option<RequestId>,
        command: &Command,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<Result<Outcome, DomainError>, InvariantViolation> {
        if let Some(parts) = self.expand(actor, command) {
            let mut results = Vec::with_capacity(parts.len());
            for part in &parts {
                let subject = subject_of(part);
                let result = self.execute_one(actor, request_id, part, ctx, out)?;
                results.push((subject, result));
            }
            return Ok(Ok(Outcome::Bulk(results)));
        }
        self.execute_one(actor, request_id, command, ctx, out)
    }

    fn execute_one(
        &mut self,
        actor: &Actor,
        request_id: Option<RequestId>,
        command: &Command,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<Result<Outcome, DomainError>, InvariantViolation> {
        let (outcome, events) = match self.decide(actor, command, ctx) {
            Ok(decided) => decided,
            Err(e) => return Ok(Err(e)),
        };
        for event in events {
            let recorded = RecordedEvent {
                seq: self.last_seq + 1,
                version: self.version(event.stream()) + 1,
                at: ctx.now,
                actor: *actor,
                request_id,
                event,
            };
            self.apply(&recorded)?;
            out.push(recorded);
        }
        // Both halves of every transfer are in: nothing may be left in transit.
        self.check_settled().map_err(|reason| InvariantViolation {
            seq: self.last_seq,
            reason,
        })?;
        Ok(Ok(outcome))
    }
}

#[cfg(test)]
mod size {
    /// What the write model costs per invoice and payment is measured and
    /// written in BENCHMARKS.md (a `Dense` entry is the value plus 24 bytes,
    /// plus 9 bytes per slot of its index): growing these types grows the
    /// server's memory by a million times as much.
    #[test]
    fn the_write_models_big_entries_stay_as_small_as_measured() {
        assert!(std::mem::size_of::<super::InvoiceState>() <= 136);
        assert!(std::mem::size_of::<super::Payment>() <= 192);
    }
}
