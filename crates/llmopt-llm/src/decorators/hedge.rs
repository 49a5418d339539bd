//! Hedged requests for whole (non-streaming) answers: when the first attempt has not answered
//! after `delay`, a second identical request is sent; the first *successful* answer wins and the
//! other request is dropped, which cancels it (its connection is closed). A failure of one does
//! not end the race while the other may still succeed.
//!
//! Streams pass through unhedged: two streams racing would bill twice for every token and the
//! caller could not be given a consistent stream anyway. The delay is usually set to a high
//! latency quantile of the route (p95), so hedging costs about 5 % more calls.

use std::{fmt, sync::Arc, time::Duration};

use futures::future::{BoxFuture, Either, select};
use llmopt_core::usage::Protocol;

use crate::{
    passthrough::{ApiCall, ApiResponse, ApiStream},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeConfig {
    /// How long the first request runs alone.
    pub delay: Duration,
}

/// What a hedged call did: its answer, and whether a second attempt was sent and answered.
#[derive(Debug)]
pub struct Hedged {
    pub result: Result<ChatResponse, ProviderError>,
    /// A second attempt was sent (the first had not answered after the delay).
    pub second_sent: bool,
    /// The answer is the second attempt's.
    pub second_won: bool,
}

/// Sends `request` to `provider`; if it has not answered after `delay` and `may_hedge()` (asked
/// only then, so a load budget counts only hedges actually due) allows it, sends it again and
/// takes the first successful answer, dropping (cancelling) the other attempt. A failure of one
/// does not end the race while the other may still succeed.
pub async fn hedged_chat(
    provider: &dyn Provider,
    request: ChatRequest,
    delay: Duration,
    may_hedge: impl FnOnce() -> bool,
) -> Hedged {
    let primary = provider.chat(request.clone());
    let timer = Box::pin(tokio::time::sleep(delay));
    let primary = match select(primary, timer).await {
        Either::Left((result, _timer)) => {
            return Hedged { result, second_sent: false, second_won: false };
        }
        Either::Right(((), primary)) => primary,
    };
    if !may_hedge() {
        return Hedged { result: primary.await, second_sent: false, second_won: false };
    }
    tracing::debug!(provider = provider.id(), ?delay, "hedging");
    let backup = provider.chat(request);
    let (result, second_won) = match select(primary, backup).await {
        Either::Left((Ok(response), _backup)) => (Ok(response), false),
        Either::Right((Ok(response), _primary)) => (Ok(response), true),
        // One failed: the other one is still the best chance.
        Either::Left((Err(_), backup)) => (backup.await, true),
        Either::Right((Err(_), primary)) => (primary.await, false),
    };
    Hedged { result, second_sent: true, second_won }
}

pub struct Hedge {
    inner: Arc<dyn Provider>,
    config: HedgeConfig,
}

impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge").field("inner", &self.inner).field("config", &self.config).finish()
    }
}

impl Hedge {
    pub fn new(inner: Arc<dyn Provider>, config: HedgeConfig) -> Hedge {
        Hedge { inner, config }
    }
}

impl Provider for Hedge {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        self.inner.speaks(protocol)
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            hedged_chat(self.inner.as_ref(), request, self.config.delay, || true).await.result
        })
    }

    fn chat_stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        self.inner.chat_stream(request)
    }

    /// Not hedged: a second `POST /responses` would store a second response upstream.
    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        self.inner.call(call)
    }

    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        self.inner.call_stream(call)
    }
}
