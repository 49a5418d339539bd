//! Aggregates from persisted windows against aggregates computed from raw records by the core's
//! reference function (`aggregate_records`, exact quantiles with numpy's interpolation).

use llmopt_core::{
    AggregateQuery, AggregateRow, ErrorKind, GroupBy, RecordFilter, RecordQuery, RecordStore,
    Status,
    store::aggregate_records,
    testsuite::{T0, full_record},
};
use llmopt_storage::StorageConfig;

use crate::fresh_store;

fn workload() -> Vec<llmopt_core::RequestRecord> {
    // 3,000 records over 50 minutes with varied latency, three models, tenants and a tag that
    // a third of the records lack.
    (0..3_000)
        .map(|i| {
            let model = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"][i as usize % 3];
            let tenant = ["acme", "globex"][(i as usize / 7) % 2];
            let mut record = full_record(i, T0 + i as i64 * 1_000, model, tenant);
            record.latency_us = 3_000 + (i * 7_919) % 900_000;
            record.ttft_us = None;
            if i % 3 == 0 {
                record.tags.clear();
            }
            if i % 11 == 0 {
                record.tenant = None;
            }
            if i % 13 == 0 {
                record.status = Status::Error(ErrorKind::Timeout);
            }
            record
        })
        .collect()
}

fn assert_rows_close(actual: &[AggregateRow], expected: &[AggregateRow], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: row count");
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!((a.window_start_ms, &a.group), (e.window_start_ms, &e.group), "{what}");
        assert_eq!(a.count, e.count, "{what} {}", e.group);
        assert_eq!(a.errors, e.errors, "{what}");
        assert_eq!(a.cost, e.cost, "{what}: cost is exact");
        assert_eq!(a.cost_unknown, e.cost_unknown);
        assert_eq!(a.saved_cost, e.saved_cost);
        assert_eq!(a.input_tokens, e.input_tokens);
        assert_eq!(a.output_tokens, e.output_tokens);
        assert_eq!(a.cache_read_tokens, e.cache_read_tokens);
        assert_eq!(a.cache_write_tokens, e.cache_write_tokens);
        assert_eq!(a.cache_hits, e.cache_hits);
        assert!((a.latency_mean_ms - e.latency_mean_ms).abs() <= 1e-9 * e.latency_mean_ms.max(1.0));
        for (got, want) in [
            (a.latency_p50_ms, e.latency_p50_ms),
            (a.latency_p95_ms, e.latency_p95_ms),
            (a.latency_p99_ms, e.latency_p99_ms),
        ] {
            assert!((got - want).abs() <= 0.01 * want, "{what} {}: {got} vs exact {want}", e.group);
        }
    }
}

#[test]
fn sketch_aggregates_agree_with_raw_for_every_grouping() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    let records = workload();
    for chunk in records.chunks(256) {
        store.records().append(chunk).unwrap();
    }
    let groupings = [
        GroupBy::Total,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Tenant,
        GroupBy::Tag("feature".into()),
        GroupBy::Tag("absent".into()),
    ];
    // Aligned and unaligned ranges; 5-minute and 1-hour query windows (multiples of 60 s).
    let ranges = [(T0, T0 + 3_000_000), (T0 + 12_345, T0 + 2_345_678), (T0 - 60_000, T0 + 90_000)];
    for group_by in groupings {
        for (from_ms, to_ms) in ranges {
            for window_ms in [300_000, 3_600_000] {
                let query = AggregateQuery {
                    from_ms,
                    to_ms,
                    window_ms,
                    group_by: group_by.clone(),
                    filter: RecordFilter::default(),
                };
                let expected = aggregate_records(&query, records.iter());
                let actual = store.records().aggregate(&query).unwrap();
                assert_rows_close(&actual, &expected, &format!("{query:?}"));
            }
        }
    }
}

#[test]
fn aggregates_follow_duplicates_and_outlive_raw_records() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    let records = store.records();
    let mut workload = workload();
    records.append(&workload).unwrap();
    // Replace 100 records with different latencies and costs.
    for record in workload.iter_mut().step_by(30) {
        record.latency_us += 123_456;
        record.cost = None;
    }
    let replaced: Vec<_> = workload.iter().step_by(30).cloned().collect();
    records.append(&replaced).unwrap();
    let query = AggregateQuery {
        from_ms: T0,
        to_ms: T0 + 3_000_000,
        window_ms: 600_000,
        group_by: GroupBy::Model,
        filter: RecordFilter::default(),
    };
    let expected = aggregate_records(&query, workload.iter());
    assert_rows_close(&records.aggregate(&query).unwrap(), &expected, "after replacement");

    // Raw records go, aggregates stay.
    records.delete_before(T0 + 3_000_000).unwrap();
    assert!(records.scan(&RecordQuery::range(T0, T0 + 3_000_000)).unwrap().is_empty());
    assert_rows_close(&records.aggregate(&query).unwrap(), &expected, "after raw retention");
}

#[test]
fn late_records_merge_with_windows_already_written_and_evicted_from_memory() {
    // The store keeps only the newest windows' states in memory between batches. Append every
    // other 100-record chunk first, then the rest: the second pass lands in windows written
    // long before (and evicted), which must be read back and merged, not started afresh.
    let (_dir, store) = fresh_store(StorageConfig::default());
    let records = workload();
    let chunks: Vec<&[llmopt_core::RequestRecord]> = records.chunks(100).collect();
    for chunk in chunks.iter().step_by(2).chain(chunks.iter().skip(1).step_by(2)) {
        store.records().append(chunk).unwrap();
    }
    for group_by in [GroupBy::Total, GroupBy::Model, GroupBy::Tag("feature".into())] {
        let query = AggregateQuery {
            from_ms: T0,
            to_ms: T0 + 3_000_000,
            window_ms: 60_000,
            group_by,
            filter: RecordFilter::default(),
        };
        let expected = aggregate_records(&query, records.iter());
        assert_eq!(expected.len() % 50, 0, "every one-minute window has rows");
        assert_rows_close(&store.records().aggregate(&query).unwrap(), &expected, "late records");
    }
}
