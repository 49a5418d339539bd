//! Routing across providers end to end: client → gateway (real port) → a local mock that
//! speaks each provider's real wire format (real port). An OpenAI-protocol call served by an
//! Anthropic model and the reverse, whole and streamed; aliases and adopted routing that cross
//! providers; fields without an equivalent refused in the caller's shape; records priced at the
//! served model with its provider's cache semantics (built-in catalog: claude-haiku-4-5 $1 / M
//! input, $0.10 cache read, $1.25 5-minute cache write, $5 output; gpt-4o-mini $0.15 / M input,
//! $0.075 cached, $0.60 output).

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::post,
};
use llmopt_core::{CacheOutcome, Money, Status, usage::SseDecoder};
use llmopt_experiments::PolicyChange;
use llmopt_optimizer::{FeatureFlag, Policy, Scope, cycle::rules_for};
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client};

/// Anthropic's streaming answer with text and a tool call (as in its documentation).
const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2048,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// OpenAI's chunks of a text answer, with the usage chunk.
const OPENAI_STREAM: &str = "data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":46,\"total_tokens\":1163,\"prompt_tokens_details\":{\"cached_tokens\":1024},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n\
data: [DONE]\n\n";

/// What the mock received: path, body, headers.
#[derive(Default)]
pub struct Seen {
    pub calls: Mutex<Vec<(String, Value, HeaderMap)>>,
}

impl Seen {
    pub fn last(&self) -> (String, Value, HeaderMap) {
        self.calls.lock().unwrap().last().cloned().expect("the mock was called")
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

async fn anthropic(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    seen.calls.lock().unwrap().push(("/v1/messages".into(), request.clone(), headers));
    if request["stream"] == true {
        return ([("content-type", "text/event-stream")], ANTHROPIC_STREAM).into_response();
    }
    Json(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [
            {"type": "text", "text": "Checking"},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 100,
                  "cache_read_input_tokens": 2048, "output_tokens": 89}
    }))
    .into_response()
}

async fn openai(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    seen.calls.lock().unwrap().push(("/v1/chat/completions".into(), request.clone(), headers));
    if request["model"] == "gpt-4.1-mini" {
        let error = json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}});
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(error)).into_response();
    }
    if request["stream"] == true {
        return ([("content-type", "text/event-stream")], OPENAI_STREAM).into_response();
    }
    Json(json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": null},
                     "logprobs": null, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 0}}
    }))
    .into_response()
}

async fn count_tokens(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    seen.calls.lock().unwrap().push(("/v1/messages/count_tokens".into(), request, headers));
    Json(json!({"input_tokens": 14})).into_response()
}

/// Gemini's OpenAI-compatible endpoint: a thinking model's usage counts its thoughts in
/// `total_tokens` only.
async fn gemini(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    let path = "/v1beta/openai/chat/completions";
    seen.calls.lock().unwrap().push((path.into(), request.clone(), headers));
    if request["stream"] == true {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\",\"role\":\"assistant\"},\"index\":0}],\"created\":1,\"id\":\"g1\",\"model\":\"gemini-2.5-flash\",\"object\":\"chat.completion.chunk\"}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"!\",\"role\":\"assistant\"},\"finish_reason\":\"stop\",\"index\":0}],\"created\":1,\"id\":\"g1\",\"model\":\"gemini-2.5-flash\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":1000,\"total_tokens\":1102}}\n\n\
data: [DONE]\n\n";
        return ([("content-type", "text/event-stream")], stream).into_response();
    }
    Json(json!({
        "choices": [{"finish_reason": "stop", "index": 0,
                     "message": {"content": "Hi!", "role": "assistant"}}],
        "created": 1, "id": "g1", "model": "gemini-2.5-flash", "object": "chat.completion",
        "usage": {"completion_tokens": 2, "prompt_tokens": 1000, "total_tokens": 1102}
    }))
    .into_response()
}

