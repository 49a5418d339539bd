//! Detectors applied to latency, error-rate and cost series built from records.

use llmopt_analytics::anomaly::{SeriesMetric, change_points, cusum, robust_z, window_series};
use llmopt_core::{ErrorKind, Money, RequestRecord, Status};

/// 60 one-minute windows of 20 calls. From minute 40 the error rate rises from 1/20 to 6/20;
/// minute 25 has one very slow window; cost per call steps up by half at minute 30.
fn traffic() -> Vec<RequestRecord> {
    let mut records = Vec::new();
    for minute in 0..60_i64 {
        for call in 0..20_i64 {
            let mut record = RequestRecord::new(
                format!("m{minute}c{call}"),
                1_700_000_000_000 + minute * 60_000 + call * 1_000,
                "p",
                "m",
            );
            let errors = if minute >= 40 { 6 } else { 1 };
            if call < errors {
                record.status = Status::Error(ErrorKind::Upstream);
            }
            let jitter = ((minute * 31 + call * 17) % 13) as u64;
            record.latency_us = if minute == 25 { 2_000_000 } else { (200 + jitter * 10) * 1000 };
            let base = if minute >= 30 { 1_500 } else { 1_000 } + (minute % 4) * 5;
            record.cost = Some(Money::from_micros(base + (call % 3) * 10));
            records.push(record);
        }
    }
    records
}

#[test]
fn error_rate_shift_is_located() {
    let series = window_series(&traffic(), 60_000, SeriesMetric::ErrorRate);
    assert_eq!(series.len(), 60);
    assert_eq!(series[0].1, 0.05);
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    // The series is flat apart from the step, so the difference-based noise estimate is zero
    // and the test falls back to the whole-series variance.
    let changes = change_points(&values, 5, 1.0).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].index, 40);
    assert!((changes[0].magnitude - 0.25).abs() < 1e-12);
}

#[test]
fn slow_window_is_a_robust_outlier() {
    // p95 of a window is often its slowest jitter value (320 ms), so more than half the p95s tie
    // and the MAD is zero: robust z refuses that rather than divide by zero.
    let p95: Vec<f64> = window_series(&traffic(), 60_000, SeriesMetric::LatencyP95Ms)
        .iter()
        .map(|(_, v)| *v)
        .collect();
    assert!(robust_z(&p95, 3.5).is_err());
    let series = window_series(&traffic(), 60_000, SeriesMetric::LatencyMeanMs);
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    let spikes = robust_z(&values, 3.5).unwrap();
    assert_eq!(spikes.iter().map(|d| d.index).collect::<Vec<_>>(), vec![25]);
    assert!((values[25] - 2000.0).abs() < 1e-9);
}

#[test]
fn cost_step_raises_a_cusum_alarm_at_once() {
    let series = window_series(&traffic(), 60_000, SeriesMetric::CostUsd);
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    // Exact per-window cost: 20 calls of $0.001 + (minute mod 4) × 5 µ$, plus call % 3 × 10 µ$
    // (7 calls at 0, 7 at 10, 6 at 20 → 190 µ$): minute 0 is $0.020190, minute 1 $0.020290.
    assert!((values[0] - 0.020_19).abs() < 1e-12);
    assert!((values[1] - 0.020_29).abs() < 1e-12);
    // From minute 30 every window costs $0.01 more: about 88 baseline standard deviations.
    let alarms = cusum(&values, 0.5, 5.0, 20).unwrap();
    assert_eq!(alarms[0].index, 30);
    assert!(alarms[0].magnitude > 0.0);
    assert!(alarms.iter().all(|alarm| alarm.index >= 30));
}
