//! Writing the SQL read models (`read-models.sqlite`) from the events this
//! tool has checked, through the projection's own code
//! (`projections::sql::fold::apply_batch`), and comparing them with the
//! in-memory fold.
//!
//! The file is built under a temporary name next to its final one, with the
//! pragmas of a bulk load: nobody else can see it and a crash leaves only
//! garbage under that name, so there is nothing to journal or sync until the
//! end (`journal_mode=OFF`, `synchronous=OFF`, an exclusive lock, a large
//! page cache), and the secondary indexes are dropped during the load and
//! built once at the end from their own `CREATE INDEX` text (the fold only
//! looks rows up by primary key). Then it is finalized as the server expects
//! to find it: WAL mode, the schema migrated by the projection's own
//! `open_writer`, the position (last seq and its chain hash) recorded by
//! `apply_batch` itself; synced, and renamed into place. A file already at
//! the final name is never touched.
//!
//! No `webhook_outbox_state` row is written (the projection derives no
//! deliveries without one): a server that adopts the file sets its outbox up
//! from the log's head, so the past is not sent again.

use crate::source::Failure;
use anyhow::{anyhow, Context};
use ledger_core::domain::Ledger;
use ledger_core::events::{Hold, RecordedEvent};
use ledger_core::ids::*;
use ledger_core::log::Hash;
use ledger_core::money::Amount;
use ledger_core::time::Timestamp;
use projections::sql::{self as psql, rows};
use projections::{views, BalanceChange, ReadModel};
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::Hash as StdHash;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events per SQL transaction unless told otherwise. Measured on the 10M
/// generated log (BENCHMARKS.md): past a few thousand events a transaction's
/// fixed cost is lost in the noise; larger batches only hold more decoded
/// events in memory.
pub const DEFAULT_BATCH: usize = 16_384;

/// Page cache of the bulk load (negative: KiB). The fold reads back every
/// row it updates; with ids in creation order the working set is the recent
/// end of each table, which this holds comfortably.
const BULK_CACHE_KIB: i64 = -262_144;

/// What writing the SQL file took.
#[derive(Debug, Clone)]
pub struct Stats {
    pub path: PathBuf,
    pub events: u64,
    pub batch: usize,
    pub last_seq: u64,
    /// Time inside `apply_batch` (the projection's own work).
    pub apply: Duration,
    /// Time to finalize: recreate the secondary indexes, WAL mode,
    /// checkpoint, sync, rename.
    pub finalize: Duration,
    /// Of which recreating the indexes.
    pub indexing: Duration,
    /// From opening the file to its rename.
    pub wall: Duration,
    pub bytes: u64,
}

impl Stats {
    /// Events per second of the SQL work alone (applying and finalizing).
    pub fn events_per_second(&self) -> f64 {
        per_second(self.events, self.apply + self.finalize)
    }

    pub fn wall_events_per_second(&self) -> f64 {
        per_second(self.events, self.wall)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "events": self.events,
            "lastSeq": self.last_seq,
            "eventsPerTransaction": self.batch,
            "applySeconds": round3(self.apply.as_secs_f64()),
            "finalizeSeconds": round3(self.finalize.as_secs_f64()),
            "indexingSeconds": round3(self.indexing.as_secs_f64()),
            "wallSeconds": round3(self.wall.as_secs_f64()),
            "eventsPerSecond": self.events_per_second().round(),
            "wallEventsPerSecond": self.wall_events_per_second().round(),
            "bytes": self.bytes,
        })
    }
}

fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn sql_err(what: &str) -> impl FnOnce(psql::SqlError) -> Failure + '_ {
    move |e| Failure::Io(anyhow!("{what}: {e}"))
}

fn sidecars(path: &Path) -> [PathBuf; 4] {
    ["-wal", "-shm", "-journal", ""].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// The final file and its temporary name in `dir`.
fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let path = dir.join(psql::FILE);
    let partial = dir.join(format!("{}.partial", psql::FILE));
    (path, partial)
}

