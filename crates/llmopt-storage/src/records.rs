//! `SledRecordStore`: raw records, their indexes and the window aggregates.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use llmopt_core::{
    AggregateQuery, AggregateRow, Feedback, GroupBy, RecordFilter, RecordQuery, RecordStore,
    RequestId, RequestRecord, StoreError, store::aggregate_records,
};
use sled::{Batch, IVec, Tree};

use crate::{
    Result,
    aggregates::{self, AggState, Dimension},
    codec::{RecordKey, decode_record, encode_record, index_key, index_prefix, record_key},
    sled_error,
};

/// Aggregate states kept in memory between batches, so that a batch does not re-read and
/// re-decode the histograms of the current window every time. Bounded: cleared when it grows
/// past this many groups.
const AGG_CACHE_LIMIT: usize = 1_024;

/// Records deleted per sled batch during retention (bounds the memory of one pass).
const DELETE_CHUNK: usize = 10_000;

#[derive(Debug)]
pub struct SledRecordStore {
    path: PathBuf,
    db: sled::Db,
    records: Tree,
    ids: Tree,
    by_model: Tree,
    by_tenant: Tree,
    aggregates: Tree,
    aggregate_window_ms: i64,
    count: AtomicU64,
    /// Serialises writers (append, feedback, retention): the aggregate read-modify-write and the
    /// duplicate check must not interleave. Readers never take it.
    writer: Mutex<WriterState>,
}

#[derive(Debug, Default)]
struct WriterState {
    aggregate_cache: HashMap<Vec<u8>, CachedAggregate>,
    /// Reused buffer for building aggregate keys.
    key_buffer: Vec<u8>,
}

#[derive(Debug)]
struct CachedAggregate {
    state: AggState,
    /// Changed by the batch being written (to be written back at its end).
    dirty: bool,
}

impl SledRecordStore {
    pub(crate) fn open(path: PathBuf, db: sled::Db, aggregate_window_ms: i64) -> Result<Self> {
        let open = |name: &str| db.open_tree(name).map_err(|error| sled_error(&path, error));
        let records = open("records")?;
        let ids = open("ids")?;
        let by_model = open("by_model")?;
        let by_tenant = open("by_tenant")?;
        let aggregates = open("aggregates")?;
        // sled keeps no count; one pass over the keys at open (about a second per million
        // records on this machine) keeps `count()` O(1) afterwards.
        let count = records.len() as u64;
        Ok(SledRecordStore {
            path,
            db,
            records,
            ids,
            by_model,
            by_tenant,
            aggregates,
            aggregate_window_ms,
            count: AtomicU64::new(count),
            writer: Mutex::new(WriterState::default()),
        })
    }

