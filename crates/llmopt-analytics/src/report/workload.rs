//! The report's workload sections: clusters of calls by size, and what a response cache and a
//! provider's prompt-prefix cache would save.

use std::collections::BTreeMap;

use llmopt_core::{PriceCatalog, RequestRecord};
use serde::Serialize;

use super::{CLUSTER_SEED, MIN_CLUSTER_RECORDS};
use crate::{
    cache::{
        DuplicateAnalysis, PrefixCachePolicy, PrefixCacheSaving, PrefixReuse, ResponseCacheConfig,
        duplicate_analysis, prefix_cache_savings, prefix_reuse,
    },
    cluster::{ClusterProfile, FeatureSpec, cluster_records},
    traces::MOONCAKE_BLOCK_TOKENS,
};

/// Models the prompt-prefix savings are priced for besides the busiest served model: one
/// reference model of each large provider.
const PREFIX_REFERENCE_MODELS: [&str; 3] = ["gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"];

/// Workload clusters (labels left out: one per record is not a report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSection {
    pub k: usize,
    pub feature_names: Vec<String>,
    pub silhouette_by_k: Vec<(usize, f64)>,
    /// Records clustered (those with usage).
    pub records: usize,
    pub clusters: Vec<ClusterSummary>,
}

/// One cluster with its typical sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    pub profile: ClusterProfile,
    /// `exp(mean ln(1 + tokens)) − 1`: the geometric typical size the cluster is centred on.
    pub typical_input_tokens: f64,
    pub typical_output_tokens: f64,
}

/// Response-cache and prompt-prefix cache opportunities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSection {
    pub response_cache: ResponseCacheConfig,
    pub duplicates: DuplicateAnalysis,
    pub prefix: Option<PrefixSection>,
}

/// Prefix reuse under an unlimited cache and under provider rules, priced for a few models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixSection {
    pub unlimited: PrefixReuse,
    pub provider_rules: PrefixReuse,
    pub savings: Vec<PrefixCacheSaving>,
}

/// Clusters of the records with usage (k from 2 to 6 by silhouette), most expensive first.
pub(super) fn cluster_section(
    records: &[RequestRecord],
    notes: &mut Vec<String>,
) -> Option<ClusterSection> {
    let with_usage: Vec<RequestRecord> =
        records.iter().filter(|r| r.usage.is_some()).cloned().collect();
    if with_usage.len() < MIN_CLUSTER_RECORDS {
        notes.push(format!(
            "clusters: {} records with usage are too few to describe workloads (needs \
             {MIN_CLUSTER_RECORDS})",
            with_usage.len()
        ));
        return None;
    }
    let spec = FeatureSpec {
        tag_keys: Vec::new(),
        include_latency: with_usage.iter().any(|r| r.latency_us > 0),
    };
    match cluster_records(&with_usage, &spec, 2..=6, CLUSTER_SEED) {
        Ok(clusters) => {
            let column = |name: &str| clusters.feature_names.iter().position(|n| n == name);
            let (input_column, output_column) =
                (column("ln_input_tokens"), column("ln_output_tokens"));
            let typical = |profile: &ClusterProfile, column: Option<usize>| {
                column.map_or(0.0, |c| profile.mean_features[c].exp() - 1.0)
            };
            let mut summaries: Vec<ClusterSummary> = clusters
                .profiles
                .into_iter()
                .map(|profile| ClusterSummary {
                    typical_input_tokens: typical(&profile, input_column),
                    typical_output_tokens: typical(&profile, output_column),
                    profile,
                })
                .collect();
            summaries.sort_by_key(|summary| std::cmp::Reverse(summary.profile.cost));
            Some(ClusterSection {
                k: clusters.k,
                feature_names: clusters.feature_names,
                silhouette_by_k: clusters.silhouette_by_k,
                records: with_usage.len(),
                clusters: summaries,
            })
        }
        Err(e) => {
            notes.push(format!("clusters: {e}"));
            None
        }
    }
}

pub(super) fn cache_section(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    response_cache: ResponseCacheConfig,
    notes: &mut Vec<String>,
) -> CacheSection {
    let duplicates = duplicate_analysis(records, response_cache).unwrap_or_else(|e| {
        notes.push(format!("response cache: {e}"));
        DuplicateAnalysis::empty(records.len() as u64)
    });
    if duplicates.fingerprinted == 0 {
        notes.push("response cache: no record carries a request fingerprint".into());
    }
    let prefix = if records.iter().any(|r| !r.fingerprints.prefix_blocks.is_empty()) {
        prefix_section(records, catalog, notes)
    } else {
        notes.push("prompt-prefix cache: no record carries prefix blocks".into());
        None
    };
    CacheSection { response_cache, duplicates, prefix }
}

