//! One replay of a labelled dataset through the product's routing learner.
//!
//! The real [`Optimizer`] runs in process on in-memory stores, with a [`ManualClock`] that
//! advances a fixed step per prompt. Each prompt goes through what the gateway does with a
//! request and what `POST /v1/feedback` does with its label, in arrival order:
//!
//! 1. `workload_of` on the prompt text (no system prompt), which also feeds the sample the
//!    workload model is fitted on;
//! 2. `route` for a request to the strong stand-in, in that workload (request id as the unit);
//! 3. the chosen model "answers": the record is built as the gateway prices a call (the
//!    catalog's exact prices of the stand-in that served it, the input estimated from the
//!    prompt, a fixed output length), tagged with the workload, carrying its experiment arm;
//! 4. the record is appended to the record store and counted in its arm (`observe`);
//! 5. the label **of the model that served it** (bandit feedback: the other model's label is
//!    never shown) is joined to the stored record and counted in its arm
//!    (`observe_feedback`), once, as the gateway's feedback endpoint does;
//! 6. every `cycle_every` prompts, one optimization cycle runs.
//!
//! Every decision therefore uses only what was learned from earlier prompts.

use std::sync::Arc;

use llmopt_analytics::workload::{WorkloadModel, WorkloadText};
use llmopt_core::{
    Endpoint, Feedback, FeedbackValue, ManualClock, MemoryExperimentStore, MemoryPolicyStore,
    MemoryRecordStore, Money, PriceCatalog, RecordStore, RequestId, RequestRecord, Tags, Usage,
    WORKLOAD_TAG,
};
use llmopt_experiments::{
    Engine, ExperimentStatus, Outcome, UnitIds, decision::Action as EngineAction,
};

use super::{EvaluationError, LabelledItem};
use crate::{
    CycleReport, LivePolicy, Mode, Optimizer, OptimizerConfig, Policy, RequestContext, Strategy,
    StrategyKind, strategies::ModelRoutingStrategy,
};

/// The replay's clock starts at 2026-01-05T09:00:00Z.
pub const START_MS: i64 = 1_767_603_600_000;

/// What every replay of one evaluation shares.
#[derive(Debug, Clone)]
pub struct ReplaySetup {
    /// Catalog ids of the stand-ins the optimizer routes between and prices with.
    pub strong_id: String,
    pub weak_id: String,
    pub catalog: Arc<PriceCatalog>,
    /// Prompts between two optimization cycles.
    pub cycle_every: usize,
    /// Simulated time between two prompts.
    pub ms_per_prompt: i64,
    /// Output tokens every answer is priced with.
    pub output_tokens: u64,
    /// The optimizer configuration; `max_quality_drop` is set per replay.
    pub config: OptimizerConfig,
}

impl ReplaySetup {
    /// The learner as the product ships it, pointed at this evaluation: mode `auto`, the
    /// product's defaults for everything else (sample sizes, limits, α, the exploration
    /// margin, workload discovery), routing between the two stand-ins, quality feedback named
    /// `correct`, no workload tag (workloads come from the content), a look-back covering the
    /// whole replay. Only the model-routing strategy runs: the others' effects (caches, caps,
    /// hedging) are not in labelled data, and their experiments would hold the model's scope.
    pub fn learner_config(
        strong_id: &str,
        weak_id: &str,
        prompts: usize,
        ms_per_prompt: i64,
    ) -> OptimizerConfig {
        let mut config = OptimizerConfig { mode: Mode::Auto, ..OptimizerConfig::default() };
        let span_ms = i64::try_from(prompts).unwrap_or(i64::MAX / 2).saturating_mul(ms_per_prompt);
        config.lookback_ms = config.lookback_ms.max(span_ms.saturating_add(ms_per_prompt));
        config.settings.workload_tag = None;
        config.settings.quality_metric = QUALITY_METRIC.to_owned();
        config.settings.routing_pairs = vec![(strong_id.to_owned(), weak_id.to_owned())];
        for kind in StrategyKind::ALL {
            config.strategies.insert(kind, kind == StrategyKind::ModelRouting);
        }
        config
    }

    /// The input tokens of a prompt as the replay estimates them: characters / 4, at least 1.
    pub fn input_tokens(prompt: &str) -> u64 {
        (prompt.chars().count() as u64).div_ceil(4).max(1)
    }

    pub fn usage(&self, prompt: &str) -> Usage {
        Usage {
            input_tokens: Self::input_tokens(prompt),
            output_tokens: self.output_tokens,
            ..Usage::default()
        }
    }

