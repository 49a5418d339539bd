//! The routes beside the proxy, one module per audience:
//! - [`ingest`]: what applications send besides their calls (feedback, batch ingest of calls
//!   observed elsewhere);
//! - [`reports`]: what a client key may read (usage and cost, forecasts, clusters);
//! - [`control`]: the optimizer's controls and state (proposals, experiments, policy, flags,
//!   cycles, audit, adoptions);
//! - [`keys`]: virtual keys and their budgets (`/api/keys`, `/api/budgets`);
//! - [`service`]: what operators and probes read (live statistics, `/metrics`, health,
//!   readiness, configuration);
//! - [`stream`]: the dashboard's WebSocket of live statistics and loop events.
//!
//! Handlers are thin: authenticate, parse, call one function, map the result. Work that may
//! touch the disk runs on a blocking thread ([`blocking`]).

pub mod control;
pub mod ingest;
pub mod keys;
pub mod reports;
pub mod service;
pub mod stream;

use std::sync::Arc;

use axum::{body::Bytes, http::HeaderMap};
use llmopt_optimizer::Optimizer;

use crate::{
    auth::{Access, AuthError, Caller},
    error::ApiError,
    state::AppState,
};

pub(crate) fn auth_error(error: AuthError) -> ApiError {
    let code = error.code();
    if error.is_unauthenticated() {
        ApiError::unauthorized(error.to_string()).with_code(code)
    } else {
        ApiError::forbidden(error.to_string()).with_code(code)
    }
}

/// The caller, if it may use a route that needs `access`.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
) -> Result<Caller, ApiError> {
    state.runtime().auth.authorize(headers, access).map_err(auth_error)
}

/// Reads a body under the configured limit (413 otherwise).
pub(crate) async fn read_body(state: &AppState, body: axum::body::Body) -> Result<Bytes, ApiError> {
    let limit = state.runtime().config.limits.max_body_bytes;
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(format!("request body exceeds {limit} bytes")))
}

/// The optimizer, for a caller who may read the loop's state.
pub(crate) fn reader(state: &AppState, headers: &HeaderMap) -> Result<Arc<Optimizer>, ApiError> {
    authorize(state, headers, Access::AdminRead)?;
    Ok(state.optimizer().clone())
}

/// The optimizer, for a caller with the admin token.
pub(crate) fn admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Optimizer>, ApiError> {
    authorize(state, headers, Access::AdminWrite)?;
    Ok(state.optimizer().clone())
}

/// Query parameters, refused with a JSON 400 in the gateway's error shape (axum's own
/// rejection is plain text) when a parameter is unknown or of the wrong type.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::invalid_request(rejection.body_text()))
    }
}

/// Runs work that may touch the disk on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))
}

/// A JSON body; an empty body reads as `{}`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid {what}: {e}")))
}
