//! `llm-auto-optimizer analyze FILE`: the command-line side of the offline report. The report
//! itself — reading records or a public trace, traffic and exact cost, forecast and month
//! projection, anomalies, workload clusters, cache opportunities — is
//! [`llmopt_analytics::report`]; the optimizer's proposals ranked by saving are
//! [`llmopt_optimizer::offline::propose`]. This module adds the command's arguments, a progress
//! bar, and the two renderings.
//!
//! Design choices:
//! - **One analysis, two renderings.** [`analyze`] composes the analytics report and the
//!   proposals into one serialisable [`Report`]; [`run`] reads the file and writes either
//!   aligned text or one JSON document (`--json`) from the same report, so the two never
//!   disagree. The JSON keeps the analytics sections at the top level (flattened) between
//!   `input` and `proposals`.
//! - **Errors name the place.** Input problems come from the analytics reader as `FILE:LINE:
//!   reason`; an unknown `--model` is reported as such.
//! - **Progress on long inputs only.** An indicatif bar on stderr, shown when the file is large
//!   (more than 10 MB or about 50,000 lines) and stderr is a terminal; stdout stays clean.

use std::{
    borrow::Cow,
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader, IsTerminal, Read},
    path::{Path, PathBuf},
};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
pub use llmopt_analytics::report::{DEFAULT_TRACE_MODEL, MOONCAKE_BASE_MS};
use llmopt_analytics::{
    anomaly::SeriesMetric,
    forecast::Method,
    report::{
        self, CHANGE_POINT_CONFIDENCE, DETECTION_PREFIX_BYTES, InputFormat, InputInfo, LoadedInput,
        OUTLIER_THRESHOLD, ReadOptions, Sections,
    },
};
use llmopt_core::{Clock, PriceCatalog, RequestRecord, SystemClock};
use llmopt_optimizer::{Proposal, StrategySettings, offline};
use serde::Serialize;

/// Files above this size get a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN_BYTES: u64 = 10 * 1024 * 1024;

/// Files estimated to have more lines than this get a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN_LINES: u64 = 50_000;

/// The `analyze` command's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeArgs {
    pub file: PathBuf,
    /// Forces a format instead of detecting it from the first line.
    pub format: Option<TraceFormatArg>,
    /// One JSON document instead of text.
    pub json: bool,
    /// Prices traces without model names as this model (default [`DEFAULT_TRACE_MODEL`]);
    /// records name their own models, so it does not apply to them.
    pub model: Option<String>,
}

/// The input formats, as `--format` values ([`InputFormat`] without clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormatArg {
    /// Our `RequestRecord` NDJSON, one record per line.
    Records,
    /// Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
    Azure,
    /// Mooncake trace JSON lines (`timestamp`, `input_length`, `output_length`, `hash_ids`).
    Mooncake,
}

impl From<TraceFormatArg> for InputFormat {
    fn from(format: TraceFormatArg) -> InputFormat {
        match format {
            TraceFormatArg::Records => InputFormat::Records,
            TraceFormatArg::Azure => InputFormat::Azure,
            TraceFormatArg::Mooncake => InputFormat::Mooncake,
        }
    }
}

/// The whole report: the analytics sections with the optimizer's proposals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Set by [`run`]; `None` when [`analyze`] is called on records directly.
    pub input: Option<InputInfo>,
    #[serde(flatten)]
    pub sections: Sections,
    /// Every strategy's proposals, largest saving per day first.
    pub proposals: Vec<Proposal>,
    /// Sections left out or caveats, with the reason: the analytics report's, then the
    /// proposals'.
    pub notes: Vec<String>,
}

