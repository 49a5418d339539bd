//! The two proxy routes, `POST /v1/chat/completions` and `POST /v1/messages`.
//!
//! The path of one call (DESIGN.md): limits and authentication, parse only the top level of the
//! body ([`ChatRequest`]: raw JSON values, nothing re-encoded), ask the policy, consult the
//! response cache, call the provider with the fallback chain, pass the answer through as bytes
//! (a stream event by event), and turn the call into exactly one [`RequestRecord`] for the
//! collector, whatever happened: refusal, upstream error, cache hit, complete stream, or a client
//! that went away mid-stream (detected when the response body is dropped before its end).
//!
//! [`forward`] tries the candidates (one path for whole and streamed answers); [`stream`] is
//! the body of a streamed answer that records the call when it ends.

mod accept;
pub mod count_tokens;
pub mod embeddings;
mod endpoints;
mod forward;
pub mod models;
pub mod responses;
mod stream;
mod workload;

pub(crate) use forward::error_kind as provider_error_kind;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use llmopt_analytics::workload::WorkloadText;
use llmopt_core::{
    CacheOutcome, Endpoint, ErrorKind, ExperimentArm, Fingerprint, Fingerprints, Money,
    RequestRecord, Status, Tags, Usage, WORKLOAD_TAG, fingerprint, usage::Protocol,
};
use llmopt_llm::ChatRequest;
pub(crate) use llmopt_llm::translate::takes_max_completion_tokens;
use serde_json::Value;
use tracing::Instrument;

use crate::{
    cache::{AnswerShape, CacheKey, CachedAnswer},
    error::ApiError,
    routing::{RouteDecision, RouteInput},
    state::{AppState, InFlightGuard, Runtime},
};

/// Request headers passed to the provider (never authentication, which the provider sets).
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "openai-beta",
];

pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Protocol::OpenAi, request).await
}

pub async fn messages(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Protocol::Anthropic, request).await
}

/// A UUIDv7 request id made from the record's own timestamp: the store then finds the record by
/// the time its id carries, with no id index entry (see `llmopt_storage::records`). 74 random
/// bits keep ids made in the same millisecond apart.
pub fn request_id_at(ts_ms: i64) -> String {
    match u64::try_from(ts_ms) {
        Ok(ms) => {
            let nanos = u32::try_from(ms % 1_000).unwrap_or(0) * 1_000_000;
            let timestamp = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1_000, nanos);
            uuid::Uuid::new_v7(timestamp).to_string()
        }
        Err(_) => uuid::Uuid::now_v7().to_string(),
    }
}

async fn proxy(state: AppState, protocol: Protocol, request: Request) -> Response {
    let endpoint = match protocol {
        Protocol::OpenAi => Endpoint::ChatCompletions,
        Protocol::Anthropic => Endpoint::Messages,
    };
    let call = ProxiedCall::start(state, protocol, endpoint);
    let span = call.span.clone();
    handle(call, request).instrument(span).await
}

/// Everything known about one call so far; turns into its record at the end.
struct ProxiedCall {
    state: AppState,
    runtime: Arc<Runtime>,
    request_id: String,
    start: Instant,
    ts_ms: i64,
    protocol: Protocol,
    tenant: Option<String>,
    tags: Tags,
    requested_model: Option<String>,
    fingerprints: Fingerprints,
    stream: bool,
    max_tokens: Option<u32>,
    experiment: Option<ExperimentArm>,
    /// Time spent waiting on providers, all attempts.
    upstream_time: Duration,
    /// How long the answer may be cached (the policy's TTL; `None`: `cache.ttl_s`).
    cache_ttl: Option<Duration>,
    /// A second attempt was sent (hedging): its cost is charged to this call.
    hedged: bool,
    /// The request asked for sampling (`temperature` absent or above 0).
    sampled: bool,
    span: tracing::Span,
    _in_flight: Option<InFlightGuard>,
    /// The last user turn, kept when the judge grades this call (`crate::judge`).
    judge_question: Option<String>,
    /// The virtual key the call is made with, if any (`crate::keys`).
    key: Option<Arc<crate::keys::KeyEntry>>,
    endpoint: Endpoint,
    /// The caller's span (`traceparent`), read only when OpenTelemetry export is on.
    trace_parent: Option<crate::telemetry::TraceParent>,
}

