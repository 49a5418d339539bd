//! What operators and probes read: live statistics, `/metrics`, health, readiness, and the
//! effective configuration (with its reload).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use llmopt_collector::{LiveDimension, LiveStats};
use serde_json::{Value, json};

use crate::{
    api::authorize,
    auth::Access,
    error::ApiError,
    state::{AppState, ReloadEvent},
};

/// `GET /api/stats`: the collector's live statistics; a client key sees its tenant's series.
pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<LiveStats>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let mut stats = state.collector().live_stats();
    if let Some(tenant) = caller.only_tenant() {
        stats
            .series
            .retain(|series| series.dimension == LiveDimension::Tenant && series.label == tenant);
    }
    Ok(Json(stats))
}

/// `GET /metrics`: every tenant's figures, so the admin token (once client keys exist), unless
/// `auth.metrics_public` opens it for a scraper.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Access::Metrics)?;
    let now_ms = state.keys().now_ms();
    let active = state
        .keys()
        .all()
        .into_iter()
        .filter(|entry| entry.revoked_ms().is_none() && !entry.key.is_expired(now_ms));
    state.metrics().set_keys(active.map(|entry| {
        let spend = entry.spend(now_ms).0.as_usd_f64();
        let budget = entry.key.budget.map(llmopt_core::Money::as_usd_f64);
        (entry.key.id.clone(), entry.key.tenant.clone(), spend, budget)
    }));
    let optimizer = state.optimizer();
    let shared_cache =
        state.runtime().cache.shared().map(|shared| shared.counters()).unwrap_or_default();
    let text = state.metrics().render(
        &state.collector().metrics(),
        &optimizer.metrics(),
        optimizer.quality_budget_used(),
        &shared_cache,
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
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

/// `GET /api/config` (admin): the effective configuration, secrets masked.
pub async fn show_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Access::AdminRead)?;
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
    authorize(&state, &headers, Access::AdminWrite)?;
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
