//! The server's checkpointer: the projection's own commits no longer copy
//! the WAL into the database; a thread does, while the fold moves on.

use ledger_core::events::RecordedEvent;
use projections::sql;
use std::time::{Duration, Instant};

mod support;
use support::golden;

/// What the database file alone holds (as a copy without its WAL shows it).
fn projected_in_file(dir: &std::path::Path) -> u64 {
    let copy = dir.join("copy.sqlite");
    std::fs::copy(dir.join(sql::FILE), &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let (seq, _) = sql::position(&conn).unwrap_or((0, [0; 32]));
    seq
}

#[test]
fn the_checkpointer_moves_commits_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sql::FILE);
    let mut conn = sql::open_writer(&path).unwrap();
    let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
    sql::spawn_checkpointer(&conn, &path, applied).unwrap();

    let events: Vec<RecordedEvent> = golden().into_iter().map(|(e, _)| e).collect();
    let last = events.last().unwrap().seq;
    sql::fold::apply_batch(&mut conn, &events, [7; 32]).unwrap();
    // The commit itself left everything in the WAL.
    assert_eq!(projected_in_file(dir.path()), 0);

    applied_tx.send_replace(last);
    let deadline = Instant::now() + Duration::from_secs(20);
    while projected_in_file(dir.path()) != last {
        assert!(Instant::now() < deadline, "never checkpointed");
        std::thread::sleep(sql::CHECKPOINT_EVERY / 2);
    }
    drop(applied_tx);
}

/// Past its bound the WAL is restarted and cut back, not only copied: a
/// passive checkpoint never shortens the file, and under load it grew
/// without end.
#[test]
fn past_its_bound_the_wal_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sql::FILE);
    let mut conn = sql::open_writer(&path).unwrap();
    let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
    sql::spawn_checkpointer_truncating_above(&conn, &path, applied, 0).unwrap();
    // A reader between its reads does not hold the WAL.
    let reader = sql::open_reader(&path).unwrap();

    let events: Vec<RecordedEvent> = golden().into_iter().map(|(e, _)| e).collect();
    let last = events.last().unwrap().seq;
    sql::fold::apply_batch(&mut conn, &events, [7; 32]).unwrap();
    let wal = dir.path().join(format!("{}-wal", sql::FILE));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);

    let grown = std::fs::metadata(&wal).unwrap().len();

    applied_tx.send_replace(last);
    let deadline = Instant::now() + Duration::from_secs(20);
    while projected_in_file(dir.path()) != last {
        assert!(Instant::now() < deadline, "never checkpointed");
        std::thread::sleep(sql::CHECKPOINT_EVERY / 2);
    }
    assert_eq!(sql::position(&reader).unwrap().0, last);
    // The next commit starts the WAL over, cut back to the bound (0 here):
    // the file is then that one small commit, not everything before it.
    conn.execute_batch("CREATE TABLE scratch (x INTEGER); INSERT INTO scratch VALUES (1);")
        .unwrap();
    let after = std::fs::metadata(&wal).unwrap().len();
    assert!(
        after < grown / 4,
        "WAL {after} bytes after the restart, {grown} before"
    );
    drop(applied_tx);
}
