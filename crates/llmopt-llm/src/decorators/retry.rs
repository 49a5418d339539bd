//! Retries with exponential backoff and full jitter.
//!
//! Retried: connect and other transport errors, timeouts, 429, 500, 502, 503, 504 and
//! Anthropic's 529 (overloaded). Never retried: any other 4xx (the request itself is wrong),
//! invalid responses, invalid requests. A stream is retried only while `chat_stream` has not
//! resolved: once it resolves its first byte is on its way to the caller, and a second attempt
//! would send a second, different answer after part of the first.
//!
//! The wait before attempt `n + 1` is drawn uniformly from `[0, min(max_backoff, base · 2ⁿ)]`
//! ("full jitter", which spreads a crowd of clients best). A `Retry-After` from the provider
//! replaces the drawn wait. Attempts are bounded by `max_attempts` and by `max_elapsed`: a wait
//! that would end past the budget is not started, and the last error is returned instead.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use llmopt_core::usage::Protocol;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::time::Instant;

use crate::{
    passthrough::{ApiCall, ApiResponse, ApiStream},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
};

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first one included (1 = no retry).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts once this much time has passed since the first attempt started.
    pub max_elapsed: Duration,
    /// A `Retry-After` longer than this is not waited for: the error goes to the caller.
    pub max_retry_after: Duration,
    /// Seed of the jitter, for reproducible tests and replays.
    pub seed: u64,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(30),
            seed: 0x5eed,
        }
    }
}

/// Whether an error is worth another attempt.
pub fn is_retryable(error: &ProviderError) -> bool {
    match error {
        ProviderError::RateLimited { .. }
        | ProviderError::Timeout(_)
        | ProviderError::Transport(_) => true,
        ProviderError::Upstream { status, .. } => {
            matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
        }
        ProviderError::InvalidResponse(_) | ProviderError::InvalidRequest(_) => false,
    }
}

fn retry_after_of(error: &ProviderError) -> Option<Duration> {
    match error {
        ProviderError::RateLimited { retry_after, .. }
        | ProviderError::Upstream { retry_after, .. } => *retry_after,
        _ => None,
    }
}

pub struct Retry {
    inner: Arc<dyn Provider>,
    config: RetryConfig,
    rng: Mutex<Xoshiro256PlusPlus>,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner).field("config", &self.config).finish()
    }
}

impl Retry {
    pub fn new(inner: Arc<dyn Provider>, config: RetryConfig) -> Retry {
        let rng = Mutex::new(Xoshiro256PlusPlus::seed_from_u64(config.seed));
        Retry { inner, config, rng }
    }

    /// The full-jitter wait before retry number `retry` (0-based).
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .config
            .base_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.config.max_backoff);
        let fraction: f64 = match self.rng.lock() {
            Ok(mut rng) => rng.r#gen::<f64>(),
            // A poisoned lock only means another thread panicked mid-draw: wait the maximum.
            Err(_) => 1.0,
        };
        ceiling.mul_f64(fraction)
    }

    /// How long to wait before the next attempt, or `None` to give up with `error`.
    fn plan_retry(
        &self,
        error: &ProviderError,
        attempt: u32,
        started: Instant,
    ) -> Option<Duration> {
        if !is_retryable(error) || attempt >= self.config.max_attempts {
            return None;
        }
        let wait = match retry_after_of(error) {
            Some(retry_after) if retry_after > self.config.max_retry_after => return None,
            Some(retry_after) => retry_after,
            None => self.backoff(attempt - 1),
        };
        if started.elapsed() + wait > self.config.max_elapsed {
            return None;
        }
        Some(wait)
    }

    async fn run<R: Clone, T, F>(&self, request: R, call: F) -> Result<T, ProviderError>
    where
        F: Fn(R) -> BoxFuture<'static, Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match call(request.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) => match self.plan_retry(&error, attempt, started) {
                    None => return Err(error),
                    Some(wait) => {
                        tracing::debug!(provider = self.inner.id(), attempt, ?wait, %error, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                },
            }
        }
    }
}

impl Provider for Retry {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        self.inner.speaks(protocol)
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(request, move |request| {
            let inner = Arc::clone(&inner);
            Box::pin(async move { inner.chat(request).await })
        }))
    }

    fn chat_stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(request, move |request| {
            let inner = Arc::clone(&inner);
            Box::pin(async move { inner.chat_stream(request).await })
        }))
    }

    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(call, move |call| {
            let inner = Arc::clone(&inner);
            Box::pin(async move { inner.call(call).await })
        }))
    }

    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(call, move |call| {
            let inner = Arc::clone(&inner);
            Box::pin(async move { inner.call_stream(call).await })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let upstream = |status| ProviderError::Upstream {
            status,
            body: bytes::Bytes::new(),
            retry_after: None,
        };
        for status in [500, 502, 503, 504, 529] {
            assert!(is_retryable(&upstream(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422, 501] {
            assert!(!is_retryable(&upstream(status)), "{status}");
        }
        assert!(is_retryable(&ProviderError::Timeout("first byte")));
        assert!(is_retryable(&ProviderError::Transport("connect: refused".into())));
        assert!(!is_retryable(&ProviderError::InvalidResponse("x".into())));
    }
}
