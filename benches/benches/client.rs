//! Overhead of the provider clients: each call goes to the simulated provider on loopback in
//! zero-latency mode (`time_scale = 0`), so what is measured is the client, the loopback and the
//! simulator's own work. `client/hyper_direct_whole` sends the same bytes with a bare hyper
//! client (what reqwest wraps) over the same server: the difference to `client/openai_whole` is
//! what `OpenAiCompatible` adds (request building, timeouts, header filtering, usage parsing).
//! Every iteration is one `block_on` on a 2-worker runtime (the same cost in every variant).

use std::{hint::black_box, sync::Arc};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use llmopt_core::Protocol;
use llmopt_llm::{
    Anthropic, AnthropicConfig, ChatRequest, OpenAiCompatible, OpenAiConfig, Provider, RateLimit,
    RateLimitConfig, RateLimitMode, Retry, RetryConfig, StreamItem, Timeout, Timeouts,
    sim::{SimConfig, SimEngine, SimProvider, SimServer},
};

const OPENAI_BODY: &str = r#"{"model":"small","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the quarterly report in three bullet points."}]}"#;
const ANTHROPIC_BODY: &str = r#"{"model":"small","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Summarise the quarterly report in three bullet points."}]}"#;

fn request(protocol: Protocol, body: &str) -> ChatRequest {
    ChatRequest::from_slice(protocol, body.as_bytes()).expect("valid body")
}

async fn drain(stream: llmopt_llm::ChatStream) -> usize {
    let mut items = stream.items;
    let mut bytes = 0;
    while let Some(item) = items.next().await {
        if let Ok(StreamItem::Bytes(chunk)) = item {
            bytes += chunk.len();
        }
    }
    bytes
}

fn client(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = SimConfig { time_scale: 0.0, ..SimConfig::default() };
    let engine = Arc::new(SimEngine::new(config.clone()));
    let server = runtime.block_on(SimServer::start_local(engine)).expect("sim server");

    let openai: Arc<dyn Provider> = Arc::new(
        OpenAiCompatible::new(OpenAiConfig::new("sim", server.openai_base_url()).with_api_key("k"))
            .expect("client"),
    );
    let anthropic = Anthropic::new(AnthropicConfig::new("sim", server.anthropic_base_url(), "k"))
        .expect("client");
    let decorated = Retry::new(
        Arc::new(RateLimit::new(
            Arc::new(Timeout::new(Arc::clone(&openai), Timeouts::default())),
            RateLimitConfig {
                requests_per_minute: std::num::NonZeroU32::new(u32::MAX),
                tokens_per_minute: std::num::NonZeroU32::new(u32::MAX),
                mode: RateLimitMode::Reject,
            },
        )),
        RetryConfig::default(),
    );
    let in_process = SimProvider::new("sim", config);

    let direct = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url: hyper::Uri =
        format!("{}/chat/completions", server.openai_base_url()).parse().expect("uri");

    let mut group = c.benchmark_group("client");
    group.bench_function("hyper_direct_whole", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = hyper::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer k")
                    .body(Full::new(Bytes::from_static(OPENAI_BODY.as_bytes())))
                    .expect("request");
                let response = direct.request(request).await.expect("response");
                black_box(response.into_body().collect().await.expect("body").to_bytes())
            })
        })
    });
    group.bench_function("openai_whole", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    openai.chat(request(Protocol::OpenAi, OPENAI_BODY)).await.expect("answer"),
                )
            })
        })
    });
    group.bench_function("openai_whole_decorated", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    decorated.chat(request(Protocol::OpenAi, OPENAI_BODY)).await.expect("answer"),
                )
            })
        })
    });
    group.bench_function("openai_stream", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = openai
                    .chat_stream(request(Protocol::OpenAi, OPENAI_BODY))
                    .await
                    .expect("stream");
                black_box(drain(stream).await)
            })
        })
    });
    group.bench_function("anthropic_stream", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = anthropic
                    .chat_stream(request(Protocol::Anthropic, ANTHROPIC_BODY))
                    .await
                    .expect("stream");
                black_box(drain(stream).await)
            })
        })
    });
    group.bench_function("sim_in_process_whole", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    in_process.chat(request(Protocol::OpenAi, OPENAI_BODY)).await.expect("answer"),
                )
            })
        })
    });
    group.finish();
}

criterion_group!(benches, client);
criterion_main!(benches);
