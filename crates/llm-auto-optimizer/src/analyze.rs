//! `llm-auto-optimizer analyze FILE`: an offline report over a file of calls — our own
//! `RequestRecord` NDJSON, or a public trace (Azure LLM inference CSV, Mooncake JSONL) — with
//! traffic and exact cost, a forecast and month projection, anomalies and change points, workload
//! clusters, cache opportunities and the optimizer's proposals ranked by saving.
//!
//! Design choices:
//! - **One analysis, two renderings.** [`analyze`] is a pure function of records, prices and
//!   strategy settings that returns a serialisable [`Report`]; [`run`] reads the file and writes
//!   either aligned text or one JSON document (`--json`) from the same report, so the two never
//!   disagree.
//! - **Errors name the place.** Every input problem (unreadable or empty file, binary bytes, a
//!   malformed line, a record that fails `RequestRecord::validate`) becomes `FILE:LINE: reason`;
//!   nothing in the reading path panics. The format is detected from the first non-empty line
//!   (`--format` overrides it): `TIMESTAMP,…` is Azure, a JSON object with `input_length` is
//!   Mooncake, one with `served_model` is a record.
//! - **Traces are priced as one model.** The traces carry no model names, so every request is
//!   priced exactly (integer picodollars) as `--model` (default [`DEFAULT_TRACE_MODEL`]).
//!   Mooncake timestamps are relative; they are placed at [`MOONCAKE_BASE_MS`] (2024-01-01 UTC)
//!   so records validate and windows have calendar starts.
//! - **Windows sized to the data.** Series use the shortest "round" window (1 s … 1 week) that
//!   gives at most [`MAX_WINDOWS`] windows with at least [`MIN_REQUESTS_PER_WINDOW`] requests
//!   each on average, and the two edge windows are left out of forecasts and anomaly detection
//!   because they are only partly covered: a half-filled last minute would otherwise read as a
//!   collapse in traffic.
//! - **Claims no stronger than the data.** The month projection always gives the run rate
//!   (spend ÷ span × 30 days) and adds the forecast model's projection only when it extrapolates
//!   at most [`MAX_EXTRAPOLATION`] times the windows it was fitted on (an hour of trace says
//!   nothing about a trend over a month). Change points are kept when Welch's test between the
//!   adjacent segments gives p < 0.05; clusters need [`MIN_CLUSTER_RECORDS`]; the timeout and
//!   hedging strategy is skipped for inputs without latencies (traces), where an all-zero
//!   latency column would read as real.
//! - **Sections degrade, the report does not.** A section that cannot be computed for this input
//!   (too few windows to forecast, no spread to cluster, no prefix blocks) is left out with a
//!   note saying why, instead of failing the whole report.
//! - **Progress on long inputs only.** An indicatif bar on stderr, shown when the file is large
//!   (more than 10 MB or about 50,000 lines) and stderr is a terminal; stdout stays clean.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader, IsTerminal, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmopt_analytics::{
    anomaly::{Detection, SeriesMetric, change_points, robust_z, window_series},
    cache::{
        DuplicateAnalysis, PrefixCachePolicy, PrefixCacheSaving, PrefixReuse, ResponseCacheConfig,
        duplicate_analysis, prefix_cache_savings, prefix_reuse,
    },
    cluster::{ClusterProfile, FeatureSpec, cluster_records},
    cost::{CostBreakdown, CostDimension, cost_breakdown},
    forecast::{BudgetProjection, CandidateScore, Method, fit_auto, project_budget},
    stats::quantiles,
    traces::{
        MOONCAKE_BLOCK_TOKENS, TraceFormat, detect_format, parse_azure_csv, parse_mooncake_jsonl,
        to_records,
    },
};
use llmopt_core::{Money, PriceCatalog, RequestRecord};
use llmopt_optimizer::{AnalysisInput, Proposal, StrategyKind, StrategySettings, strategies};
use serde::Serialize;

/// The model trace requests are priced as when `--model` is not given.
pub const DEFAULT_TRACE_MODEL: &str = "gpt-4o-mini";

/// Where relative Mooncake timestamps are placed: 2024-01-01T00:00:00Z in ms since the epoch
/// (19,723 days × 86,400 s).
pub const MOONCAKE_BASE_MS: i64 = 1_704_067_200_000;

/// Most windows a series may have; the window length is the shortest round length that fits.
pub const MAX_WINDOWS: i64 = 250;

