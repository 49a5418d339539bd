//! The anytime-valid comparison of cost per call: an empirical-Bernstein confidence sequence
//! for bounded observations, on a design-based (inverse-probability-weighted) difference.
//!
//! **Why not the normal mixture.** The normal-mixture sequence of [`super`] is asymptotic: it
//! plugs in the sample variance and trusts the central limit theorem at every look. Cost per
//! call is heavy-tailed (a few calls with long prompts or long answers cost 100× the median).
//! When both arms have the same distribution (an A/A test) the errors cancel and the normal
//! mixture keeps α. But a routing or `max_tokens` change gives the arms different shapes: a
//! model whose calls are cheaper as a rule but which sometimes writes very long answers has a
//! heavier tail, its sample mean is usually below its true mean and its sample variance far
//! below the true one, until one of the rare expensive calls arrives. With equal mean costs,
//! a Pareto(2.5) control against a Pareto(1.5) treatment, the normal mixture declared a false
//! winner in 10.7 % of experiments at α = 5 % (`tests/it/heavy_tails.rs`, `SIMULATIONS.md`).
//! What makes an exact sequence possible is that a call's cost is **bounded**: it cannot
//! exceed the model's context window at the input price plus the longest answer at the output
//! price ([`crate::ExperimentSpec::cost_bound_usd`]).
//!
//! **The observations.** Records are fed in arrival order, whichever arm they belong to. For
//! treatment `j` and a record with cost `x` (clipped to the bound `B`, see below) the term is
//!
//! ```text
//! Z = (x − m̂)·( 1{arm j}/p_j − 1{control}/p_0 )
//! ```
//!
//! where `p_j`, `p_0` are the arms' assignment probabilities and `m̂` is the mean cost of every
//! earlier record of the experiment (clipped to `[0, B]`). Assignment is random and independent
//! of the past, so `E[Z | past] = μ_j(t) − μ_0(t)` whatever `m̂` is: the difference of the two
//! arms' mean costs *at that moment*. That is what makes drift harmless: if both arms get twice
//! as expensive during the experiment, every term still has conditional mean zero in an A/A
//! test. (A difference of two per-arm sequences would not: each arm's sequence weighs its own
//! early and late calls differently.) Centring on `m̂` removes the `μ²` terms that plain
//! inverse-probability weighting adds to the variance. A record of a third arm contributes
//! `Z = 0`, which is also unbiased. `|Z| ≤ c = B / min(p_0, p_j)`; `ξ = Z / c ∈ [−1, 1]`.
//!
//! **The sequence** (Howard, Ramdas, McAuliffe and Sekhon 2021, Theorem 4 with the inequality
//! of Fan, Grama and Liu; in the predictable-plug-in form of Waudby-Smith and Ramdas,
//! "Estimating means of bounded random variables by betting", JRSS-B 2023, Theorem 2). For
//! `ξ ≥ −1` and `λ ∈ [0, 1)`, `exp(λξ − ξ²ψ(λ)) ≤ 1 + λξ` with `ψ(λ) = −ln(1 − λ) − λ`. So for
//! bets `λ_i` chosen before seeing record `i`,
//! `exp( Σ λ_i (Z_i − Δ_i)/c_i − Σ ξ_i² ψ(λ_i) )` is a non-negative supermartingale, and by
//! Ville's inequality, with probability ≥ 1 − α/2 at every time at once,
//!
//! ```text
//! Δ̃_t ≥ ( Σ λ_i ξ_i − ln(2/α) − Σ ξ_i² ψ(λ_i) ) / Σ (λ_i / c_i),   Δ̃_t = Σ (λ_i/c_i) Δ_i / Σ (λ_i/c_i)
//! ```
//!
//! and the same with `−ξ` for the upper side (it needs `ξ ≤ 1`). Both together: a two-sided
//! (1 − α) confidence sequence for `Δ̃_t`, a weighted average of the arms' differences over the
//! experiment, centred at `Σ λ_i ξ_i / Σ (λ_i/c_i)`. It needs no variance estimate to be valid
//! and no normal approximation: a single call of cost `B` moves it by a bounded amount.
//!
//! **The bets** may be any numbers in `[0, 1)` fixed before each record; they only decide where
//! the sequence is narrow. They start from the plug-in of Waudby-Smith and Ramdas,
//! `u_t = sqrt( 2 ln(2/α) / (σ̂²_{t−1} · n_t) )` with `σ̂²_t = (1 + Σ_{i≤t} (ξ_i − ξ̄_i)²)/(t + 1)`
//! and `ξ̄_i = Σ_{k≤i} ξ_k / (i + 1)` (one prior observation of variance 1, mean 0), which is
//! `lambda_predmix_eb` of the `confseq` package on `(ξ + 1)/2` with `fixed_n = n_t`. Two
//! changes, both chosen by simulation (`SIMULATIONS.md`): `n_t = max(t, tuning_samples)`, the
//! spec's "narrowest at" size that the normal mixture uses too, instead of the paper's
//! `t·ln(1 + t)` (which aims at uniform width: a 10 % saving took ~40 % longer); and
//! instead of capping `u_t`, the bet is `λ_t = min(1 − 1/(1 + u + u²/3), MAX_BET)`, within a few
//! percent of the bet that minimises the width for the exact penalty `ψ` (the root of
//! `λ²/(1 − λ) − ψ(λ) = u²/2`; `u` itself is the optimum of its quadratic approximation, which
//! bets too much when `u` is large: heavy tails make `σ̂²` small and `u` large). The state is
//! seven numbers, updated in O(1) per record; nothing is reread.
//! `tests/data/bounded_reference.json` pins every step against `confseq`.
//!
//! **The bound.** The spec can carry the largest cost a single call in its scope can have
//! ([`crate::ExperimentSpec::cost_bound_usd`]): the context window at the input price plus the
//! longest answer (`max_tokens`, or the model's output limit) at the output price, for the
//! most expensive arm. Without one, the bound of each record is [`FALLBACK_BOUND_FACTOR`] times
//! the largest cost of the experiment's earlier records (any arm); the first record only
//! starts it. A cost above the bound (possible only under the fallback, or with a wrong stated
//! bound) counts *at* the bound and is counted in [`BoundedDifference::clipped`]. Both arms are
//! clipped at the same level, decided before the record, so in an A/A test (equal cost
//! distributions) the sequence stays exact whatever the data; when the arms differ, the claim
//! is about costs clipped at a level four times above anything seen before, which differs from
//! the true means only by the cost of calls that set such records.
//!
//! **Price.** Without a variance assumption a heavy tail has to be paid for: the interval is at
//! least about `c · ln(2/α) / Σ λ_i` wide, so it shrinks with the bound. With gpt-4o's bound
//! (~90× the mean cost) a 10 % saving under a Pareto tail of index 1.5 is shown after 1.5× as
//! many calls as the normal mixture needed (which was not valid there), and a 30 % saving under
//! light tails after ~2,000 calls per arm instead of 200–300: the tables are in
//! `SIMULATIONS.md`. A tighter stated bound (a `max_tokens` cap, a shorter context) is the way
//! to faster decisions.

