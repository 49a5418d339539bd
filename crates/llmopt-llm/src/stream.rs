//! The streaming pipeline shared by every provider (HTTP or in-process): raw body chunks in,
//! whole SSE events out byte for byte, with usage, stop reason and time to first token taken on
//! the way, and the traces of a usage request the caller did not make removed.
//!
//! Events are forwarded whole: a chunk that ends mid-event is held until the event completes, so
//! the caller never sees half an event, and a stream cut mid-event forwards nothing broken.
//!
//! What has been seen is also published to the stream's [`StreamProgress`] as it changes, so the
//! holder of the stream can read the usage seen so far even after dropping the stream (a client
//! that disconnects mid-answer).
//!
//! **Usage the caller did not ask for.** To know a stream's cost, an OpenAI request is sent with
//! `stream_options.include_usage` ([`crate::openai`]). OpenAI then adds `"usage": null` to every
//! chunk and one last chunk with empty `choices` and the `usage` object. When the caller did not
//! ask for usage itself ([`StreamSetup::hide_usage`]), the last chunk is dropped and the `usage`
//! member is cut out of the other chunks' JSON text, every other byte left as it was, so the
//! caller receives exactly the chunks it would have received without the gateway. Chunks
//! without a `usage` member are forwarded untouched, never re-serialised.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use llmopt_core::{SseDecoder, SseEvent, StreamUsage, usage::Protocol};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    http::ByteStream,
    provider::{ChatStream, ProviderError, StreamItem, StreamOutcome, StreamProgress},
};

/// How one stream is followed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSetup {
    pub protocol: Protocol,
    /// The provider asked for usage on the caller's behalf (OpenAI `include_usage`) and the
    /// caller did not: drop the usage-only chunk and remove the `usage` member of the others.
    pub hide_usage: bool,
    /// When the request was sent: time to first token and elapsed are measured from here.
    pub started: Instant,
    pub first_byte_deadline: Instant,
    pub total_deadline: Instant,
}

/// Waits for the first body chunk (the first-byte timeout applies to it), then returns the
/// stream. Failing before the first chunk is an error of the call, which a retry decorator may
/// retry; after it, failures are items of the stream.
pub(crate) async fn start(
    setup: StreamSetup,
    status: u16,
    headers: Vec<(String, String)>,
    mut body: ByteStream,
) -> Result<ChatStream, ProviderError> {
    let first = match tokio::time::timeout_at(setup.first_byte_deadline, body.next()).await {
        Err(_) => return Err(ProviderError::Timeout("first byte")),
        Ok(Some(Err(error))) => return Err(error),
        Ok(Some(Ok(chunk))) => Some(chunk),
        Ok(None) => None,
    };
    let progress = StreamProgress::started_at(setup.started);
    let reader = EventReader {
        setup,
        body,
        prefetched: first,
        body_ended: false,
        decoder: SseDecoder::new(),
        usage: StreamUsage::new(setup.protocol),
        time_to_first_token: None,
        phase: Phase::Running,
        progress: progress.clone(),
        published: StreamOutcome::default(),
    };
    let items: BoxStream<'static, Result<StreamItem, ProviderError>> =
        futures::stream::unfold(reader, EventReader::step).boxed();
    Ok(ChatStream { status, headers, items, progress })
}

enum Phase {
    Running,
    /// The body ended (cleanly or not): the `End` item is next.
    Finishing,
    Done,
}

/// Reads a provider's body as SSE events: turns body chunks into [`StreamItem`]s of whole
/// events (the bytes to forward), reading usage, model, stop reason and time to first token on
/// the way, then one `End` item with the [`StreamOutcome`]. Driven by `futures::stream::unfold`,
/// one [`EventReader::step`] per item.
struct EventReader {
    setup: StreamSetup,
    body: ByteStream,
    prefetched: Option<Bytes>,
    body_ended: bool,
    decoder: SseDecoder,
    usage: StreamUsage,
    time_to_first_token: Option<Duration>,
    phase: Phase,
    /// Shared with the [`ChatStream`]'s holder.
    progress: StreamProgress,
    /// What was last published to `progress` (to publish only changes).
    published: StreamOutcome,
}

