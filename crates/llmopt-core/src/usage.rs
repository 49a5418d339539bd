//! Token usage, normalised from both providers' shapes, for whole responses and for streams.
//!
//! The two providers count differently (DESIGN.md, "Data model"):
//! - OpenAI: `prompt_tokens` *includes* `prompt_tokens_details.cached_tokens`;
//!   `completion_tokens` *includes* `completion_tokens_details.reasoning_tokens`. A stream
//!   carries usage only in its last chunk, and only when `stream_options.include_usage` was set.
//! - Anthropic: `input_tokens` is the *uncached remainder*; total input is `input_tokens +
//!   cache_creation_input_tokens + cache_read_input_tokens`. Cache writes are split into 5-minute
//!   and 1-hour writes by `cache_creation.ephemeral_{5m,1h}_input_tokens` when present (all 5-minute
//!   otherwise). In a stream, `message_start` carries the input usage and `message_delta` the
//!   cumulative output usage.
//!
//! [`Usage`] always holds *total* input, with the cached and cache-written parts broken out,
//! so that cost is `uncached × input + cached × read + writes × write + output × output`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Normalised token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens: uncached + cache reads + cache writes.
    pub input_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Input tokens written to a 5-minute cache (Anthropic).
    #[serde(default)]
    pub cache_write_5m_tokens: u64,
    /// Input tokens written to a 1-hour cache (Anthropic).
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// The reasoning part of `output_tokens` (billed as output).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("response has no `usage` object")]
    Missing,
    #[error("usage field `{field}` is not a non-negative integer")]
    BadField { field: &'static str },
    #[error("usage does not add up: {detail}")]
    Inconsistent { detail: String },
}

impl Usage {
    /// Input tokens billed at the plain input price.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_5m_tokens)
            .saturating_sub(self.cache_write_1h_tokens)
    }

    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_write_5m_tokens + self.cache_write_1h_tokens
    }

    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Checks that the parts fit inside the totals.
    pub fn validate(&self) -> Result<(), UsageError> {
        let input_parts = self
            .cache_read_tokens
            .checked_add(self.cache_write_5m_tokens)
            .and_then(|sum| sum.checked_add(self.cache_write_1h_tokens));
        match input_parts {
            Some(parts) if parts <= self.input_tokens => {}
            _ => {
                return Err(UsageError::Inconsistent {
                    detail: format!(
                        "cache reads {} + cache writes {} exceed input tokens {}",
                        self.cache_read_tokens,
                        self.cache_write_tokens(),
                        self.input_tokens
                    ),
                });
            }
        }
        if self.reasoning_tokens > self.output_tokens {
            return Err(UsageError::Inconsistent {
                detail: format!(
                    "reasoning tokens {} exceed output tokens {}",
                    self.reasoning_tokens, self.output_tokens
                ),
            });
        }
        Ok(())
    }

    /// Normalises an OpenAI `usage` object (Chat Completions, or the Responses API shape with
    /// `input_tokens`/`output_tokens`).
    pub fn from_openai_usage(usage: &Value) -> Result<Usage, UsageError> {
        if !usage.is_object() {
            return Err(UsageError::Missing);
        }
        let (input, output, input_details, output_details) = if usage.get("prompt_tokens").is_some()
        {
            (
                req_u64(usage, "prompt_tokens")?,
                opt_u64(usage, "completion_tokens")?.unwrap_or(0),
                "prompt_tokens_details",
                "completion_tokens_details",
            )
        } else {
            (
                req_u64(usage, "input_tokens")?,
                opt_u64(usage, "output_tokens")?.unwrap_or(0),
                "input_tokens_details",
                "output_tokens_details",
            )
        };
        let cached = match usage.get(input_details) {
            Some(details) if details.is_object() => opt_u64(details, "cached_tokens")?.unwrap_or(0),
            _ => 0,
        };
        let reported_reasoning = match usage.get(output_details) {
            Some(details) if details.is_object() => opt_u64(details, "reasoning_tokens")?,
            _ => None,
        };
        // A server that reports no reasoning breakdown but a total above input + output left
        // thinking tokens out of the output count (Gemini's OpenAI-compatible endpoint counts
        // thoughts in `total_tokens` only); they are billed as output, so they count as
        // reasoning output here. OpenAI's totals always add up, so its usage is unchanged.
        let (output, reasoning) = match (reported_reasoning, opt_u64(usage, "total_tokens")?) {
            (None, Some(total)) if total > input.saturating_add(output) => {
                let unreported = total - input - output;
                (output + unreported, unreported)
            }
            (reasoning, _) => (output, reasoning.unwrap_or(0)),
        };
        let usage = Usage {
            input_tokens: input,
            cache_read_tokens: cached,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: output,
            reasoning_tokens: reasoning,
        };
        usage.validate()?;
        Ok(usage)
    }

    /// Normalises a whole OpenAI response body (reads its `usage`).
    pub fn from_openai_response(body: &Value) -> Result<Usage, UsageError> {
        match body.get("usage") {
            Some(usage) if !usage.is_null() => Usage::from_openai_usage(usage),
            _ => Err(UsageError::Missing),
        }
    }

    /// Normalises an Anthropic `usage` object.
    pub fn from_anthropic_usage(usage: &Value) -> Result<Usage, UsageError> {
        if !usage.is_object() {
            return Err(UsageError::Missing);
        }
        let uncached = req_u64(usage, "input_tokens")?;
        let reads = opt_u64(usage, "cache_read_input_tokens")?.unwrap_or(0);
        let writes_total = opt_u64(usage, "cache_creation_input_tokens")?.unwrap_or(0);
        let (writes_5m, writes_1h) = anthropic_write_split(usage, writes_total)?;
        let output = opt_u64(usage, "output_tokens")?.unwrap_or(0);
        let usage = Usage {
            input_tokens: uncached + reads + writes_5m + writes_1h,
            cache_read_tokens: reads,
            cache_write_5m_tokens: writes_5m,
            cache_write_1h_tokens: writes_1h,
            output_tokens: output,
            reasoning_tokens: 0,
        };
        usage.validate()?;
        Ok(usage)
    }

    /// Normalises a whole Anthropic response body (reads its `usage`).
    pub fn from_anthropic_response(body: &Value) -> Result<Usage, UsageError> {
        match body.get("usage") {
            Some(usage) if !usage.is_null() => Usage::from_anthropic_usage(usage),
            _ => Err(UsageError::Missing),
        }
    }
}

