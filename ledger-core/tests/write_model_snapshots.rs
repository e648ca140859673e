//! Write-model snapshots: taken every N events off the writer, loaded at
//! start when the log vouches for them (then only the tail is replayed), and
//! refused, with the next older one used, when damaged or of another history.

use ledger_core::domain::{Command, Ledger, Outcome};
use ledger_core::engine::{self, Engine, EngineConfig, Reply, Submission};
use ledger_core::events::Actor;
use ledger_core::log::sled::SledLog;
use ledger_core::log::snapshots::{Refused, WriteModelSnapshots};
use ledger_core::log::EventLog;
use ledger_core::money::{Amount, Currency};
use ledger_core::time::SystemClock;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(every: u64) -> EngineConfig {
    EngineConfig {
        snapshot_every_events: every,
        ..EngineConfig::default()
    }
}

/// Organizations and deposits, one command at a time (each its own commit).
async fn fill(log: Arc<dyn EventLog>, snapshots: &WriteModelSnapshots, every: u64, n: usize) {
    let (handle, thread) = Engine::start_with_snapshots(
        log,
        Arc::new(SystemClock),
        config(every),
        Some(snapshots.clone()),
    )
    .unwrap();
    let usd = Currency::parse("USD").unwrap();
    for i in 0..n {
        let reply = handle
            .submit(Submission {
                actor: Actor::Admin,
                idempotency: None,
                command: Command::CreateOrganization {
                    name: format!("org {i}"),
                    api_key_secret_hash: [1; 32],
                },
                render: None,
            })
            .await
            .unwrap();
        let Reply::Executed {
            result: Ok(Outcome::Organization { id, .. }),
            ..
        } = reply
        else {
            panic!("{reply:?}")
        };
        handle
            .submit(Submission {
                actor: Actor::Admin,
                idempotency: None,
                command: Command::Deposit {
                    organization_id: id,
                    currency: usd,
                    amount: Amount::parse(usd, "10.00").unwrap(),
                    reference: format!("wire {i}"),
                },
                render: None,
            })
            .await
            .unwrap();
    }
    drop(handle);
    thread.join().unwrap();
}

