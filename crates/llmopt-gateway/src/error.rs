//! The crate's error type, and errors as JSON in the caller's protocol shape.
//!
//! A client of `/v1/chat/completions` is an OpenAI SDK and expects
//! `{"error": {"message", "type", "param", "code"}}`; a client of `/v1/messages` is an Anthropic
//! SDK and expects `{"type": "error", "error": {"type", "message"}}`. Both SDKs pick their
//! exception class from the status code and read the message from these fields, so every refusal
//! of the gateway itself is rendered here, once, in the right shape. Upstream error bodies are
//! passed through untouched instead (they are already in the provider's shape).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use llmopt_core::{record::ErrorKind, usage::Protocol};
use serde_json::json;

/// Errors of the binary's library part (configuration, startup, wiring).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    /// An external engine (PostgreSQL, Redis) cannot be reached: the message names it and where
    /// (`cannot connect to PostgreSQL at 127.0.0.1:5432: …`), never a credential.
    #[error("{0}")]
    Unavailable(String),
    #[error("provider `{provider}`: {message}")]
    Provider { provider: String, message: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("logging: {0}")]
    Logging(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A refusal or failure answered to a client, in its protocol's error shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after_s: Option<u64>,
    /// The error object's `type` when the status's usual one says too little
    /// (`budget_exceeded`, `model_not_allowed`, `rate_limit_exceeded`).
    pub error_type: Option<&'static str>,
    /// The OpenAI error object's `code`; the record's error kind when not set.
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after_s: None,
            error_type: None,
            code: None,
        }
    }

    /// Sets the error object's `type` (both protocols) and `code` (OpenAI) to `name`.
    pub fn with_type(mut self, name: &'static str) -> ApiError {
        self.error_type = Some(name);
        self.code = Some(name);
        self
    }

    /// Sets the OpenAI error object's `code`.
    pub fn with_code(mut self, code: Option<&'static str>) -> ApiError {
        self.code = code.or(self.code);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::Authentication, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorKind::Authentication, message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::Gateway, message)
    }

    pub fn too_many(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::Gateway, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Gateway, message)
    }

    /// The JSON body in `protocol`'s shape.
    pub fn body(&self, protocol: Protocol) -> Bytes {
        let value = match protocol {
            Protocol::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.error_type.unwrap_or_else(|| openai_type(self.status)),
                    "param": null,
                    "code": self.code.unwrap_or_else(|| self.kind.as_str()),
                }
            }),
            Protocol::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": self.error_type.unwrap_or_else(|| anthropic_type(self.status)),
                    "message": self.message,
                }
            }),
        };
        Bytes::from(value.to_string())
    }

    /// The whole response in `protocol`'s shape.
    pub fn into_response_for(self, protocol: Protocol) -> Response {
        let mut response = (self.status, self.body(protocol)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Non-proxy routes (`/v1/feedback`, `/v1/records`, `/api/*`) answer in the OpenAI shape, the
/// more common one.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(Protocol::OpenAi)
    }
}

/// OpenAI's `error.type` values by status.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 413 | 422 | 431 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        504 => "timeout",
        _ => "server_error",
    }
}

/// Anthropic's `error.type` values by status (documented in their "Errors" page).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 | 431 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// The record's error kind for an upstream status.
pub fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Authentication,
        404 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn shapes_follow_each_protocol() {
        let error = ApiError::too_large("body over 10 bytes");
        let openai: Value = serde_json::from_slice(&error.body(Protocol::OpenAi)).unwrap();
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        assert_eq!(openai["error"]["message"], "body over 10 bytes");
        let anthropic: Value = serde_json::from_slice(&error.body(Protocol::Anthropic)).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "request_too_large");
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(kind_of_status(429), ErrorKind::RateLimited);
        assert_eq!(kind_of_status(400), ErrorKind::InvalidRequest);
        assert_eq!(kind_of_status(529), ErrorKind::Upstream);
        assert_eq!(kind_of_status(401), ErrorKind::Authentication);
    }
}
