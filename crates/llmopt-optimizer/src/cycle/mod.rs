//! The optimization cycle: analyse → propose → experiment → adopt or roll back, with every
//! decision written to the audit log with its numbers.
//!
//! **Modes.** `observe` only proposes. `experiment` runs experiments and holds winners for a
//! person's approval ([`Optimizer::approve`]). `auto` adopts a winner as soon as its experiment
//! says so with every guardrail held.
//!
//! Model routing is adopted against a global quality budget; `adoption.rs` explains it.
//!
//! Modules:
//! - this one: the [`Optimizer`] itself, its state, per-request routing and one cycle's steps;
//! - `config`: the `[optimizer]` configuration, modes and the error type;
//! - `experiments`: starting experiments for the best untested proposals;
//! - `adoption`: the quality budget, adopting winners into the policy, approvals and the
//!   measured saving of what was adopted;
//! - `watch`: the holdout of each adoption, its measured saving and its rollback;
//! - `report`: what a cycle reports and the loop's counters.

mod adoption;
mod config;
mod experiments;
mod report;
mod watch;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Instant,
};

use llmopt_analytics::workload::WorkloadText;
use llmopt_core::{
    AuditEntry, Clock, ExperimentArm, JUDGE_TAG, PolicyStore, PriceCatalog, RecordQuery,
    RecordStore, RequestRecord,
};
use llmopt_experiments::{
    Engine, ExperimentStatus, Outcome, PolicyChange, ScopeInputs, UnitIds,
    decision::{Action as EngineAction, Decision as EngineDecision},
};
use serde_json::json;

use self::config::apply_configured_flags;
pub use self::{
    adoption::{
        Adoption, PendingApproval, QualityDrop, experiment_scope, quality_bound, rules_for,
    },
    config::{Mode, OptimizerConfig, OptimizerError},
    report::{CycleReport, LoopMetrics},
    watch::{Measurement, RolledBack},
};
use crate::{
    policy::{Decision, LivePolicy, RequestContext},
    strategy::{AnalysisInput, Proposal, Strategy, StrategyKind},
    workloads::{self, DiscoveredWorkloads, Workloads},
};

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
    /// Routing winners the budget refused, by experiment id: offered again once the budget
    /// in use falls below what it was when they were refused (a rollback released some).
    refused: BTreeMap<String, RefusedWinner>,
    metrics: LoopMetrics,
}

