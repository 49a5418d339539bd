//! Conformance suites for the storage seams. Every implementation (in-memory here, sled in
//! `llmopt-storage`, any future PostgreSQL or Redis backend) runs the same functions on a fresh,
//! empty store. Enabled by the `testsuite` feature.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use serde_json::json;

use crate::{
    fingerprint::Fingerprint,
    ids::{RequestId, TenantId},
    keys::{BudgetPeriod, KeyStore, VirtualKey},
    money::Money,
    record::{
        CacheOutcome, Endpoint, ErrorKind, ExperimentArm, Feedback, FeedbackValue, Fingerprints,
        RequestRecord, Status,
    },
    store::{
        AggregateQuery, AuditEntry, ExperimentDoc, ExperimentStore, GroupBy, PolicyDoc,
        PolicyStore, RecordFilter, RecordQuery, RecordStore, StoreError,
    },
    usage::Usage,
};

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

/// A record with every field set, so that a round trip checks them all.
pub fn full_record(index: u64, ts_ms: i64, model: &str, tenant: &str) -> RequestRecord {
    let mut record = RequestRecord::new(format!("req-{index:06}"), ts_ms, "openai", model);
    record.tenant = Some(TenantId::new(tenant));
    record.requested_model = "gpt-4o".into();
    record.endpoint = Endpoint::ChatCompletions;
    record.tags.insert(
        "feature".to_owned(),
        if index.is_multiple_of(2) { "chat" } else { "search" }.to_owned(),
    );
    record.status = if index % 10 == 9 { Status::Error(ErrorKind::Upstream) } else { Status::Ok };
    record.latency_us = 1_000 * (index % 100 + 1);
    record.ttft_us = Some(500 * (index % 100 + 1));
    record.upstream_us = Some(900 * (index % 100 + 1));
    record.usage = Some(Usage {
        input_tokens: 1_000 + index,
        cache_read_tokens: 500,
        cache_write_5m_tokens: 10,
        cache_write_1h_tokens: 5,
        output_tokens: 200,
        reasoning_tokens: 50,
    });
    record.cost = Some(Money(1_234_567 * (index as i128 + 1)));
    record.cache = if index.is_multiple_of(5) { CacheOutcome::Hit } else { CacheOutcome::Miss };
    record.saved_cost = index.is_multiple_of(5).then_some(Money(42));
    record.stream = index.is_multiple_of(3);
    record.experiment = Some(ExperimentArm {
        experiment_id: if index.is_multiple_of(4) { "exp-a" } else { "exp-b" }.to_owned(),
        arm: "control".to_owned(),
    });
    record.fingerprints = Fingerprints {
        request: Some(Fingerprint(u128::from(index) << 64 | 7)),
        prefix: Some(Fingerprint(99)),
        prefix_blocks: vec![1, 2, index],
    };
    record.max_tokens = Some(512);
    record.stop_reason = Some("stop".to_owned());
    record
}

/// Runs every record-store check on an empty store.
pub fn record_store_suite(store: &dyn RecordStore) {
    empty_store(store);
    round_trip_and_ranges(store);
    unknown_usage_stays_unknown(store);
    feedback_joins(store);
    aggregates(store);
    duplicates_replace(store);
    retention(store);
    store.flush().unwrap();
}

fn empty_store(store: &dyn RecordStore) {
    assert_eq!(store.count().unwrap(), 0, "a new store is empty");
    assert!(store.scan(&RecordQuery::range(i64::MIN, i64::MAX)).unwrap().is_empty());
    assert!(store.get(&RequestId::new("nope")).unwrap().is_none());
    let backwards = RecordQuery::range(10, 5);
    assert!(matches!(store.scan(&backwards), Err(StoreError::InvalidQuery(_))));
}

