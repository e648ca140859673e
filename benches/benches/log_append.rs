//! Raw `SledLog::append` throughput: batches of realistic invoice events, each
//! batch made durable (sled flush + fdatasync) before `append` returns.
//!
//! The events are decided beforehand by `Ledger::execute` (untimed); only the
//! `append` call is timed (`iter_custom`). Every batch size gets its own fresh
//! log in a fresh temporary directory.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use expereon_benches::{thread_cpu, DirectWriter};
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use std::time::{Duration, Instant};

fn log_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for batch in [1usize, 64, 1024] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SledLog::open(dir.path()).expect("open log");
        // 64 lifecycles in flight, as under concurrent load.
        let mut events = DirectWriter::new(1, 64);
        let setup = events.take_pending();
        log.append(&setup, &[]).expect("append setup");
        group.throughput(Throughput::Elements(batch as u64));
        let mut cpu = Duration::ZERO;
        let mut wall = Duration::ZERO;
        let mut appends = 0u64;
        group.bench_function(BenchmarkId::new("events_per_append", batch), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let batch = events.take(batch);
                    let cpu_start = thread_cpu();
                    let start = Instant::now();
                    log.append(&batch, &[]).expect("append");
                    timed += start.elapsed();
                    cpu += thread_cpu().saturating_sub(cpu_start);
                }
                wall += timed;
                appends += iters;
                timed
            })
        });
        let appended = (appends * batch as u64).max(1) as f64;
        eprintln!(
            "log_append/{batch}: {appends} appends, mean {:.0} µs wall per append; the appending thread on a CPU \
             {:.2} µs per event (the rest of the wall time is waiting: fdatasync, or for a core)",
            wall.as_secs_f64() * 1e6 / appends.max(1) as f64,
            cpu.as_secs_f64() * 1e6 / appended,
        );
        drop(log);
    }
    group.finish();
}

criterion_group!(benches, log_append);
criterion_main!(benches);
