//! The routing effect on the held-out prompts, with intervals from the requests themselves.
//!
//! Both measured phases send the same held-out prompts in the same order, once with the adopted
//! changes switched off (the baseline: every call served as asked) and once with them on, so
//! each prompt gives a pair of outcomes. The intervals are a paired percentile bootstrap over
//! prompts: resample prompts with replacement, recompute each figure on the resample, take the
//! 2.5th and 97.5th percentiles. Ratios (quality, cost) are ratios of sums over the resample.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2_000;

/// A figure and its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// One held-out prompt's two outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub baseline_correct: bool,
    pub baseline_cost_usd: f64,
    pub after_correct: bool,
    pub after_cost_usd: f64,
    /// The after phase served it with the weak model.
    pub after_weak: bool,
}

/// The routing figures of RouteLLM's measure, on prompts the optimizer never saw labels of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoutingEffect {
    /// Share of calls the after phase served with the weak model.
    pub strong_calls_avoided: f64,
    /// After-phase correct answers ÷ baseline correct answers (the baseline is all strong).
    pub quality_vs_strong: f64,
    /// 1 − after cost ÷ baseline cost.
    pub cost_saving: f64,
    /// 95 % paired bootstrap intervals (`[low, high]`) of the three figures above.
    pub ci95: RoutingIntervals,
    pub prompts: usize,
    /// The prompts were held out: the optimizer never received their labels.
    pub held_out: bool,
    /// Requests carried the subject tag (`--tags`); otherwise workloads were discovered from
    /// the prompts' content.
    pub tags_used: bool,
}

/// `[low, high]` of each routing figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoutingIntervals {
    pub strong_calls_avoided: [f64; 2],
    pub quality_vs_strong: [f64; 2],
    pub cost_saving: [f64; 2],
}

impl RoutingEffect {
    pub fn strong_calls_avoided(&self) -> Interval {
        Interval::of(self.strong_calls_avoided, self.ci95.strong_calls_avoided)
    }

    pub fn quality_vs_strong(&self) -> Interval {
        Interval::of(self.quality_vs_strong, self.ci95.quality_vs_strong)
    }

    pub fn cost_saving(&self) -> Interval {
        Interval::of(self.cost_saving, self.ci95.cost_saving)
    }
}

impl Interval {
    fn of(estimate: f64, [low, high]: [f64; 2]) -> Interval {
        Interval { estimate, low, high }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    weak: f64,
    baseline_correct: f64,
    after_correct: f64,
    baseline_cost: f64,
    after_cost: f64,
}

impl Sums {
    fn add(&mut self, pair: &Pair) {
        self.n += 1.0;
        self.weak += f64::from(u8::from(pair.after_weak));
        self.baseline_correct += f64::from(u8::from(pair.baseline_correct));
        self.after_correct += f64::from(u8::from(pair.after_correct));
        self.baseline_cost += pair.baseline_cost_usd;
        self.after_cost += pair.after_cost_usd;
    }

    fn figures(&self) -> [f64; 3] {
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        [
            ratio(self.weak, self.n),
            ratio(self.after_correct, self.baseline_correct),
            1.0 - ratio(self.after_cost, self.baseline_cost),
        ]
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    llmopt_core::store::quantile_sorted(sorted, q)
}

/// The routing effect with paired bootstrap intervals (seeded, so a run is reproducible).
pub fn routing_effect(pairs: &[Pair], held_out: bool, tags_used: bool, seed: u64) -> RoutingEffect {
    let mut all = Sums::default();
    for pair in pairs {
        all.add(pair);
    }
    let estimates = all.figures();
    let mut draws: [Vec<f64>; 3] = std::array::from_fn(|_| Vec::with_capacity(RESAMPLES));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    if !pairs.is_empty() {
        for _ in 0..RESAMPLES {
            let mut sums = Sums::default();
            for _ in 0..pairs.len() {
                sums.add(&pairs[rng.gen_range(0..pairs.len())]);
            }
            for (draw, figure) in draws.iter_mut().zip(sums.figures()) {
                draw.push(figure);
            }
        }
    }
    let interval = |index: usize| {
        let mut sorted = draws[index].clone();
        sorted.sort_by(f64::total_cmp);
        let estimate = estimates[index];
        if sorted.is_empty() {
            return Interval { estimate, low: estimate, high: estimate };
        }
        Interval { estimate, low: percentile(&sorted, 0.025), high: percentile(&sorted, 0.975) }
    };
    let [avoided, quality, cost] = [interval(0), interval(1), interval(2)];
    RoutingEffect {
        strong_calls_avoided: avoided.estimate,
        quality_vs_strong: quality.estimate,
        cost_saving: cost.estimate,
        ci95: RoutingIntervals {
            strong_calls_avoided: [avoided.low, avoided.high],
            quality_vs_strong: [quality.low, quality.high],
            cost_saving: [cost.low, cost.high],
        },
        prompts: pairs.len(),
        held_out,
        tags_used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_of_a_share_matches_the_normal_approximation() {
        // 1,000 prompts, 600 routed: the share's standard error is sqrt(0.6 × 0.4 / 1000).
        let pairs: Vec<Pair> = (0..1_000)
            .map(|i| Pair {
                baseline_correct: true,
                baseline_cost_usd: 1.0,
                after_correct: true,
                after_cost_usd: if i < 600 { 0.1 } else { 1.0 },
                after_weak: i < 600,
            })
            .collect();
        let effect = routing_effect(&pairs, true, false, 7);
        let half = 1.96 * (0.6_f64 * 0.4 / 1_000.0).sqrt();
        let share = effect.strong_calls_avoided();
        assert!((share.estimate - 0.6).abs() < 1e-12);
        assert!((share.low - (0.6 - half)).abs() < 0.006, "{share:?}");
        assert!((share.high - (0.6 + half)).abs() < 0.006, "{share:?}");
        assert!((effect.cost_saving - 0.54).abs() < 1e-12);
        assert_eq!(effect.quality_vs_strong, 1.0);
    }

    #[test]
    fn quality_is_a_ratio_of_correct_answers() {
        let pair = |baseline_correct, after_correct| Pair {
            baseline_correct,
            baseline_cost_usd: 1.0,
            after_correct,
            after_cost_usd: 1.0,
            after_weak: false,
        };
        let pairs = [pair(true, true), pair(true, false), pair(false, true), pair(true, true)];
        let effect = routing_effect(&pairs, true, true, 1);
        let quality = effect.quality_vs_strong();
        assert!((quality.estimate - 1.0).abs() < 1e-12);
        assert!(quality.low <= 1.0 && quality.high >= 1.0);
    }
}
