//! OpenAI's Responses API: `POST /v1/responses` (whole or streamed), and `GET` / `DELETE
//! /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` passed through.
//!
//! - **Usage** comes from the final object (whole answers) or the `response.completed` event
//!   (streams; also `response.incomplete` and `response.failed`): `input_tokens` with
//!   `input_tokens_details.cached_tokens`, `output_tokens` with
//!   `output_tokens_details.reasoning_tokens`, through the core OpenAI normaliser, priced
//!   exactly. A stream's `response.*` events are forwarded as the provider's bytes, untouched.
//! - **Cache.** A response is stored upstream unless `store` is false, and a conversation
//!   continues from `previous_response_id`: only a whole answer with `store: false` whose
//!   answer is a function of the request alone may be cached (no previous response,
//!   conversation, background run, unpinned prompt template or tool that looks at the world:
//!   [`answer_depends_on_the_request_alone`]), and only when it does not sample: temperature
//!   0 on a model that takes one (never a reasoning model), unless the cache or the policy
//!   allows sampled answers, as on the chat route. The record's `sampled` flag says the same.
//! - **`max_output_tokens`** gets the route's or the policy's `max_tokens` cap.
//! - **Who may read a stored response.** The gateway notes which provider answered each stored
//!   response and for which tenant ([`ResponseOwners`], bounded, in memory), and serves `GET`,
//!   `DELETE` and `input_items` only to that tenant and from that provider. An id it did not
//!   see (made before a restart, or directly upstream) is answered 404: passing it to a provider
//!   would let one tenant read another's conversation.

use std::{
    borrow::Cow,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use llmopt_core::{CacheOutcome, Endpoint, ErrorKind, SseDecoder, Status, Usage, usage::Protocol};
use llmopt_llm::{ApiCall, ApiMethod, ApiResponse, ProviderError};
use serde_json::Value;
use tracing::Instrument;

use super::{
    FORWARDED_REQUEST_HEADERS, ProxiedCall, endpoints,
    forward::{Answered, copy_response_headers, error_kind, fail, falls_back, usable_provider},
};
use crate::{auth::Access, error::ApiError, routing::Candidate, state::AppState};

/// The most stored responses whose owner is remembered (the oldest are forgotten first).
pub const MAX_OWNED_RESPONSES: u64 = 100_000;
/// How long an owner is remembered (OpenAI keeps stored responses 30 days).
const OWNER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest response id accepted in a path.
const MAX_ID_BYTES: usize = 128;
const MAX_QUERY_BYTES: usize = 1_024;

/// Who made a stored response: the provider that holds it and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    provider: String,
    tenant: Option<String>,
}

/// The owners of the stored responses the gateway made, bounded in count and age.
#[derive(Debug, Clone)]
pub struct ResponseOwners(moka::sync::Cache<String, Owner>);

impl Default for ResponseOwners {
    fn default() -> ResponseOwners {
        ResponseOwners(
            moka::sync::Cache::builder()
                .max_capacity(MAX_OWNED_RESPONSES)
                .time_to_live(OWNER_TTL)
                .build(),
        )
    }
}

impl ResponseOwners {
    fn note(&self, id: &str, provider: &str, tenant: Option<&str>) {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return;
        }
        let owner = Owner { provider: provider.to_owned(), tenant: tenant.map(str::to_owned) };
        self.0.insert(id.to_owned(), owner);
    }
}

/// `POST /v1/responses`.
pub async fn create(State(state): State<AppState>, request: Request) -> Response {
    let call = ProxiedCall::start(state, Protocol::OpenAi, Endpoint::Responses);
    let span = call.span.clone();
    handle(call, request).instrument(span).await
}

