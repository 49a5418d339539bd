//! What the OpenAI endpoints beside chat completions share (`/v1/embeddings`,
//! `/v1/responses`): accepting and routing a call that names a model, forwarding it to the
//! route's candidates as bytes, and reading model and usage back from the whole answer.
//!
//! These calls go through [`llmopt_llm::Provider::call`]: the body is the client's, with only
//! `model` replaced when the route serves another one, and the answer is the provider's bytes.
//! Usage is read with a skimming parse (an embeddings answer is mostly numbers, which are
//! skipped, not allocated) through the same OpenAI normaliser as chat completions (`usage`
//! with `prompt_tokens`, or `input_tokens` / `output_tokens` and their details).

use std::{borrow::Cow, time::Instant};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use llmopt_core::{
    CacheOutcome, Fingerprint, Fingerprints, Status, Usage, fingerprint, usage::Protocol,
};
use llmopt_llm::{ApiCall, ApiMethod, ApiResponse, ChatRequest, ProviderError};
use serde_json::Value;

use super::{
    FORWARDED_REQUEST_HEADERS, ProxiedCall,
    accept::accept,
    answer_fields, answer_from_cache,
    forward::{Answered, copy_response_headers, fail, falls_back, usable_provider},
    parse_tags,
};
use crate::{
    cache::{AnswerShape, CacheKey},
    error::ApiError,
    routing::{RouteDecision, RouteInput},
};

/// A call accepted, parsed and routed.
pub(super) struct Routed {
    pub call: ProxiedCall,
    pub fields: ChatRequest,
    pub model: String,
    /// The answer-changing fields, parsed once (fingerprints and cache key).
    pub body_value: Value,
    pub decision: RouteDecision,
}

/// Accepts the call (limits, key, body), reads its model, applies the key's checks, takes the
/// fingerprints and asks the routes and the live policy. `Err`: the refusal, already recorded.
pub(super) async fn route(mut call: ProxiedCall, request: Request) -> Result<Routed, Response> {
    let (parts, body) = request.into_parts();
    call.tags = parse_tags(&parts.headers);
    let body = match accept(&mut call, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return Err(call.refuse(error)),
    };
    let mut fields = match ChatRequest::from_slice(Protocol::OpenAi, &body) {
        Ok(fields) => fields,
        Err(error) => {
            return Err(call.refuse(ApiError::invalid_request(format!(
                "request body is not a JSON object: {error}"
            ))));
        }
    };
    let Some(model) = fields.model() else {
        return Err(call.refuse(ApiError::invalid_request("`model` is required")));
    };
    call.requested_model = Some(model.clone());
    if let Err(error) = call.admit(&model).await {
        return Err(call.refuse(error));
    }
    call.stream = fields.is_stream();
    let body_value = answer_fields(&fields);
    call.fingerprints = Fingerprints {
        request: Some(Fingerprint::of_json(&body_value)),
        prefix: fingerprint::prefix_fingerprint(&body_value),
        prefix_blocks: Vec::new(),
    };
    let decision = {
        let input = RouteInput {
            protocol: Protocol::OpenAi,
            model: &model,
            tenant: call.tenant.as_deref(),
            tags: &call.tags,
            request_id: &call.request_id,
            workload: None,
        };
        call.state.decide(&call.runtime, &input)
    };
    let Some(decision) = decision else {
        return Err(call.refuse(ApiError::not_found(format!(
            "no route serves model `{model}`; add one under [routes] in the configuration"
        ))));
    };
    call.experiment = decision.experiment.clone();
    fields.headers = FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    Ok(Routed { call, fields, model, body_value, decision })
}

/// The cache key of a whole answer to `routed` at its primary candidate; `kind` keeps the
/// endpoints' entries apart (the same body means different things on each).
pub(super) fn cache_key(routed: &Routed, kind: &str) -> Option<CacheKey> {
    if !routed.decision.cache {
        return None;
    }
    let primary = routed.decision.candidates.first()?;
    let mut upstream_value = routed.body_value.clone();
    if let Some(object) = upstream_value.as_object_mut() {
        object.insert("model".to_owned(), Value::from(primary.model.clone()));
    }
    let scope = fingerprint::CacheScope {
        tenant: routed.call.tenant.as_deref(),
        protocol: kind,
        provider: &primary.provider,
        model: &primary.model,
        headers: &routed.fields.headers,
    };
    let fingerprint = fingerprint::cache_key(&scope, &upstream_value);
    Some(CacheKey { fingerprint, shape: AnswerShape::Json })
}

/// Answers from the cache when it holds the call's answer; otherwise hands the call back.
pub(super) fn from_cache(routed: Routed, key: Option<&CacheKey>) -> Result<Response, Box<Routed>> {
    match key.and_then(|key| routed.call.runtime.cache.get(key)) {
        Some(answer) => Ok(answer_from_cache(routed.call, &routed.decision, &answer)),
        None => Err(Box::new(routed)),
    }
}

