//! The cost metric's comparison, fed record by record: the design of each record (bound,
//! centre, assignment probabilities) read from the experiment before the record is counted, and
//! one [`BoundedDifference`] per treatment arm. The method and its guarantees are in
//! [`crate::stats::bounded`].

use crate::{
    experiment::Experiment,
    spec::Metric,
    stats::{
        Interval,
        bounded::{BoundedDifference, Design, FALLBACK_BOUND_FACTOR, Side, Tuning},
    },
};
use llmopt_core::Moments;

/// How the bets are tuned: for the primary test's level (α split across treatments) when cost
/// is the primary metric, the guardrails' α otherwise, and for the spec's tuning size. Any
/// predictable bet is valid; this only decides where the sequence is tightest.
fn bet_tuning(experiment: &Experiment) -> Tuning {
    let spec = &experiment.spec;
    let alpha = if spec.primary == Metric::CostUsd {
        spec.alpha / (spec.arms.len() - 1).max(1) as f64
    } else {
        spec.alpha
    };
    Tuning { alpha, samples: spec.tuning_samples as f64 }
}

/// Counts a record's cost (USD) in every active treatment's sequence. Call before the record
/// enters the arms' moments: the bound and the centre must not depend on it.
pub(crate) fn observe(experiment: &mut Experiment, arm_index: usize, cost: f64) {
    if !cost.is_finite() || !experiment.arms.get(arm_index).is_some_and(|arm| arm.is_active()) {
        return;
    }
    let key = Metric::CostUsd.key();
    let mut seen = Moments::new();
    for arm in &experiment.arms {
        if let Some(moments) = arm.moments(&key) {
            seen.merge(moments);
        }
    }
    let bound = match experiment.spec.cost_bound_usd {
        Some(bound) => bound,
        None if seen.count > 0 => FALLBACK_BOUND_FACTOR * seen.max,
        None => return,
    };
    let centre = if seen.count > 0 { seen.mean } else { 0.0 };
    let total_weight: f64 =
        experiment.arms.iter().filter(|arm| arm.is_active()).map(|arm| arm.weight).sum();
    if total_weight.is_nan() || total_weight <= 0.0 {
        return;
    }
    let tuning = bet_tuning(experiment);
    let control_probability = experiment.arms[0].weight / total_weight;
    for index in 1..experiment.arms.len() {
        let arm = &mut experiment.arms[index];
        if !arm.is_active() {
            continue;
        }
        let design = Design {
            bound,
            centre,
            control_probability,
            treatment_probability: arm.weight / total_weight,
        };
        let side = if index == arm_index {
            Side::Treatment
        } else if arm_index == 0 {
            Side::Control
        } else {
            Side::Other
        };
        arm.cost_sequence
            .get_or_insert_with(BoundedDifference::default)
            .observe(&design, cost, side, tuning);
    }
}

/// The anytime-valid interval for `treatment − control` mean cost at level `alpha`.
pub(crate) fn difference(
    experiment: &Experiment,
    arm_index: usize,
    alpha: f64,
) -> Option<Interval> {
    experiment.arms.get(arm_index)?.cost_sequence.as_ref()?.interval(alpha)
}