/// Refuses when `DIR/read-models.sqlite` (or its WAL) exists: it may be a
/// server's, and rebuilding never overwrites.
pub fn refuse_existing(dir: &Path) -> Result<(), Failure> {
    let (path, _) = paths(dir);
    for p in &sidecars(&path)[..2] {
        if p.exists() {
            return Err(Failure::Io(anyhow!(
                "{} exists; give a directory without one (rebuild never overwrites a read-model database)",
                p.display()
            )));
        }
    }
    if path.exists() {
        return Err(Failure::Io(anyhow!(
            "{} exists; give a directory without one (rebuild never overwrites a read-model database)",
            path.display()
        )));
    }
    Ok(())
}

/// The temporary name. Whatever happens it is gone with this: renamed into
/// place (linked to the final name, then unlinked), or removed after a
/// failure, so no half-written database is ever left to be mistaken for one.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        for p in sidecars(&self.0) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The SQL read models being written.
pub struct Writer {
    conn: Connection,
    /// Secondary indexes dropped for the load, recreated by `finish`.
    deferred: Vec<(String, String)>,
    path: PathBuf,
    /// Dropped after `conn` (declared after it), so the file is closed first.
    partial: Partial,
    batch: Vec<RecordedEvent>,
    batch_size: usize,
    last_hash: Hash,
    /// The last event handed in (pushes at or below it are skipped, so a
    /// second pass over the same log only adds what is new).
    last_seq: u64,
    events: u64,
    apply: Duration,
    started: Instant,
}

impl Writer {
    /// Creates `DIR/read-models.sqlite.partial` (removing one a crashed run
    /// left behind: that name is only ever this tool's), migrated to the
    /// projection's current schema.
    pub fn create(dir: &Path, batch_size: usize) -> Result<Writer, Failure> {
        refuse_existing(dir)?;
        let (path, partial) = paths(dir);
        for p in sidecars(&partial) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Failure::Io(
                        anyhow!(e).context(format!("removing {}", p.display())),
                    ))
                }
            }
        }
        let started = Instant::now();
        let guard = Partial(partial.clone());
        create_with_page_size(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        // The projection's own opening: its migrations, its pragmas.
        let conn = psql::open_writer(&partial).map_err(sql_err("creating the read models"))?;
        // The fold prepares (and caches) some twenty statements; rusqlite
        // keeps 16 by default, so some would be prepared again and again.
        conn.set_prepared_statement_cache_capacity(128);
        // Then those of a bulk load into a file nobody else sees yet.
        bulk_pragmas(&conn)
            .with_context(|| format!("setting up {} for a bulk load", partial.display()))?;
        // Maintaining a dozen secondary indexes row by row cost a third of
        // the load's CPU; built once at the end from sorted keys, a fraction.
        let deferred = defer_indexes(&conn)
            .with_context(|| format!("setting up {} for a bulk load", partial.display()))?;
        Ok(Writer {
            conn,
            deferred,
            path,
            partial: guard,
            batch: Vec::with_capacity(batch_size),
            batch_size: batch_size.max(1),
            last_hash: [0; 32],
            last_seq: 0,
            events: 0,
            apply: Duration::ZERO,
            started,
        })
    }

    /// Queues one checked event (with its chain hash); applies a full batch.
    pub fn push(&mut self, event: RecordedEvent, hash: Hash) -> Result<(), Failure> {
        if event.seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = event.seq;
        self.last_hash = hash;
        self.batch.push(event);
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Failure> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let at = psql::fold::apply_batch(&mut self.conn, &self.batch, self.last_hash).map_err(
            |e| match e {
                // A row an event needs is missing, or a state does not
                // decode: the log (already checked link by link) describes
                // something the projection cannot apply.
                psql::SqlError::Corrupt { table, id, reason } => Failure::bad(
                    self.batch.first().map(|e| e.seq).unwrap_or(0),
                    format!(
                        "the SQL projection cannot apply the batch starting here ({table}/{id}: {reason})"
                    ),
                ),
                other => Failure::Io(anyhow!("writing the SQL read models: {other}")),
            },
        )?;
        self.apply += t.elapsed();
        if at != self.last_seq {
            return Err(Failure::Io(anyhow!(
                "the SQL read models stopped at seq {at} instead of {}",
                self.last_seq
            )));
        }
        self.events += self.batch.len() as u64;
        self.batch.clear();
        Ok(())
    }

    /// Applies what is left, puts the file in the server's shape and renames
    /// it into place.
    pub fn finish(mut self) -> Result<Stats, Failure> {
        self.flush()?;
        let t = Instant::now();
        let Writer {
            conn,
            deferred,
            path,
            partial,
            batch_size,
            last_hash,
            last_seq,
            events,
            apply,
            started,
            ..
        } = self;
        let file = partial.0.clone();
        let t_index = Instant::now();
        recreate_indexes(&conn, &deferred)
            .with_context(|| format!("recreating the indexes of {}", file.display()))?;
        let indexing = t_index.elapsed();
        finalize(&conn).with_context(|| format!("finalizing {}", file.display()))?;
        conn.close()
            .map_err(|(_, e)| anyhow!("closing {}: {e}", file.display()))?;
        for p in &sidecars(&file)[..3] {
            if p.exists() {
                return Err(Failure::Io(anyhow!(
                    "{} is still there after closing; the database is not complete",
                    p.display()
                )));
            }
        }
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", file.display()))?;
        // A link fails if the final name exists (`refuse_existing` ran
        // minutes ago): never replace a file that appeared meanwhile.
        std::fs::hard_link(&file, &path).map_err(|e| {
            Failure::Io(anyhow!(
                "putting {} in place: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (it appeared during the rebuild; it was left alone)"
                } else {
                    ""
                }
            ))
        })?;
        drop(partial);
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        let finalize = t.elapsed();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let stats = Stats {
            path: path.clone(),
            events,
            batch: batch_size,
            last_seq,
            apply,
            finalize,
            indexing,
            wall: started.elapsed(),
            bytes,
        };
        check_opens(&path, last_seq, last_hash)?;
        Ok(stats)
    }
}

