//! Decorators around a fake in-process provider, under tokio's paused time: waits are exact
//! and nothing really sleeps.

use std::{
    collections::VecDeque,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, future::BoxFuture};
use llmopt_core::Protocol;
use llmopt_llm::{
    ChatRequest, ChatResponse, ChatStream, Hedge, HedgeConfig, Provider, ProviderError, RateLimit,
    RateLimitConfig, RateLimitMode, Retry, RetryConfig, StreamItem, StreamOutcome, Timeout,
    Timeouts, decorators::rate_limit::estimated_tokens,
};
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Step {
    Answer { after: Duration, tag: &'static str },
    Fail { after: Duration, error: ProviderError },
}

/// Answers from a script; records when each call started and how many calls were dropped
/// before finishing (cancelled).
#[derive(Debug)]
struct Fake {
    script: Mutex<VecDeque<Step>>,
    starts: Mutex<Vec<Instant>>,
    cancelled: Arc<AtomicUsize>,
}

impl Fake {
    fn new(steps: Vec<Step>) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(steps.into()),
            starts: Mutex::new(Vec::new()),
            cancelled: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn calls(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    fn next(&self) -> Step {
        self.starts.lock().unwrap().push(Instant::now());
        self.script.lock().unwrap().pop_front().expect("script exhausted")
    }
}

struct CancelGuard(Arc<AtomicUsize>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn response(tag: &str) -> ChatResponse {
    ChatResponse {
        status: 200,
        headers: vec![("x-tag".into(), tag.into())],
        body: Bytes::from(format!("{{\"tag\":\"{tag}\"}}")),
        usage: None,
        model: None,
        stop_reason: None,
        first_byte: Duration::ZERO,
        elapsed: Duration::ZERO,
    }
}

impl Provider for Fake {
    fn id(&self) -> &str {
        "fake"
    }

    fn speaks(&self, _protocol: Protocol) -> bool {
        true
    }

    fn chat(&self, _request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        let step = self.next();
        let guard = CancelGuard(Arc::clone(&self.cancelled), false);
        Box::pin(async move {
            // Moves the whole guard in (a field assignment alone would capture only the field).
            let mut guard = guard;
            let result = match step {
                Step::Answer { after, tag } => {
                    tokio::time::sleep(after).await;
                    Ok(response(tag))
                }
                Step::Fail { after, error } => {
                    tokio::time::sleep(after).await;
                    Err(error)
                }
            };
            guard.1 = true;
            result
        })
    }

    fn chat_stream(
        &self,
        _request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        let step = self.next();
        Box::pin(async move {
            match step {
                Step::Answer { after, .. } => {
                    // First bytes at once, the rest `after` later.
                    let items = futures::stream::iter([Ok(StreamItem::Bytes(Bytes::from_static(
                        b"data: a\n\n",
                    )))])
                    .chain(futures::stream::once(async move {
                        tokio::time::sleep(after).await;
                        Ok(StreamItem::Bytes(Bytes::from_static(b"data: b\n\n")))
                    }))
                    .chain(futures::stream::iter([Ok(StreamItem::End(StreamOutcome {
                        complete: true,
                        ..StreamOutcome::default()
                    }))]))
                    .boxed();
                    Ok(ChatStream {
                        status: 200,
                        headers: Vec::new(),
                        items,
                        progress: llmopt_llm::StreamProgress::default(),
                    })
                }
                Step::Fail { after, error } => {
                    tokio::time::sleep(after).await;
                    Err(error)
                }
            }
        })
    }
}

fn request() -> ChatRequest {
    ChatRequest::from_slice(Protocol::OpenAi, br#"{"model":"m","messages":[]}"#).unwrap()
}

fn unavailable() -> Step {
    Step::Fail {
        after: Duration::ZERO,
        error: ProviderError::Upstream { status: 503, body: Bytes::new(), retry_after: None },
    }
}

#[tokio::test(start_paused = true)]
async fn retry_backs_off_with_full_jitter_within_bounds() {
    let fake = Fake::new(vec![unavailable(), unavailable(), unavailable(), unavailable()]);
    let config = RetryConfig {
        max_attempts: 4,
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
        ..RetryConfig::default()
    };
    let retry = Retry::new(fake.clone(), config);
    let error = retry.chat(request()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Upstream { status: 503, .. }));
    let starts = fake.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 4, "bounded by max_attempts");
    // Ceilings: 100 ms, 200 ms, then capped at 250 ms.
    for (gap, ceiling) in starts.windows(2).map(|w| w[1] - w[0]).zip([100u64, 200, 250]) {
        assert!(gap <= Duration::from_millis(ceiling), "{gap:?} > {ceiling} ms");
    }
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().any(|gap| !gap.is_zero()), "jitter draws are not all zero");
}

#[tokio::test(start_paused = true)]
async fn retry_honours_retry_after_exactly() {
    let fake = Fake::new(vec![
        Step::Fail {
            after: Duration::ZERO,
            error: ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                body: None,
            },
        },
        Step::Answer { after: Duration::ZERO, tag: "ok" },
    ]);
    let retry = Retry::new(fake.clone(), RetryConfig::default());
    let started = Instant::now();
    retry.chat(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_the_time_budget() {
    let fake = Fake::new(vec![
        Step::Fail { after: Duration::from_secs(4), error: ProviderError::Timeout("first byte") },
        Step::Fail { after: Duration::from_secs(4), error: ProviderError::Timeout("first byte") },
        Step::Answer { after: Duration::ZERO, tag: "late" },
    ]);
    let retry = Retry::new(
        fake.clone(),
        RetryConfig {
            max_attempts: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(6),
            ..RetryConfig::default()
        },
    );
    let error = retry.chat(request()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout(_)));
    assert_eq!(fake.calls(), 2, "no attempt starts after the budget");
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_a_stream_that_started() {
    let fake =
        Fake::new(vec![unavailable(), Step::Answer { after: Duration::from_secs(1), tag: "s" }]);
    let retry = Retry::new(
        fake.clone(),
        RetryConfig { base_backoff: Duration::from_millis(10), ..RetryConfig::default() },
    );
    let stream = retry.chat_stream(request()).await.unwrap();
    let items: Vec<_> = stream.items.collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(fake.calls(), 2, "the failure before the first byte was retried, nothing after");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_for_request_budget() {
    let fake =
        Fake::new((0..3).map(|_| Step::Answer { after: Duration::ZERO, tag: "ok" }).collect());
    let limited = RateLimit::new(
        fake.clone(),
        RateLimitConfig {
            requests_per_minute: NonZeroU32::new(2),
            tokens_per_minute: None,
            mode: RateLimitMode::Wait { max_wait: Duration::from_secs(60) },
        },
    );
    let started = Instant::now();
    for _ in 0..3 {
        limited.chat(request()).await.unwrap();
    }
    let offsets: Vec<Duration> = fake.starts.lock().unwrap().iter().map(|s| *s - started).collect();
    // Burst of 2, then one request per 30 s (60 s / 2).
    assert_eq!(offsets[0], Duration::ZERO);
    assert_eq!(offsets[1], Duration::ZERO);
    assert!(
        offsets[2] >= Duration::from_secs(30) && offsets[2] < Duration::from_millis(30_010),
        "{offsets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_rejects_when_configured() {
    let fake = Fake::new(vec![Step::Answer { after: Duration::ZERO, tag: "ok" }]);
    let limited = RateLimit::new(
        fake.clone(),
        RateLimitConfig {
            requests_per_minute: NonZeroU32::new(1),
            tokens_per_minute: None,
            mode: RateLimitMode::Reject,
        },
    );
    limited.chat(request()).await.unwrap();
    match limited.chat(request()).await.unwrap_err() {
        ProviderError::RateLimited { retry_after: Some(wait), .. } => {
            assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_counts_tokens() {
    let fake =
        Fake::new((0..2).map(|_| Step::Answer { after: Duration::ZERO, tag: "ok" }).collect());
    let limited = RateLimit::new(
        fake.clone(),
        RateLimitConfig {
            requests_per_minute: None,
            tokens_per_minute: NonZeroU32::new(1000),
            mode: RateLimitMode::Wait { max_wait: Duration::from_secs(120) },
        },
    );
    let big = ChatRequest::from_slice(
        Protocol::OpenAi,
        br#"{"model":"m","max_tokens":600,"messages":[{"role":"user","content":"Hello there"}]}"#,
    )
    .unwrap();
    let tokens = estimated_tokens(&big);
    assert!((600..700).contains(&tokens), "{tokens}");
    let started = Instant::now();
    limited.chat(big.clone()).await.unwrap();
    limited.chat(big).await.unwrap();
    // 1,000 tokens per minute = one token per 60 ms; the second request lacks 2·tokens − 1000.
    let expected = Duration::from_millis(60 * (2 * tokens - 1000));
    let waited = started.elapsed();
    assert!(
        waited >= expected && waited < expected + Duration::from_millis(5),
        "{waited:?} vs {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hedge_sends_a_second_request_after_the_delay_and_cancels_the_loser() {
    let fake = Fake::new(vec![
        Step::Answer { after: Duration::from_secs(10), tag: "slow" },
        Step::Answer { after: Duration::from_secs(1), tag: "fast" },
    ]);
    let hedge = Hedge::new(fake.clone(), HedgeConfig { delay: Duration::from_secs(2) });
    let started = Instant::now();
    let response = hedge.chat(request()).await.unwrap();
    assert_eq!(response.headers[0].1, "fast");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(fake.calls(), 2);
    assert_eq!(fake.cancelled.load(Ordering::SeqCst), 1, "the slow request was dropped");
}

#[tokio::test(start_paused = true)]
async fn hedge_does_not_fire_when_the_first_answer_is_quick() {
    let fake = Fake::new(vec![Step::Answer { after: Duration::from_secs(1), tag: "quick" }]);
    let hedge = Hedge::new(fake.clone(), HedgeConfig { delay: Duration::from_secs(2) });
    assert_eq!(hedge.chat(request()).await.unwrap().headers[0].1, "quick");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn hedge_survives_a_failing_first_request() {
    let fake = Fake::new(vec![
        Step::Fail {
            after: Duration::from_secs(3),
            error: ProviderError::Transport("reset".into()),
        },
        Step::Answer { after: Duration::from_secs(5), tag: "backup" },
    ]);
    let hedge = Hedge::new(fake.clone(), HedgeConfig { delay: Duration::from_secs(1) });
    let started = Instant::now();
    assert_eq!(hedge.chat(request()).await.unwrap().headers[0].1, "backup");
    assert_eq!(started.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn timeout_decorator_bounds_calls_and_streams() {
    let fake = Fake::new(vec![
        Step::Answer { after: Duration::from_secs(30), tag: "slow" },
        Step::Answer { after: Duration::from_secs(30), tag: "slow stream" },
    ]);
    let timeouts = Timeouts {
        first_byte: Duration::from_secs(1),
        total: Duration::from_secs(5),
        ..Timeouts::default()
    };
    let bounded = Timeout::new(fake.clone(), timeouts);
    let started = Instant::now();
    assert!(matches!(bounded.chat(request()).await, Err(ProviderError::Timeout("total"))));
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    let stream = bounded.chat_stream(request()).await.unwrap();
    let items: Vec<_> = stream.items.collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(items[0], Ok(StreamItem::Bytes(_))));
    assert!(matches!(items[1], Err(ProviderError::Timeout("total"))));
    match &items[2] {
        Ok(StreamItem::End(outcome)) => {
            assert!(!outcome.complete);
            assert_eq!(outcome.usage, None);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_says_whether_a_second_attempt_was_sent_and_won() {
    let slow_then_fast = || {
        Fake::new(vec![
            Step::Answer { after: Duration::from_secs(10), tag: "slow" },
            Step::Answer { after: Duration::from_secs(1), tag: "fast" },
        ])
    };
    let fake = slow_then_fast();
    let hedged =
        llmopt_llm::hedged_chat(fake.as_ref(), request(), Duration::from_secs(2), || true).await;
    assert_eq!(hedged.result.unwrap().headers[0].1, "fast");
    assert!(hedged.second_sent && hedged.second_won);
    // The load budget says no: one attempt only, however slow.
    let fake = slow_then_fast();
    let started = Instant::now();
    let hedged =
        llmopt_llm::hedged_chat(fake.as_ref(), request(), Duration::from_secs(2), || false).await;
    assert_eq!(hedged.result.unwrap().headers[0].1, "slow");
    assert!(!hedged.second_sent && !hedged.second_won);
    assert_eq!((fake.calls(), started.elapsed()), (1, Duration::from_secs(10)));
}