/// Fewest requests per window on average: sparser windows make series of mostly zeros and
/// ones, where medians, MADs and forecasts say nothing.
pub const MIN_REQUESTS_PER_WINDOW: f64 = 5.0;

/// Files above this size get a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN_BYTES: u64 = 10 * 1024 * 1024;

/// Files estimated to have more lines than this get a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN_LINES: u64 = 50_000;

/// Robust z-score above which a window is an outlier (Iglewicz and Hoaglin's 3.5).
pub const OUTLIER_THRESHOLD: f64 = 3.5;

/// Change points whose Welch test between the adjacent segments gives 1 − p below this are left
/// out: PELT places a boundary wherever the penalty allows, the test says whether it is real.
pub const CHANGE_POINT_CONFIDENCE: f64 = 0.95;

/// Fewest records with usage worth clustering: below it a "workload" is a handful of calls.
pub const MIN_CLUSTER_RECORDS: usize = 50;

/// Seed of the workload clustering, so two runs over one file give the same clusters.
pub const CLUSTER_SEED: u64 = 20_231_116;

/// Longest month projection by the forecast model, in multiples of the windows it was fitted
/// on; beyond it a fitted trend says more about the model than about the traffic.
pub const MAX_EXTRAPOLATION: f64 = 5.0;

/// Windows forecast ahead in the report.
pub const FORECAST_HORIZON: usize = 12;

const DAY_MS: i64 = 86_400_000;
const MONTH_MS: i64 = 30 * DAY_MS;
/// How many bytes of the file the format detection looks at for the first line.
const DETECTION_PREFIX_BYTES: u64 = 1024 * 1024;

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

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormatArg {
    /// Our `RequestRecord` NDJSON, one record per line.
    Records,
    /// Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
    Azure,
    /// Mooncake trace JSON lines (`timestamp`, `input_length`, `output_length`, `hash_ids`).
    Mooncake,
}

impl TraceFormatArg {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormatArg::Records => "records",
            TraceFormatArg::Azure => "azure",
            TraceFormatArg::Mooncake => "mooncake",
        }
    }
}

/// What was read, for the report header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputInfo {
    pub file: String,
    pub format: TraceFormatArg,
    pub bytes: u64,
    /// The model trace requests were priced as (`None` for records, which name their models).
    pub priced_as: Option<String>,
    /// Records whose missing cost was computed from their usage and the catalog.
    pub repriced: u64,
}

/// Records read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedInput {
    pub info: InputInfo,
    /// Oldest first (stable for equal timestamps).
    pub records: Vec<RequestRecord>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Set by [`run`]; `None` when [`analyze`] is called on records directly.
    pub input: Option<InputInfo>,
    pub summary: TrafficSummary,
    pub cost_by_model: CostBreakdown,
    pub windows: WindowInfo,
    pub forecast: ForecastSection,
    pub anomalies: Vec<SeriesAnomalies>,
    pub clusters: Option<ClusterSection>,
    pub cache: CacheSection,
    /// Every strategy's proposals, largest saving per day first.
    pub proposals: Vec<Proposal>,
    /// Sections left out or caveats, with the reason.
    pub notes: Vec<String>,
}

/// Traffic and cost totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficSummary {
    pub requests: u64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    pub span_seconds: f64,
    /// Requests divided by the span (`None` when all requests share one millisecond).
    pub requests_per_second: Option<f64>,
    pub errors: u64,
    /// Records without usage (e.g. streams cut before their usage event).
    pub usage_unknown: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    /// p50, p90 and p99 of input and output tokens over records with usage.
    pub input_tokens_p50_p90_p99: Option<[f64; 3]>,
    pub output_tokens_p50_p90_p99: Option<[f64; 3]>,
    pub total_cost: Money,
    pub cost_unknown: u64,
    /// Total cost ÷ the span × one day (`None` without a span).
    pub cost_per_day: Option<Money>,
    pub models: usize,
}

/// The window the series use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowInfo {
    pub window_ms: i64,
    pub label: String,
    /// Windows from the first record's to the last record's.
    pub total: usize,
    /// Windows used for forecasts and anomalies (the partial edge windows left out).
    pub used: usize,
    /// Start of the first used window (ms since the epoch).
    pub first_used_start_ms: i64,
}

/// Forecasts of the per-window series and the month projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastSection {
    pub requests: Option<SeriesForecast>,
    pub cost_usd: Option<SeriesForecast>,
    pub month: Option<MonthProjection>,
}