/// Secondary indexes kept up to date while loading rather than built at the
/// end. Their keys arrive in order behind a few prefixes (one of 16
/// organizations or 32 balances, then a seq or a creation time), so each
/// insert lands at one of a few hot right edges of the B-tree: cheap. Built
/// at the end, each costs a scan of its whole (wide) table; on the 10M log
/// `balance_changes_by_balance` alone took 5.2 s of a 35 s index phase.
///
/// Measured on the 10M log (`rebuild --sql-only`, wall): everything deferred
/// 101.9 s; these seven live 84.9 s; these and the three keyed by invoice id
/// (UUID v7, but an invoice's history and payment arrive long after it was
/// created, so into the middle of the tree) 98.0 s. The rest take keys in no
/// particular order (due dates, totals, statuses that change) and stay
/// deferred.
const LIVE_INDEXES: [&str; 7] = [
    "balance_changes_by_balance",
    "transactions_by_organization",
    "payments_by_payer",
    "payments_by_payee",
    "invoices_by_seller",
    "invoices_by_buyer",
    "invoice_parties_created",
];

/// Drops every secondary index the schema declares but [`LIVE_INDEXES`] (not
/// the ones behind a PRIMARY KEY or UNIQUE constraint, which have no SQL of
/// their own and which the fold's lookups and upserts use), returning their
/// definitions.
fn defer_indexes(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .filter(|r| {
            r.as_ref()
                .map_or(true, |(name, _): &(String, String)| {
                    !LIVE_INDEXES.contains(&name.as_str())
                })
        })
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(indexes)
}

/// Recreates the deferred indexes from their own definitions, so the schema
/// ends exactly as the migrations left it.
fn recreate_indexes(conn: &Connection, deferred: &[(String, String)]) -> rusqlite::Result<()> {
    // Let SQLite's sorter use a helper thread for the big sorts.
    conn.pragma_update(None, "threads", 2)?;
    for (_, sql) in deferred {
        conn.execute_batch(sql)?;
    }
    Ok(())
}

/// Opens the finished file to read it. Not through `open_reader`: a
/// read-only connection cannot remove the `-wal` and `-shm` files when it
/// closes, and the directory should hold just the database. `query_only`
/// keeps this connection from writing all the same.
fn open_for_reading(path: &Path) -> Result<Connection, Failure> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| {
        c.pragma_update(None, "query_only", true)?;
        c.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
        Ok(c)
    })
    .with_context(|| format!("opening {}", path.display()))?;
    Ok(conn)
}

