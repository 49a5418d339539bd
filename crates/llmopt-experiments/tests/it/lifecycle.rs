//! Lifecycle transitions, persistence through the store, and the restart test.

use std::sync::Arc;

use serde_json::json;

use llmopt_core::{
    ExperimentArm, ExperimentDoc, ExperimentStore, FeedbackValue, Money, Tags, testsuite::T0,
};
use llmopt_experiments::{Engine, Error, ExperimentStatus, Outcome, SCHEMA_VERSION, UnitIds};

use crate::support::{Harness, cheaper_model_spec, inputs, record};

#[test]
fn draft_running_paused_concluded() {
    let harness = Harness::new();
    let engine = &harness.engine;
    let created = engine.create(cheaper_model_spec("exp-a")).unwrap();
    assert_eq!(created.status, ExperimentStatus::Draft);
    assert!(matches!(engine.create(cheaper_model_spec("exp-a")), Err(Error::AlreadyExists(_))));
    assert!(matches!(
        engine.pause("exp-a"),
        Err(Error::InvalidTransition { status: "draft", action: "pause", .. })
    ));

    harness.clock.advance(1_000);
    let running = engine.start("exp-a").unwrap();
    assert_eq!(running.status, ExperimentStatus::Running);
    assert_eq!(running.started_ms, Some(T0 + 1_000));
    let tags = Tags::new();
    assert!(engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("r1")).is_some());

    engine.pause("exp-a").unwrap();
    assert!(engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("r1")).is_none());
    // Records assigned before the pause still count.
    assert!(engine.observe(&record(1, "exp-a", "control", 1_000, 100, true)));
    harness.clock.advance(1_000);
    let resumed = engine.start("exp-a").unwrap();
    assert_eq!(resumed.started_ms, Some(T0 + 1_000), "the first start is kept");

    let concluded = engine.conclude("exp-a", Some("treatment"), "reviewed by hand").unwrap();
    assert!(matches!(
        concluded.status,
        ExperimentStatus::Concluded { outcome: Outcome::Adopted { ref arm }, .. } if arm == "treatment"
    ));
    assert!(concluded.last_decision.is_some(), "the numbers at that moment are kept");
    assert!(!engine.observe(&record(2, "exp-a", "control", 1_000, 100, true)));
    assert!(matches!(engine.start("exp-a"), Err(Error::InvalidTransition { .. })));
    assert!(matches!(
        engine.conclude("missing", None, "x"),
        Err(Error::NotFound(id)) if id == "missing"
    ));

    engine.create(cheaper_model_spec("exp-b")).unwrap();
    assert!(matches!(
        engine.conclude("exp-b", Some("nope"), "x"),
        Err(Error::InvalidTransition { .. })
    ));
    engine.start("exp-b").unwrap();
    assert!(matches!(engine.conclude("exp-b", Some("nope"), "x"), Err(Error::UnknownArm { .. })));
    let stopped = engine.stop("exp-b", "pricing changed").unwrap();
    assert!(
        matches!(stopped.status, ExperimentStatus::Stopped { ref reason, .. } if reason == "pricing changed")
    );

    let stored = harness.store.get("exp-b").unwrap().unwrap();
    assert_eq!(stored.status, "stopped");
    assert_eq!(stored.body["schema"], json!(SCHEMA_VERSION));
}

#[test]
fn invalid_specs_are_refused() {
    let harness = Harness::new();
    let mut one_arm = cheaper_model_spec("one-arm");
    one_arm.arms.truncate(1);
    assert!(matches!(harness.engine.create(one_arm), Err(Error::InvalidSpec { .. })));
    let mut same_names = cheaper_model_spec("same-names");
    same_names.arms[1].name = "control".into();
    assert!(matches!(harness.engine.create(same_names), Err(Error::InvalidSpec { .. })));
    let mut bad_alpha = cheaper_model_spec("bad-alpha");
    bad_alpha.alpha = 0.7;
    assert!(matches!(harness.engine.create(bad_alpha), Err(Error::InvalidSpec { .. })));
    let mut bandit_by_user = cheaper_model_spec("bandit-user");
    bandit_by_user.allocation = llmopt_experiments::Allocation::Thompson { min_share: 0.1 };
    bandit_by_user.unit = llmopt_experiments::Unit::User;
    assert!(matches!(harness.engine.create(bandit_by_user), Err(Error::InvalidSpec { .. })));
    assert!(harness.engine.list().is_empty());
}

