//! Anomalies and change points in a series (latency, error rate, cost per window).
//!
//! Every detector returns [`Detection`]s that say where (index), how large (the deviation in the
//! series' units and in standard deviations) and how sure (a score against the threshold, or a
//! p-value for change points).
//!
//! - [`robust_z`]: `(x − median) / (1.4826 × MAD)`; the scale makes the MAD a consistent
//!   estimator of the standard deviation for normal data (`scipy.stats.median_abs_deviation(...,
//!   scale="normal")`), and neither the median nor the MAD is pulled by the outliers it hunts.
//! - [`ewma_chart`] and [`cusum`]: the classical control charts, with the in-control mean and
//!   standard deviation estimated from a baseline prefix of the series (the first `baseline`
//!   points), so a shift later in the series does not hide itself by inflating the estimates.
//! - [`change_points`]: PELT (Killick et al. 2012) for shifts in the mean with a Gaussian cost,
//!   the noise variance estimated robustly from first differences, and a BIC-like penalty
//!   `penalty_factor × 2 ln n`. PELT finds the exact optimum of the penalised cost (binary
//!   segmentation only approximates it) in near-linear time. Each change point is then checked
//!   with Welch's t-test between the adjacent segments.

use std::collections::BTreeMap;

use llmopt_core::{Money, RequestRecord};
use serde::Serialize;

use crate::{
    error::{Error, Result, check_finite, check_len},
    stats::{quantile_sorted, welch_t_test},
};

/// Consistency constant of the MAD for normal data: 1 / Φ⁻¹(3/4).
pub const MAD_NORMAL_SCALE: f64 = 1.482_602_218_505_602;

/// One flagged point or shift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Index of the point (robust z, EWMA, CUSUM alarm) or the first index after a change.
    pub index: usize,
    /// Deviation in the series' units: value − centre, or the mean shift.
    pub magnitude: f64,
    /// The deviation in standard deviations (signed).
    pub standardized: f64,
    /// How sure: statistic ÷ threshold for the charts (above 1 means flagged); for change points
    /// 1 − p of the Welch test between the adjacent segments.
    pub confidence: f64,
}

fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile_sorted(&sorted, 0.5)
}

/// Robust z-scores of every value.
pub fn robust_z_scores(values: &[f64]) -> Result<Vec<f64>> {
    check_len("robust z-score", values, 3)?;
    check_finite("robust z-score", values)?;
    let median = median_of(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let scale = MAD_NORMAL_SCALE * median_of(&deviations);
    if scale == 0.0 {
        return Err(Error::Degenerate(
            "robust z-score: more than half the values are equal (MAD is zero)".into(),
        ));
    }
    Ok(values.iter().map(|v| (v - median) / scale).collect())
}

/// Points whose robust z-score exceeds `threshold` in absolute value (3.5 is customary).
pub fn robust_z(values: &[f64], threshold: f64) -> Result<Vec<Detection>> {
    let scores = robust_z_scores(values)?;
    let median = median_of(values);
    Ok(scores
        .iter()
        .enumerate()
        .filter(|(_, score)| score.abs() > threshold)
        .map(|(index, &score)| Detection {
            index,
            magnitude: values[index] - median,
            standardized: score,
            confidence: score.abs() / threshold,
        })
        .collect())
}

fn baseline_moments(what: &'static str, values: &[f64], baseline: usize) -> Result<(f64, f64)> {
    check_finite(what, values)?;
    if baseline < 2 || baseline > values.len() {
        return Err(Error::InvalidParameter {
            name: "baseline",
            reason: format!("must be in 2..={}, got {baseline}", values.len()),
        });
    }
    let moments = crate::stats::moments(&values[..baseline])?;
    let sd = moments.std_dev();
    if sd == 0.0 {
        return Err(Error::Degenerate(format!("{what}: the baseline has zero variance")));
    }
    Ok((moments.mean, sd))
}

/// EWMA control chart: `z_t = λ x_t + (1 − λ) z_{t−1}` from `z = μ₀`, flagged outside
/// `μ₀ ± L σ √(λ/(2−λ) (1 − (1−λ)^{2t}))`.
pub fn ewma_chart(
    values: &[f64],
    lambda: f64,
    limit_width: f64,
    baseline: usize,
) -> Result<Vec<Detection>> {
    if !(lambda > 0.0 && lambda <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "lambda",
            reason: format!("{lambda} not in (0, 1]"),
        });
    }
    let (mean, sd) = baseline_moments("EWMA chart", values, baseline)?;
    let mut smoothed = mean;
    let mut detections = Vec::new();
    for (index, &value) in values.iter().enumerate() {
        smoothed = lambda * value + (1.0 - lambda) * smoothed;
        let steps = (index + 1) as f64;
        let width =
            sd * (lambda / (2.0 - lambda) * (1.0 - (1.0 - lambda).powf(2.0 * steps))).sqrt();
        let standardized = (smoothed - mean) / width;
        if standardized.abs() > limit_width {
            detections.push(Detection {
                index,
                magnitude: smoothed - mean,
                standardized,
                confidence: standardized.abs() / limit_width,
            });
        }
    }
    Ok(detections)
}

