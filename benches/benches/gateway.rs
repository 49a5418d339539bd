//! Gateway overhead: the same local mock upstream called directly and through the gateway, in
//! the same run, on loopback only, bounded in time.
//!
//! The gateway runs as a child process (this bench binary re-executed in "gateway mode", which
//! calls the real `serve` path: sled store, collector, logging at `warn`), so its resident
//! memory is its own. The mock upstream is a second child process (a hyper server answering a
//! realistic chat completion), and the load generator is this process: three processes, as when
//! the other gateways were measured with wrk against a local mock. Everything shares the
//! machine's cores, as the targets assume.
//!
//! Figures, each the median of the rounds (3, or 2 with `LLMOPT_BENCH_QUICK=1`):
//! - non-streaming calls that go upstream (cache off for the route): concurrency 1 and 32,
//!   direct and through the gateway: throughput, p50, p99, added latency;
//! - cache hits at concurrency 1 (end-to-end p50/p99);
//! - the gateway's resident memory after the load (VmRSS) and its peak (VmHWM).
//!
//! Targets (issue 9): added p50 ≤ 100 µs and p99 ≤ 300 µs at c=1; ≥ 0.85× direct throughput at
//! c=32 with no errors; RSS ≤ 50 MB; cache-hit p99 ≤ 200 µs. The targets themselves live in
//! `xtask/src/bench.rs` (`TARGETS`), which judges the figures file below.
//!
//! # Figures file
//! Besides the table on stdout, the bench writes `gateway.json` in `LLMOPT_BENCH_FIGURES_DIR`
//! (set by `cargo xtask bench`; otherwise `<workspace>/target/bench-figures`), in the format of
//! `xtask/src/bench.rs`: `gateway/c1/added_latency_p50` and `_p99` (µs, gateway minus direct
//! of the same round), `gateway/c32/throughput_ratio` (gateway over direct requests/s of the
//! same round), `gateway/rss_after_load` (MiB), `gateway/c1/cache_hit_p99` (µs), and the
//! absolute figures `gateway/c{1,32}/{direct,gateway}_{throughput,p50,p99}`,
//! `gateway/c1/cache_hit_p50`, `gateway/rss_when_ready` and `gateway/rss_peak` (MiB). The
//! medians are over rounds, the spread is half of max − min over rounds (`null` for the
//! one-off memory readings). The diagnostic variant writes the same figures under
//! `diagnostic/gateway_no_store/…`, a prefix no target matches: it explains, it is not judged.
//!
//! Run: `cargo bench -p benches --bench gateway` (release). `GATEWAY_BENCH_SECONDS` scales the
//! duration of each measurement (default 3; `cargo xtask bench --quick` sets 1).
//! A third, diagnostic variant puts a 5 ms service time on the mock upstream and compares c=32
//! throughput direct and through the gateway (`diagnostic/gateway_slow_upstream/…`).
//! `GATEWAY_BENCH_THREADS=N` sets the gateway's `server.threads` (default 0: one I/O thread per
//! core), to compare.
//!
//! CPU time per call at c=32 (from `/proc/<pid>/stat`) is printed for the gateway, the mock and
//! this load generator: at c=32 the machine is CPU-bound, so the throughput ratio is the direct
//! CPU per call over the proxied one, and those figures say where it goes.
//!
//! Competitor (optional, unjudged): when Portkey's open-source gateway is installed
//! (`scripts/bench/install-competitors.sh`, or `GATEWAY_BENCH_PORTKEY=<start-server.js>`), the
//! same comparison runs against it (Node.js, routed to the same mock through its custom-host
//! headers) and files `competitor/portkey/…` figures.

#![allow(clippy::print_stdout, reason = "a bench reports on stdout")]

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

/// The same allocator as the `llm-auto-optimizer` binary, since the gateway child is this binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHILD_ENV: &str = "LLMOPT_GATEWAY_BENCH_CONFIG";
const DISCARD_ENV: &str = "LLMOPT_GATEWAY_BENCH_DISCARD";
const MOCK_ENV: &str = "LLMOPT_GATEWAY_BENCH_MOCK_MS";

/// Rounds per variant: 3 for the full run; 2 in quick mode, still enough for a spread.
fn rounds() -> usize {
    if std::env::var("LLMOPT_BENCH_QUICK").is_ok_and(|value| value == "1") { 2 } else { 3 }
}

