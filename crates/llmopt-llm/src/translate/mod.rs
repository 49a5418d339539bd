//! Calls across protocols: an OpenAI Chat Completions request served by an Anthropic model,
//! and an Anthropic Messages request served by an OpenAI(-compatible) model.
//!
//! The pieces are pure functions over JSON ([`request`], [`response`]) and two stream
//! translators ([`stream`]), tested on wire-format fixtures; [`Translating`] puts them around a
//! provider that speaks the other protocol, so the gateway's forwarding path (fallbacks,
//! hedging, timeouts, records, cache) is the same for translated calls. What the answer tells
//! the record (usage, model, stop reason, time to first token, completeness) is read from the
//! provider's own answer before translation, so a translated call is priced exactly as the
//! served model bills it, cache reads and writes included.
//!
//! What cannot be translated is refused before anything is sent, with the field named
//! ([`Untranslatable`], surfaced as [`ProviderError::InvalidRequest`]: a 400 in the caller's
//! shape). Upstream error bodies are rewritten into the caller's error shape.

pub mod request;
pub mod response;
pub mod stream;

use std::{fmt, sync::Arc};

use bytes::Bytes;
use futures::{StreamExt, future::BoxFuture};
use llmopt_core::usage::{Protocol, SseDecoder};
use serde_json::{Value, json};

use crate::provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, StreamItem};

pub use request::DEFAULT_ANTHROPIC_MAX_TOKENS;

/// The tool an OpenAI `response_format` (JSON object or schema) becomes on Anthropic: forced
/// with `tool_choice`, its input is the JSON answer, returned to the caller as the message text.
pub const JSON_TOOL_NAME: &str = "json_answer";

/// A request field that has no equivalent in the target protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` cannot be translated: {reason}")]
pub struct Untranslatable {
    /// The field's path in the caller's request: `n`, `messages[2].content[0].type`.
    pub field: String,
    pub reason: String,
}

impl Untranslatable {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Untranslatable {
        Untranslatable { field: field.into(), reason: reason.into() }
    }
}

/// OpenAI's reasoning models (o-series, gpt-5) take `max_completion_tokens`, which bounds
/// reasoning and visible output together, and refuse `max_tokens`.
pub fn takes_max_completion_tokens(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let o_series =
        name.strip_prefix('o').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    o_series || name.starts_with("gpt-5")
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => "the OpenAI Chat Completions API",
        Protocol::Anthropic => "the Anthropic Messages API",
    }
}

/// How a translated call's answer must be shaped for its caller.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// OpenAI caller asked for JSON, sent to Anthropic as a forced tool.
    json_mode: bool,
    /// OpenAI caller asked for the usage chunk of a stream.
    include_usage: bool,
}

/// A request in `request.protocol` rewritten for `target`.
fn translate_request(
    request: &ChatRequest,
    target: Protocol,
) -> Result<(ChatRequest, Shape), Untranslatable> {
    let value = request.to_value();
    let include_usage = value
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (translated, json_mode) = match (request.protocol, target) {
        (Protocol::OpenAi, Protocol::Anthropic) => request::openai_to_anthropic(&value)?,
        (Protocol::Anthropic, Protocol::OpenAi) => (request::anthropic_to_openai(&value)?, false),
        _ => (value, false),
    };
    let bytes = serde_json::to_vec(&translated).unwrap_or_default();
    let chat = ChatRequest::from_slice(target, &bytes)
        .map_err(|error| Untranslatable::new("body", error.to_string()))?;
    Ok((chat, Shape { json_mode, include_usage }))
}

/// A provider that speaks the other protocol, made to speak the caller's.
pub struct Translating {
    inner: Arc<dyn Provider>,
    caller: Protocol,
    target: Protocol,
}

