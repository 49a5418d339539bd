//! Implementations of the core storage seams (`RecordStore`, `ExperimentStore`, `PolicyStore`)
//! on sled (embedded, one process: the default) and on PostgreSQL (shared by several gateway
//! replicas: [`postgres`]). sled: time-ordered record keys for cheap range scans, persisted
//! window aggregates, retention, and clear errors for missing, corrupt or newer-schema data
//! directories.
//!
//! This crate is the only one that knows sled and the PostgreSQL client. Both are always
//! compiled: the gateway chooses between them at run time (`storage.backend`), so a cargo
//! feature would only move a configuration error from start-up to build time. sled design
//! choices:
//! - **One sled database per data directory**, one tree per kind of data: `blocks` (raw
//!   records, in blocks of up to 64: see [`records`]), `ids` (request id → block, only for ids
//!   that do not carry their own timestamp), `model_index` and `tenant_index` (secondary
//!   indexes, one key per value and minute),
//!   `aggregates` (window aggregates), `experiments`, `policy`, `audit`, `keys` and
//!   `key_digests` (virtual keys, see [`SledKeyStore`]), and `meta` (the schema marker).
//! - **Time-ordered keys.** A block key is the timestamp of its first record (sign bit flipped,
//!   big-endian) followed by a unique sequence from sled's id generator, so byte order is time
//!   order, ties keep append order, and a scan of a window is one key range that reads only that
//!   window (plus at most one block span before it). Filters on model or tenant go through an
//!   index tree whose keys are `len(value) value minute` and whose values list block keys, so
//!   they too read only the blocks of the window that hold that model or tenant.
//! - **Compact binary records** with a schema byte in front ([`codec`]); older schemas keep
//!   decoding, newer ones are refused with a clear error rather than misread.
//! - **Aggregates beside records** ([`aggregates`]): per stored window and group, exact counters
//!   and mergeable HDR histograms. `aggregate()` answers from them when the query window is a
//!   multiple of the stored window and the filter is empty, reading raw records only for the
//!   unaligned edges of the range; otherwise it aggregates raw records exactly. Aggregates have
//!   their own, longer retention, so reports outlive raw records.
//! - **Opening is careful.** A missing directory is created; a directory that is not ours (other
//!   files and no sled database, or a sled database without our marker), a database sled cannot
//!   read, or a schema newer than this build all fail with `StoreError::Corrupt` naming the path.
//!   Nothing is ever overwritten, and a panic inside sled while opening becomes an error.
//! - **Crash consistency.** Each tree's part of a batch is applied atomically (`apply_batch`), but
//!   trees are not updated in one transaction (sled's multi-tree transactions cost more than the
//!   whole ingest budget). After a hard kill the last unflushed batch may therefore be present
//!   in one tree and missing from another; `get`/`scan` tolerate index entries whose record is
//!   gone, and `count()` counts the blocks. `flush()` makes everything before it durable.

pub mod aggregates;
pub mod codec;
mod docs;
mod keys;
pub mod postgres;
pub mod records;
#[cfg(feature = "test-engines")]
pub mod test_engines;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

pub use docs::{SledExperimentStore, SledPolicyStore};
pub use keys::SledKeyStore;
use llmopt_core::StoreError;
pub use postgres::PgStore;
pub use records::SledRecordStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The marker written in `meta` when a data directory is created.
const MARKER_KEY: &[u8] = b"format";
const MARKER_VALUE: &[u8] = b"llmopt-storage";
const SCHEMA_KEY: &[u8] = b"schema";
/// Version of the directory layout (trees and key formats). Records carry their own version.
/// 1: one key per record (`records` tree); 2: records in blocks (`blocks` tree), one index
/// entry per block and value (`by_model`, `by_tenant`); 3: the indexes grouped per value and
/// minute (`model_index`, `tenant_index`), blocks spanning up to 2 s. Older directories are
/// migrated when opened.
pub const STORE_SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Raw records older than this are deleted by [`SledStore::run_retention`]; `None` keeps them.
    pub raw_retention: Option<Duration>,
    /// Window aggregates older than this are deleted; `None` keeps them. Should be longer than
    /// `raw_retention`: reports over old periods read aggregates.
    pub aggregate_retention: Option<Duration>,
    /// Length of a stored aggregate window.
    pub aggregate_window: Duration,
    /// sled's page cache, bytes. With sled's bookkeeping outside it (its page table grows with
    /// the nodes stored: `benches/benches/store_memory.rs`), it makes most of the gateway's memory
    /// beyond the proxy itself: the gateway bench measured 245 MB resident after load with
    /// 256 MiB here, 58 MB with 32 MiB, 53 MB with 8 MiB, 46 MB with 2 MiB (the default), 20 MB
    /// for the proxy alone. The store is write-mostly and re-reads are served by the OS page
    /// cache, so a small sled cache costs little: an hour's model-filtered scan out of 1M
    /// records took ~50 ms with 2 MiB and ~40 ms with 8 MiB.
    pub cache_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            raw_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            aggregate_retention: Some(Duration::from_secs(400 * 24 * 3600)),
            aggregate_window: Duration::from_secs(60),
            cache_bytes: 2 * 1024 * 1024,
        }
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub raw_deleted: u64,
    pub aggregates_deleted: u64,
}