/// Bytes per page of the rebuilt file (the server's own file keeps SQLite's
/// default, 4096). Measured on the 1M log: building the indexes took a
/// quarter less with 16 KiB pages, the load itself a little less (fewer
/// B-tree levels, pages and page writes); 32 and 64 KiB were no better, and
/// a larger page is more to read for a reader's point lookup.
const BULK_PAGE_SIZE: u32 = 16_384;

/// Creates the empty database file with [`BULK_PAGE_SIZE`]: the size is
/// fixed by the first write, which must come before `open_writer` switches
/// the file to WAL (a WAL database cannot change its page size).
fn create_with_page_size(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "page_size", BULK_PAGE_SIZE)?;
    conn.execute_batch("VACUUM")?;
    let size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    if size != BULK_PAGE_SIZE {
        return Err(rusqlite::Error::InvalidQuery);
    }
    Ok(())
}

fn bulk_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// The server opens its database in WAL mode with `synchronous=NORMAL`
/// (`projections::sql::open_writer`); leave the file so, fully written.
fn finalize(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "locking_mode", "NORMAL")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidQuery);
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Reopens the file as the server's readers do and checks it is at the
/// position written, with every migration applied.
fn check_opens(path: &Path, last_seq: u64, last_hash: Hash) -> Result<(), Failure> {
    let conn = open_for_reading(path)?;
    let (seq, hash) = psql::position(&conn).map_err(sql_err("reading its position"))?;
    if seq != last_seq || (seq > 0 && hash != last_hash) {
        return Err(Failure::Io(anyhow!(
            "the written read models say they end at seq {seq}, not {last_seq} with its hash"
        )));
    }
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map_err(|e| anyhow!("reading its schema version: {e}"))?
        .unwrap_or(0);
    if version != psql::MIGRATIONS.len() as i64 {
        return Err(Failure::Io(anyhow!(
            "the written read models are at schema {version}, not {}",
            psql::MIGRATIONS.len()
        )));
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| anyhow!("reading its journal mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Io(anyhow!(
            "the written read models are in journal mode {mode}, not WAL"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// comparison with the in-memory fold
// ---------------------------------------------------------------------------

/// Differences between the SQL read models at `path` and the in-memory fold
/// of the same events. Every aggregate's `state` must decode to exactly the
/// fold's entity (API keys without their secret hash and webhook endpoints
/// without their secrets: the SQL tables leave those out on purpose), every
/// balance must render the same, hold the same reservations, and every
/// balance change and transaction must have its row with the same figures.
pub fn compare(path: &Path, m: &ReadModel) -> Result<Vec<String>, Failure> {
    let conn = open_for_reading(path)?;
    let mut diffs = Vec::new();
    let d = &mut diffs;
    let l: &Ledger = &m.ledger;
    let q = |e: rusqlite::Error| Failure::Io(anyhow!("reading the SQL read models: {e}"));

    states(&conn, "organizations", &l.organizations, |x| x.clone(), d).map_err(q)?;
    states(
        &conn,
        "api_keys",
        &l.api_keys,
        |k| {
            let mut k = k.clone();
            k.secret_hash = [0; 32];
            k
        },
        d,
    )
    .map_err(q)?;
    states(&conn, "connections", &l.connections, |x| x.clone(), d).map_err(q)?;
    states(&conn, "invoices", &m.invoices, |x| x.clone(), d).map_err(q)?;
    states(&conn, "payments", &l.payments, |x| x.clone(), d).map_err(q)?;
    states(&conn, "withdrawals", &l.withdrawals, |x| x.clone(), d).map_err(q)?;
    states(&conn, "refunds", &l.refunds, |x| x.clone(), d).map_err(q)?;
    states(
        &conn,
        "webhook_endpoints",
        &l.webhook_endpoints,
        |e| {
            let mut e = e.clone();
            e.secret = String::new();
            e.previous_secret = None;
            e
        },
        d,
    )
    .map_err(q)?;
    states(&conn, "files", &l.files, |x| x.clone(), d).map_err(q)?;
    line_items(&conn, &m.invoices, d).map_err(q)?;
    invoice_parties(&conn, m, d).map_err(q)?;
    balances(&conn, l, d)?;
    holds(&conn, l, d).map_err(q)?;
    balance_changes(&conn, m, d).map_err(q)?;
    transactions(&conn, m, d).map_err(q)?;
    Ok(diffs)
}

/// At most this many differences of one kind are listed; the rest counted.
const LISTED: usize = 20;

struct Differ<'a> {
    what: &'static str,
    diffs: &'a mut Vec<String>,
    count: usize,
}

impl<'a> Differ<'a> {
    fn new(what: &'static str, diffs: &'a mut Vec<String>) -> Self {
        Differ {
            what,
            diffs,
            count: 0,
        }
    }

    fn push(&mut self, message: String) {
        self.count += 1;
        if self.count <= LISTED {
            self.diffs.push(format!("SQL {}: {message}", self.what));
        }
    }
}

impl Drop for Differ<'_> {
    fn drop(&mut self) {
        if self.count > LISTED {
            self.diffs.push(format!(
                "SQL {}: {} more differences not listed",
                self.what,
                self.count - LISTED
            ));
        }
    }
}

/// Every row of `table` decodes to the entity of the same id (as `expected`
/// renders it), and every entity has its row.
fn states<'m, K, V>(
    conn: &Connection,
    table: &'static str,
    entities: impl IntoIterator<Item = (&'m K, &'m V)>,
    expected: impl Fn(&V) -> V,
    diffs: &mut Vec<String>,
) -> rusqlite::Result<()>
where
    K: Eq + StdHash + Display + std::str::FromStr + 'm,
    V: DeserializeOwned + PartialEq + std::fmt::Debug + 'm,
{
    let entities: HashMap<&K, &V> = entities.into_iter().collect();
    let mut differ = Differ::new(table, diffs);
    let mut seen: HashSet<&K> = HashSet::with_capacity(entities.len());
    let mut stmt = conn.prepare(&format!("SELECT id, state FROM {table}"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let bytes: Vec<u8> = row.get(1)?;
        let Some((key, entity)) = id
            .parse::<K>()
            .ok()
            .and_then(|k| entities.get_key_value(&k))
            .map(|(k, v)| (*k, *v))
        else {
            differ.push(format!("{id}: a row with no such entity in the fold"));
            continue;
        };
        seen.insert(key);
        match rows::decode::<V>(table, &bytes) {
            Ok(state) if state == expected(entity) => {}
            Ok(state) => differ.push(format!(
                "{id}: the row's state differs from the fold's: {}",
                first_field_difference(&format!("{state:?}"), &format!("{:?}", expected(entity)))
            )),
            Err(e) => differ.push(format!("{id}: {e}")),
        }
    }
    for k in entities.keys().copied() {
        if !seen.contains(k) {
            differ.push(format!("{k}: in the fold but has no row"));
        }
    }
    Ok(())
}

/// Where two `Debug` renderings first differ, with a little context.
fn first_field_difference(a: &str, b: &str) -> String {
    let at = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = a[..at].rfind(", ").map(|i| i + 2).unwrap_or(0);
    let snippet = |s: &str| -> String { s.get(from..).unwrap_or("").chars().take(80).collect() };
    format!("SQL `{}…` vs fold `{}…`", snippet(a), snippet(b))
}

fn line_items(
    conn: &Connection,
    invoices: &std::collections::HashMap<
        ledger_core::ids::InvoiceId,
        ledger_core::domain::invoice::Invoice,
    >,
    diffs: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let mut differ = Differ::new("invoice_line_items", diffs);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT invoice_id, COUNT(*) FROM invoice_line_items GROUP BY invoice_id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        counts.insert(row.get(0)?, row.get::<_, i64>(1)? as usize);
    }
    for inv in invoices.values() {
        let have = counts.remove(&inv.id.to_string()).unwrap_or(0);
        if have != inv.line_items.len() {
            differ.push(format!(
                "invoice {}: {have} line item rows for {} line items",
                inv.id,
                inv.line_items.len()
            ));
        }
    }
    for id in counts.keys() {
        differ.push(format!(
            "line items of {id}, an invoice the fold does not have"
        ));
    }
    Ok(())
}

