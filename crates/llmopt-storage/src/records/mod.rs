//! `SledRecordStore`: raw records in time-ordered blocks, their indexes and the window
//! aggregates.
//!
//! # Blocks
//! sled pays per key: one insert costs a few microseconds of node copying whatever its size, and
//! the first layout (one key per record, plus one key per record in each of three index trees)
//! ingested about 30,000 records/s. sled also keeps memory for every node it has written, so the
//! number of keys is what makes the store's resident memory grow. Records are therefore stored
//! in **blocks** of at most [`BLOCK_RECORDS`] records spanning at most [`BLOCK_SPAN_MS`]; a block
//! is one key, `record_key(first timestamp, sequence)`, whose value is a small header (per
//! record: id hash, timestamp, length) and the encoded records back to back
//! ([`crate::codec::encode_block`]). An append sorts its batch by time and puts each record into
//! one of the newest blocks while it has room and span (rewriting that block), else into a new
//! block: so quiet traffic, whose collector batches hold a few records each, fills blocks as
//! busy traffic does (a 50 calls/s stream once made a block of ~5 records per batch). The model
//! and tenant indexes are grouped: one key per value and minute ([`index`]).
//!
//! Because a block spans at most `BLOCK_SPAN_MS`, the blocks holding records of `[from, to)` are
//! the keys in `[from − BLOCK_SPAN_MS, to)`: a scan still reads only its window. Results are
//! ordered by (timestamp, block sequence, place in block), which is append order for ties (see
//! `write::assign_blocks` for why extending blocks keeps it).
//!
//! # Finding a record by id
//! The gateway's request ids are UUIDv7 strings made from the record's own timestamp. Such a
//! record needs no id index entry: its block is among the keys in `[ts − BLOCK_SPAN_MS, ts]`
//! (two seconds: a few blocks, or ~30 at 1,000 calls/s), and the block headers' id hashes point
//! at it without decoding the others. Only records whose id does not carry their timestamp (ids
//! brought by batch ingest) get an entry in the `ids` tree. The rule is a pure function of (id,
//! timestamp), so every reader and the retention pass agree on where a record's id lives.
//!
//! # Modules
//! - this one: the store, its trees and the `RecordStore` seam;
//! - `index`: the grouped model and tenant indexes;
//! - `read`: id lookups, time-range and index scans, and aggregate queries;
//! - `write`: appends (replacing stored copies of the same ids, filling blocks, index and
//!   aggregate updates) and rewriting a block without some of its records;
//! - `maintenance`: retention of raw records and aggregates, and the migrations of older
//!   layouts (one key per record; one index entry per block).

mod index;
mod maintenance;
mod read;
mod write;

use std::{
    path::PathBuf,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use llmopt_core::{
    AggregateQuery, AggregateRow, Feedback, RecordFilter, RecordQuery, RecordStore, RequestId,
    RequestRecord, StoreError, store::aggregate_records,
};
use sled::{IVec, Tree};

use self::write::{AGG_CACHE_LIMIT, WriterState};
use crate::{
    Result,
    codec::{
        BlockEntry, RecordKey, block_len, encode_block, encode_record, record_key, time_from_bytes,
        uuid_v7_ms,
    },
    sled_error,
};

/// Most records in one block.
pub const BLOCK_RECORDS: usize = 64;

/// Longest time between the first and last record of a block, in milliseconds. Bounds how far
/// before a window a scan starts, and how many blocks an id lookup reads.
pub const BLOCK_SPAN_MS: i64 = 2_000;

/// The grouped model and tenant indexes ([`index`]). Store schema 2 had one entry per block and
/// value in trees named `by_model` and `by_tenant`.
const MODEL_INDEX_TREE: &str = "model_index";
const TENANT_INDEX_TREE: &str = "tenant_index";

pub use index::INDEX_BUCKET_MS;

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

impl SledRecordStore {
    pub(crate) fn open(path: PathBuf, db: sled::Db, aggregate_window_ms: i64) -> Result<Self> {
        let open = |name: &str| db.open_tree(name).map_err(|error| sled_error(&path, error));
        let blocks = open("blocks")?;
        let ids = open("ids")?;
        let by_model = open(MODEL_INDEX_TREE)?;
        let by_tenant = open(TENANT_INDEX_TREE)?;
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
        llmopt_core::store::join_feedback(&mut located.record, feedback);
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
