//! The `Strategy` seam and what strategies return.
//!
//! A strategy reads the records of a look-back window (with the price catalog and its settings)
//! and returns [`Proposal`]s: what to change, for which scope, the estimated saving per day with
//! an interval, the risk, and the experiment that would prove it. Strategies are pure: the cycle
//! decides what to do with their proposals.

use std::fmt;

use llmopt_core::{PriceCatalog, RequestRecord};
use llmopt_experiments::{Guardrail, Metric, PolicyChange};
use serde::{Deserialize, Serialize};

use crate::policy::{Action, Scope};

/// The strategies this version knows. A closed set, so configuration can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    ResponseCache,
    PromptCache,
    ModelRouting,
    MaxTokensCap,
    TimeoutHedge,
    BatchPricing,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::ResponseCache,
        StrategyKind::PromptCache,
        StrategyKind::ModelRouting,
        StrategyKind::MaxTokensCap,
        StrategyKind::TimeoutHedge,
        StrategyKind::BatchPricing,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            StrategyKind::ResponseCache => "response_cache",
            StrategyKind::PromptCache => "prompt_cache",
            StrategyKind::ModelRouting => "model_routing",
            StrategyKind::MaxTokensCap => "max_tokens_cap",
            StrategyKind::TimeoutHedge => "timeout_hedge",
            StrategyKind::BatchPricing => "batch_pricing",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much can go wrong if the change is adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// An estimate with a 95 % interval, in USD per day.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimate {
    pub usd_per_day: f64,
    /// A 95 % interval computed from the data (`None` for point estimates: an interval is
    /// printed only where the data gave one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

impl Estimate {
    /// Mean ± 1.96 standard errors (the normal approximation of a sum of per-request savings).
    pub fn normal(usd_per_day: f64, standard_error: f64) -> Estimate {
        let half = 1.96 * standard_error.max(0.0);
        Estimate { usd_per_day, low: Some(usd_per_day - half), high: Some(usd_per_day + half) }
    }

    /// A point estimate whose uncertainty the data does not tell: no interval.
    pub fn point(usd_per_day: f64) -> Estimate {
        Estimate { usd_per_day, low: None, high: None }
    }

    /// `[low, high]`, when computed.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.low.zip(self.high)
    }
}

/// The experiment that would prove a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentPlan {
    /// The treatment arm's change (the control arm is "as today").
    pub treatment: PolicyChange,
    pub primary: Metric,
    pub guardrails: Vec<Guardrail>,
}

/// One proposed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Stable across cycles for the same strategy and scope, so the cycle does not start the same
    /// experiment twice.
    pub id: String,
    pub strategy: StrategyKind,
    pub summary: String,
    pub scope: Scope,
    /// The policy change on adoption; `None` for advice the gateway cannot apply by itself
    /// (prompt-cache breakpoints, moving traffic to a batch API).
    pub action: Option<Action>,
    pub saving: Estimate,
    pub risk: Risk,
    /// `None` for advice; proposals that change answers (model routing) always carry one.
    pub experiment: Option<ExperimentPlan>,
    /// The numbers behind the proposal.
    pub evidence: serde_json::Value,
}

/// Knobs shared by the strategies, from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategySettings {
    /// Fewer records than this in a scope: no proposal for it.
    pub min_requests: usize,
    /// Response cache to simulate and propose.
    pub cache_ttl_seconds: u64,
    pub cache_capacity: usize,
    /// Largest share of responses a `max_tokens` cap may truncate.
    pub max_truncated_share: f64,
    /// The quality feedback metric (`correct`, `thumbs_up`, …) guardrails watch.
    pub quality_metric: String,
    /// Largest relative quality drop a change may cause (0.05: keep ≥ 95 % of today's quality).
    /// For model routing it is the budget of the whole model's traffic (see the cycle).
    pub max_quality_drop: f64,
    /// Per-experiment quality guardrail of a routing experiment: it stops workloads whose quality
    /// clearly collapses while the others gather evidence for the global budget.
    pub routing_exploration_margin: f64,
    /// Tag whose values name workloads (`task`, `feature`, `subject`): model routing proposes
    /// per value of it where requests carry it. Requests without it are grouped by the workload
    /// discovered from their content (`[optimizer.workloads]`), else per requested model.
    pub workload_tag: Option<String>,
    /// Routing candidates: (expensive model, cheaper model) pairs.
    pub routing_pairs: Vec<(String, String)>,
    /// Whether a routing pair may cross providers (`gpt-4o` → `claude-haiku-4-5`): the gateway
    /// then translates between the OpenAI and Anthropic protocols. Off by default: a pair
    /// whose two models the price catalog gives to different providers is skipped.
    pub cross_provider_routing: bool,
    /// Tag and value that mark traffic as non-interactive (batch-pricing candidates).
    pub batch_tag: (String, String),
    /// Largest extra load hedging may add (share of requests sending a second attempt).
    pub max_hedge_load: f64,
}

impl Default for StrategySettings {
    fn default() -> StrategySettings {
        StrategySettings {
            min_requests: 200,
            cache_ttl_seconds: 3_600,
            cache_capacity: 100_000,
            max_truncated_share: 0.01,
            quality_metric: "correct".to_owned(),
            max_quality_drop: 0.05,
            routing_exploration_margin: 0.25,
            workload_tag: None,
            routing_pairs: vec![
                ("gpt-4o".to_owned(), "gpt-4o-mini".to_owned()),
                ("gpt-4.1".to_owned(), "gpt-4.1-mini".to_owned()),
                ("gpt-5".to_owned(), "gpt-5-mini".to_owned()),
                ("claude-sonnet-4-5".to_owned(), "claude-haiku-4-5".to_owned()),
                ("claude-opus-4-1".to_owned(), "claude-sonnet-4-5".to_owned()),
            ],
            cross_provider_routing: false,
            batch_tag: ("interactive".to_owned(), "false".to_owned()),
            max_hedge_load: 0.05,
        }
    }
}

/// What a strategy reads.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisInput<'a> {
    /// Records of the look-back window, oldest first.
    pub records: &'a [RequestRecord],
    pub catalog: &'a PriceCatalog,
    /// Length of the window the records cover, in days (scales savings to a day).
    pub span_days: f64,
    pub settings: &'a StrategySettings,
}

/// A source of proposals.
pub trait Strategy: Send + Sync + fmt::Debug {
    fn kind(&self) -> StrategyKind;
    fn propose(&self, input: &AnalysisInput<'_>) -> Vec<Proposal>;
}
