//! The command line. Each subcommand parses, calls one function that does the work, prints.
//! Errors end as one line on stderr and exit code 2 (usage) or 1 (failure).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use llmopt_core::PriceCatalog;

use crate::commands;

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
    Cost(commands::prices::CostArgs),
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
        /// Held-out prompts measured, each once with the adopted changes off and once with
        /// them on (at most the held-out set: every third prompt of each subject).
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
        /// Tag requests with their MMLU subject and route per subject (an oracle key real
        /// traffic rarely has); by default workloads are discovered from the prompts' content.
        #[arg(long)]
        tags: bool,
        /// After the report, keep the gateway and its dashboard (`/ui`) serving on loopback
        /// until interrupted; prints the URL and the run's admin token.
        #[arg(long)]
        serve: bool,
        /// Leave out the scripted drift (the weak model degrading on one routed workload
        /// partway through, which the optimizer should roll back).
        #[arg(long)]
        no_drift: bool,
        /// No client feedback: a judge model (simulated, answering from the real labels)
        /// grades the calls experiments and adoptions measure (no drift is scripted then).
        #[arg(long)]
        judge: bool,
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
    /// Replays a labelled dataset (JSON lines or RouteLLM CSVs) through the routing learner on
    /// prompts it has never seen, next to kNN, oracle and random baselines (RouteLLM metrics).
    Evaluate(commands::evaluate::EvaluateArgs),
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
        Command::Serve { config } => commands::gateway::serve(config),
        Command::Optimize { config, json } => commands::gateway::optimize(config, json),
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
            tags,
            serve,
            no_drift,
            judge,
        } => {
            let args = llm_auto_optimizer::demo::DemoArgs {
                requests,
                baseline,
                speed,
                concurrency,
                seed,
                cycle_every,
                data_dir,
                prompts,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                tags,
                drift: !no_drift,
                judge,
            };
            commands::demo::demo(&args, json, serve)
        }
        Command::Evaluate(args) => commands::evaluate::evaluate(args),
        Command::Config { command: ConfigCommand::Check { file } } => {
            commands::gateway::check_config(file)
        }
        Command::Config { command: ConfigCommand::HashKey { key } } => {
            println!("{}", llmopt_gateway::auth::hash_key(&key));
            Ok(())
        }
        Command::Pricing { model, compare_litellm, json } => {
            commands::prices::pricing(&catalog, model.as_deref(), compare_litellm, json)
        }
        Command::Cost(args) => commands::prices::cost(&catalog, args),
    }
}
