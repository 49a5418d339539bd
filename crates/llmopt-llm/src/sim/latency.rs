//! The simulated latency model, fitted to measured prefill and decode times.
//!
//! Source: the Splitwise performance model (`perf_model.csv` from Mutinifni/splitwise-sim, MIT;
//! Patel et al., ISCA 2024), which holds measured prompt (prefill) time and per-output-token
//! time by prompt size for llama2-70b and bloom-176b. The slice used (H100-80GB, tensor
//! parallelism 8, batch size 1; 75 rows per model) is in `data/` with the Python script
//! `data/fit_latency.py` that produced the numbers below; a test re-fits them in Rust.
//!
//! Model, per request with `n` uncached prompt tokens and `k` output tokens:
//! - time to first token = `a + b·n + c·n²` ms (ordinary least squares over all rows; the
//!   quadratic term is attention's cost growing with the prompt), times a log-normal noise
//!   factor whose σ is the measured coefficient of variation between repeated runs;
//! - then one token every `t` ms (mean over all rows), with its own noise factor per request.
//!
//! | profile | measured on | a (ms) | b (ms/token) | c (ms/token²) | t (ms/token) | CV prefill | CV token |
//! |---|---|---|---|---|---|---|---|
//! | `large` | bloom-176b | 8.2353 | 0.130582 | 6.8374e-6 | 36.235 | 0.0237 | 0.0045 |
//! | `small` | llama2-70b | 26.310 | 0.0573449 | 5.3236e-6 | 30.389 | 0.0535 | 0.0089 |
//!
//! Predicted prefill (large / small): 128 tokens 25 / 34 ms, 512: 77 / 57 ms, 2048: 304 / 166
//! ms, 8192: 1537 / 853 ms. These are dedicated-GPU numbers at batch size 1: a hosted API adds
//! queueing and network time, which [`LatencyModel::speed_factor`] and
//! [`LatencyModel::overhead_ms`] can add on top; by default nothing is invented.

use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use crate::error::{Error, Result};

/// Latency of one simulated model. All times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    pub prefill_intercept_ms: f64,
    pub prefill_ms_per_token: f64,
    pub prefill_ms_per_token_squared: f64,
    pub ms_per_output_token: f64,
    /// σ of the log-normal noise on prefill time (≈ the measured coefficient of variation).
    pub prefill_noise: f64,
    /// σ of the log-normal noise on the per-token time.
    pub token_noise: f64,
    /// Multiplies every time (1.0 = as measured).
    pub speed_factor: f64,
    /// Added once to the time to first token (network, queueing); 0 by default.
    pub overhead_ms: f64,
}

/// Fitted on bloom-176b, H100-80GB, TP 8, batch 1 (see the module doc).
pub const LARGE: LatencyModel = LatencyModel {
    prefill_intercept_ms: 8.235_302_795_939_072,
    prefill_ms_per_token: 0.130_582_221_847_061_8,
    prefill_ms_per_token_squared: 6.83735603178037e-06,
    ms_per_output_token: 36.235_043_075_934_51,
    prefill_noise: 0.023740,
    token_noise: 0.004519,
    speed_factor: 1.0,
    overhead_ms: 0.0,
};

/// Fitted on llama2-70b, H100-80GB, TP 8, batch 1 (see the module doc).
pub const SMALL: LatencyModel = LatencyModel {
    prefill_intercept_ms: 26.309_970_832_782_37,
    prefill_ms_per_token: 0.05734486924417239,
    prefill_ms_per_token_squared: 5.323_619_142_669_489e-6,
    ms_per_output_token: 30.388_839_693_740_68,
    prefill_noise: 0.053525,
    token_noise: 0.008943,
    speed_factor: 1.0,
    overhead_ms: 0.0,
};

/// The latency drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySample {
    pub time_to_first_token_ms: f64,
    pub ms_per_output_token: f64,
}

impl LatencySample {
    /// Time to the last token of `output_tokens` tokens.
    pub fn total_ms(&self, output_tokens: u64) -> f64 {
        self.time_to_first_token_ms
            + self.ms_per_output_token * output_tokens.saturating_sub(1) as f64
    }
}

