//! The pieces a durable append is made of, measured one by one, to say where
//! the time of `log_append` and `engine` goes:
//!
//! - `fsync`: `fdatasync` after appending 4 KiB to a file, and on a file with
//!   nothing dirty (what `SledLog` pays for its `conf` file at every append);
//! - `codec`: postcard encode and decode of realistic events, and the SHA-256
//!   chain link (per event);
//! - `sled_layout`: a durable commit of 1024 realistic events straight on a
//!   `sled::Db` configured as `SledLog` configures it (apply_batch + flush +
//!   fdatasync of `db`), in three layouts: `SledLog`'s (one key per event plus
//!   one stream-index key per event), one key per event without the index, and
//!   one value per 256 events (kept under sled's ~128 KiB blob threshold).
//!   This is the storage layout alone: no version lookups, no head record, no
//!   blob scan, no `conf` sync; `log_append` measures `SledLog` itself.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use expereon_benches::DirectWriter;
use ledger_core::codec;
use ledger_core::events::RecordedEvent;
use ledger_core::log::{chain_hash, GENESIS_HASH};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

fn fsync(c: &mut Criterion) {
    let mut group = c.benchmark_group("fsync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("data"))
        .expect("open");
    let page = vec![0x5au8; 4096];
    group.bench_function("fdatasync_after_4k_append", |b| {
        b.iter(|| {
            file.write_all(&page).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    let clean_path = dir.path().join("clean");
    std::fs::write(&clean_path, b"written once").expect("write");
    let clean = File::open(&clean_path).expect("open");
    clean.sync_data().expect("fdatasync");
    group.bench_function("fdatasync_clean_file", |b| {
        b.iter(|| clean.sync_data().expect("fdatasync"))
    });
    group.finish();

    // The disk is shared and its flush latency drifts, so compare the two
    // commit shapes paired, alternating: a 4 KiB append synced alone (one
    // fdatasync, as if only `db` were synced) and the same followed by a
    // fdatasync of the clean file (as `SledLog` syncs `conf` at each append).
    const ROUNDS: usize = 1000;
    let mut alone = Vec::with_capacity(ROUNDS);
    let mut with_clean = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
        alone.push(start.elapsed());
        let start = Instant::now();
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
        clean.sync_data().expect("fdatasync");
        with_clean.push(start.elapsed());
    }
    eprintln!(
        "fsync/paired ({ROUNDS} rounds): 4 KiB append + fdatasync median {:?} p90 {:?}; \
         the same + fdatasync of a clean file median {:?} p90 {:?}",
        percentile(&mut alone, 50),
        percentile(&mut alone, 90),
        percentile(&mut with_clean, 50),
        percentile(&mut with_clean, 90),
    );
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    samples
        .get((samples.len() * p / 100).min(samples.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn sample_events(n: usize) -> Vec<RecordedEvent> {
    let mut writer = DirectWriter::new(1, 64);
    writer.take(n)
}

fn codec_costs(c: &mut Criterion) {
    let events = sample_events(10_000);
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec::encode_event(e).expect("encode"))
        .collect();
    let mut group = c.benchmark_group("codec");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("encode_event", |b| {
        b.iter(|| {
            for e in &events {
                black_box(codec::encode_event(e).expect("encode"));
            }
        })
    });
    group.bench_function("decode_event", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(codec::decode_event(bytes).expect("decode"));
            }
        })
    });
    group.bench_function("chain_hash", |b| {
        b.iter(|| {
            let mut h = GENESIS_HASH;
            for bytes in &encoded {
                h = chain_hash(&h, bytes);
            }
            black_box(h)
        })
    });
    group.finish();
}

#[derive(Clone, Copy)]
enum Layout {
    EventPlusStreamIndex,
    EventOnly,
    Chunked256,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::EventPlusStreamIndex => "event_plus_stream_index",
            Layout::EventOnly => "event_only",
            Layout::Chunked256 => "one_value_per_256_events",
        }
    }
}

fn key(prefix: u8, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + tail.len());
    k.push(prefix);
    k.extend_from_slice(tail);
    k
}

fn commit(
    db: &sled::Db,
    data_file: &File,
    layout: Layout,
    events: &[RecordedEvent],
    head: &mut [u8; 32],
) {
    let mut batch = sled::Batch::default();
    let mut chunk: Vec<u8> = Vec::new();
    let mut chunk_first = 0u64;
    for event in events {
        let mut value = codec::encode_event(event).expect("encode");
        let hash = chain_hash(head, &value);
        value.extend_from_slice(&hash);
        *head = hash;
        match layout {
            Layout::EventPlusStreamIndex => {
                batch.insert(key(b'E', &event.seq.to_be_bytes()), value);
                let mut index = event.stream().to_bytes().to_vec();
                index.extend_from_slice(&event.version.to_be_bytes());
                batch.insert(key(b'S', &index), &event.seq.to_be_bytes()[..]);
            }
            Layout::EventOnly => batch.insert(key(b'E', &event.seq.to_be_bytes()), value),
            Layout::Chunked256 => {
                if chunk.is_empty() {
                    chunk_first = event.seq;
                }
                chunk.extend_from_slice(&(value.len() as u32).to_le_bytes());
                chunk.extend_from_slice(&value);
                if event.seq - chunk_first == 255 {
                    batch.insert(
                        key(b'C', &chunk_first.to_be_bytes()),
                        std::mem::take(&mut chunk),
                    );
                }
            }
        }
    }
    if !chunk.is_empty() {
        batch.insert(key(b'C', &chunk_first.to_be_bytes()), chunk);
    }
    db.apply_batch(batch).expect("apply_batch");
    db.flush().expect("flush");
    data_file.sync_data().expect("fdatasync");
}

fn sled_layout(c: &mut Criterion) {
    const BATCH: usize = 1024;
    let mut group = c.benchmark_group("sled_layout");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for layout in [
        Layout::EventPlusStreamIndex,
        Layout::EventOnly,
        Layout::Chunked256,
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(256 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .expect("open sled");
        let data_file = File::open(dir.path().join("db")).expect("sled data file");
        let mut writer = DirectWriter::new(1, 64);
        let mut head = GENESIS_HASH;
        group.bench_function(BenchmarkId::new(layout.name(), BATCH), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let events = writer.take(BATCH);
                    let start = Instant::now();
                    commit(&db, &data_file, layout, &events, &mut head);
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fsync, codec_costs, sled_layout);
criterion_main!(benches);