/// The invoice list rows: each organization's exactly the invoices the
/// fold lists for it.
fn invoice_parties(
    conn: &Connection,
    m: &ReadModel,
    diffs: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let mut differ = Differ::new("invoice_parties", diffs);
    let mut want: HashSet<(String, String)> = HashSet::new();
    for (org, ids) in &m.invoices_by_org {
        for id in ids {
            want.insert((org.to_string(), id.to_string()));
        }
    }
    let mut stmt = conn.prepare("SELECT organization_id, invoice_id FROM invoice_parties")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key: (String, String) = (row.get(0)?, row.get(1)?);
        if !want.remove(&key) {
            differ.push(format!(
                "organization {} lists invoice {} but the fold does not",
                key.0, key.1
            ));
        }
    }
    for (org, id) in want {
        differ.push(format!(
            "organization {org} does not list invoice {id} but the fold does"
        ));
    }
    Ok(())
}

/// Every balance renders the same (the API's view) from its row as from the fold.
fn balances(conn: &Connection, l: &Ledger, diffs: &mut Vec<String>) -> Result<(), Failure> {
    let mut differ = Differ::new("balances", diffs);
    let rows =
        rows::balances_where(conn, "1 = 1", &[]).map_err(sql_err("reading the SQL balances"))?;
    let mut seen = HashSet::new();
    for row in rows {
        seen.insert(row.id);
        match l.balances.get(&row.id) {
            None => differ.push(format!(
                "{}: a row with no such balance in the fold",
                row.id
            )),
            Some(b) => {
                let (vs, vf) = (views::balance(&row), views::balance(b));
                if vs != vf {
                    differ.push(format!("{}: SQL {vs} vs fold {vf}", row.id));
                }
            }
        }
    }
    for id in l.balances.keys() {
        if !seen.contains(id) {
            differ.push(format!("{id}: in the fold but has no row"));
        }
    }
    Ok(())
}

