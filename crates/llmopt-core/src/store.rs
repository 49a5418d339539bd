//! Storage seams. Synchronous on purpose: the core has no async runtime, the embedded store
//! (sled) is synchronous, and the collector calls stores from its own background writer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ids::RequestId,
    money::Money,
    record::{Feedback, RequestRecord},
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store's files cannot be opened or written.
    #[error("storage at `{path}`: {message}")]
    Io { path: String, message: String },
    /// The store holds data this version cannot read (corrupt, foreign, or a newer schema).
    #[error("storage at `{path}` is unreadable: {message}")]
    Corrupt { path: String, message: String },
    /// An optimistic-concurrency check failed: someone else wrote first.
    #[error("conflict on `{key}`: expected revision {expected}, found {found}")]
    Conflict { key: String, expected: u64, found: u64 },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("encoding: {0}")]
    Encoding(String),
}

/// Which records a scan or aggregate reads. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFilter {
    /// Served model.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub tenant: Option<String>,
    /// A tag key and value.
    pub tag: Option<(String, String)>,
    pub experiment_id: Option<String>,
}

impl RecordFilter {
    pub fn matches(&self, record: &RequestRecord) -> bool {
        self.model.as_deref().is_none_or(|m| record.served_model.as_str() == m)
            && self.provider.as_deref().is_none_or(|p| record.provider.as_str() == p)
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| record.tenant.as_ref().is_some_and(|rt| rt.as_str() == t))
            && self.tag.as_ref().is_none_or(|(k, v)| record.tags.get(k).is_some_and(|rv| rv == v))
            && self.experiment_id.as_deref().is_none_or(|e| {
                record.experiment.as_ref().is_some_and(|arm| arm.experiment_id == e)
            })
    }
}

/// A time range `[from_ms, to_ms)` and a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    #[serde(default)]
    pub filter: RecordFilter,
    /// At most this many records, oldest first.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl RecordQuery {
    pub fn range(from_ms: i64, to_ms: i64) -> RecordQuery {
        RecordQuery { from_ms, to_ms, filter: RecordFilter::default(), limit: None }
    }

    pub fn validate(&self) -> Result<(), StoreError> {
        if self.to_ms < self.from_ms {
            return Err(StoreError::InvalidQuery(format!(
                "`to` ({}) is before `from` ({})",
                self.to_ms, self.from_ms
            )));
        }
        Ok(())
    }
}

/// How aggregate rows are grouped besides by window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Total,
    Model,
    Provider,
    Tenant,
    /// By the value of one tag key (records without the tag are grouped under `""`).
    Tag(String),
}

impl GroupBy {
    /// The group a record falls in.
    pub fn key_of(&self, record: &RequestRecord) -> String {
        match self {
            GroupBy::Total => String::new(),
            GroupBy::Model => record.served_model.0.clone(),
            GroupBy::Provider => record.provider.0.clone(),
            GroupBy::Tenant => record.tenant.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
            GroupBy::Tag(key) => record.tags.get(key).cloned().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Window length; windows start at multiples of it since the epoch.
    pub window_ms: i64,
    #[serde(default)]
    pub group_by: GroupBy,
    #[serde(default)]
    pub filter: RecordFilter,
}

impl AggregateQuery {
    pub fn validate(&self) -> Result<(), StoreError> {
        RecordQuery::range(self.from_ms, self.to_ms).validate()?;
        if self.window_ms <= 0 {
            return Err(StoreError::InvalidQuery("window must be positive".to_owned()));
        }
        Ok(())
    }

    pub fn window_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms) * self.window_ms
    }
}

/// Counts, sums and latency quantiles for one window and group.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AggregateRow {
    pub window_start_ms: i64,
    pub group: String,
    pub count: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    /// Sum of known costs.
    pub cost: Money,
    /// Records whose cost is unknown (not counted in `cost`).
    pub cost_unknown: u64,
    pub saved_cost: Money,
    pub latency_mean_ms: f64,
    /// Latency quantiles in milliseconds (exact in memory; within 1 % from sketches).
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
}

/// Joins feedback to a record: one value per metric, the latest wins (feedback is idempotent:
/// posting the same metric again replaces, never adds). Every store and the collector's queue
/// join through this one function.
pub fn join_feedback(record: &mut RequestRecord, feedback: Feedback) {
    match record.feedback.iter_mut().find(|existing| existing.metric == feedback.metric) {
        Some(existing) => *existing = feedback,
        None => record.feedback.push(feedback),
    }
}

