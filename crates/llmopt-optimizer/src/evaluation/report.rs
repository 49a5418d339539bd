//! What an evaluation reports, and putting it together from the replays and baselines.

use llmopt_analytics::workload::ContentFeatures;
use serde::Serialize;

use super::{
    EvaluationSettings, LabelledItem, Replay, ReplaySetup,
    baselines::{self, PricedItem, Tally},
    curve::{CurvePoint, RoutingCurve, pgr},
    knn,
};

/// One router's result on the dataset: its headline operating point and its curve's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterResult {
    /// Share of prompts the weak model answered (calls the strong model did not get).
    pub strong_calls_avoided: f64,
    /// Quality as a share of the strong model's quality on the same prompts.
    pub quality_vs_strong: f64,
    /// Share of the all-strong cost saved, and the amount.
    pub cost_saved: f64,
    pub cost_saved_usd: f64,
    /// Performance gap recovered at the headline point (`None`: both models score the same).
    pub pgr: Option<f64>,
    /// Whether the headline point keeps the quality target.
    pub meets_target: bool,
    /// Strong-call share needed for PGR 50 % and 80 % (RouteLLM's CPT), and the area under
    /// the curve (APGR); `None` without a quality gap between the models.
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    pub apgr: Option<f64>,
    /// The measured operating points (at most about a hundred, evenly thinned), without the
    /// two ends every curve has.
    pub curve: Vec<CurvePoint>,
    /// How this router decides and how its headline point was chosen.
    pub rule: String,
}

/// The learner's own numbers at the headline quality, and its sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnerDetails {
    pub max_quality_drop: f64,
    pub cycles: usize,
    pub experiments_started: usize,
    pub experiments_adopted: usize,
    pub experiments_rejected: usize,
    pub experiments_running: usize,
    pub adopted_workloads: Vec<String>,
    pub quality_budget_used: f64,
    /// Workloads of the model in force at the end (0: none was fitted).
    pub workloads_discovered: usize,
    /// Prompts that arrived after the first workload model was fitted.
    pub prompts_with_workload: usize,
    pub sweep: Vec<SweepPoint>,
    /// What the headline replay's cycles did, in order.
    pub timeline: Vec<String>,
}

/// One replay of the quality-budget sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    pub max_quality_drop: f64,
    pub strong_calls_avoided: f64,
    pub quality_vs_strong: f64,
    pub pgr: Option<f64>,
    pub experiments_adopted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baselines {
    pub random: RouterResult,
    /// kNN with the learner's information (bandit feedback), headline chosen in hindsight.
    pub knn: RouterResult,
    /// kNN knowing both labels of every earlier prompt: a reference with more information.
    pub knn_full_information: RouterResult,
    /// Knowing every label, per workload of the learner's final model.
    pub oracle: RouterResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    pub prompts: usize,
    /// Mean score of each model over all prompts.
    pub strong_quality: f64,
    pub weak_quality: f64,
    /// Cost of sending every prompt to each model, USD.
    pub strong_cost_usd: f64,
    pub weak_cost_usd: f64,
}

/// The whole evaluation. The learner's headline result is at the top level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub learner: RouterResult,
    pub learner_details: LearnerDetails,
    pub baselines: Baselines,
    pub dataset: DatasetSummary,
    pub quality_target: f64,
    pub strong_price_as: String,
    pub weak_price_as: String,
    pub output_tokens: u64,
    pub seconds_per_prompt: f64,
    pub cycle_every: usize,
    pub elapsed_seconds: f64,
}

/// The kNN baselines' tallies.
#[derive(Debug, Clone)]
pub(super) struct KnnOutcome {
    /// (threshold, tally) of every bandit replay.
    bandit: Vec<(f64, Tally)>,
    /// Tallies of the full-information kNN at every threshold, all-strong first.
    full_information: Vec<Tally>,
}

