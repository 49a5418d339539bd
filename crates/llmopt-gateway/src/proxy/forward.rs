//! Forwarding a call to its candidates in order (primary, then fallbacks), one path for whole
//! and streamed answers: the attempt differs, the fallback rule, the record and the cache do not.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use llmopt_core::{CacheOutcome, ErrorKind, RequestRecord, Status, Usage, usage::Protocol};
use llmopt_llm::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, Translating};

use super::{ProxiedCall, micros, stream::stream_response};
use crate::{
    cache::{CacheKey, CachedAnswer},
    error::{ApiError, kind_of_status},
    routing::{Candidate, RouteDecision},
};

/// Response headers of the provider not copied (hop-by-hop, or recomputed here).
const DROPPED_RESPONSE_HEADERS: &[&str] =
    &["content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"];

/// What one attempt got back: a whole answer, or the head of a stream whose events follow.
enum Attempt {
    Whole(ChatResponse),
    Stream(ChatStream),
}

/// What an answer, whole or streamed, tells the record and the cache.
pub(super) struct Answered<'a> {
    pub candidate: &'a Candidate,
    /// The model the provider says answered (the candidate's model when it does not say).
    pub served_model: String,
    pub usage: Option<Usage>,
    pub stop_reason: Option<String>,
    /// From sending the request upstream to the first byte (whole) or first token (stream).
    pub first_output: Option<Duration>,
    pub upstream_start: Instant,
    pub cache_outcome: CacheOutcome,
    /// The answer stopped before its end (a cut stream, a client that left): `usage` is what
    /// was seen by then, and the cost a lower bound.
    pub incomplete: bool,
}

impl ProxiedCall {
    /// The record of an answered call: usage, exact cost (at the served model's price, else the
    /// candidate's), stop reason, time to first output and upstream time. For an incomplete
    /// answer, the usage seen and its exact cost, which is a lower bound of the call's.
    pub(super) fn answered_record(&self, status: Status, answered: &Answered<'_>) -> RequestRecord {
        let candidate = answered.candidate;
        let mut record = self.record(&candidate.provider, &answered.served_model, status);
        record.cache = answered.cache_outcome;
        record.incomplete = answered.incomplete;
        record.usage = answered.usage;
        record.cost = answered
            .usage
            .as_ref()
            .and_then(|usage| self.cost(&[&answered.served_model, &candidate.model], usage));
        if self.hedged {
            // The other attempt was cancelled when this one answered; what the provider billed
            // for it is not reported, so it is charged as a second full call (an upper bound),
            // to the change that sent it.
            record.cost = record.cost.map(|cost| cost + cost);
            record.tags.insert(llmopt_core::HEDGED_TAG.to_owned(), "1".to_owned());
        }
        record.stop_reason = answered.stop_reason.clone();
        let before_upstream = answered.upstream_start.duration_since(self.start);
        record.ttft_us = answered
            .first_output
            .map(|first| micros(before_upstream + first).min(record.latency_us));
        record.upstream_us = Some(micros(self.upstream_time).min(record.latency_us));
        record
    }

    /// Keeps a successful answer for later identical requests.
    pub(super) fn cache_answer(
        &self,
        key: CacheKey,
        status: u16,
        content_type: String,
        body: Bytes,
        record: &RequestRecord,
    ) {
        self.runtime.cache.insert(
            key,
            CachedAnswer {
                status,
                content_type,
                body,
                served_model: record.served_model.as_str().to_owned(),
                usage: record.usage,
                stop_reason: record.stop_reason.clone(),
                cost: record.cost,
                ttl: self.cache_ttl.unwrap_or(self.runtime.cache.ttl),
            },
        );
    }
}

