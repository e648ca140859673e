//! `invoice ID`: an invoice's whole history, one line per event: sequence
//! number, time, who acted, what changed, and the status after it. Besides
//! the invoice's own events, the money that moved for it is shown: its
//! reservation and release, its payment, the settlement debit and credit, and
//! refunds against it. The log is folded from the start (chain-checked and
//! re-applied through the domain) so each line can show the state after it.

use crate::describe::{actor, org_name};
use crate::source::{Events, Failure, Range, Source};
use ledger_core::domain::Ledger;
use ledger_core::events::{Event, Hold, LineItem, Party, RecordedEvent};
use ledger_core::ids::{InvoiceId, PaymentId, RefundId};
use ledger_core::money::{Amount, Currency};
use std::collections::HashSet;
use std::io::Write;

fn money(a: Amount, c: Currency) -> String {
    format!("{} {}", a.format(c), c.code())
}

fn total(items: &[LineItem], c: Currency) -> String {
    money(ledger_core::domain::invoice::totals(items).total, c)
}

fn party(p: Party) -> &'static str {
    ledger_core::domain::invoice::party_name(p)
}

/// What an event did, in words. `None` if it does not concern the invoice.
fn change(
    ledger: &Ledger,
    id: InvoiceId,
    payments: &mut HashSet<PaymentId>,
    refunds: &mut HashSet<RefundId>,
    e: &RecordedEvent,
) -> Option<String> {
    use Event::*;
    let inv = ledger.invoices.get(&id)?;
    let c = inv.currency;
    let own = e.stream().id == id.as_uuid();
    let text = match &e.event {
        InvoiceCreated {
            number,
            line_items,
            due_date,
            seller_organization_id,
            buyer_organization_id,
            ..
        } if own => format!(
            "created {number}: {} line item(s), total {}, due {due_date}, seller {}, buyer {}",
            line_items.len(),
            total(line_items, c),
            org_name(ledger, *seller_organization_id),
            org_name(ledger, *buyer_organization_id)
        ),
        InvoiceUpdated {
            number,
            due_date,
            memo,
            line_items,
            attachments,
            ..
        } if own => {
            let mut parts = Vec::new();
            if let Some(n) = number {
                parts.push(format!("number {n}"));
            }
            if let Some(d) = due_date {
                parts.push(format!("due date {d}"));
            }
            if memo.is_some() {
                parts.push("memo".to_string());
            }
            if let Some(items) = line_items {
                parts.push(format!(
                    "{} line item(s), total {}",
                    items.len(),
                    total(items, c)
                ));
            }
            if let Some(files) = attachments {
                parts.push(format!("{} attachment(s)", files.len()));
            }
            format!("updated: {}", parts.join(", "))
        }
        LineItemAdded { item, .. } if own => format!(
            "line item added: {} {} × {} (total now {})",
            item.description,
            item.quantity,
            money(item.unit_price, c),
            money(inv.total, c)
        ),
        LineItemUpdated { item, .. } if own => format!(
            "line item changed: {} {} × {} (total now {})",
            item.description,
            item.quantity,
            money(item.unit_price, c),
            money(inv.total, c)
        ),
        LineItemRemoved { line_item_id, .. } if own => {
            format!(
                "line item {line_item_id} removed (total now {})",
                money(inv.total, c)
            )
        }
        InvoiceSubmitted { .. } if own => "submitted".into(),
        InvoiceInfoRequested { question, .. } if own => {
            format!("information requested: {question}")
        }
        InvoiceInfoProvided { message, .. } if own => format!("information provided: {message}"),
        InvoiceApproved {
            approved_amount,
            adjustment_reason,
            ..
        } if own => match adjustment_reason {
            Some(reason) => format!(
                "approved with adjustment to {} ({reason})",
                money(*approved_amount, c)
            ),
            None => format!("approved for {}", money(*approved_amount, c)),
        },
        InvoiceDisputed { reason, .. } if own => format!("disputed: {reason}"),
        InvoiceCancelled { by, reason, .. } if own => match reason {
            Some(r) => format!("cancelled by the {}: {r}", party(*by)),
            None => format!("cancelled by the {}", party(*by)),
        },
        InvoiceCancellationRequested { by, reason, .. } if own => {
            format!("cancellation requested by the {}: {reason}", party(*by))
        }
        InvoiceCancellationRejected { .. } if own => "cancellation rejected".into(),
        InvoiceSettled { payment_id, .. } if own => format!("settled by payment {payment_id}"),
        InvoiceArchived { .. } if own => "archived".into(),
        InvoiceRestored { .. } if own => "restored".into(),
        InvoicePaymentDue { due_date, .. } if own => format!("payment due ({due_date})"),
        FundsReserved {
            hold: Hold::Invoice(h),
            amount,
            balance_id,
        } if *h == id => format!(
            "{} reserved on {}'s balance",
            money(*amount, c),
            owner(ledger, *balance_id)
        ),
        ReservationReleased {
            hold: Hold::Invoice(h),
            amount,
            balance_id,
        } if *h == id => format!(
            "reservation of {} released on {}'s balance",
            money(*amount, c),
            owner(ledger, *balance_id)
        ),
        PaymentInitiated {
            id: payment,
            invoice_id,
            amount,
            payer_organization_id,
            payee_organization_id,
            ..
        } if *invoice_id == id => {
            payments.insert(*payment);
            format!(
                "payment {payment} initiated: {} from {} to {}",
                money(*amount, c),
                org_name(ledger, *payer_organization_id),
                org_name(ledger, *payee_organization_id)
            )
        }
        PaymentCompleted { id: payment, .. } if payments.contains(payment) => {
            format!("payment {payment} completed")
        }
        PaymentFailed {
            id: payment,
            reason,
        } if payments.contains(payment) => {
            format!("payment {payment} failed: {reason}")
        }
        SettlementDebited {
            invoice_id,
            amount,
            balance_id,
            ..
        } if *invoice_id == id => format!(
            "{} debited from {}",
            money(*amount, c),
            owner(ledger, *balance_id)
        ),
        SettlementCredited {
            invoice_id,
            amount,
            balance_id,
            ..
        } if *invoice_id == id => format!(
            "{} credited to {}",
            money(*amount, c),
            owner(ledger, *balance_id)
        ),
        RefundCreated {
            id: refund,
            invoice_id,
            amount,
            reason,
            requested_by,
            ..
        } if *invoice_id == id => {
            refunds.insert(*refund);
            format!(
                "refund {refund} of {} requested by {}: {reason}",
                money(*amount, c),
                org_name(ledger, *requested_by)
            )
        }
        RefundApproved { id: refund, .. } if refunds.contains(refund) => {
            format!("refund {refund} approved")
        }
        RefundRejected { id: refund, reason } if refunds.contains(refund) => {
            format!("refund {refund} rejected: {reason}")
        }
        RefundDebited {
            refund_id,
            amount,
            balance_id,
            ..
        } if refunds.contains(refund_id) => {
            format!(
                "refund: {} debited from {}",
                money(*amount, c),
                owner(ledger, *balance_id)
            )
        }
        RefundCredited {
            refund_id,
            amount,
            balance_id,
            ..
        } if refunds.contains(refund_id) => {
            format!(
                "refund: {} credited to {}",
                money(*amount, c),
                owner(ledger, *balance_id)
            )
        }
        _ => return None,
    };
    Some(text)
}