/// Reads `args.file` and writes the report to `out`.
pub fn run(args: &AnalyzeArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let catalog = PriceCatalog::builtin();
    let progress = progress_for(&args.file);
    let loaded = load(args, &catalog, &progress)?;
    if !progress.is_hidden() {
        progress.set_style(ProgressStyle::default_spinner());
        progress.set_message("analysing");
        progress.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    let mut report = analyze(&loaded.records, &catalog, &StrategySettings::default());
    progress.finish_and_clear();
    report.input = Some(loaded.info);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render_text(&report).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn progress_for(path: &Path) -> ProgressBar {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let estimated_lines = first_line_length(path).map_or(0, |len| bytes / len.max(1));
    let long = bytes > PROGRESS_MIN_BYTES || estimated_lines > PROGRESS_MIN_LINES;
    if !long || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("reading");
    bar
}

fn first_line_length(path: &Path) -> Option<u64> {
    let mut first = String::new();
    let file = File::open(path).ok()?;
    BufReader::new(file.take(DETECTION_PREFIX_BYTES)).read_line(&mut first).ok()?;
    Some(first.len() as u64)
}

/// Reads and validates the file's records (oldest first), advancing `progress` as it reads.
pub fn load(
    args: &AnalyzeArgs,
    catalog: &PriceCatalog,
    progress: &ProgressBar,
) -> anyhow::Result<LoadedInput> {
    let options = ReadOptions {
        trace_model: args.model.as_deref().unwrap_or(DEFAULT_TRACE_MODEL),
        catalog,
        now_ms: SystemClock.now_ms(),
    };
    report::load(&args.file, args.format.map(InputFormat::from), &options, |file| {
        progress.wrap_read(file)
    })
    .map_err(|error| match error {
        // The only pricing a load does is of the trace model.
        llmopt_analytics::Error::Pricing(error) => anyhow!("--model: {error}"),
        other => other.into(),
    })
}

/// The report over `records` (any order).
pub fn analyze(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    settings: &StrategySettings,
) -> Report {
    let records: Cow<'_, [RequestRecord]> = if records.is_sorted_by_key(|record| record.ts_ms) {
        Cow::Borrowed(records)
    } else {
        let mut sorted = records.to_vec();
        sorted.sort_by_key(|record| record.ts_ms);
        Cow::Owned(sorted)
    };
    let report::Report { sections, mut notes } =
        report::analyze(&records, catalog, offline::response_cache_config(settings));
    let (proposals, proposal_notes) = offline::propose(&records, catalog, settings);
    notes.extend(proposal_notes);
    Report { input: None, sections, proposals, notes }
}

// ---------------------------------------------------------------------------------------------
// Text rendering

fn format_utc(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map_or_else(|| ts_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn format_duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7_200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3_600.0)
    } else {
        format!("{:.1} days", seconds / 86_400.0)
    }
}

