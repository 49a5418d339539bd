//! `analyze`: reports over the committed trace slices checked against direct counts of the
//! files, record NDJSON round trips, located errors for bad inputs, and the JSON rendering.

use std::{
    collections::HashSet,
    io::Write as _,
    path::{Path, PathBuf},
};

use llm_auto_optimizer::analyze::{
    AnalyzeArgs, MOONCAKE_BASE_MS, TraceFormatArg, analyze, load, render_text, run,
};
use llmopt_analytics::report::InputFormat;
use llmopt_core::{Money, PriceCatalog, RequestRecord, Status, Usage};
use llmopt_optimizer::StrategySettings;

fn trace(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../llmopt-analytics/tests/data/traces").join(name)
}

fn args(file: impl Into<PathBuf>) -> AnalyzeArgs {
    AnalyzeArgs { file: file.into(), format: None, json: false, model: None }
}

fn run_to_string(args: &AnalyzeArgs) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run(args, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn error_of(args: &AnalyzeArgs) -> String {
    format!("{:#}", run_to_string(args).unwrap_err())
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    file
}

/// gpt-4o-mini list prices: $0.15 and $0.60 per million tokens = 150,000 and 600,000
/// picodollars per token.
fn gpt_4o_mini_cost(input_tokens: u64, output_tokens: u64) -> Money {
    Money::from_picos(i128::from(input_tokens) * 150_000 + i128::from(output_tokens) * 600_000)
}

#[test]
fn azure_slice_counts_match_the_file() {
    let path = trace("azure_conv_head1000.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    // Independent count: every line after the header is `timestamp,context,generated`.
    let (mut requests, mut input, mut output) = (0_u64, 0_u64, 0_u64);
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        requests += 1;
        input += fields[1].trim().parse::<u64>().unwrap();
        output += fields[2].trim().parse::<u64>().unwrap();
    }
    assert_eq!(requests, 1000);

    let catalog = PriceCatalog::builtin();
    let loaded = load(&args(&path), &catalog, &indicatif::ProgressBar::hidden()).unwrap();
    let mut report = analyze(&loaded.records, &catalog, &StrategySettings::default());
    report.input = Some(loaded.info);
    let report_json = serde_json::to_value(&report).unwrap();
    let summary = &report_json["summary"];
    assert_eq!(report_json["input"]["format"], "azure");
    assert_eq!(report_json["input"]["priced_as"], "gpt-4o-mini");
    assert_eq!(summary["requests"], requests);
    assert_eq!(summary["input_tokens"], input);
    assert_eq!(summary["output_tokens"], output);
    assert_eq!(summary["cost_unknown"], 0);
    // Money serialises as integer picodollars.
    assert_eq!(
        summary["total_cost"].as_i64().map(i128::from),
        Some(gpt_4o_mini_cost(input, output).picos())
    );
    // First line: 2023-11-16 18:15:46.6805900 UTC = 1,700,158,546,680 ms (date -u -d ... +%s%3N).
    assert_eq!(summary["first_ts_ms"], 1_700_158_546_680_i64);
    let by_model = report_json["cost_by_model"]["rows"].as_array().unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0]["key"], "gpt-4o-mini");
    assert_eq!(by_model[0]["requests"], requests);
    // Requests per second is the count over the span.
    let span = summary["span_seconds"].as_f64().unwrap();
    let rate = summary["requests_per_second"].as_f64().unwrap();
    assert!((rate - 1000.0 / span).abs() < 1e-9);
    // Request windows of the forecast cover every request but those of the two edge windows.
    let windows = &report.sections.windows;
    let used_end = windows.first_used_start_ms + windows.used as i64 * windows.window_ms;
    let inside = loaded_count_between(&text, windows.first_used_start_ms, used_end);
    let forecast = report.sections.forecast.requests.as_ref().expect("enough windows to forecast");
    assert!((forecast.observed_mean - inside as f64 / windows.used as f64).abs() < 1e-9);

    // The text rendering of the same report.
    let rendered = render_text(&report);
    assert!(rendered.contains("azure_conv_head1000.csv (azure"));
    assert!(rendered.contains("every request as gpt-4o-mini"));
    assert!(
        rendered.lines().any(|l| l.trim_start().starts_with("requests") && l.ends_with("1,000"))
    );
    assert!(rendered.contains("2023-11-16 18:15:46 UTC"));
    for heading in ["Traffic", "Cost by model", "Forecast (windows of", "Anomalies", "Proposals"] {
        assert!(rendered.contains(heading), "missing {heading} in\n{rendered}");
    }
}

