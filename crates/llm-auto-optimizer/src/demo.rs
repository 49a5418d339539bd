//! `demo`: the whole product on one machine, with nothing configured.
//!
//! It starts the simulated provider on 127.0.0.1 (models `gpt-4o` and `gpt-4o-mini`, latency
//! from the Splitwise fit, answers' correctness from the RouteLLM MMLU labels), starts the
//! gateway on 127.0.0.1 with the embedded sled store in a fresh directory, and replays a workload
//! built from real data (`data/demo/`: MMLU prompts with both models' labels; arrival gaps from
//! the Azure conversation trace) through the gateway with the OpenAI client of `llmopt-llm`,
//! sending each answer's real correctness back as quality feedback over `POST /v1/feedback`.
//!
//! Three phases on a simulated clock that advances with the trace's arrival gaps:
//! 1. **baseline**: the optimizer only observes; one cycle at the end makes proposals;
//! 2. **optimize**: mode `auto`; a cycle after every chunk of traffic starts experiments,
//!    evaluates them, adopts winners (routing within the quality budget) or rolls them back;
//! 3. **after**: the baseline's exact prompt sequence again, with the adopted policy and a cold
//!    response cache, so cost and quality are measured on the same traffic as the baseline.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use llmopt_collector::Collector;
use llmopt_core::{
    Clock, ManualClock, Money, RecordQuery, RecordStore, RequestRecord, usage::Protocol,
};
use llmopt_llm::{
    ChatRequest, OpenAiCompatible, OpenAiConfig, Provider,
    sim::{
        QualityLabel, QualityLabels, QualityTier, SimConfig, SimEngine, SimModel, SimServer,
        latency,
    },
};
use llmopt_optimizer::{Mode, OptimizerConfig, StrategySettings};
use llmopt_storage::SledStore;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{
    closed_loop::ClosedLoop,
    config,
    server::{collector_config, run_server, storage_config},
    state::{AppState, Runtime},
};

const WORKLOAD: &str = include_str!("../../../data/demo/mmlu_workload.jsonl");
const ARRIVALS: &str = include_str!("../../../data/demo/azure_conv_arrivals.csv");
const STRONG: &str = "gpt-4o";
const WEAK: &str = "gpt-4o-mini";
/// The demo starts its simulated clock at 2026-01-05T09:00:00Z.
const START_MS: i64 = 1_767_603_600_000;

/// Options of `demo`.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Requests of the optimization phase (the baseline and after phases add `baseline` each).
    pub requests: usize,
    /// Requests of the baseline phase (replayed again, identically, after adoption).
    pub baseline: usize,
    /// How much faster than real time the simulated models answer.
    pub speed: f64,
    pub concurrency: usize,
    pub seed: u64,
    /// Requests between two optimization cycles.
    pub cycle_every: usize,
    pub data_dir: Option<PathBuf>,
    /// Use only the first this many prompts of the workload (more repeats, fewer subjects).
    pub prompts: Option<usize>,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for DemoArgs {
    fn default() -> DemoArgs {
        DemoArgs {
            requests: 60_000,
            baseline: 5_000,
            speed: 1_000.0,
            concurrency: 32,
            seed: 7,
            cycle_every: 2_500,
            data_dir: None,
            prompts: None,
            progress: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct WorkItem {
    subject: String,
    prompt: String,
    weak_correct: bool,
    strong_correct: bool,
}

/// Cost, quality and latency of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseStats {
    pub requests: u64,
    pub errors: u64,
    pub cost_usd: f64,
    pub cost_per_1k_requests_usd: f64,
    pub accuracy: f64,
    /// Share of requests answered by the weak model (routing), cache hits of its answers included.
    pub weak_share: f64,
    pub cache_hit_share: f64,
    /// Latency of the simulated models at real speed (measured ÷ speed-up), ms.
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub seconds: f64,
}

/// One experiment as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentLine {
    pub id: String,
    pub name: String,
    pub status: String,
    pub requests: Vec<(String, u64)>,
    pub verdict: String,
}

/// What the demo found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub workload: String,
    pub subjects: usize,
    pub baseline: PhaseStats,
    pub after: PhaseStats,
    pub measured_saving_share: f64,
    pub quality_ratio: f64,
    pub proposals: Vec<llmopt_optimizer::Proposal>,
    pub experiments: Vec<ExperimentLine>,
    pub adopted: Vec<llmopt_optimizer::Adoption>,
    pub not_adopted: Vec<(String, String)>,
    pub guardrail_stops: Vec<String>,
    pub routed_subjects: Vec<String>,
    pub strong_calls_avoided: f64,
    pub random_routing_reference: f64,
    pub oracle_reference: f64,
    pub quality_budget_used: f64,
    pub optimization_requests: u64,
    pub cycles: u64,
    /// Audit-log entries by kind.
    pub audit: BTreeMap<String, u64>,
}