/// Splits Anthropic cache writes into 5-minute and 1-hour parts. When the breakdown object is
/// present it is authoritative; otherwise every write is a 5-minute write (the API default).
fn anthropic_write_split(usage: &Value, writes_total: u64) -> Result<(u64, u64), UsageError> {
    match usage.get("cache_creation") {
        Some(breakdown) if breakdown.is_object() => {
            let five = opt_u64(breakdown, "ephemeral_5m_input_tokens")?.unwrap_or(0);
            let hour = opt_u64(breakdown, "ephemeral_1h_input_tokens")?.unwrap_or(0);
            if five + hour == 0 && writes_total > 0 {
                Ok((writes_total, 0))
            } else {
                Ok((five, hour))
            }
        }
        _ => Ok((writes_total, 0)),
    }
}

fn req_u64(object: &Value, field: &'static str) -> Result<u64, UsageError> {
    opt_u64(object, field)?.ok_or(UsageError::BadField { field })
}

fn opt_u64(object: &Value, field: &'static str) -> Result<Option<u64>, UsageError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(UsageError::BadField { field }),
    }
}

/// Which wire protocol a body or stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    OpenAi,
    Anthropic,
}

/// Follows a stream event by event and extracts its usage and stop reason.
///
/// Feed it the `data:` payload of every SSE event ([`crate::usage::SseDecoder`] splits a byte
/// stream into events). [`StreamUsage::usage`] is the usage seen so far, so that a stream cut
/// part way still accounts for what the provider had already reported:
/// - Anthropic: `message_start` reports the input side (uncached, cache reads and writes) and
///   the output so far; each `message_delta` reports the cumulative output. After
///   `message_start` alone the usage is that partial one; after `message_delta` it is final.
/// - OpenAI: usage comes only in the last chunk (with `stream_options.include_usage`), so a
///   stream cut before it has no usage at all: `None`, *unknown*, never zero.
///
/// [`StreamUsage::usage_is_final`] says whether the event that completes the usage was seen.
#[derive(Debug, Clone)]
pub struct StreamUsage {
    protocol: Protocol,
    usage: Option<Usage>,
    /// The usage came from the event that completes it (OpenAI's usage chunk, Anthropic's
    /// `message_delta`), not from `message_start` alone.
    usage_final: bool,
    /// Anthropic: input usage from `message_start`, merged into each `message_delta`'s.
    anthropic_start: Option<Value>,
    stop_reason: Option<String>,
    model: Option<String>,
    saw_error: bool,
    finished: bool,
}

