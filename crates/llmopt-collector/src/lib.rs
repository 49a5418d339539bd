//! Hot-path ingestion of `RequestRecord`s: lock-light live statistics per window (dashmap
//! shards, HDR histograms), window rotation by the core `Clock`, and a bounded background writer
//! that batches records into a `RecordStore`.
//!
//! Design choices:
//! - **`record` never touches the disk.** It validates, updates the live statistics and pushes
//!   the record on a bounded in-memory queue; a plain `std` thread (no async runtime needed)
//!   drains the queue in batches into the store. The only lock `record` takes besides the
//!   dashmap shard locks is the queue mutex, held for a `push_back`; nothing is held across an
//!   await because nothing here awaits.
//! - **No wake-up per record.** Waking a sleeping thread is a system call that alone would cost
//!   more than the 250 ns budget of `record`. The writer wakes on its own every
//!   `flush_interval`, and `record` wakes it early only when a full batch is waiting.
//! - **Bounded memory.** The queue holds at most `queue_capacity` records (plus one batch in
//!   flight). When it is full the [`OverflowPolicy`] decides: `Block` waits up to `max_wait` for
//!   room (back-pressure on the caller), `Drop` refuses at once; either way a refused record is
//!   counted in `dropped`. Live statistics keep at most `max_series` series and forget idle ones.
//! - **Live statistics measure traffic, the store keeps records.** A valid record is counted in
//!   the live windows even if the queue then drops it: the call happened. Windows are chosen by
//!   the collector's `Clock` at arrival (so tests and replays drive rotation), not by the
//!   record's own timestamp, which for batch-ingested records may be long past.
//! - **Loss bound on a hard kill.** The writer drains the whole queue and calls `store.flush()`
//!   every `flush_interval` (and `flush`/`shutdown` do so on demand). A record acknowledged by
//!   `record` at time `t` is therefore durable by `t + flush_interval + T(write the queue) +
//!   T(store flush)`; a SIGKILL loses at most what was acknowledged within that span. The crash
//!   test in `tests/it/crash.rs` measures it.
//! - **A store that is down loses nothing acknowledged, within bounds.** A batch whose `append`
//!   fails is retried with backoff (50 ms doubling to 2 s) for up to `write_retry`; meanwhile new
//!   records wait in the queue, whose capacity bounds the memory (beyond it records are dropped
//!   and counted, as always). Appends are idempotent (a duplicate id replaces), so a batch whose
//!   commit succeeded but whose answer was lost is safely written again. A batch still failing
//!   after `write_retry`, or at shutdown, is lost and counted in `write_failed_records`. A
//!   `flush` caller learns of a failure at once rather than waiting out the outage.
//! - **Feedback can arrive before the record is stored.** `add_feedback` looks in the queue and
//!   in the batch being written before asking the store, so a quick thumbs-up is never lost.

mod error;
mod live;

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use llmopt_core::{Clock, Feedback, RecordStore, RequestId, RequestRecord};
use serde::Serialize;

pub use error::{CollectorError, Result};
pub use live::{LiveDimension, LiveSeries, LiveStats, Quantiles, WindowStats};

/// What `record` does when the queue to the writer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Wait up to `max_wait` for room, then drop (counted).
    Block { max_wait: Duration },
    /// Drop at once (counted).
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Most records waiting for the writer.
    pub queue_capacity: usize,
    /// Most records per `RecordStore::append` call.
    pub batch_size: usize,
    /// How often the writer drains the queue and flushes the store: bounds the loss on a kill.
    pub flush_interval: Duration,
    /// Length of a live-statistics window.
    pub window: Duration,
    /// How many windows (the current one included) live statistics keep.
    pub windows_kept: usize,
    pub overflow: OverflowPolicy,
    /// Most live-statistics series (total + models + tenants + tag values).
    pub max_series: usize,
    /// How long a batch whose `append` failed is retried before it is given up (counted in
    /// `write_failed_records`). Zero: never retried.
    pub write_retry: Duration,
}

impl Default for CollectorConfig {
    fn default() -> CollectorConfig {
        CollectorConfig {
            queue_capacity: 65_536,
            batch_size: 1_024,
            flush_interval: Duration::from_millis(200),
            window: Duration::from_secs(60),
            windows_kept: 15,
            overflow: OverflowPolicy::Block { max_wait: Duration::from_millis(5) },
            max_series: 10_000,
            write_retry: Duration::from_secs(300),
        }
    }
}