impl fmt::Debug for Translating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Translating")
            .field("inner", &self.inner)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Translating {
    /// `None` when `inner` already speaks `caller`'s protocol or speaks neither.
    pub fn new(inner: Arc<dyn Provider>, caller: Protocol) -> Option<Translating> {
        let target = match caller {
            Protocol::OpenAi => Protocol::Anthropic,
            Protocol::Anthropic => Protocol::OpenAi,
        };
        (!inner.speaks(caller) && inner.speaks(target)).then_some(Translating {
            inner,
            caller,
            target,
        })
    }

    /// Whether `request` can be sent through this translation; the error names the field that
    /// cannot (as [`Translating::chat`] would refuse it, without calling anything).
    pub fn check(&self, request: &ChatRequest) -> Result<(), ProviderError> {
        self.prepare(request).map(|_| ())
    }

    fn prepare(&self, request: &ChatRequest) -> Result<(ChatRequest, Shape), ProviderError> {
        if request.protocol != self.caller {
            return Err(ProviderError::InvalidRequest("request in an unexpected protocol".into()));
        }
        translate_request(request, self.target).map_err(|error| {
            ProviderError::InvalidRequest(format!(
                "{error} (model served through {})",
                protocol_name(self.target)
            ))
        })
    }

    /// An upstream error body in the caller's error shape.
    fn error_body(&self, body: &Bytes) -> Bytes {
        let Ok(value) = serde_json::from_slice::<Value>(body) else { return body.clone() };
        let error = &value["error"];
        let message = error.get("message").cloned().unwrap_or(Value::Null);
        let kind = error.get("type").cloned().unwrap_or(Value::Null);
        let translated = match self.caller {
            Protocol::OpenAi => json!({"error": {
                "message": message, "type": kind, "param": null, "code": null,
            }}),
            Protocol::Anthropic => json!({"type": "error", "error": {
                "type": kind, "message": message,
            }}),
        };
        Bytes::from(translated.to_string())
    }

    fn map_error(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::Upstream { status, body, retry_after } => {
                ProviderError::Upstream { status, body: self.error_body(&body), retry_after }
            }
            ProviderError::RateLimited { retry_after, body } => ProviderError::RateLimited {
                retry_after,
                body: body.map(|body| self.error_body(&body)),
            },
            other => other,
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0))
}

impl Provider for Translating {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        protocol == self.caller
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let (upstream, shape) = self.prepare(&request)?;
            let mut answer = self.inner.chat(upstream).await.map_err(|e| self.map_error(e))?;
            let native: Value = serde_json::from_slice(&answer.body)
                .map_err(|error| ProviderError::InvalidResponse(error.to_string()))?;
            let translated = match self.caller {
                Protocol::OpenAi => {
                    response::anthropic_to_openai(&native, shape.json_mode, now_unix())
                }
                Protocol::Anthropic => response::openai_to_anthropic(&native),
            }
            .map_err(|error| ProviderError::InvalidResponse(error.to_string()))?;
            answer.body = Bytes::from(translated.to_string());
            answer.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
            answer.headers.push(("content-type".to_owned(), "application/json".to_owned()));
            Ok(answer)
        })
    }

    fn chat_stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            let (upstream, shape) = self.prepare(&request)?;
            let stream = self.inner.chat_stream(upstream).await.map_err(|e| self.map_error(e))?;
            let mut decoder = SseDecoder::new();
            let mut to_openai = match self.caller {
                Protocol::OpenAi => Some(stream::AnthropicToOpenAiStream::new(
                    shape.json_mode,
                    shape.include_usage,
                    now_unix(),
                )),
                Protocol::Anthropic => None,
            };
            let mut to_anthropic = stream::OpenAiToAnthropicStream::new();
            let items = stream
                .items
                .filter_map(move |item| {
                    let item = match item {
                        Ok(StreamItem::Bytes(bytes)) => {
                            let mut out = Vec::new();
                            for event in decoder.push(&bytes) {
                                match &mut to_openai {
                                    Some(translator) => out.extend(translator.push(&event)),
                                    None => out.extend(to_anthropic.push(&event)),
                                }
                            }
                            (!out.is_empty()).then(|| Ok(StreamItem::Bytes(Bytes::from(out))))
                        }
                        other => Some(other),
                    };
                    futures::future::ready(item)
                })
                .boxed();
            let mut headers = stream.headers;
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
            Ok(ChatStream { status: stream.status, headers, items, progress: stream.progress })
        })
    }
}

#[cfg(test)]
mod tests;
