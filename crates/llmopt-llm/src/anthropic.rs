//! `Anthropic`: `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`; other
//! endpoints under the base URL (`v1/messages/count_tokens`) through [`Provider::call`].
//!
//! Anthropic streams always carry usage (`message_start` has the input side, `message_delta`
//! the cumulative output), so nothing is added to the request and nothing is stripped; every
//! event type (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
//! `error`, and types added later) is forwarded as received.

use std::fmt;

use futures::future::BoxFuture;
use llmopt_core::usage::Protocol;

use crate::{
    error::Result,
    http::{self, Timeouts},
    openai::prepare_whole,
    passthrough::{ApiCall, ApiResponse},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
    secret::SecretString,
};

/// The API version sent when the caller does not send its own `anthropic-version`.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Settings of one Anthropic upstream.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub id: String,
    /// Without the version segment: `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: SecretString,
    pub version: String,
    pub timeouts: Timeouts,
    /// Headers sent on every call (`anthropic-beta`, …).
    pub default_headers: Vec<(String, String)>,
}

impl AnthropicConfig {
    pub fn new(
        id: impl Into<String>,
        base_url: impl Into<String>,
        api_key: impl Into<SecretString>,
    ) -> AnthropicConfig {
        AnthropicConfig {
            id: id.into(),
            base_url: base_url.into(),
            api_key: api_key.into(),
            version: DEFAULT_ANTHROPIC_VERSION.to_owned(),
            timeouts: Timeouts::default(),
            default_headers: Vec::new(),
        }
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> AnthropicConfig {
        self.timeouts = timeouts;
        self
    }
}

/// A client for one Anthropic upstream; holds pooled HTTP clients (one per calling thread) for
/// its life.
pub struct Anthropic {
    config: AnthropicConfig,
    /// Parsed once: parsing the URL string on every call cost about 2 % of the gateway's CPU
    /// (url + idna in a profile of the gateway bench).
    url: reqwest::Url,
    clients: http::ThreadClients,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Anthropic {
    pub fn new(config: AnthropicConfig) -> Result<Anthropic> {
        let clients = http::ThreadClients::new(config.timeouts)?;
        let url = http::parse_url(&http::join_url(&config.base_url, "v1/messages"))?;
        Ok(Anthropic { config, url, clients })
    }

    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    fn builder(&self, request: &ChatRequest) -> Result<reqwest::RequestBuilder, ProviderError> {
        if request.protocol != Protocol::Anthropic {
            return Err(ProviderError::InvalidRequest(format!(
                "provider `{}` speaks the Anthropic protocol only",
                self.config.id
            )));
        }
        let caller_sets_version =
            request.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("anthropic-version"));
        let mut builder = self
            .clients
            .get()?
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-api-key", self.config.api_key.expose())
            .body(request.to_vec());
        if !caller_sets_version {
            builder = builder.header("anthropic-version", self.config.version.as_str());
        }
        for (name, value) in self.config.default_headers.iter().chain(&request.headers) {
            if !http::is_forbidden_request_header(name) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        Ok(builder)
    }
}

impl Anthropic {
    /// A call to another endpoint under the base URL (`v1/messages/count_tokens`), with the
    /// provider's key, version and headers.
    fn api_builder(&self, call: &ApiCall) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut builder = self.clients.api_request(&self.config.base_url, call)?;
        builder = builder.header("x-api-key", self.config.api_key.expose());
        let caller_sets_version =
            call.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("anthropic-version"));
        if !caller_sets_version {
            builder = builder.header("anthropic-version", self.config.version.as_str());
        }
        for (name, value) in self.config.default_headers.iter().chain(&call.headers) {
            if !http::is_forbidden_request_header(name) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        Ok(builder)
    }
}

impl Provider for Anthropic {
    fn id(&self) -> &str {
        &self.config.id
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        protocol == Protocol::Anthropic
    }

    fn chat(&self, mut request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            prepare_whole(&mut request);
            let builder = self.builder(&request)?;
            http::call_whole(Protocol::Anthropic, builder, &self.config.timeouts).await
        })
    }

    fn chat_stream(
        &self,
        mut request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            if !request.is_stream() {
                request
                    .set("stream", &true)
                    .map_err(|error| ProviderError::InvalidRequest(error.to_string()))?;
            }
            let builder = self.builder(&request)?;
            http::call_stream(Protocol::Anthropic, builder, &self.config.timeouts, false).await
        })
    }

    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        Box::pin(async move {
            let builder = self.api_builder(&call)?;
            http::call_api_whole(builder, &self.config.timeouts).await
        })
    }
}
