//! Live per-window statistics: one series per (dimension, label), each a small ring of windows
//! holding counters and two HDR histograms (latency and time to first token).
//!
//! The map is a `DashMap` keyed by a seeded 64-bit hash of the label instead of the label itself:
//! looking a series up then needs no allocation (a tag key would otherwise have to be built as a
//! `String` for every record). Two labels that hash alike are told apart by comparing the stored
//! label and probing the next hash (open addressing), so a collision costs a probe, never a
//! wrong merge.

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
};

use dashmap::{DashMap, mapref::entry::Entry};
use hdrhistogram::Histogram;
use llmopt_core::{CacheOutcome, Money, RequestRecord};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Which breakdown a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveDimension {
    /// All traffic (label `""`).
    Total,
    /// By served model.
    Model,
    /// By tenant (records without a tenant only count in `Total`).
    Tenant,
    /// By tag; the label is `key=value`.
    Tag,
}

/// Everything the collector knows about recent traffic, ready to serialise for `/api/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStats {
    /// The clock reading the snapshot was taken at.
    pub now_ms: i64,
    pub window_ms: i64,
    /// Start of the window `now_ms` falls in.
    pub current_window_start_ms: i64,
    /// Series ordered by dimension then label.
    pub series: Vec<LiveSeries>,
}

impl LiveStats {
    /// The series for one dimension and label (`key=value` for tags, `""` for the total).
    pub fn series(&self, dimension: LiveDimension, label: &str) -> Option<&LiveSeries> {
        self.series.iter().find(|series| series.dimension == dimension && series.label == label)
    }

