//! Invoices: the state machine of the overview's diagram, and who may move it.
//!
//! ```text
//! DRAFT → SUBMITTED | CANCELLED                       (seller)
//! SUBMITTED → APPROVED | APPROVED_WITH_ADJUSTMENT     (buyer, reserves funds)
//!           | DISPUTED | INFO_REQUESTED               (buyer)
//!           | CANCELLED                               (seller)
//! INFO_REQUESTED → SUBMITTED                          (seller responds)
//! DISPUTED → SUBMITTED (seller) | CANCELLED (either)
//! APPROVED* → SETTLED (payment) | CANCELLATION_REQUESTED (either)
//! CANCELLATION_REQUESTED → CANCELLED | the approved state it came from
//!                                                     (counterparty of requester)
//! SETTLED | CANCELLED → ARCHIVED (either) → back again (restore)
//! ```
//!
//! The commands that move it are decided in its `decide` submodule.

mod decide;
pub(super) use decide::{decide, decide_scheduled};

use super::ledger::Ledger;
use super::{misapplied, DomainError};
use crate::events::{Event, LineItem, Party, StreamKind};
use crate::ids::{ConnectionId, FileId, InvoiceId, LineItemId, OrganizationId, PaymentId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;
use chrono::NaiveDate;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum InvoiceStatus {
    Draft,
    Submitted,
    InfoRequested,
    Approved,
    ApprovedWithAdjustment,
    Disputed,
    CancellationRequested,
    Cancelled,
    Settled,
    Archived,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 10] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Submitted,
        InvoiceStatus::InfoRequested,
        InvoiceStatus::Approved,
        InvoiceStatus::ApprovedWithAdjustment,
        InvoiceStatus::Disputed,
        InvoiceStatus::CancellationRequested,
        InvoiceStatus::Cancelled,
        InvoiceStatus::Settled,
        InvoiceStatus::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "DRAFT",
            InvoiceStatus::Submitted => "SUBMITTED",
            InvoiceStatus::InfoRequested => "INFO_REQUESTED",
            InvoiceStatus::Approved => "APPROVED",
            InvoiceStatus::ApprovedWithAdjustment => "APPROVED_WITH_ADJUSTMENT",
            InvoiceStatus::Disputed => "DISPUTED",
            InvoiceStatus::CancellationRequested => "CANCELLATION_REQUESTED",
            InvoiceStatus::Cancelled => "CANCELLED",
            InvoiceStatus::Settled => "SETTLED",
            InvoiceStatus::Archived => "ARCHIVED",
        }
    }

    pub fn parse(s: &str) -> Option<InvoiceStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_approved(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Approved | InvoiceStatus::ApprovedWithAdjustment
        )
    }

    /// The edges of the overview's state diagram, nothing more.
    pub fn can_become(self, next: InvoiceStatus) -> bool {
        use InvoiceStatus::*;
        matches!(
            (self, next),
            (Draft, Submitted)
                | (Draft, Cancelled)
                | (Submitted, Approved)
                | (Submitted, ApprovedWithAdjustment)
                | (Submitted, Disputed)
                | (Submitted, Cancelled)
                | (Submitted, InfoRequested)
                | (InfoRequested, Submitted)
                | (Disputed, Submitted)
                | (Disputed, Cancelled)
                | (Approved, Settled)
                | (ApprovedWithAdjustment, Settled)
                | (Approved, CancellationRequested)
                | (ApprovedWithAdjustment, CancellationRequested)
                | (CancellationRequested, Cancelled)
                | (CancellationRequested, Approved)
                | (CancellationRequested, ApprovedWithAdjustment)
                | (Settled, Archived)
                | (Cancelled, Archived)
                | (Archived, Settled)
                | (Archived, Cancelled)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CancellationRequest {
    pub by: Party,
    pub reason: String,
    /// The approved state a rejection returns to.
    pub return_to: InvoiceStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invoice {
    pub id: InvoiceId,
    pub connection_id: ConnectionId,
    pub seller_organization_id: OrganizationId,
    pub buyer_organization_id: OrganizationId,
    pub number: String,
    pub currency: Currency,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub memo: Option<String>,
    pub line_items: Vec<LineItem>,
    pub attachments: Vec<FileId>,
    pub status: InvoiceStatus,
    pub approved_amount: Option<Amount>,
    pub adjustment_reason: Option<String>,
    pub dispute_reason: Option<String>,
    pub info_request: Option<String>,
    pub info_response: Option<String>,
    pub cancellation: Option<CancellationRequest>,
    pub cancellation_reason: Option<String>,
    pub archived_from: Option<InvoiceStatus>,
    pub payment_id: Option<PaymentId>,
    /// Set once submitted: a buyer never sees an invoice that was only ever a draft.
    pub visible_to_buyer: bool,
    pub payment_due_notified: bool,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The limits on an invoice's free text and size (every input is bounded).
pub const MAX_LINE_ITEMS: usize = 500;
pub const MAX_TEXT_CHARS: usize = 2000;
pub const MAX_NUMBER_CHARS: usize = 64;
pub const MAX_ATTACHMENTS: usize = 50;

pub fn bounded_text(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::Validation(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(value.to_string())
}

/// An optional free text, bounded like every other.
pub fn optional_text(field: &str, value: Option<&str>) -> Result<Option<String>, DomainError> {
    value
        .map(|v| bounded_text(field, v, MAX_TEXT_CHARS))
        .transpose()
}

pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::Validation(format!("{field} is required")));
    }
    bounded_text(field, value, max)
}

/// Totals are sums of the per-line figures, each already rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: Amount,
    pub tax_total: Amount,
    pub total: Amount,
}

pub fn totals(items: &[LineItem]) -> Totals {
    let mut subtotal = Amount::ZERO;
    let mut tax_total = Amount::ZERO;
    for item in items {
        // Bounded by MAX_LINE_ITEMS × Amount::MAX, far from overflow; saturate defensively.
        subtotal = subtotal.checked_add(item.amount).unwrap_or(subtotal);
        tax_total = tax_total.checked_add(item.tax_amount).unwrap_or(tax_total);
    }
    let total = subtotal.checked_add(tax_total).unwrap_or(subtotal);
    Totals {
        subtotal,
        tax_total,
        total,
    }
}

impl Invoice {
    /// The invoice a creation event makes.
    pub fn created(event: &Event, at: Timestamp) -> Option<Invoice> {
        let Event::InvoiceCreated {
            id,
            connection_id,
            seller_organization_id,
            buyer_organization_id,
            number,
            currency,
            issue_date,
            due_date,
            memo,
            line_items,
            attachments,
        } = event
        else {
            return None;
        };
        Some(Invoice {
            id: *id,
            connection_id: *connection_id,
            seller_organization_id: *seller_organization_id,
            buyer_organization_id: *buyer_organization_id,
            number: number.clone(),
            currency: *currency,
            issue_date: *issue_date,
            due_date: *due_date,
            memo: memo.clone(),
            line_items: line_items.clone(),
            attachments: attachments.clone(),
            status: InvoiceStatus::Draft,
            approved_amount: None,
            adjustment_reason: None,
            dispute_reason: None,
            info_request: None,
            info_response: None,
            cancellation: None,
            cancellation_reason: None,
            archived_from: None,
            payment_id: None,
            visible_to_buyer: false,
            payment_due_notified: false,
            version: 1,
            created_at: at,
            updated_at: at,
        })
    }

    pub fn totals(&self) -> Totals {
        totals(&self.line_items)
    }

    pub fn party_of(&self, org: OrganizationId) -> Option<Party> {
        party_of(
            self.seller_organization_id,
            self.buyer_organization_id,
            self.visible_to_buyer,
            org,
        )
    }

    /// Applies one of this invoice's events. Panics never; an event that does not
    /// fit is a log corruption the engine's invariant checks report.
    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        use Event::*;
        match event {
            InvoiceUpdated { .. }
            | LineItemAdded { .. }
            | LineItemUpdated { .. }
            | LineItemRemoved { .. } => self.edit(event),
            _ => self.transition(event),
        }
        self.version += 1;
        self.updated_at = at;
    }

    /// A change of its contents, which leaves its status as it is.
    fn edit(&mut self, event: &Event) {
        use Event::*;
        match event {
            InvoiceUpdated {
                number,
                due_date,
                memo,
                line_items,
                attachments,
                ..
            } => {
                if let Some(n) = number {
                    self.number = n.clone();
                }
                if let Some(d) = due_date {
                    self.due_date = *d;
                }
                if let Some(m) = memo {
                    self.memo = m.clone();
                }
                if let Some(items) = line_items {
                    self.line_items = items.clone();
                }
                if let Some(files) = attachments {
                    self.attachments = files.clone();
                }
            }
            LineItemAdded { item, .. } => self.line_items.push(item.clone()),
            LineItemUpdated { item, .. } => {
                if let Some(slot) = self.line_items.iter_mut().find(|l| l.id == item.id) {
                    *slot = item.clone();
                }
            }
            LineItemRemoved { line_item_id, .. } => {
                self.line_items.retain(|l| l.id != *line_item_id)
            }
            _ => {}
        }
    }

    /// A step of the state machine, keeping what it says and, for the steps
    /// that can be undone (a cancellation request, archiving), where it came from.
    fn transition(&mut self, event: &Event) {
        use Event::*;
        match event {
            InvoiceSubmitted { .. } => {
                self.status = InvoiceStatus::Submitted;
                self.visible_to_buyer = true;
            }
            InvoiceInfoRequested { question, .. } => {
                self.status = InvoiceStatus::InfoRequested;
                self.info_request = Some(question.clone());
            }
            InvoiceInfoProvided { message, .. } => {
                self.status = InvoiceStatus::Submitted;
                self.info_response = Some(message.clone());
            }
            InvoiceApproved {
                approved_amount,
                adjustment_reason,
                ..
            } => {
                self.status = if adjustment_reason.is_some() {
                    InvoiceStatus::ApprovedWithAdjustment
                } else {
                    InvoiceStatus::Approved
                };
                self.approved_amount = Some(*approved_amount);
                self.adjustment_reason = adjustment_reason.clone();
            }
            InvoiceDisputed { reason, .. } => {
                self.status = InvoiceStatus::Disputed;
                self.dispute_reason = Some(reason.clone());
            }
            InvoiceCancelled { reason, .. } => {
                self.status = InvoiceStatus::Cancelled;
                self.cancellation_reason = reason.clone();
            }
            InvoiceCancellationRequested { by, reason, .. } => {
                self.cancellation = Some(CancellationRequest {
                    by: *by,
                    reason: reason.clone(),
                    return_to: self.status,
                });
                self.status = InvoiceStatus::CancellationRequested;
            }
            InvoiceCancellationRejected { .. } => {
                if let Some(req) = self.cancellation.take() {
                    self.status = req.return_to;
                }
            }
            InvoiceSettled { payment_id, .. } => {
                self.status = InvoiceStatus::Settled;
                self.payment_id = Some(*payment_id);
            }
            InvoiceArchived { .. } => {
                self.archived_from = Some(self.status);
                self.status = InvoiceStatus::Archived;
            }
            InvoiceRestored { .. } => {
                if let Some(from) = self.archived_from.take() {
                    self.status = from;
                }
            }
            InvoicePaymentDue { .. } => self.payment_due_notified = true,
            _ => {}
        }
    }
}

