//! `SledRecordStore`: raw records in time-ordered blocks, their indexes and the window
//! aggregates.
//!
//! # Blocks
//! sled pays per key: one insert costs a few microseconds of node copying whatever its size, and
//! the first layout (one key per record, plus one key per record in each of three index trees)
//! ingested about 30,000 records/s. Records are therefore stored in **blocks**: an appended batch
//! is sorted by time and cut into blocks of at most [`BLOCK_RECORDS`] records spanning at most
//! [`BLOCK_SPAN_MS`]; a block is one key, `record_key(first timestamp, sequence)`, whose value is
//! a small header (per record: id hash, timestamp, length) and the encoded records back to back
//! ([`crate::codec::encode_block`]). The model and tenant indexes get one entry per block and
//! value, not per record.
//!
//! Because a block spans at most `BLOCK_SPAN_MS`, the blocks holding records of `[from, to)` are
//! the keys in `[from − BLOCK_SPAN_MS, to)`: a scan still reads only its window. Results are
//! ordered by (timestamp, block sequence, place in block), which is append order for ties.
//!
//! # Finding a record by id
//! The gateway's request ids are UUIDv7 strings made from the record's own timestamp. Such a
//! record needs no id index entry: its block is among the few keys in
//! `[ts − BLOCK_SPAN_MS, ts]`, and the block header's id hashes point at it without decoding the
//! others. Only records whose id does not carry their timestamp (ids brought by batch ingest)
//! get an entry in the `ids` tree. The rule is a pure function of (id, timestamp), so every
//! reader and the retention pass agree on where a record's id lives.

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
    codec::{
        BlockEntry, RecordKey, block_len, decode_block_header, decode_record, encode_block,
        encode_record, encode_record_into, id_hash, index_key, index_prefix, record_key,
        time_from_bytes, uuid_v7_ms,
    },
    sled_error,
};

/// Most records in one block.
pub const BLOCK_RECORDS: usize = 64;

/// Longest time between the first and last record of a block, in milliseconds. Bounds how far
/// before a window a scan starts, and how many blocks an id lookup reads.
pub const BLOCK_SPAN_MS: i64 = 100;

/// Aggregate states kept in memory between batches, so that a batch does not re-read and
/// re-decode the histograms of the current window every time. A state holds two HDR histograms
/// (about 20 KB once a window has seen latencies of seconds), so the cache is bounded twice:
/// after each batch it keeps only the newest [`AGG_CACHE_WINDOWS`] windows it holds (records
/// arrive roughly in time order: older windows are rarely touched again), and it is cleared when
/// it grows past this many groups anyway (thousands of tenants or tag values in two windows;
/// ~20 MB at worst).
const AGG_CACHE_LIMIT: usize = 1_024;

/// Windows of aggregate states kept in memory between batches: the newest one and the one
/// before (records that started late in the previous window still arrive, as calls end).
const AGG_CACHE_WINDOWS: i64 = 2;

/// Blocks handled per sled batch during retention (bounds the memory of one pass).
const DELETE_CHUNK: usize = 1_024;

