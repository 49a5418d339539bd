//! The simulator as an in-process [`Provider`]: no socket, same replies as the HTTP server,
//! and the same stream pipeline as the HTTP clients (so usage extraction, usage-chunk stripping
//! and time to first token are exercised exactly as in production).

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{StreamExt, future::BoxFuture};
use llmopt_core::usage::Protocol;
use tokio::time::Instant;

use super::engine::{SimConfig, SimEngine, SimReply};
use crate::{
    http::{self, ByteStream},
    openai::{prepare_openai_stream, prepare_whole},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
    stream::{self, StreamSetup},
};

/// How long an in-process stream may run: the simulator has no timeouts of its own (wrap it in
/// [`crate::Timeout`] for those).
const NO_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct SimProvider {
    id: String,
    engine: Arc<SimEngine>,
    /// Ask for usage in OpenAI streams, as [`crate::OpenAiConfig::include_usage`] does.
    include_usage: bool,
}

impl fmt::Debug for SimProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimProvider").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SimProvider {
    pub fn new(id: impl Into<String>, config: SimConfig) -> SimProvider {
        SimProvider::with_engine(id, Arc::new(SimEngine::new(config)))
    }

    /// Shares an engine (and so its prompt cache and fault script) with a server.
    pub fn with_engine(id: impl Into<String>, engine: Arc<SimEngine>) -> SimProvider {
        SimProvider { id: id.into(), engine, include_usage: true }
    }

    /// Whether OpenAI streams ask for usage (on by default), as an OpenAI provider's setting.
    pub fn with_include_usage(mut self, include_usage: bool) -> SimProvider {
        self.include_usage = include_usage;
        self
    }

    pub fn engine(&self) -> &Arc<SimEngine> {
        &self.engine
    }
}

fn header_map(headers: &[(String, String)]) -> ::http::HeaderMap {
    let mut map = ::http::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (::http::HeaderName::from_bytes(name.as_bytes()), ::http::HeaderValue::from_str(value))
        {
            map.append(name, value);
        }
    }
    map
}

async fn sleep_unless_zero(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

impl Provider for SimProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn speaks(&self, _protocol: Protocol) -> bool {
        true
    }

    fn chat(&self, mut request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            prepare_whole(&mut request);
            let started = Instant::now();
            match self.engine.reply(request.protocol, &request.to_vec()) {
                SimReply::Whole { status, headers, body, delay } => {
                    sleep_unless_zero(delay).await;
                    if !(200..300).contains(&status) {
                        return Err(http::status_error(status, &header_map(&headers), body));
                    }
                    let elapsed = started.elapsed();
                    http::whole_response(request.protocol, status, headers, body, elapsed, elapsed)
                }
                SimReply::Stream { .. } => Err(ProviderError::InvalidResponse(
                    "simulator answered a whole request with a stream".to_owned(),
                )),
            }
        })
    }

    fn chat_stream(
        &self,
        mut request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            let hide_usage = match request.protocol {
                Protocol::OpenAi => prepare_openai_stream(&mut request, self.include_usage)?,
                Protocol::Anthropic => {
                    request
                        .set("stream", &true)
                        .map_err(|error| ProviderError::InvalidRequest(error.to_string()))?;
                    false
                }
            };
            let started = Instant::now();
            match self.engine.reply(request.protocol, &request.to_vec()) {
                SimReply::Whole { status, headers, body, delay } => {
                    sleep_unless_zero(delay).await;
                    if !(200..300).contains(&status) {
                        return Err(http::status_error(status, &header_map(&headers), body));
                    }
                    // A 200 whole body to a stream request (the malformed-body fault): hand the
                    // bytes to the pipeline, which finds no events in them.
                    let body: ByteStream = futures::stream::iter([Ok(body)]).boxed();
                    let setup = StreamSetup {
                        protocol: request.protocol,
                        hide_usage,
                        started,
                        first_byte_deadline: started + NO_DEADLINE,
                        total_deadline: started + NO_DEADLINE,
                    };
                    stream::start(setup, status, headers, body).await
                }
                SimReply::Stream { headers, events, cut_after, head_delay } => {
                    sleep_unless_zero(head_delay).await;
                    let total = events.len();
                    let keep = cut_after.unwrap_or(total);
                    let cut = cut_after.is_some();
                    let timed = futures::stream::iter(events.into_iter().take(keep)).then(
                        |(wait, bytes): (Duration, Bytes)| async move {
                            sleep_unless_zero(wait).await;
                            Ok::<Bytes, ProviderError>(bytes)
                        },
                    );
                    let body: ByteStream = if cut {
                        timed
                            .chain(futures::stream::iter([Err(ProviderError::Transport(
                                "connection closed before the stream ended (simulated cut)"
                                    .to_owned(),
                            ))]))
                            .boxed()
                    } else {
                        timed.boxed()
                    };
                    let setup = StreamSetup {
                        protocol: request.protocol,
                        hide_usage,
                        started,
                        first_byte_deadline: started + NO_DEADLINE,
                        total_deadline: started + NO_DEADLINE,
                    };
                    stream::start(setup, 200, headers, body).await
                }
            }
        })
    }
}
