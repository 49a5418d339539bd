//! An offline report over a file of calls — our own `RequestRecord` NDJSON, or a public trace
//! (Azure LLM inference CSV, Mooncake JSONL): traffic and exact cost, a forecast and month
//! projection, anomalies and change points, workload clusters and cache opportunities. This is
//! what `llm-auto-optimizer analyze FILE` prints (the command adds the optimizer's proposals and
//! renders text or JSON); a notebook or another tool can call [`load`] and [`analyze`] directly.
//!
//! Design choices:
//! - **One analysis, any rendering.** [`analyze`] is a pure function of records, prices and a
//!   response-cache configuration that returns a serialisable [`Report`], so a text rendering
//!   and a JSON document made from it never disagree.
//! - **Errors name the place.** Every input problem (unreadable or empty file, binary bytes, a
//!   malformed line, a record that fails `RequestRecord::validate`) is an
//!   [`Error::Input`](crate::Error::Input) that displays as `FILE:LINE: reason`; nothing in the
//!   reading path panics. The format is detected from the first non-empty line (the caller may
//!   force one): `TIMESTAMP,…` is Azure, a JSON object with `input_length` is Mooncake, one with
//!   `served_model` is a record. The reader is the only I/O of the crate; [`load`] lets the
//!   caller wrap the file (for a progress bar) and [`read`] takes any `BufRead`.
//! - **Traces are priced as one model.** The traces carry no model names, so every request is
//!   priced exactly (integer picodollars) as the caller's model (default
//!   [`DEFAULT_TRACE_MODEL`]). Mooncake timestamps are relative; they are placed at
//!   [`MOONCAKE_BASE_MS`] (2024-01-01 UTC) so records validate and windows have calendar starts.
//! - **Windows sized to the data.** Series use the shortest "round" window (1 s … 1 week) that
//!   gives at most [`MAX_WINDOWS`] windows with at least [`MIN_REQUESTS_PER_WINDOW`] requests
//!   each on average, and the two edge windows are left out of forecasts and anomaly detection
//!   because they are only partly covered: a half-filled last minute would otherwise read as a
//!   collapse in traffic.
//! - **Claims no stronger than the data.** The month projection always gives the run rate
//!   (spend ÷ span × 30 days) and adds the forecast model's projection only when it extrapolates
//!   at most [`MAX_EXTRAPOLATION`] times the windows it was fitted on (an hour of trace says
//!   nothing about a trend over a month). Change points are kept when Welch's test between the
//!   adjacent segments gives p < 0.05; clusters need [`MIN_CLUSTER_RECORDS`].
//! - **Sections degrade, the report does not.** A section that cannot be computed for this input
//!   (too few windows to forecast, no spread to cluster, no prefix blocks) is left out with a
//!   note saying why, instead of failing the whole report.

mod input;
mod series;
mod workload;

use llmopt_core::{Money, PriceCatalog, RequestRecord};
use serde::Serialize;

pub use self::{
    input::{
        DEFAULT_TRACE_MODEL, DETECTION_PREFIX_BYTES, InputFormat, InputInfo, LoadedInput,
        MOONCAKE_BASE_MS, ParsedInput, ReadOptions, detect, load, read,
    },
    series::{
        FlaggedWindow, ForecastPoint, ForecastSection, MonthProjection, SeriesAnomalies,
        SeriesForecast,
    },
    workload::{CacheSection, ClusterSection, ClusterSummary, PrefixSection},
};
use crate::{
    cache::ResponseCacheConfig,
    cost::{CostBreakdown, CostDimension, cost_breakdown},
    stats::quantiles,
};

/// Most windows a series may have; the window length is the shortest round length that fits.
pub const MAX_WINDOWS: i64 = 250;

/// Fewest requests per window on average: sparser windows make series of mostly zeros and
/// ones, where medians, MADs and forecasts say nothing.
pub const MIN_REQUESTS_PER_WINDOW: f64 = 5.0;

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

/// The report: its sections and the notes on what was left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Serialised inline: the sections are the report's top-level keys.
    #[serde(flatten)]
    pub sections: Sections,
    /// Sections left out or caveats, with the reason.
    pub notes: Vec<String>,
}

/// The computed sections of a [`Report`]; a caller that adds sections of its own (the command
/// adds the optimizer's proposals) flattens this into its own document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sections {
    pub summary: TrafficSummary,
    pub cost_by_model: CostBreakdown,
    pub windows: WindowInfo,
    pub forecast: ForecastSection,
    pub anomalies: Vec<SeriesAnomalies>,
    pub clusters: Option<ClusterSection>,
    pub cache: CacheSection,
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

