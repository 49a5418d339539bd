//! The loop end to end on in-memory stores and a manual clock: a workload where the cheap model
//! is as good gets routed, one where it is much worse does not, and everything is audited and
//! survives a restart.

use std::sync::Arc;

use llmopt_core::{
    Clock, ManualClock, MemoryExperimentStore, MemoryPolicyStore, MemoryRecordStore, PolicyStore,
    PriceCatalog, RecordStore, RequestRecord, Tags,
};
use llmopt_experiments::{Engine, UnitIds};
use llmopt_optimizer::{
    LivePolicy, Mode, Optimizer, OptimizerConfig, Policy, RequestContext, StrategyKind,
    StrategySettings, strategies,
};

use crate::support::{T0, record, with_feedback};

struct World {
    records: Arc<MemoryRecordStore>,
    experiments: Arc<MemoryExperimentStore>,
    policies: Arc<MemoryPolicyStore>,
    clock: Arc<ManualClock>,
    next_id: u64,
}

fn config(mode: Mode) -> OptimizerConfig {
    let mut config = OptimizerConfig {
        mode,
        lookback_ms: 30 * 86_400_000,
        max_running_experiments: 4,
        min_samples_per_arm: 200,
        experiment_max_duration_ms: 60 * 86_400_000,
        settings: StrategySettings {
            min_requests: 100,
            workload_tag: Some("task".into()),
            ..StrategySettings::default()
        },
        ..OptimizerConfig::default()
    };
    // Only routing: the other strategies would propose on this traffic too.
    for kind in StrategyKind::ALL {
        config.strategies.insert(kind, kind == StrategyKind::ModelRouting);
    }
    config
}

impl World {
    fn new() -> World {
        World {
            records: Arc::new(MemoryRecordStore::new()),
            experiments: Arc::new(MemoryExperimentStore::new()),
            policies: Arc::new(MemoryPolicyStore::new()),
            clock: Arc::new(ManualClock::new(T0)),
            next_id: 0,
        }
    }

    fn optimizer(&self, mode: Mode) -> Optimizer {
        let engine = Arc::new(Engine::open(self.experiments.clone(), self.clock.clone()).unwrap());
        let policy = Arc::new(LivePolicy::load(self.policies.clone(), Policy::default()).unwrap());
        Optimizer::new(
            self.records.clone(),
            engine,
            policy,
            self.policies.clone(),
            Arc::new(PriceCatalog::builtin()),
            self.clock.clone(),
            strategies::all(),
            config(mode),
        )
        .unwrap()
    }

    /// `count` requests to gpt-4o, half `easy`, half `hard`, routed by the optimizer.
    /// Quality: 90 % correct, except the cheap model on `hard` tasks: 40 %.
    fn traffic(&mut self, optimizer: &Optimizer, count: u64) {
        let mut batch = Vec::new();
        for _ in 0..count {
            let i = self.next_id;
            self.next_id += 1;
            let task = if i.is_multiple_of(2) { "easy" } else { "hard" };
            let mut tags = Tags::new();
            tags.insert("task".into(), task.into());
            let id = format!("req-{i}");
            let context = RequestContext {
                model: "gpt-4o",
                tenant: None,
                tags: &tags,
                endpoint: llmopt_core::Endpoint::ChatCompletions,
                unit_id: &id,
                environment: "test",
                workload: None,
            };
            let routing = optimizer.route(&context, &UnitIds::request(&id));
            let served = routing.decision.model.clone().unwrap_or_else(|| "gpt-4o".into());
            let mut r = record(i, self.clock.now_ms(), &served, 2_000, 300);
            r.id = id.as_str().into();
            r.requested_model = "gpt-4o".into();
            r.tags = tags.clone();
            r.experiment = routing.arm.clone();
            // A spread-out pattern over the request number: 9 in 10, or 4 in 10, correct.
            let draw = (i.wrapping_mul(2_654_435_761) >> 7) % 10;
            let correct =
                if served == "gpt-4o-mini" && task == "hard" { draw < 4 } else { draw < 9 };
            let r: RequestRecord = with_feedback(r, correct);
            optimizer.observe(&r);
            batch.push(r);
            self.clock.advance(1_000);
        }
        self.records.append(&batch).unwrap();
    }
}