/// A routing winner the quality budget had no room for.
#[derive(Debug, Clone)]
struct RefusedWinner {
    decision: EngineDecision,
    arm: String,
    /// When it was refused; its evidence is not offered after the look-back window.
    refused_ms: i64,
    /// The adopted set's bound when it was refused.
    bound_then: f64,
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
    /// Content features of recent requests, for discovering workloads.
    workloads: Workloads,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer").field("strategies", &self.strategies).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
            for entry in &page {
                match entry.kind.as_str() {
                    "adopted" => {
                        if let Ok(adoption) =
                            serde_json::from_value::<Adoption>(entry.detail["adoption"].clone())
                        {
                            state.ledger.extend(adoption.quality_drop);
                            state.adoptions.push(adoption);
                        }
                    }
                    // A rollback releases what the adoption held, as it did when it happened.
                    "rolled_back" => {
                        let Ok(rolled_back) = serde_json::from_value::<RolledBack>(
                            entry.detail["rolled_back"].clone(),
                        ) else {
                            continue;
                        };
                        let Some(adoption) = state
                            .adoptions
                            .iter_mut()
                            .find(|a| a.experiment_id == entry.subject && a.rolled_back.is_none())
                        else {
                            continue;
                        };
                        adoption.rolled_back = Some(rolled_back);
                        let released = adoption.quality_drop;
                        if let Some(drop) = released
                            && let Some(index) = state.ledger.iter().position(|d| *d == drop)
                        {
                            state.ledger.remove(index);
                        }
                    }
                    _ => {}
                }
            }
        }
        apply_configured_flags(&policy, &config, clock.now_ms())?;
        let workloads = Workloads::new(config.workloads.sample_size, 20_261_205);
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
            workloads,
        })
    }

    /// Whether workload discovery is on (callers skip extracting the text when it is not).
    pub fn discovers_workloads(&self) -> bool {
        self.with_config(|config| config.workloads.enabled)
    }

    /// The workload a request belongs to, from its content (`None` while discovery is off or
    /// no model is fitted yet). Also feeds the sample the next model is fitted on.
    pub fn workload_of(&self, text: &WorkloadText<'_>) -> Option<String> {
        if !self.discovers_workloads() {
            return None;
        }
        let policy = self.policy.current();
        let model = policy.policy.workloads.as_ref().map(|discovered| &discovered.model);
        self.workloads.assign(model, text)
    }

    /// Fits (or re-fits, when due) the workload model on the sample and puts it in the policy.
    fn discover_workloads(
        &self,
        config: &OptimizerConfig,
        now_ms: i64,
    ) -> Result<Option<String>, OptimizerError> {
        let settings = &config.workloads;
        if !settings.enabled {
            return Ok(None);
        }
        let current = self.policy.current();
        let previous = current.policy.workloads.as_ref();
        let sampled = self.workloads.sample_len();
        if previous.is_some_and(|p| !settings.refit_due(p.fitted_ms, p.fitted_on, now_ms, sampled))
        {
            return Ok(None);
        }
        let (sample, seen) = self.workloads.sample();
        let seed = u64::try_from(now_ms).unwrap_or(0);
        let (model, kept) =
            match workloads::refit(&sample, previous.map(|p| &p.model), settings, seed) {
                Ok(fitted) => fitted,
                Err(reason) => return Ok(Some(reason)),
            };
        let summary = format!(
            "{} workloads discovered from {} sampled requests ({} seen); {kept} ids kept",
            model.k(),
            sample.len(),
            seen
        );
        let detail = json!({"k": model.k(), "ids": model.ids(), "sampled": sample.len(),
                            "seen": seen, "ids_kept": kept});
        let discovered = DiscoveredWorkloads { model, fitted_ms: now_ms, fitted_on: sample.len() };
        self.policy.update("workloads discovered from content", now_ms, |policy| {
            policy.workloads = Some(discovered);
        })?;
        self.audit_entry(now_ms, "workloads_fitted", "workloads", detail)?;
        Ok(Some(summary))
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
        self.workloads.set_sample_size(config.workloads.sample_size);
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
            cluster: request.workload,
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
        if let Some(ttl) = change.prompt_cache {
            decision.prompt_cache = Some(ttl);
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
        let mut records = self.records.scan(&RecordQuery::range(from_ms, now_ms + 1))?;
        // The judge's calls are the optimizer's own cost, not traffic to optimize.
        let (mut judge_calls, mut judge_cost_usd) = (0, 0.0);
        records.retain(|r| {
            let judge = r.tags.contains_key(JUDGE_TAG);
            if judge {
                judge_calls += 1;
                judge_cost_usd += r.cost.map_or(0.0, |cost| cost.as_usd_f64());
            }
            !judge
        });
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
        let mut report = CycleReport {
            at_ms: now_ms,
            records_read: records.len(),
            judge_calls,
            judge_cost_usd,
            ..CycleReport::default()
        };
        report.workloads = self.discover_workloads(&config, now_ms)?;

        // 1. Propose.
        let mut proposals: Vec<Proposal> = self
            .strategies
            .iter()
            .filter(|strategy| config.strategy_enabled(strategy.kind()))
            .flat_map(|strategy| strategy.propose(&input))
            .collect();
        // With workload discovery on, routing is tested per workload (discovered or tagged),
        // never for a whole model: a whole-model experiment's scope overlaps every workload's,
        // so while it runs (it would start at the first cycle, before any workload model is
        // fitted) no workload can be tested, and at a traffic share of 1 it rarely fits the
        // quality budget.
        if config.workloads.enabled {
            proposals.retain(|p| {
                p.strategy != StrategyKind::ModelRouting
                    || p.scope.workload.is_some()
                    || p.scope.tag.is_some()
            });
        }
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
        // Adopted changes are watched in every mode: a change that stops holding goes.
        report.rolled_back = self.watch_adoptions(&records, now_ms)?;
        if config.mode == Mode::Observe {
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
        routing_winners.extend(self.refused_winners_to_offer(&config, now_ms));
        self.spend_quality_budget(routing_winners, &records, &config, now_ms, &mut report)?;
        report.decisions = decisions;

        // 3. Start experiments for the best untested proposals, within the limits.
        self.start_experiments(&proposals, &config, now_ms, &mut report)?;
        Ok(report)
    }

    /// The winners refused by the budget that may be offered again now: taken out of the
    /// refused set when the budget in use has fallen below its level at their refusal (they go
    /// back in if refused again), dropped once older than the look-back window or when their
    /// discovered workload no longer exists. Offering a winner later keeps the budget's claim:
    /// the union bound holds for every set of winners, whenever each joined (`adoption`).
    fn refused_winners_to_offer(
        &self,
        config: &OptimizerConfig,
        now_ms: i64,
    ) -> Vec<(EngineDecision, String)> {
        let workload_ids: Option<Vec<String>> =
            self.policy.current().policy.workloads.as_ref().map(|d| d.model.ids().to_vec());
        let mut state = lock(&self.state);
        let bound_now = quality_bound(&state.ledger);
        let mut offered = Vec::new();
        let ids: Vec<String> = state.refused.keys().cloned().collect();
        for id in ids {
            let Some(refused) = state.refused.get(&id) else { continue };
            let workload_gone = self.engine.show(&id).ok().is_some_and(|experiment| {
                experiment.spec.scope.cluster.as_ref().is_some_and(|workload| {
                    workload_ids.as_ref().is_some_and(|ids| !ids.contains(workload))
                })
            });
            if now_ms - refused.refused_ms > config.lookback_ms || workload_gone {
                state.refused.remove(&id);
            } else if bound_now < refused.bound_then - 1e-12
                && let Some(refused) = state.refused.remove(&id)
            {
                offered.push((refused.decision, refused.arm));
            }
        }
        offered
    }

    fn strategy_of(&self, experiment_id: &str) -> Option<StrategyKind> {
        lock(&self.state).experiments.get(experiment_id).map(|p| p.strategy)
    }

    fn change_of(&self, experiment_id: &str, arm: &str) -> Option<PolicyChange> {
        let experiment = self.engine.show(experiment_id).ok()?;
        experiment.spec.arms.iter().find(|a| a.name == arm).map(|a| a.change.clone())
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
