use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use llmopt_core::{Protocol, Usage};
use llmopt_llm::{
    Anthropic, AnthropicConfig, ChatRequest, Provider, ProviderError, Retry, RetryConfig, Timeouts,
};
use serde_json::json;

use crate::upstream::{Scripted, Upstream, collect};

const WHOLE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":50,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"cache_creation":{"ephemeral_5m_input_tokens":400,"ephemeral_1h_input_tokens":600},"output_tokens":20,"service_tier":"standard"}}"#;

// Every event type of the Messages stream, as Anthropic sends them.
const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":1500,\"output_tokens\":1}}}\n\n";
const BLOCK_START: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n";
const BLOCK_STOP: &str =
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
const MESSAGE_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
const ERROR: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

fn request() -> ChatRequest {
    let body = json!({"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "Hi"}], "metadata": {"user_id": "u1"}});
    ChatRequest::from_slice(Protocol::Anthropic, &serde_json::to_vec(&body).unwrap()).unwrap()
}

fn client(upstream: &Upstream) -> Anthropic {
    Anthropic::new(AnthropicConfig::new("anthropic", upstream.base.clone(), "sk-ant-test")).unwrap()
}

#[tokio::test]
async fn whole_answer_with_cache_usage() {
    let upstream = Upstream::start(vec![Scripted::json(200, WHOLE)]).await;
    let provider = client(&upstream);
    let mut request = request();
    request.headers.push(("anthropic-beta".into(), "prompt-caching-2024-07-31".into()));
    let response = provider.chat(request).await.unwrap();
    assert_eq!(response.body, Bytes::from_static(WHOLE.as_bytes()));
    // Total input = 50 uncached + 1000 written + 2000 read.
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 3050,
            cache_read_tokens: 2000,
            cache_write_5m_tokens: 400,
            cache_write_1h_tokens: 600,
            output_tokens: 20,
            reasoning_tokens: 0,
        })
    );
    assert_eq!(response.stop_reason.as_deref(), Some("end_turn"));
    let received = &upstream.received()[0];
    assert_eq!(received.path, "/v1/messages");
    assert_eq!(received.headers["x-api-key"], "sk-ant-test");
    assert_eq!(received.headers["anthropic-version"], "2023-06-01");
    assert_eq!(received.headers["anthropic-beta"], "prompt-caching-2024-07-31");
    assert_eq!(received.json()["metadata"], json!({"user_id": "u1"}));
}

#[tokio::test]
async fn stream_forwards_every_event_type_and_reads_usage() {
    let events = [START, BLOCK_START, PING, DELTA, BLOCK_STOP, MESSAGE_DELTA, STOP];
    let upstream = Upstream::start(vec![Scripted::sse(&events)]).await;
    let collected = collect(client(&upstream).chat_stream(request()).await.unwrap()).await;
    assert_eq!(collected.bytes, events.concat().into_bytes(), "byte for byte");
    let outcome = collected.outcome;
    // message_start input (25 + 1500 read) with message_delta's cumulative output (15).
    assert_eq!(
        outcome.usage,
        Some(Usage {
            input_tokens: 1525,
            cache_read_tokens: 1500,
            output_tokens: 15,
            ..Usage::default()
        })
    );
    assert_eq!(outcome.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(outcome.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert!(outcome.complete);
    assert!(outcome.time_to_first_token.is_some());
    assert_eq!(upstream.received()[0].json()["stream"], json!(true));
}

#[tokio::test]
async fn stream_error_event_is_forwarded_and_incomplete() {
    let events = [START, BLOCK_START, ERROR];
    let upstream = Upstream::start(vec![Scripted::sse(&events)]).await;
    let collected = collect(client(&upstream).chat_stream(request()).await.unwrap()).await;
    assert_eq!(collected.bytes, events.concat().into_bytes());
    // No message_delta: the usage is message_start's, a lower bound (input 25 + 1500 read,
    // the 1 output token counted so far).
    assert_eq!(collected.outcome.usage, Some(START_USAGE));
    assert!(!collected.outcome.complete);
}

/// What `START` reports: the input side and the output counted so far.
const START_USAGE: Usage = Usage {
    input_tokens: 1525,
    cache_read_tokens: 1500,
    cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0,
    output_tokens: 1,
    reasoning_tokens: 0,
};

#[tokio::test]
async fn stream_cut_before_message_delta_keeps_the_usage_of_message_start() {
    let mut cut = Scripted::sse(&[START, BLOCK_START, DELTA]);
    cut.cut = true;
    let upstream = Upstream::start(vec![cut]).await;
    let stream = client(&upstream).chat_stream(request()).await.unwrap();
    let progress = stream.progress.clone();
    let collected = collect(stream).await;
    assert_eq!(collected.bytes, [START, BLOCK_START, DELTA].concat().into_bytes());
    assert_eq!(collected.errors.len(), 1);
    assert_eq!(collected.outcome.usage, Some(START_USAGE));
    assert!(!collected.outcome.complete);
    assert_eq!(progress.snapshot().usage, Some(START_USAGE), "the shared view agrees");
}

#[tokio::test]
async fn overloaded_529_is_retried() {
    let overloaded =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let upstream =
        Upstream::start(vec![Scripted::json(529, overloaded), Scripted::json(200, WHOLE)]).await;
    let provider = Retry::new(
        Arc::new(client(&upstream)),
        RetryConfig {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RetryConfig::default()
        },
    );
    let response = provider.chat(request()).await.unwrap();
    assert_eq!(response.usage.unwrap().output_tokens, 20);
    assert_eq!(upstream.received().len(), 2);
}

#[tokio::test]
async fn errors_keep_the_anthropic_error_body() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
    let upstream = Upstream::start(vec![Scripted::json(400, body)]).await;
    match client(&upstream).chat(request()).await.unwrap_err() {
        ProviderError::Upstream { status: 400, body: got, .. } => {
            assert_eq!(got, Bytes::from(body))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn caller_version_header_wins_and_timeouts_apply() {
    let mut slow = Scripted::json(200, WHOLE);
    slow.head_delay = Duration::from_secs(5);
    let upstream = Upstream::start(vec![Scripted::json(200, WHOLE), slow]).await;
    let provider = Anthropic::new(
        AnthropicConfig::new("anthropic", upstream.base.clone(), "k").with_timeouts(Timeouts {
            first_byte: Duration::from_millis(100),
            ..Timeouts::default()
        }),
    )
    .unwrap();
    let mut request = request();
    request.headers.push(("anthropic-version".into(), "2024-01-01".into()));
    provider.chat(request).await.unwrap();
    assert_eq!(upstream.received()[0].headers.get_all("anthropic-version").iter().count(), 1);
    assert_eq!(upstream.received()[0].headers["anthropic-version"], "2024-01-01");
    assert!(matches!(
        provider.chat(self::request()).await,
        Err(ProviderError::Timeout("first byte"))
    ));
}