fn round_trip_and_ranges(store: &dyn RecordStore) {
    // 200 records, one per second, two models, two tenants; several share a timestamp.
    let records: Vec<RequestRecord> = (0..200)
        .map(|i| {
            let model = if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
            let tenant = if i % 3 == 0 { "acme" } else { "globex" };
            full_record(i, T0 + (i as i64 / 2) * 1_000, model, tenant)
        })
        .collect();
    store.append(&records[..150]).unwrap();
    store.append(&records[150..]).unwrap();
    assert_eq!(store.count().unwrap(), 200);

    let all = store.scan(&RecordQuery::range(T0, T0 + 1_000_000)).unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(all, records, "records round-trip exactly, oldest first, ties in append order");

    let window = store.scan(&RecordQuery::range(T0 + 10_000, T0 + 20_000)).unwrap();
    assert_eq!(window.len(), 20, "[from, to) is half-open");
    assert!(window.iter().all(|r| r.ts_ms >= T0 + 10_000 && r.ts_ms < T0 + 20_000));

    let limited = store
        .scan(&RecordQuery { limit: Some(7), ..RecordQuery::range(T0, T0 + 1_000_000) })
        .unwrap();
    assert_eq!(limited, records[..7].to_vec());

    let filters = [
        (RecordFilter { model: Some("gpt-4o-mini".into()), ..Default::default() }, 100),
        (RecordFilter { tenant: Some("acme".into()), ..Default::default() }, 67),
        (RecordFilter { provider: Some("openai".into()), ..Default::default() }, 200),
        (RecordFilter { provider: Some("anthropic".into()), ..Default::default() }, 0),
        (RecordFilter { tag: Some(("feature".into(), "chat".into())), ..Default::default() }, 100),
        (RecordFilter { experiment_id: Some("exp-a".into()), ..Default::default() }, 50),
        (
            RecordFilter {
                model: Some("gpt-4o".into()),
                tenant: Some("acme".into()),
                ..Default::default()
            },
            34,
        ),
    ];
    for (filter, expected) in filters {
        let query =
            RecordQuery { filter: filter.clone(), ..RecordQuery::range(T0, T0 + 1_000_000) };
        let found = store.scan(&query).unwrap();
        assert_eq!(found.len(), expected, "filter {filter:?}");
        assert!(found.iter().all(|r| filter.matches(r)));
    }

    let got = store.get(&RequestId::new("req-000042")).unwrap();
    assert_eq!(got.as_ref(), Some(&records[42]));
}

fn unknown_usage_stays_unknown(store: &dyn RecordStore) {
    let mut record =
        RequestRecord::new("cut-stream", T0 + 5_000_000, "anthropic", "claude-haiku-4-5");
    record.status = Status::Error(ErrorKind::ClientDisconnected);
    record.stream = true;
    store.append(std::slice::from_ref(&record)).unwrap();
    let got = store.get(&RequestId::new("cut-stream")).unwrap().unwrap();
    assert_eq!(got.usage, None, "unknown usage is not zero");
    assert_eq!(got.cost, None, "unknown cost is not zero");
    assert_eq!(got, record);
}

fn feedback_joins(store: &dyn RecordStore) {
    let feedback =
        Feedback { metric: "correct".into(), value: FeedbackValue::Bool(true), ts_ms: T0 };
    assert!(store.add_feedback(&RequestId::new("req-000003"), feedback.clone()).unwrap());
    let rating = Feedback { metric: "rating".into(), value: FeedbackValue::Number(4.5), ts_ms: T0 };
    assert!(store.add_feedback(&RequestId::new("req-000003"), rating.clone()).unwrap());
    assert!(!store.add_feedback(&RequestId::new("missing"), feedback.clone()).unwrap());
    let got = store.get(&RequestId::new("req-000003")).unwrap().unwrap();
    assert_eq!(got.feedback, vec![feedback, rating.clone()]);
    let scanned = store.scan(&RecordQuery::range(T0 + 1_000, T0 + 2_000)).unwrap();
    assert!(scanned.iter().any(|r| r.id.as_str() == "req-000003" && r.feedback.len() == 2));
    // Idempotent per metric: the same metric again replaces its value, the latest wins.
    let changed =
        Feedback { metric: "correct".into(), value: FeedbackValue::Bool(false), ts_ms: T0 + 5 };
    assert!(store.add_feedback(&RequestId::new("req-000003"), changed.clone()).unwrap());
    assert!(store.add_feedback(&RequestId::new("req-000003"), changed.clone()).unwrap());
    let got = store.get(&RequestId::new("req-000003")).unwrap().unwrap();
    assert_eq!(got.feedback, vec![changed, rating]);
}

