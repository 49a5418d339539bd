//! Forecasting: linear trend, Holt (additive trend) and Holt–Winters (additive or multiplicative
//! seasonality), prediction intervals, automatic model choice and budget projection.
//!
//! Design choices:
//! - **statsmodels' recursions and initialisation.** The smoothing models follow
//!   `statsmodels.tsa.holtwinters.ExponentialSmoothing` with `initialization_method="simple"`:
//!   without seasonality the initial level is `y₀` and the trend `y₁ − y₀`; with a period `m` the
//!   level is the mean of the first season, the trend the mean of `(y[m..2m] − y[..m]) / m`, and
//!   the seasonal factors `y[..m] − level` (additive) or `y[..m] / level` (multiplicative). Fixed
//!   initial states make the fit a search over the smoothing parameters only, and let the tests
//!   compare fitted values with statsmodels to 1e-9 given the same parameters.
//! - **Fitting** minimises the sum of squared one-step errors over α, β, γ ∈ (0, 1) with
//!   Nelder–Mead on a logistic transform, started from the best points of a small grid.
//! - **Prediction intervals** for the additive models are the exact ETS class-1 variances,
//!   `σ² (1 + Σ_{j<h} c_j²)` with `c_j = α (1 + j β) + γ [j mod m = 0]`, σ² the residual variance
//!   (SSE / (n − parameters)). For the multiplicative model the same weights are used as an
//!   approximation (documented, not exact). The linear trend uses the OLS prediction interval
//!   with Student's t.
//! - **Automatic choice** fits every applicable model on all but a hold-out tail, scores the
//!   hold-out mean squared error, and refits the winner on the whole series.

use llmopt_core::Money;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use crate::error::{Error, Result, check_finite};

/// Which model to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Ordinary least squares on time: `y = a + b t`.
    LinearTrend,
    /// Holt's linear (additive) trend.
    Holt,
    /// Holt–Winters with additive trend and additive seasonality of the given period.
    HoltWintersAdditive { period: usize },
    /// Holt–Winters with additive trend and multiplicative seasonality (needs positive data).
    HoltWintersMultiplicative { period: usize },
}

impl Method {
    fn period(self) -> Option<usize> {
        match self {
            Method::HoltWintersAdditive { period }
            | Method::HoltWintersMultiplicative { period } => Some(period),
            _ => None,
        }
    }

    fn smoothing_parameter_count(self) -> usize {
        match self {
            Method::LinearTrend => 2,
            Method::Holt => 2,
            Method::HoltWintersAdditive { .. } | Method::HoltWintersMultiplicative { .. } => 3,
        }
    }

    /// The fewest observations the method accepts.
    pub fn minimum_length(self) -> usize {
        match self.period() {
            Some(period) => 2 * period + 1,
            None => 3,
        }
    }
}

/// Smoothing parameters (`gamma` is ignored without seasonality).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Smoothing {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

/// Initial states from statsmodels' "simple" rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitialState {
    pub level: f64,
    pub trend: f64,
    /// Seasonal factors for the first `period` observations (empty without seasonality).
    pub seasonal: Vec<f64>,
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedModel {
    pub method: Method,
    /// For smoothing models; for the linear trend, `alpha` is the intercept and `beta` the slope.
    pub smoothing: Smoothing,
    pub initial: InitialState,
    /// One-step-ahead predictions of each observation.
    pub fitted: Vec<f64>,
    pub sse: f64,
    /// Residual variance, SSE / (n − parameters).
    pub sigma2: f64,
    pub observations: usize,
    final_level: f64,
    final_trend: f64,
    /// Seasonal factors for the next `period` steps, in order.
    next_seasonal: Vec<f64>,
}

/// Point forecasts and a two-sided prediction interval per horizon (1-based: `mean[0]` is h = 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub mean: Vec<f64>,
    pub standard_error: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub confidence: f64,
}

