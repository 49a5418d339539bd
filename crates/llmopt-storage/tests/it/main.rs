//! Integration tests of the sled stores (conformance suites, restart, opening errors, the
//! version-1 record fixture, aggregates against raw records, retention) and of the PostgreSQL
//! stores against a real server (`postgres`).

mod aggregates;
mod blocks;
mod conformance;
mod fixture;
mod open;
mod postgres;
mod retention;
// The launcher other crates get through the `test-engines` feature; Redis is the gateway's.
#[path = "../../src/test_engines.rs"]
#[allow(dead_code, reason = "the Redis half serves the gateway's tests")]
mod test_engines;

use llmopt_storage::{SledStore, StorageConfig};

/// A fresh store in a temporary directory (kept alive by the returned guard).
pub fn fresh_store(config: StorageConfig) -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(&dir.path().join("data"), config).expect("a fresh store opens");
    (dir, store)
}
