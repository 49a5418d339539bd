//! The PostgreSQL stores against a real server on loopback (one per test process, a database
//! per test): the shared conformance suites, migrations, partitions and retention, two stores
//! (replicas) on one database, a server restart, and the errors of a server that is down.

use llmopt_core::{
    AggregateQuery, GroupBy, RecordFilter, RecordQuery, RecordStore, RequestId, StoreError,
    testsuite::{T0, experiment_store_suite, full_record, policy_store_suite, record_store_suite},
};
use llmopt_storage::PgStore;

use crate::test_engines::TestPostgres;

const DAY_MS: i64 = 86_400_000;

/// A fresh database on the shared server; `None` when engines are skipped.
fn fresh() -> Option<(String, PgStore)> {
    let server = TestPostgres::shared()?;
    let url = server.database_url();
    let store = PgStore::open(&url).expect("the store opens on a fresh database");
    Some((url, store))
}

fn psql(url: &str, sql: &str) -> String {
    TestPostgres::shared().expect("the server of this test").psql(url, sql)
}

#[test]
fn record_store_passes_the_conformance_suite() {
    let Some((_, store)) = fresh() else { return };
    record_store_suite(store.records().as_ref());
}

#[test]
fn experiment_store_passes_the_conformance_suite() {
    let Some((_, store)) = fresh() else { return };
    experiment_store_suite(store.experiments().as_ref());
}

#[test]
fn policy_store_passes_the_conformance_suite() {
    let Some((_, store)) = fresh() else { return };
    policy_store_suite(store.policy().as_ref());
}

#[test]
fn key_store_passes_the_conformance_suite() {
    let Some((_, store)) = fresh() else { return };
    llmopt_core::testsuite::key_store_suite(store.keys().as_ref());
    // Keys are shared: a second store on the same database (another replica) sees them.
    let Some((url, store)) = fresh() else { return };
    let key = llmopt_core::VirtualKey {
        id: "key_shared".into(),
        sha256: "ab".repeat(32),
        tenant: "team-a".into(),
        budget: None,
        budget_period: Default::default(),
        models: Vec::new(),
        requests_per_minute: None,
        expires_at_ms: None,
        created_ms: T0,
        revoked_ms: None,
    };
    llmopt_core::KeyStore::insert(store.keys().as_ref(), &key).unwrap();
    let replica = PgStore::open(&url).unwrap();
    assert!(llmopt_core::KeyStore::revoke(replica.keys().as_ref(), "key_shared", T0 + 1).unwrap());
    let seen = llmopt_core::KeyStore::get(store.keys().as_ref(), "key_shared").unwrap().unwrap();
    assert_eq!(seen.revoked_ms, Some(T0 + 1));
}

#[test]
fn aggregates_match_the_in_memory_store_exactly() {
    let Some((_, store)) = fresh() else { return };
    let memory = llmopt_core::MemoryRecordStore::new();
    let records: Vec<_> = (0..3_000)
        .map(|i| {
            let mut record = full_record(
                i,
                T0 - 90_000 + i as i64 * 137,
                ["gpt-4o", "gpt-4o-mini", "claude"][i as usize % 3],
                ["a", "b"][i as usize % 2],
            );
            record.latency_us = (i * 7_919) % 100_003 + 17;
            if i % 11 == 0 {
                record.tags.clear();
                record.tenant = None;
                record.cost = None;
            }
            record
        })
        .collect();
    store.records().append(&records).unwrap();
    memory.append(&records).unwrap();
    for group_by in [
        GroupBy::Total,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Tenant,
        GroupBy::Tag("feature".into()),
    ] {
        for filter in [
            RecordFilter::default(),
            RecordFilter { tenant: Some("a".into()), ..Default::default() },
            RecordFilter { tag: Some(("feature".into(), "chat".into())), ..Default::default() },
        ] {
            let query = AggregateQuery {
                from_ms: T0 - 95_000,
                to_ms: T0 + 200_000,
                window_ms: 60_000,
                group_by: group_by.clone(),
                filter,
            };
            let expected = memory.aggregate(&query).unwrap();
            let found = store.records().aggregate(&query).unwrap();
            assert_eq!(found.len(), expected.len(), "{query:?}");
            for (found, expected) in found.iter().zip(&expected) {
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
                assert!(close(found.latency_p50_ms, expected.latency_p50_ms), "{found:?}");
                assert!(close(found.latency_p95_ms, expected.latency_p95_ms), "{found:?}");
                assert!(close(found.latency_p99_ms, expected.latency_p99_ms), "{found:?}");
                assert!(close(found.latency_mean_ms, expected.latency_mean_ms), "{found:?}");
                let strip = |row: &llmopt_core::AggregateRow| llmopt_core::AggregateRow {
                    latency_mean_ms: 0.0,
                    latency_p50_ms: 0.0,
                    latency_p95_ms: 0.0,
                    latency_p99_ms: 0.0,
                    ..row.clone()
                };
                assert_eq!(strip(found), strip(expected), "counts and sums are exact");
            }
        }
    }
}

