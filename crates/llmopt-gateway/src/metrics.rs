//! Prometheus metrics (prometheus-client), updated once per finished call from its record.
//!
//! Everything is derived from the [`RequestRecord`] the call produced, so `/metrics` and the
//! stored records cannot disagree. Collector counters (queue depth, drops) are read at scrape
//! time. Cost is exported in USD as a float counter: Prometheus has no integers, and exact sums
//! live in the store anyway.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, atomic::AtomicU64},
};

use llmopt_collector::CollectorMetrics;
use llmopt_core::{RequestRecord, Status};
use llmopt_optimizer::LoopMetrics;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    pub model: String,
    pub endpoint: String,
    pub status: String,
    pub cache: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~105 s, doubling: covers gateway overhead and long generations alike.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The series of one (provider, model), looked up once and kept. Looking a labelled series up in
/// a `Family` builds its label strings and hashes them on every call: about a dozen allocations
/// per proxied request. prometheus-client metrics are shared handles, so a kept clone updates the
/// registered series. Series are still created on first use only, as the families would.
#[derive(Debug, Default)]
struct ModelSeries {
    /// By (endpoint, status, cache outcome), all static strings; a handful per model.
    requests: Mutex<Vec<(CallKey, Counter)>>,
    /// input, output, cache_read, cache_write.
    tokens: [OnceLock<Counter>; 4],
    cost_usd: OnceLock<Counter<f64, AtomicU64>>,
    saved_usd: OnceLock<Counter<f64, AtomicU64>>,
    latency: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
}

/// (endpoint, status, cache outcome) of a call.
type CallKey = (&'static str, &'static str, &'static str);

const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

/// provider → model → series.
type SeriesCache = RwLock<HashMap<String, HashMap<String, Arc<ModelSeries>>>>;

/// The most (provider, model) label pairs exported. Model names come from clients (a refused
/// call is labelled with the model it asked for; ingested records name their own), so without
/// a bound anyone who can call the gateway could grow `/metrics` and its memory at will. Past
/// the bound, new pairs are counted under `provider="other", model="other"`.
pub const MAX_MODEL_SERIES: usize = 256;

/// The label value of the pairs past [`MAX_MODEL_SERIES`].
pub const OTHER: &str = "other";

/// Every metric the gateway exports.
/// What the OpenTelemetry exporter counts: spans accepted by the collector, dropped at a full
/// queue, failed after retries. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct OtelCounters {
    pub exported: Counter,
    pub dropped: Counter,
    pub failed: Counter,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    judge: Family<CacheLabels, Counter>,
    requests: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    saved_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    cache: Family<CacheLabels, Counter>,
    latency: HistogramFamily<ModelLabels>,
    ttft: HistogramFamily<ModelLabels>,
    overhead: Histogram,
    /// Cache outcome counters (hit, miss, bypass), kept like [`ModelSeries`].
    cache_outcomes: [OnceLock<Counter>; 3],
    series: SeriesCache,
    collector_queue_depth: Gauge,
    collector_dropped: Gauge,
    collector_rejected: Gauge,
    collector_written: Gauge,
    collector_write_errors: Gauge,
    collector_write_retries: Gauge,
    collector_write_failed_records: Gauge,
    collector_retrying_records: Gauge,
    shared_cache_hits: Gauge,
    shared_cache_misses: Gauge,
    shared_cache_errors: Gauge,
    shared_rate_errors: Gauge,
    in_flight: Gauge,
    config_reloads: Family<CacheLabels, Counter>,
    handler_panics: Counter,
    stream_clients: Gauge,
    stream_dropped: Counter,
    otel: OtelCounters,
    cycle_leader: Gauge,
    key_spend_usd: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    key_budget_usd: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    optimizer: OptimizerMetrics,
}

/// A virtual key's series: at most `keys::MAX_KEY_SERIES` keys are exported.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabels {
    pub strategy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub strategy: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: String,
}

/// The loop's metrics, synchronised from `LoopMetrics` snapshots at scrape time.
#[derive(Debug)]
struct OptimizerMetrics {
    runs: Counter,
    failed_runs: Counter,
    duration: Histogram,
    cost_reduction: Gauge<f64, AtomicU64>,
    active_experiments: Gauge,
    quality_budget_used: Gauge<f64, AtomicU64>,
    proposals: Family<StrategyLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    rollbacks: Family<CauseLabels, Counter>,
    /// What has been exported already, to turn snapshots into counter increments.
    synced: std::sync::Mutex<LoopMetrics>,
}

