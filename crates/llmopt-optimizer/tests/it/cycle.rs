//! The loop end to end on in-memory stores and a manual clock: a workload where the cheap model
//! is as good gets routed, one where it is much worse does not, and everything is audited and
//! survives a restart.

use std::sync::Arc;

use llmopt_core::{
    AuditEntry, Clock, ManualClock, MemoryExperimentStore, MemoryPolicyStore, MemoryRecordStore,
    PolicyStore, PriceCatalog, RecordStore, RequestRecord, Tags,
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
    /// The cheap model has degraded on `easy` tasks too (40 % correct): a drift after adoption.
    drift: bool,
    /// The cheap model is as good on `hard` tasks as on `easy` ones.
    all_easy: bool,
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
            drift: false,
            all_easy: false,
        }
    }

    fn optimizer(&self, mode: Mode) -> Optimizer {
        self.optimizer_with(config(mode))
    }

    fn optimizer_with(&self, config: OptimizerConfig) -> Optimizer {
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
            config,
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
            llmopt_core::tag_adoptions(
                &mut r.tags,
                &routing.decision.applied_flags,
                &routing.decision.held_out,
            );
            r.experiment = routing.arm.clone();
            // A spread-out pattern over the request number: 9 in 10, or 4 in 10, correct.
            let draw = (i.wrapping_mul(2_654_435_761) >> 7) % 10;
            let degraded = (task == "hard" && !self.all_easy) || self.drift;
            let correct = if served == "gpt-4o-mini" && degraded { draw < 4 } else { draw < 9 };
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

/// Runs cycles of `per_cycle` requests until the easy workload's routing is adopted.
fn adopt_easy_routing(world: &mut World, optimizer: &Optimizer, per_cycle: u64) -> String {
    world.traffic(optimizer, 400);
    optimizer.run_cycle().unwrap();
    for _ in 0..30 {
        world.traffic(optimizer, per_cycle);
        let report = optimizer.run_cycle().unwrap();
        if let Some(id) = report.adopted.first() {
            return id.clone();
        }
    }
    panic!("the easy workload's routing was never adopted");
}

fn easy_context(tags: &Tags) -> RequestContext<'_> {
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

#[test]
fn an_adoption_is_measured_against_its_holdout_and_rolled_back_when_quality_drifts() {
    let mut world = World::new();
    let optimizer =
        world.optimizer_with(OptimizerConfig { holdout_share: 0.2, ..config(Mode::Auto) });
    let adopted = adopt_easy_routing(&mut world, &optimizer, 1_000);
    let budget_held = optimizer.quality_budget_used();
    assert!(budget_held > 0.0);
    let flag = &optimizer.policy().current().policy.flags[&adopted];
    assert!((flag.rollout_percent - 80.0).abs() < 1e-9, "20 % held out");

    // Before the drift: measured against the holdout, a positive saving with its interval.
    world.traffic(&optimizer, 2_000);
    let report = optimizer.run_cycle().unwrap();
    assert!(report.rolled_back.is_empty(), "{:?}", report.rolled_back);
    let adoption = optimizer.adoptions().into_iter().find(|a| a.experiment_id == adopted).unwrap();
    let measurement = adoption.measurement.clone().expect("measured");
    assert!(measurement.held_out_requests > 100, "{measurement:?}");
    assert!(measurement.applied_requests > 3 * measurement.held_out_requests);
    assert!(measurement.held_out_cost_per_request > measurement.applied_cost_per_request);
    let (low, high) = measurement.saving_interval_usd_per_day.expect("an interval");
    assert!(low <= measurement.saving_usd_per_day && measurement.saving_usd_per_day <= high);
    assert!(low > 0.0, "the saving is shown: [{low}, {high}]");
    assert_eq!(adoption.measured_saving_usd_per_day, Some(measurement.saving_usd_per_day));

    // The cheap model degrades on the adopted workload: the holdout shows it and the change
    // goes within a bounded number of requests.
    world.drift = true;
    let mut requests_after_drift = 0;
    let mut rolled_back = Vec::new();
    while rolled_back.is_empty() && requests_after_drift < 8_000 {
        world.traffic(&optimizer, 500);
        requests_after_drift += 500;
        rolled_back = optimizer.run_cycle().unwrap().rolled_back;
    }
    assert_eq!(rolled_back, vec![adopted.clone()], "after {requests_after_drift} requests");
    // Measured: 1,000 requests (500 of the workload, 100 of them held out).
    assert!(requests_after_drift <= 3_000, "{requests_after_drift} requests");
    let tags = {
        let mut tags = Tags::new();
        tags.insert("task".into(), "easy".into());
        tags
    };
    assert_eq!(optimizer.policy().decide(&easy_context(&tags)).model, None, "rule removed");
    assert!(!optimizer.policy().current().policy.flags.contains_key(&adopted), "flag removed");
    assert!(optimizer.quality_budget_used() < budget_held, "budget released");
    let adoption = optimizer.adoptions().into_iter().find(|a| a.experiment_id == adopted).unwrap();
    let rollback = adoption.rolled_back.expect("rolled back");
    assert!(rollback.cause.starts_with("guardrail:quality"), "{rollback:?}");
    assert_eq!(optimizer.metrics().rollbacks.values().sum::<u64>(), 1);
    let log = optimizer.audit_log(0, 100_000).unwrap();
    assert!(log.iter().any(|e| e.kind == "rolled_back" && e.subject == adopted));

    // A restart keeps the rollback and the released budget.
    let released = optimizer.quality_budget_used();
    drop(optimizer);
    let restarted =
        world.optimizer_with(OptimizerConfig { holdout_share: 0.2, ..config(Mode::Auto) });
    assert!((restarted.quality_budget_used() - released).abs() < 1e-12);
    assert!(restarted.adoptions().iter().all(|a| !a.in_force()));
    assert_eq!(restarted.policy().decide(&easy_context(&tags)).model, None);
    assert!(matches!(
        restarted.roll_back(&adopted, "again"),
        Err(llmopt_optimizer::OptimizerError::NoSuchAdoption(_))
    ));
}

#[test]
fn an_operator_rolls_an_adoption_back_by_hand() {
    let mut world = World::new();
    let optimizer = world.optimizer(Mode::Auto);
    let adopted = adopt_easy_routing(&mut world, &optimizer, 1_000);
    let rolled = optimizer.roll_back(&adopted, "not wanted").unwrap();
    assert_eq!(rolled.rolled_back.as_ref().unwrap().cause, "operator");
    assert_eq!(optimizer.quality_budget_used(), 0.0, "its budget is released");
    let tags = {
        let mut tags = Tags::new();
        tags.insert("task".into(), "easy".into());
        tags
    };
    assert_eq!(optimizer.policy().decide(&easy_context(&tags)).model, None);
    assert!(optimizer.roll_back(&adopted, "twice").is_err(), "once only");
    assert!(optimizer.roll_back("exp-9999", "unknown").is_err());
}

/// Both workloads are routed when the budget has room; returns the budget in use after each
/// adoption, in order.
fn route_both(world: &mut World, optimizer: &Optimizer) -> (Vec<String>, Vec<f64>) {
    world.traffic(optimizer, 400);
    optimizer.run_cycle().unwrap();
    let (mut adopted, mut budgets) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        world.traffic(optimizer, 1_000);
        let report = optimizer.run_cycle().unwrap();
        for id in report.adopted {
            adopted.push(id);
            budgets.push(optimizer.quality_budget_used());
        }
        if adopted.len() == 2 {
            break;
        }
    }
    (adopted, budgets)
}

