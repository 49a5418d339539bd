//! `OpenAiCompatible`: `POST {base}/chat/completions` with a bearer key. Works against OpenAI
//! and servers that copy its API (vLLM, Ollama, Together, …).
//!
//! Streams ask for usage (`stream_options.include_usage`) unless the provider is configured not
//! to ([`OpenAiConfig::include_usage`]), because a stream without it has unknown cost. When the
//! caller did not ask itself, what the request adds to the stream is removed before it reaches
//! the caller (the usage-only last chunk, and the `"usage": null` member OpenAI then puts in every
//! chunk; see [`crate::stream`]), so the caller sees exactly the stream it asked for. Some
//! OpenAI-compatible servers refuse `stream_options`; with `include_usage` off their streams
//! pass as the caller sent them, and a stream whose caller did not ask for usage has unknown
//! usage and cost.

use std::fmt;

use futures::future::BoxFuture;
use llmopt_core::usage::Protocol;
use serde_json::Value;

use crate::{
    error::Result,
    http::{self, Timeouts},
    passthrough::{ApiCall, ApiResponse, ApiStream},
    provider::{ChatRequest, ChatResponse, ChatStream, Provider, ProviderError},
    secret::SecretString,
};

/// Settings of one OpenAI-compatible upstream.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Provider name used in records (`openai`, `vllm`, …).
    pub id: String,
    /// Up to and including the version segment: `https://api.openai.com/v1`.
    pub base_url: String,
    /// `None` for servers without auth (a local vLLM or Ollama).
    pub api_key: Option<SecretString>,
    pub timeouts: Timeouts,
    /// Headers sent on every call (`OpenAI-Organization`, `OpenAI-Project`, …).
    pub default_headers: Vec<(String, String)>,
    /// Ask for usage in every stream (`stream_options.include_usage`), hiding it from callers
    /// that did not ask. On by default (OpenAI supports it); turn it off for servers that
    /// refuse the option.
    pub include_usage: bool,
}

impl OpenAiConfig {
    pub fn new(id: impl Into<String>, base_url: impl Into<String>) -> OpenAiConfig {
        OpenAiConfig {
            id: id.into(),
            base_url: base_url.into(),
            api_key: None,
            timeouts: Timeouts::default(),
            default_headers: Vec::new(),
            include_usage: true,
        }
    }

    pub fn with_include_usage(mut self, include_usage: bool) -> OpenAiConfig {
        self.include_usage = include_usage;
        self
    }

    pub fn with_api_key(mut self, key: impl Into<SecretString>) -> OpenAiConfig {
        self.api_key = Some(key.into());
        self
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> OpenAiConfig {
        self.timeouts = timeouts;
        self
    }
}

/// A client for one OpenAI-compatible upstream; holds pooled HTTP clients (one per calling
/// thread) for its life.
pub struct OpenAiCompatible {
    config: OpenAiConfig,
    /// Parsed once: parsing the URL string on every call cost about 2 % of the gateway's CPU
    /// (url + idna in a profile of the gateway bench).
    url: reqwest::Url,
    clients: http::ThreadClients,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig) -> Result<OpenAiCompatible> {
        let clients = http::ThreadClients::new(config.timeouts)?;
        let url = http::parse_url(&http::join_url(&config.base_url, "chat/completions"))?;
        Ok(OpenAiCompatible { config, url, clients })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// A request to another endpoint under the base URL, with the provider's key and headers.
    fn api_builder(&self, call: &ApiCall) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut builder = self.clients.api_request(&self.config.base_url, call)?;
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        for (name, value) in self.config.default_headers.iter().chain(&call.headers) {
            if !http::is_forbidden_request_header(name) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        Ok(builder)
    }

    fn builder(&self, request: &ChatRequest) -> Result<reqwest::RequestBuilder, ProviderError> {
        if request.protocol != Protocol::OpenAi {
            return Err(ProviderError::InvalidRequest(format!(
                "provider `{}` speaks the OpenAI protocol only",
                self.config.id
            )));
        }
        let mut builder = self
            .clients
            .get()?
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.to_vec());
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        for (name, value) in self.config.default_headers.iter().chain(&request.headers) {
            if !http::is_forbidden_request_header(name) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        Ok(builder)
    }
}

/// Makes a request a streaming one and, with `include_usage`, one that reports usage. Returns
/// whether the usage must be hidden from the caller (asked for here, not by the caller).
pub(crate) fn prepare_openai_stream(
    request: &mut ChatRequest,
    include_usage: bool,
) -> Result<bool, ProviderError> {
    let invalid = |error: serde_json::Error| ProviderError::InvalidRequest(error.to_string());
    if !request.is_stream() {
        request.set("stream", &true).map_err(invalid)?;
    }
    if !include_usage {
        return Ok(false);
    }
    let mut options = match request.get::<Value>("stream_options") {
        Some(Value::Object(options)) => options,
        _ => serde_json::Map::new(),
    };
    if options.get("include_usage").and_then(Value::as_bool) == Some(true) {
        return Ok(false);
    }
    options.insert("include_usage".to_owned(), Value::Bool(true));
    request.set("stream_options", &options).map_err(invalid)?;
    Ok(true)
}

/// A whole-response call must not ask for a stream.
pub(crate) fn prepare_whole(request: &mut ChatRequest) {
    if request.is_stream() {
        request.remove("stream");
        request.remove("stream_options");
    }
}

impl Provider for OpenAiCompatible {
    fn id(&self) -> &str {
        &self.config.id
    }

    fn speaks(&self, protocol: Protocol) -> bool {
        protocol == Protocol::OpenAi
    }

    fn chat(&self, mut request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            prepare_whole(&mut request);
            let builder = self.builder(&request)?;
            http::call_whole(Protocol::OpenAi, builder, &self.config.timeouts).await
        })
    }

    fn chat_stream(
        &self,
        mut request: ChatRequest,
    ) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
        Box::pin(async move {
            let hide_usage = prepare_openai_stream(&mut request, self.config.include_usage)?;
            let builder = self.builder(&request)?;
            http::call_stream(Protocol::OpenAi, builder, &self.config.timeouts, hide_usage).await
        })
    }

    fn call(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiResponse, ProviderError>> {
        Box::pin(async move {
            let builder = self.api_builder(&call)?;
            http::call_api_whole(builder, &self.config.timeouts).await
        })
    }

    fn call_stream(&self, call: ApiCall) -> BoxFuture<'_, Result<ApiStream, ProviderError>> {
        Box::pin(async move {
            let builder = self.api_builder(&call)?;
            http::call_api_stream(builder, &self.config.timeouts).await
        })
    }
}