fn party_of(
    seller: OrganizationId,
    buyer: OrganizationId,
    visible_to_buyer: bool,
    org: OrganizationId,
) -> Option<Party> {
    if org == seller {
        Some(Party::Seller)
    } else if org == buyer && visible_to_buyer {
        Some(Party::Buyer)
    } else {
        None
    }
}

/// What decisions need of an invoice, and all the write model keeps of one:
/// no number, memo, reasons or line descriptions once they can no longer be
/// edited. Its lines are kept while it is a DRAFT (line edits merge with
/// them), its cancellation request while one is open (accepting it repeats
/// the reason); afterwards the total and the line count are enough. Memory
/// is thus bounded by open business, not by history.
///
/// It evolves through [`Invoice::evolve`] itself (on a hollow invoice), so
/// the state machine exists once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvoiceState {
    pub id: InvoiceId,
    pub seller_organization_id: OrganizationId,
    pub buyer_organization_id: OrganizationId,
    pub currency: Currency,
    pub status: InvoiceStatus,
    pub visible_to_buyer: bool,
    pub payment_due_notified: bool,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub total: Amount,
    pub line_count: u32,
    pub approved_amount: Option<Amount>,
    pub archived_from: Option<InvoiceStatus>,
    pub payment_id: Option<PaymentId>,
    pub version: u64,
    /// Lines, attachments and an open cancellation request: most invoices
    /// have none of them once submitted, so they live behind one pointer
    /// (8 bytes instead of 80 in a table of a million entries).
    pub open: Option<Box<OpenParts>>,
}

