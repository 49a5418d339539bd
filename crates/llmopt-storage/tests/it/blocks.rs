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
    codec::{encode_block, encode_record, id_hash, index_key, record_key, uuid_v7_ms},
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

#[test]
fn a_directory_of_the_second_layout_gets_grouped_indexes_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    // Records over three minutes, in blocks of ten, as schema 2 wrote them.
    let records: Vec<RequestRecord> = (0..600)
        .map(|i| {
            let model = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"][i as usize % 3];
            let mut record = full_record(i, T0 + i as i64 * 300, model, "acme");
            if i % 4 == 0 {
                record.tenant = Some(llmopt_core::TenantId::new("globex"));
            }
            record
        })
        .collect();
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"format", &b"llmopt-storage"[..]).unwrap();
        meta.insert(b"schema", &2_u32.to_be_bytes()).unwrap();
        let blocks = db.open_tree("blocks").unwrap();
        let by_model = db.open_tree("by_model").unwrap();
        let by_tenant = db.open_tree("by_tenant").unwrap();
        for (seq, chunk) in records.chunks(10).enumerate() {
            let key = record_key(chunk[0].ts_ms, seq as u64);
            let bodies: Vec<Vec<u8>> = chunk.iter().map(encode_record).collect();
            let entries: Vec<(u64, i64, &[u8])> = chunk
                .iter()
                .zip(&bodies)
                .map(|(record, body)| (id_hash(record.id.as_str()), record.ts_ms, &body[..]))
                .collect();
            blocks.insert(key, encode_block(&entries)).unwrap();
            for record in chunk {
                by_model.insert(index_key(record.served_model.as_str(), &key), &[][..]).unwrap();
                let tenant = record.tenant.as_ref().unwrap();
                by_tenant.insert(index_key(tenant.as_str(), &key), &[][..]).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    let migrated = store.records();
    let model = MemoryRecordStore::default();
    model.append(&records).unwrap();
    assert_eq!(migrated.count().unwrap(), 600);
    for filter in [
        RecordFilter { model: Some("gpt-4o-mini".into()), ..RecordFilter::default() },
        RecordFilter { tenant: Some("globex".into()), ..RecordFilter::default() },
        RecordFilter { tenant: Some("acme".into()), ..RecordFilter::default() },
    ] {
        for (from, to) in [(T0, T0 + 200_000), (T0 + 59_000, T0 + 61_000), (T0 + 1, T0 + 2)] {
            let query = RecordQuery { filter: filter.clone(), ..RecordQuery::range(from, to) };
            assert_eq!(migrated.scan(&query).unwrap(), model.scan(&query).unwrap(), "{query:?}");
        }
    }
    // New records land in the grouped indexes too.
    let later = full_record(9_999, T0 + 500_000, "gpt-4o-mini", "globex");
    migrated.append(std::slice::from_ref(&later)).unwrap();
    let query = RecordQuery {
        filter: RecordFilter { model: Some("gpt-4o-mini".into()), ..RecordFilter::default() },
        ..RecordQuery::range(T0 + 400_000, T0 + 600_000)
    };
    assert_eq!(migrated.scan(&query).unwrap(), vec![later]);
    drop((migrated, store));
    let db = sled::open(&path).unwrap();
    for old in ["by_model", "by_tenant"] {
        assert!(!db.tree_names().iter().any(|name| name.as_ref() == old.as_bytes()), "{old}");
    }
    let schema = db.open_tree("meta").unwrap().get(b"schema").unwrap().unwrap();
    assert_eq!(schema.as_ref(), &STORE_SCHEMA_VERSION.to_be_bytes());
}

/// Quiet traffic (batches of ten records, 50 calls/s, some records late as calls end out of
/// order) fills blocks instead of making small ones: what bounds the store's memory.
#[test]
fn quiet_traffic_fills_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let model = MemoryRecordStore::default();
    let mut rng = StdRng::seed_from_u64(11);
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    let records = store.records();
    let total = 6_400_u64;
    for batch_start in (0..total).step_by(10) {
        let batch: Vec<RequestRecord> = (batch_start..batch_start + 10)
            .map(|index| {
                // Started up to a second before it ends; written when it ends.
                let ts = T0 + index as i64 * 20 - rng.gen_range(0..1_000);
                let mut record = random_record(&mut rng, index, ts, true);
                if index % 97 == 0 {
                    // Two calls started in the same millisecond.
                    record.ts_ms = ts - 1;
                    record.id = RequestId::new(uuid_v7(record.ts_ms, index));
                }
                record
            })
            .collect();
        records.append(&batch).unwrap();
        model.append(&batch).unwrap();
    }
    let everything = RecordQuery::range(i64::MIN, i64::MAX);
    assert_eq!(records.scan(&everything).unwrap(), model.scan(&everything).unwrap());
    drop((records, store));
    let db = sled::open(&path).unwrap();
    let blocks = db.open_tree("blocks").unwrap().len() as u64;
    assert!(blocks <= total / 32, "{blocks} blocks for {total} records");
    let index_keys = db.open_tree("model_index").unwrap().len();
    assert!(index_keys <= 3 * 4, "{index_keys} model index keys over ~2 minutes");
}
