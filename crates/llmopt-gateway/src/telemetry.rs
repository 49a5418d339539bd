//! OpenTelemetry export: one span per proxied call, in the GenAI semantic conventions, sent over
//! OTLP/HTTP (protobuf) to the collector `[telemetry] otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_*` variables name (feature `otel`).
//!
//! - **Off by default and free when off.** Without an endpoint, or in a build without the
//!   feature, [`crate::state::AppState::telemetry`] is `None`: a call takes no timestamp,
//!   builds no span and queues nothing, and no exporter thread exists.
//! - **Off the request path.** When on, a finished call's record is cloned with its end time
//!   into a bounded queue (`try_send`: a full queue drops the span and counts it in
//!   `llmopt_otel_dropped_spans_total`; the request never waits). The span itself is built on
//!   the exporter's own thread, which batches (`batch_size`, `flush_interval_ms`) and exports.
//! - **The call's own timing.** The span ends when the record is made and starts the call's
//!   measured latency before that (the same `Instant` measurement as `latency_us`), so it spans
//!   what the client waited, stream included.
//! - **In the caller's trace.** A W3C `traceparent` header ([`TraceParent`], read only when
//!   export is on) makes the span a child of the caller's span; otherwise it is a root.
//! - **The SDK's types, our pipeline.** Spans are built as `opentelemetry_sdk`'s `SpanData` and
//!   encoded and sent by `opentelemetry-otlp`'s exporter; the SDK's tracer provider and batch
//!   processor are not used: their queue drops spans without a count we could expose, and their
//!   thread drives exports with a blocking executor outside any runtime, where an async HTTP
//!   client cannot run. Ours is a thread with a one-thread tokio runtime, as the PostgreSQL and
//!   Redis clients have (ARCHITECTURE.md), posting through `llmopt_llm::BytesClient`: the
//!   providers' reqwest and rustls stack, so OTLP over `https://` works and no second HTTP stack
//!   enters the build.