    /// Exact cost of answering `prompt` with the strong and with the weak stand-in.
    pub fn costs(&self, prompt: &str) -> Result<(Money, Money), EvaluationError> {
        let usage = self.usage(prompt);
        let price = |model: &str| -> Result<Money, EvaluationError> {
            Ok(self
                .catalog
                .resolve(model)
                .map_err(|e| EvaluationError::Setup(e.to_string()))?
                .cost(&usage, false)
                .total)
        };
        Ok((price(&self.strong_id)?, price(&self.weak_id)?))
    }
}

/// The quality feedback metric of the replay.
pub const QUALITY_METRIC: &str = "correct";

/// What one replay did.
#[derive(Debug, Clone)]
pub struct Replay {
    pub max_quality_drop: f64,
    /// Per prompt, in arrival order: whether the weak stand-in answered it.
    pub served_weak: Vec<bool>,
    pub cycles: usize,
    pub experiments_started: usize,
    pub experiments_adopted: usize,
    pub experiments_rejected: usize,
    pub experiments_running: usize,
    /// Workload ids whose routing to the weak model was adopted.
    pub adopted_workloads: Vec<String>,
    /// The quality budget spent (the bound on the adopted set's relative drop).
    pub quality_budget_used: f64,
    /// The workload model in force at the end (`None`: none was fitted).
    pub workload_model: Option<WorkloadModel>,
    /// Prompts that were assigned a workload when they arrived.
    pub prompts_with_workload: usize,
    /// What the cycles did, one line per event (`prompt 2500: adopted exp-0003 …`).
    pub timeline: Vec<String>,
}

/// Replays `items` in order through a fresh optimizer whose quality budget is
/// `max_quality_drop`.
pub fn replay(
    items: &[LabelledItem],
    setup: &ReplaySetup,
    max_quality_drop: f64,
) -> Result<Replay, EvaluationError> {
    let mut config = setup.config.clone();
    config.settings.max_quality_drop = max_quality_drop;
    let environment = config.environment.clone();
    let clock = Arc::new(ManualClock::new(START_MS));
    let records = Arc::new(MemoryRecordStore::new());
    let policies = Arc::new(MemoryPolicyStore::new());
    let engine = Arc::new(Engine::open(Arc::new(MemoryExperimentStore::new()), clock.clone())?);
    let policy = Arc::new(LivePolicy::load(policies.clone(), Policy::default())?);
    let strategies: Vec<Arc<dyn Strategy>> = vec![Arc::new(ModelRoutingStrategy)];
    let optimizer = Optimizer::new(
        records.clone(),
        engine,
        policy,
        policies,
        setup.catalog.clone(),
        clock.clone(),
        strategies,
        config,
    )?;
    let strong_price = setup
        .catalog
        .resolve(&setup.strong_id)
        .map_err(|e| EvaluationError::Setup(e.to_string()))?;
    let weak_price =
        setup.catalog.resolve(&setup.weak_id).map_err(|e| EvaluationError::Setup(e.to_string()))?;

    let mut served_weak = Vec::with_capacity(items.len());
    let mut cycles = 0;
    let mut prompts_with_workload = 0;
    let mut timeline = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let now_ms = START_MS + index as i64 * setup.ms_per_prompt;
        clock.set(now_ms);
        let text = WorkloadText { system: None, last_user: &item.prompt, input_tokens: None };
        let workload = optimizer.workload_of(&text);
        let mut tags = Tags::new();
        if let Some(id) = &workload {
            tags.insert(WORKLOAD_TAG.to_owned(), id.clone());
            prompts_with_workload += 1;
        }
        let request_id = format!("eval-{index:07}");
        let context = RequestContext {
            model: &setup.strong_id,
            tenant: None,
            tags: &tags,
            endpoint: Endpoint::ChatCompletions,
            unit_id: &request_id,
            environment: &environment,
            workload: workload.as_deref(),
        };
        let routing = optimizer.route(&context, &UnitIds::request(&request_id));
        let weak = routing.decision.model.as_deref().is_some_and(|model| {
            model == setup.weak_id
                || setup.catalog.resolve(model).is_ok_and(|price| price.id == setup.weak_id)
        });
        let (price, label) =
            if weak { (weak_price, item.weak) } else { (strong_price, item.strong) };
        let usage = setup.usage(&item.prompt);
        let mut record = RequestRecord::new(
            request_id.as_str(),
            now_ms,
            price.provider.as_str(),
            strong_price.id.as_str(),
        );
        record.served_model = price.id.as_str().into();
        record.tags = tags;
        // As the gateway does: which adoptions applied and which held the request out.
        llmopt_core::tag_adoptions(
            &mut record.tags,
            &routing.decision.applied_flags,
            &routing.decision.held_out,
        );
        record.usage = Some(usage);
        record.cost = Some(price.cost(&usage, false).total);
        record.experiment = routing.arm.clone();
        records.append(std::slice::from_ref(&record))?;
        if record.experiment.is_some() {
            optimizer.observe(&record);
        }
        let feedback = Feedback {
            metric: QUALITY_METRIC.to_owned(),
            value: FeedbackValue::Number(label),
            ts_ms: now_ms,
        };
        records.add_feedback(&RequestId::from(request_id.as_str()), feedback)?;
        if let Some(arm) = &routing.arm {
            optimizer.observe_feedback(arm, QUALITY_METRIC, label);
        }
        served_weak.push(weak);
        if (index + 1) % setup.cycle_every.max(1) == 0 {
            let report = optimizer.run_cycle()?;
            cycles += 1;
            describe_cycle(&optimizer, &report, index + 1, &mut timeline);
        }
    }

    let experiments = optimizer.engine().list();
    let count = |wanted: fn(&ExperimentStatus) -> bool| {
        experiments.iter().filter(|e| wanted(&e.status)).count()
    };
    let adoptions = optimizer.adoptions();
    let workload_model =
        optimizer.policy().current().policy.workloads.as_ref().map(|d| d.model.clone());
    Ok(Replay {
        max_quality_drop,
        served_weak,
        cycles,
        experiments_started: experiments.len(),
        experiments_adopted: adoptions.len(),
        experiments_rejected: count(|s| {
            matches!(s, ExperimentStatus::Concluded { outcome: Outcome::Rejected, .. })
        }),
        experiments_running: count(ExperimentStatus::is_active),
        adopted_workloads: adoptions
            .iter()
            .map(|a| a.scope.workload.clone().unwrap_or_else(|| "(whole model)".to_owned()))
            .collect(),
        quality_budget_used: optimizer.quality_budget_used(),
        workload_model,
        prompts_with_workload,
        timeline,
    })
}

