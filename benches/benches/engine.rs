//! Engine throughput on invoice lifecycles with durable group commits.
//!
//! Setup (once per variant, untimed): a fresh sled log in a fresh temporary
//! directory, the engine on it, one organization pair with an active
//! connection and a funded buyer balance. Each iteration then runs
//! `lifecycles` invoice lifecycles (create+submit, approve, settle, archive:
//! 4 commands, 10 events each) from `concurrency` tokio tasks, every command
//! answered only after its group commit is durable (flush + fdatasync).
//!
//! Variants: group commit (the default `max_batch`) with 512 and 1024
//! submitters, the same with idempotency keys on every command, and
//! `max_batch = 1` (one fdatasync per command) to show what batching buys.
//! After each variant the mean group-commit size and the share of the wall
//! time the writer spent inside `append` are printed.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use expereon_benches::{drive, engine_setup, process_cpu, TimedLog, EVENTS_PER_LIFECYCLE};
use ledger_core::engine::{Engine, EngineConfig};
use ledger_core::log::sled::SledLog;
use ledger_core::log::EventLog;
use ledger_core::time::SystemClock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Variant {
    name: &'static str,
    max_batch: usize,
    concurrency: usize,
    lifecycles: u64,
    idempotent: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "group_commit/c512",
        max_batch: 4096,
        concurrency: 512,
        lifecycles: 2048,
        idempotent: false,
    },
    Variant {
        name: "group_commit/c1024",
        max_batch: 4096,
        concurrency: 1024,
        lifecycles: 4096,
        idempotent: false,
    },
    Variant {
        name: "group_commit_idempotent/c512",
        max_batch: 4096,
        concurrency: 512,
        lifecycles: 2048,
        idempotent: true,
    },
    Variant {
        name: "max_batch_1/c512",
        max_batch: 1,
        concurrency: 512,
        lifecycles: 64,
        idempotent: false,
    },
];

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("engine");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));

    for v in VARIANTS {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(TimedLog::new(SledLog::open(dir.path()).expect("open log")));
        let config = EngineConfig {
            max_batch: v.max_batch,
            ..EngineConfig::default()
        };
        let (handle, writer) = Engine::start(
            log.clone() as Arc<dyn EventLog>,
            Arc::new(SystemClock),
            config,
        )
        .expect("start engine");
        let pairs = rt.block_on(engine_setup(&handle, 1));
        // One lifecycle alone, to check what the throughput figure counts.
        let one = rt.block_on(drive(&handle, &pairs, 1, 1, v.idempotent));
        assert_eq!(one, EVENTS_PER_LIFECYCLE);

        let events_per_iter = v.lifecycles * EVENTS_PER_LIFECYCLE;
        group.throughput(Throughput::Elements(events_per_iter));
        let stats_before = log.stats();
        let cpu_before = process_cpu();
        let driven = Arc::new(AtomicU64::new(0));
        group.bench_function(v.name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let handle = handle.clone();
                let pairs = pairs.clone();
                let driven = driven.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let events =
                            drive(&handle, &pairs, v.lifecycles, v.concurrency, v.idempotent).await;
                        assert_eq!(events, events_per_iter);
                    }
                    let elapsed = start.elapsed();
                    driven.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
                    elapsed
                }
            })
        });
        // Warm-up and measurement together: the same workload throughout.
        let stats = log.stats().since(stats_before);
        let cpu = process_cpu().saturating_sub(cpu_before);
        let driven = driven.load(Ordering::Relaxed).max(1);
        eprintln!(
            "engine/{}: {} appends, {:.1} events/append, mean append {:?} (encode + hash + sled write), \
             writer inside append {:.0}% of the wall time; {} syncs (flush + fdatasync), mean {:?}, \
             syncer inside sync {:.0}% of the wall time; {:.0} events/s overall, \
             {:.1} µs of process CPU per event ({:.0}% of 2 cores)",
            v.name,
            stats.appends,
            stats.events_per_append(),
            stats.mean_append(),
            100.0 * stats.nanos as f64 / driven as f64,
            stats.syncs,
            stats.mean_sync(),
            100.0 * stats.sync_nanos as f64 / driven as f64,
            stats.events as f64 / (driven as f64 / 1e9),
            cpu.as_secs_f64() * 1e6 / stats.events.max(1) as f64,
            100.0 * cpu.as_secs_f64() / (2.0 * driven as f64 / 1e9),
        );
        drop(handle);
        writer.join().expect("writer thread");
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
