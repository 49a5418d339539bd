//! Writing: an appended batch is sorted by time and cut into blocks; stored copies of the same
//! ids are replaced (removed from their blocks); the id, model and tenant trees and the window
//! aggregates are updated, the aggregates through a small cache of the newest windows.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::Ordering,
};

use llmopt_core::{RequestRecord, StoreError};
use sled::{Batch, IVec, Tree};

use super::{
    BLOCK_RECORDS, BLOCK_SPAN_MS, Located, SledRecordStore, first_block_for, key_time,
    needs_id_entry, to_record_key,
};
use crate::{
    Result,
    aggregates::{self, AggState},
    codec::{
        BlockEntry, RecordKey, decode_block_header, decode_record, encode_block,
        encode_record_into, id_hash, index_key, record_key,
    },
    sled_error,
};

/// Aggregate states kept in memory between batches, so that a batch does not re-read and
/// re-decode the histograms of the current window every time. A state holds two HDR histograms
/// (about 20 KB once a window has seen latencies of seconds), so the cache is bounded twice:
/// after each batch it keeps only the newest [`AGG_CACHE_WINDOWS`] windows it holds (records
/// arrive roughly in time order: older windows are rarely touched again), and it is cleared when
/// it grows past this many groups anyway (thousands of tenants or tag values in two windows;
/// ~20 MB at worst).
pub(super) const AGG_CACHE_LIMIT: usize = 1_024;

/// Windows of aggregate states kept in memory between batches: the newest one and the one
/// before (records that started late in the previous window still arrive, as calls end).
const AGG_CACHE_WINDOWS: i64 = 2;

#[derive(Debug, Default)]
pub(super) struct WriterState {
    pub(super) aggregate_cache: HashMap<Vec<u8>, CachedAggregate>,
    /// Reused buffer for building aggregate keys.
    pub(super) key_buffer: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct CachedAggregate {
    state: AggState,
    /// Changed by the batch being written (to be written back at its end).
    dirty: bool,
}

/// A block being built by an append: its key and its records (indexes into the batch).
struct NewBlock {
    key: RecordKey,
    members: Vec<usize>,
}

impl SledRecordStore {
    /// Writes `block` back without the records at `remove` (or deletes it when none are left).
    /// Returns the removed records, decoded.
    pub(super) fn remove_from_block(
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

    pub(super) fn append_locked(
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
