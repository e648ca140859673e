//! The delivery worker: polls the outbox (rows of the SQL read models) for
//! due deliveries (by the injected clock), sends each as a signed POST,
//! records the attempt durably, and schedules the next one on
//! `EXPEREON_WEBHOOK_RETRY_SCHEDULE`.
//!
//! Concurrency is bounded overall ([`MAX_IN_FLIGHT`]) and per endpoint
//! ([`MAX_PER_ENDPOINT`]), and a delivery is never in flight twice: a slow or
//! dead endpoint holds at most its own few slots while the rest flow. This
//! process is the database's only writer, so claiming a delivery is taking
//! it into `in_flight`; before sending, the delivery is read again and must
//! still be PENDING and due (a redelivery or another attempt may have moved it).
//!
//! Signing secrets are not in the read models. Each attempt folds the
//! endpoint's own event stream from the log ([`endpoint_of`]): a few indexed
//! reads, next to an HTTP request, and never stale, so there is no cache to
//! invalidate when a rotation, an update or a deletion commits.

use crate::app::AppState;
use crate::master_key::{MasterKey, Purpose, SealError};
use crate::metrics::AttemptOutcome;
use crate::webhooks::signing;
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::ids::WebhookEndpointId;
use ledger_core::time::Timestamp;
use projections::sql::outbox::{Attempt, Delivery, DeliveryStatus, Due, Outbox, MAX_RESPONSE_BODY};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

/// How often the schedule is polled when nothing wakes the worker sooner.
pub const TICK: Duration = Duration::from_millis(100);
pub const MAX_IN_FLIGHT: usize = 64;
pub const MAX_PER_ENDPOINT: usize = 4;
/// Most schedule entries read per scan.
const SCAN_LIMIT: usize = 1024;
/// The worker scans the schedule again when its queue of due deliveries is
/// empty, or on a tick or a wake-up while fewer than this are queued.
const REFILL_BELOW: usize = 2 * MAX_IN_FLIGHT;
/// How long shutdown waits for attempts in flight to finish and be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct WebhookWorker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookWorker {
    /// Stops taking new deliveries, lets attempts in flight finish (bounded
    /// wait), then returns. Whatever did not finish is still PENDING and is
    /// sent after the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub fn spawn(state: AppState) -> WebhookWorker {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let outbox = state.projections.outbox().clone();
        run(state, outbox, stopped).await;
    });
    WebhookWorker { stop, task }
}

async fn run(state: AppState, outbox: Outbox, mut stopped: watch::Receiver<bool>) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, (Uuid, WebhookEndpointId)> = HashMap::new();
    let mut in_flight: HashSet<Uuid> = HashSet::new();
    let mut per_endpoint: HashMap<WebhookEndpointId, usize> = HashMap::new();
    let recorder = spawn_recorder(&state, outbox.clone());
    // Due deliveries read from the schedule and not yet started, in schedule
    // order. Rationale: rescanning the schedule after every attempt read up
    // to 10,000 rows per delivery once a backlog formed, and deliveries fell
    // to tens per second; the queue is refilled only when it runs low. An
    // entry may be stale by the time it starts: the attempt reads the
    // delivery again and sends only if it is still PENDING and due.
    let mut queue: VecDeque<Due> = VecDeque::new();
    let mut queued: HashSet<Uuid> = HashSet::new();
    let mut scan = true;
    loop {
        let idle = queue.is_empty() && running.len() < MAX_IN_FLIGHT;
        if idle || (scan && queue.len() < REFILL_BELOW) {
            scan = false;
            let now = state.clock.now();
            let due = {
                let outbox = outbox.clone();
                tokio::task::spawn_blocking(move || outbox.due(now, SCAN_LIMIT)).await
            };
            match due {
                Ok(Ok(due)) => {
                    for d in due {
                        if !in_flight.contains(&d.delivery_id) && queued.insert(d.delivery_id) {
                            queue.push_back(d);
                        }
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "reading the webhook schedule"),
                Err(e) => tracing::error!(error = %e, "reading the webhook schedule"),
            }
        }
        // Start what may start; deliveries to endpoints at their limit wait
        // in the queue, in order.
        let mut waiting = VecDeque::with_capacity(queue.len());
        while let Some(d) = queue.pop_front() {
            let busy = per_endpoint.get(&d.endpoint_id).copied().unwrap_or(0);
            if running.len() >= MAX_IN_FLIGHT || busy >= MAX_PER_ENDPOINT {
                waiting.push_back(d);
                continue;
            }
            queued.remove(&d.delivery_id);
            if !in_flight.insert(d.delivery_id) {
                continue;
            }
            let handle = tasks.spawn(attempt(
                state.clone(),
                outbox.clone(),
                recorder.clone(),
                d.delivery_id,
            ));
            running.insert(handle.id(), (d.delivery_id, d.endpoint_id));
            *per_endpoint.entry(d.endpoint_id).or_default() += 1;
        }
        queue = waiting;
        tokio::select! {
            _ = stopped.changed() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => {
                        tracing::error!(error = %e, "webhook attempt task failed");
                        e.id()
                    }
                };
                if let Some((delivery, endpoint)) = running.remove(&id) {
                    in_flight.remove(&delivery);
                    if let Some(n) = per_endpoint.get_mut(&endpoint) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            per_endpoint.remove(&endpoint);
                        }
                    }
                }
            }
            _ = outbox.changed() => scan = true,
            _ = tokio::time::sleep(TICK) => scan = true,
        }
    }
    // Shutting down: no new attempts; give those in flight a moment to record.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "webhook attempts still running at shutdown; they stay pending"
        );
        tasks.abort_all();
    }
}