fn holds(conn: &Connection, l: &Ledger, diffs: &mut Vec<String>) -> rusqlite::Result<()> {
    let mut differ = Differ::new("balance_holds", diffs);
    let mut have: HashMap<(String, String, String), String> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT balance_id, hold_type, hold_id, amount FROM balance_holds")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        have.insert((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?);
    }
    for b in l.balances.values() {
        for (hold, amount) in &b.holds {
            // The schema's spelling (0001_read_models.sql: `invoice | withdrawal`).
            let key = match hold {
                Hold::Invoice(id) => (b.id.to_string(), "invoice".to_string(), id.to_string()),
                Hold::Withdrawal(id) => {
                    (b.id.to_string(), "withdrawal".to_string(), id.to_string())
                }
            };
            match have.remove(&key) {
                Some(a) if same_amount(&a, *amount) => {}
                Some(a) => differ.push(format!(
                    "balance {}: hold {hold:?} is {a} in SQL, {} in the fold",
                    b.id,
                    amount.format(b.currency)
                )),
                None => differ.push(format!("balance {}: hold {hold:?} has no row", b.id)),
            }
        }
    }
    for (b, kind, id) in have.keys() {
        differ.push(format!(
            "balance {b}: a {kind} hold {id} the fold does not have"
        ));
    }
    Ok(())
}

fn same_amount(stored: &str, amount: Amount) -> bool {
    Amount::parse_stored(stored).is_ok_and(|a| a == amount)
}

