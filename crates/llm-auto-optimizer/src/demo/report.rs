//! The demo's report: its figures as a serialisable [`DemoReport`] (`demo --json`) and as text.

use std::{collections::BTreeMap, io::Write};

use anyhow::Result;
use serde::Serialize;

use super::measure::{Interval, RoutingEffect};

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

/// The optimize phase (training prompts).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OptimizePhase {
    pub requests: u64,
    pub cycles: u64,
    /// Share of its calls answered from the response cache (training prompts repeat).
    pub cache_hit_share: f64,
    pub seconds: f64,
}

/// What the demo found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub workload: String,
    pub subjects: usize,
    /// Workloads the optimizer discovered from the prompts' content.
    pub workloads_discovered: usize,
    /// Baseline and after: the held-out prompts, adopted changes off and on.
    pub baseline: PhaseStats,
    pub after: PhaseStats,
    /// 1 − after cost ÷ baseline cost on the held-out prompts (`routing.cost_saving`).
    pub measured_saving_share: f64,
    /// After correct answers ÷ baseline correct answers (`routing.quality_vs_strong`).
    pub quality_ratio: f64,
    /// RouteLLM's measure on the held-out prompts, with bootstrap intervals.
    pub routing: RoutingEffect,
    pub optimize_phase: OptimizePhase,
    /// The first cycle's proposals.
    pub proposals: Vec<llmopt_optimizer::Proposal>,
    /// Per strategy: what it proposed, tested, adopted, rolled back or only advised.
    pub strategies: Vec<StrategyLine>,
    /// Requests of the few-shot stream (Anthropic protocol, shared system prompts) answered.
    pub few_shot_requests: u64,
    /// The scripted drift and what the optimizer did about it (`None`: no drift scripted, or
    /// no routing change was adopted to drift).
    pub drift: Option<DriftReport>,
    /// What the judge did (`--judge`), `None` without one.
    pub judge: Option<JudgeSummary>,
    pub experiments: Vec<ExperimentLine>,
    pub adopted: Vec<llmopt_optimizer::Adoption>,
    pub not_adopted: Vec<(String, String)>,
    pub guardrail_stops: Vec<String>,
    /// The scopes routed to the weak model, in words.
    pub routed_scopes: Vec<String>,
    /// On the held-out prompts, at 95 % of the strong model's quality.
    pub random_routing_reference: f64,
    pub oracle_reference: f64,
    pub quality_budget_used: f64,
    /// Audit-log entries by kind.
    pub audit: BTreeMap<String, u64>,
}

/// The judge's work in the optimize phase: calls graded, verdicts joined, and what grading
/// cost, beside the phase's own spend.
#[derive(Debug, Clone, Serialize)]
pub struct JudgeSummary {
    pub model: String,
    /// Judge calls made (each grades one answer).
    pub calls: u64,
    /// Calls of the phase carrying a verdict (feedback written by the judge).
    pub graded_calls: u64,
    pub cost_usd: f64,
    /// The phase's spend on the application's own calls (judge calls excluded).
    pub traffic_cost_usd: f64,
}

impl JudgeSummary {
    pub fn of(records: &[llmopt_core::RequestRecord], model: &str) -> JudgeSummary {
        let is_judge =
            |r: &&llmopt_core::RequestRecord| r.tags.contains_key(llmopt_core::JUDGE_TAG);
        let usd = |r: &llmopt_core::RequestRecord| r.cost.map_or(0.0, |c| c.as_usd_f64());
        JudgeSummary {
            model: model.to_owned(),
            calls: records.iter().filter(is_judge).count() as u64,
            graded_calls: records.iter().filter(|r| !is_judge(r) && !r.feedback.is_empty()).count()
                as u64,
            cost_usd: records.iter().filter(is_judge).map(usd).sum(),
            traffic_cost_usd: records.iter().filter(|r| !is_judge(r)).map(usd).sum(),
        }
    }
}

/// What one strategy did over the demo.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyLine {
    pub strategy: String,
    /// Distinct proposals over every cycle.
    pub proposed: u64,
    /// Of which advice only (no change the gateway can apply, never tested).
    pub advice_only: u64,
    /// Experiments started.
    pub tested: u64,
    pub adopted: u64,
    pub rolled_back: u64,
    /// Sum of the measured savings (against their holdouts) of its adoptions in force; `None`
    /// when none is measured.
    pub measured_saving_usd_per_day: Option<f64>,
}

/// The scripted drift: when, on which adopted routing change, and its rollback.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Optimize-phase requests sent when the weak model degraded.
    pub at_request: usize,
    /// The routing change whose workload degraded (its experiment id).
    pub adoption: String,
    pub scope: String,
    /// Prompts of the workload on which the weak model now answers wrongly.
    pub prompts: usize,
    /// Optimize-phase requests between the drift and the cycle that rolled the change back.
    pub rolled_back_after_requests: Option<u64>,
    /// The rollback's reason, with its numbers.
    pub cause: Option<String>,
}