#[test]
fn records_go_to_day_partitions_and_retention_drops_them() {
    let Some((url, store)) = fresh() else { return };
    let records = store.records();
    // Three days, 100 records each.
    let batch: Vec<_> = (0..300)
        .map(|i| {
            full_record(i, T0 + (i as i64 / 100) * DAY_MS + (i as i64 % 100) * 1_000, "m", "t")
        })
        .collect();
    records.append(&batch).unwrap();
    let partitions = || {
        psql(
            &url,
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'llmopt_records'::regclass",
        )
    };
    assert_eq!(
        partitions(),
        "llmopt_records_20260101,llmopt_records_20260102,llmopt_records_20260103"
    );
    // The cutoff is in the middle of the second day: the first partition goes whole, the
    // second keeps its newer half.
    let deleted = records.delete_before(T0 + DAY_MS + 50_000).unwrap();
    assert_eq!(deleted, 150);
    assert_eq!(partitions(), "llmopt_records_20260102,llmopt_records_20260103");
    assert_eq!(records.count().unwrap(), 150);
    let left = records.scan(&RecordQuery::range(i64::MIN, i64::MAX)).unwrap();
    assert_eq!(left, batch[150..].to_vec());
    // A record for a dropped day gets its partition again.
    records.append(std::slice::from_ref(&batch[0])).unwrap();
    assert_eq!(records.get(&RequestId::new("req-000000")).unwrap().as_ref(), Some(&batch[0]));
}

#[test]
fn two_replicas_share_one_database() {
    let Some((url, first)) = fresh() else { return };
    let second = PgStore::open(&url).expect("a second replica opens the migrated database");
    let day_one: Vec<_> = (0..10).map(|i| full_record(i, T0 + i as i64, "m", "t")).collect();
    first.records().append(&day_one).unwrap();
    assert_eq!(second.records().count().unwrap(), 10, "one replica sees the other's records");
    // The second replica's retention drops the day the first one has cached as existing; the
    // first one's next append to that day still lands.
    assert_eq!(second.records().delete_before(T0 + DAY_MS).unwrap(), 10);
    first.records().append(&day_one[..3]).unwrap();
    assert_eq!(second.records().count().unwrap(), 3);
    // Policy versions only grow across replicas.
    let doc = |version| llmopt_core::PolicyDoc {
        version,
        updated_ms: T0,
        reason: "r".into(),
        body: serde_json::json!({}),
    };
    llmopt_core::PolicyStore::save(&*first.policy(), &doc(1)).unwrap();
    let stale = llmopt_core::PolicyStore::save(&*second.policy(), &doc(1));
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    assert_eq!(llmopt_core::PolicyStore::current_version(&*second.policy()).unwrap(), 1);
}

