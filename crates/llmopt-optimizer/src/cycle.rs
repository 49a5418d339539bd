//! The optimization cycle: analyse → propose → experiment → adopt or roll back, with every
//! decision written to the audit log with its numbers.
//!
//! **Modes.** `observe` only proposes. `experiment` runs experiments and holds winners for a
//! person's approval ([`Optimizer::approve`]). `auto` adopts a winner as soon as its experiment
//! says so with every guardrail held.
//!
//! **Model routing and the quality budget.** Routing a workload to a cheaper model changes
//! answers. Requiring every workload to keep 95 % of its own quality would only ever route the
//! workloads where the cheap model is as good; what users want is 95 % of the quality of the
//! whole model's traffic. So routing experiments run with a wide exploration guardrail (which
//! stops workloads whose quality collapses), and adoption spends a global budget. Routing
//! workload `s` (traffic share `w_s`) changes the model's relative quality by `w_s·d_s/Q`, where
//! `d_s` is the experiment's estimated quality drop with anytime-valid half-width `h_s` and `Q`
//! the model's mean quality. The experiments run on disjoint traffic, so their errors are
//! independent and the bound on the total drop of the adopted set `A` is
//! `Σ w_s·d_s/Q + sqrt(Σ (w_s·h_s/Q)²)`: the half-widths add in quadrature, not linearly (adding
//! them linearly would bound each workload at once, far more conservatively than the question
//! asked). A winner is adopted when that bound, with it included, stays within
//! `max_quality_drop`; winners of one cycle are taken in order of saving per unit of budget, and
//! the rest are not adopted, with the reason logged.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Instant,
};

use llmopt_core::{
    AuditEntry, Clock, ExperimentArm, Money, PolicyStore, PriceCatalog, RecordQuery, RecordStore,
    RequestRecord,
};
use llmopt_experiments::{
    Engine, ExperimentSpec, ExperimentStatus, Outcome, PolicyChange, UnitIds,
    assignment::{Scope as ExperimentScope, ScopeInputs},
    decision::{Action as EngineAction, Decision as EngineDecision},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    policy::{
        Action, Decision, FeatureFlag, FlagConditions, LivePolicy, PolicyError, RequestContext,
        Rule, Scope,
    },
    strategy::{AnalysisInput, Proposal, Strategy, StrategyKind, StrategySettings},
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
            min_saving_usd_per_day: 0.0,
            experiment_max_duration_ms: 7 * 24 * 3_600_000,
            min_samples_per_arm: 200,
            experiment_tuning_samples: 5_000,
            alpha: 0.05,
            strategies: BTreeMap::new(),
            flags: BTreeMap::new(),
            settings: StrategySettings::default(),
        }
    }
}

impl OptimizerConfig {
    pub fn validate(&self) -> Result<(), OptimizerError> {
        let invalid = |message: &str| Err(OptimizerError::Config(message.to_owned()));
        if self.lookback_ms <= 0 {
            return invalid("lookback must be positive");
        }
        if !(self.experiment_coverage > 0.0 && self.experiment_coverage <= 1.0) {
            return invalid("experiment_coverage must be within (0, 1]");
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
}

/// A change adopted into the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adoption {
    pub experiment_id: String,
    pub proposal_id: String,
    pub strategy: Option<StrategyKind>,
    pub scope: Scope,
    pub change: PolicyChange,
    pub adopted_ms: i64,
    /// Control arm's mean cost per request when the experiment concluded (USD).
    pub control_cost_per_request: f64,
    /// Treatment's mean cost per request (USD).
    pub treatment_cost_per_request: f64,
    /// Share of the quality budget this adoption spent (routing only): the increase of the
    /// adopted set's bound when it joined.
    pub quality_budget_used: f64,
    /// Its quality drop relative to the model's quality (routing only).
    #[serde(default)]
    pub quality_drop: Option<QualityDrop>,
    /// Saving measured on the records served under it since adoption, against the control's
    /// cost per request (USD per day; updated every cycle).
    pub measured_saving_usd_per_day: Option<f64>,
    pub measured_requests: u64,
}

/// A routing change's effect on the model's relative quality: estimate and anytime-valid
/// half-width, both already multiplied by the workload's traffic share.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityDrop {
    pub share: f64,
    pub estimate: f64,
    pub half_width: f64,
}

