//! The simulated provider: latency fit against the reference script, real quality labels,
//! prompt caching, time scale, reproducibility, fault injection, and both wire formats over
//! HTTP through the real clients.

use std::{path::PathBuf, sync::Arc, time::Duration};

use llmopt_core::{ManualClock, Protocol, Usage};
use llmopt_llm::{
    Anthropic, AnthropicConfig, ChatRequest, OpenAiCompatible, OpenAiConfig, Provider,
    ProviderError, Retry, RetryConfig, Timeouts,
    sim::{
        Fault, LatencyModel, QualityLabels, SimConfig, SimEngine, SimModel, SimProvider, SimReply,
        SimServer, latency, quality::parse_csv,
    },
};
use serde_json::{Value, json};

use crate::upstream::collect;

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(file)
}

fn fast_config(clock: Arc<ManualClock>) -> SimConfig {
    SimConfig { time_scale: 0.0, clock, ..SimConfig::default() }
}

fn openai(body: Value) -> ChatRequest {
    ChatRequest::from_slice(Protocol::OpenAi, &serde_json::to_vec(&body).unwrap()).unwrap()
}

fn anthropic(body: Value) -> ChatRequest {
    ChatRequest::from_slice(Protocol::Anthropic, &serde_json::to_vec(&body).unwrap()).unwrap()
}

/// The labels as Python's csv module read them (the bundled JSONL), by row.
fn reference_rows() -> Vec<Value> {
    llmopt_llm::sim::quality::BUNDLED_GSM8K
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[allow(clippy::excessive_precision, reason = "the reference script's output, verbatim")]
fn latency_fit_matches_the_reference_script() {
    // Printed by `python3 data/fit_latency.py data/splitwise_perf_model_h100_tp8_b1.csv`.
    let cases = [
        (
            "bloom-176b",
            [8.2353027959390719, 0.13058222184706181, 6.83735603178037e-06],
            36.235043075934513,
        ),
        (
            "llama2-70b",
            [26.309970832782369, 0.05734486924417239, 5.3236191426694893e-06],
            30.388839693740682,
        ),
    ];
    for ((model, [a, b, c], t), constant) in cases.into_iter().zip([latency::LARGE, latency::SMALL])
    {
        let fit = LatencyModel::fit_splitwise(
            &data("splitwise_perf_model_h100_tp8_b1.csv"),
            model,
            "h100-80gb",
        )
        .unwrap();
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1e-9);
        assert!(close(fit.prefill_intercept_ms, a), "{model} a {}", fit.prefill_intercept_ms);
        assert!(close(fit.prefill_ms_per_token, b), "{model} b {}", fit.prefill_ms_per_token);
        assert!(
            close(fit.prefill_ms_per_token_squared, c),
            "{model} c {}",
            fit.prefill_ms_per_token_squared
        );
        assert!(close(fit.ms_per_output_token, t), "{model} t");
        assert!(close(constant.prefill_intercept_ms, a) && close(constant.ms_per_output_token, t));
    }
    // The script's predictions at 512 and 8192 prompt tokens.
    assert!((latency::LARGE.prefill_ms(512) - 76.89).abs() < 0.01);
    assert!((latency::SMALL.prefill_ms(8192) - 853.34).abs() < 0.01);
}

#[test]
fn csv_reader_agrees_with_python() {
    let text = std::fs::read_to_string(data("routellm_gsm8k_first40.csv")).unwrap();
    let records = parse_csv(&text).unwrap();
    assert_eq!(records.len(), 41);
    for (record, reference) in records[1..].iter().zip(reference_rows()) {
        assert_eq!(record[0], reference["prompt"].as_str().unwrap());
        assert_eq!(record[1] == "True", reference["weak_correct"].as_bool().unwrap());
        assert_eq!(record[2] == "True", reference["strong_correct"].as_bool().unwrap());
        assert_eq!(record[3], reference["weak_response"].as_str().unwrap());
        assert_eq!(record[4], reference["strong_response"].as_str().unwrap());
    }
    let mut labels = QualityLabels::default();
    assert_eq!(labels.load_routellm_csv(&data("routellm_gsm8k_first40.csv")).unwrap(), 40);
    assert_eq!(QualityLabels::bundled().len(), 200);
}