/// Tabular CUSUM on standardised values with allowance `k` and decision interval `h` (in
/// standard deviations; k = 0.5, h = 5 detect a one-sigma shift). Each alarm reports the
/// estimated shift `± (k + C/N)` σ, where N is the run length since the sum last left zero; the
/// sum restarts after an alarm.
pub fn cusum(values: &[f64], k: f64, h: f64, baseline: usize) -> Result<Vec<Detection>> {
    if k < 0.0 || h <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "k, h",
            reason: "need k ≥ 0 and h > 0".into(),
        });
    }
    let (mean, sd) = baseline_moments("CUSUM", values, baseline)?;
    let (mut upper, mut lower) = (0.0_f64, 0.0_f64);
    let (mut upper_run, mut lower_run) = (0_usize, 0_usize);
    let mut detections = Vec::new();
    for (index, &value) in values.iter().enumerate() {
        let z = (value - mean) / sd;
        upper = (upper + z - k).max(0.0);
        lower = (lower - z - k).max(0.0);
        upper_run = if upper > 0.0 { upper_run + 1 } else { 0 };
        lower_run = if lower > 0.0 { lower_run + 1 } else { 0 };
        if upper > h || lower > h {
            let (statistic, run, sign) =
                if upper > h { (upper, upper_run, 1.0) } else { (lower, lower_run, -1.0) };
            let shift = sign * (k + statistic / run as f64);
            detections.push(Detection {
                index,
                magnitude: shift * sd,
                standardized: shift,
                confidence: statistic / h,
            });
            upper = 0.0;
            lower = 0.0;
            upper_run = 0;
            lower_run = 0;
        }
    }
    Ok(detections)
}

/// Mean-shift change points by PELT. `min_segment` is the shortest allowed segment;
/// `penalty_factor` scales the penalty `2 ln n` (1.0 is the BIC-like default; larger is
/// stricter).
pub fn change_points(
    values: &[f64],
    min_segment: usize,
    penalty_factor: f64,
) -> Result<Vec<Detection>> {
    check_finite("change points", values)?;
    let min_segment = min_segment.max(2);
    check_len("change points", values, 2 * min_segment)?;
    let n = values.len();
    // Noise variance from first differences: robust to the shifts themselves.
    let differences: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted_abs: Vec<f64> = differences.iter().map(|d| d.abs()).collect();
    sorted_abs.sort_by(f64::total_cmp);
    let sigma = MAD_NORMAL_SCALE * quantile_sorted(&sorted_abs, 0.5) / std::f64::consts::SQRT_2;
    let variance =
        if sigma > 0.0 { sigma * sigma } else { crate::stats::moments(values)?.variance() };
    if variance.is_nan() || variance <= 0.0 {
        return Ok(Vec::new());
    }
    let mut prefix = vec![0.0; n + 1];
    let mut prefix_squares = vec![0.0; n + 1];
    for (i, &value) in values.iter().enumerate() {
        prefix[i + 1] = prefix[i] + value;
        prefix_squares[i + 1] = prefix_squares[i] + value * value;
    }
    // Cost of the segment [start, end): residual sum of squares over the noise variance.
    let cost = |start: usize, end: usize| -> f64 {
        let count = (end - start) as f64;
        let sum = prefix[end] - prefix[start];
        ((prefix_squares[end] - prefix_squares[start]) - sum * sum / count) / variance
    };
    let penalty = penalty_factor * 2.0 * (n as f64).ln();
    let mut best = vec![f64::INFINITY; n + 1];
    let mut last_change = vec![0_usize; n + 1];
    best[0] = -penalty;
    let mut candidates: Vec<usize> = vec![0];
    for end in 1..=n {
        let mut best_value = f64::INFINITY;
        let mut best_start = 0;
        for &start in &candidates {
            if end - start < min_segment || !best[start].is_finite() {
                continue;
            }
            let value = best[start] + cost(start, end) + penalty;
            if value < best_value {
                best_value = value;
                best_start = start;
            }
        }
        best[end] = best_value;
        last_change[end] = best_start;
        if best_value.is_finite() {
            // Pruning: a start that cannot beat the optimum now never will (the cost is
            // additive, so adding a change never increases it).
            candidates.retain(|&start| {
                end - start < min_segment
                    || !best[start].is_finite()
                    || best[start] + cost(start, end) <= best_value
            });
        }
        candidates.push(end);
    }
    let mut boundaries = Vec::new();
    let mut end = n;
    while end > 0 {
        let start = last_change[end];
        if start > 0 {
            boundaries.push(start);
        }
        end = start;
    }
    boundaries.reverse();
    let mut edges = vec![0];
    edges.extend(&boundaries);
    edges.push(n);
    let mut detections = Vec::new();
    for window in edges.windows(3) {
        let (before, after) = (&values[window[0]..window[1]], &values[window[1]..window[2]]);
        let mean_before = before.iter().sum::<f64>() / before.len() as f64;
        let mean_after = after.iter().sum::<f64>() / after.len() as f64;
        let confidence = welch_t_test(before, after).map_or(1.0, |test| 1.0 - test.p_value);
        detections.push(Detection {
            index: window[1],
            magnitude: mean_after - mean_before,
            standardized: (mean_after - mean_before) / variance.sqrt(),
            confidence,
        });
    }
    Ok(detections)
}

