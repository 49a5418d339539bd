//! Shared helpers for the criterion benches in `benches/benches/` (one file per area), driven
//! by `cargo xtask bench`.

use llmopt_core::{
    AggregateQuery, AggregateRow, Feedback, Money, RecordQuery, RecordStore, RequestId,
    RequestRecord, StoreError, TenantId, Usage,
};

/// A record store that keeps nothing: isolates what a bench measures (the collector's hot
/// path, the proxy alone) from the cost of storing records.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardStore;

impl RecordStore for DiscardStore {
    fn append(&self, _: &[RequestRecord]) -> Result<(), StoreError> {
        Ok(())
    }
    fn scan(&self, _: &RecordQuery) -> Result<Vec<RequestRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn get(&self, _: &RequestId) -> Result<Option<RequestRecord>, StoreError> {
        Ok(None)
    }
    fn add_feedback(&self, _: &RequestId, _: Feedback) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn aggregate(&self, _: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError> {
        Ok(Vec::new())
    }
    fn delete_before(&self, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn count(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A deterministic record shaped like the Azure LLM inference trace (conversation service):
/// context and generated token counts drawn from its ranges, three models, five tenants, a
/// feature tag, realistic latencies. Synthetic, so the benches run without the trace file.
/// `gateway_id`: a UUIDv7 id of the record's own millisecond (what the gateway makes), else an
/// id that does not carry its time (`req-000000000042`, as batch ingest may bring).
pub fn trace_like_record(index: u64, ts_ms: i64, gateway_id: bool) -> RequestRecord {
    // SplitMix64 of the index: cheap, deterministic, well spread.
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let model = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"][(z % 3) as usize];
    let id = if gateway_id {
        // What the gateway makes: a UUIDv7 of the record's own millisecond.
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts_ms.div_euclid(1_000) as u64,
            (ts_ms.rem_euclid(1_000) * 1_000_000) as u32,
        );
        uuid::Uuid::new_v7(ts).to_string()
    } else {
        format!("req-{index:012}")
    };
    let mut record = RequestRecord::new(id, ts_ms, "openai", model);
    record.tenant = Some(TenantId::new(
        ["acme", "globex", "initech", "umbrella", "hooli"][(z >> 8) as usize % 5],
    ));
    record.tags.insert(
        "feature".to_owned(),
        ["chat", "search", "summarise"][(z >> 16) as usize % 3].to_owned(),
    );
    // Azure conversation trace: context 1..~8k tokens, generated 1..~700.
    let input = 200 + (z >> 20) % 4_000;
    let output = 10 + (z >> 32) % 600;
    let cached = if (z >> 40).is_multiple_of(3) { input / 2 } else { 0 };
    record.usage = Some(Usage {
        input_tokens: input,
        cache_read_tokens: cached,
        output_tokens: output,
        ..Usage::default()
    });
    record.cost = Some(Money::from_micros((input + 4 * output) as i64));
    record.latency_us = 150_000 + output * 20_000 + (z >> 48) % 50_000;
    record.ttft_us = Some(80_000 + (z >> 44) % 120_000);
    record.stream = (z >> 50).is_multiple_of(2);
    record
}

/// A one-off reading (a memory size, a single run) in the figure-file format of
/// `xtask/src/bench.rs`: no spread.
pub fn reading(name: impl Into<String>, unit: &str, value: f64) -> serde_json::Value {
    serde_json::json!({ "name": name.into(), "median": value, "unit": unit, "spread": null })
}

/// Writes `<name>.json` where `cargo xtask bench` reads figure files
/// (`LLMOPT_BENCH_FIGURES_DIR`, else `target/bench-figures`). A failure to write is reported,
/// not fatal: the bench's table on stdout has the same numbers.
pub fn write_figures_file(name: &str, figures: &[serde_json::Value]) {
    let directory = std::env::var_os("LLMOPT_BENCH_FIGURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            // Cargo runs benches in `benches/`: the workspace's target is one level up.
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-figures")
        });
    let path = directory.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&directory).and_then(|()| {
        let text = serde_json::to_string_pretty(figures).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)
    });
    match written {
        Ok(()) => println!("figures: {}", path.display()),
        Err(error) => eprintln!("{name} bench: writing {}: {error}", path.display()),
    }
}

/// Resident and peak resident memory of a process in KiB (`VmRSS`, `VmHWM` of
/// `/proc/<pid>/status`), 0 where unknown.
/// CPU seconds used by process `pid` (all its threads) and, with `children`, by its children:
/// those that ended (reaped) and those still running (`/proc/PID/task/PID/children`). Linux
/// only; 0 elsewhere.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    // Clock ticks per second: 100 on every Linux build this runs on (`getconf CLK_TCK`).
    const TICKS: f64 = 100.0;
    let fields = |pid: u32| -> Vec<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The command name (field 2) may hold spaces: fields are counted after its `)`.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        rest.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect()
    };
    // After `)`: state is index 0, so utime (field 14) is index 11, stime 12, cutime 13, cstime 14.
    let own = |values: &[u64], with_reaped: bool| {
        let take = |index: usize| values.get(index).copied().unwrap_or(0);
        take(11) + take(12) + if with_reaped { take(13) + take(14) } else { 0 }
    };
    let mut ticks = own(&fields(pid), children);
    if children {
        let list =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|child| child.parse().ok()) {
            ticks += own(&fields(child), false);
        }
    }
    ticks as f64 / TICKS
}

pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