/// One series' forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesForecast {
    pub method: Method,
    pub candidates: Vec<CandidateScore>,
    pub holdout: usize,
    /// Observed mean per window.
    pub observed_mean: f64,
    pub next: Vec<ForecastPoint>,
}

/// A forecast window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastPoint {
    pub start_ms: i64,
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Where spend over a 30-day month from the first record is heading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthProjection {
    /// Spend at the current average rate: total cost ÷ span × 30 days.
    pub run_rate_usd: f64,
    /// The forecast model's projection; its `budget` is the run rate, so
    /// `probability_over_budget` is P(month > run rate). `None` when the model would have to
    /// extrapolate more than [`MAX_EXTRAPOLATION`] times the windows it saw.
    pub projection: Option<BudgetProjection>,
    /// Forecast windows ÷ observed windows: how far the model extrapolates.
    pub extrapolation_factor: f64,
}

/// Flagged windows and shifts of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesAnomalies {
    pub metric: SeriesMetric,
    pub outliers: Vec<FlaggedWindow>,
    pub change_points: Vec<FlaggedWindow>,
}

/// A detection with the start of its window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlaggedWindow {
    pub start_ms: i64,
    pub value: f64,
    pub detection: Detection,
}

/// Workload clusters (labels left out: one per record is not a report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSection {
    pub k: usize,
    pub feature_names: Vec<String>,
    pub silhouette_by_k: Vec<(usize, f64)>,
    /// Records clustered (those with usage).
    pub records: usize,
    pub clusters: Vec<ClusterSummary>,
}

/// One cluster with its typical sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    pub profile: ClusterProfile,
    /// `exp(mean ln(1 + tokens)) − 1`: the geometric typical size the cluster is centred on.
    pub typical_input_tokens: f64,
    pub typical_output_tokens: f64,
}

/// Response-cache and prompt-prefix cache opportunities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSection {
    pub response_cache: ResponseCacheConfig,
    pub duplicates: DuplicateAnalysis,
    pub prefix: Option<PrefixSection>,
}

/// Prefix reuse under an unlimited cache and under provider rules, priced for a few models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixSection {
    pub unlimited: PrefixReuse,
    pub provider_rules: PrefixReuse,
    pub savings: Vec<PrefixCacheSaving>,
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

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Reads and validates the file's records (oldest first).
pub fn load(
    args: &AnalyzeArgs,
    catalog: &PriceCatalog,
    progress: &ProgressBar,
) -> anyhow::Result<LoadedInput> {
    let name = display(&args.file);
    let bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("{name}: cannot read the file"))?
        .len();
    if bytes == 0 {
        bail!("{name}: the file is empty");
    }
    let format = match args.format {
        Some(format) => format,
        None => detect(&args.file, &name)?,
    };
    let file = File::open(&args.file).with_context(|| format!("{name}: cannot open the file"))?;
    let reader = BufReader::new(progress.wrap_read(file));
    let trace_model = args.model.as_deref().unwrap_or(DEFAULT_TRACE_MODEL);
    let (mut records, priced_as, repriced) = match format {
        TraceFormatArg::Records => {
            let (records, repriced) = read_records(reader, &name, catalog)?;
            (records, None, repriced)
        }
        TraceFormatArg::Azure | TraceFormatArg::Mooncake => {
            let price = catalog.resolve(trace_model).map_err(|e| anyhow!("--model: {e}"))?;
            let (requests, base_ms) = if format == TraceFormatArg::Azure {
                (parse_azure_csv(reader), 0)
            } else {
                (parse_mooncake_jsonl(reader), MOONCAKE_BASE_MS)
            };
            let requests = requests.map_err(|e| located(&name, e))?;
            let records =
                to_records(&requests, base_ms, &price.provider, trace_model, Some(catalog));
            let now_ms = now_ms();
            for (index, record) in records.iter().enumerate() {
                // Trace lines map 1:1 to requests after blank lines; the index is the request.
                record
                    .validate(now_ms)
                    .map_err(|e| anyhow!("{name}: request {}: invalid: {e}", index + 1))?;
            }
            (records, Some(trace_model.to_owned()), 0)
        }
    };
    if records.is_empty() {
        bail!("{name}: no requests in the file");
    }
    records.sort_by_key(|record| record.ts_ms);
    Ok(LoadedInput { info: InputInfo { file: name, format, bytes, priced_as, repriced }, records })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

