//! What the two HTTP clients share: pooled reqwest `Client`s (one per provider and thread), the three
//! timeouts, mapping of error statuses to [`ProviderError`] kinds, `Retry-After` parsing, the
//! headers worth passing back, and turning a whole body into a [`ChatResponse`].

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use llmopt_core::{Usage, usage::Protocol};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    error::{Error, Result},
    provider::{ChatResponse, ProviderError},
};

/// Connect, first-byte and total timeouts of one call.
///
/// - `connect`: TCP + TLS handshake of a new pooled connection.
/// - `first_byte`: from sending the request to the response head for a whole response, and to
///   the first body chunk for a stream (SSE servers often send the head at once and the first
///   event only after prefill, so the head alone says nothing about a stalled model).
/// - `total`: from sending the request to the end of the body, streams included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    /// Generous defaults: long generations of big models take minutes.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// A provider's pooled HTTP clients, one per thread that calls it. A pooled connection is
/// driven by a task on the runtime that opened it; the gateway serves on several
/// single-threaded runtimes, and a request that borrowed a connection opened by another thread
/// would wake that thread twice per call. With one client per thread, a call's connection is
/// always driven by the thread that makes the call.
pub(crate) struct ThreadClients {
    timeouts: Timeouts,
    clients: thread_local::ThreadLocal<reqwest::Client>,
}

impl ThreadClients {
    /// Builds the calling thread's client at once, so that a client that cannot be built is a
    /// configuration error, not a failure of the first call.
    pub(crate) fn new(timeouts: Timeouts) -> Result<ThreadClients> {
        let clients = thread_local::ThreadLocal::new();
        clients.get_or_try(|| build_client(&timeouts))?;
        Ok(ThreadClients { timeouts, clients })
    }

    /// This thread's client.
    pub(crate) fn get(&self) -> Result<&reqwest::Client, ProviderError> {
        self.clients.get_or_try(|| build_client(&self.timeouts)).map_err(|error| {
            ProviderError::Transport(format!("cannot build an HTTP client: {error}"))
        })
    }

    /// A passthrough call ([`crate::ApiCall`]) to `call.path` under `base_url`, with its method
    /// and JSON body; the provider adds its own authentication and headers.
    pub(crate) fn api_request(
        &self,
        base_url: &str,
        call: &crate::ApiCall,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let url = reqwest::Url::parse(&join_url(base_url, &call.path))
            .map_err(|error| ProviderError::InvalidRequest(format!("bad path: {error}")))?;
        let client = self.get()?;
        let builder = match call.method {
            crate::ApiMethod::Get => client.get(url),
            crate::ApiMethod::Post => client.post(url),
            crate::ApiMethod::Delete => client.delete(url),
        };
        Ok(match &call.body {
            Some(body) => {
                builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone())
            }
            None => builder,
        })
    }
}

/// Builds a client whose connections are pooled and reused. `TCP_NODELAY` is on: without it
/// Nagle's algorithm meets delayed ACK and adds ~40 ms per request on loopback (DESIGN.md,
/// performance notes).
fn build_client(timeouts: &Timeouts) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|error| Error::HttpClient(error_chain(&error)))
}

/// Parses a provider's endpoint URL, or says which one is wrong.
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url)
        .map_err(|error| Error::Config(format!("bad base URL `{url}`: {error}")))
}

/// Joins base URL and path with exactly one slash between them.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A reqwest error with its sources: reqwest's own message often hides the useful part
/// ("connection refused") in the source chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Maps a failure to send (or to read) into a provider error kind.
pub(crate) fn map_reqwest_error(error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout(if error.is_connect() { "connect" } else { "request" })
    } else if error.is_connect() {
        ProviderError::Transport(format!("connect: {}", error_chain(error)))
    } else {
        ProviderError::Transport(error_chain(error))
    }
}

/// Headers that describe one hop, not the answer: never passed back to the caller.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-connection",
    "set-cookie",
    "date",
    "server",
    "alt-svc",
];