/// Tries the decision's candidates in order. A candidate that is not configured or does not
/// speak the caller's protocol is skipped; an error that [`falls_back`] moves on to the next;
/// any other error, or the last candidate's, is the answer.
pub(super) async fn forward(
    mut call: ProxiedCall,
    decision: RouteDecision,
    chat: ChatRequest,
    requested_model: &str,
    cache_key: Option<CacheKey>,
    cache_outcome: CacheOutcome,
) -> Response {
    let candidate_count = decision.candidates.len();
    let mut pending = Some(chat);
    let mut last_failure: Option<(&Candidate, ProviderError)> = None;
    for (index, candidate) in decision.candidates.iter().enumerate() {
        let is_last = index + 1 == candidate_count;
        let Some(request) = pending.as_ref() else { break };
        let provider = match chat_provider(&call, candidate, request) {
            Ok(provider) => provider,
            Err(error) => {
                // A fallback that cannot take the request (not configured, or a field without
                // an equivalent in its protocol) leaves the earlier candidate's failure as the
                // answer: it says what went wrong with the call.
                if last_failure.is_none() {
                    last_failure = Some((candidate, error));
                }
                continue;
            }
        };
        // The last attempt takes the request; earlier ones need a copy for the next.
        let Some(mut upstream) = (if is_last { pending.take() } else { pending.clone() }) else {
            break;
        };
        if candidate.model != requested_model
            && let Err(error) = upstream.set("model", &candidate.model)
        {
            return call.refuse(ApiError::internal(format!("cannot set model: {error}")));
        }
        // Only the primary candidate's answer may fill the cache: a fallback model's answer
        // must not be served later as the primary's.
        let cache_key = if index == 0 { cache_key } else { None };
        let upstream_start = Instant::now();
        let attempt = if call.stream {
            with_timeout(decision.timeout, provider.chat_stream(upstream))
                .await
                .map(Attempt::Stream)
        } else if let Some(delay) = decision.hedge_after.filter(|_| index == 0) {
            // Streams are never hedged: two racing streams bill every token twice and the
            // caller cannot be given one consistent stream.
            let overlay = call.state.overlay();
            overlay.hedge_eligible();
            let hedged = with_timeout(decision.timeout, async {
                Ok(llmopt_llm::hedged_chat(provider.as_ref(), upstream, delay, || {
                    overlay.may_hedge()
                })
                .await)
            })
            .await;
            match hedged {
                Ok(hedged) => {
                    call.hedged = hedged.second_sent;
                    hedged.result.map(Attempt::Whole)
                }
                Err(timeout) => Err(timeout),
            }
        } else {
            with_timeout(decision.timeout, provider.chat(upstream)).await.map(Attempt::Whole)
        };
        match attempt {
            // A stream's upstream time is counted when it ends (see `stream::RecordingStream`).
            Ok(Attempt::Stream(stream)) => {
                return stream_response(
                    call,
                    candidate.clone(),
                    upstream_start,
                    stream,
                    cache_key,
                    cache_outcome,
                );
            }
            Ok(Attempt::Whole(answer)) => {
                call.upstream_time += upstream_start.elapsed();
                return whole_response(
                    call,
                    candidate,
                    upstream_start,
                    answer,
                    cache_key,
                    cache_outcome,
                );
            }
            Err(error) => {
                call.upstream_time += upstream_start.elapsed();
                if !is_last && falls_back(&error) {
                    tracing::warn!(provider = %candidate.provider, %error, "falling back");
                    last_failure = Some((candidate, error));
                    continue;
                }
                return fail(call, candidate, error, cache_outcome);
            }
        }
    }
    match last_failure {
        Some((candidate, error)) => fail(call, candidate, error, cache_outcome),
        None => call.refuse(ApiError::not_found("the route has no provider to try")),
    }
}

/// The candidate's provider for a chat call: its own when it speaks the caller's protocol,
/// else wrapped in the translation to its protocol ([`Translating`]) when `request` can be
/// translated. A request that cannot is refused with the field named, before anything is sent.
pub(super) fn chat_provider(
    call: &ProxiedCall,
    candidate: &Candidate,
    request: &ChatRequest,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let provider = configured_provider(call, candidate)?;
    if provider.speaks(call.protocol) {
        return Ok(provider);
    }
    let Some(translating) = Translating::new(provider, call.protocol) else {
        return Err(wrong_protocol(call, candidate));
    };
    translating.check(request)?;
    Ok(Arc::new(translating))
}

fn configured_provider(
    call: &ProxiedCall,
    candidate: &Candidate,
) -> Result<Arc<dyn Provider>, ProviderError> {
    call.runtime.providers.get(&candidate.provider).cloned().ok_or_else(|| {
        ProviderError::InvalidRequest(format!(
            "provider `{}` is not configured",
            candidate.provider
        ))
    })
}

fn wrong_protocol(call: &ProxiedCall, candidate: &Candidate) -> ProviderError {
    ProviderError::InvalidRequest(format!(
        "provider `{}` does not speak the {} protocol of this endpoint",
        candidate.provider,
        match call.protocol {
            Protocol::OpenAi => "OpenAI",
            Protocol::Anthropic => "Anthropic",
        }
    ))
}

/// The candidate's provider, if it is configured and speaks the caller's protocol (the
/// OpenAI-only endpoints: embeddings, Responses).
pub(super) fn usable_provider(
    call: &ProxiedCall,
    candidate: &Candidate,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let provider = configured_provider(call, candidate)?;
    if !provider.speaks(call.protocol) {
        return Err(wrong_protocol(call, candidate));
    }
    Ok(provider)
}

