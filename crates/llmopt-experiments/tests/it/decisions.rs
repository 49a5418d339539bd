//! Decisions through the engine: adopt with numbers, guardrail stops, limits, minimum samples,
//! late feedback, and the multi-arm Thompson mode.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use llmopt_core::{ExperimentArm, ExperimentStore, Feedback, FeedbackValue, Money, Tags};
use llmopt_experiments::{
    Action, Allocation, ArmSpec, Degradation, ExperimentStatus, Guardrail, GuardrailVerdict,
    Metric, Outcome, PolicyChange, StopCause, UnitIds, Verdict, stats,
};

use crate::support::{ClockExt, HOUR_MS, Harness, cheaper_model_spec, inputs, record};

/// Feeds `per_arm` records to each arm: lognormal costs with the given means (USD), the given
/// error rates, and one `thumbs_up` feedback per record with the given rates.
fn feed(
    harness: &Harness,
    experiment: &str,
    arms: &[(&str, f64, f64, f64)],
    per_arm: u64,
    rng: &mut Xoshiro256PlusPlus,
) {
    let sigma: f64 = 1.0;
    for round in 0..per_arm {
        for (arm_index, &(arm, mean_usd, error_rate, thumbs_up_rate)) in arms.iter().enumerate() {
            let distribution = LogNormal::new(mean_usd.ln() - sigma * sigma / 2.0, sigma)
                .expect("valid lognormal");
            let cost_usd: f64 = distribution.sample(rng);
            let index = round * arms.len() as u64 + arm_index as u64;
            let ok = rng.r#gen::<f64>() >= error_rate;
            let mut request = record(index, experiment, arm, (cost_usd * 1e12) as i128, 300, ok);
            assert!(harness.engine.observe(&request));
            // Quality arrives later, by request id, as the gateway's feedback route would send it.
            request.feedback.push(Feedback {
                metric: "thumbs_up".into(),
                value: FeedbackValue::Bool(rng.r#gen::<f64>() < thumbs_up_rate),
                ts_ms: 0,
            });
            let arm_id = ExperimentArm { experiment_id: experiment.into(), arm: arm.into() };
            // Counted only where a guardrail tracks `thumbs_up`.
            harness.engine.observe_feedback(
                &arm_id,
                "thumbs_up",
                request.feedback[0].value.as_f64(),
            );
        }
    }
}

#[test]
fn a_clearly_cheaper_safe_treatment_is_adopted_with_its_numbers() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-adopt")).unwrap();
    harness.engine.start("exp-adopt").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    feed(
        &harness,
        "exp-adopt",
        &[("control", 0.005, 0.01, 0.80), ("treatment", 0.0035, 0.01, 0.80)],
        3_000,
        &mut rng,
    );
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(HOUR_MS)).unwrap();
    assert_eq!(decisions.len(), 1);
    let decision = &decisions[0];
    assert_eq!(decision.action, Action::Adopt { arm: "treatment".into() }, "{decision:#?}");
    let primary = &decision.primary[0];
    assert_eq!(primary.verdict, Verdict::Better);
    assert_eq!((primary.control_count, primary.treatment_count), (3_000, 3_000));
    let relative = primary.relative_difference.unwrap();
    // The true relative difference is −30 %: inside the interval, which excludes 0.
    assert!(
        relative.lower < -0.30 && -0.30 < relative.upper && relative.upper < 0.0,
        "{relative:?}"
    );
    assert!(decision.guardrails.iter().all(|g| g.verdict == GuardrailVerdict::NonInferior));
    let quality = decision.guardrails.iter().find(|g| g.metric == "quality:thumbs_up").unwrap();
    assert_eq!((quality.control_count, quality.treatment_count), (3_000, 3_000));

    let shown = harness.engine.show("exp-adopt").unwrap();
    assert!(matches!(
        shown.status,
        ExperimentStatus::Concluded { outcome: Outcome::Adopted { ref arm }, .. } if arm == "treatment"
    ));
    // Persisted by evaluate, without an explicit checkpoint.
    let stored = harness.store.get("exp-adopt").unwrap().unwrap();
    assert_eq!(stored.status, "concluded");
    assert_eq!(stored.body["arms"][0]["requests"], serde_json::json!(3_000));
    // A concluded experiment assigns nobody.
    let tags = Tags::new();
    assert!(harness.engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("r")).is_none());
    assert!(harness.engine.evaluate(harness.clock.now_ms_plus(2 * HOUR_MS)).unwrap().is_empty());
}

