//! The six strategies. Each groups the window's records by the scope it can act on, runs one
//! analysis from `llmopt-analytics`, and turns what it finds into proposals with the numbers
//! behind them. A scope with fewer than `min_requests` records gets no proposal: too little
//! evidence to estimate a saving.

use std::collections::BTreeMap;

use llmopt_analytics::{
    cache::{
        PrefixCachePolicy, ResponseCacheConfig, duplicate_analysis, prefix_cache_savings,
        prefix_reuse,
    },
    tails::{hedging_impact, latency_tail, output_cap_impact, smallest_safe_cap},
};
use llmopt_core::{CacheOutcome, Moments, Money, RequestRecord, WORKLOAD_TAG};
use llmopt_experiments::{Degradation, Guardrail, Metric, PolicyChange};
use serde_json::json;

use crate::{
    policy::{Action, Scope},
    strategy::{AnalysisInput, Estimate, ExperimentPlan, Proposal, Risk, Strategy, StrategyKind},
};

/// Every strategy with its default behaviour, in a fixed order.
pub fn all() -> Vec<std::sync::Arc<dyn Strategy>> {
    vec![
        std::sync::Arc::new(ResponseCacheStrategy),
        std::sync::Arc::new(PromptCacheStrategy),
        std::sync::Arc::new(ModelRoutingStrategy),
        std::sync::Arc::new(MaxTokensCapStrategy),
        std::sync::Arc::new(TimeoutHedgeStrategy),
        std::sync::Arc::new(BatchPricingStrategy),
    ]
}

/// Records grouped by a key, owned (the analytics functions take slices of records).
fn group_by(
    records: &[RequestRecord],
    key: impl Fn(&RequestRecord) -> Option<String>,
) -> BTreeMap<String, Vec<RequestRecord>> {
    let mut groups: BTreeMap<String, Vec<RequestRecord>> = BTreeMap::new();
    for record in records {
        if let Some(group) = key(record) {
            groups.entry(group).or_default().push(record.clone());
        }
    }
    groups
}

/// Guardrails every answer-changing experiment carries: errors, and quality when the
/// application sends quality feedback for this traffic.
fn standard_guardrails(group: &[RequestRecord], input: &AnalysisInput<'_>) -> Vec<Guardrail> {
    let mut guardrails =
        vec![Guardrail { metric: Metric::ErrorRate, max_degradation: Degradation::Absolute(0.01) }];
    let has_quality =
        group.iter().any(|r| r.feedback.iter().any(|f| f.metric == input.settings.quality_metric));
    if has_quality {
        guardrails.push(Guardrail {
            metric: Metric::Quality { name: input.settings.quality_metric.clone() },
            max_degradation: Degradation::Relative(input.settings.max_quality_drop),
        });
    }
    guardrails
}

/// A response cache answers an exact repeat of a deterministic request with the answer the same
/// model gave it: it cannot change answer quality the way a model change can. Its guardrails
/// watch errors, and quality only at the wide exploration margin (a cache serving broken answers
/// shows there), not at the 5 % a quality-changing proposal must prove: proving "no change" to
/// within 5 % takes many thousands of samples per arm for a change whose effect on cost is plain
/// after a few hundred.
fn cache_guardrails(group: &[RequestRecord], input: &AnalysisInput<'_>) -> Vec<Guardrail> {
    let mut guardrails = standard_guardrails(group, input);
    for guardrail in &mut guardrails {
        if matches!(guardrail.metric, Metric::Quality { .. }) {
            guardrail.max_degradation =
                Degradation::Relative(input.settings.routing_exploration_margin);
        }
    }
    guardrails
}

/// Records served by the model the client asked for, by that model. Scopes are what clients ask
/// for, and only traffic served as asked shows that model's output lengths and latencies.
fn served_as_asked(records: &[RequestRecord]) -> BTreeMap<String, Vec<RequestRecord>> {
    group_by(records, |r| {
        (r.requested_model == r.served_model).then(|| r.requested_model.0.clone())
    })
}