/// One sled database for a data directory, and the three stores over it.
#[derive(Debug, Clone)]
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    config: StorageConfig,
    records: Arc<SledRecordStore>,
    experiments: Arc<SledExperimentStore>,
    policy: Arc<SledPolicyStore>,
    keys: Arc<SledKeyStore>,
}

pub(crate) fn io_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: path.display().to_string(), message: error.to_string() }
}

pub(crate) fn corrupt(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt { path: path.display().to_string(), message: message.into() }
}

/// Maps a sled error to the core error kinds (corruption is `Corrupt`, the rest `Io`).
pub(crate) fn sled_error(path: &Path, error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { .. } => corrupt(path, error.to_string()),
        other => io_error(path, other),
    }
}

/// Files sled creates in a database directory.
fn looks_like_sled_dir(path: &Path) -> bool {
    path.join("conf").is_file() && path.join("db").is_file()
}

/// Whether sled failed to open because another handle holds the directory's lock (sled reports
/// it as an I/O error of kind `Other` with this text).
fn is_lock_error(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().starts_with("could not acquire lock"))
}

/// Attempts at taking the data directory's lock, [`LOCK_RETRY_PAUSE`] apart.
const LOCK_ATTEMPTS: u32 = 20;
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(25);

impl SledStore {
    /// Opens (or creates) the data directory at `path`.
    pub fn open(path: &Path, config: StorageConfig) -> Result<SledStore> {
        if path.exists() && !path.is_dir() {
            return Err(corrupt(path, "exists and is not a directory"));
        }
        if path.is_dir() {
            let mut entries = std::fs::read_dir(path).map_err(|error| io_error(path, error))?;
            let empty = entries.next().is_none();
            if !empty && !looks_like_sled_dir(path) {
                return Err(corrupt(
                    path,
                    "the directory holds other files and no llmopt database; refusing to write \
                     into it (choose an empty or new directory)",
                ));
            }
        } else {
            std::fs::create_dir_all(path).map_err(|error| io_error(path, error))?;
        }
        let sled_config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(config.cache_bytes);
        // sled reports most damage as `Corruption`, but some damaged files make it panic while
        // recovering; neither may take the process down.
        let open = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sled_config.open()));
        let mut opened = open();
        // The directory's lock is still held for a moment after this process dropped its last
        // handle (sled's I/O threads finish writing first). Wait that out, briefly: another
        // process holding it still gets its error within half a second.
        let mut attempts = 1;
        while attempts < LOCK_ATTEMPTS && matches!(&opened, Ok(Err(error)) if is_lock_error(error))
        {
            std::thread::sleep(LOCK_RETRY_PAUSE);
            opened = open();
            attempts += 1;
        }
        let db = match opened {
            Ok(Err(error)) if is_lock_error(&error) => {
                return Err(io_error(
                    path,
                    format!(
                        "the data directory is locked by another process (another \
                         llm-auto-optimizer on the same storage.path?): {error}"
                    ),
                ));
            }
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(error))) => {
                // sled reports unreadable or truncated files as I/O errors of kind `InvalidData`
                // or `UnexpectedEof`: those are damage, not a missing permission.
                use std::io::ErrorKind;
                return Err(match error.kind() {
                    ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::InvalidInput => {
                        corrupt(path, format!("sled cannot read the database: {error}"))
                    }
                    _ => io_error(path, error),
                });
            }
            Ok(Err(error)) => {
                return Err(corrupt(path, format!("sled cannot open the database: {error}")));
            }
            Err(_) => return Err(corrupt(path, "sled failed while recovering the database")),
        };
        let meta = db.open_tree("meta").map_err(|error| sled_error(path, error))?;
        let schema = check_or_write_marker(path, &db, &meta)?;
        let aggregate_window_ms =
            i64::try_from(config.aggregate_window.as_millis()).unwrap_or(i64::MAX).max(1);
        let records =
            Arc::new(SledRecordStore::open(path.to_path_buf(), db.clone(), aggregate_window_ms)?);
        if schema < STORE_SCHEMA_VERSION {
            records.migrate_from(schema)?;
            meta.insert(SCHEMA_KEY, &STORE_SCHEMA_VERSION.to_be_bytes())
                .map_err(|error| sled_error(path, error))?;
            db.flush().map_err(|error| sled_error(path, error))?;
        }
        // After the schema is recorded (also when a kill came between the two last time).
        records.drop_old_index_trees()?;
        let experiments = Arc::new(SledExperimentStore::open(path.to_path_buf(), &db)?);
        let policy = Arc::new(SledPolicyStore::open(path.to_path_buf(), &db)?);
        let keys = Arc::new(SledKeyStore::open(path.to_path_buf(), &db)?);
        Ok(SledStore { path: path.to_path_buf(), db, config, records, experiments, policy, keys })
    }

    pub fn records(&self) -> Arc<SledRecordStore> {
        Arc::clone(&self.records)
    }

    pub fn experiments(&self) -> Arc<SledExperimentStore> {
        Arc::clone(&self.experiments)
    }

    pub fn policy(&self) -> Arc<SledPolicyStore> {
        Arc::clone(&self.policy)
    }

    pub fn keys(&self) -> Arc<SledKeyStore> {
        Arc::clone(&self.keys)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Makes everything written so far durable (one fsync of sled's log).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(|error| sled_error(&self.path, error))
    }

    /// Deletes raw records older than `raw_retention` and aggregates older than
    /// `aggregate_retention`, measured back from `now_ms`. The binary runs it periodically.
    pub fn run_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        let cutoff = |age: Option<Duration>| {
            age.map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
        };
        let mut report = RetentionReport::default();
        if let Some(before) = cutoff(self.config.raw_retention) {
            report.raw_deleted = self.records.delete_records_before(before)?;
        }
        if let Some(before) = cutoff(self.config.aggregate_retention) {
            report.aggregates_deleted = self.records.delete_aggregates_before(before)?;
        }
        Ok(report)
    }
}

