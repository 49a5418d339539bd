//! The model and tenant indexes, grouped: one sled key per indexed value and minute
//! ([`INDEX_BUCKET_MS`]), whose value lists the keys of the blocks of that minute holding a
//! record with that value.
//!
//! sled keeps state for every node it has ever written (page table entries, paged-out stubs),
//! so its memory grows with the number of keys stored, not their size. The first block layout
//! (store schema 2) had one index key per block and value: under quiet traffic, where every
//! collector batch made its own small blocks, those keys made most of the nodes. Grouped per
//! minute, the indexes hold a few keys per minute whatever the traffic.
//!
//! A group key is `index_prefix(value)` followed by the bucket's start (sign bit flipped,
//! big-endian), so one value's groups are contiguous and in time order; a block belongs to the
//! bucket of its key's time (its first record). The group's value is the sorted, distinct
//! 16-byte block keys back to back. Writers change groups under the writer lock by
//! read-modify-write, batched per append ([`IndexChanges`]). A group may name a block that is
//! gone (a kill between trees): readers skip it, as before.

use std::collections::BTreeMap;

use llmopt_core::StoreError;
use sled::{Batch, Tree};

use crate::{
    Result,
    codec::{RecordKey, index_prefix, time_bytes},
};

/// Length of the time bucket of one index group, in milliseconds.
pub const INDEX_BUCKET_MS: i64 = 60_000;

/// Start of the bucket holding `ts_ms`.
pub(super) fn bucket_start(ts_ms: i64) -> i64 {
    ts_ms.saturating_sub(ts_ms.rem_euclid(INDEX_BUCKET_MS))
}

/// The group key of `value` for the bucket starting at `bucket`.
pub(super) fn group_key(value: &str, bucket: i64) -> Vec<u8> {
    let mut key = index_prefix(value);
    key.extend_from_slice(&time_bytes(bucket));
    key
}

/// The block keys a group's value lists.
pub(super) fn group_members(value: &[u8]) -> impl Iterator<Item = RecordKey> + '_ {
    value.chunks_exact(16).filter_map(|chunk| RecordKey::try_from(chunk).ok())
}

/// Which index a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum IndexKind {
    Model,
    Tenant,
}

/// Block keys to add to and remove from one group.
#[derive(Debug, Default)]
struct GroupChange {
    added: Vec<RecordKey>,
    removed: Vec<RecordKey>,
}

/// Block keys to add to and remove from index groups, applied together.
#[derive(Debug, Default)]
pub(super) struct IndexChanges {
    groups: BTreeMap<(IndexKind, Vec<u8>), GroupChange>,
}

impl IndexChanges {
    /// `block` holds a record with `value`.
    pub(super) fn add(&mut self, kind: IndexKind, value: &str, block: RecordKey) {
        let bucket = bucket_start(super::key_time(&block));
        self.groups.entry((kind, group_key(value, bucket))).or_default().added.push(block);
    }

    /// `block` is gone (it held a record with `value`).
    pub(super) fn remove(&mut self, kind: IndexKind, value: &str, block: RecordKey) {
        let bucket = bucket_start(super::key_time(&block));
        self.groups.entry((kind, group_key(value, bucket))).or_default().removed.push(block);
    }

    /// Applies the changes: one read and one write per group touched.
    pub(super) fn apply(
        self,
        by_model: &Tree,
        by_tenant: &Tree,
        err: impl Fn(sled::Error) -> StoreError,
    ) -> Result<()> {
        let mut model_batch = Batch::default();
        let mut tenant_batch = Batch::default();
        for ((kind, key), GroupChange { added, mut removed }) in self.groups {
            let (tree, batch) = match kind {
                IndexKind::Model => (by_model, &mut model_batch),
                IndexKind::Tenant => (by_tenant, &mut tenant_batch),
            };
            let stored = tree.get(&key).map_err(&err)?;
            let mut members: Vec<RecordKey> =
                stored.as_ref().map(|value| group_members(value).collect()).unwrap_or_default();
            // Most appends add blocks already listed (an extended block, a second record of
            // the same model): nothing to write then.
            if removed.is_empty() && added.iter().all(|block| members.binary_search(block).is_ok())
            {
                continue;
            }
            members.extend(added);
            members.sort_unstable();
            members.dedup();
            if !removed.is_empty() {
                removed.sort_unstable();
                members.retain(|member| removed.binary_search(member).is_err());
            }
            if members.is_empty() {
                if stored.is_some() {
                    batch.remove(key);
                }
            } else {
                batch.insert(key, members.concat());
            }
        }
        by_model.apply_batch(model_batch).map_err(&err)?;
        by_tenant.apply_batch(tenant_batch).map_err(&err)?;
        Ok(())
    }
}
