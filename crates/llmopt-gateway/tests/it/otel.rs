//! OpenTelemetry export (feature `otel`): an OTLP/HTTP receiver on loopback, made here with axum
//! and the protocol's own protobuf types, gets one span per proxied call with the GenAI
//! attributes; a full queue drops spans and counts them; without an endpoint nothing runs.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use llmopt_core::RequestRecord;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value::Value as AnyValueKind},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, watch};

use crate::support::{
    RunningGateway, SIM_PRICES_WITH_CACHE as PRICES, TestGateway, client, config_text, sim_server,
};

/// What the receiver got: each span with the resource's `service.name`.
struct Received {
    service_name: String,
    span: Span,
}

struct Receiver {
    spans: mpsc::UnboundedSender<Received>,
    requests: mpsc::UnboundedSender<()>,
    /// While `false`, every export request waits (an exporter stuck on a slow collector).
    open: Mutex<watch::Receiver<bool>>,
}

/// `POST /v1/traces` of an OTLP/HTTP collector, protobuf only.
async fn traces(State(receiver): State<Arc<Receiver>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let _ = receiver.requests.send(());
    {
        let mut open = receiver.open.lock().await;
        let _ = open.wait_for(|open| *open).await;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let _ = receiver.spans.send(Received { service_name: service_name.clone(), span });
            }
        }
    }
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

struct Collector {
    url: String,
    spans: mpsc::UnboundedReceiver<Received>,
    requests: mpsc::UnboundedReceiver<()>,
    open: watch::Sender<bool>,
}

