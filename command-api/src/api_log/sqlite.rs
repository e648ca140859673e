//! The API log's SQLite database, `<data dir>/api-logs.sqlite`: one table
//! keyed by the same bytes the sled store used (so cursors handed out before
//! the move still work), written by one connection and read through a pool.

use crate::error::ApiError;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub const FILE: &str = "api-logs.sqlite";

/// The schema this code writes; `PRAGMA user_version` holds the file's.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS api_log_records (
        key BLOB NOT NULL UNIQUE,
        id BLOB NOT NULL UNIQUE,
        at_micros INTEGER NOT NULL,
        value BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS api_log_records_at ON api_log_records (at_micros);";

pub const INSERT: &str =
    "INSERT OR IGNORE INTO api_log_records (key, id, at_micros, value) VALUES (?1, ?2, ?3, ?4)";

/// Rows deleted per transaction when pruning, so that one prune of a day's
/// traffic never holds the write lock for long.
const PRUNE_CHUNK: usize = 10_000;

const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Idle readers kept for reuse; more may be open at once, the rest close.
const IDLE_READERS: usize = 8;

/// Opens (creating if needed) the database for writing.
pub fn open_writer(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL: readers read while the writer writes. synchronous=NORMAL: a commit
    // is not fsynced; API logs are a record of traffic, not the ledger's
    // evidence, and the sled store before this already accepted losing its
    // last half second of them at a power loss.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A checkpoint leaves the WAL file at its largest size unless told.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.busy_timeout(BUSY_WAIT)?;
    migrate(&conn, path)?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 => conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?,
        SCHEMA_VERSION => {}
        v => anyhow::bail!(
            "the API log database {} was written by a newer version (schema {v})",
            path.display()
        ),
    }
    Ok(())
}

/// Stores `rows` (key, id, at µs, value) in one transaction; a row whose key
/// or id is stored already is skipped. Returns how many were new.
pub fn insert<'a>(
    conn: &mut Connection,
    rows: impl IntoIterator<Item = (&'a [u8], &'a [u8], i64, &'a [u8])>,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut new = 0;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for (key, id, at, value) in rows {
            new += insert.execute(params![key, id, at, value])?;
        }
    }
    tx.commit()?;
    Ok(new)
}

/// Deletes the records older than `before_micros`, a chunk per transaction.
pub fn prune(conn: &Connection, before_micros: i64) -> rusqlite::Result<usize> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM api_log_records WHERE rowid IN
             (SELECT rowid FROM api_log_records WHERE at_micros < ?1 LIMIT ?2)",
    )?;
    let mut total = 0;
    loop {
        let n = delete.execute(params![before_micros, PRUNE_CHUNK as i64])?;
        total += n;
        if n < PRUNE_CHUNK {
            return Ok(total);
        }
    }
}

/// Copies the WAL into the database file and empties it (at a clean stop).
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// Read-only connections, taken for one call and put back: concurrent
/// readers each get their own, so they do not wait on each other.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("api log", e)
}

impl Readers {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_WAIT)?;
        Ok(conn)
    }

    /// Runs `f` on an idle reader (or a new one).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open().map_err(internal)?,
        };
        let out = f(&conn);
        // A failed call may have left the connection mid-statement: drop it.
        if out.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }
}