fn workload() -> Result<Vec<WorkItem>> {
    WORKLOAD
        .lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("data/demo/mmlu_workload.jsonl:{}", index + 1))
        })
        .collect()
}

fn arrival_gaps() -> Result<Vec<i64>> {
    let offsets: Vec<i64> = ARRIVALS
        .lines()
        .skip(1)
        .map(|line| line.trim().parse::<i64>().with_context(|| format!("arrival offset `{line}`")))
        .collect::<Result<_>>()?;
    let gaps: Vec<i64> = offsets.windows(2).map(|w| (w[1] - w[0]).max(0)).collect();
    if gaps.is_empty() {
        bail!("no arrival gaps in data/demo/azure_conv_arrivals.csv");
    }
    Ok(gaps)
}

/// Share of calls that can go to the weak model while keeping 95 % of the strong model's
/// accuracy: routing a random share (reference 1) and an oracle that knows every subject's labels
/// (reference 2, greedy by subject).
fn references(items: &[WorkItem]) -> (f64, f64) {
    let strong = items.iter().filter(|i| i.strong_correct).count() as f64;
    let weak = items.iter().filter(|i| i.weak_correct).count() as f64;
    let random = if strong > weak { (0.05 * strong / (strong - weak)).min(1.0) } else { 1.0 };
    let mut by_subject: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for item in items {
        let entry = by_subject.entry(&item.subject).or_default();
        entry.0 += 1.0;
        entry.1 += f64::from(u8::from(item.weak_correct));
        entry.2 += f64::from(u8::from(item.strong_correct));
    }
    let mut subjects: Vec<(f64, f64, f64)> = by_subject.into_values().collect();
    subjects.sort_by(|a, b| ((b.1 - b.2) / b.0).total_cmp(&((a.1 - a.2) / a.0)));
    let (mut correct, mut routed) = (strong, 0.0);
    for (count, weak, strong_s) in subjects {
        if correct - strong_s + weak >= 0.95 * strong {
            correct += weak - strong_s;
            routed += count;
        } else {
            break;
        }
    }
    (random, routed / items.len() as f64)
}

/// A small HTTP client for the gateway's non-proxy routes.
struct ApiClient {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    base: String,
}

