use std::{sync::Arc, time::Duration};

use llmopt_collector::{Collector, CollectorConfig, CollectorError};
use llmopt_core::{
    Clock, Feedback, FeedbackValue, ManualClock, MemoryRecordStore, RecordQuery, RecordStore,
    RequestId,
};
use llmopt_storage::{SledStore, StorageConfig};

use crate::{FailingStore, GatedStore, T0, simple};

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(T0))
}

/// A writer that would never wake on its own during the test: only `flush` and full batches
/// move records.
fn slow_ticks() -> CollectorConfig {
    CollectorConfig {
        flush_interval: Duration::from_secs(3_600),
        batch_size: 64,
        ..CollectorConfig::default()
    }
}

#[test]
fn flush_makes_everything_accepted_visible_in_the_store() {
    let store = Arc::new(MemoryRecordStore::new());
    let collector = Collector::start(store.clone(), clock(), slow_ticks());
    for i in 0..1_000 {
        collector.record(simple(i, T0 + i as i64, "m", 1)).unwrap();
    }
    collector.flush().unwrap();
    assert_eq!(store.count().unwrap(), 1_000);
    let stored = store.scan(&RecordQuery::range(T0, T0 + 1_000)).unwrap();
    assert!(stored.iter().enumerate().all(|(i, r)| r.id.as_str() == format!("r{i}")), "in order");
    let metrics = collector.metrics();
    assert_eq!((metrics.accepted, metrics.written, metrics.queue_depth), (1_000, 1_000, 0));
    // A second flush with nothing new returns at once.
    collector.flush().unwrap();
}

#[test]
fn feedback_reaches_queued_in_flight_and_stored_records() {
    let store = Arc::new(GatedStore::default());
    let config = CollectorConfig { batch_size: 2, ..slow_ticks() };
    let collector = Collector::start(store.clone(), clock(), config);
    let thumbs = |metric: &str| Feedback {
        metric: metric.into(),
        value: FeedbackValue::Bool(true),
        ts_ms: T0,
    };
    // r0 and r1 form a full batch; the writer takes it and blocks in `append` (in flight).
    collector.record(simple(0, T0, "m", 1)).unwrap();
    collector.record(simple(1, T0, "m", 1)).unwrap();
    store.wait_until_writer_blocked();
    // r2 stays queued behind the blocked writer.
    collector.record(simple(2, T0, "m", 1)).unwrap();
    assert!(collector.add_feedback(&RequestId::new("r0"), None, thumbs("in_flight")).unwrap());
    assert!(collector.add_feedback(&RequestId::new("r2"), None, thumbs("queued")).unwrap());
    assert!(!collector.add_feedback(&RequestId::new("nobody"), None, thumbs("x")).unwrap());
    store.open_gate();
    collector.flush().unwrap();
    assert!(collector.add_feedback(&RequestId::new("r1"), None, thumbs("stored")).unwrap());
    let metric_of = |id: &str| -> Vec<String> {
        store
            .get(&RequestId::new(id))
            .unwrap()
            .unwrap()
            .feedback
            .into_iter()
            .map(|f| f.metric)
            .collect()
    };
    assert_eq!(metric_of("r0"), ["in_flight"]);
    assert_eq!(metric_of("r1"), ["stored"]);
    assert_eq!(metric_of("r2"), ["queued"]);
}

#[test]
fn feedback_scoped_to_a_tenant_joins_only_its_records_and_replaces_per_metric() {
    let store = Arc::new(MemoryRecordStore::new());
    let collector = Collector::start(store.clone(), clock(), slow_ticks());
    let mut record = simple(0, T0, "m", 1);
    record.tenant = Some("team-a".into());
    collector.record(record).unwrap();
    let value =
        |v: bool| Feedback { metric: "correct".into(), value: FeedbackValue::Bool(v), ts_ms: T0 };
    let id = RequestId::new("r0");
    // Queued, then stored: another tenant sees no such record either way.
    assert!(!collector.add_feedback(&id, Some("team-b"), value(true)).unwrap());
    assert!(collector.add_feedback(&id, Some("team-a"), value(true)).unwrap());
    collector.flush().unwrap();
    assert!(!collector.add_feedback(&id, Some("team-b"), value(false)).unwrap());
    assert!(collector.add_feedback(&id, Some("team-a"), value(false)).unwrap());
    let stored = store.get(&id).unwrap().unwrap();
    assert_eq!(stored.feedback, vec![value(false)], "one value per metric, the latest");
}

#[test]
fn shutdown_flushes_and_refuses_later_records() {
    let store = Arc::new(MemoryRecordStore::new());
    let collector = Collector::start(store.clone(), clock(), slow_ticks());
    for i in 0..300 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    let handle = collector.clone();
    collector.shutdown().unwrap();
    assert_eq!(store.count().unwrap(), 300);
    assert_eq!(handle.record(simple(999, T0, "m", 1)), Err(CollectorError::ShutDown));
    handle.shutdown().unwrap();
}

#[test]
fn dropping_the_last_handle_flushes() {
    let store = Arc::new(MemoryRecordStore::new());
    let collector = Collector::start(store.clone(), clock(), slow_ticks());
    for i in 0..10 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    drop(collector);
    assert_eq!(store.count().unwrap(), 10);
}

