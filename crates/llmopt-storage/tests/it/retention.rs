use std::time::Duration;

use llmopt_core::{
    AggregateQuery, GroupBy, RecordFilter, RecordQuery, RecordStore,
    testsuite::{T0, full_record},
};
use llmopt_storage::{RetentionReport, StorageConfig};

use crate::fresh_store;

const HOUR: i64 = 3_600_000;

#[test]
fn retention_deletes_raw_records_before_aggregates() {
    let config = StorageConfig {
        raw_retention: Some(Duration::from_secs(2 * 3600)),
        aggregate_retention: Some(Duration::from_secs(5 * 3600)),
        aggregate_window: Duration::from_secs(3600),
        ..StorageConfig::default()
    };
    let (_dir, store) = fresh_store(config);
    let records = store.records();
    // Ten records in each of eight hours.
    let all: Vec<_> =
        (0..80).map(|i| full_record(i, T0 + (i as i64 / 10) * HOUR + i as i64, "m", "t")).collect();
    records.append(&all).unwrap();
    let now = T0 + 8 * HOUR;
    let report = store.run_retention(now).unwrap();
    // Raw: hours 0..6 are older than two hours (cut at T0 + 6 h): 60 records.
    // Aggregates: windows starting before T0 + 3 h: hours 0, 1, 2, each with six groups
    // (total, model, provider, tenant, feature=chat, feature=search).
    assert_eq!(report, RetentionReport { raw_deleted: 60, aggregates_deleted: 3 * 6 });
    assert_eq!(records.count().unwrap(), 20);
    assert_eq!(records.scan(&RecordQuery::range(T0, now)).unwrap(), all[60..].to_vec());
    let hourly = records
        .aggregate(&AggregateQuery {
            from_ms: T0,
            to_ms: now,
            window_ms: HOUR,
            group_by: GroupBy::Total,
            filter: RecordFilter::default(),
        })
        .unwrap();
    let windows: Vec<i64> = hourly.iter().map(|row| (row.window_start_ms - T0) / HOUR).collect();
    assert_eq!(windows, [3, 4, 5, 6, 7], "aggregates kept longer than raw records");
    assert!(hourly.iter().all(|row| row.count == 10));
    // A second pass finds nothing more.
    assert_eq!(store.run_retention(now).unwrap(), RetentionReport::default());
}

#[test]
fn no_retention_configured_keeps_everything() {
    let config = StorageConfig {
        raw_retention: None,
        aggregate_retention: None,
        ..StorageConfig::default()
    };
    let (_dir, store) = fresh_store(config);
    store.records().append(&[full_record(1, T0, "m", "t")]).unwrap();
    assert_eq!(store.run_retention(T0 + 1_000 * HOUR).unwrap(), RetentionReport::default());
    assert_eq!(store.records().count().unwrap(), 1);
}
