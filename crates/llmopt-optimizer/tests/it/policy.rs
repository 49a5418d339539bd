use std::sync::Arc;

use llmopt_core::{Endpoint, MemoryPolicyStore, PolicyStore, RequestRecord, Tags};
use llmopt_optimizer::{
    Action, FeatureFlag, FlagConditions, LivePolicy, Policy, PolicyError, RequestContext, Rule,
    Scope, policy::rollout_bucket,
};

fn request<'a>(
    model: &'a str,
    tenant: Option<&'a str>,
    tags: &'a Tags,
    unit: &'a str,
) -> RequestContext<'a> {
    RequestContext {
        model,
        tenant,
        tags,
        endpoint: Endpoint::ChatCompletions,
        unit_id: unit,
        environment: "production",
        workload: None,
    }
}

fn rule(id: &str, scope: Scope, action: Action, flag: Option<&str>) -> Rule {
    Rule { id: id.into(), scope, action, flag: flag.map(str::to_owned), origin: "test".into() }
}

fn flag(percent: f64) -> FeatureFlag {
    FeatureFlag { enabled: true, rollout_percent: percent, conditions: FlagConditions::default() }
}

#[test]
fn first_matching_rule_wins_per_action_kind() {
    let policy = Policy {
        rules: vec![
            rule(
                "acme-mini",
                Scope {
                    model: Some("gpt-4o".into()),
                    tenant: Some("acme".into()),
                    ..Default::default()
                },
                Action::RouteModel { model: "gpt-4o-mini".into(), provider: None },
                None,
            ),
            rule(
                "all-4o-to-41",
                Scope { model: Some("gpt-4o*".into()), ..Default::default() },
                Action::RouteModel { model: "gpt-4.1".into(), provider: Some("openai".into()) },
                None,
            ),
            rule("cap", Scope::default(), Action::MaxTokensCap { max_tokens: 512 }, None),
            rule("cap-2", Scope::default(), Action::MaxTokensCap { max_tokens: 64 }, None),
        ],
        ..Policy::default()
    };
    policy.validate().unwrap();
    let tags = Tags::new();
    let acme = policy.decide(&request("gpt-4o", Some("acme"), &tags, "u1"));
    assert_eq!(acme.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(acme.provider, None);
    assert_eq!(acme.max_tokens_cap, Some(512));
    assert_eq!(acme.applied_rules, ["acme-mini", "cap"]);
    let other = policy.decide(&request("gpt-4o-2024-08-06", Some("globex"), &tags, "u1"));
    assert_eq!(other.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(other.provider.as_deref(), Some("openai"));
    let claude = policy.decide(&request("claude-haiku-4-5", None, &tags, "u1"));
    assert_eq!(claude.model, None);
    assert_eq!(claude.applied_rules, ["cap"]);
}

#[test]
fn rollout_is_deterministic_and_proportional() {
    let policy = Policy {
        rules: vec![rule(
            "cache",
            Scope::default(),
            Action::ResponseCache { enabled: true, ttl_seconds: Some(60), allow_sampling: false },
            Some("cache-ramp"),
        )],
        flags: [("cache-ramp".to_owned(), flag(25.0))].into(),
        ..Policy::default()
    };
    let tags = Tags::new();
    let units: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
    let admitted = units
        .iter()
        .filter(|u| policy.decide(&request("m", None, &tags, u)).cache.is_some())
        .count();
    let share = admitted as f64 / units.len() as f64;
    // Binomial(20 000, 0.25): sd ≈ 0.3 %, so ±1.5 % is five standard deviations.
    assert!((share - 0.25).abs() < 0.015, "share {share}");
    // The same unit always gets the same answer, and widening the ramp keeps those already in.
    let wider = Policy { flags: [("cache-ramp".to_owned(), flag(50.0))].into(), ..policy.clone() };
    for unit in &units[..2_000] {
        let before = policy.decide(&request("m", None, &tags, unit)).cache.is_some();
        assert_eq!(before, policy.decide(&request("m", None, &tags, unit)).cache.is_some());
        if before {
            assert!(wider.decide(&request("m", None, &tags, unit)).cache.is_some(), "{unit}");
        }
    }
}

#[test]
fn rollout_buckets_are_pinned() {
    // GrowthBook hash v2 with the flag as seed, computed independently by
    // scripts/reference/experiments_reference.py (`bucket`). Changing these reshuffles rollouts.
    assert_eq!(rollout_bucket("cache-ramp", "user-1"), 5686);
    assert_eq!(rollout_bucket("route-mini", "session-42"), 8202);
    assert_eq!(rollout_bucket("a", "b"), 6912);
}

#[test]
fn conditions_and_switches() {
    let mut staging_only = flag(100.0);
    staging_only.conditions.environments = vec!["staging".into()];
    let mut batch_tag = flag(100.0);
    batch_tag.conditions.tags = vec![("interactive".into(), "false".into())];
    let mut off = flag(100.0);
    off.enabled = false;
    let policy = Policy {
        rules: vec![
            rule("t1", Scope::default(), Action::Timeout { total_ms: 5_000 }, Some("staging")),
            rule("h1", Scope::default(), Action::Hedge { after_ms: 800 }, Some("batch")),
            rule("c1", Scope::default(), Action::MaxTokensCap { max_tokens: 100 }, Some("off")),
        ],
        flags: [("staging".into(), staging_only), ("batch".into(), batch_tag), ("off".into(), off)]
            .into(),
        ..Policy::default()
    };
    policy.validate().unwrap();
    let mut tags = Tags::new();
    tags.insert("interactive".into(), "false".into());
    let decision = policy.decide(&request("m", None, &tags, "u"));
    assert_eq!(decision.timeout_ms, None, "production is not staging");
    assert_eq!(decision.hedge_after_ms, Some(800));
    assert_eq!(decision.max_tokens_cap, None, "a switched-off flag turns its rule off at once");
    let mut staging = request("m", None, &tags, "u");
    staging.environment = "staging";
    assert_eq!(policy.decide(&staging).timeout_ms, Some(5_000));
}

#[test]
fn invalid_policies_are_refused_with_the_reason() {
    let unknown_flag = Policy {
        rules: vec![rule("r", Scope::default(), Action::Timeout { total_ms: 1 }, Some("ghost"))],
        ..Policy::default()
    };
    assert!(matches!(unknown_flag.validate(), Err(PolicyError::Invalid(m)) if m.contains("ghost")));
    let bad_rollout = Policy { flags: [("f".into(), flag(f64::NAN))].into(), ..Policy::default() };
    assert!(bad_rollout.validate().is_err());
    let over = Policy { flags: [("f".into(), flag(101.0))].into(), ..Policy::default() };
    assert!(over.validate().is_err());
    let duplicate = Policy {
        rules: vec![
            rule("r", Scope::default(), Action::Timeout { total_ms: 1 }, None),
            rule("r", Scope::default(), Action::Hedge { after_ms: 1 }, None),
        ],
        ..Policy::default()
    };
    assert!(duplicate.validate().is_err());
    let zero_cap = Policy {
        rules: vec![rule("r", Scope::default(), Action::MaxTokensCap { max_tokens: 0 }, None)],
        ..Policy::default()
    };
    assert!(zero_cap.validate().is_err());
    // Unknown keys in a policy document are errors, not silently ignored.
    let text = r#"{"rules": [], "flags": {}, "colour": 1}"#;
    assert!(serde_json::from_str::<Policy>(text).is_err());
}

#[test]
fn live_policy_persists_and_survives_a_restart() {
    let store: Arc<dyn PolicyStore> = Arc::new(MemoryPolicyStore::new());
    let live = LivePolicy::load(store.clone(), Policy::default()).unwrap();
    assert_eq!(live.current().version, 0);
    let tags = Tags::new();
    assert_eq!(live.decide(&request("gpt-4o", None, &tags, "u")).model, None);
    let version = live
        .update("adopt exp-1", 1_000, |policy| {
            policy.rules.push(rule(
                "exp-1",
                Scope { model: Some("gpt-4o".into()), ..Default::default() },
                Action::RouteModel { model: "gpt-4o-mini".into(), provider: None },
                None,
            ));
        })
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        live.decide(&request("gpt-4o", None, &tags, "u")).model.as_deref(),
        Some("gpt-4o-mini")
    );
    // A failed update leaves the policy in force untouched.
    let refused = live.update("bad", 2_000, |policy| {
        policy.rules.push(rule("x", Scope::default(), Action::Timeout { total_ms: 0 }, None))
    });
    assert!(refused.is_err());
    assert_eq!(live.current().version, 1);
    drop(live);

    let restarted = LivePolicy::load(store.clone(), Policy::default()).unwrap();
    assert_eq!(restarted.current().version, 1);
    assert_eq!(
        restarted.decide(&request("gpt-4o", None, &tags, "u")).model.as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(store.history(10).unwrap()[0].reason, "adopt exp-1");
}

#[test]
fn readers_see_whole_versions_while_a_writer_swaps() {
    let store: Arc<dyn PolicyStore> = Arc::new(MemoryPolicyStore::new());
    let live = Arc::new(LivePolicy::load(store, Policy::default()).unwrap());
    let writer = {
        let live = live.clone();
        std::thread::spawn(move || {
            for i in 1..=200u32 {
                let policy = Policy {
                    rules: vec![
                        rule("a", Scope::default(), Action::MaxTokensCap { max_tokens: i }, None),
                        rule(
                            "b",
                            Scope::default(),
                            Action::Timeout { total_ms: u64::from(i) },
                            None,
                        ),
                    ],
                    ..Policy::default()
                };
                live.replace(policy, "ramp", i64::from(i)).unwrap();
            }
        })
    };
    let tags = Tags::new();
    for _ in 0..2_000 {
        let decision = live.decide(&request("m", None, &tags, "u"));
        if let (Some(cap), Some(timeout)) = (decision.max_tokens_cap, decision.timeout_ms) {
            assert_eq!(u64::from(cap), timeout, "a reader never sees half of a swap");
        }
    }
    writer.join().unwrap();
    assert_eq!(live.current().version, 200);
}

#[test]
fn a_scope_matches_a_record_as_it_matched_its_request() {
    let mut tags = Tags::new();
    tags.insert("feature".into(), "search".into());
    let mut record =
        RequestRecord::new("r1", 1_700_000_000_000, "openai", "claude-sonnet-4-5-20250929");
    record.tenant = Some("acme".into());
    record.tags = tags.clone();
    let live = request("claude-sonnet-4-5-20250929", Some("acme"), &tags, "u");
    for (model, expected) in [
        ("claude-*-4-5*", true),
        ("claude-*-4-5", false),
        ("claude-sonnet-4-5-20250929", true),
        ("*", true),
        ("gpt-4o*", false),
    ] {
        let scope =
            Scope { model: Some(model.into()), tenant: Some("acme".into()), ..Scope::default() };
        assert_eq!(scope.matches(&live), expected, "{model}");
        assert_eq!(scope.matches_record(&record), expected, "{model}");
    }
}

#[test]
fn a_replica_takes_in_a_version_another_saved_to_the_shared_store() {
    let store: Arc<dyn PolicyStore> = Arc::new(MemoryPolicyStore::new());
    let leader = LivePolicy::load(store.clone(), Policy::default()).unwrap();
    let follower = LivePolicy::load(store.clone(), Policy::default()).unwrap();
    assert_eq!(follower.refresh().unwrap(), None, "nothing saved yet");
    leader
        .update("adopt exp-1", 1_000, |policy| {
            policy.rules.push(rule(
                "exp-1",
                Scope { model: Some("gpt-4o".into()), ..Default::default() },
                Action::RouteModel { model: "gpt-4o-mini".into(), provider: None },
                None,
            ));
        })
        .unwrap();
    let tags = Tags::new();
    assert_eq!(follower.decide(&request("gpt-4o", None, &tags, "u")).model, None, "not yet");
    assert_eq!(follower.refresh().unwrap(), Some(1));
    assert_eq!(
        follower.decide(&request("gpt-4o", None, &tags, "u")).model.as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(follower.refresh().unwrap(), None, "already current");
    // The follower's own next write builds on the version it took in.
    assert_eq!(follower.update("flag", 2_000, |_| {}).unwrap(), 2);
    assert_eq!(leader.refresh().unwrap(), Some(2));
}
