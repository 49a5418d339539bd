//! Records in blocks: the sled store against the in-memory store as a model, on random
//! workloads that mix the gateway's UUIDv7 ids (located by time) with foreign ids (located
//! through the id tree), duplicates that move in time, late records, bursts of more than one
//! block in one millisecond, feedback and retention; and the migration of a directory written
//! with the first, one-key-per-record layout.

use llmopt_core::{
    Feedback, FeedbackValue, MemoryRecordStore, RecordFilter, RecordQuery, RecordStore, RequestId,
    RequestRecord,
    testsuite::{T0, full_record},
};
use llmopt_storage::{
    STORE_SCHEMA_VERSION, SledStore, StorageConfig,
    codec::{encode_record, record_key, uuid_v7_ms},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::fresh_store;

/// A UUIDv7 string for `ts_ms` with `random` in its random bits, as the gateway makes them.
fn uuid_v7(ts_ms: i64, random: u64) -> String {
    let bytes = (ts_ms as u128) << 80
        | 0x7 << 76
        | u128::from(random & 0xfff) << 64
        | 0x8 << 60
        | u128::from(random >> 4);
    uuid::Uuid::from_u128(bytes).to_string()
}

#[test]
fn uuid_v7_ids_carry_their_time() {
    let id = uuid_v7(T0 + 123, 42);
    assert_eq!(uuid_v7_ms(&id), Some(T0 + 123));
    let made =
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_767_225_600, 5e8 as u32));
    assert_eq!(uuid_v7_ms(&made.to_string()), Some(1_767_225_600_500));
    for foreign in ["req-000001", "", "0190c0de-0000-4000-8000-000000000000", &id.replace('-', "_")]
    {
        assert_eq!(uuid_v7_ms(foreign), None, "{foreign}");
    }
}