impl ProxiedCall {
    /// Who is calling: the tenant the call is billed to and, for a virtual key, the key (named
    /// in the record's `llmopt.key` tag, which its spend is counted and rebuilt from).
    fn set_caller(&mut self, caller: &crate::auth::Caller) {
        self.tenant = caller.tenant().map(str::to_owned);
        if let Some(key) = caller.key() {
            self.tags.insert(crate::keys::KEY_TAG.to_owned(), key.key.id.clone());
            self.key = Some(Arc::clone(key));
        }
    }

    /// A virtual key's checks for the model asked for (or the model its alias names): allowed
    /// model, budget, rate (counted in Redis, shared by the fleet, with `cache.backend =
    /// "redis"`).
    async fn admit(&self, model: &str) -> Result<(), ApiError> {
        let Some(key) = &self.key else { return Ok(()) };
        let resolved = self.runtime.routes.resolve_alias(model);
        let now_ms = self.state.clock().now_ms();
        key.admit_shared(&[model, resolved], now_ms, self.runtime.cache.shared()).await
    }

    fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    fn record(&self, provider: &str, served_model: &str, status: Status) -> RequestRecord {
        let requested = self.requested_model.clone().unwrap_or_else(|| "unknown".to_owned());
        let served =
            if served_model.is_empty() { requested.clone() } else { served_model.to_owned() };
        let mut record = RequestRecord::new(self.request_id.clone(), self.ts_ms, provider, served);
        record.requested_model = requested.into();
        record.tenant = self.tenant.clone().map(Into::into);
        record.endpoint = self.endpoint();
        record.tags = self.tags.clone();
        record.status = status;
        record.latency_us = micros(self.start.elapsed());
        record.stream = self.stream;
        record.experiment = self.experiment.clone();
        record.fingerprints = self.fingerprints.clone();
        record.max_tokens = self.max_tokens;
        record.sampled = self.sampled;
        record
    }

    /// Hands the record to the collector and the metrics, and logs the call.
    fn finish(&self, record: RequestRecord) {
        let _entered = self.span.enter();
        self.state.metrics().observe(&record);
        match record.status {
            Status::Ok => tracing::info!(
                provider = %record.provider, model = %record.served_model,
                cache = record.cache.as_str(), latency_us = record.latency_us, "call ok"
            ),
            Status::Error(kind) => tracing::warn!(
                provider = %record.provider, model = %record.served_model,
                error = kind.as_str(), latency_us = record.latency_us, "call failed"
            ),
        }
        self.state.on_record(&record);
        if let Some(telemetry) = self.state.telemetry() {
            let kind = self.runtime.config.providers.get(record.provider.as_str()).map(|p| p.kind);
            telemetry.submit(&record, kind, self.trace_parent);
        }
        if let Err(error) = self.state.collector().record(record) {
            tracing::warn!(%error, "record not collected");
        }
    }

    /// Hands a finished call's answer to the judge, when this call was sampled for grading
    /// (call after [`ProxiedCall::finish`], so the verdict finds the record).
    fn grade(&self, answer: Option<String>) {
        if let (Some(question), Some(answer)) = (&self.judge_question, answer)
            && !answer.trim().is_empty()
        {
            let graded = crate::judge::Graded {
                request_id: self.request_id.clone(),
                question: question.clone(),
                answer,
            };
            crate::judge::spawn(&self.state, &self.runtime, graded);
        }
    }

    /// Refuses the call (gateway-side), records the refusal, answers in the caller's shape.
    fn refuse(&self, error: ApiError) -> Response {
        let mut record = self.record("gateway", "", Status::Error(error.kind));
        record.cost = None;
        self.finish(record);
        self.respond_error(error)
    }

