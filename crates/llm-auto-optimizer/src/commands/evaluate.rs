//! `evaluate`: replays a labelled dataset through the product's routing learner and prints
//! how it compares with the baselines (text, or one JSON object). The work is
//! `llmopt_optimizer::evaluation`; this module reads the files, orders the prompts and renders.

use std::{fmt::Write as _, path::PathBuf, sync::Arc};

use anyhow::{Result, bail};
use llmopt_core::PriceCatalog;
use llmopt_optimizer::evaluation::{
    self, Evaluation, EvaluationSettings, LabelledItem, RouterResult,
};

/// The flags of `evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Labelled prompts: JSON lines `{"prompt": …, "scores": {MODEL: number | bool}}` or
    /// RouteLLM response CSVs; several files are concatenated.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The strong model's score column.
    #[arg(long)]
    pub strong: String,
    /// The weak model's score column.
    #[arg(long)]
    pub weak: String,
    /// Share of the strong model's quality to keep (max_quality_drop = 1 − quality).
    #[arg(long, default_value_t = 0.95)]
    pub quality: f64,
    /// One JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Seed of the arrival order (and of the kNN baseline's exploration).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Prompts between two optimization cycles.
    #[arg(long, default_value_t = 250)]
    pub cycle_every: usize,
    /// Keep the files' order (RouteLLM's CSVs are grouped by subject, which traffic is not).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Catalog model whose prices the strong model's calls are charged at.
    #[arg(long, default_value = "gpt-4o", value_name = "ID")]
    pub strong_price_as: String,
    /// Catalog model whose prices the weak model's calls are charged at.
    #[arg(long, default_value = "gpt-4o-mini", value_name = "ID")]
    pub weak_price_as: String,
    /// Skip the first N prompts of each file (60: the MMLU prompts `data/demo` holds).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub skip_first: usize,
}

/// `evaluate`.
pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    if !(args.quality > 0.0 && args.quality <= 1.0) {
        bail!("--quality must be within (0, 1], got {}", args.quality);
    }
    if args.cycle_every == 0 {
        bail!("--cycle-every must be positive");
    }
    let mut items = read(&args)?;
    if items.is_empty() {
        bail!("no prompts left to evaluate (after --skip-first {})", args.skip_first);
    }
    if !args.no_shuffle {
        evaluation::shuffle(&mut items, args.seed);
    }
    let mut settings = EvaluationSettings {
        strong_price_as: args.strong_price_as.clone(),
        weak_price_as: args.weak_price_as.clone(),
        quality: args.quality,
        cycle_every: args.cycle_every,
        ..EvaluationSettings::default()
    };
    settings.knn.seed ^= args.seed;
    let report = evaluation::evaluate(&items, &settings, Arc::new(PriceCatalog::builtin()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &args));
    }
    Ok(())
}

fn read(args: &EvaluateArgs) -> Result<Vec<LabelledItem>> {
    let mut items = Vec::new();
    for file in &args.files {
        let prompts = llmopt_analytics::labelled::read_labelled(file)?;
        let prompts = prompts.get(args.skip_first..).unwrap_or_default();
        for (flag, model) in [("--strong", &args.strong), ("--weak", &args.weak)] {
            if let Some(first) = prompts.first()
                && !first.scores.contains_key(model.as_str())
            {
                let found: Vec<&str> = first.scores.keys().map(String::as_str).collect();
                bail!(
                    "{}: {flag} `{model}` is not a model column of this file (columns found: {})",
                    file.display(),
                    found.join(", ")
                );
            }
        }
        items.extend(evaluation::select_models(prompts, &args.strong, &args.weak)?);
    }
    Ok(items)
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".to_owned(), format)
}

fn row(out: &mut String, name: &str, result: &RouterResult) {
    let _ = writeln!(
        out,
        "  {name:<30} {:>9} {:>10} {:>8} {:>6} {:>9} {:>9} {:>6}{}",
        percent(result.strong_calls_avoided),
        percent(result.quality_vs_strong),
        percent(result.cost_saved),
        optional(result.pgr, |v| format!("{v:.2}")),
        optional(result.cpt50, percent),
        optional(result.cpt80, percent),
        optional(result.apgr, |v| format!("{v:.3}")),
        if result.meets_target { "" } else { "  (misses the target)" }
    );
}