#[derive(Debug)]
pub struct SledRecordStore {
    path: PathBuf,
    db: sled::Db,
    blocks: Tree,
    ids: Tree,
    by_model: Tree,
    by_tenant: Tree,
    aggregates: Tree,
    aggregate_window_ms: i64,
    count: AtomicU64,
    /// Serialises writers (append, feedback, retention): block rewrites, the aggregate
    /// read-modify-write and the duplicate check must not interleave. Readers never take it.
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

/// Where a stored record is: its block and its place in it.
struct Located {
    key: RecordKey,
    block: IVec,
    entries: Vec<BlockEntry>,
    index: usize,
    record: RequestRecord,
}

/// Whether the id of a record with this id and timestamp has an entry in the `ids` tree.
fn needs_id_entry(id: &str, ts_ms: i64) -> bool {
    uuid_v7_ms(id) != Some(ts_ms)
}

/// The lowest block key that can hold a record at `ts_ms`.
fn first_block_for(ts_ms: i64) -> RecordKey {
    record_key(ts_ms.saturating_sub(BLOCK_SPAN_MS), 0)
}

fn to_record_key(bytes: &[u8]) -> Option<RecordKey> {
    <RecordKey>::try_from(bytes).ok()
}

fn key_time(key: &RecordKey) -> i64 {
    let mut time = [0; 8];
    time.copy_from_slice(&key[..8]);
    time_from_bytes(time)
}

fn key_seq(key: &RecordKey) -> u64 {
    let mut seq = [0; 8];
    seq.copy_from_slice(&key[8..]);
    u64::from_be_bytes(seq)
}

/// A record found by a scan with its sort key: (timestamp, block sequence, place in block).
type Found = ((i64, u64, usize), RequestRecord);

impl SledRecordStore {
    pub(crate) fn open(path: PathBuf, db: sled::Db, aggregate_window_ms: i64) -> Result<Self> {
        let open = |name: &str| db.open_tree(name).map_err(|error| sled_error(&path, error));
        let blocks = open("blocks")?;
        let ids = open("ids")?;
        let by_model = open("by_model")?;
        let by_tenant = open("by_tenant")?;
        let aggregates = open("aggregates")?;
        // sled keeps no count; one pass over the blocks at open reads each block's first
        // bytes and keeps `count()` O(1) afterwards.
        let mut count = 0;
        for item in blocks.iter() {
            let (_, value) = item.map_err(|error| sled_error(&path, error))?;
            count += block_len(&value)?;
        }
        Ok(SledRecordStore {
            path,
            db,
            blocks,
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

    /// Entries in the id tree: records whose id does not carry their own timestamp.
    pub fn id_index_len(&self) -> usize {
        self.ids.len()
    }

    /// The stored aggregate window length in milliseconds.
    pub fn aggregate_window_ms(&self) -> i64 {
        self.aggregate_window_ms
    }

    /// The record with `id` in `block`, if there: only entries with its hash (and timestamp,
    /// when known) are decoded.
    fn find_in_block(
        &self,
        key: RecordKey,
        block: IVec,
        id: &str,
        hash: u64,
        ts_ms: Option<i64>,
    ) -> Result<Option<Located>> {
        let entries = decode_block_header(&block)?;
        for (index, entry) in entries.iter().enumerate() {
            if entry.id_hash != hash || ts_ms.is_some_and(|ts| ts != entry.ts_ms) {
                continue;
            }
            let record = decode_record(&block[entry.start..entry.end])?;
            if record.id.as_str() == id {
                return Ok(Some(Located { key, block, entries, index, record }));
            }
        }
        Ok(None)
    }

    /// Where the record with `id` is stored: by the time its id carries, else by the `ids` tree.
    fn locate(&self, id: &str) -> Result<Option<Located>> {
        if let Some(found) = self.locate_by_time(id)? {
            return Ok(Some(found));
        }
        match self.ids.get(id).map_err(|error| self.err(error))? {
            Some(key) => self.locate_in(&key, id),
            None => Ok(None),
        }
    }

    /// The record with `id` among the blocks its UUIDv7 timestamp points at.
    fn locate_by_time(&self, id: &str) -> Result<Option<Located>> {
        let Some(ts_ms) = uuid_v7_ms(id) else { return Ok(None) };
        let hash = id_hash(id);
        let end = record_key(ts_ms.saturating_add(1), 0);
        for item in self.blocks.range(first_block_for(ts_ms)..end) {
            let (key, block) = item.map_err(|error| self.err(error))?;
            let Some(key) = to_record_key(&key) else { continue };
            if let Some(found) = self.find_in_block(key, block, id, hash, Some(ts_ms))? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The record with `id` in the block stored at `key` (from the id tree). An id entry whose
    /// block is gone (a kill between trees) finds nothing.
    fn locate_in(&self, key: &[u8], id: &str) -> Result<Option<Located>> {
        let Some(key) = to_record_key(key) else { return Ok(None) };
        match self.blocks.get(key).map_err(|error| self.err(error))? {
            Some(block) => self.find_in_block(key, block, id, id_hash(id), None),
            None => Ok(None),
        }
    }

    /// Records of `[from_ms, to_ms)` matching `filter` from `blocks` (in block key order),
    /// oldest first, at most `limit`.
    fn collect_from_blocks(
        &self,
        blocks: impl Iterator<Item = Result<(RecordKey, IVec)>>,
        from_ms: i64,
        to_ms: i64,
        filter: &RecordFilter,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let mut found: Vec<Found> = Vec::new();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let by_order = |a: &Found, b: &Found| a.0.cmp(&b.0);
        for item in blocks {
            let (key, block) = item?;
            if found.len() >= limit {
                // Blocks come in order of their first timestamp: once that is past the last
                // record kept, no later block can hold an earlier one.
                found.sort_by(by_order);
                found.truncate(limit);
                if found.last().is_some_and(|last| key_time(&key) > last.0.0) {
                    break;
                }
            }
            let seq = key_seq(&key);
            for (place, entry) in decode_block_header(&block)?.iter().enumerate() {
                if entry.ts_ms < from_ms || entry.ts_ms >= to_ms {
                    continue;
                }
                let record = decode_record(&block[entry.start..entry.end])?;
                if filter.matches(&record) {
                    found.push(((entry.ts_ms, seq, place), record));
                }
            }
        }
        found.sort_by(by_order);
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, record)| record).collect())
    }

    /// Records in a time range, oldest first.
    fn scan_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        filter: &RecordFilter,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let blocks =
            self.blocks.range(first_block_for(from_ms)..record_key(to_ms, 0)).filter_map(|item| {
                match item {
                    Ok((key, block)) => to_record_key(&key).map(|key| Ok((key, block))),
                    Err(error) => Some(Err(self.err(error))),
                }
            });
        self.collect_from_blocks(blocks, from_ms, to_ms, filter, limit)
    }

    /// Records of one indexed value in a time range, through an index tree.
    fn scan_index(
        &self,
        index: &Tree,
        value: &str,
        query: &RecordQuery,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let start = index_key(value, &first_block_for(query.from_ms));
        let end = index_key(value, &record_key(query.to_ms, 0));
        let prefix_len = index_prefix(value).len();
        let blocks = index.range(start..end).filter_map(|item| {
            let key = match item {
                Ok((key, _)) => key,
                Err(error) => return Some(Err(self.err(error))),
            };
            let block_key = key.get(prefix_len..).and_then(to_record_key)?;
            // An index entry whose block is gone (a kill between trees, a block emptied by
            // replacements) is skipped.
            match self.blocks.get(block_key) {
                Ok(Some(block)) => Some(Ok((block_key, block))),
                Ok(None) => None,
                Err(error) => Some(Err(self.err(error))),
            }
        });
        self.collect_from_blocks(blocks, query.from_ms, query.to_ms, &query.filter, limit)
    }

    /// Writes `block` back without the records at `remove` (or deletes it when none are left).
    /// Returns the removed records, decoded.
    fn remove_from_block(
        &self,
        key: RecordKey,
        block: &IVec,
        entries: &[BlockEntry],
        remove: &[usize],
    ) -> Result<Vec<RequestRecord>> {
        let mut removed = Vec::with_capacity(remove.len());
        let mut kept: Vec<(u64, i64, &[u8])> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if remove.contains(&index) {
                removed.push(decode_record(&block[entry.start..entry.end])?);
            } else {
                kept.push((entry.id_hash, entry.ts_ms, &block[entry.start..entry.end]));
            }
        }
        if kept.is_empty() {
            self.blocks.remove(key).map_err(|error| self.err(error))?;
            // Every record of the block was removed, so `removed` names all its index entries.
            for record in &removed {
                self.by_model
                    .remove(index_key(record.served_model.as_str(), &key))
                    .map_err(|error| self.err(error))?;
                if let Some(tenant) = &record.tenant {
                    self.by_tenant
                        .remove(index_key(tenant.as_str(), &key))
                        .map_err(|error| self.err(error))?;
                }
            }
        } else {
            self.blocks.insert(key, encode_block(&kept)).map_err(|error| self.err(error))?;
        }
        for record in &removed {
            if needs_id_entry(record.id.as_str(), record.ts_ms) {
                self.ids
                    .compare_and_swap(record.id.as_str(), Some(&key[..]), None as Option<&[u8]>)
                    .map_err(|error| self.err(error))?
                    .ok();
            }
        }
        Ok(removed)
    }