/// What the mock upstream answers: a realistic OpenAI chat completion with usage.
const MOCK_ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"The quarterly report shows revenue up 12%, costs flat, and a stronger cash position.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":19,"total_tokens":71,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_bench"}"#;

fn main() {
    if let Ok(config_path) = std::env::var(CHILD_ENV) {
        run_gateway_child(&config_path);
        return;
    }
    if let Ok(service_ms) = std::env::var(MOCK_ENV) {
        run_mock_child(service_ms.parse().expect("mock service time in ms"));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful: only run
    // the load when asked to bench.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("gateway bench: run with `cargo bench -p benches --bench gateway`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// Child mode: the real `serve` path with the configuration the parent wrote, or (diagnostic
/// variant) the same gateway whose records go to a store that discards them, to tell the cost
/// of the proxy from the cost of storing every record.
fn run_gateway_child(config_path: &str) {
    let source = llmopt_gateway::config::ConfigSource {
        base_file: Some(config_path.into()),
        env_file: None,
    };
    let config = source.load().expect("bench config");
    let _guard = llmopt_gateway::logging::init(&config.logging).expect("logging");
    // As `llm-auto-optimizer serve` does: one control worker; `serve` starts the I/O threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var(DISCARD_ENV).is_ok() {
        runtime.block_on(serve_discarding(config));
    } else {
        runtime.block_on(llmopt_gateway::server::serve(source, config)).expect("serve");
    }
}

async fn serve_discarding(config: llmopt_gateway::config::Config) {
    use llmopt_gateway::{
        AppState, GatewayInit, Stores,
        server::{io_threads, run_server_threads},
        state::environment_secrets,
    };
    let listener = TcpListener::bind(config.server.listen).await.expect("bind gateway");
    let threads = io_threads(config.server.threads);
    let stores = Stores { records: Arc::new(benches::DiscardStore), ..Stores::memory() };
    let state = AppState::build(GatewayInit {
        config,
        stores,
        clock: Arc::new(llmopt_core::SystemClock),
        secrets: environment_secrets(),
        config_source: None,
    })
    .expect("gateway state");
    let terminate = async {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        signal.recv().await;
    };
    run_server_threads(listener, threads, state, terminate, Duration::from_secs(2))
        .await
        .expect("serve");
}

/// Mock child mode: serve [`MOCK_ANSWER`] on an ephemeral loopback port, print the port on
/// stdout, and serve until killed. The upstream is its own process, as a provider is, and as
/// the mock was when the other gateways were measured (wrk, gateway and mock as three
/// processes); a mock inside the load generator's process would answer the direct calls with no
/// process wakeup at all and make every hop through another process look dearer than it is.
fn run_mock_child(service_ms: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let address = listener.local_addr().expect("mock address");
        println!("{}", address.port());
        serve_mock(listener, Duration::from_millis(service_ms)).await;
    });
}

/// Answers every request on `listener` with [`MOCK_ANSWER`] after `service_time`.
async fn serve_mock(listener: TcpListener, service_time: Duration) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| async move {
                // Read the whole body, as a real upstream would.
                let _ = request.into_body().collect().await;
                if !service_time.is_zero() {
                    tokio::time::sleep(service_time).await;
                }
                let mut response =
                    Response::new(Full::new(Bytes::from_static(MOCK_ANSWER.as_bytes())));
                response.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
        });
    }
}

/// The mock upstream as a child process (see [`run_mock_child`]); killed on drop.
struct MockChild {
    child: Child,
    address: SocketAddr,
}