/// What one attempt came to.
struct Outcome {
    attempt: Attempt,
    succeeded: bool,
    /// Nothing more to try (endpoint deleted or disabled).
    give_up: bool,
}

async fn attempt(state: AppState, outbox: Outbox, recorder: mpsc::Sender<Record>, id: Uuid) {
    let now = state.clock.now();
    let loaded = {
        let outbox = outbox.clone();
        let log = state.log.clone();
        tokio::task::spawn_blocking(move || -> Result<_, String> {
            let Some(delivery) = outbox.get(id).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            // The schedule entry may be stale (another attempt or a redelivery moved it).
            if delivery.status != DeliveryStatus::Pending
                || !matches!(delivery.next_attempt_at, Some(t) if t <= now)
            {
                return Ok(None);
            }
            let endpoint = endpoint_of(log.as_ref(), delivery.endpoint_id)?;
            Ok(Some((delivery, endpoint)))
        })
        .await
    };
    let (delivery, endpoint) = match loaded {
        Ok(Ok(Some(loaded))) => loaded,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return tracing::error!(error = %e, %id, "loading a webhook delivery"),
        Err(e) => return tracing::error!(error = %e, %id, "loading a webhook delivery"),
    };
    let outcome = match endpoint {
        None => not_sent(now, "endpoint not found"),
        Some(e) if e.deleted => not_sent(now, "endpoint deleted; not sent"),
        Some(e) if !e.enabled => return hold(&state, outbox, id, delivery.endpoint_id).await,
        Some(e) => send(&state, &e, &delivery, now).await,
    };
    tracing::debug!(
        delivery = %id,
        endpoint = %delivery.endpoint_id,
        event = %delivery.event_id,
        status = ?outcome.attempt.status_code,
        ok = outcome.succeeded,
        "webhook attempt"
    );
    // Recorded before this task ends, so the delivery is not claimed again
    // meanwhile; the recorder answers once the batch holding it is durable.
    let (done, recorded) = oneshot::channel();
    if recorder.send(Record { id, outcome, done }).await.is_err() {
        return tracing::error!(%id, "the attempt recorder stopped; the delivery stays pending");
    }
    if let Ok(Some(d)) = recorded.await {
        observe(&state, &d);
    }
}

/// An attempt's outcome on its way to the recorder.
struct Record {
    id: Uuid,
    outcome: Outcome,
    /// The delivery as recorded (None: unknown, or the batch failed).
    done: oneshot::Sender<Option<Delivery>>,
}

/// Records attempts in batches: every attempt that finished while the
/// previous batch was being written goes into the next one transaction
/// (see `Outbox::update_many`). It stops when every sender is gone.
fn spawn_recorder(state: &AppState, outbox: Outbox) -> mpsc::Sender<Record> {
    let (tx, mut rx) = mpsc::channel::<Record>(MAX_IN_FLIGHT);
    let schedule = state.config.webhook_retry_schedule.0.clone();
    let clock = state.clock.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_IN_FLIGHT);
        while rx.recv_many(&mut batch, MAX_IN_FLIGHT).await > 0 {
            let (records, waiters): (Vec<_>, Vec<_>) = batch
                .drain(..)
                .map(|r| ((r.id, r.outcome), (r.id, r.done)))
                .unzip();
            let (outbox, schedule, clock) = (outbox.clone(), schedule.clone(), clock.clone());
            let recorded = tokio::task::spawn_blocking(move || {
                let now = clock.now();
                let schedule = &schedule;
                let changes = records
                    .into_iter()
                    .map(|(id, outcome)| {
                        (id, move |d: &mut Delivery| {
                            settle(d, outcome, schedule, now)
                        })
                    })
                    .collect();
                outbox.update_many(changes)
            })
            .await;
            match recorded {
                Ok(Ok(deliveries)) => {
                    for ((_, done), d) in waiters.into_iter().zip(deliveries) {
                        let _ = done.send(d);
                    }
                }
                Ok(Err(e)) => {
                    for (id, _) in waiters {
                        tracing::error!(error = %e, %id, "recording a webhook attempt");
                    }
                }
                Err(e) => tracing::error!(error = %e, "recording webhook attempts"),
            }
        }
    });
    tx
}

