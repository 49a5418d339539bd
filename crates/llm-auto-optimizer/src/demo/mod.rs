//! `demo`: the whole product on one machine, with nothing configured.
//!
//! It starts the simulated provider on 127.0.0.1 (models `gpt-4o` and `gpt-4o-mini`, latency
//! from the Splitwise fit, answers' correctness from the RouteLLM MMLU labels), starts the
//! gateway on 127.0.0.1 with the embedded sled store in a fresh directory, and replays a workload
//! built from real data (`data/demo/`: MMLU prompts with both models' labels; arrival gaps from
//! the Azure conversation trace) through the gateway with the OpenAI client of `llmopt-llm`,
//! sending each answer's real correctness back as quality feedback over `POST /v1/feedback`.
//!
//! The prompts are split by prompt ([`workload::split`]): the optimizer learns from the
//! training prompts' labels only, and the report measures the held-out ones, whose labels never
//! reach it. By default the requests carry no tag: workloads are discovered from their content
//! (`--tags` sends the MMLU subject as a tag instead, an oracle key real traffic rarely has).
//! Three phases on a simulated clock that advances with the trace's arrival gaps:
//! 1. **optimize**: training prompts, drawn with replacement; mode `auto`; a cycle after every
//!    chunk proposes, starts experiments, evaluates them, adopts winners (routing within the
//!    quality budget) or rolls them back;
//! 2. **baseline**: then, with experiments paused and the adopted changes switched off through
//!    their feature flags, each held-out prompt once: every call served as asked;
//! 3. **after**: the same held-out prompts in the same order with the adopted changes on.
//!
//! Beside the MMLU stream, a few-shot stream (a tenth of the optimize phase) sends MMLU
//! questions over the Anthropic protocol to `claude-sonnet-4-5` with a system prompt shared per
//! subject ([`workload::few_shot_prompts`]): the shared prefix the prompt-cache strategy finds
//! and tests. Every adoption keeps a holdout (20 % in the demo) it is measured against; partway
//! through, the weak model degrades on one routed workload (a scripted drift, unless
//! `--no-drift`) for the rest of the optimize phase, and the report shows whether and when that
//! routing was rolled back.
//!
//! The routing effect is the paired difference of the two measured phases, with bootstrap
//! intervals over prompts ([`measure`]). The measured phases send each prompt once with a cold
//! cache, so they show routing alone; the response cache's effect is its own adoption's
//! saving, measured by the optimizer during the optimize phase.

mod driver;
mod measure;
mod report;
mod workload;

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use llmopt_core::{Clock, ManualClock, RecordQuery, RequestRecord};
use llmopt_gateway::{AppState, GatewayInit, Stores, config, server};
use llmopt_llm::{
    Anthropic, AnthropicConfig, OpenAiCompatible, OpenAiConfig,
    sim::{
        QualityLabel, QualityLabels, QualityTier, SimConfig, SimEngine, SimModel, SimServer,
        latency,
    },
};
use llmopt_optimizer::{Mode, OptimizerConfig, StrategySettings};
use rand::{Rng, SeedableRng, seq::SliceRandom};

pub use measure::{Interval, RoutingEffect};
pub use report::{DemoReport, ExperimentLine, PhaseStats, proposal_line};

use driver::{ApiClient, Driver, Sends, phase_stats};
use report::write_report;
use workload::{WorkItem, arrival_gaps, few_shot_prompts, references, split, workload};

const STRONG: &str = "gpt-4o";
/// The model of the few-shot stream (Anthropic protocol, opt-in prompt cache).
const FEW_SHOT_MODEL: &str = "claude-sonnet-4-5";
/// Share of an adoption's units held out in the demo: larger than the 5 % default so that a
/// degraded change is seen within the demo's requests.
const DEMO_HOLDOUT_SHARE: f64 = 0.2;
const WEAK: &str = "gpt-4o-mini";
/// The judge of `--judge`, priced as the real model it stands for.
const JUDGE: &str = "gpt-4.1-mini";
/// The demo starts its simulated clock at 2026-01-05T09:00:00Z.
const START_MS: i64 = 1_767_603_600_000;