/// Every change-log entry has its row with the same figures, and no row is extra.
fn balance_changes(
    conn: &Connection,
    m: &ReadModel,
    diffs: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let mut differ = Differ::new("balance_changes", diffs);
    let mut by_seq: HashMap<u64, (BalanceId, &BalanceChange)> = HashMap::new();
    for (id, list) in &m.balance_changes {
        for ch in list {
            by_seq.insert(ch.seq, (*id, ch));
        }
    }
    let mut stmt = conn.prepare(
        "SELECT seq, balance_id, organization_id, currency, at_micros, kind, amount, total_after,
                reserved_after, collateral_after, available_after, frozen_after, cause_type, cause_id
         FROM balance_changes",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)?.max(0) as u64;
        let Some((balance_id, ch)) = by_seq.remove(&seq) else {
            differ.push(format!("seq {seq}: a row with no such change in the fold"));
            continue;
        };
        let balance = m.ledger.balances.get(&balance_id);
        let (org, currency) = match balance {
            Some(b) => (b.organization_id.to_string(), b.currency),
            None => {
                differ.push(format!(
                    "seq {seq}: its balance {balance_id} is not in the fold"
                ));
                continue;
            }
        };
        let columns: (String, String, String) = (row.get(1)?, row.get(2)?, row.get(3)?);
        if columns != (balance_id.to_string(), org, currency.code().to_string()) {
            differ.push(format!(
                "seq {seq}: balance, organization or currency {columns:?} differ from the fold's"
            ));
        }
        let amount = |i: usize| -> rusqlite::Result<Option<Amount>> {
            Ok(Amount::parse_stored(&row.get::<_, String>(i)?).ok())
        };
        let parsed = (|| -> rusqlite::Result<Option<BalanceChange>> {
            Ok(Some(BalanceChange {
                seq,
                at: Timestamp::from_micros(row.get(4)?),
                kind: row.get(5)?,
                amount: match amount(6)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                total_after: match amount(7)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                reserved_after: match amount(8)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                collateral_after: match amount(9)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                available_after: match amount(10)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                frozen_after: row.get(11)?,
                cause_type: row.get(12)?,
                cause_id: row.get(13)?,
            }))
        })()?;
        match parsed {
            None => differ.push(format!("seq {seq}: an amount does not parse")),
            Some(row_change) if &row_change == ch => {}
            Some(row_change) => differ.push(format!(
                "seq {seq}: {}",
                first_field_difference(&format!("{row_change:?}"), &format!("{ch:?}"))
            )),
        }
    }
    for (seq, (balance, _)) in by_seq {
        differ.push(format!(
            "seq {seq} (balance {balance}): in the fold but has no row"
        ));
    }
    Ok(())
}

