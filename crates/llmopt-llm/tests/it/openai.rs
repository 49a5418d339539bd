use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use llmopt_core::{Protocol, Usage};
use llmopt_llm::{
    ChatRequest, OpenAiCompatible, OpenAiConfig, Provider, ProviderError, Retry, RetryConfig,
    Timeouts, decorators::is_retryable,
};
use serde_json::{Value, json};

use crate::upstream::{Scripted, Upstream, collect};

/// A real-shaped OpenAI answer (gpt-4o, cached prompt, reasoning tokens).
pub const WHOLE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1731000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":64,"audio_tokens":0}},"system_fingerprint":"fp_1"}"#;

const ROLE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const HELLO: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

pub fn request(body: Value) -> ChatRequest {
    ChatRequest::from_slice(Protocol::OpenAi, &serde_json::to_vec(&body).unwrap()).unwrap()
}

fn simple() -> ChatRequest {
    request(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}))
}

fn client(upstream: &Upstream, timeouts: Timeouts) -> OpenAiCompatible {
    OpenAiCompatible::new(
        OpenAiConfig::new("openai", format!("{}/v1", upstream.base))
            .with_api_key("sk-test-key")
            .with_timeouts(timeouts),
    )
    .unwrap()
}

fn fast_retry(inner: Arc<dyn Provider>) -> Retry {
    Retry::new(
        inner,
        RetryConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryConfig::default()
        },
    )
}

#[tokio::test]
async fn whole_answer_passes_through_with_normalised_usage() {
    let upstream =
        Upstream::start(vec![Scripted::json(200, WHOLE).header("x-request-id", "req_1")]).await;
    let provider = client(&upstream, Timeouts::default());
    let mut request = request(json!({
        "model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "response_format": {"type": "json_object"}, "seed": 7, "metadata": {"k": "v"},
        "a_field_from_the_future": [1, 2, 3]
    }));
    request.headers.push(("openai-organization".into(), "org-1".into()));
    request.headers.push(("authorization".into(), "Bearer stolen".into()));
    let sent = request.to_value();
    let response = provider.chat(request).await.unwrap();

    assert_eq!(response.body, Bytes::from_static(WHOLE.as_bytes()), "body byte for byte");
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 2006,
            cache_read_tokens: 1920,
            output_tokens: 300,
            reasoning_tokens: 64,
            ..Usage::default()
        })
    );
    assert_eq!(response.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(response.stop_reason.as_deref(), Some("stop"));
    assert!(response.headers.iter().any(|(n, v)| n == "x-request-id" && v == "req_1"));
    assert!(response.first_byte <= response.elapsed);

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(
        received[0].headers["authorization"], "Bearer sk-test-key",
        "own key, not the caller's"
    );
    assert_eq!(received[0].headers["openai-organization"], "org-1");
    assert_eq!(received[0].json(), sent, "unknown fields are kept");
}

#[tokio::test]
async fn every_retryable_status_is_retried() {
    for status in [429u16, 500, 502, 503, 504] {
        let error_body = r#"{"error":{"message":"try again","type":"server_error"}}"#;
        let upstream =
            Upstream::start(vec![Scripted::json(status, error_body), Scripted::json(200, WHOLE)])
                .await;
        let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
        let response = provider.chat(simple()).await.unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(response.status, 200);
        assert_eq!(upstream.received().len(), 2, "status {status}: one retry");
    }
}

