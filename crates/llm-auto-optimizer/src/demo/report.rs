//! The demo's report: its figures as a serialisable [`DemoReport`] (`demo --json`) and as text.

use std::{collections::BTreeMap, io::Write};

use anyhow::Result;
use serde::Serialize;

/// Cost, quality and latency of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseStats {
    pub requests: u64,
    pub errors: u64,
    pub cost_usd: f64,
    pub cost_per_1k_requests_usd: f64,
    pub accuracy: f64,
    /// Share of requests answered by the weak model (routing), cache hits of its answers included.
    pub weak_share: f64,
    pub cache_hit_share: f64,
    /// Latency of the simulated models at real speed (measured ÷ speed-up), ms.
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub seconds: f64,
}

/// One experiment as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentLine {
    pub id: String,
    pub name: String,
    pub status: String,
    pub requests: Vec<(String, u64)>,
    pub verdict: String,
}

/// What the demo found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub workload: String,
    pub subjects: usize,
    pub baseline: PhaseStats,
    pub after: PhaseStats,
    pub measured_saving_share: f64,
    pub quality_ratio: f64,
    pub proposals: Vec<llmopt_optimizer::Proposal>,
    pub experiments: Vec<ExperimentLine>,
    pub adopted: Vec<llmopt_optimizer::Adoption>,
    pub not_adopted: Vec<(String, String)>,
    pub guardrail_stops: Vec<String>,
    pub routed_subjects: Vec<String>,
    pub strong_calls_avoided: f64,
    pub random_routing_reference: f64,
    pub oracle_reference: f64,
    pub quality_budget_used: f64,
    pub optimization_requests: u64,
    pub cycles: u64,
    /// Audit-log entries by kind.
    pub audit: BTreeMap<String, u64>,
}

pub fn write_report(report: &DemoReport, out: &mut (dyn Write + Send)) -> Result<()> {
    let b = &report.baseline;
    let a = &report.after;
    writeln!(out, "\nLLM Auto-Optimizer demo")?;
    writeln!(out, "workload: {}", report.workload)?;
    writeln!(
        out,
        "\n{:<10} {:>9} {:>11} {:>14} {:>9} {:>10} {:>9} {:>10} {:>10}",
        "phase",
        "requests",
        "cost USD",
        "USD / 1k req",
        "accuracy",
        "weak share",
        "cache hit",
        "p50 ms",
        "p95 ms"
    )?;
    for (name, s) in [("baseline", b), ("after", a)] {
        writeln!(
            out,
            "{:<10} {:>9} {:>11.4} {:>14.4} {:>8.1}% {:>9.1}% {:>8.1}% {:>10.0} {:>10.0}",
            name,
            s.requests,
            s.cost_usd,
            s.cost_per_1k_requests_usd,
            s.accuracy * 100.0,
            s.weak_share * 100.0,
            s.cache_hit_share * 100.0,
            s.latency_p50_ms,
            s.latency_p95_ms
        )?;
    }
    writeln!(
        out,
        "\nmeasured on the same {} requests: cost {:+.1} %, quality {:.1} % of the baseline's",
        b.requests,
        -report.measured_saving_share * 100.0,
        report.quality_ratio * 100.0
    )?;
    writeln!(out, "\nproposals after the baseline ({}):", report.proposals.len())?;
    for proposal in report.proposals.iter().take(12) {
        writeln!(out, "{}", proposal_line(proposal))?;
    }
    if report.proposals.len() > 12 {
        writeln!(out, "  … and {} more", report.proposals.len() - 12)?;
    }
    writeln!(
        out,
        "\nexperiments ({}, {} optimization requests, {} cycles):",
        report.experiments.len(),
        report.optimization_requests,
        report.cycles
    )?;
    for line in &report.experiments {
        let counts: Vec<String> =
            line.requests.iter().map(|(arm, n)| format!("{arm} {n}")).collect();
        writeln!(out, "  {} {:<9} [{}] {}", line.id, line.status, counts.join(", "), line.name)?;
        writeln!(out, "      {}", line.verdict)?;
    }
    let kinds: Vec<String> = report.audit.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    writeln!(out, "\naudit log: {}", kinds.join(", "))?;
    writeln!(out, "\nadopted ({}):", report.adopted.len())?;
    for adoption in &report.adopted {
        writeln!(
            out,
            "  {} {:?}: cost/request {:.6} → {:.6} USD, quality budget {:.4}",
            adoption.experiment_id,
            adoption.change,
            adoption.control_cost_per_request,
            adoption.treatment_cost_per_request,
            adoption.quality_budget_used
        )?;
    }
    if !report.not_adopted.is_empty() {
        writeln!(out, "\nwinners not adopted ({}):", report.not_adopted.len())?;
        for (id, reason) in report.not_adopted.iter().take(10) {
            writeln!(out, "  {id}: {reason}")?;
        }
    }
    writeln!(out, "\nguardrails that fired ({}):", report.guardrail_stops.len())?;
    for stop in report.guardrail_stops.iter().take(10) {
        writeln!(out, "  {stop}")?;
    }
    writeln!(
        out,
        "\nmodel routing (RouteLLM's measure): {:.1} % of strong-model calls avoided at {:.1} % of the strong \
         model's quality; {} of {} subjects routed; quality budget used {:.4} of 0.05",
        report.strong_calls_avoided * 100.0,
        report.quality_ratio * 100.0,
        report.routed_subjects.len(),
        report.subjects,
        report.quality_budget_used
    )?;
    writeln!(
        out,
        "references on the same prompts at 95 % quality: random routing {:.1} %, oracle by subject {:.1} %",
        report.random_routing_reference * 100.0,
        report.oracle_reference * 100.0
    )?;
    Ok(())
}

/// One proposal as the demo and `optimize` print it: strategy, saving per day with its interval,
/// summary.
pub fn proposal_line(proposal: &llmopt_optimizer::Proposal) -> String {
    format!(
        "  {:<15} {:>10.2} USD/day [{:.2}, {:.2}]  {}",
        proposal.strategy.as_str(),
        proposal.saving.usd_per_day,
        proposal.saving.low,
        proposal.saving.high,
        proposal.summary
    )
}
