//! The webhook outbox as rows of the read models (`webhook_deliveries`,
//! `webhook_attempts`, `webhook_redeliveries`; migration 0002).
//!
//! Deliveries are derived by the projection ([`derive`], called by the fold
//! right after each event's rows are stored) inside the batch's own SQL
//! transaction: they are committed exactly when the position that covers
//! their event is, so a crash loses none (the projection resumes at its
//! position and derives them again) and creates none twice (the position has
//! moved past them, and `UNIQUE (endpoint_id, event_id)` refuses a duplicate
//! regardless). Acknowledging a command therefore waits for no fsync of its
//! own: the log is the durable truth the deliveries are re-derived from.
//!
//! The delivery worker and the routes use [`Outbox`]: reads on the pooled
//! read-only connections, writes (attempt results, test messages,
//! redeliveries, resumes) on a write connection of its own, in short
//! `BEGIN IMMEDIATE` transactions with `synchronous=FULL`, so what an
//! attempt came to is on disk before the next attempt is considered.
//!
//! Where derivation starts is recorded once per database
//! (`webhook_outbox_state.webhooks_from_seq`, see [`open_projection`]): the
//! previous version's sled outbox is imported and its checkpoint kept, so an
//! upgrade that folds the SQL read models from seq 0 re-sends nothing.

use super::fold::Pending;
use super::{corrupt, position, rows, Readers, SqlError};
use crate::webhooks::{self, Subject, SubjectKey};
use ledger_core::domain::webhook_endpoint::WebhookEndpoint;
use ledger_core::events::RecordedEvent;
use ledger_core::ids::{OrganizationId, WebhookEndpointId};
use ledger_core::log::EventLog;
use ledger_core::time::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub use crate::outbox::{Attempt, Delivery, DeliveryStatus, Due, LegacyOutbox, MAX_RESPONSE_BODY};

/// Where the previous version's outbox goes once imported.
pub const IMPORTED_SUFFIX: &str = ".imported";

// ---------------------------------------------------------------------------
// Derivation, in the projection's transaction.

/// Derives the deliveries `event` makes, from the rows as the fold has just
/// left them. Nothing for events at or below `webhooks_from_seq`, nor in a
/// database that keeps no outbox.
pub fn derive(
    c: &Connection,
    pending: &Pending,
    webhooks_from: Option<u64>,
    event: &RecordedEvent,
) -> Result<(), SqlError> {
    if webhooks::event_type(&event.event).is_none() {
        return Ok(());
    }
    match webhooks_from {
        Some(from) if event.seq > from => {}
        _ => return Ok(()),
    }
    let entries = webhooks::route(
        event,
        |key| subject(c, pending, key),
        |org, event_type| targets(c, org, event_type),
    )?;
    for entry in &entries {
        let m = &entry.message;
        for endpoint in &entry.endpoints {
            let d = Delivery::new(
                *endpoint,
                m.organization_id,
                m.event_id.clone(),
                m.event_type.to_string(),
                m.seq,
                m.created_at,
                m.payload.clone(),
            );
            put_new(c, &d)?;
        }
    }
    Ok(())
}

