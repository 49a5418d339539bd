//! In-memory implementations of the storage seams: for tests, replays and the analytics
//! notebook. They pass the same conformance suites as the sled stores.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard},
};

use crate::{
    ids::RequestId,
    keys::{KeyStore, VirtualKey},
    record::{Feedback, RequestRecord},
    store::{
        AggregateQuery, AggregateRow, AuditEntry, ExperimentDoc, ExperimentStore, PolicyDoc,
        PolicyStore, RecordQuery, RecordStore, StoreError, aggregate_records,
    },
};

/// A poisoned lock only means another thread panicked mid-update of plain data; the data is
/// still usable, so take it rather than propagate the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct RecordsInner {
    /// (ts_ms, sequence) → record: the same key order as the sled store.
    by_time: BTreeMap<(i64, u64), RequestRecord>,
    by_id: HashMap<RequestId, (i64, u64)>,
    next_seq: u64,
}

#[derive(Debug, Default)]
pub struct MemoryRecordStore {
    inner: Mutex<RecordsInner>,
}

impl MemoryRecordStore {
    pub fn new() -> MemoryRecordStore {
        MemoryRecordStore::default()
    }
}

impl RecordStore for MemoryRecordStore {
    fn append(&self, records: &[RequestRecord]) -> Result<(), StoreError> {
        let mut inner = lock(&self.inner);
        for record in records {
            if let Some(old_key) = inner.by_id.remove(&record.id) {
                inner.by_time.remove(&old_key);
            }
            let key = (record.ts_ms, inner.next_seq);
            inner.next_seq += 1;
            inner.by_id.insert(record.id.clone(), key);
            inner.by_time.insert(key, record.clone());
        }
        Ok(())
    }

    fn scan(&self, query: &RecordQuery) -> Result<Vec<RequestRecord>, StoreError> {
        query.validate()?;
        let inner = lock(&self.inner);
        let limit = query.limit.unwrap_or(usize::MAX);
        Ok(inner
            .by_time
            .range((query.from_ms, 0)..(query.to_ms, 0))
            .map(|(_, record)| record)
            .filter(|record| query.filter.matches(record))
            .take(limit)
            .cloned()
            .collect())
    }

    fn get(&self, id: &RequestId) -> Result<Option<RequestRecord>, StoreError> {
        let inner = lock(&self.inner);
        Ok(inner.by_id.get(id).and_then(|key| inner.by_time.get(key)).cloned())
    }

    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool, StoreError> {
        let mut inner = lock(&self.inner);
        let Some(key) = inner.by_id.get(id).copied() else {
            return Ok(false);
        };
        match inner.by_time.get_mut(&key) {
            Some(record) => {
                crate::store::join_feedback(record, feedback);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError> {
        query.validate()?;
        let inner = lock(&self.inner);
        let in_range = inner.by_time.range((query.from_ms, 0)..(query.to_ms, 0)).map(|(_, r)| r);
        Ok(aggregate_records(query, in_range))
    }

    fn delete_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut inner = lock(&self.inner);
        let keep = inner.by_time.split_off(&(before_ms, 0));
        let gone = std::mem::replace(&mut inner.by_time, keep);
        for record in gone.values() {
            inner.by_id.remove(&record.id);
        }
        Ok(gone.len() as u64)
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.inner).by_time.len() as u64)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemoryExperimentStore {
    docs: Mutex<BTreeMap<String, ExperimentDoc>>,
}

impl MemoryExperimentStore {
    pub fn new() -> MemoryExperimentStore {
        MemoryExperimentStore::default()
    }
}

impl ExperimentStore for MemoryExperimentStore {
    fn put(&self, doc: &ExperimentDoc) -> Result<u64, StoreError> {
        let mut docs = lock(&self.docs);
        let found = docs.get(&doc.id).map_or(0, |stored| stored.revision);
        if found != doc.revision {
            return Err(StoreError::Conflict {
                key: doc.id.clone(),
                expected: doc.revision,
                found,
            });
        }
        let mut stored = doc.clone();
        stored.revision = found + 1;
        docs.insert(doc.id.clone(), stored);
        Ok(found + 1)
    }

    fn get(&self, id: &str) -> Result<Option<ExperimentDoc>, StoreError> {
        Ok(lock(&self.docs).get(id).cloned())
    }

    fn list(&self) -> Result<Vec<ExperimentDoc>, StoreError> {
        Ok(lock(&self.docs).values().cloned().collect())
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.docs).remove(id).is_some())
    }
}

#[derive(Debug, Default)]
struct PolicyInner {
    versions: Vec<PolicyDoc>,
    audit: Vec<AuditEntry>,
}

#[derive(Debug, Default)]
pub struct MemoryPolicyStore {
    inner: Mutex<PolicyInner>,
}

impl MemoryPolicyStore {
    pub fn new() -> MemoryPolicyStore {
        MemoryPolicyStore::default()
    }
}

impl PolicyStore for MemoryPolicyStore {
    fn load(&self) -> Result<Option<PolicyDoc>, StoreError> {
        Ok(lock(&self.inner).versions.last().cloned())
    }

    fn save(&self, doc: &PolicyDoc) -> Result<(), StoreError> {
        let mut inner = lock(&self.inner);
        let current = inner.versions.last().map_or(0, |d| d.version);
        if doc.version <= current && !inner.versions.is_empty() {
            return Err(StoreError::Conflict {
                key: "policy".to_owned(),
                expected: doc.version,
                found: current,
            });
        }
        inner.versions.push(doc.clone());
        Ok(())
    }

    fn history(&self, limit: usize) -> Result<Vec<PolicyDoc>, StoreError> {
        Ok(lock(&self.inner).versions.iter().rev().take(limit).cloned().collect())
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let mut inner = lock(&self.inner);
        let seq = inner.audit.last().map_or(1, |e| e.seq + 1);
        let mut stored = entry.clone();
        stored.seq = seq;
        inner.audit.push(stored);
        Ok(seq)
    }

    fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(lock(&self.inner)
            .audit
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Virtual keys in a map by id.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<BTreeMap<String, VirtualKey>>,
}

impl MemoryKeyStore {
    pub fn new() -> MemoryKeyStore {
        MemoryKeyStore::default()
    }
}

impl KeyStore for MemoryKeyStore {
    fn insert(&self, key: &VirtualKey) -> Result<(), StoreError> {
        let mut keys = lock(&self.keys);
        if keys.contains_key(&key.id) || keys.values().any(|stored| stored.sha256 == key.sha256) {
            return Err(StoreError::Conflict { key: key.id.clone(), expected: 0, found: 1 });
        }
        keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        Ok(lock(&self.keys).get(id).cloned())
    }

    fn list(&self) -> Result<Vec<VirtualKey>, StoreError> {
        Ok(lock(&self.keys).values().cloned().collect())
    }

    fn revoke(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        Ok(lock(&self.keys)
            .get_mut(id)
            .map(|key| key.revoked_ms = key.revoked_ms.or(Some(at_ms)))
            .is_some())
    }
}