    /// Retention of raw records: everything strictly before `before_ms`.
    pub(crate) fn delete_records_before(&self, before_ms: i64) -> Result<u64> {
        let _writer = self.lock_writer();
        let mut deleted = 0;
        let mut next = record_key(i64::MIN, 0).to_vec();
        let end = record_key(before_ms, 0);
        loop {
            let mut chunk: Vec<(IVec, IVec)> = Vec::with_capacity(DELETE_CHUNK);
            for item in self.blocks.range(next.clone()..end.to_vec()).take(DELETE_CHUNK) {
                chunk.push(item.map_err(|error| self.err(error))?);
            }
            let Some((last, _)) = chunk.last() else { return Ok(deleted) };
            next = last.to_vec();
            next.push(0);
            for (key, block) in &chunk {
                let Some(key) = to_record_key(key) else { continue };
                let entries = decode_block_header(block)?;
                let old: Vec<usize> = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| entry.ts_ms < before_ms)
                    .map(|(index, _)| index)
                    .collect();
                if old.is_empty() {
                    continue;
                }
                let gone = self.remove_from_block(key, block, &entries, &old)?.len() as u64;
                deleted += gone;
                let _ = self.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                    Some(count.saturating_sub(gone))
                });
            }
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

    /// Moves the records of a directory written with the first layout (one key per record in a
    /// `records` tree) into blocks. Aggregates were already kept by that layout and are left
    /// as they are. Idempotent: a kill part-way leaves the old tree to migrate again.
    pub(crate) fn migrate_record_per_key_layout(&self) -> Result<u64> {
        let old = self.db.open_tree("records").map_err(|error| self.err(error))?;
        if old.is_empty() {
            return Ok(0);
        }
        // The old id and index trees point at per-record keys: rebuilt from scratch.
        for tree in [&self.ids, &self.by_model, &self.by_tenant, &self.blocks] {
            tree.clear().map_err(|error| self.err(error))?;
        }
        self.count.store(0, Ordering::Relaxed);
        let mut writer = self.lock_writer();
        let mut moved = 0;
        let mut batch = Vec::with_capacity(4_096);
        for item in old.iter() {
            let (_, value) = item.map_err(|error| self.err(error))?;
            batch.push(decode_record(&value)?);
            if batch.len() == batch.capacity() {
                self.append_locked(&mut writer, &batch, false)?;
                moved += batch.len() as u64;
                batch.clear();
            }
        }
        self.append_locked(&mut writer, &batch, false)?;
        moved += batch.len() as u64;
        self.db.flush().map_err(|error| self.err(error))?;
        drop(writer);
        self.db.drop_tree("records").map_err(|error| self.err(error))?;
        Ok(moved)
    }
}