fn format_usd(usd: f64) -> String {
    if usd.abs() >= 100.0 { format!("${usd:.2}") } else { format!("${usd:.4}") }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str("  ");
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    if header.iter().any(|cell| !cell.is_empty()) {
        line(out, header.to_vec());
    }
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

fn method_name(method: Method) -> String {
    match method {
        Method::LinearTrend => "linear trend".into(),
        Method::Holt => "Holt (additive trend)".into(),
        Method::HoltWintersAdditive { period } => format!("Holt-Winters additive, period {period}"),
        Method::HoltWintersMultiplicative { period } => {
            format!("Holt-Winters multiplicative, period {period}")
        }
    }
}

/// Outliers and change points listed per series in the text report (all are in the JSON).
const SHOWN_DETECTIONS: usize = 5;

/// The text rendering of a report.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.sections.summary;
    let _ = writeln!(out, "LLM Auto-Optimizer — analysis");
    if let Some(input) = &report.input {
        let _ = writeln!(
            out,
            "  file     {} ({}, {} bytes)",
            input.file,
            input.format.as_str(),
            thousands(input.bytes)
        );
        if let Some(model) = &input.priced_as {
            let _ = writeln!(out, "  priced   every request as {model} (the trace names no model)");
        }
        if input.repriced > 0 {
            let _ = writeln!(
                out,
                "  priced   {} records without a cost from the catalog",
                input.repriced
            );
        }
    }

    let _ = writeln!(out, "\nTraffic");
    let mut rows = vec![
        vec!["requests".into(), thousands(s.requests)],
        vec!["first".into(), format_utc(s.first_ts_ms)],
        vec!["last".into(), format_utc(s.last_ts_ms)],
        vec!["span".into(), format_duration(s.span_seconds)],
        vec![
            "requests/s".into(),
            s.requests_per_second.map_or("-".into(), |rate| format!("{rate:.2}")),
        ],
        vec!["errors".into(), thousands(s.errors)],
        vec!["input tokens".into(), thousands(s.input_tokens)],
        vec!["output tokens".into(), thousands(s.output_tokens)],
        vec!["cache-read tokens".into(), thousands(s.cache_read_tokens)],
    ];
    if let Some([p50, p90, p99]) = s.input_tokens_p50_p90_p99 {
        rows.push(vec!["input p50/p90/p99".into(), format!("{p50:.0} / {p90:.0} / {p99:.0}")]);
    }
    if let Some([p50, p90, p99]) = s.output_tokens_p50_p90_p99 {
        rows.push(vec!["output p50/p90/p99".into(), format!("{p50:.0} / {p90:.0} / {p99:.0}")]);
    }
    if s.usage_unknown > 0 {
        rows.push(vec!["usage unknown".into(), thousands(s.usage_unknown)]);
    }
    table(&mut out, &["", ""], &rows);

    let _ = writeln!(out, "\nCost by model (exact)");
    let mut rows: Vec<Vec<String>> = report
        .sections
        .cost_by_model
        .rows
        .iter()
        .map(|row| {
            vec![
                row.key.clone(),
                thousands(row.requests),
                thousands(row.input_tokens),
                thousands(row.output_tokens),
                row.cost.to_string(),
                format!("{:.1} %", row.share * 100.0),
                thousands(row.cost_unknown),
            ]
        })
        .collect();
    rows.push(vec![
        "total".into(),
        thousands(report.sections.cost_by_model.requests),
        thousands(s.input_tokens),
        thousands(s.output_tokens),
        s.total_cost.to_string(),
        String::new(),
        thousands(s.cost_unknown),
    ]);
    table(
        &mut out,
        &["model", "requests", "input tok", "output tok", "cost", "share", "unpriced"],
        &rows,
    );
    if let Some(per_day) = s.cost_per_day {
        let _ = writeln!(out, "  cost per day at this rate: {per_day}");
    }

    let w = &report.sections.windows;
    let _ = writeln!(
        out,
        "\nForecast (windows of {}; {} used of {}, partial edge windows left out)",
        w.label, w.used, w.total
    );
    for (name, forecast, money) in [
        ("requests per window", &report.sections.forecast.requests, false),
        ("cost per window", &report.sections.forecast.cost_usd, true),
    ] {
        let Some(forecast) = forecast else { continue };
        let value = |v: f64| if money { format_usd(v) } else { format!("{v:.1}") };
        let _ = writeln!(
            out,
            "  {name}: {} (hold-out {} windows), observed mean {}",
            method_name(forecast.method),
            forecast.holdout,
            value(forecast.observed_mean)
        );
        let rows: Vec<Vec<String>> = forecast
            .next
            .iter()
            .take(6)
            .map(|p| vec![format_utc(p.start_ms), value(p.mean), value(p.lower), value(p.upper)])
            .collect();
        table(&mut out, &["  window", "forecast", "95 % low", "95 % high"], &rows);
    }
    if let Some(month) = &report.sections.forecast.month {
        let _ = writeln!(out, "  30-day month from the first record:");
        let mut rows = vec![
            vec!["  spent so far".into(), s.total_cost.to_string()],
            vec!["  run rate (spend/span × 30 days)".into(), format_usd(month.run_rate_usd)],
        ];
        if let Some(p) = &month.projection {
            rows.push(vec!["  model projection".into(), format_usd(p.projected_total_usd)]);
            rows.push(vec![
                "  95 % interval".into(),
                format!("{} … {}", format_usd(p.lower_usd), format_usd(p.upper_usd)),
            ]);
            rows.push(vec![
                "  P(month > run rate)".into(),
                format!("{:.1} %", p.probability_over_budget * 100.0),
            ]);
        }
        table(&mut out, &["", ""], &rows);
    }

    let _ = writeln!(out, "\nAnomalies and change points");
    for series in &report.sections.anomalies {
        let money = series.metric == SeriesMetric::CostUsd;
        let value = |v: f64| if money { format_usd(v) } else { format!("{v:.2}") };
        let signed =
            |v: f64| if v < 0.0 { format!("-{}", value(-v)) } else { format!("+{}", value(v)) };
        let _ = writeln!(
            out,
            "  {:?}: {} outlier windows (|robust z| > {OUTLIER_THRESHOLD}), {} change points \
             (p < {:.2}){}",
            series.metric,
            series.outliers.len(),
            series.change_points.len(),
            1.0 - CHANGE_POINT_CONFIDENCE,
            if series.outliers.len().max(series.change_points.len()) > SHOWN_DETECTIONS {
                format!("; the first {SHOWN_DETECTIONS} of each shown")
            } else {
                String::new()
            }
        );
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (kind, flagged) in series
            .outliers
            .iter()
            .take(SHOWN_DETECTIONS)
            .map(|f| ("outlier", f))
            .chain(series.change_points.iter().take(SHOWN_DETECTIONS).map(|f| ("shift", f)))
        {
            rows.push(vec![
                format!("  {kind}"),
                format_utc(flagged.start_ms),
                value(flagged.value),
                signed(flagged.detection.magnitude),
                format!("{:+.1} sd", flagged.detection.standardized),
                format!("{:.3}", flagged.detection.confidence),
            ]);
        }
        if !rows.is_empty() {
            table(&mut out, &["  ", "window", "value", "deviation", "size", "confidence"], &rows);
        }
    }

    if let Some(clusters) = &report.sections.clusters {
        let _ = writeln!(
            out,
            "\nWorkload clusters (k = {} by silhouette over {}, {} records)",
            clusters.k,
            clusters
                .silhouette_by_k
                .iter()
                .map(|(k, score)| format!("{k}: {score:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            thousands(clusters.records as u64)
        );
        let rows: Vec<Vec<String>> = clusters
            .clusters
            .iter()
            .map(|c| {
                vec![
                    format!("#{}", c.profile.cluster),
                    thousands(c.profile.size as u64),
                    format!("{:.1} %", c.profile.share * 100.0),
                    format!("{:.0}", c.typical_input_tokens),
                    format!("{:.0}", c.typical_output_tokens),
                    c.profile.cost.to_string(),
                    format!("{:.1} %", c.profile.cost_share * 100.0),
                ]
            })
            .collect();
        table(
            &mut out,
            &["cluster", "requests", "share", "typ. input", "typ. output", "cost", "cost share"],
            &rows,
        );
    }

    let cache = &report.sections.cache;
    let _ = writeln!(out, "\nCaching");
    let d = &cache.duplicates;
    let _ = writeln!(
        out,
        "  response cache (ttl {} s, {} entries): {} fingerprinted, {} hits ({:.1} %), saves {}",
        cache.response_cache.ttl_ms / 1000,
        thousands(cache.response_cache.capacity as u64),
        thousands(d.fingerprinted),
        thousands(d.hits),
        d.hit_share * 100.0,
        d.saved
    );
    if let Some(prefix) = &cache.prefix {
        let _ = writeln!(
            out,
            "  prompt prefixes ({}-token blocks): {:.1} % of blocks seen before (unlimited cache); \
             {:.1} % of input tokens cached under provider rules (≥ {} tokens, {} min idle)",
            prefix.unlimited.policy.block_tokens,
            prefix.unlimited.block_reuse_share * 100.0,
            prefix.provider_rules.cached_token_share * 100.0,
            prefix.provider_rules.policy.min_cached_tokens,
            prefix.provider_rules.policy.ttl_ms.unwrap_or(0) / 60_000
        );
        let rows: Vec<Vec<String>> = prefix
            .savings
            .iter()
            .map(|saving| {
                vec![
                    format!("  {}", saving.model),
                    saving.cost_without_cache.to_string(),
                    saving.cost_with_cache.to_string(),
                    saving.saving.to_string(),
                    format!("{:.1} %", saving.saving_share * 100.0),
                ]
            })
            .collect();
        table(&mut out, &["  priced as", "without cache", "with cache", "saving", "share"], &rows);
    }

    let _ = writeln!(out, "\nProposals (largest saving first)");
    if report.proposals.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        for (rank, p) in report.proposals.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:<16} {}/day ({}), risk {}",
                rank + 1,
                p.strategy.as_str(),
                format_usd(p.saving.usd_per_day),
                match p.saving.interval() {
                    Some((low, high)) =>
                        format!("95 %: {} … {}", format_usd(low), format_usd(high)),
                    None => "point estimate: the data gives no interval".to_owned(),
                },
                format!("{:?}", p.risk).to_lowercase()
            );
            let _ = writeln!(out, "     {}", p.summary);
        }
    }

    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nNotes");
        for note in &report.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(19_366), "19,366");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_and_dollars_read_at_a_glance() {
        assert_eq!(format_duration(59.94), "59.9 s");
        assert_eq!(format_duration(3_501.7), "58.4 min");
        assert_eq!(format_duration(86_400.0), "24.0 h");
        assert_eq!(format_duration(518_400.0), "6.0 days");
        assert_eq!(format_usd(0.012_34), "$0.0123");
        assert_eq!(format_usd(3_605.384), "$3605.38");
        assert_eq!(format_utc(1_700_158_546_680), "2023-11-16 18:15:46 UTC");
    }

    #[test]
    fn the_format_flag_maps_to_the_analytics_format() {
        assert_eq!(InputFormat::from(TraceFormatArg::Records), InputFormat::Records);
        assert_eq!(InputFormat::from(TraceFormatArg::Azure), InputFormat::Azure);
        assert_eq!(InputFormat::from(TraceFormatArg::Mooncake).as_str(), "mooncake");
    }
}