/// The bound on the total relative quality drop of a set of routing changes.
pub fn quality_bound<'a>(drops: impl IntoIterator<Item = &'a QualityDrop>) -> f64 {
    let (mut estimate, mut variance) = (0.0, 0.0);
    for drop in drops {
        estimate += drop.estimate;
        variance += drop.half_width * drop.half_width;
    }
    (estimate + variance.sqrt()).max(0.0)
}

/// A winner held for approval (mode `experiment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub experiment_id: String,
    pub arm: String,
    /// Reserved in the quality budget while it waits (routing only).
    #[serde(default)]
    pub quality_drop: Option<QualityDrop>,
    pub decision: EngineDecision,
}

/// What one cycle did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CycleReport {
    pub at_ms: i64,
    pub duration_ms: f64,
    pub records_read: usize,
    pub proposals: Vec<Proposal>,
    pub started: Vec<String>,
    pub decisions: Vec<EngineDecision>,
    pub adopted: Vec<String>,
    pub not_adopted: Vec<(String, String)>,
    pub rejected: Vec<String>,
    pub awaiting_approval: Vec<String>,
}

/// Counters of the loop, exported by the binary as Prometheus metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoopMetrics {
    pub runs: u64,
    pub failed_runs: u64,
    pub last_duration_seconds: f64,
    pub durations_seconds: Vec<f64>,
    /// Measured saving of adopted changes, USD per day.
    pub cost_reduction_usd_per_day: f64,
    pub active_experiments: u64,
    /// (strategy, count) of proposals made, over all cycles.
    pub proposals: BTreeMap<String, u64>,
    /// (strategy, outcome) → count of decisions.
    pub decisions: BTreeMap<(String, String), u64>,
}

#[derive(Debug, Default)]
struct CycleState {
    proposals: Vec<Proposal>,
    /// Proposal ids already written to the audit log.
    announced: BTreeSet<String>,
    /// experiment id → the proposal it tests.
    experiments: BTreeMap<String, Proposal>,
    adoptions: Vec<Adoption>,
    pending: BTreeMap<String, PendingApproval>,
    /// Routing changes adopted or held for approval: what the quality budget is spent on.
    ledger: Vec<QualityDrop>,
    metrics: LoopMetrics,
}

/// Routing of one request: the policy's decision with any experiment arm's change on top.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    pub decision: Decision,
    pub arm: Option<ExperimentArm>,
}