/// Plain counters, exported to Prometheus by the binary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CollectorMetrics {
    /// Records waiting for the writer now.
    pub queue_depth: u64,
    /// Records that passed validation and were queued.
    pub accepted: u64,
    /// Records refused by validation (never stored).
    pub rejected: u64,
    /// Valid records refused because the queue was full.
    pub dropped: u64,
    /// Records the store accepted.
    pub written: u64,
    /// Failed store calls (`append` or `flush`).
    pub write_errors: u64,
    /// Records lost because their `append` failed (for longer than `write_retry`).
    pub write_failed_records: u64,
    /// `append` calls repeated after a failure.
    pub write_retries: u64,
    /// Records of a batch that failed and waits for its next attempt now.
    pub retrying_records: u64,
    /// Live-statistics updates refused because the series table was full.
    pub live_series_refused: u64,
    /// Live-statistics series held now.
    pub live_series: u64,
}

/// The hot-path handle. Cheap to clone; all clones share one queue, one writer and one table.
/// The writer stops (after flushing) when `shutdown` is called or the last clone is dropped.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").field("metrics", &self.metrics()).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: the last handle going away must not leave accepted records unwritten.
        let _ = shutdown_shared(&self.shared, &self.writer);
    }
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn RecordStore>,
    clock: Arc<dyn Clock>,
    config: CollectorConfig,
    live: live::LiveTable,
    queue: Mutex<QueueState>,
    /// The records the writer took from the queue and is appending now. The writer swaps the
    /// whole queue with this (empty, capacity kept) buffer in O(1) under the queue lock, so
    /// producers never wait for records to be copied. `add_feedback` reads it to find records
    /// that are neither queued nor stored yet. Lock order: `in_flight` before `queue`.
    in_flight: RwLock<VecDeque<RequestRecord>>,
    /// Feedback for in-flight records, applied once their batch is stored.
    deferred_feedback: Mutex<HashMap<RequestId, Vec<Feedback>>>,
    /// Signalled when a full batch waits, a flush is asked for, or shutdown begins.
    writer_wakeup: Condvar,
    /// Signalled when the writer made room in the queue.
    room: Condvar,
    /// Signalled when a flush completed (or the writer died).
    flushed: Condvar,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    rejected: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    write_failed_records: AtomicU64,
    write_retries: AtomicU64,
    retrying_records: AtomicU64,
    live_series_refused: AtomicU64,
}

#[derive(Debug, Default)]
struct QueueState {
    queue: VecDeque<RequestRecord>,
    /// Records ever pushed / taken by the writer: a flush waits until `taken` reaches the
    /// `pushed` it saw, then for the store flush after that.
    pushed: u64,
    taken: u64,
    /// Everything up to this `taken` count has been appended and flushed.
    durable: u64,
    /// The highest `pushed` count some `flush` call is waiting to see durable.
    flush_wanted: u64,
    /// Store errors so far (to tell a flush caller whether its flush failed).
    errors: u64,
    last_error: Option<llmopt_core::StoreError>,
    writer_waiting: bool,
    producers_waiting: usize,
    shutting_down: bool,
    writer_alive: bool,
}