fn per_day(money: Money, input: &AnalysisInput<'_>) -> f64 {
    money.as_usd_f64() / input.span_days.max(1e-9)
}

fn model_scope(model: &str) -> Scope {
    Scope { model: Some(model.to_owned()), ..Scope::default() }
}

/// Exact repeats of a request answered from a response cache instead of the provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseCacheStrategy;

impl Strategy for ResponseCacheStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::ResponseCache
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        let settings = input.settings;
        let config = ResponseCacheConfig {
            ttl_ms: settings.cache_ttl_seconds as i64 * 1_000,
            capacity: settings.cache_capacity,
        };
        let mut proposals = Vec::new();
        for (model, group) in group_by(input.records, |r| Some(r.requested_model.0.clone())) {
            // A scope whose cache is already consulted needs no proposal.
            if group.len() < settings.min_requests
                || group.iter().any(|r| r.cache != CacheOutcome::Bypass)
            {
                continue;
            }
            // Only deterministic requests can be answered from the cache the change turns on
            // (it never caches sampled ones): repeats of sampled requests are not counted.
            let cacheable: Vec<RequestRecord> =
                group.iter().filter(|r| !r.sampled).cloned().collect();
            let Ok(analysis) = duplicate_analysis(&cacheable, config) else { continue };
            if analysis.hits == 0 || analysis.saved.is_zero() {
                continue;
            }
            let saving = per_day(analysis.saved, input);
            // Hits are binomial in the fingerprinted requests: scale the saving by the relative
            // standard error of the hit count.
            let n = analysis.fingerprinted.max(1) as f64;
            let share = analysis.hits as f64 / n;
            let relative_se = ((1.0 - share) / (n * share)).sqrt();
            proposals.push(Proposal {
                id: format!("response_cache:model={model}"),
                strategy: self.kind(),
                summary: format!(
                    "Cache responses of {model} for {} s: {:.1} % of its deterministic requests (temperature 0) repeat exactly",
                    settings.cache_ttl_seconds,
                    share * 100.0
                ),
                scope: model_scope(&model),
                action: Some(Action::ResponseCache {
                    enabled: true,
                    ttl_seconds: Some(settings.cache_ttl_seconds),
                    allow_sampling: false,
                }),
                saving: Estimate::normal(saving, saving * relative_se),
                risk: Risk::Low,
                experiment: Some(ExperimentPlan {
                    treatment: PolicyChange {
                        response_cache: Some(true),
                        ..PolicyChange::default()
                    },
                    primary: Metric::CostUsd,
                    guardrails: cache_guardrails(&group, input),
                }),
                evidence: json!(analysis),
            });
        }
        proposals
    }
}

/// Shared prompt prefixes a provider prompt cache would serve at its cache-read price.
///
/// The gateway fingerprints every prompt's prefix in blocks (`fingerprints.prefix_blocks`), so
/// reuse is measured on live traffic. For Anthropic models, whose cache is opt-in, the change is
/// an experiment: the gateway inserts `cache_control` breakpoints, with the 5-minute or 1-hour
/// lifetime whose simulated saving over the window is larger (a write costs 1.25× or 2× the
/// input price, a read 0.1×, so the lifetime follows how far apart the reuses are), and the
/// exact cost of both arms decides. OpenAI caches on its own: the strategy measures the share
/// its cache already serves against what the prefixes allow and advises on prompt order; that
/// proposal is advice, never tested.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromptCacheStrategy;

/// The gap between a prompt and the previous use of its first prefix block, for the records
/// whose first block was seen before: how far apart reuses are (ms, sorted).
fn reuse_gaps(records: &[RequestRecord]) -> Vec<i64> {
    let mut order: Vec<&RequestRecord> = records.iter().collect();
    order.sort_by_key(|r| r.ts_ms);
    let mut last: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
    let mut gaps = Vec::new();
    for record in order {
        let Some(&first) = record.fingerprints.prefix_blocks.first() else { continue };
        if let Some(previous) = last.insert(first, record.ts_ms) {
            gaps.push(record.ts_ms - previous);
        }
    }
    gaps.sort_unstable();
    gaps
}

