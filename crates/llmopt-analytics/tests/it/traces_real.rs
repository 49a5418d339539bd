//! The public traces: committed head slices always, the full traces in `../shared/data/traces`
//! when present (skipped with a message otherwise).
//!
//! Prefix reuse is checked against a direct count made here from the raw JSON (a set of block
//! ids seen in earlier lines), and against the numbers `make_fixtures.py` counted in Python.

use std::{collections::HashSet, fs::File, io::BufReader, path::Path};

use llmopt_analytics::{
    cache::{PrefixCachePolicy, prefix_reuse},
    stats::{quantiles, trimmed_mean},
    traces::{self, MOONCAKE_BLOCK_TOKENS, parse_azure_csv, parse_mooncake_jsonl, to_records},
};
use serde_json::Value;

use crate::support::{assert_all_close, assert_close, data_dir, f64s, fixture, num, shared_traces};

/// Block ids that appeared in an earlier line, and all block ids, counted from the raw JSON.
fn direct_count(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = HashSet::new();
    let (mut reused, mut total) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap();
        let ids: Vec<u64> =
            value["hash_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        total += ids.len() as u64;
        reused += ids.iter().filter(|id| seen.contains(*id)).count() as u64;
        seen.extend(ids);
    }
    (reused, total)
}

fn mooncake_reuse(path: &Path) -> llmopt_analytics::cache::PrefixReuse {
    let requests = parse_mooncake_jsonl(BufReader::new(File::open(path).unwrap())).unwrap();
    let records = to_records(&requests, 1_700_000_000_000, "sim", "gpt-4o", None);
    prefix_reuse(&records, PrefixCachePolicy::unlimited(MOONCAKE_BLOCK_TOKENS)).unwrap()
}

#[test]
fn committed_slices_parse_and_match_a_direct_count() {
    let dir = data_dir().join("traces");
    for name in ["mooncake_conversation_head600.jsonl", "mooncake_synthetic_head400.jsonl"] {
        let path = dir.join(name);
        let reuse = mooncake_reuse(&path);
        let (reused, total) = direct_count(&path);
        assert_eq!(reuse.blocks, total, "{name}");
        assert_eq!(reuse.blocks_seen_before, reused, "{name}");
        // The ids are prefix hashes: a block seen before is always part of a reused prefix.
        assert_eq!(reuse.blocks_reused, reused, "{name}");
        assert!(reused > 0);
    }
    let azure =
        parse_azure_csv(BufReader::new(File::open(dir.join("azure_conv_head1000.csv")).unwrap()))
            .unwrap();
    assert_eq!(azure.len(), 1000);
    assert_eq!(azure[0].input_tokens, 374);
    assert_eq!(azure[0].output_tokens, 44);
    assert_eq!(azure[0].ts_ms, traces::parse_timestamp_ms("2023-11-16 18:15:46.680").unwrap());
    assert!(azure.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
}

#[test]
fn both_full_mooncake_traces_report_prefix_reuse_matching_a_direct_count() {
    let Some(root) = shared_traces() else { return };
    let reference = fixture("traces.json");
    for (name, file) in [
        ("mooncake_conversation", "mooncake_conversation/conversation_trace.jsonl"),
        ("mooncake_synthetic", "mooncake_synthetic/synthetic_trace.jsonl"),
    ] {
        let path = root.join(file);
        let reuse = mooncake_reuse(&path);
        let (reused, total) = direct_count(&path);
        let expected = &reference[name];
        assert_eq!(reuse.requests, expected["requests"].as_u64().unwrap());
        assert_eq!(reuse.blocks, total);
        assert_eq!(reuse.blocks, expected["blocks"].as_u64().unwrap());
        assert_eq!(reuse.blocks_seen_before, reused);
        assert_eq!(reuse.blocks_seen_before, expected["blocks_seen_before"].as_u64().unwrap());
        assert_eq!(reuse.blocks_reused, reused);
        assert_eq!(reuse.input_tokens, expected["input_tokens"].as_u64().unwrap());
        assert_eq!(reuse.cached_tokens, expected["cached_tokens_unlimited"].as_u64().unwrap());
        println!(
            "{name}: block reuse {:.4}, cached input share {:.4}",
            reuse.block_reuse_share, reuse.cached_token_share
        );
        let outputs: Vec<f64> = parse_mooncake_jsonl(BufReader::new(File::open(&path).unwrap()))
            .unwrap()
            .iter()
            .map(|r| r.output_tokens as f64)
            .collect();
        let qs = f64s(&reference["quantiles"]);
        assert_all_close(
            &quantiles(&outputs, &qs).unwrap(),
            &f64s(&expected["output_quantiles"]),
            1e-9,
            name,
        );
    }
    // The shares the data README states (36.6 % and 64.0 %).
    let conversation = mooncake_reuse(&root.join("mooncake_conversation/conversation_trace.jsonl"));
    assert!((conversation.block_reuse_share - 0.366).abs() < 0.0005);
    let synthetic = mooncake_reuse(&root.join("mooncake_synthetic/synthetic_trace.jsonl"));
    assert!((synthetic.block_reuse_share - 0.640).abs() < 0.0005);
}

#[test]
fn full_azure_trace_matches_numpy() {
    let Some(root) = shared_traces() else { return };
    let reference = fixture("traces.json");
    let expected = &reference["azure_conv"];
    let path = root.join("azure_llm_2023/AzureLLMInferenceTrace_conv.csv");
    let requests = parse_azure_csv(BufReader::new(File::open(path).unwrap())).unwrap();
    assert_eq!(requests.len() as u64, expected["requests"].as_u64().unwrap());
    assert_eq!(
        requests.iter().map(|r| r.input_tokens).sum::<u64>(),
        expected["context_sum"].as_u64().unwrap()
    );
    assert_eq!(
        requests.iter().map(|r| r.output_tokens).sum::<u64>(),
        expected["generated_sum"].as_u64().unwrap()
    );
    let qs = f64s(&reference["quantiles"]);
    let context: Vec<f64> = requests.iter().map(|r| r.input_tokens as f64).collect();
    let generated: Vec<f64> = requests.iter().map(|r| r.output_tokens as f64).collect();
    assert_all_close(
        &quantiles(&context, &qs).unwrap(),
        &f64s(&expected["context_quantiles"]),
        1e-9,
        "context",
    );
    assert_all_close(
        &quantiles(&generated, &qs).unwrap(),
        &f64s(&expected["generated_quantiles"]),
        1e-9,
        "generated",
    );
    assert_close(
        trimmed_mean(&generated, 0.1).unwrap(),
        num(&expected["generated_trim_mean_10"]),
        1e-9,
        "trim mean",
    );
}
