//! Adopting winners into the live policy: the quality budget of routing changes, approvals in
//! mode `experiment`, the policy rules an adoption writes, and the saving measured on the
//! records served under each adoption.
//!
//! **Model routing and the quality budget.** Routing a workload to a cheaper model changes
//! answers. Requiring every workload to keep 95 % of its own quality would only ever route the
//! workloads where the cheap model is as good; what users want is 95 % of the quality of the
//! whole model's traffic. So routing experiments run with a wide exploration guardrail (which
//! stops workloads whose quality collapses), and adoption spends a global budget.
//!
//! The claim: with probability at least 1 − α (α = the experiments' `alpha`), the true total
//! relative quality drop of every routing change adopted for a model, `Σ_{s∈A} w_s·δ_s/Q`, is
//! at most `max_quality_drop`, however the adopted set `A` was chosen. Here `w_s` is workload
//! `s`'s share of the model's traffic, `δ_s` its true quality drop under the cheaper model and
//! `Q` the model's mean quality. The method:
//! - Each routing experiment's quality guardrail is a normal-mixture confidence sequence,
//!   valid at every sample size at once (asymptotically: it plugs in the variance), so it also
//!   holds at the moment the experiment stops (experiments stop when they look good: that
//!   selection in time is covered). Its two-sided interval at level `a` has each side wrong
//!   with probability at most `a`.
//! - Workload `s` gets the level `α·w_s` ([`QualityDrop::of_winner`] re-computes the
//!   guardrail's upper bound `u_s = d̂_s + h_s` at that level from its sample size and tuning).
//!   Disjoint workloads' shares add up to at most 1, so by the union (Bonferroni) bound, with
//!   probability ≥ 1 − α every workload's `δ_s ≤ u_s` at once, for as many workloads as are
//!   ever tested, and big workloads (which weigh most in the total) get the tightest bounds.
//! - On that event `Σ_{s∈A} w_s·δ_s ≤ Σ_{s∈A} w_s·u_s` for every set `A`, so the budget rule
//!   [`quality_bound`] adds the weighted upper bounds **linearly**, and a winner is adopted
//!   only when that sum, with it included, stays within `max_quality_drop`. Winners of one
//!   cycle are taken in order of saving per unit of budget, and the rest are not adopted, with
//!   the reason logged. Choosing winners by their estimates is selection; the union bound is
//!   what makes the claim hold anyway.
//!
//! The rule used before added the half-widths in quadrature (`Σ w_s·d̂_s/Q + sqrt(Σ
//! (w_s·h_s/Q)²)`), which is right for a fixed set of independent estimates but not for a set
//! chosen because its estimates were low: with many similar workloads the adopted ones are
//! those whose drops were underestimated, their errors add up linearly, and the simulation
//! (`tests/it/quality_budget.rs`, `crates/llmopt-experiments/SIMULATIONS.md`) exceeded the
//! budget in up to 88 % of campaigns. The union bound never did, at the price of adopting
//! fewer workloads. Limits: a workload tested again (a new experiment on traffic whose
//! winner was already judged) spends α again; `Q` and `w_s` are measured on the lookback
//! window and treated as known.
//!
//! Winners the budget refuses are kept and offered again once a rollback has brought the
//! adopted set's bound below where it stood at their refusal (for as long as the look-back
//! window, and while their workload exists): the union bound covers every set, so a winner
//! joining later keeps the claim.

use llmopt_core::{RequestRecord, ScopeFilter};
use llmopt_experiments::{
    GuardrailCheck, PolicyChange, assignment::Scope as ExperimentScope,
    decision::Decision as EngineDecision, stats,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{CycleReport, Mode, Optimizer, OptimizerConfig, OptimizerError, lock};
use crate::{
    policy::{Action, FeatureFlag, FlagConditions, Rule, Scope},
    strategy::StrategyKind,
};

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
    /// Share of the scope's units held out of it (on the policy before it), the comparison
    /// its saving and guardrails are measured against. 0 for adoptions made without one.
    #[serde(default)]
    pub holdout_share: f64,
    /// Saving per day measured against the holdout (see [`super::watch`]); `None` until both
    /// sides have records, and for adoptions without a holdout.
    pub measured_saving_usd_per_day: Option<f64>,
    /// Requests counted for the measurement (both sides).
    pub measured_requests: u64,
    /// The latest measurement against the holdout, with its interval and guardrails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<super::watch::Measurement>,
    /// Set when the change was rolled back (by a breached guardrail or by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<super::watch::RolledBack>,
}