impl OptimizerMetrics {
    fn register(registry: &mut Registry) -> OptimizerMetrics {
        let metrics = OptimizerMetrics {
            runs: Counter::default(),
            failed_runs: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            cost_reduction: Gauge::default(),
            active_experiments: Gauge::default(),
            quality_budget_used: Gauge::default(),
            proposals: Family::default(),
            decisions: Family::default(),
            rollbacks: Family::default(),
            synced: std::sync::Mutex::new(LoopMetrics::default()),
        };
        registry.register("optimizer_runs", "Optimization cycles run", metrics.runs.clone());
        registry.register(
            "optimizer_failed_runs",
            "Optimization cycles that failed",
            metrics.failed_runs.clone(),
        );
        registry.register(
            "optimizer_duration_seconds",
            "Duration of optimization cycles",
            metrics.duration.clone(),
        );
        registry.register(
            "optimizer_cost_reduction",
            "Measured saving of the adopted changes in force against their holdouts, USD per day",
            metrics.cost_reduction.clone(),
        );
        registry.register(
            "optimizer_active_experiments",
            "Experiments running",
            metrics.active_experiments.clone(),
        );
        registry.register(
            "optimizer_quality_budget_used",
            "Share of the routing quality budget spent by adoptions",
            metrics.quality_budget_used.clone(),
        );
        registry.register(
            "optimizer_proposals",
            "Proposals made, by strategy",
            metrics.proposals.clone(),
        );
        registry.register(
            "optimizer_decisions",
            "Experiment decisions, by strategy and outcome",
            metrics.decisions.clone(),
        );
        registry.register(
            "optimizer_rollbacks",
            "Adopted changes rolled back, by cause (guardrail:<metric>, cost, operator)",
            metrics.rollbacks.clone(),
        );
        metrics
    }

