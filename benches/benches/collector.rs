//! Collector hot path and sustained ingest (issue 3).
//!
//! - `collector_record`: one `Collector::record` call, single producer thread, validation and
//!   live statistics included (record cloning is setup, outside the timing). The writer drains
//!   into a store that keeps nothing, so the figure is the hot path alone.
//! - `collector/sustained_ingest_sled`: 100,000 records through the collector into a fresh sled
//!   data directory, timed from the first `record` to the end of `flush()` (everything appended
//!   and sled flushed); reported as records/s. The records carry the gateway's own ids (UUIDv7
//!   made from the record's timestamp), as every proxied call does.
//! - `collector/sustained_ingest_sled_foreign_ids`: the same with ids that do not carry their
//!   timestamp (`req-000000000042`, as batch ingest of another system's calls may bring): each
//!   then costs one more sled insert, into the id index.
//!
//! The records are synthetic but shaped like the Azure LLM inference trace (conversation
//! service): context and generated token counts drawn from its ranges, three models, five
//! tenants, a feature tag, realistic latencies. No trace file is read so the bench runs anywhere.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use benches::trace_like_record;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use llmopt_collector::{Collector, CollectorConfig, OverflowPolicy};
use llmopt_core::{RequestRecord, SystemClock};
use llmopt_storage::{SledStore, StorageConfig};

/// The product binary runs on mimalloc (see `llm-auto-optimizer/src/main.rs`); measure with
/// the allocator production uses. Records are allocated by request handlers and freed by the
/// collector's writer thread, a cross-thread pattern glibc malloc handles poorly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn now_ms() -> i64 {
    use llmopt_core::Clock;
    SystemClock.now_ms()
}

fn collector_record(c: &mut Criterion) {
    let config = CollectorConfig {
        queue_capacity: 1 << 20,
        overflow: OverflowPolicy::Drop,
        ..CollectorConfig::default()
    };
    let collector =
        Collector::start(Arc::new(benches::DiscardStore), Arc::new(SystemClock), config);
    let ts = now_ms();
    let templates: Vec<RequestRecord> =
        (0..4_096).map(|i| trace_like_record(i, ts, true)).collect();
    let mut next = 0_usize;
    c.bench_function("collector_record", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % templates.len();
                templates[next].clone()
            },
            |record| black_box(collector.record(record)),
            BatchSize::NumIterations(64),
        )
    });
    let metrics = collector.metrics();
    eprintln!(
        "collector_record: accepted {} dropped {} (queue full) written {}",
        metrics.accepted, metrics.dropped, metrics.written
    );
    collector.shutdown().ok();
}

fn sustained_ingest(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let mut group = c.benchmark_group("collector");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    // `cargo xtask bench --quick` sets LLMOPT_BENCH_QUICK=1: criterion's command-line time
    // then applies (10 samples of the same 100,000-record ingest, fewer iterations each).
    if std::env::var("LLMOPT_BENCH_QUICK").is_err() {
        group.measurement_time(Duration::from_secs(20));
    }
    for (name, gateway_ids) in
        [("sustained_ingest_sled", true), ("sustained_ingest_sled_foreign_ids", false)]
    {
        group.bench_function(name, |b| ingest(b, RECORDS, gateway_ids));
    }
    group.finish();
}

fn ingest(b: &mut criterion::Bencher<'_>, count: u64, gateway_ids: bool) {
    b.iter_custom(|iterations| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = SledStore::open(&dir.path().join("data"), StorageConfig::default())
                .expect("fresh sled store");
            let collector = Collector::start(
                store.records(),
                Arc::new(SystemClock),
                CollectorConfig {
                    overflow: OverflowPolicy::Block { max_wait: Duration::from_secs(10) },
                    ..CollectorConfig::default()
                },
            );
            let ts = now_ms();
            let records: Vec<RequestRecord> = (0..count)
                .map(|i| trace_like_record(i, ts + (i / 100) as i64, gateway_ids))
                .collect();
            let started = Instant::now();
            for record in records {
                collector.record(record).expect("accepted (blocking policy)");
            }
            collector.flush().expect("flushed");
            total += started.elapsed();
            let metrics = collector.metrics();
            assert_eq!(metrics.written, count, "everything reached sled");
            collector.shutdown().ok();
        }
        total
    })
}

criterion_group!(benches, collector_record, sustained_ingest);
criterion_main!(benches);