use serde::{Deserialize, Serialize};

use super::Interval;

/// The largest bet. Waudby-Smith and Ramdas cap the quadratic plug-in at 1/2 or 3/4; the bet
/// here already accounts for the penalty `ψ(λ)` growing as `λ → 1`, so the cap only guards
/// against a degenerate variance estimate.
pub const MAX_BET: f64 = 0.9;

/// Without a stated bound, a record's bound is this many times the largest earlier cost.
pub const FALLBACK_BOUND_FACTOR: f64 = 4.0;

/// The prior variance (in units of `ξ`) of the plug-in, as one observation.
const PRIOR_VARIANCE: f64 = 1.0;

/// Which arm a record belongs to, from the point of view of one treatment's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Control,
    Treatment,
    /// Another treatment arm: contributes a zero term.
    Other,
}

/// What a record is weighed with, fixed before its cost is seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    /// The largest cost a call can have (USD).
    pub bound: f64,
    /// The predictable centre `m̂`: mean cost of the earlier records.
    pub centre: f64,
    pub control_probability: f64,
    pub treatment_probability: f64,
}

impl Design {
    /// `c = B / min(p_0, p_j)`: the largest `|Z|` can be.
    pub fn scale(&self) -> f64 {
        self.bound / self.control_probability.min(self.treatment_probability)
    }

