//! Integration tests of `llmopt-core`: usage fixtures, cost of every catalog model, the LiteLLM
//! cross-check, record wire-form stability, and the in-memory stores' conformance.

#![allow(clippy::unwrap_used, reason = "tests stop at the first failure")]

mod cache_key;
mod conformance;
mod cost;
mod usage;
mod wire;

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}