async fn handle(call: ProxiedCall, request: Request) -> Response {
    let mut routed = match endpoints::route(call, request).await {
        Ok(routed) => routed,
        Err(refused) => return refused,
    };
    if let Err(error) = cap_output(&mut routed) {
        return routed.call.refuse(error);
    }
    let served = routed.decision.candidates.first().map_or(routed.model.as_str(), |c| &c.model);
    routed.call.sampled = asks_for_sampling(&routed.fields, served);
    let stored = routed.fields.get::<bool>("store") != Some(false);
    let cacheable = !stored
        && !routed.call.stream
        && answer_depends_on_the_request_alone(&routed.fields)
        && (!routed.call.sampled
            || routed.call.runtime.config.cache.allow_nonzero_temperature
            || routed.decision.cache_sampled);
    let key = if cacheable { endpoints::cache_key(&routed, "openai-responses") } else { None };
    if routed.call.stream {
        return forward_stream(routed, stored).await;
    }
    let routed = match endpoints::from_cache(routed, key.as_ref()) {
        Ok(hit) => return hit,
        Err(routed) => *routed,
    };
    endpoints::forward_whole(routed, "responses", key, |call, provider, answer| {
        if stored {
            note_owner(call, provider, answer);
        }
    })
    .await
}

/// The `max_tokens` cap of the route or the policy, on `max_output_tokens` (which bounds
/// reasoning and visible output together, as `max_completion_tokens` does): a request asking
/// for more, or for no limit, is sent with the cap, and the cache key sees the capped value.
fn cap_output(routed: &mut endpoints::Routed) -> Result<(), ApiError> {
    const FIELD: &str = "max_output_tokens";
    let mut limit: Option<u32> = routed.fields.get(FIELD);
    if let Some(cap) = routed.decision.max_tokens_cap
        && limit.is_none_or(|asked| asked > cap)
    {
        routed
            .fields
            .set(FIELD, &cap)
            .map_err(|error| ApiError::internal(format!("cannot cap {FIELD}: {error}")))?;
        if let Some(object) = routed.body_value.as_object_mut() {
            object.insert(FIELD.to_owned(), Value::from(cap));
        }
        limit = Some(cap);
    }
    routed.call.max_tokens = limit;
    Ok(())
}

/// Whether the request samples its answer: a temperature absent (the default is 1) or above
/// 0, as on the chat route, and always for a reasoning model (o-series, gpt-5) or a request
/// with `reasoning` settings: those take no temperature and sample their reasoning.
fn asks_for_sampling(fields: &llmopt_llm::ChatRequest, served_model: &str) -> bool {
    let temperature: Option<f64> = fields.get("temperature");
    !temperature.is_some_and(|t| t <= 0.0)
        || fields.fields.contains_key("reasoning")
        || llmopt_llm::translate::takes_max_completion_tokens(served_model)
}

/// Tools whose result depends only on the model's answer: the model's call *is* the answer.
const TOOLS_OF_THE_ANSWER: &[&str] = &["function", "custom"];

/// Whether the answer is a function of the request alone, so that a repeat may be answered
/// from the cache: not when it continues state kept upstream (`previous_response_id`, a
/// `conversation`, a reusable `prompt` without a pinned `version`), runs in the `background`
/// (the answer is a queued response to poll), or lets the model use tools that look at the
/// world (web or file search, code interpreter, computer use, MCP servers, image generation…),
/// whose results change.
fn answer_depends_on_the_request_alone(fields: &llmopt_llm::ChatRequest) -> bool {
    let present = |key: &str| {
        fields.fields.get(key).is_some_and(|raw| raw.get() != "null" && raw.get() != "false")
    };
    if present("previous_response_id") || present("conversation") || present("background") {
        return false;
    }
    if let Some(prompt) = fields.get::<Value>("prompt").filter(|p| !p.is_null())
        && prompt.get("version").is_none_or(Value::is_null)
    {
        return false;
    }
    let tools: Vec<Value> = fields.get("tools").unwrap_or_default();
    tools.iter().all(|tool| {
        tool.get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| TOOLS_OF_THE_ANSWER.contains(&kind))
    })
}

fn note_owner(call: &ProxiedCall, provider: &str, answer: &ApiResponse) {
    #[derive(serde::Deserialize)]
    struct IdSkim<'a> {
        #[serde(borrow)]
        id: Option<Cow<'a, str>>,
    }
    if let Ok(IdSkim { id: Some(id) }) = serde_json::from_slice::<IdSkim<'_>>(&answer.body) {
        call.state.response_owners().note(&id, provider, call.tenant.as_deref());
    }
}