/// What an attempt leaves its delivery in.
fn settle(d: &mut Delivery, outcome: Outcome, schedule: &[Duration], now: Timestamp) {
    d.attempts.push(outcome.attempt);
    if outcome.succeeded {
        d.status = DeliveryStatus::Succeeded;
    } else if outcome.give_up {
        d.status = DeliveryStatus::Failed;
    } else {
        // The n-th failure of this round waits schedule[n-1]; past the end: FAILED.
        match schedule.get(d.attempts_in_round().saturating_sub(1)) {
            Some(delay) => {
                d.status = DeliveryStatus::Pending;
                d.next_attempt_at = Some(after(now, *delay));
            }
            None => d.status = DeliveryStatus::Failed,
        }
    }
}

/// Counts the attempt just recorded by what it left the delivery in.
fn observe(state: &AppState, d: &Delivery) {
    let outcome = match d.status {
        DeliveryStatus::Succeeded => AttemptOutcome::Succeeded,
        DeliveryStatus::Pending => AttemptOutcome::Retrying,
        DeliveryStatus::Failed => AttemptOutcome::Failed,
    };
    let since_event = state
        .clock
        .now()
        .as_micros()
        .saturating_sub(d.created_at.as_micros());
    let since_event = Duration::from_micros(u64::try_from(since_event).unwrap_or(0));
    state.metrics.webhooks.observe(outcome, since_event);
}

/// The endpoint is disabled: the delivery leaves the schedule (PENDING, no
/// next attempt, no attempt counted) until `PATCH enabled: true` resumes it.
/// If it was enabled meanwhile, resume at once (the route's resume may have
/// run before this hold).
async fn hold(state: &AppState, outbox: Outbox, id: Uuid, endpoint: WebhookEndpointId) {
    let result = tokio::task::spawn_blocking({
        let outbox = outbox.clone();
        move || {
            outbox.update(id, |d| {
                if d.status == DeliveryStatus::Pending {
                    d.next_attempt_at = None;
                }
            })
        }
    })
    .await;
    if let Ok(Err(e)) = result {
        return tracing::error!(error = %e, %id, "holding a webhook delivery");
    }
    let log = state.log.clone();
    let enabled_now = tokio::task::spawn_blocking(move || endpoint_of(log.as_ref(), endpoint))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .is_some_and(|e| e.enabled && !e.deleted);
    if enabled_now {
        let now = state.clock.now();
        let resumed = tokio::task::spawn_blocking(move || outbox.resume(endpoint, now)).await;
        if let Ok(Err(e)) = resumed {
            tracing::error!(error = %e, %endpoint, "resuming webhook deliveries");
        }
    }
}

/// The endpoint as its own event stream leaves it, with its signing secrets.
fn endpoint_of(
    log: &dyn ledger_core::log::EventLog,
    id: WebhookEndpointId,
) -> Result<Option<WebhookEndpoint>, String> {
    projections::webhooks::endpoint_from_log(log, id).map_err(|e| e.to_string())
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(
        t.as_micros()
            .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    )
}

fn not_sent(now: Timestamp, why: &str) -> Outcome {
    Outcome {
        attempt: Attempt {
            at: now,
            status_code: None,
            duration_ms: 0,
            error: Some(why.to_string()),
            response_body: None,
        },
        succeeded: false,
        give_up: true,
    }
}

/// The secrets that sign now: the current one, and the rotated-out one while
/// it is still valid; opened with the master key (or as they are, if written
/// in clear before secrets were sealed).
pub fn signing_secrets(
    key: &MasterKey,
    e: &WebhookEndpoint,
    now: Timestamp,
) -> Result<Vec<String>, SealError> {
    let mut secrets = vec![key.open_str(Purpose::WebhookSecret, &e.secret)?];
    if let Some((previous, until)) = &e.previous_secret {
        if *until > now {
            secrets.push(key.open_str(Purpose::WebhookSecret, previous)?);
        }
    }
    Ok(secrets)
}