/// Options of `demo`.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Requests of the optimization phase, drawn from the training prompts.
    pub requests: usize,
    /// Held-out prompts measured (each once in the baseline phase, then again after adoption);
    /// at most the held-out set.
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
    /// Tag requests with their MMLU subject and route per subject (an oracle key real traffic
    /// rarely has); by default workloads are discovered from the prompts' content.
    pub tags: bool,
    /// Script a drift: once a third of the optimize phase is sent and a routing change is
    /// adopted, the weak model answers every prompt of that change's workload wrongly.
    pub drift: bool,
    /// No client feedback: a judge model (simulated, answering from the real labels) grades
    /// every call an experiment or adoption measures in the optimize phase. The drift is
    /// scripted in the client's labels, so it is left out with the judge.
    pub judge: bool,
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
            tags: false,
            drift: true,
            judge: false,
        }
    }
}

/// The optimizer settings of the demo: every strategy on; routing per discovered workload, or
/// per MMLU subject when `tags` is set.
pub fn demo_optimizer_config(tags: bool) -> OptimizerConfig {
    OptimizerConfig {
        mode: Mode::Observe,
        environment: "demo".to_owned(),
        lookback_ms: 30 * 86_400_000,
        max_running_experiments: 80,
        experiment_coverage: 1.0,
        holdout_share: DEMO_HOLDOUT_SHARE,
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
            workload_tag: tags.then(|| "subject".to_owned()),
            routing_pairs: vec![(STRONG.to_owned(), WEAK.to_owned())],
            ..StrategySettings::default()
        },
        // Fitted once, at the first cycle (the simulated clock covers a few hours).
        workloads: llmopt_optimizer::workloads::WorkloadSettings::default(),
    }
}

/// The prompts a policy scope covers: a subject (with `--tags`) or a discovered workload, the
/// latter assigned exactly as the gateway assigns a request with that prompt as its only
/// message.
fn prompts_in_scope(
    scope: &llmopt_optimizer::Scope,
    items: &[WorkItem],
    optimizer: &llmopt_optimizer::Optimizer,
) -> Vec<String> {
    if let Some((_, subject)) = &scope.tag {
        return items.iter().filter(|i| &i.subject == subject).map(|i| i.prompt.clone()).collect();
    }
    let Some(workload) = &scope.workload else { return Vec::new() };
    let policy = optimizer.policy().current();
    let Some(discovered) = policy.policy.workloads.as_ref() else { return Vec::new() };
    let featurizer =
        llmopt_analytics::workload::Featurizer::new(llmopt_analytics::workload::DEFAULT_DIMS);
    items
        .iter()
        .filter(|item| {
            let text = llmopt_analytics::workload::WorkloadText {
                system: None,
                last_user: &item.prompt,
                input_tokens: None,
            };
            discovered.model.assign(&featurizer.features(&text)) == workload
        })
        .map(|item| item.prompt.clone())
        .collect()
}

/// The gateway's records of `[from_ms, to_ms)`, after the collector wrote what it holds.
async fn records_between(state: &AppState, from_ms: i64, to_ms: i64) -> Result<Vec<RequestRecord>> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || -> Result<Vec<RequestRecord>> {
        state.collector().flush().context("collector flush")?;
        Ok(state.records().scan(&RecordQuery::range(from_ms, to_ms))?)
    })
    .await?
}

/// Runs the demo and returns its report; `out` gets the text report.
pub async fn run(args: &DemoArgs, out: &mut (dyn Write + Send)) -> Result<DemoReport> {
    let (report, gateway) = run_and_keep(args, out).await?;
    gateway.shutdown().await?;
    Ok(report)
}

/// The demo's gateway and simulated provider, still serving after the report: the dashboard
/// at [`DemoGateway::dashboard_url`] shows what the demo did. Its simulated clock goes on in
/// real time from where the demo left it.
#[derive(Debug)]
pub struct DemoGateway {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token of this run (random): the dashboard's controls and the loop's routes.
    pub admin_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::result::Result<(), llmopt_gateway::Error>>,
    ticker: tokio::task::JoinHandle<()>,
    sim: SimServer,
    state: AppState,
    store: llmopt_storage::SledStore,
    data_dir: PathBuf,
    remove_data_dir: bool,
}

