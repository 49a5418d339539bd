//! The offline routing evaluation: RouteLLM's metrics against hand-computed curves, the
//! baselines on small known cases, and the product's learner replayed on a synthetic labelled
//! dataset whose best routing is known.

use std::sync::Arc;

use llmopt_analytics::workload::{DEFAULT_DIMS, Featurizer, WorkloadText};
use llmopt_core::PriceCatalog;
use llmopt_optimizer::evaluation::{
    CurvePoint, EvaluationSettings, KnnSettings, LabelledItem, ReplaySetup, RoutingCurve,
    baselines, evaluate, knn, replay,
};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn curve(points: &[(f64, f64)]) -> RoutingCurve {
    RoutingCurve::new(points.iter().map(|&(strong_share, pgr)| CurvePoint { strong_share, pgr }))
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn cpt_and_apgr_on_hand_computed_curves() {
    // (0,0) (0.5,0.8) (1,1): area 0.5·0.4 + 0.5·0.9 = 0.65; PGR 0.5 at 0.5·0.5/0.8 = 0.3125.
    let one = curve(&[(0.5, 0.8)]);
    close(one.apgr(), 0.65);
    close(one.cpt(0.5).unwrap(), 0.3125);
    close(one.cpt(0.8).unwrap(), 0.5);
    // (0,0) (0.2,0.5) (0.6,0.9) (1,1): 0.2·0.25 + 0.4·0.7 + 0.4·0.95 = 0.71; PGR 0.8 on the
    // middle segment at 0.2 + 0.4·(0.3/0.4) = 0.5. Given out of order.
    let two = curve(&[(0.6, 0.9), (0.2, 0.5)]);
    close(two.apgr(), 0.71);
    close(two.cpt(0.5).unwrap(), 0.2);
    close(two.cpt(0.8).unwrap(), 0.5);
    // Not monotone: (0,0) (0.3,0.9) (0.5,0.6) (1,1): 0.135 + 0.15 + 0.4 = 0.685; the first
    // crossing counts, CPT(0.8) = 0.3·0.8/0.9.
    let bumpy = curve(&[(0.3, 0.9), (0.5, 0.6)]);
    close(bumpy.apgr(), 0.685);
    close(bumpy.cpt(0.8).unwrap(), 0.3 * 0.8 / 0.9);
    // Better than the strong model: PGR 1 is reached before all calls are strong.
    let better = curve(&[(0.4, 1.2)]);
    close(better.cpt(1.0).unwrap(), 0.4 / 1.2);
    // A random router is the diagonal.
    close(curve(&[]).apgr(), 0.5);
    close(curve(&[]).cpt(0.8).unwrap(), 0.8);
}

/// Four topics with vocabularies of their own. The weak model is as good as the strong one on
/// topics 0 and 1 and right on only 40 % of topics 2 and 3, where the strong model is always
/// right. The best routing: topics 0 and 1 to the weak model (half the calls, no quality lost).
fn synthetic(prompts: usize, seed: u64) -> (Vec<LabelledItem>, Vec<usize>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let word = |rng: &mut Xoshiro256PlusPlus| -> String {
        let length = rng.gen_range(4..10);
        (0..length).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect()
    };
    let vocabularies: Vec<Vec<String>> =
        (0..4).map(|_| (0..40).map(|_| word(&mut rng)).collect()).collect();
    let mut items = Vec::new();
    let mut topics = Vec::new();
    for index in 0..prompts {
        let topic = index % 4;
        let length = rng.gen_range(10..20);
        let words: Vec<&str> =
            (0..length).map(|_| vocabularies[topic][rng.gen_range(0..40)].as_str()).collect();
        let weak = if topic < 2 || (index / 4) % 5 < 2 { 1.0 } else { 0.0 };
        items.push(LabelledItem { prompt: words.join(" "), strong: 1.0, weak });
        topics.push(topic);
    }
    (items, topics)
}

#[test]
fn the_learner_routes_the_topics_where_the_weak_model_is_as_good() {
    let (items, topics) = synthetic(10_000, 3);
    let catalog = Arc::new(PriceCatalog::builtin());
    let setup = ReplaySetup {
        config: ReplaySetup::learner_config("gpt-4o", "gpt-4o-mini", items.len(), 1_000),
        strong_id: "gpt-4o".into(),
        weak_id: "gpt-4o-mini".into(),
        catalog,
        cycle_every: 250,
        ms_per_prompt: 1_000,
        output_tokens: 256,
    };
    let replay = replay(&items, &setup, 0.05).unwrap();
    let n = items.len() as f64;
    let weak_share = replay.served_weak.iter().filter(|w| **w).count() as f64 / n;
    let quality: f64 = items
        .iter()
        .zip(&replay.served_weak)
        .map(|(item, &weak)| if weak { item.weak } else { item.strong })
        .sum::<f64>()
        / n;
    assert_eq!(replay.experiments_adopted, 2, "{:#?}", replay.timeline);
    assert!(quality >= 0.95, "quality {quality}: {:#?}", replay.timeline);
    assert!(weak_share >= 0.35, "weak share {weak_share}: {:#?}", replay.timeline);
    // Once learned, only the two good topics go to the weak model, all of them but the
    // adoptions' holdouts (5 % of their units stay on the strong model to measure against).
    let tail = items.len() * 3 / 4;
    let mut good = (0usize, 0usize);
    for (index, &weak) in replay.served_weak.iter().enumerate().skip(tail) {
        if topics[index] < 2 {
            good.0 += 1;
            good.1 += usize::from(weak);
        } else {
            assert!(!weak, "prompt {index} (topic {})", topics[index]);
        }
    }
    let routed = good.1 as f64 / good.0 as f64;
    assert!((0.90..0.99).contains(&routed), "{routed} of the good topics routed");

    // The per-workload oracle over the final model's workloads is the known best.
    let model = replay.workload_model.as_ref().unwrap();
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let scope_of: Vec<usize> = items
        .iter()
        .map(|item| {
            let text = WorkloadText { system: None, last_user: &item.prompt, input_tokens: None };
            model.assign_index(&featurizer.features(&text))
        })
        .collect();
    let priced = baselines::priced(&items, &vec![(1.0, 0.1); items.len()]);
    let oracle = baselines::scope_oracle(&priced, &scope_of, model.k(), 0.95);
    assert_eq!(oracle.headline.weak_calls, n / 2.0);
    assert_eq!(oracle.headline.quality, n);
}

#[test]
fn the_whole_evaluation_on_a_small_dataset() {
    let (items, _) = synthetic(400, 5);
    let settings = EvaluationSettings {
        cycle_every: 100,
        quality_drops: vec![0.0, 0.2],
        knn: KnnSettings { thresholds: vec![-1.0, 0.0, 0.3, 1.0], ..KnnSettings::default() },
        threads: 2,
        ..EvaluationSettings::default()
    };
    let report = evaluate(&items, &settings, Arc::new(PriceCatalog::builtin())).unwrap();
    assert_eq!(report.dataset.prompts, 400);
    close(report.dataset.strong_quality, 1.0);
    close(report.dataset.weak_quality, 0.5 + 0.5 * 0.4);
    // Three replays: the sweep and the headline at 1 − 0.95.
    assert_eq!(report.learner_details.sweep.len(), 3);
    assert_eq!(report.learner_details.cycles, 4);
    // Random routing at 95 %: strong share (0.95 − 0.7) / 0.3; CPT(x) = x, APGR 0.5.
    let random = &report.baselines.random;
    close(random.strong_calls_avoided, 1.0 - 0.25 / 0.3);
    close(random.quality_vs_strong, 0.95);
    close(random.cpt50.unwrap(), 0.5);
    close(random.apgr.unwrap(), 0.5);
    // Prices: gpt-4o-mini costs 6 % of gpt-4o per token, so routing saves 94 % per call.
    close(random.cost_saved, random.strong_calls_avoided * 0.94);
    // The full-information kNN separates the topics after a few prompts of each.
    let full = &report.baselines.knn_full_information;
    assert!(full.meets_target && full.strong_calls_avoided > 0.4, "{full:?}");
    for result in [&report.learner, &report.baselines.knn, full, &report.baselines.oracle] {
        assert!((0.0..=1.0).contains(&result.strong_calls_avoided));
        assert!(result.apgr.is_some() && result.cpt50.is_some() && result.cpt80.is_some());
    }
}

#[test]
fn bandit_knn_learns_from_the_model_it_served_only() {
    let (items, topics) = synthetic(600, 9);
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let features: Vec<_> = items
        .iter()
        .map(|item| {
            featurizer.features(&WorkloadText {
                system: None,
                last_user: &item.prompt,
                input_tokens: None,
            })
        })
        .collect();
    let nearest = knn::nearest_earlier(&features, 64, 2);
    for (index, list) in nearest.iter().enumerate().skip(40) {
        // Each topic's vocabulary is its own: the nearest earlier prompt shares the topic.
        assert_eq!(topics[list[0] as usize], topics[index]);
    }
    let settings = KnnSettings::default();
    let served = knn::bandit_replay(&items, &nearest, 0.3, &settings);
    // After the first hundred prompts, good topics go weak and bad ones strong, but for
    // exploration (ε = 0.1: half of it serves the other model).
    let late: Vec<(usize, bool)> =
        served.iter().enumerate().skip(200).map(|(index, &weak)| (topics[index], weak)).collect();
    let right = late.iter().filter(|(topic, weak)| *weak == (*topic < 2)).count();
    assert!(right as f64 / late.len() as f64 > 0.85, "{right} of {}", late.len());
}