impl MockChild {
    fn start(service_time: Duration) -> MockChild {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(MOCK_ENV, service_time.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the mock upstream");
        let stdout = child.stdout.take().expect("mock stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("mock port");
        let port: u16 = line.trim().parse().expect("mock port");
        MockChild { child, address: SocketAddr::from(([127, 0, 0, 1], port)) }
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address").port()
}

struct GatewayChild {
    child: Child,
    address: SocketAddr,
    _directory: tempfile::TempDir,
}

impl GatewayChild {
    fn start(upstream: SocketAddr, discard_records: bool) -> GatewayChild {
        let directory = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace_ms = 2000
threads = {threads}
[storage]
path = "{store}"
[logging]
level = "warn"
[cache]
enabled = false
max_bytes = 16777216
[providers.mock]
kind = "openai"
base_url = "http://{upstream}/v1"
timeout_ms = 10000
[routes.miss]
models = ["gpt-*"]
provider = "mock"
[routes.cached]
models = ["cached-*"]
provider = "mock"
cache = true
"#,
            store = directory.path().join("store").display(),
            threads = std::env::var("GATEWAY_BENCH_THREADS").unwrap_or_else(|_| "0".to_owned()),
        );
        let config_path = directory.path().join("bench.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(std::env::current_exe().expect("current exe"));
        if discard_records {
            command.env(DISCARD_ENV, "1");
        }
        let child = command
            .env(CHILD_ENV, &config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway");
        GatewayChild {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _directory: directory,
        }
    }

    fn memory_kb(&self) -> (u64, u64) {
        benches::memory_kb(self.child.id())
    }

    fn stop(mut self) {
        // SIGTERM through `kill`, so that the gateway shuts down gracefully.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector)
}

fn request_body(model: &str, unique: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{model}","temperature":0,"max_tokens":256,"messages":[{{"role":"system","content":"You are a concise analyst. Answer in one sentence."}},{{"role":"user","content":"Summarise the quarterly report, section {unique}: revenue, costs and cash."}}]}}"#
    ))
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    requests: u64,
    errors: u64,
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `concurrency` workers sending requests back to back for `duration`.
async fn load(
    client: &HttpClient,
    url: &str,
    model: &str,
    concurrency: usize,
    duration: Duration,
    unique_bodies: bool,
) -> Figures {
    load_with_headers(client, url, &[], model, concurrency, duration, unique_bodies).await
}

/// [`load`] with extra request headers (another gateway's routing headers).
async fn load_with_headers(
    client: &HttpClient,
    url: &str,
    headers: &[(&'static str, String)],
    model: &str,
    concurrency: usize,
    duration: Duration,
    unique_bodies: bool,
) -> Figures {
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_owned();
        let model = model.to_owned();
        let headers = headers.to_vec();
        let counter = Arc::clone(&counter);
        let errors = Arc::clone(&errors);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            while Instant::now() < deadline {
                let unique =
                    if unique_bodies { counter.fetch_add(1, Ordering::Relaxed) } else { 0 };
                let mut request = Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(request_body(&model, unique)))
                    .expect("request");
                for (name, value) in &headers {
                    if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
                        request.headers_mut().insert(*name, value);
                    }
                }
                let sent = Instant::now();
                let ok = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await;
                        status.is_success() && body.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros() as u64);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[index] as f64
    };
    Figures {
        requests: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        throughput: latencies.len() as f64 / elapsed,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
    }
}

/// Median; the mean of the middle two for an even count (quick mode runs two rounds).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// Half of max − min: the run-to-run noise the figures file reports as `spread`.
fn half_range(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    (max - min) / 2.0
}

/// The gateway's collector counters from its `/metrics`: (written, dropped, queue depth).
async fn collector_counters(client: &HttpClient, address: SocketAddr) -> (f64, f64, f64) {
    let url = format!("http://{address}/metrics");
    let Ok(response) = client.get(url.parse().expect("url")).await else {
        return (f64::NAN, f64::NAN, f64::NAN);
    };
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (
        value("llmopt_collector_written"),
        value("llmopt_collector_dropped"),
        value("llmopt_collector_queue_depth"),
    )
}

async fn wait_ready(client: &HttpClient, address: SocketAddr) {
    let url = format!("http://{address}/ready");
    for _ in 0..500 {
        if let Ok(response) = client.get(url.parse().expect("url")).await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not become ready");
}

async fn run() {
    let seconds: f64 =
        std::env::var("GATEWAY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mock = MockChild::start(Duration::ZERO);
    println!("== the gateway as served: every call recorded to its sled store");
    let served = measure(&mock, seconds, false).await;
    println!();
    println!("== diagnostic: the same gateway, records discarded by the store (proxy cost alone)");
    let diagnostic = measure(&mock, seconds, true).await;
    println!();
    println!(
        "== diagnostic: an upstream that takes {} ms per call (real providers take hundreds)",
        SLOW_UPSTREAM.as_millis()
    );
    let slow = measure_slow_upstream(seconds).await;
    let mut figures = figures_json("gateway", &served);
    figures.extend(figures_json("diagnostic/gateway_no_store", &diagnostic));
    figures.push(figure(
        "diagnostic/gateway_slow_upstream/c32/throughput_ratio".to_owned(),
        "ratio",
        &slow,
    ));
    if let Some(script) = portkey_script() {
        println!();
        println!("== competitor: Portkey's open-source gateway (Node.js), same mock, same load");
        figures.extend(measure_portkey(&mock, seconds, &script).await);
    } else {
        println!();
        println!(
            "(no competitor measured: run scripts/bench/install-competitors.sh, or set \
             {PORTKEY_ENV}, to measure Portkey's gateway in the same run)"
        );
    }
    benches::write_figures_file("gateway", &figures);
}

const PORTKEY_ENV: &str = "GATEWAY_BENCH_PORTKEY";

/// Portkey's `start-server.js`: from `GATEWAY_BENCH_PORTKEY`, else where
/// `scripts/bench/install-competitors.sh` puts it; `None` when neither exists.
fn portkey_script() -> Option<std::path::PathBuf> {
    let path = std::env::var_os(PORTKEY_ENV).map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../target/competitors/portkey/node_modules/@portkey-ai/gateway/build/start-server.js",
        )
    });
    path.is_file().then_some(path)
}

/// The same direct-versus-gateway comparison (c=1 latency, c=32 throughput, CPU per call, memory
/// after the load) against Portkey's gateway run by Node.js, routed to the same mock upstream
/// through its custom-host headers. Figures under `competitor/portkey/…` (unjudged).
async fn measure_portkey(
    mock: &MockChild,
    seconds: f64,
    script: &std::path::Path,
) -> Vec<serde_json::Value> {
    let duration = Duration::from_secs_f64(seconds);
    let port = free_port();
    let Ok(mut child) = Command::new("node")
        .arg(script)
        .arg(format!("--port={port}"))
        .arg("--headless")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("node did not start: competitor skipped");
        return Vec::new();
    };
    let client = http_client();
    let upstream = mock.address;
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let portkey_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let headers = [
        ("x-portkey-provider", "openai".to_owned()),
        ("x-portkey-custom-host", format!("http://{upstream}/v1")),
        ("authorization", "Bearer sk-bench".to_owned()),
    ];
    let ready_by = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while Instant::now() < ready_by && !ready {
        let probe = load_with_headers(
            &client,
            &portkey_url,
            &headers,
            "gpt-4o-mini",
            1,
            Duration::from_millis(50),
            true,
        )
        .await;
        ready = probe.requests > 0 && probe.errors == 0;
        if !ready {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !ready {
        println!("Portkey's gateway did not answer within 30 s: competitor skipped");
        let _ = child.kill();
        let _ = child.wait();
        return Vec::new();
    }
    // Warm-up, longer than ours: V8 compiles the hot paths first.
    load_with_headers(
        &client,
        &portkey_url,
        &headers,
        "gpt-4o-mini",
        8,
        Duration::from_secs(2),
        true,
    )
    .await;
    let processes = [child.id(), mock.child.id()];
    let mut added_p50 = Vec::new();
    let mut added_p99 = Vec::new();
    let mut ratios = Vec::new();
    let mut cpu = Vec::new();
    let mut errors = 0;
    for round in 0..rounds() {
        let direct_1 = load(&client, &direct_url, "gpt-4o-mini", 1, duration, true).await;
        let portkey_1 =
            load_with_headers(&client, &portkey_url, &headers, "gpt-4o-mini", 1, duration, true)
                .await;
        let direct_32 = load(&client, &direct_url, "gpt-4o-mini", 32, duration, true).await;
        let before = processes.map(cpu_ticks);
        let portkey_32 =
            load_with_headers(&client, &portkey_url, &headers, "gpt-4o-mini", 32, duration, true)
                .await;
        let after = processes.map(cpu_ticks);
        errors += portkey_1.errors + portkey_32.errors;
        println!(
            "round {round}: c=1 direct p50 {:.0} µs / Portkey p50 {:.0} µs; c=32 direct {:.0} rps / Portkey {:.0} rps",
            direct_1.p50_us, portkey_1.p50_us, direct_32.throughput, portkey_32.throughput
        );
        added_p50.push(portkey_1.p50_us - direct_1.p50_us);
        added_p99.push(portkey_1.p99_us - direct_1.p99_us);
        ratios.push(portkey_32.throughput / direct_32.throughput);
        cpu.push(
            (after[0] - before[0]) as f64 * 1e6
                / TICKS_PER_SECOND
                / portkey_32.requests.max(1) as f64,
        );
    }
    let (rss_kb, _) = benches::memory_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "Portkey added latency c=1: p50 {:+.0} µs, p99 {:+.0} µs; throughput c=32 {:.2}× direct; \
         CPU per call {:.1} µs; RSS after load {:.1} MB; {errors} errors",
        median(added_p50.clone()),
        median(added_p99.clone()),
        median(ratios.clone()),
        median(cpu.clone()),
        rss_kb as f64 / 1024.0
    );
    vec![
        figure("competitor/portkey/c1/added_latency_p50".to_owned(), "µs", &added_p50),
        figure("competitor/portkey/c1/added_latency_p99".to_owned(), "µs", &added_p99),
        figure("competitor/portkey/c32/throughput_ratio".to_owned(), "ratio", &ratios),
        figure("competitor/portkey/c32/gateway_cpu_per_call".to_owned(), "µs", &cpu),
        benches::reading("competitor/portkey/rss_after_load", "MiB", rss_kb as f64 / 1024.0),
    ]
}

/// Service time of the slow mock upstream of the third variant.
const SLOW_UPSTREAM: Duration = Duration::from_millis(5);

/// c=32 through the gateway (as served) against an upstream with a service time: whether the
/// gateway keeps up when the upstream, not the CPU, bounds throughput (with a zero-work mock the
/// gateway's extra hop costs more CPU than the mock itself does, on the same two cores).
/// Returns the throughput ratio of each round.
async fn measure_slow_upstream(seconds: f64) -> Vec<f64> {
    let duration = Duration::from_secs_f64(seconds);
    let mock = MockChild::start(SLOW_UPSTREAM);
    let upstream = mock.address;
    let gateway = GatewayChild::start(upstream, false);
    let client = http_client();
    wait_ready(&client, gateway.address).await;
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let gateway_url = format!("http://{}/v1/chat/completions", gateway.address);
    load(&client, &gateway_url, "gpt-4o-mini", 8, Duration::from_millis(300), true).await;
    let mut ratios = Vec::new();
    for round in 0..rounds() {
        let direct = load(&client, &direct_url, "gpt-4o-mini", 32, duration, true).await;
        let through = load(&client, &gateway_url, "gpt-4o-mini", 32, duration, true).await;
        println!(
            "round {round}: c=32 direct {:.0} rps (p50 {:.0} µs) / gateway {:.0} rps (p50 {:.0} µs), {} errors",
            direct.throughput,
            direct.p50_us,
            through.throughput,
            through.p50_us,
            direct.errors + through.errors
        );
        ratios.push(through.throughput / direct.throughput);
    }
    gateway.stop();
    println!(
        "throughput c=32 with a {} ms upstream: {:.3}× direct",
        SLOW_UPSTREAM.as_millis(),
        median(ratios.clone())
    );
    ratios
}

/// What one variant measured: per round, the five loads in the order of [`LOADS`]; and the
/// gateway's memory (kB) when ready, after the load, and at its peak.
struct Measurement {
    rounds: Vec<[Figures; 5]>,
    cpu: Vec<CpuPerCall>,
    idle_rss_kb: u64,
    rss_kb: u64,
    peak_kb: u64,
}

/// The five loads of a round, as named in the figures file.
const LOADS: [&str; 5] = ["c1/direct", "c1/gateway", "c32/direct", "c32/gateway", "c1/cache_hit"];

/// One figure-file entry: the median over rounds and half their range as the spread.
fn figure(name: String, unit: &str, per_round: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "median": median(per_round.to_vec()),
        "unit": unit,
        "spread": half_range(per_round),
    })
}