fn owner(ledger: &Ledger, balance: ledger_core::ids::BalanceId) -> String {
    ledger
        .balances
        .get(&balance)
        .map(|b| org_name(ledger, b.organization_id))
        .unwrap_or_else(|| balance.to_string())
}

pub struct Line {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub change: String,
    pub status: &'static str,
}

pub fn history(source: &Source, id: InvoiceId) -> Result<Vec<Line>, Failure> {
    let mut events = Events::open(source, Range::ALL, "invoice")?;
    let mut ledger = Ledger::new();
    let mut payments = HashSet::new();
    let mut refunds = HashSet::new();
    let mut lines = Vec::new();
    while let Some((_, event)) = events.next()? {
        ledger
            .apply(&event)
            .map_err(|v| Failure::bad(v.seq, v.reason))?;
        if let Some(text) = change(&ledger, id, &mut payments, &mut refunds, &event) {
            let status = ledger
                .invoices
                .get(&id)
                .map(|i| i.status.as_str())
                .unwrap_or("-");
            lines.push(Line {
                seq: event.seq,
                at: event.at.rfc3339(),
                actor: actor(&ledger, &event.actor),
                change: text,
                status,
            });
        }
    }
    Ok(lines)
}

pub fn run(source: &Source, id: InvoiceId, out: &mut dyn Write) -> Result<bool, Failure> {
    let lines = history(source, id)?;
    if lines.is_empty() {
        writeln!(out, "invoice {id}: not found in the log")?;
        return Ok(false);
    }
    writeln!(out, "invoice {id}: {} event(s)", lines.len())?;
    for l in &lines {
        writeln!(
            out,
            "{:>10}  {}  {:<48}  {}  -> {}",
            l.seq, l.at, l.actor, l.change, l.status
        )?;
    }
    Ok(true)
}
