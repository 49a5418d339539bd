//! The quality budget across many per-scope routing adoptions, by simulation: does the true
//! total quality drop of the adopted set stay within `max_quality_drop` with probability
//! ≥ 1 − α, winner selection included?

use llmopt_core::Moments;
use llmopt_experiments::{
    Degradation, Experiment, ExperimentSpec, ExperimentStatus, Guardrail, GuardrailVerdict, Metric,
    PolicyChange, decision,
};
use llmopt_optimizer::cycle::{QualityDrop, quality_bound};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const ALPHA: f64 = 0.05;
const BUDGET: f64 = 0.05;
const EXPLORATION_MARGIN: f64 = 0.25;
const MIN_SAMPLES: u64 = 200;

/// One routing scope: its traffic share, quality on the strong model, true drop on the weak
/// one (absolute points), and its experiment.
struct ScopeState {
    share: f64,
    quality: f64,
    drop: f64,
    saving: f64,
    experiment: Experiment,
    /// Successes and trials per arm.
    counts: [(u64, u64); 2],
    done: bool,
}

fn moments(successes: u64, trials: u64) -> Moments {
    let mean = successes as f64 / trials as f64;
    Moments {
        count: trials,
        mean,
        m2: trials as f64 * mean * (1.0 - mean),
        min: if successes < trials { 0.0 } else { 1.0 },
        max: if successes > 0 { 1.0 } else { 0.0 },
    }
}

fn new_experiment(index: usize) -> Experiment {
    let mut spec = ExperimentSpec::ab(
        format!("route-{index}"),
        PolicyChange::default(),
        PolicyChange { model: Some("weak".into()), ..PolicyChange::default() },
        Metric::CostUsd,
        i64::MAX / 2,
    );
    spec.guardrails = vec![Guardrail {
        metric: Metric::Quality { name: "correct".into() },
        max_degradation: Degradation::Relative(EXPLORATION_MARGIN),
    }];
    spec.min_samples_per_arm = MIN_SAMPLES;
    spec.alpha = ALPHA;
    let mut experiment = Experiment::new(spec, 0);
    experiment.status = ExperimentStatus::Running;
    experiment
}

/// What one simulated model's routing campaign ended with, per rule.
struct Campaign {
    true_drop: [f64; 2],
    adopted: [usize; 2],
    winners: usize,
}

fn union_bound<'a>(drops: impl IntoIterator<Item = &'a QualityDrop>) -> f64 {
    drops.into_iter().map(|d| d.estimate + d.half_width).sum::<f64>().max(0.0)
}

/// `scopes` workloads of one model (shares ∝ 1/rank), a share `zero_share` of them with no
/// real drop, the rest with drops of 1–5 points (most) or 5–15 points; `per_cycle` requests
/// with feedback per cycle across the model, split evenly between arms within each scope.
#[derive(Clone, Copy)]
struct Scenario {
    scopes: usize,
    equal_shares: bool,
    /// Shares of scopes with no drop and with a large one (the rest: 1–5 points).
    zero: f64,
    large: f64,
    large_drop: (f64, f64),
    per_cycle: f64,
}

