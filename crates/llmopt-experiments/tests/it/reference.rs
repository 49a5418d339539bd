//! Numbers checked against `tests/data/reference.json`, written by the independent Python
//! implementation in `scripts/reference/experiments_reference.py` (standard library only; its
//! Welch p-values were also cross-checked against `scipy.stats.ttest_ind`), and the bounded
//! cost sequence against `tests/data/bounded_reference.json` (the `confseq` package, through
//! `tests/data/bounded_reference.py`).

use serde_json::Value;

use llmopt_core::Moments;
use llmopt_experiments::{
    ValueKind,
    assignment::fnv1a_32,
    bucket,
    stats::{self, ArmSummary},
};

fn reference() -> Value {
    serde_json::from_str(include_str!("../data/reference.json")).expect("reference fixture")
}

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= relative * expected.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn fnv1a_and_bucket_test_vectors_match_the_python_implementation() {
    let fixture = reference();
    for vector in fixture["fnv1a_32"].as_array().unwrap() {
        let text = vector[0].as_str().unwrap();
        assert_eq!(
            u64::from(fnv1a_32(&[text.as_bytes()])),
            vector[1].as_u64().unwrap(),
            "{text:?}"
        );
    }
    let vectors = fixture["buckets"].as_array().unwrap();
    assert_eq!(vectors.len(), 32);
    for vector in vectors {
        let (experiment, unit) = (vector[0].as_str().unwrap(), vector[1].as_str().unwrap());
        assert_eq!(
            u64::from(bucket(experiment, unit)),
            vector[2].as_u64().unwrap(),
            "bucket({experiment:?}, {unit:?})"
        );
    }
}

#[test]
fn a_few_bucket_vectors_are_pinned_in_the_source_too() {
    // Copied from the fixture, so a regenerated fixture cannot silently move assignments.
    assert_eq!(bucket("exp-cheaper-model", "user-42"), 8_297);
    assert_eq!(bucket("exp-1", "req-000001"), 4_171);
    assert_eq!(bucket("cap-max-tokens-2026", ""), 577);
}

#[test]
fn confidence_sequence_half_widths_match() {
    for case in reference()["half_widths"].as_array().unwrap() {
        let alpha = case["alpha"].as_f64().unwrap();
        let rho = stats::mixture_rho(alpha, case["tuning"].as_f64().unwrap());
        let half = stats::confidence_sequence_half_width(
            case["estimate_variance"].as_f64().unwrap(),
            case["n"].as_f64().unwrap(),
            alpha,
            rho,
        );
        let expected = case["half_width"].as_f64().unwrap();
        assert!(close(half, expected, 1e-12), "{half} vs {expected} for {case}");
    }
}

fn moments_of(values: &Value) -> Moments {
    values.as_array().expect("array").iter().map(|v| v.as_f64().expect("number")).collect()
}

#[test]
fn sequential_interval_on_real_costs_matches() {
    let fixture = reference();
    let costs = &fixture["azure_costs"];
    let control = ArmSummary::from_moments(&moments_of(&costs["arm_a"]));
    let treatment = ArmSummary::from_moments(&moments_of(&costs["arm_b"]));
    let expected = &costs["sequential"];
    let alpha = expected["alpha"].as_f64().unwrap();
    let rho = stats::mixture_rho(alpha, expected["tuning"].as_f64().unwrap());
    let interval =
        stats::sequential_difference(&control, &treatment, ValueKind::Continuous, alpha, rho)
            .unwrap();
    let half = (interval.upper - interval.lower) / 2.0;
    assert!(close(interval.estimate, expected["estimate"].as_f64().unwrap(), 1e-9));
    assert!(close(half, expected["half_width"].as_f64().unwrap(), 1e-9));
    // Two halves of one trace: no difference, and the interval says so.
    assert!(!interval.excludes_zero());
}