#[test]
fn migrations_are_recorded_and_a_newer_schema_is_refused() {
    let Some((url, store)) = fresh() else { return };
    drop(store);
    assert_eq!(
        psql(&url, "SELECT string_agg(version || ':' || name, ',') FROM llmopt_schema_migrations"),
        "1:initial,2:virtual_keys"
    );
    // Opening again applies nothing twice.
    PgStore::open(&url).expect("reopens");
    assert_eq!(psql(&url, "SELECT count(*) FROM llmopt_schema_migrations"), "2");
    psql(
        &url,
        "INSERT INTO llmopt_schema_migrations (version, name) VALUES (3, 'from_the_future')",
    );
    let error = PgStore::open(&url).expect_err("a newer schema is refused");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("schema is version 3, newer than this build reads (2)"), "{message}");
}

#[test]
fn a_server_that_is_down_is_one_clear_error_without_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://llmopt:s3cret-password@127.0.0.1:{port}/llmopt");
    let error = PgStore::open(&url).expect_err("nothing listens there");
    let message = error.to_string();
    assert!(
        message.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    let malformed = PgStore::open("postgresql://u:s3cret@127.0.0.1:notaport/db").unwrap_err();
    assert!(!malformed.to_string().contains("s3cret"), "{malformed}");
}

#[test]
fn the_store_reconnects_after_the_server_restarts() {
    let Some(mut server) = TestPostgres::start() else { return };
    let url = server.database_url();
    let store = PgStore::open(&url).unwrap();
    let records = store.records();
    records.append(&[full_record(1, T0, "m", "t")]).unwrap();
    server.stop();
    let down = records.append(&[full_record(2, T0, "m", "t")]);
    assert!(matches!(down, Err(StoreError::Io { .. })), "{down:?}");
    server.restart();
    records.append(&[full_record(3, T0, "m", "t")]).unwrap();
    let ids: Vec<String> = records
        .scan(&RecordQuery::range(T0, T0 + 1))
        .unwrap()
        .into_iter()
        .map(|record| record.id.0)
        .collect();
    assert_eq!(ids, ["req-000001", "req-000003"]);
}

#[test]
fn one_process_leads_and_another_takes_over_when_it_goes() {
    let Some((url, first)) = fresh() else { return };
    let second = PgStore::open(&url).unwrap();
    let (a, b) = (first.leadership("optimizer"), second.leadership("optimizer"));
    assert!(a.try_lead().unwrap(), "the first to ask leads");
    assert!(a.try_lead().unwrap(), "and keeps leading");
    assert!(!b.try_lead().unwrap(), "the other does not");
    assert!(second.leadership("retention").try_lead().unwrap(), "another task, another lock");
    // The leader goes away (its session ends with it): the other takes over.
    drop(a);
    drop(first);
    // The server notices the closed session at once; the old runtime stops in the background.
    let start = std::time::Instant::now();
    while !b.try_lead().unwrap() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "no takeover");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    b.resign();
    let third = PgStore::open(&url).unwrap();
    assert!(third.leadership("optimizer").try_lead().unwrap(), "resigning frees it");
}

/// Costs go to `numeric` columns in COPY's binary form: every digit group, zero groups inside
/// and at the end, negative values and the extremes of picodollars come back exact.
#[test]
fn costs_are_copied_exactly_into_numeric_columns() {
    let Some((url, store)) = fresh() else { return };
    let costs: [i128; 10] = [
        0,
        1,
        9_999,
        10_000,
        1_000_000_000_000,
        100_000_002,
        -12_345_678,
        123_456_789_012_345_678_901_234_567,
        i128::MAX,
        i128::MIN + 1,
    ];
    let records: Vec<_> = costs
        .iter()
        .enumerate()
        .map(|(index, &cost)| {
            let mut record = full_record(index as u64, T0 + index as i64, "gpt-4o", "acme");
            record.cost = Some(llmopt_core::Money(cost));
            record.saved_cost = Some(llmopt_core::Money(-cost));
            record
        })
        .collect();
    store.records().append(&records).unwrap();
    let stored = psql(
        &url,
        "SELECT string_agg(cost::text || ' ' || saved_cost::text, ',' ORDER BY ts_ms) FROM llmopt_records",
    );
    let expected: Vec<String> = costs.iter().map(|cost| format!("{cost} {}", -cost)).collect();
    assert_eq!(stored, expected.join(","));
}