impl Strategy for PromptCacheStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::PromptCache
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        use llmopt_experiments::PromptCacheTtl;
        let mut proposals = Vec::new();
        let groups = group_by(input.records, |r| {
            (!r.fingerprints.prefix_blocks.is_empty() && r.requested_model == r.served_model)
                .then(|| r.requested_model.0.clone())
        });
        for (model, group) in groups {
            if group.len() < input.settings.min_requests {
                continue;
            }
            let Ok(price) = input.catalog.resolve(&model) else { continue };
            let simulate = |ttl: PromptCacheTtl| {
                let policy = PrefixCachePolicy {
                    ttl_ms: Some(ttl.millis()),
                    ..PrefixCachePolicy::provider_default(
                        llmopt_core::fingerprint::PREFIX_BLOCK_TOKENS,
                    )
                };
                let reuse = prefix_reuse(&group, policy).ok()?;
                let saving =
                    prefix_cache_savings(&reuse, input.catalog, &[model.as_str()]).ok()?.pop()?;
                Some((ttl, reuse, saving))
            };
            let (Some(five), Some(hour)) =
                (simulate(PromptCacheTtl::FiveMinutes), simulate(PromptCacheTtl::OneHour))
            else {
                continue;
            };
            let simulated =
                json!({"5m": five.2.saving.as_usd_f64(), "1h": hour.2.saving.as_usd_f64()});
            let (ttl, reuse, saving) = if hour.2.saving > five.2.saving { hour } else { five };
            // What the provider cache already gives today (cache reads and writes in the records),
            // on the traffic served as the client sent it: calls marked by our own experiment
            // or adoption are not the client's doing.
            let usages = group
                .iter()
                .filter(|r| {
                    r.experiment.is_none() && !r.tags.contains_key(llmopt_core::APPLIED_TAG)
                })
                .filter_map(|r| r.usage);
            let (observed_read, observed_write) = usages.fold((0u64, 0u64), |(read, write), u| {
                (
                    read + u.cache_read_tokens,
                    write + u.cache_write_5m_tokens + u.cache_write_1h_tokens,
                )
            });
            let observed_share = observed_read as f64 / reuse.input_tokens.max(1) as f64;
            if saving.saving.as_usd_f64() <= 0.0 || observed_share >= reuse.cached_token_share * 0.9
            {
                continue;
            }
            let usd_per_day = saving.saving.as_usd_f64()
                * (1.0 - observed_share / reuse.cached_token_share.max(1e-12))
                / input.span_days.max(1e-9);
            let gaps = reuse_gaps(&group);
            let gap_quantile = |q: f64| {
                gaps.get(((gaps.len() as f64 - 1.0) * q).round() as usize)
                    .map(|g| *g as f64 / 1_000.0)
            };
            let evidence = json!({
                "reuse": {
                    "requests": reuse.requests, "blocks": reuse.blocks,
                    "blocks_reused": reuse.blocks_reused, "cached_token_share": reuse.cached_token_share,
                    "input_tokens": reuse.input_tokens, "cached_tokens": reuse.cached_tokens,
                    "written_tokens": reuse.written_tokens},
                "reuse_gap_seconds": {"p50": gap_quantile(0.5), "p90": gap_quantile(0.9), "reuses": gaps.len()},
                "simulated_saving_usd": simulated,
                "observed_cached_share": observed_share,
                "saving": saving,
            });
            // Anthropic's cache is opt-in: an experiment with the gateway inserting breakpoints,
            // unless the client already marks its own (writes or reads in the records).
            if price.provider == "anthropic" && observed_read == 0 && observed_write == 0 {
                proposals.push(Proposal {
                    id: format!("prompt_cache:model={model}"),
                    strategy: self.kind(),
                    summary: format!(
                        "Mark the shared prefix of {model} for the prompt cache ({} lifetime): {:.0} % of \
                         input tokens repeat (reuses {} s apart at the median); reads cost 10 % of input, \
                         writes {} %",
                        ttl.as_str(),
                        reuse.cached_token_share * 100.0,
                        gap_quantile(0.5).map_or_else(|| "n/a".to_owned(), |g| format!("{g:.0}")),
                        if ttl == PromptCacheTtl::OneHour { 200 } else { 125 },
                    ),
                    scope: model_scope(&model),
                    action: Some(Action::PromptCache { ttl }),
                    // A simulation over the window's prompts: exact on them; how well the window
                    // stands for the future is what the experiment measures.
                    saving: Estimate::point(usd_per_day),
                    risk: Risk::Low,
                    experiment: Some(ExperimentPlan {
                        treatment: PolicyChange { prompt_cache: Some(ttl), ..PolicyChange::default() },
                        primary: Metric::CostUsd,
                        guardrails: cache_guardrails(&group, input),
                    }),
                    evidence,
                });
                continue;
            }
            let advice = match price.provider.as_str() {
                "anthropic" => format!(
                    "The client marks its own `cache_control` breakpoints: {:.0} % of input tokens are \
                     read from cache, {:.0} % could be. Move the breakpoints to the end of the shared \
                     prefix (after tools and system, then after the conversation so far).",
                    observed_share * 100.0,
                    reuse.cached_token_share * 100.0
                ),
                "openai" => format!(
                    "Caching is automatic for prompts of 1,024 tokens or more: keep the shared prefix \
                     byte-identical at the start (static system prompt and tools first, variable content \
                     last, no timestamps or ids in the head). {:.0} % of input tokens could be read from \
                     cache; today {:.0} % are.",
                    reuse.cached_token_share * 100.0,
                    observed_share * 100.0
                ),
                _ => format!(
                    "Use the provider's context caching for the shared prefix: {:.0} % of input tokens repeat.",
                    reuse.cached_token_share * 100.0
                ),
            };
            proposals.push(Proposal {
                id: format!("prompt_cache:model={model}"),
                strategy: self.kind(),
                summary: advice,
                scope: model_scope(&model),
                action: None,
                saving: Estimate::point(usd_per_day),
                risk: Risk::Low,
                experiment: None,
                evidence,
            });
        }
        proposals
    }
}

