//! Each strategy against records whose right answer is known by construction.

use llmopt_core::{Money, PriceCatalog, RequestRecord, Usage};
use llmopt_experiments::{Degradation, Metric};
use llmopt_optimizer::{
    Action, AnalysisInput, Strategy, StrategyKind, StrategySettings,
    strategies::{
        BatchPricingStrategy, MaxTokensCapStrategy, ModelRoutingStrategy, PromptCacheStrategy,
        ResponseCacheStrategy, TimeoutHedgeStrategy,
    },
};

use crate::support::{T0, record, same_request, with_feedback};

fn input<'a>(
    records: &'a [RequestRecord],
    catalog: &'a PriceCatalog,
    settings: &'a StrategySettings,
) -> AnalysisInput<'a> {
    AnalysisInput { records, catalog, span_days: 1.0, settings }
}

#[test]
fn response_cache_counts_exact_repeats_within_the_ttl() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings { min_requests: 100, ..StrategySettings::default() };
    // 300 requests a minute apart; every third repeats the one just before it.
    let records: Vec<RequestRecord> = (0..300)
        .map(|i| {
            let base = record(i, T0 + i as i64 * 60_000, "gpt-4o", 1_000, 100);
            if i % 3 == 2 {
                same_request(base, &format!("k{}", i - 1))
            } else {
                same_request(base, &format!("k{i}"))
            }
        })
        .collect();
    let proposals = ResponseCacheStrategy.propose(&input(&records, &catalog, &settings));
    assert_eq!(proposals.len(), 1);
    let proposal = &proposals[0];
    assert_eq!(proposal.strategy, StrategyKind::ResponseCache);
    // 100 repeats × (1000 × $2.50/M + 100 × $10/M) = 100 × $0.0035.
    assert!((proposal.saving.usd_per_day - 0.35).abs() < 1e-9, "{:?}", proposal.saving);
    let (low, high) = proposal.saving.interval().unwrap();
    assert!(low < 0.35 && high > 0.35);
    assert!(matches!(proposal.action, Some(Action::ResponseCache { enabled: true, .. })));
    assert_eq!(proposal.experiment.as_ref().unwrap().treatment.response_cache, Some(true));
    // Repeats of sampled requests (temperature above 0) are not answered by the cache the
    // change turns on: with every request whose index is 6, 7 or 8 modulo 9 sampled, the
    // repeats left are those at 2 and 5 modulo 9, 34 + 33 = 67 of the 100.
    let partly_sampled: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, mut r)| {
            r.sampled = i % 9 >= 6;
            r
        })
        .collect();
    let proposals = ResponseCacheStrategy.propose(&input(&partly_sampled, &catalog, &settings));
    assert!((proposals[0].saving.usd_per_day - 67.0 * 0.0035).abs() < 1e-9);
    // No repeats, no proposal.
    let unique: Vec<RequestRecord> =
        (0..300).map(|i| record(i, T0 + i as i64 * 60_000, "gpt-4o", 1_000, 100)).collect();
    assert!(ResponseCacheStrategy.propose(&input(&unique, &catalog, &settings)).is_empty());
}

#[test]
fn routing_needs_quality_feedback_and_proposes_per_workload() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings {
        min_requests: 50,
        workload_tag: Some("task".into()),
        ..StrategySettings::default()
    };
    let mut records = Vec::new();
    for i in 0..200u64 {
        let mut r = record(i, T0 + i as i64 * 1_000, "gpt-4o", 2_000, 300);
        r.tags.insert("task".into(), if i % 2 == 0 { "math" } else { "chat" }.into());
        records.push(with_feedback(r, i % 5 != 0));
    }
    let proposals = ModelRoutingStrategy.propose(&input(&records, &catalog, &settings));
    assert_eq!(proposals.len(), 2, "{proposals:#?}");
    for proposal in &proposals {
        let plan = proposal.experiment.as_ref().expect("routing is always an experiment");
        assert_eq!(plan.treatment.model.as_deref(), Some("gpt-4o-mini"));
        let quality =
            plan.guardrails.iter().find(|g| matches!(g.metric, Metric::Quality { .. })).unwrap();
        // Futility margin: each workload has half the traffic and the model's quality, so the
        // whole budget pays for a relative drop of at most 0.05 / 0.5 = 0.1 of it (below the
        // exploration margin of 0.25).
        let Degradation::Relative(margin) = quality.max_degradation else {
            panic!("{:?}", quality.max_degradation)
        };
        assert!((margin - settings.max_quality_drop / 0.5).abs() < 1e-12, "{margin}");
        assert!(margin < settings.routing_exploration_margin);
        // Per request: 2000 × ($2.50 − $0.15)/M + 300 × ($10 − $0.60)/M = $0.00752; 100 per workload.
        assert!((proposal.saving.usd_per_day - 0.752).abs() < 1e-9, "{:?}", proposal.saving);
        assert!(proposal.scope.tag.is_some());
    }
    let without_feedback: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.feedback.clear();
            r
        })
        .collect();
    assert!(
        ModelRoutingStrategy.propose(&input(&without_feedback, &catalog, &settings)).is_empty()
    );
}