/// The response headers worth giving to the caller (content type, request ids, rate-limit
/// information, anything unknown), minus hop-by-hop ones.
pub(crate) fn passable_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            value.to_str().ok().map(|value| (name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

/// Request headers a caller may not set: the provider sets auth and framing itself.
pub(crate) fn is_forbidden_request_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "authorization" | "x-api-key" | "host" | "content-length" | "content-type" | "connection"
    ) || lower.starts_with("proxy-")
}

/// `Retry-After` in seconds (integer or decimal), or OpenAI's `retry-after-ms`. The HTTP-date
/// form is not parsed: neither provider sends it, and a wrong guess is worse than none.
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = read("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The error for a non-success status. 429 is `RateLimited`; every other status is `Upstream`
/// with the provider's error body, so the gateway can pass it through.
pub(crate) fn status_error(status: u16, headers: &http::HeaderMap, body: Bytes) -> ProviderError {
    let retry_after = parse_retry_after(headers);
    if status == 429 {
        ProviderError::RateLimited { retry_after, body: Some(body) }
    } else {
        ProviderError::Upstream { status, body, retry_after }
    }
}

pub(crate) type ByteStream = BoxStream<'static, Result<Bytes, ProviderError>>;

/// A reqwest body as a stream of byte chunks with errors already mapped.
pub(crate) fn body_stream(response: reqwest::Response) -> ByteStream {
    response.bytes_stream().map(|chunk| chunk.map_err(|error| map_reqwest_error(&error))).boxed()
}

/// Reads a whole body, giving up at `deadline`.
pub(crate) async fn read_body(
    mut body: ByteStream,
    deadline: Instant,
) -> Result<Bytes, ProviderError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return Err(ProviderError::Timeout("total")),
            Ok(Some(Err(error))) => return Err(error),
            Ok(Some(Ok(chunk))) => chunks.push(chunk),
            Ok(None) => break,
        }
    }
    // Most bodies arrive in one chunk: keep it without copying.
    if chunks.len() == 1 {
        return Ok(chunks.swap_remove(0));
    }
    Ok(Bytes::from(chunks.concat()))
}

/// What the gateway needs from a whole response body, read without building its tree: the
/// choices' content, logprobs and every other field are skipped by the parser, not allocated.
/// Parsing the whole body into a `Value` was about a fifth of the gateway's instructions per
/// proxied call (callgrind, gateway at concurrency 1).
#[derive(Debug, serde::Deserialize)]
struct ResponseSkim<'a> {
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Value>,
    /// OpenAI: the finish reason of the first choice.
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceSkim<'a>>>,
    /// Anthropic.
    #[serde(default, borrow)]
    stop_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Debug, serde::Deserialize)]
struct ChoiceSkim<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

type ResponseFacts = (Option<Usage>, Option<String>, Option<String>);

/// Usage, model and stop reason from a well-formed body; `None` when its shape is unexpected
/// (then [`read_response_tree`] decides, with the same leniency as before).
fn skim_response(protocol: Protocol, body: &[u8]) -> Option<ResponseFacts> {
    let skim: ResponseSkim<'_> = serde_json::from_slice(body).ok()?;
    let stop_reason = match protocol {
        Protocol::OpenAi => skim
            .choices
            .and_then(|choices| choices.into_iter().next())
            .and_then(|choice| choice.finish_reason),
        Protocol::Anthropic => skim.stop_reason,
    };
    Some((
        normalised_usage(protocol, skim.usage.as_ref()),
        skim.model.map(std::borrow::Cow::into_owned),
        stop_reason.map(std::borrow::Cow::into_owned),
    ))
}

/// A `usage` object through the core normaliser of the protocol; `None` when absent, null or
/// malformed.
fn normalised_usage(protocol: Protocol, usage: Option<&Value>) -> Option<Usage> {
    let usage = usage.filter(|usage| !usage.is_null())?;
    match protocol {
        Protocol::OpenAi => Usage::from_openai_usage(usage).ok(),
        Protocol::Anthropic => Usage::from_anthropic_usage(usage).ok(),
    }
}

