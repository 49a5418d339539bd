//! `/v1/embeddings` and the Responses API end to end: client → gateway (real port) → a local
//! mock of OpenAI's wire formats (real port), with usage priced from the built-in catalog
//! (text-embedding-3-small $0.02 / M; gpt-4o-mini $0.15 / M input, $0.075 / M cached input,
//! $0.60 / M output), the records, the cache and the stored-response passthrough checked.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use llmopt_core::{CacheOutcome, Endpoint, Money, Status};
use serde_json::{Value, json};

use crate::support::{RunningGateway, TEST_OPENAI_KEY, TestGateway, client};

const ADMIN: &str = "admin-secret";

/// The events of one streamed response, as OpenAI sends them.
const STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_stream\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o-mini-2024-07-18\",\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_stream\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4o-mini-2024-07-18\",\"usage\":{\"input_tokens\":1000,\"input_tokens_details\":{\"cached_tokens\":400},\"output_tokens\":300,\"output_tokens_details\":{\"reasoning_tokens\":100},\"total_tokens\":1300}}}\n\n";

#[derive(Default)]
struct Mock {
    calls: AtomicUsize,
    /// Authorization headers seen.
    keys: std::sync::Mutex<Vec<String>>,
    /// Bodies of `POST /v1/responses` seen.
    bodies: std::sync::Mutex<Vec<Value>>,
}

fn seen(mock: &Mock, headers: &HeaderMap) {
    mock.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    mock.keys.lock().unwrap().push(key.to_owned());
}

async fn embeddings(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    seen(&mock, &headers);
    let request: Value = serde_json::from_str(&body).unwrap();
    Json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093, 0.0157]}],
        "model": request["model"],
        "usage": {"prompt_tokens": 8, "total_tokens": 8}
    }))
    .into_response()
}

async fn responses(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    seen(&mock, &headers);
    let request: Value = serde_json::from_str(&body).unwrap();
    mock.bodies.lock().unwrap().push(request.clone());
    if request["stream"] == true {
        return ([("content-type", "text/event-stream")], STREAM).into_response();
    }
    let n = mock.calls.load(Ordering::SeqCst);
    Json(json!({
        "id": format!("resp_{n}"), "object": "response", "status": "completed",
        "model": "gpt-4o-mini-2024-07-18",
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                  "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20},
                  "total_tokens": 150}
    }))
    .into_response()
}

async fn stored(Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    Json(json!({"id": id, "object": "response", "query": query})).into_response()
}

async fn input_items(Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    Json(json!({"object": "list", "data": [], "for": id, "query": query})).into_response()
}

async fn deleted(Path(id): Path<String>) -> Response {
    Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
}

async fn start_mock() -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/responses/{id}", get(stored).delete(deleted))
        .route("/v1/responses/{id}/input_items", get(input_items))
        .route("/v1/responses/missing_one", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), mock)
}

async fn gateway(cache: bool) -> (RunningGateway, Arc<Mock>, llmopt_llm::sim::SimServer) {
    let (base, mock) = start_mock().await;
    let sim = crate::support::sim_server(0.0).await;
    let text = format!(
        r#"
[auth]
admin_token_env = "TEST_ADMIN_TOKEN"

[cache]
enabled = {cache}

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key_env = "TEST_OPENAI_KEY"
timeout_ms = 5000

[providers.ant]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"

[routes.openai]
models = ["text-embedding-*", "gpt-4o-mini"]
provider = "mock"

[routes.anthropic]
models = ["claude-*"]
provider = "ant"

[routes.capped]
models = ["gpt-4.1-mini", "o4-mini"]
provider = "mock"
max_tokens_cap = 100
"#,
        anthropic = sim.anthropic_base_url(),
    );
    let gateway = RunningGateway::start(TestGateway::from_toml(&text)).await;
    (gateway, mock, sim)
}

