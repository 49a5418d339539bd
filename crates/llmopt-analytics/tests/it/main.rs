//! Integration tests of llmopt-analytics: reference fixtures (numpy, scipy, scikit-learn,
//! statsmodels, written by `scripts/reference/make_fixtures.py`), hand-checked cases, the
//! public traces, and the offline report over them.

#![allow(
    clippy::unwrap_used,
    reason = "fixture helpers outside #[test] functions should panic on a malformed fixture"
)]

mod anomaly_series;
mod cache_cost;
mod cluster_reference;
mod forecast_reference;
mod report;
mod stats_reference;
mod support;
mod traces_real;
mod workload;
