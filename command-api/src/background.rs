//! Scheduled work driven by the injected clock: idempotency retention,
//! `payment.due`, auto-archive.

use crate::app::AppState;
use ledger_core::domain::Command;
use ledger_core::engine::Submission;
use ledger_core::events::Actor;
use ledger_core::log::EventLog;
use projections::sql::queries;
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
    let archive_before = (archive_after_days > 0).then(|| {
        ledger_core::time::Timestamp::from_micros(
            now.as_micros()
                .saturating_sub(archive_after_days.saturating_mul(86_400_000_000)),
        )
    });
    let found = state.sql(|c| {
        let mut commands: Vec<Command> = queries::payment_due(c, today, MAX_PER_TICK)?
            .into_iter()
            .map(|id| Command::MarkPaymentDue { id, today })
            .collect();
        if let Some(before) = archive_before {
            let room = MAX_PER_TICK - commands.len();
            commands.extend(
                queries::archivable(c, before, room)?
                    .into_iter()
                    .map(|id| Command::AutoArchive { id }),
            );
        }
        Ok(commands)
    });
    let commands = match found {
        Ok(commands) => commands,
        Err(e) => {
            tracing::warn!(error = %e, "finding scheduled invoice work");
            return;
        }
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
