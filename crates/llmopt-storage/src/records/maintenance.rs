//! Maintenance: retention of raw records and of window aggregates, and the migrations of
//! directories written with older layouts (store schema 1: one key per record; 2: one index
//! entry per block and value).

use std::sync::atomic::Ordering;

use sled::{Batch, IVec};

use super::{
    SledRecordStore,
    index::{IndexChanges, bucket_start},
    key_time, to_record_key,
};
use crate::{
    Result, aggregates,
    codec::{decode_block_header, decode_record, record_key, time_bytes},
};

/// The index trees of store schemas 1 and 2 (model, tenant).
const OLD_INDEX_TREES: [&str; 2] = ["by_model", "by_tenant"];

/// Blocks handled per sled batch during retention (bounds the memory of one pass).
const DELETE_CHUNK: usize = 1_024;

impl SledRecordStore {
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
            let mut index_changes = IndexChanges::default();
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
                let gone = self
                    .remove_from_block(key, block, &entries, &old, &mut index_changes)?
                    .len() as u64;
                deleted += gone;
                let _ = self.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                    Some(count.saturating_sub(gone))
                });
            }
            index_changes.apply(&self.by_model, &self.by_tenant, |error| self.err(error))?;
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

    /// Brings a directory written with an older layout to this one (store schema
    /// [`crate::STORE_SCHEMA_VERSION`]). The caller records the new schema afterwards and then
    /// calls [`SledRecordStore::drop_old_index_trees`]: until the schema is recorded, a kill
    /// leaves the old trees in place and the next open migrates again.
    pub(crate) fn migrate_from(&self, schema: u32) -> Result<()> {
        if schema < 2 {
            // Version 1's index trees point at per-record keys: rebuilt from the records.
            self.drop_old_index_trees()?;
            self.migrate_record_per_key_layout()?;
        } else if schema < 3 {
            self.group_index_entries()?;
        }
        Ok(())
    }

    /// Drops the index trees of store schemas 1 and 2 (`by_model`, `by_tenant`), if present.
    pub(crate) fn drop_old_index_trees(&self) -> Result<()> {
        let names = self.db.tree_names();
        for old in OLD_INDEX_TREES {
            if names.iter().any(|name| name.as_ref() == old.as_bytes()) {
                self.db.drop_tree(old).map_err(|error| self.err(error))?;
            }
        }
        Ok(())
    }

    /// Store schema 2 → 3: the one-entry-per-block index trees (`len value block-key` → empty)
    /// become grouped ones (one key per value and minute listing its blocks). Reads only the
    /// old keys, no block.
    fn group_index_entries(&self) -> Result<u64> {
        let mut grouped = 0;
        for (old_name, new) in
            [(OLD_INDEX_TREES[0], &self.by_model), (OLD_INDEX_TREES[1], &self.by_tenant)]
        {
            new.clear().map_err(|error| self.err(error))?;
            let old = self.db.open_tree(old_name).map_err(|error| self.err(error))?;
            let mut batch = Batch::default();
            let mut in_batch = 0;
            // The group being filled: its key and block keys. Old keys sort by (value, block
            // key), so a group's entries are contiguous.
            let mut current: Option<(Vec<u8>, Vec<u8>)> = None;
            for item in old.iter() {
                let (key, _) = item.map_err(|error| self.err(error))?;
                let Some(split) = key.len().checked_sub(16) else { continue };
                let Some(block) = to_record_key(&key[split..]) else { continue };
                let mut group = key[..split].to_vec();
                group.extend_from_slice(&time_bytes(bucket_start(key_time(&block))));
                match &mut current {
                    Some((current_key, members)) if *current_key == group => {
                        members.extend_from_slice(&block);
                    }
                    _ => {
                        if let Some((done_key, members)) = current.take() {
                            batch.insert(done_key, members);
                            in_batch += 1;
                            grouped += 1;
                        }
                        current = Some((group, block.to_vec()));
                    }
                }
                if in_batch >= 4_096 {
                    new.apply_batch(std::mem::take(&mut batch)).map_err(|error| self.err(error))?;
                    in_batch = 0;
                }
            }
            if let Some((done_key, members)) = current.take() {
                batch.insert(done_key, members);
                grouped += 1;
            }
            new.apply_batch(batch).map_err(|error| self.err(error))?;
        }
        self.db.flush().map_err(|error| self.err(error))?;
        Ok(grouped)
    }

    /// Moves the records of a directory written with the first layout (one key per record in a
    /// `records` tree) into blocks. Aggregates were already kept by that layout and are left
    /// as they are. Idempotent: a kill part-way leaves the old tree to migrate again.
    pub(crate) fn migrate_record_per_key_layout(&self) -> Result<u64> {
        let old = self.db.open_tree("records").map_err(|error| self.err(error))?;
        if old.is_empty() {
            return Ok(0);
        }
        // The old id tree points at per-record keys: rebuilt from scratch, as are the indexes.
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
