//! Turning accumulators into decisions: keep running, adopt a treatment, reject, or stop an arm,
//! each with the numbers behind it. Pure over an [`Experiment`]; the engine persists the result.
//!
//! Rules, checked at every evaluation (all intervals are anytime-valid, so looking often is
//! fine; cost per call uses the bounded sequence of [`crate::stats::bounded`], every other
//! metric the normal mixture of [`crate::stats`]):
//! 1. **Guardrails first.** For each active treatment and guardrail, the degradation
//!    (treatment worse than control, in the metric's units) gets a (1 − α) confidence sequence.
//!    Its lower bound above the allowed degradation is a breach: the arm is stopped at once.
//!    Its upper bound below the allowed degradation shows non-inferiority.
//! 2. **Primary.** Each active treatment is compared with the control at α / (number of
//!    treatments) (Bonferroni). A treatment significantly worse is stopped.
//! 3. **Adopt** the treatment with the largest improvement among those significantly better on
//!    the primary metric whose every guardrail shows non-inferiority.
//! 4. **Reject** when no treatment is left, or at the maximum duration / sample size without
//!    an adoptable treatment.
//!
//! No adoption, rejection or breach before both arms have `min_samples_per_arm` observations
//! of the metric in question: the intervals are asymptotic and need a few observations to be
//! trusted. A guardrail that never gets data (quality feedback that never arrives) therefore
//! blocks adoption: the experiment ends rejected at its limit rather than adopt unchecked.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::{
    assignment::fnv1a_32,
    cost,
    experiment::{ArmStatus, Experiment, ExperimentStatus, Outcome},
    spec::{Allocation, Metric},
    stats::{self, ArmSummary, Interval},
};

/// Draws per Thompson-sampling evaluation: enough for shares to ±1 percentage point.
const THOMPSON_DRAWS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TooFewSamples,
    Inconclusive,
    Better,
    Worse,
}

/// One treatment against the control on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub arm: String,
    pub metric: String,
    pub control_count: u64,
    pub control_mean: f64,
    pub treatment_count: u64,
    pub treatment_mean: f64,
    /// `treatment − control` with its anytime-valid interval (absent below two samples per arm).
    pub difference: Option<Interval>,
    /// The difference and its bounds divided by the control mean (−0.10 is 10 % lower). For
    /// reading: it treats the control mean as known; decisions use the absolute interval.
    pub relative_difference: Option<Interval>,
    pub alpha: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailVerdict {
    TooFewSamples,
    Inconclusive,
    NonInferior,
    Breached,
}

/// One treatment's guardrail check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailCheck {
    pub arm: String,
    pub metric: String,
    pub control_count: u64,
    pub control_mean: f64,
    pub treatment_count: u64,
    pub treatment_mean: f64,
    /// The allowed degradation in the metric's units at this moment.
    pub allowed_degradation: f64,
    /// How much worse the treatment is (positive = worse), with its interval.
    pub degradation: Option<Interval>,
    pub alpha: f64,
    pub verdict: GuardrailVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    Guardrail { metric: String },
    WorseOnPrimary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Continue,
    /// Make this arm's change the policy; the experiment is concluded.
    Adopt {
        arm: String,
    },
    /// Keep the control; the experiment is concluded.
    Reject,
    /// Stop sending traffic to this arm at once.
    StopArm {
        arm: String,
        cause: StopCause,
    },
}

/// What the engine decided about one experiment at one moment, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub experiment_id: String,
    pub at_ms: i64,
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
    pub primary: Vec<Comparison>,
    pub guardrails: Vec<GuardrailCheck>,
    /// Traffic weights per arm after this evaluation.
    pub weights: Vec<(String, f64)>,
}

fn summary_of(experiment: &Experiment, arm_index: usize, metric_key: &str) -> ArmSummary {
    experiment.arms[arm_index].moments(metric_key).map(ArmSummary::from_moments).unwrap_or_default()
}