/// Every transaction has its row, which reads back as exactly the fold's.
fn transactions(conn: &Connection, m: &ReadModel, diffs: &mut Vec<String>) -> rusqlite::Result<()> {
    let mut differ = Differ::new("transactions", diffs);
    let mut seen: HashSet<TransactionId> = HashSet::with_capacity(m.transactions.len());
    let mut stmt = conn.prepare(
        "SELECT id, seq, type, organization_id, balance_id, currency, amount, total_after,
                reference, invoice_id, payment_id, withdrawal_id, refund_id,
                counterparty_organization_id, created_micros
         FROM transactions",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let t = match rows::transaction_row(row)? {
            Ok(t) => t,
            Err(e) => {
                let id: String = row.get(0)?;
                differ.push(format!("{id}: does not read back: {e}"));
                continue;
            }
        };
        match m.transactions.get(&t.id) {
            None => differ.push(format!(
                "{}: a row with no such transaction in the fold",
                t.id
            )),
            Some(f) if f == &t => {}
            Some(f) => differ.push(format!(
                "{}: {}",
                t.id,
                first_field_difference(&format!("{t:?}"), &format!("{f:?}"))
            )),
        }
        seen.insert(t.id);
    }
    for id in m.transactions.keys() {
        if !seen.contains(id) {
            differ.push(format!("{id}: in the fold but has no row"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::log::{verify_link, RawEvent, GENESIS_HASH};

    /// The golden log (every v1 event type), links checked.
    fn golden() -> Vec<(RecordedEvent, Hash)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ledger-core/tests/fixtures/golden-v1/events.hex");
        let text = std::fs::read_to_string(path).expect("golden log");
        let mut previous = GENESIS_HASH;
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                let raw = RawEvent {
                    seq: f[0].parse().expect("seq"),
                    encoded: hex::decode(f[1]).expect("hex"),
                    hash: hex::decode(f[2])
                        .expect("hex")
                        .try_into()
                        .expect("32 bytes"),
                };
                let e = verify_link(&previous, &raw).expect("link");
                previous = raw.hash;
                (e, raw.hash)
            })
            .collect()
    }

    fn written(dir: &Path, batch: usize) -> (Stats, ReadModel) {
        let events = golden();
        let mut writer = Writer::create(dir, batch).expect("create");
        let mut model = ReadModel::new();
        for (e, hash) in &events {
            model.apply(e).expect("apply");
            writer.push(e.clone(), *hash).expect("push");
            // A second pass over what was pushed adds nothing.
            writer.push(e.clone(), *hash).expect("push again");
        }
        (writer.finish().expect("finish"), model)
    }

    #[test]
    fn the_golden_log_in_sql_equals_its_fold_whatever_the_batch() {
        let events = golden();
        for batch in [1, 7, 100_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (stats, model) = written(dir.path(), batch);
            assert_eq!(stats.events, events.len() as u64);
            assert_eq!(stats.last_seq, events.len() as u64);
            let diffs = compare(&stats.path, &model).expect("compare");
            assert!(diffs.is_empty(), "batch {batch}: {diffs:#?}");
            // Just the database, renamed into place, nothing beside it.
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, vec![psql::FILE.to_string()]);
        }
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stats, model) = written(dir.path(), 16);
        let l = &model.ledger;
        let conn = Connection::open(&stats.path).expect("open");
        let mut invoices = l.invoices.keys().map(|i| i.to_string());
        let (a, b) = (
            invoices.next().expect("an invoice"),
            invoices.next().expect("two invoices"),
        );
        // One invoice's state replaced by another's.
        conn.execute(
            "UPDATE invoices SET state = (SELECT state FROM invoices WHERE id = ?2) WHERE id = ?1",
            [&a, &b],
        )
        .expect("update");
        let balance = l.balances.keys().next().expect("a balance").to_string();
        conn.execute(
            "UPDATE balances SET total = '123456.00' WHERE id = ?1",
            [&balance],
        )
        .expect("update");
        let tx = model
            .transactions
            .keys()
            .next()
            .expect("a transaction")
            .to_string();
        conn.execute("DELETE FROM transactions WHERE id = ?1", [&tx])
            .expect("delete");
        let change = model
            .balance_changes
            .values()
            .flatten()
            .next()
            .expect("a change")
            .seq;
        conn.execute(
            "UPDATE balance_changes SET kind = 'NONSENSE' WHERE seq = ?1",
            [change as i64],
        )
        .expect("update");
        let key = l.api_keys.keys().next().expect("a key").to_string();
        conn.execute("DELETE FROM api_keys WHERE id = ?1", [&key])
            .expect("delete");
        conn.execute(
            "INSERT INTO invoice_parties SELECT organization_id, ?1, role, counterparty_id,
                 connection_id, status, currency, due_date, created_key, due_key, total_key
             FROM invoice_parties LIMIT 1",
            ["00000000-0000-7000-8000-000000000000"],
        )
        .expect("insert");
        drop(conn);
        let diffs = compare(&stats.path, &model).expect("compare");
        let has = |what: &str, id: &str| {
            assert!(
                diffs.iter().any(|d| d.contains(what) && d.contains(id)),
                "no `{what}` difference about {id} in {diffs:#?}"
            )
        };
        has("SQL invoices", &a);
        has("SQL balances", &balance);
        has("SQL transactions", &tx);
        has("SQL balance_changes", &format!("seq {change}"));
        has("SQL api_keys", &key);
        has(
            "SQL invoice_parties",
            "00000000-0000-7000-8000-000000000000",
        );
        assert_eq!(diffs.len(), 6, "{diffs:#?}");
    }

    #[test]
    fn a_failed_rebuild_leaves_no_database_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = golden();
        let mut writer = Writer::create(dir.path(), 1).expect("create");
        for (e, hash) in &events[..5] {
            writer.push(e.clone(), *hash).expect("push");
        }
        // Seq 7 after 5: the projection refuses the gap.
        let (e, hash) = &events[6];
        assert!(writer.push(e.clone(), *hash).is_err());
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    fn indexes(path: &Path) -> Vec<(String, String)> {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    #[test]
    fn a_rebuilt_file_has_the_migrated_schemas_indexes_and_loads_some_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stats, _) = written(dir.path(), 100);
        let reference = dir.path().join("reference.sqlite");
        drop(psql::open_writer(&reference).expect("migrate"));
        let expected = indexes(&reference);
        assert_eq!(indexes(&stats.path), expected);
        let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        for live in LIVE_INDEXES {
            assert!(
                names.contains(&live),
                "{live} is not an index of the schema"
            );
        }
        // Some are deferred, or the index phase would not exist.
        assert!(names.len() > LIVE_INDEXES.len());
    }

    #[test]
    fn an_existing_database_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(psql::FILE);
        std::fs::write(&path, b"a server's").expect("write");
        assert!(Writer::create(dir.path(), 16).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"a server's");
    }
}