#[test]
fn a_restart_resumes_running_experiments_with_their_counts() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-restart")).unwrap();
    harness.engine.start("exp-restart").unwrap();
    harness.engine.create(cheaper_model_spec("exp-draft")).unwrap();
    let mut expected_cost = Money::ZERO;
    for index in 0..300u64 {
        let arm = if index % 3 == 0 { "treatment" } else { "control" };
        let cost = 1_000_000 + i128::from(index) * 7_919;
        if arm == "control" {
            expected_cost += Money(cost);
        }
        assert!(harness.engine.observe(&record(
            index,
            "exp-restart",
            arm,
            cost,
            200 + index,
            index % 50 != 0
        )));
    }
    let feedback_arm =
        ExperimentArm { experiment_id: "exp-restart".into(), arm: "treatment".into() };
    for index in 0..40 {
        assert!(harness.engine.observe_feedback(
            &feedback_arm,
            "thumbs_up",
            FeedbackValue::Bool(index % 4 != 0).as_f64()
        ));
    }
    assert!(!harness.engine.observe_feedback(&feedback_arm, "unknown_metric", 1.0));
    harness.engine.checkpoint().unwrap();
    let before = harness.engine.show("exp-restart").unwrap();
    let Harness { store, clock, engine } = harness;
    drop(engine);

    let engine = Engine::open(store, clock).unwrap();
    let after = engine.show("exp-restart").unwrap();
    assert_eq!(after.status, ExperimentStatus::Running);
    let control = &after.arms[0];
    let treatment = &after.arms[1];
    assert_eq!((control.requests, treatment.requests), (200, 100));
    // Errors at indices 0, 50, …, 250: 0, 150 are treatment (multiples of 3), the rest control.
    assert_eq!((control.errors, treatment.errors), (4, 2));
    assert_eq!(control.cost, expected_cost);
    assert_eq!(treatment.feedback_events, 40);
    let quality = treatment.moments("quality:thumbs_up").unwrap();
    assert_eq!(quality.count, 40);
    assert!((quality.mean - 0.75).abs() < 1e-12);
    let latency_before = before.arms[0].moments("cost_usd").unwrap();
    let latency_after = control.moments("cost_usd").unwrap();
    assert_eq!(latency_before.count, latency_after.count);
    assert!((latency_before.mean - latency_after.mean).abs() <= 1e-15 * latency_before.mean);
    assert_eq!(engine.show("exp-draft").unwrap().status, ExperimentStatus::Draft);

    // The resumed experiment assigns and counts again.
    let tags = Tags::new();
    assert!(engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("after-restart")).is_some());
    assert!(engine.observe(&record(1_000, "exp-restart", "control", 5, 5, true)));
    assert_eq!(engine.show("exp-restart").unwrap().arms[0].requests, 201);
}

#[test]
fn two_engines_writing_one_experiment_conflict_instead_of_overwriting() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-shared")).unwrap();
    harness.engine.start("exp-shared").unwrap();
    let second = harness.reopen();
    assert!(harness.engine.observe(&record(1, "exp-shared", "control", 10, 10, true)));
    harness.engine.checkpoint().unwrap();
    assert!(second.observe(&record(2, "exp-shared", "control", 10, 10, true)));
    assert!(matches!(
        second.checkpoint(),
        Err(Error::Store(llmopt_core::StoreError::Conflict { .. }))
    ));
}

