//! `GET /v1/models`: the models the configuration's routes and aliases serve, filtered by the
//! caller's virtual key (its allowed models), in OpenAI's list shape, or Anthropic's when the
//! request carries `anthropic-version` (as the Anthropic SDK's `models.list()` does).
//!
//! Exact ids of routes are listed as they are; a glob route lists the price catalog's models it
//! serves (a glob cannot be enumerated otherwise), so a model served through a glob but absent
//! from the catalog is callable and not listed. Neither protocol's creation time is known to
//! the gateway: OpenAI's `created` is 0 and Anthropic's `created_at` the epoch.

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use llmopt_core::usage::Protocol;
use serde_json::{Value, json};

use crate::{auth::Access, state::AppState};

pub async fn list_models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let protocol = if headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let runtime = state.runtime();
    let caller = match runtime.auth.authorize(&headers, Access::Proxy) {
        Ok(caller) => caller,
        Err(error) => return crate::api::auth_error(error).into_response_for(protocol),
    };
    let routes = &runtime.routes;
    let models: Vec<(String, String)> = routes
        .served_models(&runtime.catalog)
        .into_iter()
        .filter(|(id, _)| {
            caller.key().is_none_or(|entry| {
                entry.key.allows_model(id) || entry.key.allows_model(routes.resolve_alias(id))
            })
        })
        .collect();
    let body = match protocol {
        Protocol::OpenAi => json!({
            "object": "list",
            "data": models.iter().map(|(id, provider)| json!({
                "id": id, "object": "model", "created": 0, "owned_by": provider,
            })).collect::<Vec<Value>>(),
        }),
        Protocol::Anthropic => json!({
            "data": models.iter().map(|(id, _)| json!({
                "type": "model", "id": id, "display_name": id,
                "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<Value>>(),
            "has_more": false,
            "first_id": models.first().map(|(id, _)| id),
            "last_id": models.last().map(|(id, _)| id),
        }),
    };
    Json(body).into_response()
}
