//! Cost experiments with incomplete records (streams cut upstream or abandoned by the client,
//! priced at the lower bound of the usage seen) and unknown costs: how they are counted, and the
//! inexact-cost guardrail that keeps the slower arm from looking cheaper because its streams
//! are cut more often.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use llmopt_core::Money;
use llmopt_experiments::{
    Action, ExperimentSpec, Guardrail, GuardrailVerdict, Metric, PolicyChange, StopCause, Verdict,
};

use crate::support::{ClockExt, HOUR_MS, Harness, record};

fn cost_spec(id: &str, guardrails: Vec<Guardrail>) -> ExperimentSpec {
    let mut spec = ExperimentSpec::ab(
        id,
        PolicyChange::default(),
        PolicyChange { model: Some("slow-model".into()), ..PolicyChange::default() },
        Metric::CostUsd,
        24 * HOUR_MS,
    );
    spec.guardrails = guardrails;
    spec
}

/// Feeds `per_arm` records per arm. Each arm: (name, true mean cost in USD, share of its
/// streams cut part way). A cut record keeps a fifth of its true cost (what its usage had
/// reported) and is marked incomplete.
fn feed(harness: &Harness, id: &str, arms: &[(&str, f64, f64)], per_arm: u64, seed: u64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let sigma: f64 = 1.0;
    for round in 0..per_arm {
        for (arm_index, &(arm, mean_usd, cut_share)) in arms.iter().enumerate() {
            let distribution =
                LogNormal::new(mean_usd.ln() - sigma * sigma / 2.0, sigma).expect("lognormal");
            let true_cost_usd: f64 = distribution.sample(&mut rng);
            let cut = rng.r#gen::<f64>() < cut_share;
            let seen_usd = if cut { true_cost_usd / 5.0 } else { true_cost_usd };
            let index = round * arms.len() as u64 + arm_index as u64;
            let mut request = record(index, id, arm, (seen_usd * 1e12) as i128, 300, !cut);
            request.incomplete = cut;
            assert!(harness.engine.observe(&request));
        }
    }
}

#[test]
fn an_incomplete_record_counts_at_its_lower_bound_and_as_inexact() {
    let harness = Harness::new();
    let spec = cost_spec("exp-count", vec![Guardrail::inexact_cost_share(0.01)]);
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-count").unwrap();
    let complete = record(1, "exp-count", "control", 4_000_000, 300, true);
    let mut cut = record(2, "exp-count", "control", 1_000_000, 300, false);
    cut.incomplete = true;
    let mut unknown = record(3, "exp-count", "control", 0, 300, false);
    unknown.cost = None;
    unknown.incomplete = true;
    for request in [&complete, &cut, &unknown] {
        assert!(harness.engine.observe(request));
    }
    let control = harness.engine.show("exp-count").unwrap().arms[0].clone();
    assert_eq!(control.cost, Money(5_000_000), "the lower bound is counted");
    assert_eq!((control.cost_incomplete, control.cost_unknown), (1, 1));
    let cost = control.moments("cost_usd").unwrap();
    assert_eq!(cost.count, 2, "unknown cost is left out, never zero");
    assert!((cost.mean - 2.5e-6).abs() < 1e-15, "{}", cost.mean);
    let inexact = control.moments("inexact_cost_share").unwrap();
    assert_eq!(inexact.count, 3);
    assert!((inexact.mean - 2.0 / 3.0).abs() < 1e-12);
}

/// The same true cost in both arms; the slower treatment has a quarter of its streams cut
/// (clients give up), the control one in a hundred. Counted at their lower bounds, the
/// treatment looks 20 % cheaper.
const BIASED: [(&str, f64, f64); 2] = [("control", 0.005, 0.01), ("treatment", 0.005, 0.25)];

#[test]
fn without_the_guardrail_lower_bounds_alone_would_adopt_a_slower_arm_that_is_not_cheaper() {
    // What the guardrail is for: the cost comparison alone is fooled.
    let harness = Harness::new();
    harness.engine.create(cost_spec("exp-fooled", Vec::new())).unwrap();
    harness.engine.start("exp-fooled").unwrap();
    feed(&harness, "exp-fooled", &BIASED, 3_000, 7);
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(HOUR_MS)).unwrap();
    let last = decisions.last().unwrap();
    assert_eq!(last.action, Action::Adopt { arm: "treatment".into() }, "{last:#?}");
}

#[test]
fn the_inexact_cost_guardrail_stops_the_arm_whose_costs_are_hidden_by_cuts() {
    let harness = Harness::new();
    let spec = cost_spec("exp-guarded", vec![Guardrail::inexact_cost_share(0.01)]);
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-guarded").unwrap();
    feed(&harness, "exp-guarded", &BIASED, 3_000, 7);
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(HOUR_MS)).unwrap();
    assert_eq!(
        decisions[0].action,
        Action::StopArm {
            arm: "treatment".into(),
            cause: StopCause::Guardrail { metric: "inexact_cost_share".into() }
        },
        "{decisions:#?}"
    );
    assert_eq!(decisions[0].primary[0].verdict, Verdict::Better, "the biased comparison");
    assert_eq!(decisions.last().unwrap().action, Action::Reject);
    let arms = harness.engine.show("exp-guarded").unwrap().arms;
    assert!(arms[1].cost_incomplete > 600, "{}", arms[1].cost_incomplete);
}

#[test]
fn a_truly_cheaper_arm_with_as_many_cuts_as_the_control_is_still_adopted() {
    let harness = Harness::new();
    let spec = cost_spec("exp-honest", vec![Guardrail::inexact_cost_share(0.01)]);
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-honest").unwrap();
    feed(
        &harness,
        "exp-honest",
        &[("control", 0.005, 0.005), ("treatment", 0.0035, 0.005)],
        5_000,
        11,
    );
    let decisions = harness.engine.evaluate(harness.clock.now_ms_plus(HOUR_MS)).unwrap();
    let last = decisions.last().unwrap();
    assert_eq!(last.action, Action::Adopt { arm: "treatment".into() }, "{last:#?}");
    let check = last.guardrails.iter().find(|g| g.metric == "inexact_cost_share").unwrap();
    assert_eq!(check.verdict, GuardrailVerdict::NonInferior);
}