#[test]
fn unreadable_or_newer_documents_are_refused_not_misread() {
    let store = Arc::new(llmopt_core::MemoryExperimentStore::new());
    let newer = ExperimentDoc {
        id: "from-the-future".into(),
        status: "running".into(),
        revision: 0,
        updated_ms: T0,
        body: json!({"schema": SCHEMA_VERSION + 1, "spec": {}}),
    };
    store.put(&newer).unwrap();
    let clock = Arc::new(llmopt_core::ManualClock::new(T0));
    let opened = Engine::open(store.clone(), clock.clone());
    assert!(matches!(opened, Err(Error::Corrupt { ref id, .. }) if id == "from-the-future"));
    store.delete("from-the-future").unwrap();
    store.put(&ExperimentDoc { body: json!({"schema": 1, "spec": 3}), ..newer }).unwrap();
    assert!(matches!(Engine::open(store, clock), Err(Error::Corrupt { .. })));
}

#[test]
fn list_and_show_serialise_to_json() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-json")).unwrap();
    harness.engine.start("exp-json").unwrap();
    harness.engine.observe(&record(1, "exp-json", "treatment", 2_500_000, 120, true));
    let listed = serde_json::to_value(harness.engine.list()).unwrap();
    assert_eq!(listed[0]["spec"]["id"], json!("exp-json"));
    assert_eq!(listed[0]["status"]["state"], json!("running"));
    assert_eq!(listed[0]["arms"][1]["requests"], json!(1));
    assert_eq!(listed[0]["spec"]["primary"], json!({"kind": "cost_usd"}));
    assert_eq!(
        listed[0]["spec"]["guardrails"][0],
        json!({"metric": {"kind": "error_rate"}, "max_degradation": {"absolute": 0.02}})
    );
    let shown: llmopt_experiments::Experiment = serde_json::from_value(
        serde_json::to_value(harness.engine.show("exp-json").unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(shown.arms[1].cost, Money(2_500_000));
}

#[test]
fn observers_and_assigners_share_the_engine_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-threads")).unwrap();
    harness.engine.start("exp-threads").unwrap();
    let engine = &harness.engine;
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            scope.spawn(move || {
                for index in 0..5_000 {
                    let arm = if index % 2 == 0 { "control" } else { "treatment" };
                    assert!(engine.observe(&record(
                        thread * 10_000 + index,
                        "exp-threads",
                        arm,
                        10,
                        10,
                        true
                    )));
                }
            });
        }
        scope.spawn(move || {
            let tags = Tags::new();
            for index in 0..5_000 {
                let request = format!("r-{index}");
                assert!(
                    engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request(&request)).is_some()
                );
            }
        });
    });
    let arms = harness.engine.show("exp-threads").unwrap().arms;
    assert_eq!((arms[0].requests, arms[1].requests), (5_000, 5_000));
}

#[test]
fn decisions_survive_a_restart_with_their_numbers() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-decided");
    spec.guardrails.clear();
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-decided").unwrap();
    for index in 0..400u64 {
        let (arm, cost) =
            if index % 2 == 0 { ("control", 2_000_000) } else { ("treatment", 1_000_000) };
        // Costs vary a little so that the variances are not zero.
        harness.engine.observe(&record(
            index,
            "exp-decided",
            arm,
            cost + i128::from(index % 5) * 1_000,
            10,
            true,
        ));
    }
    let decisions = harness.engine.evaluate(T0 + 1).unwrap();
    assert_eq!(decisions[0].action, llmopt_experiments::Action::Adopt { arm: "treatment".into() });
    let reopened = harness.reopen();
    let shown = reopened.show("exp-decided").unwrap();
    let decision = shown.last_decision.unwrap();
    assert_eq!(decision.action, decisions[0].action);
    assert_eq!(decision.primary[0].control_count, 200);
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["action"], json!("adopt"));
    assert_eq!(json["arm"], json!("treatment"));
}
