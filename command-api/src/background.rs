//! Scheduled work driven by the injected clock: idempotency retention,
//! `payment.due`, auto-archive; and, once at start, the check of stored
//! files against their `FileStored` events.

use crate::app::AppState;
use crate::backup::files::{self, FileFact, Problem};
use crate::metrics::{FilesCheck, FilesCheckState};
use ledger_core::domain::Command;
use ledger_core::engine::Submission;
use ledger_core::events::Actor;
use ledger_core::log::EventLog;
use projections::sql::queries;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_secs(1);
/// Most scheduled commands sent in one tick (the rest wait for the next).
const MAX_PER_TICK: usize = 500;

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Ends with this task when the server stops.
        let _check = AbortOnDrop(tokio::spawn(verify_files_at_start(state.clone())));
        let mut ticks: u64 = 0;
        loop {
            tokio::time::sleep(TICK).await;
            state.disk.measure();
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Files listed per read-model query.
const FILES_PAGE: usize = 500;

/// Checks every live file against the size and SHA-256 of its `FileStored`
/// event, in the background: a restored server must say loudly which
/// attachments its backup lacked, but hashing a large store may take long
/// and start-up must not wait for it. Local files are hashed; objects in
/// object storage only checked for existence and size (hashing would
/// download the bucket at every start). Findings go to the log (a warning
/// per file), `/metrics` and `/healthz`.
async fn verify_files_at_start(state: AppState) {
    let check = &state.metrics.files;
    if !state.config.verify_files_at_start {
        check.set_state(FilesCheckState::Off);
        return;
    }
    check.set_state(FilesCheckState::Running);
    let started = Instant::now();
    let failed = check_live_files(&state).await.err();
    check.set_state(FilesCheckState::Done);
    log_findings(check, failed, started);
}

/// Every live file, a page at a time; the first error stops the check.
async fn check_live_files(state: &AppState) -> Result<(), String> {
    let mut after = None;
    loop {
        let page = state
            .sql(|c| queries::access::live_files(c, after, FILES_PAGE))
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id);
        for file in &page {
            check_file(state, FileFact::from(file)).await?;
        }
    }
}

/// Counts the file as checked and, if it is still live and does not match,
/// as missing or corrupt.
async fn check_file(state: &AppState, fact: FileFact) -> Result<(), String> {
    let check = &state.metrics.files;
    let verdict = match state.local_files.clone() {
        Some(root) => {
            let f = fact.clone();
            tokio::task::spawn_blocking(move || files::check_local(&root, &f))
                .await
                .map_err(|e| e.to_string())?
        }
        None => files::check_object(state.files.as_ref(), &fact, false).await,
    };
    check.checked.fetch_add(1, Relaxed);
    let Err(problem) = verdict else {
        return Ok(());
    };
    // Deleted meanwhile: its bytes went with it, as they should.
    let live = state
        .sql(|c| queries::access::file(c, fact.id))
        .map(|f| f.is_some_and(|f| !f.deleted))
        .unwrap_or(true);
    if !live {
        return Ok(());
    }
    let counter = if problem.is_missing() {
        &check.missing
    } else {
        &check.corrupt
    };
    counter.fetch_add(1, Relaxed);
    report(&fact, &problem);
    Ok(())
}

fn log_findings(check: &FilesCheck, failed: Option<String>, started: Instant) {
    let (checked, missing, corrupt) = (
        check.checked.load(Relaxed),
        check.missing.load(Relaxed),
        check.corrupt.load(Relaxed),
    );
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = failed {
        tracing::error!(%error, checked, missing, corrupt, "the check of stored files stopped early");
    } else if missing + corrupt > 0 {
        tracing::warn!(
            checked,
            missing,
            corrupt,
            seconds,
            "stored files do not match their FileStored events: restore them from a backup \
             (`expereon verify-files` lists them with the server stopped)"
        );
    } else {
        tracing::info!(
            checked,
            seconds,
            "every stored file matches its FileStored event"
        );
    }
}

fn report(fact: &FileFact, problem: &Problem) {
    tracing::warn!(
        file = %fact.key(),
        filename = %fact.filename,
        size = fact.size,
        sha256 = %hex::encode(fact.sha256),
        problem = %problem,
        "a stored file does not match its FileStored event"
    );
}