#[tokio::test]
async fn statuses_map_to_typed_errors() {
    let upstream = Upstream::start(vec![
        Scripted::json(429, r#"{"error":{"code":"rate_limit_exceeded"}}"#)
            .header("retry-after", "3"),
        Scripted::json(503, r#"{"error":{}}"#).header("retry-after-ms", "1500"),
    ])
    .await;
    let provider = client(&upstream, Timeouts::default());
    match provider.chat(simple()).await.unwrap_err() {
        ProviderError::RateLimited { retry_after, body } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
            assert_eq!(
                body.unwrap(),
                Bytes::from_static(br#"{"error":{"code":"rate_limit_exceeded"}}"#)
            );
        }
        other => panic!("{other:?}"),
    }
    match provider.chat(simple()).await.unwrap_err() {
        ProviderError::Upstream { status: 503, retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_bounded() {
    // 0.3 s asked: the retry waits at least that long, although the jitter ceiling is 5 ms.
    let upstream = Upstream::start(vec![
        Scripted::json(429, "{}").header("retry-after", "0.3"),
        Scripted::json(200, WHOLE),
    ])
    .await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    let started = std::time::Instant::now();
    provider.chat(simple()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(upstream.received().len(), 2);

    // A Retry-After beyond the configured maximum goes back to the caller at once.
    let upstream =
        Upstream::start(vec![Scripted::json(429, "{}").header("retry-after", "120")]).await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    let error = provider.chat(simple()).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(120))
    );
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let body = r#"{"error":{"message":"Invalid 'messages'","type":"invalid_request_error","param":"messages","code":null}}"#;
    let upstream =
        Upstream::start(vec![Scripted::json(400, body), Scripted::json(200, WHOLE)]).await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    match provider.chat(simple()).await.unwrap_err() {
        ProviderError::Upstream { status: 400, body: got, .. } => {
            assert_eq!(got, Bytes::from(body))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response_and_not_retried() {
    let upstream = Upstream::start(vec![
        Scripted::json(200, r#"{"id":"chatcmpl-1","choices":[{"#),
        Scripted::json(200, WHOLE),
    ])
    .await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    let error = provider.chat(simple()).await.unwrap_err();
    assert!(matches!(error, ProviderError::InvalidResponse(_)), "{error:?}");
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn stream_asks_for_usage_and_strips_it_for_a_client_that_did_not() {
    let upstream = Upstream::start(vec![Scripted::sse(&[ROLE, HELLO, FINISH, USAGE, DONE])]).await;
    let provider = client(&upstream, Timeouts::default());
    let mut request = simple();
    request.set("stream", &true).unwrap();
    request.set("stream_options", &json!({"some_future_option": 1})).unwrap();
    let collected = collect(provider.chat_stream(request).await.unwrap()).await;

    assert_eq!(collected.bytes, [ROLE, HELLO, FINISH, DONE].concat().into_bytes());
    assert!(collected.errors.is_empty());
    let outcome = collected.outcome;
    assert_eq!(
        outcome.usage,
        Some(Usage { input_tokens: 12, output_tokens: 2, ..Usage::default() })
    );
    assert_eq!(outcome.stop_reason.as_deref(), Some("stop"));
    assert_eq!(outcome.model.as_deref(), Some("gpt-4o-mini"));
    assert!(outcome.complete);
    assert!(outcome.time_to_first_token.is_some());
    let sent = upstream.received()[0].json();
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"some_future_option": 1, "include_usage": true}));
}

#[tokio::test]
async fn stream_keeps_usage_chunk_for_a_client_that_asked() {
    let upstream = Upstream::start(vec![Scripted::sse(&[ROLE, HELLO, FINISH, USAGE, DONE])]).await;
    let provider = client(&upstream, Timeouts::default());
    let mut request = simple();
    request.set("stream", &true).unwrap();
    request.set("stream_options", &json!({"include_usage": true})).unwrap();
    let collected = collect(provider.chat_stream(request).await.unwrap()).await;
    assert_eq!(collected.bytes, [ROLE, HELLO, FINISH, USAGE, DONE].concat().into_bytes());
    assert_eq!(collected.outcome.usage.unwrap().input_tokens, 12);
}

#[tokio::test]
async fn with_include_usage_off_the_request_and_stream_pass_as_the_client_sent_them() {
    let upstream = Upstream::start(vec![
        Scripted::sse(&[ROLE, HELLO, FINISH, DONE]),
        Scripted::sse(&[ROLE, HELLO, FINISH, USAGE, DONE]),
    ])
    .await;
    let provider = OpenAiCompatible::new(
        OpenAiConfig::new("vllm", format!("{}/v1", upstream.base)).with_include_usage(false),
    )
    .unwrap();
    let collected = collect(provider.chat_stream(simple()).await.unwrap()).await;
    assert_eq!(collected.bytes, [ROLE, HELLO, FINISH, DONE].concat().into_bytes());
    assert_eq!(collected.outcome.usage, None, "nobody asked: unknown, not zero");
    // A client that asks itself still gets (and the gateway still reads) its usage.
    let mut asking = simple();
    asking.set("stream_options", &json!({"include_usage": true})).unwrap();
    let collected = collect(provider.chat_stream(asking).await.unwrap()).await;
    assert_eq!(collected.bytes, [ROLE, HELLO, FINISH, USAGE, DONE].concat().into_bytes());
    assert_eq!(collected.outcome.usage.unwrap().input_tokens, 12);
    let sent = upstream.received();
    assert_eq!(sent[0].json().get("stream_options"), None, "nothing added");
    assert_eq!(sent[0].json()["stream"], json!(true));
    assert_eq!(sent[1].json()["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn stream_without_usage_has_unknown_usage() {
    // A server that ignores include_usage (older vLLM, some proxies).
    let upstream = Upstream::start(vec![Scripted::sse(&[ROLE, HELLO, FINISH, DONE])]).await;
    let provider = client(&upstream, Timeouts::default());
    let collected = collect(provider.chat_stream(simple()).await.unwrap()).await;
    assert_eq!(collected.bytes, [ROLE, HELLO, FINISH, DONE].concat().into_bytes());
    assert_eq!(collected.outcome.usage, None);
    assert!(collected.outcome.complete);
}

#[tokio::test]
async fn stream_cut_half_way_reports_unknown_usage_and_is_not_retried() {
    let mut cut = Scripted::sse(&[ROLE, HELLO, &FINISH[..30]]);
    cut.cut = true;
    let upstream =
        Upstream::start(vec![cut, Scripted::sse(&[ROLE, HELLO, FINISH, USAGE, DONE])]).await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    let collected = collect(provider.chat_stream(simple()).await.unwrap()).await;
    assert_eq!(
        collected.bytes,
        [ROLE, HELLO].concat().into_bytes(),
        "half an event is not forwarded"
    );
    assert_eq!(collected.errors.len(), 1);
    assert!(matches!(collected.errors[0], ProviderError::Transport(_)), "{:?}", collected.errors);
    assert_eq!(collected.outcome.usage, None);
    assert!(!collected.outcome.complete);
    assert_eq!(upstream.received().len(), 1, "a stream that reached the caller is never retried");
}

#[tokio::test]
async fn stream_failing_before_its_first_byte_is_retried() {
    let upstream = Upstream::start(vec![
        Scripted::json(503, r#"{"error":{}}"#),
        Scripted::sse(&[ROLE, HELLO, FINISH, USAGE, DONE]),
    ])
    .await;
    let provider = fast_retry(Arc::new(client(&upstream, Timeouts::default())));
    let collected = collect(provider.chat_stream(simple()).await.unwrap()).await;
    assert!(collected.outcome.complete);
    assert_eq!(upstream.received().len(), 2);
}

#[tokio::test]
async fn slow_first_byte_hits_the_timeout() {
    let timeouts = Timeouts { first_byte: Duration::from_millis(100), ..Timeouts::default() };
    let mut slow_head = Scripted::json(200, WHOLE);
    slow_head.head_delay = Duration::from_secs(5);
    let mut slow_first_event = Scripted::sse(&[ROLE, DONE]);
    slow_first_event.chunks[0].0 = Duration::from_secs(5);
    let upstream = Upstream::start(vec![slow_head, slow_first_event]).await;
    let provider = client(&upstream, timeouts);

    let started = std::time::Instant::now();
    let error = provider.chat(simple()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout("first byte")), "{error:?}");
    let error = provider.chat_stream(simple()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout("first byte")), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(is_retryable(&error));
}

#[tokio::test]
async fn total_timeout_cuts_a_slow_stream() {
    let timeouts = Timeouts { total: Duration::from_millis(200), ..Timeouts::default() };
    let mut slow = Scripted::sse(&[ROLE, HELLO, DONE]);
    slow.chunks[2].0 = Duration::from_secs(5);
    let upstream = Upstream::start(vec![slow]).await;
    let provider = client(&upstream, timeouts);
    let collected = collect(provider.chat_stream(simple()).await.unwrap()).await;
    assert_eq!(collected.bytes, [ROLE, HELLO].concat().into_bytes());
    assert!(
        matches!(collected.errors[..], [ProviderError::Timeout("total")]),
        "{:?}",
        collected.errors
    );
    assert!(!collected.outcome.complete);
}

#[tokio::test]
async fn connect_error_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider =
        OpenAiCompatible::new(OpenAiConfig::new("openai", format!("http://{addr}/v1"))).unwrap();
    let error = provider.chat(simple()).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Transport(message) if message.starts_with("connect")),
        "{error:?}"
    );
    assert!(is_retryable(&error));
}

#[tokio::test]
async fn wrong_protocol_is_refused_without_a_call() {
    let upstream = Upstream::start(vec![]).await;
    let provider = client(&upstream, Timeouts::default());
    let request = ChatRequest::from_slice(Protocol::Anthropic, br#"{"model":"m"}"#).unwrap();
    assert!(matches!(provider.chat(request).await, Err(ProviderError::InvalidRequest(_))));
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn works_against_mockito() {
    let mut server = mockito::Server::new_async().await;
    let mock = server
        .mock("POST", "/v1/chat/completions")
        .match_header("authorization", "Bearer sk-mock")
        .match_body(mockito::Matcher::PartialJson(json!({"model": "gpt-4o-mini"})))
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(WHOLE)
        .expect(1)
        .create_async()
        .await;
    let provider = OpenAiCompatible::new(
        OpenAiConfig::new("openai", format!("{}/v1", server.url())).with_api_key("sk-mock"),
    )
    .unwrap();
    let response = provider.chat(simple()).await.unwrap();
    assert_eq!(response.usage.unwrap().cache_read_tokens, 1920);
    mock.assert_async().await;
}

#[test]
fn keys_never_appear_in_debug_output() {
    let config =
        OpenAiConfig::new("openai", "http://127.0.0.1:9/v1").with_api_key("sk-live-secret-123");
    let provider = OpenAiCompatible::new(config.clone()).unwrap();
    assert!(!format!("{config:?}").contains("secret-123"));
    assert!(!format!("{provider:?}").contains("secret-123"));
    let anthropic = llmopt_llm::Anthropic::new(llmopt_llm::AnthropicConfig::new(
        "anthropic",
        "http://127.0.0.1:9",
        "sk-ant-secret-456",
    ))
    .unwrap();
    assert!(!format!("{anthropic:?}").contains("secret-456"));
}

#[test]
fn a_base_url_that_is_not_a_url_is_refused_when_the_client_is_built() {
    let error = OpenAiCompatible::new(OpenAiConfig::new("openai", "api.openai.com/v1"))
        .expect_err("no scheme: not a URL");
    let message = error.to_string();
    assert!(message.contains("bad base URL `api.openai.com/v1/chat/completions`"), "{message}");
    let error = llmopt_llm::Anthropic::new(llmopt_llm::AnthropicConfig::new(
        "anthropic",
        "http://[::1",
        "sk-ant-test",
    ))
    .expect_err("unclosed IPv6 host");
    assert!(error.to_string().contains("bad base URL"), "{error}");
}