fn located(name: &str, error: llmopt_analytics::Error) -> anyhow::Error {
    match error {
        llmopt_analytics::Error::Parse { line, reason } => anyhow!("{name}:{line}: {reason}"),
        llmopt_analytics::Error::Read { line, reason } => {
            anyhow!("{name}:{line}: cannot read ({reason}); is this a text file?")
        }
        other => anyhow!("{name}: {other}"),
    }
}

/// Detects the format from the first non-empty line.
fn detect(path: &Path, name: &str) -> anyhow::Result<TraceFormatArg> {
    let mut prefix = Vec::new();
    File::open(path)
        .with_context(|| format!("{name}: cannot open the file"))?
        .take(DETECTION_PREFIX_BYTES)
        .read_to_end(&mut prefix)
        .with_context(|| format!("{name}: cannot read the file"))?;
    let mut line_number = 0;
    for raw_line in prefix.split(|&b| b == b'\n') {
        line_number += 1;
        if raw_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if raw_line.contains(&0) {
            bail!("{name}:{line_number}: binary data (a NUL byte), not a text file");
        }
        // A line cut at the end of the prefix may end inside a UTF-8 character.
        let text = match std::str::from_utf8(raw_line) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&raw_line[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => bail!("{name}:{line_number}: not UTF-8 text"),
        };
        return match detect_format(text) {
            Some(TraceFormat::AzureCsv) => Ok(TraceFormatArg::Azure),
            Some(TraceFormat::MooncakeJsonl) if text.contains("\"input_length\"") => {
                Ok(TraceFormatArg::Mooncake)
            }
            Some(TraceFormat::MooncakeJsonl) if text.contains("\"served_model\"") => {
                Ok(TraceFormatArg::Records)
            }
            Some(TraceFormat::MooncakeJsonl) => bail!(
                "{name}:{line_number}: a JSON object that is neither a request record (no \
                 `served_model`) nor a Mooncake trace line (no `input_length`)"
            ),
            None => bail!(
                "{name}:{line_number}: unrecognised format: expected request-record NDJSON, an \
                 Azure trace CSV (header `TIMESTAMP,ContextTokens,GeneratedTokens`) or Mooncake \
                 JSON lines (use --format to force one)"
            ),
        };
    }
    bail!("{name}: the file holds only blank lines")
}

/// Parses record NDJSON, validating each record and pricing those whose cost is missing.
fn read_records(
    reader: impl BufRead,
    name: &str,
    catalog: &PriceCatalog,
) -> anyhow::Result<(Vec<RequestRecord>, u64)> {
    let now_ms = now_ms();
    let mut records = Vec::new();
    let mut repriced = 0;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line =
            line.map_err(|e| anyhow!("{name}:{number}: cannot read ({e}); is this a text file?"))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record: RequestRecord = serde_json::from_str(&line)
            .map_err(|e| anyhow!("{name}:{number}: not a request record: {e}"))?;
        record.validate(now_ms).map_err(|e| anyhow!("{name}:{number}: invalid record: {e}"))?;
        if record.cost.is_none()
            && let Some(usage) = &record.usage
            && let Ok(breakdown) = catalog.cost(&record.served_model.0, usage)
        {
            record.cost = Some(breakdown.total);
            repriced += 1;
        }
        records.push(record);
    }
    Ok((records, repriced))
}

/// The report over `records` (any order).
pub fn analyze(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    settings: &StrategySettings,
) -> Report {
    let mut sorted_storage;
    let records = if records.is_sorted_by_key(|record| record.ts_ms) {
        records
    } else {
        sorted_storage = records.to_vec();
        sorted_storage.sort_by_key(|record| record.ts_ms);
        &sorted_storage[..]
    };
    let mut notes = Vec::new();
    let summary = summarize(records);
    let cost_by_model = cost_breakdown(records, &CostDimension::Model);
    let windows = choose_windows(&summary);
    let forecast = forecast_section(records, &summary, &windows, &mut notes);
    let anomalies = anomaly_section(records, &windows, &mut notes);
    let clusters = cluster_section(records, &mut notes);
    let cache = cache_section(records, catalog, settings, &mut notes);
    let span_days = (summary.span_seconds.max(1.0)) / 86_400.0;
    if summary.span_seconds < 1.0 {
        notes.push(
            "the records span less than a second: savings per day use a 1-second span".into(),
        );
    }
    let input = AnalysisInput { records, catalog, span_days, settings };
    let has_latency = records.iter().any(|r| r.latency_us > 0);
    if !has_latency {
        notes.push("timeouts and hedging: the input carries no latencies (traces do not)".into());
    }
    let mut proposals: Vec<Proposal> = strategies::all()
        .iter()
        // Latency strategies read an all-zero latency column as a real one.
        .filter(|strategy| has_latency || strategy.kind() != StrategyKind::TimeoutHedge)
        .flat_map(|strategy| strategy.propose(&input))
        .collect();
    proposals.sort_by(|a, b| {
        b.saving.usd_per_day.total_cmp(&a.saving.usd_per_day).then_with(|| a.id.cmp(&b.id))
    });
    if proposals.is_empty() {
        notes.push(format!(
            "no proposals: no strategy found a saving with at least {} requests in a scope",
            settings.min_requests
        ));
    }
    Report {
        input: None,
        summary,
        cost_by_model,
        windows,
        forecast,
        anomalies,
        clusters,
        cache,
        proposals,
        notes,
    }
}

