//! Anytime-valid inference on differences of means, the fixed-horizon contrast, and Thompson
//! sampling weights. Pure functions over sufficient statistics (count, mean, variance), so the
//! simulations can call them at every look without allocating.
//!
//! **The confidence sequence.** For an estimate `d̂` of a difference of means with estimated
//! variance `V = s²_c/n_c + s²_t/n_t` after `N = n_c + n_t` observations, the two-sided
//! (1 − α) interval `d̂ ± h` with
//!
//! ```text
//! h = sqrt(V·N) · sqrt( 2(Nρ² + 1) / (N²ρ²) · ln( sqrt(Nρ² + 1) / α ) )
//! ```
//!
//! is the asymptotic confidence sequence of Howard, Ramdas, McAuliffe and Sekhon
//! ("Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Stat. 2021) with
//! the normal mixture boundary, in the form GrowthBook's `gbstats` uses: it covers the true
//! difference at every sample size simultaneously with probability ≥ 1 − α (asymptotically),
//! so a test that stops at the first look where the interval excludes zero keeps its
//! false-positive rate at α however often it looks. It is also the interval form of the
//! mixture-normal mSPRT of Johari et al. (with the variance estimated): with the matching
//! mixing variance the two reject at the same looks.
//! The mixing parameter ρ makes the interval narrowest at `N = tuning` observations:
//! `ρ² = (−2 ln α + ln(−2 ln α + 1)) / tuning` (Howard et al. 2021; GrowthBook calls `tuning`
//! its "sequential tuning parameter", default 5,000).
//!
//! **One-sided guardrails** use the same two-sided interval at level α and read one bound. That
//! is conservative (a one-sided boundary could be a little tighter) but needs no second formula.
//!
//! **Proportions** (error rate, slow share) use the variance `p̃(1 − p̃)` with
//! `p̃ = (successes + 1)/(n + 2)`, so that an arm with no errors yet still has a positive
//! variance instead of an interval of width zero.
//!
//! **Cost per call is the exception** ([`bounded`]): it is heavy-tailed, and when the arms' tails
//! differ the normal mixture's plug-in variance makes it declare false winners; cost is
//! compared with an empirical-Bernstein sequence for bounded observations instead, exact at
//! every sample size.

pub mod bounded;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use llmopt_core::Moments;

/// Whether a metric's values are arbitrary numbers or 0/1 outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Continuous,
    Proportion,
}

/// Sufficient statistics of one arm for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ArmSummary {
    pub count: f64,
    pub mean: f64,
    /// Sample variance (n − 1 denominator).
    pub variance: f64,
}

impl ArmSummary {
    pub fn from_moments(moments: &Moments) -> ArmSummary {
        let variance = if moments.count < 2 { 0.0 } else { moments.variance() };
        ArmSummary { count: moments.count as f64, mean: moments.mean, variance }
    }

    /// From running sums Σx and Σx²: what the simulations keep.
    pub fn from_sums(count: f64, sum: f64, sum_of_squares: f64) -> ArmSummary {
        if count < 1.0 {
            return ArmSummary::default();
        }
        let mean = sum / count;
        let variance = if count < 2.0 {
            0.0
        } else {
            ((sum_of_squares - sum * mean) / (count - 1.0)).max(0.0)
        };
        ArmSummary { count, mean, variance }
    }

    /// The variance used for inference, by kind (see the module documentation).
    pub fn inference_variance(&self, kind: ValueKind) -> f64 {
        match kind {
            ValueKind::Continuous => self.variance,
            ValueKind::Proportion => {
                let smoothed = (self.mean * self.count + 1.0) / (self.count + 2.0);
                smoothed * (1.0 - smoothed)
            }
        }
    }
}

/// A two-sided interval for `treatment − control`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.lower > 0.0 || self.upper < 0.0
    }
}

/// The mixing parameter ρ that makes the sequence narrowest at `tuning_samples` observations.
pub fn mixture_rho(alpha: f64, tuning_samples: f64) -> f64 {
    let log_term = -2.0 * alpha.ln();
    ((log_term + (log_term + 1.0).ln()) / tuning_samples).sqrt()
}

