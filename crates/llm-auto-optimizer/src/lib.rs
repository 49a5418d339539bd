//! The gateway of LLM Auto-Optimizer: an OpenAI- and Anthropic-compatible proxy that measures
//! every call, with its configuration, API, metrics and server loop. `main.rs` is the command
//! line around it; this library part exists so that integration tests and benches can build a
//! [`router`] and drive it without a process.
//!
//! Design choices:
//! - **Bytes in, bytes out.** Request bodies are parsed only at the top level (raw JSON values,
//!   see `llmopt_llm::ChatRequest`) so fields the gateway does not know pass through; responses
//!   and stream events are forwarded as the provider's bytes. The only full parse is the one
//!   that fingerprints the request for the records (and the cache key when the cache applies).
//! - **One record per call, whatever happens.** The proxy builds the `RequestRecord` at exactly
//!   one of its exits: refusal, provider error, cache hit, end of a whole answer, end of a
//!   stream, or the drop of a stream body whose client went away (`proxy::RecordingStream`).
//!   The collector takes it without touching the disk.
//! - **Snapshots, not locks.** Configuration-derived parts (providers, routes, auth, cache,
//!   prices) form a [`state::Runtime`] behind an `ArcSwap`; each request reads it once, so a hot
//!   reload replaces it without stopping or disturbing requests in flight.
//! - **A policy seam.** Routing asks [`routing::RoutePolicy`] (today the configuration's route
//!   table) and then an optional [`state::PolicyOverlay`] (the closed loop's live policy, later)
//!   for the model, `max_tokens` cap, cache mode, timeout and experiment arm.
//! - **Errors in the caller's protocol.** Gateway refusals are rendered as OpenAI or Anthropic
//!   error objects ([`error::ApiError`]); upstream errors pass through with their status and body.
//! - **Secrets stay out.** Provider keys and the admin token are read from the environment into
//!   the provider clients and a digest; configuration output, logs and `/api` never carry them.

pub mod analyze;
pub mod api;
pub mod auth;
pub mod cache;
pub mod closed_loop;
pub mod config;
pub mod demo;
pub mod error;
pub mod logging;
pub mod loop_api;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod server;
mod simulated;
pub mod state;

use axum::{
    Router,
    routing::{get, post},
};

pub use error::{ApiError, Error, Result};
pub use state::{AppState, Runtime};

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions).get(proxy::method_not_allowed))
        .route("/v1/messages", post(proxy::messages).get(proxy::method_not_allowed))
        .route("/v1/feedback", post(api::feedback))
        .route("/v1/records", post(api::ingest_records))
        .route("/api/stats", get(api::stats))
        .route("/api/config", get(api::show_config))
        .route("/api/config/reload", post(api::reload_config))
        .route("/api/proposals", get(loop_api::proposals))
        .route("/api/experiments", get(loop_api::experiments))
        .route("/api/experiments/{id}", get(loop_api::experiment))
        .route("/api/experiments/{id}/stop", post(loop_api::stop_experiment))
        .route("/api/experiments/{id}/conclude", post(loop_api::conclude_experiment))
        .route("/api/experiments/{id}/approve", post(loop_api::approve_experiment))
        .route("/api/policy", get(loop_api::policy).put(loop_api::replace_policy))
        .route("/api/policy/flags/{name}", axum::routing::put(loop_api::set_flag))
        .route("/api/optimize", post(loop_api::optimize))
        .route("/api/audit", get(loop_api::audit))
        .route("/api/adoptions", get(loop_api::adoptions))
        .route("/api/usage", get(loop_api::usage))
        .route("/api/forecast", get(loop_api::forecast))
        .route("/api/clusters", get(loop_api::clusters))
        .route("/metrics", get(api::metrics))
        .route("/health", get(api::health))
        .route("/ready", get(api::ready))
        .with_state(state)
}
