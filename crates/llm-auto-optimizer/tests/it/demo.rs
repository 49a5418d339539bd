//! A short demo run end to end on real sockets: the loop's decisions, not its exact numbers.

use llm_auto_optimizer::demo::{DemoArgs, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_adopts_a_measured_saving_and_guards_quality() {
    let args = DemoArgs {
        requests: 12_000,
        baseline: 800,
        speed: 20_000.0,
        concurrency: 16,
        seed: 11,
        cycle_every: 1_500,
        data_dir: None,
        // 540 prompts of 9 subjects: enough repeats for the cache to prove itself in a short run.
        prompts: Some(540),
        progress: false,
    };
    let mut text = Vec::new();
    let report = run(&args, &mut text).await.expect("the demo runs");
    let text = String::from_utf8(text).expect("utf-8 report");
    assert!(text.contains("measured on the same 800 requests"), "{text}");

    // Every request of the baseline and after phases was answered.
    assert_eq!(report.baseline.requests, 800);
    assert_eq!(report.baseline.errors, 0);
    assert_eq!(report.after.errors, 0);
    // The baseline only observes: everything is served by the model the client asked for.
    assert_eq!(report.baseline.weak_share, 0.0);
    assert_eq!(report.baseline.cache_hit_share, 0.0);
    assert!(!report.proposals.is_empty(), "the baseline cycle proposes");

    // The response cache is proven and adopted, and its saving shows on the same requests.
    let cache = report
        .adopted
        .iter()
        .find(|adoption| adoption.change.response_cache == Some(true))
        .unwrap_or_else(|| panic!("the response cache is adopted:\n{text}"));
    assert!(cache.treatment_cost_per_request < cache.control_cost_per_request);
    assert!(report.after.cache_hit_share > 0.1);
    assert!(report.measured_saving_share > 0.1, "measured saving {}", report.measured_saving_share);

    // Routing is only ever tried as experiments, and never adopted beyond the quality budget.
    assert!(report.experiments.iter().any(|e| e.name.starts_with("Route gpt-4o")));
    assert!(report.quality_budget_used <= 0.05 + 1e-12);
    for adoption in report.adopted.iter().filter(|a| a.change.model.is_some()) {
        assert!(adoption.quality_drop.is_some(), "routing adopted without a quality measurement");
    }
    assert!(report.quality_ratio > 0.9, "quality ratio {}", report.quality_ratio);
}