fn summarize(records: &[RequestRecord]) -> TrafficSummary {
    let first_ts_ms = records.iter().map(|r| r.ts_ms).min().unwrap_or(0);
    let last_ts_ms = records.iter().map(|r| r.ts_ms).max().unwrap_or(0);
    let span_ms = last_ts_ms - first_ts_ms;
    let span_seconds = span_ms as f64 / 1000.0;
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let (mut input_tokens, mut output_tokens, mut cache_read_tokens) = (0, 0, 0);
    for usage in records.iter().filter_map(|r| r.usage.as_ref()) {
        input_tokens += usage.input_tokens;
        output_tokens += usage.output_tokens;
        cache_read_tokens += usage.cache_read_tokens;
        inputs.push(usage.input_tokens as f64);
        outputs.push(usage.output_tokens as f64);
    }
    let three =
        |values: &[f64]| quantiles(values, &[0.5, 0.9, 0.99]).ok().map(|q| [q[0], q[1], q[2]]);
    let total_cost: Money = records.iter().filter_map(|r| r.cost).sum();
    let models: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.served_model.0.as_str()).collect();
    TrafficSummary {
        requests: records.len() as u64,
        first_ts_ms,
        last_ts_ms,
        span_seconds,
        requests_per_second: (span_ms > 0).then(|| records.len() as f64 / span_seconds),
        errors: records.iter().filter(|r| !r.status.is_ok()).count() as u64,
        usage_unknown: records.iter().filter(|r| r.usage.is_none()).count() as u64,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        input_tokens_p50_p90_p99: three(&inputs),
        output_tokens_p50_p90_p99: three(&outputs),
        total_cost,
        cost_unknown: records.iter().filter(|r| r.cost.is_none()).count() as u64,
        // Exact: picodollars × ms-per-day ÷ span-ms, in integers.
        cost_per_day: (span_ms > 0).then(|| {
            Money::from_picos(total_cost.picos() * i128::from(DAY_MS) / i128::from(span_ms))
        }),
        models: models.len(),
    }
}

const WINDOW_LADDER: [(i64, &str); 10] = [
    (1_000, "1 s"),
    (10_000, "10 s"),
    (60_000, "1 min"),
    (300_000, "5 min"),
    (900_000, "15 min"),
    (3_600_000, "1 h"),
    (10_800_000, "3 h"),
    (21_600_000, "6 h"),
    (DAY_MS, "1 day"),
    (7 * DAY_MS, "1 week"),
];

fn window_count(first_ts_ms: i64, last_ts_ms: i64, window_ms: i64) -> i64 {
    last_ts_ms.div_euclid(window_ms) - first_ts_ms.div_euclid(window_ms) + 1
}

fn choose_windows(summary: &TrafficSummary) -> WindowInfo {
    let (first, last) = (summary.first_ts_ms, summary.last_ts_ms);
    let (window_ms, label) = WINDOW_LADDER
        .iter()
        .copied()
        .find(|&(window, _)| {
            let count = window_count(first, last, window);
            count <= MAX_WINDOWS
                && summary.requests as f64 / count as f64 >= MIN_REQUESTS_PER_WINDOW
        })
        .unwrap_or(WINDOW_LADDER[WINDOW_LADDER.len() - 1]);
    let total = window_count(first, last, window_ms) as usize;
    // Both edge windows are partly covered; leave them out when enough remain.
    let trimmed = total >= 8;
    WindowInfo {
        window_ms,
        label: label.to_owned(),
        total,
        used: if trimmed { total - 2 } else { total },
        first_used_start_ms: first.div_euclid(window_ms) * window_ms
            + if trimmed { window_ms } else { 0 },
    }
}

