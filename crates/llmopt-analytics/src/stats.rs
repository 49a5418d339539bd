//! Descriptive statistics and two-sample tests.
//!
//! - Quantiles use numpy's default "linear" rule (type 7 of Hyndman & Fan): position
//!   `q × (n − 1)` in the sorted data, interpolated linearly between its neighbours. This is the
//!   rule of [`llmopt_core::store::quantile_sorted`], which is re-used rather than copied.
//! - [`welch_t_test`] uses the Welch–Satterthwaite degrees of freedom computed from both sample
//!   variances; it never falls back to a pooled standard error.
//! - [`mann_whitney_u`] is scipy's `mannwhitneyu(method="asymptotic", use_continuity=True)`:
//!   mid-ranks for ties, the tie-corrected variance and a continuity correction of one half.
//! - [`two_proportion_z_test`] pools the proportions under the null, like statsmodels'
//!   `proportions_ztest`.
//! - [`relative_difference_ci`] is the delta-method interval for `mean_b / mean_a − 1`.

use llmopt_core::Moments;
pub use llmopt_core::store::quantile_sorted;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use crate::error::{Error, Result, check_finite, check_len};

/// Moments of a slice (non-finite values are rejected rather than skipped).
pub fn moments(values: &[f64]) -> Result<Moments> {
    check_finite("moments", values)?;
    Ok(values.iter().copied().collect())
}

/// A sorted copy of finite values.
pub fn sorted(values: &[f64]) -> Result<Vec<f64>> {
    check_finite("quantile", values)?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

/// The `q` quantile (0 ≤ q ≤ 1) with numpy's "linear" interpolation.
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    Ok(quantiles(values, &[q])?[0])
}

/// Several quantiles with one sort.
pub fn quantiles(values: &[f64], qs: &[f64]) -> Result<Vec<f64>> {
    check_len("quantile", values, 1)?;
    for &q in qs {
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::InvalidParameter {
                name: "q",
                reason: format!("{q} is not in [0, 1]"),
            });
        }
    }
    let sorted = sorted(values)?;
    Ok(qs.iter().map(|&q| quantile_sorted(&sorted, q)).collect())
}

/// Mean after cutting `int(proportion × n)` values from each end (`scipy.stats.trim_mean`).
pub fn trimmed_mean(values: &[f64], proportion_to_cut: f64) -> Result<f64> {
    check_len("trimmed mean", values, 1)?;
    if !(0.0..0.5).contains(&proportion_to_cut) {
        return Err(Error::InvalidParameter {
            name: "proportion_to_cut",
            reason: format!("{proportion_to_cut} is not in [0, 0.5)"),
        });
    }
    let sorted = sorted(values)?;
    let cut = (proportion_to_cut * sorted.len() as f64) as usize;
    let kept = &sorted[cut..sorted.len() - cut];
    Ok(kept.iter().sum::<f64>() / kept.len() as f64)
}

/// A two-sided interval around a point estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfidenceInterval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
}

/// Percentile bootstrap interval of `statistic`, with `resamples` seeded resamples.
pub fn bootstrap_ci(
    values: &[f64],
    statistic: impl Fn(&[f64]) -> f64,
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Result<ConfidenceInterval> {
    check_len("bootstrap", values, 2)?;
    check_finite("bootstrap", values)?;
    check_confidence(confidence)?;
    if resamples < 10 {
        return Err(Error::InvalidParameter {
            name: "resamples",
            reason: "need at least 10".into(),
        });
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut resample = vec![0.0; values.len()];
    let mut estimates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in resample.iter_mut() {
            *slot = values[rng.gen_range(0..values.len())];
        }
        estimates.push(statistic(&resample));
    }
    check_finite("bootstrap statistic", &estimates)?;
    estimates.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Ok(ConfidenceInterval {
        estimate: statistic(values),
        lower: quantile_sorted(&estimates, tail),
        upper: quantile_sorted(&estimates, 1.0 - tail),
        confidence,
    })
}

fn check_confidence(confidence: f64) -> Result<()> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::InvalidParameter {
            name: "confidence",
            reason: format!("{confidence} is not in (0, 1)"),
        });
    }
    Ok(())
}

fn standard_normal() -> Normal {
    // Mean 0 and standard deviation 1 are valid parameters; `new` cannot fail for them.
    Normal::standard()
}

