//! Shared helpers: records, specs and an engine over the in-memory store.

use std::sync::Arc;

use llmopt_core::{
    ErrorKind, ExperimentArm, ExperimentStore, ManualClock, MemoryExperimentStore, Money,
    RequestRecord, Status, Tags, testsuite::T0,
};
use llmopt_experiments::{
    Degradation, Engine, ExperimentSpec, Guardrail, Metric, PolicyChange, ScopeInputs,
};

pub const HOUR_MS: i64 = 3_600_000;

pub struct Harness {
    pub store: Arc<MemoryExperimentStore>,
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
}

impl Harness {
    pub fn new() -> Harness {
        let store = Arc::new(MemoryExperimentStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::open(store.clone(), clock.clone()).expect("open");
        Harness { store, clock, engine }
    }

    /// A second engine over the same store and clock: what a restart sees.
    pub fn reopen(&self) -> Engine {
        let store: Arc<dyn ExperimentStore> = self.store.clone();
        Engine::open(store, self.clock.clone()).expect("reopen")
    }
}

/// A two-arm cost experiment: treatment serves gpt-4o-mini instead of gpt-4o.
pub fn cheaper_model_spec(id: &str) -> ExperimentSpec {
    let mut spec = ExperimentSpec::ab(
        id,
        PolicyChange::default(),
        PolicyChange { model: Some("gpt-4o-mini".into()), ..PolicyChange::default() },
        Metric::CostUsd,
        24 * HOUR_MS,
    );
    spec.hypothesis = "gpt-4o-mini answers this workload as well for less".into();
    spec.guardrails = vec![
        Guardrail { metric: Metric::ErrorRate, max_degradation: Degradation::Absolute(0.02) },
        Guardrail {
            metric: Metric::Quality { name: "thumbs_up".into() },
            max_degradation: Degradation::Absolute(0.05),
        },
    ];
    spec
}

pub fn record(
    index: u64,
    experiment: &str,
    arm: &str,
    cost_picos: i128,
    latency_ms: u64,
    ok: bool,
) -> RequestRecord {
    let mut record =
        RequestRecord::new(format!("req-{index}"), T0 + index as i64, "openai", "gpt-4o");
    record.cost = Some(Money(cost_picos));
    record.latency_us = latency_ms * 1_000;
    record.status = if ok { Status::Ok } else { Status::Error(ErrorKind::Upstream) };
    record.experiment =
        Some(ExperimentArm { experiment_id: experiment.to_owned(), arm: arm.to_owned() });
    record
}

pub fn inputs<'a>(model: &'a str, tags: &'a Tags) -> ScopeInputs<'a> {
    ScopeInputs { model, tenant: None, tags, cluster: None }
}

/// `now + delta` without moving the clock.
pub trait ClockExt {
    fn now_ms_plus(&self, delta_ms: i64) -> i64;
}

impl ClockExt for ManualClock {
    fn now_ms_plus(&self, delta_ms: i64) -> i64 {
        use llmopt_core::Clock;
        self.now_ms() + delta_ms
    }
}
