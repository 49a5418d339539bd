//! Writing: stored copies of the batch's ids are replaced (removed from their blocks); the
//! batch is sorted by time and its records go into the open blocks (the newest ones, extended)
//! or new blocks; the id tree, the grouped model and tenant indexes and the window aggregates
//! are updated, the aggregates through a small cache of the newest windows.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::Ordering,
};

use llmopt_core::{RequestRecord, StoreError};
use sled::{Batch, IVec, Tree};

use super::{
    BLOCK_RECORDS, BLOCK_SPAN_MS, Located, SledRecordStore, first_block_for,
    index::{IndexChanges, IndexKind},
    key_time, needs_id_entry, to_record_key,
};
use crate::{
    Result,
    aggregates::{self, AggState},
    codec::{
        BlockEntry, RecordKey, decode_block_header, decode_record, encode_block,
        encode_record_into, id_hash, record_key,
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

/// Blocks kept open for later appends: the newest ones this process made. Appends extend them
/// while they have room and span, so quiet traffic (a collector batch of a few records every
/// 200 ms) fills blocks as busy traffic does, instead of making a small block per batch.
/// Several stay open because records arrive out of time order (a record's time is its call's
/// start, and it is written when the call ends).
pub(super) const OPEN_BLOCKS: usize = 8;

#[derive(Debug, Default)]
pub(super) struct WriterState {
    pub(super) aggregate_cache: HashMap<Vec<u8>, CachedAggregate>,
    /// Reused buffer for building aggregate keys.
    pub(super) key_buffer: Vec<u8>,
    /// Keys of the open blocks, oldest sequence first (see [`OPEN_BLOCKS`]). Every block with
    /// a sequence above the first one's is in the list.
    pub(super) open_blocks: Vec<RecordKey>,
}

#[derive(Debug)]
pub(super) struct CachedAggregate {
    state: AggState,
    /// Changed by the batch being written (to be written back at its end).
    dirty: bool,
}

/// A block an append writes: a new one, or one of the open blocks extended.
struct Plan {
    key: RecordKey,
    /// The stored block being extended (with its header), if any.
    stored: Option<(IVec, Vec<BlockEntry>)>,
    /// Timestamps of the stored block's records, sorted.
    stored_ts: Vec<i64>,
    /// The batch's records going into this block (indexes into the batch), in time order.
    members: Vec<usize>,
}

impl Plan {
    fn len(&self) -> usize {
        self.stored.as_ref().map_or(0, |(_, entries)| entries.len()) + self.members.len()
    }

    /// Whether the block holds (or is given) a record at `ts_ms`. Records are assigned in time
    /// order, so a member at `ts_ms` is the last one.
    fn holds(&self, ts_ms: i64, records: &[RequestRecord]) -> bool {
        self.stored_ts.binary_search(&ts_ms).is_ok()
            || self.members.last().is_some_and(|&index| records[index].ts_ms == ts_ms)
    }

    /// Whether a record at `ts_ms` may join the block: room left, and the block's key time
    /// still at most `BLOCK_SPAN_MS` before each of its records.
    fn fits(&self, ts_ms: i64) -> bool {
        let first = key_time(&self.key);
        self.len() < BLOCK_RECORDS && ts_ms >= first && ts_ms - first <= BLOCK_SPAN_MS
    }
}

impl SledRecordStore {
    /// Writes `block` back without the records at `remove` (or deletes it when none are left,
    /// noting its index entries in `index_changes`). Returns the removed records, decoded.
    pub(super) fn remove_from_block(
        &self,
        key: RecordKey,
        block: &IVec,
        entries: &[BlockEntry],
        remove: &[usize],
        index_changes: &mut IndexChanges,
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
                index_changes.remove(IndexKind::Model, record.served_model.as_str(), key);
                if let Some(tenant) = &record.tenant {
                    index_changes.remove(IndexKind::Tenant, tenant.as_str(), key);
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

    /// Assigns the kept records (sorted by time) to blocks: the open blocks (the newest ones
    /// this process made, read now, after replaced copies were removed) when they have room
    /// and span, else new blocks of at most `BLOCK_RECORDS` records spanning at most
    /// `BLOCK_SPAN_MS`.
    ///
    /// Ties keep append order: records are read in (timestamp, block sequence, place) order,
    /// and a record at `ts` only joins a block whose sequence is at least that of every open
    /// block already holding a record at `ts`. Blocks that are not open have lower sequences
    /// than every open one (the open list is the newest blocks), so their records at `ts` come
    /// first, as they were appended first.
    fn assign_blocks(
        &self,
        open: &[RecordKey],
        records: &[RequestRecord],
        sorted: &[usize],
    ) -> Result<Vec<Plan>> {
        let mut plans: Vec<Plan> = Vec::with_capacity(open.len() + 2);
        for &key in open {
            let Some(block) = self.blocks.get(key).map_err(|error| self.err(error))? else {
                continue;
            };
            let entries = decode_block_header(&block)?;
            let mut stored_ts: Vec<i64> = entries.iter().map(|entry| entry.ts_ms).collect();
            stored_ts.sort_unstable();
            plans.push(Plan {
                key,
                stored: Some((block, entries)),
                stored_ts,
                members: Vec::new(),
            });
        }
        for &index in sorted {
            let ts_ms = records[index].ts_ms;
            let lowest = plans.iter().rposition(|plan| plan.holds(ts_ms, records)).unwrap_or(0);
            // Among the blocks allowed, the one starting latest: it stays open longest.
            let chosen = (lowest..plans.len())
                .filter(|&place| plans[place].fits(ts_ms))
                .max_by_key(|&place| (key_time(&plans[place].key), place));
            let place = match chosen {
                Some(place) => place,
                None => {
                    let seq = self.db.generate_id().map_err(|error| self.err(error))?;
                    plans.push(Plan {
                        key: record_key(ts_ms, seq),
                        stored: None,
                        stored_ts: Vec::new(),
                        members: Vec::with_capacity(BLOCK_RECORDS),
                    });
                    plans.len() - 1
                }
            };
            plans[place].members.push(index);
        }
        Ok(plans)
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

        // Copies already stored under the same ids: replaced (removed from their blocks).
        let mut replaced: Vec<Located> =
            self.stored_copies_by_time(records, &sorted)?.into_iter().map(|(_, at)| at).collect();
        let ids_in_use = !self.ids.is_empty();
        let mut ids_batch = Batch::default();
        for &index in &sorted {
            let id = records[index].id.as_str();
            if needs_id_entry(id, records[index].ts_ms) {
                match self.ids.get(id).map_err(|error| self.err(error))? {
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

        let WriterState { aggregate_cache: cache, key_buffer, open_blocks } = writer;
        let window_ms = self.aggregate_window_ms;
        let mut index_changes = IndexChanges::default();
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
            let removed = self.remove_from_block(
                *key,
                &first.block,
                &first.entries,
                &places,
                &mut index_changes,
            )?;
            for old in removed {
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

        let plans = self.assign_blocks(open_blocks, records, &sorted)?;
        let mut blocks_batch = Batch::default();
        let mut bodies: Vec<u8> = Vec::with_capacity(BLOCK_RECORDS * 320);
        let mut spans: Vec<(u64, i64, usize, usize)> = Vec::with_capacity(BLOCK_RECORDS);
        for plan in &plans {
            if plan.members.is_empty() {
                continue;
            }
            bodies.clear();
            spans.clear();
            for &index in &plan.members {
                let record = &records[index];
                let id = record.id.as_str();
                if needs_id_entry(id, record.ts_ms) {
                    ids_batch.insert(id, &plan.key[..]);
                }
                let start = bodies.len();
                encode_record_into(record, &mut bodies);
                spans.push((id_hash(id), record.ts_ms, start, bodies.len()));
                index_changes.add(IndexKind::Model, record.served_model.as_str(), plan.key);
                if let Some(tenant) = &record.tenant {
                    index_changes.add(IndexKind::Tenant, tenant.as_str(), plan.key);
                }
                if update_aggregates {
                    aggregates::for_each_key(record, window_ms, key_buffer, |agg_key| {
                        cached_state(cache, &self.aggregates, agg_key, &self.path)?
                            .add_record(record);
                        Ok::<(), StoreError>(())
                    })?;
                }
            }
            // The stored records first (they were appended first), then the new ones.
            let mut entries: Vec<(u64, i64, &[u8])> = Vec::with_capacity(plan.len());
            if let Some((block, stored)) = &plan.stored {
                entries.extend(
                    stored
                        .iter()
                        .map(|entry| (entry.id_hash, entry.ts_ms, &block[entry.start..entry.end])),
                );
            }
            entries.extend(
                spans.iter().map(|&(hash, ts, start, end)| (hash, ts, &bodies[start..end])),
            );
            blocks_batch.insert(&plan.key[..], encode_block(&entries));
        }
        // The newest blocks stay open for the next appends.
        open_blocks.clear();
        let keep_from = plans.len().saturating_sub(OPEN_BLOCKS);
        open_blocks.extend(plans[keep_from..].iter().map(|plan| plan.key));

        let mut aggregates_batch = Batch::default();
        for (agg_key, cached) in cache.iter_mut() {
            if cached.dirty {
                aggregates_batch.insert(agg_key.as_slice(), cached.state.encode()?);
                cached.dirty = false;
            }
        }
        evict_old_windows(cache, window_ms);
        // The id tree first; then blocks, the indexes, aggregates. A kill in between can leave
        // an id or index entry whose block is missing: every reader skips those.
        self.ids.apply_batch(ids_batch).map_err(|error| self.err(error))?;
        self.blocks.apply_batch(blocks_batch).map_err(|error| self.err(error))?;
        index_changes.apply(&self.by_model, &self.by_tenant, |error| self.err(error))?;
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