fn lock(mutex: &Mutex<QueueState>) -> MutexGuard<'_, QueueState> {
    // A panic while holding the queue lock leaves plain data behind; keep going with it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Collector {
    /// Starts the background writer on its own thread.
    pub fn start(
        store: Arc<dyn RecordStore>,
        clock: Arc<dyn Clock>,
        config: CollectorConfig,
    ) -> Collector {
        let window_ms = i64::try_from(config.window.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut config = config;
        config.queue_capacity = config.queue_capacity.max(1);
        config.batch_size = config.batch_size.max(1);
        let shared = Arc::new(Shared {
            store,
            clock,
            live: live::LiveTable::new(window_ms, config.windows_kept, config.max_series),
            queue: Mutex::new(QueueState {
                queue: VecDeque::with_capacity(config.queue_capacity.min(1 << 16)),
                writer_alive: true,
                ..QueueState::default()
            }),
            in_flight: RwLock::new(VecDeque::with_capacity(config.queue_capacity.min(1 << 16))),
            deferred_feedback: Mutex::new(HashMap::new()),
            config,
            writer_wakeup: Condvar::new(),
            room: Condvar::new(),
            flushed: Condvar::new(),
            counters: Counters::default(),
        });
        let writer_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("llmopt-collector-writer".to_owned())
            .spawn(move || writer_loop(&writer_shared));
        let writer = match handle {
            Ok(handle) => Some(handle),
            Err(_) => {
                // No thread: mark the writer dead so callers get `WriterGone` instead of hanging.
                lock(&shared.queue).writer_alive = false;
                None
            }
        };
        Collector { inner: Arc::new(Inner { shared, writer: Mutex::new(writer) }) }
    }

    /// Validates, counts in the live statistics and queues a record for the store. Never waits
    /// on the disk; waits on a full queue only under `OverflowPolicy::Block`, for at most
    /// `max_wait`.
    pub fn record(&self, record: RequestRecord) -> Result<()> {
        let shared = &*self.inner.shared;
        let now_ms = shared.clock.now_ms();
        if let Err(error) = record.validate(now_ms) {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(CollectorError::Invalid(error));
        }
        let refused = shared.live.add(shared.live.position(now_ms), &record);
        if refused > 0 {
            shared.counters.live_series_refused.fetch_add(refused, Ordering::Relaxed);
        }
        let mut state = lock(&shared.queue);
        if state.shutting_down {
            return Err(CollectorError::ShutDown);
        }
        if state.queue.len() >= shared.config.queue_capacity {
            state = match self.wait_for_room(state) {
                Ok(state) => state,
                Err(error) => {
                    shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
            };
        }
        state.queue.push_back(record);
        state.pushed += 1;
        let wake = state.writer_waiting && state.queue.len() >= shared.config.batch_size;
        if wake {
            state.writer_waiting = false;
        }
        drop(state);
        if wake {
            shared.writer_wakeup.notify_one();
        }
        Ok(())
    }

    fn wait_for_room<'a>(
        &self,
        mut state: MutexGuard<'a, QueueState>,
    ) -> Result<MutexGuard<'a, QueueState>> {
        let shared = &*self.inner.shared;
        let capacity = shared.config.queue_capacity;
        let OverflowPolicy::Block { max_wait } = shared.config.overflow else {
            return Err(CollectorError::QueueFull { capacity });
        };
        let deadline = Instant::now() + max_wait;
        // Make sure the writer is draining while we wait.
        state.writer_waiting = false;
        shared.writer_wakeup.notify_one();
        state.producers_waiting += 1;
        while state.queue.len() >= capacity && !state.shutting_down && state.writer_alive {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = shared
                .room
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.producers_waiting -= 1;
        if state.shutting_down {
            return Err(CollectorError::ShutDown);
        }
        if state.queue.len() >= capacity {
            return Err(CollectorError::QueueFull { capacity });
        }
        Ok(state)
    }

    /// Joins feedback to a record, wherever it is: still queued, being written, or stored
    /// (one value per metric, the latest wins: `llmopt_core::store::join_feedback`).
    /// `tenant`: when set, only a record of that tenant is joined (a client key may give
    /// feedback on its own calls only); another tenant's record reads as unknown.
    /// `Ok(false)` when no such record exists.
    pub fn add_feedback(
        &self,
        id: &RequestId,
        tenant: Option<&str>,
        feedback: Feedback,
    ) -> Result<bool> {
        let shared = &*self.inner.shared;
        let of_tenant = |record: &RequestRecord| {
            tenant.is_none_or(|tenant| record.tenant.as_ref().is_some_and(|t| t.as_str() == tenant))
        };
        {
            let mut state = lock(&shared.queue);
            // The queue is short in steady state (the writer drains it every interval), so a
            // linear search costs less than an id index maintained on every `record`.
            if let Some(queued) = state.queue.iter_mut().rev().find(|record| &record.id == id) {
                if !of_tenant(queued) {
                    return Ok(false);
                }
                llmopt_core::store::join_feedback(queued, feedback);
                return Ok(true);
            }
        }
        {
            // Not queued: either in flight, stored, or unknown. Records only move forward
            // (queue → in flight → store), so checking in this order misses nothing. The read
            // lock is held while deferring, so the writer cannot finish the batch in between.
            let in_flight = shared.in_flight.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(record) = in_flight.iter().find(|record| &record.id == id) {
                if !of_tenant(record) {
                    return Ok(false);
                }
                shared
                    .deferred_feedback
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(id.clone())
                    .or_default()
                    .push(feedback);
                return Ok(true);
            }
        }
        if tenant.is_some() {
            match shared.store.get(id)? {
                Some(record) if of_tenant(&record) => {}
                _ => return Ok(false),
            }
        }
        Ok(shared.store.add_feedback(id, feedback)?)
    }

    /// A snapshot of the live statistics at the clock's current time.
    pub fn live_stats(&self) -> LiveStats {
        let shared = &*self.inner.shared;
        shared.live.snapshot(shared.clock.now_ms())
    }

    pub fn metrics(&self) -> CollectorMetrics {
        let shared = &*self.inner.shared;
        let counters = &shared.counters;
        // `accepted` is the queue's own push count, kept under the lock `record` holds anyway
        // (one atomic less on the hot path).
        let (queue_depth, accepted) = {
            let state = lock(&shared.queue);
            (state.queue.len() as u64, state.pushed)
        };
        CollectorMetrics {
            queue_depth,
            accepted,
            rejected: counters.rejected.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            written: counters.written.load(Ordering::Relaxed),
            write_errors: counters.write_errors.load(Ordering::Relaxed),
            write_failed_records: counters.write_failed_records.load(Ordering::Relaxed),
            write_retries: counters.write_retries.load(Ordering::Relaxed),
            retrying_records: counters.retrying_records.load(Ordering::Relaxed),
            live_series_refused: counters.live_series_refused.load(Ordering::Relaxed),
            live_series: shared.live.series_count() as u64,
        }
    }

    /// Returns once every record accepted before the call is appended and `store.flush()` ran
    /// after it. Fails as soon as a store call fails meanwhile (the writer keeps retrying the
    /// batch for up to `write_retry`; see the crate doc).
    pub fn flush(&self) -> Result<()> {
        flush_shared(&self.inner.shared)
    }

    /// Flushes everything accepted and stops the writer. Later `record` calls fail with
    /// `ShutDown`. Calling it again is harmless.
    pub fn shutdown(&self) -> Result<()> {
        shutdown_shared(&self.inner.shared, &self.inner.writer)
    }
}

