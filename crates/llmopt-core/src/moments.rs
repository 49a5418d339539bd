//! Streaming, mergeable moments (Welford's algorithm with Chan et al.'s parallel merge).
//!
//! Lives in the core because analytics, the collector and the experiment engine all keep
//! per-group running means and variances and must merge them across windows and shards.

use serde::{Deserialize, Serialize};

/// Count, mean and sum of squared deviations of a stream of numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (M2).
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Moments {
    pub fn new() -> Moments {
        Moments::default()
    }

    /// Adds one value. Non-finite values are ignored and reported with `false`.
    pub fn push(&mut self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        true
    }

    /// Combines two summaries as if every value had been pushed into one.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        let mean = self.mean + delta * other.count as f64 / count as f64;
        let m2 = self.m2
            + other.m2
            + delta * delta * (self.count as f64 * other.count as f64) / count as f64;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count = count;
        self.mean = mean;
        self.m2 = m2;
    }

    /// Sample variance (n − 1 denominator); `NaN` below two values.
    pub fn variance(&self) -> f64 {
        if self.count < 2 { f64::NAN } else { self.m2 / (self.count - 1) as f64 }
    }

    /// Population variance (n denominator); `NaN` when empty.
    pub fn population_variance(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.m2 / self.count as f64 }
    }

    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }

    pub fn sum(&self) -> f64 {
        self.mean * self.count as f64
    }
}

impl FromIterator<f64> for Moments {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Moments {
        let mut moments = Moments::new();
        for value in iter {
            moments.push(value);
        }
        moments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_two_pass_and_merges() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5 + 1e6).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var =
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
        let whole: Moments = values.iter().copied().collect();
        assert!((whole.mean - mean).abs() < 1e-9);
        assert!((whole.variance() - var).abs() / var < 1e-9);
        let mut left: Moments = values[..313].iter().copied().collect();
        let right: Moments = values[313..].iter().copied().collect();
        left.merge(&right);
        assert_eq!(left.count, 1000);
        assert!((left.mean - mean).abs() < 1e-9);
        assert!((left.variance() - var).abs() / var < 1e-9);
        assert_eq!(left.min, whole.min);
        assert!(!left.push(f64::NAN));
    }
}
