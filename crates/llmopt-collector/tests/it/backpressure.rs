use std::{sync::Arc, time::Duration};

use llmopt_collector::{Collector, CollectorConfig, CollectorError, OverflowPolicy};
use llmopt_core::{Clock, ManualClock, RecordStore};

use crate::{GatedStore, T0, simple};

fn config(overflow: OverflowPolicy) -> CollectorConfig {
    CollectorConfig {
        queue_capacity: 100,
        batch_size: 10,
        flush_interval: Duration::from_secs(3_600),
        overflow,
        ..CollectorConfig::default()
    }
}

#[test]
fn drop_policy_counts_drops_and_bounds_the_queue() {
    let store = Arc::new(GatedStore::default());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    let collector = Collector::start(store.clone(), clock, config(OverflowPolicy::Drop));
    // The first full batch goes to the writer, which then blocks in the store.
    for i in 0..10 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    store.wait_until_writer_blocked();
    let mut dropped = 0;
    for i in 10..1_000 {
        match collector.record(simple(i, T0, "m", 1)) {
            Ok(()) => {}
            Err(CollectorError::QueueFull { capacity: 100 }) => dropped += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    let metrics = collector.metrics();
    assert_eq!(dropped, 890, "100 queued behind the 10 in flight, the rest dropped");
    assert_eq!(metrics.dropped, 890);
    assert_eq!(metrics.queue_depth, 100, "memory is bounded by the capacity");
    assert_eq!(metrics.accepted, 110);
    // Live statistics saw all the traffic, dropped or not.
    let live = collector.live_stats();
    assert_eq!(live.current(llmopt_collector::LiveDimension::Total, "").unwrap().count, 1_000);
    store.open_gate();
    collector.flush().unwrap();
    assert_eq!(store.count().unwrap(), 110, "everything accepted is stored");
}

#[test]
fn block_policy_waits_for_room_then_gives_up() {
    let store = Arc::new(GatedStore::default());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    let max_wait = Duration::from_millis(30);
    let collector =
        Collector::start(store.clone(), clock, config(OverflowPolicy::Block { max_wait }));
    for i in 0..10 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    store.wait_until_writer_blocked();
    for i in 10..110 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    // Full, and the store stays stuck: the caller waits max_wait, then the record is dropped.
    let started = std::time::Instant::now();
    assert_eq!(
        collector.record(simple(999, T0, "m", 1)),
        Err(CollectorError::QueueFull { capacity: 100 })
    );
    assert!(started.elapsed() >= max_wait, "blocked for the configured time");
    assert_eq!(collector.metrics().dropped, 1);
    // Let the store recover so that dropping the collector (which flushes) can finish.
    store.open_gate();
}

#[test]
fn block_policy_lets_the_record_in_once_the_store_recovers() {
    let store = Arc::new(GatedStore::default());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    // A long wait: the producer must get in when the store recovers, long before this.
    let max_wait = Duration::from_secs(60);
    let collector =
        Collector::start(store.clone(), clock, config(OverflowPolicy::Block { max_wait }));
    for i in 0..10 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    store.wait_until_writer_blocked();
    for i in 10..110 {
        collector.record(simple(i, T0, "m", 1)).unwrap();
    }
    let producer_handle = collector.clone();
    let producer = std::thread::spawn(move || producer_handle.record(simple(1_000, T0, "m", 1)));
    store.open_gate();
    assert_eq!(producer.join().unwrap(), Ok(()));
    collector.flush().unwrap();
    assert_eq!(store.count().unwrap(), 111);
    assert_eq!(collector.metrics().dropped, 0);
}
