//! What an experiment is: its arms, scope, metrics, guardrails and limits. Serialisable: the
//! optimizer builds it from a proposal, the API shows it, the store keeps it.

use serde::{Deserialize, Serialize};

use llmopt_core::RequestRecord;

use crate::{
    assignment::{Scope, Unit},
    error::{Error, Result},
    stats::ValueKind,
};

/// A measurable quantity per request (or per feedback event for quality).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Cost of the request in US dollars.
    ///
    /// **Incomplete and unknown costs.** A stream cut upstream or abandoned by its client is
    /// recorded with the exact cost of the usage seen before it stopped, flagged `incomplete`:
    /// a lower bound. Such a record counts with that lower bound. Dropping it instead would
    /// favour the arm whose streams are cut more often (a slower model loses more long answers
    /// to impatient clients, and those are its most expensive ones); counting its lower bound
    /// keeps every dollar the provider is known to have billed. A record whose cost is unknown
    /// (no usage at all, as in a cut OpenAI stream, or a model without a price) cannot be
    /// counted and is left out, never counted as zero.
    ///
    /// What remains is a bias towards the arm with the larger share of inexact costs (lower
    /// bounds or unknown), so a cost experiment also carries the guardrail
    /// [`Guardrail::inexact_cost_share`] on [`Metric::InexactCostShare`]: a treatment is adopted
    /// only once its share of inexact costs is shown to exceed the control's by less than the
    /// allowance, which bounds the bias by the allowance times the cost missing from one such
    /// record. An arm shown to exceed it is stopped. The other direction (the control hiding
    /// more of its cost) only makes the treatment look worse, so it cannot cause a false
    /// adoption.
    CostUsd,
    /// Share of requests whose cost is not exact: a lower bound (`incomplete`) or unknown.
    /// The guardrail that keeps [`Metric::CostUsd`] comparisons honest.
    InexactCostShare,
    /// Total latency in milliseconds.
    LatencyMs,
    /// Time to first token in milliseconds (requests without it are not counted).
    TtftMs,
    /// Share of requests that failed.
    ErrorRate,
    /// Share of answers cut by the output limit (`length` / `max_tokens` stop reasons): the
    /// guardrail of a `max_tokens` cap, which must not truncate more answers than it promised.
    TruncatedShare,
    /// Share of requests slower than `threshold_ms`. The guardrail form of a latency quantile:
    /// with the threshold at the control's baseline p95, "p95 must not rise" becomes "the share
    /// of requests above the old p95 must not rise", a proportion the sequential test handles.
    SlowShare { threshold_ms: f64 },
    /// Mean of a quality feedback metric (booleans count as 0 and 1). Higher is better.
    Quality { name: String },
}

impl Metric {
    /// A stable key used in stored statistics and decisions.
    pub fn key(&self) -> String {
        match self {
            Metric::CostUsd => "cost_usd".to_owned(),
            Metric::InexactCostShare => "inexact_cost_share".to_owned(),
            Metric::LatencyMs => "latency_ms".to_owned(),
            Metric::TtftMs => "ttft_ms".to_owned(),
            Metric::ErrorRate => "error_rate".to_owned(),
            Metric::TruncatedShare => "truncated_share".to_owned(),
            Metric::SlowShare { threshold_ms } => format!("slow_share_over_{threshold_ms}ms"),
            Metric::Quality { name } => format!("quality:{name}"),
        }
    }

    pub fn lower_is_better(&self) -> bool {
        !matches!(self, Metric::Quality { .. })
    }

    pub fn value_kind(&self) -> ValueKind {
        match self {
            Metric::ErrorRate
            | Metric::TruncatedShare
            | Metric::SlowShare { .. }
            | Metric::InexactCostShare => ValueKind::Proportion,
            _ => ValueKind::Continuous,
        }
    }

    /// The quality metric name, if this is a feedback metric.
    pub fn feedback_name(&self) -> Option<&str> {
        match self {
            Metric::Quality { name } => Some(name),
            _ => None,
        }
    }

    /// The value a record contributes; `None` when it contributes nothing (unknown cost, no
    /// feedback of that name yet). For quality the last feedback of that name counts. An
    /// incomplete record's cost is its lower bound (see [`Metric::CostUsd`]).
    pub fn value_of(&self, record: &RequestRecord) -> Option<f64> {
        match self {
            Metric::CostUsd => record.cost.map(|cost| cost.as_usd_f64()),
            Metric::InexactCostShare => Some(if record.cost_is_exact() { 0.0 } else { 1.0 }),
            Metric::LatencyMs => Some(record.latency_ms()),
            Metric::TtftMs => record.ttft_us.map(|us| us as f64 / 1000.0),
            Metric::ErrorRate => Some(if record.status.is_ok() { 0.0 } else { 1.0 }),
            // Only answers can be truncated: failed calls count in the error rate.
            Metric::TruncatedShare => {
                record.status.is_ok().then_some(if record.truncated() { 1.0 } else { 0.0 })
            }
            Metric::SlowShare { threshold_ms } => {
                Some(if record.latency_ms() > *threshold_ms { 1.0 } else { 0.0 })
            }
            Metric::Quality { name } => record.feedback_value(name),
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Metric::SlowShare { threshold_ms }
                if !(threshold_ms.is_finite() && *threshold_ms > 0.0) =>
            {
                Err("slow_share threshold must be a positive number of milliseconds".to_owned())
            }
            Metric::Quality { name } if name.is_empty() => {
                Err("quality metric needs a feedback name".to_owned())
            }
            _ => Ok(()),
        }
    }
}

