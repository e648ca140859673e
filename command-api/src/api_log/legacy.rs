//! The sled store earlier versions kept the API log in (`<data dir>/api-logs`):
//! copied into SQLite by the first start that finds it, then removed.
//!
//! Its records are keyed exactly as the SQLite rows are (see `record_key`)
//! and their values are copied as stored, so nothing is decoded on the way
//! and cursors handed out before the upgrade keep working.

use super::sqlite;
use anyhow::Context;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;
use std::time::{Duration, Instant};

pub const DIR: &str = "api-logs";

/// Records copied per transaction.
const CHUNK: usize = 10_000;

/// Copies every record of the sled store at `dir` into `conn`, then removes
/// `dir`. Rows stored already are skipped, so a copy cut short by a crash
/// (which leaves `dir` in place) is simply done again at the next start.
pub fn import(dir: &Path, conn: &mut Connection) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = open(dir)?;
    let (mut seen, mut copied, mut malformed) = (0, 0, 0);
    let mut records = db.scan_prefix([b'r']);
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut insert = tx.prepare_cached(sqlite::INSERT)?;
            for item in records.by_ref().take(CHUNK) {
                let (key, value) = item.context("reading the legacy API log store")?;
                n += 1;
                let Some((id, at)) = parse_key(&key) else {
                    malformed += 1;
                    continue;
                };
                copied += insert.execute(params![&key[..], id, at, &value[..]])?;
            }
        }
        tx.commit()?;
        seen += n;
        if n < CHUNK {
            break;
        }
    }
    // sled holds its files until the last handle goes.
    drop(records);
    drop(db);
    // The copy's commits were not fsynced (synchronous=NORMAL): the old
    // store goes only once they are in the database file, on the disk.
    if !sqlite::checkpoint(conn)? {
        anyhow::bail!("the imported API log records could not be checkpointed (busy)");
    }
    std::fs::remove_dir_all(dir)
        .with_context(|| format!("removing the imported API log store {}", dir.display()))?;
    tracing::info!(
        seen,
        copied,
        malformed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        from = %dir.display(),
        "API log records moved from sled to SQLite"
    );
    Ok(())
}

/// The id and time (µs) in a record key: `r`, org (16), at (8, BE), id (16).
fn parse_key(key: &[u8]) -> Option<(&[u8], i64)> {
    if key.len() != 41 {
        return None;
    }
    let at = i64::from_be_bytes(key[17..25].try_into().ok()?);
    Some((&key[25..41], at))
}

fn open(dir: &Path) -> anyhow::Result<sled::Db> {
    // A store dropped a moment before may still be locked.
    ledger_core::log::sled::when_unlocked(Duration::from_secs(2), || {
        sled::Config::new().path(dir).flush_every_ms(None).open()
    })
    .with_context(|| format!("opening the legacy API log store {}", dir.display()))
}

/// Writes records the way the sled-era writer did: a time key, an id key
/// and the record key holding `value`, for each.
#[cfg(test)]
pub fn write(dir: &Path, records: &[(super::ApiLogRecord, Vec<u8>)]) {
    let raw: Vec<_> = records
        .iter()
        .map(|(r, value)| {
            (
                super::record_key(r.organization_id, r.at, r.id),
                value.clone(),
            )
        })
        .collect();
    write_raw(dir, &raw);
}

/// [`write`] from record keys and stored values as they are.
#[cfg(test)]
pub fn write_raw(dir: &Path, records: &[(Vec<u8>, Vec<u8>)]) {
    let db = sled::open(dir).expect("a sled store");
    let mut batch = sled::Batch::default();
    for (key, value) in records {
        let (id, at) = parse_key(key).expect("a record key");
        let mut time_key = vec![b't'];
        time_key.extend_from_slice(&at.to_be_bytes());
        time_key.extend_from_slice(key);
        let mut id_key = vec![b'i'];
        id_key.extend_from_slice(id);
        batch.insert(time_key, &[][..]);
        batch.insert(id_key, key.clone());
        batch.insert(key.clone(), value.clone());
    }
    db.apply_batch(batch).expect("written");
    db.flush().expect("flushed");
}

#[cfg(test)]
mod tests {
    use super::super::sqlite::tests::{key_of, page, rec, walk};
    use super::super::{sqlite, ApiLogRecord, ApiLogs};
    use super::*;
    use ledger_core::codec;
    use ledger_core::ids::OrganizationId;

    /// Each record with its value as the sled-era writer stored it: always
    /// compressed, or plain as before compression.
    fn as_stored(records: &[ApiLogRecord], plain: bool) -> Vec<(ApiLogRecord, Vec<u8>)> {
        records
            .iter()
            .map(|r| {
                let encoded = codec::encode(r).expect("encoded");
                let value = if plain {
                    encoded
                } else {
                    zstd::bulk::compress(&encoded, 1).expect("compressed")
                };
                (r.clone(), value)
            })
            .collect()
    }

    fn stored_rows(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let conn = Connection::open(dir.join(sqlite::FILE)).expect("opened");
        let mut stmt = conn
            .prepare("SELECT key, value FROM api_log_records ORDER BY key")
            .expect("prepared");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows");
        rows.map(|r| r.expect("a row")).collect()
    }