    /// The term `Z` of a cost already clipped to the bound (see the module documentation).
    pub fn term(&self, clipped_cost: f64, side: Side) -> f64 {
        let centre = self.centre.clamp(0.0, self.bound);
        match side {
            Side::Treatment => (clipped_cost - centre) / self.treatment_probability,
            Side::Control => -(clipped_cost - centre) / self.control_probability,
            Side::Other => 0.0,
        }
    }

    fn is_usable(&self) -> bool {
        self.bound.is_finite()
            && self.bound > 0.0
            && self.centre.is_finite()
            && self.control_probability > 0.0
            && self.treatment_probability > 0.0
            && self.control_probability <= 1.0
            && self.treatment_probability <= 1.0
    }
}

/// The running state of one treatment's confidence sequence against the control.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BoundedDifference {
    /// Records fed (`t`).
    pub observations: u64,
    /// `Σ λ_i / c_i`.
    pub weight: f64,
    /// `Σ λ_i ξ_i`.
    pub weighted_sum: f64,
    /// `Σ ξ_i² ψ(λ_i)`.
    pub penalty: f64,
    /// `Σ ξ_i` (for the plug-in mean).
    pub sum: f64,
    /// `Σ (ξ_i − ξ̄_i)²` (for the plug-in variance).
    pub squared_deviations: f64,
    /// Records whose cost exceeded the bound and counted at it.
    #[serde(default)]
    pub clipped: u64,
}

/// `ψ(λ) = −ln(1 − λ) − λ`.
fn psi(lambda: f64) -> f64 {
    -(-lambda).ln_1p() - lambda
}

/// How the bets are tuned: the level `alpha` and the total number of records
/// (`tuning_samples`) at which the sequence should be narrowest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    pub alpha: f64,
    pub samples: f64,
}

impl BoundedDifference {
    /// The bet for the next record (see the module documentation).
    pub fn next_bet(&self, tuning: Tuning) -> f64 {
        let t = (self.observations + 1) as f64;
        let variance = (PRIOR_VARIANCE + self.squared_deviations) / t;
        let plug_in = (2.0 * (2.0 / tuning.alpha).ln() / (variance * t.max(tuning.samples))).sqrt();
        if !plug_in.is_finite() {
            return MAX_BET;
        }
        (1.0 - 1.0 / (1.0 + plug_in + plug_in * plug_in / 3.0)).min(MAX_BET)
    }

    /// Feeds one `ξ = Z/c ∈ [−1, 1]` with its scale `c`.
    pub fn push_scaled(&mut self, scaled: f64, scale: f64, tuning: Tuning) {
        let scaled = scaled.clamp(-1.0, 1.0);
        let bet = self.next_bet(tuning);
        self.observations += 1;
        self.weight += bet / scale;
        self.weighted_sum += bet * scaled;
        self.penalty += scaled * scaled * psi(bet);
        self.sum += scaled;
        let plug_in_mean = self.sum / (self.observations + 1) as f64;
        self.squared_deviations += (scaled - plug_in_mean) * (scaled - plug_in_mean);
    }

    /// Feeds one record's cost (USD) under `design`. Returns whether the cost was clipped to
    /// the bound; a design that cannot be used (no bound yet) feeds nothing.
    pub fn observe(&mut self, design: &Design, cost: f64, side: Side, tuning: Tuning) -> bool {
        if !design.is_usable() || !cost.is_finite() {
            return false;
        }
        let clipped = cost > design.bound;
        let cost = cost.clamp(0.0, design.bound);
        let scale = design.scale();
        self.push_scaled(design.term(cost, side) / scale, scale, tuning);
        self.clipped += u64::from(clipped);
        clipped
    }

