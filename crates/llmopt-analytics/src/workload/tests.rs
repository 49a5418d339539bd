//! Fit, assignment and id inheritance on synthetic corpora of known structure: each topic has
//! its own vocabulary, and every document also draws from a common one (function words).

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;

/// `topics` vocabularies of 40 random words each, plus 30 common words; the same `vocab_seed`
/// gives the same vocabularies.
fn vocabularies(topics: usize, vocab_seed: u64) -> (Vec<Vec<String>>, Vec<String>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(vocab_seed);
    let word = |rng: &mut Xoshiro256PlusPlus| -> String {
        (0..rng.gen_range(4..10)).map(|_| char::from(b'a' + rng.gen_range(0..26_u8))).collect()
    };
    let topic_words = (0..topics).map(|_| (0..40).map(|_| word(&mut rng)).collect()).collect();
    let common = (0..30).map(|_| word(&mut rng)).collect();
    (topic_words, common)
}

/// `per_topic` documents of each topic, interleaved; returns texts and their topic.
pub(super) fn corpus(
    topics: usize,
    per_topic: usize,
    vocab_seed: u64,
    sample_seed: u64,
) -> (Vec<String>, Vec<usize>) {
    let (topic_words, common) = vocabularies(topics, vocab_seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(sample_seed);
    let mut texts = Vec::new();
    let mut truth = Vec::new();
    for _ in 0..per_topic {
        for (topic, words) in topic_words.iter().enumerate() {
            let length = rng.gen_range(20..50);
            let text: Vec<&str> = (0..length)
                .map(|_| {
                    if rng.gen_bool(0.6) {
                        words[rng.gen_range(0..words.len())].as_str()
                    } else {
                        common[rng.gen_range(0..common.len())].as_str()
                    }
                })
                .collect();
            texts.push(text.join(" "));
            truth.push(topic);
        }
    }
    (texts, truth)
}

fn featurize(featurizer: &Featurizer, texts: &[String]) -> Vec<ContentFeatures> {
    texts
        .iter()
        .map(|text| {
            featurizer.features(&WorkloadText { system: None, last_user: text, input_tokens: None })
        })
        .collect()
}

/// Adjusted Rand index (Hubert & Arabie 1985), as `sklearn.metrics.adjusted_rand_score`.
pub(super) fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    let choose2 = |x: f64| x * (x - 1.0) / 2.0;
    let mut table: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let mut rows: BTreeMap<usize, f64> = BTreeMap::new();
    let mut columns: BTreeMap<usize, f64> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1.0;
        *rows.entry(x).or_default() += 1.0;
        *columns.entry(y).or_default() += 1.0;
    }
    let index: f64 = table.values().map(|&n| choose2(n)).sum();
    let row_sum: f64 = rows.values().map(|&n| choose2(n)).sum();
    let column_sum: f64 = columns.values().map(|&n| choose2(n)).sum();
    let expected = row_sum * column_sum / choose2(a.len() as f64);
    let maximum = (row_sum + column_sum) / 2.0;
    (index - expected) / (maximum - expected)
}

#[test]
fn adjusted_rand_index_reference_values() {
    // sklearn.metrics.adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) = 0.5714285714285715
    assert!(
        (adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_428_571_5).abs() < 1e-12
    );
    // … ([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) = 0.24242424242424246
    assert!(
        (adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]) - 0.242_424_242_424_242_46)
            .abs()
            < 1e-12
    );
    assert!((adjusted_rand_index(&[0, 0, 1, 2], &[5, 5, 6, 7]) - 1.0).abs() < 1e-12);
}

#[test]
fn fit_recovers_four_vocabularies_and_chooses_k() {
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let (texts, truth) = corpus(4, 60, 7, 1);
    let samples = featurize(&featurizer, &texts);
    let fit = WorkloadModel::fit_report(&samples, 2..=8, 42).unwrap();
    assert_eq!(fit.model.k(), 4, "silhouettes {:?}", fit.silhouette_by_k);
    let ari = adjusted_rand_index(&fit.labels, &truth);
    assert!(ari >= 0.95, "adjusted Rand index {ari}");
    // Assigning the sample's own members returns their cluster.
    for (features, &label) in samples.iter().zip(&fit.labels) {
        assert_eq!(fit.model.assign_index(features), label);
        assert_eq!(fit.model.assign(features), fit.model.ids()[label]);
    }
    assert_eq!(fit.sizes.iter().sum::<usize>(), samples.len());
    // Ids: distinct, short, prefixed.
    let ids: BTreeSet<&String> = fit.model.ids().iter().collect();
    assert_eq!(ids.len(), 4);
    assert!(fit.model.ids().iter().all(|id| id.len() == 8 && id.starts_with("w-")));
}

#[test]
fn fit_is_deterministic_for_a_seed() {
    let featurizer = Featurizer::new(256);
    let (texts, _) = corpus(3, 40, 3, 2);
    let samples = featurize(&featurizer, &texts);
    let a = WorkloadModel::fit_report(&samples, 2..=5, 9).unwrap();
    let b = WorkloadModel::fit_report(&samples, 2..=5, 9).unwrap();
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.model.ids(), b.model.ids());
    assert_eq!(a.silhouette_by_k, b.silhouette_by_k);
}