use crate::config::TelemetryConfig;

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL, `/v1/traces` appended.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL, used as it is.
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_SDK_DISABLED=true` turns export off whatever else says.
pub const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";

/// Where spans go, if anywhere: `[telemetry] otlp_endpoint` first, then the per-signal and the
/// general OTLP variables, as the OpenTelemetry specification orders them (the configuration
/// file is this program's "programmatic" configuration). `env` reads a variable.
pub fn traces_endpoint(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if env(SDK_DISABLED_ENV).is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(base) = config.otlp_endpoint.as_deref().filter(|base| !base.is_empty()) {
        return Some(traces_url(base));
    }
    if let Some(url) = env(OTLP_TRACES_ENDPOINT_ENV).filter(|url| !url.is_empty()) {
        return Some(url);
    }
    env(OTLP_ENDPOINT_ENV).filter(|base| !base.is_empty()).map(|base| traces_url(&base))
}

fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// The caller's span, from a W3C `traceparent` header (`00-{trace id}-{span id}-{flags}`): a
/// call's span is its child, so it appears in the application's own trace. Read only when
/// export is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything the specification says to ignore
    /// (unknown version 0xff, all-zero ids, wrong lengths, upper-case or non-hex digits).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; later versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if flags.len() != 2 || !is_lower_hex(version) || !is_lower_hex(flags) {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, span_id })
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !is_lower_hex(text) {
        return None;
    }
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * index..2 * index + 2)?, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(feature = "otel")]
pub use enabled::Telemetry;

#[cfg(not(feature = "otel"))]
pub use disabled::Telemetry;

#[cfg(not(feature = "otel"))]
mod disabled {
    use llmopt_core::RequestRecord;

    use super::TraceParent;
    use crate::config::ProviderKind;

    /// A build without the `otel` feature has no exporter: this type has no value, so
    /// `AppState::telemetry` is always `None` and the calls below are never made.
    #[derive(Debug)]
    pub enum Telemetry {}

    impl Telemetry {
        pub fn submit(
            &self,
            _record: &RequestRecord,
            _provider: Option<ProviderKind>,
            _parent: Option<TraceParent>,
        ) {
            match *self {}
        }

        pub async fn flush(&self, _timeout: std::time::Duration) -> bool {
            match *self {}
        }

        pub fn endpoint(&self) -> &str {
            match *self {}
        }
    }
}

#[cfg(feature = "otel")]
mod enabled {
    use std::{
        borrow::Cow,
        time::{Duration, SystemTime},
    };

    use llmopt_core::{Endpoint, RequestRecord, Status as CallStatus};
    use llmopt_llm::BytesClient;
    use opentelemetry::{
        InstrumentationScope, KeyValue, StringValue, Value,
        trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::{
        Resource,
        trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter, SpanLinks},
    };
    use tokio::sync::{mpsc, oneshot};

    use super::TraceParent;
    use crate::{
        config::{ProviderKind, TelemetryConfig},
        error::{Error, Result},
        metrics::OtelCounters,
    };

    /// An OTLP answer larger than this is an error (they are a few bytes).
    const MAX_ANSWER_BYTES: usize = 1 << 20;

    /// A finished call on its way to the exporter thread.
    struct FinishedCall {
        record: RequestRecord,
        provider: Option<ProviderKind>,
        parent: Option<TraceParent>,
        start: SystemTime,
        end: SystemTime,
    }

    enum Message {
        Call(Box<FinishedCall>),
        /// Export what is queued before this, then answer.
        Flush(oneshot::Sender<()>),
    }

    /// The running exporter: a bounded queue into a thread of its own.
    #[derive(Debug)]
    pub struct Telemetry {
        queue: mpsc::Sender<Message>,
        counters: OtelCounters,
        endpoint: String,
    }

    impl std::fmt::Debug for Message {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Message::Call(call) => write!(f, "Call({})", call.record.id),
                Message::Flush(_) => f.write_str("Flush"),
            }
        }
    }

    impl Telemetry {
        /// Starts the exporter thread for spans sent to `endpoint` (the full traces URL).
        pub fn start(
            config: &TelemetryConfig,
            endpoint: String,
            counters: OtelCounters,
        ) -> Result<Telemetry> {
            let timeout = Duration::from_millis(config.export_timeout_ms);
            let client = OtlpClient(
                BytesClient::new(timeout, MAX_ANSWER_BYTES)
                    .map_err(|e| Error::Config(format!("telemetry: {e}")))?,
            );
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(timeout)
                .build()
                .map_err(|e| Error::Config(format!("telemetry.otlp_endpoint `{endpoint}`: {e}")))?;
            // service.name from OTEL_SERVICE_NAME, else ours; OTEL_RESOURCE_ATTRIBUTES is read too.
            let service_name = std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "llm-auto-optimizer".to_owned());
            exporter.set_resource(&Resource::builder().with_service_name(service_name).build());
            let (queue, receiver) = mpsc::channel(config.queue_capacity);
            let batch = Batching {
                batch_size: config.batch_size,
                interval: Duration::from_millis(config.flush_interval_ms),
            };
            let thread_counters = counters.clone();
            std::thread::Builder::new()
                .name("llmopt-otel".to_owned())
                .spawn(move || {
                    let runtime =
                        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(runtime) => runtime,
                            Err(error) => {
                                tracing::error!(%error, "OpenTelemetry export cannot start");
                                return;
                            }
                        };
                    runtime.block_on(export_loop(receiver, exporter, batch, thread_counters));
                })
                .map_err(|e| Error::Config(format!("telemetry: cannot start its thread: {e}")))?;
            tracing::info!(endpoint = %endpoint, "OpenTelemetry export on");
            Ok(Telemetry { queue, counters, endpoint })
        }

        /// Queues the span of a call that has just finished (its record made now). Never waits:
        /// a full queue drops the span and counts it.
        pub fn submit(
            &self,
            record: &RequestRecord,
            provider: Option<ProviderKind>,
            parent: Option<TraceParent>,
        ) {
            let end = SystemTime::now();
            let start = end.checked_sub(Duration::from_micros(record.latency_us)).unwrap_or(end);
            let call = FinishedCall { record: record.clone(), provider, parent, start, end };
            if self.queue.try_send(Message::Call(Box::new(call))).is_err() {
                self.counters.dropped.inc();
            }
        }

        /// Exports every span queued before this call; `false` when that took longer than
        /// `timeout` (or the exporter is gone). An export that fails still counts as done.
        pub async fn flush(&self, timeout: Duration) -> bool {
            let (done, finished) = oneshot::channel();
            tokio::time::timeout(timeout, async {
                self.queue.send(Message::Flush(done)).await.is_ok() && finished.await.is_ok()
            })
            .await
            .unwrap_or(false)
        }

        /// The traces URL spans are posted to.
        pub fn endpoint(&self) -> &str {
            &self.endpoint
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct Batching {
        batch_size: usize,
        interval: Duration,
    }

    /// The exporter thread: collects spans into batches, exports a batch when it is full, when
    /// its oldest span has waited `interval`, on a flush, and at the end (the queue closed).
    async fn export_loop(
        mut queue: mpsc::Receiver<Message>,
        exporter: opentelemetry_otlp::SpanExporter,
        batching: Batching,
        counters: OtelCounters,
    ) {
        let scope = InstrumentationScope::builder("llm-auto-optimizer")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let ids = RandomIdGenerator::default();
        let mut export = Export { exporter, counters, failing: false };
        let mut batch: Vec<SpanData> = Vec::with_capacity(batching.batch_size);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let message = match deadline {
                Some(at) => tokio::select! {
                    message = queue.recv() => message,
                    () = tokio::time::sleep_until(at) => {
                        export.batch(&mut batch).await;
                        deadline = None;
                        continue;
                    }
                },
                None => queue.recv().await,
            };
            match message {
                Some(Message::Call(call)) => {
                    batch.push(span_data(&call, &scope, &ids));
                    if batch.len() >= batching.batch_size {
                        export.batch(&mut batch).await;
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + batching.interval);
                    }
                }
                Some(Message::Flush(done)) => {
                    export.batch(&mut batch).await;
                    deadline = None;
                    let _ = done.send(());
                }
                None => {
                    export.batch(&mut batch).await;
                    break;
                }
            }
        }
        let _ = export.exporter.shutdown();
    }

    struct Export {
        exporter: opentelemetry_otlp::SpanExporter,
        counters: OtelCounters,
        /// The last export failed: say so once, and once more when it works again.
        failing: bool,
    }

    impl Export {
        async fn batch(&mut self, batch: &mut Vec<SpanData>) {
            if batch.is_empty() {
                return;
            }
            let spans = std::mem::take(batch);
            let count = spans.len() as u64;
            match self.exporter.export(spans).await {
                Ok(()) => {
                    self.counters.exported.inc_by(count);
                    if self.failing {
                        tracing::info!("OpenTelemetry export works again");
                        self.failing = false;
                    }
                }
                Err(error) => {
                    self.counters.failed.inc_by(count);
                    if !self.failing {
                        tracing::warn!(%error, "OpenTelemetry export failed; spans dropped");
                        self.failing = true;
                    }
                }
            }
        }
    }

    /// The span of one call. Its name is `{operation} {requested model}`, its kind `Client`
    /// (the GenAI conventions' kind for a call to a model); the status is left unset on
    /// success and is an error with the error kind otherwise.
    fn span_data(
        call: &FinishedCall,
        scope: &InstrumentationScope,
        ids: &RandomIdGenerator,
    ) -> SpanData {
        let record = &call.record;
        let operation = operation_name(record.endpoint);
        // A child of the caller's span when it sent one, else the root of a trace of its own.
        let (trace_id, parent_span_id) = match call.parent {
            Some(parent) => {
                (TraceId::from_bytes(parent.trace_id), SpanId::from_bytes(parent.span_id))
            }
            None => (ids.new_trace_id(), SpanId::INVALID),
        };
        SpanData {
            span_context: SpanContext::new(
                trace_id,
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id,
            parent_span_is_remote: call.parent.is_some(),
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("{operation} {}", record.requested_model.as_str())),
            start_time: call.start,
            end_time: call.end,
            attributes: attributes(record, call.provider),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match record.status {
                CallStatus::Ok => Status::Unset,
                CallStatus::Error(kind) => Status::error(kind.as_str()),
            },
            instrumentation_scope: scope.clone(),
        }
    }

    /// `gen_ai.operation.name` of an endpoint.
    fn operation_name(endpoint: Endpoint) -> &'static str {
        match endpoint {
            Endpoint::Embeddings => "embeddings",
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => "chat",
            Endpoint::External => "chat",
        }
    }

    /// `gen_ai.provider.name` of a configured provider's kind; the configured name for
    /// simulated providers and for what no provider answered (`gateway`: a refusal).
    fn provider_name(record: &RequestRecord, provider: Option<ProviderKind>) -> String {
        match provider {
            Some(ProviderKind::Openai) => "openai".to_owned(),
            Some(ProviderKind::Anthropic) => "anthropic".to_owned(),
            Some(ProviderKind::Simulated) | None => record.provider.as_str().to_owned(),
        }
    }

    fn int(value: u64) -> i64 {
        i64::try_from(value).unwrap_or(i64::MAX)
    }

    /// The span's attributes: the GenAI semantic conventions where they name the figure
    /// (`gen_ai.*`, `error.type`), the gateway's own under `llmopt.*`.
    pub(super) fn attributes(
        record: &RequestRecord,
        provider: Option<ProviderKind>,
    ) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(24);
        attributes.push(KeyValue::new("gen_ai.operation.name", operation_name(record.endpoint)));
        attributes.push(KeyValue::new("gen_ai.provider.name", provider_name(record, provider)));
        attributes.push(KeyValue::new(
            "gen_ai.request.model",
            record.requested_model.as_str().to_owned(),
        ));
        attributes
            .push(KeyValue::new("gen_ai.response.model", record.served_model.as_str().to_owned()));
        if let Some(max_tokens) = record.max_tokens {
            attributes.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(max_tokens)));
        }
        if let Some(reason) = &record.stop_reason {
            attributes.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(vec![StringValue::from(reason.clone())].into()),
            ));
        }
        if let Some(usage) = &record.usage {
            attributes.push(KeyValue::new("gen_ai.usage.input_tokens", int(usage.input_tokens)));
            attributes.push(KeyValue::new("gen_ai.usage.output_tokens", int(usage.output_tokens)));
            attributes.push(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                int(usage.cache_read_tokens),
            ));
            attributes.push(KeyValue::new(
                "gen_ai.usage.cache_creation.input_tokens",
                int(usage.cache_write_tokens()),
            ));
        }
        if let CallStatus::Error(kind) = record.status {
            attributes.push(KeyValue::new("error.type", kind.as_str()));
        }
        attributes.push(KeyValue::new("llmopt.request.id", record.id.as_str().to_owned()));
        attributes.push(KeyValue::new("llmopt.provider", record.provider.as_str().to_owned()));
        attributes.push(KeyValue::new("llmopt.endpoint", record.endpoint.as_str()));
        attributes.push(KeyValue::new(
            "llmopt.status",
            match record.status {
                CallStatus::Ok => "ok",
                CallStatus::Error(kind) => kind.as_str(),
            },
        ));
        attributes.push(KeyValue::new("llmopt.cache", record.cache.as_str()));
        attributes.push(KeyValue::new("llmopt.stream", record.stream));
        if record.incomplete {
            attributes.push(KeyValue::new("llmopt.incomplete", true));
        }
        if let Some(cost) = record.cost {
            attributes.push(KeyValue::new("llmopt.cost_usd", cost.as_usd_f64()));
        }
        if let Some(saved) = record.saved_cost {
            attributes.push(KeyValue::new("llmopt.saved_cost_usd", saved.as_usd_f64()));
        }
        if let Some(tenant) = &record.tenant {
            attributes.push(KeyValue::new("llmopt.tenant", tenant.as_str().to_owned()));
        }
        if let Some(arm) = &record.experiment {
            attributes.push(KeyValue::new("llmopt.experiment.id", arm.experiment_id.clone()));
            attributes.push(KeyValue::new("llmopt.experiment.arm", arm.arm.clone()));
        }
        if let Some(ttft) = record.ttft_us {
            attributes
                .push(KeyValue::new("llmopt.time_to_first_token_s", ttft as f64 / 1_000_000.0));
        }
        attributes
    }

    /// The exporter's HTTP client: `llmopt_llm::BytesClient`, the providers' reqwest stack.
    #[derive(Debug)]
    struct OtlpClient(BytesClient);

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for OtlpClient {
        async fn send_bytes(
            &self,
            request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
        ) -> std::result::Result<
            opentelemetry_http::Response<opentelemetry_http::Bytes>,
            opentelemetry_http::HttpError,
        > {
            self.0.send(request).await.map_err(|error| Box::new(error) as _)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    }

    #[test]
    fn the_endpoint_comes_from_the_file_then_the_standard_variables() {
        let mut config = TelemetryConfig::default();
        assert_eq!(traces_endpoint(&config, &env_of(&[])), None);
        let general = env_of(&[(OTLP_ENDPOINT_ENV, "http://collector:4318/")]);
        assert_eq!(
            traces_endpoint(&config, &general).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let both = env_of(&[
            (OTLP_ENDPOINT_ENV, "http://collector:4318"),
            (OTLP_TRACES_ENDPOINT_ENV, "http://traces:9999/custom"),
        ]);
        assert_eq!(traces_endpoint(&config, &both).as_deref(), Some("http://traces:9999/custom"));
        config.otlp_endpoint = Some("https://otel.example:4318".to_owned());
        assert_eq!(
            traces_endpoint(&config, &both).as_deref(),
            Some("https://otel.example:4318/v1/traces")
        );
        let disabled = env_of(&[(SDK_DISABLED_ENV, "TRUE")]);
        assert_eq!(traces_endpoint(&config, &disabled), None);
    }

    #[test]
    fn traceparent_headers_are_read_as_the_w3c_specification_says() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(parent.trace_id[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(parent.span_id[6..], [0x02, 0xb7]);
        // A later version may carry more fields; these are ignored.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what")
                .is_some()
        );
        for refused in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(refused), None, "{refused}");
        }
    }
}
