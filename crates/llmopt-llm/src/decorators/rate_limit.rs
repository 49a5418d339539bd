//! Per-provider rate limits on requests per minute and tokens per minute (governor's GCRA),
//! waiting or rejecting per configuration.
//!
//! Tokens are counted before the call, as the providers themselves do for their own limits:
//! an estimate of the prompt (body bytes / 4) plus the requested `max_tokens` (or
//! `max_completion_tokens`). A request larger than the whole per-minute budget takes the whole
//! budget rather than failing forever.
//!
//! The limiter reads time from tokio's clock (through [`TokioClock`]), so tests run under
//! tokio's paused time and the wait is a `tokio::time::sleep`, not a thread sleep.

use std::{fmt, num::NonZeroU32, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use governor::{
    Quota, RateLimiter,
    clock::{Clock, Reference},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};
use llmopt_core::usage::Protocol;

use crate::{
    passthrough::{ApiCall, ApiResponse, ApiStream},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
};

/// What to do when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    /// Wait for capacity, but never longer than this; past it, reject.
    Wait { max_wait: Duration },
    /// Fail at once with `RateLimited { retry_after }`.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub requests_per_minute: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU32>,
    pub mode: RateLimitMode,
}

/// governor's clock over tokio's: `tokio::time::Instant` under paused time moves with the test.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

pub struct RateLimit {
    inner: Arc<dyn Provider>,
    config: RateLimitConfig,
    requests: Option<Limiter>,
    tokens: Option<(Limiter, NonZeroU32)>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// Estimated tokens a request counts against a tokens-per-minute limit.
pub fn estimated_tokens(request: &ChatRequest) -> u64 {
    let prompt: usize = request.fields.values().map(|raw| raw.get().len()).sum();
    let output = request
        .get::<u64>("max_tokens")
        .or_else(|| request.get::<u64>("max_completion_tokens"))
        .unwrap_or(0);
    (prompt as u64).div_ceil(4) + output
}

impl RateLimit {
    pub fn new(inner: Arc<dyn Provider>, config: RateLimitConfig) -> RateLimit {
        let limiter = |per_minute: NonZeroU32| {
            RateLimiter::direct_with_clock(Quota::per_minute(per_minute), TokioClock)
        };
        let requests = config.requests_per_minute.map(limiter);
        let tokens = config.tokens_per_minute.map(|per_minute| (limiter(per_minute), per_minute));
        RateLimit { inner, config, requests, tokens }
    }

    /// Takes one request and its tokens from the budgets, waiting or rejecting.
    async fn admit(&self, request: &ChatRequest) -> Result<(), ProviderError> {
        self.admit_tokens(estimated_tokens(request)).await
    }

    async fn admit_tokens(&self, estimated: u64) -> Result<(), ProviderError> {
        if let Some(limiter) = &self.requests {
            self.take(limiter, NonZeroU32::MIN).await?;
        }
        if let Some((limiter, capacity)) = &self.tokens {
            let estimate = estimated.clamp(1, u64::from(capacity.get()));
            let cells = NonZeroU32::new(u32::try_from(estimate).unwrap_or(capacity.get()))
                .unwrap_or(NonZeroU32::MIN);
            self.take(limiter, cells).await?;
        }
        Ok(())
    }

    async fn take(&self, limiter: &Limiter, cells: NonZeroU32) -> Result<(), ProviderError> {
        let started = tokio::time::Instant::now();
        loop {
            let wait = match limiter.check_n(cells) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(not_until)) => not_until.wait_time_from(TokioClock.now()),
                // Cannot happen: cells are clamped to the burst size. Treat as "never".
                Err(_) => Duration::MAX,
            };
            match self.config.mode {
                RateLimitMode::Reject => {
                    return Err(ProviderError::RateLimited { retry_after: Some(wait), body: None });
                }
                RateLimitMode::Wait { max_wait } => {
                    if started.elapsed().saturating_add(wait) > max_wait {
                        return Err(ProviderError::RateLimited {
                            retry_after: Some(wait),
                            body: None,
                        });
                    }
                    // At least 1 ms, so that a rounding to zero cannot spin.
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }
}

// Keeps `Reference` in use for readers: the instant type must implement it for governor.
const _: fn() = || {
    fn assert_reference<T: Reference>() {}
    assert_reference::<std::time::Instant>();
};

impl Provider for RateLimit {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        self.inner.speaks(protocol)
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            self.admit(&request).await?;
            self.inner.chat(request).await
        })
    }

    fn chat_stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            self.admit(&request).await?;
            self.inner.chat_stream(request).await
        })
    }

    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        Box::pin(async move {
            self.admit_tokens(call.estimated_tokens()).await?;
            self.inner.call(call).await
        })
    }

    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        Box::pin(async move {
            self.admit_tokens(call.estimated_tokens()).await?;
            self.inner.call_stream(call).await
        })
    }
}