/// Checks the marker of an existing database (or claims a new, empty one) and returns the
/// layout version it was written with.
fn check_or_write_marker(path: &Path, db: &sled::Db, meta: &sled::Tree) -> Result<u32> {
    let marker = meta.get(MARKER_KEY).map_err(|error| sled_error(path, error))?;
    match marker {
        Some(value) if value.as_ref() == MARKER_VALUE => {
            let schema = meta.get(SCHEMA_KEY).map_err(|error| sled_error(path, error))?;
            let schema = schema
                .and_then(|bytes| <[u8; 4]>::try_from(bytes.as_ref()).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| corrupt(path, "the schema version is missing or malformed"))?;
            if schema > STORE_SCHEMA_VERSION {
                return Err(corrupt(
                    path,
                    format!(
                        "written by a newer version (schema {schema}; this build reads up to \
                         {STORE_SCHEMA_VERSION}); upgrade rather than risk misreading it"
                    ),
                ));
            }
            Ok(schema)
        }
        Some(_) => Err(corrupt(path, "the database belongs to another program")),
        None => {
            // No marker: only a brand-new, empty database may be claimed.
            let has_data = db
                .tree_names()
                .iter()
                .any(|name| db.open_tree(name).map(|tree| !tree.is_empty()).unwrap_or(true))
                || !db.is_empty();
            if has_data {
                return Err(corrupt(path, "a sled database without the llmopt marker (foreign)"));
            }
            meta.insert(SCHEMA_KEY, &STORE_SCHEMA_VERSION.to_be_bytes())
                .map_err(|error| sled_error(path, error))?;
            meta.insert(MARKER_KEY, MARKER_VALUE).map_err(|error| sled_error(path, error))?;
            db.flush().map_err(|error| sled_error(path, error))?;
            Ok(STORE_SCHEMA_VERSION)
        }
    }
}