    fn sync(&self, now: &LoopMetrics, quality_budget_used: f64) {
        let mut synced = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.runs.inc_by(now.runs.saturating_sub(synced.runs));
        self.failed_runs.inc_by(now.failed_runs.saturating_sub(synced.failed_runs));
        for duration in now.durations_seconds.iter().skip(synced.durations_seconds.len()) {
            self.duration.observe(*duration);
        }
        self.cost_reduction.set(now.cost_reduction_usd_per_day);
        self.active_experiments.set(i64::try_from(now.active_experiments).unwrap_or(i64::MAX));
        self.quality_budget_used.set(quality_budget_used);
        for (strategy, count) in &now.proposals {
            let before = synced.proposals.get(strategy).copied().unwrap_or(0);
            self.proposals
                .get_or_create(&StrategyLabels { strategy: strategy.clone() })
                .inc_by(count.saturating_sub(before));
        }
        for ((strategy, outcome), count) in &now.decisions {
            let before =
                synced.decisions.get(&(strategy.clone(), outcome.clone())).copied().unwrap_or(0);
            self.decisions
                .get_or_create(&DecisionLabels {
                    strategy: strategy.clone(),
                    outcome: outcome.clone(),
                })
                .inc_by(count.saturating_sub(before));
        }
        for (cause, count) in &now.rollbacks {
            let before = synced.rollbacks.get(cause).copied().unwrap_or(0);
            self.rollbacks
                .get_or_create(&CauseLabels { cause: cause.clone() })
                .inc_by(count.saturating_sub(before));
        }
        *synced = now.clone();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // No registry prefix: the gateway's names carry `llmopt_` themselves, and the loop's use the
        // names existing dashboards know (`optimizer_runs_total`, …).
        let mut registry = Registry::default();
        let requests = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost_usd = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        let saved_usd = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        let cache = Family::<CacheLabels, Counter>::default();
        let latency: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        let ttft: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        let overhead = latency_histogram();
        let config_reloads = Family::<CacheLabels, Counter>::default();
        let handler_panics = Counter::default();
        let cycle_leader = Gauge::default();
        registry.register(
            "llmopt_optimizer_cycle_leader",
            "1 when this replica runs the scheduled optimization cycles (the fleet's leader, or \
             the only process on its store), else 0",
            cycle_leader.clone(),
        );
        let key_spend_usd = Family::<KeyLabels, Gauge<f64, AtomicU64>>::default();
        let key_budget_usd = Family::<KeyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "llmopt_key_spend_usd",
            "Spend of a virtual key in its current budget period, USD",
            key_spend_usd.clone(),
        );
        registry.register(
            "llmopt_key_budget_usd",
            "Budget of a virtual key per period, USD",
            key_budget_usd.clone(),
        );
        registry.register(
            "llmopt_handler_panics",
            "Handler panics caught and answered with a 500",
            handler_panics.clone(),
        );
        registry.register("llmopt_requests", "Calls through the gateway", requests.clone());
        registry.register("llmopt_errors", "Failed calls by error kind", errors.clone());
        registry.register(
            "llmopt_tokens",
            "Tokens by kind (input, output, cache_read, cache_write)",
            tokens.clone(),
        );
        registry.register("llmopt_cost_usd", "Provider cost of calls, USD", cost_usd.clone());
        registry.register(
            "llmopt_saved_usd",
            "Cost saved by response-cache hits, USD",
            saved_usd.clone(),
        );
        registry.register("llmopt_cache", "Response-cache outcomes", cache.clone());
        registry.register("llmopt_request_duration_seconds", "Total call latency", latency.clone());
        registry.register(
            "llmopt_time_to_first_token_seconds",
            "Time to first token",
            ttft.clone(),
        );
        registry.register(
            "llmopt_gateway_overhead_seconds",
            "Total time minus upstream time, per call",
            overhead.clone(),
        );
        let collector_queue_depth = Gauge::default();
        let collector_dropped = Gauge::default();
        let collector_rejected = Gauge::default();
        let collector_written = Gauge::default();
        let collector_write_errors = Gauge::default();
        let collector_write_retries = Gauge::default();
        let collector_write_failed_records = Gauge::default();
        let collector_retrying_records = Gauge::default();
        let shared_cache_hits = Gauge::default();
        let shared_cache_misses = Gauge::default();
        let shared_cache_errors = Gauge::default();
        let shared_rate_errors = Gauge::default();
        let in_flight = Gauge::default();
        registry.register(
            "llmopt_collector_queue_depth",
            "Records waiting for the writer",
            collector_queue_depth.clone(),
        );
        registry.register(
            "llmopt_collector_dropped",
            "Records dropped on a full queue (total)",
            collector_dropped.clone(),
        );
        registry.register(
            "llmopt_collector_rejected",
            "Records refused by validation (total)",
            collector_rejected.clone(),
        );
        registry.register(
            "llmopt_collector_written",
            "Records written to the store (total)",
            collector_written.clone(),
        );
        registry.register(
            "llmopt_collector_write_errors",
            "Failed store calls (total)",
            collector_write_errors.clone(),
        );
        registry.register(
            "llmopt_collector_write_retries",
            "Store writes repeated after a failure, e.g. while PostgreSQL restarts (total)",
            collector_write_retries.clone(),
        );
        registry.register(
            "llmopt_collector_write_failed_records",
            "Records lost because the store refused them for longer than collector.write_retry_s (total)",
            collector_write_failed_records.clone(),
        );
        registry.register(
            "llmopt_collector_retrying_records",
            "Records of a refused batch waiting for their next attempt",
            collector_retrying_records.clone(),
        );
        registry.register(
            "llmopt_cache_redis_hits",
            "Lookups answered by the shared Redis cache after an in-process miss (total)",
            shared_cache_hits.clone(),
        );
        registry.register(
            "llmopt_cache_redis_misses",
            "Lookups the shared Redis cache did not have (total)",
            shared_cache_misses.clone(),
        );
        registry.register(
            "llmopt_cache_redis_errors",
            "Shared Redis cache commands that failed or timed out; a failed lookup is a miss (total)",
            shared_cache_errors.clone(),
        );
        registry.register(
            "llmopt_rate_limit_redis_errors",
            "Rate-limit checks Redis could not answer, decided by this replica's own limiter instead (total)",
            shared_rate_errors.clone(),
        );
        registry.register(
            "llmopt_in_flight_requests",
            "Proxied calls in flight",
            in_flight.clone(),
        );
        registry.register(
            "llmopt_config_reloads",
            "Configuration reloads by outcome",
            config_reloads.clone(),
        );
        let judge = Family::<CacheLabels, Counter>::default();
        registry.register(
            "llmopt_judge_calls",
            "Answers the judge was asked to grade, by outcome (correct, incorrect, no_verdict, \
             failed, skipped_busy, skipped_long)",
            judge.clone(),
        );
        let stream_clients = Gauge::default();
        let stream_dropped = Counter::default();
        registry.register(
            "llmopt_stream_clients",
            "Clients connected to /api/stream",
            stream_clients.clone(),
        );
        registry.register(
            "llmopt_stream_dropped_updates",
            "Updates /api/stream dropped for clients that fell behind",
            stream_dropped.clone(),
        );
        let otel = OtelCounters::default();
        registry.register(
            "llmopt_otel_exported_spans",
            "Spans of proxied calls the OTLP collector accepted",
            otel.exported.clone(),
        );
        registry.register(
            "llmopt_otel_dropped_spans",
            "Spans of proxied calls dropped because the export queue was full",
            otel.dropped.clone(),
        );
        registry.register(
            "llmopt_otel_failed_spans",
            "Spans of proxied calls whose export failed after retries",
            otel.failed.clone(),
        );
        let optimizer = OptimizerMetrics::register(&mut registry);
        Metrics {
            judge,
            stream_clients,
            stream_dropped,
            otel,
            optimizer,
            registry,
            requests,
            errors,
            tokens,
            cost_usd,
            saved_usd,
            cache,
            latency,
            ttft,
            overhead,
            cache_outcomes: Default::default(),
            series: RwLock::default(),
            collector_queue_depth,
            collector_dropped,
            collector_rejected,
            collector_written,
            collector_write_errors,
            collector_write_retries,
            collector_write_failed_records,
            collector_retrying_records,
            shared_cache_hits,
            shared_cache_misses,
            shared_cache_errors,
            shared_rate_errors,
            in_flight,
            config_reloads,
            handler_panics,
            cycle_leader,
            key_spend_usd,
            key_budget_usd,
        }
    }

    /// Counts one grading by the judge.
    pub fn judge_outcome(&self, outcome: crate::judge::JudgeOutcome) {
        self.judge.get_or_create(&CacheLabels { outcome: outcome.as_str().to_owned() }).inc();
    }

    /// Counts one finished call.
    pub fn observe(&self, record: &RequestRecord) {
        let (series, provider, model) =
            self.model_series(record.provider.as_str(), record.served_model.as_str());
        let status = match record.status {
            Status::Ok => "ok",
            Status::Error(kind) => kind.as_str(),
        };
        let endpoint = record.endpoint.as_str();
        let cache = record.cache.as_str();
        let model_labels =
            || ModelLabels { provider: provider.to_owned(), model: model.to_owned() };
        {
            let mut requests = series.requests.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (endpoint, status, cache);
            match requests.iter().find(|(labels, _)| *labels == key) {
                Some((_, counter)) => {
                    counter.inc();
                }
                None => {
                    let counter = self
                        .requests
                        .get_or_create(&CallLabels {
                            provider: provider.to_owned(),
                            model: model.to_owned(),
                            endpoint: endpoint.to_owned(),
                            status: status.to_owned(),
                            cache: cache.to_owned(),
                        })
                        .clone();
                    counter.inc();
                    requests.push((key, counter));
                }
            }
        }
        if let Status::Error(kind) = record.status {
            self.errors.get_or_create(&ErrorLabels { kind: kind.as_str().to_owned() }).inc();
        }
        let outcome_index = match record.cache {
            llmopt_core::CacheOutcome::Hit => 0,
            llmopt_core::CacheOutcome::Miss => 1,
            llmopt_core::CacheOutcome::Bypass => 2,
        };
        self.cache_outcomes[outcome_index]
            .get_or_init(|| {
                self.cache.get_or_create(&CacheLabels { outcome: cache.to_owned() }).clone()
            })
            .inc();
        if let Some(usage) = &record.usage {
            let counts = [
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens(),
            ];
            for ((kind, count), counter) in TOKEN_KINDS.iter().zip(counts).zip(&series.tokens) {
                if count > 0 {
                    counter
                        .get_or_init(|| {
                            self.tokens
                                .get_or_create(&TokenLabels {
                                    provider: provider.to_owned(),
                                    model: model.to_owned(),
                                    kind: (*kind).to_owned(),
                                })
                                .clone()
                        })
                        .inc_by(count);
                }
            }
        }
        if let Some(cost) = record.cost.filter(|c| !c.is_zero()) {
            series
                .cost_usd
                .get_or_init(|| self.cost_usd.get_or_create(&model_labels()).clone())
                .inc_by(cost.as_usd_f64());
        }
        if let Some(saved) = record.saved_cost.filter(|c| !c.is_zero()) {
            series
                .saved_usd
                .get_or_init(|| self.saved_usd.get_or_create(&model_labels()).clone())
                .inc_by(saved.as_usd_f64());
        }
        series
            .latency
            .get_or_init(|| self.latency.get_or_create(&model_labels()).clone())
            .observe(record.latency_us as f64 / 1e6);
        if let Some(ttft) = record.ttft_us {
            series
                .ttft
                .get_or_init(|| self.ttft.get_or_create(&model_labels()).clone())
                .observe(ttft as f64 / 1e6);
        }
        if let Some(upstream) = record.upstream_us {
            self.overhead.observe(record.latency_us.saturating_sub(upstream) as f64 / 1e6);
        }
    }

    /// The kept series of one (provider, model), made on first use.
    /// The series of a (provider, model) pair and the labels it is exported under: its own, or
    /// `other` once [`MAX_MODEL_SERIES`] pairs exist.
    fn model_series<'a>(
        &self,
        provider: &'a str,
        model: &'a str,
    ) -> (Arc<ModelSeries>, &'a str, &'a str) {
        {
            let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = series.get(provider).and_then(|models| models.get(model)) {
                return (Arc::clone(found), provider, model);
            }
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let pairs: usize = series.values().map(HashMap::len).sum();
        let known = series.get(provider).is_some_and(|models| models.contains_key(model));
        let (provider, model) =
            if known || pairs < MAX_MODEL_SERIES { (provider, model) } else { (OTHER, OTHER) };
        let found =
            series.entry(provider.to_owned()).or_default().entry(model.to_owned()).or_default();
        (Arc::clone(found), provider, model)
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Replaces the virtual keys' series with `keys` ((key id, tenant, spend, budget) of the
    /// active keys), at most `keys::MAX_KEY_SERIES` of them.
    pub fn set_keys(&self, keys: impl Iterator<Item = (String, String, f64, Option<f64>)>) {
        self.key_spend_usd.clear();
        self.key_budget_usd.clear();
        for (key, tenant, spend, budget) in keys.take(crate::keys::MAX_KEY_SERIES) {
            let labels = KeyLabels { key, tenant };
            self.key_spend_usd.get_or_create(&labels).set(spend);
            if let Some(budget) = budget {
                self.key_budget_usd.get_or_create(&labels).set(budget);
            }
        }
    }

    pub fn count_panic(&self) {
        self.handler_panics.inc();
    }

    /// Updates of `/api/stream` a lagging client skipped.
    pub fn count_stream_dropped(&self, count: u64) {
        self.stream_dropped.inc_by(count);
    }

    /// The OpenTelemetry exporter's counters (`crate::telemetry`), shared with it.
    pub fn otel(&self) -> &OtelCounters {
        &self.otel
    }

    pub fn set_stream_clients(&self, clients: usize) {
        self.stream_clients.set(i64::try_from(clients).unwrap_or(i64::MAX));
    }

    pub fn count_reload(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.config_reloads.get_or_create(&CacheLabels { outcome: outcome.to_owned() }).inc();
    }

    /// Says whether this replica runs the scheduled cycles.
    pub fn set_cycle_leader(&self, leads: bool) {
        self.cycle_leader.set(i64::from(leads));
    }

    /// The text exposition, with collector gauges and the loop's counters read now.
    pub fn render(
        &self,
        collector: &CollectorMetrics,
        loop_metrics: &LoopMetrics,
        quality_budget_used: f64,
        shared_cache: &crate::cache::SharedCacheCounters,
    ) -> String {
        self.optimizer.sync(loop_metrics, quality_budget_used);
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.collector_queue_depth.set(as_gauge(collector.queue_depth));
        self.collector_dropped.set(as_gauge(collector.dropped));
        self.collector_rejected.set(as_gauge(collector.rejected));
        self.collector_written.set(as_gauge(collector.written));
        self.collector_write_errors.set(as_gauge(collector.write_errors));
        self.collector_write_retries.set(as_gauge(collector.write_retries));
        self.collector_write_failed_records.set(as_gauge(collector.write_failed_records));
        self.collector_retrying_records.set(as_gauge(collector.retrying_records));
        self.shared_cache_hits.set(as_gauge(shared_cache.hits));
        self.shared_cache_misses.set(as_gauge(shared_cache.misses));
        self.shared_cache_errors.set(as_gauge(shared_cache.errors));
        self.shared_rate_errors.set(as_gauge(shared_cache.rate_errors));
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