fn flush_shared(shared: &Shared) -> Result<()> {
    let mut state = lock(&shared.queue);
    let target = state.pushed;
    let errors_before = state.errors;
    if state.durable >= target {
        return Ok(());
    }
    state.flush_wanted = state.flush_wanted.max(target);
    state.writer_waiting = false;
    shared.writer_wakeup.notify_one();
    while state.durable < target && state.writer_alive && state.errors == errors_before {
        state = shared.flushed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    if state.errors > errors_before {
        let error = state.last_error.clone().unwrap_or(llmopt_core::StoreError::Io {
            path: String::new(),
            message: "store write failed".to_owned(),
        });
        return Err(CollectorError::Store(error));
    }
    if state.durable < target {
        return Err(CollectorError::WriterGone);
    }
    Ok(())
}

fn shutdown_shared(shared: &Shared, writer: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
    let flushed = {
        let alive = lock(&shared.queue).writer_alive;
        if alive { flush_shared(shared) } else { Ok(()) }
    };
    {
        let mut state = lock(&shared.queue);
        state.shutting_down = true;
        state.writer_waiting = false;
    }
    shared.writer_wakeup.notify_all();
    shared.room.notify_all();
    let handle = writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        return Err(CollectorError::WriterGone);
    }
    flushed
}

/// Marks the writer dead when its thread ends, even by a panic inside the store, so that no
/// `flush` caller waits for ever.
struct WriterAliveGuard<'a>(&'a Shared);

impl Drop for WriterAliveGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.queue).writer_alive = false;
        self.0.flushed.notify_all();
        self.0.room.notify_all();
    }
}