    #[tokio::test]
    async fn a_sled_store_is_moved_into_sqlite_and_its_cursors_still_work() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let sled_dir = dir.path().join(DIR);
        let (a, b) = (OrganizationId::new(), OrganizationId::new());
        let compressed = vec![
            rec(a, 4, 200, &page("four")),
            rec(a, 1, 201, "{}"),
            rec(a, 3, 404, "{\"error\":{}}"),
            rec(b, 2, 200, "{\"b\":1}"),
        ];
        let plain = vec![rec(a, 2, 500, "{\"old\":true}"), rec(b, 5, 200, "{}")];
        let mut legacy = as_stored(&compressed, false);
        legacy.extend(as_stored(&plain, true));
        write(&sled_dir, &legacy);

        let logs = ApiLogs::open(dir.path()).expect("opened");
        assert!(!sled_dir.exists(), "the sled store is removed");
        for (r, _) in &legacy {
            assert_eq!(logs.get(r.id).expect("read").as_ref(), Some(r));
        }
        let mut expected: Vec<_> = legacy.clone();
        expected.sort_by_key(|(r, _)| key_of(r));
        // Values are copied byte for byte, under their sled keys.
        let rows: Vec<_> = expected
            .iter()
            .map(|(r, v)| (key_of(r), v.clone()))
            .collect();
        let mut stored = stored_rows(dir.path());
        stored.sort();
        let mut want = rows.clone();
        want.sort();
        assert_eq!(stored, want);

        let of = |org| -> Vec<ApiLogRecord> {
            let mut v: Vec<_> = legacy
                .iter()
                .map(|(r, _)| r.clone())
                .filter(|r| r.organization_id == org)
                .collect();
            v.sort_by_key(key_of);
            v
        };
        let (a_records, b_records) = (of(a), of(b));
        assert_eq!(a_records.len(), 4);
        assert_eq!(walk(&logs, a, 1, &|_| true), a_records);
        assert_eq!(walk(&logs, b, 10, &|_| true), b_records);
        // A cursor the sled-era server handed out (its record key) goes on
        // from the same place.
        let cursor = key_of(&a_records[1]);
        let (rest, next) = logs.scan(a, Some(cursor), 10, &|_| true).expect("a page");
        assert_eq!((rest.as_slice(), next), (&a_records[2..], None));
        drop(logs);

        // Opened again: all kept, nothing to import.
        let logs = ApiLogs::open(dir.path()).expect("opened again");
        assert_eq!(walk(&logs, a, 3, &|_| true), a_records);
        drop(logs);

        // A copy cut short leaves the sled store in place: the next start
        // copies it again, without duplicates.
        write(&sled_dir, &legacy[..3]);
        let logs = ApiLogs::open(dir.path()).expect("opened after a cut-short copy");
        assert!(!sled_dir.exists());
        assert_eq!(walk(&logs, a, 2, &|_| true), a_records);
        assert_eq!(walk(&logs, b, 2, &|_| true), b_records);
        assert_eq!(stored_rows(dir.path()).len(), legacy.len());
    }

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/api-log-sled-v1.hex"
    );

    /// The records of the golden store, built the same way every time.
    fn golden_records() -> Vec<ApiLogRecord> {
        let org = OrganizationId::from_uuid(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0001,
        ));
        let record = |n: u128, body: String| {
            let mut r = rec(org, n as i64, if n == 2 { 404 } else { 200 }, &body);
            r.id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0001_0000 + n);
            r.api_key_id = ledger_core::ids::ApiKeyId::from_uuid(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0002_0000,
            ));
            r
        };
        vec![
            record(1, page("golden")),
            record(2, "{\"error\":{\"code\":\"NOT_FOUND\"}}".into()),
            record(3, "{\"old\":true}".into()),
        ]
    }

    /// The golden store's stored values: the sled-era writer compressed every
    /// record (the first two); records from before compression are plain
    /// (the third).
    fn golden_values(records: &[ApiLogRecord]) -> Vec<(Vec<u8>, Vec<u8>)> {
        as_stored(&records[..2], false)
            .into_iter()
            .chain(as_stored(&records[2..], true))
            .map(|(r, v)| (key_of(&r), v))
            .collect()
    }

    /// Writes the golden fixture (run once, by hand, with the sled-era code's
    /// encoding; the file is then frozen).
    #[test]
    #[ignore = "writes the golden fixture"]
    fn generate_the_golden_sled_api_log() {
        let lines: Vec<String> = golden_values(&golden_records())
            .iter()
            .map(|(k, v)| format!("{} {}", hex::encode(k), hex::encode(v)))
            .collect();
        std::fs::write(GOLDEN, lines.join("\n") + "\n").expect("written");
    }

    /// A sled API log as the last sled-era version stored it, frozen byte for
    /// byte: the first start of this version moves it and serves every
    /// record as it was recorded.
    #[tokio::test]
    async fn the_golden_sled_api_log_opens_with_every_record() {
        let text = std::fs::read_to_string(GOLDEN).expect("the golden fixture");
        let stored: Vec<(Vec<u8>, Vec<u8>)> = text
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').expect("key value");
                (hex::decode(k).expect("hex"), hex::decode(v).expect("hex"))
            })
            .collect();
        let dir = tempfile::tempdir().expect("a temp dir");
        write_raw(&dir.path().join(DIR), &stored);
        let logs = ApiLogs::open(dir.path()).expect("opened");
        let expected = golden_records();
        assert_eq!(stored.len(), expected.len());
        for r in &expected {
            assert_eq!(logs.get(r.id).expect("read").as_ref(), Some(r));
        }
        assert_eq!(
            walk(&logs, expected[0].organization_id, 2, &|_| true),
            expected
        );
        assert_eq!(
            stored_rows(dir.path()),
            stored,
            "values are moved as stored"
        );
    }
}