pub(super) fn run_knn(
    items: &[LabelledItem],
    priced: &[PricedItem],
    features: &[ContentFeatures],
    settings: &EvaluationSettings,
) -> KnnOutcome {
    let knn = &settings.knn;
    let nearest = knn::nearest_earlier(features, knn.candidates, settings.threads);
    let bandit = knn
        .thresholds
        .iter()
        .map(|&threshold| {
            let served = knn::bandit_replay(items, &nearest, threshold, knn);
            (threshold, baselines::tally(priced, &served))
        })
        .collect();
    let scores = knn::full_information_scores(items, &nearest, knn.k);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut running = baselines::all_to(priced, false);
    let mut full_information = vec![running];
    for (position, &i) in order.iter().enumerate() {
        running += Tally {
            weak_calls: 1.0,
            quality: priced[i].weak - priced[i].strong,
            cost_usd: priced[i].weak_cost_usd - priced[i].strong_cost_usd,
        };
        // One point per distinct threshold: after the last prompt of each score.
        let last_of_score = order.get(position + 1).is_none_or(|&next| scores[next] > scores[i]);
        if last_of_score {
            full_information.push(running);
        }
    }
    KnnOutcome { bandit, full_information }
}

pub(super) struct Parts<'a> {
    pub settings: &'a EvaluationSettings,
    pub setup: &'a ReplaySetup,
    pub priced: &'a [PricedItem],
    pub features: &'a [ContentFeatures],
    pub replays: Vec<Replay>,
    pub headline_drop: f64,
    pub knn: KnnOutcome,
    pub elapsed_seconds: f64,
}

/// The dataset's reference points, for turning tallies into shares.
struct Reference {
    n: f64,
    strong: Tally,
    weak: Tally,
    target: f64,
}

impl Reference {
    fn pgr(&self, tally: &Tally) -> Option<f64> {
        pgr(tally.quality / self.n, self.weak.quality / self.n, self.strong.quality / self.n)
    }

    fn meets(&self, tally: &Tally) -> bool {
        tally.quality >= self.target * self.strong.quality - 1e-9
    }

    fn result(&self, headline: &Tally, points: &[Tally], rule: String) -> RouterResult {
        let measured: Vec<CurvePoint> = points
            .iter()
            .filter_map(|t| {
                self.pgr(t).map(|pgr| CurvePoint { strong_share: 1.0 - t.weak_calls / self.n, pgr })
            })
            .collect();
        let has_gap = self.pgr(&self.strong).is_some();
        let curve = RoutingCurve::new(measured.iter().copied());
        let step = measured.len().div_ceil(100).max(1);
        RouterResult {
            strong_calls_avoided: headline.weak_calls / self.n,
            quality_vs_strong: headline.quality / self.strong.quality.max(1e-12),
            cost_saved: 1.0 - headline.cost_usd / self.strong.cost_usd.max(1e-300),
            cost_saved_usd: self.strong.cost_usd - headline.cost_usd,
            pgr: self.pgr(headline),
            meets_target: self.meets(headline),
            cpt50: if has_gap { curve.cpt(0.5) } else { None },
            cpt80: if has_gap { curve.cpt(0.8) } else { None },
            apgr: has_gap.then(|| curve.apgr()),
            curve: measured.iter().step_by(step).copied().collect(),
            rule,
        }
    }

    /// The point meeting the target with the fewest strong calls, else the best quality.
    fn best_meeting_target<'a>(&self, points: impl Iterator<Item = &'a Tally>) -> Tally {
        let points: Vec<&Tally> = points.collect();
        let meeting = points.iter().filter(|t| self.meets(t)).max_by(|a, b| {
            a.weak_calls.total_cmp(&b.weak_calls).then(a.quality.total_cmp(&b.quality))
        });
        meeting
            .or_else(|| points.iter().max_by(|a, b| a.quality.total_cmp(&b.quality)))
            .map_or(self.strong, |t| **t)
    }
}