/// The mock of both providers (and Gemini's OpenAI-compatible endpoint) on a loopback port;
/// its base URL.
pub async fn mock(seen: Arc<Seen>) -> String {
    let app = Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/chat/completions", post(openai))
        .route("/v1beta/openai/chat/completions", post(gemini))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn gateway(seen: Arc<Seen>) -> RunningGateway {
    gateway_with(seen, "").await
}

async fn gateway_with(seen: Arc<Seen>, extra: &str) -> RunningGateway {
    let base = mock(seen).await;
    let config = format!(
        r#"
{extra}

[providers.gemini]
kind = "openai"
base_url = "{base}/v1beta/openai"
api_key_env = "TEST_OPENAI_KEY"

[routes.gemini]
models = ["gemini-*"]
provider = "gemini"

[providers.oai]
kind = "openai"
base_url = "{base}/v1"
api_key_env = "TEST_OPENAI_KEY"
max_retries = 0

[routes.flaky]
models = ["gpt-4.1-mini"]
provider = "oai"
fallbacks = [{{ provider = "ant", model = "claude-haiku-4-5" }}]

[providers.ant]
kind = "anthropic"
base_url = "{base}"
api_key_env = "TEST_ANTHROPIC_KEY"

[aliases]
"gpt-4o" = "claude-haiku-4-5"

[routes.gpt]
models = ["gpt-4o-mini"]
provider = "oai"

[routes.claude]
models = ["claude-haiku-4-5"]
provider = "ant"

[cache]
enabled = false
"#
    );
    RunningGateway::start(TestGateway::from_toml(&config)).await
}

fn usd(text: &str) -> Money {
    Money::from_usd_str(text).unwrap()
}

/// claude-haiku-4-5 on the mock's usage: 472 × $1 + 100 × $1.25 + 2048 × $0.10 + 89 × $5, per M.
const CLAUDE_COST: &str = "0.0012468";
/// gpt-4o-mini on the mock's usage: 93 × $0.15 + 1024 × $0.075 + 46 × $0.60, per M.
const GPT_COST: &str = "0.00011835";

fn openai_request(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "stop": ["END"]
    })
}

#[tokio::test]
async fn an_openai_call_is_served_by_an_anthropic_model() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&openai_request("claude-haiku-4-5"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    // The caller got an OpenAI chat completion.
    assert_eq!(body["object"], "chat.completion");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["usage"]["prompt_tokens"], 2620);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2048);
    // The provider got an Anthropic request with its own key.
    let (path, upstream, headers) = seen.last();
    assert_eq!(path, "/v1/messages");
    assert_eq!(headers["x-api-key"], "sk-ant-test-secret");
    assert!(headers.get("authorization").is_none());
    assert_eq!(upstream["system"], json!([{"type": "text", "text": "You are terse."}]));
    assert_eq!(upstream["max_tokens"], 4096);
    assert_eq!(upstream["stop_sequences"], json!(["END"]));
    assert_eq!(upstream["tool_choice"], json!({"type": "auto"}));
    assert_eq!(upstream["messages"][0]["content"][1]["source"]["media_type"], "image/png");
    // Recorded as the Anthropic model that served it, at its price with cache writes and reads.
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.provider.as_str(), "ant");
    assert_eq!(record.served_model.as_str(), "claude-haiku-4-5-20251001");
    let usage = record.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_5m_tokens),
        (2620, 2048, 100)
    );
    assert_eq!(record.cost, Some(usd(CLAUDE_COST)));
    assert_eq!(record.stop_reason.as_deref(), Some("tool_use"));
}

#[tokio::test]
async fn an_openai_stream_is_served_by_an_anthropic_stream() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    let mut request = openai_request("gpt-4o");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    let events = SseDecoder::new().push(&bytes);
    assert_eq!(events.last().unwrap().data, b"[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_slice(&e.data).unwrap())
        .collect();
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Checking");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 89);
    let (_, upstream, _) = seen.last();
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["model"], "claude-haiku-4-5", "the alias names the Anthropic model");
    assert!(upstream.get("stream_options").is_none());
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.status, Status::Ok);
    assert_eq!(record.requested_model.as_str(), "gpt-4o");
    assert_eq!(record.served_model.as_str(), "claude-haiku-4-5-20251001");
    assert_eq!(record.cost, Some(usd(CLAUDE_COST)));
    assert!(record.stream && !record.incomplete);
    assert!(record.ttft_us.is_some());
}

