//! First-byte and total timeouts around any provider. The HTTP clients enforce their own
//! [`Timeouts`] (they can see the first byte of a whole response); this decorator gives the same
//! guarantees to providers that cannot, such as the in-process simulator, and lets a policy
//! tighten the timeout of a route without rebuilding its client.
//!
//! For `chat`, the total timeout applies. For `chat_stream`, the first-byte timeout applies to
//! the call (a stream resolves with its first bytes) and the total timeout to the whole stream:
//! when it passes, the stream yields `Err(Timeout("total"))` and then its `End`: incomplete,
//! with the usage seen until then (the inner stream's [`crate::StreamProgress`]).

use std::{fmt, sync::Arc};

use futures::{StreamExt, future::BoxFuture};
use llmopt_core::usage::Protocol;
use tokio::time::Instant;

use crate::{
    http::Timeouts,
    passthrough::{ApiCall, ApiResponse, ApiStream},
    provider::{
        ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, StreamItem, StreamOutcome,
    },
};

pub struct Timeout {
    inner: Arc<dyn Provider>,
    timeouts: Timeouts,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl Timeout {
    pub fn new(inner: Arc<dyn Provider>, timeouts: Timeouts) -> Timeout {
        Timeout { inner, timeouts }
    }
}

impl Provider for Timeout {
    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeouts.total, self.inner.call(call))
                .await
                .unwrap_or(Err(ProviderError::Timeout("total")))
        })
    }

    /// The head must come within the first-byte timeout and the chunks before the total one.
    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        Box::pin(async move {
            let started = Instant::now();
            let first_byte = self.timeouts.first_byte.min(self.timeouts.total);
            let stream = tokio::time::timeout(first_byte, self.inner.call_stream(call))
                .await
                .unwrap_or(Err(ProviderError::Timeout("first byte")))?;
            let deadline = started + self.timeouts.total;
            let ApiStream { status, headers, chunks, first_byte } = stream;
            let chunks = futures::stream::unfold(Some(chunks), move |chunks| async move {
                let mut chunks = chunks?;
                match tokio::time::timeout_at(deadline, chunks.next()).await {
                    Err(_) => Some((Err(ProviderError::Timeout("total")), None)),
                    Ok(None) => None,
                    Ok(Some(Err(error))) => Some((Err(error), None)),
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(chunks))),
                }
            })
            .boxed();
            Ok(ApiStream { status, headers, chunks, first_byte })
        })
    }

    fn id(&self) -> &str {
        self.inner.id()
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        self.inner.speaks(protocol)
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeouts.total, self.inner.chat(request))
                .await
                .unwrap_or(Err(ProviderError::Timeout("total")))
        })
    }

    fn chat_stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            let started = Instant::now();
            let first_byte = self.timeouts.first_byte.min(self.timeouts.total);
            let stream = tokio::time::timeout(first_byte, self.inner.chat_stream(request))
                .await
                .unwrap_or(Err(ProviderError::Timeout("first byte")))?;
            let deadline = started + self.timeouts.total;
            let ChatStream { status, headers, items, progress } = stream;
            // The inner stream always ends with `End`; when the deadline cuts it first, this
            // decorator makes the `End` itself, with what the inner stream had seen.
            let stream = futures::stream::unfold(
                (items, Phase::Running, progress.clone()),
                move |(mut items, phase, seen)| async move {
                    match phase {
                        Phase::Done => None,
                        Phase::Cut => {
                            let outcome = StreamOutcome {
                                elapsed: started.elapsed(),
                                complete: false,
                                ..seen.snapshot()
                            };
                            Some((Ok(StreamItem::End(outcome)), (items, Phase::Done, seen)))
                        }
                        Phase::Running => {
                            match tokio::time::timeout_at(deadline, items.next()).await {
                                Ok(Some(item)) => Some((item, (items, Phase::Running, seen))),
                                Ok(None) => None,
                                Err(_) => Some((
                                    Err(ProviderError::Timeout("total")),
                                    (items, Phase::Cut, seen),
                                )),
                            }
                        }
                    }
                },
            )
            .boxed();
            Ok(ChatStream { status, headers, items: stream, progress })
        })
    }
}

enum Phase {
    Running,
    /// The deadline passed: the `End` item is next.
    Cut,
    Done,
}