/// Waits for the snapshot thread (it runs after the commit that triggers it).
fn wait_for_files(
    snapshots: &WriteModelSnapshots,
    at_least: usize,
) -> Vec<(u64, std::path::PathBuf)> {
    for _ in 0..500 {
        let files = snapshots.list().unwrap();
        if files.len() >= at_least {
            return files;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no snapshot written");
}

fn open(dir: &Path) -> Arc<SledLog> {
    Arc::new(SledLog::open(dir.join("log")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_loads_the_newest_snapshot_and_replays_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    fill(log.clone(), &snapshots, 20, 30).await;
    let files = wait_for_files(&snapshots, 2);
    assert_eq!(files.len(), 2, "older snapshots are dropped: {files:?}");
    // A clean stop wrote one at the head; the periodic one is older.
    let head = log.head().last_seq;
    assert_eq!(files[0].0, head);
    let periodic = files[1].0;
    assert!(periodic >= 20 && periodic < head, "{periodic}");
    let from_zero = engine::rebuild(log.as_ref()).unwrap();
    assert_eq!(snapshots.load(log.as_ref()).unwrap(), from_zero);
    // Without the last one (as after a SIGKILL): the periodic one plus the tail.
    std::fs::remove_file(&files[0].1).unwrap();
    assert_eq!(snapshots.load(log.as_ref()).unwrap().last_seq, periodic);
    let resumed = engine::rebuild_from(log.as_ref(), Some(&snapshots)).unwrap();
    assert_eq!(resumed, from_zero);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_replay_at_start_is_snapshotted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Filled without snapshots: a start must replay all of it.
    let none = WriteModelSnapshots::open(&dir.path().join("unused")).unwrap();
    fill(log.clone(), &none, u64::MAX / 2, 10).await;
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let (handle, thread) = Engine::start_with_snapshots(
        log.clone(),
        Arc::new(SystemClock),
        config(15),
        Some(snapshots.clone()),
    )
    .unwrap();
    let files = wait_for_files(&snapshots, 1);
    assert_eq!(files[0].0, log.head().last_seq);
    drop(handle);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_and_the_older_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    fill(log.clone(), &snapshots, 20, 30).await;
    let files = wait_for_files(&snapshots, 2);
    let (newest, older) = (&files[0], &files[1]);
    let mut bytes = std::fs::read(&newest.1).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&newest.1, &bytes).unwrap();
    assert_eq!(
        snapshots.read(&newest.1, log.as_ref()).unwrap_err(),
        Refused::Checksum
    );
    let loaded = snapshots.load(log.as_ref()).unwrap();
    assert_eq!(loaded.last_seq, older.0);
    let resumed = engine::rebuild_from(log.as_ref(), Some(&snapshots)).unwrap();
    assert_eq!(resumed, engine::rebuild(log.as_ref()).unwrap());
    // Cut right after its header (a crash of a copy, say): the header is
    // intact, the payload is not, so the checksum names the damage.
    let whole = std::fs::read(&older.1).unwrap();
    std::fs::write(&older.1, &whole[..80]).unwrap();
    assert_eq!(
        snapshots.read(&older.1, log.as_ref()).unwrap_err(),
        Refused::Checksum
    );
    // Truncated to nothing: refused too, and with neither usable, seq 0.
    std::fs::write(&older.1, b"EXWM").unwrap();
    assert!(matches!(
        snapshots.read(&older.1, log.as_ref()),
        Err(Refused::Unreadable(_))
    ));
    assert!(snapshots.load(log.as_ref()).is_none());
    assert_eq!(
        engine::rebuild_from(log.as_ref(), Some(&snapshots)).unwrap(),
        engine::rebuild(log.as_ref()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_history_or_past_the_head_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    fill(log.clone(), &snapshots, 20, 12).await;
    let files = wait_for_files(&snapshots, 1);
    // Another log, as long, with other events: the hash at the seq differs.
    let other_dir = tempfile::tempdir().unwrap();
    let other_snaps = WriteModelSnapshots::open(&other_dir.path().join("wm")).unwrap();
    let other = open(other_dir.path());
    fill(other.clone(), &other_snaps, 1_000_000, 12).await;
    assert_eq!(
        snapshots.read(&files[0].1, other.as_ref()).unwrap_err(),
        Refused::OtherHistory(files[0].0)
    );
    // A shorter log than the snapshot: refused as ahead of it.
    let short_dir = tempfile::tempdir().unwrap();
    let short = open(short_dir.path());
    let head = short.head().last_seq;
    assert_eq!(
        snapshots.read(&files[0].1, short.as_ref()).unwrap_err(),
        Refused::AheadOfLog {
            seq: files[0].0,
            head
        }
    );
    let empty: Ledger = engine::rebuild_from(short.as_ref(), Some(&snapshots)).unwrap();
    assert_eq!(empty.last_seq, 0);
}

/// A snapshot written by the previous layout of the write model (format 1)
/// is refused by name, never decoded as this one, and the log replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_older_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    fill(log.clone(), &snapshots, 20, 15).await;
    let files = wait_for_files(&snapshots, 1);
    for (_, path) in &files {
        let mut bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"EXWMSNP2");
        bytes[7] = b'1';
        std::fs::write(path, &bytes).unwrap();
    }
    assert_eq!(
        snapshots.read(&files[0].1, log.as_ref()).unwrap_err(),
        Refused::Unreadable("snapshot format 1 (this version reads format 2)".into())
    );
    assert!(snapshots.load(log.as_ref()).is_none());
    assert_eq!(
        engine::rebuild_from(log.as_ref(), Some(&snapshots)).unwrap(),
        engine::rebuild(log.as_ref()).unwrap()
    );
}

/// The file is its documented layout, though its payload is streamed to
/// disk: `MAGIC ‖ seq ‖ chain hash ‖ sha256(payload) ‖ payload`, the payload
/// the codec's encoding of the write model. (Compared by decoding: maps
/// keyed by hash encode in their own order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_is_header_checksum_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    fill(log.clone(), &snapshots, 1_000, 40).await;
    let files = wait_for_files(&snapshots, 1);
    let bytes = std::fs::read(&files[0].1).unwrap();
    let ledger = engine::rebuild(log.as_ref()).unwrap();
    let raw = log.read_raw(ledger.last_seq).next().unwrap().unwrap();
    assert_eq!(&bytes[..8], b"EXWMSNP2");
    assert_eq!(bytes[8..16], ledger.last_seq.to_be_bytes());
    assert_eq!(bytes[16..48], raw.hash);
    let payload = &bytes[80..];
    assert_eq!(
        bytes[48..80],
        <sha2::Sha256 as sha2::Digest>::digest(payload)[..]
    );
    let decoded: Ledger = ledger_core::codec::decode(payload).unwrap();
    assert_eq!(decoded, ledger);
    assert_eq!(
        payload.len(),
        ledger_core::codec::encode(&ledger).unwrap().len()
    );
}

/// Seq 0 has no event to vouch for it: the empty write model's snapshot is
/// read as what it is, not refused as another history.
#[test]
fn the_empty_write_models_snapshot_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    let path = snapshots.save(&Ledger::new(), [0; 32]).unwrap();
    assert_eq!(snapshots.read(&path, log.as_ref()).unwrap(), Ledger::new());
}

/// Events keep a balance's `reserved` equal to the sum of its holds without
/// re-adding them; a snapshot arrives whole, so it is checked whole, and one
/// whose holds disagree with `reserved` (or that commits more than the
/// total) is refused rather than trusted.
#[test]
fn a_snapshot_whose_holds_disagree_with_its_balance_is_refused() {
    use ledger_core::domain::balance::Balance;
    use ledger_core::events::Hold;
    use ledger_core::ids::{BalanceId, InvoiceId, OrganizationId};
    use ledger_core::time::Timestamp;

    let dir = tempfile::tempdir().unwrap();
    let snapshots = WriteModelSnapshots::open(&dir.path().join("wm")).unwrap();
    let log = open(dir.path());
    let usd = Currency::parse("USD").unwrap();
    let amount = |s: &str| Amount::parse(usd, s).unwrap();
    let with_balance = |total, reserved, held: &[&str]| {
        let mut b = Balance::open(
            BalanceId::new(),
            OrganizationId::new(),
            usd,
            Timestamp::from_micros(0),
        );
        b.total = amount(total);
        b.reserved = amount(reserved);
        for h in held {
            b.holds.insert(Hold::Invoice(InvoiceId::new()), amount(h));
        }
        let mut ledger = Ledger::new();
        ledger.balances.insert(b.id, b);
        ledger
    };
    let read = |ledger: &Ledger| {
        let path = snapshots.save(ledger, [0; 32]).unwrap();
        snapshots.read(&path, log.as_ref())
    };

    let whole = with_balance("100.00", "30.00", &["10.00", "20.00"]);
    assert_eq!(read(&whole).unwrap(), whole);
    let refusal = read(&with_balance("100.00", "30.00", &["10.00"])).unwrap_err();
    assert!(
        matches!(&refusal, Refused::Decode(m) if m.contains("reserved 30 but holds sum to 10")),
        "{refusal:?}"
    );
    let refusal = read(&with_balance("20.00", "30.00", &["10.00", "20.00"])).unwrap_err();
    assert!(
        matches!(&refusal, Refused::Decode(m) if m.contains("available negative")),
        "{refusal:?}"
    );
}