#[test]
fn nothing_is_decided_below_the_minimum_samples() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-min")).unwrap();
    harness.engine.start("exp-min").unwrap();
    for index in 0..99 {
        harness.engine.observe(&record(index * 2, "exp-min", "control", 9_000_000_000, 300, true));
        harness.engine.observe(&record(
            index * 2 + 1,
            "exp-min",
            "treatment",
            1_000_000,
            300,
            true,
        ));
    }
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    assert_eq!(decisions[0].action, Action::Continue);
    assert_eq!(decisions[0].primary[0].verdict, Verdict::TooFewSamples);
}

#[test]
fn a_guardrail_breach_stops_the_arm_and_rejects() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-errors")).unwrap();
    harness.engine.start("exp-errors").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    feed(
        &harness,
        "exp-errors",
        &[("control", 0.005, 0.01, 0.80), ("treatment", 0.002, 0.15, 0.80)],
        500,
        &mut rng,
    );
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    assert_eq!(decisions.len(), 2, "{decisions:#?}");
    assert_eq!(
        decisions[0].action,
        Action::StopArm {
            arm: "treatment".into(),
            cause: StopCause::Guardrail { metric: "error_rate".into() }
        }
    );
    let check = decisions[0].guardrails.iter().find(|g| g.metric == "error_rate").unwrap();
    assert_eq!(check.verdict, GuardrailVerdict::Breached);
    assert!(check.degradation.unwrap().lower > 0.02);
    assert_eq!(decisions[1].action, Action::Reject);
    let tags = Tags::new();
    assert!(harness.engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("r")).is_none());
}

#[test]
fn a_relative_latency_guardrail_uses_the_control_mean() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-latency");
    spec.guardrails =
        vec![Guardrail { metric: Metric::LatencyMs, max_degradation: Degradation::Relative(0.10) }];
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-latency").unwrap();
    for index in 0..1_000u64 {
        let (control_ms, treatment_ms) = if index % 2 == 0 { (90, 95) } else { (110, 115) };
        harness.engine.observe(&record(
            index * 2,
            "exp-latency",
            "control",
            5_000_000,
            control_ms,
            true,
        ));
        harness.engine.observe(&record(
            index * 2 + 1,
            "exp-latency",
            "treatment",
            5_000_000,
            treatment_ms,
            true,
        ));
    }
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    let check = &decisions[0].guardrails[0];
    assert_eq!(check.allowed_degradation, 10.0);
    let degradation = check.degradation.unwrap();
    assert!((degradation.estimate - 5.0).abs() < 1e-9);
    // Both arms: values ±10 around the mean, sample variance 1000·100/999.
    let variance = 1_000.0 * 100.0 / 999.0;
    let half = stats::confidence_sequence_half_width(
        2.0 * variance / 1_000.0,
        2_000.0,
        0.05,
        stats::mixture_rho(0.05, 5_000.0),
    );
    assert!((degradation.upper - (5.0 + half)).abs() < 1e-9);
    assert_eq!(check.verdict, GuardrailVerdict::NonInferior, "5 ms worse, 10 ms allowed");
}

#[test]
fn the_maximum_duration_ends_an_inconclusive_experiment() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-timeout")).unwrap();
    harness.engine.start("exp-timeout").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    feed(
        &harness,
        "exp-timeout",
        &[("control", 0.005, 0.01, 0.80), ("treatment", 0.005, 0.01, 0.80)],
        200,
        &mut rng,
    );
    let early = harness.engine.evaluate(harness.clock.now_ms_plus(HOUR_MS)).unwrap();
    assert_eq!(early[0].action, Action::Continue);
    let late = harness.engine.evaluate(harness.clock.now_ms_plus(24 * HOUR_MS)).unwrap();
    assert_eq!(late[0].action, Action::Reject);
    assert!(late[0].reason.contains("maximum duration"), "{}", late[0].reason);
}

#[test]
fn a_treatment_clearly_worse_on_the_primary_metric_is_stopped() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-worse");
    spec.guardrails.clear();
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-worse").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    feed(
        &harness,
        "exp-worse",
        &[("control", 0.005, 0.0, 0.8), ("treatment", 0.008, 0.0, 0.8)],
        2_000,
        &mut rng,
    );
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    assert_eq!(
        decisions[0].action,
        Action::StopArm { arm: "treatment".into(), cause: StopCause::WorseOnPrimary }
    );
    assert_eq!(decisions.last().unwrap().action, Action::Reject);
}

