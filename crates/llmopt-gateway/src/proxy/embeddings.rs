//! `POST /v1/embeddings`: passed to the route's OpenAI-compatible providers, priced exactly
//! from `usage.prompt_tokens` (the catalog prices embedding models' input; they have no
//! output), recorded with endpoint `embeddings`, and cached whenever the route's cache is on:
//! an embedding is a function of its input, so no temperature rule applies.

use axum::{
    extract::{Request, State},
    response::Response,
};
use llmopt_core::{Endpoint, usage::Protocol};
use tracing::Instrument;

use super::{ProxiedCall, endpoints};
use crate::state::AppState;

pub async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    let call = ProxiedCall::start(state, Protocol::OpenAi, Endpoint::Embeddings);
    let span = call.span.clone();
    handle(call, request).instrument(span).await
}

async fn handle(call: ProxiedCall, request: Request) -> Response {
    let routed = match endpoints::route(call, request).await {
        Ok(routed) => routed,
        Err(refused) => return refused,
    };
    let key = endpoints::cache_key(&routed, "openai-embeddings");
    match endpoints::from_cache(routed, key.as_ref()) {
        Ok(hit) => hit,
        Err(routed) => endpoints::forward_whole(*routed, "embeddings", key, |_, _, _| {}).await,
    }
}
