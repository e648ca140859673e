//! The read models as SQL tables: an SQLite database in the data directory
//! (WAL mode, so analysts may open it read-only while the server writes).
//!
//! The projection ([`fold`]) writes one SQL transaction per engine batch and
//! records the last applied sequence number (with that event's chain hash) in
//! the same transaction, so a restart resumes exactly there; the API reads
//! through [`queries`]. The schema is the migration files in
//! `projections/migrations/`, applied in order at open; the SQL is kept to
//! what SQLite and PostgreSQL both accept.

pub mod fold;
pub mod outbox;
pub mod queries;
pub mod rows;

use ledger_core::log::{EventLog, Hash};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The migrations, in order. Version n is `MIGRATIONS[n - 1]`.
pub const MIGRATIONS: [&str; 3] = [
    include_str!("../../migrations/0001_read_models.sql"),
    include_str!("../../migrations/0002_webhook_outbox.sql"),
    include_str!("../../migrations/0003_connection_reasons.sql"),
];

/// The database file inside a data directory.
pub const FILE: &str = "read-models.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("read-model database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("read-model row {table}/{id} does not decode: {reason}")]
    Corrupt {
        table: &'static str,
        id: String,
        reason: String,
    },
    #[error("read-model database {0} was written by a newer version (schema {1})")]
    TooNew(PathBuf, i64),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Log(#[from] ledger_core::log::LogError),
}

pub fn corrupt(table: &'static str, id: impl ToString, reason: impl ToString) -> SqlError {
    SqlError::Corrupt {
        table,
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

/// How long a writer waits for the database's write lock, at most.
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_micros(200);

/// The writers' busy handler: short, even pauses up to [`BUSY_WAIT`].
///
/// Rationale: the fold and the webhook worker's recorder take turns at the
/// write lock, each for a millisecond or so. SQLite's own busy timeout
/// sleeps in growing steps (up to 100 ms), so a fold that met the lock held
/// slept for far longer than it was held, and every command waiting on the
/// fold with it: under a webhook load, p99.9 latency was 500 ms.
fn wait_briefly(attempts: i32) -> bool {
    let waited = BUSY_PAUSE * u32::try_from(attempts).unwrap_or(u32::MAX);
    if waited >= BUSY_WAIT {
        return false;
    }
    std::thread::sleep(BUSY_PAUSE);
    true
}

/// Opens (creating if needed) the database at `path` for writing, applies
/// pending migrations, and sets the pragmas the projection relies on.
pub fn open_writer(path: &Path) -> Result<Connection, SqlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    // WAL: readers never block the writer nor see a half-applied batch.
    // synchronous=NORMAL: a commit is not fsync'ed; after a power loss the
    // database is consistent at some earlier batch and the projection
    // re-derives the rest from the log, which is the durable truth.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -65536)?; // 64 MiB
    conn.busy_handler(Some(wait_briefly))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// How often the server's checkpointer moves the WAL into the database.
///
/// Short, because a checkpoint ends in an fsync of the database file, and
/// the event log's group commits (an fdatasync on the same disk) queue
/// behind it: at 250 ms a checkpoint's fsync took 13–23 ms and set the p99
/// of commands (20 ms at 600 commands/s, 60 ms at 1,100); at 50 ms the p99
/// was 9–11 ms and 20 ms, and saturation throughput did not drop
/// (BENCHMARKS.md, "Issue 13, stop 27").
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Takes checkpointing off the writer's commits: the projection's connection
/// stops checkpointing by itself (`wal_autocheckpoint = 0`) and a thread of
/// its own copies the WAL into the database every [`CHECKPOINT_EVERY`] while
/// `applied` moves, until its sender is gone.
///
/// Rationale: at SQLite's default (a checkpoint inside whichever commit
/// pushes the WAL past 1,000 pages) a third of the fold's commit time was
/// checkpointing, on the path every command waits on; and a page changed by
/// many commits was copied once per checkpoint, so fewer, later checkpoints
/// copy less (a 20,000-page threshold alone gave about 15% more commands/s).
///
/// A passive checkpoint never makes the WAL file shorter, and under steady
/// load some reader always holds a snapshot in it, so nothing restarts it:
/// it grew by 2.4 GB in a 20 s run. Past [`WAL_TRUNCATE_ABOVE`] bytes the
/// checkpoint is `RESTART`: it holds the write lock and waits for the
/// readers of the old WAL (reads are milliseconds), so the next commit
/// writes the WAL from its start again; `journal_size_limit` cuts the file
/// back to the bound then. (`TRUNCATE` empties the file at once, but the
/// next commits then allocate its blocks again: p99 doubled.)
pub fn spawn_checkpointer(
    writer: &Connection,
    path: &Path,
    applied: tokio::sync::watch::Receiver<u64>,
) -> Result<(), SqlError> {
    spawn_checkpointer_truncating_above(writer, path, applied, WAL_TRUNCATE_ABOVE)
}

/// The WAL size past which the checkpointer restarts the file (and the
/// writer that restarts it cuts it back to).
pub const WAL_TRUNCATE_ABOVE: u64 = 64 * 1024 * 1024;

/// Sets a writer connection up for the checkpointer: it does not checkpoint
/// by itself, and cuts a restarted WAL back to `wal_bound` bytes.
pub fn leave_checkpoints(writer: &Connection, wal_bound: u64) -> Result<(), SqlError> {
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    writer.pragma_update(None, "journal_size_limit", wal_bound as i64)?;
    Ok(())
}

/// [`spawn_checkpointer`] with the WAL bound given (tests).
pub fn spawn_checkpointer_truncating_above(
    writer: &Connection,
    path: &Path,
    mut applied: tokio::sync::watch::Receiver<u64>,
    truncate_above: u64,
) -> Result<(), SqlError> {
    leave_checkpoints(writer, truncate_above)?;
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(wait_briefly))?;
    // A RESTART checkpoint cuts the WAL back to the bound itself.
    conn.pragma_update(None, "journal_size_limit", truncate_above as i64)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    std::thread::Builder::new()
        .name("read-model-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            match applied.has_changed() {
                Ok(true) => {
                    applied.borrow_and_update();
                }
                Ok(false) => continue,
                Err(_) => break,
            }
            // PASSIVE copies what no reader still needs and never waits;
            // RESTART (past the bound) waits for the WAL's readers.
            let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            let mode = if wal_bytes > truncate_above {
                "RESTART"
            } else {
                "PASSIVE"
            };
            let sql = format!("PRAGMA wal_checkpoint({mode})");
            if let Err(e) = conn.query_row(&sql, [], |_| Ok(())) {
                tracing::warn!(error = %e, mode, "read-model checkpoint failed; retrying");
            }
        })?;
    Ok(())
}