    fn respond_error(&self, error: ApiError) -> Response {
        let mut response = error.into_response_for(self.protocol);
        self.add_headers(response.headers_mut(), None, CacheOutcome::Bypass);
        response
    }

    fn add_headers(
        &self,
        headers: &mut HeaderMap,
        served_model: Option<&str>,
        cache: CacheOutcome,
    ) {
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert(HeaderName::from_static("x-request-id"), value);
        }
        if let Some(value) = served_model.and_then(|m| HeaderValue::from_str(m).ok()) {
            headers.insert(HeaderName::from_static("x-llmopt-served-model"), value);
        }
        headers.insert(
            HeaderName::from_static("x-llmopt-cache"),
            HeaderValue::from_static(cache.as_str()),
        );
        if let Some(arm) = &self.experiment
            && let Ok(value) = HeaderValue::from_str(&format!("{}:{}", arm.experiment_id, arm.arm))
        {
            headers.insert(HeaderName::from_static("x-llmopt-experiment-arm"), value);
        }
    }

    /// Exact cost of `usage` at `model`'s price; `None` when the model has no price.
    fn cost(&self, models: &[&str], usage: &Usage) -> Option<Money> {
        models
            .iter()
            .find_map(|model| self.runtime.catalog.cost(model, usage).ok())
            .map(|breakdown| breakdown.total)
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Sum of header name and value lengths.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

/// `x-llmopt-tags: k=v,k2=v2`.
pub fn parse_tags(headers: &HeaderMap) -> Tags {
    let mut tags = Tags::new();
    for value in headers.get_all("x-llmopt-tags") {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(',') {
            if let Some((key, value)) = pair.split_once('=') {
                let (key, value) = (key.trim(), value.trim());
                // `llmopt.*` keys are the gateway's own (the discovered workload): a client
                // cannot set them.
                if !key.is_empty() && !key.starts_with("llmopt.") {
                    tags.insert(key.to_owned(), value.to_owned());
                }
            }
        }
    }
    tags
}

async fn handle(mut call: ProxiedCall, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    call.tags = parse_tags(&parts.headers);
    let body = match accept::accept(&mut call, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return call.refuse(error),
    };
    let mut chat = match ChatRequest::from_slice(call.protocol, &body) {
        Ok(chat) => chat,
        Err(error) => {
            return call.refuse(ApiError::invalid_request(format!(
                "request body is not a JSON object: {error}"
            )));
        }
    };
    let Some(model) = chat.model() else {
        return call.refuse(ApiError::invalid_request("`model` is required"));
    };
    call.requested_model = Some(model.clone());
    if let Err(error) = call.admit(&model).await {
        return call.refuse(error);
    }
    call.stream = chat.is_stream();
    // No temperature means the provider default (1.0): sampled too.
    call.sampled = !chat.get::<f64>("temperature").is_some_and(|t| t <= 0.0);
    // One full parse for fingerprints (of what the client asked, whatever model serves it).
    let body_value = answer_fields(&chat);
    call.fingerprints = Fingerprints {
        request: Some(Fingerprint::of_json(&body_value)),
        prefix: fingerprint::prefix_fingerprint(&body_value),
        prefix_blocks: prompt_prefix_blocks(&chat, call.protocol),
    };
    // The workload discovered from the content (routing works on untagged traffic).
    let optimizer = call.state.optimizer();
    let text = optimizer.discovers_workloads().then(|| workload::workload_text(&body_value));
    let workload = text.as_ref().and_then(Option::as_ref).and_then(|(system, user)| {
        let system = (!system.is_empty()).then_some(system.as_str());
        let text = WorkloadText { system, last_user: user, input_tokens: None };
        optimizer.workload_of(&text)
    });
    if let Some(id) = &workload {
        call.tags.insert(WORKLOAD_TAG.to_owned(), id.clone());
    }
    let decision = {
        let input = RouteInput {
            protocol: call.protocol,
            model: &model,
            tenant: call.tenant.as_deref(),
            tags: &call.tags,
            request_id: &call.request_id,
            workload: workload.as_deref(),
        };
        call.state.decide(&call.runtime, &input)
    };
    let Some(mut decision) = decision else {
        let mut error = ApiError::not_found(format!(
            "no route serves model `{model}`; add one under [routes] in the configuration"
        ));
        error.kind = ErrorKind::NotFound;
        return call.refuse(error);
    };
    keep_untranslatable_on_the_configured_route(&call, &model, &workload, &chat, &mut decision);
    call.experiment = decision.experiment.clone();
    call.cache_ttl = decision.cache_ttl;
    let measured = decision.experiment.is_some()
        || !decision.applied_flags.is_empty()
        || !decision.held_out.is_empty();
    if call.runtime.config.judge.samples(&call.request_id, measured) {
        // The text the workload was recognised by, when it was read; else read it now.
        let text = text.unwrap_or_else(|| workload::workload_text(&body_value));
        call.judge_question = text.map(|(_, user)| user);
    }
    llmopt_core::tag_adoptions(&mut call.tags, &decision.applied_flags, &decision.held_out);
    let served = decision.candidates.first().map_or(model.as_str(), |c| c.model.as_str());
    let max_tokens_field = match call.protocol {
        Protocol::OpenAi if chat.fields.contains_key("max_completion_tokens") => {
            "max_completion_tokens"
        }
        // A cap on a request that set neither field: reasoning models refuse `max_tokens`.
        Protocol::OpenAi
            if !chat.fields.contains_key("max_tokens") && takes_max_completion_tokens(served) =>
        {
            "max_completion_tokens"
        }
        _ => "max_tokens",
    };
    let mut max_tokens: Option<u32> = chat.get(max_tokens_field);
    // Extended thinking counts its budget inside `max_tokens`, which must exceed it: a cap at
    // or below the budget would be refused upstream (or leave no room for the answer).
    let thinking_budget: Option<u32> = match call.protocol {
        Protocol::Anthropic => chat
            .get::<Value>("thinking")
            .and_then(|t| t.get("budget_tokens").and_then(Value::as_u64))
            .and_then(|budget| u32::try_from(budget).ok()),
        Protocol::OpenAi => None,
    };
    if let Some(cap) = decision.max_tokens_cap
        && thinking_budget.is_none_or(|budget| cap > budget)
        && max_tokens.is_none_or(|requested| requested > cap)
    {
        if let Err(error) = chat.set(max_tokens_field, &cap) {
            return call.refuse(ApiError::internal(format!("cannot cap max_tokens: {error}")));
        }
        max_tokens = Some(cap);
    }
    call.max_tokens = max_tokens;
    if let Some(ttl) = decision.prompt_cache
        && call.protocol == Protocol::Anthropic
        && let Err(error) = insert_cache_breakpoints(&mut chat, ttl)
    {
        return call.refuse(ApiError::internal(format!("cannot mark the prompt cache: {error}")));
    }
    chat.headers = FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();

    let cache_key =
        cache_key_for(&call, &decision, &chat, &body_value, max_tokens_field, max_tokens);
    if let Some(key) = &cache_key
        && let Some(answer) = call.runtime.cache.lookup(key).await
    {
        return answer_from_cache(call, &decision, &answer);
    }
    let cache_outcome = if cache_key.is_some() { CacheOutcome::Miss } else { CacheOutcome::Bypass };
    forward::forward(call, decision, chat, &model, cache_key, cache_outcome).await
}

/// A model the optimizer substituted (an adopted routing or an experiment's arm) that speaks
/// the other protocol cannot take every request: one with a field that has no equivalent there
/// (`n > 1`, `logprobs`, …) is served by the configuration's route for the model the client
/// asked, as if no change applied (no experiment arm, no adoption counted), rather than
/// refused. A request the *configuration* routes across protocols is refused with the field
/// named instead (`forward::chat_provider`): that route is the client's own choice.
fn keep_untranslatable_on_the_configured_route(
    call: &ProxiedCall,
    model: &str,
    workload: &Option<String>,
    chat: &ChatRequest,
    decision: &mut RouteDecision,
) {
    let Some(primary) = decision.candidates.first() else { return };
    let Some(provider) = call.runtime.providers.get(&primary.provider) else { return };
    if provider.speaks(call.protocol) {
        return;
    }
    let translatable = llmopt_llm::Translating::new(Arc::clone(provider), call.protocol)
        .is_some_and(|translating| translating.check(chat).is_ok());
    if translatable {
        return;
    }
    let input = RouteInput {
        protocol: call.protocol,
        model,
        tenant: call.tenant.as_deref(),
        tags: &call.tags,
        request_id: &call.request_id,
        workload: workload.as_deref(),
    };
    let Some(configured) = call.runtime.routes.decide(&input) else { return };
    if configured.candidates.first() == decision.candidates.first() {
        return;
    }
    decision.candidates = configured.candidates;
    decision.experiment = None;
    decision.applied_flags.clear();
    decision.held_out.clear();
    call.state.overlay().forget(&call.request_id);
}

/// Marks an Anthropic request's prompt for the provider's cache (an adopted prompt-cache
/// change): a `cache_control` breakpoint on the last system block (or, without a system
/// prompt, the last tool), which caches tools and system, and, when the request carries a
/// conversation (earlier turns before the new message), one on the last message, which caches
/// the conversation for the next turn. A request that already marks its own breakpoints is
/// left as it is. Returns whether anything was marked.
fn insert_cache_breakpoints(
    chat: &mut ChatRequest,
    ttl: llmopt_experiments::PromptCacheTtl,
) -> Result<bool, serde_json::Error> {
    let sets_its_own = ["system", "tools", "messages"].iter().any(|field| {
        chat.fields.get(*field).is_some_and(|raw| raw.get().contains("\"cache_control\""))
    });
    if sets_its_own {
        return Ok(false);
    }
    let control = match ttl {
        llmopt_experiments::PromptCacheTtl::FiveMinutes => serde_json::json!({"type": "ephemeral"}),
        llmopt_experiments::PromptCacheTtl::OneHour => {
            serde_json::json!({"type": "ephemeral", "ttl": "1h"})
        }
    };
    // A string content or system prompt becomes one text block that can carry the marker.
    let mark_last = |content: &mut Value| -> bool {
        if let Value::String(text) = content {
            *content = serde_json::json!([{"type": "text", "text": std::mem::take(text)}]);
        }
        match content.as_array_mut().and_then(|blocks| blocks.last_mut()) {
            Some(Value::Object(block)) => {
                block.insert("cache_control".to_owned(), control.clone());
                true
            }
            _ => false,
        }
    };
    let mut marked = false;
    if let Some(mut system) = chat.get::<Value>("system").filter(|s| !s.is_null()) {
        if mark_last(&mut system) {
            chat.set("system", &system)?;
            marked = true;
        }
    } else if let Some(mut tools) = chat.get::<Value>("tools")
        && mark_last(&mut tools)
    {
        chat.set("tools", &tools)?;
        marked = true;
    }
    if let Some(mut messages) = chat.get::<Value>("messages")
        && messages.as_array().is_some_and(|m| m.len() >= 3)
        && let Some(content) = messages
            .as_array_mut()
            .and_then(|m| m.last_mut())
            .and_then(|last| last.get_mut("content"))
        && mark_last(content)
    {
        chat.set("messages", &messages)?;
        marked = true;
    }
    Ok(marked)
}

/// The prompt's prefix blocks in the order the provider caches it (tools, system, messages:
/// OpenAI's system prompt is inside `messages`), over the bytes as the client sent them.
fn prompt_prefix_blocks(chat: &ChatRequest, protocol: Protocol) -> Vec<u64> {
    let order: &[&str] = match protocol {
        Protocol::OpenAi => &["tools", "messages"],
        Protocol::Anthropic => &["tools", "system", "messages"],
    };
    let parts: Vec<&[u8]> = order
        .iter()
        .filter_map(|field| chat.fields.get(*field).map(|raw| raw.get().as_bytes()))
        .collect();
    fingerprint::prefix_blocks(&parts)
}

/// The request's answer-changing fields as one JSON object, each raw field parsed once: the
/// object `fingerprint::request_fingerprint` would build from the whole body, without parsing
/// the body a second time or copying it.
fn answer_fields(chat: &ChatRequest) -> Value {
    let mut fields = serde_json::Map::new();
    for (key, raw) in &chat.fields {
        if fingerprint::FIELDS_NOT_IN_KEY.contains(&key.as_str()) {
            continue;
        }
        // A field serde_json cannot hold as a value (a lone surrogate escape, a number beyond
        // f64, nesting deeper than 128) is still forwarded upstream, so it must still tell
        // requests apart: its raw text stands in for it.
        let value = serde_json::from_str::<Value>(raw.get())
            .unwrap_or_else(|_| Value::String(format!("\u{0}raw:{}", raw.get())));
        fields.insert(key.clone(), value);
    }
    Value::Object(fields)
}

/// The cache key, or `None` when the cache does not apply to this request.
fn cache_key_for(
    call: &ProxiedCall,
    decision: &RouteDecision,
    chat: &ChatRequest,
    body_value: &Value,
    max_tokens_field: &str,
    max_tokens: Option<u32>,
) -> Option<CacheKey> {
    if !decision.cache {
        return None;
    }
    let settings = &call.runtime.config.cache;
    // `call.sampled`: no temperature means the provider default (1.0), not deterministic.
    if call.sampled && !settings.allow_nonzero_temperature && !decision.cache_sampled {
        return None;
    }
    let primary = decision.candidates.first()?;
    // The key is over the request as the provider will see it: served model and capped limit.
    let mut upstream_value = body_value.clone();
    if let Some(object) = upstream_value.as_object_mut() {
        object.insert("model".to_owned(), Value::from(primary.model.clone()));
        if let Some(limit) = max_tokens {
            object.insert(max_tokens_field.to_owned(), Value::from(limit));
        }
    }
    let scope = fingerprint::CacheScope {
        tenant: call.tenant.as_deref(),
        protocol: match call.protocol {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
        },
        provider: &primary.provider,
        model: &primary.model,
        headers: &chat.headers,
    };
    let fingerprint = fingerprint::cache_key(&scope, &upstream_value);
    let include_usage = chat
        .get::<Value>("stream_options")
        .and_then(|options| options.get("include_usage").and_then(Value::as_bool))
        .unwrap_or(false);
    let shape = match (call.stream, call.protocol, include_usage) {
        (false, _, _) => AnswerShape::Json,
        (true, Protocol::OpenAi, true) => AnswerShape::SseWithUsage,
        (true, _, _) => AnswerShape::Sse,
    };
    Some(CacheKey { fingerprint, shape })
}

fn answer_from_cache(
    call: ProxiedCall,
    decision: &RouteDecision,
    answer: &CachedAnswer,
) -> Response {
    let provider = decision.candidates.first().map_or("cache", |c| c.provider.as_str());
    let mut record = call.record(provider, &answer.served_model, Status::Ok);
    record.cache = CacheOutcome::Hit;
    record.cost = Some(Money::default());
    record.saved_cost = answer.cost;
    record.stop_reason = answer.stop_reason.clone();
    record.ttft_us = Some(record.latency_us);
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(&answer.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    call.add_headers(response.headers_mut(), Some(&answer.served_model), CacheOutcome::Hit);
    call.finish(record);
    response
}

/// Answers `GET` on a proxy route with the caller's error shape (SDKs only POST).
pub async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorKind::InvalidRequest, "use POST")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answer_fields_fingerprint_equals_the_core_request_fingerprint() {
        let body = json!({
            "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
            "user": "u1", "temperature": 0, "seed": 3,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"b": 1, "a": 2}}}]
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let chat = ChatRequest::from_slice(Protocol::OpenAi, &bytes).unwrap();
        let fields = answer_fields(&chat);
        assert_eq!(Fingerprint::of_json(&fields), fingerprint::request_fingerprint(&body));
        assert_eq!(
            fingerprint::prefix_fingerprint(&fields),
            fingerprint::prefix_fingerprint(&body)
        );
    }

    #[test]
    fn fields_serde_json_cannot_hold_still_tell_requests_apart() {
        let fingerprint_of = |body: &str| {
            let chat = ChatRequest::from_slice(Protocol::OpenAi, body.as_bytes()).unwrap();
            Fingerprint::of_json(&answer_fields(&chat))
        };
        let pairs = [
            (
                r#"{"model":"m","messages":[{"role":"user","content":"\ud800 apple"}]}"#,
                r#"{"model":"m","messages":[{"role":"user","content":"\ud800 banana"}]}"#,
            ),
            (r#"{"model":"m","tools":1e400}"#, r#"{"model":"m","tools":2e400}"#),
        ];
        for (left, right) in pairs {
            assert_ne!(fingerprint_of(left), fingerprint_of(right), "{left} / {right}");
        }
    }

    #[test]
    fn request_ids_carry_the_record_time() {
        let ts_ms = 1_767_225_600_123;
        let first = request_id_at(ts_ms);
        let second = request_id_at(ts_ms);
        assert_ne!(first, second, "random bits keep ids of one millisecond apart");
        for id in [&first, &second] {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7);
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!(secs * 1_000 + u64::from(nanos) / 1_000_000, ts_ms as u64);
        }
    }

    #[test]
    fn cache_breakpoints_mark_the_system_prompt_and_the_conversation() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100, "system": "You are a tutor.",
            "messages": [
                {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                {"role": "user", "content": [{"type": "text", "text": "q2"}]}
            ]
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut chat = ChatRequest::from_slice(Protocol::Anthropic, &bytes).unwrap();
        let ttl = llmopt_experiments::PromptCacheTtl::OneHour;
        assert!(insert_cache_breakpoints(&mut chat, ttl).unwrap());
        let system: Value = chat.get("system").unwrap();
        assert_eq!(system[0]["text"], "You are a tutor.");
        assert_eq!(system[0]["cache_control"], json!({"type": "ephemeral", "ttl": "1h"}));
        let messages: Value = chat.get("messages").unwrap();
        assert_eq!(messages[2]["content"][0]["cache_control"]["type"], "ephemeral");
        assert!(messages[0]["content"].is_string(), "earlier turns untouched");

        // A single turn: only the system prompt; a client's own breakpoints: nothing.
        let single = json!({"model": "m", "max_tokens": 1, "system": [{"type": "text", "text": "s"}],
                            "messages": [{"role": "user", "content": "q"}]});
        let mut chat =
            ChatRequest::from_slice(Protocol::Anthropic, &serde_json::to_vec(&single).unwrap())
                .unwrap();
        let five = llmopt_experiments::PromptCacheTtl::FiveMinutes;
        assert!(insert_cache_breakpoints(&mut chat, five).unwrap());
        let messages: Value = chat.get("messages").unwrap();
        assert_eq!(messages[0]["content"], "q");
        let system: Value = chat.get("system").unwrap();
        assert_eq!(system[0]["cache_control"], json!({"type": "ephemeral"}));
        assert!(!insert_cache_breakpoints(&mut chat, five).unwrap(), "already marked");
    }

    #[test]
    fn reasoning_models_take_max_completion_tokens() {
        for model in ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "openai/o3"] {
            assert!(takes_max_completion_tokens(model), "{model}");
        }
        for model in ["gpt-4o", "gpt-4.1-mini", "omni-moderation", "claude-haiku-4-5"] {
            assert!(!takes_max_completion_tokens(model), "{model}");
        }
    }

    #[test]
    fn tags_header_is_parsed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-llmopt-tags", HeaderValue::from_static("a=1, b = two ,bad,=x"));
        let tags = parse_tags(&headers);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags["a"], "1");
        assert_eq!(tags["b"], "two");
    }
}