/// Half-width of the confidence sequence for an estimate with variance `estimate_variance`
/// after `total_samples` observations (see the module documentation).
pub fn confidence_sequence_half_width(
    estimate_variance: f64,
    total_samples: f64,
    alpha: f64,
    rho: f64,
) -> f64 {
    let n = total_samples;
    let rho_squared = rho * rho;
    let scaled_variance = estimate_variance * n;
    let inner = 2.0 * (n * rho_squared + 1.0) / (n * n * rho_squared)
        * ((n * rho_squared + 1.0).sqrt() / alpha).ln();
    (scaled_variance * inner).sqrt()
}

/// The half-width of the same confidence sequence at another level: `half` was computed at
/// `alpha` after `total_samples` observations with the mixing parameter tuned for
/// `tuning_samples`; the result is the half-width at `new_alpha` (ρ re-tuned for it too). The
/// half-width is `sqrt(V·N)` times a factor of `(N, α, ρ)`, so the estimated variance cancels.
pub fn half_width_at_level(
    half: f64,
    total_samples: f64,
    alpha: f64,
    new_alpha: f64,
    tuning_samples: f64,
) -> f64 {
    let unit = |level: f64| {
        let rho = mixture_rho(level, tuning_samples);
        confidence_sequence_half_width(1.0 / total_samples, total_samples, level, rho)
    };
    half * unit(new_alpha) / unit(alpha)
}

/// The anytime-valid interval for `treatment.mean − control.mean`; `None` below two
/// observations per arm.
pub fn sequential_difference(
    control: &ArmSummary,
    treatment: &ArmSummary,
    kind: ValueKind,
    alpha: f64,
    rho: f64,
) -> Option<Interval> {
    if control.count < 2.0 || treatment.count < 2.0 {
        return None;
    }
    let estimate = treatment.mean - control.mean;
    let estimate_variance = control.inference_variance(kind) / control.count
        + treatment.inference_variance(kind) / treatment.count;
    let half = confidence_sequence_half_width(
        estimate_variance,
        control.count + treatment.count,
        alpha,
        rho,
    );
    // Non-finite input (an overflowing sum of squares) must not become an interval: it would be
    // stored as JSON `null` and make the document unreadable.
    (estimate.is_finite() && half.is_finite()).then_some(Interval {
        estimate,
        lower: estimate - half,
        upper: estimate + half,
    })
}

/// Welch's unequal-variance t-test: the statistic, the Welch–Satterthwaite degrees of freedom
/// and the two-sided p-value. Valid at one pre-planned sample size only: checked at every look it
/// declares false winners far more often than α (the simulations show it). Kept as the contrast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    pub t: f64,
    pub degrees_of_freedom: f64,
    pub p_value: f64,
}

pub fn welch_t_test(control: &ArmSummary, treatment: &ArmSummary) -> Option<WelchTest> {
    let (t, degrees_of_freedom) = welch_statistic(control, treatment)?;
    let distribution = StudentsT::new(0.0, 1.0, degrees_of_freedom).ok()?;
    let p_value = 2.0 * distribution.cdf(-t.abs());
    Some(WelchTest { t, degrees_of_freedom, p_value })
}

fn welch_statistic(control: &ArmSummary, treatment: &ArmSummary) -> Option<(f64, f64)> {
    if control.count < 2.0 || treatment.count < 2.0 {
        return None;
    }
    let control_term = control.variance / control.count;
    let treatment_term = treatment.variance / treatment.count;
    let standard_error_squared = control_term + treatment_term;
    if standard_error_squared <= 0.0 {
        return None;
    }
    let t = (treatment.mean - control.mean) / standard_error_squared.sqrt();
    let degrees_of_freedom = standard_error_squared * standard_error_squared
        / (control_term * control_term / (control.count - 1.0)
            + treatment_term * treatment_term / (treatment.count - 1.0));
    Some((t, degrees_of_freedom))
}

