//! The gateway of LLM Auto-Optimizer as a library: an OpenAI- and Anthropic-compatible proxy
//! that measures every call, with its configuration, response cache, routing, authentication,
//! `/api`, `/metrics` and server loop. A program embeds it the way the `llm-auto-optimizer`
//! binary and its demo do: build an [`AppState`] from a [`GatewayInit`] (configuration, stores,
//! clock, secrets), then serve [`router`] with [`server::run_server_threads`] (or call it
//! through `tower::ServiceExt::oneshot` in tests).
//!
//! Where things are: [`proxy`] (the `/v1` proxy routes), [`routing`] (the configuration's route
//! table), [`overlay`] (the optimizer's live policy over it), [`cache`] (response cache),
//! [`auth`], [`keys`] (virtual keys, budgets, rates), [`api`] (every other route, with the
//! `/api/stream` WebSocket), [`ui`] (the dashboard's embedded files), [`metrics`] (Prometheus
//! text), [`config`] (figment layering and validation), [`server`] (sockets, threads, reload,
//! shutdown), [`state`], [`telemetry`] (OpenTelemetry export of one span per call, feature
//! `otel`).
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
//! - **Configuration, then the live policy.** Each request's decision is the configuration's
//!   route table ([`routing::RouteTable`]) adjusted by the optimizer's live policy and running
//!   experiments ([`overlay::OptimizerOverlay`]): model, `max_tokens` cap, cache mode, timeout
//!   and experiment arm.
//! - **Complete when built.** [`AppState::build`] starts the collector, builds the runtime and
//!   opens the optimizer on the given [`Stores`]; nothing is installed afterwards and no
//!   handler checks for a missing part.
//! - **Errors in the caller's protocol.** Gateway refusals are rendered as OpenAI or Anthropic
//!   error objects ([`error::ApiError`]); upstream errors pass through with their status and body.
//! - **Secrets stay out.** Provider keys and the admin token are read from the environment into
//!   the provider clients and a digest; configuration output, logs and `/api` never carry them.

pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod hedging;
pub mod judge;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod overlay;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod ui;

use axum::{
    Router,
    routing::{get, post},
};

pub use error::{ApiError, Error, Result};
pub use state::{AppState, GatewayInit, Runtime, Stores};

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    use api::{control, ingest, keys, reports, service};
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions).get(proxy::method_not_allowed))
        .route("/v1/messages", post(proxy::messages).get(proxy::method_not_allowed))
        .route(
            "/v1/messages/count_tokens",
            post(proxy::count_tokens::count_tokens).get(proxy::method_not_allowed),
        )
        .route("/v1/models", get(proxy::models::list_models))
        .route("/v1/responses", post(proxy::responses::create).get(proxy::method_not_allowed))
        .route(
            "/v1/responses/{id}",
            get(proxy::responses::retrieve).delete(proxy::responses::delete),
        )
        .route("/v1/responses/{id}/input_items", get(proxy::responses::input_items))
        .route("/v1/embeddings", post(proxy::embeddings::embeddings).get(proxy::method_not_allowed))
        .route("/v1/feedback", post(ingest::feedback))
        .route("/v1/records", post(ingest::ingest_records))
        .route("/api/stats", get(service::stats))
        .route("/api/config", get(service::show_config))
        .route("/api/config/reload", post(service::reload_config))
        .route("/api/proposals", get(control::proposals))
        .route("/api/experiments", get(control::experiments))
        .route("/api/experiments/{id}", get(control::experiment))
        .route("/api/experiments/{id}/stop", post(control::stop_experiment))
        .route("/api/experiments/{id}/conclude", post(control::conclude_experiment))
        .route("/api/experiments/{id}/approve", post(control::approve_experiment))
        .route("/api/policy", get(control::policy).put(control::replace_policy))
        .route("/api/policy/flags/{name}", axum::routing::put(control::set_flag))
        .route("/api/optimize", post(control::optimize))
        .route("/api/audit", get(control::audit))
        .route("/api/adoptions", get(control::adoptions))
        .route("/api/adoptions/{id}/rollback", post(control::roll_back_adoption))
        .route("/api/usage", get(reports::usage))
        .route("/api/forecast", get(reports::forecast))
        .route("/api/clusters", get(reports::clusters))
        .route("/api/stream", get(api::stream::stream))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .route("/api/keys", post(keys::create_key).get(keys::list_keys))
        .route("/api/keys/{id}", axum::routing::delete(keys::revoke_key))
        .route("/api/budgets", get(keys::budgets))
        .route("/metrics", get(service::metrics))
        .route("/health", get(service::health))
        .route("/ready", get(service::ready))
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(state.clone(), catch_panic))
        .with_state(state)
}

/// A method a route does not serve: a JSON 405 (axum's own has an empty body).
async fn wrong_method(method: axum::http::Method) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        llmopt_core::ErrorKind::InvalidRequest,
        format!("{method} is not served on this route"),
    )
}

/// A panic in a handler answers 500 in the caller's protocol shape (Anthropic's for
/// `/v1/messages`, OpenAI's elsewhere), is counted in `/metrics` and logged; the connection and
/// the gateway keep serving. Without it, the panic would end the connection's task and the
/// client would see a reset. Needs `panic = "unwind"` (the release profile keeps it).
async fn catch_panic(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::FutureExt;
    let protocol = if request.uri().path().starts_with("/v1/messages") {
        llmopt_core::usage::Protocol::Anthropic
    } else {
        llmopt_core::usage::Protocol::OpenAi
    };
    let path = request.uri().path().to_owned();
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%path, panic = %message, "handler panicked; answered 500");
            state.metrics().count_panic();
            ApiError::internal("internal error in the gateway (logged)").into_response_for(protocol)
        }
    }
}
