//! Offline evaluation of model routing on a labelled dataset: the product's own learner,
//! replayed on prompts it has never seen, next to baselines, with RouteLLM's metrics.
//!
//! A labelled dataset gives, per prompt, the score of a strong and of a weak model (RouteLLM's
//! MMLU / GSM8K correctness, MT-Bench judge grades). [`evaluate`]:
//! - replays the prompts in arrival order through the real [`crate::Optimizer`] ([`replay`]):
//!   workload discovery from the text, experiments, adoption within the quality budget, each
//!   decision made with only the labels of earlier prompts, and only the label of the model
//!   that answered (bandit feedback, as the gateway gets it);
//! - sweeps the quality budget (`max_quality_drop`), one full replay per value, in parallel
//!   threads, for the curve of PGR against the share of strong calls ([`curve`]); the headline
//!   is the replay at the requested quality;
//! - computes the baselines: random routing (analytic), a kNN router on the same content
//!   features with the same bandit feedback and its threshold sweep ([`knn`]), a
//!   full-information kNN as a reference with more information, and the best per-scope oracle
//!   over the final model's workloads ([`baselines`]).
//!
//! Everything here is plain computation over in-memory stores (no runtime, no I/O), so a
//! notebook can call it as the `evaluate` command does.

pub mod baselines;
pub mod curve;
pub mod knn;
pub mod replay;
mod report;

use std::sync::Arc;

use llmopt_analytics::{
    labelled::LabelledPrompt,
    workload::{ContentFeatures, DEFAULT_DIMS, Featurizer, WorkloadText},
};
use llmopt_core::PriceCatalog;
use rand::{SeedableRng, seq::SliceRandom};
use rand_xoshiro::Xoshiro256PlusPlus;

pub use self::{
    baselines::{PricedItem, Tally},
    curve::{CurvePoint, RoutingCurve, pgr},
    knn::KnnSettings,
    replay::{Replay, ReplaySetup, replay},
    report::{Baselines, DatasetSummary, Evaluation, LearnerDetails, RouterResult, SweepPoint},
};
use crate::{OptimizerError, PolicyError};