/// The text report.
pub fn render(report: &Evaluation, args: &EvaluateArgs) -> String {
    let mut out = String::new();
    let data = &report.dataset;
    let _ = writeln!(
        out,
        "Routing evaluation: {} prompts from {} file(s){}, {}",
        data.prompts,
        args.files.len(),
        if args.skip_first > 0 {
            format!(" (first {} of each skipped)", args.skip_first)
        } else {
            String::new()
        },
        if args.no_shuffle {
            "in file order".to_owned()
        } else {
            format!("shuffled with seed {}", args.seed)
        }
    );
    let _ = writeln!(
        out,
        "  strong {} (mean score {:.3}) priced as {}; weak {} (mean score {:.3}) priced as {}",
        args.strong,
        data.strong_quality,
        report.strong_price_as,
        args.weak,
        data.weak_quality,
        report.weak_price_as
    );
    let _ = writeln!(
        out,
        "  target: {} of the strong model's quality; each decision uses only earlier prompts' labels, of the model that answered",
        percent(report.quality_target)
    );
    let _ = writeln!(
        out,
        "  pricing: input tokens = characters / 4, {} output tokens per answer; all strong ${:.2}, all weak ${:.2}",
        report.output_tokens, data.strong_cost_usd, data.weak_cost_usd
    );
    let _ = writeln!(
        out,
        "  replay: a cycle every {} prompts, {} s of simulated time per prompt\n",
        report.cycle_every, report.seconds_per_prompt
    );
    let _ = writeln!(
        out,
        "  {:<30} {:>9} {:>10} {:>8} {:>6} {:>9} {:>9} {:>6}",
        "router", "strong", "quality", "cost", "PGR", "CPT(50%)", "CPT(80%)", "APGR"
    );
    let _ = writeln!(out, "  {:<30} {:>9} {:>10} {:>8}", "", "avoided", "vs strong", "saved");
    let baselines = &report.baselines;
    row(&mut out, "learner (the product)", &report.learner);
    row(&mut out, "kNN, same feedback", &baselines.knn);
    row(&mut out, "oracle per workload", &baselines.oracle);
    row(&mut out, "random", &baselines.random);
    row(&mut out, "kNN, full information (ref.)", &baselines.knn_full_information);

    let details = &report.learner_details;
    let _ = writeln!(
        out,
        "\nLearner at max_quality_drop {:.3}: {} cycles, {} workloads discovered ({} prompts arrived after the first fit), {} experiments started, {} adopted, {} rejected, {} still running; quality budget used {:.4}",
        details.max_quality_drop,
        details.cycles,
        details.workloads_discovered,
        details.prompts_with_workload,
        details.experiments_started,
        details.experiments_adopted,
        details.experiments_rejected,
        details.experiments_running,
        details.quality_budget_used + 0.0 // never "-0.0000"
    );
    let sweep: Vec<String> = details
        .sweep
        .iter()
        .map(|p| {
            format!(
                "{:.3}: {} avoided at {}",
                p.max_quality_drop,
                percent(p.strong_calls_avoided),
                percent(p.quality_vs_strong)
            )
        })
        .collect();
    let _ = writeln!(out, "Quality-budget sweep (one replay each): {}", sweep.join("; "));
    let _ = writeln!(out, "\nHow each router decides:");
    for (name, result) in [
        ("learner", &report.learner),
        ("kNN", &baselines.knn),
        ("oracle", &baselines.oracle),
        ("random", &baselines.random),
        ("kNN full information", &baselines.knn_full_information),
    ] {
        let _ = writeln!(out, "  {name}: {}", result.rule);
    }
    let _ = writeln!(out, "\nElapsed: {:.1} s", report.elapsed_seconds);
    out
}