/// The figures of one variant under `prefix` (`gateway`, or the diagnostic prefix that no
/// target matches), in the figure-file format of `xtask/src/bench.rs`.
fn figures_json(prefix: &str, measurement: &Measurement) -> Vec<serde_json::Value> {
    let rounds = &measurement.rounds;
    let per_round = |f: &dyn Fn(&[Figures; 5]) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let mut out = vec![
        figure(
            format!("{prefix}/c1/added_latency_p50"),
            "µs",
            &per_round(&|r| r[1].p50_us - r[0].p50_us),
        ),
        figure(
            format!("{prefix}/c1/added_latency_p99"),
            "µs",
            &per_round(&|r| r[1].p99_us - r[0].p99_us),
        ),
        figure(
            format!("{prefix}/c32/throughput_ratio"),
            "ratio",
            &per_round(&|r| r[3].throughput / r[2].throughput),
        ),
    ];
    for (index, load) in LOADS.iter().enumerate() {
        out.push(figure(
            format!("{prefix}/{load}_throughput"),
            "requests/s",
            &per_round(&|r| r[index].throughput),
        ));
        out.push(figure(format!("{prefix}/{load}_p50"), "µs", &per_round(&|r| r[index].p50_us)));
        out.push(figure(format!("{prefix}/{load}_p99"), "µs", &per_round(&|r| r[index].p99_us)));
    }
    type Of = fn(&CpuPerCall) -> f64;
    let cpu_figures: [(&str, Of); 4] = [
        ("c32/gateway_cpu_per_call", |c| c.gateway),
        ("c32/mock_cpu_per_call", |c| c.mock_direct),
        ("c1/gateway_cpu_per_call", |c| c.gateway_c1),
        ("c32/load_generator_cpu_per_call", |c| c.client_direct),
    ];
    for (name, of) in cpu_figures {
        let per_round: Vec<f64> = measurement.cpu.iter().map(of).collect();
        out.push(figure(format!("{prefix}/{name}"), "µs", &per_round));
    }
    for (name, kb) in [
        ("rss_after_load", measurement.rss_kb),
        ("rss_when_ready", measurement.idle_rss_kb),
        ("rss_peak", measurement.peak_kb),
    ] {
        out.push(benches::reading(format!("{prefix}/{name}"), "MiB", kb as f64 / 1024.0));
    }
    out
}