impl StreamUsage {
    pub fn new(protocol: Protocol) -> StreamUsage {
        StreamUsage {
            protocol,
            usage: None,
            usage_final: false,
            anthropic_start: None,
            stop_reason: None,
            model: None,
            saw_error: false,
            finished: false,
        }
    }

    /// Observes one event's data payload. Returns `true` when this event was an OpenAI usage-only
    /// chunk (empty `choices` with a `usage` object), which a proxy strips for clients that did not
    /// ask for usage.
    pub fn observe(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            self.finished = true;
            return false;
        }
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return false;
        };
        match self.protocol {
            Protocol::OpenAi => self.observe_openai(&event),
            Protocol::Anthropic => {
                self.observe_anthropic(&event);
                false
            }
        }
    }

    fn observe_openai(&mut self, event: &Value) -> bool {
        if event.get("error").is_some() {
            self.saw_error = true;
        }
        if self.model.is_none() {
            self.model = event.get("model").and_then(Value::as_str).map(str::to_owned);
        }
        if let Some(choices) = event.get("choices").and_then(Value::as_array) {
            for choice in choices {
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
            }
        }
        match event.get("usage") {
            Some(usage) if usage.is_object() => {
                if let Ok(parsed) = Usage::from_openai_usage(usage) {
                    self.usage = Some(parsed);
                    self.usage_final = true;
                }
                event.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
            }
            _ => false,
        }
    }

    fn observe_anthropic(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = event.get("message");
                self.model =
                    message.and_then(|m| m.get("model")).and_then(Value::as_str).map(str::to_owned);
                self.anthropic_start = message.and_then(|m| m.get("usage")).cloned();
                // The input side is known from here on: a stream cut before `message_delta`
                // still has these tokens (and the output counted so far) as its usage.
                if let Some(start) = self.anthropic_start.as_ref()
                    && let Ok(parsed) = Usage::from_anthropic_usage(start)
                {
                    self.usage = Some(parsed);
                }
            }
            Some("message_delta") => {
                if let Some(reason) =
                    event.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                let Some(delta_usage) = event.get("usage").filter(|u| u.is_object()) else {
                    return;
                };
                // message_delta usage is cumulative; fields it carries override message_start's.
                let mut merged = self
                    .anthropic_start
                    .clone()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
                if let (Some(target), Some(source)) =
                    (merged.as_object_mut(), delta_usage.as_object())
                {
                    for (key, value) in source {
                        if !value.is_null() {
                            target.insert(key.clone(), value.clone());
                        }
                    }
                    target.entry("input_tokens").or_insert(Value::from(0));
                }
                if (self.anthropic_start.is_some() || delta_usage.get("input_tokens").is_some())
                    && let Ok(parsed) = Usage::from_anthropic_usage(&merged)
                {
                    self.usage = Some(parsed);
                    self.usage_final = true;
                }
            }
            Some("message_stop") => self.finished = true,
            Some("error") => self.saw_error = true,
            _ => {}
        }
    }

    /// The usage seen so far: final once [`StreamUsage::usage_is_final`], otherwise what the
    /// provider had reported before the stream stopped (Anthropic's `message_start`), a lower
    /// bound. `None` when nothing was reported: unknown, never zero.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The event that completes the usage (OpenAI's usage chunk, Anthropic's `message_delta`)
    /// was seen.
    pub fn usage_is_final(&self) -> bool {
        self.usage_final
    }

    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// `[DONE]` (OpenAI) or `message_stop` (Anthropic) was seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn saw_error(&self) -> bool {
        self.saw_error
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: Vec<u8>,
    /// The exact bytes of the event as received, blank-line terminator included, so a proxy can
    /// forward it byte for byte.
    pub raw: Vec<u8>,
}

