//! Workload recognition on the gateway's hot path: featurise a request's text and assign it to
//! the nearest of k = 32 workload clusters (`llmopt_analytics::workload`), for a 2,000-token
//! prompt (8,000 characters of real MMLU prompts, concatenated). Target: ≤ 20 µs median for
//! featurise + assign, since the gateway does both on every routed request.
//!
//! The model is fitted (k fixed at 32) on the MMLU slices under
//! `crates/llmopt-analytics/tests/data/labelled/`; the prompt is made of those prompts too, so
//! the n-gram statistics are those of real text.

use std::path::PathBuf;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use llmopt_analytics::labelled::read_labelled;
use llmopt_analytics::workload::{
    ContentFeatures, DEFAULT_DIMS, Featurizer, WorkloadModel, WorkloadText,
};

const PROMPT_CHARS: usize = 8_000;

fn mmlu_prompts() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/llmopt-analytics/tests/data/labelled");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("mmlu_") && n.ends_with(".csv"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| read_labelled(file).expect("fixture reads"))
        .map(|labelled| labelled.prompt)
        .collect()
}

/// About 8,000 characters: whole prompts, interleaved across subjects, cut at a char boundary.
fn long_prompt(prompts: &[String]) -> String {
    let mut text = String::new();
    for index in 0.. {
        let prompt = &prompts[(index * 61) % prompts.len()];
        text.push_str(prompt);
        text.push('\n');
        if text.len() >= PROMPT_CHARS {
            break;
        }
    }
    let mut end = PROMPT_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn workload(c: &mut Criterion) {
    let prompts = mmlu_prompts();
    let featurizer = Featurizer::new(DEFAULT_DIMS);
    let samples: Vec<ContentFeatures> = prompts
        .iter()
        .map(|prompt| {
            featurizer.features(&WorkloadText {
                system: None,
                last_user: prompt,
                input_tokens: None,
            })
        })
        .collect();
    let model = WorkloadModel::fit(&samples, 32..=32, 1).expect("fit");
    assert_eq!(model.k(), 32);
    let prompt = long_prompt(&prompts);
    let text = WorkloadText {
        system: Some("You are an expert tutor. Answer with the letter of the correct option."),
        last_user: &prompt,
        input_tokens: None,
    };
    let features = featurizer.features(&text);
    println!(
        "prompt: {} chars, features: {} non-zero of {DEFAULT_DIMS}, k = {}",
        prompt.len(),
        features.nnz(),
        model.k()
    );

    let mut group = c.benchmark_group("workload");
    group.bench_function("featurize_assign_8k_chars_k32", |b| {
        b.iter(|| {
            let features = featurizer.features(black_box(&text));
            black_box(model.assign(&features).len())
        })
    });
    group.bench_function("featurize_8k_chars", |b| {
        b.iter(|| black_box(featurizer.features(black_box(&text))))
    });
    group.bench_function("assign_k32", |b| {
        b.iter(|| black_box(model.assign_index(black_box(&features))))
    });
    group.finish();
}

criterion_group!(benches, workload);
criterion_main!(benches);