/// The series of `metric` over the used windows (gaps filled for counts and cost).
fn used_series(
    records: &[RequestRecord],
    windows: &WindowInfo,
    metric: SeriesMetric,
) -> Vec<(i64, f64)> {
    let end_ms = windows.first_used_start_ms + windows.used as i64 * windows.window_ms;
    window_series(records, windows.window_ms, metric)
        .into_iter()
        .filter(|&(start, _)| start >= windows.first_used_start_ms && start < end_ms)
        .collect()
}

/// The seasonal period worth trying for this window length, if the data covers it.
fn seasonal_period(window_ms: i64, observations: usize, holdout: usize) -> Option<usize> {
    let period = match window_ms {
        3_600_000 => 24,
        10_800_000 => 8,
        21_600_000 => 4,
        DAY_MS => 7,
        _ => return None,
    };
    (observations >= 2 * period + 1 + holdout).then_some(period)
}

fn forecast_series(
    series: &[(i64, f64)],
    windows: &WindowInfo,
) -> llmopt_analytics::Result<(SeriesForecast, llmopt_analytics::forecast::FittedModel)> {
    let values: Vec<f64> = series.iter().map(|&(_, value)| value).collect();
    let holdout = (values.len() / 5).max(2);
    let period = seasonal_period(windows.window_ms, values.len(), holdout);
    let auto = fit_auto(&values, period, holdout)?;
    let forecast = auto.model.forecast(FORECAST_HORIZON, 0.95)?;
    let last_start = series.last().map_or(windows.first_used_start_ms, |&(start, _)| start);
    let next = (0..FORECAST_HORIZON)
        .map(|h| ForecastPoint {
            start_ms: last_start + (h as i64 + 1) * windows.window_ms,
            // Both series (requests, spend) are non-negative: a trend or interval running below
            // zero is cut at zero rather than shown as a negative count.
            mean: forecast.mean[h].max(0.0),
            lower: forecast.lower[h].max(0.0),
            upper: forecast.upper[h].max(0.0),
        })
        .collect();
    let observed_mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    Ok((
        SeriesForecast {
            method: auto.model.method,
            candidates: auto.scores,
            holdout,
            observed_mean,
            next,
        },
        auto.model,
    ))
}

fn forecast_section(
    records: &[RequestRecord],
    summary: &TrafficSummary,
    windows: &WindowInfo,
    notes: &mut Vec<String>,
) -> ForecastSection {
    const MIN_WINDOWS: usize = 8;
    if windows.used < MIN_WINDOWS {
        notes.push(format!(
            "forecast: {} windows of {} are too few (needs {MIN_WINDOWS})",
            windows.used, windows.label
        ));
        return ForecastSection { requests: None, cost_usd: None, month: None };
    }
    let requests =
        match forecast_series(&used_series(records, windows, SeriesMetric::Requests), windows) {
            Ok((forecast, _)) => Some(forecast),
            Err(e) => {
                notes.push(format!("forecast of requests: {e}"));
                None
            }
        };
    let mut month = None;
    let cost_usd =
        match forecast_series(&used_series(records, windows, SeriesMetric::CostUsd), windows) {
            Ok((forecast, model)) => {
                month = month_projection(summary, windows, &model, notes);
                Some(forecast)
            }
            Err(e) => {
                notes.push(format!("forecast of cost: {e}"));
                None
            }
        };
    ForecastSection { requests, cost_usd, month }
}

fn month_projection(
    summary: &TrafficSummary,
    windows: &WindowInfo,
    model: &llmopt_analytics::forecast::FittedModel,
    notes: &mut Vec<String>,
) -> Option<MonthProjection> {
    let span_ms = summary.last_ts_ms - summary.first_ts_ms;
    if span_ms <= 0 || summary.total_cost.is_zero() {
        notes.push("month projection: no span or no known cost".into());
        return None;
    }
    if span_ms >= MONTH_MS {
        notes.push("month projection: the records already cover 30 days".into());
        return None;
    }
    let run_rate =
        Money::from_picos(summary.total_cost.picos() * i128::from(MONTH_MS) / i128::from(span_ms));
    let remaining_steps = ((MONTH_MS - span_ms) / windows.window_ms).max(1) as usize;
    let extrapolation_factor = remaining_steps as f64 / windows.used.max(1) as f64;
    let projection = if extrapolation_factor > MAX_EXTRAPOLATION {
        notes.push(format!(
            "month projection: only the run rate; the forecast model would extrapolate \
             {extrapolation_factor:.0}× beyond the {} windows it saw",
            windows.used
        ));
        None
    } else {
        project_budget(model, summary.total_cost, remaining_steps, run_rate)
            .map_err(|e| notes.push(format!("month projection: {e}")))
            .ok()
    };
    Some(MonthProjection { run_rate_usd: run_rate.as_usd_f64(), projection, extrapolation_factor })
}

