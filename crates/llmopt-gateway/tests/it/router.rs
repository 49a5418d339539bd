//! Router tests through `tower::ServiceExt::oneshot`: no socket.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use llmopt_core::{ErrorKind, Status};
use llmopt_gateway::{auth::hash_key, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::TestGateway;

const MINIMAL: &str = r#"
[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[routes.all]
models = ["gpt-*"]
provider = "up"
[limits]
max_body_bytes = 200
"#;

async fn call(
    gateway: &TestGateway,
    request: Request<Body>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let response = router(gateway.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value, headers)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header("content-type", "application/json").body(body.into()).unwrap()
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let gateway = TestGateway::from_toml(MINIMAL);
    let (status, body, _) =
        call(&gateway, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, _, _) = call(&gateway, Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    gateway.state.set_ready(false);
    let (status, _, _) = call(&gateway, Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // A refused call shows in the metrics.
    call(&gateway, post("/v1/chat/completions", "not json")).await;
    let (status, body, _) =
        call(&gateway, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for name in [
        "llmopt_requests_total",
        "llmopt_errors_total{kind=\"invalid_request\"} 1",
        "llmopt_collector_queue_depth",
        "llmopt_gateway_overhead_seconds",
        "llmopt_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[tokio::test]
async fn refusals_use_each_protocol_shape_and_are_recorded() {
    let gateway = TestGateway::from_toml(MINIMAL);
    // Unknown model: 404 in both shapes.
    let (status, body, headers) = call(
        &gateway,
        post("/v1/chat/completions", json!({"model": "llama", "messages": []}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("llama"));
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    let (status, body, _) = call(
        &gateway,
        post("/v1/messages", json!({"model": "llama", "max_tokens": 1}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
    // Over the body limit: 413.
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(300)}]});
    let (status, body, _) = call(&gateway, post("/v1/messages", big.to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["type"], "request_too_large");
    let (status, body, _) = call(&gateway, post("/v1/chat/completions", big.to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // Missing model.
    let (status, body, _) = call(&gateway, post("/v1/chat/completions", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("model"));

    let record = gateway.record(&id).await;
    assert_eq!(record.status, Status::Error(ErrorKind::NotFound));
    assert_eq!(record.requested_model.as_str(), "llama");
    assert_eq!(gateway.records().await.len(), 5);
}

#[tokio::test]
async fn gateway_keys_map_to_tenants_and_admin_writes_need_the_token() {
    let config = format!(
        "{MINIMAL}\n[auth]\nkeys = [{{ sha256 = \"{}\", tenant = \"team-a\" }}]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n",
        hash_key("gw-key-1")
    );
    let gateway = TestGateway::from_toml(&config);
    let body = json!({"model": "nomatch", "messages": []}).to_string();
    let (status, response, _) = call(&gateway, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(response["error"]["type"], "authentication_error");
    let wrong = Request::post("/v1/messages")
        .header("x-api-key", "gw-key-2")
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, response, _) = call(&gateway, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(response["error"]["type"], "authentication_error");
    let right = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer gw-key-1")
        .body(Body::from(body))
        .unwrap();
    let (status, _, headers) = call(&gateway, right).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "authenticated, then no route");
    let record = gateway.record(headers["x-request-id"].to_str().unwrap()).await;
    assert_eq!(record.tenant.map(|t| t.0), Some("team-a".to_owned()));

    let reload = |token: Option<&str>| {
        let mut request = Request::post("/api/config/reload");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let (status, _, _) = call(&gateway, reload(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token at all: 401");
    let (status, _, _) = call(&gateway, reload(Some("gw-key-1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The right token gets through; with no config source the reload itself is refused.
    let (status, body, _) = call(&gateway, reload(Some("admin-secret"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let gateway =
        TestGateway::from_toml(&MINIMAL.replace("max_body_bytes = 200", "max_header_bytes = 1000"));
    let request = Request::post("/v1/chat/completions")
        .header("x-padding", "p".repeat(2000))
        .body(Body::from(json!({"model": "gpt-4o"}).to_string()))
        .unwrap();
    let (status, body, _) = call(&gateway, request).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let gateway = TestGateway::from_toml(
        &MINIMAL.replace("max_body_bytes = 200", "max_concurrent_requests = 1"),
    );
    let _held = gateway.state.try_enter(1).unwrap();
    let (status, body, headers) = call(
        &gateway,
        post("/v1/messages", json!({"model": "gpt-4o", "max_tokens": 1}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn ingest_accepts_good_items_and_explains_bad_ones() {
    let gateway = TestGateway::from_toml(
        MINIMAL.replace("max_body_bytes = 200", "max_body_bytes = 100000").as_str(),
    );
    let now = llmopt_core::SystemClock.now_ms();
    let good = json!({"id": "ext-1", "ts_ms": now - 1000, "provider": "openai", "model": "gpt-4o-mini",
        "latency_us": 1200, "usage": {"input_tokens": 1000, "output_tokens": 100}});
    let bad_usage = json!({"id": "ext-2", "ts_ms": now, "provider": "openai", "model": "gpt-4o-mini",
        "usage": {"input_tokens": 10, "cache_read_tokens": 20, "output_tokens": 1}});
    let no_provider = json!({"id": "ext-3", "model": "gpt-4o-mini"});
    let future = json!({"id": "ext-4", "ts_ms": now + 3_600_000, "provider": "openai", "model": "gpt-4o-mini"});
    let ndjson = format!("{good}\n{bad_usage}\nnot json\n{no_provider}\n\n{future}\n");
    let (status, body, _) = call(&gateway, post("/v1/records", ndjson)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    let rejected: Vec<u64> =
        body["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(rejected, vec![1, 2, 3, 4], "{body}");
    let record = gateway.record("ext-1").await;
    assert_eq!(record.endpoint, llmopt_core::Endpoint::External);
    // gpt-4o-mini: 0.15 USD/M input, 0.60 USD/M output → 1000 × 150 000 + 100 × 600 000 pico.
    assert_eq!(record.cost, Some(llmopt_core::Money(150_000_000 + 60_000_000)));
    // A JSON array works too.
    let (status, body, _) =
        call(&gateway, post("/v1/records", json!([good.clone(), {"x": 1}]).to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
}

#[tokio::test]
async fn stats_and_masked_config() {
    let gateway = TestGateway::from_toml(MINIMAL);
    let (status, body, _) =
        call(&gateway, Request::get("/api/stats").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_object(), "{body}");
    let config = format!("{MINIMAL}\n")
        .replace("[providers.up]\n", "[providers.up]\napi_key_env = \"TEST_OPENAI_KEY\"\n");
    let gateway = TestGateway::from_toml(&config);
    let (status, body, _) =
        call(&gateway, Request::get("/api/config").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(text.contains("TEST_OPENAI_KEY"));
    assert!(!text.contains(crate::support::TEST_OPENAI_KEY), "{text}");
}

use llmopt_core::Clock;
