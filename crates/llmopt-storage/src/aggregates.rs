//! Window aggregates persisted beside the raw records.
//!
//! For every stored window (`StorageConfig::aggregate_window`, 60 s by default) the store keeps
//! one [`AggState`] per group of each dimension: the total, each served model, provider, tenant
//! and `tag=value`. A state holds exact counters and sums (money stays exact) and two HDR
//! histograms, latency in microseconds and output tokens, serialised in the HdrHistogram V2
//! format. Histograms merge exactly (`add`) and can be subtracted exactly (a replaced duplicate
//! is taken out again), which is why they were chosen over t-digest-like sketches.
//!
//! Quantiles are read with numpy's linear interpolation between order statistics, walking the
//! histogram's recorded buckets, so a sketch answer and an exact answer on raw records differ
//! only by the bucket resolution (two significant digits: under 0.5 % with the bucket midpoint).

use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2Serializer},
};
use llmopt_core::{AggregateRow, CacheOutcome, Money, RequestRecord, StoreError};

use crate::codec::{Reader, Writer, time_bytes};

const SIGNIFICANT_DIGITS: u8 = 2;
const AGG_VERSION: u8 = 1;

/// Dimension codes in aggregate keys (stable on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Total = 0,
    Model = 1,
    Provider = 2,
    Tenant = 3,
    Tag = 4,
}

impl Dimension {
    fn from_code(code: u8) -> Option<Dimension> {
        Some(match code {
            0 => Dimension::Total,
            1 => Dimension::Model,
            2 => Dimension::Provider,
            3 => Dimension::Tenant,
            4 => Dimension::Tag,
            _ => return None,
        })
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, so it never refuses a value; precision 2 is always valid.
    Histogram::new(SIGNIFICANT_DIGITS).expect("two significant digits is a valid precision")
}

/// Counters, sums and sketches of one window and group.
#[derive(Debug, Clone)]
pub struct AggState {
    pub count: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub cost: i128,
    pub cost_unknown: u64,
    pub saved_cost: i128,
    pub latency_sum_us: u128,
    pub latency_us: Histogram<u64>,
    pub output_tokens_hist: Histogram<u64>,
}

impl Default for AggState {
    fn default() -> AggState {
        AggState {
            count: 0,
            errors: 0,
            cache_hits: 0,
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
            cost: 0,
            cost_unknown: 0,
            saved_cost: 0,
            latency_sum_us: 0,
            latency_us: new_histogram(),
            output_tokens_hist: new_histogram(),
        }
    }
}

impl AggState {
    pub fn add_record(&mut self, record: &RequestRecord) {
        self.count += 1;
        self.errors += u64::from(!record.status.is_ok());
        self.cache_hits += u64::from(record.cache == CacheOutcome::Hit);
        if let Some(usage) = &record.usage {
            self.input_tokens += usage.input_tokens;
            self.cache_read_tokens += usage.cache_read_tokens;
            self.cache_write_tokens += usage.cache_write_tokens();
            self.output_tokens += usage.output_tokens;
            record_value(&mut self.output_tokens_hist, usage.output_tokens);
        }
        match record.cost {
            Some(cost) => self.cost += cost.0,
            None => self.cost_unknown += 1,
        }
        if let Some(saved) = record.saved_cost {
            self.saved_cost += saved.0;
        }
        self.latency_sum_us += u128::from(record.latency_us);
        record_value(&mut self.latency_us, record.latency_us);
    }

    /// Takes a record out again (its duplicate replaced it). Exact, histograms included.
    pub fn remove_record(&mut self, record: &RequestRecord) {
        let mut single = AggState::default();
        single.add_record(record);
        self.subtract(&single);
    }

    pub fn merge(&mut self, other: &AggState) {
        self.count += other.count;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.input_tokens += other.input_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
        self.cost_unknown += other.cost_unknown;
        self.saved_cost += other.saved_cost;
        self.latency_sum_us += other.latency_sum_us;
        // Auto-resizing histograms accept any other histogram.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.output_tokens_hist.add(&other.output_tokens_hist);
    }