fn prefix_section(
    records: &[RequestRecord],
    catalog: &PriceCatalog,
    notes: &mut Vec<String>,
) -> Option<PrefixSection> {
    let unlimited = prefix_reuse(records, PrefixCachePolicy::unlimited(MOONCAKE_BLOCK_TOKENS));
    let provider_rules =
        prefix_reuse(records, PrefixCachePolicy::provider_default(MOONCAKE_BLOCK_TOKENS));
    let (unlimited, provider_rules) = match (unlimited, provider_rules) {
        (Ok(unlimited), Ok(provider_rules)) => (unlimited, provider_rules),
        (Err(e), _) | (_, Err(e)) => {
            notes.push(format!("prompt-prefix cache: {e}"));
            return None;
        }
    };
    let models = priced_models(records, catalog);
    let savings = prefix_cache_savings(&provider_rules, catalog, &models).unwrap_or_else(|e| {
        notes.push(format!("prompt-prefix cache pricing: {e}"));
        Vec::new()
    });
    Some(PrefixSection { unlimited, provider_rules, savings })
}

/// The busiest served model of the records with prefix blocks, then the reference models, each
/// price once (an alias of a model already listed is skipped) and only models the catalog has.
fn priced_models<'a>(records: &'a [RequestRecord], catalog: &PriceCatalog) -> Vec<&'a str> {
    let mut by_model: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.fingerprints.prefix_blocks.is_empty()) {
        *by_model.entry(record.served_model.0.as_str()).or_default() += 1;
    }
    let busiest = by_model.iter().max_by_key(|&(_, count)| *count).map(|(model, _)| *model);
    let mut models: Vec<&str> = Vec::new();
    for model in busiest.into_iter().chain(PREFIX_REFERENCE_MODELS) {
        if let Ok(price) = catalog.resolve(model)
            && !models.iter().any(|m| catalog.resolve(m).is_ok_and(|p| p.id == price.id))
        {
            models.push(model);
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use llmopt_core::{Fingerprint, Money, Usage};

    use super::*;

    fn record(index: usize, model: &str) -> RequestRecord {
        let mut record = RequestRecord::new(
            format!("r{index}"),
            1_740_787_200_000 + index as i64 * 1_000,
            "openai",
            model,
        );
        let short = index.is_multiple_of(2);
        record.usage = Some(Usage {
            input_tokens: if short { 100 } else { 8_000 },
            output_tokens: if short { 10 } else { 900 },
            ..Usage::default()
        });
        record
    }

    #[test]
    fn the_busiest_model_comes_first_and_duplicates_of_a_price_are_skipped() {
        let mut records: Vec<RequestRecord> =
            (0..5).map(|i| record(i, if i < 3 { "gpt-4.1" } else { "gpt-4o" })).collect();
        for record in &mut records {
            record.fingerprints.prefix_blocks = vec![1, 2];
        }
        let catalog = PriceCatalog::builtin();
        // gpt-4.1 is both the busiest and a reference model: listed once.
        assert_eq!(
            priced_models(&records, &catalog),
            ["gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"]
        );
    }

    #[test]
    fn sections_without_their_data_leave_notes() {
        let few: Vec<RequestRecord> = (0..10).map(|i| record(i, "gpt-4o-mini")).collect();
        let mut notes = Vec::new();
        assert_eq!(cluster_section(&few, &mut notes), None);
        let config = ResponseCacheConfig { ttl_ms: 60_000, capacity: 10 };
        let cache = cache_section(&few, &PriceCatalog::builtin(), config, &mut notes);
        assert_eq!(cache.duplicates.fingerprinted, 0);
        assert_eq!(cache.prefix, None);
        assert_eq!(
            notes,
            [
                "clusters: 10 records with usage are too few to describe workloads (needs 50)",
                "response cache: no record carries a request fingerprint",
                "prompt-prefix cache: no record carries prefix blocks",
            ]
        );
    }

    #[test]
    fn two_sizes_of_calls_make_two_clusters_most_expensive_first() {
        let records: Vec<RequestRecord> = (0..120)
            .map(|i| {
                let mut record = record(i, "gpt-4o-mini");
                record.cost = Some(Money::from_picos(if i.is_multiple_of(2) { 1 } else { 100 }));
                record.fingerprints.request = Some(Fingerprint(i as u128 % 7));
                record
            })
            .collect();
        let mut notes = Vec::new();
        let section = cluster_section(&records, &mut notes).expect("clusters");
        assert_eq!(section.k, 2, "{notes:?}");
        assert_eq!(section.records, 120);
        let large = &section.clusters[0];
        assert_eq!(large.profile.cost, Money::from_picos(6_000));
        // exp(ln(1 + 8000)) − 1 = 8000, up to rounding.
        assert!((large.typical_input_tokens - 8_000.0).abs() < 1e-6);
        assert!((section.clusters[1].typical_output_tokens - 10.0).abs() < 1e-9);
    }
}