#[test]
fn routing_crosses_providers_only_when_the_configuration_allows_it() {
    let catalog = PriceCatalog::builtin();
    let cross = StrategySettings {
        min_requests: 50,
        routing_pairs: vec![("gpt-4o".into(), "claude-haiku-4-5".into())],
        ..StrategySettings::default()
    };
    let records: Vec<RequestRecord> = (0..100u64)
        .map(|i| with_feedback(record(i, T0 + i as i64 * 1_000, "gpt-4o", 2_000, 300), i % 5 != 0))
        .collect();
    assert!(ModelRoutingStrategy.propose(&input(&records, &catalog, &cross)).is_empty());
    let allowed = StrategySettings { cross_provider_routing: true, ..cross };
    let proposals = ModelRoutingStrategy.propose(&input(&records, &catalog, &allowed));
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    let plan = proposals[0].experiment.as_ref().unwrap();
    assert_eq!(plan.treatment.model.as_deref(), Some("claude-haiku-4-5"));
    // Per request: 2000 × ($2.50 − $1)/M + 300 × ($10 − $5)/M = $0.0045, 100 requests.
    assert!((proposals[0].saving.usd_per_day - 0.45).abs() < 1e-9, "{:?}", proposals[0].saving);
}

#[test]
fn max_tokens_cap_truncates_at_most_the_allowed_share() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings {
        min_requests: 100,
        max_truncated_share: 0.01,
        ..StrategySettings::default()
    };
    // 1,000 answers: 990 of 100..=595 tokens, 10 runaways of 4,000.
    let records: Vec<RequestRecord> = (0..1_000u64)
        .map(|i| {
            let output = if i < 990 { 100 + (i % 100) * 5 } else { 4_000 };
            let mut r = record(i, T0 + i as i64, "gpt-4o-mini", 500, output);
            r.max_tokens = Some(8_192);
            r
        })
        .collect();
    // A cap changes answers: without a quality signal it is not proposed for testing at all.
    assert!(MaxTokensCapStrategy.propose(&input(&records, &catalog, &settings)).is_empty());
    let records: Vec<RequestRecord> = records.into_iter().map(|r| with_feedback(r, true)).collect();
    let proposals = MaxTokensCapStrategy.propose(&input(&records, &catalog, &settings));
    assert_eq!(proposals.len(), 1);
    let guardrails = &proposals[0].experiment.as_ref().unwrap().guardrails;
    let truncated = guardrails
        .iter()
        .find(|g| g.metric == Metric::TruncatedShare)
        .expect("the truncated share is a guardrail");
    assert_eq!(truncated.max_degradation, Degradation::Absolute(0.02));
    assert!(guardrails.iter().any(|g| matches!(g.metric, Metric::Quality { .. })));
    let Some(Action::MaxTokensCap { max_tokens }) = proposals[0].action else {
        panic!("cap expected")
    };
    assert_eq!(max_tokens, 595, "the largest normal answer fits; the ten runaways are cut");
    // 10 × (4000 − 595) tokens × $0.60/M.
    let expected = 10.0 * 3_405.0 * 0.60 / 1e6;
    assert!((proposals[0].saving.usd_per_day - expected).abs() < 1e-12);
    // Clients that already ask for little: nothing to propose.
    let capped: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.max_tokens = Some(256);
            r
        })
        .collect();
    assert!(MaxTokensCapStrategy.propose(&input(&capped, &catalog, &settings)).is_empty());
}

#[test]
fn hedging_is_proposed_for_a_heavy_tail_only() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings { min_requests: 100, ..StrategySettings::default() };
    let heavy: Vec<RequestRecord> = (0..1_000u64)
        .map(|i| {
            let mut r = record(i, T0 + i as i64, "gpt-4o-mini", 500, 50);
            // 97 % answer in 300–400 ms, 3 % hang for 10 s.
            r.latency_us = if i % 100 < 97 { 300_000 + (i % 100) * 1_000 } else { 10_000_000 };
            r
        })
        .collect();
    let proposals = TimeoutHedgeStrategy.propose(&input(&heavy, &catalog, &settings));
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    assert!(matches!(proposals[0].action, Some(Action::Hedge { .. })));
    assert!(proposals[0].saving.usd_per_day < 0.0, "hedging costs money");
    let light: Vec<RequestRecord> = (0..1_000u64)
        .map(|i| {
            let mut r = record(i, T0 + i as i64, "gpt-4o-mini", 500, 50);
            r.latency_us = 300_000 + (i % 100) * 1_000;
            r
        })
        .collect();
    assert!(TimeoutHedgeStrategy.propose(&input(&light, &catalog, &settings)).is_empty());
}