pub struct Optimizer {
    records: Arc<dyn RecordStore>,
    engine: Arc<Engine>,
    policy: Arc<LivePolicy>,
    audit: Arc<dyn PolicyStore>,
    catalog: Arc<PriceCatalog>,
    clock: Arc<dyn Clock>,
    strategies: Vec<Arc<dyn Strategy>>,
    config: RwLock<OptimizerConfig>,
    state: Mutex<CycleState>,
    /// One cycle at a time (schedule and API may both ask).
    running: Mutex<()>,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer").field("strategies", &self.strategies).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A policy scope as an experiment scope.
pub fn experiment_scope(scope: &Scope) -> ExperimentScope {
    ExperimentScope {
        model: scope.model.clone(),
        tenant: scope.tenant.clone(),
        tag: scope.tag.clone(),
        cluster: None,
    }
}

fn policy_scope(scope: &ExperimentScope) -> Scope {
    Scope {
        model: scope.model.clone(),
        tenant: scope.tenant.clone(),
        tag: scope.tag.clone(),
        endpoint: None,
    }
}

/// The policy rules that make an arm's change permanent, gated by one flag named after the
/// experiment so an operator can ramp it or switch it off at once.
pub fn rules_for(
    experiment_id: &str,
    scope: &Scope,
    change: &PolicyChange,
    cache_ttl_seconds: u64,
) -> Vec<Rule> {
    let mut actions = Vec::new();
    if let Some(model) = &change.model {
        actions.push(("route", Action::RouteModel { model: model.clone(), provider: None }));
    }
    if let Some(enabled) = change.response_cache {
        actions.push((
            "cache",
            Action::ResponseCache {
                enabled,
                ttl_seconds: Some(cache_ttl_seconds),
                allow_sampling: false,
            },
        ));
    }
    if let Some(cap) = change.max_tokens_cap {
        actions.push(("max_tokens", Action::MaxTokensCap { max_tokens: cap }));
    }
    if let Some(total_ms) = change.timeout_ms {
        actions.push(("timeout", Action::Timeout { total_ms }));
    }
    if let Some(after_ms) = change.hedge_after_ms {
        actions.push(("hedge", Action::Hedge { after_ms }));
    }
    actions
        .into_iter()
        .map(|(kind, action)| Rule {
            id: format!("{experiment_id}:{kind}"),
            scope: scope.clone(),
            action,
            flag: Some(experiment_id.to_owned()),
            origin: format!("experiment {experiment_id}"),
        })
        .collect()
}

/// Writes the configuration's flags into the live policy when they differ from it.
fn apply_configured_flags(
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

impl Optimizer {
    #[expect(clippy::too_many_arguments, reason = "the loop meets every seam once, at wiring time")]
    pub fn new(
        records: Arc<dyn RecordStore>,
        engine: Arc<Engine>,
        policy: Arc<LivePolicy>,
        audit: Arc<dyn PolicyStore>,
        catalog: Arc<PriceCatalog>,
        clock: Arc<dyn Clock>,
        strategies: Vec<Arc<dyn Strategy>>,
        config: OptimizerConfig,
    ) -> Result<Optimizer, OptimizerError> {
        config.validate()?;
        let mut state = CycleState::default();
        // Adoptions survive restarts through the audit log.
        let mut after = 0;
        loop {
            let page = audit.audit(after, 1_000)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in page.iter().filter(|e| e.kind == "adopted") {
                if let Ok(adoption) =
                    serde_json::from_value::<Adoption>(entry.detail["adoption"].clone())
                {
                    state.ledger.extend(adoption.quality_drop);
                    state.adoptions.push(adoption);
                }
            }
        }
        apply_configured_flags(&policy, &config, clock.now_ms())?;
        Ok(Optimizer {
            records,
            engine,
            policy,
            audit,
            catalog,
            clock,
            strategies,
            config: RwLock::new(config),
            state: Mutex::new(state),
            running: Mutex::new(()),
        })
    }

    pub fn config(&self) -> OptimizerConfig {
        self.with_config(OptimizerConfig::clone)
    }

    /// Reads the configuration in place: the request path uses this instead of cloning it.
    pub fn with_config<R>(&self, read: impl FnOnce(&OptimizerConfig) -> R) -> R {
        read(&self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Applies a new configuration (hot reload, API). Invalid ones are refused.
    pub fn set_config(&self, config: OptimizerConfig) -> Result<(), OptimizerError> {
        config.validate()?;
        apply_configured_flags(&self.policy, &config, self.clock.now_ms())?;
        *self.config.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn policy(&self) -> &Arc<LivePolicy> {
        &self.policy
    }

    /// Routing of one request: a running experiment's arm (if the request is in one) on top of
    /// the policy in force.
    pub fn route(&self, request: &RequestContext<'_>, units: &UnitIds<'_>) -> Routing {
        let mut decision = self.policy.decide(request);
        let inputs = ScopeInputs {
            model: request.model,
            tenant: request.tenant,
            tags: request.tags,
            cluster: None,
        };
        let Some(assignment) = self.engine.assign(&inputs, units) else {
            return Routing { decision, arm: None };
        };
        let change = &assignment.change;
        if let Some(model) = &change.model {
            decision.model = Some(model.clone());
            decision.provider = None;
        }
        if let Some(enabled) = change.response_cache {
            let ttl = self.with_config(|config| config.settings.cache_ttl_seconds);
            decision.cache = Some(crate::policy::CacheDecision {
                enabled,
                ttl_seconds: Some(ttl),
                allow_sampling: false,
            });
        }
        if let Some(cap) = change.max_tokens_cap {
            decision.max_tokens_cap = Some(cap);
        }
        if let Some(timeout) = change.timeout_ms {
            decision.timeout_ms = Some(timeout);
        }
        if let Some(after) = change.hedge_after_ms {
            decision.hedge_after_ms = Some(after);
        }
        Routing { decision, arm: Some(assignment.arm) }
    }

    /// Counts a finished request in its experiment arm.
    pub fn observe(&self, record: &RequestRecord) -> bool {
        self.engine.observe(record)
    }

    /// Counts feedback for a request in its experiment arm.
    pub fn observe_feedback(&self, arm: &ExperimentArm, metric: &str, value: f64) -> bool {
        self.engine.observe_feedback(arm, metric, value)
    }

    pub fn proposals(&self) -> Vec<Proposal> {
        lock(&self.state).proposals.clone()
    }

    pub fn adoptions(&self) -> Vec<Adoption> {
        lock(&self.state).adoptions.clone()
    }

    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        lock(&self.state).pending.values().cloned().collect()
    }

    pub fn metrics(&self) -> LoopMetrics {
        lock(&self.state).metrics.clone()
    }

    /// The bound on the relative quality drop of every routing change adopted (or held).
    pub fn quality_budget_used(&self) -> f64 {
        quality_bound(&lock(&self.state).ledger)
    }

    fn audit_entry(
        &self,
        now_ms: i64,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), OptimizerError> {
        self.audit.append_audit(&AuditEntry {
            seq: 0,
            ts_ms: now_ms,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail,
        })?;
        Ok(())
    }

    /// Runs one cycle now.
    pub fn run_cycle(&self) -> Result<CycleReport, OptimizerError> {
        let _one_at_a_time = lock(&self.running);
        let started = Instant::now();
        let result = self.cycle();
        let elapsed = started.elapsed().as_secs_f64();
        let mut state = lock(&self.state);
        state.metrics.runs += 1;
        state.metrics.last_duration_seconds = elapsed;
        state.metrics.durations_seconds.push(elapsed);
        if result.is_err() {
            state.metrics.failed_runs += 1;
        }
        drop(state);
        result.map(|mut report| {
            report.duration_ms = elapsed * 1_000.0;
            report
        })
    }

    fn cycle(&self) -> Result<CycleReport, OptimizerError> {
        let config = self.config();
        let now_ms = self.clock.now_ms();
        let from_ms = now_ms - config.lookback_ms;
        let records = self.records.scan(&RecordQuery::range(from_ms, now_ms + 1))?;
        let span_ms = match (records.first(), records.last()) {
            (Some(first), Some(last)) if last.ts_ms > first.ts_ms => last.ts_ms - first.ts_ms,
            _ => config.lookback_ms,
        };
        let input = AnalysisInput {
            records: &records,
            catalog: &self.catalog,
            span_days: span_ms as f64 / 86_400_000.0,
            settings: &config.settings,
        };
        let mut report =
            CycleReport { at_ms: now_ms, records_read: records.len(), ..CycleReport::default() };

        // 1. Propose.
        let mut proposals: Vec<Proposal> = self
            .strategies
            .iter()
            .filter(|strategy| config.strategy_enabled(strategy.kind()))
            .flat_map(|strategy| strategy.propose(&input))
            .collect();
        proposals.sort_by(|a, b| b.saving.usd_per_day.total_cmp(&a.saving.usd_per_day));
        {
            let mut state = lock(&self.state);
            for proposal in &proposals {
                *state.metrics.proposals.entry(proposal.strategy.to_string()).or_default() += 1;
                if state.announced.insert(proposal.id.clone()) {
                    self.audit_entry(now_ms, "proposal", &proposal.id, json!(proposal))?;
                }
            }
            state.proposals = proposals.clone();
        }
        report.proposals = proposals.clone();
        if config.mode == Mode::Observe {
            self.refresh_measurements(&records, now_ms);
            return Ok(report);
        }

        // 2. Evaluate running experiments and act on their decisions.
        let decisions = self.engine.evaluate(now_ms)?;
        let mut routing_winners = Vec::new();
        for decision in &decisions {
            let strategy = self.strategy_of(&decision.experiment_id);
            let outcome = match &decision.action {
                EngineAction::Continue => "continue",
                EngineAction::Adopt { .. } => "adopt",
                EngineAction::Reject => "reject",
                EngineAction::StopArm { .. } => "stop_arm",
            };
            *lock(&self.state)
                .metrics
                .decisions
                .entry((strategy.map(|s| s.to_string()).unwrap_or_default(), outcome.to_owned()))
                .or_default() += 1;
            match &decision.action {
                EngineAction::Continue => {}
                EngineAction::Adopt { arm } => {
                    let is_routing = self
                        .change_of(&decision.experiment_id, arm)
                        .is_some_and(|c| c.model.is_some());
                    if is_routing {
                        routing_winners.push((decision.clone(), arm.clone()));
                    } else if config.mode == Mode::Auto {
                        self.adopt(decision, arm, None, 0.0, now_ms)?;
                        report.adopted.push(decision.experiment_id.clone());
                    } else {
                        self.hold_for_approval(decision, arm, None, now_ms)?;
                        report.awaiting_approval.push(decision.experiment_id.clone());
                    }
                }
                EngineAction::Reject => {
                    self.audit_entry(now_ms, "rejected", &decision.experiment_id, json!(decision))?;
                    report.rejected.push(decision.experiment_id.clone());
                }
                EngineAction::StopArm { .. } => {
                    self.audit_entry(
                        now_ms,
                        "arm_stopped",
                        &decision.experiment_id,
                        json!(decision),
                    )?;
                }
            }
        }
        self.spend_quality_budget(routing_winners, &records, &config, now_ms, &mut report)?;
        report.decisions = decisions;

        // 3. Start experiments for the best untested proposals, within the limits.
        self.start_experiments(&proposals, &config, now_ms, &mut report)?;
        self.refresh_measurements(&records, now_ms);
        Ok(report)
    }

    fn strategy_of(&self, experiment_id: &str) -> Option<StrategyKind> {
        lock(&self.state).experiments.get(experiment_id).map(|p| p.strategy)
    }

    fn change_of(&self, experiment_id: &str, arm: &str) -> Option<PolicyChange> {
        let experiment = self.engine.show(experiment_id).ok()?;
        experiment.spec.arms.iter().find(|a| a.name == arm).map(|a| a.change.clone())
    }

    /// Adopts routing winners in order of saving per unit of quality budget while it lasts.
    fn spend_quality_budget(
        &self,
        winners: Vec<(EngineDecision, String)>,
        records: &[RequestRecord],
        config: &OptimizerConfig,
        now_ms: i64,
        report: &mut CycleReport,
    ) -> Result<(), OptimizerError> {
        if winners.is_empty() {
            return Ok(());
        }
        let quality_metric = &config.settings.quality_metric;
        let mut candidates = Vec::new();
        for (decision, arm) in winners {
            let Ok(experiment) = self.engine.show(&decision.experiment_id) else { continue };
            let scope = &experiment.spec.scope;
            // Traffic share of the workload within its model, and the model's mean quality.
            let of_model: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| scope.model.as_deref().is_none_or(|m| r.requested_model.as_str() == m))
                .collect();
            let in_scope = of_model
                .iter()
                .filter(|r| scope.tag.as_ref().is_none_or(|(k, v)| r.tags.get(k) == Some(v)))
                .count();
            let share = in_scope as f64 / of_model.len().max(1) as f64;
            let quality = decision
                .guardrails
                .iter()
                .find(|g| g.arm == arm && g.metric == format!("quality:{quality_metric}"));
            let (drop, half, control_quality) =
                match quality.and_then(|c| c.degradation.map(|d| (d, c.control_mean))) {
                    Some((degradation, control)) => (
                        degradation.estimate,
                        (degradation.upper - degradation.estimate).max(0.0),
                        control,
                    ),
                    None => (f64::NAN, f64::NAN, 0.0),
                };
            let model_quality: llmopt_core::Moments = of_model
                .iter()
                .filter_map(|r| r.feedback.iter().rev().find(|f| &f.metric == quality_metric))
                .map(|f| f.value.as_f64())
                .collect();
            let reference_quality =
                if model_quality.count > 0 { model_quality.mean } else { control_quality };
            let effect = QualityDrop {
                share,
                estimate: share * drop / reference_quality.max(1e-9),
                half_width: share * half / reference_quality.max(1e-9),
            };
            let saving = decision
                .primary
                .iter()
                .find(|c| c.arm == arm)
                .map_or(0.0, |c| c.control_mean - c.treatment_mean);
            candidates.push((decision, arm, effect, saving * share));
        }
        // Best saving per unit of budget first; free ones (no measurable drop) first of all.
        candidates.sort_by(|a, b| {
            let ratio = |c: &(EngineDecision, String, QualityDrop, f64)| {
                let cost = c.2.estimate + c.2.half_width;
                if cost <= 0.0 { f64::INFINITY } else { c.3 / cost }
            };
            ratio(b).total_cmp(&ratio(a))
        });
        for (decision, arm, effect, _) in candidates {
            let measured = effect.estimate.is_finite() && effect.half_width.is_finite();
            let (before, after) = {
                let state = lock(&self.state);
                let before = quality_bound(&state.ledger);
                let after = quality_bound(state.ledger.iter().chain(std::iter::once(&effect)));
                (before, after)
            };
            if measured && after <= config.settings.max_quality_drop {
                if config.mode == Mode::Auto {
                    self.adopt(&decision, &arm, Some(effect), after - before, now_ms)?;
                    report.adopted.push(decision.experiment_id.clone());
                } else {
                    lock(&self.state).ledger.push(effect);
                    self.hold_for_approval(&decision, &arm, Some(effect), now_ms)?;
                    report.awaiting_approval.push(decision.experiment_id.clone());
                }
            } else {
                let reason = if measured {
                    format!(
                        "quality budget: the adopted set's bound would reach {:.4} of the {:.4} allowed (now {:.4})",
                        after, config.settings.max_quality_drop, before
                    )
                } else {
                    "no quality measurement: routing is never adopted without one".to_owned()
                };
                self.audit_entry(
                    now_ms,
                    "not_adopted",
                    &decision.experiment_id,
                    json!({"reason": reason, "decision": decision}),
                )?;
                report.not_adopted.push((decision.experiment_id.clone(), reason));
            }
        }
        Ok(())
    }

    fn hold_for_approval(
        &self,
        decision: &EngineDecision,
        arm: &str,
        quality_drop: Option<QualityDrop>,
        now_ms: i64,
    ) -> Result<(), OptimizerError> {
        let pending = PendingApproval {
            experiment_id: decision.experiment_id.clone(),
            arm: arm.to_owned(),
            quality_drop,
            decision: decision.clone(),
        };
        self.audit_entry(now_ms, "awaiting_approval", &decision.experiment_id, json!(decision))?;
        lock(&self.state).pending.insert(decision.experiment_id.clone(), pending);
        Ok(())
    }

    /// Adopts a winner held for approval (mode `experiment`).
    pub fn approve(&self, experiment_id: &str) -> Result<Adoption, OptimizerError> {
        let pending = lock(&self.state)
            .pending
            .remove(experiment_id)
            .ok_or_else(|| OptimizerError::NotAwaitingApproval(experiment_id.to_owned()))?;
        let now_ms = self.clock.now_ms();
        // The reservation becomes the adoption's own entry.
        let budget = match pending.quality_drop {
            Some(reserved) => {
                let mut state = lock(&self.state);
                if let Some(index) = state.ledger.iter().position(|d| *d == reserved) {
                    state.ledger.remove(index);
                }
                let before = quality_bound(&state.ledger);
                quality_bound(state.ledger.iter().chain(std::iter::once(&reserved))) - before
            }
            None => 0.0,
        };
        self.adopt(&pending.decision, &pending.arm, pending.quality_drop, budget, now_ms)
    }

    fn adopt(
        &self,
        decision: &EngineDecision,
        arm: &str,
        quality_drop: Option<QualityDrop>,
        budget: f64,
        now_ms: i64,
    ) -> Result<Adoption, OptimizerError> {
        let experiment = self.engine.show(&decision.experiment_id)?;
        let change = experiment
            .spec
            .arms
            .iter()
            .find(|a| a.name == arm)
            .map(|a| a.change.clone())
            .unwrap_or_default();
        let scope = policy_scope(&experiment.spec.scope);
        let ttl = self.config().settings.cache_ttl_seconds;
        let rules = rules_for(&decision.experiment_id, &scope, &change, ttl);
        let flag_name = decision.experiment_id.clone();
        self.policy.update(&format!("adopt {}", decision.experiment_id), now_ms, |policy| {
            policy.flags.insert(
                flag_name.clone(),
                FeatureFlag {
                    enabled: true,
                    rollout_percent: 100.0,
                    conditions: FlagConditions::default(),
                },
            );
            policy.rules.retain(|rule| rule.flag.as_deref() != Some(flag_name.as_str()));
            // Newest adoptions first: they were proven against the policy before them.
            policy.rules.splice(0..0, rules.clone());
        })?;
        let comparison = decision.primary.iter().find(|c| c.arm == arm);
        let proposal = lock(&self.state).experiments.get(&decision.experiment_id).cloned();
        let costs = experiment
            .arms
            .iter()
            .map(|a| if a.requests == 0 { 0.0 } else { a.cost.as_usd_f64() / a.requests as f64 })
            .collect::<Vec<_>>();
        let treatment_index = experiment.arm_index(arm).unwrap_or(1);
        let adoption = Adoption {
            experiment_id: decision.experiment_id.clone(),
            proposal_id: proposal
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_else(|| experiment.spec.hypothesis.clone()),
            strategy: proposal.as_ref().map(|p| p.strategy),
            scope,
            change,
            adopted_ms: now_ms,
            control_cost_per_request: costs.first().copied().unwrap_or(0.0),
            treatment_cost_per_request: costs.get(treatment_index).copied().unwrap_or(0.0),
            quality_budget_used: budget,
            quality_drop,
            measured_saving_usd_per_day: None,
            measured_requests: 0,
        };
        self.audit_entry(
            now_ms,
            "adopted",
            &decision.experiment_id,
            json!({"adoption": adoption, "decision": decision, "primary": comparison}),
        )?;
        let mut state = lock(&self.state);
        state.ledger.extend(quality_drop);
        state.adoptions.push(adoption.clone());
        Ok(adoption)
    }

    fn start_experiments(
        &self,
        proposals: &[Proposal],
        config: &OptimizerConfig,
        now_ms: i64,
        report: &mut CycleReport,
    ) -> Result<(), OptimizerError> {
        let existing = self.engine.list();
        let mut running = existing.iter().filter(|e| e.status.is_active()).count();
        let tested: BTreeSet<String> = {
            let state = lock(&self.state);
            state
                .experiments
                .values()
                .map(|p| p.id.clone())
                .chain(state.adoptions.iter().map(|a| a.proposal_id.clone()))
                .collect()
        };
        // Ids only grow: deleted drafts leave gaps, so count from the highest one.
        let mut next_number = existing
            .iter()
            .filter_map(|e| e.spec.id.strip_prefix("exp-").and_then(|n| n.parse::<usize>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        for proposal in proposals {
            if running >= config.max_running_experiments {
                break;
            }
            let Some(plan) = &proposal.experiment else { continue };
            let worth_it = proposal.saving.usd_per_day >= config.min_saving_usd_per_day
                || proposal.strategy == StrategyKind::TimeoutHedge;
            if !worth_it || tested.contains(&proposal.id) {
                continue;
            }
            let id = format!("exp-{next_number:04}");
            let mut spec = ExperimentSpec::ab(
                &id,
                PolicyChange::default(),
                plan.treatment.clone(),
                plan.primary.clone(),
                config.experiment_max_duration_ms,
            );
            spec.name = proposal.summary.clone();
            spec.hypothesis = proposal.id.clone();
            spec.scope = experiment_scope(&proposal.scope);
            spec.guardrails = plan.guardrails.clone();
            spec.coverage = config.experiment_coverage;
            spec.min_samples_per_arm = config.min_samples_per_arm;
            spec.alpha = config.alpha;
            spec.tuning_samples = config.experiment_tuning_samples.max(1);
            match self.engine.create(spec).and_then(|_| self.engine.start(&id)) {
                Ok(_) => {
                    next_number += 1;
                    running += 1;
                    lock(&self.state).experiments.insert(id.clone(), proposal.clone());
                    self.audit_entry(
                        now_ms,
                        "experiment_started",
                        &id,
                        json!({"proposal": proposal}),
                    )?;
                    report.started.push(id);
                }
                // Overlapping scopes are refused by the engine: try the next proposal.
                Err(llmopt_experiments::Error::Overlap { .. }) => {
                    let _ = self.engine.delete_draft(&id);
                    next_number += 1;
                }
                Err(error) => {
                    let _ = self.engine.delete_draft(&id);
                    return Err(error.into());
                }
            }
        }
        let active =
            self.engine.list().iter().filter(|e| e.status == ExperimentStatus::Running).count();
        lock(&self.state).metrics.active_experiments = active as u64;
        Ok(())
    }

    /// Measures each adoption's saving on the records served since it: the control arm's cost
    /// per request minus what the requests actually cost.
    fn refresh_measurements(&self, records: &[RequestRecord], now_ms: i64) {
        let mut state = lock(&self.state);
        let mut total = 0.0;
        for adoption in &mut state.adoptions {
            let scope = &adoption.scope;
            let after: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| r.ts_ms >= adoption.adopted_ms && r.experiment.is_none())
                .filter(|r| {
                    scope.model.as_deref().is_none_or(|m| {
                        crate::policy::pattern_matches(m, r.requested_model.as_str())
                    })
                })
                .filter(|r| {
                    scope
                        .tenant
                        .as_deref()
                        .is_none_or(|t| r.tenant.as_ref().is_some_and(|rt| rt.as_str() == t))
                })
                .filter(|r| scope.tag.as_ref().is_none_or(|(k, v)| r.tags.get(k) == Some(v)))
                .collect();
            if after.is_empty() {
                continue;
            }
            let actual: Money = after.iter().filter_map(|r| r.cost).sum();
            let counterfactual = adoption.control_cost_per_request * after.len() as f64;
            let span_days = ((now_ms - adoption.adopted_ms).max(1) as f64 / 86_400_000.0).max(1e-9);
            let saving = (counterfactual - actual.as_usd_f64()) / span_days;
            adoption.measured_saving_usd_per_day = Some(saving);
            adoption.measured_requests = after.len() as u64;
            total += saving;
        }
        state.metrics.cost_reduction_usd_per_day = total;
    }

    /// Audit entries after `after_seq`, oldest first.
    pub fn audit_log(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, OptimizerError> {
        Ok(self.audit.audit(after_seq, limit)?)
    }

    /// Experiments whose outcome was an adoption (for reports).
    pub fn concluded_adopted(&self) -> Vec<String> {
        self.engine
            .list()
            .into_iter()
            .filter(|e| {
                matches!(
                    e.status,
                    ExperimentStatus::Concluded { outcome: Outcome::Adopted { .. }, .. }
                )
            })
            .map(|e| e.spec.id.clone())
            .collect()
    }
}