fn anthropic_request(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini", "max_tokens": 100, "stream": stream,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say hello."}]
    })
}

#[tokio::test]
async fn an_anthropic_call_is_served_by_an_openai_model_whole_and_streamed() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"], json!([{"type": "text", "text": "Hello there"}]));
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["cache_read_input_tokens"], 1024);
    let (path, upstream, headers) = seen.last();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(headers["authorization"], "Bearer sk-test-secret-0123456789");
    assert!(headers.get("anthropic-version").is_none(), "the caller's Anthropic headers stay");
    assert_eq!(upstream["messages"][0], json!({"role": "system", "content": "You are terse."}));
    assert_eq!(upstream["max_tokens"], 100);
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.provider.as_str(), "oai");
    assert_eq!(record.cost, Some(usd(GPT_COST)));
    assert_eq!(record.endpoint, llmopt_core::Endpoint::Messages);

    let response = client()
        .post(gateway.url("/v1/messages"))
        .json(&anthropic_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    let events = SseDecoder::new().push(&bytes);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let delta: Value = serde_json::from_slice(&events[5].data).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 46);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let (_, upstream, _) = seen.last();
    assert_eq!(upstream["stream_options"], json!({"include_usage": true}));
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.cost, Some(usd(GPT_COST)));
    assert!(!record.incomplete);
}

#[tokio::test]
async fn fields_without_an_equivalent_are_refused_in_the_callers_shape() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    let mut request = openai_request("claude-haiku-4-5");
    request["n"] = json!(2);
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`n`"), "{message}");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let mut request = openai_request("claude-haiku-4-5");
    request["logprobs"] = json!(true);
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("`logprobs`"));

    let mut request = anthropic_request(false);
    request["top_k"] = json!(5);
    let response = client().post(gateway.url("/v1/messages")).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("`top_k`"));
    assert_eq!(seen.count(), 0, "nothing was sent upstream");
    let records = gateway.gateway.records().await;
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.cost.is_none() && !r.status.is_ok()));
}