/// Events at or below this seq make no deliveries; None: this database keeps
/// no outbox (it was not set up by [`open_projection`]).
pub fn webhooks_from_seq(c: &Connection) -> Result<Option<u64>, SqlError> {
    let seq: Option<i64> = c
        .prepare_cached("SELECT webhooks_from_seq FROM webhook_outbox_state WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.map(|s| s.max(0) as u64))
}

/// The subject as the SQL read models hold it right after the event.
fn subject(
    c: &Connection,
    pending: &Pending,
    key: SubjectKey,
) -> Result<Option<Subject>, SqlError> {
    Ok(match key {
        SubjectKey::Invoice(id) => match pending.touched_invoice(id) {
            Some(inv) => Some(Subject::Invoice(inv.clone())),
            None => rows::load(c, "invoices", &id.to_string())?.map(Subject::Invoice),
        },
        SubjectKey::Payment(id) => match pending.touched_payment(id) {
            Some(p) => Some(Subject::Payment(p.clone())),
            None => rows::load(c, "payments", &id.to_string())?.map(Subject::Payment),
        },
        SubjectKey::Deposit(balance, transaction_id) => {
            let balance = match pending.touched_balance(balance) {
                Some(b) => Some(b.clone()),
                None => rows::load_balance(c, &balance.to_string())?,
            };
            match balance {
                Some(balance) => Some(Subject::Deposit {
                    balance,
                    transaction_id,
                    transaction: rows::load_transaction(c, transaction_id)?,
                }),
                None => None,
            }
        }
        SubjectKey::Withdrawal(id) => {
            rows::load(c, "withdrawals", &id.to_string())?.map(Subject::Withdrawal)
        }
        SubjectKey::Refund(id) => rows::load(c, "refunds", &id.to_string())?.map(Subject::Refund),
        SubjectKey::Connection(id) => {
            rows::load(c, "connections", &id.to_string())?.map(Subject::Connection)
        }
    })
}

/// The organization's endpoints that take a new message of this type, in
/// creation order.
fn targets(
    c: &Connection,
    org: OrganizationId,
    event_type: &str,
) -> Result<Vec<WebhookEndpointId>, SqlError> {
    let mut stmt = c.prepare_cached(
        "SELECT state FROM webhook_endpoints
         WHERE organization_id = ?1 AND enabled = 1 AND deleted = 0 ORDER BY seq",
    )?;
    let states = stmt.query_map([org.to_string()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for state in states {
        let e: WebhookEndpoint = rows::decode("webhook_endpoints", &state?)?;
        if webhooks::wanted_by(&e, event_type) {
            out.push(e.id);
        }
    }
    Ok(out)
}

fn parse<T: FromStr>(table: &'static str, id: &str, value: &str) -> Result<T, SqlError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| corrupt(table, id, e))
}

// ---------------------------------------------------------------------------
// Rows.

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, organization_id, event_id, event_type, seq, payload,
     status, next_attempt_micros, schedule_base, created_micros";

/// Inserts a delivery with its attempts and redeliveries, unless the endpoint
/// already has one for that message. Returns whether it was inserted.
fn put_new(c: &Connection, d: &Delivery) -> Result<bool, SqlError> {
    let id = d.id.to_string();
    let payload =
        std::str::from_utf8(&d.payload).map_err(|e| corrupt("webhook_deliveries", &id, e))?;
    let next = schedule_of(d);
    let inserted = c
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type,
                 seq, payload, status, next_attempt_at_utc, next_attempt_micros, schedule_base,
                 created_at_utc, created_micros)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        )?
        .execute(params![
            id,
            d.endpoint_id.to_string(),
            d.organization_id.to_string(),
            d.event_id,
            d.event_type,
            d.seq as i64,
            payload,
            d.status.as_str(),
            next.map(rows::ts),
            next.map(Timestamp::as_micros),
            d.schedule_base as i64,
            rows::ts(d.created_at),
            d.created_at.as_micros(),
        ])?
        > 0;
    if inserted {
        insert_attempts(c, &id, &d.attempts, 0)?;
        insert_redeliveries(c, &id, &d.redelivered_by, 0)?;
    }
    Ok(inserted)
}

/// The next attempt as stored: only a PENDING delivery has one.
fn schedule_of(d: &Delivery) -> Option<Timestamp> {
    d.next_attempt_at
        .filter(|_| d.status == DeliveryStatus::Pending)
}

fn insert_attempts(
    c: &Connection,
    id: &str,
    attempts: &[Attempt],
    from: usize,
) -> Result<(), SqlError> {
    let mut insert = c.prepare_cached(
        "INSERT INTO webhook_attempts (delivery_id, position, at_utc, at_micros, status_code,
             duration_ms, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (i, a) in attempts.iter().enumerate() {
        insert.execute(params![
            id,
            (from + i) as i64,
            rows::ts(a.at),
            a.at.as_micros(),
            a.status_code,
            i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
            a.error,
            a.response_body,
        ])?;
    }
    Ok(())
}

fn insert_redeliveries(
    c: &Connection,
    id: &str,
    requests: &[Uuid],
    from: usize,
) -> Result<(), SqlError> {
    let mut insert = c.prepare_cached(
        "INSERT INTO webhook_redeliveries (delivery_id, position, request_id) VALUES (?1, ?2, ?3)",
    )?;
    for (i, r) in requests.iter().enumerate() {
        insert.execute(params![id, (from + i) as i64, r.to_string()])?;
    }
    Ok(())
}

/// A delivery row, before its attempts and redeliveries are attached.
struct RawDelivery {
    id: String,
    endpoint_id: String,
    organization_id: String,
    event_id: String,
    event_type: String,
    seq: i64,
    payload: String,
    status: String,
    next_attempt_micros: Option<i64>,
    schedule_base: i64,
    created_micros: i64,
}

fn raw_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDelivery> {
    Ok(RawDelivery {
        id: r.get(0)?,
        endpoint_id: r.get(1)?,
        organization_id: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        seq: r.get(5)?,
        payload: r.get(6)?,
        status: r.get(7)?,
        next_attempt_micros: r.get(8)?,
        schedule_base: r.get(9)?,
        created_micros: r.get(10)?,
    })
}

fn complete(c: &Connection, raw: RawDelivery) -> Result<Delivery, SqlError> {
    let table = "webhook_deliveries";
    let id = &raw.id;
    let status = DeliveryStatus::parse(&raw.status)
        .ok_or_else(|| corrupt(table, id, format!("status {}", raw.status)))?;
    Ok(Delivery {
        id: parse(table, id, id)?,
        endpoint_id: parse(table, id, &raw.endpoint_id)?,
        organization_id: parse(table, id, &raw.organization_id)?,
        event_id: raw.event_id,
        event_type: raw.event_type,
        seq: raw.seq.max(0) as u64,
        created_at: Timestamp::from_micros(raw.created_micros),
        payload: raw.payload.into_bytes(),
        status,
        next_attempt_at: raw.next_attempt_micros.map(Timestamp::from_micros),
        attempts: attempts_of(c, id)?,
        schedule_base: u32::try_from(raw.schedule_base.max(0)).unwrap_or(u32::MAX),
        redelivered_by: redeliveries_of(c, id)?,
    })
}

fn attempts_of(c: &Connection, id: &str) -> Result<Vec<Attempt>, SqlError> {
    let mut stmt = c.prepare_cached(
        "SELECT at_micros, status_code, duration_ms, error, response_body
         FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(Attempt {
            at: Timestamp::from_micros(r.get(0)?),
            status_code: r.get(1)?,
            duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
            error: r.get(3)?,
            response_body: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn redeliveries_of(c: &Connection, id: &str) -> Result<Vec<Uuid>, SqlError> {
    let mut stmt = c.prepare_cached(
        "SELECT request_id FROM webhook_redeliveries WHERE delivery_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(parse("webhook_redeliveries", id, &r?)?);
    }
    Ok(out)
}

/// Deliveries selected by `clause` (over the delivery columns), in its order.
fn deliveries_where(
    c: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Delivery>, SqlError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {clause}");
    let raws: Vec<RawDelivery> = c
        .prepare_cached(&sql)?
        .query_map(args, raw_delivery)?
        .collect::<Result<_, _>>()?;
    raws.into_iter().map(|raw| complete(c, raw)).collect()
}

/// One delivery by id.
pub fn get(c: &Connection, id: Uuid) -> Result<Option<Delivery>, SqlError> {
    Ok(deliveries_where(c, "id = ?1", &[&id.to_string()])?
        .into_iter()
        .next())
}

/// The endpoint's delivery of a message, if it has one.
pub fn by_message(
    c: &Connection,
    endpoint: WebhookEndpointId,
    event_id: &str,
) -> Result<Option<Delivery>, SqlError> {
    Ok(deliveries_where(
        c,
        "endpoint_id = ?1 AND event_id = ?2",
        &[&endpoint.to_string(), &event_id],
    )?
    .into_iter()
    .next())
}

/// PENDING deliveries due at `now`, earliest first, at most `limit`.
pub fn due(c: &Connection, now: Timestamp, limit: usize) -> Result<Vec<Due>, SqlError> {
    let mut stmt = c.prepare_cached(
        "SELECT next_attempt_micros, endpoint_id, id FROM webhook_deliveries
         WHERE next_attempt_micros <= ?1 AND status = 'PENDING'
         ORDER BY next_attempt_micros, endpoint_id, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now.as_micros(), limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, endpoint, id) = row?;
        out.push(Due {
            at: Timestamp::from_micros(at),
            endpoint_id: parse("webhook_deliveries", &id, &endpoint)?,
            delivery_id: parse("webhook_deliveries", &id, &id)?,
        });
    }
    Ok(out)
}

/// The earliest scheduled attempt, if any.
pub fn next_due(c: &Connection) -> Result<Option<Timestamp>, SqlError> {
    let at: Option<i64> = c
        .prepare_cached(
            "SELECT MIN(next_attempt_micros) FROM webhook_deliveries WHERE status = 'PENDING'",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(at.map(Timestamp::from_micros))
}

/// How many deliveries are scheduled (PENDING and not held).
pub fn pending_count(c: &Connection) -> Result<usize, SqlError> {
    let n: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM webhook_deliveries
             WHERE status = 'PENDING' AND next_attempt_micros IS NOT NULL",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(n.max(0) as usize)
}

/// An endpoint's deliveries, newest first, before the cursor (a delivery
/// id), optionally only those in `status`. Returns the page and the cursor
/// of the next one.
pub fn list(
    c: &Connection,
    endpoint: WebhookEndpointId,
    before: Option<Uuid>,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> Result<(Vec<Delivery>, Option<Uuid>), SqlError> {
    let endpoint = endpoint.to_string();
    // Past every UUID's text: the first page.
    let before = before.map_or_else(|| "g".to_string(), |b| b.to_string());
    let take = limit as i64 + 1;
    let mut page = match status {
        None => deliveries_where(
            c,
            "endpoint_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            &[&endpoint, &before, &take],
        )?,
        Some(s) => deliveries_where(
            c,
            "endpoint_id = ?1 AND status = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
            &[&endpoint, &s.as_str(), &before, &take],
        )?,
    };
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|d| d.id)
    } else {
        None
    };
    Ok((page, next))
}

/// Writes what may change of a delivery: its progress (status, schedule,
/// attempts, redeliveries). Its message is fixed at creation.
fn save_progress(c: &Connection, before: &Delivery, after: &Delivery) -> Result<(), SqlError> {
    let id = after.id.to_string();
    let next = schedule_of(after);
    c.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?2, next_attempt_at_utc = ?3,
             next_attempt_micros = ?4, schedule_base = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        after.status.as_str(),
        next.map(rows::ts),
        next.map(Timestamp::as_micros),
        after.schedule_base as i64,
    ])?;
    if after.attempts.starts_with(&before.attempts) {
        insert_attempts(
            c,
            &id,
            &after.attempts[before.attempts.len()..],
            before.attempts.len(),
        )?;
    } else {
        c.prepare_cached("DELETE FROM webhook_attempts WHERE delivery_id = ?1")?
            .execute([&id])?;
        insert_attempts(c, &id, &after.attempts, 0)?;
    }
    if after.redelivered_by.starts_with(&before.redelivered_by) {
        insert_redeliveries(
            c,
            &id,
            &after.redelivered_by[before.redelivered_by.len()..],
            before.redelivered_by.len(),
        )?;
    } else {
        c.prepare_cached("DELETE FROM webhook_redeliveries WHERE delivery_id = ?1")?
            .execute([&id])?;
        insert_redeliveries(c, &id, &after.redelivered_by, 0)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Endpoints, as the API reads them (secrets blanked in the read models).

/// One endpoint by id, whoever owns it, deleted or not.
pub fn endpoint(
    c: &Connection,
    id: WebhookEndpointId,
) -> Result<Option<WebhookEndpoint>, SqlError> {
    rows::load(c, "webhook_endpoints", &id.to_string())
}

/// The organization's endpoints (not deleted) in creation order, after the
/// endpoint `after` names, at most `limit`. A cursor that names no endpoint
/// pages by id, which is creation order too (UUID v7, minted by the one
/// writer), as the in-memory list did.
pub fn endpoints_of(
    c: &Connection,
    org: OrganizationId,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<WebhookEndpoint>, SqlError> {
    let mut sql = String::from(
        "SELECT state FROM webhook_endpoints WHERE organization_id = ? AND deleted = 0",
    );
    let mut args = vec![SqlValue::Text(org.to_string())];
    if let Some(after) = after {
        let after_seq: Option<i64> = c
            .prepare_cached("SELECT seq FROM webhook_endpoints WHERE id = ?1")?
            .query_row([after], |r| r.get(0))
            .optional()?;
        match after_seq {
            Some(seq) => {
                sql.push_str(" AND seq > ?");
                args.push(SqlValue::Integer(seq));
            }
            None => {
                sql.push_str(" AND id > ?");
                args.push(SqlValue::Text(after.to_owned()));
            }
        }
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(SqlValue::Integer(limit as i64));
    let mut stmt = c.prepare_cached(&sql)?;
    let states = stmt.query_map(params_from_iter(args), |r| r.get::<_, Vec<u8>>(0))?;
    states
        .map(|state| rows::decode("webhook_endpoints", &state?))
        .collect()
}

// ---------------------------------------------------------------------------
// The worker's and the routes' handle.

/// Cheap to clone; every clone shares one write connection.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// Serialises this process's outbox writes; SQLite serialises them with
    /// the projection's.
    writer: Mutex<Connection>,
    readers: Readers,
    /// Woken when deliveries may have become due sooner than the worker's
    /// next poll.
    wake: tokio::sync::Notify,
}

impl Outbox {
    /// Opens the outbox's own write connection to the database `readers`
    /// read (already migrated by the projection).
    pub fn open(readers: Readers) -> Result<Self, SqlError> {
        let mut conn = super::open_writer(readers.path())?;
        // An attempt's result is durable before the next attempt is
        // considered (the projection's commits need not be: it re-derives).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                readers,
                wake: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Leaves checkpoints to the server's checkpointer thread (see
    /// `sql::spawn_checkpointer`): otherwise, with the fold no longer
    /// checkpointing, the commit of an attempt's result that found the WAL
    /// past 1,000 pages did it, and under a webhook load most of the
    /// worker's CPU went there.
    pub fn leave_checkpoints_to_the_checkpointer(&self) -> Result<(), SqlError> {
        let conn = self
            .inner
            .writer
            .lock()
            .map_err(|_| SqlError::Io(std::io::Error::other("outbox writer lock poisoned")))?;
        super::leave_checkpoints(&conn, super::WAL_TRUNCATE_ABOVE)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, SqlError>) -> Result<T, SqlError> {
        self.inner.readers.with(f)
    }

    /// Runs `f` in one short write transaction (`BEGIN IMMEDIATE`: it waits
    /// for the projection's batch, up to the busy timeout, rather than fail
    /// on upgrading a read).
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut conn = self
            .inner
            .writer
            .lock()
            .map_err(|_| SqlError::Io(std::io::Error::other("outbox writer lock poisoned")))?;
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn get(&self, id: Uuid) -> Result<Option<Delivery>, SqlError> {
        self.read(|c| get(c, id))
    }

    pub fn by_message(
        &self,
        endpoint: WebhookEndpointId,
        event_id: &str,
    ) -> Result<Option<Delivery>, SqlError> {
        self.read(|c| by_message(c, endpoint, event_id))
    }

    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, SqlError> {
        self.read(|c| due(c, now, limit))
    }

    pub fn next_due(&self) -> Result<Option<Timestamp>, SqlError> {
        self.read(next_due)
    }

    pub fn pending_count(&self) -> Result<usize, SqlError> {
        self.read(pending_count)
    }

    pub fn list(
        &self,
        endpoint: WebhookEndpointId,
        before: Option<Uuid>,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<Uuid>), SqlError> {
        self.read(|c| list(c, endpoint, before, status, limit))
    }

    /// Adds one delivery made outside the projection (a test message),
    /// durably. When the endpoint already has a delivery for that message id,
    /// returns that one instead.
    pub fn insert(&self, delivery: Delivery) -> Result<Delivery, SqlError> {
        let stored = self.write(|tx| {
            if put_new(tx, &delivery)? {
                return Ok(delivery);
            }
            by_message(tx, delivery.endpoint_id, &delivery.event_id)?.ok_or_else(|| {
                corrupt(
                    "webhook_deliveries",
                    &delivery.event_id,
                    "refused, not found",
                )
            })
        })?;
        self.notify();
        Ok(stored)
    }

    /// Changes a delivery's progress with `f` (its id, endpoint and message
    /// stay), durably. Returns the delivery as it now stands (None: unknown id).
    pub fn update(
        &self,
        id: Uuid,
        f: impl FnOnce(&mut Delivery),
    ) -> Result<Option<Delivery>, SqlError> {
        let mut updated = self.update_many(vec![(id, f)])?;
        Ok(updated.pop().flatten())
    }

    /// As [`Outbox::update`] for many deliveries, in one transaction (one
    /// fsync): the results, in order.
    ///
    /// Rationale: the worker records what each attempt came to before the
    /// delivery can be tried again. One durable commit per attempt was one
    /// fsync per delivery, and each took the database's write lock from the
    /// projection every command waits for; attempts that finish together
    /// are recorded together.
    pub fn update_many<F: FnOnce(&mut Delivery)>(
        &self,
        changes: Vec<(Uuid, F)>,
    ) -> Result<Vec<Option<Delivery>>, SqlError> {
        let updated = self.write(|tx| {
            let mut out = Vec::with_capacity(changes.len());
            for (id, f) in changes {
                let Some(before) = get(tx, id)? else {
                    out.push(None);
                    continue;
                };
                let mut after = before.clone();
                f(&mut after);
                if after.status != DeliveryStatus::Pending {
                    after.next_attempt_at = None;
                }
                save_progress(tx, &before, &after)?;
                // Read back: what is stored is what the caller sees.
                out.push(get(tx, id)?);
            }
            Ok(out)
        })?;
        if updated
            .iter()
            .flatten()
            .any(|d| d.status == DeliveryStatus::Pending)
        {
            self.notify();
        }
        Ok(updated)
    }

    /// Puts the endpoint's held deliveries (PENDING without a next attempt:
    /// held while it was disabled) back on the schedule at `now`. Returns how many.
    pub fn resume(&self, endpoint: WebhookEndpointId, now: Timestamp) -> Result<usize, SqlError> {
        let resumed = self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET next_attempt_at_utc = ?2, next_attempt_micros = ?3
                     WHERE endpoint_id = ?1 AND status = 'PENDING' AND next_attempt_micros IS NULL",
                )?
                .execute(params![
                    endpoint.to_string(),
                    rows::ts(now),
                    now.as_micros()
                ])?)
        })?;
        if resumed > 0 {
            self.notify();
        }
        Ok(resumed)
    }

    /// Resolves when deliveries were added or rescheduled since the last call.
    pub async fn changed(&self) {
        self.inner.wake.notified().await
    }

    /// Wakes the worker: deliveries may be due (the projection calls this
    /// after committing a batch that may have derived some).
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }
}

// ---------------------------------------------------------------------------
// Setting up: where derivation starts, and the upgrade from the sled outbox.

/// Opens the projection's database at `path` (checked against `log`, see
/// [`super::open_checked`]) with its outbox set up: on the first open for a
/// log, records `webhooks_from_seq`, importing the previous version's outbox
/// from `legacy` when that directory exists (then renamed `…imported`).
///
/// `webhooks_from_seq` is the previous outbox's checkpoint (what it covered
/// was derived, and maybe sent, already), else the log's head: 0 for a new
/// log, so everything is delivered; past the history of a log that comes
/// without its outbox (a restored backup), which is not sent again.
pub fn open_projection(
    path: &Path,
    log: &dyn EventLog,
    legacy: Option<&Path>,
) -> Result<Connection, SqlError> {
    let mut conn = super::open_checked(path, log)?;
    if webhooks_from_seq(&conn)?.is_some() {
        // Set up already; a directory left means the last start stopped
        // between committing its import and renaming it.
        if let Some(dir) = legacy.filter(|d| d.exists()) {
            set_aside(dir)?;
        }
        return Ok(conn);
    }
    let previous = match legacy.filter(|d| d.exists()) {
        Some(dir) => Some((
            dir,
            LegacyOutbox::open(dir).map_err(|e| import_error(dir, e))?,
        )),
        None => None,
    };
    let from = match &previous {
        Some((dir, o)) => o.checkpoint().map_err(|e| import_error(dir, e))?,
        None => log.head().last_seq,
    };
    if position(&conn)?.0 > from {
        // Folded past `from` by a version that kept deliveries elsewhere:
        // those events' deliveries were never derived here. The read models
        // are derivable; fold them again, deriving from `from` on.
        tracing::warn!(path = %path.display(), from, "read models ahead of the webhook outbox; rebuilding them from seq 0");
        drop(conn);
        super::remove_database(path)?;
        conn = super::open_writer(path)?;
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut imported = 0;
    if let Some((dir, o)) = &previous {
        for d in o.deliveries() {
            if put_new(&tx, &d.map_err(|e| import_error(dir, e))?)? {
                imported += 1;
            }
        }
    }
    tx.prepare_cached(
        "INSERT INTO webhook_outbox_state (id, webhooks_from_seq, created_at_utc, imported_from)
         VALUES (1, ?1, ?2, ?3)",
    )?
    .execute(params![
        from as i64,
        rows::ts(Timestamp::from_datetime(chrono::Utc::now())),
        previous.as_ref().map(|(dir, _)| dir.display().to_string()),
    ])?;
    tx.commit()?;
    tracing::info!(from, imported, "webhook outbox set up in the read models");
    if let Some((dir, o)) = previous {
        // sled holds its files until the last handle goes.
        drop(o);
        set_aside(dir)?;
    }
    Ok(conn)
}

fn import_error(dir: &Path, e: crate::outbox::OutboxError) -> SqlError {
    SqlError::Io(std::io::Error::other(format!(
        "importing the webhook outbox {}: {e}",
        dir.display()
    )))
}

/// Renames the imported outbox out of the way (kept, not deleted: it is the
/// record of what was sent before the upgrade).
fn set_aside(dir: &Path) -> Result<(), SqlError> {
    let name = format!("{}{IMPORTED_SUFFIX}", dir.display());
    let mut target = PathBuf::from(&name);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(dir, &target)?;
    if let Some(parent) = target.parent() {
        #[cfg(unix)]
        std::fs::File::open(parent).and_then(|d| d.sync_all())?;
        #[cfg(not(unix))]
        let _ = parent;
    }
    tracing::info!(from = %dir.display(), to = %target.display(), "previous webhook outbox imported and set aside");
    Ok(())
}