/// Opens the database read-only (the API's readers, analysts' tools).
pub fn open_reader(path: &Path) -> Result<Connection, SqlError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // 2 MiB: a page-sized lookup or list reads a handful of pages, and the
    // operating system's page cache already holds the hot ones; at 16 MiB
    // per pooled reader, two dozen busy readers held ~400 MB of copies.
    conn.pragma_update(None, "cache_size", -2048)?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), SqlError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             applied_at_utc TEXT NOT NULL
         )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current > MIGRATIONS.len() as i64 {
        return Err(SqlError::TooNew(path.to_path_buf(), current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_utc) VALUES (?1, ?2)",
            rusqlite::params![
                i as i64 + 1,
                ledger_core::time::Timestamp::from_datetime(chrono::Utc::now()).rfc3339()
            ],
        )?;
        tx.commit()?;
        tracing::info!(version = i + 1, "read-model schema migrated");
    }
    Ok(())
}

/// The last applied event and its chain hash (0 and zeros when empty).
pub fn position(conn: &Connection) -> Result<(u64, Hash), SqlError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT last_seq, last_hash FROM projection_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None => Ok((0, [0; 32])),
        Some((seq, hash)) => {
            let mut out = [0u8; 32];
            hex::decode_to_slice(&hash, &mut out).map_err(|e| corrupt("projection_state", 1, e))?;
            Ok((seq.max(0) as u64, out))
        }
    }
}

/// The chain hash the log holds at `seq`, if it holds `seq`.
pub fn hash_at(log: &dyn EventLog, seq: u64) -> Option<Hash> {
    if seq == 0 {
        return Some([0; 32]);
    }
    match log.read_raw(seq).next() {
        Some(Ok(raw)) if raw.seq == seq => Some(raw.hash),
        _ => None,
    }
}

/// Opens the read models at `path` and checks them against `log`: a database
/// ahead of the log, or whose hash at its position differs from the log's
/// (another history, or a restored backup), is deleted and rebuilt from 0.
pub fn open_checked(path: &Path, log: &dyn EventLog) -> Result<Connection, SqlError> {
    let conn = open_writer(path)?;
    let (seq, hash) = position(&conn)?;
    let head = log.head().last_seq;
    let refused = if seq > head {
        Some(format!("it is at seq {seq}, past the log's head {head}"))
    } else if hash_at(log, seq) != Some(hash) {
        Some(format!("its hash at seq {seq} is not the log's"))
    } else {
        None
    };
    let Some(reason) = refused else {
        return Ok(conn);
    };
    tracing::warn!(path = %path.display(), %reason, "read-model database refused; rebuilding from seq 0");
    drop(conn);
    remove_database(path)?;
    open_writer(path)
}

/// Deletes the database file with its write-ahead log and shared memory.
pub fn remove_database(path: &Path) -> Result<(), SqlError> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A small pool of read-only connections for the API's queries.
#[derive(Clone)]
pub struct Readers {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

/// At most this many idle connections are kept; more are opened on demand.
/// The webhook worker alone has up to 64 deliveries in flight, each reading
/// through here: with 16 kept, connections beyond them were opened and
/// closed again all the time, and opening one (its schema parsed, its
/// statements prepared anew) was up to 10% of the server's CPU under the
/// webhook mix. Each idle reader's page cache is at most 2 MiB.
const MAX_IDLE: usize = 64;

impl Readers {
    pub fn new(path: &Path) -> Self {
        Self {
            path: Arc::new(path.to_path_buf()),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read-only connection. Each call sees one
    /// consistent snapshot (a read transaction) of the database.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = {
            let tx = conn.transaction()?;
            let out = f(&tx);
            // A read transaction: nothing to keep, rolling back just ends it.
            drop(tx);
            out
        };
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }
}

#[cfg(test)]
mod busy_tests {
    use super::*;

    #[test]
    fn a_writer_waits_in_short_pauses_up_to_the_bound() {
        assert!(wait_briefly(0));
        assert!(wait_briefly(1));
        let last = i32::try_from(BUSY_WAIT.as_micros() / BUSY_PAUSE.as_micros()).unwrap();
        assert!(wait_briefly(last - 1));
        assert!(!wait_briefly(last), "gives up after BUSY_WAIT");
        assert!(!wait_briefly(i32::MAX));
    }
}