/// The parts of an invoice kept only while they can still matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenParts {
    /// Only while DRAFT.
    pub lines: Vec<LineItem>,
    pub attachments: Vec<FileId>,
    /// Only while CANCELLATION_REQUESTED.
    pub cancellation: Option<CancellationRequest>,
}

impl OpenParts {
    /// None when there is nothing to keep, so `==` on states does not depend
    /// on whether an empty box was left behind.
    fn boxed(self) -> Option<Box<OpenParts>> {
        if self == OpenParts::default() {
            None
        } else {
            Some(Box::new(self))
        }
    }
}

impl InvoiceState {
    pub fn created(event: &Event, at: Timestamp) -> Option<InvoiceState> {
        Invoice::created(event, at).map(|full| {
            let t = full.totals();
            InvoiceState::keep(full, t.total)
        })
    }

    /// The decision state of a full invoice.
    pub fn of(full: &Invoice) -> InvoiceState {
        InvoiceState::keep(full.clone(), full.totals().total)
    }

    fn keep(full: Invoice, total: Amount) -> InvoiceState {
        let draft = full.status == InvoiceStatus::Draft;
        let requested = full.status == InvoiceStatus::CancellationRequested;
        let line_count = u32::try_from(full.line_items.len()).unwrap_or(u32::MAX);
        InvoiceState {
            id: full.id,
            seller_organization_id: full.seller_organization_id,
            buyer_organization_id: full.buyer_organization_id,
            currency: full.currency,
            status: full.status,
            visible_to_buyer: full.visible_to_buyer,
            payment_due_notified: full.payment_due_notified,
            issue_date: full.issue_date,
            due_date: full.due_date,
            total,
            line_count,
            approved_amount: full.approved_amount,
            archived_from: full.archived_from,
            payment_id: full.payment_id,
            version: full.version,
            open: OpenParts {
                lines: if draft { full.line_items } else { Vec::new() },
                attachments: full.attachments,
                cancellation: if requested { full.cancellation } else { None },
            }
            .boxed(),
        }
    }

