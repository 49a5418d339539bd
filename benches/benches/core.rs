//! Core hot-path pieces: usage normalisation, exact cost, and request fingerprints, each run
//! once per proxied call.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use llmopt_core::{PriceCatalog, Usage, fingerprint};
use serde_json::json;

fn core(c: &mut Criterion) {
    let catalog = PriceCatalog::builtin();
    let usage = Usage {
        input_tokens: 2_006,
        cache_read_tokens: 1_920,
        output_tokens: 300,
        reasoning_tokens: 64,
        ..Usage::default()
    };
    c.bench_function("core/cost_dated_id", |b| {
        b.iter(|| catalog.cost(black_box("gpt-4o-2024-08-06"), black_box(&usage)))
    });
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
        "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                  "prompt_tokens_details": {"cached_tokens": 1920},
                  "completion_tokens_details": {"reasoning_tokens": 64}}
    });
    c.bench_function("core/usage_openai", |b| {
        b.iter(|| Usage::from_openai_response(black_box(&body)))
    });
    let request = json!({
        "model": "gpt-4o-mini", "temperature": 0,
        "messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
    });
    c.bench_function("core/cache_key", |b| {
        b.iter(|| {
            fingerprint::cache_key(
                &fingerprint::CacheScope {
                    tenant: Some("acme"),
                    protocol: "openai",
                    provider: "openai",
                    model: "gpt-4o-mini",
                    headers: &[],
                },
                black_box(&request),
            )
        })
    });
    // A 2,000-token prompt as a client sends it (about 8 KB of JSON): a shared system prompt and
    // the conversation, fingerprinted in prefix blocks on every call.
    let system = "You are a careful assistant for a travel agency. ".repeat(80);
    let messages = serde_json::to_string(&json!([
        {"role": "system", "content": system},
        {"role": "user", "content": "Which flights leave Lisbon for Porto tomorrow morning? ".repeat(60)}
    ]))
    .expect("json");
    let tools = r#"[{"type":"function","function":{"name":"search_flights","parameters":{"type":"object"}}}]"#;
    c.bench_function("core/prefix_blocks_2k_tokens", |b| {
        b.iter(|| {
            fingerprint::prefix_blocks(&[
                black_box(tools.as_bytes()),
                black_box(messages.as_bytes()),
            ])
        })
    });
}

criterion_group!(benches, core);
criterion_main!(benches);