#[test]
fn a_winner_the_budget_refused_is_adopted_once_a_rollback_releases_budget() {
    // Both workloads are routable, but the default budget (0.05 of the model's quality) has
    // room for one of them only.
    let mut world = World { all_easy: true, ..World::new() };
    let optimizer = world.optimizer(Mode::Auto);
    let (adopted, _) = route_both(&mut world, &optimizer);
    assert_eq!(adopted.len(), 1, "room for one");
    let log = optimizer.audit_log(0, 100_000).unwrap();
    let refused: Vec<&AuditEntry> = log.iter().filter(|e| e.kind == "not_adopted").collect();
    assert_eq!(refused.len(), 1, "the other winner is refused: {refused:?}");
    assert!(
        refused[0].detail["reason"].as_str().unwrap().starts_with("quality budget"),
        "{:?}",
        refused[0].detail
    );
    let refused = refused[0].subject.clone();
    // Cycles without a change in the budget do not offer it again (no audit noise).
    world.traffic(&optimizer, 500);
    assert!(optimizer.run_cycle().unwrap().not_adopted.is_empty());

    // The adopted one is rolled back: the next cycle adopts the refused winner.
    optimizer.roll_back(&adopted[0], "make room").unwrap();
    world.traffic(&optimizer, 500);
    let report = optimizer.run_cycle().unwrap();
    assert_eq!(report.adopted, vec![refused.clone()], "{report:#?}");
    let budget = optimizer.quality_budget_used();
    assert!(budget > 0.0 && budget <= 0.05, "{budget}");
}
