//! What every proxied route does before it reads the request's content: a call started with its
//! request id and span, then the checks in order (header size, the caller's key, the in-flight
//! limit, the body size), shared by chat completions, messages, embeddings and responses.

use std::time::{Duration, Instant};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
};
use llmopt_core::{Endpoint, ErrorKind, Fingerprints, Tags, usage::Protocol};

use super::{ProxiedCall, header_bytes, request_id_at};
use crate::{auth::Access, error::ApiError, state::AppState};

impl ProxiedCall {
    /// A call arriving now on `endpoint`, answered in `protocol`'s shapes.
    pub(super) fn start(state: AppState, protocol: Protocol, endpoint: Endpoint) -> ProxiedCall {
        let ts_ms = state.clock().now_ms();
        let request_id = request_id_at(ts_ms);
        let span = tracing::info_span!("request", request_id = %request_id);
        ProxiedCall {
            runtime: state.runtime(),
            state,
            request_id,
            start: Instant::now(),
            ts_ms,
            protocol,
            tenant: None,
            tags: Tags::new(),
            requested_model: None,
            fingerprints: Fingerprints::default(),
            stream: false,
            max_tokens: None,
            experiment: None,
            upstream_time: Duration::ZERO,
            cache_ttl: None,
            hedged: false,
            sampled: false,
            span,
            _in_flight: None,
            key: None,
            judge_question: None,
            endpoint,
            trace_parent: None,
        }
    }
}

/// Checks a call's headers, caller and size, and reads its body. The caller (tenant, virtual
/// key) is set on the call; an in-flight slot is held until the call ends.
pub(super) async fn accept(
    call: &mut ProxiedCall,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let runtime = std::sync::Arc::clone(&call.runtime);
    let limits = &runtime.config.limits;
    if header_bytes(headers) > limits.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::Gateway,
            format!("request headers exceed {} bytes", limits.max_header_bytes),
        ));
    }
    if call.state.telemetry().is_some() {
        call.trace_parent = headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(crate::telemetry::TraceParent::parse);
    }
    let caller =
        call.runtime.auth.authorize(headers, Access::Proxy).map_err(crate::api::auth_error)?;
    call.set_caller(&caller);
    let (max_concurrent, max_body) = (limits.max_concurrent_requests, limits.max_body_bytes);
    match call.state.try_enter(max_concurrent) {
        Some(guard) => call._in_flight = Some(guard),
        None => {
            return Err(ApiError::too_many(format!(
                "more than {max_concurrent} requests in flight"
            )));
        }
    }
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > max_body) {
        return Err(ApiError::too_large(format!("request body exceeds {max_body} bytes")));
    }
    axum::body::to_bytes(body, max_body).await.map_err(|_| {
        ApiError::too_large(format!("request body exceeds {max_body} bytes (or could not be read)"))
    })
}