/// One prompt with the strong and the weak model's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledItem {
    pub prompt: String,
    pub strong: f64,
    pub weak: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error("model `{model}` has no scores in the data (models found: {})", found.join(", "))]
    UnknownModel { model: String, found: Vec<String> },
    #[error("no prompts to evaluate")]
    Empty,
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Optimizer(#[from] OptimizerError),
    #[error(transparent)]
    Experiments(#[from] llmopt_experiments::Error),
    #[error(transparent)]
    Store(#[from] llmopt_core::StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The strong and weak models' scores of each prompt; an error lists the models the data
/// scores when either is missing.
pub fn select_models(
    prompts: &[LabelledPrompt],
    strong: &str,
    weak: &str,
) -> Result<Vec<LabelledItem>, EvaluationError> {
    prompts
        .iter()
        .map(|prompt| {
            let score = |model: &str| {
                prompt.scores.get(model).copied().ok_or_else(|| EvaluationError::UnknownModel {
                    model: model.to_owned(),
                    found: prompt.scores.keys().cloned().collect(),
                })
            };
            Ok(LabelledItem {
                prompt: prompt.prompt.clone(),
                strong: score(strong)?,
                weak: score(weak)?,
            })
        })
        .collect()
}

/// Shuffles prompts into a seeded arrival order (datasets are often grouped by subject, which
/// no real traffic is).
pub fn shuffle(items: &mut [LabelledItem], seed: u64) {
    items.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
}

/// Settings of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationSettings {
    /// Catalog models whose prices stand in for the strong and the weak model.
    pub strong_price_as: String,
    pub weak_price_as: String,
    /// The share of the strong model's quality to keep: `max_quality_drop = 1 − quality`.
    pub quality: f64,
    pub cycle_every: usize,
    /// Simulated time between two prompts.
    pub ms_per_prompt: i64,
    /// Output tokens every answer is priced with.
    pub output_tokens: u64,
    /// The quality budgets swept for the learner's curve (the headline's is added).
    pub quality_drops: Vec<f64>,
    pub knn: KnnSettings,
    /// Threads for the replays (at least 1).
    pub threads: usize,
}

impl Default for EvaluationSettings {
    fn default() -> EvaluationSettings {
        EvaluationSettings {
            strong_price_as: "gpt-4o".to_owned(),
            weak_price_as: "gpt-4o-mini".to_owned(),
            quality: 0.95,
            cycle_every: 250,
            ms_per_prompt: 1_000,
            output_tokens: 256,
            // Six replays: each fits its own workload model (seconds of k-means), which is
            // most of an evaluation's time.
            quality_drops: vec![0.0, 0.01, 0.025, 0.05, 0.1, 0.2],
            knn: KnnSettings::default(),
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }
}

enum Task {
    Knn,
    Learner(f64),
}

enum Done {
    Knn(report::KnnOutcome),
    Learner(Box<Replay>),
}

/// Runs the evaluation of `items` (in arrival order).
pub fn evaluate(
    items: &[LabelledItem],
    settings: &EvaluationSettings,
    catalog: Arc<PriceCatalog>,
) -> Result<Evaluation, EvaluationError> {
    let started = std::time::Instant::now();
    if items.is_empty() {
        return Err(EvaluationError::Empty);
    }
    if !(settings.quality > 0.0 && settings.quality <= 1.0) {
        return Err(EvaluationError::Setup(format!(
            "quality must be within (0, 1], got {}",
            settings.quality
        )));
    }
    if settings.cycle_every == 0 || settings.ms_per_prompt <= 0 {
        return Err(EvaluationError::Setup(
            "cycle_every and ms_per_prompt must be positive".to_owned(),
        ));
    }
    let resolve = |model: &str| {
        catalog
            .resolve(model)
            .map(|price| price.id.clone())
            .map_err(|e| EvaluationError::Setup(format!("price stand-in: {e}")))
    };
    let (strong_id, weak_id) =
        (resolve(&settings.strong_price_as)?, resolve(&settings.weak_price_as)?);
    if strong_id == weak_id {
        return Err(EvaluationError::Setup(format!(
            "the strong and weak models are both priced as `{strong_id}`"
        )));
    }
    let setup = ReplaySetup {
        config: ReplaySetup::learner_config(
            &strong_id,
            &weak_id,
            items.len(),
            settings.ms_per_prompt,
        ),
        strong_id,
        weak_id,
        catalog,
        cycle_every: settings.cycle_every,
        ms_per_prompt: settings.ms_per_prompt,
        output_tokens: settings.output_tokens,
    };
    let headline_drop = 1.0 - settings.quality;
    let mut drops: Vec<f64> =
        settings.quality_drops.iter().copied().filter(|d| (0.0..1.0).contains(d)).collect();
    if !drops.iter().any(|d| (d - headline_drop).abs() < 1e-9) {
        drops.push(headline_drop);
    }
    drops.sort_by(f64::total_cmp);

    let mut costs = Vec::with_capacity(items.len());
    for item in items {
        let (strong, weak) = setup.costs(&item.prompt)?;
        costs.push((strong.as_usd_f64(), weak.as_usd_f64()));
    }
    let priced = baselines::priced(items, &costs);
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let features: Vec<ContentFeatures> = items
        .iter()
        .map(|item| {
            featurizer.features(&WorkloadText {
                system: None,
                last_user: &item.prompt,
                input_tokens: None,
            })
        })
        .collect();

    // The kNN work first: it is the longest task.
    let tasks: Vec<Task> =
        std::iter::once(Task::Knn).chain(drops.iter().map(|&d| Task::Learner(d))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = settings.threads.max(1).min(tasks.len());
    let results: Vec<Result<Done, EvaluationError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(task) = tasks.get(index) else { break };
                        let outcome = match task {
                            Task::Knn => {
                                Ok(Done::Knn(report::run_knn(items, &priced, &features, settings)))
                            }
                            Task::Learner(drop) => {
                                replay(items, &setup, *drop).map(|r| Done::Learner(Box::new(r)))
                            }
                        };
                        done.push(outcome);
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    vec![Err(EvaluationError::Setup("an evaluation thread panicked".to_owned()))]
                })
            })
            .collect()
    });
    let mut knn = None;
    let mut replays = Vec::new();
    for result in results {
        match result? {
            Done::Knn(outcome) => knn = Some(outcome),
            Done::Learner(replay) => replays.push(*replay),
        }
    }
    replays.sort_by(|a, b| a.max_quality_drop.total_cmp(&b.max_quality_drop));
    let knn =
        knn.ok_or_else(|| EvaluationError::Setup("the kNN baseline did not run".to_owned()))?;
    Ok(report::assemble(report::Parts {
        settings,
        setup: &setup,
        priced: &priced,
        features: &features,
        replays,
        headline_drop,
        knn,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    }))
}