/// A streamed response: the candidates in order until one answers with a head; its events
/// then pass through as they come, recorded when the stream ends or the client leaves.
async fn forward_stream(routed: endpoints::Routed, stored: bool) -> Response {
    let endpoints::Routed { mut call, fields, model, decision, .. } = routed;
    let count = decision.candidates.len();
    let mut last_failure: Option<(usize, ProviderError)> = None;
    for (index, candidate) in decision.candidates.iter().enumerate() {
        let provider = match usable_provider(&call, candidate) {
            Ok(provider) => provider,
            Err(error) => {
                last_failure = Some((index, error));
                continue;
            }
        };
        let body = match endpoints::body_for(&fields, &model, &candidate.model) {
            Ok(body) => body,
            Err(error) => return call.refuse(error),
        };
        let api_call = ApiCall {
            method: ApiMethod::Post,
            path: "responses".to_owned(),
            body: Some(body),
            headers: fields.headers.clone(),
        };
        let upstream_start = Instant::now();
        match super::forward::with_timeout(decision.timeout, provider.call_stream(api_call)).await {
            Ok(stream) => {
                let mut headers = HeaderMap::new();
                copy_response_headers(&mut headers, &stream.headers);
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                call.add_headers(&mut headers, Some(&candidate.model), CacheOutcome::Bypass);
                let status = StatusCode::from_u16(stream.status).unwrap_or(StatusCode::OK);
                let body = RecordingEvents {
                    chunks: stream.chunks,
                    call: Some(call),
                    candidate: candidate.clone(),
                    upstream_start,
                    decoder: SseDecoder::new(),
                    seen: Seen::default(),
                    stored,
                    error: None,
                    done: false,
                };
                let mut response = Response::new(Body::from_stream(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                return response;
            }
            Err(error) => {
                call.upstream_time += upstream_start.elapsed();
                if index + 1 < count && falls_back(&error) {
                    tracing::warn!(provider = %candidate.provider, %error, "falling back");
                    last_failure = Some((index, error));
                    continue;
                }
                return fail(call, candidate, error, CacheOutcome::Bypass);
            }
        }
    }
    match last_failure {
        Some((index, error)) => {
            fail(call, &decision.candidates[index], error, CacheOutcome::Bypass)
        }
        None => call.refuse(ApiError::not_found("the route has no provider to try")),
    }
}

/// What a Responses stream has shown so far.
#[derive(Debug, Default)]
struct Seen {
    response_id: Option<String>,
    model: Option<String>,
    usage: Option<Usage>,
    /// The final object's `status` (`completed`, `incomplete`, `failed`).
    status: Option<String>,
    first_token: Option<Duration>,
    /// A terminal event (`response.completed`, `.incomplete` or `.failed`) arrived.
    terminal: bool,
}

#[derive(serde::Deserialize)]
struct EventSkim<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    response: Option<Value>,
}

impl Seen {
    fn observe(&mut self, data: &[u8], since_start: Duration) {
        let Ok(event) = serde_json::from_slice::<EventSkim<'_>>(data) else { return };
        if self.first_token.is_none() && event.kind.ends_with(".delta") {
            self.first_token = Some(since_start);
        }
        let Some(response) = event.response else { return };
        let text = |key: &str| response.get(key).and_then(Value::as_str).map(str::to_owned);
        if self.response_id.is_none() {
            self.response_id = text("id");
        }
        if let Some(model) = text("model") {
            self.model = Some(model);
        }
        if matches!(
            event.kind.as_ref(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            self.terminal = true;
            self.status = text("status");
            self.usage = response
                .get("usage")
                .filter(|usage| !usage.is_null())
                .and_then(|usage| Usage::from_openai_usage(usage).ok());
        }
    }
}

/// The body of a streamed response: the provider's bytes as they come, observed on the way.
struct RecordingEvents {
    chunks: BoxStream<'static, Result<Bytes, ProviderError>>,
    /// `Some` until the record is made.
    call: Option<ProxiedCall>,
    candidate: Candidate,
    upstream_start: Instant,
    decoder: SseDecoder,
    seen: Seen,
    stored: bool,
    error: Option<ProviderError>,
    done: bool,
}

impl RecordingEvents {
    /// Records the call: `Ok` after a completed or incomplete response, an error otherwise;
    /// `disconnected` when the client left first.
    fn finish(&mut self, disconnected: bool) {
        let Some(mut call) = self.call.take() else { return };
        call.upstream_time += self.upstream_start.elapsed();
        let status = match (&self.error, self.seen.status.as_deref()) {
            _ if disconnected => Status::Error(ErrorKind::ClientDisconnected),
            (Some(error), _) => Status::Error(error_kind(error)),
            (None, Some("failed")) => Status::Error(ErrorKind::Upstream),
            (None, _) if self.seen.terminal => Status::Ok,
            (None, _) => Status::Error(ErrorKind::InvalidResponse),
        };
        if self.stored
            && let Some(id) = &self.seen.response_id
        {
            call.state.response_owners().note(id, &self.candidate.provider, call.tenant.as_deref());
        }
        let answered = Answered {
            candidate: &self.candidate,
            served_model: self.seen.model.clone().unwrap_or_else(|| self.candidate.model.clone()),
            usage: self.seen.usage,
            stop_reason: self.seen.status.clone(),
            first_output: self.seen.first_token,
            upstream_start: self.upstream_start,
            cache_outcome: CacheOutcome::Bypass,
            incomplete: !self.seen.terminal,
        };
        let record = call.answered_record(status, &answered);
        call.finish(record);
    }
}

impl Stream for RecordingEvents {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.chunks.poll_next_unpin(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let since_start = this.upstream_start.elapsed();
                for event in this.decoder.push(&chunk) {
                    if !event.data.is_empty() {
                        this.seen.observe(&event.data, since_start);
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.error = Some(error);
                this.done = true;
                this.finish(false);
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish(false);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for RecordingEvents {
    fn drop(&mut self) {
        if self.call.is_some() {
            self.finish(true);
        }
    }
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    pass_through(&state, &headers, ApiMethod::Get, &id, "", query).await
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    pass_through(&state, &headers, ApiMethod::Delete, &id, "", None).await
}

/// `GET /v1/responses/{id}/input_items`.
pub async fn input_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    pass_through(&state, &headers, ApiMethod::Get, &id, "/input_items", query).await
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Passes a call about a stored response to the provider that holds it, for its tenant only.
async fn pass_through(
    state: &AppState,
    headers: &HeaderMap,
    method: ApiMethod,
    id: &str,
    suffix: &str,
    query: Option<String>,
) -> Response {
    let runtime = state.runtime();
    let caller = match runtime.auth.authorize(headers, Access::Proxy) {
        Ok(caller) => caller,
        Err(error) => return crate::api::auth_error(error).into_response_for(Protocol::OpenAi),
    };
    if !valid_id(id) {
        return ApiError::invalid_request("a response id is letters, digits, `_` and `-`")
            .into_response_for(Protocol::OpenAi);
    }
    if query.as_ref().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return ApiError::invalid_request(format!("query longer than {MAX_QUERY_BYTES} bytes"))
            .into_response_for(Protocol::OpenAi);
    }
    let owners = state.response_owners();
    let owner = owners.0.get(id).filter(|owner| owner.tenant.as_deref() == caller.tenant());
    let Some(owner) = owner else {
        return ApiError::not_found(format!("no response `{id}` made through this gateway"))
            .into_response_for(Protocol::OpenAi);
    };
    let Some(provider) = runtime.providers.get(&owner.provider).cloned() else {
        return ApiError::not_found(format!(
            "response `{id}` is held by provider `{}`, which is no longer configured",
            owner.provider
        ))
        .into_response_for(Protocol::OpenAi);
    };
    let mut path = format!("responses/{id}{suffix}");
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(&query);
    }
    let forwarded = FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            Some(((*name).to_owned(), headers.get(*name)?.to_str().ok()?.to_owned()))
        })
        .collect();
    let call = ApiCall { method, path, body: None, headers: forwarded };
    match provider.call(call).await {
        Ok(answer) => {
            if method == ApiMethod::Delete {
                owners.0.invalidate(id);
            }
            let mut response = Response::new(Body::from(answer.body));
            *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            copy_response_headers(response.headers_mut(), &answer.headers);
            response
        }
        Err(
            error @ (ProviderError::Upstream { .. }
            | ProviderError::RateLimited { body: Some(_), .. }),
        ) => {
            let (status, body) = match error {
                ProviderError::Upstream { status, body, .. } => (status, body),
                ProviderError::RateLimited { body, .. } => (429, body.unwrap_or_default()),
                _ => (502, Bytes::new()),
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            error_kind(&error),
            format!("the provider could not be asked: {error}"),
        )
        .into_response_for(Protocol::OpenAi),
    }
}
