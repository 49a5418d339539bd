//! Tail analysis: output lengths against `max_tokens` caps, and latency tails for timeouts and
//! hedged requests.
//!
//! - A response of `L` output tokens is cut by a cap `c` when `L > c`; the tokens saved are
//!   `Σ max(0, L − c)`. (A response of exactly `c` tokens fits.)
//! - Hedging sends a second, independent attempt when the first has not answered after a delay
//!   `d`; the client sees `min(X₁, d + X₂)`. Assuming both attempts follow the observed latency
//!   distribution, the hedged survival function is `S(t) · S(t − d)` on the empirical `S`,
//!   evaluated exactly (no simulation), and the extra load is `P(X₁ > d)`.

use serde::Serialize;

use crate::{
    error::{Error, Result, check_finite, check_len},
    stats::{quantile_sorted, sorted},
};

/// Effect of one output cap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapImpact {
    pub cap: u64,
    /// Share of responses longer than the cap (they would be truncated).
    pub truncated_share: f64,
    /// Output tokens the cap would remove.
    pub tokens_saved: u64,
    /// Those tokens as a share of all output tokens.
    pub tokens_saved_share: f64,
}

/// Truncation share and tokens saved for each cap.
pub fn output_cap_impact(output_tokens: &[u64], caps: &[u64]) -> Result<Vec<CapImpact>> {
    if output_tokens.is_empty() {
        return Err(Error::TooFewValues { what: "output cap analysis", needed: 1, got: 0 });
    }
    let total: u64 = output_tokens.iter().sum();
    let n = output_tokens.len() as f64;
    Ok(caps
        .iter()
        .map(|&cap| {
            let truncated = output_tokens.iter().filter(|&&tokens| tokens > cap).count();
            let tokens_saved: u64 =
                output_tokens.iter().map(|&tokens| tokens.saturating_sub(cap)).sum();
            CapImpact {
                cap,
                truncated_share: truncated as f64 / n,
                tokens_saved,
                tokens_saved_share: if total == 0 {
                    0.0
                } else {
                    tokens_saved as f64 / total as f64
                },
            }
        })
        .collect())
}

/// The smallest cap that truncates at most `max_truncated_share` of the responses.
pub fn smallest_safe_cap(output_tokens: &[u64], max_truncated_share: f64) -> Result<u64> {
    if output_tokens.is_empty() {
        return Err(Error::TooFewValues { what: "output cap analysis", needed: 1, got: 0 });
    }
    let mut sorted_tokens = output_tokens.to_vec();
    sorted_tokens.sort_unstable();
    let allowed =
        (max_truncated_share.clamp(0.0, 1.0) * sorted_tokens.len() as f64).floor() as usize;
    // With the cap at the value of rank n − 1 − allowed, at most `allowed` values exceed it.
    Ok(sorted_tokens[sorted_tokens.len() - 1 - allowed.min(sorted_tokens.len() - 1)])
}

/// Latency quantiles and the share above each candidate timeout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyTail {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    /// (timeout, share of requests slower than it).
    pub exceeding: Vec<(f64, f64)>,
}

pub fn latency_tail(latencies: &[f64], timeouts: &[f64]) -> Result<LatencyTail> {
    check_len("latency tail", latencies, 1)?;
    let sorted = sorted(latencies)?;
    let n = sorted.len() as f64;
    let exceeding = timeouts
        .iter()
        .map(|&timeout| {
            let at_most = sorted.partition_point(|&x| x <= timeout);
            (timeout, (sorted.len() - at_most) as f64 / n)
        })
        .collect();
    Ok(LatencyTail {
        p50: quantile_sorted(&sorted, 0.5),
        p90: quantile_sorted(&sorted, 0.9),
        p95: quantile_sorted(&sorted, 0.95),
        p99: quantile_sorted(&sorted, 0.99),
        p999: quantile_sorted(&sorted, 0.999),
        exceeding,
    })
}

/// Latency with one hedged attempt after `delay`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HedgeImpact {
    pub delay: f64,
    /// Share of requests that send a second attempt.
    pub extra_load: f64,
    /// Quantiles (p50, p95, p99) of the hedged latency, as the smallest `t` with
    /// `P(hedged ≤ t) ≥ q` (the empirical distribution has steps, so no interpolation).
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
}

pub fn hedging_impact(latencies: &[f64], delay: f64) -> Result<HedgeImpact> {
    check_len("hedging analysis", latencies, 1)?;
    check_finite("hedging delay", &[delay])?;
    let sorted = sorted(latencies)?;
    let n = sorted.len() as f64;
    let survival = |t: f64| (sorted.len() - sorted.partition_point(|&x| x <= t)) as f64 / n;
    let hedged_survival = |t: f64| survival(t) * survival(t - delay);
    // The hedged distribution only jumps at x_i (first attempt) and x_i + d (second attempt).
    let mut support: Vec<f64> = sorted.iter().flat_map(|&x| [x, x + delay]).collect();
    support.sort_by(f64::total_cmp);
    support.dedup();
    let quantile = |q: f64| {
        let index = support.partition_point(|&t| 1.0 - hedged_survival(t) < q - 1e-12);
        support[index.min(support.len() - 1)]
    };
    // E[T] = Σ over steps of t × P(T = t).
    let mut mean = 0.0;
    let mut previous_survival = 1.0;
    for &t in &support {
        let current = hedged_survival(t);
        mean += t * (previous_survival - current);
        previous_survival = current;
    }
    Ok(HedgeImpact {
        delay,
        extra_load: survival(delay),
        p50: quantile(0.5),
        p95: quantile(0.95),
        p99: quantile(0.99),
        mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_longer_responses_only() {
        let impacts = output_cap_impact(&[10, 20, 30, 40], &[20, 35]).unwrap();
        assert_eq!(impacts[0].truncated_share, 0.5);
        assert_eq!(impacts[0].tokens_saved, 30);
        assert_eq!(impacts[1].tokens_saved, 5);
        assert_eq!(smallest_safe_cap(&[10, 20, 30, 40], 0.25).unwrap(), 30);
        assert_eq!(smallest_safe_cap(&[10, 20, 30, 40], 0.0).unwrap(), 40);
    }

    #[test]
    fn hedging_on_two_point_distribution() {
        // Half the calls take 1, half take 10. Hedging at 2: slow first attempts get a second
        // attempt finishing at 3 (prob ½) or 12 → min(10, 12) = 10.
        // P(T = 1) = ½, P(T = 3) = ¼, P(T = 10) = ¼; mean = 0.5 + 0.75 + 2.5 = 3.75.
        let impact = hedging_impact(&[1.0, 10.0], 2.0).unwrap();
        assert_eq!(impact.extra_load, 0.5);
        assert!((impact.mean - 3.75).abs() < 1e-12);
        assert_eq!(impact.p50, 1.0);
        assert_eq!(impact.p95, 10.0);
        let tail = latency_tail(&[1.0, 2.0, 3.0, 4.0], &[2.5]).unwrap();
        assert_eq!(tail.exceeding, vec![(2.5, 0.5)]);
    }
}