#[test]
fn inherit_keeps_ids_of_the_same_distribution_and_names_a_new_vocabulary() {
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let (first_texts, _) = corpus(4, 40, 11, 1);
    let first_fit =
        WorkloadModel::fit_report(&featurize(&featurizer, &first_texts), 2..=8, 1).unwrap();
    assert_eq!(first_fit.model.k(), 4, "{:?} {:?}", first_fit.silhouette_by_k, first_fit.sizes);
    let first = first_fit.model;

    // A new sample of the same four topics, another seed: every id is kept.
    let (second_texts, second_truth) = corpus(4, 40, 11, 2);
    let second_samples = featurize(&featurizer, &second_texts);
    let mut second = WorkloadModel::fit(&second_samples, 2..=8, 2).unwrap();
    let kept = second.inherit_ids(&first);
    assert_eq!(kept.len(), 4, "{kept:?}");
    let mut first_sorted = first.ids().to_vec();
    first_sorted.sort();
    let mut second_sorted = second.ids().to_vec();
    second_sorted.sort();
    assert_eq!(first_sorted, second_sorted);
    // …and the kept id names the same topic: a document of topic t gets the same id from both.
    for (features, _) in second_samples.iter().zip(&second_truth).take(40) {
        assert_eq!(first.assign(features), second.assign(features));
    }

    // Five topics (the same four plus one): four ids kept, the new topic gets a new id.
    let (third_texts, third_truth) = corpus(5, 60, 11, 3);
    let third_samples = featurize(&featurizer, &third_texts);
    let third_fit = WorkloadModel::fit_report(&third_samples, 2..=8, 3).unwrap();
    assert_eq!(third_fit.model.k(), 5, "{:?}", third_fit.silhouette_by_k);
    let mut third = third_fit.model;
    let kept = third.inherit_ids(&second);
    assert_eq!(kept.len(), 4, "{kept:?}");
    let new_topic = third_truth.iter().position(|&t| t == 4).unwrap();
    let new_id = third.assign(&third_samples[new_topic]).to_owned();
    assert!(!first.ids().contains(&new_id) && !second.ids().contains(&new_id), "{new_id}");
    assert_eq!(third.ids().iter().collect::<BTreeSet<_>>().len(), 5);

    // The topic disappears again, then comes back as a fresh cluster: it must not get an id
    // the lineage already gave (here: the fifth topic's id would be fine only if it matches).
    let mut fourth = WorkloadModel::fit(&second_samples, 2..=8, 4).unwrap();
    fourth.inherit_ids(&third);
    let mut fifth = WorkloadModel::fit(&third_samples, 2..=8, 5).unwrap();
    fifth.inherit_ids(&fourth);
    let reborn = fifth.assign(&third_samples[new_topic]).to_owned();
    assert!(!third.ids().contains(&reborn) || reborn == new_id);
    assert!(!fourth.ids().contains(&reborn), "{reborn} given to another cluster before");
}

#[test]
fn inherit_between_different_widths_keeps_nothing() {
    let (texts, _) = corpus(3, 40, 5, 1);
    let narrow = WorkloadModel::fit(&featurize(&Featurizer::new(128), &texts), 2..=4, 1).unwrap();
    let mut wide = WorkloadModel::fit(&featurize(&Featurizer::new(256), &texts), 2..=4, 1).unwrap();
    assert!(wide.inherit_ids(&narrow).is_empty());
    assert!(wide.ids().iter().all(|id| !narrow.ids().contains(id)));
}

#[test]
fn serde_round_trip_assigns_alike_and_rejects_broken_models() {
    let featurizer = Featurizer::new(256);
    let (texts, _) = corpus(3, 40, 5, 1);
    let samples = featurize(&featurizer, &texts);
    let model = WorkloadModel::fit(&samples, 2..=5, 1).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    let back: WorkloadModel = serde_json::from_str(&json).unwrap();
    assert_eq!(back.ids(), model.ids());
    for features in &samples {
        assert_eq!(back.assign_index(features), model.assign_index(features));
    }
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["idf"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<WorkloadModel>(value).is_err());
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["ids"][1] = value["ids"][0].clone();
    assert!(serde_json::from_value::<WorkloadModel>(value).is_err());
}

#[test]
fn too_few_samples_and_bad_ranges_are_errors() {
    let featurizer = Featurizer::new(64);
    let (texts, _) = corpus(2, 20, 5, 1);
    let samples = featurize(&featurizer, &texts);
    assert!(matches!(
        WorkloadModel::fit(&samples, 2..=4, 1),
        Err(crate::Error::TooFewValues { needed: MIN_FIT_SAMPLES, got: 40, .. })
    ));
    let (texts, _) = corpus(2, 60, 5, 1);
    let samples = featurize(&featurizer, &texts);
    #[expect(clippy::reversed_empty_ranges, reason = "the empty range is the case under test")]
    let empty = 5..=4;
    assert!(WorkloadModel::fit(&samples, empty, 1).is_err());
    assert!(matches!(
        WorkloadModel::fit(&samples, 30..=40, 1),
        Err(crate::Error::TooFewValues { .. })
    ));
    let mut mixed = samples.clone();
    mixed[3] = Featurizer::new(128).features(&WorkloadText {
        system: None,
        last_user: "x",
        input_tokens: None,
    });
    assert!(matches!(
        WorkloadModel::fit(&mixed, 2..=4, 1),
        Err(crate::Error::InvalidParameter { name: "samples", .. })
    ));
}
