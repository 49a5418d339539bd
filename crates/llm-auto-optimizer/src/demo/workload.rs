//! The demo's workload, from real public data (`data/demo/`, sources and licences in its README):
//! MMLU prompts with the RouteLLM correctness labels of both models, and arrival gaps from the
//! Azure LLM inference trace; and the routing references the report compares against.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

const WORKLOAD: &str = include_str!("../../../../data/demo/mmlu_workload.jsonl");
const ARRIVALS: &str = include_str!("../../../../data/demo/azure_conv_arrivals.csv");

#[derive(Debug, Clone, Deserialize)]
pub struct WorkItem {
    pub subject: String,
    pub prompt: String,
    pub weak_correct: bool,
    pub strong_correct: bool,
}

pub fn workload() -> Result<Vec<WorkItem>> {
    WORKLOAD
        .lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("data/demo/mmlu_workload.jsonl:{}", index + 1))
        })
        .collect()
}

pub fn arrival_gaps() -> Result<Vec<i64>> {
    let offsets: Vec<i64> = ARRIVALS
        .lines()
        .skip(1)
        .map(|line| line.trim().parse::<i64>().with_context(|| format!("arrival offset `{line}`")))
        .collect::<Result<_>>()?;
    let gaps: Vec<i64> = offsets.windows(2).map(|w| (w[1] - w[0]).max(0)).collect();
    if gaps.is_empty() {
        bail!("no arrival gaps in data/demo/azure_conv_arrivals.csv");
    }
    Ok(gaps)
}

/// Training and held-out prompts, split by prompt: within each subject (in file order) every
/// third prompt is held out, so both sets cover every subject.
pub fn split(items: &[WorkItem]) -> (Vec<&WorkItem>, Vec<&WorkItem>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut training, mut held_out) = (Vec::new(), Vec::new());
    for item in items {
        let index = seen.entry(&item.subject).or_default();
        if *index % 3 == 2 {
            held_out.push(item)
        } else {
            training.push(item)
        }
        *index += 1;
    }
    (training, held_out)
}

/// Share of calls that can go to the weak model while keeping 95 % of the strong model's
/// accuracy: routing a random share (reference 1) and an oracle that knows every subject's labels
/// (reference 2, greedy by subject).
pub fn references(items: &[&WorkItem]) -> (f64, f64) {
    let strong = items.iter().filter(|i| i.strong_correct).count() as f64;
    let weak = items.iter().filter(|i| i.weak_correct).count() as f64;
    let random = if strong > weak { (0.05 * strong / (strong - weak)).min(1.0) } else { 1.0 };
    let mut by_subject: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for item in items {
        let entry = by_subject.entry(&item.subject).or_default();
        entry.0 += 1.0;
        entry.1 += f64::from(u8::from(item.weak_correct));
        entry.2 += f64::from(u8::from(item.strong_correct));
    }
    let mut subjects: Vec<(f64, f64, f64)> = by_subject.into_values().collect();
    subjects.sort_by(|a, b| ((b.1 - b.2) / b.0).total_cmp(&((a.1 - a.2) / a.0)));
    let (mut correct, mut routed) = (strong, 0.0);
    for (count, weak, strong_s) in subjects {
        if correct - strong_s + weak >= 0.95 * strong {
            correct += weak - strong_s;
            routed += count;
        } else {
            break;
        }
    }
    (random, routed / items.len() as f64)
}

/// Subjects of the few-shot stream: the demo's applications with their own system prompts.
pub const FEW_SHOT_SUBJECTS: usize = 4;

/// System prompts in the style of MMLU's standard few-shot evaluation, built from the training
/// prompts (never the held-out ones): for the `FEW_SHOT_SUBJECTS` subjects with the most
/// training prompts, "The following are multiple choice questions about {subject}." followed by
/// that subject's first training prompts until the prompt passes about 6,000 characters (1,500
/// tokens: above the providers' 1,024-token minimum for prompt caching). Every request of a
/// subject shares its system prompt byte for byte: the shared prefix a prompt cache serves.
/// Returns (subject, system prompt, the subject's training prompts).
pub fn few_shot_prompts<'a>(training: &[&'a WorkItem]) -> Vec<(String, String, Vec<&'a WorkItem>)> {
    let mut by_subject: BTreeMap<&str, Vec<&'a WorkItem>> = BTreeMap::new();
    for item in training {
        by_subject.entry(item.subject.as_str()).or_default().push(item);
    }
    let mut subjects: Vec<(&str, Vec<&'a WorkItem>)> = by_subject.into_iter().collect();
    subjects.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    subjects
        .into_iter()
        .take(FEW_SHOT_SUBJECTS)
        .map(|(subject, items)| {
            let mut system = format!(
                "The following are multiple choice questions about {}.\n\n",
                subject.replace('_', " ")
            );
            for example in &items {
                if system.len() >= 6_000 {
                    break;
                }
                system.push_str(&example.prompt);
                system.push_str("\n\n");
            }
            (subject.to_owned(), system, items)
        })
        .collect()
}