/// The body of a call with `model` set to the candidate's.
pub(super) fn body_for(
    fields: &ChatRequest,
    requested: &str,
    model: &str,
) -> Result<Bytes, ApiError> {
    if model == requested {
        return Ok(Bytes::from(fields.to_vec()));
    }
    let mut fields = fields.clone();
    fields
        .set("model", &model)
        .map_err(|error| ApiError::internal(format!("cannot set model: {error}")))?;
    Ok(Bytes::from(fields.to_vec()))
}

/// What the gateway reads from a whole answer; every other field is skipped by the parser.
#[derive(Debug, serde::Deserialize)]
struct AnswerSkim<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Value>,
    /// Responses: `completed`, `incomplete`, `failed`, …
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
}

/// Model, usage and status of a whole answer; all `None` when the body is not a JSON object.
pub(super) fn skim_answer(body: &[u8]) -> (Option<String>, Option<Usage>, Option<String>) {
    match serde_json::from_slice::<AnswerSkim<'_>>(body) {
        Ok(skim) => (
            skim.model.map(Cow::into_owned),
            skim.usage
                .filter(|usage| !usage.is_null())
                .and_then(|usage| Usage::from_openai_usage(&usage).ok()),
            skim.status.map(Cow::into_owned),
        ),
        Err(_) => (None, None, None),
    }
}

/// Sends a whole-answer call to the route's candidates in order (a candidate that is not
/// configured or does not serve the endpoint is skipped; a retryable failure moves on), records
/// it with its exact cost, fills the cache when `cache_key` is set, and passes the answer
/// through. `on_answer` sees each successful answer (the Responses route notes who owns it).
pub(super) async fn forward_whole(
    routed: Routed,
    path: &str,
    cache_key: Option<CacheKey>,
    on_answer: impl FnOnce(&ProxiedCall, &str, &ApiResponse),
) -> Response {
    let Routed { mut call, fields, model, decision, .. } = routed;
    let cache_outcome = if cache_key.is_some() { CacheOutcome::Miss } else { CacheOutcome::Bypass };
    let mut last_failure: Option<(usize, ProviderError)> = None;
    let count = decision.candidates.len();
    for (index, candidate) in decision.candidates.iter().enumerate() {
        let provider = match usable_provider(&call, candidate) {
            Ok(provider) => provider,
            Err(error) => {
                last_failure = Some((index, error));
                continue;
            }
        };
        let body = match body_for(&fields, &model, &candidate.model) {
            Ok(body) => body,
            Err(error) => return call.refuse(error),
        };
        let api_call = ApiCall {
            method: ApiMethod::Post,
            path: path.to_owned(),
            body: Some(body),
            headers: fields.headers.clone(),
        };
        let upstream_start = Instant::now();
        let attempt = super::forward::with_timeout(decision.timeout, provider.call(api_call)).await;
        call.upstream_time += upstream_start.elapsed();
        match attempt {
            Ok(answer) => {
                on_answer(&call, &candidate.provider, &answer);
                let (served, usage, status) = skim_answer(&answer.body);
                let answered = Answered {
                    candidate,
                    served_model: served.unwrap_or_else(|| candidate.model.clone()),
                    usage,
                    stop_reason: status,
                    first_output: Some(answer.first_byte),
                    upstream_start,
                    cache_outcome,
                    incomplete: false,
                };
                let record = call.answered_record(Status::Ok, &answered);
                let http_status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
                let content_type = answer
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                    .map_or_else(|| "application/json".to_owned(), |(_, v)| v.clone());
                // Only the primary's answer fills the cache (a fallback's is not the primary's).
                if let Some(key) = cache_key.filter(|_| index == 0 && http_status.is_success()) {
                    call.cache_answer(
                        key,
                        answer.status,
                        content_type,
                        answer.body.clone(),
                        &record,
                    );
                }
                let mut response = Response::new(Body::from(answer.body));
                *response.status_mut() = http_status;
                copy_response_headers(response.headers_mut(), &answer.headers);
                if !response.headers().contains_key(header::CONTENT_TYPE) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                call.add_headers(
                    response.headers_mut(),
                    Some(&answered.served_model),
                    cache_outcome,
                );
                call.finish(record);
                return response;
            }
            Err(error) => {
                if index + 1 < count && falls_back(&error) {
                    tracing::warn!(provider = %candidate.provider, %error, "falling back");
                    last_failure = Some((index, error));
                    continue;
                }
                return fail(call, candidate, error, cache_outcome);
            }
        }
    }
    match last_failure {
        Some((index, error)) => fail(call, &decision.candidates[index], error, cache_outcome),
        None => call.refuse(ApiError::not_found("the route has no provider to try")),
    }
}
