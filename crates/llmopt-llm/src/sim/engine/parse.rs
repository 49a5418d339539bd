//! Reading a request in either wire format: model, stream flag, `max_tokens`, the prompt's
//! size and cache text (OpenAI) or cache breakpoints (Anthropic), and the last user message.

use llmopt_core::usage::Protocol;
use serde_json::Value;

use super::{SimEngine, SimModel, SimReply, wire::error_reply};
use crate::sim::cache::{self, Breakpoint, tokens_of};

/// What a request asked for, read from either wire format.
pub(super) struct Parsed {
    pub(super) model_name: String,
    pub(super) model: SimModel,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) max_tokens: Option<u64>,
    pub(super) prompt_tokens: u64,
    /// OpenAI: the prompt as cache text. Anthropic: unused (breakpoints instead).
    pub(super) prompt_text: Vec<u8>,
    pub(super) breakpoints: Vec<Breakpoint>,
    pub(super) last_user_text: Option<String>,
}

impl SimEngine {
    pub(super) fn parse(&self, protocol: Protocol, value: &Value) -> Result<Parsed, SimReply> {
        let bad = |message: &str| error_reply(protocol, 400, "invalid_request_error", message, &[]);
        let model_name = value
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("model: field required"))?;
        let model = self.find_model(model_name).cloned().ok_or_else(|| {
            let message =
                format!("The model `{model_name}` does not exist or you do not have access to it.");
            error_reply(protocol, 404, "not_found_error", &message, &[])
        })?;
        let messages = value
            .get("messages")
            .and_then(Value::as_array)
            .filter(|messages| !messages.is_empty())
            .ok_or_else(|| bad("messages: a non-empty array is required"))?;
        let stream = value.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let last_user_text = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| content_text(m.get("content")));
        match protocol {
            Protocol::OpenAi => {
                let max_tokens = value
                    .get("max_completion_tokens")
                    .or_else(|| value.get("max_tokens"))
                    .and_then(Value::as_u64);
                let include_usage = value
                    .get("stream_options")
                    .and_then(|o| o.get("include_usage"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                // Cache text in OpenAI's prefix order: tools, then messages.
                let mut prompt_text = Vec::new();
                if let Some(tools) = value.get("tools") {
                    prompt_text.extend_from_slice(tools.to_string().as_bytes());
                }
                let mut prompt_tokens = 3;
                for message in messages {
                    let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
                    let text = content_text(message.get("content"));
                    prompt_tokens += 4 + tokens_of(&text);
                    prompt_text.extend_from_slice(role.as_bytes());
                    prompt_text.push(b'\n');
                    prompt_text.extend_from_slice(text.as_bytes());
                    prompt_text.push(b'\n');
                }
                if let Some(tools) = value.get("tools") {
                    prompt_tokens += tokens_of(&tools.to_string());
                }
                Ok(Parsed {
                    model_name: model_name.to_owned(),
                    model,
                    stream,
                    include_usage,
                    max_tokens,
                    prompt_tokens,
                    prompt_text,
                    breakpoints: Vec::new(),
                    last_user_text,
                })
            }
            Protocol::Anthropic => {
                let max_tokens = value
                    .get("max_tokens")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("max_tokens: Field required"))?;
                // Anthropic's prefix order: tools, system, messages; each block may be a breakpoint.
                let mut key = 0u64;
                let mut prompt_tokens = 0u64;
                let mut breakpoints = Vec::new();
                let mut add_block = |text: &str, block: &Value, tokens_extra: u64| {
                    key = cache::chain(key, text.as_bytes());
                    prompt_tokens += tokens_of(text) + tokens_extra;
                    if let Some(control) = block.get("cache_control").filter(|c| c.is_object()) {
                        let one_hour = control.get("ttl").and_then(Value::as_str) == Some("1h");
                        breakpoints.push(Breakpoint {
                            key,
                            prefix_tokens: prompt_tokens,
                            one_hour,
                        });
                    }
                };
                for tool in value.get("tools").and_then(Value::as_array).into_iter().flatten() {
                    add_block(&tool.to_string(), tool, 0);
                }
                match value.get("system") {
                    Some(Value::String(text)) => add_block(text, &Value::Null, 0),
                    Some(Value::Array(blocks)) => {
                        for block in blocks {
                            add_block(&content_text(Some(block)), block, 0);
                        }
                    }
                    _ => {}
                }
                for message in messages {
                    let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
                    match message.get("content") {
                        Some(Value::Array(blocks)) => {
                            add_block(role, &Value::Null, 3);
                            for block in blocks {
                                add_block(&content_text(Some(block)), block, 0);
                            }
                        }
                        other => {
                            add_block(role, &Value::Null, 3);
                            add_block(&content_text(other), &Value::Null, 0);
                        }
                    }
                }
                Ok(Parsed {
                    model_name: model_name.to_owned(),
                    model,
                    stream,
                    include_usage: true,
                    max_tokens: Some(max_tokens),
                    prompt_tokens,
                    prompt_text: Vec::new(),
                    breakpoints,
                    last_user_text,
                })
            }
        }
    }
}

/// The text of a message content: a string, or the `text` of its parts/blocks; other blocks
/// (images, tool results) count as their JSON.
fn content_text(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().map(|part| content_text(Some(part))).collect::<Vec<_>>().join("\n")
        }
        Some(object @ Value::Object(map)) => match map.get("text").and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None => object.to_string(),
        },
        Some(other) => other.to_string(),
    }
}