/// Result of Welch's unequal-variance t-test of `mean(a) − mean(b)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WelchTest {
    pub mean_difference: f64,
    pub standard_error: f64,
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub degrees_of_freedom: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's t-test on two samples (`scipy.stats.ttest_ind(a, b, equal_var=False)`).
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Result<WelchTest> {
    welch_t_test_from_moments(&moments(a)?, &moments(b)?)
}

/// Welch's t-test from streaming summaries (each needs two values and a non-zero variance sum).
pub fn welch_t_test_from_moments(a: &Moments, b: &Moments) -> Result<WelchTest> {
    for moments in [a, b] {
        if moments.count < 2 {
            return Err(Error::TooFewValues {
                what: "Welch t-test (per sample)",
                needed: 2,
                got: moments.count as usize,
            });
        }
    }
    let (n_a, n_b) = (a.count as f64, b.count as f64);
    let var_a_over_n = a.variance() / n_a;
    let var_b_over_n = b.variance() / n_b;
    let variance_sum = var_a_over_n + var_b_over_n;
    if variance_sum <= 0.0 {
        return Err(Error::Degenerate("Welch t-test: both samples have zero variance".into()));
    }
    let standard_error = variance_sum.sqrt();
    let mean_difference = a.mean - b.mean;
    let t = mean_difference / standard_error;
    let degrees_of_freedom = variance_sum * variance_sum
        / (var_a_over_n * var_a_over_n / (n_a - 1.0) + var_b_over_n * var_b_over_n / (n_b - 1.0));
    let p_value = students_t_two_sided(t, degrees_of_freedom)?;
    Ok(WelchTest { mean_difference, standard_error, t, degrees_of_freedom, p_value })
}

fn students_t_two_sided(t: f64, degrees_of_freedom: f64) -> Result<f64> {
    let distribution = StudentsT::new(0.0, 1.0, degrees_of_freedom)
        .map_err(|e| Error::Degenerate(format!("Student t with {degrees_of_freedom} df: {e}")))?;
    Ok((2.0 * distribution.sf(t.abs())).min(1.0))
}

/// Result of the Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of the first sample (scipy's returned statistic).
    pub u: f64,
    /// Normal deviate after tie and continuity correction.
    pub z: f64,
    /// Two-sided p-value (normal approximation).
    pub p_value: f64,
}

/// Mid-ranks (1-based) of the concatenation of `a` and `b`, and Σ(t³ − t) over tie groups.
fn ranks_with_ties(a: &[f64], b: &[f64]) -> (Vec<f64>, f64) {
    let mut indexed: Vec<(f64, usize)> = a.iter().chain(b).copied().zip(0..).collect();
    indexed.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; indexed.len()];
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < indexed.len() {
        let mut end = start + 1;
        while end < indexed.len() && indexed[end].0 == indexed[start].0 {
            end += 1;
        }
        // Positions start..end (0-based) share the mean of ranks start+1..=end.
        let mid_rank = (start + end + 1) as f64 / 2.0;
        for &(_, original) in &indexed[start..end] {
            ranks[original] = mid_rank;
        }
        let tied = (end - start) as f64;
        tie_term += tied * tied * tied - tied;
        start = end;
    }
    (ranks, tie_term)
}

/// Two-sided Mann–Whitney U test with tie correction and the normal approximation.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<MannWhitney> {
    check_len("Mann-Whitney (first sample)", a, 1)?;
    check_len("Mann-Whitney (second sample)", b, 1)?;
    check_finite("Mann-Whitney (first sample)", a)?;
    check_finite("Mann-Whitney (second sample)", b)?;
    let (n_a, n_b) = (a.len() as f64, b.len() as f64);
    let n = n_a + n_b;
    let (ranks, tie_term) = ranks_with_ties(a, b);
    let rank_sum_a: f64 = ranks[..a.len()].iter().sum();
    let u_a = rank_sum_a - n_a * (n_a + 1.0) / 2.0;
    let u_b = n_a * n_b - u_a;
    let mean_u = n_a * n_b / 2.0;
    let variance = n_a * n_b / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return Err(Error::Degenerate("Mann-Whitney: every value is tied".into()));
    }
    let u_max = u_a.max(u_b);
    let z = (u_max - mean_u - 0.5) / variance.sqrt();
    let p_value = (2.0 * standard_normal().sf(z)).clamp(0.0, 1.0);
    Ok(MannWhitney { u: u_a, z, p_value })
}

/// Result of the pooled two-proportion z-test of `p_a − p_b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionTest {
    pub proportion_a: f64,
    pub proportion_b: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Two-proportion z-test with the pooled proportion under the null (two-sided).
