//! Calls to the other endpoints of an OpenAI-compatible API (`embeddings`, `responses`,
//! `responses/{id}`, …), passed through as bytes: the gateway reads what it needs (model,
//! usage) from the answer itself, because each endpoint reports it in its own place.
//!
//! A provider that does not serve such calls (Anthropic, the simulator) keeps the default
//! methods of [`crate::Provider`], which refuse them with [`ProviderError::InvalidRequest`].

use std::{fmt, time::Duration};

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::provider::ProviderError;

/// The HTTP methods these endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMethod {
    Get,
    Post,
    Delete,
}

/// One call to an endpoint under the provider's base URL.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: ApiMethod,
    /// Path under the base URL, with its query if any: `embeddings`,
    /// `responses/resp_123/input_items?limit=20`.
    pub path: String,
    /// A JSON body (POST).
    pub body: Option<Bytes>,
    /// Headers to pass upstream; never authentication, which the provider sets.
    pub headers: Vec<(String, String)>,
}

impl ApiCall {
    /// The call's size in estimated tokens, for a tokens-per-minute limit (a quarter of the
    /// body's bytes, at least 1).
    pub fn estimated_tokens(&self) -> u64 {
        self.body.as_ref().map_or(0, |body| body.len() as u64).div_ceil(4).max(1)
    }
}

/// A whole successful answer, byte for byte.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    pub elapsed: Duration,
}

/// A streamed successful answer: its head, then the body's chunks as they come. The chunks
/// are the provider's bytes; an `Err` item ends the stream (a cut connection, the total
/// timeout).
pub struct ApiStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: BoxStream<'static, Result<Bytes, ProviderError>>,
    /// From sending the request to the response head.
    pub first_byte: Duration,
}

impl fmt::Debug for ApiStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiStream").field("status", &self.status).finish_non_exhaustive()
    }
}

/// The refusal of a provider that does not serve `call`.
pub fn not_served(provider: &str, call: &ApiCall) -> ProviderError {
    let path = call.path.split('?').next().unwrap_or_default();
    ProviderError::InvalidRequest(format!("provider `{provider}` does not serve `/{path}`"))
}
