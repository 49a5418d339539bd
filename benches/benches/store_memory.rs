//! Memory of the sled record store as records accumulate (issue 3: "never grows memory without
//! bound"). Each variant runs in a fresh child process (resident memory is per process) that
//! appends trace-shaped records to a new `SledStore` with the default configuration (2 MiB sled
//! cache) in the batches the collector's writer would hand it, and reports its RSS every tenth
//! of the way.
//!
//! - `busy`: 1,000 calls/s, so the collector's 200 ms flush interval hands over batches of 200
//!   and blocks are full (64 records each). 2,000,000 records (33 minutes of such traffic).
//! - `quiet`: 50 calls/s, batches of 10: every batch makes its own small block, the layout
//!   where sled's per-node bookkeeping weighs most per record. 500,000 records (2.8 hours).
//!
//! Figures (`store_memory.json`, unjudged: no target names them): the RSS after all records,
//! and the growth per 100,000 records over the second half of the run, which tells a plateau
//! from a leak. `LLMOPT_BENCH_QUICK=1` quarters the counts; `LLMOPT_STORE_MEMORY=quiet:10000000`
//! runs only the variants named, with those counts (the target: 10 M quiet records in
//! at most 100 MB).
//!
//! Run: `cargo bench -p benches --bench store_memory`.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Instant,
};

use benches::{memory_kb, trace_like_record};
use llmopt_core::{Clock, RecordStore, SystemClock};
use llmopt_storage::{SledStore, StorageConfig};

/// The allocator of the `llm-auto-optimizer` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHILD_ENV: &str = "LLMOPT_STORE_MEMORY_CHILD";

/// One traffic shape.
struct Variant {
    name: &'static str,
    calls_per_second: u64,
    batch: usize,
    records: u64,
}

const VARIANTS: [Variant; 2] = [
    Variant { name: "busy", calls_per_second: 1_000, batch: 200, records: 2_000_000 },
    Variant { name: "quiet", calls_per_second: 50, batch: 10, records: 500_000 },
];

/// Checkpoints per run.
const STEPS: u64 = 10;

/// Appends between two flushes of the store.
const FLUSH_EVERY_APPENDS: u64 = 10;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("store_memory bench: run with `cargo bench -p benches --bench store_memory`");
        return;
    }
    let quick = std::env::var("LLMOPT_BENCH_QUICK").is_ok_and(|value| value == "1");
    // `name:count,…`: only these variants, with these counts.
    let chosen: Option<Vec<(String, u64)>> =
        std::env::var("LLMOPT_STORE_MEMORY").ok().map(|spec| {
            spec.split(',')
                .filter_map(|item| {
                    let (name, count) = item.split_once(':')?;
                    Some((name.trim().to_owned(), count.trim().parse().ok()?))
                })
                .collect()
        });
    let mut figures = Vec::new();
    for variant in &VARIANTS {
        let records = match &chosen {
            Some(chosen) => match chosen.iter().find(|(name, _)| name == variant.name) {
                Some((_, count)) => *count,
                None => continue,
            },
            None if quick => variant.records / 4,
            None => variant.records,
        };
        let points = run_variant(variant, records);
        let Some(&(last_records, last_kb)) = points.last() else {
            eprintln!("store_memory bench: variant {} reported nothing", variant.name);
            continue;
        };
        println!(
            "{} ({} calls/s, batches of {}): RSS by records stored",
            variant.name, variant.calls_per_second, variant.batch
        );
        for (count, kb) in &points {
            println!("  {count:>9} records  {:>6.1} MiB", *kb as f64 / 1024.0);
        }
        let (half_records, half_kb) = points[points.len() / 2 - 1];
        let growth = (last_kb as f64 - half_kb as f64)
            / 1024.0
            / ((last_records - half_records) as f64 / 100_000.0);
        println!("  growth over the second half: {growth:+.2} MiB per 100,000 records");
        figures.push(benches::reading(
            format!("store_memory/{}/rss_after_{last_records}_records", variant.name),
            "MiB",
            last_kb as f64 / 1024.0,
        ));
        figures.push(benches::reading(
            format!("store_memory/{}/growth_per_100k_records", variant.name),
            "MiB",
            growth,
        ));
    }
    benches::write_figures_file("store_memory", &figures);
}

/// Runs one variant in a child process; its (records, RSS KiB) checkpoints.
fn run_variant(variant: &Variant, records: u64) -> Vec<(u64, u64)> {
    let exe = std::env::current_exe().expect("bench executable");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{},{},{records}", variant.calls_per_second, variant.batch))
        .stdout(Stdio::piped())
        .spawn()
        .expect("child process");
    let stdout = child.stdout.take().expect("child stdout");
    let points: Vec<(u64, u64)> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut fields = line.strip_prefix("rss ")?.split_whitespace();
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect();
    let status = child.wait().expect("child exit");
    assert!(status.success(), "store_memory child failed: {status}");
    points
}

/// Child: appends `records` records at `calls_per_second` in batches of `batch`, flushing and
/// printing `rss <records> <KiB>` every tenth.
fn run_child(spec: &str) {
    let numbers: Vec<u64> =
        spec.split(',').map(|field| field.parse().expect("child spec numbers")).collect();
    let [calls_per_second, batch, records] = numbers[..] else {
        panic!("child spec is `calls_per_second,batch,records`, got {spec}")
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(&directory.path().join("data"), StorageConfig::default())
        .expect("fresh sled store");
    let records_store = store.records();
    // The records end now, as if the traffic had just happened.
    let span_ms = (records * 1_000 / calls_per_second) as i64;
    let start_ms = SystemClock.now_ms() - span_ms;
    let step = records / STEPS;
    let started = Instant::now();
    let mut next = 0_u64;
    let mut next_report = step;
    let mut appends = 0_u64;
    while next < records {
        let end = (next + batch).min(records);
        let chunk: Vec<_> = (next..end)
            .map(|index| {
                let ts = start_ms + (index * 1_000 / calls_per_second) as i64;
                trace_like_record(index, ts, true)
            })
            .collect();
        records_store.append(&chunk).expect("append");
        appends += 1;
        // The collector's writer flushes the store after every batch (each flush interval);
        // flushing after every tenth keeps a 10 M run within minutes. Never flushing is no
        // traffic's shape: sled then piles up log buffers (and at this compressed rate its
        // segment truncation can wait forever on its own I/O threads, a sled 0.34 deadlock).
        if appends.is_multiple_of(FLUSH_EVERY_APPENDS) {
            records_store.flush().expect("flush");
        }
        next = end;
        if next >= next_report {
            records_store.flush().expect("flush");
            let (rss, peak) = memory_kb(std::process::id());
            println!("rss {next} {rss} {peak} {:.0}", started.elapsed().as_secs_f64());
            next_report += step;
        }
    }
    eprintln!("store_memory child: {records} records in {:.1} s", started.elapsed().as_secs_f64());
}