async fn make_key(gateway: &RunningGateway, tenant: &str) -> (String, String) {
    let response = client()
        .post(gateway.url("/api/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": tenant, "budget_usd": "10"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn budget_spend(gateway: &RunningGateway, key_id: &str) -> f64 {
    let budgets: Value = client()
        .get(gateway.url("/api/budgets"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = budgets["budgets"].as_array().unwrap().iter().find(|r| r["id"] == key_id).unwrap();
    row["spend_usd"].as_f64().unwrap()
}

#[tokio::test]
async fn embeddings_are_priced_recorded_cached_and_counted_against_the_key() {
    let (gateway, mock, _sim) = gateway(true).await;
    let (key_id, key) = make_key(&gateway, "team-a").await;
    let request = json!({"model": "text-embedding-3-small", "input": "The food was delicious"});
    let send =
        || client().post(gateway.url("/v1/embeddings")).bearer_auth(&key).json(&request).send();
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-llmopt-cache"), "miss");
    let first_id = header(&first, "x-request-id").to_owned();
    let first_body = first.bytes().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(header(&second, "x-llmopt-cache"), "hit", "embeddings are cached by default");
    let second_id = header(&second, "x-request-id").to_owned();
    assert_eq!(second.bytes().await.unwrap(), first_body);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        mock.keys.lock().unwrap().as_slice(),
        [format!("Bearer {TEST_OPENAI_KEY}")],
        "the provider's key upstream, never the client's"
    );

    let miss = gateway.gateway.record(&first_id).await;
    assert_eq!(miss.endpoint, Endpoint::Embeddings);
    assert_eq!(miss.status, Status::Ok);
    assert_eq!(miss.provider.as_str(), "mock");
    let usage = miss.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (8, 0));
    // 8 tokens × $0.02 / M = 8 × 20,000 picodollars.
    assert_eq!(miss.cost, Some(Money(160_000)));
    let hit = gateway.gateway.record(&second_id).await;
    assert_eq!(
        (hit.cache, hit.cost, hit.saved_cost),
        (CacheOutcome::Hit, Some(Money(0)), miss.cost)
    );
    assert_eq!(budget_spend(&gateway, &key_id).await, Money(160_000).as_usd_f64());

    // A model whose route's provider does not serve embeddings: a JSON 400, recorded.
    let response = client()
        .post(gateway.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": "claude-haiku-4-5", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("does not speak"), "{body}");
    for (request, status) in [
        (json!({"input": "no model"}), 400),
        (json!({"model": "unrouted-model", "input": "x"}), 404),
    ] {
        let response = client()
            .post(gateway.url("/v1/embeddings"))
            .bearer_auth(&key)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{request}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
    }
    let response =
        client().post(gateway.url("/v1/embeddings")).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 401, "a key is needed");
}

/// 1,000 input tokens of which 400 cached, 300 output (100 of them reasoning) at gpt-4o-mini's
/// prices: 600 × 150,000 + 400 × 75,000 + 300 × 600,000 picodollars.
const STREAM_COST: Money = Money(600 * 150_000 + 400 * 75_000 + 300 * 600_000);
/// 100 input (40 cached), 50 output.
const WHOLE_COST: Money = Money(60 * 150_000 + 40 * 75_000 + 50 * 600_000);

#[tokio::test]
async fn responses_are_priced_from_the_final_object_and_stored_ones_stay_with_their_tenant() {
    let (gateway, mock, _sim) = gateway(true).await;
    let (_, key) = make_key(&gateway, "team-a").await;
    let (_, other) = make_key(&gateway, "team-b").await;
    let create = |body: Value, key: &str| {
        client().post(gateway.url("/v1/responses")).bearer_auth(key).json(&body).send()
    };
    let response = create(json!({"model": "gpt-4o-mini", "input": "Say hi"}), &key).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-llmopt-cache"), "bypass", "stored responses are not cached");
    let request_id = header(&response, "x-request-id").to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let record = gateway.gateway.record(&request_id).await;
    assert_eq!(record.endpoint, Endpoint::Responses);
    assert_eq!(record.served_model.as_str(), "gpt-4o-mini-2024-07-18");
    let usage = record.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens),
        (100, 40, 50, 20)
    );
    assert_eq!(record.cost, Some(WHOLE_COST));
    assert_eq!(record.stop_reason.as_deref(), Some("completed"));

    // The stored response: its tenant reads it, items and all; another tenant cannot.
    let get = |path: String, key: &str| client().get(gateway.url(&path)).bearer_auth(key).send();
    let read = get(format!("/v1/responses/{id}?include[]=x"), &key).await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(
        read.json::<Value>().await.unwrap(),
        json!({"id": id, "object": "response", "query": "include[]=x"})
    );
    let items = get(format!("/v1/responses/{id}/input_items?limit=5"), &key).await.unwrap();
    assert_eq!(items.json::<Value>().await.unwrap()["query"], "limit=5");
    for path in [format!("/v1/responses/{id}"), format!("/v1/responses/{id}/input_items")] {
        let refused = get(path.clone(), &other).await.unwrap();
        assert_eq!(refused.status(), 404, "{path} as another tenant");
        assert_eq!(
            refused.json::<Value>().await.unwrap()["error"]["type"],
            "invalid_request_error"
        );
    }
    let unseen = get("/v1/responses/resp_made_elsewhere".to_owned(), &key).await.unwrap();
    assert_eq!(unseen.status(), 404);
    let bad = get("/v1/responses/bad%2F..%2Fid".to_owned(), &key).await.unwrap();
    assert_eq!(bad.status(), 400);
    let deleted = client()
        .delete(gateway.url(&format!("/v1/responses/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap()["deleted"], true);
    assert_eq!(get(format!("/v1/responses/{id}"), &key).await.unwrap().status(), 404);

    // Cacheable only with store false, no previous_response_id (and temperature 0).
    let calls_before = mock.calls.load(Ordering::SeqCst);
    let unstored =
        json!({"model": "gpt-4o-mini", "input": "Say hi", "store": false, "temperature": 0});
    let first = create(unstored.clone(), &key).await.unwrap();
    assert_eq!(header(&first, "x-llmopt-cache"), "miss");
    let second = create(unstored.clone(), &key).await.unwrap();
    assert_eq!(header(&second, "x-llmopt-cache"), "hit");
    let mut continued = unstored.clone();
    continued["previous_response_id"] = json!("resp_1");
    let third = create(continued, &key).await.unwrap();
    assert_eq!(header(&third, "x-llmopt-cache"), "bypass");
    assert_eq!(mock.calls.load(Ordering::SeqCst), calls_before + 2);
}

#[tokio::test]
async fn a_streamed_response_passes_its_events_through_and_is_priced_from_response_completed() {
    let (gateway, _mock, _sim) = gateway(false).await;
    let (key_id, key) = make_key(&gateway, "team-a").await;
    let response = client()
        .post(gateway.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "input": "Say hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let request_id = header(&response, "x-request-id").to_owned();
    assert_eq!(response.text().await.unwrap(), STREAM, "every event byte for byte");
    let record = gateway.gateway.record(&request_id).await;
    assert_eq!(
        (record.endpoint, record.status, record.stream),
        (Endpoint::Responses, Status::Ok, true)
    );
    assert!(!record.incomplete);
    let usage = record.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens),
        (1000, 400, 300, 100)
    );
    assert_eq!(record.cost, Some(STREAM_COST));
    assert!(record.ttft_us.is_some());
    assert_eq!(budget_spend(&gateway, &key_id).await, STREAM_COST.as_usd_f64());
    // The streamed response was stored upstream: its tenant can read it.
    let read = client()
        .get(gateway.url("/v1/responses/resp_stream"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn responses_get_the_output_cap_the_sampled_flag_and_a_cache_rule_of_their_own() {
    let (gateway, mock, _sim) = gateway(true).await;
    let send = |body: Value| client().post(gateway.url("/v1/responses")).json(&body).send();
    let last_body = || mock.bodies.lock().unwrap().last().cloned().unwrap();

    // The route's cap lands on max_output_tokens: absent or above it, the cap; below, as asked.
    for (asked, sent) in [(None, 100), (Some(500), 100), (Some(50), 50)] {
        let mut body = json!({"model": "gpt-4.1-mini", "input": "Hi", "temperature": 0});
        if let Some(asked) = asked {
            body["max_output_tokens"] = json!(asked);
        }
        let response = send(body).await.unwrap();
        assert_eq!(response.status(), 200);
        let id = header(&response, "x-request-id").to_owned();
        let _ = response.bytes().await;
        assert_eq!(last_body()["max_output_tokens"], sent, "asked {asked:?}");
        let record = gateway.gateway.record(&id).await;
        assert_eq!(record.max_tokens, Some(sent));
        assert!(!record.sampled, "temperature 0");
    }

    // Sampled: no temperature (the default is 1), or a reasoning model, which takes none.
    for (body, sampled) in [
        (json!({"model": "gpt-4o-mini", "input": "Hi"}), true),
        (json!({"model": "gpt-4o-mini", "input": "Hi", "temperature": 0}), false),
        (json!({"model": "o4-mini", "input": "Hi"}), true),
        (
            json!({"model": "gpt-4o-mini", "input": "Hi", "temperature": 0, "reasoning": {"effort": "low"}}),
            true,
        ),
    ] {
        let response = send(body.clone()).await.unwrap();
        let id = header(&response, "x-request-id").to_owned();
        let _ = response.bytes().await;
        assert_eq!(gateway.gateway.record(&id).await.sampled, sampled, "{body}");
    }

    // The cache: a deterministic answer of the request alone is cached; sampling, state kept
    // upstream or tools that look at the world are not.
    let cached = json!({"model": "gpt-4o-mini", "input": "Cache me", "temperature": 0, "store": false,
                        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]});
    let outcomes = |body: Value| async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let response = send(body.clone()).await.unwrap();
            seen.push(header(&response, "x-llmopt-cache").to_owned());
            let _ = response.bytes().await;
        }
        seen
    };
    assert_eq!(outcomes(cached.clone()).await, ["miss", "hit"]);
    let mut uncached = Vec::new();
    for (key, value) in [
        ("tools", json!([{"type": "web_search"}])),
        ("background", json!(true)),
        ("conversation", json!("conv_1")),
        ("prompt", json!({"id": "pmpt_1"})),
        ("model", json!("o4-mini")),
        ("temperature", json!(0.7)),
        ("store", json!(true)),
    ] {
        let mut body = cached.clone();
        body[key] = value;
        body["input"] = json!(format!("Cache me with {key}"));
        uncached.push((key, outcomes(body).await));
    }
    for (key, seen) in uncached {
        assert_eq!(seen, ["bypass", "bypass"], "{key}");
    }
    // A prompt template pinned to a version is the same answer each time.
    let mut pinned = cached;
    pinned["prompt"] = json!({"id": "pmpt_1", "version": "3"});
    assert_eq!(outcomes(pinned).await, ["miss", "hit"]);
}