    /// The two-sided (1 − α) interval for the weighted difference `treatment − control`;
    /// `None` before the first record.
    pub fn interval(&self, alpha: f64) -> Option<Interval> {
        if self.weight <= 0.0 || !self.weight.is_finite() {
            return None;
        }
        let estimate = self.weighted_sum / self.weight;
        let half = ((2.0 / alpha).ln() + self.penalty) / self.weight;
        (estimate.is_finite() && half.is_finite()).then_some(Interval {
            estimate,
            lower: estimate - half,
            upper: estimate + half,
        })
    }

    /// Combines the state of another shard of the same comparison: the sums add. Each shard's
    /// bets were predictable from its own past, hence from the merged past, so the merged sums
    /// still form the supermartingale (the plug-in state is only a guide for later bets).
    pub fn merge(&mut self, other: &BoundedDifference) {
        self.observations += other.observations;
        self.weight += other.weight;
        self.weighted_sum += other.weighted_sum;
        self.penalty += other.penalty;
        self.sum += other.sum;
        self.squared_deviations += other.squared_deviations;
        self.clipped += other.clipped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNING: Tuning = Tuning { alpha: 0.05, samples: 100.0 };

    fn design(bound: f64) -> Design {
        Design { bound, centre: 0.0, control_probability: 0.5, treatment_probability: 0.5 }
    }

    #[test]
    fn the_first_bet_and_interval_by_hand() {
        let mut sequence = BoundedDifference::default();
        // t = 1, σ̂² = 1, n = 100: u = sqrt(2 ln 40 / 100) = 0.2716…
        let u = (2.0 * 40f64.ln() / 100.0).sqrt();
        let bet = 1.0 - 1.0 / (1.0 + u + u * u / 3.0);
        assert!((sequence.next_bet(TUNING) - bet).abs() < 1e-15);
        // Treatment call of cost 1 with bound 2: Z = 1/0.5 = 2, c = 4, ξ = 0.5.
        assert!(!sequence.observe(&design(2.0), 1.0, Side::Treatment, TUNING));
        let interval = sequence.interval(0.05).unwrap();
        let weight = bet / 4.0;
        assert!((interval.estimate - bet * 0.5 / weight).abs() < 1e-12);
        let half = (40f64.ln() + 0.25 * (-(1.0 - bet).ln() - bet)) / weight;
        assert!((interval.upper - interval.estimate - half).abs() < 1e-12);
    }

    #[test]
    fn the_bet_is_close_to_the_best_one_for_the_exact_penalty() {
        // The best bet solves λ²/(1 − λ) − ψ(λ) = u²/2; bisect it and compare.
        for u in [0.01, 0.1, 0.5, 1.0, 2.0, 4.0] {
            let (mut low, mut high) = (0.0f64, 1.0 - 1e-12);
            for _ in 0..200 {
                let middle = 0.5 * (low + high);
                let gap = middle * middle / (1.0 - middle) - psi(middle) - u * u / 2.0;
                if gap < 0.0 { low = middle } else { high = middle }
            }
            let approximation = 1.0 - 1.0 / (1.0 + u + u * u / 3.0);
            assert!((approximation - low).abs() < 0.05 * low, "u {u}: {approximation} vs {low}");
        }
    }

    #[test]
    fn costs_above_the_bound_count_at_the_bound() {
        let mut sequence = BoundedDifference::default();
        assert!(sequence.observe(&design(1.0), 5.0, Side::Control, TUNING));
        assert_eq!(sequence.clipped, 1);
        // Clipped to 1: Z = −1/0.5 = −2, c = 2, ξ = −1.
        assert!((sequence.sum + 1.0).abs() < 1e-15);
        let unusable = Design { bound: 0.0, ..design(1.0) };
        assert!(!sequence.observe(&unusable, 1.0, Side::Control, TUNING));
        assert_eq!(sequence.observations, 1);
    }

    #[test]
    fn a_third_arm_adds_weight_but_no_signal() {
        let mut sequence = BoundedDifference::default();
        sequence.observe(&design(1.0), 0.7, Side::Other, TUNING);
        assert_eq!(sequence.observations, 1);
        assert_eq!(sequence.weighted_sum, 0.0);
        assert!(sequence.weight > 0.0);
    }
}