fn random_record(rng: &mut StdRng, index: u64, ts_ms: i64, uuid_id: bool) -> RequestRecord {
    let model = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"][rng.gen_range(0..3)];
    let tenant = ["acme", "globex"][rng.gen_range(0..2)];
    let mut record = full_record(index, ts_ms, model, tenant);
    if uuid_id {
        record.id = RequestId::new(uuid_v7(ts_ms, rng.r#gen()));
    }
    if rng.gen_bool(0.1) {
        record.tenant = None;
    }
    record
}

fn check_same(sled: &dyn RecordStore, model: &MemoryRecordStore, rng: &mut StdRng, ids: &[String]) {
    assert_eq!(sled.count().expect("store call"), model.count().expect("store call"), "count");
    let everything = RecordQuery::range(i64::MIN, i64::MAX);
    assert_eq!(
        sled.scan(&everything).expect("store call"),
        model.scan(&everything).expect("store call"),
        "full scan"
    );
    for _ in 0..40 {
        let from = T0 + rng.gen_range(-500..20_000);
        let to = from + rng.gen_range(0..6_000);
        let filter = match rng.gen_range(0..4) {
            0 => RecordFilter::default(),
            1 => RecordFilter { model: Some("gpt-4o-mini".into()), ..RecordFilter::default() },
            2 => RecordFilter { tenant: Some("acme".into()), ..RecordFilter::default() },
            _ => RecordFilter {
                tag: Some(("feature".into(), "chat".into())),
                ..RecordFilter::default()
            },
        };
        let limit = rng.gen_bool(0.5).then(|| rng.gen_range(0..200));
        let query = RecordQuery { from_ms: from, to_ms: to, filter, limit };
        assert_eq!(
            sled.scan(&query).expect("store call"),
            model.scan(&query).expect("store call"),
            "{query:?}"
        );
    }
    for id in ids.iter().step_by(7) {
        let id = RequestId::new(id.as_str());
        assert_eq!(
            sled.get(&id).expect("store call"),
            model.get(&id).expect("store call"),
            "get {id}"
        );
    }
}

#[test]
fn block_store_matches_the_in_memory_model() {
    let mut rng = StdRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let model = MemoryRecordStore::default();
    let mut ids: Vec<String> = Vec::new();
    let mut index = 0_u64;
    let mut now = T0;
    for round in 0..12 {
        let store = SledStore::open(&path, StorageConfig::default()).unwrap();
        let sled = store.records();
        for _ in 0..6 {
            let size = rng.gen_range(1..400);
            let mut batch = Vec::with_capacity(size);
            for _ in 0..size {
                // Mostly moving forward, sometimes a burst in one millisecond (several blocks
                // share a first timestamp), sometimes a late record from the past.
                now += match rng.gen_range(0..10) {
                    0 => 0,
                    1 => 250,
                    _ => rng.gen_range(0..8),
                };
                let ts = if rng.gen_bool(0.05) { now - rng.gen_range(0..3_000) } else { now };
                let record = if !ids.is_empty() && rng.gen_bool(0.08) {
                    // A duplicate: same id, maybe another time (a UUIDv7 id then no longer
                    // matches its timestamp and moves to the id tree, or back).
                    let id = ids[rng.gen_range(0..ids.len())].clone();
                    let ts = if rng.gen_bool(0.5) { uuid_v7_ms(&id).unwrap_or(ts) } else { ts };
                    let mut record = random_record(&mut rng, index, ts, false);
                    record.id = RequestId::new(id);
                    record
                } else {
                    let uuid_id = rng.gen_bool(0.7);
                    random_record(&mut rng, index, ts, uuid_id)
                };
                index += 1;
                ids.push(record.id.0.clone());
                batch.push(record);
            }
            sled.append(&batch).unwrap();
            model.append(&batch).unwrap();
            for _ in 0..5 {
                let id = RequestId::new(ids[rng.gen_range(0..ids.len())].as_str());
                let feedback = Feedback {
                    metric: "thumbs".into(),
                    value: FeedbackValue::Bool(rng.gen_bool(0.5)),
                    ts_ms: now,
                };
                assert_eq!(
                    sled.add_feedback(&id, feedback.clone()).unwrap(),
                    model.add_feedback(&id, feedback).unwrap()
                );
            }
        }
        if round % 4 == 3 {
            let before = T0 + (now - T0) / 3;
            assert_eq!(sled.delete_before(before).unwrap(), model.delete_before(before).unwrap());
        }
        check_same(sled.as_ref(), &model, &mut rng, &ids);
        store.flush().unwrap();
    }
    assert!(model.count().unwrap() > 5_000, "the workload is big enough to span many blocks");
}

#[test]
fn a_directory_of_the_first_layout_is_migrated_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let records: Vec<RequestRecord> = (0..300)
        .map(|i| {
            full_record(
                i,
                T0 + (i as i64 / 3) * 10,
                ["gpt-4o", "gpt-4o-mini"][i as usize % 2],
                "acme",
            )
        })
        .collect();
    {
        // What version 1 wrote: one key per record, ids pointing at record keys.
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"format", &b"llmopt-storage"[..]).unwrap();
        meta.insert(b"schema", &1_u32.to_be_bytes()).unwrap();
        let old = db.open_tree("records").unwrap();
        let ids = db.open_tree("ids").unwrap();
        for (seq, record) in records.iter().enumerate() {
            let key = record_key(record.ts_ms, seq as u64);
            old.insert(key, encode_record(record)).unwrap();
            ids.insert(record.id.as_str(), &key[..]).unwrap();
        }
        db.flush().unwrap();
    }
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    let migrated = store.records();
    assert_eq!(migrated.count().unwrap(), 300);
    assert_eq!(migrated.scan(&RecordQuery::range(T0, T0 + 10_000)).unwrap(), records);
    assert_eq!(migrated.get(&RequestId::new("req-000123")).unwrap().as_ref(), Some(&records[123]));
    let by_model = RecordQuery {
        filter: RecordFilter { model: Some("gpt-4o-mini".into()), ..RecordFilter::default() },
        ..RecordQuery::range(T0, T0 + 10_000)
    };
    assert_eq!(migrated.scan(&by_model).unwrap().len(), 150);
    drop((migrated, store));
    let db = sled::open(&path).unwrap();
    assert!(!db.tree_names().iter().any(|name| name.as_ref() == b"records"), "old tree dropped");
    let schema = db.open_tree("meta").unwrap().get(b"schema").unwrap().unwrap();
    assert_eq!(schema.as_ref(), &STORE_SCHEMA_VERSION.to_be_bytes());
}

#[test]
fn gateway_ids_need_no_id_index_entry() {
    let (_dir, store) = fresh_store(StorageConfig::default());
    let records = store.records();
    let batch: Vec<RequestRecord> = (0..1_000)
        .map(|i| {
            let mut record = full_record(i, T0 + i as i64 / 7, "gpt-4o", "acme");
            record.id = RequestId::new(uuid_v7(record.ts_ms, i * 7_919));
            record
        })
        .collect();
    records.append(&batch).unwrap();
    for record in batch.iter().step_by(37) {
        assert_eq!(records.get(&record.id).unwrap().as_ref(), Some(record));
    }
    assert_eq!(records.id_index_len(), 0, "UUIDv7 ids at their own time are found by time");
}
