//! The provider contract: what the gateway sends and what it gets back.
//!
//! Bodies stay JSON bytes as far as possible: a request is kept as its top-level fields with
//! raw JSON values ([`ChatRequest::fields`]), so the gateway can read or replace `model`,
//! `max_tokens` or `stream_options` without decoding (or losing) anything else the client sent:
//! tools, response_format, seed, metadata, fields that do not exist yet.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{future::BoxFuture, stream::BoxStream};
use llmopt_core::{Usage, usage::Protocol};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use crate::passthrough::{ApiCall, ApiResponse, ApiStream};

/// A chat request on its way to a provider, in the provider's own wire format.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub protocol: Protocol,
    /// Top-level fields of the JSON body; values are raw JSON, passed through untouched.
    pub fields: BTreeMap<String, Box<RawValue>>,
    /// Headers to pass upstream (`anthropic-beta`, `openai-organization`, …); never auth headers,
    /// which the provider sets from its own secret.
    pub headers: Vec<(String, String)>,
}

impl ChatRequest {
    /// Parses a body's top level. Fails on anything that is not a JSON object.
    pub fn from_slice(protocol: Protocol, body: &[u8]) -> Result<ChatRequest, serde_json::Error> {
        let fields = serde_json::from_slice(body)?;
        Ok(ChatRequest { protocol, fields, headers: Vec::new() })
    }

    /// Reads a field as `T`; `None` when absent or of another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.fields.get(key).and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// Sets (or replaces) a field.
    pub fn set<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.fields.insert(key.to_owned(), raw);
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        self.fields.remove(key)
    }

    pub fn model(&self) -> Option<String> {
        self.get("model")
    }

    pub fn is_stream(&self) -> bool {
        self.get::<bool>("stream").unwrap_or(false)
    }

    /// The body as JSON bytes: raw values are copied, not re-encoded.
    pub fn to_vec(&self) -> Vec<u8> {
        let size: usize = self.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            // Keys came from valid JSON; re-encoding a string cannot fail.
            out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The whole body as a `serde_json::Value` (for cache keys and fingerprints).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.to_vec()).unwrap_or(serde_json::Value::Null)
    }
}

/// A whole (non-streaming) successful answer.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub status: u16,
    /// Response headers worth passing to the client (content-type, request ids, rate-limit info).
    pub headers: Vec<(String, String)>,
    /// The body exactly as the provider sent it.
    pub body: Bytes,
    /// `None` when the body carried no usable usage.
    pub usage: Option<Usage>,
    /// The model the provider says answered.
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    /// Time from sending the request to the first byte of the response head.
    pub first_byte: Duration,
    /// Time from sending the request to the end of the body.
    pub elapsed: Duration,
}

/// A streaming answer: the head arrived with a success status; events follow.
pub struct ChatStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Raw SSE bytes to forward, then exactly one [`StreamItem::End`] when the stream ends
    /// (cleanly or not). An `Err` item means the stream broke; an `End` still follows.
    pub items: BoxStream<'static, Result<StreamItem, ProviderError>>,
    /// What the stream has shown so far, readable while it runs and after `items` is dropped
    /// (a client that leaves mid-stream: the proxy drops the stream and still records the usage
    /// seen up to then).
    pub progress: StreamProgress,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream").field("status", &self.status).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum StreamItem {
    /// Bytes to forward to the client: whole SSE events, byte for byte (an OpenAI usage-only
    /// chunk the client did not ask for is already stripped).
    Bytes(Bytes),
    /// The last item of every stream.
    End(StreamOutcome),
}

/// What a stream amounted to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOutcome {
    /// The usage seen. When `complete`, the whole call's; otherwise what the provider reported
    /// before the stream stopped, a lower bound (Anthropic: the input side from
    /// `message_start` and the latest cumulative output). `None` when nothing was reported,
    /// which is every cut OpenAI stream (its usage comes in the last chunk): unknown, not zero.
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    /// Time from sending the request to the first content event.
    pub time_to_first_token: Option<Duration>,
    pub elapsed: Duration,
    /// The stream ended with its terminal event (`[DONE]` / `message_stop`).
    pub complete: bool,
}

/// A live, shared view of a stream's [`StreamOutcome`] so far. The stream pipeline updates it
/// when usage, model, stop reason or the first token change (a few times per stream, not per
/// event); [`StreamProgress::snapshot`] reads it at any time, also after the stream itself was
/// dropped. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct StreamProgress {
    shared: Arc<Mutex<Progress>>,
}

#[derive(Debug, Default)]
struct Progress {
    seen: StreamOutcome,
    started: Option<tokio::time::Instant>,
}

impl StreamProgress {
    /// A progress whose `elapsed` counts from `started` (when the request was sent).
    pub fn started_at(started: tokio::time::Instant) -> StreamProgress {
        let progress = StreamProgress::default();
        progress.lock().started = Some(started);
        progress
    }

    /// The outcome so far, `elapsed` measured now. `complete` is `true` only once the stream's
    /// terminal event was seen.
    pub fn snapshot(&self) -> StreamOutcome {
        let progress = self.lock();
        let mut outcome = progress.seen.clone();
        if let Some(started) = progress.started {
            outcome.elapsed = started.elapsed();
        }
        outcome
    }

    /// Replaces what has been seen (`elapsed` is ignored: the snapshot measures it).
    pub fn publish(&self, seen: StreamOutcome) {
        self.lock().seen = seen;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding this lock leaves plain data behind: still readable.
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a call failed, in kinds the gateway maps to the caller's protocol.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {:.1}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration>, body: Option<Bytes> },
    #[error("timed out ({0})")]
    Timeout(&'static str),
    /// The provider answered with an error status; `body` is its error body, passed through.
    #[error("upstream answered {status}")]
    Upstream { status: u16, body: Bytes, retry_after: Option<Duration> },
    #[error("transport: {0}")]
    Transport(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The request cannot be sent (wrong protocol for this provider, bad body).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// One upstream LLM API. Object-safe: the gateway holds `Arc<dyn Provider>`.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The configured name (`openai`, `anthropic`, `sim`, …).
    fn id(&self) -> &str;
    /// Whether this provider accepts requests in `protocol`.
    fn speaks(&self, protocol: Protocol) -> bool;
    /// Sends a request and waits for the whole answer.
    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>>;
    /// Sends a streaming request; resolves when the response head and the first body bytes
    /// have arrived (the HTTP clients wait for the first chunk, so that a failure before any
    /// byte reached the caller is still an error of the call, which a retry may repeat).
    fn chat_stream(&self, request: ChatRequest)
    -> BoxFuture<'_, Result<ChatStream, ProviderError>>;
    /// Sends a call to another endpoint of the provider's API and waits for the whole answer
    /// (OpenAI-compatible providers; others refuse).
    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        Box::pin(async move { Err(crate::passthrough::not_served(self.id(), &call)) })
    }
    /// The same as a stream: resolves when the response head has arrived.
    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        Box::pin(async move { Err(crate::passthrough::not_served(self.id(), &call)) })
    }
}
