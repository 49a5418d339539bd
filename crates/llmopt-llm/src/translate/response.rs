//! Whole answers: an Anthropic message as an OpenAI chat completion and the reverse, with
//! stop reasons and usage in the caller's terms. The record's usage and cost come from the
//! provider's own body (its cache semantics), not from these translated bodies.

use serde_json::{Value, json};

use super::{JSON_TOOL_NAME, Untranslatable};

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason_of(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason_of(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage → OpenAI usage: `prompt_tokens` counts cache reads and writes too,
/// `cached_tokens` the reads.
pub fn openai_usage_of(usage: &Value) -> Value {
    let read = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = read("cache_read_input_tokens");
    let prompt = read("input_tokens") + read("cache_creation_input_tokens") + cached;
    let completion = read("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// OpenAI usage → Anthropic usage: `input_tokens` is the uncached remainder.
pub fn anthropic_usage_of(usage: &Value) -> Value {
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cached = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    })
}

/// An Anthropic message as an OpenAI chat completion. `json_mode`: the request asked for a JSON
/// answer, which came back as the input of the forced [`JSON_TOOL_NAME`] tool.
pub fn anthropic_to_openai(
    message: &Value,
    json_mode: bool,
    created: i64,
) -> Result<Value, Untranslatable> {
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Untranslatable::new("content", "the answer has no content blocks"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut answered_json = false;
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") if json_mode && block["name"] == JSON_TOOL_NAME => {
                text.push_str(&serde_json::to_string(&block["input"]).unwrap_or_default());
                answered_json = true;
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {
                    "name": block["name"],
                    "arguments": serde_json::to_string(&block["input"]).unwrap_or_default(),
                },
            })),
            // Thinking blocks only come when asked for, which a translated request cannot do.
            _ => {}
        }
    }
    let stop_reason = message.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
    let finish_reason = if answered_json && stop_reason == "tool_use" {
        "stop"
    } else {
        finish_reason_of(stop_reason)
    };
    let mut reply = json!({"role": "assistant", "content": text, "refusal": null});
    if text.is_empty() && !tool_calls.is_empty() {
        reply["content"] = Value::Null;
    }
    if !tool_calls.is_empty() {
        reply["tool_calls"] = Value::Array(tool_calls);
    }
    let id = message.get("id").and_then(Value::as_str).unwrap_or("msg");
    Ok(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": message["model"],
        "choices": [{"index": 0, "message": reply, "logprobs": null, "finish_reason": finish_reason}],
        "usage": openai_usage_of(message.get("usage").unwrap_or(&Value::Null)),
    }))
}

/// An OpenAI chat completion as an Anthropic message.
pub fn openai_to_anthropic(completion: &Value) -> Result<Value, Untranslatable> {
    let choice = completion
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| Untranslatable::new("choices", "the answer has no choice"))?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|t| !t.is_empty());
    if let Some(refusal) = refusal {
        content.push(json!({"type": "text", "text": refusal}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({
            "type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input,
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop");
    let stop_reason = if refusal.is_some() { "refusal" } else { stop_reason_of(finish) };
    let id = completion.get("id").and_then(Value::as_str).unwrap_or("chatcmpl");
    Ok(json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": anthropic_usage_of(completion.get("usage").unwrap_or(&Value::Null)),
    }))
}
