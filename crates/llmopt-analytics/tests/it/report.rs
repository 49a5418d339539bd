//! The offline report over the committed trace slices, checked against direct counts of the
//! files; the reader's located errors; the JSON shape of a report.

use std::{
    collections::HashSet,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use llmopt_analytics::{
    Error, InputProblem,
    cache::ResponseCacheConfig,
    report::{self, DEFAULT_TRACE_MODEL, InputFormat, LoadedInput, MOONCAKE_BASE_MS, ReadOptions},
};
use llmopt_core::{Money, PriceCatalog};

use crate::support::data_dir;

fn trace(name: &str) -> PathBuf {
    data_dir().join("traces").join(name)
}

/// 2025-06-01 UTC: after every timestamp of the slices.
const NOW_MS: i64 = 1_748_736_000_000;

fn load(path: &Path, format: Option<InputFormat>) -> llmopt_analytics::Result<LoadedInput> {
    let catalog = PriceCatalog::builtin();
    let options =
        ReadOptions { trace_model: DEFAULT_TRACE_MODEL, catalog: &catalog, now_ms: NOW_MS };
    report::load(path, format, &options, |file| file)
}

/// The strategies' default response cache: one hour, 100,000 entries.
const RESPONSE_CACHE: ResponseCacheConfig =
    ResponseCacheConfig { ttl_ms: 3_600_000, capacity: 100_000 };

/// gpt-4o-mini list prices: $0.15 and $0.60 per million tokens = 150,000 and 600,000
/// picodollars per token.
fn gpt_4o_mini_cost(input_tokens: u64, output_tokens: u64) -> Money {
    Money::from_picos(i128::from(input_tokens) * 150_000 + i128::from(output_tokens) * 600_000)
}

/// Milliseconds since the epoch of an Azure slice timestamp, by hand: all rows are on
/// 2023-11-16 (1,700,092,800,000 ms at midnight UTC).
fn azure_ms(timestamp: &str) -> i64 {
    let time = timestamp.split(' ').nth(1).unwrap();
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let parts: Vec<i64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
    1_700_092_800_000 + (parts[0] * 3600 + parts[1] * 60 + parts[2]) * 1000 + millis
}

#[test]
fn azure_slice_report_matches_a_direct_count() {
    let path = trace("azure_conv_head1000.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<(i64, u64, u64)> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (azure_ms(fields[0]), fields[1].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect();
    let input: u64 = rows.iter().map(|r| r.1).sum();
    let output: u64 = rows.iter().map(|r| r.2).sum();

    let loaded = load(&path, None).unwrap();
    assert_eq!(loaded.info.format, InputFormat::Azure);
    assert_eq!(loaded.info.bytes, text.len() as u64);
    assert_eq!(loaded.info.priced_as.as_deref(), Some(DEFAULT_TRACE_MODEL));
    let report = report::analyze(&loaded.records, &PriceCatalog::builtin(), RESPONSE_CACHE);
    let summary = &report.sections.summary;
    assert_eq!(summary.requests, 1000);
    assert_eq!((summary.input_tokens, summary.output_tokens), (input, output));
    assert_eq!(summary.total_cost, gpt_4o_mini_cost(input, output));
    assert_eq!(summary.first_ts_ms, rows.iter().map(|r| r.0).min().unwrap());
    assert_eq!(summary.last_ts_ms, rows.iter().map(|r| r.0).max().unwrap());
    // Forecasts see the used windows, dense: each window's count from the file.
    let windows = &report.sections.windows;
    let forecast = report.sections.forecast.requests.as_ref().expect("enough windows");
    let (from, to) = (windows.first_used_start_ms, windows.used_end_ms());
    let inside = rows.iter().filter(|r| (from..to).contains(&r.0)).count();
    assert!((forecast.observed_mean - inside as f64 / windows.used as f64).abs() < 1e-9);
    // The trace has no fingerprints or prefix blocks: the cache sections say so.
    assert_eq!(report.sections.cache.prefix, None);
    assert!(report.notes.iter().any(|n| n.starts_with("prompt-prefix cache: no record")));
}

#[test]
fn mooncake_slice_prefix_reuse_matches_a_direct_count() {
    let path = trace("mooncake_conversation_head600.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut seen = HashSet::new();
    let (mut blocks, mut blocks_seen_before, mut first, mut last) = (0, 0, i64::MAX, i64::MIN);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = value["timestamp"].as_i64().unwrap();
        (first, last) = (first.min(ts), last.max(ts));
        for id in value["hash_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()) {
            blocks += 1;
            blocks_seen_before += u64::from(!seen.insert(id));
        }
    }
    let loaded = load(&path, None).unwrap();
    assert_eq!(loaded.info.format, InputFormat::Mooncake);
    let report = report::analyze(&loaded.records, &PriceCatalog::builtin(), RESPONSE_CACHE);
    assert_eq!(report.sections.summary.requests, 600);
    assert_eq!(report.sections.summary.first_ts_ms, MOONCAKE_BASE_MS + first);
    assert_eq!(report.sections.summary.last_ts_ms, MOONCAKE_BASE_MS + last);
    let prefix = report.sections.cache.prefix.as_ref().expect("prefix blocks");
    assert_eq!(
        (prefix.unlimited.blocks, prefix.unlimited.blocks_seen_before),
        (blocks, blocks_seen_before)
    );
    // Priced first as the model the trace was priced as.
    assert_eq!(prefix.savings[0].model, DEFAULT_TRACE_MODEL);
}

#[test]
fn the_caller_wraps_the_file_it_reads() {
    let path = trace("mooncake_conversation_head600.jsonl");
    let counted = Arc::new(AtomicU64::new(0));
    struct Counting<R>(R, Arc<AtomicU64>);
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let read = self.0.read(buf)?;
            self.1.fetch_add(read as u64, Ordering::Relaxed);
            Ok(read)
        }
    }
    let catalog = PriceCatalog::builtin();
    let options = ReadOptions { trace_model: "gpt-4o", catalog: &catalog, now_ms: NOW_MS };
    let loaded =
        report::load(&path, None, &options, |file| Counting(file, counted.clone())).unwrap();
    // The whole file went through the wrapper (detection reads its own prefix, unwrapped).
    assert_eq!(counted.load(Ordering::Relaxed), loaded.info.bytes);
    assert_eq!(loaded.info.priced_as.as_deref(), Some("gpt-4o"));
}

