//! Watching what was adopted: each adopted change keeps a holdout, its saving is measured
//! against that holdout, and its guardrails stay watched there, so a change that stops holding
//! is rolled back on its own.
//!
//! **Holdout.** An adoption's flag rolls the change out to `1 − holdout_share` of the units in
//! its scope, by the same stable hash as experiment assignment (seeded with the flag's name, so
//! it is independent of every other adoption's and experiment's split). The gateway tags each
//! record with the adoptions that applied to it and those that held it out
//! ([`llmopt_core::APPLIED_TAG`], [`llmopt_core::HELD_OUT_TAG`]), so both sides are read back
//! from the store exactly as they were served.
//!
//! **The comparison.** Each cycle, the records of the look-back window since the adoption are
//! replayed, in arrival order, into a two-arm [`Experiment`] (holdout as control, applied as
//! treatment, with the arms' real weights) carrying the original experiment's guardrails and
//! statistics (α, tuning, minimum samples) and cost as its primary metric: the same
//! anytime-valid confidence sequences that adopted the change decide whether it still holds.
//! A window rather than everything since adoption keeps old traffic from hiding a recent drift;
//! each cycle's look is still one more look, so over many cycles a false rollback is somewhat
//! more likely than α (a false rollback costs a saving, never quality).
//!
//! **Rollback** happens when a guardrail is breached (quality, errors, truncation, inexact cost
//! share, or the cost guardrail of a latency change), when a change adopted for its cost is
//! shown to cost more than its holdout, or when a change adopted for latency (hedging) is shown
//! to be slower. It removes the rules and the flag, writes an audit entry, counts a metric and
//! releases the quality budget the change held. An operator can do the same by hand
//! ([`Optimizer::roll_back`]). A rolled-back change is not tested again automatically.
//!
//! **Saving, measured once.** An adoption's saving is `holdout mean cost − applied mean cost`
//! per request as the cost sequence estimates it (inverse-probability weighted by the split;
//! priced records only, records of unknown cost excluded from both sides and counted), times
//! its applied requests per day over the span its records cover, with the sequence's
//! anytime-valid interval scaled the same way. Overlapping adoptions (a
//! response cache on a model and routing of one of its workloads) each compare records that
//! differ only in their own change, the other one applying on both sides alike because the
//! splits are independent: each is credited with its own marginal effect, no record's saving is
//! credited twice, and the interaction of two changes is credited to neither.

use llmopt_core::{AdoptionSide, RequestRecord, adoption_side};
use llmopt_experiments::{
    ArmSpec, Comparison, Degradation, Experiment, ExperimentSpec, GuardrailCheck, Metric,
    PolicyChange,
    decision::{GuardrailVerdict, Verdict, check_guardrails, compare_primary},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Adoption, Optimizer, OptimizerError, lock};

/// An adoption measured against its holdout on one cycle's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub at_ms: i64,
    /// The window the records cover: from the later of the adoption and the look-back start.
    pub from_ms: i64,
    pub applied_requests: u64,
    pub held_out_requests: u64,
    /// Records of unknown cost on either side: left out of the cost comparison.
    pub cost_unknown_excluded: u64,
    /// Mean cost per priced request on each side (USD).
    pub applied_cost_per_request: f64,
    pub held_out_cost_per_request: f64,
    /// `(holdout − applied mean cost) × applied requests per day`, the difference as the cost
    /// sequence estimates it (so it always lies in `saving_interval_usd_per_day`).
    pub saving_usd_per_day: f64,
    /// The anytime-valid interval of the saving at level 1 − α (`None` below two records a
    /// side or before the cost sequence has its bound).
    pub saving_interval_usd_per_day: Option<(f64, f64)>,
    /// Cost, applied against holdout.
    pub primary: Comparison,
    pub guardrails: Vec<GuardrailCheck>,
}

/// Why and when a change was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolledBack {
    pub at_ms: i64,
    /// `guardrail:<metric>`, `cost`, `latency` or `operator`.
    pub cause: String,
    pub reason: String,
}