/// Each strategy's line, from every proposal seen (id → strategy, advice only), the
/// experiments started per strategy and the adoptions.
pub fn strategy_lines(
    proposals: &BTreeMap<String, (llmopt_optimizer::StrategyKind, bool)>,
    tested: &BTreeMap<String, u64>,
    adopted: &[llmopt_optimizer::Adoption],
) -> Vec<StrategyLine> {
    llmopt_optimizer::StrategyKind::ALL
        .iter()
        .map(|kind| {
            let name = kind.as_str();
            let mine: Vec<&llmopt_optimizer::Adoption> =
                adopted.iter().filter(|a| a.strategy == Some(*kind)).collect();
            let measured: Vec<f64> = mine
                .iter()
                .filter(|a| a.in_force())
                .filter_map(|a| a.measured_saving_usd_per_day)
                .collect();
            StrategyLine {
                strategy: name.to_owned(),
                proposed: proposals.values().filter(|(k, _)| k == kind).count() as u64,
                advice_only: proposals.values().filter(|(k, advice)| k == kind && *advice).count()
                    as u64,
                tested: tested.get(name).copied().unwrap_or(0),
                adopted: mine.len() as u64,
                rolled_back: mine.iter().filter(|a| !a.in_force()).count() as u64,
                measured_saving_usd_per_day: (!measured.is_empty()).then(|| measured.iter().sum()),
            }
        })
        .collect()
}

/// A policy scope in words: `gpt-4o, discovered workload w-3fa9c2`.
pub fn scope_in_words(scope: &llmopt_optimizer::Scope) -> String {
    let mut parts = Vec::new();
    if let Some(model) = &scope.model {
        parts.push(model.clone());
    }
    if let Some(tenant) = &scope.tenant {
        parts.push(format!("tenant {tenant}"));
    }
    if let Some((key, value)) = &scope.tag {
        parts.push(format!("{key} {value}"));
    }
    if let Some(workload) = &scope.workload {
        parts.push(format!("discovered workload {workload}"));
    }
    if parts.is_empty() { "all traffic".to_owned() } else { parts.join(", ") }
}

/// A change in words: `serve with gpt-4o-mini`, `cache responses`, `cap max_tokens at 512`.
pub fn change_in_words(change: &llmopt_experiments::PolicyChange) -> String {
    let mut parts = Vec::new();
    if let Some(model) = &change.model {
        parts.push(format!("serve with {model}"));
    }
    match change.response_cache {
        Some(true) => parts.push("cache responses".to_owned()),
        Some(false) => parts.push("stop caching responses".to_owned()),
        None => {}
    }
    if let Some(cap) = change.max_tokens_cap {
        parts.push(format!("cap max_tokens at {cap}"));
    }
    if let Some(timeout) = change.timeout_ms {
        parts.push(format!("time out after {timeout} ms"));
    }
    if let Some(after) = change.hedge_after_ms {
        parts.push(format!("hedge after {after} ms"));
    }
    if let Some(ttl) = change.prompt_cache {
        parts.push(format!("mark the prompt cache ({} lifetime)", ttl.as_str()));
    }
    if parts.is_empty() { "no change".to_owned() } else { parts.join(", ") }
}