/// A whole answer: recorded, cached when it may be, passed through as the provider's bytes.
fn whole_response(
    call: ProxiedCall,
    candidate: &Candidate,
    upstream_start: Instant,
    answer: ChatResponse,
    cache_key: Option<CacheKey>,
    cache_outcome: CacheOutcome,
) -> Response {
    let answered = Answered {
        candidate,
        served_model: answer.model.clone().unwrap_or_else(|| candidate.model.clone()),
        usage: answer.usage,
        stop_reason: answer.stop_reason.clone(),
        first_output: Some(answer.first_byte),
        upstream_start,
        cache_outcome,
        incomplete: false,
    };
    let record = call.answered_record(Status::Ok, &answered);
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let graded_text = (call.judge_question.is_some() && status.is_success())
        .then(|| crate::judge::answer_text(call.protocol, &answer.body))
        .flatten();
    if let Some(key) = cache_key.filter(|_| status.is_success()) {
        let content_type = answer
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map_or_else(|| "application/json".to_owned(), |(_, v)| v.clone());
        call.cache_answer(key, answer.status, content_type, answer.body.clone(), &record);
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    copy_response_headers(response.headers_mut(), &answer.headers);
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    call.add_headers(response.headers_mut(), Some(&answered.served_model), cache_outcome);
    call.finish(record);
    call.grade(graded_text);
    response
}

pub(super) async fn with_timeout<T>(
    timeout: Option<Duration>,
    future: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match timeout {
        None => future.await,
        Some(limit) => match tokio::time::timeout(limit, future).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout("route timeout")),
        },
    }
}

pub(super) fn fail(
    call: ProxiedCall,
    candidate: &Candidate,
    error: ProviderError,
    cache_outcome: CacheOutcome,
) -> Response {
    let model = candidate.model.as_str();
    let mut record = call.record(&candidate.provider, model, Status::Error(error_kind(&error)));
    record.upstream_us = Some(micros(call.upstream_time).min(record.latency_us));
    record.cache = cache_outcome;
    let response = provider_error_response(&call, error, model, cache_outcome);
    call.finish(record);
    response
}

/// Whether the next candidate should be tried after this error.
pub(super) fn falls_back(error: &ProviderError) -> bool {
    match error {
        ProviderError::RateLimited { .. }
        | ProviderError::Timeout(_)
        | ProviderError::Transport(_)
        | ProviderError::InvalidResponse(_) => true,
        ProviderError::Upstream { status, .. } => *status >= 500 || *status == 429,
        ProviderError::InvalidRequest(_) => false,
    }
}

pub(crate) fn error_kind(error: &ProviderError) -> ErrorKind {
    match error {
        ProviderError::RateLimited { .. } => ErrorKind::RateLimited,
        ProviderError::Timeout(_) => ErrorKind::Timeout,
        ProviderError::Upstream { status, .. } => kind_of_status(*status),
        ProviderError::Transport(_) => ErrorKind::Transport,
        ProviderError::InvalidResponse(_) => ErrorKind::InvalidResponse,
        ProviderError::InvalidRequest(_) => ErrorKind::InvalidRequest,
    }
}

/// The client's answer for a provider error: upstream error bodies pass through with their
/// status; errors of our own making are rendered in the caller's shape.
pub(super) fn provider_error_response(
    call: &ProxiedCall,
    error: ProviderError,
    served_model: &str,
    cache_outcome: CacheOutcome,
) -> Response {
    let retry_after = |duration: Option<Duration>| duration.map(|d| d.as_secs().max(1));
    let mut response = match error {
        ProviderError::Upstream { status, body, retry_after: after } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(seconds) = retry_after(after) {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        ProviderError::RateLimited { retry_after: after, body } => {
            let mut response = match body {
                Some(body) => {
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    response
                }
                None => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorKind::RateLimited,
                    "the provider is rate limiting this gateway",
                )
                .into_response_for(call.protocol),
            };
            if let Some(seconds) = retry_after(after) {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        ProviderError::Timeout(what) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Timeout,
            format!("the provider timed out ({what})"),
        )
        .into_response_for(call.protocol),
        ProviderError::Transport(message) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::Transport,
            format!("cannot reach the provider: {message}"),
        )
        .into_response_for(call.protocol),
        ProviderError::InvalidResponse(message) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::InvalidResponse,
            format!("the provider's answer could not be understood: {message}"),
        )
        .into_response_for(call.protocol),
        ProviderError::InvalidRequest(message) => {
            ApiError::invalid_request(message).into_response_for(call.protocol)
        }
    };
    call.add_headers(response.headers_mut(), Some(served_model), cache_outcome);
    response
}

pub(super) fn copy_response_headers(target: &mut HeaderMap, headers: &[(String, String)]) {
    for (name, value) in headers {
        if DROPPED_RESPONSE_HEADERS.iter().any(|dropped| name.eq_ignore_ascii_case(dropped)) {
            continue;
        }
        // `x-request-id` is the gateway's own; the provider's stays available under its name.
        let name = if name.eq_ignore_ascii_case("x-request-id") {
            "x-llmopt-upstream-request-id"
        } else {
            name.as_str()
        };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            target.insert(name, value);
        }
    }
}