/// Incremental SSE decoder: feed it byte chunks as they arrive (split anywhere), take whole
/// events out. Accepts `\n`, `\r\n` and `\r` line ends.
#[derive(Debug, Default, Clone)]
pub struct SseDecoder {
    buffer: Vec<u8>,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Appends a chunk and returns every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            if let Some(event) = parse_event(raw) {
                events.push(event);
            }
        }
        events
    }

    /// Bytes received that do not yet form a whole event (a cut stream leaves them here).
    pub fn pending(&self) -> &[u8] {
        &self.buffer
    }
}

/// Finds the end (exclusive, terminator included) of the first complete event in `buffer`.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let mut index = 0;
    let mut line_start = true;
    while index < buffer.len() {
        let byte = buffer[index];
        if byte == b'\n' || byte == b'\r' {
            let width = if byte == b'\r' && buffer.get(index + 1) == Some(&b'\n') { 2 } else { 1 };
            if byte == b'\r' && index + 1 == buffer.len() {
                // A lone \r at the end may be the first half of \r\n: wait for more bytes.
                return None;
            }
            if line_start {
                return Some(index + width);
            }
            line_start = true;
            index += width;
        } else {
            line_start = false;
            index += 1;
        }
    }
    None
}

fn parse_event(raw: Vec<u8>) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut has_field = false;
    let text = raw.clone();
    for line in text.split(|b| *b == b'\n' || *b == b'\r') {
        if line.is_empty() || line.starts_with(b":") {
            continue;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if has_field && !event.data.is_empty() {
                    event.data.push(b'\n');
                }
                event.data.extend_from_slice(value);
                has_field = true;
            }
            b"event" => {
                event.event = Some(String::from_utf8_lossy(value).into_owned());
                has_field = true;
            }
            _ => has_field = true,
        }
    }
    event.raw = raw;
    // Comment-only events (keep-alives) are still forwarded by a proxy: keep them with no data.
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_left_out_of_the_output_count_is_billed_as_reasoning_output() {
        // Gemini's OpenAI-compatible usage with thoughts: only the total counts them.
        let gemini =
            serde_json::json!({"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 86});
        let usage = Usage::from_openai_usage(&gemini).unwrap();
        assert_eq!((usage.output_tokens, usage.reasoning_tokens), (65, 60));
        // OpenAI's own breakdown is taken as it is, and totals that add up change nothing.
        let openai = serde_json::json!({"prompt_tokens": 21, "completion_tokens": 65, "total_tokens": 86,
                                        "completion_tokens_details": {"reasoning_tokens": 60}});
        let usage = Usage::from_openai_usage(&openai).unwrap();
        assert_eq!((usage.output_tokens, usage.reasoning_tokens), (65, 60));
        let plain =
            serde_json::json!({"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26});
        assert_eq!(Usage::from_openai_usage(&plain).unwrap().output_tokens, 5);
    }

    #[test]
    fn sse_decoder_handles_any_split() {
        let stream = b"event: ping\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\n: keep-alive\n\n";
        for split in 0..stream.len() {
            let mut decoder = SseDecoder::new();
            let mut events = decoder.push(&stream[..split]);
            events.extend(decoder.push(&stream[split..]));
            assert_eq!(events.len(), 3, "split at {split}");
            assert_eq!(events[0].event.as_deref(), Some("ping"));
            assert_eq!(events[0].data, b"{\"a\":1}");
            assert_eq!(events[1].data, b"x\ny");
            assert!(events[2].data.is_empty());
            let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.clone()).collect();
            assert_eq!(joined, stream.to_vec(), "raw bytes are kept exactly");
        }
    }
}