fn anomaly_section(
    records: &[RequestRecord],
    windows: &WindowInfo,
    notes: &mut Vec<String>,
) -> Vec<SeriesAnomalies> {
    let mut metrics = vec![SeriesMetric::Requests, SeriesMetric::CostUsd];
    if records.iter().any(|r| r.latency_us > 0) {
        metrics.push(SeriesMetric::LatencyP95Ms);
    }
    if records.iter().any(|r| !r.status.is_ok()) {
        metrics.push(SeriesMetric::ErrorRate);
    }
    let mut sections = Vec::new();
    for metric in metrics {
        let series = used_series(records, windows, metric);
        let values: Vec<f64> = series.iter().map(|&(_, value)| value).collect();
        let flag = |detection: Detection| FlaggedWindow {
            start_ms: series[detection.index].0,
            value: values[detection.index],
            detection,
        };
        let outliers = match robust_z(&values, OUTLIER_THRESHOLD) {
            Ok(detections) => detections.into_iter().map(flag).collect(),
            Err(e) => {
                notes.push(format!("outliers of {metric:?}: {e}"));
                Vec::new()
            }
        };
        let min_segment = (values.len() / 20).max(3);
        let shifts = match change_points(&values, min_segment, 1.0) {
            Ok(detections) => detections
                .into_iter()
                .filter(|d| d.confidence >= CHANGE_POINT_CONFIDENCE)
                .map(flag)
                .collect(),
            Err(e) => {
                notes.push(format!("change points of {metric:?}: {e}"));
                Vec::new()
            }
        };
        sections.push(SeriesAnomalies { metric, outliers, change_points: shifts });
    }
    sections
}

fn cluster_section(records: &[RequestRecord], notes: &mut Vec<String>) -> Option<ClusterSection> {
    let with_usage: Vec<RequestRecord> =
        records.iter().filter(|r| r.usage.is_some()).cloned().collect();
    if with_usage.len() < MIN_CLUSTER_RECORDS {
        notes.push(format!(
            "clusters: {} records with usage are too few to describe workloads (needs \
             {MIN_CLUSTER_RECORDS})",
            with_usage.len()
        ));
        return None;
    }
    let spec = FeatureSpec {
        tag_keys: Vec::new(),
        include_latency: with_usage.iter().any(|r| r.latency_us > 0),
    };
    match cluster_records(&with_usage, &spec, 2..=6, CLUSTER_SEED) {
        Ok(clusters) => {
            let column = |name: &str| clusters.feature_names.iter().position(|n| n == name);
            let (input_column, output_column) =
                (column("ln_input_tokens"), column("ln_output_tokens"));
            let typical = |profile: &ClusterProfile, column: Option<usize>| {
                column.map_or(0.0, |c| profile.mean_features[c].exp() - 1.0)
            };
            let mut summaries: Vec<ClusterSummary> = clusters
                .profiles
                .into_iter()
                .map(|profile| ClusterSummary {
                    typical_input_tokens: typical(&profile, input_column),
                    typical_output_tokens: typical(&profile, output_column),
                    profile,
                })
                .collect();
            summaries.sort_by_key(|summary| std::cmp::Reverse(summary.profile.cost));
            Some(ClusterSection {
                k: clusters.k,
                feature_names: clusters.feature_names,
                silhouette_by_k: clusters.silhouette_by_k,
                records: with_usage.len(),
                clusters: summaries,
            })
        }
        Err(e) => {
            notes.push(format!("clusters: {e}"));
            None
        }
    }
}