impl WindowInfo {
    /// End of the last used window (exclusive).
    pub fn used_end_ms(&self) -> i64 {
        self.first_used_start_ms + self.used as i64 * self.window_ms
    }
}

/// The report over `records` (any order; sorted here when they are not), with `response_cache`
/// as the response cache to simulate.
pub fn analyze(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    response_cache: ResponseCacheConfig,
) -> Report {
    let sorted_storage;
    let records = if records.is_sorted_by_key(|record| record.ts_ms) {
        records
    } else {
        let mut sorted = records.to_vec();
        sorted.sort_by_key(|record| record.ts_ms);
        sorted_storage = sorted;
        &sorted_storage[..]
    };
    let mut notes = Vec::new();
    let summary = summarize(records);
    let cost_by_model = cost_breakdown(records, &CostDimension::Model);
    let windows = choose_windows(&summary);
    let forecast = series::forecast_section(records, &summary, &windows, &mut notes);
    let anomalies = series::anomaly_section(records, &windows, &mut notes);
    let clusters = workload::cluster_section(records, &mut notes);
    let cache = workload::cache_section(records, catalog, response_cache, &mut notes);
    Report {
        sections: Sections {
            summary,
            cost_by_model,
            windows,
            forecast,
            anomalies,
            clusters,
            cache,
        },
        notes,
    }
}

/// Counts, tokens and exact cost of `records`, with their time span.
pub fn summarize(records: &[RequestRecord]) -> TrafficSummary {
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

/// The shortest round window that gives at most [`MAX_WINDOWS`] windows holding at least
/// [`MIN_REQUESTS_PER_WINDOW`] requests on average, and the windows used (edges left out).
pub fn choose_windows(summary: &TrafficSummary) -> WindowInfo {
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

#[cfg(test)]
mod tests {
    use llmopt_core::Usage;

    use super::*;

    fn summary(requests: u64, first_ts_ms: i64, last_ts_ms: i64) -> TrafficSummary {
        TrafficSummary {
            requests,
            first_ts_ms,
            last_ts_ms,
            span_seconds: (last_ts_ms - first_ts_ms) as f64 / 1000.0,
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
        }
    }

    #[test]
    fn window_ladder_picks_minutes_for_an_hour() {
        // 18:15:46 to 19:14:08 of one day: 60 one-minute windows (10 s would give 351).
        let start = 1_700_158_546_680;
        let windows = choose_windows(&summary(19_366, start, start + 3_501_722));
        assert_eq!(windows.window_ms, 60_000);
        assert_eq!(windows.total, 60);
        assert_eq!(windows.used, 58);
        // 18:16:00 UTC of that day.
        assert_eq!(windows.first_used_start_ms, 1_700_158_560_000);
        assert_eq!(windows.used_end_ms(), 1_700_158_560_000 + 58 * 60_000);
        // Too few windows to trim: all are used, from the first record's.
        let short = choose_windows(&summary(30, start, start + 20_000));
        assert_eq!((short.window_ms, short.total, short.used), (10_000, 3, 3));
        assert_eq!(short.first_used_start_ms, 1_700_158_540_000);
    }

    #[test]
    fn summary_counts_tokens_and_exact_cost_per_day() {
        // Three calls over 12 hours, one without usage: the cost per day is twice the total.
        let start = 1_740_787_200_000;
        let records: Vec<RequestRecord> = [(0, Some(100)), (6, Some(300)), (12, None)]
            .into_iter()
            .map(|(hour, input)| {
                let mut record = RequestRecord::new(
                    format!("r{hour}"),
                    start + hour * 3_600_000,
                    "openai",
                    "gpt-4o-mini",
                );
                record.usage = input.map(|input_tokens| Usage {
                    input_tokens,
                    output_tokens: 1,
                    ..Usage::default()
                });
                record.cost = input.map(|_| Money::from_picos(1_000));
                record
            })
            .collect();
        let s = summarize(&records);
        assert_eq!((s.requests, s.usage_unknown, s.cost_unknown), (3, 1, 1));
        assert_eq!((s.input_tokens, s.output_tokens), (400, 2));
        assert_eq!(s.span_seconds, 43_200.0);
        assert_eq!(s.total_cost, Money::from_picos(2_000));
        assert_eq!(s.cost_per_day, Some(Money::from_picos(4_000)));
        // numpy.quantile([100, 300], [0.5, 0.9, 0.99]) = 200, 280, 298.
        assert_eq!(s.input_tokens_p50_p90_p99, Some([200.0, 280.0, 298.0]));
    }
}
