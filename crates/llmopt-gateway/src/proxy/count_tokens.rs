//! `POST /v1/messages/count_tokens`: Anthropic's token counting, passed through to the
//! Anthropic provider that serves the model.
//!
//! The call is authenticated like every proxied call and the key's model allow-list applies
//! (its budget and rate do not: counting is free upstream and spends nothing). It is not a
//! priced call: no record is made, so it is neither billed to a key nor seen by the optimizer.
//! Only the configuration's route decides the provider (no optimizer change applies to a
//! count); a model whose route has no Anthropic provider is a 400, since OpenAI has no such
//! endpoint.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use llmopt_core::{CacheOutcome, Endpoint, usage::Protocol};
use llmopt_llm::{ApiCall, ApiMethod, ChatRequest, ProviderError};

use super::{
    FORWARDED_REQUEST_HEADERS, ProxiedCall,
    accept::accept,
    endpoints::body_for,
    forward::{copy_response_headers, falls_back, provider_error_response},
    parse_tags,
};
use crate::{error::ApiError, routing::RouteInput, state::AppState};

const PATH: &str = "v1/messages/count_tokens";

pub async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    let mut call = ProxiedCall::start(state, Protocol::Anthropic, Endpoint::Messages);
    let (parts, body) = request.into_parts();
    call.tags = parse_tags(&parts.headers);
    let body = match accept(&mut call, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return call.respond_error(error),
    };
    let fields = match ChatRequest::from_slice(Protocol::Anthropic, &body) {
        Ok(fields) => fields,
        Err(error) => {
            return call.respond_error(ApiError::invalid_request(format!(
                "request body is not a JSON object: {error}"
            )));
        }
    };
    let Some(model) = fields.model() else {
        return call.respond_error(ApiError::invalid_request("`model` is required"));
    };
    if let Some(key) = &call.key {
        let resolved = call.runtime.routes.resolve_alias(&model);
        if let Err(error) = key.allow_model(&[&model, resolved]) {
            return call.respond_error(error);
        }
    }
    let input = RouteInput {
        protocol: Protocol::Anthropic,
        model: &model,
        tenant: call.tenant.as_deref(),
        tags: &call.tags,
        request_id: &call.request_id,
        workload: None,
    };
    let Some(decision) = call.runtime.routes.decide(&input) else {
        return call.respond_error(ApiError::not_found(format!("no route serves model `{model}`")));
    };
    let headers: Vec<(String, String)> = FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let anthropic: Vec<_> = decision
        .candidates
        .iter()
        .filter_map(|candidate| {
            let provider = call.runtime.providers.get(&candidate.provider)?;
            provider
                .speaks(Protocol::Anthropic)
                .then(|| (candidate, std::sync::Arc::clone(provider)))
        })
        .collect();
    if anthropic.is_empty() {
        return call.respond_error(ApiError::invalid_request(format!(
            "counting tokens needs an Anthropic provider; model `{model}` is served by `{}`",
            decision.candidates.first().map_or("none", |c| c.provider.as_str())
        )));
    }
    let count = anthropic.len();
    for (index, (candidate, provider)) in anthropic.into_iter().enumerate() {
        let body = match body_for(&fields, &model, &candidate.model) {
            Ok(body) => body,
            Err(error) => return call.respond_error(error),
        };
        let api_call = ApiCall {
            method: ApiMethod::Post,
            path: PATH.to_owned(),
            body: Some(body),
            headers: headers.clone(),
        };
        match super::forward::with_timeout(decision.timeout, provider.call(api_call)).await {
            Ok(answer) => {
                return answered(
                    &call,
                    &candidate.model,
                    answer.status,
                    &answer.headers,
                    answer.body,
                );
            }
            Err(error) if index + 1 < count && falls_back(&error) => continue,
            Err(error) => return failed(&call, &candidate.model, error),
        }
    }
    call.respond_error(ApiError::internal("no provider answered"))
}

fn answered(
    call: &ProxiedCall,
    model: &str,
    status: u16,
    headers: &[(String, String)],
    body: Bytes,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    copy_response_headers(response.headers_mut(), headers);
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    call.add_headers(response.headers_mut(), Some(model), CacheOutcome::Bypass);
    response
}

fn failed(call: &ProxiedCall, model: &str, error: ProviderError) -> Response {
    provider_error_response(call, error, model, CacheOutcome::Bypass)
}
