//! Replay and verification of a pre-built log of a little over 200,000 events.
//!
//! Setup (untimed): eight organization pairs, then invoice lifecycles decided
//! with `Ledger::execute` (64 in flight at a time, as under concurrent load)
//! and appended to a fresh `SledLog` in batches of 4096 events.
//!
//! - `rebuild`: `engine::rebuild` = `read_all` (sled scan + postcard decode)
//!   + `Ledger::apply` of every event: what the engine does at start.
//! - `verify`: `read_raw` + `log::verify_link` (SHA-256 chain + decode + seq
//!   check) over the whole chain: what an audit does.
//! - the breakdown: `read_raw` alone, `read_all` alone (scan + decode), and
//!   from memory `decode`, `sha256` and `apply` alone.
//! - `open_rebuild`: `SledLog::open` (which re-verifies the last 4096 events)
//!   + `rebuild`, the whole start-up, with the OS page cache warm.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use expereon_benches::{thread_cpu, DirectWriter};
use ledger_core::codec;
use ledger_core::domain::Ledger;
use ledger_core::engine::rebuild;
use ledger_core::events::RecordedEvent;
use ledger_core::log::sled::SledLog;
use ledger_core::log::{chain_hash, verify_link, EventLog, RawEvent, GENESIS_HASH};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TARGET_EVENTS: usize = 200_000;
const APPEND_BATCH: usize = 4096;

fn build_log(log: &SledLog) -> u64 {
    let mut writer = DirectWriter::new(8, 64);
    let mut events = writer.take_pending();
    while writer.ledger.last_seq < TARGET_EVENTS as u64 {
        writer.round();
    }
    events.extend(writer.take_pending());
    for chunk in events.chunks(APPEND_BATCH) {
        log.append(chunk, &[]).expect("append");
    }
    log.head().last_seq
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SledLog::open(dir.path()).expect("open log");
    let started = Instant::now();
    let n = build_log(&log);
    eprintln!(
        "replay: built a log of {n} events in {:.1?}",
        started.elapsed()
    );
    assert!(n >= TARGET_EVENTS as u64);

    let raws: Vec<RawEvent> = log.read_raw(1).map(|r| r.expect("raw")).collect();
    let decoded: Vec<RecordedEvent> = log.read_all(1).map(|e| e.expect("event")).collect();
    let bytes: usize = raws.iter().map(|r| r.encoded.len()).sum();
    eprintln!(
        "replay: {} bytes of encoded events, {:.0} bytes/event on average",
        bytes,
        bytes as f64 / n as f64
    );

    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(n));

    bench(&mut group, "rebuild", n, || {
        let ledger = rebuild(&log).expect("rebuild");
        assert_eq!(ledger.last_seq, n);
        ledger
    });

    bench(&mut group, "verify", n, || {
        let mut previous = GENESIS_HASH;
        let mut count = 0u64;
        for raw in log.read_raw(1) {
            let raw = raw.expect("raw");
            black_box(verify_link(&previous, &raw).expect("intact"));
            previous = raw.hash;
            count += 1;
        }
        assert_eq!(count, n);
    });

    bench(&mut group, "read_raw", n, || {
        let mut count = 0u64;
        for raw in log.read_raw(1) {
            black_box(raw.expect("raw"));
            count += 1;
        }
        assert_eq!(count, n);
    });

    bench(&mut group, "read_all", n, || {
        let mut count = 0u64;
        for event in log.read_all(1) {
            black_box(event.expect("event"));
            count += 1;
        }
        assert_eq!(count, n);
    });

    bench(&mut group, "decode_from_memory", n, || {
        for raw in &raws {
            black_box(codec::decode_event(&raw.encoded).expect("decode"));
        }
    });

    bench(&mut group, "sha256_from_memory", n, || {
        let mut previous = GENESIS_HASH;
        for raw in &raws {
            previous = chain_hash(&previous, &raw.encoded);
        }
        assert_eq!(previous, raws.last().expect("events").hash);
    });

    bench(&mut group, "apply_from_memory", n, || {
        let mut ledger = Ledger::new();
        for event in &decoded {
            ledger.apply(event).expect("apply");
        }
        ledger
    });

    drop(log);
    bench(&mut group, "open_rebuild", n, || {
        let log = SledLog::open(dir.path()).expect("open log");
        let ledger = rebuild(&log).expect("rebuild");
        assert_eq!(ledger.last_seq, n);
        (ledger, log)
    });

    group.finish();
}

/// Times `work` (what it returns is dropped outside the timing) and prints,
/// besides criterion's wall-clock figures, the throughput per second of the
/// thread's own CPU time: on a shared machine the wall clock also counts the
/// time the thread waited for a core.
fn bench<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    n: u64,
    mut work: impl FnMut() -> T,
) {
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut runs = 0u64;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let cpu_start = thread_cpu();
                let start = Instant::now();
                let out = work();
                timed += start.elapsed();
                cpu += thread_cpu().saturating_sub(cpu_start);
                drop(out);
            }
            wall += timed;
            runs += iters;
            timed
        })
    });
    if runs == 0 {
        return; // filtered out
    }
    let events = (n * runs) as f64;
    eprintln!(
        "replay/{name}: {:.0} events/s per wall second, {:.0} events/s per on-CPU second ({runs} runs)",
        events / wall.as_secs_f64(),
        events / cpu.as_secs_f64().max(1e-9),
    );
}

criterion_group!(benches, replay);
criterion_main!(benches);