    /// Removes a part of this state (counts saturate at zero rather than wrap, so a damaged
    /// aggregate can never go negative).
    pub fn subtract(&mut self, part: &AggState) {
        self.count = self.count.saturating_sub(part.count);
        self.errors = self.errors.saturating_sub(part.errors);
        self.cache_hits = self.cache_hits.saturating_sub(part.cache_hits);
        self.input_tokens = self.input_tokens.saturating_sub(part.input_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_sub(part.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_sub(part.cache_write_tokens);
        self.output_tokens = self.output_tokens.saturating_sub(part.output_tokens);
        self.cost -= part.cost;
        self.cost_unknown = self.cost_unknown.saturating_sub(part.cost_unknown);
        self.saved_cost -= part.saved_cost;
        self.latency_sum_us = self.latency_sum_us.saturating_sub(part.latency_sum_us);
        subtract_histogram(&mut self.latency_us, &part.latency_us);
        subtract_histogram(&mut self.output_tokens_hist, &part.output_tokens_hist);
    }

    pub fn to_row(&self, window_start_ms: i64, group: String) -> AggregateRow {
        AggregateRow {
            window_start_ms,
            group,
            count: self.count,
            errors: self.errors,
            cache_hits: self.cache_hits,
            input_tokens: self.input_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            output_tokens: self.output_tokens,
            cost: Money(self.cost),
            cost_unknown: self.cost_unknown,
            saved_cost: Money(self.saved_cost),
            latency_mean_ms: if self.count == 0 {
                0.0
            } else {
                self.latency_sum_us as f64 / self.count as f64 / 1000.0
            },
            latency_p50_ms: interpolated_quantile(&self.latency_us, 0.50) / 1000.0,
            latency_p95_ms: interpolated_quantile(&self.latency_us, 0.95) / 1000.0,
            latency_p99_ms: interpolated_quantile(&self.latency_us, 0.99) / 1000.0,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(128);
        let mut w = Writer { out: &mut out };
        w.u8(AGG_VERSION);
        for value in [
            self.count,
            self.errors,
            self.cache_hits,
            self.input_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.output_tokens,
            self.cost_unknown,
        ] {
            w.uvar(value);
        }
        w.ivar128(self.cost);
        w.ivar128(self.saved_cost);
        w.uvar128(self.latency_sum_us);
        for histogram in [&self.latency_us, &self.output_tokens_hist] {
            let mut serialised = Vec::new();
            V2Serializer::new()
                .serialize(histogram, &mut serialised)
                .map_err(|error| StoreError::Encoding(format!("histogram: {error:?}")))?;
            w.bytes(&serialised);
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AggState, StoreError> {
        let bad = |what: &str| StoreError::Encoding(format!("malformed aggregate: {what}"));
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != AGG_VERSION {
            return Err(bad("unknown aggregate version (written by a newer version?)"));
        }
        let mut state = AggState {
            count: r.uvar()?,
            errors: r.uvar()?,
            cache_hits: r.uvar()?,
            input_tokens: r.uvar()?,
            cache_read_tokens: r.uvar()?,
            cache_write_tokens: r.uvar()?,
            output_tokens: r.uvar()?,
            cost_unknown: r.uvar()?,
            ..AggState::default()
        };
        state.cost = r.ivar128()?;
        state.saved_cost = r.ivar128()?;
        state.latency_sum_us = r.uvar128()?;
        let mut deserializer = Deserializer::new();
        for histogram in [&mut state.latency_us, &mut state.output_tokens_hist] {
            let mut serialised = r.bytes()?;
            let mut decoded: Histogram<u64> = deserializer
                .deserialize(&mut serialised)
                .map_err(|error| bad(&format!("histogram: {error:?}")))?;
            decoded.auto(true);
            *histogram = decoded;
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(state)
    }
}

/// Records a value, growing the histogram as needed. (`saturating_record` would clamp to the
/// current top instead of growing an auto-resizing histogram.)
fn record_value(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

fn subtract_histogram(histogram: &mut Histogram<u64>, part: &Histogram<u64>) {
    if histogram.subtract(part).is_err() {
        // Only when the part holds values this histogram never saw (a damaged aggregate): take
        // out what can be taken out, value by value, rather than give up.
        for value in part.iter_recorded() {
            let equivalent = value.value_iterated_to();
            let present = histogram.count_at(equivalent);
            let remove = present.min(value.count_at_value());
            if remove > 0 {
                let mut single = Histogram::new_from(histogram);
                let _ = single.record_n(equivalent, remove);
                let _ = histogram.subtract(&single);
            }
        }
    }
}

/// The `q` quantile with numpy's default linear interpolation between the order statistics at
/// ranks `floor(q (n-1))` and `ceil(q (n-1))`, each taken as its bucket's midpoint.
pub fn interpolated_quantile(histogram: &Histogram<u64>, q: f64) -> f64 {
    let n = histogram.len();
    if n == 0 {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lower_rank = position.floor() as u64;
    let upper_rank = position.ceil() as u64;
    let fraction = position - lower_rank as f64;
    let mut lower = None;
    let mut upper = None;
    let mut seen = 0_u64;
    for value in histogram.iter_recorded() {
        let midpoint = histogram.median_equivalent(value.value_iterated_to()) as f64;
        let next = seen + value.count_at_value();
        if lower.is_none() && lower_rank < next {
            lower = Some(midpoint);
        }
        if upper_rank < next {
            upper = Some(midpoint);
            break;
        }
        seen = next;
    }
    match (lower, upper) {
        (Some(lower), Some(upper)) => lower + (upper - lower) * fraction,
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => f64::NAN,
    }
}

/// Aggregate keys: stored window length, window start, dimension, group label. The window
/// length leads so that changing `aggregate_window` never mixes windows of two lengths.
pub fn agg_key(
    window_ms: i64,
    window_start_ms: i64,
    dimension: Dimension,
    label: &[u8],
) -> Vec<u8> {
    let mut key = Vec::with_capacity(17 + label.len());
    key.extend_from_slice(&window_ms.to_be_bytes());
    key.extend_from_slice(&time_bytes(window_start_ms));
    key.push(dimension as u8);
    key.extend_from_slice(label);
    key
}

/// The first key of a window (for range scans).
pub fn agg_window_prefix(window_ms: i64, window_start_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&window_ms.to_be_bytes());
    key.extend_from_slice(&time_bytes(window_start_ms));
    key
}

/// A decoded aggregate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggKey {
    pub window_start_ms: i64,
    pub dimension: Dimension,
    /// For tags: the tag key; otherwise the group.
    pub first: String,
    /// For tags: the tag value; otherwise empty.
    pub second: String,
}

/// The label bytes of a tag group: the key's length, the key, the value.
pub fn tag_label(key: &str, value: &str) -> Vec<u8> {
    let mut label = Vec::with_capacity(4 + key.len() + value.len());
    label.extend_from_slice(&(key.len() as u32).to_be_bytes());
    label.extend_from_slice(key.as_bytes());
    label.extend_from_slice(value.as_bytes());
    label
}

/// The window start of an aggregate key, without decoding its label.
pub fn parse_agg_window_start(key: &[u8]) -> Option<i64> {
    let time: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(crate::codec::time_from_bytes(time))
}

pub fn parse_agg_key(key: &[u8]) -> Option<AggKey> {
    let window_start_ms = parse_agg_window_start(key)?;
    let dimension = Dimension::from_code(*key.get(16)?)?;
    let label = key.get(17..)?;
    let (first, second) = if dimension == Dimension::Tag {
        let len: [u8; 4] = label.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len) as usize;
        let tag_key = label.get(4..4 + len)?;
        let tag_value = label.get(4 + len..)?;
        (String::from_utf8(tag_key.to_vec()).ok()?, String::from_utf8(tag_value.to_vec()).ok()?)
    } else {
        (String::from_utf8(label.to_vec()).ok()?, String::new())
    };
    Some(AggKey { window_start_ms, dimension, first, second })
}

/// Calls `visit` with every aggregate key a record contributes to, for one stored window. Keys
/// are built in `buffer`, reused from call to call, so the hot ingest loop allocates nothing
/// for groups it has seen before.
pub fn for_each_key<E>(
    record: &RequestRecord,
    window_ms: i64,
    buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let window_start = record.ts_ms.div_euclid(window_ms) * window_ms;
    let mut key = |dimension: Dimension, first: &[u8], second: Option<&[u8]>| {
        buffer.clear();
        buffer.extend_from_slice(&window_ms.to_be_bytes());
        buffer.extend_from_slice(&time_bytes(window_start));
        buffer.push(dimension as u8);
        match second {
            None => buffer.extend_from_slice(first),
            Some(second) => {
                buffer.extend_from_slice(&(first.len() as u32).to_be_bytes());
                buffer.extend_from_slice(first);
                buffer.extend_from_slice(second);
            }
        }
        visit(buffer)
    };
    key(Dimension::Total, b"", None)?;
    key(Dimension::Model, record.served_model.0.as_bytes(), None)?;
    key(Dimension::Provider, record.provider.0.as_bytes(), None)?;
    let tenant = record.tenant.as_ref().map_or("", |tenant| tenant.as_str());
    key(Dimension::Tenant, tenant.as_bytes(), None)?;
    for (tag_key, tag_value) in &record.tags {
        key(Dimension::Tag, tag_key.as_bytes(), Some(tag_value.as_bytes()))?;
    }
    Ok(())
}

/// Every aggregate key a record contributes to (allocating; see [`for_each_key`]).
pub fn keys_of(record: &RequestRecord, window_ms: i64) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(4 + record.tags.len());
    let mut buffer = Vec::new();
    let _ = for_each_key::<()>(record, window_ms, &mut buffer, |key| {
        keys.push(key.to_vec());
        Ok(())
    });
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_quantiles_match_numpy_on_small_sets() {
        // numpy.quantile([1, 2, 3, 4], [0.5, 0.95, 0.99]) = [2.5, 3.85, 3.97]
        let mut histogram = new_histogram();
        for value in [1, 2, 3, 4] {
            histogram.record(value).unwrap();
        }
        assert_eq!(interpolated_quantile(&histogram, 0.5), 2.5);
        assert!((interpolated_quantile(&histogram, 0.95) - 3.85).abs() < 1e-9);
        assert!((interpolated_quantile(&histogram, 0.99) - 3.97).abs() < 1e-9);
        // numpy.quantile([10000, 20000, 30000], 0.5) = 20000, within bucket resolution.
        let mut wide = new_histogram();
        for value in [10_000, 20_000, 30_000] {
            wide.record(value).unwrap();
        }
        assert!((interpolated_quantile(&wide, 0.5) - 20_000.0).abs() <= 0.005 * 20_000.0);
    }

    #[test]
    fn state_round_trips_and_subtracts_exactly() {
        let records: Vec<RequestRecord> = (0..50)
            .map(|i| llmopt_core::testsuite::full_record(i, 1_767_225_600_000, "m", "t"))
            .collect();
        let mut state = AggState::default();
        for record in &records {
            state.add_record(record);
        }
        let decoded = AggState::decode(&state.encode().unwrap()).unwrap();
        assert_eq!(decoded.count, 50);
        assert_eq!(decoded.cost, state.cost);
        assert_eq!(decoded.latency_us, state.latency_us);
        let mut reduced = decoded;
        reduced.remove_record(&records[0]);
        let mut expected = AggState::default();
        for record in &records[1..] {
            expected.add_record(record);
        }
        assert_eq!(reduced.count, expected.count);
        assert_eq!(reduced.cost, expected.cost);
        assert_eq!(reduced.latency_us, expected.latency_us);
        assert_eq!(reduced.output_tokens_hist, expected.output_tokens_hist);
    }

    #[test]
    fn streamed_keys_match_the_key_builders() {
        let record = llmopt_core::testsuite::full_record(1, 1_767_225_601_234, "m", "t");
        let window = 60_000;
        let start = 1_767_225_600_000;
        let expected = vec![
            agg_key(window, start, Dimension::Total, b""),
            agg_key(window, start, Dimension::Model, b"m"),
            agg_key(window, start, Dimension::Provider, b"openai"),
            agg_key(window, start, Dimension::Tenant, b"t"),
            agg_key(window, start, Dimension::Tag, &tag_label("feature", "search")),
        ];
        assert_eq!(keys_of(&record, window), expected);
    }

    #[test]
    fn keys_parse_back() {
        let key = agg_key(60_000, -120_000, Dimension::Tag, &tag_label("a=b", "c"));
        let parsed = parse_agg_key(&key).unwrap();
        assert_eq!(parsed.window_start_ms, -120_000);
        assert_eq!(parsed.dimension, Dimension::Tag);
        assert_eq!((parsed.first.as_str(), parsed.second.as_str()), ("a=b", "c"));
    }
}