fn campaign(scenario: Scenario, cycles: usize, rng: &mut Xoshiro256PlusPlus) -> Campaign {
    let Scenario { scopes, equal_shares, zero, large, large_drop, per_cycle } = scenario;
    let harmonic: f64 = (1..=scopes).map(|rank| 1.0 / rank as f64).sum();
    let mut states: Vec<ScopeState> = (0..scopes)
        .map(|index| {
            let kind: f64 = rng.r#gen();
            let drop = if kind < zero {
                0.0
            } else if kind < 1.0 - large {
                rng.gen_range(0.01..0.05)
            } else {
                rng.gen_range(large_drop.0..large_drop.1)
            };
            ScopeState {
                share: if equal_shares {
                    1.0 / scopes as f64
                } else {
                    1.0 / (index + 1) as f64 / harmonic
                },
                quality: rng.gen_range(0.75..0.95),
                drop,
                saving: rng.gen_range(0.5..1.5),
                experiment: new_experiment(index),
                counts: [(0, 0); 2],
                done: false,
            }
        })
        .collect();
    let model_quality: f64 = states.iter().map(|s| s.share * s.quality).sum();
    let mut ledgers: [Vec<QualityDrop>; 2] = Default::default();
    let (mut true_drop, mut adopted, mut winners) = ([0.0; 2], [0; 2], 0);
    for _ in 0..cycles {
        let mut candidates = Vec::new();
        for (index, state) in states.iter_mut().enumerate() {
            if state.done {
                continue;
            }
            let per_arm = (state.share * per_cycle / 2.0).round() as u64;
            for (arm, rate) in [state.quality, state.quality - state.drop].into_iter().enumerate() {
                let successes = (0..per_arm).filter(|_| rng.r#gen::<f64>() < rate).count() as u64;
                state.counts[arm].0 += successes;
                state.counts[arm].1 += per_arm;
                let (s, n) = state.counts[arm];
                if n > 0 {
                    state.experiment.arms[arm].metrics[1].moments = moments(s, n);
                }
            }
            // The cost comparison of a routing change to a much cheaper model is decided as
            // soon as the minimum samples are in, so the quality guardrail decides.
            let check = &decision::check_guardrails(&state.experiment, 1)[0];
            match check.verdict {
                GuardrailVerdict::Breached => state.done = true,
                GuardrailVerdict::NonInferior => {
                    state.done = true;
                    let degradation = check.degradation.expect("interval");
                    candidates.push((index, degradation, check.control_mean));
                }
                _ => {}
            }
        }
        winners += candidates.len();
        for rule in 0..2 {
            // The optimizer's rule (`spend_quality_budget`).
            let mut effects: Vec<(usize, QualityDrop, f64)> = candidates
                .iter()
                .map(|&(index, degradation, _)| {
                    let share = states[index].share;
                    let experiment = &states[index].experiment;
                    let n = (experiment.arms[0].metrics[1].moments.count
                        + experiment.arms[1].metrics[1].moments.count)
                        as f64;
                    let half = (degradation.upper - degradation.estimate).max(0.0);
                    let half = if rule == 0 {
                        half
                    } else {
                        llmopt_experiments::stats::half_width_at_level(
                            half,
                            n,
                            ALPHA,
                            ALPHA * share,
                            5_000.0,
                        )
                    };
                    let effect = QualityDrop {
                        share,
                        estimate: share * degradation.estimate / model_quality,
                        half_width: share * half / model_quality,
                    };
                    (index, effect, states[index].saving * share)
                })
                .collect();
            effects.sort_by(|a, b| {
                let ratio = |c: &(usize, QualityDrop, f64)| {
                    let cost = c.1.estimate + c.1.half_width;
                    if cost <= 0.0 { f64::INFINITY } else { c.2 / cost }
                };
                ratio(b).total_cmp(&ratio(a))
            });
            for (index, effect, _) in effects {
                let ledger = &mut ledgers[rule];
                let after = if rule == 0 {
                    quality_bound(ledger.iter().chain(std::iter::once(&effect)))
                } else {
                    union_bound(ledger.iter().chain(std::iter::once(&effect)))
                };
                if after <= BUDGET {
                    ledger.push(effect);
                    adopted[rule] += 1;
                    true_drop[rule] += states[index].share * states[index].drop / model_quality;
                }
            }
        }
        if states.iter().all(|s| s.done) {
            break;
        }
    }
    Campaign { true_drop, adopted, winners }
}

fn run(scenario: Scenario, campaigns: usize, seed: u64) -> ([usize; 2], [f64; 2], f64, [f64; 2]) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut exceeded, mut adopted, mut winners, mut drop) = ([0; 2], [0.0; 2], 0.0, [0.0; 2]);
    for _ in 0..campaigns {
        let campaign = campaign(scenario, 60, &mut rng);
        for rule in 0..2 {
            exceeded[rule] += usize::from(campaign.true_drop[rule] > BUDGET);
            adopted[rule] += campaign.adopted[rule] as f64 / campaigns as f64;
            drop[rule] += campaign.true_drop[rule] / campaigns as f64;
        }
        winners += campaign.winners as f64;
    }
    let n = campaigns as f64;
    (exceeded, adopted, winners / n, drop)
}

#[test]
fn quality_budget_exploration() {
    for scopes in [10, 30, 100] {
        for equal_shares in [false, true] {
            for (zero, large, large_drop) in [
                (0.4, 0.2, (0.05, 0.15)),
                (0.2, 0.5, (0.05, 0.12)),
                (0.0, 1.0, (0.05, 0.0501)),
                (0.0, 1.0, (0.1, 0.1001)),
            ] {
                for per_cycle in [100.0 * scopes as f64, 400.0 * scopes as f64] {
                    let scenario =
                        Scenario { scopes, equal_shares, zero, large, large_drop, per_cycle };
                    let campaigns = 100;
                    let (exceeded, adopted, winners, drop) = run(scenario, campaigns, 1);
                    println!(
                        "{scopes} scopes equal {equal_shares} zero {zero} large {large} {large_drop:?} per cycle {per_cycle}: exceeded {exceeded:?}/{campaigns}, adopted {adopted:.1?} of {winners:.1} winners, mean true drop {drop:.4?}"
                    );
                }
            }
        }
    }
}