    pub fn lines(&self) -> &[LineItem] {
        self.open.as_ref().map_or(&[], |o| &o.lines)
    }

    pub fn attachments(&self) -> &[FileId] {
        self.open.as_ref().map_or(&[], |o| &o.attachments)
    }

    pub fn cancellation(&self) -> Option<&CancellationRequest> {
        self.open.as_ref().and_then(|o| o.cancellation.as_ref())
    }

    /// The invoice as far as this state knows it: what `Invoice::evolve` reads.
    fn hollow(&mut self) -> Invoice {
        let open = self.open.take().map(|o| *o).unwrap_or_default();
        Invoice {
            id: self.id,
            connection_id: crate::ids::ConnectionId::from_uuid(uuid::Uuid::nil()),
            seller_organization_id: self.seller_organization_id,
            buyer_organization_id: self.buyer_organization_id,
            number: String::new(),
            currency: self.currency,
            issue_date: self.issue_date,
            due_date: self.due_date,
            memo: None,
            line_items: open.lines,
            attachments: open.attachments,
            status: self.status,
            approved_amount: self.approved_amount,
            adjustment_reason: None,
            dispute_reason: None,
            info_request: None,
            info_response: None,
            cancellation: open.cancellation,
            cancellation_reason: None,
            archived_from: self.archived_from,
            payment_id: self.payment_id,
            visible_to_buyer: self.visible_to_buyer,
            payment_due_notified: self.payment_due_notified,
            version: self.version,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }

    pub fn evolve(&mut self, event: &Event, at: Timestamp) {
        let (line_count, total) = (self.line_count, self.total);
        let mut full = self.hollow();
        full.evolve(event, at);
        let relined = matches!(
            event,
            Event::InvoiceUpdated {
                line_items: Some(_),
                ..
            } | Event::LineItemAdded { .. }
                | Event::LineItemUpdated { .. }
                | Event::LineItemRemoved { .. }
        );
        let total = if relined { full.totals().total } else { total };
        let count = full.line_items.len();
        *self = InvoiceState::keep(full, total);
        if !relined {
            self.line_count = line_count;
        } else {
            self.line_count = u32::try_from(count).unwrap_or(u32::MAX);
        }
    }

    pub fn party_of(&self, org: OrganizationId) -> Option<Party> {
        party_of(
            self.seller_organization_id,
            self.buyer_organization_id,
            self.visible_to_buyer,
            org,
        )
    }

    pub fn organization_of(&self, party: Party) -> OrganizationId {
        match party {
            Party::Seller => self.seller_organization_id,
            Party::Buyer => self.buyer_organization_id,
        }
    }

    fn refuse(&self, action: &'static str) -> DomainError {
        DomainError::InvalidTransition {
            entity: "invoice",
            action,
            current: self.status.as_str(),
        }
    }

    /// Checks an action's actor and state. `who` lists the parties that may take
    /// the action at all (else 403); `from` the states it may start in (else 400).
    pub fn check(
        &self,
        action: &'static str,
        party: Party,
        who: &[Party],
        from: &[InvoiceStatus],
    ) -> Result<(), DomainError> {
        if !who.contains(&party) {
            return Err(DomainError::Forbidden(format!(
                "the {} may not {action} this invoice",
                party_name(party)
            )));
        }
        if !from.contains(&self.status) {
            return Err(self.refuse(action));
        }
        Ok(())
    }

    pub fn check_submit(&self, party: Party) -> Result<(), DomainError> {
        self.check(
            "submit",
            party,
            &[Party::Seller],
            &[InvoiceStatus::Draft, InvoiceStatus::Disputed],
        )?;
        self.check_submittable()
    }

    /// What an invoice needs before the buyer may be asked to approve it.
    pub fn check_submittable(&self) -> Result<(), DomainError> {
        if self.line_count == 0 || self.total.is_zero() {
            return Err(DomainError::Validation(
                "an invoice needs at least one line item and a total above zero to be submitted"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn check_cancel(&self, party: Party) -> Result<(), DomainError> {
        let from: &[InvoiceStatus] = match party {
            Party::Seller => &[
                InvoiceStatus::Draft,
                InvoiceStatus::Submitted,
                InvoiceStatus::Disputed,
            ],
            Party::Buyer => &[InvoiceStatus::Disputed],
        };
        self.check("cancel", party, &[Party::Seller, Party::Buyer], from)
    }

    /// Accepting or rejecting a cancellation: only the requester's counterparty.
    pub fn check_answer_cancellation(
        &self,
        action: &'static str,
        party: Party,
    ) -> Result<(), DomainError> {
        match self.cancellation() {
            Some(req) if self.status == InvoiceStatus::CancellationRequested => {
                if req.by == party {
                    Err(DomainError::Forbidden(format!(
                        "only the counterparty of the requester may {action}"
                    )))
                } else {
                    Ok(())
                }
            }
            _ => Err(self.refuse(action)),
        }
    }

    pub fn check_editable(&self, party: Party) -> Result<(), DomainError> {
        self.check(
            "update",
            party,
            &[Party::Seller],
            &[
                InvoiceStatus::Draft,
                InvoiceStatus::Disputed,
                InvoiceStatus::InfoRequested,
            ],
        )
    }

    pub fn check_line_items_editable(&self, party: Party) -> Result<(), DomainError> {
        self.check(
            "edit line items of",
            party,
            &[Party::Seller],
            &[InvoiceStatus::Draft],
        )
    }

    /// A line of a draft (the only state whose lines can be edited one by one).
    pub fn line_item(&self, id: LineItemId) -> Result<&LineItem, DomainError> {
        self.lines()
            .iter()
            .find(|l| l.id == id)
            .ok_or(DomainError::NotFound("line item"))
    }
}

/// An invoice's events, with the state machine asserted, and the indexes
/// that follow them: a seller's invoice count (the next default number), the
/// invoices naming a file, and a buyer's approved invoices (what it has to
/// settle).
pub(super) fn evolve(ledger: &mut Ledger, event: &Event, at: Timestamp) -> Result<(), String> {
    if event.stream().kind != StreamKind::Invoice {
        return Err(misapplied("invoice", event));
    }
    if let Event::InvoiceCreated { .. } = event {
        create(ledger, event, at);
        return Ok(());
    }
    let id = InvoiceId::from_uuid(event.stream().id);
    let inv = ledger
        .invoices
        .get_mut(&id)
        .ok_or("event for an unknown invoice")?;
    let before = inv.status;
    inv.evolve(event, at);
    let after = inv.status;
    if before != after && !before.can_become(after) {
        return Err(format!(
            "invoice {id} moved {} -> {}, not an edge of the state diagram",
            before.as_str(),
            after.as_str()
        ));
    }
    if let Event::InvoiceUpdated {
        attachments: Some(files),
        ..
    } = event
    {
        for f in files {
            ledger.file_invoices.entry(*f).or_default().insert(id);
        }
    }
    let buyer = inv.buyer_organization_id;
    let approved = ledger.approved_by_buyer.entry(buyer).or_default();
    if after.is_approved() {
        approved.insert(id);
    } else {
        approved.remove(&id);
    }
    Ok(())
}

fn create(ledger: &mut Ledger, event: &Event, at: Timestamp) {
    let Some(inv) = InvoiceState::created(event, at) else {
        return;
    };
    for f in inv.attachments() {
        ledger.file_invoices.entry(*f).or_default().insert(inv.id);
    }
    *ledger
        .invoices_by_seller
        .entry(inv.seller_organization_id)
        .or_default() += 1;
    ledger.invoices.insert(inv.id, inv);
}

pub fn party_name(party: Party) -> &'static str {
    match party {
        Party::Seller => "seller",
        Party::Buyer => "buyer",
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn an_optional_text_is_kept_as_given_or_refused_past_the_bound() {
        assert_eq!(optional_text("reason", None), Ok(None));
        assert_eq!(
            optional_text("reason", Some("not now")),
            Ok(Some("not now".to_owned()))
        );
        let at_bound = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(
            optional_text("reason", Some(&at_bound)),
            Ok(Some(at_bound.clone()))
        );
        let past = format!("{at_bound}x");
        assert!(matches!(
            optional_text("reason", Some(&past)),
            Err(DomainError::Validation(m)) if m.contains("reason")
        ));
    }
}
