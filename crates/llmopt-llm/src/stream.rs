//! The streaming pipeline shared by every provider (HTTP or in-process): raw body chunks in,
//! whole SSE events out byte for byte, with usage, stop reason and time to first token taken on
//! the way, and an OpenAI usage-only chunk stripped when the caller did not ask for it.
//!
//! Events are forwarded whole: a chunk that ends mid-event is held until the event completes, so
//! the caller never sees half an event, and a stream cut mid-event forwards nothing broken.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use llmopt_core::{SseDecoder, SseEvent, StreamUsage, usage::Protocol};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    http::ByteStream,
    provider::{ProviderError, StreamItem, StreamOutcome},
};

/// How one stream is followed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSetup {
    pub protocol: Protocol,
    /// Drop the OpenAI usage-only chunk (the provider asked for it, the caller did not).
    pub strip_usage_chunk: bool,
    /// When the request was sent: time to first token and elapsed are measured from here.
    pub started: Instant,
    pub first_byte_deadline: Instant,
    pub total_deadline: Instant,
}

/// Waits for the first body chunk (the first-byte timeout applies to it), then returns the
/// stream of items. Failing before the first chunk is an error of the call, which a retry
/// decorator may retry; after it, failures are items of the stream.
pub(crate) async fn start(
    setup: StreamSetup,
    mut body: ByteStream,
) -> Result<BoxStream<'static, Result<StreamItem, ProviderError>>, ProviderError> {
    let first = match tokio::time::timeout_at(setup.first_byte_deadline, body.next()).await {
        Err(_) => return Err(ProviderError::Timeout("first byte")),
        Ok(Some(Err(error))) => return Err(error),
        Ok(Some(Ok(chunk))) => Some(chunk),
        Ok(None) => None,
    };
    let reader = EventReader {
        setup,
        body,
        prefetched: first,
        body_ended: false,
        decoder: SseDecoder::new(),
        usage: StreamUsage::new(setup.protocol),
        time_to_first_token: None,
        phase: Phase::Running,
    };
    Ok(futures::stream::unfold(reader, EventReader::step).boxed())
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
            if usage_only && self.setup.strip_usage_chunk {
                continue;
            }
            forward.extend_from_slice(&event.raw);
        }
        Bytes::from(forward)
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

    fn setup(protocol: Protocol, strip: bool) -> StreamSetup {
        let now = Instant::now();
        StreamSetup {
            protocol,
            strip_usage_chunk: strip,
            started: now,
            first_byte_deadline: now + Duration::from_secs(5),
            total_deadline: now + Duration::from_secs(5),
        }
    }

    async fn collect(setup: StreamSetup, chunks: Vec<&'static [u8]>) -> (Vec<u8>, StreamOutcome) {
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))));
        let mut items = start(setup, body.boxed()).await.unwrap();
        let mut bytes = Vec::new();
        let mut outcome = None;
        while let Some(item) = items.next().await {
            match item.unwrap() {
                StreamItem::Bytes(b) => bytes.extend_from_slice(&b),
                StreamItem::End(o) => outcome = Some(o),
            }
        }
        (bytes, outcome.unwrap())
    }

    const ROLE: &[u8] = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const TEXT: &[u8] = b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
    const USAGE: &[u8] = b"data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

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
    async fn keeps_usage_chunk_when_asked() {
        let (bytes, _) =
            collect(setup(Protocol::OpenAi, false), vec![ROLE, TEXT, USAGE, DONE]).await;
        assert_eq!(bytes, [ROLE, TEXT, USAGE, DONE].concat());
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
}