impl DemoGateway {
    pub fn dashboard_url(&self) -> String {
        format!("{}/ui", self.url)
    }

    /// Stops the gateway and the simulated provider, closes the store, and removes the data
    /// directory unless it was given.
    pub async fn shutdown(self) -> Result<()> {
        self.ticker.abort();
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.sim.shutdown().await;
        server::close_sled(self.state, self.store).await?;
        if self.remove_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        Ok(())
    }
}

/// The name the demo's admin token is read under (from its own secret source, not the
/// environment).
const DEMO_ADMIN_TOKEN_ENV: &str = "LLMOPT_DEMO_ADMIN_TOKEN";

/// Runs the demo like [`run`] and leaves its gateway serving.
pub async fn run_and_keep(
    args: &DemoArgs,
    out: &mut (dyn Write + Send),
) -> Result<(DemoReport, DemoGateway)> {
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
                judge: false,
            },
            SimModel {
                names: vec![WEAK.to_owned()],
                latency: latency::SMALL,
                tier: QualityTier::Weak,
                judge: false,
            },
            SimModel {
                names: vec![FEW_SHOT_MODEL.to_owned()],
                latency: latency::LARGE,
                tier: QualityTier::Strong,
                judge: false,
            },
            SimModel { names: vec![JUDGE.to_owned()], ..SimModel::judge() },
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
[auth]
admin_token_env = "{admin_env}"
[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
[routes.anthropic]
models = ["claude-*"]
provider = "anthropic"
"#,
        admin_env = DEMO_ADMIN_TOKEN_ENV,
        path = data_dir.display().to_string(),
        base = sim.openai_base_url(),
        anthropic = sim.anthropic_base_url(),
    );
    // A fresh random admin token per run: loopback only, but the dashboard's controls should
    // not be open to every local process.
    let admin_token: String = {
        let mut rng = rand::rngs::OsRng;
        (0..32).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
    };
    let mut config = config::from_toml_str(&config_text).context("demo configuration")?;
    config.optimizer = demo_optimizer_config(args.tags);
    if args.judge {
        config.judge = llmopt_gateway::judge::JudgeConfig {
            model: Some(JUDGE.to_owned()),
            share: 1.0,
            other_share: 0.0,
            max_concurrent: args.concurrency.clamp(1, 256),
            ..Default::default()
        };
    }
    let store = server::open_sled(&config.storage).await?;
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let state = AppState::build(GatewayInit {
        config,
        stores: Stores::sled(&store),
        clock: dyn_clock,
        secrets: {
            let admin_token = admin_token.clone();
            Arc::new(move |name: &str| (name == DEMO_ADMIN_TOKEN_ENV).then(|| admin_token.clone()))
        },
        config_source: None,
    })?;
    let optimizer = state.optimizer().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run_server(
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
    let mut anthropic_config = AnthropicConfig::new("gateway", gateway.clone(), "demo");
    anthropic_config.timeouts.first_byte = Duration::from_secs(120);
    let driver = Driver {
        client: OpenAiCompatible::new(client_config)?,
        anthropic: Anthropic::new(anthropic_config)?,
        degraded: std::sync::RwLock::new(std::collections::HashSet::new()),
        api: ApiClient::new(gateway.clone()),
        clock: clock.clone(),
        gaps,
        next_gap: AtomicU64::new(0),
        concurrency: args.concurrency,
    };
    // Split by prompt: the optimizer learns from the training prompts' labels only; the
    // held-out prompts (every third of each subject) are what the report measures.
    let (training, mut held_out) = split(&items);
    if training.is_empty() || held_out.is_empty() {
        bail!("--prompts {} leaves no held-out prompt: use at least 3", items.len());
    }
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(args.seed);
    held_out.shuffle(&mut rng);
    held_out.truncate(args.baseline);
    let training_len = training.len();
    let mut draw = move |count: usize| -> Vec<usize> {
        (0..count).map(|_| rng.gen_range(0..training_len)).collect()
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

    let few_shot = few_shot_prompts(&training);
    let mut few_rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(args.seed ^ 0x0005_eed5);
    let mut few_shot_sent = 0;
    let mut drift: Option<report::DriftReport> = None;
    // Every proposal id seen in any cycle, with its strategy and whether it was advice only.
    let mut seen_proposals: BTreeMap<String, (llmopt_optimizer::StrategyKind, bool)> =
        BTreeMap::new();
    let send_training = Sends { feedback: !args.judge, subject_tag: args.tags };
    let send_measuring = Sends { feedback: false, subject_tag: args.tags };

    // Phase 1: optimize, on the training prompts only (drawn with replacement, as repeated
    // traffic is). A cycle after every chunk proposes, starts experiments, evaluates, adopts.
    let mut auto = optimizer.config();
    auto.mode = Mode::Auto;
    optimizer.set_config(auto)?;
    let mut proposals = Vec::new();
    let mut sent = 0;
    let mut cycles = 0;
    let mut not_adopted = Vec::new();
    let progress = bar(args.requests, "optimize");
    let optimize_from = clock.now_ms();
    let started = Instant::now();
    while sent < args.requests {
        let chunk = args.cycle_every.min(args.requests - sent);
        let order = draw(chunk);
        let chunk_items: Vec<&WorkItem> = order.iter().map(|&i| training[i]).collect();
        driver.replay(&chunk_items, send_training, progress.as_ref()).await;
        // The few-shot stream: a tenth as many requests, subjects and questions drawn at random.
        let few_items: Vec<(&str, &WorkItem)> = (0..chunk / 10)
            .filter_map(|_| {
                let (_, system, items) =
                    few_shot.get(few_rng.gen_range(0..few_shot.len().max(1)))?;
                Some((system.as_str(), *items.get(few_rng.gen_range(0..items.len().max(1)))?))
            })
            .collect();
        few_shot_sent += driver.replay_few_shot(&few_items).await;
        sent += chunk;
        {
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.collector().flush()).await??;
        }
        let report = {
            let optimizer = optimizer.clone();
            tokio::task::spawn_blocking(move || optimizer.run_cycle()).await??
        };
        cycles += 1;
        if proposals.is_empty() {
            proposals.clone_from(&report.proposals);
        }
        for proposal in &report.proposals {
            seen_proposals
                .insert(proposal.id.clone(), (proposal.strategy, proposal.experiment.is_none()));
        }
        if let Some(drift) = drift.as_mut().filter(|d| d.rolled_back_after_requests.is_none())
            && report.rolled_back.contains(&drift.adoption)
        {
            drift.rolled_back_after_requests = Some((sent - drift.at_request) as u64);
        }
        // The scripted drift: the weak model degrades on the workload of a routing change.
        if args.drift && !args.judge && drift.is_none() && sent >= args.requests / 3 {
            let routed = optimizer
                .adoptions()
                .into_iter()
                .find(|a| a.in_force() && a.change.model.is_some() && a.holdout_share > 0.0);
            if let Some(adoption) = routed {
                let prompts = prompts_in_scope(&adoption.scope, &items, &optimizer);
                driver
                    .degraded
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(prompts.iter().cloned());
                drift = Some(report::DriftReport {
                    at_request: sent,
                    adoption: adoption.experiment_id.clone(),
                    scope: report::scope_in_words(&adoption.scope),
                    prompts: prompts.len(),
                    rolled_back_after_requests: None,
                    cause: None,
                });
            }
        }
        not_adopted.extend(report.not_adopted.clone());
        let running = optimizer.engine().list().iter().filter(|e| e.status.is_active()).count();
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "cycle {cycles}: {running} experiments running, {} adopted",
                optimizer.adoptions().len()
            ));
        }
        // Stop early once the loop has settled, unless a drift waits for its rollback.
        let waiting = drift.as_ref().is_some_and(|d| d.rolled_back_after_requests.is_none());
        if running == 0 && report.started.is_empty() && cycles > 2 && !waiting {
            break;
        }
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    let optimize_seconds = started.elapsed().as_secs_f64();
    let optimize_records = records_between(&state, optimize_from, clock.now_ms() + 1).await?;
    let optimize_cache_hits =
        optimize_records.iter().filter(|r| r.cache == llmopt_core::CacheOutcome::Hit).count()
            as f64
            / optimize_records.len().max(1) as f64;

    // Freeze: observe only, running experiments paused, so the measured phases see the
    // adopted policy alone; the response cache starts cold and the held-out prompts are sent
    // once each, so no measured call is a cache hit (the cache's effect is its own adoption's
    // measured saving, reported apart).
    let mut frozen = optimizer.config();
    frozen.mode = Mode::Observe;
    optimizer.set_config(frozen)?;
    for experiment in optimizer.engine().list() {
        if experiment.status == llmopt_experiments::ExperimentStatus::Running {
            optimizer.engine().pause(&experiment.spec.id)?;
        }
    }
    let adopted_flags: Vec<String> =
        optimizer.policy().current().policy.flags.keys().cloned().collect();
    // The measured phases compare the policy with every adopted change off against it with
    // every change on for every request: the holdouts, which only serve the measurement, are
    // switched off for the "after" phase (their cost is the holdout share of each saving).
    let switch_adopted = |enabled: bool| -> Result<()> {
        optimizer.policy().update(
            if enabled { "demo: adopted changes on" } else { "demo: adopted changes off" },
            clock.now_ms(),
            |policy| {
                for name in &adopted_flags {
                    if let Some(flag) = policy.flags.get_mut(name) {
                        flag.enabled = enabled;
                        flag.rollout_percent = 100.0;
                    }
                }
            },
        )?;
        Ok(())
    };

    // The drift lasts for the rest of the optimize phase; the measured phases run with the
    // weak model restored, so they measure routing as it was learned (whether the drifted
    // change was rolled back in time is the drift report's own result).
    driver.degraded.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    // The judge grades the optimize phase only: the measured phases grade from the labels.
    let judge = if args.judge {
        let records = records_between(&state, optimize_from, clock.now_ms() + 1).await?;
        let summary = report::JudgeSummary::of(&records, JUDGE);
        let mut config = (*state.runtime().config).clone();
        config.judge.model = None;
        state.apply_config(config)?;
        Some(summary)
    } else {
        None
    };

    // Phase 2: baseline on the held-out prompts, adopted changes switched off (their flags),
    // no feedback: every call is served as asked, by the strong model.
    switch_adopted(false)?;
    state.runtime().cache.clear();
    // A second between phases: requests of one phase never share a millisecond with the next
    // phase's range (the trace has zero gaps).
    clock.advance(1_000);
    let from = clock.now_ms();
    let started = Instant::now();
    let progress = bar(held_out.len(), "baseline");
    let baseline_outcomes = driver.replay(&held_out, send_measuring, progress.as_ref()).await;
    if let Some(bar) = progress {
        bar.finish();
    }
    let baseline_seconds = started.elapsed().as_secs_f64();
    let baseline_records = records_between(&state, from, clock.now_ms() + 1).await?;
    let baseline = phase_stats(&baseline_outcomes, &baseline_records, args.speed, baseline_seconds);

    // Phase 3: the same held-out prompts in the same order, adopted changes on.
    switch_adopted(true)?;
    state.runtime().cache.clear();
    clock.advance(1_000);
    let from = clock.now_ms();
    let started = Instant::now();
    let progress = bar(held_out.len(), "after");
    let after_outcomes = driver.replay(&held_out, send_measuring, progress.as_ref()).await;
    if let Some(bar) = progress {
        bar.finish();
    }
    let after_seconds = started.elapsed().as_secs_f64();
    let after_records = records_between(&state, from, clock.now_ms() + 1).await?;
    let after = phase_stats(&after_outcomes, &after_records, args.speed, after_seconds);
    // A last cycle (observe mode) measures every adoption on the records since it was adopted.
    {
        let optimizer = optimizer.clone();
        tokio::task::spawn_blocking(move || optimizer.run_cycle()).await??;
    }
    let routing = {
        let cost_of = |records: &[RequestRecord]| -> BTreeMap<String, f64> {
            records
                .iter()
                .map(|r| (r.id.as_str().to_owned(), r.cost.map_or(0.0, |c| c.as_usd_f64())))
                .collect()
        };
        let (baseline_costs, after_costs) = (cost_of(&baseline_records), cost_of(&after_records));
        let cost = |costs: &BTreeMap<String, f64>, id: &Option<String>| {
            id.as_ref().and_then(|id| costs.get(id)).copied().unwrap_or(0.0)
        };
        let pairs: Vec<measure::Pair> = baseline_outcomes
            .iter()
            .zip(&after_outcomes)
            .filter(|(b, a)| b.ok && a.ok)
            .map(|(b, a)| measure::Pair {
                baseline_correct: b.correct,
                baseline_cost_usd: cost(&baseline_costs, &b.request_id),
                after_correct: a.correct,
                after_cost_usd: cost(&after_costs, &a.request_id),
                after_weak: a.served.starts_with(WEAK),
            })
            .collect();
        measure::routing_effect(&pairs, true, args.tags, args.seed)
    };

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
    let mut tested: BTreeMap<String, u64> = BTreeMap::new();
    for entry in audit.iter().filter(|e| e.kind == "experiment_started") {
        if let Some(strategy) = entry.detail["proposal"]["strategy"].as_str() {
            *tested.entry(strategy.to_owned()).or_default() += 1;
        }
    }
    let strategies = report::strategy_lines(&seen_proposals, &tested, &adopted);
    if let Some(drift) = drift.as_mut() {
        drift.cause = adopted
            .iter()
            .find(|a| a.experiment_id == drift.adoption)
            .and_then(|a| a.rolled_back.as_ref())
            .map(|r| r.reason.clone());
    }
    // Routed scopes in words: a subject (with --tags) or a discovered workload.
    let routed_scopes: Vec<String> = adopted
        .iter()
        .filter(|a| a.change.model.is_some() && a.in_force())
        .map(|a| report::scope_in_words(&a.scope))
        .collect();
    let (random, oracle) = references(&held_out);
    let workloads = optimizer
        .policy()
        .current()
        .policy
        .workloads
        .as_ref()
        .map_or(0, |discovered| discovered.model.k());
    let report = DemoReport {
        workload: format!(
            "{} MMLU prompts of {subjects} subjects (RouteLLM labels: Mixtral-8x7B as {WEAK}, GPT-4-1106 as {STRONG}), \
             split by prompt: {} for optimization, {} held out and measured; arrivals from the Azure \
             conversation trace; models {}x faster than real time",
            items.len(),
            training.len(),
            held_out.len(),
            args.speed
        ),
        subjects,
        workloads_discovered: workloads,
        measured_saving_share: routing.cost_saving,
        quality_ratio: routing.quality_vs_strong,
        baseline,
        after,
        routing,
        optimize_phase: report::OptimizePhase {
            requests: sent as u64,
            cycles,
            cache_hit_share: optimize_cache_hits,
            seconds: optimize_seconds,
        },
        proposals,
        strategies,
        few_shot_requests: few_shot_sent as u64,
        drift,
        judge,
        experiments,
        adopted,
        not_adopted,
        guardrail_stops,
        routed_scopes,
        random_routing_reference: random,
        oracle_reference: oracle,
        quality_budget_used: optimizer.quality_budget_used(),
        audit: audit_kinds,
    };
    write_report(&report, out)?;

    // From here on the simulated clock follows real time, so the kept gateway's live windows
    // move on as a real one's do.
    let ticker = {
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = Instant::now();
                let elapsed = i64::try_from(now.duration_since(last).as_millis()).unwrap_or(0);
                clock.advance(elapsed);
                last = now;
            }
        })
    };
    let gateway = DemoGateway {
        url: gateway,
        admin_token,
        stop: stop_tx,
        server,
        ticker,
        sim,
        state,
        store,
        remove_data_dir: args.data_dir.is_none(),
        data_dir,
    };
    Ok((report, gateway))
}