/// statsmodels' "simple" initial states.
pub fn simple_initial_state(method: Method, series: &[f64]) -> Result<InitialState> {
    if series.len() < method.minimum_length() {
        return Err(Error::TooFewValues {
            what: "forecast model",
            needed: method.minimum_length(),
            got: series.len(),
        });
    }
    Ok(match method.period() {
        None => {
            InitialState { level: series[0], trend: series[1] - series[0], seasonal: Vec::new() }
        }
        Some(period) => {
            let level = series[..period].iter().sum::<f64>() / period as f64;
            let trend = (0..period).map(|i| series[period + i] - series[i]).sum::<f64>()
                / period as f64
                / period as f64;
            let seasonal = match method {
                Method::HoltWintersMultiplicative { .. } => {
                    series[..period].iter().map(|y| y / level).collect()
                }
                _ => series[..period].iter().map(|y| y - level).collect(),
            };
            InitialState { level, trend, seasonal }
        }
    })
}

fn validate_series(method: Method, series: &[f64]) -> Result<()> {
    check_finite("forecast series", series)?;
    if let Some(period) = method.period()
        && period < 2
    {
        return Err(Error::InvalidParameter {
            name: "period",
            reason: "must be at least 2".into(),
        });
    }
    if series.len() < method.minimum_length() {
        return Err(Error::TooFewValues {
            what: "forecast model",
            needed: method.minimum_length(),
            got: series.len(),
        });
    }
    if matches!(method, Method::HoltWintersMultiplicative { .. })
        && series.iter().any(|&y| y <= 0.0)
    {
        return Err(Error::InvalidParameter {
            name: "series",
            reason: "multiplicative seasonality needs strictly positive values".into(),
        });
    }
    Ok(())
}

/// Runs the smoothing recursions with fixed parameters and initial states.
pub fn smooth_with(
    method: Method,
    series: &[f64],
    smoothing: Smoothing,
    initial: InitialState,
) -> Result<FittedModel> {
    validate_series(method, series)?;
    if method == Method::LinearTrend {
        return Err(Error::InvalidParameter {
            name: "method",
            reason: "the linear trend has no smoothing recursion; use fit".into(),
        });
    }
    let run = run_smoothing(method, series, smoothing, &initial);
    let n = series.len();
    let degrees = n.saturating_sub(method.smoothing_parameter_count()).max(1);
    Ok(FittedModel {
        method,
        smoothing,
        sigma2: run.sse / degrees as f64,
        sse: run.sse,
        fitted: run.fitted,
        observations: n,
        final_level: run.level,
        final_trend: run.trend,
        next_seasonal: run.next_seasonal,
        initial,
    })
}

struct SmoothingRun {
    fitted: Vec<f64>,
    sse: f64,
    level: f64,
    trend: f64,
    next_seasonal: Vec<f64>,
}

fn run_smoothing(
    method: Method,
    series: &[f64],
    smoothing: Smoothing,
    initial: &InitialState,
) -> SmoothingRun {
    let Smoothing { alpha, beta, gamma } = smoothing;
    let mut level = initial.level;
    let mut trend = initial.trend;
    let mut fitted = Vec::with_capacity(series.len());
    let mut sse = 0.0;
    match method {
        Method::LinearTrend | Method::Holt => {
            for &y in series {
                let prediction = level + trend;
                fitted.push(prediction);
                sse += (y - prediction) * (y - prediction);
                let new_level = alpha * y + (1.0 - alpha) * prediction;
                trend = beta * (new_level - level) + (1.0 - beta) * trend;
                level = new_level;
            }
            SmoothingRun { fitted, sse, level, trend, next_seasonal: Vec::new() }
        }
        Method::HoltWintersAdditive { period } | Method::HoltWintersMultiplicative { period } => {
            let multiplicative = matches!(method, Method::HoltWintersMultiplicative { .. });
            // A ring of the last `period` seasonal factors: slot t % period holds the factor for t.
            let mut seasonal = initial.seasonal.clone();
            for (t, &y) in series.iter().enumerate() {
                let slot = t % period;
                let season = seasonal[slot];
                let base = level + trend;
                let prediction = if multiplicative { base * season } else { base + season };
                fitted.push(prediction);
                sse += (y - prediction) * (y - prediction);
                let (new_level, new_season) = if multiplicative {
                    (
                        alpha * y / season + (1.0 - alpha) * base,
                        gamma * y / base + (1.0 - gamma) * season,
                    )
                } else {
                    (
                        alpha * (y - season) + (1.0 - alpha) * base,
                        gamma * (y - base) + (1.0 - gamma) * season,
                    )
                };
                trend = beta * (new_level - level) + (1.0 - beta) * trend;
                level = new_level;
                seasonal[slot] = new_season;
            }
            let start = series.len() % period;
            let next_seasonal = (0..period).map(|i| seasonal[(start + i) % period]).collect();
            SmoothingRun { fitted, sse, level, trend, next_seasonal }
        }
    }
}

