//! Records into PostgreSQL from one gateway (issue 19's target: ≥ 50,000 records/s sustained,
//! nothing dropped).
//!
//! A real PostgreSQL server on loopback, started the way the tests start it
//! (`llmopt_storage::test_engines`: a fresh data directory, a free port, fsync and
//! synchronous commit off, so the figure is the client's and the server's work, not the disk's
//! flush latency), and one collector writing into a `PgStore` with the gateway's default
//! collector configuration, except that a full queue waits (up to 10 s) instead of dropping: the
//! producer offers records as fast as it can, so the rate measured is the writer's sustained
//! rate. Records are trace-shaped (three models, five tenants, a tag) with the gateway's own
//! UUIDv7 ids, 50 per millisecond.
//!
//! Figures (`store_postgres.json`): records/s from the first `record` to the end of `flush()`
//! (everything committed), per run; the run fails if a record was dropped or failed to write.
//! Also printed: the CPU time per record of this process and of the server (its sessions
//! included), which does not depend on what else the machine runs, unlike the rate.
//! `LLMOPT_BENCH_QUICK=1` writes 100,000 records instead of 1,000,000.
//!
//! Run: `cargo bench -p benches --bench store_postgres`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use benches::trace_like_record;
use llmopt_collector::{Collector, CollectorConfig, OverflowPolicy};
use llmopt_core::{Clock, RecordStore, RequestRecord, SystemClock};
use llmopt_storage::{PgStore, test_engines::TestPostgres};

/// The allocator of the `llm-auto-optimizer` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("store_postgres bench: run with `cargo bench -p benches --bench store_postgres`");
        return;
    }
    let quick = std::env::var("LLMOPT_BENCH_QUICK").is_ok_and(|value| value == "1");
    let count: u64 = if quick { 100_000 } else { 1_000_000 };
    let Some(server) = TestPostgres::start() else { return };
    let mut rates = Vec::new();
    let mut cpu_per_record = Vec::new();
    for run in 0..RUNS {
        let url = server.database_url();
        let store = PgStore::open(&url).expect("PostgreSQL store");
        let cpu = || {
            let server = server.pid().map_or(0.0, |pid| benches::cpu_seconds(pid, true));
            (benches::cpu_seconds(std::process::id(), false), server)
        };
        let (client_before, server_before) = cpu();
        let (rate, elapsed) = ingest(&store, count);
        let (client_after, server_after) = cpu();
        let per_record_us = |seconds: f64| seconds * 1e6 / count as f64;
        let (client_us, server_us) = (
            per_record_us(client_after - client_before),
            per_record_us(server_after - server_before),
        );
        println!(
            "run {run}: {count} records in {:.2} s: {rate:.0} records/s; CPU per record: \
             {client_us:.1} µs in this process (collector, encoding, client), {server_us:.1} µs \
             in PostgreSQL",
            elapsed.as_secs_f64()
        );
        cpu_per_record.push((client_us, server_us));
        assert_eq!(store.records().count().expect("count"), count, "every record stored");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!("store_postgres/collector_ingest: median {median:.0} records/s over {RUNS} runs");
    // What the CPU time allows when each side has a core of its own (the rate above is what
    // this machine gave the run, shared with whatever else ran).
    cpu_per_record.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (client_us, server_us) = cpu_per_record[cpu_per_record.len() / 2];
    println!(
        "store_postgres/cpu_per_record: {client_us:.1} µs client + {server_us:.1} µs server \
         (median run): {:.0} records/s on one core each, one batch at a time",
        1e6 / (client_us + server_us)
    );
    benches::write_figures_file(
        "store_postgres",
        &[serde_json::json!({
            "name": "store_postgres/collector_ingest",
            "median": median,
            "unit": "records/s",
            "spread": rates.last().zip(rates.first()).map(|(high, low)| high - low),
        })],
    );
}

/// Records through a collector into `store`: (records/s, elapsed).
fn ingest(store: &PgStore, count: u64) -> (f64, Duration) {
    let collector = Collector::start(
        store.records(),
        Arc::new(SystemClock),
        CollectorConfig {
            overflow: OverflowPolicy::Block { max_wait: Duration::from_secs(10) },
            ..CollectorConfig::default()
        },
    );
    let ts = SystemClock.now_ms() - (count / 50) as i64;
    let records: Vec<RequestRecord> =
        (0..count).map(|i| trace_like_record(i, ts + (i / 50) as i64, true)).collect();
    let started = Instant::now();
    for record in records {
        collector.record(record).expect("accepted (blocking policy)");
    }
    collector.flush().expect("flushed");
    let elapsed = started.elapsed();
    let metrics = collector.metrics();
    assert_eq!(metrics.dropped, 0, "nothing dropped");
    assert_eq!(metrics.write_failed_records, 0, "nothing failed");
    assert_eq!(metrics.written, count, "everything written");
    collector.shutdown().ok();
    (count as f64 / elapsed.as_secs_f64(), elapsed)
}