    /// The current window of one series, if it saw traffic.
    pub fn current(&self, dimension: LiveDimension, label: &str) -> Option<&WindowStats> {
        self.series(dimension, label)?
            .windows
            .iter()
            .find(|window| window.window_start_ms == self.current_window_start_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveSeries {
    pub dimension: LiveDimension,
    pub label: String,
    /// Windows that saw traffic among the kept ones, newest first.
    pub windows: Vec<WindowStats>,
}

/// Counts and quantiles of one window. Quantiles come from HDR histograms with two significant
/// digits: within 1 % of the exact value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub window_start_ms: i64,
    pub count: u64,
    pub errors: u64,
    /// `errors / count`.
    pub error_rate: f64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum of known costs (exact).
    pub cost: Money,
    /// The same in dollars, for display.
    pub cost_usd: f64,
    /// Records whose cost was unknown.
    pub cost_unknown: u64,
    pub latency_ms: Quantiles,
    /// `None` when no record in the window carried a time to first token.
    pub ttft_ms: Option<Quantiles>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// How many values the quantiles are over.
    pub samples: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One window of one series.
#[derive(Debug)]
struct WindowSlot {
    /// Window number (`ts / window_ms`); `i64::MIN` for a slot never used.
    window_index: i64,
    count: u64,
    errors: u64,
    cache_hits: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_picos: i128,
    cost_unknown: u64,
    latency_sum_us: u128,
    ttft_sum_us: u128,
    latency_us: Histogram<u32>,
    ttft_us: Histogram<u32>,
}

/// Two significant digits: 1 % relative error, and histograms of a few kilobytes.
const SIGNIFICANT_DIGITS: u8 = 2;

fn new_histogram() -> Histogram<u32> {
    // Auto-resizing, so it never refuses a value. hdrhistogram accepts any precision in 1..=5,
    // so this constant cannot fail.
    Histogram::new(SIGNIFICANT_DIGITS).expect("two significant digits is a valid precision")
}

impl WindowSlot {
    fn empty() -> WindowSlot {
        WindowSlot {
            window_index: i64::MIN,
            count: 0,
            errors: 0,
            cache_hits: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_picos: 0,
            cost_unknown: 0,
            latency_sum_us: 0,
            ttft_sum_us: 0,
            latency_us: new_histogram(),
            ttft_us: new_histogram(),
        }
    }

    fn reset(&mut self, window_index: i64) {
        self.window_index = window_index;
        self.count = 0;
        self.errors = 0;
        self.cache_hits = 0;
        self.input_tokens = 0;
        self.output_tokens = 0;
        self.cost_picos = 0;
        self.cost_unknown = 0;
        self.latency_sum_us = 0;
        self.ttft_sum_us = 0;
        self.latency_us.reset();
        self.ttft_us.reset();
    }

    /// Adds another slot of the same window (histograms merge exactly).
    fn merge(&mut self, other: &WindowSlot) {
        self.count += other.count;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_picos += other.cost_picos;
        self.cost_unknown += other.cost_unknown;
        self.latency_sum_us += other.latency_sum_us;
        self.ttft_sum_us += other.ttft_sum_us;
        // Auto-resizing histograms of the same precision: `add` only fails on a precision
        // mismatch, which cannot happen here.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.ttft_us.add(&other.ttft_us);
    }

    fn add(&mut self, record: &RequestRecord) {
        self.count += 1;
        self.errors += u64::from(!record.status.is_ok());
        self.cache_hits += u64::from(record.cache == CacheOutcome::Hit);
        if let Some(usage) = &record.usage {
            self.input_tokens += usage.input_tokens;
            self.output_tokens += usage.output_tokens;
        }
        match record.cost {
            Some(cost) => self.cost_picos += cost.0,
            None => self.cost_unknown += 1,
        }
        self.latency_sum_us += u128::from(record.latency_us);
        record_value(&mut self.latency_us, record.latency_us);
        if let Some(ttft_us) = record.ttft_us {
            self.ttft_sum_us += u128::from(ttft_us);
            record_value(&mut self.ttft_us, ttft_us);
        }
    }

    fn snapshot(&self, window_ms: i64) -> WindowStats {
        let cost = Money(self.cost_picos);
        WindowStats {
            window_start_ms: self.window_index.saturating_mul(window_ms),
            count: self.count,
            errors: self.errors,
            error_rate: if self.count == 0 { 0.0 } else { self.errors as f64 / self.count as f64 },
            cache_hits: self.cache_hits,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost,
            cost_usd: cost.as_usd_f64(),
            cost_unknown: self.cost_unknown,
            latency_ms: quantiles_ms(&self.latency_us, self.latency_sum_us),
            ttft_ms: (!self.ttft_us.is_empty())
                .then(|| quantiles_ms(&self.ttft_us, self.ttft_sum_us)),
        }
    }
}

/// Records a value, growing the histogram as needed (`saturating_record` alone would clamp to
/// the current top of an auto-resizing histogram instead of growing it).
fn record_value(histogram: &mut Histogram<u32>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

/// Quantiles of a microsecond histogram, in milliseconds. The mean uses the exact sum, not the
/// histogram's bucketed mean.
fn quantiles_ms(histogram: &Histogram<u32>, sum_us: u128) -> Quantiles {
    let samples = histogram.len();
    // hdrhistogram reports the highest value equivalent to the bucket; the median-equivalent is
    // the centre of the bucket, which halves the worst-case error.
    let at = |q: f64| histogram.median_equivalent(histogram.value_at_quantile(q)) as f64 / 1000.0;
    Quantiles {
        samples,
        mean: if samples == 0 { 0.0 } else { sum_us as f64 / samples as f64 / 1000.0 },
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

/// One (dimension, label) series: its label (to tell hash collisions apart) and its ring.
#[derive(Debug)]
struct Series {
    dimension: LiveDimension,
    first: String,
    second: String,
    slots: Box<[WindowSlot]>,
}

impl Series {
    fn new(dimension: LiveDimension, first: &str, second: &str, windows_kept: usize) -> Series {
        Series {
            dimension,
            first: first.to_owned(),
            second: second.to_owned(),
            slots: (0..windows_kept).map(|_| WindowSlot::empty()).collect(),
        }
    }

    fn matches(&self, dimension: LiveDimension, first: &str, second: &str) -> bool {
        self.dimension == dimension && self.first == first && self.second == second
    }

    fn label(&self) -> String {
        match self.dimension {
            LiveDimension::Tag => format!("{}={}", self.first, self.second),
            _ => self.first.clone(),
        }
    }

    fn newest_window(&self) -> i64 {
        self.slots.iter().map(|slot| slot.window_index).max().unwrap_or(i64::MIN)
    }
}

/// The map's keys are already seeded xxh3 hashes: hashing them again (SipHash, dashmap's
/// default) would only cost time on the hot path.
#[derive(Debug, Default, Clone, Copy)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; fold anything else in, for completeness.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type SeriesMap = DashMap<u64, Series, BuildHasherDefault<PrehashedKey>>;

/// The live-statistics table shared by every `record` call.
#[derive(Debug)]
pub(crate) struct LiveTable {
    series: SeriesMap,
    /// Records whose model series could not be created (table full): with the model series
    /// they make the total, which is therefore exact even when the table is full.
    unmodelled: std::sync::Mutex<Series>,
    /// The last window position computed, packed as `window index << 16 | slot`: most records
    /// fall in the same window as the previous one, and two integer divisions per record are a
    /// measurable part of the hot path.
    last_position: AtomicU64,
    seed: u64,
    window_ms: i64,
    windows_kept: usize,
    max_series: usize,
}

/// Outcome of one series update, so the caller can count refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesUpdate {
    Updated,
    /// The table already holds `max_series` series: the record is not counted in a new one.
    TableFull,
}

impl LiveTable {
    pub(crate) fn new(window_ms: i64, windows_kept: usize, max_series: usize) -> LiveTable {
        let windows_kept = windows_kept.clamp(1, usize::from(u16::MAX));
        LiveTable {
            series: SeriesMap::default(),
            unmodelled: std::sync::Mutex::new(Series::new(
                LiveDimension::Total,
                "",
                "",
                windows_kept,
            )),
            last_position: AtomicU64::new(u64::MAX),
            // A per-process seed, so that labels chosen by clients cannot be crafted to collide.
            seed: RandomState::new().hash_one(0x6c6c_6d6f_7074_u64),
            window_ms: window_ms.max(1),
            windows_kept,
            max_series,
        }
    }

    pub(crate) fn window_index(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.window_ms)
    }

    pub(crate) fn position(&self, now_ms: i64) -> WindowPosition {
        let packed = self.last_position.load(Ordering::Relaxed);
        if packed != u64::MAX {
            // Window indexes of real clocks fit in 48 bits (ms / window_ms ≥ 0).
            let window_index = (packed >> 16) as i64;
            let start = window_index.saturating_mul(self.window_ms);
            if now_ms >= start && now_ms - start < self.window_ms {
                return WindowPosition { window_index, slot: (packed & 0xffff) as usize };
            }
        }
        let window_index = self.window_index(now_ms);
        let slot = window_index.rem_euclid(self.windows_kept as i64) as usize;
        if (0..1 << 47).contains(&window_index) {
            self.last_position.store((window_index as u64) << 16 | slot as u64, Ordering::Relaxed);
        }
        WindowPosition { window_index, slot }
    }

    /// Adds a record to its model, its tenant and each of its tags (the total is the sum of the
    /// models, made when read: one series update fewer per record). Returns how many series
    /// could not be created because the table is full.
    pub(crate) fn add(&self, position: WindowPosition, record: &RequestRecord) -> u64 {
        let mut refused = 0;
        let mut update = |dimension, first: &str, second: &str| {
            let outcome = self.update(dimension, first, second, position, record);
            if outcome == SeriesUpdate::TableFull {
                refused += 1;
            }
            outcome
        };
        if update(LiveDimension::Model, record.served_model.as_str(), "") == SeriesUpdate::TableFull
        {
            let mut unmodelled =
                self.unmodelled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            add_to_series(&mut unmodelled, position, record);
        }
        if let Some(tenant) = &record.tenant {
            update(LiveDimension::Tenant, tenant.as_str(), "");
        }
        for (key, value) in &record.tags {
            update(LiveDimension::Tag, key, value);
        }
        refused
    }

    fn hash(&self, dimension: LiveDimension, first: &str, second: &str, probe: u64) -> u64 {
        let seed = self.seed ^ (dimension as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ probe;
        let first_hash = xxh3_64_with_seed(first.as_bytes(), seed);
        if second.is_empty() {
            first_hash
        } else {
            first_hash.rotate_left(23) ^ xxh3_64_with_seed(second.as_bytes(), !seed)
        }
    }

    fn update(
        &self,
        dimension: LiveDimension,
        first: &str,
        second: &str,
        position: WindowPosition,
        record: &RequestRecord,
    ) -> SeriesUpdate {
        let mut probe = 0;
        loop {
            let key = self.hash(dimension, first, second, probe);
            // Fast path: the series exists; only a shard write lock, no allocation.
            if let Some(mut series) = self.series.get_mut(&key) {
                if series.matches(dimension, first, second) {
                    add_to_series(&mut series, position, record);
                    return SeriesUpdate::Updated;
                }
                probe += 1;
                continue;
            }
            if self.series.len() >= self.max_series {
                return SeriesUpdate::TableFull;
            }
            match self.series.entry(key) {
                Entry::Occupied(mut occupied) => {
                    // Another thread created it between our lookup and here.
                    if occupied.get().matches(dimension, first, second) {
                        add_to_series(occupied.get_mut(), position, record);
                        return SeriesUpdate::Updated;
                    }
                    probe += 1;
                }
                Entry::Vacant(vacant) => {
                    let mut series = Series::new(dimension, first, second, self.windows_kept);
                    add_to_series(&mut series, position, record);
                    vacant.insert(series);
                    return SeriesUpdate::Updated;
                }
            }
        }
    }

    /// Forgets series that saw nothing in the kept windows, so that a tag value seen once does
    /// not stay in memory for ever.
    pub(crate) fn evict_idle(&self, now_ms: i64) -> usize {
        let oldest_kept = self.window_index(now_ms) - self.windows_kept as i64 + 1;
        let before = self.series.len();
        self.series.retain(|_, series| series.newest_window() >= oldest_kept);
        before.saturating_sub(self.series.len())
    }

    pub(crate) fn snapshot(&self, now_ms: i64) -> LiveStats {
        let current = self.window_index(now_ms);
        let oldest_kept = current - self.windows_kept as i64 + 1;
        let in_view = |slot: &WindowSlot| {
            slot.window_index >= oldest_kept && slot.window_index <= current && slot.count > 0
        };
        let windows_of = |slots: &mut dyn Iterator<Item = &WindowSlot>| {
            let mut windows: Vec<WindowStats> = slots
                .filter(|slot| in_view(slot))
                .map(|slot| slot.snapshot(self.window_ms))
                .collect();
            windows.sort_by_key(|window| std::cmp::Reverse(window.window_start_ms));
            windows
        };
        // The total: every model series plus the records no model series could take.
        let mut total: BTreeMap<i64, WindowSlot> = BTreeMap::new();
        let mut add_to_total = |slots: &[WindowSlot]| {
            for slot in slots.iter().filter(|slot| in_view(slot)) {
                total
                    .entry(slot.window_index)
                    .or_insert_with(|| {
                        let mut empty = WindowSlot::empty();
                        empty.window_index = slot.window_index;
                        empty
                    })
                    .merge(slot);
            }
        };
        add_to_total(
            &self.unmodelled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).slots,
        );
        let mut series: Vec<LiveSeries> = self
            .series
            .iter()
            .filter_map(|entry| {
                if entry.dimension == LiveDimension::Model {
                    add_to_total(&entry.slots);
                }
                let windows = windows_of(&mut entry.slots.iter());
                if windows.is_empty() {
                    return None;
                }
                Some(LiveSeries { dimension: entry.dimension, label: entry.label(), windows })
            })
            .collect();
        let total_windows = windows_of(&mut total.values());
        if !total_windows.is_empty() {
            series.push(LiveSeries {
                dimension: LiveDimension::Total,
                label: String::new(),
                windows: total_windows,
            });
        }
        series.sort_by(|a, b| (a.dimension, &a.label).cmp(&(b.dimension, &b.label)));
        LiveStats {
            now_ms,
            window_ms: self.window_ms,
            current_window_start_ms: current.saturating_mul(self.window_ms),
            series,
        }
    }

    pub(crate) fn series_count(&self) -> usize {
        self.series.len()
    }
}

/// Where a record goes in every ring: computed once per record (a division is not free on the
/// hot path), then used for each of its series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowPosition {
    window_index: i64,
    slot: usize,
}

fn add_to_series(series: &mut Series, position: WindowPosition, record: &RequestRecord) {
    let window_index = position.window_index;
    let Some(slot) = series.slots.get_mut(position.slot) else {
        return;
    };
    if slot.window_index != window_index {
        if slot.window_index > window_index {
            // A record for a window older than the ring keeps (the clock went backwards):
            // counting it in a newer window would be wrong, so it only reaches the store.
            return;
        }
        slot.reset(window_index);
    }
    slot.add(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, latency_us: u64) -> RequestRecord {
        let mut record = RequestRecord::new("id", 1_767_225_600_000, "openai", model);
        record.latency_us = latency_us;
        record
    }

    #[test]
    fn windows_rotate_and_old_ones_fall_out() {
        let table = LiveTable::new(1_000, 2, 100);
        table.add(table.position(0), &record("a", 1_000));
        table.add(table.position(1_000), &record("a", 2_000));
        table.add(table.position(2_000), &record("a", 3_000));
        let stats = table.snapshot(2_500);
        let series = stats.series(LiveDimension::Model, "a").unwrap();
        assert_eq!(series.windows.len(), 2, "window 0 rotated out of a two-window ring");
        assert_eq!(series.windows[0].window_start_ms, 2_000);
        assert_eq!(series.windows[1].window_start_ms, 1_000);
        assert_eq!(series.windows[0].latency_ms.p50, 3.0);
        // Nothing new for a long time: the series is evicted.
        assert_eq!(table.evict_idle(10_000), 1, "the model series is idle (the total is derived)");
        assert_eq!(table.series_count(), 0);
    }

    #[test]
    fn colliding_hashes_probe_instead_of_merging() {
        let table = LiveTable::new(1_000, 1, 100);
        // Force two labels into the same first probe by inserting a foreign series at the
        // hash the second label would use.
        let key = table.hash(LiveDimension::Model, "b", "", 0);
        table.series.insert(
            key,
            Series {
                dimension: LiveDimension::Model,
                first: "intruder".to_owned(),
                second: String::new(),
                slots: vec![WindowSlot::empty()].into_boxed_slice(),
            },
        );
        table.add(table.position(0), &record("b", 5_000));
        let stats = table.snapshot(0);
        assert_eq!(stats.current(LiveDimension::Model, "b").unwrap().count, 1);
        assert!(stats.series(LiveDimension::Model, "intruder").is_none(), "no traffic there");
    }

    #[test]
    fn table_full_refuses_new_series_but_keeps_old_ones() {
        let table = LiveTable::new(1_000, 1, 1);
        assert_eq!(table.add(table.position(0), &record("a", 1_000)), 0, "model a");
        assert_eq!(table.add(table.position(0), &record("b", 3_000)), 1, "model b refused");
        let stats = table.snapshot(0);
        assert!(stats.series(LiveDimension::Model, "b").is_none());
        // The total is derived from the model series, plus what none could take: still exact.
        let total = stats.current(LiveDimension::Total, "").unwrap();
        assert_eq!(total.count, 2);
        assert_eq!(total.latency_ms.mean, 2.0);
    }
}