/// Fits a model: OLS for the linear trend, least-squares smoothing parameters otherwise.
pub fn fit(method: Method, series: &[f64]) -> Result<FittedModel> {
    validate_series(method, series)?;
    if method == Method::LinearTrend {
        return fit_linear(series);
    }
    let initial = simple_initial_state(method, series)?;
    let dimensions = if method.period().is_some() { 3 } else { 2 };
    let objective = |point: &[f64]| {
        let smoothing = smoothing_from_unbounded(point);
        let sse = run_smoothing(method, series, smoothing, &initial).sse;
        if sse.is_finite() { sse } else { f64::MAX }
    };
    // Coarse grid, then Nelder–Mead from the three best grid points.
    let alphas = [0.05, 0.2, 0.5, 0.8, 0.95];
    let betas = [0.01, 0.1, 0.3];
    let gammas: &[f64] = if dimensions == 3 { &[0.01, 0.1, 0.3] } else { &[0.5] };
    let mut grid = Vec::new();
    for &alpha in &alphas {
        for &beta in &betas {
            for &gamma in gammas {
                let point: Vec<f64> =
                    [alpha, beta, gamma][..dimensions].iter().map(|&p| logit(p)).collect();
                grid.push((objective(&point), point));
            }
        }
    }
    grid.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best: Option<(f64, Vec<f64>)> = None;
    for (_, start) in grid.into_iter().take(3) {
        let (value, point) = nelder_mead(&objective, start, 2000, 1e-12);
        if best.as_ref().is_none_or(|(best_value, _)| value < *best_value) {
            best = Some((value, point));
        }
    }
    let (_, point) = best.ok_or_else(|| Error::Degenerate("no starting point".into()))?;
    smooth_with(method, series, smoothing_from_unbounded(&point), initial)
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn logistic(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn smoothing_from_unbounded(point: &[f64]) -> Smoothing {
    Smoothing {
        alpha: logistic(point[0]),
        beta: logistic(point[1]),
        gamma: point.get(2).map_or(0.0, |&z| logistic(z)),
    }
}

/// Nelder–Mead minimisation (standard coefficients); returns the best value and point.
fn nelder_mead(
    objective: &impl Fn(&[f64]) -> f64,
    start: Vec<f64>,
    max_iterations: usize,
    tolerance: f64,
) -> (f64, Vec<f64>) {
    let dimensions = start.len();
    let mut simplex: Vec<(f64, Vec<f64>)> = vec![(objective(&start), start.clone())];
    for axis in 0..dimensions {
        let mut vertex = start.clone();
        vertex[axis] += 0.5;
        simplex.push((objective(&vertex), vertex));
    }
    for _ in 0..max_iterations {
        simplex.sort_by(|a, b| a.0.total_cmp(&b.0));
        let best = simplex[0].0;
        let worst = simplex[dimensions].0;
        if (worst - best).abs() <= tolerance * (best.abs() + tolerance) {
            break;
        }
        let centroid: Vec<f64> = (0..dimensions)
            .map(|axis| {
                simplex[..dimensions].iter().map(|v| v.1[axis]).sum::<f64>() / dimensions as f64
            })
            .collect();
        let along = |factor: f64| -> Vec<f64> {
            (0..dimensions)
                .map(|axis| {
                    centroid[axis] + factor * (simplex[dimensions].1[axis] - centroid[axis])
                })
                .collect()
        };
        let reflected = along(-1.0);
        let reflected_value = objective(&reflected);
        if reflected_value < simplex[0].0 {
            let expanded = along(-2.0);
            let expanded_value = objective(&expanded);
            simplex[dimensions] = if expanded_value < reflected_value {
                (expanded_value, expanded)
            } else {
                (reflected_value, reflected)
            };
        } else if reflected_value < simplex[dimensions - 1].0 {
            simplex[dimensions] = (reflected_value, reflected);
        } else {
            let contracted = if reflected_value < worst { along(-0.5) } else { along(0.5) };
            let contracted_value = objective(&contracted);
            if contracted_value < worst.min(reflected_value) {
                simplex[dimensions] = (contracted_value, contracted);
            } else {
                let anchor = simplex[0].1.clone();
                for vertex in simplex.iter_mut().skip(1) {
                    let shrunk: Vec<f64> = (0..dimensions)
                        .map(|axis| anchor[axis] + 0.5 * (vertex.1[axis] - anchor[axis]))
                        .collect();
                    *vertex = (objective(&shrunk), shrunk);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (value, point) = simplex.swap_remove(0);
    (value, point)
}

fn fit_linear(series: &[f64]) -> Result<FittedModel> {
    let n = series.len() as f64;
    let time_mean = (n - 1.0) / 2.0;
    let value_mean = series.iter().sum::<f64>() / n;
    let mut sxx = 0.0;
    let mut sxy = 0.0;
    for (t, &y) in series.iter().enumerate() {
        let dt = t as f64 - time_mean;
        sxx += dt * dt;
        sxy += dt * (y - value_mean);
    }
    let slope = sxy / sxx;
    let intercept = value_mean - slope * time_mean;
    let fitted: Vec<f64> = (0..series.len()).map(|t| intercept + slope * t as f64).collect();
    let sse: f64 = series.iter().zip(&fitted).map(|(y, f)| (y - f) * (y - f)).sum();
    Ok(FittedModel {
        method: Method::LinearTrend,
        smoothing: Smoothing { alpha: intercept, beta: slope, gamma: 0.0 },
        initial: InitialState { level: intercept, trend: slope, seasonal: Vec::new() },
        fitted,
        sigma2: sse / (n - 2.0),
        sse,
        observations: series.len(),
        final_level: intercept + slope * (n - 1.0),
        final_trend: slope,
        next_seasonal: Vec::new(),
    })
}

impl FittedModel {
    /// Point forecasts for horizons 1..=horizon.
    pub fn point_forecast(&self, horizon: usize) -> Vec<f64> {
        (1..=horizon)
            .map(|h| {
                let base = self.final_level + h as f64 * self.final_trend;
                match self.method {
                    Method::LinearTrend | Method::Holt => base,
                    Method::HoltWintersAdditive { period } => {
                        base + self.next_seasonal[(h - 1) % period]
                    }
                    Method::HoltWintersMultiplicative { period } => {
                        base * self.next_seasonal[(h - 1) % period]
                    }
                }
            })
            .collect()
    }

    /// ETS error weights `c_j` for j = 1..horizon (index 0 is c₁).
    fn error_weights(&self, horizon: usize) -> Vec<f64> {
        let Smoothing { alpha, beta, gamma } = self.smoothing;
        (1..=horizon)
            .map(|j| {
                let seasonal = match self.method.period() {
                    Some(period) if j % period == 0 => gamma,
                    _ => 0.0,
                };
                alpha * (1.0 + j as f64 * beta) + seasonal
            })
            .collect()
    }

    fn linear_time_terms(&self) -> (f64, f64) {
        let n = self.observations as f64;
        let time_mean = (n - 1.0) / 2.0;
        let sxx = n * (n * n - 1.0) / 12.0;
        (time_mean, sxx)
    }

    /// Forecasts with a two-sided prediction interval at `confidence`.
    pub fn forecast(&self, horizon: usize, confidence: f64) -> Result<Forecast> {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(Error::InvalidParameter {
                name: "confidence",
                reason: format!("{confidence} is not in (0, 1)"),
            });
        }
        let mean = self.point_forecast(horizon);
        let tail = 1.0 - (1.0 - confidence) / 2.0;
        let (standard_error, critical): (Vec<f64>, f64) = match self.method {
            Method::LinearTrend => {
                let n = self.observations as f64;
                let (time_mean, sxx) = self.linear_time_terms();
                let errors = (1..=horizon)
                    .map(|h| {
                        let time = n - 1.0 + h as f64;
                        (self.sigma2 * (1.0 + 1.0 / n + (time - time_mean).powi(2) / sxx)).sqrt()
                    })
                    .collect();
                let distribution = StudentsT::new(0.0, 1.0, n - 2.0)
                    .map_err(|e| Error::Degenerate(format!("Student t: {e}")))?;
                (errors, distribution.inverse_cdf(tail))
            }
            _ => {
                let weights = self.error_weights(horizon);
                let mut cumulative = 0.0;
                let mut errors = Vec::with_capacity(horizon);
                for weight in &weights {
                    errors.push((self.sigma2 * (1.0 + cumulative)).sqrt());
                    cumulative += weight * weight;
                }
                (errors, Normal::standard().inverse_cdf(tail))
            }
        };
        let lower = mean.iter().zip(&standard_error).map(|(m, s)| m - critical * s).collect();
        let upper = mean.iter().zip(&standard_error).map(|(m, s)| m + critical * s).collect();
        Ok(Forecast { mean, standard_error, lower, upper, confidence })
    }

    /// Variance of the sum of the next `horizon` observations around the sum of the forecasts.
    pub fn sum_variance(&self, horizon: usize) -> f64 {
        match self.method {
            Method::LinearTrend => {
                let n = self.observations as f64;
                let (time_mean, sxx) = self.linear_time_terms();
                let centred_sum: f64 = (1..=horizon).map(|h| n - 1.0 + h as f64 - time_mean).sum();
                let h = horizon as f64;
                self.sigma2 * (h + h * h / n + centred_sum * centred_sum / sxx)
            }
            _ => {
                // S = Σ_i ε_{T+i} (1 + C_{H−i}), C_k = Σ_{j≤k} c_j.
                let weights = self.error_weights(horizon);
                let mut cumulative = vec![0.0; horizon + 1];
                for k in 1..=horizon {
                    cumulative[k] = cumulative[k - 1] + weights[k - 1];
                }
                (1..=horizon).map(|i| (1.0 + cumulative[horizon - i]).powi(2)).sum::<f64>()
                    * self.sigma2
            }
        }
    }
}

/// Hold-out score of one candidate in [`fit_auto`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateScore {
    pub method: Method,
    /// Mean squared error on the hold-out tail (`None` when the method could not be fitted).
    pub holdout_mse: Option<f64>,
}

/// The chosen model and how every candidate scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoFit {
    pub model: FittedModel,
    pub scores: Vec<CandidateScore>,
}

/// Fits every applicable model on all but the last `holdout` points, keeps the one with the
/// lowest hold-out MSE, and refits it on the whole series.
pub fn fit_auto(series: &[f64], period: Option<usize>, holdout: usize) -> Result<AutoFit> {
    check_finite("forecast series", series)?;
    if holdout == 0 || holdout >= series.len() {
        return Err(Error::InvalidParameter {
            name: "holdout",
            reason: format!("must be in 1..{}", series.len()),
        });
    }
    let mut candidates = vec![Method::LinearTrend, Method::Holt];
    if let Some(period) = period {
        candidates.push(Method::HoltWintersAdditive { period });
        candidates.push(Method::HoltWintersMultiplicative { period });
    }
    let (train, test) = series.split_at(series.len() - holdout);
    let mut scores = Vec::new();
    let mut best: Option<(f64, Method)> = None;
    for method in candidates {
        let holdout_mse = fit(method, train).ok().map(|model| {
            let predictions = model.point_forecast(test.len());
            test.iter().zip(&predictions).map(|(y, p)| (y - p) * (y - p)).sum::<f64>()
                / test.len() as f64
        });
        if let Some(mse) = holdout_mse.filter(|mse| mse.is_finite())
            && best.is_none_or(|(best_mse, _)| mse < best_mse)
        {
            best = Some((mse, method));
        }
        scores.push(CandidateScore { method, holdout_mse });
    }
    let (_, method) = best.ok_or(Error::TooFewValues {
        what: "automatic forecast (no candidate fits the training part)",
        needed: Method::LinearTrend.minimum_length() + holdout,
        got: series.len(),
    })?;
    Ok(AutoFit { model: fit(method, series)?, scores })
}

/// Where spend in a budget period is heading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetProjection {
    pub spent: Money,
    pub budget: Money,
    /// Forecast spend over the remaining steps, in dollars.
    pub projected_remaining_usd: f64,
    pub projected_total_usd: f64,
    /// Standard deviation of the projected total, in dollars.
    pub standard_deviation_usd: f64,
    /// 95 % interval of the projected total.
    pub lower_usd: f64,
    pub upper_usd: f64,
    /// P(total > budget) under a normal approximation of the forecast errors.
    pub probability_over_budget: f64,
}

/// Projects the period total from spend so far and a model fitted on per-step spend (dollars).
pub fn project_budget(
    model: &FittedModel,
    spent: Money,
    remaining_steps: usize,
    budget: Money,
) -> Result<BudgetProjection> {
    let projected_remaining_usd: f64 = model.point_forecast(remaining_steps).iter().sum();
    let projected_total_usd = spent.as_usd_f64() + projected_remaining_usd;
    let standard_deviation_usd = model.sum_variance(remaining_steps).max(0.0).sqrt();
    let normal = Normal::standard();
    let z95 = normal.inverse_cdf(0.975);
    let probability_over_budget = if standard_deviation_usd > 0.0 {
        normal.sf((budget.as_usd_f64() - projected_total_usd) / standard_deviation_usd)
    } else if projected_total_usd > budget.as_usd_f64() {
        1.0
    } else {
        0.0
    };
    Ok(BudgetProjection {
        spent,
        budget,
        projected_remaining_usd,
        projected_total_usd,
        standard_deviation_usd,
        lower_usd: projected_total_usd - z95 * standard_deviation_usd,
        upper_usd: projected_total_usd + z95 * standard_deviation_usd,
        probability_over_budget,
    })
}

/// The dense per-window series that forecasts are fitted on: one `(window start, value)` for
/// every whole window of `window_ms` in `[from_ms, to_ms)`, the windows starting at `from_ms`
/// (a last window that would end after `to_ms` is left out, being partly observed). The values
/// of `points` (`(timestamp ms, value)`, in any order) are summed into the window holding their
/// timestamp; points outside the windows are ignored, and a window without points is 0 (no
/// traffic is zero requests and zero spend). Pass per-window aggregates (their window starts as
/// timestamps) or raw per-call values alike. `window_ms` below 1 is taken as 1.
pub fn dense_series(
    points: impl IntoIterator<Item = (i64, f64)>,
    window_ms: i64,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, f64)> {
    let window = window_ms.max(1);
    let count = usize::try_from(to_ms.saturating_sub(from_ms).max(0) / window).unwrap_or(0);
    let mut series: Vec<(i64, f64)> =
        (0..count).map(|index| (from_ms + index as i64 * window, 0.0)).collect();
    for (ts_ms, value) in points {
        // Before `from_ms`, the offset is negative (and `/` would round it to window 0).
        let index = ts_ms
            .checked_sub(from_ms)
            .filter(|offset| *offset >= 0)
            .and_then(|offset| usize::try_from(offset / window).ok());
        if let Some(slot) = index.and_then(|index| series.get_mut(index)) {
            slot.1 += value;
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_series_fills_whole_windows_and_sums_their_points() {
        // Windows of 10 from 100 to 145: 100, 110, 120, 130 (140–150 ends after 145).
        let points = [(125, 2.0), (99, 9.0), (100, 1.0), (121, 0.5), (140, 7.0), (139, 4.0)];
        assert_eq!(
            dense_series(points, 10, 100, 145),
            [(100, 1.0), (110, 0.0), (120, 2.5), (130, 4.0)]
        );
        assert!(dense_series(points, 10, 100, 100).is_empty());
        assert!(dense_series(points, 10, 100, 50).is_empty());
        assert_eq!(dense_series([(5, 1.0)], 0, 4, 6), [(4, 0.0), (5, 1.0)]);
    }

    #[test]
    fn linear_trend_recovers_a_line_exactly() {
        let series: Vec<f64> = (0..20).map(|t| 3.0 + 0.5 * t as f64).collect();
        let model = fit(Method::LinearTrend, &series).unwrap();
        assert!((model.smoothing.alpha - 3.0).abs() < 1e-12);
        assert!((model.smoothing.beta - 0.5).abs() < 1e-12);
        let forecast = model.point_forecast(2);
        assert!((forecast[0] - 13.0).abs() < 1e-12 && (forecast[1] - 13.5).abs() < 1e-12);
    }

    #[test]
    fn simple_smoothing_interval_grows_with_alpha_squared() {
        // β = 0 and a flat initial trend: simple exponential smoothing, Var(h) = σ²(1 + (h−1)α²).
        let series = [10.0, 12.0, 11.0, 13.0, 12.0, 14.0];
        let smoothing = Smoothing { alpha: 0.4, beta: 0.0, gamma: 0.0 };
        let initial = InitialState { level: 10.0, trend: 0.0, seasonal: Vec::new() };
        let model = smooth_with(Method::Holt, &series, smoothing, initial).unwrap();
        let forecast = model.forecast(3, 0.95).unwrap();
        for h in 0..3 {
            let expected = (model.sigma2 * (1.0 + h as f64 * 0.16)).sqrt();
            assert!((forecast.standard_error[h] - expected).abs() < 1e-12);
        }
        // Hand-computed level after six steps: 10, 10.8, 10.88, 11.728, 11.8368, 12.70208
        assert!((forecast.mean[0] - 12.70208).abs() < 1e-12);
    }

    #[test]
    fn sum_variance_follows_the_error_weights() {
        // Holt with α = 0.5, β = 0.2: c₁ = α(1 + β) = 0.6, c₂ = α(1 + 2β) = 0.7.
        // S₃ = ε₁(1 + c₁ + c₂) + ε₂(1 + c₁) + ε₃ → Var = σ²(2.3² + 1.6² + 1).
        let series = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 8.0];
        let smoothing = Smoothing { alpha: 0.5, beta: 0.2, gamma: 0.0 };
        let initial = InitialState { level: 1.0, trend: 1.0, seasonal: Vec::new() };
        let model = smooth_with(Method::Holt, &series, smoothing, initial).unwrap();
        let expected = model.sigma2 * (2.3_f64.powi(2) + 1.6_f64.powi(2) + 1.0);
        assert!((model.sum_variance(3) - expected).abs() < 1e-12 * expected);
        // Linear trend on 0..n: Var(sum of the next H) = σ²(H + H²/n + (Σ centred times)²/Sxx).
        let line: Vec<f64> =
            (0..10).map(|t| t as f64 + if t % 2 == 0 { 0.5 } else { -0.5 }).collect();
        let linear = fit(Method::LinearTrend, &line).unwrap();
        // n = 10, mean time 4.5, Sxx = 82.5; next two times 10, 11 → centred 5.5 + 6.5 = 12.
        let expected = linear.sigma2 * (2.0 + 4.0 / 10.0 + 144.0 / 82.5);
        assert!((linear.sum_variance(2) - expected).abs() < 1e-12 * expected);
    }

    #[test]
    fn budget_probability_is_one_half_at_the_projection() {
        let series: Vec<f64> = (0..30).map(|t| 10.0 + (t % 3) as f64).collect();
        let model = fit(Method::LinearTrend, &series).unwrap();
        let remaining: f64 = model.point_forecast(10).iter().sum();
        let spent = Money::from_usd_str("100").unwrap();
        let budget = Money::from_usd_f64(100.0 + remaining).unwrap();
        let projection = project_budget(&model, spent, 10, budget).unwrap();
        assert!((projection.probability_over_budget - 0.5).abs() < 1e-6);
    }
}
