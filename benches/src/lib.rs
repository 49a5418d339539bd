//! Shared helpers for the criterion benches in `benches/benches/` (one file per area), driven
//! by `cargo xtask bench`.

use llmopt_core::{
    AggregateQuery, AggregateRow, Feedback, RecordQuery, RecordStore, RequestId, RequestRecord,
    StoreError,
};

/// A record store that keeps nothing: isolates what a bench measures (the collector's hot
/// path, the proxy alone) from the cost of storing records.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardStore;

impl RecordStore for DiscardStore {
    fn append(&self, _: &[RequestRecord]) -> Result<(), StoreError> {
        Ok(())
    }
    fn scan(&self, _: &RecordQuery) -> Result<Vec<RequestRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn get(&self, _: &RequestId) -> Result<Option<RequestRecord>, StoreError> {
        Ok(None)
    }
    fn add_feedback(&self, _: &RequestId, _: Feedback) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn aggregate(&self, _: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError> {
        Ok(Vec::new())
    }
    fn delete_before(&self, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn count(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