    fn err(&self, error: sled::Error) -> StoreError {
        sled_error(&self.path, error)
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored aggregate window length in milliseconds.
    pub fn aggregate_window_ms(&self) -> i64 {
        self.aggregate_window_ms
    }

    fn load_record(&self, key: &[u8]) -> Result<Option<RequestRecord>> {
        match self.records.get(key).map_err(|error| self.err(error))? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Records in a time range (no filter), oldest first.
    fn scan_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        filter: &RecordFilter,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        for item in self.records.range(record_key(from_ms, 0)..record_key(to_ms, 0)) {
            let (_, value) = item.map_err(|error| self.err(error))?;
            let record = decode_record(&value)?;
            if filter.matches(&record) {
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Records of one indexed value in a time range, through an index tree.
    fn scan_index(
        &self,
        index: &Tree,
        value: &str,
        query: &RecordQuery,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let start = index_key(value, &record_key(query.from_ms, 0));
        let end = index_key(value, &record_key(query.to_ms, 0));
        let prefix_len = index_prefix(value).len();
        for item in index.range(start..end) {
            let (key, _) = item.map_err(|error| self.err(error))?;
            let Some(record_key) = key.get(prefix_len..) else { continue };
            // An index entry whose record is gone (a kill between trees) is skipped.
            let Some(record) = self.load_record(record_key)? else { continue };
            if query.filter.matches(&record) {
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Retention of raw records: everything strictly before `before_ms`.
    pub(crate) fn delete_records_before(&self, before_ms: i64) -> Result<u64> {
        let _writer = self.lock_writer();
        let mut deleted = 0;
        loop {
            let mut chunk: Vec<(IVec, IVec)> = Vec::with_capacity(DELETE_CHUNK);
            for item in self.records.range(..record_key(before_ms, 0)).take(DELETE_CHUNK) {
                chunk.push(item.map_err(|error| self.err(error))?);
            }
            if chunk.is_empty() {
                return Ok(deleted);
            }
            let mut records = Batch::default();
            let mut ids = Batch::default();
            let mut by_model = Batch::default();
            let mut by_tenant = Batch::default();
            for (key, value) in &chunk {
                records.remove(key.clone());
                // A record that cannot be decoded is still deleted; only its index entries
                // cannot be found (they point at a missing record and are skipped on read).
                let Ok(record) = decode_record(value) else { continue };
                if self.ids.get(record.id.as_str()).map_err(|error| self.err(error))?.as_deref()
                    == Some(key.as_ref())
                {
                    ids.remove(record.id.as_str());
                }
                by_model.remove(index_key(record.served_model.as_str(), &to_record_key(key)));
                if let Some(tenant) = &record.tenant {
                    by_tenant.remove(index_key(tenant.as_str(), &to_record_key(key)));
                }
            }
            self.ids.apply_batch(ids).map_err(|error| self.err(error))?;
            self.by_model.apply_batch(by_model).map_err(|error| self.err(error))?;
            self.by_tenant.apply_batch(by_tenant).map_err(|error| self.err(error))?;
            self.records.apply_batch(records).map_err(|error| self.err(error))?;
            let gone = chunk.len() as u64;
            deleted += gone;
            let _ = self.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.saturating_sub(gone))
            });
        }
    }

    /// Retention of aggregates: windows starting strictly before `before_ms`, for every stored
    /// window length (an older configuration may have used another).
    pub(crate) fn delete_aggregates_before(&self, before_ms: i64) -> Result<u64> {
        let mut writer = self.lock_writer();
        writer.aggregate_cache.clear();
        let mut deleted = 0;
        let mut window_length_start: Vec<u8> = Vec::new();
        loop {
            // The next stored window length at or after `window_length_start`.
            let next = self
                .aggregates
                .range(window_length_start.clone()..)
                .next()
                .transpose()
                .map_err(|error| self.err(error))?;
            let Some((key, _)) = next else { return Ok(deleted) };
            let Some(length_bytes) = key.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                // A key too short to be ours: skip past it.
                window_length_start = key.to_vec();
                window_length_start.push(0);
                continue;
            };
            let window_ms = i64::from_be_bytes(length_bytes);
            let end = aggregates::agg_window_prefix(window_ms, before_ms);
            let mut batch = Batch::default();
            for item in self.aggregates.range(length_bytes.to_vec()..end) {
                let (key, _) = item.map_err(|error| self.err(error))?;
                batch.remove(key);
                deleted += 1;
            }
            self.aggregates.apply_batch(batch).map_err(|error| self.err(error))?;
            match window_ms.checked_add(1) {
                Some(next_length) => window_length_start = next_length.to_be_bytes().to_vec(),
                None => return Ok(deleted),
            }
        }
    }

    /// Aggregates from the stored windows for `[aligned_from, aligned_to)`, plus raw records
    /// for the unaligned edges of the query.
    fn aggregate_from_sketches(
        &self,
        query: &AggregateQuery,
        aligned_from: i64,
        aligned_to: i64,
    ) -> Result<Vec<AggregateRow>> {
        let stored = self.aggregate_window_ms;
        let mut groups: BTreeMap<(i64, String), AggState> = BTreeMap::new();
        // For tag grouping: per query window, the total, to derive the untagged group.
        let mut totals: BTreeMap<i64, AggState> = BTreeMap::new();
        let start = aggregates::agg_window_prefix(stored, aligned_from);
        let end = aggregates::agg_window_prefix(stored, aligned_to);
        for item in self.aggregates.range(start..end) {
            let (key, value) = item.map_err(|error| self.err(error))?;
            let Some(parsed) = aggregates::parse_agg_key(&key) else { continue };
            let window = query.window_of(parsed.window_start_ms);
            let group = match (&query.group_by, parsed.dimension) {
                (GroupBy::Total, Dimension::Total)
                | (GroupBy::Model, Dimension::Model)
                | (GroupBy::Provider, Dimension::Provider)
                | (GroupBy::Tenant, Dimension::Tenant) => parsed.first,
                (GroupBy::Tag(tag_key), Dimension::Tag)
                    if &parsed.first == tag_key && !parsed.second.is_empty() =>
                {
                    parsed.second
                }
                (GroupBy::Tag(_), Dimension::Total) => {
                    totals.entry(window).or_default().merge(&AggState::decode(&value)?);
                    continue;
                }
                _ => continue,
            };
            groups.entry((window, group)).or_default().merge(&AggState::decode(&value)?);
        }
        if matches!(query.group_by, GroupBy::Tag(_)) {
            // Records without the tag (or with an empty value) form the "" group: the total
            // minus every tagged group. Histograms subtract exactly.
            for (window, mut untagged) in totals {
                for ((_, _), tagged) in groups
                    .range((window, String::new())..)
                    .take_while(|((group_window, _), _)| *group_window == window)
                {
                    untagged.subtract(tagged);
                }
                if untagged.count > 0 {
                    groups.insert((window, String::new()), untagged);
                }
            }
        }
        let edges = [(query.from_ms, aligned_from), (aligned_to, query.to_ms)];
        for (from_ms, to_ms) in edges {
            if from_ms >= to_ms {
                continue;
            }
            for record in self.scan_range(from_ms, to_ms, &query.filter, usize::MAX)? {
                let key = (query.window_of(record.ts_ms), query.group_by.key_of(&record));
                groups.entry(key).or_default().add_record(&record);
            }
        }
        Ok(groups
            .into_iter()
            .filter(|(_, state)| state.count > 0)
            .map(|((window, group), state)| state.to_row(window, group))
            .collect())
    }
}

fn to_record_key(bytes: &[u8]) -> RecordKey {
    let mut key = [0; 16];
    if bytes.len() == 16 {
        key.copy_from_slice(bytes);
    }
    key
}

/// The aggregate state for `key`, from the cache or the tree, marked dirty.
fn cached_state<'a>(
    cache: &'a mut HashMap<Vec<u8>, CachedAggregate>,
    tree: &Tree,
    key: &[u8],
    path: &std::path::Path,
) -> Result<&'a mut AggState> {
    if !cache.contains_key(key) {
        let state = match tree.get(key).map_err(|error| sled_error(path, error))? {
            Some(bytes) => AggState::decode(&bytes)?,
            None => AggState::default(),
        };
        cache.insert(key.to_vec(), CachedAggregate { state, dirty: false });
    }
    let cached = cache
        .get_mut(key)
        .ok_or_else(|| StoreError::Encoding("aggregate cache lost a key".into()))?;
    cached.dirty = true;
    Ok(&mut cached.state)
}

impl RecordStore for SledRecordStore {
    fn append(&self, records: &[RequestRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writer = self.lock_writer();
        if writer.aggregate_cache.len() > AGG_CACHE_LIMIT {
            writer.aggregate_cache.clear();
        }
        let result = self.append_locked(&mut writer, records);
        if result.is_err() {
            // The cache may now hold states that never reached the tree.
            writer.aggregate_cache.clear();
        }
        result
    }

    fn scan(&self, query: &RecordQuery) -> Result<Vec<RequestRecord>> {
        query.validate()?;
        let limit = query.limit.unwrap_or(usize::MAX);
        if let Some(model) = &query.filter.model {
            self.scan_index(&self.by_model, model, query, limit)
        } else if let Some(tenant) = &query.filter.tenant {
            self.scan_index(&self.by_tenant, tenant, query, limit)
        } else {
            self.scan_range(query.from_ms, query.to_ms, &query.filter, limit)
        }
    }

    fn get(&self, id: &RequestId) -> Result<Option<RequestRecord>> {
        match self.ids.get(id.as_str()).map_err(|error| self.err(error))? {
            Some(key) => self.load_record(&key),
            None => Ok(None),
        }
    }

    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool> {
        let _writer = self.lock_writer();
        let Some(key) = self.ids.get(id.as_str()).map_err(|error| self.err(error))? else {
            return Ok(false);
        };
        let Some(mut record) = self.load_record(&key)? else { return Ok(false) };
        record.feedback.push(feedback);
        self.records.insert(key, encode_record(&record)).map_err(|error| self.err(error))?;
        Ok(true)
    }

    fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>> {
        query.validate()?;
        let stored = self.aggregate_window_ms;
        let from_sketches =
            query.window_ms % stored == 0 && query.filter == RecordFilter::default();
        if from_sketches {
            let aligned_from = query
                .from_ms
                .checked_add(stored - 1)
                .map(|shifted| shifted.div_euclid(stored) * stored);
            let aligned_to = query.to_ms.div_euclid(stored).checked_mul(stored);
            if let (Some(aligned_from), Some(aligned_to)) = (aligned_from, aligned_to)
                && aligned_from < aligned_to
            {
                return self.aggregate_from_sketches(query, aligned_from, aligned_to);
            }
        }
        let records = self.scan_range(query.from_ms, query.to_ms, &query.filter, usize::MAX)?;
        Ok(aggregate_records(query, records.iter()))
    }

    fn delete_before(&self, before_ms: i64) -> Result<u64> {
        self.delete_records_before(before_ms)
    }

    fn count(&self) -> Result<u64> {
        Ok(self.count.load(Ordering::Relaxed))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(|error| self.err(error))
    }
}

impl SledRecordStore {
    fn append_locked(&self, writer: &mut WriterState, records: &[RequestRecord]) -> Result<()> {
        // A duplicate id inside one batch: the last one wins, as if appended one by one.
        let mut last_of_id: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            last_of_id.insert(record.id.as_str(), index);
        }
        let mut records_batch = Batch::default();
        let mut model_batch = Batch::default();
        let mut tenant_batch = Batch::default();
        let mut added = 0_u64;
        let WriterState { aggregate_cache: cache, key_buffer } = writer;
        let window_ms = self.aggregate_window_ms;
        for (index, record) in records.iter().enumerate() {
            if last_of_id.get(record.id.as_str()) != Some(&index) {
                continue;
            }
            let seq = self.db.generate_id().map_err(|error| self.err(error))?;
            let key = record_key(record.ts_ms, seq);
            // One sled operation both points the id at the new key and returns the key it
            // pointed at before (a duplicate), instead of a lookup and then a write.
            match self.ids.insert(record.id.as_str(), &key[..]).map_err(|error| self.err(error))? {
                Some(old_key) => {
                    // Replace: take the old record out of the tree, its indexes and aggregates.
                    if let Some(old) = self.load_record(&old_key)? {
                        let old_key = to_record_key(&old_key);
                        records_batch.remove(&old_key[..]);
                        model_batch.remove(index_key(old.served_model.as_str(), &old_key));
                        if let Some(tenant) = &old.tenant {
                            tenant_batch.remove(index_key(tenant.as_str(), &old_key));
                        }
                        aggregates::for_each_key(&old, window_ms, key_buffer, |agg_key| {
                            cached_state(cache, &self.aggregates, agg_key, &self.path)?
                                .remove_record(&old);
                            Ok::<(), StoreError>(())
                        })?;
                    } else {
                        added += 1;
                    }
                }
                None => added += 1,
            }
            records_batch.insert(&key[..], encode_record(record));
            model_batch.insert(index_key(record.served_model.as_str(), &key), &[][..]);
            if let Some(tenant) = &record.tenant {
                tenant_batch.insert(index_key(tenant.as_str(), &key), &[][..]);
            }
            aggregates::for_each_key(record, window_ms, key_buffer, |agg_key| {
                cached_state(cache, &self.aggregates, agg_key, &self.path)?.add_record(record);
                Ok::<(), StoreError>(())
            })?;
        }
        let mut aggregates_batch = Batch::default();
        for (agg_key, cached) in cache.iter_mut() {
            if cached.dirty {
                aggregates_batch.insert(agg_key.as_slice(), cached.state.encode()?);
                cached.dirty = false;
            }
        }
        // The id index was written above; then records, the other indexes, aggregates. A kill
        // in between can leave an index entry whose record is missing: every reader skips
        // those (`get` answers `None`, index scans skip the entry).
        self.records.apply_batch(records_batch).map_err(|error| self.err(error))?;
        self.by_model.apply_batch(model_batch).map_err(|error| self.err(error))?;
        self.by_tenant.apply_batch(tenant_batch).map_err(|error| self.err(error))?;
        self.aggregates.apply_batch(aggregates_batch).map_err(|error| self.err(error))?;
        self.count.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }
}
