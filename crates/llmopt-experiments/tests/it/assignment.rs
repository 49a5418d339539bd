//! Assignment: uniform and independent buckets, stable arms, splits, scope and overlaps.

use llmopt_core::Tags;
use llmopt_experiments::{
    ArmSpec, BUCKETS, Error, PolicyChange, Scope, ScopeInputs, Unit, UnitIds, bucket,
};

use crate::support::{Harness, cheaper_model_spec, inputs};

/// Pearson's χ² statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

#[test]
fn buckets_are_uniform_for_sequential_and_uuid_like_ids() {
    for (label, make_id) in [
        ("sequential", Box::new(|i: u64| format!("req-{i}")) as Box<dyn Fn(u64) -> String>),
        (
            "uuid-like",
            Box::new(|i: u64| format!("019a4f3e-{:04x}-7d1e-9f00-{:012x}", i % 65_536, i)),
        ),
    ] {
        let mut counts = vec![0u64; 100];
        for index in 0..100_000 {
            let b = bucket("exp-uniform", &make_id(index));
            assert!(b < BUCKETS);
            counts[(b / 100) as usize] += 1;
        }
        // 99 degrees of freedom: the 99.9 % quantile of χ² is 148.2.
        let statistic = chi_square(&counts);
        assert!(statistic < 148.2, "{label}: χ² = {statistic}");
    }
}

#[test]
fn two_experiments_split_the_same_units_independently() {
    let mut both = [[0u64; 2]; 2];
    for index in 0..40_000 {
        let unit = format!("user-{index}");
        let first = usize::from(bucket("exp-first", &unit) >= 5_000);
        let second = usize::from(bucket("exp-second", &unit) >= 5_000);
        both[first][second] += 1;
    }
    // Each cell should hold a quarter: χ² with 3 degrees of freedom, 99.9 % quantile 16.27.
    let statistic = chi_square(&[both[0][0], both[0][1], both[1][0], both[1][1]]);
    assert!(statistic < 16.27, "χ² = {statistic}, cells {both:?}");
}

#[test]
fn the_split_follows_weights_and_coverage() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-split");
    spec.arms[0].weight = 9.0;
    spec.arms[1].weight = 1.0;
    spec.coverage = 0.5;
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-split").unwrap();
    let tags = Tags::new();
    let (mut control, mut treatment, mut outside) = (0u32, 0u32, 0u32);
    for index in 0..20_000 {
        let request = format!("req-{index}");
        match harness.engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request(&request)) {
            Some(assignment) if assignment.arm.arm == "control" => {
                assert!(assignment.bucket < 4_500);
                assert_eq!(assignment.change, PolicyChange::default());
                control += 1;
            }
            Some(assignment) => {
                assert!((4_500..5_000).contains(&assignment.bucket));
                assert_eq!(assignment.change.model.as_deref(), Some("gpt-4o-mini"));
                treatment += 1;
            }
            None => outside += 1,
        }
    }
    let share = |count: u32| f64::from(count) / 20_000.0;
    assert!((share(control) - 0.45).abs() < 0.015, "control {}", share(control));
    assert!((share(treatment) - 0.05).abs() < 0.008, "treatment {}", share(treatment));
    assert!((share(outside) - 0.50).abs() < 0.015, "outside {}", share(outside));
}

#[test]
fn a_user_keeps_their_arm_across_requests_and_engines() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-users");
    spec.unit = Unit::User;
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-users").unwrap();
    let other_engine = harness.reopen();
    let tags = Tags::new();
    for user in 0..200 {
        let user = format!("user-{user}");
        let first = harness
            .engine
            .assign(
                &inputs("gpt-4o", &tags),
                &UnitIds { request: "r-1", user: Some(&user), session: None },
            )
            .unwrap();
        let later = other_engine
            .assign(
                &inputs("gpt-4o", &tags),
                &UnitIds { request: "r-2", user: Some(&user), session: None },
            )
            .unwrap();
        assert_eq!(first, later);
        assert_eq!(first.bucket, bucket("exp-users", &user));
    }
    // Without a user id the request is not eligible, rather than hashed under a placeholder.
    assert!(harness.engine.assign(&inputs("gpt-4o", &tags), &UnitIds::request("r-3")).is_none());
}

#[test]
fn scope_limits_eligibility() {
    let harness = Harness::new();
    let mut spec = cheaper_model_spec("exp-scoped");
    spec.scope = Scope {
        model: Some("gpt-4o".into()),
        tag: Some(("feature".into(), "search".into())),
        ..Scope::default()
    };
    harness.engine.create(spec).unwrap();
    harness.engine.start("exp-scoped").unwrap();
    let mut search = Tags::new();
    search.insert("feature".into(), "search".into());
    let mut chat = Tags::new();
    chat.insert("feature".into(), "chat".into());
    let units = UnitIds::request("r");
    assert!(harness.engine.assign(&inputs("gpt-4o", &search), &units).is_some());
    assert!(harness.engine.assign(&inputs("gpt-4o", &chat), &units).is_none());
    assert!(harness.engine.assign(&inputs("claude-sonnet-4-5", &search), &units).is_none());
    let tenant_inputs = ScopeInputs { tenant: Some("acme"), ..inputs("gpt-4o", &search) };
    assert!(harness.engine.assign(&tenant_inputs, &units).is_some());
}

#[test]
fn overlapping_experiments_are_refused_until_the_first_ends() {
    let harness = Harness::new();
    let engine = &harness.engine;
    let mut on_4o = cheaper_model_spec("exp-4o");
    on_4o.scope.model = Some("gpt-4o".into());
    let everything = cheaper_model_spec("exp-everything");
    let mut on_claude = cheaper_model_spec("exp-claude");
    on_claude.scope.model = Some("claude-sonnet-4-5".into());
    on_claude.arms[1] = ArmSpec {
        name: "haiku".into(),
        change: PolicyChange { model: Some("claude-haiku-4-5".into()), ..PolicyChange::default() },
        weight: 1.0,
    };
    for spec in [on_4o, everything, on_claude] {
        engine.create(spec).unwrap();
    }
    engine.start("exp-4o").unwrap();
    assert!(matches!(
        engine.start("exp-everything"),
        Err(Error::Overlap { ref other, .. }) if other == "exp-4o"
    ));
    engine.start("exp-claude").unwrap();
    let tags = Tags::new();
    let claude =
        engine.assign(&inputs("claude-sonnet-4-5", &tags), &UnitIds::request("r")).unwrap();
    assert_eq!(claude.arm.experiment_id, "exp-claude");
    // A paused experiment still holds its scope.
    engine.pause("exp-4o").unwrap();
    assert!(matches!(engine.start("exp-everything"), Err(Error::Overlap { .. })));
    engine.stop("exp-4o", "done").unwrap();
    engine.stop("exp-claude", "done").unwrap();
    engine.start("exp-everything").unwrap();
}