fn aggregates(store: &dyn RecordStore) {
    let query = AggregateQuery {
        from_ms: T0,
        to_ms: T0 + 100_000,
        window_ms: 60_000,
        group_by: GroupBy::Model,
        filter: RecordFilter::default(),
    };
    let rows = store.aggregate(&query).unwrap();
    let scanned = store.scan(&RecordQuery::range(T0, T0 + 100_000)).unwrap();
    assert_eq!(rows.len(), 4, "two windows × two models");
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), scanned.len() as u64);
    for row in &rows {
        let members: Vec<&RequestRecord> = scanned
            .iter()
            .filter(|r| {
                query.window_of(r.ts_ms) == row.window_start_ms && r.served_model.0 == row.group
            })
            .collect();
        assert_eq!(row.count, members.len() as u64);
        let cost: Money = members.iter().filter_map(|r| r.cost).sum();
        assert_eq!(row.cost, cost, "aggregate cost is exact");
        let errors = members.iter().filter(|r| !r.status.is_ok()).count() as u64;
        assert_eq!(row.errors, errors);
        let output: u64 = members.iter().filter_map(|r| r.usage).map(|u| u.output_tokens).sum();
        assert_eq!(row.output_tokens, output);
        let hits = members.iter().filter(|r| r.cache == CacheOutcome::Hit).count() as u64;
        assert_eq!(row.cache_hits, hits);
        let mut latencies: Vec<f64> = members.iter().map(|r| r.latency_ms()).collect();
        latencies.sort_by(f64::total_cmp);
        let p50 = crate::store::quantile_sorted(&latencies, 0.5);
        assert!(
            (row.latency_p50_ms - p50).abs() <= 0.01 * p50 + 0.01,
            "p50 {} vs exact {p50}",
            row.latency_p50_ms
        );
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        assert!((row.latency_mean_ms - mean).abs() <= 0.01 * mean);
    }
    let total = store
        .aggregate(&AggregateQuery {
            group_by: GroupBy::Total,
            window_ms: 3_600_000,
            ..query.clone()
        })
        .unwrap();
    assert_eq!(total.len(), 1);
    assert_eq!(total[0].count, 200);
    let tagged = store
        .aggregate(&AggregateQuery { group_by: GroupBy::Tag("feature".into()), ..query.clone() })
        .unwrap();
    assert!(tagged.iter().all(|r| r.group == "chat" || r.group == "search"));
    let bad = AggregateQuery { window_ms: 0, ..query };
    assert!(matches!(store.aggregate(&bad), Err(StoreError::InvalidQuery(_))));
}

fn duplicates_replace(store: &dyn RecordStore) {
    let before = store.count().unwrap();
    let mut record = full_record(7, T0 + 3_500, "gpt-4o-mini", "acme");
    record.latency_us = 777_000;
    store.append(std::slice::from_ref(&record)).unwrap();
    assert_eq!(store.count().unwrap(), before, "a duplicate id replaces, it does not add");
    assert_eq!(store.get(&record.id).unwrap().unwrap().latency_us, 777_000);
}

fn retention(store: &dyn RecordStore) {
    let before = store.count().unwrap();
    let deleted = store.delete_before(T0 + 50_000).unwrap();
    assert_eq!(deleted, 100, "records in the first 50 s go");
    assert_eq!(store.count().unwrap(), before - 100);
    assert!(store.scan(&RecordQuery::range(T0, T0 + 50_000)).unwrap().is_empty());
    assert!(store.get(&RequestId::new("req-000001")).unwrap().is_none());
    assert!(store.get(&RequestId::new("req-000150")).unwrap().is_some());
}

/// Runs every experiment-store check on an empty store.
pub fn experiment_store_suite(store: &dyn ExperimentStore) {
    assert!(store.list().unwrap().is_empty());
    assert!(store.get("e1").unwrap().is_none());
    let doc = ExperimentDoc {
        id: "e1".into(),
        status: "draft".into(),
        revision: 0,
        updated_ms: T0,
        body: json!({"arms": ["control", "cheap"], "counts": [0, 0]}),
    };
    assert_eq!(store.put(&doc).unwrap(), 1);
    let stale = store.put(&doc);
    assert!(matches!(stale, Err(StoreError::Conflict { expected: 0, found: 1, .. })), "{stale:?}");
    let mut running = store.get("e1").unwrap().unwrap();
    assert_eq!(running.revision, 1);
    assert_eq!(running.body, doc.body);
    running.status = "running".into();
    running.body = json!({"arms": ["control", "cheap"], "counts": [10, 12]});
    assert_eq!(store.put(&running).unwrap(), 2);
    let other = ExperimentDoc { id: "a0".into(), revision: 0, ..doc.clone() };
    store.put(&other).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a0", "e1"]);
    assert_eq!(listed[1].status, "running");
    assert_eq!(listed[1].body["counts"], json!([10, 12]));
    assert!(store.delete("a0").unwrap());
    assert!(!store.delete("a0").unwrap());
    assert_eq!(store.list().unwrap().len(), 1);
}

