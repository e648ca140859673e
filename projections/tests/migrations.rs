//! Read-model databases written by an older build open under this one: the
//! pending migrations apply, and what was there stays.

use projections::sql::{open_writer, MIGRATIONS};
use rusqlite::Connection;

#[test]
fn a_version_2_database_migrates_to_the_latest_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read-models.sqlite");
    {
        // What a build with the first two migrations left behind.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at_utc TEXT NOT NULL)",
        )
        .unwrap();
        for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
            c.execute_batch(sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations VALUES (?1, '2026-01-01T00:00:00Z')",
                [i as i64 + 1],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO connections VALUES ('c1', 's', 'b', 's', 'REJECTED', 't0', 't1', 7, x'00')",
            [],
        )
        .unwrap();
    }
    let c = open_writer(&path).unwrap();
    let version: i64 = c
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let (status, reason): (String, Option<String>) = c
        .query_row(
            "SELECT status, rejection_reason FROM connections WHERE id = 'c1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), reason), ("REJECTED", None));
    drop(c);
    // Opening again applies nothing twice.
    open_writer(&path).unwrap();
}
