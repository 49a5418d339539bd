//! The report's per-window sections: forecasts of requests and cost, the month projection, and
//! outliers and change points of each series.

use llmopt_core::{Money, RequestRecord};
use serde::Serialize;

use super::{
    CHANGE_POINT_CONFIDENCE, DAY_MS, FORECAST_HORIZON, MAX_EXTRAPOLATION, OUTLIER_THRESHOLD,
    TrafficSummary, WindowInfo,
};
use crate::{
    anomaly::{Detection, SeriesMetric, change_points, robust_z, window_series},
    forecast::{
        BudgetProjection, CandidateScore, FittedModel, Method, dense_series, fit_auto,
        project_budget,
    },
};

const MONTH_MS: i64 = 30 * DAY_MS;

/// Fewest used windows worth a forecast.
const MIN_FORECAST_WINDOWS: usize = 8;

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

/// The series of `metric` over the used windows: dense (empty windows are 0) for counts and
/// cost; rates and latencies are undefined for an empty window, which is left out.
fn used_series(
    records: &[RequestRecord],
    windows: &WindowInfo,
    metric: SeriesMetric,
) -> Vec<(i64, f64)> {
    let series = window_series(records, windows.window_ms, metric);
    let (from, to) = (windows.first_used_start_ms, windows.used_end_ms());
    match metric {
        SeriesMetric::Requests | SeriesMetric::CostUsd => {
            dense_series(series, windows.window_ms, from, to)
        }
        _ => series.into_iter().filter(|&(start, _)| start >= from && start < to).collect(),
    }
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
) -> crate::Result<(SeriesForecast, FittedModel)> {
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

pub(super) fn forecast_section(
    records: &[RequestRecord],
    summary: &TrafficSummary,
    windows: &WindowInfo,
    notes: &mut Vec<String>,
) -> ForecastSection {
    if windows.used < MIN_FORECAST_WINDOWS {
        notes.push(format!(
            "forecast: {} windows of {} are too few (needs {MIN_FORECAST_WINDOWS})",
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
    model: &FittedModel,
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

pub(super) fn anomaly_section(
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

#[cfg(test)]
mod tests {
    use llmopt_core::{ErrorKind, Status};

    use super::*;

    fn window_info(first_used_start_ms: i64, used: usize) -> WindowInfo {
        WindowInfo {
            window_ms: 60_000,
            label: "1 min".into(),
            total: used + 2,
            used,
            first_used_start_ms,
        }
    }

    #[test]
    fn used_series_fill_counts_and_leave_out_undefined_windows() {
        // Calls in minutes 0, 1 and 4 (an error in minute 4); minutes 1..=4 are used.
        let record = |minute: i64, error: bool| {
            let mut record = RequestRecord::new(format!("m{minute}"), minute * 60_000, "p", "m");
            record.latency_us = 1_000;
            if error {
                record.status = Status::Error(ErrorKind::Timeout);
            }
            record
        };
        let records = [record(0, false), record(1, false), record(4, true), record(5, false)];
        let windows = window_info(60_000, 4);
        assert_eq!(
            used_series(&records, &windows, SeriesMetric::Requests),
            [(60_000, 1.0), (120_000, 0.0), (180_000, 0.0), (240_000, 1.0)]
        );
        assert_eq!(
            used_series(&records, &windows, SeriesMetric::ErrorRate),
            [(60_000, 0.0), (240_000, 1.0)]
        );
    }

    #[test]
    fn seasonal_periods_need_two_seasons_and_the_holdout() {
        assert_eq!(seasonal_period(3_600_000, 49 + 10, 10), Some(24));
        assert_eq!(seasonal_period(3_600_000, 58, 10), None);
        assert_eq!(seasonal_period(DAY_MS, 15 + 3, 3), Some(7));
        assert_eq!(seasonal_period(60_000, 1_000, 3), None);
    }

    #[test]
    fn few_windows_give_a_note_instead_of_a_forecast() {
        let summary = crate::report::summarize(&[]);
        let mut notes = Vec::new();
        let section = forecast_section(&[], &summary, &window_info(0, 5), &mut notes);
        assert_eq!(section, ForecastSection { requests: None, cost_usd: None, month: None });
        assert_eq!(notes, ["forecast: 5 windows of 1 min are too few (needs 8)"]);
    }
}