impl EventReader {
    async fn step(mut self) -> Option<(Result<StreamItem, ProviderError>, EventReader)> {
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Finishing => {
                    self.phase = Phase::Done;
                    let outcome = self.outcome();
                    return Some((Ok(StreamItem::End(outcome)), self));
                }
                Phase::Running => {}
            }
            let chunk = match self.prefetched.take() {
                Some(chunk) => Some(Ok(chunk)),
                None if self.body_ended => None,
                None => {
                    match tokio::time::timeout_at(self.setup.total_deadline, self.body.next()).await
                    {
                        Ok(next) => next,
                        Err(_) => Some(Err(ProviderError::Timeout("total"))),
                    }
                }
            };
            match chunk {
                None => {
                    self.body_ended = true;
                    self.phase = Phase::Finishing;
                }
                Some(Err(error)) => {
                    self.phase = Phase::Finishing;
                    return Some((Err(error), self));
                }
                Some(Ok(chunk)) => {
                    let forward = self.process(&chunk);
                    self.publish_changes();
                    if !forward.is_empty() {
                        return Some((Ok(StreamItem::Bytes(forward)), self));
                    }
                }
            }
        }
    }

    /// Decodes a chunk into events and returns the bytes to forward.
    fn process(&mut self, chunk: &[u8]) -> Bytes {
        let events = self.decoder.push(chunk);
        let mut forward: Vec<u8> = Vec::with_capacity(chunk.len());
        for event in events {
            let usage_only = !event.data.is_empty() && self.usage.observe(&event.data);
            if self.time_to_first_token.is_none() && is_content_event(self.setup.protocol, &event) {
                self.time_to_first_token = Some(self.setup.started.elapsed());
            }
            if self.setup.hide_usage && self.setup.protocol == Protocol::OpenAi {
                if usage_only {
                    continue;
                }
                if let Some(rewritten) = without_usage_member(&event) {
                    forward.extend_from_slice(&rewritten);
                    continue;
                }
            }
            forward.extend_from_slice(&event.raw);
        }
        Bytes::from(forward)
    }

    /// Publishes the outcome so far when usage, model, stop reason, first token or completion
    /// changed since the last time (a few times per stream).
    fn publish_changes(&mut self) {
        let seen = &self.published;
        let changed = seen.usage != self.usage.usage()
            || seen.model.as_deref() != self.usage.model()
            || seen.stop_reason.as_deref() != self.usage.stop_reason()
            || seen.time_to_first_token != self.time_to_first_token
            || seen.complete != self.usage.finished();
        if changed {
            let outcome = self.outcome();
            self.progress.publish(outcome.clone());
            self.published = outcome;
        }
    }

    fn outcome(&self) -> StreamOutcome {
        StreamOutcome {
            usage: self.usage.usage(),
            model: self.usage.model().map(str::to_owned),
            stop_reason: self.usage.stop_reason().map(str::to_owned),
            time_to_first_token: self.time_to_first_token,
            elapsed: self.setup.started.elapsed(),
            complete: self.usage.finished(),
        }
    }
}

/// The event's bytes with the top-level `usage` member removed from its JSON data, or `None`
/// when it has none (the common case is decided by a byte search, without parsing).
fn without_usage_member(event: &SseEvent) -> Option<Vec<u8>> {
    const NEEDLE: &[u8] = b"\"usage\"";
    if !event.data.windows(NEEDLE.len()).any(|window| window == NEEDLE) {
        return None;
    }
    let data = remove_top_level_member(&event.data, b"usage")?;
    // The data is one `data:` line of the raw event (OpenAI never splits a chunk over lines):
    // replace it in place, keeping the event's other bytes. Otherwise write the event anew.
    let at = event.raw.windows(event.data.len()).position(|window| window == event.data);
    let mut raw = Vec::with_capacity(event.raw.len());
    match at {
        Some(at) => {
            raw.extend_from_slice(&event.raw[..at]);
            raw.extend_from_slice(&data);
            raw.extend_from_slice(&event.raw[at + event.data.len()..]);
        }
        None => {
            raw.extend_from_slice(b"data: ");
            raw.extend_from_slice(&data);
            raw.extend_from_slice(b"\n\n");
        }
    }
    Some(raw)
}