/// The same facts from the parsed tree, for bodies the skim does not accept.
fn read_response_tree(protocol: Protocol, body: &[u8]) -> Result<ResponseFacts, ProviderError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ProviderError::InvalidResponse(format!("body is not JSON: {error}")))?;
    if !value.is_object() {
        return Err(ProviderError::InvalidResponse("body is not a JSON object".to_owned()));
    }
    let stop_reason = match protocol {
        Protocol::OpenAi => value
            .get("choices")
            .and_then(|choices| choices.get(0))
            .and_then(|choice| choice.get("finish_reason")),
        Protocol::Anthropic => value.get("stop_reason"),
    };
    let stop_reason = stop_reason.and_then(Value::as_str).map(str::to_owned);
    let usage = normalised_usage(protocol, value.get("usage"));
    let model = value.get("model").and_then(Value::as_str).map(str::to_owned);
    Ok((usage, model, stop_reason))
}

/// Turns a whole successful body into a [`ChatResponse`]: the body is kept byte for byte,
/// usage goes through the core normaliser of the protocol.
pub(crate) fn whole_response(
    protocol: Protocol,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    first_byte: Duration,
    elapsed: Duration,
) -> Result<ChatResponse, ProviderError> {
    let (usage, model, stop_reason) = match skim_response(protocol, &body) {
        Some(skimmed) => skimmed,
        None => read_response_tree(protocol, &body)?,
    };
    Ok(ChatResponse { status, headers, body, usage, model, stop_reason, first_byte, elapsed })
}