/// A cheaper model for a workload, only ever through an experiment with a quality guardrail.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelRoutingStrategy;

impl Strategy for ModelRoutingStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::ModelRouting
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        let settings = input.settings;
        let catalog = input.catalog;
        let canonical = |model: &str| catalog.resolve(model).map(|m| m.id.clone()).ok();
        // The workload: the configured tag when the client sends it (it takes precedence),
        // else the workload the gateway discovered from the content, else the whole model.
        let workload_of = |record: &RequestRecord| {
            let tagged = settings
                .workload_tag
                .as_ref()
                .and_then(|tag| record.tags.get(tag).map(|value| format!("{tag}={value}")));
            let discovered =
                || record.tags.get(WORKLOAD_TAG).map(|id| format!("{WORKLOAD_TAG}={id}"));
            Some(tagged.or_else(discovered).unwrap_or_default())
        };
        let groups = group_by(input.records, |r| {
            // Only traffic the client sent to the expensive model, served by it (not already routed).
            (r.requested_model == r.served_model && r.status.is_ok())
                .then(|| workload_of(r).map(|w| format!("{}\u{1f}{w}", r.requested_model)))
                .flatten()
        });
        let mut proposals = Vec::new();
        for (key, group) in groups {
            let Some((model, workload)) = key.split_once('\u{1f}') else { continue };
            if group.len() < settings.min_requests {
                continue;
            }
            let Some(strong) = canonical(model) else { continue };
            let Some(weak) = settings
                .routing_pairs
                .iter()
                .find(|(from, _)| canonical(from).as_deref() == Some(strong.as_str()))
                .map(|(_, to)| to.clone())
            else {
                continue;
            };
            let Ok(weak_price) = catalog.resolve(&weak) else { continue };
            // Across providers the gateway translates the protocol, which the configuration
            // must allow; the saving estimate prices the strong model's token counts at the
            // weak model's prices (tokenizers differ: the experiment measures the real cost).
            let crosses = catalog.resolve(&strong).is_ok_and(|p| p.provider != weak_price.provider);
            if crosses && !settings.cross_provider_routing {
                continue;
            }
            let mut per_request = Moments::new();
            for record in &group {
                let (Some(usage), Some(cost)) = (record.usage, record.cost) else { continue };
                let cheaper = weak_price.cost(&usage, false).total;
                per_request.push((cost - cheaper).as_usd_f64());
            }
            if per_request.count < settings.min_requests as u64 || per_request.mean <= 0.0 {
                continue;
            }
            let days = input.span_days.max(1e-9);
            let usd_per_day = per_request.sum() / days;
            let standard_error = per_request.std_dev() * (per_request.count as f64).sqrt() / days;
            let quality: Moments =
                group.iter().filter_map(|r| r.feedback_value(&settings.quality_metric)).collect();
            let (tag_scope, workload_scope, label) = match workload.split_once('=') {
                Some((WORKLOAD_TAG, id)) => {
                    (None, Some(id.to_owned()), format!(" for discovered workload {id}"))
                }
                Some((tag, value)) => {
                    (Some((tag.to_owned(), value.to_owned())), None, format!(" for {workload}"))
                }
                None => (None, None, String::new()),
            };
            let mut guardrails = standard_guardrails(&group, input);
            if !guardrails.iter().any(|g| matches!(g.metric, Metric::Quality { .. })) {
                // Routing changes answers: without quality feedback it is not safe to test.
                continue;
            }
            // The per-experiment guardrail stops collapses, and futile experiments: a workload
            // whose true drop exceeds what the whole budget can pay for at its traffic share
            // can never be adopted, so its experiment stops as soon as the anytime-valid
            // interval shows that (with probability ≥ 1 − α it never stops one that could have
            // been adopted), instead of serving it the cheaper model until the wide exploration
            // margin decides. The cycle holds the routed traffic as a whole to
            // `max_quality_drop` with the experiments' upper bounds.
            let margin = settings.routing_exploration_margin.min(affordable_drop(
                input.records,
                model,
                |r| workload_of(r).as_deref() == Some(workload),
                quality.mean,
                settings,
            ));
            for guardrail in &mut guardrails {
                if matches!(guardrail.metric, Metric::Quality { .. }) {
                    guardrail.max_degradation = Degradation::Relative(margin);
                }
            }
            proposals.push(Proposal {
                id: format!("model_routing:model={model}{}", if workload.is_empty() { String::new() } else { format!(":{workload}") }),
                strategy: self.kind(),
                summary: format!("Route {model}{label} to {weak} if quality holds"),
                scope: Scope {
                    model: Some(model.to_owned()),
                    tag: tag_scope,
                    workload: workload_scope,
                    ..Scope::default()
                },
                action: Some(Action::RouteModel { model: weak.clone(), provider: None }),
                saving: Estimate::normal(usd_per_day, standard_error),
                risk: Risk::High,
                experiment: Some(ExperimentPlan {
                    treatment: PolicyChange { model: Some(weak.clone()), ..PolicyChange::default() },
                    primary: Metric::CostUsd,
                    guardrails,
                }),
                evidence: json!({
                    "requests": group.len(),
                    "strong": strong, "weak": weak,
                    "mean_saving_per_request_usd": per_request.mean,
                    "quality_feedback": {"metric": settings.quality_metric, "count": quality.count, "mean": quality.mean},
                }),
            });
        }
        proposals
    }
}

