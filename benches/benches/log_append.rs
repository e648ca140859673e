//! Raw `SledLog::append` throughput: batches of realistic invoice events, each
//! batch made durable (sled flush + fdatasync) before `append` returns.
//!
//! The events are decided beforehand by `Ledger::execute` (untimed); only the
//! `append` call is timed (`iter_custom`). Every batch size gets its own fresh
//! log in a fresh temporary directory.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use expereon_benches::DirectWriter;
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use std::time::{Duration, Instant};

fn log_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for batch in [1usize, 64, 1024] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SledLog::open(dir.path()).expect("open log");
        // 64 lifecycles in flight, as under concurrent load.
        let mut events = DirectWriter::new(1, 64);
        let setup = events.take_pending();
        log.append(&setup, &[]).expect("append setup");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("events_per_append", batch), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let batch = events.take(batch);
                    let start = Instant::now();
                    log.append(&batch, &[]).expect("append");
                    timed += start.elapsed();
                }
                timed
            })
        });
        drop(log);
    }
    group.finish();
}

criterion_group!(benches, log_append);
criterion_main!(benches);