/// One line per thing a cycle did that changes routing.
fn describe_cycle(
    optimizer: &Optimizer,
    report: &CycleReport,
    prompts: usize,
    timeline: &mut Vec<String>,
) {
    let mut say = |line: String| timeline.push(format!("prompt {prompts}: {line}"));
    if let Some(workloads) = &report.workloads {
        say(format!("workloads: {workloads}"));
    }
    let scope_of = |id: &str| {
        optimizer.engine().show(id).map_or_else(|_| "?".to_owned(), |e| e.spec.hypothesis.clone())
    };
    for id in &report.started {
        say(format!("started {id} ({})", scope_of(id)));
    }
    for decision in &report.decisions {
        let summary = |arm: &str| {
            decision
                .guardrails
                .iter()
                .find(|g| g.arm == arm && g.metric.starts_with("quality"))
                .map(|g| {
                    format!(
                        "quality {:.3} vs {:.3}, n {} / {}",
                        g.treatment_mean, g.control_mean, g.treatment_count, g.control_count
                    )
                })
                .unwrap_or_default()
        };
        match &decision.action {
            EngineAction::Continue => {}
            EngineAction::Adopt { arm } => {
                say(format!("{} won ({})", decision.experiment_id, summary(arm)))
            }
            EngineAction::Reject => {
                say(format!("rejected {}: {}", decision.experiment_id, decision.reason))
            }
            EngineAction::StopArm { arm, .. } => say(format!(
                "stopped {} arm {arm} ({}): {}",
                decision.experiment_id,
                summary(arm),
                decision.reason
            )),
        }
    }
    let adoptions = optimizer.adoptions();
    for id in &report.adopted {
        let budget = adoptions
            .iter()
            .find(|a| &a.experiment_id == id)
            .and_then(|a| a.quality_drop)
            .map(|d| {
                format!(
                    ": share {:.3}, relative drop {:+.4} + {:.4} (its bound spends {:.4} of the budget)",
                    d.share,
                    d.estimate,
                    d.half_width,
                    d.estimate + d.half_width
                )
            })
            .unwrap_or_default();
        say(format!("adopted {id} ({}){budget}", scope_of(id)));
    }
    for (id, reason) in &report.not_adopted {
        say(format!("not adopted {id}: {reason}"));
    }
}
