//! End to end on real ports: client → gateway → simulated upstream.

use llmopt_core::{CacheOutcome, ErrorKind, Money, Status, Usage};
use llmopt_llm::sim::Fault;
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client, config_text, sim_server};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Prices for the simulated models, so that cost can be checked by hand:
/// sim-small 1 USD / M input, 2 USD / M output, 0.5 USD / M cache read.
const SIM_PRICES: &str = r#"
[models."sim-small"]
provider = "openai"
input = 1.0
output = 2.0
cache_read = 0.5
"#;

#[tokio::test]
async fn openai_non_streaming_passes_the_body_through_and_records_exact_cost() {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), SIM_PRICES).unwrap();
    let extra = format!("[pricing]\nfile = \"{}\"\n", prices.path().display());
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    let request = json!({
        "model": "sim-small",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 50,
        "x_unknown_field": {"kept": true}
    });
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-key-not-forwarded")
        .header("x-llmopt-tags", "feature=search, team=core")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = header(&response, "x-request-id").to_owned();
    assert_eq!(header(&response, "x-llmopt-served-model"), "sim-small");
    assert_eq!(header(&response, "x-llmopt-cache"), "bypass");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    // Usage read independently from the body the client got.
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    let cached = body["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    let record = gateway.gateway.record(&request_id).await;
    assert_eq!(record.status, Status::Ok);
    assert_eq!(record.provider.as_str(), "oai");
    assert_eq!(record.requested_model.as_str(), "sim-small");
    assert_eq!(record.tags.get("feature").map(String::as_str), Some("search"));
    assert_eq!(record.tags.get("team").map(String::as_str), Some("core"));
    assert_eq!(record.max_tokens, Some(50));
    let usage = record.usage.expect("usage");
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens),
        (prompt, completion, cached)
    );
    // 1 USD/M = 1e6 picodollars per token; 2 USD/M = 2e6; 0.5 USD/M = 5e5.
    let expected = Money(
        i128::from(prompt - cached) * 1_000_000
            + i128::from(cached) * 500_000
            + i128::from(completion) * 2_000_000,
    );
    assert_eq!(record.cost, Some(expected));
    assert!(record.fingerprints.request.is_some());
    assert!(record.fingerprints.prefix.is_some(), "system prompt makes a prefix");
    assert!(record.upstream_us.unwrap() <= record.latency_us);
    assert!(record.ttft_us.unwrap() <= record.latency_us);
    assert!(!record.stream);
    assert!(record.sampled, "no temperature: the provider default samples");
    gateway.stop().await;
}