/// Drops the cached states of windows older than the newest [`AGG_CACHE_WINDOWS`] the cache
/// holds (all of them written back already: called after the batch's states are encoded).
fn evict_old_windows(cache: &mut HashMap<Vec<u8>, CachedAggregate>, window_ms: i64) {
    let window_start = |key: &[u8]| aggregates::parse_agg_window_start(key).unwrap_or(i64::MIN);
    let Some(newest) = cache.keys().map(|key| window_start(key)).max() else { return };
    let oldest_kept = newest.saturating_sub((AGG_CACHE_WINDOWS - 1).saturating_mul(window_ms));
    cache.retain(|key, cached| cached.dirty || window_start(key) >= oldest_kept);
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
        let result = self.append_locked(&mut writer, records, true);
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
        Ok(self.locate(id.as_str())?.map(|located| located.record))
    }

    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool> {
        let _writer = self.lock_writer();
        let Some(mut located) = self.locate(id.as_str())? else { return Ok(false) };
        located.record.feedback.push(feedback);
        let updated = encode_record(&located.record);
        let entries: Vec<(u64, i64, &[u8])> = located
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let body = if index == located.index {
                    &updated[..]
                } else {
                    &located.block[entry.start..entry.end]
                };
                (entry.id_hash, entry.ts_ms, body)
            })
            .collect();
        self.blocks.insert(located.key, encode_block(&entries)).map_err(|error| self.err(error))?;
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

/// A block being built by an append: its key and its records (indexes into the batch).
struct NewBlock {
    key: RecordKey,
    members: Vec<usize>,
}

