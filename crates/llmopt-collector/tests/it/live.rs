use std::{sync::Arc, time::Duration};

use llmopt_collector::{Collector, CollectorConfig, CollectorError, LiveDimension};
use llmopt_core::{
    Clock, ErrorKind, Feedback, FeedbackValue, ManualClock, MemoryRecordStore, Money,
    RecordValidationError, Status, TenantId, Usage, UsageError,
};

use crate::{T0, simple};

fn start(clock: &Arc<ManualClock>) -> Collector {
    let config = CollectorConfig {
        window: Duration::from_secs(60),
        windows_kept: 3,
        ..CollectorConfig::default()
    };
    Collector::start(
        Arc::new(MemoryRecordStore::new()),
        Arc::clone(clock) as Arc<dyn Clock>,
        config,
    )
}

#[test]
fn bad_records_are_rejected_with_typed_errors_and_counted() {
    let clock = Arc::new(ManualClock::new(T0));
    let collector = start(&clock);

    let far_future = simple(1, T0 + 3_600_000, "m", 5);
    assert!(matches!(
        collector.record(far_future),
        Err(CollectorError::Invalid(RecordValidationError::FutureTimestamp { .. }))
    ));

    let mut tokens = simple(2, T0, "m", 5);
    tokens.usage = Some(Usage { input_tokens: 10, cache_read_tokens: 20, ..Usage::default() });
    assert!(matches!(
        collector.record(tokens),
        Err(CollectorError::Invalid(RecordValidationError::Usage(UsageError::Inconsistent { .. })))
    ));

    let mut negative = simple(3, T0, "m", 5);
    negative.cost = Some(Money(-1));
    assert_eq!(
        collector.record(negative),
        Err(CollectorError::Invalid(RecordValidationError::NegativeCost))
    );

    let mut nan = simple(4, T0, "m", 5);
    nan.feedback.push(Feedback {
        metric: "rating".into(),
        value: FeedbackValue::Number(f64::NAN),
        ts_ms: T0,
    });
    assert!(matches!(
        collector.record(nan),
        Err(CollectorError::Invalid(RecordValidationError::NonFiniteFeedback { .. }))
    ));

    let mut ttft = simple(5, T0, "m", 5);
    ttft.ttft_us = Some(6_000);
    assert!(matches!(
        collector.record(ttft),
        Err(CollectorError::Invalid(RecordValidationError::TtftAfterEnd { .. }))
    ));

    collector.record(simple(6, T0, "m", 5)).unwrap();
    collector.flush().unwrap();
    let metrics = collector.metrics();
    assert_eq!((metrics.rejected, metrics.accepted, metrics.written), (5, 1, 1));
    let live = collector.live_stats();
    assert_eq!(live.current(LiveDimension::Total, "").unwrap().count, 1, "rejected not counted");
}

#[test]
fn live_stats_per_model_tenant_and_tag_with_hand_computed_values() {
    let clock = Arc::new(ManualClock::new(T0 + 5_000));
    let collector = start(&clock);
    // gpt-4o: latencies 1..=100 ms, every 10th an error, cost 1 µ$ each, TTFT = latency / 2.
    for i in 1..=100_u64 {
        let mut record = simple(i, T0, "gpt-4o", i);
        record.ttft_us = Some(i * 500);
        record.cost = Some(Money::from_micros(1));
        record.tenant = Some(TenantId::new(if i % 2 == 0 { "even" } else { "odd" }));
        record.tags.insert("feature".into(), "chat".into());
        if i % 10 == 0 {
            record.status = Status::Error(ErrorKind::Timeout);
        }
        collector.record(record).unwrap();
    }
    // mini: 3 records at 200 ms, cost unknown.
    for i in 0..3 {
        collector.record(simple(1_000 + i, T0, "mini", 200)).unwrap();
    }
    let live = collector.live_stats();
    assert_eq!(live.current_window_start_ms, T0);
    let model = live.current(LiveDimension::Model, "gpt-4o").unwrap();
    assert_eq!(model.count, 100);
    assert_eq!(model.errors, 10);
    assert_eq!(model.error_rate, 0.1);
    assert_eq!(model.cost, Money::from_micros(100), "exact");
    assert_eq!(model.cost_unknown, 0);
    // Nearest-rank quantiles of 1..=100 ms are 50, 95, 99 ms; histograms are within 1 %.
    for (got, want) in
        [(model.latency_ms.p50, 50.0), (model.latency_ms.p95, 95.0), (model.latency_ms.p99, 99.0)]
    {
        assert!((got - want).abs() <= 0.01 * want, "{got} vs {want}");
    }
    assert!((model.latency_ms.mean - 50.5).abs() < 1e-9, "mean from the exact sum");
    let ttft = model.ttft_ms.unwrap();
    assert!((ttft.p50 - 25.0).abs() <= 0.25, "{}", ttft.p50);
    assert_eq!(live.current(LiveDimension::Tenant, "even").unwrap().count, 50);
    assert_eq!(live.current(LiveDimension::Tenant, "odd").unwrap().errors, 0, "errors are i=10k");
    assert_eq!(live.current(LiveDimension::Tag, "feature=chat").unwrap().count, 100);
    let mini = live.current(LiveDimension::Model, "mini").unwrap();
    assert_eq!((mini.count, mini.cost_unknown), (3, 3));
    assert!(mini.ttft_ms.is_none());
    let total = live.current(LiveDimension::Total, "").unwrap();
    assert_eq!(total.count, 103);
    // Serialisable for /api/stats.
    let json = serde_json::to_value(&live).unwrap();
    assert_eq!(json["series"][0]["dimension"], "total");
}

#[test]
fn windows_rotate_with_the_clock() {
    let clock = Arc::new(ManualClock::new(T0));
    let collector = start(&clock);
    collector.record(simple(1, T0, "m", 10)).unwrap();
    clock.set(T0 + 60_000);
    collector.record(simple(2, T0 + 60_000, "m", 20)).unwrap();
    collector.record(simple(3, T0 + 60_000, "m", 20)).unwrap();
    let live = collector.live_stats();
    let windows = &live.series(LiveDimension::Model, "m").unwrap().windows;
    assert_eq!(
        windows.iter().map(|w| (w.window_start_ms - T0, w.count)).collect::<Vec<_>>(),
        [(60_000, 2), (0, 1)],
        "newest first"
    );
    // Three windows are kept: at T0 + 3 min the first one is gone.
    clock.set(T0 + 180_000);
    let live = collector.live_stats();
    let windows = &live.series(LiveDimension::Model, "m").unwrap().windows;
    assert_eq!(windows.len(), 1);
    assert!(live.current(LiveDimension::Model, "m").is_none(), "nothing in the current window");
    // Long after, the series disappears altogether.
    clock.set(T0 + 3_600_000);
    assert!(collector.live_stats().series.is_empty());
}
