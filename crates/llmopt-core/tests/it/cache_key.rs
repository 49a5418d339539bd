//! Property test of the response-cache key: generated request pairs that differ in one
//! answer-relevant input (a body field, the protocol, the provider, the served model, a
//! forwarded header, the tenant) never share a key; pairs that differ only in what cannot change
//! the answer (`user`, `metadata`, `stream`, key order, whitespace) always do.

use llmopt_core::fingerprint::{CacheScope, cache_key};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Map, Value, json};

const CASES: usize = 2_000;

fn word(rng: &mut Xoshiro256PlusPlus) -> String {
    let words = ["alpha", "beta", "gamma", "delta", "omega", "x", "", "ümlaut", "a b"];
    (0..rng.gen_range(1..4))
        .map(|_| *words.choose(rng).unwrap_or(&"w"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn request(rng: &mut Xoshiro256PlusPlus) -> Value {
    let messages: Vec<Value> = (0..rng.gen_range(1..4))
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": word(rng)}))
        .collect();
    let mut body = json!({
        "model": "gpt-4o",
        "messages": messages,
        "temperature": 0,
        "user": word(rng),
        "metadata": {"trace": word(rng)},
    });
    if rng.gen_bool(0.5) {
        body["max_tokens"] = json!(rng.gen_range(1..4096));
    }
    if rng.gen_bool(0.3) {
        body["system"] = json!(word(rng));
    }
    if rng.gen_bool(0.3) {
        body["tools"] =
            json!([{"type": "function", "function": {"name": "f", "parameters": {"a": 1}}}]);
    }
    body
}

/// The body with one answer-relevant field changed.
fn change_one_field(rng: &mut Xoshiro256PlusPlus, body: &Value) -> (String, Value) {
    let mut changed = body.clone();
    let choice = rng.gen_range(0..7);
    let what = match choice {
        0 => {
            changed["messages"][0]["content"] =
                json!(format!("{}!", body["messages"][0]["content"].as_str().unwrap_or("")));
            "a message"
        }
        1 => {
            changed["temperature"] = json!(0.5);
            "temperature"
        }
        2 => {
            changed["max_tokens"] = json!(body["max_tokens"].as_u64().unwrap_or(0) + 1);
            "max_tokens"
        }
        3 => {
            changed["system"] = json!(format!("{}?", body["system"].as_str().unwrap_or("")));
            "system"
        }
        4 => {
            changed["seed"] = json!(rng.gen_range(0..100));
            "seed"
        }
        5 => {
            changed["response_format"] = json!({"type": "json_object"});
            "response_format"
        }
        _ => {
            changed["messages"][0]["role"] = json!("system");
            "a role"
        }
    };
    (what.to_owned(), changed)
}

/// The body with only irrelevant differences: key order, whitespace (through a re-parse of
/// pretty text with keys reversed), `user`, `metadata`, `stream`.
fn change_nothing_that_matters(rng: &mut Xoshiro256PlusPlus, body: &Value) -> Value {
    let mut changed = body.clone();
    changed["user"] = json!(word(rng));
    changed["metadata"] = json!({"other": word(rng)});
    changed["stream"] = json!(rng.gen_bool(0.5));
    let object = changed.as_object().cloned().unwrap_or_default();
    let reversed: Map<String, Value> = object.into_iter().rev().collect();
    let text = serde_json::to_string_pretty(&Value::Object(reversed)).unwrap();
    serde_json::from_str(&format!("  {text}\n")).unwrap()
}

#[test]
fn answer_relevant_differences_never_share_a_key_and_irrelevant_ones_always_do() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(20_261_205);
    let headers = vec![("anthropic-version".to_owned(), "2023-06-01".to_owned())];
    let base_scope = CacheScope {
        tenant: Some("team-a"),
        protocol: "openai",
        provider: "oai",
        model: "gpt-4o",
        headers: &headers,
    };
    let beta = vec![
        ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ("anthropic-beta".to_owned(), "prompt-caching-2024-07-31".to_owned()),
    ];
    let other_version = vec![("anthropic-version".to_owned(), "2024-01-01".to_owned())];
    for _ in 0..CASES {
        let body = request(&mut rng);
        let key = cache_key(&base_scope, &body);

        let (what, changed) = change_one_field(&mut rng, &body);
        if changed != body {
            assert_ne!(cache_key(&base_scope, &changed), key, "{what} changed: {body} / {changed}");
        }
        for (what, scope) in [
            ("tenant", CacheScope { tenant: Some("team-b"), ..base_scope }),
            ("no tenant", CacheScope { tenant: None, ..base_scope }),
            ("protocol", CacheScope { protocol: "anthropic", ..base_scope }),
            ("provider", CacheScope { provider: "ant", ..base_scope }),
            ("model", CacheScope { model: "gpt-4o-mini", ..base_scope }),
            ("an added header", CacheScope { headers: &beta, ..base_scope }),
            ("a header value", CacheScope { headers: &other_version, ..base_scope }),
            ("no header", CacheScope { headers: &[], ..base_scope }),
        ] {
            assert_ne!(cache_key(&scope, &body), key, "{what} changed for {body}");
        }

        let same = change_nothing_that_matters(&mut rng, &body);
        assert_eq!(cache_key(&base_scope, &same), key, "{body} / {same}");
        let mut reordered_headers = beta.clone();
        reordered_headers.reverse();
        assert_eq!(
            cache_key(&CacheScope { headers: &reordered_headers, ..base_scope }, &body),
            cache_key(&CacheScope { headers: &beta, ..base_scope }, &body),
            "header order"
        );
    }
}