impl SledRecordStore {
    /// Cuts the kept records (sorted by time) into blocks of at most `BLOCK_RECORDS` records
    /// spanning at most `BLOCK_SPAN_MS`.
    fn cut_blocks(&self, records: &[RequestRecord], sorted: &[usize]) -> Result<Vec<NewBlock>> {
        let mut blocks: Vec<NewBlock> = Vec::new();
        for &index in sorted {
            let ts_ms = records[index].ts_ms;
            let fits = blocks.last().is_some_and(|block| {
                block.members.len() < BLOCK_RECORDS
                    && ts_ms.saturating_sub(key_time(&block.key)) <= BLOCK_SPAN_MS
            });
            if !fits {
                let seq = self.db.generate_id().map_err(|error| self.err(error))?;
                blocks.push(NewBlock {
                    key: record_key(ts_ms, seq),
                    members: Vec::with_capacity(BLOCK_RECORDS),
                });
            }
            if let Some(block) = blocks.last_mut() {
                block.members.push(index);
            }
        }
        Ok(blocks)
    }

    /// Stored copies of the batch's ids whose id carries their timestamp, found with one range
    /// read per cluster of nearby timestamps (not one lookup per record): `(batch index, where)`.
    fn stored_copies_by_time(
        &self,
        records: &[RequestRecord],
        sorted: &[usize],
    ) -> Result<Vec<(usize, Located)>> {
        // (hash, batch index) of the records located by time, for binary search.
        let mut hashes: Vec<(u64, usize)> = sorted
            .iter()
            .filter(|&&index| !needs_id_entry(records[index].id.as_str(), records[index].ts_ms))
            .map(|&index| (id_hash(records[index].id.as_str()), index))
            .collect();
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        hashes.sort_unstable();
        // Clusters of timestamps closer than a block span share one range read.
        let mut clusters: Vec<(i64, i64)> = Vec::new();
        for &index in sorted {
            let ts_ms = records[index].ts_ms;
            match clusters.last_mut() {
                Some((_, last)) if ts_ms.saturating_sub(*last) <= BLOCK_SPAN_MS => *last = ts_ms,
                _ => clusters.push((ts_ms, ts_ms)),
            }
        }
        let mut copies = Vec::new();
        for (first, last) in clusters {
            let end = record_key(last.saturating_add(1), 0);
            for item in self.blocks.range(first_block_for(first)..end) {
                let (key, block) = item.map_err(|error| self.err(error))?;
                let Some(key) = to_record_key(&key) else { continue };
                let entries = decode_block_header(&block)?;
                for (place, entry) in entries.iter().enumerate() {
                    let start = hashes.partition_point(|(hash, _)| *hash < entry.id_hash);
                    for &(hash, index) in &hashes[start..] {
                        if hash != entry.id_hash {
                            break;
                        }
                        let candidate = &records[index];
                        if candidate.ts_ms != entry.ts_ms {
                            continue;
                        }
                        let stored = decode_record(&block[entry.start..entry.end])?;
                        if stored.id == candidate.id {
                            copies.push((
                                index,
                                Located {
                                    key,
                                    block: block.clone(),
                                    entries: entries.clone(),
                                    index: place,
                                    record: stored,
                                },
                            ));
                        }
                    }
                }
            }
        }
        Ok(copies)
    }

    fn append_locked(
        &self,
        writer: &mut WriterState,
        records: &[RequestRecord],
        update_aggregates: bool,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // A duplicate id inside one batch: the last one wins, as if appended one by one.
        let mut last_of_id: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            last_of_id.insert(record.id.as_str(), index);
        }
        let mut sorted: Vec<usize> = (0..records.len())
            .filter(|index| last_of_id.get(records[*index].id.as_str()) == Some(index))
            .collect();
        // Stable: ties keep append order.
        sorted.sort_by_key(|&index| records[index].ts_ms);
        let new_blocks = self.cut_blocks(records, &sorted)?;

        // Copies already stored under the same ids: replaced (removed from their blocks).
        let mut replaced: Vec<Located> =
            self.stored_copies_by_time(records, &sorted)?.into_iter().map(|(_, at)| at).collect();
        let ids_in_use = !self.ids.is_empty();
        let mut ids_batch = Batch::default();
        for block in &new_blocks {
            for &index in &block.members {
                let id = records[index].id.as_str();
                if needs_id_entry(id, records[index].ts_ms) {
                    // One sled operation both points the id at the new block and returns where
                    // it pointed before.
                    match self.ids.insert(id, &block.key[..]).map_err(|error| self.err(error))? {
                        Some(old_key) => replaced.extend(self.locate_in(&old_key, id)?),
                        // A UUIDv7 id stored before at its own timestamp, now with another.
                        None => replaced.extend(self.locate_by_time(id)?),
                    }
                } else if ids_in_use
                    && let Some(old_key) = self.ids.get(id).map_err(|error| self.err(error))?
                {
                    // Stored before under another timestamp: found through the id tree, whose
                    // entry the new copy (located by time) no longer needs.
                    replaced.extend(self.locate_in(&old_key, id)?);
                    ids_batch.remove(id);
                }
            }
        }
        self.ids.apply_batch(ids_batch).map_err(|error| self.err(error))?;

