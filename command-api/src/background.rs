//! Scheduled work driven by the injected clock: idempotency retention,
//! `payment.due`, auto-archive.

use crate::app::AppState;
use ledger_core::domain::invoice::InvoiceStatus;
use ledger_core::domain::Command;
use ledger_core::engine::Submission;
use ledger_core::events::Actor;
use ledger_core::log::EventLog;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);
/// Most scheduled commands sent in one tick (the rest wait for the next).
const MAX_PER_TICK: usize = 500;

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks: u64 = 0;
        loop {
            tokio::time::sleep(TICK).await;
            ticks += 1;
            scheduled_invoices(&state).await;
            if ticks % 60 == 1 {
                prune_idempotency(&state).await;
            }
        }
    })
}

async fn prune_idempotency(state: &AppState) {
    let retention = chrono::Duration::from_std(state.config.idempotency_retention)
        .unwrap_or(chrono::Duration::days(1));
    let before = ledger_core::time::Timestamp::from_micros(
        state.clock.now().as_micros() - retention.num_microseconds().unwrap_or(i64::MAX),
    );
    let log = state.log.clone();
    match tokio::task::spawn_blocking(move || log.prune_idempotency(before)).await {
        Ok(Ok(n)) if n > 0 => {
            tracing::info!(pruned = n, "idempotency records past retention removed")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "pruning idempotency records"),
        _ => {}
    }
}

/// Finds approved invoices whose due date has come (payment.due, once) and
/// settled or cancelled ones past the auto-archive age.
async fn scheduled_invoices(state: &AppState) {
    let now = state.clock.now();
    let today = now.date();
    let archive_after_days = i64::from(state.config.auto_archive_days);
    let commands: Vec<Command> = {
        let Ok(model) = state.projections.read() else {
            return;
        };
        model
            .ledger
            .invoices
            .values()
            .filter_map(|inv| {
                if inv.status.is_approved() && !inv.payment_due_notified && inv.due_date <= today {
                    Some(Command::MarkPaymentDue { id: inv.id, today })
                } else if archive_after_days > 0
                    && matches!(
                        inv.status,
                        InvoiceStatus::Settled | InvoiceStatus::Cancelled
                    )
                    && (now.as_micros() - inv.updated_at.as_micros())
                        >= archive_after_days * 86_400_000_000
                {
                    Some(Command::AutoArchive { id: inv.id })
                } else {
                    None
                }
            })
            .take(MAX_PER_TICK)
            .collect()
    };
    if commands.is_empty() {
        return;
    }
    let submitted = state
        .engine
        .submit(Submission {
            actor: Actor::System,
            idempotency: None,
            command: Command::Bulk(commands),
            render: None,
        })
        .await;
    if let Err(e) = submitted {
        tracing::warn!(error = %e, "scheduled invoice work");
    }
}
