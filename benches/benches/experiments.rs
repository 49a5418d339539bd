//! Experiment engine: assignment and observation run once per proxied call; evaluation once per
//! optimization cycle.

use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use llmopt_core::{ExperimentArm, ManualClock, MemoryExperimentStore, Money, RequestRecord, Tags};
use llmopt_experiments::{
    Degradation, Engine, ExperimentSpec, Guardrail, Metric, PolicyChange, Scope, ScopeInputs,
    UnitIds, ValueKind, bucket,
    stats::{self, ArmSummary},
};

const T0: i64 = 1_767_225_600_000;

fn spec(id: &str, model: &str) -> ExperimentSpec {
    let mut spec = ExperimentSpec::ab(
        id,
        PolicyChange::default(),
        PolicyChange { model: Some("gpt-4o-mini".into()), ..PolicyChange::default() },
        Metric::CostUsd,
        86_400_000,
    );
    spec.scope = Scope { model: Some(model.into()), ..Scope::default() };
    spec.guardrails = vec![
        Guardrail { metric: Metric::ErrorRate, max_degradation: Degradation::Absolute(0.01) },
        Guardrail {
            metric: Metric::Quality { name: "thumbs_up".into() },
            max_degradation: Degradation::Absolute(0.02),
        },
    ];
    // Never concludes during the bench, so every evaluation does the full work.
    spec.min_samples_per_arm = u64::MAX;
    spec
}

fn record(index: u64, experiment: &str, arm: &str) -> RequestRecord {
    let mut record = RequestRecord::new(format!("req-{index}"), T0, "openai", "gpt-4o");
    record.cost = Some(Money(1_000_000 + i128::from(index % 977) * 13_000));
    record.latency_us = 200_000 + (index % 313) * 1_000;
    record.experiment = Some(ExperimentArm { experiment_id: experiment.into(), arm: arm.into() });
    record
}

fn experiments(c: &mut Criterion) {
    c.bench_function("experiments/bucket", |b| {
        b.iter(|| {
            bucket(
                black_box("exp-cheaper-model"),
                black_box("019a4f3e-8b7c-7d1e-9f00-123456789abc"),
            )
        })
    });

    let store = Arc::new(MemoryExperimentStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open(store, clock).expect("open");
    let models = [
        "gpt-4o",
        "claude-sonnet-4-5",
        "gemini-2.5-pro",
        "o3",
        "gpt-4.1",
        "mistral-large",
        "llama-3.3-70b",
        "qwen3-235b",
        "deepseek-v3",
        "command-r-plus",
    ];
    for (index, model) in models.iter().enumerate() {
        let id = format!("exp-{index}");
        engine.create(spec(&id, model)).expect("create");
        engine.start(&id).expect("start");
        for n in 0..5_000u64 {
            engine.observe(&record(n, &id, if n % 2 == 0 { "control" } else { "treatment" }));
        }
    }
    let tags = Tags::new();
    let inputs =
        ScopeInputs { model: "deepseek-v3", tenant: Some("acme"), tags: &tags, cluster: None };
    c.bench_function("experiments/assign_among_10_running", |b| {
        b.iter(|| {
            engine.assign(black_box(&inputs), black_box(&UnitIds::request("019a4f3e-8b7c-7d1e")))
        })
    });
    let observed = record(42, "exp-3", "treatment");
    c.bench_function("experiments/observe", |b| b.iter(|| engine.observe(black_box(&observed))));
    c.bench_function("experiments/evaluate_10_with_persistence", |b| {
        b.iter(|| engine.evaluate(black_box(T0 + 1)).expect("evaluate"))
    });

    let control = ArmSummary { count: 5_000.0, mean: 0.0054, variance: 0.0054 * 0.0054 };
    let treatment = ArmSummary { count: 5_000.0, mean: 0.0050, variance: 0.0050 * 0.0050 };
    let rho = stats::mixture_rho(0.05, 5_000.0);
    c.bench_function("experiments/sequential_interval", |b| {
        b.iter(|| {
            stats::sequential_difference(
                black_box(&control),
                black_box(&treatment),
                ValueKind::Continuous,
                0.05,
                rho,
            )
        })
    });
}

criterion_group!(benches, experiments);
criterion_main!(benches);