/// A per-window series built from records, for the detectors above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SeriesMetric {
    Requests,
    /// Known cost in dollars (exact sum per window, then converted).
    CostUsd,
    /// Share of records that are errors.
    ErrorRate,
    LatencyMeanMs,
    /// numpy-linear 95th percentile of latency.
    LatencyP95Ms,
}

/// `(window start ms, value)` per window of `window_ms`. Counts and cost cover every window from
/// the first record's to the last's (empty windows are 0); rates and latencies are undefined for
/// an empty window, so those windows are left out.
pub fn window_series(
    records: &[RequestRecord],
    window_ms: i64,
    metric: SeriesMetric,
) -> Vec<(i64, f64)> {
    let window = window_ms.max(1);
    let mut groups: BTreeMap<i64, Vec<&RequestRecord>> = BTreeMap::new();
    for record in records {
        groups.entry(record.ts_ms.div_euclid(window) * window).or_default().push(record);
    }
    let value_of = |members: &[&RequestRecord]| -> f64 {
        match metric {
            SeriesMetric::Requests => members.len() as f64,
            SeriesMetric::CostUsd => {
                members.iter().filter_map(|r| r.cost).sum::<Money>().as_usd_f64()
            }
            SeriesMetric::ErrorRate => {
                members.iter().filter(|r| !r.status.is_ok()).count() as f64 / members.len() as f64
            }
            SeriesMetric::LatencyMeanMs => {
                members.iter().map(|r| r.latency_ms()).sum::<f64>() / members.len() as f64
            }
            SeriesMetric::LatencyP95Ms => {
                let mut latencies: Vec<f64> = members.iter().map(|r| r.latency_ms()).collect();
                latencies.sort_by(f64::total_cmp);
                quantile_sorted(&latencies, 0.95)
            }
        }
    };
    let fills_gaps = matches!(metric, SeriesMetric::Requests | SeriesMetric::CostUsd);
    match (groups.keys().next().copied(), groups.keys().next_back().copied()) {
        (Some(first), Some(last)) if fills_gaps => (0..=(last - first) / window)
            .map(|i| {
                let start = first + i * window;
                (start, groups.get(&start).map_or(0.0, |members| value_of(members)))
            })
            .collect(),
        _ => groups.iter().map(|(&start, members)| (start, value_of(members))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(n: usize, level: f64, seed: u64) -> Vec<f64> {
        // A deterministic pseudo-noise in [-0.5, 0.5): enough for the detectors, no RNG needed.
        (0..n)
            .map(|i| level + (((i as u64 * 2_654_435_761 + seed) % 1000) as f64 / 1000.0 - 0.5))
            .collect()
    }

    #[test]
    fn robust_z_flags_the_spike_only() {
        let mut values = noisy(100, 10.0, 1);
        values[42] = 30.0;
        let detections = robust_z(&values, 3.5).unwrap();
        assert_eq!(detections.len(), 1);
        assert_eq!(detections[0].index, 42);
        assert!(robust_z_scores(&[1.0, 1.0, 1.0, 2.0]).is_err());
    }

    #[test]
    fn pelt_finds_a_step_exactly() {
        let mut values = noisy(100, 0.0, 3);
        values.extend(noisy(100, 3.0, 5));
        let changes = change_points(&values, 5, 1.0).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].index, 100);
        assert!((changes[0].magnitude - 3.0).abs() < 0.2);
        assert!(changes[0].confidence > 0.999);
        assert!(change_points(&noisy(200, 1.0, 9), 5, 1.0).unwrap().is_empty());
    }

    #[test]
    fn cusum_and_ewma_see_a_small_persistent_shift() {
        let mut values = noisy(100, 0.0, 11);
        values.extend(noisy(60, 0.5, 13));
        let alarms = cusum(&values, 0.5, 5.0, 100).unwrap();
        assert!(!alarms.is_empty());
        assert!(alarms[0].index >= 100 && alarms[0].index < 115, "{alarms:?}");
        assert!(alarms[0].magnitude > 0.0);
        let ewma = ewma_chart(&values, 0.2, 3.0, 100).unwrap();
        assert!(ewma.iter().all(|d| d.index >= 100));
        assert!(!ewma.is_empty());
    }
}