async fn start_collector(open: bool) -> Collector {
    let (spans_tx, spans) = mpsc::unbounded_channel();
    let (requests_tx, requests) = mpsc::unbounded_channel();
    let (open_tx, open_rx) = watch::channel(open);
    let receiver =
        Arc::new(Receiver { spans: spans_tx, requests: requests_tx, open: Mutex::new(open_rx) });
    let app = Router::new().route("/v1/traces", post(traces)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Collector { url, spans, requests, open: open_tx }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(AnyValueKind::StringValue(text)) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// A span's attributes by key.
fn attributes(span: &Span) -> HashMap<String, AnyValueKind> {
    span.attributes
        .iter()
        .filter_map(|attribute| {
            Some((attribute.key.clone(), attribute.value.as_ref()?.value.clone()?))
        })
        .collect()
}

fn string(attributes: &HashMap<String, AnyValueKind>, key: &str) -> String {
    match attributes.get(key) {
        Some(AnyValueKind::StringValue(text)) => text.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int(attributes: &HashMap<String, AnyValueKind>, key: &str) -> i64 {
    match attributes.get(key) {
        Some(AnyValueKind::IntValue(value)) => *value,
        other => panic!("{key}: {other:?}"),
    }
}

fn double(attributes: &HashMap<String, AnyValueKind>, key: &str) -> f64 {
    match attributes.get(key) {
        Some(AnyValueKind::DoubleValue(value)) => *value,
        other => panic!("{key}: {other:?}"),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn metrics(running: &RunningGateway) -> String {
    client().get(running.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

async fn chat(running: &RunningGateway, model: &str, content: &str) -> String {
    let response = client()
        .post(running.url("/v1/chat/completions"))
        .header("x-llmopt-tenant", "team-a")
        .json(&json!({"model": model, "temperature": 0, "max_tokens": 12,
                      "messages": [{"role": "user", "content": content}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.bytes().await.unwrap();
    id
}

struct Setup {
    running: RunningGateway,
    _sim: llmopt_llm::sim::SimServer,
    _prices: tempfile::NamedTempFile,
}

async fn gateway(extra: &str) -> Setup {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let extra = format!(
        "[pricing]\nfile = \"{}\"\n[routes.oai]\nmodels = [\"sim-*\"]\nprovider = \"oai\"\ncache = true\n{extra}",
        prices.path().display()
    );
    let text = config_text(&sim, "")
        .replace("[routes.oai]\nmodels = [\"sim-*\"]\nprovider = \"oai\"\n", "")
        + &extra;
    let running = RunningGateway::start(TestGateway::from_toml(&text)).await;
    Setup { running, _sim: sim, _prices: prices }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_proxied_call_is_one_span_with_the_genai_attributes_at_its_own_times() {
    let mut collector = start_collector(true).await;
    let setup = gateway(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nflush_interval_ms = 600000\n",
        collector.url
    ))
    .await;
    let running = &setup.running;
    let telemetry = running.gateway.state.telemetry().expect("export is on");
    assert_eq!(telemetry.endpoint(), format!("{}/v1/traces", collector.url));

    // A miss, then the same request again: a hit. Then an Anthropic call and an embedding.
    let miss = chat(running, "sim-small", "what is a span?").await;
    let hit = chat(running, "sim-small", "what is a span?").await;
    let response = client()
        .post(running.url("/v1/messages"))
        .header("x-llmopt-tenant", "team-a")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "sim-large", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "and a trace?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let messages = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.bytes().await.unwrap();

    // Nothing is sent before the batch fills or its interval passes (ten minutes here): the
    // flush exports now and returns when the collector has answered.
    assert!(collector.spans.try_recv().is_err());
    assert!(telemetry.flush(Duration::from_secs(20)).await, "flush within 20 s");
    let mut spans = HashMap::new();
    while let Ok(received) = collector.spans.try_recv() {
        assert_eq!(received.service_name, "llm-auto-optimizer");
        let id = string(&attributes(&received.span), "llmopt.request.id");
        assert!(spans.insert(id, received.span).is_none(), "one span per call");
    }
    assert_eq!(spans.len(), 3, "{:?}", spans.keys().collect::<Vec<_>>());

    let records: HashMap<String, RequestRecord> = running
        .gateway
        .records()
        .await
        .into_iter()
        .map(|record| (record.id.as_str().to_owned(), record))
        .collect();
    for (id, span) in &spans {
        let record = &records[id];
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        // The span lasts what the client waited, and starts when the call arrived.
        let duration_us = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000;
        assert!(duration_us.abs_diff(record.latency_us) <= 1, "{duration_us} vs {record:?}");
        let start_ms = i64::try_from(span.start_time_unix_nano / 1_000_000).unwrap();
        assert!((start_ms - record.ts_ms).abs() <= 50, "{start_ms} vs {}", record.ts_ms);
        let attributes = attributes(span);
        assert_eq!(string(&attributes, "gen_ai.request.model"), record.requested_model.as_str());
        assert_eq!(string(&attributes, "gen_ai.response.model"), record.served_model.as_str());
        assert_eq!(string(&attributes, "llmopt.tenant"), "team-a");
        assert_eq!(string(&attributes, "llmopt.status"), "ok");
        // Token counts where the provider reported them; a cache hit used none.
        match &record.usage {
            Some(usage) => {
                assert_eq!(
                    int(&attributes, "gen_ai.usage.input_tokens"),
                    usage.input_tokens as i64
                );
                assert_eq!(
                    int(&attributes, "gen_ai.usage.output_tokens"),
                    usage.output_tokens as i64
                );
                assert_eq!(
                    int(&attributes, "gen_ai.usage.cache_read.input_tokens"),
                    usage.cache_read_tokens as i64
                );
            }
            None => {
                assert_eq!(id, &hit, "only the cache hit has no usage");
                assert!(!attributes.contains_key("gen_ai.usage.input_tokens"));
            }
        }
    }

    let miss_span = attributes(&spans[&miss]);
    assert_eq!(spans[&miss].name, "chat sim-small");
    assert_eq!(string(&miss_span, "gen_ai.operation.name"), "chat");
    assert_eq!(string(&miss_span, "gen_ai.provider.name"), "openai");
    assert_eq!(string(&miss_span, "llmopt.cache"), "miss");
    assert_eq!(int(&miss_span, "gen_ai.request.max_tokens"), 12);
    let cost = records[&miss].cost.unwrap().as_usd_f64();
    assert!(cost > 0.0);
    assert!((double(&miss_span, "llmopt.cost_usd") - cost).abs() < 1e-12);

    let hit_span = attributes(&spans[&hit]);
    assert_eq!(string(&hit_span, "llmopt.cache"), "hit");
    let saved = records[&hit].saved_cost.unwrap().as_usd_f64();
    assert!((double(&hit_span, "llmopt.saved_cost_usd") - saved).abs() < 1e-12);

    // The call with a `traceparent` is a child of the caller's span, in the caller's trace;
    // the others are roots of their own traces.
    assert_eq!(spans[&messages].trace_id, hex("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(spans[&messages].parent_span_id, hex("00f067aa0ba902b7"));
    assert!(spans[&miss].parent_span_id.is_empty());
    assert_ne!(spans[&miss].trace_id, spans[&hit].trace_id);
    let messages_span = attributes(&spans[&messages]);
    assert_eq!(string(&messages_span, "gen_ai.provider.name"), "anthropic");
    assert_eq!(string(&messages_span, "llmopt.endpoint"), "messages");
    assert_eq!(string(&messages_span, "llmopt.cache"), "bypass");

    let text = metrics(running).await;
    assert_eq!(metric(&text, "llmopt_otel_exported_spans_total"), 3.0);
    assert_eq!(metric(&text, "llmopt_otel_dropped_spans_total"), 0.0);
    assert_eq!(metric(&text, "llmopt_otel_failed_spans_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_beyond_a_full_queue_are_dropped_and_counted_and_the_calls_do_not_wait() {
    // The collector holds every export until told to answer: the exporter is stuck on the
    // first span, one more fits in the queue, the rest are dropped.
    let mut collector = start_collector(false).await;
    let setup = gateway(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nqueue_capacity = 1\nbatch_size = 1\nexport_timeout_ms = 60000\n",
        collector.url
    ))
    .await;
    let running = &setup.running;
    chat(running, "sim-small", "first").await;
    collector.requests.recv().await.unwrap();
    for n in 0..4 {
        chat(running, "sim-small", &format!("call {n}")).await;
    }
    let text = metrics(running).await;
    assert_eq!(metric(&text, "llmopt_otel_dropped_spans_total"), 3.0);
    collector.open.send(true).unwrap();
    let telemetry = running.gateway.state.telemetry().unwrap();
    assert!(telemetry.flush(Duration::from_secs(20)).await);
    let mut received = 0;
    while collector.spans.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, 2);
    let text = metrics(running).await;
    assert_eq!(metric(&text, "llmopt_otel_exported_spans_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_built_or_exported() {
    let setup = gateway("").await;
    let running = &setup.running;
    assert!(running.gateway.state.telemetry().is_none(), "no exporter without an endpoint");
    chat(running, "sim-small", "nobody is listening").await;
    let text = metrics(running).await;
    assert_eq!(metric(&text, "llmopt_otel_exported_spans_total"), 0.0);
    assert_eq!(metric(&text, "llmopt_otel_dropped_spans_total"), 0.0);
    // No thread of the exporter in this process (named `llmopt-otel` when it runs): checked
    // when the test has its process to itself, as under nextest.
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        return;
    }
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(!threads.is_empty());
    assert!(!threads.iter().any(|name| name == "llmopt-otel"), "{threads:?}");
}
