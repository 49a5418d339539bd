//! Reading: a record by id (by the time its UUIDv7 id carries, else through the `ids` tree),
//! records of a time range (directly or through the model and tenant indexes), and aggregate
//! queries answered from the stored window aggregates.

use std::collections::BTreeMap;

use llmopt_core::{
    AggregateQuery, AggregateRow, GroupBy, RecordFilter, RecordQuery, RequestRecord,
};
use sled::{IVec, Tree};

use super::{
    Located, SledRecordStore, first_block_for,
    index::{bucket_start, group_key, group_members},
    key_seq, key_time, to_record_key,
};
use crate::{
    Result,
    aggregates::{self, AggState, Dimension},
    codec::{RecordKey, decode_block_header, decode_record, id_hash, record_key, uuid_v7_ms},
};

/// A record found by a scan with its sort key: (timestamp, block sequence, place in block).
type Found = ((i64, u64, usize), RequestRecord);

impl SledRecordStore {
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
    pub(super) fn locate(&self, id: &str) -> Result<Option<Located>> {
        if let Some(found) = self.locate_by_time(id)? {
            return Ok(Some(found));
        }
        match self.ids.get(id).map_err(|error| self.err(error))? {
            Some(key) => self.locate_in(&key, id),
            None => Ok(None),
        }
    }

    /// The record with `id` among the blocks its UUIDv7 timestamp points at.
    pub(super) fn locate_by_time(&self, id: &str) -> Result<Option<Located>> {
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
    pub(super) fn locate_in(&self, key: &[u8], id: &str) -> Result<Option<Located>> {
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
    pub(super) fn scan_range(
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

    /// Records of one indexed value in a time range, through a grouped index tree.
    pub(super) fn scan_index(
        &self,
        index: &Tree,
        value: &str,
        query: &RecordQuery,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let first = first_block_for(query.from_ms);
        let end = record_key(query.to_ms, 0);
        let groups = group_key(value, bucket_start(key_time(&first)))
            ..=group_key(value, bucket_start(query.to_ms));
        let block_keys = index.range(groups).flat_map(|item| {
            let members: Vec<Result<RecordKey>> = match item {
                Ok((_, members)) => group_members(&members)
                    .filter(|key| *key >= first && *key < end)
                    .map(Ok)
                    .collect(),
                Err(error) => vec![Err(self.err(error))],
            };
            members
        });
        let blocks = block_keys.filter_map(|key| {
            let key = match key {
                Ok(key) => key,
                Err(error) => return Some(Err(error)),
            };
            // An index entry whose block is gone (a kill between trees) is skipped.
            match self.blocks.get(key) {
                Ok(Some(block)) => Some(Ok((key, block))),
                Ok(None) => None,
                Err(error) => Some(Err(self.err(error))),
            }
        });
        self.collect_from_blocks(blocks, query.from_ms, query.to_ms, &query.filter, limit)
    }

    /// Aggregates from the stored windows for `[aligned_from, aligned_to)`, plus raw records
    /// for the unaligned edges of the query.
    pub(super) fn aggregate_from_sketches(
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