#[test]
fn load_errors_name_the_file_and_line() {
    let missing = std::env::temp_dir().join("llmopt-report-no-such-file.jsonl");
    let error = load(&missing, None).unwrap_err();
    assert!(
        matches!(&error, Error::Input { line: None, problem: InputProblem::CannotRead(_), .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!("{}: cannot read the file: ", missing.display()))
    );

    let empty = std::env::temp_dir().join(format!("llmopt-report-empty-{}", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    let message = load(&empty, None).unwrap_err().to_string();
    std::fs::remove_file(&empty).unwrap();
    assert_eq!(message, format!("{}: the file is empty", empty.display()));

    // A forced format that does not fit the file fails on its first line.
    let azure = trace("azure_conv_head1000.csv");
    let error = load(&azure, Some(InputFormat::Mooncake)).unwrap_err();
    assert!(matches!(error, Error::Input { line: Some(1), problem: InputProblem::Parse(_), .. }));
    assert!(error.to_string().starts_with(&format!("{}:1: ", azure.display())));

    let catalog = PriceCatalog::builtin();
    let unknown = ReadOptions { trace_model: "no-such-model", catalog: &catalog, now_ms: NOW_MS };
    assert!(matches!(report::load(&azure, None, &unknown, |f| f), Err(Error::Pricing(_))));
}

#[test]
fn the_json_report_has_the_sections_at_the_top_level() {
    let loaded = load(&trace("azure_conv_head1000.csv"), None).unwrap();
    let report = report::analyze(&loaded.records, &PriceCatalog::builtin(), RESPONSE_CACHE);
    let value = serde_json::to_value(&report).unwrap();
    let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "summary",
        "cost_by_model",
        "windows",
        "forecast",
        "anomalies",
        "clusters",
        "cache",
        "notes",
    ];
    // serde_json's map is ordered by key unless its `preserve_order` feature is on.
    if !keys.starts_with(&["summary"]) {
        expected.sort_unstable();
    }
    assert_eq!(keys, expected);
    // Money as integer picodollars.
    assert_eq!(
        value["summary"]["total_cost"].as_i64().map(i128::from),
        Some(report.sections.summary.total_cost.picos())
    );
}