#[test]
fn store_failures_are_counted_and_reported_by_flush() {
    let config = CollectorConfig { write_retry: Duration::ZERO, ..slow_ticks() };
    let collector = Collector::start(Arc::new(FailingStore), clock(), config);
    for i in 0..100 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    assert!(matches!(collector.flush(), Err(CollectorError::Store(_))));
    let metrics = collector.metrics();
    assert_eq!(metrics.write_failed_records, 100);
    assert_eq!(metrics.written, 0);
    assert!(metrics.write_errors >= 1);
}

#[test]
fn the_writer_flushes_on_its_own_every_interval() {
    let store = Arc::new(GatedStore::default());
    store.open_gate();
    let config =
        CollectorConfig { flush_interval: Duration::from_millis(10), ..CollectorConfig::default() };
    let collector = Collector::start(store.clone(), clock(), config);
    collector.record(simple(1, T0, "m", 1)).unwrap();
    // No flush call: the interval tick writes the lone record. Waiting for the store to show
    // it is waiting for the event itself (bounded so a broken writer fails the test).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.count().unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "interval flush never happened");
        std::thread::yield_now();
    }
}

#[test]
fn restart_keeps_what_was_accepted_through_sled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    {
        let sled = SledStore::open(&path, StorageConfig::default()).unwrap();
        let collector = Collector::start(sled.records(), clock(), CollectorConfig::default());
        for i in 0..5_000 {
            collector.record(simple(i, T0 + i as i64, "gpt-4o", 3)).unwrap();
        }
        collector.shutdown().unwrap();
    }
    let sled = SledStore::open(&path, StorageConfig::default()).unwrap();
    assert_eq!(sled.records().count().unwrap(), 5_000);
    let got = sled.records().get(&RequestId::new("r4321")).unwrap().unwrap();
    assert_eq!(got, simple(4321, T0 + 4321, "gpt-4o", 3));
}

/// A memory store that fails every call while `down` is set (an engine that went away).
#[derive(Debug, Default)]
struct OutageStore {
    down: std::sync::atomic::AtomicBool,
    inner: MemoryRecordStore,
}

impl OutageStore {
    fn check(&self) -> Result<(), llmopt_core::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(llmopt_core::StoreError::Io {
                path: "postgresql://127.0.0.1:5432/llmopt".into(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }
}

impl RecordStore for OutageStore {
    fn append(
        &self,
        records: &[llmopt_core::RequestRecord],
    ) -> Result<(), llmopt_core::StoreError> {
        self.check()?;
        self.inner.append(records)
    }
    fn scan(
        &self,
        query: &RecordQuery,
    ) -> Result<Vec<llmopt_core::RequestRecord>, llmopt_core::StoreError> {
        self.inner.scan(query)
    }
    fn get(
        &self,
        id: &RequestId,
    ) -> Result<Option<llmopt_core::RequestRecord>, llmopt_core::StoreError> {
        self.inner.get(id)
    }
    fn add_feedback(
        &self,
        id: &RequestId,
        feedback: Feedback,
    ) -> Result<bool, llmopt_core::StoreError> {
        self.check()?;
        self.inner.add_feedback(id, feedback)
    }
    fn aggregate(
        &self,
        query: &llmopt_core::AggregateQuery,
    ) -> Result<Vec<llmopt_core::AggregateRow>, llmopt_core::StoreError> {
        self.inner.aggregate(query)
    }
    fn delete_before(&self, before_ms: i64) -> Result<u64, llmopt_core::StoreError> {
        self.inner.delete_before(before_ms)
    }
    fn count(&self) -> Result<u64, llmopt_core::StoreError> {
        self.inner.count()
    }
    fn flush(&self) -> Result<(), llmopt_core::StoreError> {
        self.check()
    }
}

/// Polls `done` until it holds (a background thread's progress), failing after 10 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn records_wait_out_a_store_outage_and_none_acknowledged_is_lost() {
    let store = Arc::new(OutageStore::default());
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let collector = Collector::start(store.clone(), clock(), slow_ticks());
    for i in 0..100 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    // A flush during the outage says so at once instead of waiting it out.
    assert!(matches!(collector.flush(), Err(CollectorError::Store(_))));
    eventually("the writer retries", || collector.metrics().write_retries >= 2);
    assert!(collector.metrics().retrying_records > 0);
    // More records arrive while the store is down: they wait in the queue.
    for i in 100..150 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    // A flush that overlapped the last failing attempt reports it; the next one succeeds.
    eventually("the store came back", || collector.flush().is_ok());
    assert_eq!(store.count().unwrap(), 150, "nothing acknowledged was lost");
    let metrics = collector.metrics();
    assert_eq!(metrics.write_failed_records, 0);
    assert_eq!(metrics.written, 150);
    assert_eq!(metrics.retrying_records, 0);
    assert!(metrics.write_errors >= 2);
}

#[test]
fn a_batch_still_failing_at_shutdown_is_counted_lost_without_waiting_out_the_retry() {
    let config = CollectorConfig { write_retry: Duration::from_secs(3_600), ..slow_ticks() };
    let collector = Collector::start(Arc::new(FailingStore), clock(), config);
    for i in 0..10 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    assert!(collector.flush().is_err());
    let started = std::time::Instant::now();
    assert!(collector.shutdown().is_err());
    assert!(started.elapsed() < Duration::from_secs(30), "shutdown cut the retry short");
    let metrics = collector.metrics();
    assert_eq!(metrics.write_failed_records, 10);
    assert_eq!(metrics.written, 0);
}