fn relative(interval: &Interval, control_mean: f64) -> Option<Interval> {
    (control_mean.abs() > f64::EPSILON).then(|| Interval {
        estimate: interval.estimate / control_mean,
        lower: interval.lower / control_mean,
        upper: interval.upper / control_mean,
    })
}

/// The primary comparison of treatment `arm_index` against the control.
pub fn compare_primary(experiment: &Experiment, arm_index: usize) -> Comparison {
    let spec = &experiment.spec;
    let metric = &spec.primary;
    let key = metric.key();
    let treatments = (spec.arms.len() - 1).max(1) as f64;
    let alpha = spec.alpha / treatments;
    let control = summary_of(experiment, 0, &key);
    let treatment = summary_of(experiment, arm_index, &key);
    let rho = stats::mixture_rho(alpha, spec.tuning_samples as f64);
    let difference = if *metric == Metric::CostUsd {
        cost::difference(experiment, arm_index, alpha)
    } else {
        stats::sequential_difference(&control, &treatment, metric.value_kind(), alpha, rho)
    };
    let enough = control.count >= spec.min_samples_per_arm as f64
        && treatment.count >= spec.min_samples_per_arm as f64;
    let verdict = match difference {
        Some(interval) if enough => {
            let improved =
                if metric.lower_is_better() { interval.upper < 0.0 } else { interval.lower > 0.0 };
            let worsened =
                if metric.lower_is_better() { interval.lower > 0.0 } else { interval.upper < 0.0 };
            if improved {
                Verdict::Better
            } else if worsened {
                Verdict::Worse
            } else {
                Verdict::Inconclusive
            }
        }
        _ => Verdict::TooFewSamples,
    };
    Comparison {
        arm: experiment.arms[arm_index].name.clone(),
        metric: key,
        control_count: control.count as u64,
        control_mean: control.mean,
        treatment_count: treatment.count as u64,
        treatment_mean: treatment.mean,
        difference,
        relative_difference: difference.as_ref().and_then(|d| relative(d, control.mean)),
        alpha,
        verdict,
    }
}

/// Every guardrail of treatment `arm_index`.
pub fn check_guardrails(experiment: &Experiment, arm_index: usize) -> Vec<GuardrailCheck> {
    let spec = &experiment.spec;
    let rho = stats::mixture_rho(spec.alpha, spec.tuning_samples as f64);
    spec.guardrails
        .iter()
        .map(|guardrail| {
            let metric: &Metric = &guardrail.metric;
            let key = metric.key();
            let control = summary_of(experiment, 0, &key);
            let treatment = summary_of(experiment, arm_index, &key);
            let allowed = guardrail.max_degradation.margin(control.mean);
            let difference = if *metric == Metric::CostUsd {
                cost::difference(experiment, arm_index, spec.alpha)
            } else {
                stats::sequential_difference(
                    &control,
                    &treatment,
                    metric.value_kind(),
                    spec.alpha,
                    rho,
                )
            };
            let degradation = difference.map(|d| {
                if metric.lower_is_better() {
                    d
                } else {
                    Interval { estimate: -d.estimate, lower: -d.upper, upper: -d.lower }
                }
            });
            let enough = control.count >= spec.min_samples_per_arm as f64
                && treatment.count >= spec.min_samples_per_arm as f64;
            let verdict = match degradation {
                Some(interval) if enough => {
                    if interval.lower > allowed {
                        GuardrailVerdict::Breached
                    } else if interval.upper < allowed {
                        GuardrailVerdict::NonInferior
                    } else {
                        GuardrailVerdict::Inconclusive
                    }
                }
                _ => GuardrailVerdict::TooFewSamples,
            };
            GuardrailCheck {
                arm: experiment.arms[arm_index].name.clone(),
                metric: key,
                control_count: control.count as u64,
                control_mean: control.mean,
                treatment_count: treatment.count as u64,
                treatment_mean: treatment.mean,
                allowed_degradation: allowed,
                degradation,
                alpha: spec.alpha,
                verdict,
            }
        })
        .collect()
}