impl Adoption {
    /// Whether its rules are still in the policy.
    pub fn in_force(&self) -> bool {
        self.rolled_back.is_none()
    }
}

/// A routing change's effect on the model's relative quality: estimate and anytime-valid
/// half-width at the level `α·share` (see the module documentation), both already multiplied
/// by the workload's traffic share and divided by the model's mean quality.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityDrop {
    pub share: f64,
    pub estimate: f64,
    pub half_width: f64,
}

impl QualityDrop {
    /// The effect of a routing winner whose quality guardrail reads `check`: the workload has
    /// `share` of the model's traffic, the model's mean quality is `reference_quality`, and the
    /// experiment's sequences were tuned for `tuning_samples`. The guardrail's interval was
    /// computed at the experiment's α; its half-width is moved to the level `α·share`. Without
    /// a quality interval the effect is not measured (NaN) and is never adopted.
    pub fn of_winner(
        share: f64,
        check: Option<&GuardrailCheck>,
        tuning_samples: u64,
        reference_quality: f64,
    ) -> QualityDrop {
        let Some((degradation, check)) = check.and_then(|c| c.degradation.map(|d| (d, c))) else {
            return QualityDrop { share, estimate: f64::NAN, half_width: f64::NAN };
        };
        if share.is_nan() || share <= 0.0 {
            return QualityDrop { share, estimate: 0.0, half_width: 0.0 };
        }
        let samples = (check.control_count + check.treatment_count) as f64;
        let half = (degradation.upper - degradation.estimate).max(0.0);
        let level = check.alpha * share.min(1.0);
        let half =
            stats::half_width_at_level(half, samples, check.alpha, level, tuning_samples as f64);
        let reference = reference_quality.max(1e-9);
        QualityDrop {
            share,
            estimate: share * degradation.estimate / reference,
            half_width: share * half / reference,
        }
    }

    /// The order in which one cycle's winners are offered to the budget: best saving per unit
    /// of budget first (`saving / (estimate + half-width)`), free ones first of all. Each
    /// candidate is its effect and its saving.
    pub fn budget_order(candidates: &[(QualityDrop, f64)]) -> Vec<usize> {
        let ratio = |(effect, saving): &(QualityDrop, f64)| {
            let cost = effect.estimate + effect.half_width;
            if cost <= 0.0 { f64::INFINITY } else { saving / cost }
        };
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| ratio(&candidates[b]).total_cmp(&ratio(&candidates[a])));
        order
    }
}