fn cache_section(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    settings: &StrategySettings,
    notes: &mut Vec<String>,
) -> CacheSection {
    let response_cache = ResponseCacheConfig {
        ttl_ms: i64::try_from(settings.cache_ttl_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX),
        capacity: settings.cache_capacity,
    };
    let duplicates = duplicate_analysis(records, response_cache).unwrap_or_else(|e| {
        notes.push(format!("response cache: {e}"));
        DuplicateAnalysis {
            requests: records.len() as u64,
            fingerprinted: 0,
            repeats_within_ttl: 0,
            repeat_share: 0.0,
            hits: 0,
            hit_share: 0.0,
            evictions: 0,
            cost: Money::ZERO,
            saved: Money::ZERO,
        }
    });
    if duplicates.fingerprinted == 0 {
        notes.push("response cache: no record carries a request fingerprint".into());
    }
    let prefix = if records.iter().any(|r| !r.fingerprints.prefix_blocks.is_empty()) {
        prefix_section(records, catalog, notes)
    } else {
        notes.push("prompt-prefix cache: no record carries prefix blocks".into());
        None
    };
    CacheSection { response_cache, duplicates, prefix }
}

fn prefix_section(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    notes: &mut Vec<String>,
) -> Option<PrefixSection> {
    let unlimited = prefix_reuse(records, PrefixCachePolicy::unlimited(MOONCAKE_BLOCK_TOKENS));
    let provider_rules =
        prefix_reuse(records, PrefixCachePolicy::provider_default(MOONCAKE_BLOCK_TOKENS));
    let (unlimited, provider_rules) = match (unlimited, provider_rules) {
        (Ok(unlimited), Ok(provider_rules)) => (unlimited, provider_rules),
        (Err(e), _) | (_, Err(e)) => {
            notes.push(format!("prompt-prefix cache: {e}"));
            return None;
        }
    };
    // The busiest served model first, then one reference model of each large provider.
    let mut by_model: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.fingerprints.prefix_blocks.is_empty()) {
        *by_model.entry(record.served_model.0.as_str()).or_default() += 1;
    }
    let busiest = by_model.iter().max_by_key(|&(_, count)| *count).map(|(model, _)| *model);
    let mut models: Vec<&str> = Vec::new();
    for model in busiest.into_iter().chain(["gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"]) {
        if let Ok(price) = catalog.resolve(model)
            && !models.iter().any(|m| catalog.resolve(m).is_ok_and(|p| p.id == price.id))
        {
            models.push(model);
        }
    }
    let savings = prefix_cache_savings(&provider_rules, catalog, &models).unwrap_or_else(|e| {
        notes.push(format!("prompt-prefix cache pricing: {e}"));
        Vec::new()
    });
    Some(PrefixSection { unlimited, provider_rules, savings })
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
    let s = &report.summary;
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
        thousands(report.cost_by_model.requests),
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

    let w = &report.windows;
    let _ = writeln!(
        out,
        "\nForecast (windows of {}; {} used of {}, partial edge windows left out)",
        w.label, w.used, w.total
    );
    for (name, forecast, money) in [
        ("requests per window", &report.forecast.requests, false),
        ("cost per window", &report.forecast.cost_usd, true),
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
    if let Some(month) = &report.forecast.month {
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
    for series in &report.anomalies {
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

    if let Some(clusters) = &report.clusters {
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

    let cache = &report.cache;
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
                "  {}. {:<16} {}/day (95 %: {} … {}), risk {}",
                rank + 1,
                p.strategy.as_str(),
                format_usd(p.saving.usd_per_day),
                format_usd(p.saving.low),
                format_usd(p.saving.high),
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
    fn window_ladder_picks_minutes_for_an_hour() {
        // 18:15:46 to 19:14:08 of one day: 60 one-minute windows (10 s would give 351).
        let start = 1_700_158_546_680;
        let summary = TrafficSummary {
            requests: 19_366,
            first_ts_ms: start,
            last_ts_ms: start + 3_501_722,
            span_seconds: 3_501.722,
            requests_per_second: None,
            errors: 0,
            usage_unknown: 0,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            input_tokens_p50_p90_p99: None,
            output_tokens_p50_p90_p99: None,
            total_cost: Money::ZERO,
            cost_unknown: 0,
            cost_per_day: None,
            models: 1,
        };
        let windows = choose_windows(&summary);
        assert_eq!(windows.window_ms, 60_000);
        assert_eq!(windows.total, 60);
        assert_eq!(windows.used, 58);
        // 18:16:00 UTC of that day.
        assert_eq!(windows.first_used_start_ms, 1_700_158_560_000);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(19_366), "19,366");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