/// How much worse a guardrail metric may get in a treatment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degradation {
    /// In the metric's own units: `0.01` on an error rate is one percentage point; `0.05` on a
    /// 0/1 quality metric is five points.
    Absolute(f64),
    /// A fraction of the control's mean: `0.1` allows 10 % more latency. The control mean is
    /// estimated, so the margin moves a little as data arrive.
    Relative(f64),
}

impl Degradation {
    /// The allowed degradation in the metric's units, given the control's current mean.
    pub fn margin(&self, control_mean: f64) -> f64 {
        match self {
            Degradation::Absolute(amount) => *amount,
            Degradation::Relative(fraction) => fraction * control_mean.abs(),
        }
    }
}

/// A metric that must not get worse than allowed; checked with a one-sided anytime-valid
/// non-inferiority test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    pub metric: Metric,
    pub max_degradation: Degradation,
}

impl Guardrail {
    /// The p95-latency guardrail in the form the sequential test handles: the share of requests
    /// slower than the control's baseline p95 (from analytics, before the experiment) may grow
    /// by at most `extra_share` (e.g. `0.02`: at most 2 % more requests above the old p95,
    /// roughly "the new p95 stays below the old p93").
    pub fn latency_p95(baseline_p95_ms: f64, extra_share: f64) -> Guardrail {
        Guardrail {
            metric: Metric::SlowShare { threshold_ms: baseline_p95_ms },
            max_degradation: Degradation::Absolute(extra_share),
        }
    }
}

impl Guardrail {
    /// The guardrail every cost experiment needs (see [`Metric::CostUsd`]): the treatment's
    /// share of requests with an inexact cost (a lower bound or unknown) may exceed the
    /// control's by at most `extra_share` (e.g. `0.01`, one percentage point).
    pub fn inexact_cost_share(extra_share: f64) -> Guardrail {
        Guardrail {
            metric: Metric::InexactCostShare,
            max_degradation: Degradation::Absolute(extra_share),
        }
    }
}

/// A change to the live policy that an arm applies. The control arm has no change. The
/// optimizer applies it; this crate only carries it to the gateway with the assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Serve with this model instead of the requested one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Turn the response cache on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_cache: Option<bool>,
    /// Cap `max_tokens` at this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_cap: Option<u32>,
    /// Upstream timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Send a second attempt when the first has not answered after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_after_ms: Option<u64>,
    /// Mark the prompt's prefix for the provider's prompt cache (Anthropic `cache_control`
    /// breakpoints) with this lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache: Option<PromptCacheTtl>,
}

/// The lifetime of an Anthropic prompt-cache entry: a write costs 1.25× the input price for
/// five minutes, 2× for an hour; reads cost 0.1× and refresh the lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptCacheTtl {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

impl PromptCacheTtl {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptCacheTtl::FiveMinutes => "5m",
            PromptCacheTtl::OneHour => "1h",
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            PromptCacheTtl::FiveMinutes => 5 * 60 * 1_000,
            PromptCacheTtl::OneHour => 60 * 60 * 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSpec {
    pub name: String,
    #[serde(default)]
    pub change: PolicyChange,
    /// Relative traffic weight under fixed allocation.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

/// How traffic is divided among arms.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Allocation {
    /// The arms' weights, fixed for the life of the experiment.
    #[default]
    Fixed,
    /// Multi-arm mode: shares follow each arm's posterior probability of being best on the
    /// primary metric (Thompson sampling), recomputed at each evaluation, never below
    /// `min_share`. Only for `unit = request`: with users or sessions, a changing split would
    /// move people between arms.
    Thompson { min_share: f64 },
}

/// Everything that defines an experiment. `arms[0]` is the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub id: String,
    pub name: String,
    /// The proposal it tests, in words.
    #[serde(default)]
    pub hypothesis: String,
    #[serde(default)]
    pub scope: Scope,
    pub arms: Vec<ArmSpec>,
    #[serde(default)]
    pub allocation: Allocation,
    /// Share of eligible units that enter the experiment (the rest keep the default policy).
    #[serde(default = "default_coverage")]
    pub coverage: f64,
    #[serde(default)]
    pub unit: Unit,
    pub primary: Metric,
    #[serde(default)]
    pub guardrails: Vec<Guardrail>,
    /// No adoption or rejection before every arm has this many observations of a metric.
    #[serde(default = "default_min_samples")]
    pub min_samples_per_arm: u64,
    /// Conclude once every active arm has this many observations of the primary metric.
    #[serde(default)]
    pub max_samples_per_arm: Option<u64>,
    /// Conclude this long after the first start.
    pub max_duration_ms: i64,
    /// Significance level of the primary test (split across treatments) and of each guardrail.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Total sample size (both arms) at which the confidence sequence is narrowest.
    #[serde(default = "default_tuning_samples")]
    pub tuning_samples: u64,
    /// The most a single call in this experiment's scope can cost, in any arm (USD): the
    /// context window at the input price plus the longest answer (`max_tokens`, or the
    /// model's output limit) at the output price, for the most expensive arm's model. The
    /// cost comparison is exact for costs within it ([`crate::stats::bounded`]); without it,
    /// each record's bound is a multiple of the largest earlier cost (the fallback rule
    /// documented there), which is valid for an A/A test but slower to decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_bound_usd: Option<f64>,
}

