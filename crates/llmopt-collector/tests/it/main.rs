//! Integration tests of the collector: validation, live statistics, the batching writer,
//! back-pressure, feedback, shutdown, and a hard-kill crash test against sled.

mod backpressure;
mod crash;
mod live;
mod writer;

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use llmopt_core::{
    AggregateQuery, AggregateRow, Feedback, MemoryRecordStore, RecordQuery, RecordStore, RequestId,
    RequestRecord, StoreError,
};

/// 2026-01-01T00:00:00Z, a window boundary for every window length used here.
pub const T0: i64 = 1_767_225_600_000;

/// A store whose `append` waits until the test opens the gate: the store "cannot keep up".
#[derive(Debug, Default)]
pub struct GatedStore {
    pub inner: MemoryRecordStore,
    open: Mutex<bool>,
    changed: Condvar,
    /// How many `append` calls are waiting at the gate.
    waiting: Mutex<usize>,
    waiting_changed: Condvar,
}

impl GatedStore {
    pub fn open_gate(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Returns once the writer is blocked inside `append`.
    pub fn wait_until_writer_blocked(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        while *waiting == 0 {
            waiting = self.waiting_changed.wait(waiting).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl RecordStore for GatedStore {
    fn append(&self, records: &[RequestRecord]) -> Result<(), StoreError> {
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.waiting_changed.notify_all();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self.changed.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
        drop(open);
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.inner.append(records)
    }
    fn scan(&self, query: &RecordQuery) -> Result<Vec<RequestRecord>, StoreError> {
        self.inner.scan(query)
    }
    fn get(&self, id: &RequestId) -> Result<Option<RequestRecord>, StoreError> {
        self.inner.get(id)
    }
    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool, StoreError> {
        self.inner.add_feedback(id, feedback)
    }
    fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError> {
        self.inner.aggregate(query)
    }
    fn delete_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.delete_before(before_ms)
    }
    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

/// A store whose every write fails.
#[derive(Debug, Default)]
pub struct FailingStore;

impl RecordStore for FailingStore {
    fn append(&self, _: &[RequestRecord]) -> Result<(), StoreError> {
        Err(StoreError::Io { path: "/dev/full".into(), message: "no space left".into() })
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

/// A plain successful record.
pub fn simple(index: u64, ts_ms: i64, model: &str, latency_ms: u64) -> RequestRecord {
    let mut record = RequestRecord::new(format!("r{index}"), ts_ms, "openai", model);
    record.latency_us = latency_ms * 1_000;
    record
}

pub fn shared<T>(value: T) -> Arc<T> {
    Arc::new(value)
}