/// The largest relative quality drop of a workload (relative to its own quality
/// `workload_quality`) that the whole quality budget could pay for at its share of the model's
/// traffic in the window: `max_quality_drop · Q / (share · q)`, with `Q` the model's mean
/// quality. Infinite when it cannot be measured.
fn affordable_drop(
    records: &[RequestRecord],
    model: &str,
    in_workload: impl Fn(&RequestRecord) -> bool,
    workload_quality: f64,
    settings: &crate::strategy::StrategySettings,
) -> f64 {
    let (mut of_model, mut of_workload) = (0usize, 0usize);
    let mut model_quality = Moments::new();
    for record in records.iter().filter(|r| r.requested_model.0 == model) {
        of_model += 1;
        of_workload += usize::from(in_workload(record));
        if let Some(value) = record.feedback_value(&settings.quality_metric) {
            model_quality.push(value);
        }
    }
    let share = of_workload as f64 / of_model.max(1) as f64;
    if share > 0.0 && workload_quality > 0.0 && model_quality.count > 0 {
        settings.max_quality_drop * model_quality.mean / (share * workload_quality)
    } else {
        f64::INFINITY
    }
}

/// A `max_tokens` cap from the output-length distribution, truncating at most a bounded share.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxTokensCapStrategy;

impl Strategy for MaxTokensCapStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::MaxTokensCap
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        let settings = input.settings;
        let mut proposals = Vec::new();
        let groups = served_as_asked(input.records);
        for (model, group) in groups {
            let outputs: Vec<u64> = group
                .iter()
                .filter(|r| r.status.is_ok())
                .filter_map(|r| r.usage.map(|u| u.output_tokens))
                .collect();
            if outputs.len() < settings.min_requests {
                continue;
            }
            let Ok(cap) = smallest_safe_cap(&outputs, settings.max_truncated_share) else {
                continue;
            };
            let cap = cap.max(16);
            // Only a cap below what clients already ask for changes anything.
            let mut asked: Vec<u32> = group.iter().filter_map(|r| r.max_tokens).collect();
            asked.sort_unstable();
            let typical_asked = asked.get(asked.len() / 2).copied();
            if typical_asked.is_some_and(|asked| u64::from(asked) <= cap) {
                continue;
            }
            let Ok(impact) = output_cap_impact(&outputs, &[cap]) else { continue };
            let Some(impact) = impact.first() else { continue };
            let Ok(price) = input.catalog.resolve(&model) else { continue };
            let saved = price.base.output * impact.tokens_saved;
            if saved.is_zero() {
                continue;
            }
            let usd_per_day = per_day(saved, input);
            let Ok(cap_u32) = u32::try_from(cap) else { continue };
            // A cap changes answers: never tested (so never adopted) without a quality signal,
            // and the share of truncated answers is a guardrail of its own. The cap was chosen
            // to truncate at most `max_truncated_share` of the window's answers; the guardrail
            // allows twice that before the experiment stops (a margin equal to the expected
            // increase could never be shown to hold).
            let mut guardrails = standard_guardrails(&group, input);
            if !guardrails.iter().any(|g| matches!(g.metric, Metric::Quality { .. })) {
                continue;
            }
            guardrails.push(Guardrail {
                metric: Metric::TruncatedShare,
                max_degradation: Degradation::Absolute(2.0 * settings.max_truncated_share),
            });
            proposals.push(Proposal {
                id: format!("max_tokens_cap:model={model}"),
                strategy: self.kind(),
                summary: format!(
                    "Cap max_tokens of {model} at {cap}: truncates {:.2} % of answers, removes {:.1} % of output tokens",
                    impact.truncated_share * 100.0,
                    impact.tokens_saved_share * 100.0
                ),
                scope: model_scope(&model),
                action: Some(Action::MaxTokensCap { max_tokens: cap_u32 }),
                // The tail that is cut is the noisiest part: half to double the point estimate.
                saving: Estimate::point(usd_per_day),
                risk: Risk::Medium,
                experiment: Some(ExperimentPlan {
                    treatment: PolicyChange { max_tokens_cap: Some(cap_u32), ..PolicyChange::default() },
                    primary: Metric::CostUsd,
                    guardrails,
                }),
                evidence: json!({"cap": cap, "impact": impact, "responses": outputs.len(), "typical_requested_max_tokens": typical_asked}),
            });
        }
        proposals
    }
}