/// Cuts the member named `key` out of the text of a JSON object, with the comma and spacing
/// that separated it, leaving every other byte as it was (`{"a":1,"usage":null}` becomes
/// `{"a":1}`). `None` when the text is not an object or has no such top-level member; nested
/// members of that name are not touched. Keys are compared as written (escapes not decoded).
fn remove_top_level_member(json: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut at = skip_space(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    // End of the previous member's value: where a removed last member's leading comma starts.
    let mut previous_end: Option<usize> = None;
    loop {
        at = skip_space(json, at);
        if json.get(at) != Some(&b'"') {
            return None; // `}` of an object without the member, or not JSON we understand
        }
        let member_start = at;
        let key_end = skip_string(json, at)?;
        let name = &json[member_start + 1..key_end - 1];
        at = skip_space(json, key_end);
        if json.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(json, at + 1);
        let value_end = skip_value(json, value_start)?;
        let after = skip_space(json, value_end);
        let separator = *json.get(after)?;
        if name == key {
            let (cut_from, cut_to) = match (separator, previous_end) {
                // Not last: the member, its comma and the space before the next key.
                (b',', _) => (member_start, skip_space(json, after + 1)),
                // Last of several: the comma after the previous value, up to this value's end.
                (b'}', Some(previous)) => (previous, value_end),
                // The only member.
                (b'}', None) => (member_start, value_end),
                _ => return None,
            };
            let mut out = Vec::with_capacity(json.len() - (cut_to - cut_from));
            out.extend_from_slice(&json[..cut_from]);
            out.extend_from_slice(&json[cut_to..]);
            return Some(out);
        }
        match separator {
            b',' => {
                previous_end = Some(value_end);
                at = after + 1;
            }
            _ => return None,
        }
    }
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The position after the string that starts at `at` (its opening quote).
fn skip_string(json: &[u8], at: usize) -> Option<usize> {
    let mut index = at + 1;
    loop {
        match *json.get(index)? {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
}

/// The position after the JSON value that starts at `at`.
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    match *json.get(at)? {
        b'"' => skip_string(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut index = at;
            loop {
                match *json.get(index)? {
                    b'"' => {
                        index = skip_string(json, index)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(index + 1);
                        }
                    }
                    _ => {}
                }
                index += 1;
            }
        }
        _ => {
            let mut index = at;
            while json
                .get(index)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                index += 1;
            }
            (index > at).then_some(index)
        }
    }
}

/// Whether an event carries the first generated content: an OpenAI chunk with non-empty
/// content, refusal, reasoning or tool calls (the first chunk usually carries only the role),
/// or an Anthropic `content_block_delta`.
fn is_content_event(protocol: Protocol, event: &SseEvent) -> bool {
    match protocol {
        Protocol::Anthropic => {
            if let Some(name) = &event.event {
                return name == "content_block_delta";
            }
            serde_json::from_slice::<Value>(&event.data)
                .ok()
                .and_then(|value| value.get("type").and_then(Value::as_str).map(str::to_owned))
                .is_some_and(|kind| kind == "content_block_delta")
        }
        Protocol::OpenAi => {
            if event.data.is_empty() || event.data == b"[DONE]" {
                return false;
            }
            let Ok(value) = serde_json::from_slice::<Value>(&event.data) else {
                return false;
            };
            let Some(choices) = value.get("choices").and_then(Value::as_array) else {
                return false;
            };
            choices.iter().filter_map(|choice| choice.get("delta")).any(|delta| {
                let non_empty = |key: &str| {
                    delta.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                };
                non_empty("content")
                    || non_empty("refusal")
                    || non_empty("reasoning_content")
                    || delta.get("tool_calls").is_some_and(|calls| !calls.is_null())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(protocol: Protocol, hide_usage: bool) -> StreamSetup {
        let now = Instant::now();
        StreamSetup {
            protocol,
            hide_usage,
            started: now,
            first_byte_deadline: now + Duration::from_secs(5),
            total_deadline: now + Duration::from_secs(5),
        }
    }

    async fn collect(setup: StreamSetup, chunks: Vec<&'static [u8]>) -> (Vec<u8>, StreamOutcome) {
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))));
        let mut items = start(setup, 200, Vec::new(), body.boxed()).await.unwrap().items;
        let mut bytes = Vec::new();
        let mut outcome = None;
        while let Some(item) = items.next().await {
            match item {
                Ok(StreamItem::Bytes(b)) => bytes.extend_from_slice(&b),
                Ok(StreamItem::End(o)) => outcome = Some(o),
                Err(_) => {}
            }
        }
        (bytes, outcome.unwrap())
    }

    const ROLE: &[u8] = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const TEXT: &[u8] = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
    const USAGE: &[u8] = b"data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";
    // The same chunks as OpenAI sends them when `include_usage` is set: `"usage":null` in each.
    const ROLE_NULL: &[u8] = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n";
    const TEXT_NULL: &[u8] = b"data: {\"model\":\"m\",\"usage\": null, \"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";

    #[tokio::test]
    async fn strips_usage_chunk_split_across_chunks() {
        let (first, second) = USAGE.split_at(17);
        let (bytes, outcome) =
            collect(setup(Protocol::OpenAi, true), vec![ROLE, TEXT, first, second, DONE]).await;
        assert_eq!(bytes, [ROLE, TEXT, DONE].concat());
        assert_eq!(outcome.usage.unwrap().input_tokens, 9);
        assert_eq!(outcome.stop_reason.as_deref(), Some("stop"));
        assert!(outcome.complete);
        assert!(outcome.time_to_first_token.is_some());
    }

    #[tokio::test]
    async fn hidden_usage_leaves_no_null_usage_member_behind() {
        let (bytes, outcome) = collect(
            setup(Protocol::OpenAi, true),
            vec![ROLE_NULL, &TEXT_NULL[..30], &TEXT_NULL[30..], USAGE, DONE],
        )
        .await;
        // Exactly the chunks without include_usage: the member and its comma and space are gone.
        let text_without = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        assert_eq!(bytes, [ROLE, &text_without[..], DONE].concat());
        assert_eq!(outcome.usage.unwrap().output_tokens, 1);
    }

    #[tokio::test]
    async fn keeps_usage_chunk_and_null_members_when_asked() {
        let (bytes, _) =
            collect(setup(Protocol::OpenAi, false), vec![ROLE_NULL, TEXT_NULL, USAGE, DONE]).await;
        assert_eq!(bytes, [ROLE_NULL, TEXT_NULL, USAGE, DONE].concat());
    }

    #[tokio::test]
    async fn half_event_at_the_end_is_not_forwarded() {
        let (bytes, outcome) =
            collect(setup(Protocol::OpenAi, true), vec![ROLE, &TEXT[..20]]).await;
        assert_eq!(bytes, ROLE);
        assert_eq!(outcome.usage, None);
        assert!(!outcome.complete);
        assert_eq!(outcome.time_to_first_token, None);
    }

    const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":410,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n";
    const DELTA: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Once\"}}\n\n";
    const MESSAGE_DELTA: &[u8] = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n";

    #[tokio::test]
    async fn an_anthropic_stream_cut_after_message_start_keeps_its_input_usage() {
        let (_, outcome) =
            collect(setup(Protocol::Anthropic, false), vec![START, DELTA, &MESSAGE_DELTA[..9]])
                .await;
        let usage = outcome.usage.expect("message_start's usage is kept");
        assert_eq!(
            (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens),
            (510, 100, 1)
        );
        assert!(!outcome.complete);
        assert_eq!(outcome.model.as_deref(), Some("claude-haiku-4-5"));
    }

    #[tokio::test]
    async fn progress_survives_the_stream_being_dropped() {
        let (sender, receiver) =
            futures::channel::mpsc::unbounded::<Result<Bytes, ProviderError>>();
        sender.unbounded_send(Ok(Bytes::from_static(START))).unwrap();
        let stream = start(setup(Protocol::Anthropic, false), 200, Vec::new(), receiver.boxed())
            .await
            .unwrap();
        assert_eq!(stream.progress.snapshot().usage, None, "nothing decoded before the first poll");
        let mut items = stream.items;
        let progress = stream.progress;
        assert!(matches!(items.next().await, Some(Ok(StreamItem::Bytes(_)))));
        sender.unbounded_send(Ok(Bytes::from_static(DELTA))).unwrap();
        assert!(matches!(items.next().await, Some(Ok(StreamItem::Bytes(_)))));
        sender.unbounded_send(Ok(Bytes::from_static(MESSAGE_DELTA))).unwrap();
        assert!(matches!(items.next().await, Some(Ok(StreamItem::Bytes(_)))));
        // The client leaves: the stream is dropped mid-answer, before message_stop.
        drop(items);
        let seen = progress.snapshot();
        assert_eq!(seen.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((510, 7)));
        assert_eq!(seen.stop_reason.as_deref(), Some("end_turn"));
        assert!(seen.time_to_first_token.is_some());
        assert!(!seen.complete);
    }

    #[test]
    fn top_level_member_removal_keeps_every_other_byte() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"a":1,"usage":null}"#, Some(r#"{"a":1}"#)),
            (r#"{"usage":null,"a":1}"#, Some(r#"{"a":1}"#)),
            (
                r#"{"a": 1, "usage": null, "b": [2, {"c": "}"}]}"#,
                Some(r#"{"a": 1, "b": [2, {"c": "}"}]}"#),
            ),
            (r#"{"a": 1, "usage": {"x": [1, "]"]} }"#, Some(r#"{"a": 1 }"#)),
            (r#"{"usage":null}"#, Some(r#"{}"#)),
            (
                r#" { "s": "a \"usage\": null", "usage" : null } "#,
                Some(r#" { "s": "a \"usage\": null" } "#),
            ),
            // Nested members of that name are not the chunk's.
            (r#"{"choices":[{"usage":null}]}"#, None),
            (r#"{"a":"usage"}"#, None),
            (r#"[1,2]"#, None),
            (r#"{"a":1,"usage":nul"#, None),
        ];
        for (input, expected) in cases {
            let got = remove_top_level_member(input.as_bytes(), b"usage");
            assert_eq!(got.as_deref(), expected.map(str::as_bytes), "{input}");
            if let Some(output) = got {
                serde_json::from_slice::<Value>(&output).expect("still JSON");
            }
        }
    }
}