/// Requests of the Azure CSV `text` with a timestamp in `[from_ms, to_ms)`, parsed here with
/// chrono-free arithmetic: all rows are on 2023-11-16 (1,700,092,800,000 ms at midnight UTC).
fn loaded_count_between(text: &str, from_ms: i64, to_ms: i64) -> usize {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .filter(|line| {
            let time = line.split(',').next().unwrap().split(' ').nth(1).unwrap();
            let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
            let parts: Vec<i64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
            let millis: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
            let ts =
                1_700_092_800_000 + (parts[0] * 3600 + parts[1] * 60 + parts[2]) * 1000 + millis;
            (from_ms..to_ms).contains(&ts)
        })
        .count()
}

#[test]
fn mooncake_slice_counts_and_prefix_reuse_match_the_file() {
    let path = trace("mooncake_conversation_head600.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let (mut requests, mut input, mut output) = (0_u64, 0_u64, 0_u64);
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut seen = HashSet::new();
    let (mut blocks, mut blocks_seen_before) = (0_u64, 0_u64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        requests += 1;
        input += value["input_length"].as_u64().unwrap();
        output += value["output_length"].as_u64().unwrap();
        let ts = value["timestamp"].as_i64().unwrap();
        first = first.min(ts);
        last = last.max(ts);
        let ids: Vec<u64> =
            value["hash_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        blocks += ids.len() as u64;
        blocks_seen_before += ids.iter().filter(|id| seen.contains(*id)).count() as u64;
        seen.extend(ids);
    }
    assert_eq!(requests, 600);

    let loaded =
        load(&args(&path), &PriceCatalog::builtin(), &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(loaded.info.format, InputFormat::Mooncake);
    let report = analyze(&loaded.records, &PriceCatalog::builtin(), &StrategySettings::default());
    assert_eq!(report.sections.summary.requests, requests);
    assert_eq!(report.sections.summary.input_tokens, input);
    assert_eq!(report.sections.summary.output_tokens, output);
    assert_eq!(report.sections.summary.total_cost, gpt_4o_mini_cost(input, output));
    assert_eq!(report.sections.summary.first_ts_ms, MOONCAKE_BASE_MS + first);
    assert_eq!(report.sections.summary.last_ts_ms, MOONCAKE_BASE_MS + last);
    let prefix =
        report.sections.cache.prefix.as_ref().expect("the Mooncake trace has prefix blocks");
    assert_eq!(prefix.unlimited.blocks, blocks);
    assert_eq!(prefix.unlimited.blocks_seen_before, blocks_seen_before);
    assert!(
        (prefix.unlimited.block_reuse_share - blocks_seen_before as f64 / blocks as f64).abs()
            < 1e-12
    );
    // The priced models start with the one the trace was priced as.
    assert_eq!(prefix.savings[0].model, "gpt-4o-mini");
    // Proposals come largest saving first.
    for pair in report.proposals.windows(2) {
        assert!(pair[0].saving.usd_per_day >= pair[1].saving.usd_per_day);
    }
    let text = render_text(&report);
    for heading in ["Traffic", "Cost by model", "Caching", "Proposals"] {
        assert!(text.contains(heading), "missing {heading} in\n{text}");
    }
}

#[test]
fn model_flag_prices_the_trace_as_another_model() {
    let path = trace("azure_conv_head1000.csv");
    let loaded = load(
        &AnalyzeArgs { model: Some("gpt-4o".into()), ..args(&path) },
        &PriceCatalog::builtin(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let (input, output) = loaded.records.iter().fold((0_u64, 0_u64), |(i, o), r| {
        let usage = r.usage.unwrap();
        (i + usage.input_tokens, o + usage.output_tokens)
    });
    // gpt-4o: $2.50 and $10.00 per million tokens.
    let expected =
        Money::from_picos(i128::from(input) * 2_500_000 + i128::from(output) * 10_000_000);
    let total: Money = loaded.records.iter().filter_map(|r| r.cost).sum();
    assert_eq!(total, expected);
    assert_eq!(loaded.info.priced_as.as_deref(), Some("gpt-4o"));
    assert!(
        error_of(&AnalyzeArgs { model: Some("no-such-model".into()), ..args(&path) })
            .contains("no-such-model")
    );
}

fn sample_records() -> Vec<RequestRecord> {
    // 2025-03-01 00:00:00 UTC = 1,740,787,200,000 ms.
    let start = 1_740_787_200_000_i64;
    (0..300_u64)
        .map(|i| {
            let mut record = RequestRecord::new(
                format!("req-{i}"),
                start + i as i64 * 7_000,
                "openai",
                if i % 3 == 0 { "gpt-4o" } else { "gpt-4o-mini" },
            );
            record.latency_us = 200_000 + (i * 7_919 % 1_000) * 1_000;
            record.ttft_us = Some(100_000);
            record.usage = Some(Usage {
                input_tokens: 100 + (i * 37 % 900),
                output_tokens: 20 + (i * 13 % 300),
                ..Usage::default()
            });
            if i % 50 == 49 {
                record.status = Status::Error(llmopt_core::ErrorKind::Timeout);
            }
            record.tags.insert("feature".into(), format!("f{}", i % 4));
            record
        })
        .collect()
}

#[test]
fn record_ndjson_round_trips_and_is_priced() {
    let records = sample_records();
    let mut text = String::new();
    for record in &records {
        text.push_str(&serde_json::to_string(record).unwrap());
        text.push('\n');
    }
    let file = write_temp(text.as_bytes());
    let catalog = PriceCatalog::builtin();
    let loaded = load(&args(file.path()), &catalog, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(loaded.info.format, InputFormat::Records);
    assert_eq!(loaded.info.priced_as, None);
    // The records had no cost; the loader priced every one from its usage.
    assert_eq!(loaded.info.repriced, records.len() as u64);
    let mut expected = records.clone();
    for record in &mut expected {
        let usage = record.usage.unwrap();
        let (input_price, output_price) = if record.served_model.0 == "gpt-4o" {
            (2_500_000, 10_000_000)
        } else {
            (150_000, 600_000)
        };
        record.cost = Some(Money::from_picos(
            i128::from(usage.input_tokens) * input_price
                + i128::from(usage.output_tokens) * output_price,
        ));
    }
    assert_eq!(loaded.records, expected);
    let report = analyze(&loaded.records, &catalog, &StrategySettings::default());
    assert_eq!(report.sections.summary.requests, 300);
    // i = 49, 99, …, 299: six errors.
    assert_eq!(report.sections.summary.errors, 6);
    assert_eq!(report.sections.summary.models, 2);
    assert_eq!(report.sections.cost_by_model.rows.iter().map(|r| r.requests).sum::<u64>(), 300);
    // 300 records 7 s apart span 2,093 s: 10 s windows would hold 1.4 requests each (fewer
    // than 5), so one minute: 35 windows (00:00 … 00:34:53), 33 without the edges.
    assert_eq!(report.sections.windows.window_ms, 60_000);
    assert_eq!(report.sections.windows.total, 35);
    assert_eq!(report.sections.windows.used, 33);
    // The JSON document of the report parses back (`run --json` itself is exercised by the
    // tiny-input test, on a cheaper input).
    let value: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(value["summary"]["requests"], 300);
    assert_eq!(value["summary"]["errors"], 6);
}

#[test]
fn bad_inputs_name_the_file_and_line() {
    let missing = std::env::temp_dir().join("llmopt-analyze-no-such-file.jsonl");
    assert!(error_of(&args(&missing)).contains("llmopt-analyze-no-such-file.jsonl"));

    let empty = write_temp(b"");
    assert!(error_of(&args(empty.path())).ends_with(": the file is empty"));

    let blank = write_temp(b"\n\n  \n");
    assert!(error_of(&args(blank.path())).contains("only blank lines"));

    let garbage = write_temp(&[0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0xff, 0xfe, b'\n']);
    let message = error_of(&args(garbage.path()));
    assert!(message.contains(&format!("{}:1: ", garbage.path().display())), "{message}");

    let invalid_utf8 = write_temp(&[0xff, 0xfe, 0xfd, b'\n']);
    assert!(error_of(&args(invalid_utf8.path())).contains(":1: not UTF-8"));

    let unknown = write_temp(b"hello,world\n1,2\n");
    assert!(error_of(&args(unknown.path())).contains(":1: unrecognised format"));

    // A record line with NaN (not JSON) on line 3, after a blank line 2.
    let good = serde_json::to_string(&sample_records()[0]).unwrap();
    let nan = good.replace("\"latency_us\":", "\"latency_us\":NaN,\"x\":");
    let file = write_temp(format!("{good}\n\n{nan}\n").as_bytes());
    let message = error_of(&args(file.path()));
    assert!(message.starts_with(&format!("{}:3: ", file.path().display())), "{message}");

    // A negative token count does not parse; a negative cost parses and fails validation.
    let mut negative_cost = sample_records()[1].clone();
    negative_cost.cost = Some(Money::from_picos(-5));
    let negative_cost = serde_json::to_string(&negative_cost).unwrap();
    let negative_tokens = good.replace("\"input_tokens\":100", "\"input_tokens\":-100");
    assert_ne!(negative_tokens, good);
    let file = write_temp(format!("{good}\n{negative_tokens}\n").as_bytes());
    assert!(error_of(&args(file.path())).contains(":2: not a request record"));
    let file = write_temp(format!("{good}\n{good}\n{negative_cost}\n").as_bytes());
    let message = error_of(&args(file.path()));
    assert!(message.contains(":3: invalid record: negative cost"), "{message}");

    // Trace errors keep the parser's line numbers.
    let azure = write_temp(
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,x,109\n",
    );
    let message = error_of(&args(azure.path()));
    assert!(message.contains(":3: ContextTokens `x`"), "{message}");
    let mooncake = write_temp(
        b"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": [1]}\n{\"timestamp\": 5, \"input_length\": -3}\n",
    );
    assert!(error_of(&args(mooncake.path())).contains(":2: "));

    // A forced format that does not fit the file fails on its first line.
    let message = error_of(&AnalyzeArgs {
        format: Some(TraceFormatArg::Mooncake),
        ..args(trace("azure_conv_head1000.csv"))
    });
    assert!(message.contains("azure_conv_head1000.csv:1: "), "{message}");
}

#[test]
fn tiny_inputs_give_a_report_with_notes_instead_of_sections() {
    // One record, and three records in the same millisecond: nothing to forecast or cluster.
    for count in [1, 3] {
        let mut text = String::new();
        for mut record in sample_records().into_iter().take(count) {
            record.ts_ms = 1_740_787_200_000;
            text.push_str(&serde_json::to_string(&record).unwrap());
            text.push('\n');
        }
        let file = write_temp(text.as_bytes());
        let json = run_to_string(&AnalyzeArgs { json: true, ..args(file.path()) }).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["summary"]["requests"], count);
        assert_eq!(value["summary"]["requests_per_second"], serde_json::Value::Null);
        assert_eq!(value["forecast"]["requests"], serde_json::Value::Null);
        assert_eq!(value["clusters"], serde_json::Value::Null);
        let notes = value["notes"].as_array().unwrap();
        assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("forecast:")), "{notes:?}");
        assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("clusters:")), "{notes:?}");
        let text = run_to_string(&args(file.path())).unwrap();
        assert!(text.contains("Notes"));
    }
}

#[test]
fn a_step_and_a_spike_in_traffic_are_found_in_their_windows() {
    // 2025-03-01 00:00 UTC; 40 minutes at 5 requests per minute, then 40 at 15 per minute, and
    // minute 15 carries 75 instead of 5.
    let start = 1_740_787_200_000_i64;
    let mut records = Vec::new();
    for minute in 0..80_i64 {
        let per_minute = match minute {
            15 => 75,
            0..40 => 5,
            _ => 15,
        };
        for i in 0..per_minute {
            let mut record = RequestRecord::new(
                format!("m{minute}-{i}"),
                start + minute * 60_000 + i * 60_000 / per_minute,
                "openai",
                "gpt-4o-mini",
            );
            record.usage = Some(Usage {
                input_tokens: 200 + (i as u64 * 31 % 500),
                output_tokens: 50,
                ..Usage::default()
            });
            records.push(record);
        }
    }
    let report = analyze(&records, &PriceCatalog::builtin(), &StrategySettings::default());
    assert_eq!(report.sections.windows.window_ms, 60_000);
    assert_eq!((report.sections.windows.total, report.sections.windows.used), (80, 78));
    let requests = report
        .sections
        .anomalies
        .iter()
        .find(|series| series.metric == llmopt_analytics::anomaly::SeriesMetric::Requests)
        .unwrap();
    // Used windows are minutes 1..=78: 38 at 5, one at 75, 39 at 15. Sorted, the middle pair
    // is 15 | 15: median 15. Deviations: 39 zeros, 38 × 10, one 60: MAD (0 + 10) / 2 = 5.
    // z(75) = 60 / (1.482602218505602 × 5) = 8.0939; z(5) = −1.35, so one outlier.
    assert_eq!(requests.outliers.len(), 1, "{:?}", requests.outliers);
    let spike = &requests.outliers[0];
    assert_eq!(spike.start_ms, start + 15 * 60_000);
    assert_eq!(spike.value, 75.0);
    assert_eq!(spike.detection.magnitude, 60.0);
    assert!((spike.detection.standardized - 8.093_9).abs() < 1e-4);
    let step = requests
        .change_points
        .iter()
        .find(|flagged| flagged.start_ms == start + 40 * 60_000)
        .expect("a change point where the rate triples");
    assert_eq!(step.value, 15.0);
    // 15 − mean before: (38 × 5 + 75) / 39 = 6.79 → +8.2 when the spike stays in the first
    // segment, 15 − 5 = +10 when PELT gives it a segment of its own.
    let magnitude = step.detection.magnitude;
    assert!((magnitude - 8.205_128).abs() < 1e-5 || (magnitude - 10.0).abs() < 1e-9, "{magnitude}");
    let forecast = report.sections.forecast.requests.as_ref().unwrap();
    assert!((forecast.observed_mean - (38.0 * 5.0 + 75.0 + 39.0 * 15.0) / 78.0).abs() < 1e-9);
}

#[test]
fn six_steady_days_project_the_month_with_the_forecast_model() {
    // 2025-03-01 00:00 UTC, one call every 10 minutes for 6 days (864 calls), each 1,000 input
    // and 100 output tokens of gpt-4o-mini: 1,000 × 150,000 + 100 × 600,000 = 210,000,000
    // picodollars ($0.00021), so $0.00126 per hour.
    let start = 1_740_787_200_000_i64;
    let records: Vec<RequestRecord> = (0..864_i64)
        .map(|i| {
            let mut record =
                RequestRecord::new(format!("r{i}"), start + i * 600_000, "openai", "gpt-4o-mini");
            record.usage =
                Some(Usage { input_tokens: 1_000, output_tokens: 100, ..Usage::default() });
            record.cost = Some(Money::from_picos(210_000_000));
            record
        })
        .collect();
    let report = analyze(&records, &PriceCatalog::builtin(), &StrategySettings::default());
    assert_eq!(report.sections.summary.total_cost, Money::from_picos(864 * 210_000_000));
    // Ten-minute windows would be 864 > 250; hourly windows hold 6 calls: 144, 142 used.
    assert_eq!(report.sections.windows.window_ms, 3_600_000);
    assert_eq!((report.sections.windows.total, report.sections.windows.used), (144, 142));
    let month = report.sections.forecast.month.as_ref().expect("a month projection");
    // Span 6 days − 10 minutes; 30 days − span = 576 h 10 min → 576 whole hours to project.
    assert!((month.extrapolation_factor - 576.0 / 142.0).abs() < 1e-12);
    let projection = month.projection.as_ref().expect("within the extrapolation limit");
    // A constant series is forecast as itself: spent + 576 × $0.00126.
    assert!((projection.projected_total_usd - (0.181_44 + 576.0 * 0.001_26)).abs() < 1e-9);
    assert!(projection.standard_deviation_usd < 1e-9);
    // Run rate: $0.18144 × 30 days ÷ (6 days − 10 minutes) = $0.18144 × 43,200 / 8,630.
    let run_rate = 0.181_44 * 43_200.0 / 8_630.0;
    assert!((month.run_rate_usd - run_rate).abs() < 1e-9);
    // The projection ($0.90720) is below the run rate ($0.90825) and has no spread: P = 0.
    assert_eq!(projection.probability_over_budget, 0.0);
}