#[tokio::test]
async fn answers_and_quality_come_from_the_real_labels() {
    let rows = reference_rows();
    // Row 4: Mixtral wrong, GPT-4 right. Row 5: the other way round.
    let provider = SimProvider::new("sim", fast_config(Arc::new(ManualClock::new(0))));
    for (row, model, expected_correct, response_key) in [
        (4, "sim-small", false, "weak_response"),
        (4, "sim-large", true, "strong_response"),
        (5, "small", true, "weak_response"),
        (5, "large", false, "strong_response"),
    ] {
        let prompt = rows[row]["prompt"].as_str().unwrap();
        let response = provider
            .chat(openai(
                json!({"model": model, "messages": [{"role": "user", "content": prompt}]}),
            ))
            .await
            .unwrap();
        let header =
            |name: &str| response.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(
            header("x-sim-quality-correct"),
            Some(expected_correct.to_string()),
            "row {row} {model}"
        );
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, rows[row][response_key].as_str().unwrap().trim());
        let usage = response.usage.unwrap();
        assert_eq!(usage.output_tokens, body["usage"]["completion_tokens"].as_u64().unwrap());
        assert!(usage.input_tokens >= 7 + prompt.len() as u64 / 4);
    }
    // An unknown prompt has no quality header.
    let response = provider
        .chat(openai(
            json!({"model": "large", "messages": [{"role": "user", "content": "Write a haiku"}]}),
        ))
        .await
        .unwrap();
    assert!(!response.headers.iter().any(|(n, _)| n == "x-sim-quality-correct"));
}

#[tokio::test]
async fn repeated_prefix_is_cached_within_the_window() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let provider = SimProvider::new("sim", fast_config(clock.clone()));
    let system = "You are a careful assistant. ".repeat(200); // 6,000 bytes ≈ 1,500 tokens
    let ask = |question: &str| {
        openai(json!({"model": "small", "max_tokens": 20, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question}]}))
    };
    let first = provider.chat(ask("first question")).await.unwrap().usage.unwrap();
    assert_eq!(first.cache_read_tokens, 0);
    clock.advance(60_000);
    let second = provider.chat(ask("second question")).await.unwrap().usage.unwrap();
    // The shared prefix is "system\n" + 6,000 bytes: 11 whole 512-byte blocks = 1,408 tokens.
    assert_eq!(second.cache_read_tokens, 11 * 128);
    assert!(second.output_tokens <= 20);
    clock.advance(10 * 60_000);
    let third = provider.chat(ask("third question")).await.unwrap().usage.unwrap();
    assert_eq!(third.cache_read_tokens, 0, "past the 5-minute window");
}

#[tokio::test]
async fn anthropic_cache_control_writes_then_reads() {
    let clock = Arc::new(ManualClock::new(0));
    let provider = SimProvider::new("sim", fast_config(clock.clone()));
    let system = "Reference manual text. ".repeat(300); // 6,900 bytes = 1,725 tokens
    let ask = || {
        anthropic(json!({"model": "large", "max_tokens": 30,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "What does chapter 2 say?"}]}))
    };
    let first = provider.chat(ask()).await.unwrap();
    let usage = first.usage.unwrap();
    assert_eq!(usage.cache_write_5m_tokens, 1725);
    assert_eq!(usage.cache_read_tokens, 0);
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["usage"]["cache_creation_input_tokens"], json!(1725));
    assert_eq!(body["stop_reason"], json!("max_tokens"), "30 tokens of filler is cut");
    clock.advance(120_000);
    let second = provider.chat(ask()).await.unwrap().usage.unwrap();
    assert_eq!(second.cache_read_tokens, 1725);
    assert_eq!(second.cache_write_5m_tokens, 0);
    assert_eq!(second.input_tokens, usage.input_tokens, "same total input either way");
}

