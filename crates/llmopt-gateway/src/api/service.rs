//! What operators and probes read: live statistics, `/metrics`, health, readiness, and the
//! effective configuration (with its reload).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    api::auth_error,
    error::ApiError,
    state::{AppState, ReloadEvent},
};

/// `GET /api/stats`: the collector's live statistics.
pub async fn stats(State(state): State<AppState>) -> Response {
    Json(state.collector().live_stats()).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let optimizer = state.optimizer();
    let text = state.metrics().render(
        &state.collector().metrics(),
        &optimizer.metrics(),
        optimizer.quality_budget_used(),
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready once the store is open and the configuration valid (set by `serve`); not ready while
/// shutting down.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready"}))).into_response()
    }
}

/// `GET /api/config`: the effective configuration, secrets masked.
pub async fn show_config(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text =
        state.runtime().config.render_masked().map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/toml; charset=utf-8"));
    Ok(response)
}

/// `POST /api/config/reload` (admin): loads the configuration files again.
pub async fn reload_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.runtime().auth.authorize_admin(&headers).map_err(auth_error)?;
    let reloader = state.clone();
    let event = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| ApiError::internal(format!("reload task failed: {e}")))?;
    match event {
        ReloadEvent::Applied => Ok(Json(json!({"reloaded": true}))),
        ReloadEvent::Rejected(reason) => Err(ApiError::invalid_request(format!(
            "configuration rejected, previous one kept: {reason}"
        ))),
    }
}