#[test]
fn welch_matches_including_on_real_costs() {
    for case in reference()["welch"].as_array().unwrap() {
        let a = ArmSummary::from_moments(&moments_of(&case["a"]));
        let b = ArmSummary::from_moments(&moments_of(&case["b"]));
        let test = stats::welch_t_test(&a, &b).unwrap();
        assert!(close(test.t, case["t"].as_f64().unwrap(), 1e-9), "t {}", test.t);
        assert!(close(test.degrees_of_freedom, case["df"].as_f64().unwrap(), 1e-9));
        assert!(close(test.p_value, case["p"].as_f64().unwrap(), 1e-6), "p {}", test.p_value);
        assert_eq!(stats::welch_rejects(&a, &b, 0.05), case["p"].as_f64().unwrap() < 0.05);
    }
}

/// The bounded cost sequence, fed record by record through `Experiment::add_record` (design,
/// bets, sums) and read through the decision code, against `tests/data/bounded_reference.json`:
/// its bets and sequences come from the `confseq` package, its design from the script's own
/// code (`tests/data/bounded_reference.py`).
#[test]
fn bounded_cost_sequence_matches_confseq() {
    use llmopt_core::{Money, RequestRecord};
    use llmopt_experiments::{
        ArmSpec, Experiment, ExperimentSpec, ExperimentStatus, Metric, PolicyChange, decision,
        stats::bounded::{FALLBACK_BOUND_FACTOR, MAX_BET},
    };

    let fixture: Value =
        serde_json::from_str(include_str!("../data/bounded_reference.json")).expect("fixture");
    assert_eq!(fixture["max_bet"].as_f64(), Some(MAX_BET));
    assert_eq!(fixture["fallback_bound_factor"].as_f64(), Some(FALLBACK_BOUND_FACTOR));
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut spec = ExperimentSpec::ab(
            "reference",
            PolicyChange::default(),
            PolicyChange { model: Some("cheaper".into()), ..PolicyChange::default() },
            Metric::CostUsd,
            i64::MAX / 2,
        );
        let weights: Vec<f64> =
            case["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
        while spec.arms.len() < weights.len() {
            let arm = format!("treatment-{}", spec.arms.len());
            spec.arms.push(ArmSpec { name: arm, change: PolicyChange::default(), weight: 1.0 });
        }
        for (arm, weight) in spec.arms.iter_mut().zip(&weights) {
            arm.weight = *weight;
        }
        spec.cost_bound_usd = case["cost_bound_usd"].as_f64();
        spec.alpha = case["alpha"].as_f64().unwrap();
        spec.tuning_samples = case["tuning_samples"].as_u64().unwrap();
        spec.validate().unwrap();
        let tracked = spec.tracked_metrics();
        let mut experiment = Experiment::new(spec, 0);
        experiment.status = ExperimentStatus::Running;
        let checkpoints = case["checkpoints"].as_array().unwrap();
        let mut record = RequestRecord::new("reference", 0, "openai", "model");
        for (index, row) in case["records"].as_array().unwrap().iter().enumerate() {
            let arm = row[0].as_u64().unwrap() as usize;
            record.cost = Some(Money(i128::from(row[1].as_i64().unwrap())));
            experiment.add_record(arm, &record, &tracked);
            for checkpoint in checkpoints.iter().filter(|c| c["records"] == index + 1) {
                let arm = checkpoint["arm"].as_u64().unwrap() as usize;
                let interval = decision::compare_primary(&experiment, arm).difference.unwrap();
                for (actual, key) in [
                    (interval.estimate, "estimate"),
                    (interval.lower, "lower"),
                    (interval.upper, "upper"),
                ] {
                    let expected = checkpoint[key].as_f64().unwrap();
                    assert!(
                        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-6),
                        "{name}, {checkpoint}: {key} {actual} vs {expected}"
                    );
                }
                let clipped = experiment.arms[arm].cost_sequence.unwrap().clipped;
                assert_eq!(Some(clipped), checkpoint["clipped"].as_u64(), "{name}, {checkpoint}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 56);
}