impl ApiClient {
    fn new(base: String) -> ApiClient {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        ApiClient { client, base }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<u16> {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        // Drain the body so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

struct Driver {
    client: OpenAiCompatible,
    api: ApiClient,
    clock: Arc<ManualClock>,
    gaps: Vec<i64>,
    next_gap: AtomicU64,
    concurrency: usize,
}

/// One answered request, as the client saw it.
#[derive(Debug, Clone)]
struct Outcome {
    served: String,
    correct: bool,
    ok: bool,
}

impl Driver {
    /// Sends the items in order (at most `concurrency` in flight), stamps them on the simulated
    /// clock with the trace's gaps, and sends each answer's correctness back as feedback.
    async fn replay(
        &self,
        items: &[&WorkItem],
        progress: Option<&indicatif::ProgressBar>,
    ) -> Vec<Outcome> {
        futures::stream::iter(items.iter().copied())
            .map(|item| {
                let index = self.next_gap.fetch_add(1, Ordering::Relaxed) as usize;
                self.clock.advance(self.gaps[index % self.gaps.len()]);
                async move {
                    let outcome = self.one(item).await;
                    if let Some(bar) = progress {
                        bar.inc(1);
                    }
                    outcome
                }
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await
    }

    async fn one(&self, item: &WorkItem) -> Outcome {
        let body = serde_json::json!({
            "model": STRONG,
            "temperature": 0,
            "messages": [{"role": "user", "content": item.prompt}],
        });
        let mut request =
            match ChatRequest::from_slice(Protocol::OpenAi, body.to_string().as_bytes()) {
                Ok(request) => request,
                Err(_) => return Outcome { served: String::new(), correct: false, ok: false },
            };
        request.headers.push(("x-llmopt-tags".to_owned(), format!("subject={}", item.subject)));
        match self.client.chat(request).await {
            Ok(response) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let served =
                    header("x-llmopt-served-model").or(response.model.clone()).unwrap_or_default();
                let truncated = matches!(response.stop_reason.as_deref(), Some("length"));
                let label =
                    if served.starts_with(WEAK) { item.weak_correct } else { item.strong_correct };
                let correct = label && !truncated;
                if let Some(id) = header("x-request-id") {
                    let feedback = serde_json::json!({"request_id": id, "metric": "correct", "value": correct});
                    if let Err(error) = self.api.post("/v1/feedback", feedback).await {
                        tracing::warn!(%error, "feedback not sent");
                    }
                }
                Outcome { served, correct, ok: true }
            }
            Err(error) => {
                tracing::warn!(%error, "demo request failed");
                Outcome { served: String::new(), correct: false, ok: false }
            }
        }
    }
}

fn phase_stats(
    outcomes: &[Outcome],
    records: &[RequestRecord],
    speed: f64,
    seconds: f64,
) -> PhaseStats {
    let n = outcomes.len().max(1) as f64;
    let cost: Money = records.iter().filter_map(|r| r.cost).sum();
    let mut latencies: Vec<f64> = records
        .iter()
        .filter(|r| r.status.is_ok() && r.cache != llmopt_core::CacheOutcome::Hit)
        .map(|r| r.latency_ms() * speed)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| llmopt_core::store::quantile_sorted(&latencies, q);
    PhaseStats {
        requests: outcomes.len() as u64,
        errors: outcomes.iter().filter(|o| !o.ok).count() as u64,
        cost_usd: cost.as_usd_f64(),
        cost_per_1k_requests_usd: cost.as_usd_f64() * 1_000.0 / n,
        accuracy: outcomes.iter().filter(|o| o.correct).count() as f64 / n,
        weak_share: outcomes.iter().filter(|o| o.served.starts_with(WEAK)).count() as f64 / n,
        cache_hit_share: records
            .iter()
            .filter(|r| r.cache == llmopt_core::CacheOutcome::Hit)
            .count() as f64
            / records.len().max(1) as f64,
        latency_p50_ms: if latencies.is_empty() { 0.0 } else { quantile(0.5) },
        latency_p95_ms: if latencies.is_empty() { 0.0 } else { quantile(0.95) },
        seconds,
    }
}

/// The optimizer settings of the demo: every strategy on, routing per MMLU subject.
pub fn demo_optimizer_config() -> OptimizerConfig {
    OptimizerConfig {
        mode: Mode::Observe,
        environment: "demo".to_owned(),
        lookback_ms: 30 * 86_400_000,
        max_running_experiments: 80,
        experiment_coverage: 1.0,
        min_saving_usd_per_day: 0.0,
        experiment_max_duration_ms: 30 * 86_400_000,
        min_samples_per_arm: 100,
        experiment_tuning_samples: 1_000,
        alpha: 0.05,
        strategies: BTreeMap::new(),
        flags: BTreeMap::new(),
        schedule: None,
        settings: StrategySettings {
            min_requests: 40,
            cache_ttl_seconds: 86_400,
            workload_tag: Some("subject".to_owned()),
            routing_pairs: vec![(STRONG.to_owned(), WEAK.to_owned())],
            ..StrategySettings::default()
        },
    }
}

async fn records_between(
    records: &Arc<dyn RecordStore>,
    collector: &Collector,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RequestRecord>> {
    let collector = collector.clone();
    let records = records.clone();
    tokio::task::spawn_blocking(move || -> Result<Vec<RequestRecord>> {
        collector.flush().context("collector flush")?;
        Ok(records.scan(&RecordQuery::range(from_ms, to_ms))?)
    })
    .await?
}

/// Runs the demo and returns its report; `out` gets the text report.
pub async fn run(args: &DemoArgs, out: &mut (dyn Write + Send)) -> Result<DemoReport> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number, got {}", args.speed);
    }
    if args.requests == 0 || args.baseline == 0 || args.concurrency == 0 || args.cycle_every == 0 {
        bail!("--requests, --baseline, --concurrency and --cycle-every must be positive");
    }
    let mut items = workload()?;
    if let Some(prompts) = args.prompts {
        if prompts == 0 {
            bail!("--prompts must be positive");
        }
        items.truncate(prompts);
    }
    let subjects = items
        .iter()
        .map(|item| item.subject.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let gaps = arrival_gaps()?;
    let clock = Arc::new(ManualClock::new(START_MS));

    // The simulated provider, with the workload's labels.
    let mut labels = QualityLabels::default();
    for item in &items {
        labels.insert(
            item.prompt.clone(),
            QualityLabel {
                weak_correct: item.weak_correct,
                strong_correct: item.strong_correct,
                weak_response: None,
                strong_response: None,
            },
        );
    }
    let sim = SimServer::start_local(Arc::new(SimEngine::new(SimConfig {
        seed: args.seed,
        time_scale: 1.0 / args.speed,
        models: vec![
            SimModel {
                names: vec![STRONG.to_owned()],
                latency: latency::LARGE,
                tier: QualityTier::Strong,
            },
            SimModel {
                names: vec![WEAK.to_owned()],
                latency: latency::SMALL,
                tier: QualityTier::Weak,
            },
        ],
        quality: Some(Arc::new(labels)),
        clock: clock.clone(),
        ..SimConfig::default()
    })))
    .await
    .context("starting the simulated provider")?;

    // The gateway, on a fresh store.
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("llmopt-demo-{}-{}", std::process::id(), START_MS))
        }
    };
    if data_dir.exists() {
        bail!("data directory `{}` exists already: the demo needs a fresh one", data_dir.display());
    }
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = {path:?}
[cache]
ttl_s = 86400
[providers.openai]
kind = "openai"
base_url = "{base}"
[routes.openai]
models = ["gpt-*"]
provider = "openai"
"#,
        path = data_dir.display().to_string(),
        base = sim.openai_base_url(),
    );
    let mut config = config::from_toml_str(&config_text).context("demo configuration")?;
    config.optimizer = demo_optimizer_config();
    let store_path = config.storage.path.clone();
    let storage = storage_config(&config.storage);
    let store =
        tokio::task::spawn_blocking(move || SledStore::open(&store_path, storage)).await??;
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let collector =
        Collector::start(store.records(), dyn_clock.clone(), collector_config(&config.collector));
    let secrets: crate::state::SecretSource = Arc::new(|_: &str| None);
    let runtime = Runtime::build(config.clone(), &secrets, None)?;
    let state = AppState::new(runtime, collector.clone(), dyn_clock.clone(), secrets, None);
    let closed_loop = Arc::new(ClosedLoop::open(
        store.records(),
        store.experiments(),
        store.policy(),
        state.runtime().catalog.clone(),
        dyn_clock.clone(),
        config.optimizer.clone(),
    )?);
    state.set_closed_loop(closed_loop.clone());
    state.set_records(store.records());
    let optimizer = closed_loop.optimizer().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_server(
        listener,
        state.clone(),
        async {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));