/// A timeout against hung calls and a hedge against the latency tail.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutHedgeStrategy;

impl Strategy for TimeoutHedgeStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::TimeoutHedge
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        let settings = input.settings;
        let mut proposals = Vec::new();
        let groups = served_as_asked(input.records);
        for (model, group) in groups {
            let latencies: Vec<f64> = group
                .iter()
                .filter(|r| r.status.is_ok() && r.cache != CacheOutcome::Hit)
                .map(RequestRecord::latency_ms)
                .collect();
            if latencies.len() < settings.min_requests {
                continue;
            }
            let Ok(tail) = latency_tail(&latencies, &[]) else { continue };
            // Records without measured latency (traces) have nothing to hedge.
            if tail.p95 <= 0.0 {
                continue;
            }
            let delay = tail.p95;
            let Ok(hedge) = hedging_impact(&latencies, delay) else { continue };
            if hedge.extra_load > settings.max_hedge_load || hedge.p99 > tail.p99 * 0.8 {
                continue;
            }
            // Hedging costs money: the second attempts are paid for.
            let cost: Money = group.iter().filter_map(|r| r.cost).sum();
            let extra = -per_day(cost, input) * hedge.extra_load;
            let after_ms = delay.ceil() as u64;
            let timeout_ms = (tail.p999 * 2.0).ceil() as u64;
            proposals.push(Proposal {
                id: format!("timeout_hedge:model={model}"),
                strategy: self.kind(),
                summary: format!(
                    "Hedge {model} after {after_ms} ms: p99 {:.0} → {:.0} ms for {:.1} % extra calls",
                    tail.p99,
                    hedge.p99,
                    hedge.extra_load * 100.0
                ),
                scope: model_scope(&model),
                action: Some(Action::Hedge { after_ms }),
                saving: Estimate::point(extra),
                risk: Risk::Low,
                experiment: Some(ExperimentPlan {
                    treatment: PolicyChange { hedge_after_ms: Some(after_ms), timeout_ms: Some(timeout_ms), ..PolicyChange::default() },
                    primary: Metric::LatencyMs,
                    guardrails: vec![
                        Guardrail { metric: Metric::ErrorRate, max_degradation: Degradation::Absolute(0.005) },
                        Guardrail {
                            metric: Metric::CostUsd,
                            max_degradation: Degradation::Relative(hedge.extra_load + 0.02),
                        },
                    ],
                }),
                evidence: json!({"tail": tail, "hedge": hedge, "timeout_ms": timeout_ms}),
            });
        }
        proposals
    }
}