fn describe_interval(interval: &Option<Interval>) -> String {
    match interval {
        Some(i) => format!("{:+.4} [{:+.4}, {:+.4}]", i.estimate, i.lower, i.upper),
        None => "n/a".to_owned(),
    }
}

/// Evaluates a running experiment at `now_ms` and applies the outcome to it (arm stops,
/// conclusion, Thompson weights). Returns the decisions in the order they were taken; the last
/// one is always the experiment-level verdict (continue, adopt or reject). Experiments that are
/// not running are left alone and yield nothing.
pub fn evaluate(experiment: &mut Experiment, now_ms: i64) -> Vec<Decision> {
    if experiment.status != ExperimentStatus::Running {
        return Vec::new();
    }
    experiment.evaluations += 1;
    let mut decisions = Vec::new();
    let treatments: Vec<usize> =
        (1..experiment.arms.len()).filter(|&index| experiment.arms[index].is_active()).collect();

    let mut primary = Vec::new();
    let mut guardrails = Vec::new();
    for &arm_index in &treatments {
        primary.push(compare_primary(experiment, arm_index));
        guardrails.extend(check_guardrails(experiment, arm_index));
    }

    // 1 and 2: stop arms that breach a guardrail or are clearly worse.
    for &arm_index in &treatments {
        let arm_name = experiment.arms[arm_index].name.clone();
        let breach = guardrails
            .iter()
            .find(|check| check.arm == arm_name && check.verdict == GuardrailVerdict::Breached);
        let worse = primary.iter().any(|c| c.arm == arm_name && c.verdict == Verdict::Worse);
        let stop = match breach {
            Some(check) => Some((
                StopCause::Guardrail { metric: check.metric.clone() },
                format!(
                    "guardrail {} breached: degradation {} exceeds the allowed {:.4}",
                    check.metric,
                    describe_interval(&check.degradation),
                    check.allowed_degradation
                ),
            )),
            None if worse => Some((
                StopCause::WorseOnPrimary,
                format!("significantly worse on {}", experiment.spec.primary.key()),
            )),
            None => None,
        };
        if let Some((cause, reason)) = stop {
            experiment.arms[arm_index].status =
                ArmStatus::Stopped { reason: reason.clone(), at_ms: now_ms };
            experiment.arms[arm_index].weight = 0.0;
            experiment.log(now_ms, format!("arm {arm_name} stopped: {reason}"));
            decisions.push(Decision {
                experiment_id: experiment.id().to_owned(),
                at_ms: now_ms,
                action: Action::StopArm { arm: arm_name, cause },
                reason,
                primary: primary.clone(),
                guardrails: guardrails.clone(),
                weights: Vec::new(),
            });
        }
    }

    let active: Vec<usize> =
        (1..experiment.arms.len()).filter(|&index| experiment.arms[index].is_active()).collect();
    let adoptable = primary
        .iter()
        .filter(|comparison| {
            comparison.verdict == Verdict::Better
                && active.iter().any(|&index| experiment.arms[index].name == comparison.arm)
                && guardrails
                    .iter()
                    .filter(|check| check.arm == comparison.arm)
                    .all(|check| check.verdict == GuardrailVerdict::NonInferior)
        })
        .max_by(|left, right| {
            let gain = |c: &Comparison| {
                let estimate = c.relative_difference.map_or(0.0, |r| r.estimate);
                if experiment.spec.primary.lower_is_better() { -estimate } else { estimate }
            };
            gain(left).total_cmp(&gain(right))
        })
        .cloned();

    let spec = &experiment.spec;
    let primary_key = spec.primary.key();
    let out_of_time =
        experiment.started_ms.is_some_and(|start| now_ms >= start + spec.max_duration_ms);
    let out_of_samples = spec.max_samples_per_arm.is_some_and(|max| {
        std::iter::once(0).chain(active.iter().copied()).all(|index| {
            experiment.arms[index].moments(&primary_key).is_some_and(|m| m.count >= max)
        })
    });

    let (action, reason) = if let Some(winner) = &adoptable {
        (
            Action::Adopt { arm: winner.arm.clone() },
            format!(
                "{} changes {} by {} (relative {}), every guardrail non-inferior",
                winner.arm,
                winner.metric,
                describe_interval(&winner.difference),
                describe_interval(&winner.relative_difference)
            ),
        )
    } else if active.is_empty() {
        (Action::Reject, "every treatment was stopped".to_owned())
    } else if out_of_time || out_of_samples {
        let limit = if out_of_time { "maximum duration" } else { "maximum sample size" };
        let verdicts: Vec<String> = primary
            .iter()
            .map(|comparison| {
                let unproven = guardrails
                    .iter()
                    .filter(|check| {
                        check.arm == comparison.arm
                            && check.verdict != GuardrailVerdict::NonInferior
                    })
                    .map(|check| check.metric.as_str())
                    .collect::<Vec<_>>();
                format!(
                    "{}: primary {:?}, guardrails not shown within allowance: [{}]",
                    comparison.arm,
                    comparison.verdict,
                    unproven.join(", ")
                )
            })
            .collect();
        (
            Action::Reject,
            format!("{limit} reached without a treatment to adopt ({})", verdicts.join("; ")),
        )
    } else {
        (Action::Continue, "not enough evidence yet".to_owned())
    };

    match &action {
        Action::Adopt { arm } => {
            experiment.status = ExperimentStatus::Concluded {
                outcome: Outcome::Adopted { arm: arm.clone() },
                reason: reason.clone(),
                at_ms: now_ms,
            };
            experiment.log(now_ms, format!("adopted {arm}: {reason}"));
        }
        Action::Reject => {
            experiment.status = ExperimentStatus::Concluded {
                outcome: Outcome::Rejected,
                reason: reason.clone(),
                at_ms: now_ms,
            };
            experiment.log(now_ms, format!("rejected: {reason}"));
        }
        Action::Continue | Action::StopArm { .. } => {
            if let Allocation::Thompson { min_share } = experiment.spec.allocation {
                update_thompson_weights(experiment, min_share);
            }
        }
    }
    let weights = experiment.arms.iter().map(|arm| (arm.name.clone(), arm.weight)).collect();
    let decision = Decision {
        experiment_id: experiment.id().to_owned(),
        at_ms: now_ms,
        action,
        reason,
        primary,
        guardrails,
        weights,
    };
    experiment.record_decision(decision.clone());
    experiment.updated_ms = now_ms;
    decisions.push(decision);
    decisions
}

/// Recomputes multi-arm weights over the active arms (the control included). Seeded from the
/// experiment id and the evaluation count, so a replay gives the same split.
fn update_thompson_weights(experiment: &mut Experiment, min_share: f64) {
    let key = experiment.spec.primary.key();
    let active: Vec<usize> = (0..experiment.arms.len())
        .filter(|&index| index == 0 || experiment.arms[index].is_active())
        .collect();
    let summaries: Vec<ArmSummary> =
        active.iter().map(|&index| summary_of(experiment, index, &key)).collect();
    let seed = u64::from(fnv1a_32(&[experiment.id().as_bytes()])) << 32 ^ experiment.evaluations;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let weights = stats::thompson_weights(
        &summaries,
        experiment.spec.primary.lower_is_better(),
        min_share,
        THOMPSON_DRAWS,
        &mut rng,
    );
    for (arm_index, arm) in experiment.arms.iter_mut().enumerate() {
        arm.weight =
            active.iter().position(|&index| index == arm_index).map_or(0.0, |slot| weights[slot]);
    }
}
