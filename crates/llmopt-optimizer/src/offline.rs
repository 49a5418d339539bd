//! The strategies run once over a file of calls, outside the cycle: what
//! `llm-auto-optimizer analyze FILE` adds to the `llmopt-analytics` report (which cannot call the
//! strategies, being on a lower floor).
//!
//! Savings per day are scaled by the records' own span (at least one second), and the timeout
//! and hedging strategy is skipped for inputs without latencies (traces), where an all-zero
//! latency column would read as real.

use llmopt_analytics::cache::ResponseCacheConfig;
use llmopt_core::{PriceCatalog, RequestRecord};

use crate::{AnalysisInput, Proposal, StrategyKind, StrategySettings, strategies};

/// Every strategy's proposals over `records` (oldest first), largest saving per day first, and
/// notes on what was skipped or assumed.
pub fn propose(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    settings: &StrategySettings,
) -> (Vec<Proposal>, Vec<String>) {
    let mut notes = Vec::new();
    let first_ts_ms = records.iter().map(|r| r.ts_ms).min().unwrap_or(0);
    let last_ts_ms = records.iter().map(|r| r.ts_ms).max().unwrap_or(0);
    let span_seconds = (last_ts_ms - first_ts_ms) as f64 / 1000.0;
    if span_seconds < 1.0 {
        notes.push(
            "the records span less than a second: savings per day use a 1-second span".into(),
        );
    }
    let span_days = span_seconds.max(1.0) / 86_400.0;
    let input = AnalysisInput { records, catalog, span_days, settings };
    let has_latency = records.iter().any(|r| r.latency_us > 0);
    if !has_latency {
        notes.push("timeouts and hedging: the input carries no latencies (traces do not)".into());
    }
    let mut proposals: Vec<Proposal> = strategies::all()
        .iter()
        // Latency strategies read an all-zero latency column as a real one.
        .filter(|strategy| has_latency || strategy.kind() != StrategyKind::TimeoutHedge)
        .flat_map(|strategy| strategy.propose(&input))
        .collect();
    proposals.sort_by(|a, b| {
        b.saving.usd_per_day.total_cmp(&a.saving.usd_per_day).then_with(|| a.id.cmp(&b.id))
    });
    if proposals.is_empty() {
        notes.push(format!(
            "no proposals: no strategy found a saving with at least {} requests in a scope",
            settings.min_requests
        ));
    }
    (proposals, notes)
}

/// The response cache the strategies assume, as the analytics simulation takes it.
pub fn response_cache_config(settings: &StrategySettings) -> ResponseCacheConfig {
    ResponseCacheConfig {
        ttl_ms: i64::try_from(settings.cache_ttl_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX),
        capacity: settings.cache_capacity,
    }
}

#[cfg(test)]
mod tests {
    use llmopt_core::Usage;

    use super::*;

    #[test]
    fn short_inputs_without_latencies_get_notes_and_no_proposals() {
        let mut record = RequestRecord::new("a", 1_740_787_200_000, "openai", "gpt-4o-mini");
        record.usage = Some(Usage { input_tokens: 10, output_tokens: 1, ..Usage::default() });
        let settings = StrategySettings::default();
        let (proposals, notes) = propose(&[record], &PriceCatalog::builtin(), &settings);
        assert!(proposals.is_empty());
        assert_eq!(
            notes,
            [
                "the records span less than a second: savings per day use a 1-second span"
                    .to_owned(),
                "timeouts and hedging: the input carries no latencies (traces do not)".to_owned(),
                format!(
                    "no proposals: no strategy found a saving with at least {} requests in a scope",
                    settings.min_requests
                ),
            ]
        );
    }

    #[test]
    fn the_response_cache_follows_the_settings() {
        let settings = StrategySettings {
            cache_ttl_seconds: 90,
            cache_capacity: 7,
            ..StrategySettings::default()
        };
        assert_eq!(
            response_cache_config(&settings),
            ResponseCacheConfig { ttl_ms: 90_000, capacity: 7 }
        );
        let forever = StrategySettings { cache_ttl_seconds: u64::MAX, ..settings };
        assert_eq!(response_cache_config(&forever).ttl_ms, i64::MAX);
    }
}