/// Non-interactive traffic moved to the provider's batch API at its discount.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchPricingStrategy;

impl Strategy for BatchPricingStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::BatchPricing
    }

    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal> {
        let (tag, value) = &input.settings.batch_tag;
        let groups = group_by(input.records, |r| {
            (r.tags.get(tag) == Some(value)).then(|| r.served_model.0.clone())
        });
        let mut proposals = Vec::new();
        for (model, group) in groups {
            if group.len() < input.settings.min_requests {
                continue;
            }
            let Ok(price) = input.catalog.resolve(&model) else { continue };
            if price.batch_discount_ppm == 0 {
                continue;
            }
            let mut saved = Money::ZERO;
            for record in &group {
                if let Some(usage) = record.usage {
                    saved += price.cost(&usage, false).total - price.cost(&usage, true).total;
                }
            }
            if saved.is_zero() {
                continue;
            }
            let usd_per_day = per_day(saved, input);
            proposals.push(Proposal {
                id: format!("batch_pricing:model={model}"),
                strategy: self.kind(),
                summary: format!(
                    "Send {tag}={value} traffic of {model} through the batch API ({} % off, answers within 24 h)",
                    price.batch_discount_ppm / 10_000
                ),
                scope: Scope {
                    model: Some(model.clone()),
                    tag: Some((tag.clone(), value.clone())),
                    ..Scope::default()
                },
                action: None,
                // Exact on the window; the future volume of such traffic is the uncertainty.
                saving: Estimate::point(usd_per_day),
                risk: Risk::Low,
                experiment: None,
                evidence: json!({"requests": group.len(), "saving_usd": saved.as_usd_f64(), "discount_ppm": price.batch_discount_ppm}),
            });
        }
        proposals
    }
}