#[test]
fn batch_pricing_halves_non_interactive_traffic() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings { min_requests: 10, ..StrategySettings::default() };
    let records: Vec<RequestRecord> = (0..100u64)
        .map(|i| {
            let mut r = record(i, T0 + i as i64, "gpt-4.1", 10_000, 1_000);
            if i < 40 {
                r.tags.insert("interactive".into(), "false".into());
            }
            r
        })
        .collect();
    let proposals = BatchPricingStrategy.propose(&input(&records, &catalog, &settings));
    assert_eq!(proposals.len(), 1);
    // 40 × (10 000 × $2/M + 1 000 × $8/M) / 2 = 40 × $0.014.
    assert!((proposals[0].saving.usd_per_day - 0.56).abs() < 1e-9);
    assert!(proposals[0].action.is_none(), "moving to a batch API is advice");
}

#[test]
fn prompt_cache_advice_follows_the_provider() {
    let catalog = PriceCatalog::builtin();
    let settings = StrategySettings { min_requests: 10, ..StrategySettings::default() };
    // 50 requests sharing a 4-block (2,048-token) prefix, each with one block of its own.
    let records: Vec<RequestRecord> = (0..50u64)
        .map(|i| {
            let mut r = record(i, T0 + i as i64 * 1_000, "claude-sonnet-4-5", 2_560, 200);
            r.provider = "anthropic".into();
            r.fingerprints.prefix_blocks = vec![1, 2, 3, 4, 1_000 + i];
            r
        })
        .collect();
    // Anthropic's cache is opt-in: an experiment that inserts breakpoints, 5-minute lifetime
    // for reuses a second apart.
    let proposals = PromptCacheStrategy.propose(&input(&records, &catalog, &settings));
    assert_eq!(proposals.len(), 1);
    let ttl5 = llmopt_experiments::PromptCacheTtl::FiveMinutes;
    assert_eq!(proposals[0].action, Some(Action::PromptCache { ttl: ttl5 }));
    let plan = proposals[0].experiment.as_ref().expect("tested as an experiment");
    assert_eq!(plan.treatment.prompt_cache, Some(ttl5));
    assert_eq!(plan.primary, Metric::CostUsd);
    assert!(proposals[0].saving.usd_per_day > 0.0);
    // Reuses ten minutes apart: only the one-hour lifetime keeps them, and pays for its writes.
    let sparse: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, mut r)| {
            r.ts_ms = T0 + i as i64 * 600_000;
            r
        })
        .collect();
    let proposals = PromptCacheStrategy.propose(&input(&sparse, &catalog, &settings));
    let ttl1h = llmopt_experiments::PromptCacheTtl::OneHour;
    assert_eq!(proposals[0].action, Some(Action::PromptCache { ttl: ttl1h }), "{proposals:#?}");
    assert_eq!(proposals[0].evidence["reuse_gap_seconds"]["p50"], 600.0);
    // OpenAI caches on its own: advice on prompt order, never an experiment.
    let openai: Vec<RequestRecord> = records
        .iter()
        .map(|r| {
            let mut o = record(0, r.ts_ms, "gpt-4.1", 2_560, 200);
            o.id = r.id.clone();
            o.fingerprints.prefix_blocks = r.fingerprints.prefix_blocks.clone();
            o
        })
        .collect();
    let advice = PromptCacheStrategy.propose(&input(&openai, &catalog, &settings));
    assert_eq!(advice.len(), 1);
    assert!(advice[0].action.is_none() && advice[0].experiment.is_none(), "advice only");
    assert!(advice[0].summary.contains("automatic"), "{}", advice[0].summary);
    // Already cached by the provider: nothing left to propose.
    let cached: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.usage = Some(Usage {
                input_tokens: 2_560,
                cache_read_tokens: 2_048,
                output_tokens: 200,
                ..Usage::default()
            });
            r.cost = Some(Money::ZERO);
            r
        })
        .collect();
    assert!(PromptCacheStrategy.propose(&input(&cached, &catalog, &settings)).is_empty());
}