fn interval(value: &Interval) -> String {
    format!(
        "{:.1} % (95 % CI {:.1} … {:.1})",
        value.estimate * 100.0,
        value.low * 100.0,
        value.high * 100.0
    )
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
    let routing = &report.routing;
    writeln!(
        out,
        "\nrouting, measured on {} held-out prompts ({}; their labels never reached the optimizer):",
        routing.prompts,
        if routing.tags_used {
            "requests tagged with their subject".to_owned()
        } else {
            format!("no tags: {} workloads discovered from content", report.workloads_discovered)
        }
    )?;
    writeln!(out, "  strong-model calls avoided  {}", interval(&routing.strong_calls_avoided()))?;
    writeln!(out, "  quality vs the strong model {}", interval(&routing.quality_vs_strong()))?;
    writeln!(out, "  cost saving                 {}", interval(&routing.cost_saving()))?;
    writeln!(
        out,
        "  references on the same prompts at 95 % quality: random routing {:.1} %, oracle by subject {:.1} %",
        report.random_routing_reference * 100.0,
        report.oracle_reference * 100.0
    )?;
    let phase = &report.optimize_phase;
    writeln!(
        out,
        "\noptimize phase: {} requests on the training prompts, {} cycles, {:.1} % answered from the response cache",
        phase.requests,
        phase.cycles,
        phase.cache_hit_share * 100.0
    )?;
    writeln!(out, "\nfirst proposals ({}):", report.proposals.len())?;
    for proposal in report.proposals.iter().take(12) {
        writeln!(out, "{}", proposal_line(proposal))?;
    }
    if report.proposals.len() > 12 {
        writeln!(out, "  … and {} more", report.proposals.len() - 12)?;
    }
    writeln!(
        out,
        "\nstrategies (proposed = distinct proposals over all cycles; advice is never tested):"
    )?;
    writeln!(
        out,
        "  {:<15} {:>8} {:>7} {:>7} {:>8} {:>12} {:>22}",
        "strategy", "proposed", "advice", "tested", "adopted", "rolled back", "measured USD/day"
    )?;
    for line in &report.strategies {
        writeln!(
            out,
            "  {:<15} {:>8} {:>7} {:>7} {:>8} {:>12} {:>22}",
            line.strategy,
            line.proposed,
            line.advice_only,
            line.tested,
            line.adopted,
            line.rolled_back,
            line.measured_saving_usd_per_day.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
        )?;
    }
    writeln!(
        out,
        "  (few-shot stream: {} requests to claude-sonnet-4-5 with a system prompt shared per subject)",
        report.few_shot_requests
    )?;
    if let Some(judge) = &report.judge {
        writeln!(
            out,
            "  Quality signal: no client feedback; the judge {} graded {} calls of experiments and \
             adoptions ({} judge calls, ${:.4}, {:.2}% of the phase's ${:.2} traffic spend).",
            judge.model,
            judge.graded_calls,
            judge.calls,
            judge.cost_usd,
            100.0 * judge.cost_usd / judge.traffic_cost_usd.max(f64::MIN_POSITIVE),
            judge.traffic_cost_usd
        )?;
    }
    match &report.drift {
        Some(drift) => {
            writeln!(
                out,
                "\nscripted drift: after {} requests the weak model answers all {} prompts of {} wrongly ({} adopted them for routing)",
                drift.at_request, drift.prompts, drift.scope, drift.adoption
            )?;
            match (drift.rolled_back_after_requests, &drift.cause) {
                (Some(after), Some(cause)) => {
                    writeln!(out, "  rolled back {after} optimize-phase requests later: {cause}")?
                }
                _ => writeln!(out, "  not rolled back by the end of the optimize phase")?,
            }
        }
        None => writeln!(out, "\nscripted drift: none (off, or no routing change was adopted)")?,
    }
    writeln!(out, "\nexperiments ({}):", report.experiments.len())?;
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
        let mut measured = match &adoption.measurement {
            Some(m) => format!(
                "\n      measured against its {:.0} % holdout: {:.2} USD/day{} on {} applied / {} held-out requests{}",
                adoption.holdout_share * 100.0,
                m.saving_usd_per_day,
                m.saving_interval_usd_per_day.map_or_else(
                    || " (no interval yet)".to_owned(),
                    |(low, high)| format!(" (anytime-valid 95 % interval {low:.2} … {high:.2})")
                ),
                m.applied_requests,
                m.held_out_requests,
                if m.cost_unknown_excluded > 0 {
                    format!(", {} of unknown cost left out", m.cost_unknown_excluded)
                } else {
                    String::new()
                }
            ),
            None => "\n      not measured against a holdout yet".to_owned(),
        };
        if let Some(rolled) = &adoption.rolled_back {
            measured
                .push_str(&format!("\n      ROLLED BACK ({}): {}", rolled.cause, rolled.reason));
        }
        writeln!(
            out,
            "  {}: {} for {}: cost/request {:.6} → {:.6} USD, quality budget {:.4}{measured}",
            adoption.experiment_id,
            change_in_words(&adoption.change),
            scope_in_words(&adoption.scope),
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
        "\nrouted to the weak model ({}): {}; quality budget used {:.4}",
        report.routed_scopes.len(),
        if report.routed_scopes.is_empty() {
            "none".to_owned()
        } else {
            report.routed_scopes.join("; ")
        },
        report.quality_budget_used
    )?;
    Ok(())
}

/// One proposal as the demo and `optimize` print it: strategy, saving per day with its interval
/// where the data gave one, summary.
pub fn proposal_line(proposal: &llmopt_optimizer::Proposal) -> String {
    let interval = match proposal.saving.interval() {
        Some((low, high)) => format!("[{low:.2}, {high:.2}]"),
        None => "(point estimate)".to_owned(),
    };
    format!(
        "  {:<15} {:>10.2} USD/day {interval:<18} {}",
        proposal.strategy.as_str(),
        proposal.saving.usd_per_day,
        proposal.summary
    )
}
