//! Streams, event by event: Anthropic's `message_start` / `content_block_*` /
//! `message_delta` / `message_stop` as OpenAI chat completion chunks ending in `[DONE]`, and
//! the reverse. Each translator takes whole upstream SSE events and returns the caller's bytes
//! (possibly none, possibly several events).

use std::collections::BTreeMap;

use llmopt_core::usage::SseEvent;
use serde_json::{Value, json};

use super::{
    JSON_TOOL_NAME,
    response::{anthropic_usage_of, finish_reason_of, openai_usage_of, stop_reason_of},
};

fn data_event(value: &Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

fn named_event(name: &str, value: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {value}\n\n").into_bytes()
}

/// Anthropic events → OpenAI chunks.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    json_mode: bool,
    include_usage: bool,
    created: i64,
    id: String,
    model: Value,
    /// Anthropic content block index → OpenAI tool call index.
    tool_index: BTreeMap<u64, u64>,
    /// The block that carries the forced JSON answer.
    json_block: Option<u64>,
    usage: Value,
    finish_reason: Option<&'static str>,
}

impl AnthropicToOpenAiStream {
    pub fn new(json_mode: bool, include_usage: bool, created: i64) -> AnthropicToOpenAiStream {
        AnthropicToOpenAiStream {
            json_mode,
            include_usage,
            created,
            id: "chatcmpl".to_owned(),
            model: Value::Null,
            tool_index: BTreeMap::new(),
            json_block: None,
            usage: json!({}),
            finish_reason: None,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Vec<u8> {
        data_event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        }))
    }

    /// The caller's bytes for one upstream event.
    pub fn push(&mut self, event: &SseEvent) -> Vec<u8> {
        let Ok(data) = serde_json::from_slice::<Value>(&event.data) else { return Vec::new() };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "message_start" => {
                let message = &data["message"];
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.id = format!("chatcmpl-{id}");
                }
                self.model = message["model"].clone();
                merge_usage(&mut self.usage, &message["usage"]);
                self.chunk(json!({"role": "assistant", "content": ""}), None)
            }
            "content_block_start" => {
                let index = data["index"].as_u64().unwrap_or(0);
                let block = &data["content_block"];
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") if self.json_mode && block["name"] == JSON_TOOL_NAME => {
                        self.json_block = Some(index);
                        Vec::new()
                    }
                    Some("tool_use") => {
                        let tool = self.tool_index.len() as u64;
                        self.tool_index.insert(index, tool);
                        self.chunk(
                            json!({"tool_calls": [{
                                "index": tool, "id": block["id"], "type": "function",
                                "function": {"name": block["name"], "arguments": ""},
                            }]}),
                            None,
                        )
                    }
                    Some("text") => match block["text"].as_str().filter(|t| !t.is_empty()) {
                        Some(text) => self.chunk(json!({"content": text}), None),
                        None => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap_or(0);
                let delta = &data["delta"];
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(json!({"content": delta["text"]}), None),
                    Some("input_json_delta") if self.json_block == Some(index) => {
                        self.chunk(json!({"content": delta["partial_json"]}), None)
                    }
                    Some("input_json_delta") => match self.tool_index.get(&index) {
                        Some(tool) => self.chunk(
                            json!({"tool_calls": [{
                                "index": tool, "function": {"arguments": delta["partial_json"]},
                            }]}),
                            None,
                        ),
                        None => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                merge_usage(&mut self.usage, &data["usage"]);
                let stop = data["delta"]["stop_reason"].as_str().unwrap_or("end_turn");
                let finish = if self.json_block.is_some() && stop == "tool_use" {
                    "stop"
                } else {
                    finish_reason_of(stop)
                };
                self.finish_reason = Some(finish);
                self.chunk(json!({}), Some(finish))
            }
            "message_stop" => {
                let mut out = Vec::new();
                if self.include_usage {
                    out.extend(data_event(&json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": openai_usage_of(&self.usage),
                    })));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            "error" => {
                let error = &data["error"];
                data_event(&json!({"error": {
                    "message": error["message"], "type": error["type"], "param": null, "code": null,
                }}))
            }
            // ping, content_block_stop, and event types added later carry nothing to map.
            _ => Vec::new(),
        }
    }
}

/// Keeps the latest value of every usage counter (`message_delta` repeats them cumulatively).
fn merge_usage(target: &mut Value, update: &Value) {
    if let (Some(target), Some(update)) = (target.as_object_mut(), update.as_object()) {
        for (key, value) in update {
            if !value.is_null() {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// OpenAI chunks → Anthropic events. `message_start` goes out with the first chunk and input
/// tokens 0 (OpenAI reports usage only at the end); the final usage rides on `message_delta`,
/// sent with `message_stop` when `[DONE]` arrives.
#[derive(Debug, Default)]
pub struct OpenAiToAnthropicStream {
    started: bool,
    /// The open content block: its index and whether it is text (else a tool call).
    open: Option<(u64, Option<u64>)>,
    next_block: u64,
    /// OpenAI tool call index → Anthropic block index.
    tool_blocks: BTreeMap<u64, u64>,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
}

impl OpenAiToAnthropicStream {
    pub fn new() -> OpenAiToAnthropicStream {
        OpenAiToAnthropicStream::default()
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            out.extend(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn start_block(&mut self, block: Value, tool: Option<u64>, out: &mut Vec<u8>) -> u64 {
        self.close_open(out);
        let index = self.next_block;
        self.next_block += 1;
        out.extend(named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.open = Some((index, tool));
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((index, None)) => index,
            _ => self.start_block(json!({"type": "text", "text": ""}), None, out),
        };
        out.extend(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        ));
    }

    /// The caller's bytes for one upstream event.
    pub fn push(&mut self, event: &SseEvent) -> Vec<u8> {
        let mut out = Vec::new();
        if event.data == b"[DONE]" {
            self.close_open(&mut out);
            let mut usage =
                self.usage.as_ref().map(anthropic_usage_of).unwrap_or_else(|| json!({}));
            if usage.get("output_tokens").is_none() {
                usage["output_tokens"] = json!(0);
            }
            out.extend(named_event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                        "usage": usage}),
            ));
            out.extend(named_event("message_stop", &json!({"type": "message_stop"})));
            return out;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(&event.data) else { return out };
        if let Some(error) = chunk.get("error") {
            out.extend(named_event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": error["message"]}}),
            ));
            return out;
        }
        if !self.started {
            self.started = true;
            let id = chunk.get("id").and_then(Value::as_str).unwrap_or("chatcmpl");
            out.extend(named_event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": format!("msg_{id}"), "type": "message", "role": "assistant",
                    "model": chunk["model"], "content": [], "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }}),
            ));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else { return out };
        let delta = &choice["delta"];
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.text(text, &mut out);
        }
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str) {
            self.text(refusal, &mut out);
            if !refusal.is_empty() {
                self.stop_reason = Some("refusal");
            }
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = match self.tool_blocks.get(&tool) {
                Some(index) => *index,
                None => {
                    let block = json!({"type": "tool_use", "id": call["id"],
                                       "name": call["function"]["name"], "input": {}});
                    let index = self.start_block(block, Some(tool), &mut out);
                    self.tool_blocks.insert(tool, index);
                    index
                }
            };
            if let Some(arguments) =
                call["function"].get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty())
            {
                out.extend(named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                ));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            if self.stop_reason.is_none() {
                self.stop_reason = Some(stop_reason_of(finish));
            }
            self.close_open(&mut out);
        }
        out
    }
}