#[tokio::test]
async fn unknown_price_gives_unknown_cost_never_zero() {
    let sim = sim_server(0.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id").to_owned();
    let record = gateway.gateway.record(&id).await;
    assert!(record.usage.is_some());
    assert_eq!(record.cost, None);
}

#[tokio::test]
async fn openai_stream_is_forwarded_and_recorded_with_usage() {
    let sim = sim_server(0.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({
            "model": "sim-small", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 30
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let id = header(&response, "x-request-id").to_owned();
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The client did not ask for usage: no usage-only chunk reaches it.
    assert!(!text.contains("\"usage\":{"), "usage chunk was not stripped: {text}");
    let content: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(!content.is_empty());
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Ok);
    assert!(record.stream);
    let usage = record.usage.expect("usage captured from the stream");
    assert!(usage.output_tokens > 0 && usage.output_tokens <= 30);
    assert!(record.ttft_us.is_some());
    assert!(record.stop_reason.is_some());
}

#[tokio::test]
async fn anthropic_whole_and_streamed_answers() {
    let sim = sim_server(0.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let request = json!({
        "model": "sim-large", "max_tokens": 40, "system": "Be kind.",
        "messages": [{"role": "user", "content": "Hello"}]
    });
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", "client-key")
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id").to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    let expected = Usage::from_anthropic_response(&body).unwrap();
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.provider.as_str(), "ant");
    assert_eq!(record.usage, Some(expected));
    assert_eq!(record.endpoint, llmopt_core::Endpoint::Messages);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let response = client().post(gateway.url("/v1/messages")).json(&streamed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id").to_owned();
    let text = response.text().await.unwrap();
    assert!(text.contains("event: message_start") && text.contains("event: message_stop"));
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Ok);
    let usage = record.usage.expect("stream usage");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
}

#[tokio::test]
async fn upstream_errors_pass_through_in_the_provider_shape() {
    let sim = sim_server(0.0).await;
    sim.engine().script_faults([
        Some(Fault::RateLimited { retry_after: std::time::Duration::from_secs(7) }),
        Some(Fault::Status(529)),
    ]);
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "7");
    let id = header(&response, "x-request-id").to_owned();
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("Rate limit"), "{body}");
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Error(ErrorKind::RateLimited));
    assert_eq!(record.cost, None);

    let response = client()
        .post(gateway.url("/v1/messages"))
        .json(&json!({"model": "sim-large", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn fallback_serves_from_the_next_candidate() {
    let sim = sim_server(0.0).await;
    sim.engine().script_faults([Some(Fault::Status(503))]);
    let extra = format!(
        r#"
[providers.backup]
kind = "openai"
base_url = "{}"

[routes.primary]
models = ["sim-small"]
provider = "oai"
fallbacks = [{{ provider = "backup", model = "sim-large" }}]
"#,
        sim.openai_base_url()
    );
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-llmopt-served-model"), "sim-large");
    let id = header(&response, "x-request-id").to_owned();
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.provider.as_str(), "backup");
    assert_eq!(record.requested_model.as_str(), "sim-small");
    assert_eq!(record.served_model.as_str(), "sim-large");
    assert_eq!(sim.engine().requests_seen(), 2);
}

#[tokio::test]
async fn cache_hits_misses_bypasses_and_tenant_isolation() {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), SIM_PRICES).unwrap();
    let extra =
        format!("[pricing]\nfile = \"{}\"\n[cache]\nenabled = true\n", prices.path().display());
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    let body = json!({"model": "sim-small", "temperature": 0, "messages": [{"role": "user", "content": "Cache me"}]});
    let send = |tenant: &'static str, body: Value| {
        let url = gateway.url("/v1/chat/completions");
        async move {
            client().post(url).header("x-llmopt-tenant", tenant).json(&body).send().await.unwrap()
        }
    };
    let first = send("a", body.clone()).await;
    assert_eq!(header(&first, "x-llmopt-cache"), "miss");
    let first_id = header(&first, "x-request-id").to_owned();
    let first_body = first.bytes().await.unwrap();
    let second = send("a", body.clone()).await;
    assert_eq!(header(&second, "x-llmopt-cache"), "hit");
    let second_id = header(&second, "x-request-id").to_owned();
    assert_eq!(second.bytes().await.unwrap(), first_body, "a hit replays the stored bytes");
    assert_eq!(sim.engine().requests_seen(), 1);
    // Another tenant never sees tenant a's answer.
    let other = send("b", body.clone()).await;
    assert_eq!(header(&other, "x-llmopt-cache"), "miss");
    assert_eq!(sim.engine().requests_seen(), 2);
    // temperature > 0: not cached.
    let mut warm = body.clone();
    warm["temperature"] = json!(0.7);
    let warm_response = send("a", warm).await;
    assert_eq!(header(&warm_response, "x-llmopt-cache"), "bypass");
    // A streaming request is its own entry and is answered as a stream on a hit.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let stream_miss = send("a", streamed.clone()).await;
    assert_eq!(header(&stream_miss, "x-llmopt-cache"), "miss");
    let miss_text = stream_miss.text().await.unwrap();
    let stream_hit = send("a", streamed).await;
    assert_eq!(header(&stream_hit, "x-llmopt-cache"), "hit");
    assert!(header(&stream_hit, "content-type").starts_with("text/event-stream"));
    assert_eq!(stream_hit.text().await.unwrap(), miss_text);

    let miss = gateway.gateway.record(&first_id).await;
    let hit = gateway.gateway.record(&second_id).await;
    assert_eq!(miss.cache, CacheOutcome::Miss);
    assert_eq!(hit.cache, CacheOutcome::Hit);
    assert_eq!(hit.cost, Some(Money(0)));
    assert!(miss.cost.is_some_and(|c| c.0 > 0));
    assert_eq!(hit.saved_cost, miss.cost);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_still_produces_a_record() {
    // Real-time simulated decoding: the stream lasts long enough to leave in the middle.
    let sim = sim_server(1.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({
            "model": "sim-small", "stream": true, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long essay"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id").to_owned();
    let first = response.chunk().await.unwrap();
    assert!(first.is_some());
    drop(response);
    // The record appears once the gateway notices the closed connection.
    let wait_for_record = async {
        loop {
            let records = gateway.gateway.records().await;
            if let Some(record) = records.into_iter().find(|r| r.id.as_str() == id) {
                break record;
            }
            tokio::task::yield_now().await;
        }
    };
    let record = tokio::time::timeout(std::time::Duration::from_secs(20), wait_for_record)
        .await
        .expect("a record for the abandoned stream");
    assert_eq!(record.status, Status::Error(ErrorKind::ClientDisconnected));
    assert!(record.stream);
}

#[tokio::test]
async fn feedback_joins_a_proxied_call_and_unknown_ids_are_404() {
    let sim = sim_server(0.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let id = header(&response, "x-request-id").to_owned();
    let feedback = client()
        .post(gateway.url("/v1/feedback"))
        .json(&json!({"request_id": id, "metric": "thumbs_up", "value": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(feedback.status(), 200);
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.feedback.len(), 1);
    assert_eq!(record.feedback[0].metric, "thumbs_up");
    let missing = client()
        .post(gateway.url("/v1/feedback"))
        .json(&json!({"request_id": "nope", "metric": "rating", "value": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
}

#[tokio::test]
async fn a_cut_stream_is_recorded_as_failed_and_never_cached() {
    let sim = sim_server(0.0).await;
    sim.engine().script_faults([Some(Fault::CutStream)]);
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(
        &sim,
        "[cache]\nenabled = true\n",
    )))
    .await;
    let body = json!({
        "model": "sim-small", "stream": true, "temperature": 0, "max_tokens": 20,
        "messages": [{"role": "user", "content": "cut me"}]
    });
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(header(&response, "x-llmopt-cache"), "miss");
    let id = header(&response, "x-request-id").to_owned();
    let text = response.text().await.unwrap_or_default();
    assert!(!text.contains("[DONE]"), "the stream was cut: {text}");
    let record = gateway.gateway.record(&id).await;
    assert!(matches!(record.status, Status::Error(_)), "{:?}", record.status);
    assert_eq!(record.usage, None, "usage of a cut stream is unknown");
    assert_eq!(record.cost, None);
    let again =
        client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(header(&again, "x-llmopt-cache"), "miss", "a cut stream must not be cached");
    let text = again.text().await.unwrap();
    assert!(text.contains("[DONE]"));
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish() {
    // Real-time decoding of a short answer: long enough to shut down in the middle.
    let sim = sim_server(1.0).await;
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, ""))).await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({
            "model": "sim-small", "stream": true, "max_tokens": 12,
            "messages": [{"role": "user", "content": "Count to twelve"}]
        }))
        .send()
        .await
        .unwrap();
    let id = header(&response, "x-request-id").to_owned();
    let mut text = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let state = gateway.gateway.state.clone();
    let store = std::sync::Arc::clone(&gateway.gateway.store);
    let stopping = tokio::spawn(gateway.stop());
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    stopping.await.unwrap();
    assert!(!state.is_ready(), "not ready once shutting down");
    let collector = state.collector().clone();
    tokio::task::spawn_blocking(move || collector.flush()).await.unwrap().unwrap();
    let record =
        llmopt_core::RecordStore::get(&*store, &llmopt_core::RequestId::new(id)).unwrap().unwrap();
    assert_eq!(record.status, Status::Ok);
}
