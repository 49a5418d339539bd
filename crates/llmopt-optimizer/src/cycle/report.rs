//! What one cycle reports, and the loop's counters over all cycles.

use std::collections::BTreeMap;

use llmopt_experiments::decision::Decision as EngineDecision;
use serde::{Deserialize, Serialize};

use crate::strategy::Proposal;

/// What one cycle did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CycleReport {
    pub at_ms: i64,
    pub duration_ms: f64,
    pub records_read: usize,
    pub proposals: Vec<Proposal>,
    pub started: Vec<String>,
    pub decisions: Vec<EngineDecision>,
    pub adopted: Vec<String>,
    pub not_adopted: Vec<(String, String)>,
    pub rejected: Vec<String>,
    pub awaiting_approval: Vec<String>,
    /// Adoptions rolled back this cycle (their experiment ids).
    #[serde(default)]
    pub rolled_back: Vec<String>,
    /// What workload discovery did this cycle (fitted, or why not); `None`: nothing was due.
    pub workloads: Option<String>,
    /// The judge's calls in the look-back window (left out of the analysis) and their cost,
    /// USD: what grading answers cost the optimizer.
    #[serde(default)]
    pub judge_calls: usize,
    #[serde(default)]
    pub judge_cost_usd: f64,
}

/// Counters of the loop, exported by the binary as Prometheus metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoopMetrics {
    pub runs: u64,
    pub failed_runs: u64,
    pub last_duration_seconds: f64,
    pub durations_seconds: Vec<f64>,
    /// Measured saving of the adopted changes in force against their holdouts, USD per day
    /// (each credited with its own marginal effect, see `watch`).
    pub cost_reduction_usd_per_day: f64,
    /// Rollbacks by cause (`guardrail:<metric>`, `cost`, `latency`, `operator`).
    pub rollbacks: BTreeMap<String, u64>,
    pub active_experiments: u64,
    /// (strategy, count) of proposals made, over all cycles.
    pub proposals: BTreeMap<String, u64>,
    /// (strategy, outcome) → count of decisions.
    pub decisions: BTreeMap<(String, String), u64>,
}
