//! The write model: every aggregate, and the decisions that span them.

use super::api_key::{self, ApiKey};
use super::balance::{self, open_balance, Balance};
use super::command::*;
use super::connection::{self, Connection, ConnectionStatus};
use super::file::{self, StoredFile};
use super::invoice::{self, InvoiceState, InvoiceStatus};
use super::organization::{self, Organization};
use super::payment::{Payment, PaymentStatus};
use super::refund::Refund;
use super::webhook_endpoint::{self, WebhookEndpoint};
use super::withdrawal::{self, Withdrawal};
use super::{need, Ctx, DomainError};
use crate::events::{Actor, Event, Hold, LineItem, Party, RecordedEvent, StreamId, StreamKind};
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
            Command::SettleInvoice { id } => self.decide_settle(org, *id, ctx),
            Command::RetryPayment { id } => self.decide_retry(org, *id, ctx),
            SubmitWithdrawal { .. }
            | ApproveWithdrawal { .. }
            | RejectWithdrawal { .. }
            | CancelWithdrawal { .. } => withdrawal::decide(self, org, key, command, ctx),
            Command::CreateRefund {
                transaction_id,
                amount,
                reason,
            } => self.decide_create_refund(org, *transaction_id, amount, reason, ctx),
            Command::ApproveRefund { id } => {
                let r = self.visible_refund(org, *id)?;
                r.check_decide("approve", org)?;
                let payee = need(
                    self.balance_of(r.payee_organization_id, r.currency),
                    "balance",
                )?;
                payee.check_not_frozen()?;
                payee.check_available(r.amount)?;
                let mut events = Vec::new();
                let payer_balance =
                    open_balance(self, r.payer_organization_id, r.currency, ctx, &mut events);
                let payee_tx = ctx.id();
                let payer_tx = ctx.id();
                events.push(Event::RefundApproved {
                    id: *id,
                    payee_transaction_id: payee_tx,
                    payer_transaction_id: payer_tx,
                });
                events.push(Event::RefundDebited {
                    balance_id: payee.id,
                    transaction_id: payee_tx,
                    refund_id: *id,
                    counterparty_organization_id: r.payer_organization_id,
                    amount: r.amount,
                });
                events.push(Event::RefundCredited {
                    balance_id: payer_balance,
                    transaction_id: payer_tx,
                    refund_id: *id,
                    counterparty_organization_id: r.payee_organization_id,
                    amount: r.amount,
                });
                Ok((Outcome::Refund(*id), events))
            }
            Command::RejectRefund { id, reason } => {
                let r = self.visible_refund(org, *id)?;
                r.check_decide("reject", org)?;
                let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
                Ok((
                    Outcome::Refund(*id),
                    vec![Event::RefundRejected { id: *id, reason }],
                ))
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

    fn visible_refund(&self, org: OrganizationId, id: RefundId) -> Result<&Refund, DomainError> {
        need(
            self.refunds
                .get(&id)
                .filter(|r| r.payee_organization_id == org || r.payer_organization_id == org),
            "refund",
        )
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
                return self.decide_approve(
                    inv,
                    party,
                    adjusted_amount.as_deref(),
                    reason.as_deref(),
                )
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
                events.extend(self.release_invoice_hold(inv)?);
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

    fn release_invoice_hold(&self, inv: &InvoiceState) -> Result<Vec<Event>, DomainError> {
        let Some(balance) = self.balance_of(inv.buyer_organization_id, inv.currency) else {
            return Ok(vec![]);
        };
        let hold = Hold::Invoice(inv.id);
        Ok(match balance.holds.get(&hold) {
            Some(amount) => vec![Event::ReservationReleased {
                balance_id: balance.id,
                hold,
                amount: *amount,
            }],
            None => vec![],
        })
    }

    fn decide_approve(
        &self,
        inv: &InvoiceState,
        party: Party,
        adjusted: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        inv.check(
            "approve",
            party,
            &[Party::Buyer],
            &[InvoiceStatus::Submitted],
        )?;
        let total = inv.total;
        let (amount, adjustment_reason) = match adjusted {
            None => (total, None),
            Some(raw) => {
                let amount = Amount::parse(inv.currency, raw)?;
                if amount >= total {
                    return Err(DomainError::Validation(format!(
                        "adjustedAmount must be less than the invoice total {}",
                        total.format(inv.currency)
                    )));
                }
                let reason = reason.ok_or_else(|| {
                    DomainError::Validation("reason is required with adjustedAmount".into())
                })?;
                (
                    amount,
                    Some(invoice::required_text(
                        "reason",
                        reason,
                        invoice::MAX_TEXT_CHARS,
                    )?),
                )
            }
        };
        if amount.is_zero() {
            return Err(DomainError::Validation(
                "an invoice with a total of zero cannot be approved".into(),
            ));
        }
        let balance = self
            .balance_of(inv.buyer_organization_id, inv.currency)
            .ok_or_else(|| DomainError::insufficient(inv.currency, amount, Amount::ZERO))?;
        balance.check_reserve(Hold::Invoice(inv.id), amount)?;
        Ok((
            Outcome::Invoice(inv.id),
            vec![
                Event::InvoiceApproved {
                    id: inv.id,
                    approved_amount: amount,
                    adjustment_reason,
                },
                Event::FundsReserved {
                    balance_id: balance.id,
                    hold: Hold::Invoice(inv.id),
                    amount,
                },
            ],
        ))
    }

    fn decide_settle(
        &self,
        org: OrganizationId,
        id: InvoiceId,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        let (inv, party) = self.visible_invoice(org, id)?;
        inv.check(
            "settle",
            party,
            &[Party::Buyer],
            &[
                InvoiceStatus::Approved,
                InvoiceStatus::ApprovedWithAdjustment,
            ],
        )?;
        // An earlier attempt that failed is retried rather than duplicated.
        if let Some(failed) = self
            .failed_by_payer
            .get(&org)
            .into_iter()
            .flatten()
            .find(|p| self.payments.get(*p).is_some_and(|p| p.invoice_id == id))
        {
            return self.decide_retry(org, *failed, ctx);
        }
        let amount = inv.approved_amount.ok_or(DomainError::InvalidTransition {
            entity: "invoice",
            action: "settle",
            current: inv.status.as_str(),
        })?;
        let payment_id: PaymentId = ctx.id();
        let mut events = vec![Event::PaymentInitiated {
            id: payment_id,
            invoice_id: id,
            payer_organization_id: inv.buyer_organization_id,
            payee_organization_id: inv.seller_organization_id,
            currency: inv.currency,
            amount,
        }];
        self.attempt_transfer(inv, payment_id, amount, ctx, &mut events)?;
        Ok((Outcome::Payment(payment_id), events))
    }

    fn decide_retry(
        &self,
        org: OrganizationId,
        id: PaymentId,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        let p = need(
            self.payments
                .get(&id)
                .filter(|p| p.payer_organization_id == org || p.payee_organization_id == org),
            "payment",
        )?;
        if p.payer_organization_id != org {
            return Err(DomainError::Forbidden(
                "only the payer may retry a payment".into(),
            ));
        }
        if p.status != PaymentStatus::Failed {
            return Err(DomainError::InvalidTransition {
                entity: "payment",
                action: "retry",
                current: p.status.as_str(),
            });
        }
        let inv = need(self.invoices.get(&p.invoice_id), "invoice")?;
        if !inv.status.is_approved() {
            return Err(DomainError::InvalidTransition {
                entity: "invoice",
                action: "settle",
                current: inv.status.as_str(),
            });
        }
        let mut events = Vec::new();
        self.attempt_transfer(inv, id, p.amount, ctx, &mut events)?;
        Ok((Outcome::Payment(id), events))
    }

    /// The transfer itself: completes, or fails (frozen side) keeping the reservation.
    fn attempt_transfer(
        &self,
        inv: &InvoiceState,
        payment_id: PaymentId,
        amount: Amount,
        ctx: &mut Ctx<'_>,
        events: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let payer = need(
            self.balance_of(inv.buyer_organization_id, inv.currency),
            "balance",
        )?;
        let held = payer.hold(Hold::Invoice(inv.id))?;
        if held != amount {
            return Err(DomainError::Validation(
                "reservation does not match the approved amount".into(),
            ));
        }
        let payee_frozen = self
            .balance_of(inv.seller_organization_id, inv.currency)
            .is_some_and(|b| b.frozen);
        let reason = match (payer.frozen, payee_frozen) {
            (true, _) => Some("payer balance is frozen"),
            (_, true) => Some("payee balance is frozen"),
            _ => None,
        };
        if let Some(reason) = reason {
            events.push(Event::PaymentFailed {
                id: payment_id,
                reason: reason.into(),
            });
            return Ok(());
        }
        let payee_balance =
            open_balance(self, inv.seller_organization_id, inv.currency, ctx, events);
        let payer_tx = ctx.id();
        let payee_tx = ctx.id();
        events.push(Event::PaymentCompleted {
            id: payment_id,
            payer_transaction_id: payer_tx,
            payee_transaction_id: payee_tx,
        });
        events.push(Event::SettlementDebited {
            balance_id: payer.id,
            transaction_id: payer_tx,
            payment_id,
            invoice_id: inv.id,
            counterparty_organization_id: inv.seller_organization_id,
            amount,
        });
        events.push(Event::SettlementCredited {
            balance_id: payee_balance,
            transaction_id: payee_tx,
            payment_id,
            invoice_id: inv.id,
            counterparty_organization_id: inv.buyer_organization_id,
            amount,
        });
        events.push(Event::InvoiceSettled {
            id: inv.id,
            payment_id,
        });
        Ok(())
    }

    fn decide_create_refund(
        &self,
        org: OrganizationId,
        transaction_id: TransactionId,
        amount: &str,
        reason: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Outcome, Vec<Event>), DomainError> {
        let payment = self
            .settlement_transactions
            .get(&transaction_id)
            .and_then(|p| self.payments.get(p))
            .filter(|p| p.payer_organization_id == org || p.payee_organization_id == org);
        let payment = need(payment, "transaction")?;
        let amount = Amount::parse(payment.currency, amount)?;
        if amount > payment.refundable() {
            return Err(DomainError::Validation(format!(
                "refund exceeds what may still be refunded ({})",
                payment.refundable().format(payment.currency)
            )));
        }
        let reason = invoice::required_text("reason", reason, invoice::MAX_TEXT_CHARS)?;
        let id = ctx.id();
        Ok((
            Outcome::Refund(id),
            vec![Event::RefundCreated {
                id,
                transaction_id,
                payment_id: payment.id,
                invoice_id: payment.invoice_id,
                payee_organization_id: payment.payee_organization_id,
                payer_organization_id: payment.payer_organization_id,
                requested_by: org,
                currency: payment.currency,
                amount,
                reason,
            }],
        ))
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