#[test]
fn auto_mode_routes_the_workload_where_quality_holds() {
    let mut world = World::new();
    let optimizer = world.optimizer(Mode::Auto);
    world.traffic(&optimizer, 400);
    let first = optimizer.run_cycle().unwrap();
    assert_eq!(first.proposals.len(), 2, "{:#?}", first.proposals);
    assert_eq!(first.started.len(), 2, "one experiment per workload");

    let mut adopted = Vec::new();
    let mut stopped_or_rejected = false;
    for _ in 0..20 {
        world.traffic(&optimizer, 1_000);
        let report = optimizer.run_cycle().unwrap();
        adopted.extend(report.adopted.clone());
        stopped_or_rejected |= !report.rejected.is_empty()
            || report
                .decisions
                .iter()
                .any(|d| matches!(d.action, llmopt_experiments::decision::Action::StopArm { .. }));
        if !adopted.is_empty() && stopped_or_rejected {
            break;
        }
    }
    assert_eq!(adopted.len(), 1, "only the easy workload is routed");
    assert!(
        stopped_or_rejected,
        "the hard workload's cheap arm is stopped by its quality guardrail"
    );

    let tags = |task: &str| {
        let mut tags = Tags::new();
        tags.insert("task".into(), task.into());
        tags
    };
    let (easy, hard) = (tags("easy"), tags("hard"));
    fn ask(tags: &Tags) -> RequestContext<'_> {
        RequestContext {
            model: "gpt-4o",
            tenant: None,
            tags,
            endpoint: llmopt_core::Endpoint::ChatCompletions,
            unit_id: "someone",
            environment: "test",
            workload: None,
        }
    }
    assert_eq!(optimizer.policy().decide(&ask(&easy)).model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(optimizer.policy().decide(&ask(&hard)).model, None);
    let budget = optimizer.quality_budget_used();
    assert!(budget > 0.0 && budget <= 0.05, "budget used {budget}");

    // The adopted change is measured on the traffic after it.
    world.traffic(&optimizer, 500);
    optimizer.run_cycle().unwrap();
    let adoption = &optimizer.adoptions()[0];
    assert!(adoption.measured_requests > 0);
    assert!(adoption.measured_saving_usd_per_day.unwrap() > 0.0);
    assert!(optimizer.metrics().cost_reduction_usd_per_day > 0.0);

    // Every decision is in the audit log with its numbers.
    let log = optimizer.audit_log(0, 10_000).unwrap();
    let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["proposal", "experiment_started", "adopted"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let adopted_entry = log.iter().find(|e| e.kind == "adopted").unwrap();
    assert!(adopted_entry.detail["decision"]["primary"].is_array());

    // A restart keeps the policy, the adoption and the budget spent.
    let budget_before = optimizer.quality_budget_used();
    drop(optimizer);
    let restarted = world.optimizer(Mode::Auto);
    assert_eq!(restarted.adoptions().len(), 1);
    assert!((restarted.quality_budget_used() - budget_before).abs() < 1e-12);
    assert_eq!(restarted.policy().decide(&ask(&easy)).model.as_deref(), Some("gpt-4o-mini"));
    assert!(world.policies.history(10).unwrap()[0].reason.starts_with("adopt exp-"));
}

#[test]
fn observe_mode_only_proposes() {
    let mut world = World::new();
    let optimizer = world.optimizer(Mode::Observe);
    world.traffic(&optimizer, 400);
    let report = optimizer.run_cycle().unwrap();
    assert_eq!(report.proposals.len(), 2);
    assert!(report.started.is_empty());
    assert!(optimizer.engine().list().is_empty());
    assert_eq!(optimizer.metrics().runs, 1);
}

#[test]
fn experiment_mode_waits_for_approval() {
    let mut world = World::new();
    let optimizer = world.optimizer(Mode::Experiment);
    world.traffic(&optimizer, 400);
    optimizer.run_cycle().unwrap();
    let mut waiting = Vec::new();
    for _ in 0..20 {
        world.traffic(&optimizer, 1_000);
        let report = optimizer.run_cycle().unwrap();
        assert!(report.adopted.is_empty(), "nothing is adopted without approval");
        waiting.extend(report.awaiting_approval);
        if !waiting.is_empty() {
            break;
        }
    }
    assert_eq!(waiting.len(), 1);
    assert!(optimizer.approve("exp-9999").is_err());
    let adoption = optimizer.approve(&waiting[0]).unwrap();
    assert_eq!(adoption.change.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(optimizer.policy().current().version, 1);
}

#[test]
fn invalid_configuration_is_refused() {
    let world = World::new();
    let engine = Arc::new(Engine::open(world.experiments.clone(), world.clock.clone()).unwrap());
    let policy = Arc::new(LivePolicy::load(world.policies.clone(), Policy::default()).unwrap());
    let mut bad = config(Mode::Auto);
    bad.experiment_coverage = 0.0;
    let made = Optimizer::new(
        world.records.clone(),
        engine,
        policy,
        world.policies.clone(),
        Arc::new(PriceCatalog::builtin()),
        world.clock.clone() as Arc<dyn Clock>,
        strategies::all(),
        bad,
    );
    assert!(made.is_err());
    let _: &dyn RecordStore = world.records.as_ref();
}

#[test]
fn flags_from_configuration_switch_an_adopted_change_off() {
    let mut world = World::new();
    let optimizer = world.optimizer(Mode::Auto);
    world.traffic(&optimizer, 400);
    optimizer.run_cycle().unwrap();
    for _ in 0..20 {
        world.traffic(&optimizer, 1_000);
        optimizer.run_cycle().unwrap();
        if !optimizer.adoptions().is_empty() {
            break;
        }
    }
    let adopted = optimizer.adoptions()[0].experiment_id.clone();
    let mut easy = Tags::new();
    easy.insert("task".into(), "easy".into());
    let ask = RequestContext {
        model: "gpt-4o",
        tenant: None,
        tags: &easy,
        endpoint: llmopt_core::Endpoint::ChatCompletions,
        unit_id: "someone",
        environment: "test",
        workload: None,
    };
    assert_eq!(optimizer.policy().decide(&ask).model.as_deref(), Some("gpt-4o-mini"));
    let mut config = config(Mode::Auto);
    config.flags.insert(
        adopted.clone(),
        llmopt_optimizer::FeatureFlag {
            enabled: false,
            rollout_percent: 100.0,
            conditions: llmopt_optimizer::FlagConditions::default(),
        },
    );
    optimizer.set_config(config.clone()).unwrap();
    assert_eq!(optimizer.policy().decide(&ask).model, None, "switched off from configuration");
    let version = optimizer.policy().current().version;
    optimizer.set_config(config).unwrap();
    assert_eq!(optimizer.policy().current().version, version, "an unchanged flag writes nothing");
}