/// Runs every policy-store check on an empty store.
pub fn policy_store_suite(store: &dyn PolicyStore) {
    assert!(store.load().unwrap().is_none());
    assert_eq!(store.current_version().unwrap(), 0);
    assert!(store.history(10).unwrap().is_empty());
    let v1 = PolicyDoc {
        version: 1,
        updated_ms: T0,
        reason: "initial".into(),
        body: json!({"routes": []}),
    };
    store.save(&v1).unwrap();
    let v2 = PolicyDoc {
        version: 2,
        updated_ms: T0 + 1,
        reason: "adopt exp-1".into(),
        body: json!({"routes": [{"from": "gpt-4o", "to": "gpt-4o-mini"}]}),
    };
    store.save(&v2).unwrap();
    assert!(matches!(store.save(&v2), Err(StoreError::Conflict { .. })), "versions only grow");
    assert_eq!(store.load().unwrap(), Some(v2.clone()));
    assert_eq!(store.current_version().unwrap(), 2);
    assert_eq!(store.history(10).unwrap(), vec![v2, v1.clone()]);
    assert_eq!(store.history(1).unwrap().len(), 1);

    assert!(store.audit(0, 10).unwrap().is_empty());
    let entry = |kind: &str| AuditEntry {
        seq: 0,
        ts_ms: T0,
        kind: kind.into(),
        subject: "exp-1".into(),
        detail: json!({"p": 0.01}),
    };
    let first = store.append_audit(&entry("experiment_started")).unwrap();
    let second = store.append_audit(&entry("adopted")).unwrap();
    assert!(second > first);
    let log = store.audit(0, 10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].kind, "adopted");
    assert_eq!(log[1].seq, second);
    assert_eq!(store.audit(first, 10).unwrap().len(), 1);
    assert_eq!(store.audit(0, 1).unwrap().len(), 1);
}

/// A virtual key with every field set.
pub fn virtual_key(id: &str, digest_byte: char) -> VirtualKey {
    VirtualKey {
        id: id.to_owned(),
        sha256: digest_byte.to_string().repeat(64),
        tenant: "team-a".to_owned(),
        budget: Some(Money::from_micros(2_500_000)),
        budget_period: BudgetPeriod::Day,
        models: vec!["gpt-4o-mini".to_owned(), "claude-*".to_owned()],
        requests_per_minute: Some(60),
        expires_at_ms: Some(T0 + 86_400_000),
        created_ms: T0,
        revoked_ms: None,
    }
}

/// Runs every key-store check on an empty store.
pub fn key_store_suite(store: &dyn KeyStore) {
    assert!(store.list().unwrap().is_empty(), "a new store is empty");
    assert_eq!(store.get("key_a").unwrap(), None);
    let first = virtual_key("key_b", 'b');
    let second = VirtualKey {
        budget: None,
        budget_period: BudgetPeriod::Month,
        models: Vec::new(),
        requests_per_minute: None,
        expires_at_ms: None,
        ..virtual_key("key_a", 'a')
    };
    store.insert(&first).unwrap();
    store.insert(&second).unwrap();
    assert_eq!(store.get("key_b").unwrap(), Some(first.clone()), "every field round-trips");
    assert_eq!(store.list().unwrap(), vec![second.clone(), first.clone()], "ordered by id");
    assert!(
        matches!(store.insert(&first), Err(StoreError::Conflict { .. })),
        "an id is never replaced"
    );
    let same_digest = VirtualKey { id: "key_c".to_owned(), ..first.clone() };
    assert!(
        matches!(store.insert(&same_digest), Err(StoreError::Conflict { .. })),
        "a digest belongs to one key"
    );
    assert_eq!(store.list().unwrap().len(), 2);

    assert!(store.revoke("key_b", T0 + 5).unwrap());
    assert!(store.revoke("key_b", T0 + 9).unwrap(), "revoking twice is not an error");
    assert_eq!(store.get("key_b").unwrap().unwrap().revoked_ms, Some(T0 + 5), "first time kept");
    assert!(!store.revoke("key_z", T0).unwrap(), "unknown id");
    assert_eq!(store.get("key_a").unwrap().unwrap().revoked_ms, None, "others untouched");
    assert_eq!(store.list().unwrap().len(), 2, "revoked keys stay listed");
}