/// Whether Welch's test rejects at level `alpha` (two-sided). Skips the t distribution when the
/// statistic is clearly inside or outside: `|t|` below the normal quantile never rejects (the t
/// quantile is larger), which is most looks of an A/A simulation.
pub fn welch_rejects(control: &ArmSummary, treatment: &ArmSummary, alpha: f64) -> bool {
    let Some((t, degrees_of_freedom)) = welch_statistic(control, treatment) else {
        return false;
    };
    let normal_quantile = normal_two_sided_quantile(alpha);
    if t.abs() < normal_quantile {
        return false;
    }
    match StudentsT::new(0.0, 1.0, degrees_of_freedom) {
        Ok(distribution) => 2.0 * distribution.cdf(-t.abs()) < alpha,
        Err(_) => false,
    }
}

fn normal_two_sided_quantile(alpha: f64) -> f64 {
    use statrs::distribution::Normal;
    Normal::new(0.0, 1.0)
        .map_or(1.959_963_984_540_054, |normal| normal.inverse_cdf(1.0 - alpha / 2.0))
}

/// Thompson-sampling allocation: each arm's share is `min_share` plus its posterior probability
/// of being the best arm times what is left (`1 − k·min_share`). The posterior of an arm's mean is
/// normal with the sample mean and variance/n (a flat prior). Arms with fewer than two
/// observations get an equal share until every arm has some data.
pub fn thompson_weights<R: Rng>(
    arms: &[ArmSummary],
    lower_is_better: bool,
    min_share: f64,
    draws: usize,
    rng: &mut R,
) -> Vec<f64> {
    let arm_count = arms.len();
    if arm_count == 0 {
        return Vec::new();
    }
    let equal = vec![1.0 / arm_count as f64; arm_count];
    if draws == 0 || arms.iter().any(|arm| arm.count < 2.0) {
        return equal;
    }
    let floor = min_share.clamp(0.0, 1.0 / arm_count as f64);
    let standard_errors: Vec<f64> =
        arms.iter().map(|arm| (arm.variance / arm.count).max(0.0).sqrt()).collect();
    let mut wins = vec![0u64; arm_count];
    for _ in 0..draws {
        let mut best_index = 0;
        let mut best_value = f64::NAN;
        for (index, arm) in arms.iter().enumerate() {
            let noise: f64 = StandardNormal.sample(rng);
            let sampled = arm.mean + standard_errors[index] * noise;
            let better = best_value.is_nan()
                || if lower_is_better { sampled < best_value } else { sampled > best_value };
            if better {
                best_value = sampled;
                best_index = index;
            }
        }
        wins[best_index] += 1;
    }
    let free = 1.0 - floor * arm_count as f64;
    wins.iter().map(|&won| floor + free * won as f64 / draws as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_never_have_zero_variance() {
        let no_errors = ArmSummary { count: 1000.0, mean: 0.0, variance: 0.0 };
        let variance = no_errors.inference_variance(ValueKind::Proportion);
        assert!((variance - (1.0 / 1002.0) * (1001.0 / 1002.0)).abs() < 1e-15);
    }

    #[test]
    fn a_half_width_moves_to_another_level_with_its_variance() {
        let (variance, n, tuning) = (0.3 / 800.0, 800.0, 5_000.0);
        let at = |alpha: f64| {
            confidence_sequence_half_width(variance, n, alpha, mixture_rho(alpha, tuning))
        };
        let moved = half_width_at_level(at(0.05), n, 0.05, 0.001, tuning);
        assert!((moved - at(0.001)).abs() < 1e-12 * at(0.001));
        assert!(moved > at(0.05));
    }

    #[test]
    fn sums_and_moments_agree() {
        let values = [1.0, 2.0, 4.0, 8.0, 16.0];
        let moments: Moments = values.iter().copied().collect();
        let from_sums =
            ArmSummary::from_sums(5.0, values.iter().sum(), values.iter().map(|v| v * v).sum());
        let from_moments = ArmSummary::from_moments(&moments);
        assert!((from_sums.mean - 6.2).abs() < 1e-12);
        assert!((from_sums.variance - 37.2).abs() < 1e-9);
        assert!((from_moments.variance - 37.2).abs() < 1e-9);
    }
}