/// Sends a request whose head must arrive before `first_byte_deadline`, returning the response
/// if its status is a success and the typed error otherwise.
pub(crate) async fn send(
    builder: reqwest::RequestBuilder,
    first_byte_deadline: Instant,
    total_deadline: Instant,
) -> Result<reqwest::Response, ProviderError> {
    let response = match tokio::time::timeout_at(first_byte_deadline, builder.send()).await {
        Err(_) => return Err(ProviderError::Timeout("first byte")),
        Ok(Err(error)) => return Err(map_reqwest_error(&error)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    // The error body is what the gateway passes through; a body that cannot be read in time
    // still leaves the status, which matters more.
    let body = read_body(body_stream(response), total_deadline).await.unwrap_or_default();
    Err(status_error(status.as_u16(), &headers, body))
}

/// One whole-response call: send, wait for the head, read the body, normalise usage.
pub(crate) async fn call_whole(
    protocol: Protocol,
    builder: reqwest::RequestBuilder,
    timeouts: &Timeouts,
) -> Result<ChatResponse, ProviderError> {
    let (started, total_deadline, response) = send_with_timeouts(builder, timeouts).await?;
    let first_byte = started.elapsed();
    let status = response.status().as_u16();
    let headers = passable_headers(response.headers());
    let body = read_body(body_stream(response), total_deadline).await?;
    whole_response(protocol, status, headers, body, first_byte, started.elapsed())
}

/// One streaming call: send, wait for the head and the first body chunk, then hand the rest to
/// the stream pipeline.
pub(crate) async fn call_stream(
    protocol: Protocol,
    builder: reqwest::RequestBuilder,
    timeouts: &Timeouts,
    hide_usage: bool,
) -> Result<crate::provider::ChatStream, ProviderError> {
    let started = Instant::now();
    let total_deadline = started + timeouts.total;
    let first_byte_deadline = (started + timeouts.first_byte).min(total_deadline);
    let response = send(builder, first_byte_deadline, total_deadline).await?;
    let status = response.status().as_u16();
    let headers = passable_headers(response.headers());
    let setup = crate::stream::StreamSetup {
        protocol,
        hide_usage,
        started,
        first_byte_deadline,
        total_deadline,
    };
    crate::stream::start(setup, status, headers, body_stream(response)).await
}

/// Sends a call to another endpoint under the first-byte and total timeouts: the start, the
/// total deadline and the response head.
async fn send_with_timeouts(
    builder: reqwest::RequestBuilder,
    timeouts: &Timeouts,
) -> Result<(Instant, Instant, reqwest::Response), ProviderError> {
    let started = Instant::now();
    let total_deadline = started + timeouts.total;
    let first_byte_deadline = (started + timeouts.first_byte).min(total_deadline);
    let response = send(builder, first_byte_deadline, total_deadline).await?;
    Ok((started, total_deadline, response))
}

/// One whole call to another endpoint (`crate::passthrough`): send, wait for the head, read
/// the body; the body is kept as it came.
pub(crate) async fn call_api_whole(
    builder: reqwest::RequestBuilder,
    timeouts: &Timeouts,
) -> Result<crate::passthrough::ApiResponse, ProviderError> {
    let (started, total_deadline, response) = send_with_timeouts(builder, timeouts).await?;
    let first_byte = started.elapsed();
    let status = response.status().as_u16();
    let headers = passable_headers(response.headers());
    let body = read_body(body_stream(response), total_deadline).await?;
    Ok(crate::passthrough::ApiResponse {
        status,
        headers,
        body,
        first_byte,
        elapsed: started.elapsed(),
    })
}

/// One streamed call to another endpoint: resolves with the head; the chunks follow, the
/// total timeout cutting them (an `Err` item) when it passes.
pub(crate) async fn call_api_stream(
    builder: reqwest::RequestBuilder,
    timeouts: &Timeouts,
) -> Result<crate::passthrough::ApiStream, ProviderError> {
    let (started, total_deadline, response) = send_with_timeouts(builder, timeouts).await?;
    let first_byte = started.elapsed();
    let status = response.status().as_u16();
    let headers = passable_headers(response.headers());
    let body = body_stream(response);
    let chunks = futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(total_deadline, body.next()).await {
            Err(_) => Some((Err(ProviderError::Timeout("total")), None)),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some((Err(error), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
        }
    })
    .boxed();
    Ok(crate::passthrough::ApiStream { status, headers, chunks, first_byte })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_gets_its_own_pooled_client() {
        let clients = ThreadClients::new(Timeouts::default()).unwrap();
        let here = std::ptr::from_ref(clients.get().unwrap());
        assert_eq!(here, std::ptr::from_ref(clients.get().unwrap()), "one client per thread");
        let there = std::thread::scope(|scope| {
            scope.spawn(|| std::ptr::from_ref(clients.get().unwrap()) as usize).join().unwrap()
        });
        assert_ne!(here as usize, there, "another thread has its own client (and pool)");
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert("retry-after", http::HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after", http::HeaderValue::from_static("0.5"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_millis(500)));
        headers.insert("retry-after-ms", http::HeaderValue::from_static("250"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_millis(250)));
        let mut dated = http::HeaderMap::new();
        dated
            .insert("retry-after", http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(parse_retry_after(&dated), None);
    }

    #[test]
    fn url_join() {
        assert_eq!(join_url("http://h/v1/", "/chat/completions"), "http://h/v1/chat/completions");
        assert_eq!(join_url("http://h", "v1/messages"), "http://h/v1/messages");
    }
}

/// A plain client for the gateway's own outgoing requests that are not provider calls (the
/// OpenTelemetry exporter's OTLP posts): a whole request in bytes, a whole answer back, on the
/// same reqwest and rustls stack as the providers, so the process has one HTTP client stack
/// and one TLS stack. Answers larger than `max_response_bytes` are an error.
#[derive(Debug, Clone)]
pub struct BytesClient {
    client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
}

impl BytesClient {
    /// A pooled client whose every request ends within `timeout` (connect included).
    pub fn new(timeout: Duration, max_response_bytes: usize) -> Result<BytesClient> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|error| Error::HttpClient(error_chain(&error)))?;
        Ok(BytesClient { client, timeout, max_response_bytes })
    }

    /// Sends `request` and reads the whole answer, whatever its status.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, ProviderError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|error| ProviderError::InvalidRequest(error_chain(&error)))?;
        let mut response = self.client.execute(request).await.map_err(|error| {
            if error.is_timeout() {
                ProviderError::Timeout("total")
            } else {
                ProviderError::Transport(error_chain(&error))
            }
        })?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            if error.is_timeout() {
                ProviderError::Timeout("total")
            } else {
                ProviderError::Transport(error_chain(&error))
            }
        })? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(ProviderError::InvalidResponse(format!(
                    "answer larger than {} bytes",
                    self.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        answer
            .body(Bytes::from(body))
            .map_err(|error| ProviderError::InvalidResponse(error_chain(&error)))
    }

    /// The timeout every request has.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
