//! Starting experiments for the best untested proposals, within the configured limits.

use std::collections::BTreeSet;

use llmopt_experiments::{ExperimentSpec, ExperimentStatus, Guardrail, Metric, PolicyChange};
use serde_json::json;

use super::{CycleReport, Optimizer, OptimizerConfig, OptimizerError, experiment_scope, lock};
use crate::strategy::{Proposal, StrategyKind};

/// How much larger than the control's a treatment's share of requests with an inexact cost
/// (cut or abandoned streams priced at a lower bound, unknown costs) may be in a cost
/// experiment: one percentage point, the error-rate guardrail's allowance. Cut streams are
/// errors too, so this rarely needs more samples than that guardrail; it exists because an arm
/// whose costs are more often inexact looks cheaper than it is (see
/// `llmopt_experiments::Metric::CostUsd`).
const MAX_EXTRA_INEXACT_COST_SHARE: f64 = 0.01;

impl Optimizer {
    pub(super) fn start_experiments(
        &self,
        proposals: &[Proposal],
        config: &OptimizerConfig,
        now_ms: i64,
        report: &mut CycleReport,
    ) -> Result<(), OptimizerError> {
        let existing = self.engine.list();
        let mut running = existing.iter().filter(|e| e.status.is_active()).count();
        let tested: BTreeSet<String> = {
            let state = lock(&self.state);
            state
                .experiments
                .values()
                .map(|p| p.id.clone())
                .chain(state.adoptions.iter().map(|a| a.proposal_id.clone()))
                .collect()
        };
        // Ids only grow: deleted drafts leave gaps, so count from the highest one.
        let mut next_number = existing
            .iter()
            .filter_map(|e| e.spec.id.strip_prefix("exp-").and_then(|n| n.parse::<usize>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        for proposal in proposals {
            if running >= config.max_running_experiments {
                break;
            }
            let Some(plan) = &proposal.experiment else { continue };
            let worth_it = proposal.saving.usd_per_day >= config.min_saving_usd_per_day
                || proposal.strategy == StrategyKind::TimeoutHedge;
            if !worth_it || tested.contains(&proposal.id) {
                continue;
            }
            let id = format!("exp-{next_number:04}");
            let mut spec = ExperimentSpec::ab(
                &id,
                PolicyChange::default(),
                plan.treatment.clone(),
                plan.primary.clone(),
                config.experiment_max_duration_ms,
            );
            spec.name = proposal.summary.clone();
            spec.hypothesis = proposal.id.clone();
            spec.scope = experiment_scope(&proposal.scope);
            spec.guardrails = plan.guardrails.clone();
            if spec.primary == Metric::CostUsd
                && !spec.guardrails.iter().any(|g| g.metric == Metric::InexactCostShare)
            {
                spec.guardrails.push(Guardrail::inexact_cost_share(MAX_EXTRA_INEXACT_COST_SHARE));
            }
            spec.coverage = config.experiment_coverage;
            spec.min_samples_per_arm = config.min_samples_per_arm;
            spec.alpha = config.alpha;
            spec.tuning_samples = config.experiment_tuning_samples.max(1);
            match self.engine.create(spec).and_then(|_| self.engine.start(&id)) {
                Ok(_) => {
                    next_number += 1;
                    running += 1;
                    lock(&self.state).experiments.insert(id.clone(), proposal.clone());
                    self.audit_entry(
                        now_ms,
                        "experiment_started",
                        &id,
                        json!({"proposal": proposal}),
                    )?;
                    report.started.push(id);
                }
                // Overlapping scopes are refused by the engine: try the next proposal.
                Err(llmopt_experiments::Error::Overlap { .. }) => {
                    let _ = self.engine.delete_draft(&id);
                    next_number += 1;
                }
                Err(error) => {
                    let _ = self.engine.delete_draft(&id);
                    return Err(error.into());
                }
            }
        }
        let active =
            self.engine.list().iter().filter(|e| e.status == ExperimentStatus::Running).count();
        lock(&self.state).metrics.active_experiments = active as u64;
        Ok(())
    }
}