fn writer_loop(shared: &Shared) {
    let _alive = WriterAliveGuard(shared);
    let interval = shared.config.flush_interval.max(Duration::from_millis(1));
    let batch_size = shared.config.batch_size;
    let mut next_tick = Instant::now() + interval;
    // Records appended since the last store flush.
    let mut dirty = false;
    loop {
        let mut state = lock(&shared.queue);
        // Sleep until a full batch waits, a flush is wanted, shutdown, or the interval ends.
        let mut tick = false;
        loop {
            if state.queue.len() >= batch_size
                || state.flush_wanted > state.durable
                || state.shutting_down
            {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                tick = true;
                break;
            }
            state.writer_waiting = true;
            state = shared
                .writer_wakeup
                .wait_timeout(state, next_tick - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            state.writer_waiting = false;
        }
        if tick {
            next_tick = Instant::now() + interval;
        }
        // On a tick, a flush request or shutdown, drain everything and flush the store;
        // otherwise write the full batches that woke us.
        let drain_all = tick || state.flush_wanted > state.durable || state.shutting_down;
        let shutting_down = state.shutting_down;
        drop(state);

        loop {
            let mut in_flight = shared.in_flight.write().unwrap_or_else(PoisonError::into_inner);
            let mut state = lock(&shared.queue);
            let full_batch = state.queue.len() >= batch_size;
            if state.queue.is_empty() || (!drain_all && !full_batch) {
                break;
            }
            // O(1) under the queue lock: producers get the empty buffer (with its capacity).
            std::mem::swap(&mut state.queue, &mut *in_flight);
            state.taken += in_flight.len() as u64;
            if state.producers_waiting > 0 {
                shared.room.notify_all();
            }
            drop(state);
            in_flight.make_contiguous();
            drop(in_flight);
            write_in_flight(shared, batch_size);
            dirty = true;
        }

        if drain_all {
            let mut state = lock(&shared.queue);
            let taken = state.taken;
            drop(state);
            if dirty {
                if let Err(error) = shared.store.flush() {
                    note_error(shared, error);
                }
                dirty = false;
            }
            state = lock(&shared.queue);
            state.durable = state.durable.max(taken);
            drop(state);
            shared.flushed.notify_all();
            shared.live.evict_idle(shared.clock.now_ms());
        }
        if shutting_down {
            let state = lock(&shared.queue);
            if state.queue.is_empty() {
                return;
            }
        }
    }
}

fn note_error(shared: &Shared, error: llmopt_core::StoreError) {
    shared.counters.write_errors.fetch_add(1, Ordering::Relaxed);
    let mut state = lock(&shared.queue);
    state.errors += 1;
    state.last_error = Some(error);
    drop(state);
    // A flush caller waiting for this batch learns of the failure now.
    shared.flushed.notify_all();
}

/// First pause before a failed batch is tried again; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Appends one batch, retrying a failing store for up to `write_retry` (one last attempt at
/// shutdown).
fn append_with_retry(shared: &Shared, batch: &[RequestRecord]) {
    let started = Instant::now();
    let mut pause = RETRY_PAUSE_FIRST;
    let mut retrying = false;
    loop {
        match shared.store.append(batch) {
            Ok(()) => {
                shared.counters.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                break;
            }
            Err(error) => {
                note_error(shared, error);
                let elapsed = started.elapsed();
                if elapsed >= shared.config.write_retry || lock(&shared.queue).shutting_down {
                    shared
                        .counters
                        .write_failed_records
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                if !retrying {
                    retrying = true;
                    shared.counters.retrying_records.store(batch.len() as u64, Ordering::Relaxed);
                }
                // Wait on the wake-up condition so that shutdown cuts the pause short.
                let pause_now = pause.min(shared.config.write_retry - elapsed);
                let state = lock(&shared.queue);
                if !state.shutting_down {
                    drop(
                        shared
                            .writer_wakeup
                            .wait_timeout(state, pause_now)
                            .unwrap_or_else(PoisonError::into_inner),
                    );
                }
                pause = (pause * 2).min(RETRY_PAUSE_MAX);
                shared.counters.write_retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if retrying {
        shared.counters.retrying_records.store(0, Ordering::Relaxed);
    }
}

/// Appends the in-flight records in batches, then applies feedback that arrived for them
/// while they were being written, then empties the in-flight buffer.
fn write_in_flight(shared: &Shared, batch_size: usize) {
    {
        let in_flight = shared.in_flight.read().unwrap_or_else(PoisonError::into_inner);
        let (records, rest) = in_flight.as_slices();
        debug_assert!(rest.is_empty(), "made contiguous before");
        for batch in records.chunks(batch_size).chain(rest.chunks(batch_size)) {
            append_with_retry(shared, batch);
        }
    }
    apply_deferred_feedback(shared);
    // With the write lock held no `add_feedback` can be deferring; whatever it deferred before
    // is applied after the buffer is emptied (the records are in the store by then).
    shared.in_flight.write().unwrap_or_else(PoisonError::into_inner).clear();
    apply_deferred_feedback(shared);
}

fn apply_deferred_feedback(shared: &Shared) {
    let deferred = std::mem::take(
        &mut *shared.deferred_feedback.lock().unwrap_or_else(PoisonError::into_inner),
    );
    for (id, feedbacks) in deferred {
        for feedback in feedbacks {
            if let Err(error) = shared.store.add_feedback(&id, feedback) {
                note_error(shared, error);
            }
        }
    }
}