#[tokio::test]
async fn adopted_routing_crosses_providers_and_keeps_untranslatable_calls_home() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    // An adoption routing gpt-4o-mini to claude-haiku-4-5, as the cycle writes it.
    let scope = Scope { model: Some("gpt-4o-mini".to_owned()), ..Scope::default() };
    let change = PolicyChange { model: Some("claude-haiku-4-5".into()), ..Default::default() };
    let mut policy = Policy::default();
    policy.flags.insert(
        "exp-x".to_owned(),
        FeatureFlag { enabled: true, rollout_percent: 100.0, conditions: Default::default() },
    );
    policy.rules = rules_for("exp-x", &scope, &change, 3_600);
    gateway.gateway.state.optimizer().policy().replace(policy, "test", 0).unwrap();

    let ask = |extra: Value| {
        let mut body = json!({"model": "gpt-4o-mini", "temperature": 0,
                              "messages": [{"role": "user", "content": "hello"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        client().post(gateway.url("/v1/chat/completions")).json(&body).send()
    };
    let response = ask(json!({})).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-llmopt-served-model"], "claude-haiku-4-5-20251001");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(seen.last().0, "/v1/messages");
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.cost, Some(usd(CLAUDE_COST)));
    assert_eq!(record.cache, CacheOutcome::Bypass);
    assert_eq!(record.tags.get(llmopt_core::APPLIED_TAG).map(String::as_str), Some("exp-x"));

    // `n = 2` cannot go to Anthropic: the configured route serves it, uncounted by the change.
    let response = ask(json!({"n": 2})).await.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.bytes().await;
    assert_eq!(seen.last().0, "/v1/chat/completions");
    let record = gateway.gateway.record(&id).await;
    assert_eq!(record.provider.as_str(), "oai");
    assert_eq!(record.cost, Some(usd(GPT_COST)));
    assert!(!record.tags.contains_key(llmopt_core::APPLIED_TAG));
}

#[tokio::test]
async fn count_tokens_passes_through_with_the_keys_model_list_and_is_not_priced() {
    let seen = Arc::new(Seen::default());
    let gateway =
        gateway_with(Arc::clone(&seen), "[auth]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"").await;
    let made: Value = client()
        .post(gateway.url("/api/keys"))
        .bearer_auth("admin-secret")
        .json(&json!({"tenant": "team-a", "models": ["claude-*"], "budget_usd": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let count = |key: Option<&str>, model: &str| {
        let mut request = client()
            .post(gateway.url("/v1/messages/count_tokens"))
            .header("anthropic-version", "2023-06-01")
            .json(
                &json!({"model": model, "messages": [{"role": "user", "content": "Hello, world"}]}),
            );
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    let refused = count(None, "claude-haiku-4-5").await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    let refused = count(Some(&key), "gpt-4o-mini").await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "model_not_allowed");
    // A budget of zero is spent, but counting spends nothing: the count is still answered.
    let counted = count(Some(&key), "claude-haiku-4-5").await.unwrap();
    assert_eq!(counted.status(), 200);
    let body: Value = counted.json().await.unwrap();
    assert_eq!(body, json!({"input_tokens": 14}));
    let (path, upstream, headers) = seen.last();
    assert_eq!(path, "/v1/messages/count_tokens");
    assert_eq!(headers["x-api-key"], "sk-ant-test-secret", "the provider's key, not the caller's");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(upstream["messages"][0]["content"], "Hello, world");
    assert_eq!(seen.count(), 1);
    assert!(gateway.gateway.records().await.is_empty(), "a count is not a priced call");
}

#[tokio::test]
async fn gemini_is_served_through_its_openai_compatible_endpoint() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    for stream in [false, true] {
        let response = client()
            .post(gateway.url("/v1/chat/completions"))
            .json(&json!({"model": "gemini-2.5-flash", "stream": stream,
                          "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let _ = response.bytes().await.unwrap();
        let (path, _, headers) = seen.last();
        assert_eq!(path, "/v1beta/openai/chat/completions");
        assert_eq!(headers["authorization"], "Bearer sk-test-secret-0123456789");
        let record = gateway.gateway.record(&id).await;
        assert_eq!(record.provider.as_str(), "gemini");
        let usage = record.usage.unwrap();
        // 100 thinking tokens counted only in the total are billed as output:
        // 1000 × $0.30 + 102 × $2.50 per M.
        assert_eq!((usage.output_tokens, usage.reasoning_tokens), (102, 100), "stream {stream}");
        assert_eq!(record.cost, Some(usd("0.000555")), "stream {stream}");
    }
}

#[tokio::test]
async fn a_fallback_may_cross_providers_and_one_that_cannot_take_the_call_leaves_the_first_error() {
    let seen = Arc::new(Seen::default());
    let gateway = gateway(Arc::clone(&seen)).await;
    let ask = |extra: Value| {
        let mut body =
            json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hello"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        client().post(gateway.url("/v1/chat/completions")).json(&body).send()
    };
    // The OpenAI primary answers 503; the Anthropic fallback serves, translated.
    let response = ask(json!({})).await.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let record = gateway.gateway.record(&id).await;
    assert_eq!((record.provider.as_str(), record.cost), ("ant", Some(usd(CLAUDE_COST))));
    // With `n = 2` the fallback cannot take the call: the primary's 503 is the answer.
    let response = ask(json!({"n": 2})).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "overloaded");
    assert_eq!(seen.last().0, "/v1/chat/completions");
}