pub(super) fn assemble(parts: Parts<'_>) -> Evaluation {
    let Parts { settings, setup, priced, features, replays, headline_drop, knn, elapsed_seconds } =
        parts;
    let reference = Reference {
        n: priced.len() as f64,
        strong: baselines::all_to(priced, false),
        weak: baselines::all_to(priced, true),
        target: settings.quality,
    };
    let tallies: Vec<Tally> =
        replays.iter().map(|r| baselines::tally(priced, &r.served_weak)).collect();
    let headline_index =
        replays.iter().position(|r| (r.max_quality_drop - headline_drop).abs() < 1e-9).unwrap_or(0);
    let headline = &replays[headline_index];
    let learner = reference.result(
        &tallies[headline_index],
        &tallies,
        format!(
            "the product's optimizer (mode auto, default settings, workloads from content), one replay per quality budget; headline at max_quality_drop {headline_drop:.3}"
        ),
    );
    let sweep = replays
        .iter()
        .zip(&tallies)
        .map(|(replay, tally)| SweepPoint {
            max_quality_drop: replay.max_quality_drop,
            strong_calls_avoided: tally.weak_calls / reference.n,
            quality_vs_strong: tally.quality / reference.strong.quality.max(1e-12),
            pgr: reference.pgr(tally),
            experiments_adopted: replay.experiments_adopted,
        })
        .collect();
    let learner_details = LearnerDetails {
        max_quality_drop: headline.max_quality_drop,
        cycles: headline.cycles,
        experiments_started: headline.experiments_started,
        experiments_adopted: headline.experiments_adopted,
        experiments_rejected: headline.experiments_rejected,
        experiments_running: headline.experiments_running,
        adopted_workloads: headline.adopted_workloads.clone(),
        quality_budget_used: headline.quality_budget_used,
        workloads_discovered: headline.workload_model.as_ref().map_or(0, |m| m.k()),
        prompts_with_workload: headline.prompts_with_workload,
        sweep,
        timeline: headline.timeline.clone(),
    };

    let random_share =
        baselines::random_share_for(&reference.strong, &reference.weak, settings.quality);
    let random_points: Vec<Tally> = (0..=10)
        .map(|step| {
            baselines::random_tally(&reference.strong, &reference.weak, f64::from(step) / 10.0)
        })
        .collect();
    let random = reference.result(
        &baselines::random_tally(&reference.strong, &reference.weak, random_share),
        &random_points,
        "each prompt to the strong model with the smallest probability that keeps the target (expected values)".to_owned(),
    );

    let k = &settings.knn;
    let bandit_points: Vec<Tally> = knn.bandit.iter().map(|(_, t)| *t).collect();
    let bandit_headline = reference.best_meeting_target(bandit_points.iter());
    let threshold = knn
        .bandit
        .iter()
        .find(|(_, t)| *t == bandit_headline)
        .map_or(f64::NAN, |(threshold, _)| *threshold);
    let knn_bandit = reference.result(
        &bandit_headline,
        &bandit_points,
        format!(
            "cosine kNN on the same content features, bandit feedback; weak when the mean label of the {n} nearest strong-served minus that of the {n} nearest weak-served earlier prompts (among the {c} most similar) is at most a threshold; explores (random model) with probability {e} or with fewer than {m} labelled neighbours of a model; headline: threshold {threshold:+.3} chosen in hindsight as the one with the fewest strong calls meeting the target",
            n = k.k,
            c = k.candidates,
            e = k.epsilon,
            m = k.min_labelled
        ),
    );
    let full_headline = reference.best_meeting_target(knn.full_information.iter());
    let knn_full_information = reference.result(
        &full_headline,
        &knn.full_information,
        format!(
            "REFERENCE WITH MORE INFORMATION: kNN knowing both models' labels of every earlier prompt; weak when the mean gap of the {} nearest earlier prompts is at most a threshold; headline threshold chosen in hindsight",
            k.k
        ),
    );

    let (scope_of, scopes) = match &headline.workload_model {
        Some(model) => {
            (features.iter().map(|f| model.assign_index(f)).collect::<Vec<_>>(), model.k())
        }
        None => (vec![0; priced.len()], 1),
    };
    let oracle = baselines::scope_oracle(priced, &scope_of, scopes, settings.quality);
    let routed = oracle.routed.iter().filter(|r| **r).count();
    let oracle = reference.result(
        &oracle.headline,
        &oracle.prefixes,
        if headline.workload_model.is_some() {
            format!(
                "knowing every label: whole workloads of the learner's final model ({routed} of {scopes}) to the weak model, least quality lost per call first, skipping any that would break the target"
            )
        } else {
            "knowing every label, with no workload model fitted: all traffic is one scope, routed only if the weak model alone meets the target".to_owned()
        },
    );

    Evaluation {
        learner,
        learner_details,
        baselines: Baselines { random, knn: knn_bandit, knn_full_information, oracle },
        dataset: DatasetSummary {
            prompts: priced.len(),
            strong_quality: reference.strong.quality / reference.n,
            weak_quality: reference.weak.quality / reference.n,
            strong_cost_usd: reference.strong.cost_usd,
            weak_cost_usd: reference.weak.cost_usd,
        },
        quality_target: settings.quality,
        strong_price_as: setup.strong_id.clone(),
        weak_price_as: setup.weak_id.clone(),
        output_tokens: setup.output_tokens,
        seconds_per_prompt: setup.ms_per_prompt as f64 / 1_000.0,
        cycle_every: setup.cycle_every,
        elapsed_seconds,
    }
}
