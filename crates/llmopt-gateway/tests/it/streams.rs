//! Streams end to end on real ports (client → gateway → simulated upstream): usage seen before
//! a cut or a client disconnect is recorded and marked incomplete, and the usage the gateway
//! asks for on a client's behalf never reaches a client that did not ask for it.

use std::time::Duration;

use llmopt_core::{ErrorKind, Money, RequestRecord, Status, Usage};
use llmopt_llm::sim::{Fault, SimServer};
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client, config_text, sim_server};

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Prices for both simulated models, USD per million tokens (no cache prices: the requests
/// below have no cache reads or writes).
const SIM_PRICES: &str = r#"
[models."sim-large"]
provider = "anthropic"
input = 3.0
output = 15.0

[models."sim-small"]
provider = "openai"
input = 1.0
output = 2.0
"#;

/// The cost of `usage` at `SIM_PRICES`, computed here from the prices, not by the catalog:
/// USD per million tokens is that many micro-dollars per token, 10⁶ picodollars.
fn expected_cost(model: &str, usage: &Usage) -> Money {
    let (input, output) = match model {
        "sim-large" => (3, 15),
        _ => (1, 2),
    };
    assert_eq!(usage.cache_read_tokens + usage.cache_write_tokens(), 0, "no cache in these tests");
    Money(
        i128::from(usage.input_tokens) * input * 1_000_000
            + i128::from(usage.output_tokens) * output * 1_000_000,
    )
}

async fn gateway_with_prices(sim: &SimServer, extra: &str) -> (RunningGateway, tempfile::TempPath) {
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), SIM_PRICES).unwrap();
    let prices = prices.into_temp_path();
    let text = format!("{extra}\n[pricing]\nfile = \"{}\"\n", prices.display());
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(sim, &text))).await;
    (gateway, prices)
}