    let gateway = format!("http://{address}");
    let mut client_config = OpenAiConfig::new("gateway", format!("{gateway}/v1"));
    client_config.timeouts.first_byte = Duration::from_secs(120);
    let driver = Driver {
        client: OpenAiCompatible::new(client_config)?,
        api: ApiClient::new(gateway.clone()),
        clock: clock.clone(),
        gaps,
        next_gap: AtomicU64::new(0),
        concurrency: args.concurrency,
    };
    let records_store = store.records() as Arc<dyn RecordStore>;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let mut draw = |count: usize| -> Vec<usize> {
        (0..count).map(|_| rng.gen_range(0..items.len())).collect()
    };
    let bar = |len: usize, label: &str| -> Option<indicatif::ProgressBar> {
        args.progress.then(|| {
            let bar = indicatif::ProgressBar::new(len as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(label.to_owned());
            bar
        })
    };

    // Phase 1: baseline.
    let baseline_order = draw(args.baseline);
    let baseline_items: Vec<&WorkItem> = baseline_order.iter().map(|&i| &items[i]).collect();
    let from = clock.now_ms();
    let started = Instant::now();
    let progress = bar(baseline_items.len(), "baseline");
    let baseline_outcomes = driver.replay(&baseline_items, progress.as_ref()).await;
    if let Some(bar) = progress {
        bar.finish();
    }
    let baseline_seconds = started.elapsed().as_secs_f64();
    let baseline_records =
        records_between(&records_store, &collector, from, clock.now_ms() + 1).await?;
    let baseline = phase_stats(&baseline_outcomes, &baseline_records, args.speed, baseline_seconds);
    let first = {
        let optimizer = optimizer.clone();
        tokio::task::spawn_blocking(move || optimizer.run_cycle()).await??
    };
    let proposals = first.proposals.clone();

    // Phase 2: optimize.
    let mut auto = optimizer.config();
    auto.mode = Mode::Auto;
    optimizer.set_config(auto)?;
    let mut sent = 0;
    let mut cycles = 1;
    let mut not_adopted = Vec::new();
    let progress = bar(args.requests, "optimize");
    while sent < args.requests {
        let chunk = args.cycle_every.min(args.requests - sent);
        let order = draw(chunk);
        let chunk_items: Vec<&WorkItem> = order.iter().map(|&i| &items[i]).collect();
        driver.replay(&chunk_items, progress.as_ref()).await;
        sent += chunk;
        {
            let collector = collector.clone();
            tokio::task::spawn_blocking(move || collector.flush()).await??;
        }
        let report = {
            let optimizer = optimizer.clone();
            tokio::task::spawn_blocking(move || optimizer.run_cycle()).await??
        };
        cycles += 1;
        not_adopted.extend(report.not_adopted.clone());
        let running = optimizer.engine().list().iter().filter(|e| e.status.is_active()).count();
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "cycle {cycles}: {running} experiments running, {} adopted",
                optimizer.adoptions().len()
            ));
        }
        if running == 0 && report.started.is_empty() && cycles > 2 {
            break;
        }
    }
    if let Some(bar) = progress {
        bar.finish();
    }

    // Phase 3: the baseline's prompts again, adopted policy in force, cold response cache.
    let mut frozen = optimizer.config();
    frozen.mode = Mode::Observe;
    optimizer.set_config(frozen)?;
    // Experiments still running are paused: the after phase measures the adopted policy alone.
    for experiment in optimizer.engine().list() {
        if experiment.status == llmopt_experiments::ExperimentStatus::Running {
            optimizer.engine().pause(&experiment.spec.id)?;
        }
    }
    state.runtime().cache.clear();
    let from = clock.now_ms();
    let started = Instant::now();
    let progress = bar(baseline_items.len(), "after");
    let after_outcomes = driver.replay(&baseline_items, progress.as_ref()).await;
    if let Some(bar) = progress {
        bar.finish();
    }
    let after_seconds = started.elapsed().as_secs_f64();
    let after_records =
        records_between(&records_store, &collector, from, clock.now_ms() + 1).await?;
    let after = phase_stats(&after_outcomes, &after_records, args.speed, after_seconds);
    // A last cycle (observe mode) measures every adoption on the after phase's records.
    {
        let optimizer = optimizer.clone();
        tokio::task::spawn_blocking(move || optimizer.run_cycle()).await??;
    }

    // The report.
    let experiments: Vec<ExperimentLine> = optimizer
        .engine()
        .list()
        .into_iter()
        .map(|experiment| {
            let verdict = experiment
                .last_decision
                .as_ref()
                .map(|decision| decision.reason.clone())
                .unwrap_or_else(|| "no decision yet".to_owned());
            ExperimentLine {
                id: experiment.spec.id.clone(),
                name: experiment.spec.name.clone(),
                status: experiment.status.name().to_owned(),
                requests: experiment
                    .arms
                    .iter()
                    .map(|arm| (arm.name.clone(), arm.requests))
                    .collect(),
                verdict,
            }
        })
        .collect();
    let audit = optimizer.audit_log(0, 100_000)?;
    let guardrail_stops: Vec<String> = audit
        .iter()
        .filter(|entry| entry.kind == "arm_stopped")
        .map(|entry| {
            format!("{}: {}", entry.subject, entry.detail["reason"].as_str().unwrap_or("guardrail"))
        })
        .collect();
    let mut audit_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for entry in &audit {
        *audit_kinds.entry(entry.kind.clone()).or_default() += 1;
    }
    let adopted = optimizer.adoptions();
    let routed_subjects: Vec<String> = adopted
        .iter()
        .filter(|a| a.change.model.is_some())
        .filter_map(|a| a.scope.tag.as_ref().map(|(_, value)| value.clone()))
        .collect();
    let (random, oracle) = references(&items);
    let by_subject_weak =
        after_outcomes.iter().filter(|o| o.served.starts_with(WEAK)).count() as f64;
    let report = DemoReport {
        workload: format!(
            "{} MMLU prompts of {subjects} subjects (RouteLLM labels: Mixtral-8x7B as {WEAK}, GPT-4-1106 as {STRONG}); \
             arrivals from the Azure conversation trace; models {}x faster than real time",
            items.len(),
            args.speed
        ),
        subjects,
        measured_saving_share: if baseline.cost_usd > 0.0 {
            1.0 - after.cost_usd / baseline.cost_usd
        } else {
            0.0
        },
        quality_ratio: if baseline.accuracy > 0.0 {
            after.accuracy / baseline.accuracy
        } else {
            0.0
        },
        baseline,
        after: after.clone(),
        proposals,
        experiments,
        adopted,
        not_adopted,
        guardrail_stops,
        routed_subjects,
        strong_calls_avoided: by_subject_weak / after_outcomes.len().max(1) as f64,
        random_routing_reference: random,
        oracle_reference: oracle,
        quality_budget_used: optimizer.quality_budget_used(),
        optimization_requests: sent as u64,
        cycles,
        audit: audit_kinds,
    };
    write_report(&report, out)?;

    let _ = stop_tx.send(());
    let _ = server.await;
    sim.shutdown().await;
    tokio::task::spawn_blocking(move || -> Result<()> {
        closed_loop.optimizer().engine().checkpoint()?;
        collector.shutdown()?;
        store.flush()?;
        Ok(())
    })
    .await??;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(report)
}