#[test]
fn thompson_mode_shifts_traffic_to_the_best_arm_but_keeps_a_minimum_share() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-bandit");
    spec.guardrails.clear();
    spec.allocation = Allocation::Thompson { min_share: 0.1 };
    spec.arms.push(ArmSpec {
        name: "haiku".into(),
        change: PolicyChange { model: Some("claude-haiku-4-5".into()), ..PolicyChange::default() },
        weight: 1.0,
    });
    // Keep it running: adoption needs a significant win, which this much data will give, so
    // the test looks at the weights of the evaluation that happens before enough samples.
    spec.min_samples_per_arm = 1_000_000;
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-bandit").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    feed(
        &harness,
        "exp-bandit",
        &[
            ("control", 0.005, 0.0, 0.8),
            ("treatment", 0.0045, 0.0, 0.8),
            ("haiku", 0.002, 0.0, 0.8),
        ],
        400,
        &mut rng,
    );
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    let weights = &decisions[0].weights;
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    assert!((total - 1.0).abs() < 1e-9);
    let weight_of = |name: &str| weights.iter().find(|(arm, _)| arm == name).unwrap().1;
    assert!(weight_of("haiku") > 0.75, "{weights:?}");
    assert!(weight_of("control") >= 0.1 && weight_of("treatment") >= 0.1, "{weights:?}");

    // Assignment follows the new weights.
    let tags = Tags::new();
    let mut haiku = 0;
    for index in 0..10_000 {
        let request = format!("bandit-{index}");
        let assignment =
            harness.engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request(&request)).unwrap();
        haiku += u32::from(assignment.arm.arm == "haiku");
    }
    let share = f64::from(haiku) / 10_000.0;
    assert!((share - weight_of("haiku")).abs() < 0.02, "{share} vs {}", weight_of("haiku"));
}

#[test]
fn records_without_cost_are_counted_but_not_averaged() {
    let harness = Harness::new();
    harness.engine.create(cheaper_model_spec("exp-unknown-cost")).unwrap();
    harness.engine.start("exp-unknown-cost").unwrap();
    let mut unknown = record(1, "exp-unknown-cost", "control", 0, 250, true);
    unknown.cost = None;
    unknown.feedback.push(Feedback {
        metric: "thumbs_up".into(),
        value: FeedbackValue::Bool(true),
        ts_ms: 0,
    });
    assert!(harness.engine.observe(&unknown));
    assert!(harness.engine.observe(&record(
        2,
        "exp-unknown-cost",
        "control",
        3_000_000,
        250,
        false
    )));
    let mut foreign = record(3, "another-experiment", "control", 1, 1, true);
    assert!(!harness.engine.observe(&foreign));
    foreign.experiment = None;
    assert!(!harness.engine.observe(&foreign));
    assert!(!harness.engine.observe(&record(4, "exp-unknown-cost", "no-such-arm", 1, 1, true)));
    let control = harness.engine.show("exp-unknown-cost").unwrap().arms[0].clone();
    assert_eq!((control.requests, control.errors, control.cost_unknown), (2, 1, 1));
    assert_eq!(control.cost, Money(3_000_000));
    assert_eq!(control.moments("cost_usd").unwrap().count, 1);
    assert_eq!(control.moments("error_rate").unwrap().mean, 0.5);
    assert_eq!(control.moments("quality:thumbs_up").unwrap().count, 1, "feedback on the record");
    assert_eq!(control.feedback_events, 1);
}

#[test]
fn a_slower_treatment_breaches_the_p95_latency_guardrail() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-p95");
    // Baseline p95 of 800 ms; at most 2 % more requests may be slower than that.
    spec.guardrails = vec![Guardrail::latency_p95(800.0, 0.02)];
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-p95").unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for index in 0..2_000u64 {
        // Control: 5 % of requests above 800 ms. Treatment: 15 %.
        let control_ms = if rng.r#gen::<f64>() < 0.05 { 1_200 } else { 400 };
        let treatment_ms = if rng.r#gen::<f64>() < 0.15 { 1_200 } else { 400 };
        harness.engine.observe(&record(
            index * 2,
            "exp-p95",
            "control",
            5_000_000,
            control_ms,
            true,
        ));
        harness.engine.observe(&record(
            index * 2 + 1,
            "exp-p95",
            "treatment",
            3_000_000,
            treatment_ms,
            true,
        ));
    }
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(1)).unwrap();
    assert_eq!(
        decisions[0].action,
        Action::StopArm {
            arm: "treatment".into(),
            cause: StopCause::Guardrail { metric: "slow_share_over_800ms".into() }
        },
        "{decisions:#?}"
    );
}
