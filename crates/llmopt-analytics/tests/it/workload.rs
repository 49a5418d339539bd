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
            assert_eq!(prompt.scores.keys().collect::<Vec<_>>(), [GPT4, MIXTRAL]);
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
    assert_eq!(gsm8k[0].scores.keys().collect::<Vec<_>>(), [GPT4, MIXTRAL]);

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
    // Chance: the same clusters against shuffled subjects (a permutation test).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut shuffled = subjects.clone();
    let chance: Vec<f64> = (0..200)
        .map(|_| {
            shuffled.shuffle(&mut rng);
            purity(&fit.labels, &shuffled)
        })
        .collect();
    let chance_max = chance.iter().copied().fold(0.0, f64::max);
    let chance_mean = chance.iter().sum::<f64>() / chance.len() as f64;
    println!(
        "MMLU slice: k = {}, purity {observed:.3}, shuffled mean {chance_mean:.3} max \
         {chance_max:.3}, silhouettes {:?}",
        fit.model.k(),
        fit.silhouette_by_k
    );
    // Above every one of 200 shuffles (p < 0.005), and clearly so.
    assert!(observed > chance_max && observed >= chance_mean + 0.08, "{observed} vs {chance:?}");

    // Assigning the sample's own members returns their cluster (f32 against linfa's f64 may
    // differ on a near tie; none did here).
    let agree = samples
        .iter()
        .zip(&fit.labels)
        .filter(|(features, label)| fit.model.assign_index(features) == **label)
        .count();
    assert!(agree * 100 >= samples.len() * 99, "{agree} of {}", samples.len());
}

#[test]
fn mmlu_refit_on_a_sliding_window_keeps_ids() {
    // Consecutive optimization cycles fit on overlapping windows of recent traffic: here the
    // first 300 prompts, then the last 300 (240 shared), with another seed.
    let (prompts, _) = mmlu_slice();
    let samples = featurize(&Featurizer::new(DEFAULT_DIMS), &prompts);
    let first = WorkloadModel::fit(&samples[..300], 4..=4, 1).unwrap();
    let mut second = WorkloadModel::fit(&samples[60..], 4..=4, 2).unwrap();
    let kept = second.inherit_ids(&first);
    let same = samples
        .iter()
        .filter(|f| kept.contains_key(first.assign(f)) && first.assign(f) == second.assign(f))
        .count();
    let under_kept = samples.iter().filter(|f| kept.contains_key(first.assign(f))).count();
    println!("kept {} of 4 ids: {kept:?}; same id for {same} of {under_kept} prompts", kept.len());
    assert!(kept.len() >= 2, "{kept:?}");
    assert_eq!(second.ids().iter().collect::<BTreeSet<_>>().len(), 4);
    assert!(
        second
            .ids()
            .iter()
            .filter(|id| !kept.contains_key(*id))
            .all(|id| !first.ids().contains(id))
    );
    // A kept id names mostly the same prompts in both models.
    assert!(same * 10 >= under_kept * 8, "{same} of {under_kept}");
}