fn write_report(report: &DemoReport, out: &mut (dyn Write + Send)) -> Result<()> {
    let b = &report.baseline;
    let a = &report.after;
    writeln!(out, "\nLLM Auto-Optimizer demo")?;
    writeln!(out, "workload: {}", report.workload)?;
    writeln!(
        out,
        "\n{:<10} {:>9} {:>11} {:>14} {:>9} {:>10} {:>9} {:>10} {:>10}",
        "phase",
        "requests",
        "cost USD",
        "USD / 1k req",
        "accuracy",
        "weak share",
        "cache hit",
        "p50 ms",
        "p95 ms"
    )?;
    for (name, s) in [("baseline", b), ("after", a)] {
        writeln!(
            out,
            "{:<10} {:>9} {:>11.4} {:>14.4} {:>8.1}% {:>9.1}% {:>8.1}% {:>10.0} {:>10.0}",
            name,
            s.requests,
            s.cost_usd,
            s.cost_per_1k_requests_usd,
            s.accuracy * 100.0,
            s.weak_share * 100.0,
            s.cache_hit_share * 100.0,
            s.latency_p50_ms,
            s.latency_p95_ms
        )?;
    }
    writeln!(
        out,
        "\nmeasured on the same {} requests: cost {:+.1} %, quality {:.1} % of the baseline's",
        b.requests,
        -report.measured_saving_share * 100.0,
        report.quality_ratio * 100.0
    )?;
    writeln!(out, "\nproposals after the baseline ({}):", report.proposals.len())?;
    for proposal in report.proposals.iter().take(12) {
        writeln!(out, "{}", proposal_line(proposal))?;
    }
    if report.proposals.len() > 12 {
        writeln!(out, "  … and {} more", report.proposals.len() - 12)?;
    }
    writeln!(
        out,
        "\nexperiments ({}, {} optimization requests, {} cycles):",
        report.experiments.len(),
        report.optimization_requests,
        report.cycles
    )?;
    for line in &report.experiments {
        let counts: Vec<String> =
            line.requests.iter().map(|(arm, n)| format!("{arm} {n}")).collect();
        writeln!(out, "  {} {:<9} [{}] {}", line.id, line.status, counts.join(", "), line.name)?;
        writeln!(out, "      {}", line.verdict)?;
    }
    let kinds: Vec<String> = report.audit.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    writeln!(out, "\naudit log: {}", kinds.join(", "))?;
    writeln!(out, "\nadopted ({}):", report.adopted.len())?;
    for adoption in &report.adopted {
        writeln!(
            out,
            "  {} {:?}: cost/request {:.6} → {:.6} USD, quality budget {:.4}",
            adoption.experiment_id,
            adoption.change,
            adoption.control_cost_per_request,
            adoption.treatment_cost_per_request,
            adoption.quality_budget_used
        )?;
    }
    if !report.not_adopted.is_empty() {
        writeln!(out, "\nwinners not adopted ({}):", report.not_adopted.len())?;
        for (id, reason) in report.not_adopted.iter().take(10) {
            writeln!(out, "  {id}: {reason}")?;
        }
    }
    writeln!(out, "\nguardrails that fired ({}):", report.guardrail_stops.len())?;
    for stop in report.guardrail_stops.iter().take(10) {
        writeln!(out, "  {stop}")?;
    }
    writeln!(
        out,
        "\nmodel routing (RouteLLM's measure): {:.1} % of strong-model calls avoided at {:.1} % of the strong \
         model's quality; {} of {} subjects routed; quality budget used {:.4} of 0.05",
        report.strong_calls_avoided * 100.0,
        report.quality_ratio * 100.0,
        report.routed_subjects.len(),
        report.subjects,
        report.quality_budget_used
    )?;
    writeln!(
        out,
        "references on the same prompts at 95 % quality: random routing {:.1} %, oracle by subject {:.1} %",
        report.random_routing_reference * 100.0,
        report.oracle_reference * 100.0
    )?;
    Ok(())
}

/// One proposal as the demo and `optimize` print it: strategy, saving per day with its interval,
/// summary.
pub fn proposal_line(proposal: &llmopt_optimizer::Proposal) -> String {
    format!(
        "  {:<15} {:>10.2} USD/day [{:.2}, {:.2}]  {}",
        proposal.strategy.as_str(),
        proposal.saving.usd_per_day,
        proposal.saving.low,
        proposal.saving.high,
        proposal.summary
    )
}
