//! The command line. Each subcommand parses, calls one function that does the work, prints.
//! Errors end as one line on stderr and exit code 2 (usage) or 1 (failure).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use llm_auto_optimizer::config::ConfigSource;
use llmopt_core::{PriceCatalog, Usage, pricing::ModelPrice};

#[derive(Debug, Parser)]
#[command(name = "llm-auto-optimizer", version, about = "Measure, analyse and optimise LLM calls")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the price catalog (USD per million tokens).
    Pricing {
        /// Only this model (ids, aliases and dated ids resolve).
        #[arg(long)]
        model: Option<String>,
        /// A LiteLLM price map to compare the catalog against.
        #[arg(long, value_name = "FILE")]
        compare_litellm: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Exact cost of one call from its token counts.
    Cost {
        #[arg(long)]
        model: String,
        /// All input tokens, cached and cache-written included.
        #[arg(long)]
        input: u64,
        #[arg(long, default_value_t = 0)]
        output: u64,
        /// Input tokens read from the provider cache.
        #[arg(long, default_value_t = 0)]
        cached: u64,
        #[arg(long, default_value_t = 0)]
        cache_write_5m: u64,
        #[arg(long, default_value_t = 0)]
        cache_write_1h: u64,
        /// Price under the provider's batch API.
        #[arg(long)]
        batch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Runs the gateway (OpenAI- and Anthropic-compatible proxy, API, /metrics).
    Serve {
        /// Base configuration file (default: ./config/default.toml, else the built-in default).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The whole product on loopback: simulated provider, gateway, a replay of real workload
    /// data, optimization cycles, and a report of what was proposed, tested and adopted.
    Demo {
        /// Requests of the optimization phase.
        #[arg(long, default_value_t = 60_000)]
        requests: usize,
        /// Requests of the baseline phase (replayed identically after adoption).
        #[arg(long, default_value_t = 5_000)]
        baseline: usize,
        /// How much faster than real time the simulated models answer.
        #[arg(long, default_value_t = 1_000.0)]
        speed: f64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Requests between optimization cycles.
        #[arg(long, default_value_t = 2_500)]
        cycle_every: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Keep the store here instead of a temporary directory (must not exist).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Use only the first N prompts of the workload.
        #[arg(long, value_name = "N")]
        prompts: Option<usize>,
        /// The report as JSON on stdout (the text report goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Offline analysis of a trace: our records (NDJSON) or a public trace (Azure CSV, Mooncake
    /// JSONL): traffic and cost, forecast, anomalies, clusters, cache and prefix opportunities,
    /// and the strategies' proposals ranked by saving.
    Analyze {
        file: PathBuf,
        /// Force the input format (detected from the first line otherwise).
        #[arg(long, value_enum)]
        format: Option<llm_auto_optimizer::analyze::TraceFormatArg>,
        /// Price traces without model names as this model.
        #[arg(long)]
        model: Option<String>,
        /// One JSON document instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Runs one optimization cycle on the configured store now (the gateway must not be running
    /// on it: sled is single-process; with the gateway up, use `POST /api/optimize`).
    Optimize {
        /// Base configuration file (default: ./config/default.toml, else the built-in default).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The cycle report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validates the layered configuration and prints it with secrets masked.
    Check {
        /// Base configuration file (default: ./config/default.toml, else the built-in default).
        file: Option<PathBuf>,
    },
    /// Prints the SHA-256 digest of a gateway API key, for `auth.keys`.
    HashKey { key: String },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let catalog = PriceCatalog::builtin();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Optimize { config, json } => optimize(config, json),
        Command::Analyze { file, format, model, json } => {
            let args = llm_auto_optimizer::analyze::AnalyzeArgs { file, format, json, model };
            let mut out = std::io::stdout().lock();
            llm_auto_optimizer::analyze::run(&args, &mut out)
        }
        Command::Demo {
            requests,
            baseline,
            speed,
            concurrency,
            cycle_every,
            seed,
            data_dir,
            prompts,
            json,
        } => {
            demo(requests, baseline, speed, concurrency, cycle_every, seed, data_dir, prompts, json)
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let source = ConfigSource::discover(file.as_deref());
            let config = source.load()?;
            println!("# configuration is valid");
            match &source.base_file {
                Some(path) => println!("# base file: {}", path.display()),
                None => println!("# base file: built-in default"),
            }
            if let Some(path) = &source.env_file {
                println!("# environment file: {}", path.display());
            }
            print!("{}", config.render_masked()?);
            Ok(())
        }
        Command::Config { command: ConfigCommand::HashKey { key } } => {
            println!("{}", llm_auto_optimizer::auth::hash_key(&key));
            Ok(())
        }
        Command::Pricing { model, compare_litellm, json } => {
            pricing(&catalog, model.as_deref(), compare_litellm, json)
        }
        Command::Cost {
            model,
            input,
            output,
            cached,
            cache_write_5m,
            cache_write_1h,
            batch,
            json,
        } => {
            let usage = Usage {
                input_tokens: input,
                cache_read_tokens: cached,
                cache_write_5m_tokens: cache_write_5m,
                cache_write_1h_tokens: cache_write_1h,
                output_tokens: output,
                reasoning_tokens: 0,
            };
            usage.validate().context("token counts")?;
            let price = catalog.resolve(&model)?;
            let cost = price.cost(&usage, batch);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "model": price.id, "batch": batch, "usage": usage,
                        "cost_picodollars": cost.total.picos().to_string(),
                        "cost_usd": cost.total.as_usd_f64(),
                        "breakdown_picodollars": {
                            "uncached_input": cost.uncached_input.picos().to_string(),
                            "cache_read": cost.cache_read.picos().to_string(),
                            "cache_write_5m": cost.cache_write_5m.picos().to_string(),
                            "cache_write_1h": cost.cache_write_1h.picos().to_string(),
                            "output": cost.output.picos().to_string(),
                        }
                    })
                );
            } else {
                println!("{} ({}){}", price.id, price.provider, if batch { ", batch" } else { "" });
                println!(
                    "  uncached input {:>9} tokens  {}",
                    usage.uncached_input_tokens(),
                    cost.uncached_input
                );
                println!(
                    "  cache read     {:>9} tokens  {}",
                    usage.cache_read_tokens, cost.cache_read
                );
                println!(
                    "  cache write 5m {:>9} tokens  {}",
                    usage.cache_write_5m_tokens, cost.cache_write_5m
                );
                println!(
                    "  cache write 1h {:>9} tokens  {}",
                    usage.cache_write_1h_tokens, cost.cache_write_1h
                );
                println!("  output         {:>9} tokens  {}", usage.output_tokens, cost.output);
                println!(
                    "  total                           {}  ({} picodollars)",
                    cost.total,
                    cost.total.picos()
                );
            }
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one parameter per command-line flag")]
fn demo(
    requests: usize,
    baseline: usize,
    speed: f64,
    concurrency: usize,
    cycle_every: usize,
    seed: u64,
    data_dir: Option<PathBuf>,
    prompts: Option<usize>,
    json: bool,
) -> Result<()> {
    let args = llm_auto_optimizer::demo::DemoArgs {
        prompts,
        requests,
        baseline,
        speed,
        concurrency,
        seed,
        cycle_every,
        data_dir,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmopt-demo")
        .build()
        .context("cannot start the async runtime")?;
    let report = if json {
        let mut text = std::io::stderr();
        let report = runtime.block_on(llm_auto_optimizer::demo::run(&args, &mut text))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        report
    } else {
        let mut text = std::io::stdout();
        runtime.block_on(llm_auto_optimizer::demo::run(&args, &mut text))?
    };
    if report.baseline.requests == 0 {
        bail!("the demo sent no request");
    }
    Ok(())
}

fn optimize(config_file: Option<PathBuf>, json: bool) -> Result<()> {
    use std::sync::Arc;
    let source = ConfigSource::discover(config_file.as_deref());
    let config = source.load()?;
    let path = config.storage.path.clone();
    let store = llmopt_storage::SledStore::open(
        &path,
        llm_auto_optimizer::server::storage_config(&config.storage),
    )
    .with_context(|| {
        format!("cannot open the store at `{}` (is the gateway running on it?)", path.display())
    })?;
    let clock: Arc<dyn llmopt_core::Clock> = Arc::new(llmopt_core::SystemClock);
    let closed_loop = llm_auto_optimizer::closed_loop::ClosedLoop::open(
        store.records(),
        store.experiments(),
        store.policy(),
        Arc::new(PriceCatalog::builtin()),
        clock,
        config.optimizer.clone(),
    )?;
    let report = closed_loop.optimizer().run_cycle()?;
    closed_loop.optimizer().engine().checkpoint()?;
    store.flush()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "cycle at {} ms: {} records read, {} proposals, {} experiments started, {} adopted, {} rejected",
        report.at_ms,
        report.records_read,
        report.proposals.len(),
        report.started.len(),
        report.adopted.len(),
        report.rejected.len()
    );
    for proposal in &report.proposals {
        println!("{}", llm_auto_optimizer::demo::proposal_line(proposal));
    }
    Ok(())
}

fn serve(config_file: Option<PathBuf>) -> Result<()> {
    let source = ConfigSource::discover(config_file.as_deref());
    let config = source.load()?;
    let _log_guard = llm_auto_optimizer::logging::init(&config.logging)?;
    // Connections are served by the I/O threads `serve` starts (`server.threads`); this
    // runtime only accepts them and runs background work, for which one worker is enough.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("llmopt-control")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(llm_auto_optimizer::server::serve(source, config))?;
    Ok(())
}

fn per_million(price: llmopt_core::Money) -> String {
    // picodollars per token × 10⁶ tokens = picodollars per million = micro-dollars × 10⁶.
    let micros = price.picos();
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

fn pricing(
    catalog: &PriceCatalog,
    model: Option<&str>,
    compare_litellm: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let models: Vec<&ModelPrice> = match model {
        Some(id) => vec![catalog.resolve(id)?],
        None => catalog.models().collect(),
    };
    if let Some(path) = compare_litellm {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read LiteLLM map `{}`", path.display()))?;
        let (litellm, report) = PriceCatalog::from_litellm_json(&text)
            .with_context(|| format!("`{}`", path.display()))?;
        println!("LiteLLM map: {} models imported, {} skipped", report.imported, report.skipped);
        let mut differences = 0;
        for ours in &models {
            let theirs = std::iter::once(ours.id.as_str())
                .chain(ours.aliases.iter().map(String::as_str))
                .find_map(|id| litellm.resolve(id).ok().filter(|m| m.id == id));
            match theirs {
                None => println!("  {:<28} not in the LiteLLM map", ours.id),
                Some(theirs) if theirs.base == ours.base => {}
                Some(theirs) => {
                    differences += 1;
                    println!(
                        "  {:<28} differs: ours {:?} / LiteLLM {:?}",
                        ours.id, ours.base, theirs.base
                    );
                }
            }
        }
        println!("{differences} price differences");
        return Ok(());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    if models.is_empty() {
        bail!("the price catalog is empty");
    }
    println!(
        "{:<22} {:<10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>6}",
        "model (USD / 1M tok)",
        "provider",
        "input",
        "output",
        "cache rd",
        "write 5m",
        "write 1h",
        "batch"
    );
    for price in models {
        println!(
            "{:<22} {:<10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>5}%",
            price.id,
            price.provider,
            per_million(price.base.input),
            per_million(price.base.output),
            per_million(price.base.cache_read),
            per_million(price.base.cache_write_5m),
            per_million(price.base.cache_write_1h),
            price.batch_discount_ppm / 10_000,
        );
    }
    Ok(())
}