        let WriterState { aggregate_cache: cache, key_buffer } = writer;
        let window_ms = self.aggregate_window_ms;
        // Remove replaced copies, one rewrite per old block.
        let mut by_block: BTreeMap<RecordKey, Vec<Located>> = BTreeMap::new();
        for located in replaced {
            let list = by_block.entry(located.key).or_default();
            if !list.iter().any(|other| other.index == located.index) {
                list.push(located);
            }
        }
        let mut replaced_count = 0_u64;
        for (key, list) in &by_block {
            let Some(first) = list.first() else { continue };
            let places: Vec<usize> = list.iter().map(|located| located.index).collect();
            // An id tree entry already repointed at the new copy is left alone (see
            // `remove_from_block`).
            for old in self.remove_from_block(*key, &first.block, &first.entries, &places)? {
                replaced_count += 1;
                if update_aggregates {
                    aggregates::for_each_key(&old, window_ms, key_buffer, |agg_key| {
                        cached_state(cache, &self.aggregates, agg_key, &self.path)?
                            .remove_record(&old);
                        Ok::<(), StoreError>(())
                    })?;
                }
            }
        }

        let mut blocks_batch = Batch::default();
        let mut model_batch = Batch::default();
        let mut tenant_batch = Batch::default();
        let mut bodies: Vec<u8> = Vec::with_capacity(BLOCK_RECORDS * 320);
        let mut spans: Vec<(u64, i64, usize, usize)> = Vec::with_capacity(BLOCK_RECORDS);
        for block in &new_blocks {
            bodies.clear();
            spans.clear();
            let mut models: Vec<&str> = Vec::new();
            let mut tenants: Vec<&str> = Vec::new();
            for &index in &block.members {
                let record = &records[index];
                let start = bodies.len();
                encode_record_into(record, &mut bodies);
                spans.push((id_hash(record.id.as_str()), record.ts_ms, start, bodies.len()));
                let model = record.served_model.as_str();
                if !models.contains(&model) {
                    models.push(model);
                }
                if let Some(tenant) = &record.tenant
                    && !tenants.contains(&tenant.as_str())
                {
                    tenants.push(tenant.as_str());
                }
                if update_aggregates {
                    aggregates::for_each_key(record, window_ms, key_buffer, |agg_key| {
                        cached_state(cache, &self.aggregates, agg_key, &self.path)?
                            .add_record(record);
                        Ok::<(), StoreError>(())
                    })?;
                }
            }
            let entries: Vec<(u64, i64, &[u8])> = spans
                .iter()
                .map(|&(hash, ts, start, end)| (hash, ts, &bodies[start..end]))
                .collect();
            blocks_batch.insert(&block.key[..], encode_block(&entries));
            for model in models {
                model_batch.insert(index_key(model, &block.key), &[][..]);
            }
            for tenant in tenants {
                tenant_batch.insert(index_key(tenant, &block.key), &[][..]);
            }
        }
        let mut aggregates_batch = Batch::default();
        for (agg_key, cached) in cache.iter_mut() {
            if cached.dirty {
                aggregates_batch.insert(agg_key.as_slice(), cached.state.encode()?);
                cached.dirty = false;
            }
        }
        evict_old_windows(cache, window_ms);
        // The id tree was written above; then blocks, the indexes, aggregates. A kill in between
        // can leave an index entry whose block is missing: every reader skips those.
        self.blocks.apply_batch(blocks_batch).map_err(|error| self.err(error))?;
        self.by_model.apply_batch(model_batch).map_err(|error| self.err(error))?;
        self.by_tenant.apply_batch(tenant_batch).map_err(|error| self.err(error))?;
        self.aggregates.apply_batch(aggregates_batch).map_err(|error| self.err(error))?;
        let added = sorted.len() as u64;
        let _ = self.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
            Some((count + added).saturating_sub(replaced_count))
        });
        Ok(())
    }
}