/// The two-arm experiment an adoption is watched with: holdout (control) against applied
/// (treatment), cost primary, the original guardrails, and for a change adopted for something
/// other than cost (hedging, for latency), that metric as a guardrail allowing no loss.
fn monitor_spec(original: &ExperimentSpec, holdout_share: f64) -> ExperimentSpec {
    let mut spec = original.clone();
    spec.arms = vec![
        ArmSpec {
            name: "holdout".to_owned(),
            change: PolicyChange::default(),
            weight: holdout_share,
        },
        ArmSpec {
            name: "applied".to_owned(),
            change: PolicyChange::default(),
            weight: 1.0 - holdout_share,
        },
    ];
    if original.primary != Metric::CostUsd {
        spec.guardrails.push(llmopt_experiments::Guardrail {
            metric: original.primary.clone(),
            max_degradation: Degradation::Relative(0.0),
        });
        spec.primary = Metric::CostUsd;
    }
    spec
}

/// Replays the adoption's records of the window into its monitor.
fn measure(
    adoption: &Adoption,
    original: &ExperimentSpec,
    records: &[RequestRecord],
    now_ms: i64,
) -> Option<Measurement> {
    if adoption.holdout_share <= 0.0 {
        return None;
    }
    let flag = adoption.experiment_id.as_str();
    let mut monitor = Experiment::new(monitor_spec(original, adoption.holdout_share), now_ms);
    let tracked = monitor.spec.tracked_metrics();
    let mut first_ms = None;
    let mut cost_unknown = 0;
    for record in records.iter().filter(|r| r.ts_ms >= adoption.adopted_ms) {
        let arm = match adoption_side(record, flag) {
            Some(AdoptionSide::HeldOut) => 0,
            Some(AdoptionSide::Applied) => 1,
            None => continue,
        };
        first_ms.get_or_insert(record.ts_ms);
        cost_unknown += u64::from(record.cost.is_none());
        monitor.add_record(arm, record, &tracked);
    }
    let from_ms = first_ms?;
    let (held_out, applied) = (&monitor.arms[0], &monitor.arms[1]);
    if held_out.requests == 0 || applied.requests == 0 {
        return None;
    }
    let per_request = |arm: &llmopt_experiments::ArmState| {
        let priced = arm.requests.saturating_sub(arm.cost_unknown);
        if priced == 0 { 0.0 } else { arm.cost.as_usd_f64() / priced as f64 }
    };
    let (held_out_cost, applied_cost) = (per_request(held_out), per_request(applied));
    let span_days = ((now_ms - from_ms).max(60_000)) as f64 / 86_400_000.0;
    let applied_per_day = applied.requests as f64 / span_days;
    let primary = compare_primary(&monitor, 1);
    // `applied − holdout` per request, from the cost sequence (its estimate and its interval,
    // so the saving reported always lies in its interval); the saving is its negative. Before
    // the sequence has an interval, the plain difference of the two sides' means.
    let saving_per_request =
        primary.difference.map_or(held_out_cost - applied_cost, |d| -d.estimate);
    let saving_interval =
        primary.difference.map(|d| (-d.upper * applied_per_day, -d.lower * applied_per_day));
    Some(Measurement {
        at_ms: now_ms,
        from_ms,
        applied_requests: applied.requests,
        held_out_requests: held_out.requests,
        cost_unknown_excluded: cost_unknown,
        applied_cost_per_request: applied_cost,
        held_out_cost_per_request: held_out_cost,
        saving_usd_per_day: saving_per_request * applied_per_day,
        saving_interval_usd_per_day: saving_interval,
        guardrails: check_guardrails(&monitor, 1),
        primary,
    })
}

/// Whether a measurement says the change stopped holding: `(cause, reason)`.
fn breach(measurement: &Measurement, adopted_for_cost: bool) -> Option<(String, String)> {
    if let Some(check) =
        measurement.guardrails.iter().find(|g| g.verdict == GuardrailVerdict::Breached)
    {
        let interval = check
            .degradation
            .map(|d| {
                format!(" (degradation {:+.4} [{:+.4}, {:+.4}])", d.estimate, d.lower, d.upper)
            })
            .unwrap_or_default();
        return Some((
            format!("guardrail:{}", check.metric),
            format!(
                "{} breached against the holdout: allowed {:.4}{interval}, {} applied / {} held-out requests",
                check.metric, check.allowed_degradation, check.treatment_count, check.control_count
            ),
        ));
    }
    if adopted_for_cost && measurement.primary.verdict == Verdict::Worse {
        return Some((
            "cost".to_owned(),
            format!(
                "costs more than its holdout: {:.6} against {:.6} USD per request",
                measurement.applied_cost_per_request, measurement.held_out_cost_per_request
            ),
        ));
    }
    None
}