/// Waits for the record of `id` (a disconnect is noticed when the gateway next writes).
async fn wait_for_record(gateway: &RunningGateway, id: &str) -> RequestRecord {
    let wait = async {
        loop {
            let records = gateway.gateway.records().await;
            if let Some(record) = records.into_iter().find(|r| r.id.as_str() == id) {
                break record;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("a record for the call")
}

fn anthropic_stream_body(text: &str, max_tokens: u32) -> Value {
    json!({
        "model": "sim-large", "max_tokens": max_tokens, "stream": true,
        "messages": [{"role": "user", "content": text}]
    })
}

#[tokio::test]
async fn an_anthropic_stream_cut_after_message_start_records_its_input_tokens_and_cost() {
    let sim = sim_server(0.0).await;
    // The cut comes half way through the events: after message_start, before message_delta.
    sim.engine().script_faults([Some(Fault::CutStream), None]);
    let (gateway, _prices) = gateway_with_prices(&sim, "").await;
    let body = anthropic_stream_body("Tell me about the sea", 60);
    let response = client().post(gateway.url("/v1/messages")).json(&body).send().await.unwrap();
    let id = header(&response, "x-request-id");
    let text = response.text().await.unwrap_or_default();
    assert!(text.contains("event: message_start"), "{text}");
    assert!(!text.contains("event: message_delta"), "the stream was cut: {text}");

    let record = gateway.gateway.record(&id).await;
    assert!(matches!(record.status, Status::Error(_)), "{:?}", record.status);
    assert!(record.incomplete, "a cut stream's usage is a lower bound");
    let usage = record.usage.expect("message_start's usage is kept");
    // The same request, not cut, reports the same input side (the simulator has no implicit
    // cache for Anthropic): the cut record's input tokens are the whole prompt.
    let whole = client().post(gateway.url("/v1/messages")).json(&body).send().await.unwrap();
    let whole_id = header(&whole, "x-request-id");
    assert!(whole.text().await.unwrap().contains("event: message_stop"));
    let complete = gateway.gateway.record(&whole_id).await;
    assert_eq!(complete.status, Status::Ok);
    assert!(!complete.incomplete);
    let complete_usage = complete.usage.unwrap();
    assert!(usage.input_tokens > 0);
    assert_eq!(usage.input_tokens, complete_usage.input_tokens);
    assert_eq!(usage.output_tokens, 1, "message_start's count of output so far");
    assert!(usage.output_tokens < complete_usage.output_tokens);
    assert_eq!(
        record.cost,
        Some(expected_cost("sim-large", &usage)),
        "exact cost of what was seen"
    );
    assert_eq!(complete.cost, Some(expected_cost("sim-large", &complete_usage)));
}

#[tokio::test]
async fn a_client_leaving_an_anthropic_stream_records_the_usage_seen_as_incomplete() {
    // Real-time decoding: the answer lasts long enough to leave after its first events.
    let sim = sim_server(1.0).await;
    let (gateway, _prices) = gateway_with_prices(&sim, "").await;
    let body = anthropic_stream_body("Write a long essay about rivers", 400);
    let mut response = client().post(gateway.url("/v1/messages")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id");
    let mut received = String::new();
    while !received.contains("event: message_start") {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(response);

    let record = wait_for_record(&gateway, &id).await;
    assert_eq!(record.status, Status::Error(ErrorKind::ClientDisconnected));
    assert!(record.stream);
    assert!(record.incomplete);
    let usage = record.usage.expect("the usage seen before the client left");
    assert!(usage.input_tokens > 0);
    assert_eq!(record.cost, Some(expected_cost("sim-large", &usage)));
    assert_eq!(record.served_model.as_str(), "sim-large", "read from message_start");
}

#[tokio::test]
async fn a_client_leaving_an_openai_stream_has_unknown_usage_never_zero() {
    let sim = sim_server(1.0).await;
    let (gateway, _prices) = gateway_with_prices(&sim, "").await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({
            "model": "sim-small", "stream": true, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long essay about lakes"}]
        }))
        .send()
        .await
        .unwrap();
    let id = header(&response, "x-request-id");
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);

    let record = wait_for_record(&gateway, &id).await;
    assert_eq!(record.status, Status::Error(ErrorKind::ClientDisconnected));
    assert!(record.incomplete);
    // OpenAI reports usage in the last chunk only: none was seen.
    assert_eq!(record.usage, None);
    assert_eq!(record.cost, None);
}

/// The SSE text with each chunk's `id` and `created` values replaced by placeholders (they
/// differ between two calls); every other byte is kept.
fn normalised(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line.to_owned();
        if let Some(data) = line.strip_prefix("data: ")
            && let Ok(chunk) = serde_json::from_str::<Value>(data.trim_end())
        {
            if let Some(id) = chunk.get("id").and_then(Value::as_str) {
                line = line.replace(&format!("\"id\":\"{id}\""), "\"id\":\"ID\"");
            }
            if let Some(created) = chunk.get("created").and_then(Value::as_i64) {
                line = line.replace(&format!("\"created\":{created}"), "\"created\":0");
            }
        }
        out.push_str(&line);
    }
    out
}

fn chunks(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

/// Sends the same streamed OpenAI request to the upstream directly and through the gateway.
async fn direct_and_proxied(
    sim: &SimServer,
    gateway: &RunningGateway,
    body: &Value,
) -> (String, String, String) {
    let direct = client()
        .post(format!("{}/chat/completions", sim.openai_base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let proxied =
        client().post(gateway.url("/v1/chat/completions")).json(body).send().await.unwrap();
    let id = header(&proxied, "x-request-id");
    (direct, proxied.text().await.unwrap(), id)
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_the_upstream_stream_unchanged() {
    let sim = sim_server(0.0).await;
    let (gateway, _prices) = gateway_with_prices(&sim, "").await;
    let body = json!({
        "model": "sim-small", "stream": true, "max_tokens": 30,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Tell me a story"}]
    });
    let (direct, proxied, id) = direct_and_proxied(&sim, &gateway, &body).await;
    assert_eq!(normalised(&proxied), normalised(&direct), "byte for byte but id and created");
    let chunks = chunks(&proxied);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(chunks[..chunks.len() - 1].iter().all(|chunk| chunk["usage"].is_null()));
    let record = gateway.gateway.record(&id).await;
    let usage = record.usage.unwrap();
    assert_eq!(usage, Usage::from_openai_usage(&last["usage"]).unwrap());
    assert!(!record.incomplete);
}

#[tokio::test]
async fn a_client_that_did_not_ask_for_usage_gets_no_trace_of_it_and_usage_is_still_recorded() {
    let sim = sim_server(0.0).await;
    let (gateway, _prices) = gateway_with_prices(&sim, "").await;
    let body = json!({
        "model": "sim-small", "stream": true, "max_tokens": 30,
        "messages": [{"role": "user", "content": "Tell me a story"}]
    });
    let (direct, proxied, id) = direct_and_proxied(&sim, &gateway, &body).await;
    // The upstream's own stream without include_usage is what the client receives.
    assert_eq!(normalised(&proxied), normalised(&direct), "byte for byte but id and created");
    assert!(proxied.trim_end().ends_with("data: [DONE]"));
    for chunk in chunks(&proxied) {
        assert!(chunk.get("usage").is_none(), "no usage member: {chunk}");
        assert_ne!(chunk["choices"], json!([]), "no usage-only chunk: {chunk}");
    }
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Ok);
    let usage = record.usage.expect("the gateway asked for usage on its own behalf");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(record.cost, Some(expected_cost("sim-small", &usage)));
}

#[tokio::test]
async fn with_include_usage_off_a_stream_nobody_asked_usage_for_has_unknown_cost() {
    let sim = sim_server(0.0).await;
    let text = config_text(&sim, "").replace(
        "[providers.oai]\nkind = \"openai\"",
        "[providers.oai]\nkind = \"openai\"\ninclude_usage = false",
    );
    assert!(text.contains("include_usage = false"));
    let gateway = RunningGateway::start(TestGateway::from_toml(&text)).await;
    let body = json!({
        "model": "sim-small", "stream": true, "max_tokens": 30,
        "messages": [{"role": "user", "content": "Tell me a story"}]
    });
    let (direct, proxied, id) = direct_and_proxied(&sim, &gateway, &body).await;
    assert_eq!(normalised(&proxied), normalised(&direct));
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Ok);
    assert_eq!(record.usage, None, "not asked for: unknown, never zero");
    assert_eq!(record.cost, None);
    assert!(!record.incomplete, "the stream itself was complete");
}

#[test]
fn include_usage_is_refused_for_anthropic_providers() {
    let text = r#"
[providers.ant]
kind = "anthropic"
base_url = "https://api.anthropic.com"
include_usage = true
"#;
    let error = llmopt_gateway::config::from_toml_str(text).unwrap_err().to_string();
    assert!(error.contains("providers.ant.include_usage"), "{error}");
    let openai = r#"
[providers.oai]
kind = "openai"
base_url = "https://api.openai.com/v1"
include_usage = false
"#;
    let config = llmopt_gateway::config::from_toml_str(openai).unwrap();
    assert_eq!(config.providers["oai"].include_usage, Some(false));
}