fn default_coverage() -> f64 {
    1.0
}

fn default_min_samples() -> u64 {
    100
}

fn default_alpha() -> f64 {
    0.05
}

fn default_tuning_samples() -> u64 {
    5_000
}

impl ExperimentSpec {
    /// A two-arm spec with the defaults; callers fill in the rest with struct update syntax.
    pub fn ab(
        id: impl Into<String>,
        control: PolicyChange,
        treatment: PolicyChange,
        primary: Metric,
        max_duration_ms: i64,
    ) -> ExperimentSpec {
        let id = id.into();
        ExperimentSpec {
            name: id.clone(),
            id,
            hypothesis: String::new(),
            scope: Scope::default(),
            arms: vec![
                ArmSpec { name: "control".to_owned(), change: control, weight: 1.0 },
                ArmSpec { name: "treatment".to_owned(), change: treatment, weight: 1.0 },
            ],
            allocation: Allocation::Fixed,
            coverage: 1.0,
            unit: Unit::Request,
            primary,
            guardrails: Vec::new(),
            min_samples_per_arm: default_min_samples(),
            max_samples_per_arm: None,
            max_duration_ms,
            alpha: default_alpha(),
            tuning_samples: default_tuning_samples(),
            cost_bound_usd: None,
        }
    }

    /// Every metric the arms accumulate: the primary first, then each distinct guardrail metric.
    pub fn tracked_metrics(&self) -> Vec<Metric> {
        let mut metrics = vec![self.primary.clone()];
        for guardrail in &self.guardrails {
            if !metrics.iter().any(|metric| metric.key() == guardrail.metric.key()) {
                metrics.push(guardrail.metric.clone());
            }
        }
        metrics
    }

    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Error::InvalidSpec { id: self.id.clone(), message };
        if self.id.is_empty() || self.id.chars().any(char::is_control) {
            return Err(invalid("id must be non-empty printable text".to_owned()));
        }
        if self.arms.len() < 2 {
            return Err(invalid("needs a control and at least one treatment arm".to_owned()));
        }
        for (index, arm) in self.arms.iter().enumerate() {
            if arm.name.is_empty() {
                return Err(invalid(format!("arm {index} has no name")));
            }
            if self.arms[..index].iter().any(|earlier| earlier.name == arm.name) {
                return Err(invalid(format!("arm name `{}` is used twice", arm.name)));
            }
            if !(arm.weight.is_finite() && arm.weight > 0.0) {
                return Err(invalid(format!("arm `{}` needs a positive weight", arm.name)));
            }
        }
        if !(self.coverage > 0.0 && self.coverage <= 1.0) {
            return Err(invalid("coverage must be in (0, 1]".to_owned()));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(invalid("alpha must be in (0, 0.5)".to_owned()));
        }
        if self.max_duration_ms <= 0 {
            return Err(invalid("max_duration_ms must be positive".to_owned()));
        }
        if self.min_samples_per_arm < 2 {
            return Err(invalid("min_samples_per_arm must be at least 2".to_owned()));
        }
        if self.tuning_samples == 0 {
            return Err(invalid("tuning_samples must be positive".to_owned()));
        }
        if self.cost_bound_usd.is_some_and(|bound| !(bound.is_finite() && bound > 0.0)) {
            return Err(invalid("cost_bound_usd must be a positive number of dollars".to_owned()));
        }
        if let Allocation::Thompson { min_share } = self.allocation {
            if self.unit != Unit::Request {
                return Err(invalid("Thompson allocation needs unit = request".to_owned()));
            }
            if !(min_share > 0.0 && min_share * self.arms.len() as f64 <= 1.0) {
                return Err(invalid("min_share must be positive and fit every arm".to_owned()));
            }
        }
        self.primary.validate().map_err(invalid)?;
        for guardrail in &self.guardrails {
            guardrail.metric.validate().map_err(invalid)?;
            let amount = match guardrail.max_degradation {
                Degradation::Absolute(amount) | Degradation::Relative(amount) => amount,
            };
            if !(amount.is_finite() && amount >= 0.0) {
                return Err(invalid(format!(
                    "guardrail `{}` needs a non-negative allowed degradation",
                    guardrail.metric.key()
                )));
            }
        }
        Ok(())
    }
}