/// The stored value of the record with this id.
pub fn value_by_id(conn: &Connection, id: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    conn.prepare_cached("SELECT value FROM api_log_records WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(internal)
}

/// Calls `visit` with each (key, value) whose key lies strictly between
/// `after` and `upper`, in key order, until it returns `Ok(false)`.
pub fn each_between(
    conn: &Connection,
    after: &[u8],
    upper: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, value FROM api_log_records WHERE key > ?1 AND key < ?2 ORDER BY key",
        )
        .map_err(internal)?;
    let mut rows = stmt.query(params![after, upper]).map_err(internal)?;
    while let Some(row) = rows.next().map_err(internal)? {
        let key = row
            .get_ref(0)
            .map_err(internal)?
            .as_blob()
            .map_err(internal)?;
        let value = row
            .get_ref(1)
            .map_err(internal)?
            .as_blob()
            .map_err(internal)?;
        if !visit(key, value)? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::super::{record_key, ApiLogRecord, ApiLogs, ZSTD_MAGIC};
    use super::*;
    use ledger_core::codec;
    use ledger_core::ids::{ApiKeyId, OrganizationId};
    use ledger_core::time::Timestamp;
    use uuid::Uuid;

    pub const BASE: i64 = 1_700_000_000_000_000;
    pub const SECOND: i64 = 1_000_000;

    /// A record of `org` made `seconds` after [`BASE`].
    pub fn rec(org: OrganizationId, seconds: i64, status: u16, body: &str) -> ApiLogRecord {
        ApiLogRecord {
            id: Uuid::now_v7(),
            at: Timestamp::from_micros(BASE + seconds * SECOND),
            organization_id: org,
            api_key_id: ApiKeyId::new(),
            method: "POST".into(),
            path: format!("/api/v1/invoices/{seconds}"),
            query: Some(format!("n={seconds}")),
            status,
            duration_micros: 17 + seconds as u64,
            request_id: Some(format!("req-{seconds}")),
            ip: Some("10.0.0.1".into()),
            request_body: Some(format!("{{\"at\":{seconds}}}")),
            response_body: Some(body.into()),
        }
    }

    /// A response body that encodes to well over a kibibyte.
    pub fn page(tag: &str) -> String {
        format!(
            "{{\"data\":[{}]}}",
            vec![format!("{{\"id\":\"{tag}\",\"status\":\"SETTLED\"}}"); 200].join(",")
        )
    }

    pub fn key_of(r: &ApiLogRecord) -> Vec<u8> {
        record_key(r.organization_id, r.at, r.id)
    }

    /// Every record of `org` that `keep` keeps, `n` a page, following the
    /// cursors; each cursor must be the key of its page's last record.
    pub fn walk(
        logs: &ApiLogs,
        org: OrganizationId,
        n: usize,
        keep: &dyn Fn(&ApiLogRecord) -> bool,
    ) -> Vec<ApiLogRecord> {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = logs.scan(org, after, n, keep).expect("a page");
            assert!(page.len() <= n);
            seen.extend(page.iter().cloned());
            match next {
                Some(k) => {
                    assert_eq!(page.len(), n, "a short page with a cursor");
                    assert_eq!(Some(&k), page.last().map(key_of).as_ref());
                    after = Some(k);
                }
                None => return seen,
            }
            assert!(seen.len() <= 1000, "the cursors loop");
        }
    }

    #[tokio::test]
    async fn records_come_back_by_id_and_in_key_order_within_their_organization() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = ApiLogs::open(dir.path()).expect("opened");
        let (a, b) = (OrganizationId::new(), OrganizationId::new());
        let mut mine = Vec::new();
        // Sent out of time order; two at the same instant; one large.
        for (i, seconds) in [5, 1, 9, 3, 7, 3, 2, 8].into_iter().enumerate() {
            let status = if i % 3 == 0 { 500 } else { 200 };
            let body = if i == 2 {
                page("big")
            } else {
                format!("{{\"i\":{i}}}")
            };
            let r = rec(a, seconds, status, &body);
            logs.record(r.clone()).await;
            mine.push(r);
            logs.record(rec(b, seconds, 500, "{\"other\":true}")).await;
        }
        logs.sync().await;
        for r in &mine {
            assert_eq!(logs.get(r.id).expect("read").as_ref(), Some(r));
        }
        assert_eq!(logs.get(Uuid::now_v7()).expect("read"), None);

        mine.sort_by_key(key_of);
        assert_eq!(mine[0].at.as_micros(), BASE + SECOND);
        let (all, next) = logs.scan(a, None, 100, &|_| true).expect("a page");
        assert_eq!(all, mine);
        assert_eq!(next, None);
        for n in 1..=mine.len() + 1 {
            assert_eq!(walk(&logs, a, n, &|_| true), mine, "pages of {n}");
        }
        let failed: Vec<_> = mine.iter().filter(|r| r.status == 500).cloned().collect();
        assert_eq!(failed.len(), 3);
        for n in 1..=3 {
            assert_eq!(walk(&logs, a, n, &|r| r.status == 500), failed);
        }
        // The other organization's records are there, and only its own.
        let theirs = walk(&logs, b, 3, &|_| true);
        assert_eq!(theirs.len(), 8);
        assert!(theirs.iter().all(|r| r.organization_id == b));
        assert!(theirs.iter().all(|r| !mine.contains(r)));
    }

    #[tokio::test]
    async fn prune_removes_exactly_the_records_older_than_the_bound() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = ApiLogs::open(dir.path()).expect("opened");
        let org = OrganizationId::new();
        let records: Vec<_> = (0..10).map(|s| rec(org, s, 200, "{}")).collect();
        for r in &records {
            logs.record(r.clone()).await;
        }
        logs.sync().await;
        let bound = Timestamp::from_micros(BASE + 4 * SECOND);
        assert_eq!(logs.prune(bound).expect("pruned"), 4);
        for r in &records {
            assert_eq!(
                logs.get(r.id).expect("read").is_some(),
                r.at >= bound,
                "{r:?}"
            );
        }
        assert_eq!(walk(&logs, org, 4, &|_| true), records[4..]);

        // As retention does it, through the writer: an hour's retention, an
        // hour and 7 s after BASE.
        let hour = std::time::Duration::from_secs(3600);
        let now = Timestamp::from_micros(BASE + 3600 * SECOND + 7 * SECOND);
        logs.prune_if_due(now, hour).await;
        logs.sync().await;
        assert_eq!(walk(&logs, org, 100, &|_| true), records[7..]);
        assert_eq!(logs.prune(now).expect("pruned"), 3);
        assert_eq!(walk(&logs, org, 100, &|_| true), []);
    }

    #[tokio::test]
    async fn small_records_are_stored_plain_and_a_flush_empties_the_wal() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = ApiLogs::open(dir.path()).expect("opened");
        let org = OrganizationId::new();
        let small = rec(org, 1, 200, "{}");
        let large = rec(org, 2, 200, &page("large"));
        logs.record(small.clone()).await;
        logs.record(large.clone()).await;
        logs.flush().await;
        let wal = dir.path().join(format!("{FILE}-wal"));
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);

        let conn = Connection::open(dir.path().join(FILE)).expect("opened");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("a version");
        assert_eq!(version, SCHEMA_VERSION);
        let row = |r: &ApiLogRecord| -> (Vec<u8>, i64, Vec<u8>) {
            conn.query_row(
                "SELECT key, at_micros, value FROM api_log_records WHERE id = ?1",
                [r.id.as_bytes()],
                |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)),
            )
            .expect("a row")
        };
        let (key, at, value) = row(&small);
        assert_eq!((key, at), (key_of(&small), small.at.as_micros()));
        assert_eq!(value, codec::encode(&small).expect("encoded"));
        let (_, _, value) = row(&large);
        assert!(value.starts_with(&ZSTD_MAGIC));
        assert!(value.len() * 4 < codec::encode(&large).expect("encoded").len());
        assert_eq!(logs.get(small.id).expect("read"), Some(small));
        assert_eq!(logs.get(large.id).expect("read"), Some(large));
    }
}
