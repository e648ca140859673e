//! The invoice's commands: creating and editing it while the seller may,
//! and the actions that move it through the state machine. The money its
//! approval and cancellation move is [`settlement`]'s.

use super::{
    bounded_text, optional_text, required_text, totals, InvoiceState, InvoiceStatus,
    MAX_ATTACHMENTS, MAX_LINE_ITEMS, MAX_NUMBER_CHARS, MAX_TEXT_CHARS,
};
use crate::domain::command::{
    Command, InvoiceAction, InvoicePatch, LineItemInput, LineItemPatch, NewInvoice, Outcome,
};
use crate::domain::connection::ConnectionStatus;
use crate::domain::ledger::Ledger;
use crate::domain::{misrouted, need, settlement, Ctx, Decision, DomainError};
use crate::events::{Event, LineItem, Party};
use crate::ids::{FileId, InvoiceId, LineItemId, OrganizationId};
use crate::money::{line_figures, Amount, Currency};
use chrono::NaiveDate;

const SELLER: &[Party] = &[Party::Seller];
const BUYER: &[Party] = &[Party::Buyer];
const EITHER: &[Party] = &[Party::Seller, Party::Buyer];

/// The commands of `org` on its invoices.
pub(in crate::domain) fn decide(
    ledger: &Ledger,
    org: OrganizationId,
    command: &Command,
    ctx: &mut Ctx<'_>,
) -> Decision {
    match command {
        Command::CreateInvoice(new) => create(ledger, org, new, ctx),
        Command::UpdateInvoice { id, patch } => update(ledger, org, *id, patch, ctx),
        Command::AddLineItem { id, item } => add_line_item(ledger, org, *id, item, ctx),
        Command::UpdateLineItem {
            id,
            line_item_id,
            patch,
        } => update_line_item(ledger, org, *id, *line_item_id, patch),
        Command::RemoveLineItem { id, line_item_id } => {
            let (inv, party) = ledger.visible_invoice(org, *id)?;
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
        Command::Invoice { id, action } => act(ledger, org, *id, action),
        _ => Err(misrouted("invoice")),
    }
}

/// The scheduler's work on an invoice. Each is a no-op when it no longer
/// applies: the schedule was computed from an older state.
pub(in crate::domain) fn decide_scheduled(ledger: &Ledger, command: &Command) -> Decision {
    match command {
        Command::MarkPaymentDue { id, today } => mark_payment_due(ledger, *id, *today),
        Command::AutoArchive { id } => {
            let inv = need(ledger.invoices.get(id), "invoice")?;
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
        _ => Err(misrouted("invoice")),
    }
}

fn mark_payment_due(ledger: &Ledger, id: InvoiceId, today: NaiveDate) -> Decision {
    let inv = need(ledger.invoices.get(&id), "invoice")?;
    if !inv.status.is_approved() || inv.payment_due_notified || inv.due_date > today {
        return Ok((Outcome::Invoice(id), vec![]));
    }
    Ok((
        Outcome::Invoice(id),
        vec![Event::InvoicePaymentDue {
            id,
            due_date: inv.due_date,
        }],
    ))
}

/// Attachments are `org`'s own stored files.
fn check_attachments(
    ledger: &Ledger,
    org: OrganizationId,
    files: &[FileId],
) -> Result<(), DomainError> {
    if files.len() > MAX_ATTACHMENTS {
        return Err(DomainError::Validation(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    for f in files {
        need(
            ledger
                .files
                .get(f)
                .filter(|x| x.organization_id == org && !x.deleted),
            "file",
        )?;
    }
    Ok(())
}

fn create(ledger: &Ledger, org: OrganizationId, new: &NewInvoice, ctx: &mut Ctx<'_>) -> Decision {
    let conn = need(
        ledger
            .connections
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
    check_attachments(ledger, org, &new.attachments)?;
    let line_items = make_line_items(new.currency, &new.line_items, ctx)?;
    let issue_date = new.issue_date.unwrap_or_else(|| ctx.now.date());
    if new.due_date < issue_date {
        return Err(DomainError::Validation(
            "dueDate must not be before issueDate".into(),
        ));
    }
    let number = match &new.number {
        Some(n) => required_text("number", n, MAX_NUMBER_CHARS)?,
        None => format!(
            "INV-{:06}",
            ledger.invoices_by_seller.get(&org).copied().unwrap_or(0) + 1
        ),
    };
    let memo = match &new.memo {
        Some(m) => Some(bounded_text("memo", m, MAX_TEXT_CHARS)?),
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
        if line_items.is_empty() || totals(&line_items).total.is_zero() {
            return Err(DomainError::Validation(
                "an invoice needs at least one line item and a total above zero to be submitted"
                    .into(),
            ));
        }
        events.push(Event::InvoiceSubmitted { id });
    }
    Ok((Outcome::Invoice(id), events))
}

fn update(
    ledger: &Ledger,
    org: OrganizationId,
    id: InvoiceId,
    patch: &InvoicePatch,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let (inv, party) = ledger.visible_invoice(org, id)?;
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
        check_attachments(ledger, org, files)?;
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
        Some(n) => Some(required_text("number", n, MAX_NUMBER_CHARS)?),
        None => None,
    };
    let memo = match &patch.memo {
        Some(Some(m)) => Some(Some(bounded_text("memo", m, MAX_TEXT_CHARS)?)),
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

fn add_line_item(
    ledger: &Ledger,
    org: OrganizationId,
    id: InvoiceId,
    item: &LineItemInput,
    ctx: &mut Ctx<'_>,
) -> Decision {
    let (inv, party) = ledger.visible_invoice(org, id)?;
    inv.check_line_items_editable(party)?;
    if inv.line_count as usize >= MAX_LINE_ITEMS {
        return Err(DomainError::Validation(format!(
            "an invoice holds at most {MAX_LINE_ITEMS} line items"
        )));
    }
    let item = make_line_item(inv.currency, ctx.id(), item)?;
    Ok((
        Outcome::Invoice(id),
        vec![Event::LineItemAdded { id, item }],
    ))
}

/// The patch over the line as it is: the result is checked as a whole line.
fn update_line_item(
    ledger: &Ledger,
    org: OrganizationId,
    id: InvoiceId,
    line_item_id: LineItemId,
    patch: &LineItemPatch,
) -> Decision {
    let (inv, party) = ledger.visible_invoice(org, id)?;
    inv.check_line_items_editable(party)?;
    let old = inv.line_item(line_item_id)?;
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
    let item = make_line_item(inv.currency, line_item_id, &input)?;
    Ok((
        Outcome::Invoice(id),
        vec![Event::LineItemUpdated { id, item }],
    ))
}

/// One step of the state machine. `check` refuses a party that may never take
/// the action (403) before a state it may not start from (400).
fn act(ledger: &Ledger, org: OrganizationId, id: InvoiceId, action: &InvoiceAction) -> Decision {
    use InvoiceAction as A;
    use InvoiceStatus as S;
    let (inv, party) = ledger.visible_invoice(org, id)?;
    let text = |field: &str, v: &str| required_text(field, v, MAX_TEXT_CHARS);
    let events = match action {
        A::Submit => {
            inv.check_submit(party)?;
            vec![Event::InvoiceSubmitted { id }]
        }
        A::RespondInfo { message } => {
            inv.check("respond to", party, SELLER, &[S::InfoRequested])?;
            // It goes back to SUBMITTED, so it must still be submittable.
            inv.check_submittable()?;
            let message = text("message", message)?;
            vec![Event::InvoiceInfoProvided { id, message }]
        }
        A::Approve {
            adjusted_amount,
            reason,
        } => {
            let adjusted = adjusted_amount.as_deref();
            settlement::approve_invoice(ledger, inv, party, adjusted, reason.as_deref())?
        }
        A::Dispute { reason } => {
            inv.check("dispute", party, BUYER, &[S::Submitted])?;
            let reason = text("reason", reason)?;
            vec![Event::InvoiceDisputed { id, reason }]
        }
        A::RequestInfo { question } => {
            inv.check("request information on", party, BUYER, &[S::Submitted])?;
            let question = text("question", question)?;
            vec![Event::InvoiceInfoRequested { id, question }]
        }
        A::Cancel { reason } => {
            inv.check_cancel(party)?;
            let reason = optional_text("reason", reason.as_deref())?;
            vec![Event::InvoiceCancelled {
                id,
                by: party,
                reason,
            }]
        }
        A::RequestCancellation { reason } => {
            let from = &[S::Approved, S::ApprovedWithAdjustment];
            inv.check("request cancellation of", party, EITHER, from)?;
            let reason = text("reason", reason)?;
            vec![Event::InvoiceCancellationRequested {
                id,
                by: party,
                reason,
            }]
        }
        A::AcceptCancellation => accept_cancellation(ledger, inv, party)?,
        A::RejectCancellation => {
            inv.check_answer_cancellation("reject the cancellation of", party)?;
            vec![Event::InvoiceCancellationRejected { id }]
        }
        A::Archive => {
            inv.check("archive", party, EITHER, &[S::Settled, S::Cancelled])?;
            vec![Event::InvoiceArchived { id }]
        }
        A::Restore => {
            inv.check("restore", party, EITHER, &[S::Archived])?;
            vec![Event::InvoiceRestored { id }]
        }
    };
    Ok((Outcome::Invoice(id), events))
}

/// Cancelling an approved invoice gives the buyer its reserved funds back.
fn accept_cancellation(
    ledger: &Ledger,
    inv: &InvoiceState,
    party: Party,
) -> Result<Vec<Event>, DomainError> {
    inv.check_answer_cancellation("accept the cancellation of", party)?;
    let mut events = vec![Event::InvoiceCancelled {
        id: inv.id,
        by: party,
        reason: inv.cancellation().map(|c| c.reason.clone()),
    }];
    events.extend(settlement::release_invoice_hold(ledger, inv));
    Ok(events)
}

fn make_line_item(
    currency: Currency,
    id: LineItemId,
    input: &LineItemInput,
) -> Result<LineItem, DomainError> {
    let description = required_text("description", &input.description, MAX_TEXT_CHARS)?;
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
    if inputs.len() > MAX_LINE_ITEMS {
        return Err(DomainError::Validation(format!(
            "an invoice holds at most {MAX_LINE_ITEMS} line items"
        )));
    }
    inputs
        .iter()
        .map(|i| make_line_item(currency, ctx.id(), i))
        .collect()
}