async fn send(
    state: &AppState,
    endpoint: &WebhookEndpoint,
    d: &Delivery,
    now: Timestamp,
) -> Outcome {
    let started = Instant::now();
    let answer = post(state, endpoint, d, now).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status_code, error, response_body) = match answer {
        Err(error) => (None, Some(error), None),
        Ok((status, body)) if status.is_success() => (Some(status.as_u16()), None, body),
        Ok((status, body)) => (
            Some(status.as_u16()),
            Some(format!("HTTP {}", status.as_u16())),
            body,
        ),
    };
    Outcome {
        succeeded: error.is_none(),
        attempt: Attempt {
            at: now,
            status_code,
            duration_ms,
            error,
            response_body,
        },
        give_up: false,
    }
}

/// Posts the delivery, signed: the answer's status and the start of its
/// body, or why there is none.
async fn post(
    state: &AppState,
    endpoint: &WebhookEndpoint,
    d: &Delivery,
    now: Timestamp,
) -> Result<(reqwest::StatusCode, Option<String>), String> {
    let timeout = state.config.webhook_timeout;
    let request = state
        .webhook_clients
        .post(&endpoint.url, state.config.webhook_allow_private, timeout)
        .await?;
    let secrets = signing_secrets(&state.master_key, endpoint, now)
        // Not sent unsigned; retried, as the key may be put right.
        .map_err(|e| format!("the signing secret does not open: {e}"))?;
    let request = signed(request, &secrets, d, now);
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || format!("timed out after {} ms", timeout.as_millis());
    let mut response = match tokio::time::timeout_at(deadline, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
        Ok(Err(e)) => return Err(describe(&e)),
        Err(_) => return Err(timed_out()),
    };
    let status = response.status();
    Ok((status, response_start(&mut response, deadline).await))
}

fn signed(
    request: reqwest::RequestBuilder,
    secrets: &[String],
    d: &Delivery,
    now: Timestamp,
) -> reqwest::RequestBuilder {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let timestamp = now.as_micros().div_euclid(1_000_000);
    let signature = signing::signature_header(&secrets, &d.event_id, timestamp, &d.payload);
    request
        .header("content-type", "application/json")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", &signature)
        .header("x-signature", &signature)
        .body(d.payload.clone())
}

/// The answer counts once its status is in; the body is kept for the log
/// (first KiB, whatever arrives before the deadline).
async fn response_start(
    response: &mut reqwest::Response,
    deadline: tokio::time::Instant,
) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BODY {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_RESPONSE_BODY);
    (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// A transport error in one line, without the URL (it is on the endpoint).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::ids::{OrganizationId, WebhookEndpointId};

    fn endpoint(secret: String, previous: Option<(String, Timestamp)>) -> WebhookEndpoint {
        WebhookEndpoint {
            id: WebhookEndpointId::from_uuid(uuid::Uuid::nil()),
            organization_id: OrganizationId::from_uuid(uuid::Uuid::nil()),
            url: "https://example.com/hook".into(),
            events: vec!["*".into()],
            description: None,
            enabled: true,
            secret,
            previous_secret: previous,
            deleted: false,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn sealed_and_clear_secrets_sign_and_a_lapsed_previous_one_does_not() {
        let key = MasterKey::from_bytes(&[3; 32]);
        let sealed = key.seal(Purpose::WebhookSecret, b"whsec_new");
        let until = Timestamp::from_micros(1_000);
        // A secret written in clear, before sealing, signs as it is.
        let e = endpoint(sealed, Some(("whsec_old".into(), until)));
        assert_eq!(
            signing_secrets(&key, &e, Timestamp::from_micros(999)).unwrap(),
            ["whsec_new", "whsec_old"]
        );
        assert_eq!(signing_secrets(&key, &e, until).unwrap(), ["whsec_new"]);
        // A secret sealed under another key is an error, never a signature.
        let other = MasterKey::from_bytes(&[4; 32]);
        assert!(signing_secrets(&other, &e, until).is_err());
        let e = endpoint(
            "whsec_new".into(),
            Some((key.seal(Purpose::KeptAnswer, b"x"), until)),
        );
        assert!(signing_secrets(&key, &e, Timestamp::from_micros(0)).is_err());
    }
}
