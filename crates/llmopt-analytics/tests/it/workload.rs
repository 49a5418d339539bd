//! Workload clustering on real prompts (MMLU slices of RouteLLM's labelled files, six
//! subjects × 60 prompts) and the labelled-dataset readers on the real formats.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use llmopt_analytics::labelled::{LabelledPrompt, read_labelled};
use llmopt_analytics::workload::{
    ContentFeatures, DEFAULT_DIMS, Featurizer, WorkloadModel, WorkloadText,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::support::data_dir;

const SUBJECTS: [&str; 6] = [
    "anatomy",
    "astronomy",
    "computer_security",
    "high_school_macroeconomics",
    "jurisprudence",
    "world_religions",
];
const MIXTRAL: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const GPT4: &str = "gpt-4-1106-preview";

fn labelled_dir() -> PathBuf {
    data_dir().join("labelled")
}

/// The MMLU slice, interleaved across subjects (as traffic would be), with each prompt's subject.
fn mmlu_slice() -> (Vec<String>, Vec<usize>) {
    let per_subject: Vec<Vec<LabelledPrompt>> = SUBJECTS
        .iter()
        .map(|s| read_labelled(&labelled_dir().join(format!("mmlu_{s}.csv"))).unwrap())
        .collect();
    let mut prompts = Vec::new();
    let mut subjects = Vec::new();
    for row in 0..60 {
        for (subject, rows) in per_subject.iter().enumerate() {
            prompts.push(rows[row].prompt.clone());
            subjects.push(subject);
        }
    }
    (prompts, subjects)
}

fn featurize(featurizer: &Featurizer, prompts: &[String]) -> Vec<ContentFeatures> {
    prompts
        .iter()
        .map(|p| {
            featurizer.features(&WorkloadText { system: None, last_user: p, input_tokens: None })
        })
        .collect()
}

/// Share of the points in their cluster's most common class.
fn purity(labels: &[usize], classes: &[usize]) -> f64 {
    let mut table: BTreeMap<usize, BTreeMap<usize, usize>> = BTreeMap::new();
    for (&label, &class) in labels.iter().zip(classes) {
        *table.entry(label).or_default().entry(class).or_default() += 1;
    }
    let majority: usize = table.values().map(|row| row.values().max().copied().unwrap_or(0)).sum();
    majority as f64 / labels.len() as f64
}

#[test]
fn real_slices_read_with_multi_line_prompts() {
    for subject in SUBJECTS {
        let prompts = read_labelled(&labelled_dir().join(format!("mmlu_{subject}.csv"))).unwrap();
        assert_eq!(prompts.len(), 60, "{subject}");
        for prompt in &prompts {
            assert_eq!(prompt.scores.keys().collect::<Vec<_>>(), [MIXTRAL, GPT4]);
            assert!(prompt.scores.values().all(|&s| s == 0.0 || s == 1.0));
            assert!(prompt.prompt.contains("\nA. ") && prompt.prompt.ends_with("Answer:"));
        }
    }
    let anatomy = read_labelled(&labelled_dir().join("mmlu_anatomy.csv")).unwrap();
    assert!(anatomy[1].prompt.starts_with("A \"dished face\" profile"), "{}", anatomy[1].prompt);

    // GSM8K: the `*_response` columns (multi-line answers) are ignored.
    let gsm8k = read_labelled(&labelled_dir().join("gsm8k_responses.csv")).unwrap();
    assert_eq!(gsm8k.len(), 20);
    assert!(gsm8k[0].prompt.starts_with("Janet’s ducks lay 16 eggs per day."));
    assert_eq!(gsm8k[0].scores.keys().collect::<Vec<_>>(), [MIXTRAL, GPT4]);

    // The JSON-lines copy of the first ten anatomy rows reads the same.
    let json = read_labelled(&labelled_dir().join("mmlu_anatomy.jsonl")).unwrap();
    assert_eq!(json, anatomy[..10]);
}

#[test]
fn bad_file_names_file_and_line() {
    let path = labelled_dir().join("bad_missing_score.csv");
    let error = read_labelled(&path).unwrap_err().to_string();
    assert_eq!(error, format!("{}:14: missing score for `{GPT4}`", path.display()));
    let missing = labelled_dir().join("no_such_file.csv");
    let error = read_labelled(&missing).unwrap_err().to_string();
    assert!(error.starts_with(&format!("{}: cannot open the file", missing.display())), "{error}");
}

/// The full RouteLLM files in the shared folder, when present: every one reads.
#[test]
fn full_routellm_files_read() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/quality/routellm");
    if !root.is_dir() {
        println!("skipped: {} not found", root.display());
        return;
    }
    let mut total = 0;
    for entry in std::fs::read_dir(root.join("mmlu_responses")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            total += read_labelled(&path).unwrap().len();
        }
    }
    assert_eq!(total, 14_042);
    let gsm8k = read_labelled(&root.join("gsm8k/gsm8k_responses.csv")).unwrap();
    assert!(gsm8k.len() > 1_000, "{}", gsm8k.len());
}