/// Append-mostly storage of [`RequestRecord`]s.
pub trait RecordStore: Send + Sync + std::fmt::Debug {
    /// Stores a batch. Records are independent: ids must be unique (a duplicate id replaces).
    fn append(&self, records: &[RequestRecord]) -> Result<(), StoreError>;
    /// Records in `[from, to)` matching the filter, oldest first.
    fn scan(&self, query: &RecordQuery) -> Result<Vec<RequestRecord>, StoreError>;
    fn get(&self, id: &RequestId) -> Result<Option<RequestRecord>, StoreError>;
    /// Joins quality feedback to a stored record with [`join_feedback`] (one value per metric,
    /// the latest wins). `Ok(false)` when the id is unknown.
    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool, StoreError>;
    fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError>;
    /// Deletes raw records older than `before_ms`; returns how many went.
    fn delete_before(&self, before_ms: i64) -> Result<u64, StoreError>;
    fn count(&self) -> Result<u64, StoreError>;
    /// Makes everything appended so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// A stored experiment: the experiments crate owns the schema of `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDoc {
    pub id: String,
    /// Lifecycle state, for listing without decoding bodies (`draft`, `running`, …).
    pub status: String,
    /// Optimistic-concurrency revision: 0 for a new document; the store bumps it on each write.
    pub revision: u64,
    pub updated_ms: i64,
    pub body: Value,
}

pub trait ExperimentStore: Send + Sync + std::fmt::Debug {
    /// Writes `doc` if its `revision` equals the stored one (0 when absent); returns the new
    /// revision. Otherwise [`StoreError::Conflict`].
    fn put(&self, doc: &ExperimentDoc) -> Result<u64, StoreError>;
    fn get(&self, id: &str) -> Result<Option<ExperimentDoc>, StoreError>;
    /// All documents, ordered by id.
    fn list(&self) -> Result<Vec<ExperimentDoc>, StoreError>;
    fn delete(&self, id: &str) -> Result<bool, StoreError>;
}

/// A version of the live policy: the optimizer owns the schema of `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDoc {
    pub version: u64,
    pub updated_ms: i64,
    pub reason: String,
    pub body: Value,
}

/// One decision of the optimizer, kept for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store on append, increasing.
    #[serde(default)]
    pub seq: u64,
    pub ts_ms: i64,
    /// `proposal`, `experiment_started`, `adopted`, `rolled_back`, …
    pub kind: String,
    pub subject: String,
    pub detail: Value,
}

pub trait PolicyStore: Send + Sync + std::fmt::Debug {
    /// The current policy, if any was saved.
    fn load(&self) -> Result<Option<PolicyDoc>, StoreError>;
    /// The current version (0 when none was saved), for replicas that poll a shared store for
    /// changes: a store where loading the whole document costs more answers this cheaply.
    fn current_version(&self) -> Result<u64, StoreError> {
        Ok(self.load()?.map_or(0, |doc| doc.version))
    }
    /// Saves a new version; its `version` must be greater than the current one.
    fn save(&self, doc: &PolicyDoc) -> Result<(), StoreError>;
    /// Saved versions, newest first.
    fn history(&self, limit: usize) -> Result<Vec<PolicyDoc>, StoreError>;
    /// Appends to the audit log; returns the assigned sequence number.
    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
    /// Audit entries with `seq > after_seq`, oldest first, at most `limit`.
    fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Exact latency quantile with numpy's default ("linear") interpolation on sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let fraction = position - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
}

/// Builds aggregate rows from raw records (the in-memory store, and any store's fallback).
pub fn aggregate_records<'a>(
    query: &AggregateQuery,
    records: impl Iterator<Item = &'a RequestRecord>,
) -> Vec<AggregateRow> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(i64, String), (AggregateRow, Vec<f64>)> = BTreeMap::new();
    for record in records {
        if record.ts_ms < query.from_ms
            || record.ts_ms >= query.to_ms
            || !query.filter.matches(record)
        {
            continue;
        }
        let window = query.window_of(record.ts_ms);
        let group = query.group_by.key_of(record);
        let (row, latencies) = groups.entry((window, group.clone())).or_insert_with(|| {
            (AggregateRow { window_start_ms: window, group, ..AggregateRow::default() }, Vec::new())
        });
        add_to_row(row, record);
        latencies.push(record.latency_ms());
    }
    groups
        .into_values()
        .map(|(mut row, mut latencies)| {
            latencies.sort_by(f64::total_cmp);
            row.latency_mean_ms = latencies.iter().sum::<f64>() / latencies.len() as f64;
            row.latency_p50_ms = quantile_sorted(&latencies, 0.50);
            row.latency_p95_ms = quantile_sorted(&latencies, 0.95);
            row.latency_p99_ms = quantile_sorted(&latencies, 0.99);
            row
        })
        .collect()
}

/// Adds a record's counts and sums (not its latency) to a row.
pub fn add_to_row(row: &mut AggregateRow, record: &RequestRecord) {
    row.count += 1;
    row.errors += u64::from(!record.status.is_ok());
    row.cache_hits += u64::from(record.cache == crate::record::CacheOutcome::Hit);
    if let Some(usage) = &record.usage {
        row.input_tokens += usage.input_tokens;
        row.cache_read_tokens += usage.cache_read_tokens;
        row.cache_write_tokens += usage.cache_write_tokens();
        row.output_tokens += usage.output_tokens;
    }
    match record.cost {
        Some(cost) => row.cost += cost,
        None => row.cost_unknown += 1,
    }
    if let Some(saved) = record.saved_cost {
        row.saved_cost += saved;
    }
}
