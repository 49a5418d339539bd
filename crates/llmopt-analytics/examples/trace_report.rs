//! A small analysis of a public LLM trace (Azure CSV or Mooncake JSONL):
//!
//! ```text
//! cargo run -p llmopt-analytics --example trace_report -- crates/llmopt-analytics/tests/data/traces/mooncake_conversation_head600.jsonl
//! cargo run -p llmopt-analytics --example trace_report -- ../shared/data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv
//! ```
//!
//! The traces carry no model names or prices: the cost figures assume every request went to
//! `gpt-4o-mini` at the built-in catalog's prices, and the prompt-cache savings are priced for a
//! few models to compare providers. The notebook `notebooks/analysis.ipynb` has the same cells.

use llmopt_analytics::{
    anomaly::{change_points, robust_z},
    cache::{PrefixCachePolicy, prefix_cache_savings, prefix_reuse},
    cluster::{FeatureSpec, cluster_records},
    cost::{CostDimension, cost_breakdown},
    forecast::fit_auto,
    stats::quantiles,
    tails::{output_cap_impact, smallest_safe_cap},
    traces::{self, MOONCAKE_BLOCK_TOKENS, TraceFormat},
};
use llmopt_core::PriceCatalog;

/// The model every request is priced as (the traces name none).
const ASSUMED_MODEL: &str = "gpt-4o-mini";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: trace_report <trace.csv | trace.jsonl>")?;

    // Cell 1: load the trace.
    let text = std::fs::read_to_string(&path)?;
    let first_line = text.lines().next().unwrap_or_default();
    let format = traces::detect_format(first_line)
        .ok_or("unknown trace format (expected Azure CSV or Mooncake JSONL)")?;
    let requests = match format {
        TraceFormat::AzureCsv => traces::parse_azure_csv(text.as_bytes())?,
        TraceFormat::MooncakeJsonl => traces::parse_mooncake_jsonl(text.as_bytes())?,
    };
    let catalog = PriceCatalog::builtin();
    let records = traces::to_records(&requests, 0, "trace", ASSUMED_MODEL, Some(&catalog));
    let first_ms = records.iter().map(|r| r.ts_ms).min().unwrap_or(0);
    let last_ms = records.iter().map(|r| r.ts_ms).max().unwrap_or(0);
    println!(
        "{path}: {format:?}, {} requests over {:.1} minutes",
        records.len(),
        (last_ms - first_ms) as f64 / 60_000.0
    );

    // Cell 2: token distributions.
    let qs = [0.5, 0.9, 0.99];
    let inputs: Vec<f64> = requests.iter().map(|r| r.input_tokens as f64).collect();
    let outputs: Vec<f64> = requests.iter().map(|r| r.output_tokens as f64).collect();
    println!("input tokens  p50/p90/p99: {:?}", quantiles(&inputs, &qs)?);
    println!("output tokens p50/p90/p99: {:?}", quantiles(&outputs, &qs)?);

    // Cell 3: cost (exact) under the assumed model.
    let breakdown = cost_breakdown(&records, &CostDimension::Model);
    println!("cost as {ASSUMED_MODEL}: {} ({} requests)", breakdown.total, breakdown.requests);

    // Cell 4: arrivals per window (a minute, or 10 s for traces shorter than half an hour) —
    // forecast and anomalies.
    let minute: i64 = if last_ms - first_ms >= 30 * 60_000 { 60_000 } else { 10_000 };
    let unit = if minute == 60_000 { "minute" } else { "10 s" };
    let first_minute = first_ms.div_euclid(minute);
    let minutes = (last_ms.div_euclid(minute) - first_minute + 1) as usize;
    let mut per_minute = vec![0.0; minutes];
    for record in &records {
        per_minute[(record.ts_ms.div_euclid(minute) - first_minute) as usize] += 1.0;
    }
    // The last window is cut off by the end of the trace: leave it out of the forecast.
    per_minute.pop();
    if per_minute.len() >= 12 {
        let auto = fit_auto(&per_minute, None, (per_minute.len() / 5).max(2))?;
        let forecast = auto.model.forecast(5, 0.95)?;
        println!(
            "requests per {unit}: model {:?}; next 5 windows: {:.1?}",
            auto.model.method, forecast.mean
        );
        match robust_z(&per_minute, 3.5) {
            Ok(spikes) => println!(
                "windows with unusual traffic (robust z > 3.5): {:?}",
                spikes.iter().map(|d| d.index).collect::<Vec<_>>()
            ),
            Err(error) => println!("robust z: {error}"),
        }
        let changes = change_points(&per_minute, 5, 1.0)?;
        for change in changes {
            println!(
                "  level change at window {}: {:+.1} requests per {unit} (confidence {:.3})",
                change.index, change.magnitude, change.confidence
            );
        }
    } else {
        println!("fewer than 12 windows of data: no forecast");
    }

    // Cell 5: max_tokens caps.
    let output_tokens: Vec<u64> = requests.iter().map(|r| r.output_tokens).collect();
    for impact in output_cap_impact(&output_tokens, &[256, 512, 1024])? {
        println!(
            "cap {:>5}: truncates {:5.2} % of responses, removes {:5.2} % of output tokens",
            impact.cap,
            impact.truncated_share * 100.0,
            impact.tokens_saved_share * 100.0
        );
    }
    println!("smallest cap truncating ≤ 1 %: {}", smallest_safe_cap(&output_tokens, 0.01)?);

    // Cell 6: prompt-prefix reuse (Mooncake traces carry prefix blocks).
    if records.iter().any(|r| !r.fingerprints.prefix_blocks.is_empty()) {
        let unlimited =
            prefix_reuse(&records, PrefixCachePolicy::unlimited(MOONCAKE_BLOCK_TOKENS))?;
        println!(
            "prefix blocks reused (unlimited cache): {} of {} ({:.1} %)",
            unlimited.blocks_reused,
            unlimited.blocks,
            unlimited.block_reuse_share * 100.0
        );
        let provider =
            prefix_reuse(&records, PrefixCachePolicy::provider_default(MOONCAKE_BLOCK_TOKENS))?;
        println!(
            "with a provider cache (≥ 1,024 tokens, 5 min idle): {:.1} % of input tokens cached, {:.1} % written",
            provider.cached_token_share * 100.0,
            provider.written_tokens as f64 / provider.input_tokens.max(1) as f64 * 100.0
        );
        for saving in prefix_cache_savings(
            &provider,
            &catalog,
            &["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"],
        )? {
            println!(
                "  {:<18} ({:<9}) without cache {} → with cache {}: saves {} ({:.1} %)",
                saving.model,
                saving.provider,
                saving.cost_without_cache,
                saving.cost_with_cache,
                saving.saving,
                saving.saving_share * 100.0
            );
        }
    }

    // Cell 7: workload clusters.
    let sample: Vec<_> = records.iter().step_by((records.len() / 5_000).max(1)).cloned().collect();
    let clusters = cluster_records(&sample, &FeatureSpec::default(), 2..=6, 42)?;
    println!(
        "workload clusters (k = {} by silhouette {:?}):",
        clusters.k, clusters.silhouette_by_k
    );
    for profile in &clusters.profiles {
        println!(
            "  cluster {}: {:5.1} % of requests, {:5.1} % of cost, geometric-mean input {:.0} tokens, output {:.0} tokens",
            profile.cluster,
            profile.share * 100.0,
            profile.cost_share * 100.0,
            profile.mean_features[0].exp_m1(),
            profile.mean_features[1].exp_m1(),
        );
    }
    Ok(())
}