#[test]
fn mmlu_clusters_align_with_subjects() {
    let (prompts, subjects) = mmlu_slice();
    let samples = featurize(&Featurizer::new(DEFAULT_DIMS), &prompts);
    let fit = WorkloadModel::fit_report(&samples, 4..=12, 1).unwrap();
    let observed = purity(&fit.labels, &subjects);
    // Chance: the same clusters against shuffled subjects.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut shuffled = subjects.clone();
    let chance: f64 = (0..50)
        .map(|_| {
            shuffled.shuffle(&mut rng);
            purity(&fit.labels, &shuffled)
        })
        .sum::<f64>()
        / 50.0;
    println!(
        "MMLU slice: k = {}, purity {observed:.3}, shuffled {chance:.3}, silhouettes {:?}",
        fit.model.k(),
        fit.silhouette_by_k
    );
    assert!(observed >= chance + 0.25, "purity {observed} vs chance {chance}");

    // Assigning the sample's own members returns their cluster.
    let agree = samples
        .iter()
        .zip(&fit.labels)
        .filter(|(features, label)| fit.model.assign_index(features) == **label)
        .count();
    assert!(agree * 100 >= samples.len() * 99, "{agree} of {}", samples.len());
}

#[test]
fn mmlu_refit_on_another_sample_keeps_ids() {
    let (prompts, _) = mmlu_slice();
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let samples = featurize(&featurizer, &prompts);
    let (even, odd): (Vec<_>, Vec<_>) =
        samples.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    let even: Vec<ContentFeatures> = even.into_iter().map(|(_, f)| f).collect();
    let odd: Vec<ContentFeatures> = odd.into_iter().map(|(_, f)| f).collect();
    let first = WorkloadModel::fit(&even, 6..=6, 1).unwrap();
    let mut second = WorkloadModel::fit(&odd, 6..=6, 2).unwrap();
    let kept = second.inherit_ids(&first);
    println!("kept {} of 6: {kept:?}", kept.len());
    assert!(kept.len() >= 4, "{kept:?}");
    let ids: BTreeSet<&String> = second.ids().iter().collect();
    assert_eq!(ids.len(), 6);
    // A kept id names (mostly) the same prompts in both models.
    let same = samples
        .iter()
        .filter(|f| kept.contains_key(first.assign(f)) && first.assign(f) == second.assign(f))
        .count();
    let under_kept = samples.iter().filter(|f| kept.contains_key(first.assign(f))).count();
    assert!(same * 10 >= under_kept * 8, "{same} of {under_kept}");
}

#[test]
fn zz_diag() {
    let (prompts, subjects) = mmlu_slice();
    for (dims, w) in [
        (1024, [1.0, 1.0, 1.0, 0.5]),
        (1024, [0.0, 1.0, 1.0, 0.0]),
        (1024, [0.0, 1.0, 1.0, 0.5]),
        (1024, [0.5, 1.0, 1.0, 0.0]),
        (1024, [0.5, 1.0, 1.0, 0.3]),
        (1024, [0.3, 1.0, 1.0, 0.3]),
        (2048, [0.5, 1.0, 1.0, 0.3]),
        (4096, [0.5, 1.0, 1.0, 0.3]),
    ] {
        let featurizer = Featurizer::with_weights(dims, w);
        let samples = featurize(&featurizer, &prompts);
        for k in [6, 12] {
            let mut p = 0.0;
            for seed in 0..5 {
                let fit = WorkloadModel::fit_report(&samples, k..=k, seed).unwrap();
                p += purity(&fit.labels, &subjects) / 5.0;
            }
            println!("w {dims} {w:?} k {k} purity {p:.3}");
        }
    }
}
