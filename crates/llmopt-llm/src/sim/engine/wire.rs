//! An answer as each provider writes it: OpenAI and Anthropic bodies, SSE events (with the
//! tokens each carries, for timing) and usage, and errors in each protocol's own shape.

use std::time::Duration;

use bytes::Bytes;
use llmopt_core::usage::Protocol;
use serde_json::{Value, json};

use super::{SimReply, answer::Generated};
use crate::sim::cache;

pub(super) struct Answer {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) created: i64,
    pub(super) generated: Generated,
    pub(super) prompt_tokens: u64,
    pub(super) cache: cache::ExplicitCacheResult,
    pub(super) include_usage: bool,
}

fn openai_usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.generated.output_tokens,
        "total_tokens": answer.prompt_tokens + answer.generated.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cache.read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

fn openai_finish(answer: &Answer) -> &'static str {
    if answer.generated.truncated { "length" } else { "stop" }
}

pub(super) fn openai_body(answer: &Answer) -> Value {
    json!({
        "id": format!("chatcmpl-sim{}", answer.id),
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.generated.text(), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": openai_finish(answer)
        }],
        "usage": openai_usage(answer),
        "service_tier": "default",
        "system_fingerprint": "fp_sim"
    })
}

/// OpenAI chunks, each with the output tokens it carries (0 = no generation time).
pub(super) fn openai_events(answer: &Answer) -> Vec<(u64, Bytes)> {
    let chunk = |delta: Value, finish: Value, tokens: u64| {
        let mut value = json!({
            "id": format!("chatcmpl-sim{}", answer.id),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "service_tier": "default",
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if answer.include_usage {
            value["usage"] = Value::Null;
        }
        (tokens, Bytes::from(format!("data: {value}\n\n")))
    };
    let mut events =
        vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null, 0)];
    for (piece, tokens) in &answer.generated.pieces {
        events.push(chunk(json!({"content": piece}), Value::Null, *tokens));
    }
    events.push(chunk(json!({}), json!(openai_finish(answer)), 0));
    if answer.include_usage {
        let value = json!({
            "id": format!("chatcmpl-sim{}", answer.id),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "service_tier": "default",
            "system_fingerprint": "fp_sim",
            "choices": [],
            "usage": openai_usage(answer)
        });
        events.push((0, Bytes::from(format!("data: {value}\n\n"))));
    }
    events.push((0, Bytes::from_static(b"data: [DONE]\n\n")));
    events
}

fn anthropic_usage(answer: &Answer, output_tokens: u64) -> Value {
    let cache = &answer.cache;
    let uncached = answer
        .prompt_tokens
        .saturating_sub(cache.read_tokens + cache.write_5m_tokens + cache.write_1h_tokens);
    json!({
        "input_tokens": uncached,
        "cache_creation_input_tokens": cache.write_5m_tokens + cache.write_1h_tokens,
        "cache_read_input_tokens": cache.read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.write_5m_tokens,
            "ephemeral_1h_input_tokens": cache.write_1h_tokens
        },
        "output_tokens": output_tokens,
        "service_tier": "standard"
    })
}

fn anthropic_stop(answer: &Answer) -> &'static str {
    if answer.generated.truncated { "max_tokens" } else { "end_turn" }
}

pub(super) fn anthropic_body(answer: &Answer) -> Value {
    json!({
        "id": format!("msg_sim{}", answer.id),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{"type": "text", "text": answer.generated.text()}],
        "stop_reason": anthropic_stop(answer),
        "stop_sequence": null,
        "usage": anthropic_usage(answer, answer.generated.output_tokens)
    })
}

pub(super) fn anthropic_events(answer: &Answer) -> Vec<(u64, Bytes)> {
    let event = |name: &str, data: Value, tokens: u64| {
        (tokens, Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    };
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_sim{}", answer.id), "type": "message", "role": "assistant",
                "model": answer.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": anthropic_usage(answer, 1)
            }}),
            0,
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            0,
        ),
        event("ping", json!({"type": "ping"}), 0),
    ];
    for (piece, tokens) in &answer.generated.pieces {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            *tokens,
        ));
    }
    events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0}), 0));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": anthropic_stop(answer), "stop_sequence": null},
               "usage": {"output_tokens": answer.generated.output_tokens}}),
        0,
    ));
    events.push(event("message_stop", json!({"type": "message_stop"}), 0));
    events
}

/// An error answer in the protocol's own error shape.
pub(super) fn error_reply(
    protocol: Protocol,
    status: u16,
    kind: &str,
    message: &str,
    extra: &[(String, String)],
) -> SimReply {
    let body = match protocol {
        Protocol::OpenAi => {
            let (kind, code) = match status {
                429 => ("requests", json!("rate_limit_exceeded")),
                404 => ("invalid_request_error", json!("model_not_found")),
                400 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Protocol::Anthropic => {
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend_from_slice(extra);
    SimReply::Whole { status, headers, body: Bytes::from(body.to_string()), delay: Duration::ZERO }
}