impl Optimizer {
    /// Measures every adoption in force against its holdout, rolls back those that stopped
    /// holding, and sets the loop's measured saving. Returns the experiment ids rolled back.
    pub(super) fn watch_adoptions(
        &self,
        records: &[RequestRecord],
        now_ms: i64,
    ) -> Result<Vec<String>, OptimizerError> {
        let adoptions = self.adoptions();
        let mut rolled_back = Vec::new();
        let mut measurements = Vec::new();
        for adoption in adoptions.iter().filter(|a| a.in_force()) {
            let Ok(experiment) = self.engine.show(&adoption.experiment_id) else { continue };
            let Some(measurement) = measure(adoption, &experiment.spec, records, now_ms) else {
                continue;
            };
            let adopted_for_cost = experiment.spec.primary == Metric::CostUsd;
            if let Some((cause, reason)) = breach(&measurement, adopted_for_cost) {
                self.roll_back_with(
                    &adoption.experiment_id,
                    &cause,
                    &reason,
                    Some(&measurement),
                    now_ms,
                )?;
                rolled_back.push(adoption.experiment_id.clone());
            }
            measurements.push((adoption.experiment_id.clone(), measurement));
        }
        let mut state = lock(&self.state);
        for (id, measurement) in measurements {
            if let Some(adoption) = state.adoptions.iter_mut().find(|a| a.experiment_id == id) {
                adoption.measured_saving_usd_per_day = Some(measurement.saving_usd_per_day);
                adoption.measured_requests =
                    measurement.applied_requests + measurement.held_out_requests;
                adoption.measurement = Some(measurement);
            }
        }
        state.metrics.cost_reduction_usd_per_day = state
            .adoptions
            .iter()
            .filter(|a| a.in_force())
            .filter_map(|a| a.measured_saving_usd_per_day)
            .sum();
        Ok(rolled_back)
    }

    /// Rolls an adopted change back by hand (`POST /api/adoptions/{id}/rollback`).
    pub fn roll_back(&self, experiment_id: &str, reason: &str) -> Result<Adoption, OptimizerError> {
        let now_ms = self.clock.now_ms();
        self.roll_back_with(experiment_id, "operator", reason, None, now_ms)
    }

    fn roll_back_with(
        &self,
        experiment_id: &str,
        cause: &str,
        reason: &str,
        measurement: Option<&Measurement>,
        now_ms: i64,
    ) -> Result<Adoption, OptimizerError> {
        let in_force = lock(&self.state)
            .adoptions
            .iter()
            .any(|a| a.experiment_id == experiment_id && a.in_force());
        if !in_force {
            return Err(OptimizerError::NoSuchAdoption(experiment_id.to_owned()));
        }
        self.policy.update(&format!("roll back {experiment_id}"), now_ms, |policy| {
            policy.rules.retain(|rule| rule.flag.as_deref() != Some(experiment_id));
            policy.flags.remove(experiment_id);
        })?;
        let record =
            RolledBack { at_ms: now_ms, cause: cause.to_owned(), reason: reason.to_owned() };
        self.audit_entry(
            now_ms,
            "rolled_back",
            experiment_id,
            json!({"rolled_back": record, "measurement": measurement}),
        )?;
        let mut state = lock(&self.state);
        let adoption = state
            .adoptions
            .iter_mut()
            .find(|a| a.experiment_id == experiment_id && a.in_force())
            .ok_or_else(|| OptimizerError::NoSuchAdoption(experiment_id.to_owned()))?;
        adoption.rolled_back = Some(record);
        let released = adoption.quality_drop;
        let adoption = adoption.clone();
        if let Some(drop) = released
            && let Some(index) = state.ledger.iter().position(|d| *d == drop)
        {
            state.ledger.remove(index);
        }
        *state.metrics.rollbacks.entry(cause.to_owned()).or_default() += 1;
        Ok(adoption)
    }
}
