//! Storage scans (issue 3): a one-hour window read out of a store of 100,000 records and out of
//! one of 1,000,000, at the same arrival rate (10 records/s), so the window holds the same
//! 36,000 records in both. Time-ordered keys make the scan proportional to the window: the two
//! medians should match, not differ tenfold.
//!
//! Also a model-filtered scan of the same hour (through the `by_model` index), and a sketch
//! aggregate of the whole 1,000,000-record store by hour and model.
//!
//! Each store is filled once per process, outside the timing. With `LLMOPT_BENCH_QUICK=1`
//! (`cargo xtask bench --quick`) the group keeps criterion's command-line measurement time
//! instead of its own 10 s; the stores, the window and what is timed stay the same.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use llmopt_core::{
    AggregateQuery, GroupBy, Money, RecordFilter, RecordQuery, RecordStore, RequestRecord,
    TenantId, Usage,
};
use llmopt_storage::{SledStore, StorageConfig};

/// The product binary runs on mimalloc (see `llm-auto-optimizer/src/main.rs`); measure with
/// the allocator production uses. Records are allocated by request handlers and freed by the
/// collector's writer thread, a cross-thread pattern glibc malloc handles poorly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
/// 10 records per second.
const SPACING_MS: i64 = 100;

fn record(index: u64) -> RequestRecord {
    let model = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"][(index % 3) as usize];
    let mut record = RequestRecord::new(
        format!("req-{index:012}"),
        T0 + index as i64 * SPACING_MS,
        "openai",
        model,
    );
    record.tenant = Some(TenantId::new(["acme", "globex", "initech"][(index / 3 % 3) as usize]));
    record
        .tags
        .insert("feature".to_owned(), ["chat", "search"][(index / 9 % 2) as usize].to_owned());
    let output = 10 + (index * 7_919) % 600;
    record.usage = Some(Usage {
        input_tokens: 1_000 + index % 3_000,
        output_tokens: output,
        ..Usage::default()
    });
    record.cost = Some(Money::from_micros(1_000 + output as i64));
    record.latency_us = 150_000 + output * 20_000;
    record
}

fn filled_store(count: u64) -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(&dir.path().join("data"), StorageConfig::default()).expect("store");
    let records = store.records();
    let mut batch = Vec::with_capacity(4_096);
    for index in 0..count {
        batch.push(record(index));
        if batch.len() == 4_096 {
            records.append(&batch).expect("append");
            batch.clear();
        }
    }
    records.append(&batch).expect("append");
    store.flush().expect("flush");
    (dir, store)
}

/// `cargo xtask bench --quick` sets `LLMOPT_BENCH_QUICK=1`.
fn quick() -> bool {
    std::env::var("LLMOPT_BENCH_QUICK").is_ok_and(|value| value == "1")
}

fn scans(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage");
    group.sample_size(10);
    if !quick() {
        group.measurement_time(Duration::from_secs(10));
    }
    for (label, count) in [("100k", 100_000_u64), ("1m", 1_000_000)] {
        let (_dir, store) = filled_store(count);
        let records = store.records();
        // The hour starting one hour into the data: inside both stores.
        let query = RecordQuery::range(T0 + HOUR, T0 + 2 * HOUR);
        let in_window = records.scan(&query).expect("scan").len() as u64;
        assert_eq!(in_window, (HOUR / SPACING_MS) as u64, "36,000 records in the hour");
        group.throughput(Throughput::Elements(in_window));
        group.bench_function(format!("scan_1h_of_{label}"), |b| {
            b.iter(|| records.scan(&query).expect("scan").len())
        });
        let by_model = RecordQuery {
            filter: RecordFilter { model: Some("gpt-4o".into()), ..RecordFilter::default() },
            ..query.clone()
        };
        group.throughput(Throughput::Elements(in_window / 3));
        group.bench_function(format!("scan_1h_model_of_{label}"), |b| {
            b.iter(|| records.scan(&by_model).expect("scan").len())
        });
        if count == 1_000_000 {
            let aggregate = AggregateQuery {
                from_ms: T0,
                to_ms: T0 + count as i64 * SPACING_MS,
                window_ms: HOUR,
                group_by: GroupBy::Model,
                filter: RecordFilter::default(),
            };
            group.throughput(Throughput::Elements(count));
            group.bench_function("aggregate_hourly_by_model_of_1m", |b| {
                b.iter(|| records.aggregate(&aggregate).expect("aggregate").len())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scans);
criterion_main!(benches);