async fn measure(mock: &MockChild, seconds: f64, discard_records: bool) -> Measurement {
    let duration = Duration::from_secs_f64(seconds);
    let upstream = mock.address;
    let gateway = GatewayChild::start(upstream, discard_records);
    let processes = [gateway.child.id(), mock.child.id(), std::process::id()];
    let client = http_client();
    wait_ready(&client, gateway.address).await;
    let (idle_rss_kb, _) = gateway.memory_kb();
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let gateway_url = format!("http://{}/v1/chat/completions", gateway.address);

    // Warm-up: connection pools, allocator, first-use paths.
    load(&client, &direct_url, "gpt-4o-mini", 8, Duration::from_millis(500), true).await;
    load(&client, &gateway_url, "gpt-4o-mini", 8, Duration::from_millis(500), true).await;

    let round_count = rounds();
    let mut rounds: Vec<[Figures; 5]> = Vec::new();
    let mut cpu: Vec<CpuPerCall> = Vec::new();
    for round in 0..round_count {
        let direct_1 = load(&client, &direct_url, "gpt-4o-mini", 1, duration, true).await;
        let before_1 = cpu_ticks(processes[0]);
        let gateway_1 = load(&client, &gateway_url, "gpt-4o-mini", 1, duration, true).await;
        let after_1 = cpu_ticks(processes[0]);
        let before = processes.map(cpu_ticks);
        let direct_32 = load(&client, &direct_url, "gpt-4o-mini", 32, duration, true).await;
        let between = processes.map(cpu_ticks);
        let gateway_32 = load(&client, &gateway_url, "gpt-4o-mini", 32, duration, true).await;
        let after = processes.map(cpu_ticks);
        let per_call = |from: u64, to: u64, figures: &Figures| {
            (to - from) as f64 * 1e6 / TICKS_PER_SECOND / figures.requests.max(1) as f64
        };
        cpu.push(CpuPerCall {
            mock_direct: per_call(before[1], between[1], &direct_32),
            gateway: per_call(between[0], after[0], &gateway_32),
            mock_through_gateway: per_call(between[1], after[1], &gateway_32),
            client_direct: per_call(before[2], between[2], &direct_32),
            client_through_gateway: per_call(between[2], after[2], &gateway_32),
            gateway_c1: per_call(before_1, after_1, &gateway_1),
        });
        let hits = load(&client, &gateway_url, "cached-model", 1, duration, false).await;
        println!(
            "round {round}: c=1 direct p50 {:.0} µs / gateway p50 {:.0} µs; c=32 direct {:.0} rps / gateway {:.0} rps; hits p99 {:.0} µs",
            direct_1.p50_us,
            gateway_1.p50_us,
            direct_32.throughput,
            gateway_32.throughput,
            hits.p99_us
        );
        rounds.push([direct_1, gateway_1, direct_32, gateway_32, hits]);
    }
    let (rss_kb, peak_kb) = gateway.memory_kb();
    let collector = collector_counters(&client, gateway.address).await;
    gateway.stop();
    println!(
        "collector after the load: {} written, {} dropped (queue full), queue depth {}",
        collector.0, collector.1, collector.2
    );

    let pick = |index: usize, f: fn(&Figures) -> f64| {
        median(rounds.iter().map(|r| f(&r[index])).collect())
    };
    let total_errors: u64 = rounds.iter().flat_map(|r| r.iter().map(|f| f.errors)).sum();
    let total_requests: u64 = rounds.iter().flat_map(|r| r.iter().map(|f| f.requests)).sum();
    println!();
    println!(
        "gateway bench: medians of {round_count} rounds of {seconds} s each, loopback, mock upstream"
    );
    println!("{:<34} {:>12} {:>10} {:>10}", "", "req/s", "p50 µs", "p99 µs");
    let names = [
        "c=1  direct",
        "c=1  gateway (upstream call)",
        "c=32 direct",
        "c=32 gateway (upstream call)",
        "c=1  gateway cache hit",
    ];
    for (index, name) in names.iter().enumerate() {
        println!(
            "{:<34} {:>12.0} {:>10.0} {:>10.0}",
            name,
            pick(index, |f| f.throughput),
            pick(index, |f| f.p50_us),
            pick(index, |f| f.p99_us)
        );
    }
    let added_p50 = pick(1, |f| f.p50_us) - pick(0, |f| f.p50_us);
    let added_p99 = pick(1, |f| f.p99_us) - pick(0, |f| f.p99_us);
    let ratio = median(rounds.iter().map(|r| r[3].throughput / r[2].throughput).collect());
    println!();
    println!(
        "added latency c=1: p50 {added_p50:+.0} µs (target ≤ 100), p99 {added_p99:+.0} µs (target ≤ 300)"
    );
    println!("throughput c=32: {ratio:.2}× direct (target ≥ 0.85)");
    println!("cache hit c=1: p99 {:.0} µs (target ≤ 200)", pick(4, |f| f.p99_us));
    let cpu_median = |f: fn(&CpuPerCall) -> f64| median(cpu.iter().map(f).collect());
    println!(
        "CPU time per call at c=32 (user + system, from /proc): gateway {:.1} µs; the mock \
         upstream {:.1} µs when called directly, {:.1} µs when called through the gateway; \
         the load generator {:.1} µs direct, {:.1} µs through the gateway",
        cpu_median(|c| c.gateway),
        cpu_median(|c| c.mock_direct),
        cpu_median(|c| c.mock_through_gateway),
        cpu_median(|c| c.client_direct),
        cpu_median(|c| c.client_through_gateway)
    );
    println!(
        "CPU time per call at c=1: gateway {:.1} µs (the rest of the added latency is waiting: \
         two more process wake-ups per call)",
        cpu_median(|c| c.gateway_c1)
    );
    let through_gateway: u64 =
        rounds.iter().map(|r| r[1].requests + r[3].requests + r[4].requests).sum();
    println!(
        "gateway memory: RSS {:.1} MB when ready; after load {:.1} MB, peak {:.1} MB (target ≤ 50 MB), \
         after {through_gateway} calls through it",
        idle_rss_kb as f64 / 1024.0,
        rss_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0
    );
    println!("errors: {total_errors} of {total_requests} requests");
    Measurement { rounds, cpu, idle_rss_kb, rss_kb, peak_kb }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, in clock ticks) a process has used so far; 0 if unreadable.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// CPU time per call (µs) in one round's c=32 loads: what the gateway costs next to what the
/// upstream costs, a figure the machine's noise moves far less than latency.
struct CpuPerCall {
    gateway: f64,
    mock_direct: f64,
    mock_through_gateway: f64,
    client_direct: f64,
    client_through_gateway: f64,
    /// The gateway's CPU per call at c=1 (no batching of events: its cost per call on an idle
    /// machine, next to which the two wake-ups it adds are the rest of the added latency).
    gateway_c1: f64,
}