#[test]
fn time_scale_and_seed_make_replies_reproducible() {
    let body = serde_json::to_vec(&json!({"model": "large", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Tell me about rivers"}]}))
    .unwrap();
    let delay_of = |seed: u64, scale: f64| {
        let engine = SimEngine::new(SimConfig { seed, time_scale: scale, ..SimConfig::default() });
        match engine.reply(Protocol::OpenAi, &body) {
            SimReply::Whole { delay, body, .. } => (delay, body),
            other => panic!("{other:?}"),
        }
    };
    let (real, body_a) = delay_of(7, 1.0);
    let (half, body_b) = delay_of(7, 0.5);
    let (zero, _) = delay_of(7, 0.0);
    assert_eq!(body_a, body_b, "same seed, same answer");
    assert!((real.as_secs_f64() / 2.0 - half.as_secs_f64()).abs() < 1e-6);
    assert_eq!(zero, Duration::ZERO);
    // Expected time: prefill of the prompt plus 49 more tokens at ~36 ms; noise is a few %.
    let output: u64 =
        serde_json::from_slice::<Value>(&body_a).unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap();
    assert_eq!(output, 50, "filler is longer than 50 tokens at this seed, so it is cut");
    let expected_ms = latency::LARGE.prefill_ms(14) + 36.235 * 49.0;
    assert!(
        (real.as_secs_f64() * 1000.0 - expected_ms).abs() / expected_ms < 0.1,
        "{real:?} vs {expected_ms}"
    );
    let (other_seed, _) = delay_of(8, 1.0);
    assert_ne!(real, other_seed);
}

#[tokio::test]
async fn model_sizes_differ_as_measured() {
    // Same long prompt: the large profile is slower per token, the small one has a higher
    // fixed prefill cost (the fitted intercepts).
    let large = LatencyModel { prefill_noise: 0.0, token_noise: 0.0, ..latency::LARGE };
    let small = LatencyModel { prefill_noise: 0.0, token_noise: 0.0, ..latency::SMALL };
    let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(1);
    let a = large.sample(4096, &mut rng);
    let b = small.sample(4096, &mut rng);
    assert!((a.time_to_first_token_ms - 657.81).abs() < 0.01, "{a:?}"); // 8.235 + 534.865 + 114.711
    assert!((b.time_to_first_token_ms - 350.51).abs() < 0.01, "{b:?}"); // 26.310 + 234.885 + 89.317
    assert!(a.ms_per_output_token > b.ms_per_output_token);
    let custom = SimModel { names: vec!["mini".into()], ..SimModel::small() };
    let provider = SimProvider::new(
        "sim",
        SimConfig { time_scale: 0.0, models: vec![custom], ..SimConfig::default() },
    );
    let ok = provider
        .chat(openai(json!({"model": "mini", "messages": [{"role": "user", "content": "x"}]})))
        .await;
    assert!(ok.is_ok());
    match provider
        .chat(openai(json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})))
        .await
    {
        Err(ProviderError::Upstream { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn in_process_streams_match_whole_answers() {
    let provider = SimProvider::new("sim", fast_config(Arc::new(ManualClock::new(0))));
    let body = json!({"model": "small", "max_tokens": 200, "messages": [{"role": "user", "content": "Describe the sea"}]});
    let whole = provider.chat(openai(body.clone())).await.unwrap();
    let collected = collect(provider.chat_stream(openai(body)).await.unwrap()).await;
    assert_eq!(collected.outcome.usage, whole.usage, "streamed usage equals whole usage");
    assert!(collected.outcome.complete);
    let text = String::from_utf8(collected.bytes).unwrap();
    assert!(!text.contains("\"usage\":{"), "usage chunk stripped: caller did not ask");
    let streamed: String = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    let whole_body: Value = serde_json::from_slice(&whole.body).unwrap();
    assert_eq!(streamed, whole_body["choices"][0]["message"]["content"].as_str().unwrap());
}

#[tokio::test]
async fn over_http_both_formats_through_the_real_clients() {
    let engine = Arc::new(SimEngine::new(SimConfig { time_scale: 0.001, ..SimConfig::default() }));
    let server = SimServer::start_local(engine.clone()).await.unwrap();
    let openai_client =
        OpenAiCompatible::new(OpenAiConfig::new("sim", server.openai_base_url()).with_api_key("k"))
            .unwrap();
    let anthropic_client =
        Anthropic::new(AnthropicConfig::new("sim", server.anthropic_base_url(), "k")).unwrap();

    let whole = openai_client
        .chat(openai(json!({"model": "large", "messages": [{"role": "user", "content": "Hello"}]})))
        .await
        .unwrap();
    assert_eq!(whole.model.as_deref(), Some("sim-large"));
    assert!(whole.usage.is_some());

    let mut asked =
        openai(json!({"model": "large", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hello"}]}));
    asked.headers.push(("x-trace".into(), "1".into()));
    let collected = collect(openai_client.chat_stream(asked).await.unwrap()).await;
    let text = String::from_utf8(collected.bytes).unwrap();
    let usage_chunks = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|chunk| chunk["choices"] == json!([]) && chunk["usage"].is_object())
        .count();
    assert_eq!(usage_chunks, 1, "the usage chunk is kept when asked");
    assert!(collected.outcome.complete && collected.outcome.usage.is_some());

    let stream = anthropic_client
        .chat_stream(anthropic(json!({"model": "small", "max_tokens": 40, "stream": true,
            "messages": [{"role": "user", "content": "Hello"}]})))
        .await
        .unwrap();
    let collected = collect(stream).await;
    let text = String::from_utf8(collected.bytes).unwrap();
    for event in [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] {
        assert!(text.contains(&format!("event: {event}\n")), "{event}");
    }
    let usage: Usage = collected.outcome.usage.unwrap();
    assert!(usage.output_tokens > 0 && usage.output_tokens <= 40);
    assert!(collected.outcome.time_to_first_token.is_some());
    assert_eq!(engine.requests_seen(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_over_http() {
    let engine = Arc::new(SimEngine::new(SimConfig { time_scale: 0.0, ..SimConfig::default() }));
    let server = SimServer::start_local(engine.clone()).await.unwrap();
    let client =
        OpenAiCompatible::new(OpenAiConfig::new("sim", server.openai_base_url()).with_timeouts(
            Timeouts { first_byte: Duration::from_millis(150), ..Timeouts::default() },
        ))
        .unwrap();
    let ask = || {
        openai(
            json!({"model": "small", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}),
        )
    };
    engine.script_faults([
        Some(Fault::RateLimited { retry_after: Duration::from_millis(1500) }),
        Some(Fault::Status(502)),
        Some(Fault::Hang(Duration::from_secs(3))),
        Some(Fault::MalformedBody),
    ]);
    match client.chat(ask()).await.unwrap_err() {
        ProviderError::RateLimited { retry_after, body } => {
            assert_eq!(
                retry_after,
                Some(Duration::from_millis(1500)),
                "retry-after-ms wins over the rounded seconds"
            );
            let body: Value = serde_json::from_slice(&body.unwrap()).unwrap();
            assert_eq!(body["error"]["code"], json!("rate_limit_exceeded"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.chat(ask()).await, Err(ProviderError::Upstream { status: 502, .. })));
    assert!(matches!(client.chat(ask()).await, Err(ProviderError::Timeout("first byte"))));
    assert!(matches!(client.chat(ask()).await, Err(ProviderError::InvalidResponse(_))));

    engine.script_faults([Some(Fault::CutStream)]);
    let collected = collect(client.chat_stream(ask()).await.unwrap()).await;
    assert_eq!(collected.errors.len(), 1, "{:?}", collected.errors);
    assert_eq!(collected.outcome.usage, None, "cut before the usage chunk: unknown");
    assert!(!collected.outcome.complete);

    // With retries, a 503 then an answer is one successful call.
    engine.script_faults([Some(Fault::Status(503)), None]);
    let retrying = Retry::new(
        Arc::new(client),
        RetryConfig {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RetryConfig::default()
        },
    );
    assert!(retrying.chat(ask()).await.is_ok());
}

#[test]
fn whole_routellm_set_loads_like_python_reads_it() {
    // `shared/` sits beside the checkout (as in CI); the counts are Python's csv module's.
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/quality/routellm");
    if !dir.exists() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let labels = QualityLabels::load_routellm_dir(&dir).unwrap();
    assert_eq!(labels.len(), 15_256, "distinct prompts of 15,361 rows");
    let weak = labels.prompts().iter().filter(|p| labels.get(p).unwrap().weak_correct).count();
    let strong = labels.prompts().iter().filter(|p| labels.get(p).unwrap().strong_correct).count();
    assert_eq!((weak, strong), (10_318, 12_361));
}

#[test]
fn random_fault_rates_are_honoured() {
    let engine = SimEngine::new(SimConfig {
        time_scale: 0.0,
        faults: llmopt_llm::sim::FaultRates {
            rate_limited: 0.2,
            server_error: 0.1,
            ..Default::default()
        },
        ..SimConfig::default()
    });
    let body = br#"{"model":"small","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
    let mut by_status = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        if let SimReply::Whole { status, .. } = engine.reply(Protocol::OpenAi, body) {
            *by_status.entry(status).or_insert(0u32) += 1;
        }
    }
    // Binomial(2000, 0.2) has sd 17.9 and Binomial(2000, 0.1) sd 13.4: ±5 sd bounds.
    assert!((310..=490).contains(&by_status[&429]), "{by_status:?}");
    assert!((133..=267).contains(&by_status[&500]), "{by_status:?}");
    assert_eq!(by_status.values().sum::<u32>(), 2000);
}

#[tokio::test(start_paused = true)]
async fn in_process_stream_timing_follows_the_latency_model() {
    let provider = SimProvider::new("sim", SimConfig { time_scale: 1.0, ..SimConfig::default() });
    let prompt = "word ".repeat(800); // 4,000 bytes: 1,000 tokens + 7 of message overhead
    let started = tokio::time::Instant::now();
    let stream = provider
        .chat_stream(openai(json!({"model": "large", "max_tokens": 40,
            "messages": [{"role": "user", "content": prompt}]})))
        .await
        .unwrap();
    let collected = collect(stream).await;
    let outcome = collected.outcome;
    let usage = outcome.usage.unwrap();
    assert_eq!(usage.input_tokens, 1007);
    let ttft_ms = outcome.time_to_first_token.unwrap().as_secs_f64() * 1000.0;
    let expected_ttft = latency::LARGE.prefill_ms(1007); // 8.235 + 131.5 + 6.93 = 146.7 ms
    assert!((ttft_ms / expected_ttft - 1.0).abs() < 0.1, "{ttft_ms} vs {expected_ttft}");
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let expected_decode = 36.235 * (usage.output_tokens - 1) as f64;
    assert!(
        ((total_ms - ttft_ms) / expected_decode - 1.0).abs() < 0.05,
        "{total_ms} {ttft_ms} {expected_decode}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_by_the_timeout_decorator_keeps_the_usage_it_had_seen() {
    // Real-time decoding under paused time: 40 tokens at ~36 ms each outlast a 500 ms budget.
    let sim = SimProvider::new("sim", SimConfig { time_scale: 1.0, ..SimConfig::default() });
    let timeouts = Timeouts { total: Duration::from_millis(500), ..Timeouts::default() };
    let bounded = llmopt_llm::Timeout::new(Arc::new(sim), timeouts);
    let stream = bounded
        .chat_stream(anthropic(json!({"model": "large", "max_tokens": 40, "stream": true,
            "messages": [{"role": "user", "content": "Tell me about the sea"}]})))
        .await
        .unwrap();
    let collected = collect(stream).await;
    assert!(matches!(collected.errors[..], [ProviderError::Timeout("total")]));
    let outcome = collected.outcome;
    assert!(!outcome.complete);
    let usage = outcome.usage.expect("message_start's usage survives the cut");
    assert!(usage.input_tokens > 0);
    assert_eq!(usage.output_tokens, 1, "message_start's count: message_delta never came");
    assert!(outcome.time_to_first_token.is_some());
}
