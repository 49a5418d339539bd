use llmopt_core::KeyStore;
use llmopt_core::{
    PolicyStore, RecordQuery, RecordStore, RequestId,
    testsuite::{T0, experiment_store_suite, full_record, policy_store_suite, record_store_suite},
};
use llmopt_storage::{SledStore, StorageConfig};

use crate::fresh_store;

#[test]
fn record_store_passes_the_conformance_suite() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    record_store_suite(store.records().as_ref());
}

#[test]
fn record_store_passes_with_an_aggregate_window_that_does_not_divide_the_queries() {
    // 7 s windows: the suite's 60 s and 1 h queries are not multiples, so raw records answer.
    let config = StorageConfig {
        aggregate_window: std::time::Duration::from_secs(7),
        ..StorageConfig::default()
    };
    let (_dir, store) = fresh_store(config);
    record_store_suite(store.records().as_ref());
}

#[test]
fn experiment_store_passes_the_conformance_suite() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    experiment_store_suite(store.experiments().as_ref());
}

#[test]
fn policy_store_passes_the_conformance_suite() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    policy_store_suite(store.policy().as_ref());
}

#[test]
fn key_store_passes_the_conformance_suite() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    llmopt_core::testsuite::key_store_suite(store.keys().as_ref());
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let records: Vec<_> =
        (0..500).map(|i| full_record(i, T0 + i as i64 * 10, "gpt-4o", "acme")).collect();
    {
        let store = SledStore::open(&path, StorageConfig::default()).unwrap();
        store.records().append(&records).unwrap();
        store
            .policy()
            .save(&llmopt_core::PolicyDoc {
                version: 3,
                updated_ms: T0,
                reason: "r".into(),
                body: serde_json::json!({"k": 1}),
            })
            .unwrap();
        let key = llmopt_core::testsuite::virtual_key("key_a", 'a');
        store.keys().insert(&key).unwrap();
        store.keys().revoke("key_a", T0 + 1).unwrap();
        store.keys().insert(&llmopt_core::testsuite::virtual_key("key_b", 'b')).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    let keys = store.keys().list().unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.id.as_str(), k.revoked_ms)).collect::<Vec<_>>(),
        [("key_a", Some(T0 + 1)), ("key_b", None)]
    );
    let reopened = store.records();
    assert_eq!(reopened.count().unwrap(), 500, "count is rebuilt at open");
    assert_eq!(reopened.scan(&RecordQuery::range(T0, T0 + 10_000)).unwrap(), records);
    assert_eq!(reopened.get(&RequestId::new("req-000321")).unwrap().as_ref(), Some(&records[321]));
    assert_eq!(store.policy().load().unwrap().unwrap().version, 3);
    // Sequences keep growing after a restart: a new record at an old timestamp sorts after the
    // ones already there (ties keep append order across restarts too).
    let late = full_record(9_999, T0, "gpt-4o", "acme");
    reopened.append(std::slice::from_ref(&late)).unwrap();
    let at_t0 = reopened.scan(&RecordQuery::range(T0, T0 + 1)).unwrap();
    assert_eq!(
        at_t0.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["req-000000", "req-009999"]
    );
}

#[test]
fn index_scans_match_filtered_full_scans() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    let records = store.records();
    let models = ["gpt-4o", "gpt-4", "gpt-4o-mini"];
    let all: Vec<_> = (0..900)
        .map(|i| {
            let mut record = full_record(
                i,
                T0 + i as i64 * 1_000,
                models[i as usize % 3],
                ["a", "b"][i as usize % 2],
            );
            if i % 7 == 0 {
                record.tenant = None;
            }
            record
        })
        .collect();
    records.append(&all).unwrap();
    for model in models {
        // `gpt-4` is a prefix of `gpt-4o`: the length-prefixed index keeps them apart.
        let query = RecordQuery {
            filter: llmopt_core::RecordFilter { model: Some(model.into()), ..Default::default() },
            ..RecordQuery::range(T0 + 100_000, T0 + 700_000)
        };
        let expected: Vec<_> = all
            .iter()
            .filter(|r| {
                query.filter.matches(r) && r.ts_ms >= T0 + 100_000 && r.ts_ms < T0 + 700_000
            })
            .cloned()
            .collect();
        assert_eq!(expected.len(), 200);
        assert_eq!(records.scan(&query).unwrap(), expected, "{model}");
    }
    let query = RecordQuery {
        filter: llmopt_core::RecordFilter { tenant: Some("b".into()), ..Default::default() },
        limit: Some(10),
        ..RecordQuery::range(T0, T0 + 10_000_000)
    };
    let expected: Vec<_> =
        all.iter().filter(|r| query.filter.matches(r)).take(10).cloned().collect();
    assert_eq!(records.scan(&query).unwrap(), expected);
}
