//! A short demo run end to end on real sockets: the loop's decisions, not its exact numbers.

use llm_auto_optimizer::demo::{DemoArgs, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_adopts_measured_savings_and_measures_routing_on_held_out_prompts() {
    let args = DemoArgs {
        requests: 12_000,
        baseline: 800,
        speed: 20_000.0,
        concurrency: 16,
        seed: 11,
        cycle_every: 1_500,
        data_dir: None,
        // 540 prompts of 9 subjects (360 for optimization, 180 held out): enough repeats for
        // the cache to prove itself in a short run.
        prompts: Some(540),
        progress: false,
        tags: false,
        drift: true,
        judge: false,
    };
    let mut text = Vec::new();
    let report = run(&args, &mut text).await.expect("the demo runs");
    let text = String::from_utf8(text).expect("utf-8 report");
    assert!(text.contains("routing, measured on 180 held-out prompts"), "{text}");

    // Every held-out prompt was sent once in each measured phase and answered.
    assert_eq!(report.baseline.requests, 180, "the held-out set, each prompt once");
    assert_eq!(report.after.requests, 180);
    assert_eq!((report.baseline.errors, report.after.errors), (0, 0));
    // The baseline has the adopted changes switched off: everything is served as asked.
    assert_eq!(report.baseline.weak_share, 0.0);
    assert_eq!(report.baseline.cache_hit_share, 0.0);
    // Each prompt once, cold cache: the measured phases show routing alone.
    assert_eq!(report.after.cache_hit_share, 0.0);
    assert!(!report.proposals.is_empty(), "the first cycle proposes");

    // Tag-free: workloads were discovered from the prompts' content.
    assert!(!report.routing.tags_used && report.routing.held_out);
    assert!(report.workloads_discovered >= 2, "{text}");

    // The response cache is proven and adopted on the repeated training traffic.
    let cache = report
        .adopted
        .iter()
        .find(|adoption| adoption.change.response_cache == Some(true))
        .unwrap_or_else(|| panic!("the response cache is adopted:\n{text}"));
    assert!(cache.treatment_cost_per_request < cache.control_cost_per_request);
    assert!(report.optimize_phase.cache_hit_share > 0.1);

    // Routing is only ever tried as experiments per discovered workload, and never adopted
    // beyond the quality budget.
    assert!(report.experiments.iter().any(|e| e.name.contains("discovered workload")), "{text}");
    assert!(report.quality_budget_used <= 0.05 + 1e-12);
    for adoption in report.adopted.iter().filter(|a| a.change.model.is_some()) {
        assert!(adoption.quality_drop.is_some(), "routing adopted without a quality measurement");
        assert!(adoption.scope.workload.is_some(), "routing per discovered workload");
    }
    // Intervals are computed from the requests and contain their estimate.
    let routing = report.routing;
    for (estimate, [low, high]) in [
        (routing.strong_calls_avoided, routing.ci95.strong_calls_avoided),
        (routing.quality_vs_strong, routing.ci95.quality_vs_strong),
        (routing.cost_saving, routing.ci95.cost_saving),
    ] {
        assert!(low <= estimate && estimate <= high, "{low} {estimate} {high}");
    }
    assert!(report.quality_ratio > 0.85, "quality ratio {}", report.quality_ratio);

    // Every strategy has its line; advice is never tested.
    assert_eq!(report.strategies.len(), 6, "{text}");
    for line in &report.strategies {
        assert!(line.tested + line.advice_only <= line.proposed.max(line.tested), "{line:?}");
        assert!(line.rolled_back <= line.adopted);
    }
    // Prompt caching acts on the few-shot stream's shared system prompts: tested, adopted and
    // measured against its holdout on exact cost.
    assert!(report.few_shot_requests > 1_000, "{}", report.few_shot_requests);
    let prompt_cache = report
        .adopted
        .iter()
        .find(|a| a.change.prompt_cache.is_some())
        .unwrap_or_else(|| panic!("prompt caching is adopted:\n{text}"));
    assert!(prompt_cache.treatment_cost_per_request < prompt_cache.control_cost_per_request);
    // Every measured saving is against a holdout, and its interval holds its estimate.
    let mut measured = 0;
    for adoption in &report.adopted {
        let Some(m) = &adoption.measurement else { continue };
        measured += 1;
        assert!(m.held_out_requests > 0 && m.applied_requests > 0);
        if let Some((low, high)) = m.saving_interval_usd_per_day {
            assert!(low <= m.saving_usd_per_day && m.saving_usd_per_day <= high, "{m:?}");
        }
    }
    assert!(measured >= 1, "{text}");
    assert!(text.contains("measured against its 20 % holdout"), "{text}");
    // A scripted drift names the routing change it hit; a rollback says why, with its numbers.
    if let Some(drift) = &report.drift {
        assert!(report.adopted.iter().any(|a| a.experiment_id == drift.adoption));
        if drift.rolled_back_after_requests.is_some() {
            let cause = drift.cause.as_deref().unwrap_or_default();
            assert!(cause.contains("against the holdout"), "{cause}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_judge_the_demo_sends_no_feedback_and_the_judge_grades_the_measured_calls() {
    let args = DemoArgs {
        requests: 6_000,
        baseline: 300,
        speed: 20_000.0,
        concurrency: 16,
        seed: 11,
        cycle_every: 1_500,
        data_dir: None,
        prompts: Some(540),
        progress: false,
        tags: false,
        drift: true,
        judge: true,
    };
    let mut text = Vec::new();
    let report = run(&args, &mut text).await.expect("the demo runs");
    let text = String::from_utf8(text).expect("utf-8 report");
    let judge = report.judge.as_ref().unwrap_or_else(|| panic!("a judge summary:\n{text}"));
    // Every grading is one recorded judge call; the calls carrying a verdict are the graded ones
    // (no client sent any), and grading has a price, reported beside the traffic's.
    assert!(judge.calls > 100, "{judge:?}");
    assert!(judge.graded_calls > 0 && judge.graded_calls <= judge.calls, "{judge:?}");
    assert!(judge.cost_usd > 0.0 && judge.cost_usd < judge.traffic_cost_usd, "{judge:?}");
    assert!(text.contains("Quality signal: no client feedback"), "{text}");
    // The drift is scripted in the client's labels: none with the judge.
    assert!(report.drift.is_none());
    // The judge's verdicts are the quality evidence routing experiments run on.
    assert!(report.experiments.iter().any(|e| e.name.contains("discovered workload")), "{text}");
}