/// The bound on the total relative quality drop of a set of routing changes: the sum of their
/// weighted upper bounds, valid for any set chosen from the workloads tested (see the module
/// documentation). Never below zero.
pub fn quality_bound<'a>(drops: impl IntoIterator<Item = &'a QualityDrop>) -> f64 {
    drops.into_iter().map(|drop| drop.estimate + drop.half_width).sum::<f64>().max(0.0)
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

/// A policy scope as an experiment scope.
pub fn experiment_scope(scope: &Scope) -> ExperimentScope {
    ExperimentScope {
        model: scope.model.clone(),
        tenant: scope.tenant.clone(),
        tag: scope.tag.clone(),
        cluster: scope.workload.clone(),
    }
}

fn policy_scope(scope: &ExperimentScope) -> Scope {
    Scope {
        model: scope.model.clone(),
        tenant: scope.tenant.clone(),
        tag: scope.tag.clone(),
        endpoint: None,
        workload: scope.cluster.clone(),
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
    if let Some(ttl) = change.prompt_cache {
        actions.push(("prompt_cache", Action::PromptCache { ttl }));
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

impl Optimizer {
    /// Adopts routing winners in order of saving per unit of quality budget while it lasts.
    pub(super) fn spend_quality_budget(
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
            let model_only =
                ScopeFilter { model: scope.model.as_deref(), ..ScopeFilter::default() };
            let of_model: Vec<&RequestRecord> =
                records.iter().filter(|r| model_only.matches_record(r)).collect();
            let in_scope = of_model.iter().filter(|r| scope.matches_record(r)).count();
            let share = in_scope as f64 / of_model.len().max(1) as f64;
            let quality = decision
                .guardrails
                .iter()
                .find(|g| g.arm == arm && g.metric == format!("quality:{quality_metric}"));
            let model_quality: llmopt_core::Moments =
                of_model.iter().filter_map(|r| r.feedback_value(quality_metric)).collect();
            let reference_quality = if model_quality.count > 0 {
                model_quality.mean
            } else {
                quality.map_or(0.0, |c| c.control_mean)
            };
            let effect = QualityDrop::of_winner(
                share,
                quality,
                experiment.spec.tuning_samples,
                reference_quality,
            );
            let saving = decision
                .primary
                .iter()
                .find(|c| c.arm == arm)
                .map_or(0.0, |c| c.control_mean - c.treatment_mean);
            candidates.push((decision, arm, effect, saving * share));
        }
        // Best saving per unit of budget first; free ones (no measurable drop) first of all.
        let order =
            QualityDrop::budget_order(&candidates.iter().map(|c| (c.2, c.3)).collect::<Vec<_>>());
        let mut candidates: Vec<Option<_>> = candidates.into_iter().map(Some).collect();
        for (decision, arm, effect, _) in order.into_iter().filter_map(|i| candidates[i].take()) {
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
                if measured {
                    lock(&self.state).refused.insert(
                        decision.experiment_id.clone(),
                        super::RefusedWinner {
                            decision: decision.clone(),
                            arm: arm.clone(),
                            refused_ms: now_ms,
                            bound_then: before,
                        },
                    );
                }
                report.not_adopted.push((decision.experiment_id.clone(), reason));
            }
        }
        Ok(())
    }

    pub(super) fn hold_for_approval(
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

    pub(super) fn adopt(
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
        let (ttl, holdout_share) =
            self.with_config(|config| (config.settings.cache_ttl_seconds, config.holdout_share));
        let rules = rules_for(&decision.experiment_id, &scope, &change, ttl);
        let flag_name = decision.experiment_id.clone();
        self.policy.update(&format!("adopt {}", decision.experiment_id), now_ms, |policy| {
            policy.flags.insert(
                flag_name.clone(),
                FeatureFlag {
                    enabled: true,
                    // The holdout: units outside the rollout stay on the policy before it.
                    rollout_percent: 100.0 * (1.0 - holdout_share),
                    conditions: FlagConditions::default(),
                },
            );
            policy.rules.retain(|rule| rule.flag.as_deref() != Some(flag_name.as_str()));
            // Newest adoptions first: they were proven against the policy before them.
            policy.rules.splice(0..0, rules.clone());
        })?;
        let comparison = decision.primary.iter().find(|c| c.arm == arm);
        let proposal = lock(&self.state).experiments.get(&decision.experiment_id).cloned();
        // Per request with a known cost (incomplete ones at their lower bound), as the cost
        // metric counts them: unknown costs are neither zero nor in the denominator.
        let costs = experiment
            .arms
            .iter()
            .map(|a| {
                let priced = a.requests.saturating_sub(a.cost_unknown);
                if priced == 0 { 0.0 } else { a.cost.as_usd_f64() / priced as f64 }
            })
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
            holdout_share,
            measured_saving_usd_per_day: None,
            measured_requests: 0,
            measurement: None,
            rolled_back: None,
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
}
