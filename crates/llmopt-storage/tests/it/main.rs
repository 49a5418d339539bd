//! Integration tests of the sled stores: conformance suites, restart, opening errors, the
//! version-1 record fixture, aggregates against raw records, retention.

mod aggregates;
mod blocks;
mod conformance;
mod fixture;
mod open;
mod retention;

use llmopt_storage::{SledStore, StorageConfig};

/// A fresh store in a temporary directory (kept alive by the returned guard).
pub fn fresh_store(config: StorageConfig) -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(&dir.path().join("data"), config).expect("a fresh store opens");
    (dir, store)
}