pub fn two_proportion_z_test(
    successes_a: u64,
    trials_a: u64,
    successes_b: u64,
    trials_b: u64,
) -> Result<ProportionTest> {
    if trials_a == 0 || trials_b == 0 {
        return Err(Error::TooFewValues { what: "two-proportion test", needed: 1, got: 0 });
    }
    if successes_a > trials_a || successes_b > trials_b {
        return Err(Error::InvalidParameter {
            name: "successes",
            reason: "more successes than trials".into(),
        });
    }
    let (n_a, n_b) = (trials_a as f64, trials_b as f64);
    let proportion_a = successes_a as f64 / n_a;
    let proportion_b = successes_b as f64 / n_b;
    let pooled = (successes_a + successes_b) as f64 / (n_a + n_b);
    let variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b);
    if variance <= 0.0 {
        return Err(Error::Degenerate("two-proportion test: pooled proportion is 0 or 1".into()));
    }
    let z = (proportion_a - proportion_b) / variance.sqrt();
    let p_value = (2.0 * standard_normal().sf(z.abs())).min(1.0);
    Ok(ProportionTest { proportion_a, proportion_b, z, p_value })
}

/// Delta-method interval for the relative difference `mean_b / mean_a − 1` (e.g. the change of a
/// treatment arm `b` against control `a`), with independent samples.
pub fn relative_difference_ci(
    control: &Moments,
    treatment: &Moments,
    confidence: f64,
) -> Result<ConfidenceInterval> {
    check_confidence(confidence)?;
    for moments in [control, treatment] {
        if moments.count < 2 {
            return Err(Error::TooFewValues {
                what: "relative difference (per sample)",
                needed: 2,
                got: moments.count as usize,
            });
        }
    }
    if control.mean == 0.0 {
        return Err(Error::Degenerate("relative difference: control mean is zero".into()));
    }
    let ratio = treatment.mean / control.mean;
    let var_mean_control = control.variance() / control.count as f64;
    let var_mean_treatment = treatment.variance() / treatment.count as f64;
    // Gradient of m_b / m_a is (−m_b / m_a², 1 / m_a).
    let variance = var_mean_treatment / (control.mean * control.mean)
        + ratio * ratio * var_mean_control / (control.mean * control.mean);
    let z = standard_normal().inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let half_width = z * variance.sqrt();
    Ok(ConfidenceInterval {
        estimate: ratio - 1.0,
        lower: ratio - 1.0 - half_width,
        upper: ratio - 1.0 + half_width,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.25) == 1.75
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.25).unwrap(), 1.75);
        assert!(matches!(quantile(&[1.0, f64::NAN], 0.5), Err(Error::NonFinite { index: 1, .. })));
        assert!(quantile(&[1.0], 1.5).is_err());
    }

    #[test]
    fn trimmed_mean_cuts_integer_counts() {
        // scipy.stats.trim_mean(range(10), 0.15) cuts int(1.5) = 1 from each end → 4.5
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(trimmed_mean(&values, 0.15).unwrap(), 4.5);
        let skewed = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(trimmed_mean(&skewed, 0.2).unwrap(), 3.0);
    }

    #[test]
    fn bootstrap_is_seeded_and_covers_the_mean() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i % 17)).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let first = bootstrap_ci(&values, mean, 0.95, 500, 7).unwrap();
        let second = bootstrap_ci(&values, mean, 0.95, 500, 7).unwrap();
        assert_eq!(first, second);
        assert!(first.lower < first.estimate && first.estimate < first.upper);
        // Standard error of the mean is about 4.9 / sqrt(200) = 0.35; the interval is ±0.7.
        assert!((first.upper - first.lower) > 1.0 && (first.upper - first.lower) < 1.8);
    }

    #[test]
    fn mann_whitney_ranks_ties_by_midrank() {
        let (ranks, tie_term) = ranks_with_ties(&[1.0, 2.0, 2.0], &[3.0, 2.0]);
        assert_eq!(ranks, vec![1.0, 3.0, 3.0, 5.0, 3.0]);
        assert_eq!(tie_term, 24.0);
    }

    #[test]
    fn welch_rejects_constant_samples() {
        assert!(matches!(welch_t_test(&[1.0, 1.0], &[2.0, 2.0]), Err(Error::Degenerate(_))));
        assert!(matches!(welch_t_test(&[1.0], &[2.0, 3.0]), Err(Error::TooFewValues { .. })));
    }
}