impl LatencyModel {
    /// Expected prefill time of `prompt_tokens` uncached tokens, without noise.
    pub fn prefill_ms(&self, prompt_tokens: u64) -> f64 {
        let n = prompt_tokens as f64;
        (self.prefill_intercept_ms
            + self.prefill_ms_per_token * n
            + self.prefill_ms_per_token_squared * n * n)
            .max(0.0)
    }

    /// Draws the latency of one request.
    pub fn sample<R: Rng>(&self, prompt_tokens: u64, rng: &mut R) -> LatencySample {
        let noise = |sigma: f64, rng: &mut R| {
            // Mean-one log-normal: μ = −σ²/2. A σ of zero (or invalid) means no noise.
            if sigma <= 0.0 || !sigma.is_finite() {
                return 1.0;
            }
            LogNormal::new(-sigma * sigma / 2.0, sigma).map(|d| d.sample(rng)).unwrap_or(1.0)
        };
        let prefill = self.prefill_ms(prompt_tokens) * noise(self.prefill_noise, rng);
        let per_token = self.ms_per_output_token * noise(self.token_noise, rng);
        LatencySample {
            time_to_first_token_ms: (prefill + self.overhead_ms) * self.speed_factor,
            ms_per_output_token: per_token * self.speed_factor,
        }
    }

    /// Fits the model to the Splitwise CSV for one `model`/`hardware` at batch size 1 and tensor
    /// parallelism 8, the way `data/fit_latency.py` does. Noise and factors keep their defaults
    /// from [`LARGE`] and are not refitted.
    pub fn fit_splitwise(csv_path: &Path, model: &str, hardware: &str) -> Result<LatencyModel> {
        let text = std::fs::read_to_string(csv_path)
            .map_err(|source| Error::Io { path: csv_path.to_owned(), source })?;
        let bad = |detail: String| Error::Data { path: csv_path.to_owned(), detail };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let column = |name: &str| {
            header.iter().position(|h| *h == name).ok_or_else(|| bad(format!("no column {name}")))
        };
        let (c_model, c_hw, c_prompt, c_batch, c_tp, c_prompt_time, c_token_time) = (
            column("model")?,
            column("hardware")?,
            column("prompt_size")?,
            column("batch_size")?,
            column("tensor_parallel")?,
            column("prompt_time")?,
            column("token_time")?,
        );
        let mut points: Vec<(f64, f64, f64)> = Vec::new();
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let cell = |index: usize| cells.get(index).copied().unwrap_or_default();
            if cell(c_model) != model
                || cell(c_hw) != hardware
                || cell(c_batch) != "1"
                || cell(c_tp) != "8"
            {
                continue;
            }
            let number = |index: usize| {
                cell(index).parse::<f64>().map_err(|_| bad(format!("not a number: {line}")))
            };
            points.push((number(c_prompt)?, number(c_prompt_time)?, number(c_token_time)?));
        }
        if points.len() < 3 {
            return Err(bad(format!("{} rows for {model} on {hardware}", points.len())));
        }
        // Normal equations of y = a + b·n + c·n², solved by Gaussian elimination.
        let mut matrix = [[0.0f64; 4]; 3];
        for (n, prompt_time, _) in &points {
            let basis = [1.0, *n, n * n];
            for row in 0..3 {
                for col in 0..3 {
                    matrix[row][col] += basis[row] * basis[col];
                }
                matrix[row][3] += basis[row] * prompt_time;
            }
        }
        let [a, b, c] = solve3(matrix).ok_or_else(|| bad("singular fit".to_owned()))?;
        let ms_per_output_token =
            points.iter().map(|(_, _, token)| token).sum::<f64>() / points.len() as f64;
        Ok(LatencyModel {
            prefill_intercept_ms: a,
            prefill_ms_per_token: b,
            prefill_ms_per_token_squared: c,
            ms_per_output_token,
            ..LARGE
        })
    }
}

fn solve3(mut m: [[f64; 4]; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|x, y| m[*x][col].abs().total_cmp(&m[*y][col].abs()))?;
        m.swap(col, pivot);
        if m[col][col].abs() < f64::MIN_POSITIVE {
            return None;
        }
        for row in 0..3 {
            if row != col {
                let factor = m[row][col] / m[col][col];
                let pivot_row = m[col];
                for (cell, pivot_cell) in m[row].iter_mut().zip(pivot_row) {
                    *cell -= factor * pivot_cell;
                }
            }
        }
    }
    Some([m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]])
}
