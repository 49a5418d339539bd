//! The loop's configuration (the `[optimizer]` section), its modes and its error type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    policy::{FeatureFlag, LivePolicy, PolicyError},
    strategy::{StrategyKind, StrategySettings},
    workloads::WorkloadSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Observe,
    Experiment,
    Auto,
}

/// Configuration of the loop (the `[optimizer]` section of the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub mode: Mode,
    /// Deployment environment feature-flag conditions compare against.
    pub environment: String,
    /// Cron expression for scheduled cycles (the binary schedules them); `None`: on demand only.
    pub schedule: Option<String>,
    /// How far back a cycle reads records.
    pub lookback_ms: i64,
    /// Experiments running at once, at most.
    pub max_running_experiments: usize,
    /// Share of a scope's traffic an experiment takes (the rest keeps the policy in force).
    pub experiment_coverage: f64,
    /// Share of an adopted change's units kept on the policy before it (its holdout): the
    /// change's saving is measured against them and its guardrails stay watched on them, so a
    /// change that stops holding is rolled back. 0 turns both off.
    pub holdout_share: f64,
    /// Proposals saving less than this per day are not tested (hedging proposals, which buy
    /// latency with money, are exempt).
    pub min_saving_usd_per_day: f64,
    pub experiment_max_duration_ms: i64,
    pub min_samples_per_arm: u64,
    /// Total samples at which the experiments' confidence sequences are tightest (the
    /// "sequential tuning parameter"): about the sample size an experiment is expected to reach.
    pub experiment_tuning_samples: u64,
    pub alpha: f64,
    /// Strategies switched on (absent: on).
    pub strategies: BTreeMap<StrategyKind, bool>,
    /// Feature flags set from configuration: they override the live policy's flags of the same
    /// name (an adopted change's flag is named after its experiment), so an operator can ramp or
    /// switch off a change in the configuration file as well as through the API.
    pub flags: BTreeMap<String, FeatureFlag>,
    pub settings: StrategySettings,
    /// Workload discovery from request content.
    pub workloads: WorkloadSettings,
}

impl Default for OptimizerConfig {
    fn default() -> OptimizerConfig {
        OptimizerConfig {
            mode: Mode::Observe,
            environment: "production".to_owned(),
            schedule: None,
            lookback_ms: 24 * 3_600_000,
            max_running_experiments: 4,
            experiment_coverage: 1.0,
            holdout_share: 0.05,
            min_saving_usd_per_day: 0.0,
            experiment_max_duration_ms: 7 * 24 * 3_600_000,
            min_samples_per_arm: 200,
            experiment_tuning_samples: 5_000,
            alpha: 0.05,
            strategies: BTreeMap::new(),
            flags: BTreeMap::new(),
            settings: StrategySettings::default(),
            workloads: WorkloadSettings::default(),
        }
    }
}

impl OptimizerConfig {
    pub fn validate(&self) -> Result<(), OptimizerError> {
        let invalid = |message: &str| Err(OptimizerError::Config(message.to_owned()));
        if let Err(message) = self.workloads.validate() {
            return invalid(&message);
        }
        if self.lookback_ms <= 0 {
            return invalid("lookback must be positive");
        }
        if !(self.experiment_coverage > 0.0 && self.experiment_coverage <= 1.0) {
            return invalid("experiment_coverage must be within (0, 1]");
        }
        if !(0.0..=0.5).contains(&self.holdout_share) {
            return invalid("holdout_share must be within [0, 0.5]");
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return invalid("alpha must be within (0, 0.5)");
        }
        if !(0.0..1.0).contains(&self.settings.max_quality_drop)
            || !(0.0..1.0).contains(&self.settings.max_truncated_share)
        {
            return invalid("shares must be within [0, 1)");
        }
        if self.experiment_max_duration_ms <= 0 || self.min_samples_per_arm == 0 {
            return invalid("experiments need a positive duration and sample minimum");
        }
        Ok(())
    }

    pub fn strategy_enabled(&self, kind: StrategyKind) -> bool {
        self.strategies.get(&kind).copied().unwrap_or(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    #[error("invalid optimizer configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] llmopt_core::StoreError),
    #[error(transparent)]
    Experiment(#[from] llmopt_experiments::Error),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("nothing awaits approval under `{0}`")]
    NotAwaitingApproval(String),
    #[error("no adoption `{0}` in force")]
    NoSuchAdoption(String),
}

/// Writes the configuration's flags into the live policy when they differ from it.
pub(super) fn apply_configured_flags(
    policy: &LivePolicy,
    config: &OptimizerConfig,
    now_ms: i64,
) -> Result<(), OptimizerError> {
    let current = policy.current();
    let differs =
        config.flags.iter().any(|(name, flag)| current.policy.flags.get(name) != Some(flag));
    if differs {
        policy.update("flags from configuration", now_ms, |next| {
            for (name, flag) in &config.flags {
                next.flags.insert(name.clone(), flag.clone());
            }
        })?;
    }
    Ok(())
}
