//! `cargo xtask bench [--quick] [AREA ...] [--save NAME | --baseline NAME] [--no-reference]`:
//! runs the criterion benches of every area, reads their results, runs the reference
//! comparisons, and writes one report: `target/bench-report.md` and its twin
//! `target/bench-report.json`.
//!
//! # What it runs
//! - Every `[[bench]]` of `benches/Cargo.toml` whose file exists in `benches/benches/` (one file
//!   per area: core, collector, storage, store_memory, analytics, experiments, client,
//!   gateway), or only the areas named on the command line.
//! - First one build of all their binaries: `cargo bench -p benches --no-run --bench A --bench B
//!   …` (JSON messages give each executable). One cargo invocation shares the work: with the
//!   release profile's fat LTO and one codegen unit, each bench binary's link is a long
//!   single-threaded step, and one invocation runs two of them at once on two cores where one
//!   invocation per area ran them one after the other (measured on this machine, relinking all
//!   seven: 167–202 s in one invocation, about 490 s area by area). The profile itself is not
//!   touched: the figures describe what ships. If that build fails, each area is built on its
//!   own, so a bench that does not compile costs its own figures only: it is listed under
//!   "failed" and the command exits non-zero after writing the report.
//! - Then each area's executable, one after the other, as `cargo bench` would run it (working
//!   directory `benches/`, `--bench` plus the criterion arguments), with `CRITERION_HOME` set to
//!   `<target>/criterion`. The report lists the wall time of the build and of each run.
//! - `--quick` passes criterion 0.5's `--warm-up-time 1 --measurement-time 2` and sets
//!   `LLMOPT_BENCH_QUICK=1`, which the benches read to shrink what criterion's flags do not
//!   reach (their own rounds, measurement times of groups that set one) while measuring the
//!   same thing; and `GATEWAY_BENCH_SECONDS=1` (the gateway load comparison's seconds per
//!   measurement) unless already set. Measured on the 2-core machine: about 3 min 15 s of
//!   runs, plus the build (3 min 20 s to relink all seven binaries), under ten minutes in all
//!   unless another release build shares the cores.
//! - `--save NAME` / `--baseline NAME` map to criterion's `--save-baseline` / `--baseline`: save
//!   one build's results, then compare another build against them. With `--baseline`, the
//!   report gets a "change" column (criterion's relative change of the median).
//! - The scikit-learn reference (issue 5: k-means at most 1.5× scikit-learn in the same run) runs
//!   only when a Python with scikit-learn is found (`scripts/reference/.venv/bin/python3`, then
//!   `python3`); otherwise it is skipped with a message in the report. Each
//!   `scripts/reference/bench_*.py` is run as `PYTHON SCRIPT --figures-dir DIR [--quick]` and
//!   either writes figure files (format below) or prints one JSON object with `seconds_median`
//!   on its last line (see [`reference_summary_figure`]). The k-means ratio figures
//!   (`analytics/kmeans_vs_scikit_learn/<implementation>`) divide each criterion k-means median
//!   of this run by scikit-learn's.
//!
//! # Where figures come from
//! - Criterion: each `target/criterion/**/new/estimates.json` (with `benchmark.json` for its id)
//!   written during this run. The median is criterion's median point estimate per iteration, the
//!   spread its 95 % confidence interval; a benchmark that declares `Throughput::Elements`
//!   also gets an elements-per-second figure (`<id> [throughput]`).
//! - Figure files: every `*.json` in `target/bench-figures/` written during this run, for what
//!   criterion cannot measure (a load comparison, memory, a Python timing). This is the format
//!   other benches write; one object or an array of them:
//!
//!   ```json
//!   {"name": "gateway/c1/added_latency_p50", "median": 84.0, "unit": "µs",
//!    "spread": 12.5, "target": "≤ 100 µs", "met": true}
//!   ```
//!
//!   `name`: a stable id, `area/what` (the target table below is keyed by it); `median`: a
//!   number; `unit`: one of `ns`, `µs` (or `us`), `ms`, `s`, `B`, `KiB`, `MiB`, `KB`, `MB`,
//!   `/s` (any rate, e.g. `requests/s`), `ratio` (or `x`); `spread`: the bench's own measure of
//!   run-to-run noise in the same unit (half of max − min over repetitions, or the IQR), `null`
//!   for a single run; `target` and `met`: optional, the bench's own view, used only when the
//!   table below has no target for that name (the table is the one place targets live).
//!   A bench finds the directory in `LLMOPT_BENCH_FIGURES_DIR` (set by this command), falling
//!   back to `<workspace>/target/bench-figures`; cargo runs benches with `benches/` as the
//!   working directory, so a relative `target/` would be the wrong one.
//!
//! # Targets
//! [`TARGETS`] is the only place targets live, keyed by figure id patterns (`*` matches any run
//! of characters; ids are compared lowercase with `/`, `-`, spaces and dots folded to `_`), so
//! the mapping tolerates the exact id a bench picked. The gateway's targets name the exact ids
//! `benches/benches/gateway.rs` writes (`gateway/c1/added_latency_p50`, …): its absolute
//! figures (`gateway/c32/direct_throughput`, `gateway/rss_peak`, …) and its diagnostic variant
//! (`diagnostic/gateway_no_store/…`) must not be judged against them. A figure no target
//! matches is reported without a verdict; a target no figure matched is listed as "not
//! measured".

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::ci::project_root;

/// Which way a target bounds a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    AtMost,
    AtLeast,
}

/// One speed or size target from the issues, in the unit it was written in.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Figure id patterns; the first figure matching any of them is judged.
    pub patterns: &'static [&'static str],
    pub bound: Bound,
    pub limit: f64,
    pub unit: &'static str,
    /// Where the target comes from, for the reader of the report.
    pub source: &'static str,
}

/// Every target of the issues, in one place.
pub const TARGETS: &[Target] = &[
    Target {
        patterns: &["collector_record", "collector_record_single*", "collector_*record_one*"],
        bound: Bound::AtMost,
        limit: 250.0,
        unit: "ns",
        source: "issue 3: collector_record ≤ 250 ns single-threaded",
    },
    Target {
        // The gateway's own records (UUIDv7 ids at their own time). The variant with foreign ids
        // (`…_foreign_ids`, batch ingest of another system's calls) is reported unjudged.
        patterns: &["collector/sustained_ingest_sled [throughput]"],
        bound: Bound::AtLeast,
        limit: 200_000.0,
        unit: "/s",
        source: "issue 3: sustained ingest to sled ≥ 200,000 records/s",
    },
    Target {
        patterns: &["analytics/kmeans_vs_scikit_learn*"],
        bound: Bound::AtMost,
        limit: 1.5,
        unit: "ratio",
        source: "issue 5: k-means 1M×4, k=8 ≤ 1.5× scikit-learn in the same run",
    },
    Target {
        patterns: &["gateway/c1/added_latency_p50"],
        bound: Bound::AtMost,
        limit: 100.0,
        unit: "µs",
        source: "issue 9: added latency at concurrency 1, p50 ≤ 100 µs",
    },
    Target {
        patterns: &["gateway/c1/added_latency_p99"],
        bound: Bound::AtMost,
        limit: 300.0,
        unit: "µs",
        source: "issue 9: added latency at concurrency 1, p99 ≤ 300 µs",
    },
    Target {
        patterns: &["gateway/c32/throughput_ratio"],
        bound: Bound::AtLeast,
        limit: 0.85,
        unit: "ratio",
        source: "issue 9: throughput at concurrency 32 ≥ 0.85× direct",
    },
    Target {
        patterns: &["gateway/rss_after_load"],
        bound: Bound::AtMost,
        limit: 50.0,
        unit: "MB",
        source: "issue 9: resident memory after load ≤ 50 MB",
    },
    Target {
        patterns: &["gateway/c1/cache_hit_p99"],
        bound: Bound::AtMost,
        limit: 200.0,
        unit: "µs",
        source: "issue 9: cache hit p99 ≤ 200 µs end to end at concurrency 1",
    },
];

/// The derived figure: criterion's k-means median over scikit-learn's in the same run.
pub const KMEANS_RATIO_FIGURE: &str = "analytics/kmeans_vs_scikit_learn";
/// Criterion ids of the Rust k-means bench (1,000,000 × 4, k = 8).
const KMEANS_PATTERNS: &[&str] =
    &["*kmeans*1m*", "*kmeans*1_000_000*", "*k_means*1m*", "*lloyd*1m*"];
/// Figure names a reference script may give its scikit-learn k-means timing.
const SKLEARN_KMEANS_PATTERNS: &[&str] =
    &["*sklearn*kmeans*", "*scikit*kmeans*", "*kmeans*sklearn*", "*kmeans*scikit*"];

/// Parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BenchArgs {
    pub quick: bool,
    pub areas: Vec<String>,
    pub save: Option<String>,
    pub baseline: Option<String>,
    pub no_reference: bool,
}

impl BenchArgs {
    pub fn parse(args: &[String]) -> Result<BenchArgs> {
        let mut parsed = BenchArgs::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--quick" => parsed.quick = true,
                "--no-reference" => parsed.no_reference = true,
                "--save" => {
                    parsed.save = Some(iter.next().context("--save needs a baseline NAME")?.clone())
                }
                "--baseline" => {
                    parsed.baseline =
                        Some(iter.next().context("--baseline needs a baseline NAME")?.clone());
                }
                flag if flag.starts_with('-') => bail!(
                    "unknown flag `{flag}`: usage: cargo xtask bench [--quick] [AREA ...] [--save NAME | --baseline NAME] [--no-reference]"
                ),
                area => parsed.areas.push(area.to_owned()),
            }
        }
        if parsed.save.is_some() && parsed.baseline.is_some() {
            bail!("--save and --baseline exclude each other: save one build, then compare another");
        }
        Ok(parsed)
    }

    /// Arguments after `--` for a criterion bench binary.
    pub fn criterion_args(&self) -> Vec<String> {
        let mut out = vec!["--noplot".to_owned()];
        if self.quick {
            out.extend(["--warm-up-time", "1", "--measurement-time", "2"].map(str::to_owned));
        }
        if let Some(name) = &self.save {
            out.extend(["--save-baseline".to_owned(), name.clone()]);
        }
        if let Some(name) = &self.baseline {
            out.extend(["--baseline".to_owned(), name.clone()]);
        }
        out
    }
}

/// One measured figure, whatever produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub source: &'static str,
    pub median: f64,
    pub unit: String,
    /// 95 % confidence interval of the median (criterion), when known.
    pub interval: Option<(f64, f64)>,
    /// Half-width style spread reported by the bench (figure files), when known.
    pub spread: Option<f64>,
    /// Relative change of the median against `--baseline` (0.05 = 5 % slower), when compared.
    pub change: Option<f64>,
    /// The bench's own target text and verdict, used only without a table target.
    pub own_target: Option<String>,
    pub own_met: Option<bool>,
}

/// A figure with its target and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub figure: Figure,
    pub target: Option<String>,
    pub met: Option<bool>,
    pub note: Option<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let root = project_root();
    let sh = Shell::new()?;
    sh.change_dir(&root);
    let target_dir = target_directory(&sh, &root);
    let figures_dir = target_dir.join("bench-figures");
    fs::create_dir_all(&figures_dir)
        .with_context(|| format!("creating {}", figures_dir.display()))?;
    let started = SystemTime::now();
    let overall_started = Instant::now();

    let available = declared_benches(&root)?;
    let areas: Vec<String> = if args.areas.is_empty() {
        available.clone()
    } else {
        for area in &args.areas {
            if !available.contains(area) {
                bail!("no bench `{area}`: benches/Cargo.toml declares {available:?}");
            }
        }
        args.areas.clone()
    };

    let mut failed = Vec::new();
    let mut messages = Vec::new();
    let mut timings = Vec::new();
    println!("== build {}", areas.join(", "));
    let build_started = Instant::now();
    let executables = build_benches(&sh, &areas, &mut failed);
    timings.push(("build (release, one cargo invocation)".to_owned(), build_started.elapsed()));
    let criterion_args = args.criterion_args();
    let figures_dir_env = figures_dir.display().to_string();
    let criterion_home = target_dir.join("criterion").display().to_string();
    for (area, executable) in &executables {
        println!("== bench {area}");
        let criterion_args = &criterion_args;
        // What `cargo bench` does, without asking cargo again: the working directory is the
        // package's, and the binary gets `--bench`. CRITERION_HOME pins criterion's output to
        // the directory read below (criterion would otherwise ask `cargo metadata`).
        let _in_package = sh.push_dir(root.join("benches"));
        let mut command = cmd!(sh, "{executable} --bench {criterion_args...}")
            .env("LLMOPT_BENCH_FIGURES_DIR", &figures_dir_env)
            .env("CRITERION_HOME", &criterion_home);
        if args.quick {
            command = command.env("LLMOPT_BENCH_QUICK", "1");
            // The gateway load comparison's own knob (seconds per measurement, default 3).
            if sh.var("GATEWAY_BENCH_SECONDS").is_err() {
                command = command.env("GATEWAY_BENCH_SECONDS", "1");
            }
        }
        let run_started = Instant::now();
        if let Err(error) = command.run() {
            eprintln!("bench {area} failed: {error}");
            failed.push(area.clone());
        }
        timings.push((format!("run {area}"), run_started.elapsed()));
    }

    let wants_reference = args.areas.is_empty() || args.areas.iter().any(|a| a == "analytics");
    if args.no_reference {
        messages.push("reference comparisons skipped: --no-reference".to_owned());
    } else if wants_reference {
        let reference_started = Instant::now();
        messages.extend(run_reference_scripts(&sh, &root, &figures_dir, args.quick));
        timings.push(("reference scripts".to_owned(), reference_started.elapsed()));
    }
    timings.push(("total".to_owned(), overall_started.elapsed()));

    let mut figures = criterion_figures(&target_dir.join("criterion"), Some(started))?;
    figures.extend(figure_files(&figures_dir, Some(started))?);
    let ratios = kmeans_ratios(&figures);
    figures.extend(ratios);
    figures.sort_by(|a, b| a.name.cmp(&b.name));
    let judged = judge_all(figures);
    let unmatched = unmatched_targets(&judged);

    let context = ReportContext {
        quick: args.quick,
        areas,
        failed: failed.clone(),
        messages,
        baseline: args.baseline.clone(),
        saved_as: args.save.clone(),
        git_commit: cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read().ok(),
        timings: timings.iter().map(|(what, took)| (what.clone(), took.as_secs_f64())).collect(),
    };
    let markdown = render_markdown(&judged, &unmatched, &context);
    let json_report = render_json(&judged, &unmatched, &context);
    let md_path = target_dir.join("bench-report.md");
    let json_path = target_dir.join("bench-report.json");
    fs::write(&md_path, &markdown).with_context(|| format!("writing {}", md_path.display()))?;
    fs::write(&json_path, serde_json::to_string_pretty(&json_report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{markdown}");
    println!("report: {} and {}", md_path.display(), json_path.display());
    if !failed.is_empty() {
        bail!("benches failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `CARGO_TARGET_DIR` when set (relative to the root), else `<root>/target`.
fn target_directory(sh: &Shell, root: &Path) -> PathBuf {
    match sh.var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Builds the bench binaries of `areas` in one `cargo bench --no-run`, so that cargo shares the
/// work (dependencies once, the fat-LTO links of several binaries on both cores) instead of one
/// cargo invocation per area; returns each area's executable, from cargo's JSON messages.
///
/// When that build fails, each area is built on its own, so that a bench that does not compile
/// costs its own figures only: it goes to `failed` and the others still run.
fn build_benches(sh: &Shell, areas: &[String], failed: &mut Vec<String>) -> Vec<(String, PathBuf)> {
    let build = |areas: &[String]| -> (bool, BTreeMap<String, PathBuf>) {
        let bench_flags: Vec<String> =
            areas.iter().flat_map(|area| ["--bench".to_owned(), area.clone()]).collect();
        // Diagnostics are rendered on stderr; stdout carries one JSON message per line.
        let stdout = cmd!(
            sh,
            "cargo bench -p benches --no-run --message-format=json-render-diagnostics {bench_flags...}"
        )
        .ignore_status()
        .read()
        .unwrap_or_default();
        bench_executables(&stdout)
    };
    let (success, mut executables) = build(areas);
    if !success {
        eprintln!("the bench build failed: building each area on its own");
        for area in areas {
            let (success, built) = build(std::slice::from_ref(area));
            match built.get(area) {
                Some(executable) if success => {
                    executables.insert(area.clone(), executable.clone());
                }
                _ => {
                    executables.remove(area);
                    failed.push(area.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for area in areas {
        match executables.get(area) {
            Some(executable) => out.push((area.clone(), executable.clone())),
            None if !failed.contains(area) => failed.push(area.clone()),
            None => {}
        }
    }
    out
}

/// From cargo's `--message-format=json` output: whether the build finished successfully, and
/// the executable of every bench target built (target name → path).
pub fn bench_executables(cargo_stdout: &str) -> (bool, BTreeMap<String, PathBuf>) {
    let mut success = false;
    let mut executables = BTreeMap::new();
    for message in cargo_stdout.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok())
    {
        match message["reason"].as_str() {
            Some("build-finished") => success = message["success"].as_bool() == Some(true),
            Some("compiler-artifact") => {
                let is_bench = message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"));
                let name = message["target"]["name"].as_str();
                let executable = message["executable"].as_str();
                if let (true, Some(name), Some(executable)) = (is_bench, name, executable) {
                    executables.insert(name.to_owned(), PathBuf::from(executable));
                }
            }
            _ => {}
        }
    }
    (success, executables)
}

/// `[[bench]]` names of `benches/Cargo.toml` whose source file exists.
pub fn declared_benches(root: &Path) -> Result<Vec<String>> {
    let manifest_path = root.join("benches/Cargo.toml");
    let manifest = fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut names = Vec::new();
    for name in bench_names_in_manifest(&manifest) {
        if root.join("benches/benches").join(format!("{name}.rs")).is_file()
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// The `name` of every `[[bench]]` table, by a line scan: xtask stays free of a TOML parser
/// (it compiles in seconds), and bench tables are written one key per line.
pub fn bench_names_in_manifest(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bench_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench_table = line.replace(' ', "") == "[[bench]]";
            continue;
        }
        if !in_bench_table {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() == "name" {
            let value = value.split('#').next().unwrap_or_default().trim().trim_matches('"');
            if !value.is_empty() {
                names.push(value.to_owned());
            }
        }
    }
    names
}

/// Runs `scripts/reference/bench_*.py` with a Python that has scikit-learn; returns messages.
fn run_reference_scripts(sh: &Shell, root: &Path, figures_dir: &Path, quick: bool) -> Vec<String> {
    let candidates = [root.join("scripts/reference/.venv/bin/python3"), PathBuf::from("python3")];
    let python = candidates.iter().find(|python| {
        cmd!(sh, "{python} -c 'import sklearn'")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    });
    let Some(python) = python else {
        let message = "scikit-learn comparison skipped: no Python with scikit-learn \
                       (tried scripts/reference/.venv/bin/python3 and python3)"
            .to_owned();
        println!("{message}");
        return vec![message];
    };
    let mut scripts: Vec<PathBuf> = fs::read_dir(root.join("scripts/reference"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name.starts_with("bench_") && name.ends_with(".py")
                })
                .collect()
        })
        .unwrap_or_default();
    scripts.sort();
    if scripts.is_empty() {
        return vec![
            "scikit-learn comparison not run: no scripts/reference/bench_*.py reference script"
                .to_owned(),
        ];
    }
    let mut messages = Vec::new();
    let quick_flag: Option<&str> = quick.then_some("--quick");
    for script in scripts {
        println!("== reference {}", script.display());
        let result =
            cmd!(sh, "{python} {script} --figures-dir {figures_dir} {quick_flag...}").read();
        match result {
            Ok(stdout) => {
                println!("{stdout}");
                let stem = script.file_stem().and_then(|s| s.to_str()).unwrap_or("reference");
                if let Some(figure) = reference_summary_figure(stem, &stdout) {
                    let path = figures_dir.join(format!("reference_{stem}.json"));
                    let written = serde_json::to_string_pretty(&figure)
                        .map_err(anyhow::Error::from)
                        .and_then(|text| fs::write(&path, text).map_err(anyhow::Error::from));
                    if let Err(error) = written {
                        messages.push(format!("writing {}: {error}", path.display()));
                    }
                }
            }
            Err(error) => {
                messages.push(format!("reference script {} failed: {error}", script.display()))
            }
        }
    }
    messages
}

/// A reference script may, instead of writing figure files, print one JSON object with
/// `seconds_median` (and optionally `seconds_all`) on its last line, as
/// `scripts/reference/bench_kmeans.py` does: it becomes the figure `reference/sklearn_<name>`
/// (`bench_kmeans.py` → `reference/sklearn_kmeans`), in seconds, with half the range of
/// `seconds_all` as its spread.
pub fn reference_summary_figure(script_stem: &str, stdout: &str) -> Option<Value> {
    let last_line = stdout.lines().rev().map(str::trim).find(|line| !line.is_empty())?;
    let summary: Value = serde_json::from_str(last_line).ok()?;
    let median = summary.get("seconds_median")?.as_f64()?;
    let all: Vec<f64> = summary
        .get("seconds_all")
        .and_then(Value::as_array)
        .map(|values| values.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let spread = match (all.iter().copied().reduce(f64::min), all.iter().copied().reduce(f64::max))
    {
        (Some(low), Some(high)) if all.len() > 1 => Some((high - low) / 2.0),
        _ => None,
    };
    let name = script_stem.strip_prefix("bench_").unwrap_or(script_stem);
    Some(json!({
        "name": format!("reference/sklearn_{name}"),
        "median": median,
        "unit": "s",
        "spread": spread,
    }))
}

/// Criterion results under `criterion_dir` written at or after `since` (all when `None`).
pub fn criterion_figures(criterion_dir: &Path, since: Option<SystemTime>) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut stack = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == "new") {
                let estimates_path = path.join("estimates.json");
                if !estimates_path.is_file() || !written_since(&estimates_path, since) {
                    continue;
                }
                let estimates: Value = read_json(&estimates_path)?;
                let benchmark: Value =
                    read_json(&path.join("benchmark.json")).unwrap_or(Value::Null);
                let change: Value = path
                    .parent()
                    .map(|bench_dir| bench_dir.join("change/estimates.json"))
                    .filter(|change_path| written_since(change_path, since))
                    .and_then(|change_path| read_json(&change_path).ok())
                    .unwrap_or(Value::Null);
                let fallback_name = path
                    .parent()
                    .and_then(|p| p.strip_prefix(criterion_dir).ok())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                figures.extend(figures_from_criterion(
                    &estimates,
                    &benchmark,
                    &change,
                    &fallback_name,
                ));
            } else if path.file_name().is_none_or(|name| name != "report") {
                stack.push(path);
            }
        }
    }
    Ok(figures)
}

fn written_since(path: &Path, since: Option<SystemTime>) -> bool {
    let Some(since) = since else { return path.is_file() };
    fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|modified| modified >= since)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One criterion benchmark (its `estimates.json`, `benchmark.json` and optional
/// `change/estimates.json`) as a time-per-iteration figure, plus a rate figure when it declares
/// a throughput.
pub fn figures_from_criterion(
    estimates: &Value,
    benchmark: &Value,
    change: &Value,
    fallback_name: &str,
) -> Vec<Figure> {
    let Some(median_ns) = estimates.pointer("/median/point_estimate").and_then(Value::as_f64)
    else {
        return Vec::new();
    };
    let lower =
        estimates.pointer("/median/confidence_interval/lower_bound").and_then(Value::as_f64);
    let upper =
        estimates.pointer("/median/confidence_interval/upper_bound").and_then(Value::as_f64);
    let name = benchmark.get("full_id").and_then(Value::as_str).unwrap_or(fallback_name).to_owned();
    let change = change.pointer("/median/point_estimate").and_then(Value::as_f64);
    let time = Figure {
        name: name.clone(),
        source: "criterion",
        median: median_ns,
        unit: "ns".to_owned(),
        interval: lower.zip(upper),
        spread: None,
        change,
        own_target: None,
        own_met: None,
    };
    let mut out = vec![time];
    // Elements per iteration → elements per second; the slowest end of the time interval is
    // the lowest rate, so the interval flips.
    let elements = benchmark.pointer("/throughput/Elements").and_then(Value::as_f64);
    if let Some(elements) = elements.filter(|_| median_ns > 0.0) {
        let rate = |ns: f64| elements / (ns * 1e-9);
        out.push(Figure {
            name: format!("{name} [throughput]"),
            source: "criterion",
            median: rate(median_ns),
            unit: "/s".to_owned(),
            interval: lower.zip(upper).filter(|(l, _)| *l > 0.0).map(|(l, u)| (rate(u), rate(l))),
            spread: None,
            change: change.map(|c| 1.0 / (1.0 + c) - 1.0),
            own_target: None,
            own_met: None,
        });
    }
    out
}

/// Figure files in `dir` written at or after `since` (all when `None`).
pub fn figure_files(dir: &Path, since: Option<SystemTime>) -> Result<Vec<Figure>> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "json") && written_since(p, since))
        .collect();
    paths.sort();
    let mut figures = Vec::new();
    for path in paths {
        let value = read_json(&path)?;
        figures.extend(
            parse_figure_file(&value).with_context(|| format!("figure file {}", path.display()))?,
        );
    }
    Ok(figures)
}

/// The figure-file format of the module docs: one object or an array of them.
pub fn parse_figure_file(value: &Value) -> Result<Vec<Figure>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        object @ Value::Object(_) => vec![object],
        _ => bail!("expected an object or an array of objects"),
    };
    items
        .into_iter()
        .map(|item| {
            let name =
                item.get("name").and_then(Value::as_str).context("figure without a `name`")?;
            let median = item
                .get("median")
                .and_then(Value::as_f64)
                .with_context(|| format!("figure `{name}` without a numeric `median`"))?;
            let unit = item.get("unit").and_then(Value::as_str).unwrap_or_default();
            Ok(Figure {
                name: name.to_owned(),
                source: "figure file",
                median,
                unit: unit.to_owned(),
                interval: None,
                spread: item.get("spread").and_then(Value::as_f64),
                change: None,
                own_target: item.get("target").and_then(Value::as_str).map(str::to_owned),
                own_met: item.get("met").and_then(Value::as_bool),
            })
        })
        .collect()
}

/// `rust k-means median / scikit-learn k-means median` for every Rust k-means of this run (the
/// bench measures more than one implementation), when scikit-learn's was measured too.
/// Named `analytics/kmeans_vs_scikit_learn/<last part of the criterion id>`.
pub fn kmeans_ratios(figures: &[Figure]) -> Vec<Figure> {
    let Some(reference) = figures
        .iter()
        .find(|f| f.source != "criterion" && matches_any(&f.name, SKLEARN_KMEANS_PATTERNS))
    else {
        return Vec::new();
    };
    let Some(reference_seconds) =
        convert(reference.median, &reference.unit, "s").filter(|seconds| *seconds > 0.0)
    else {
        return Vec::new();
    };
    figures
        .iter()
        .filter(|f| {
            f.source == "criterion" && f.unit == "ns" && matches_any(&f.name, KMEANS_PATTERNS)
        })
        .filter_map(|rust| {
            let rust_seconds = convert(rust.median, &rust.unit, "s")?;
            let implementation = rust.name.rsplit('/').next().unwrap_or(&rust.name);
            Some(Figure {
                name: format!("{KMEANS_RATIO_FIGURE}/{implementation}"),
                source: "derived",
                median: rust_seconds / reference_seconds,
                unit: "ratio".to_owned(),
                interval: None,
                spread: None,
                change: None,
                own_target: None,
                own_met: None,
            })
        })
        .collect()
}

/// Lowercase, with `/`, `-`, spaces and dots folded to `_`, so `collector/record` and
/// `collector_record` are one id.
pub fn normalise_id(id: &str) -> String {
    id.trim()
        .to_lowercase()
        .chars()
        .map(|c| if matches!(c, '/' | '-' | ' ' | '.') { '_' } else { c })
        .collect()
}

/// Glob match with `*` (any run of characters, possibly empty), on normalised ids.
pub fn glob_matches(pattern: &str, id: &str) -> bool {
    let pattern = normalise_id(pattern);
    let id = normalise_id(id);
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == id;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !id.starts_with(first) || !id[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn matches_any(id: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|pattern| glob_matches(pattern, id))
}

/// Unit families and their factor to the family's base unit (seconds, bytes, per second,
/// ratio). `None` for a unit this module does not know.
fn unit_factor(unit: &str) -> Option<(&'static str, f64)> {
    let unit = unit.trim();
    Some(match unit {
        "ns" => ("time", 1e-9),
        "µs" | "us" | "μs" => ("time", 1e-6),
        "ms" => ("time", 1e-3),
        "s" => ("time", 1.0),
        "B" => ("bytes", 1.0),
        "KiB" => ("bytes", 1024.0),
        "MiB" => ("bytes", 1024.0 * 1024.0),
        "KB" | "kB" => ("bytes", 1e3),
        "MB" => ("bytes", 1e6),
        "ratio" | "x" | "×" => ("ratio", 1.0),
        rate if rate.ends_with("/s") => ("rate", 1.0),
        _ => return None,
    })
}

/// `value` from `from` into `to`, when both are known units of one family.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    let (from_family, from_factor) = unit_factor(from)?;
    let (to_family, to_factor) = unit_factor(to)?;
    (from_family == to_family).then_some(value * from_factor / to_factor)
}

fn target_text(target: &Target) -> String {
    let sign = match target.bound {
        Bound::AtMost => "≤",
        Bound::AtLeast => "≥",
    };
    format!("{sign} {}", human_value(target.limit, target.unit))
}

/// Pairs every figure with the first table target whose patterns it matches.
pub fn judge_all(figures: Vec<Figure>) -> Vec<Judged> {
    figures
        .into_iter()
        .map(|figure| {
            let target = TARGETS.iter().find(|t| matches_any(&figure.name, t.patterns));
            match target {
                Some(target) => match convert(figure.median, &figure.unit, target.unit) {
                    Some(value) => {
                        let met = match target.bound {
                            Bound::AtMost => value <= target.limit,
                            Bound::AtLeast => value >= target.limit,
                        };
                        Judged {
                            figure,
                            target: Some(target_text(target)),
                            met: Some(met),
                            note: None,
                        }
                    }
                    None => {
                        let note = format!(
                            "unit `{}` cannot be compared with the target's `{}`",
                            figure.unit, target.unit
                        );
                        Judged {
                            figure,
                            target: Some(target_text(target)),
                            met: None,
                            note: Some(note),
                        }
                    }
                },
                None => {
                    let (target, met) = (figure.own_target.clone(), figure.own_met);
                    let note =
                        target.as_ref().map(|_| "target from the bench, not the table".to_owned());
                    Judged { figure, target, met, note }
                }
            }
        })
        .collect()
}

/// Targets that no figure of this run matched.
pub fn unmatched_targets(judged: &[Judged]) -> Vec<&'static Target> {
    TARGETS
        .iter()
        .filter(|target| !judged.iter().any(|j| matches_any(&j.figure.name, target.patterns)))
        .collect()
}

/// Three significant digits, with thousands separators for large values.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        return if rounded < 0 { format!("-{grouped}") } else { grouped };
    }
    let decimals = if magnitude >= 100.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    };
    format!("{value:.decimals$}")
}

/// A time in nanoseconds shown in the largest unit that keeps it ≥ 1.
fn human_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{} s", format_number(ns / 1e9))
    } else if ns >= 1e6 {
        format!("{} ms", format_number(ns / 1e6))
    } else if ns >= 1e3 {
        format!("{} µs", format_number(ns / 1e3))
    } else {
        format!("{} ns", format_number(ns))
    }
}

fn human_value(value: f64, unit: &str) -> String {
    match unit {
        "ns" => human_time(value),
        "ratio" | "x" | "×" => format!("{}×", format_number(value)),
        _ => format!("{} {unit}", format_number(value)),
    }
}

fn spread_text(figure: &Figure) -> String {
    match (figure.interval, figure.spread) {
        (Some((low, high)), _) => {
            format!("{} – {}", human_value(low, &figure.unit), human_value(high, &figure.unit))
        }
        (None, Some(spread)) => format!("± {}", human_value(spread, &figure.unit)),
        (None, None) => "—".to_owned(),
    }
}

/// What the report says besides the figures.
#[derive(Debug, Default)]
pub struct ReportContext {
    pub quick: bool,
    pub areas: Vec<String>,
    pub failed: Vec<String>,
    pub messages: Vec<String>,
    pub baseline: Option<String>,
    pub saved_as: Option<String>,
    pub git_commit: Option<String>,
    /// Wall time of each step (build, each area's run, reference scripts, total), in seconds.
    pub timings: Vec<(String, f64)>,
}

pub fn render_markdown(
    judged: &[Judged],
    unmatched: &[&Target],
    context: &ReportContext,
) -> String {
    let mut out = String::new();
    let mode = if context.quick { "quick (warm-up 1 s, measurement 2 s)" } else { "full" };
    let _ = writeln!(out, "# Bench report\n");
    let _ = writeln!(
        out,
        "Run: {mode}; areas: {}; commit: {}.",
        context.areas.join(", "),
        context.git_commit.as_deref().unwrap_or("unknown")
    );
    if let Some(name) = &context.saved_as {
        let _ = writeln!(out, "Saved as criterion baseline `{name}`.");
    }
    if let Some(name) = &context.baseline {
        let _ = writeln!(
            out,
            "Compared with criterion baseline `{name}` (change of the median; + is slower)."
        );
    }
    let met = judged.iter().filter(|j| j.met == Some(true)).count();
    let missed = judged.iter().filter(|j| j.met == Some(false)).count();
    let _ = writeln!(
        out,
        "\nTargets: {met} met, {missed} not met, {} not measured.\n",
        unmatched.len()
    );
    let with_change = context.baseline.is_some();
    let _ = write!(
        out,
        "| figure | median | spread (95 % CI of the median, or ± noise) | target | verdict |"
    );
    let _ = writeln!(out, "{}", if with_change { " change |" } else { "" });
    let _ = write!(out, "|---|---:|---|---|---|");
    let _ = writeln!(out, "{}", if with_change { "---:|" } else { "" });
    for judged_figure in judged {
        let figure = &judged_figure.figure;
        let verdict = match judged_figure.met {
            Some(true) => "met".to_owned(),
            Some(false) => "**not met**".to_owned(),
            None => judged_figure.note.clone().unwrap_or_else(|| "—".to_owned()),
        };
        let verdict = match (&judged_figure.note, judged_figure.met) {
            (Some(note), Some(_)) => format!("{verdict} ({note})"),
            _ => verdict,
        };
        let _ = write!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            figure.name,
            human_value(figure.median, &figure.unit),
            spread_text(figure),
            judged_figure.target.as_deref().unwrap_or("—"),
            verdict
        );
        if with_change {
            let change = figure
                .change
                .map(|c| format!("{:+.1} %", c * 100.0))
                .unwrap_or_else(|| "—".to_owned());
            let _ = write!(out, " {change} |");
        }
        out.push('\n');
    }
    if !context.timings.is_empty() {
        let _ = writeln!(out, "\n## Wall time\n");
        for (what, seconds) in &context.timings {
            let _ = writeln!(out, "- {what}: {seconds:.0} s");
        }
    }
    if !unmatched.is_empty() {
        let _ = writeln!(out, "\n## Targets not measured in this run\n");
        for target in unmatched {
            let _ = writeln!(out, "- {} (`{}`)", target.source, target.patterns.join("`, `"));
        }
    }
    if !context.failed.is_empty() || !context.messages.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for area in &context.failed {
            let _ =
                writeln!(out, "- bench `{area}` failed to build or run: its figures are missing");
        }
        for message in &context.messages {
            let _ = writeln!(out, "- {message}");
        }
    }
    out
}

pub fn render_json(judged: &[Judged], unmatched: &[&Target], context: &ReportContext) -> Value {
    let figures: Vec<Value> = judged
        .iter()
        .map(|j| {
            let f = &j.figure;
            json!({
                "name": f.name,
                "source": f.source,
                "median": f.median,
                "unit": f.unit,
                "interval": f.interval.map(|(low, high)| json!([low, high])),
                "spread": f.spread,
                "change": f.change,
                "target": j.target,
                "met": j.met,
                "note": j.note,
            })
        })
        .collect();
    let mut not_measured = BTreeMap::new();
    for target in unmatched {
        not_measured.insert(target.source, target.patterns);
    }
    json!({
        "quick": context.quick,
        "areas": context.areas,
        "commit": context.git_commit,
        "baseline": context.baseline,
        "saved_as": context.saved_as,
        "figures": figures,
        "targets_not_measured": not_measured,
        "failed": context.failed,
        "messages": context.messages,
        "timings_seconds": context.timings.iter().map(|(what, seconds)| json!([what, seconds])).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_the_command_line() {
        let parsed =
            BenchArgs::parse(&args(&["--quick", "gateway", "--baseline", "main"])).unwrap();
        assert_eq!(
            parsed,
            BenchArgs {
                quick: true,
                areas: vec!["gateway".into()],
                save: None,
                baseline: Some("main".into()),
                no_reference: false
            }
        );
        assert_eq!(
            parsed.criterion_args(),
            args(&[
                "--noplot",
                "--warm-up-time",
                "1",
                "--measurement-time",
                "2",
                "--baseline",
                "main"
            ])
        );
        let saved = BenchArgs::parse(&args(&["--save", "before"])).unwrap();
        assert_eq!(saved.criterion_args(), args(&["--noplot", "--save-baseline", "before"]));
        assert!(BenchArgs::parse(&args(&["--save", "a", "--baseline", "b"])).is_err());
        assert!(BenchArgs::parse(&args(&["--save"])).is_err());
        assert!(BenchArgs::parse(&args(&["--fast"])).is_err());
    }

    #[test]
    fn finds_bench_names_in_a_manifest() {
        let manifest = r#"
[package]
name = "benches"

[dependencies]
criterion = { workspace = true }

[[bench]]
name = "core"
harness = false

[[ bench ]]
harness = false
name = "gateway"   # the load comparison

[[test]]
name = "not-a-bench"
"#;
        assert_eq!(
            bench_names_in_manifest(manifest),
            vec!["core".to_owned(), "gateway".to_owned()]
        );
    }

    #[test]
    fn globs_match_folded_ids() {
        assert!(glob_matches("collector_record", "collector/record"));
        assert!(glob_matches("collector_record", "Collector-Record"));
        assert!(!glob_matches("collector_record", "collector/record_batch"));
        assert!(glob_matches("gateway*c1*added*p50*", "gateway/c1/added_latency_p50"));
        assert!(!glob_matches("gateway*c1*added*p50*", "gateway/c32/added_latency_p99"));
        assert!(glob_matches("*kmeans*1m*", "analytics/kmeans_1m_x4_k8"));
        assert!(glob_matches("a*a", "aa"));
        assert!(!glob_matches("a*a", "a"));
    }

    fn close(value: Option<f64>, expected: f64) -> bool {
        value.is_some_and(|v| (v - expected).abs() <= 1e-12 * expected.abs().max(1.0))
    }

    #[test]
    fn converts_units_within_a_family_only() {
        assert!(close(convert(250.0, "ns", "µs"), 0.25));
        assert!(close(convert(1.5, "ms", "us"), 1500.0));
        assert!(close(convert(2.0, "MiB", "KiB"), 2048.0));
        assert!(close(convert(52_428_800.0, "B", "MB"), 52.4288));
        assert_eq!(convert(1.0, "ms", "MB"), None);
        assert_eq!(convert(3.0, "requests/s", "/s"), Some(3.0));
        assert_eq!(convert(1.0, "furlongs", "s"), None);
    }

    /// The shape criterion 0.5 writes (`new/estimates.json`, `new/benchmark.json`), numbers
    /// picked by hand.
    fn criterion_sample() -> (Value, Value) {
        let interval = |low: f64, high: f64, point: f64| {
            json!({"confidence_interval": {"confidence_level": 0.95, "lower_bound": low, "upper_bound": high},
                   "point_estimate": point, "standard_error": 1.0})
        };
        let estimates = json!({
            "mean": interval(5_100_000.0, 5_300_000.0, 5_200_000.0),
            "median": interval(4_900_000.0, 5_100_000.0, 5_000_000.0),
            "median_abs_dev": interval(10.0, 30.0, 20.0),
            "slope": null,
            "std_dev": interval(40.0, 60.0, 50.0),
        });
        let benchmark = json!({
            "group_id": "collector", "function_id": "sustained_ingest_sled", "value_str": null,
            "throughput": {"Elements": 1000}, "full_id": "collector/sustained_ingest_sled",
            "directory_name": "collector/sustained_ingest_sled",
            "title": "collector/sustained_ingest_sled"
        });
        (estimates, benchmark)
    }

    #[test]
    fn reads_criterion_estimates_and_throughput() {
        let (estimates, benchmark) = criterion_sample();
        let change = json!({"median": {"point_estimate": 0.25}});
        let figures = figures_from_criterion(&estimates, &benchmark, &change, "fallback");
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].name, "collector/sustained_ingest_sled");
        assert_eq!(figures[0].median, 5_000_000.0);
        assert_eq!(figures[0].interval, Some((4_900_000.0, 5_100_000.0)));
        assert_eq!(figures[0].change, Some(0.25));
        // 1000 elements per 5 ms = 200,000 per second; 25 % slower = 20 % lower rate.
        assert_eq!(figures[1].name, "collector/sustained_ingest_sled [throughput]");
        assert!((figures[1].median - 200_000.0).abs() < 1e-6);
        let (low, high) = figures[1].interval.unwrap();
        assert!((low - 1000.0 / 5.1e-3).abs() < 1e-6 && (high - 1000.0 / 4.9e-3).abs() < 1e-6);
        assert!((figures[1].change.unwrap() + 0.2).abs() < 1e-12);
        let judged = judge_all(figures);
        assert_eq!(judged[0].met, None, "the time figure has no target");
        assert_eq!(judged[1].met, Some(true), "200,000/s meets ≥ 200,000/s");
        assert_eq!(judged[1].target.as_deref(), Some("≥ 200,000 /s"));
    }

    #[test]
    fn reads_figure_files_and_judges_them_against_the_table() {
        let file = json!([
            {"name": "gateway/c1/added_latency_p50", "median": 0.12, "unit": "ms", "spread": 0.01},
            {"name": "gateway/c1/added_latency_p99", "median": 250, "unit": "µs", "spread": null},
            {"name": "gateway/c32/throughput_ratio", "median": 0.84, "unit": "ratio"},
            {"name": "gateway/rss_after_load", "median": 48.0, "unit": "MiB"},
            {"name": "gateway/c1/cache_hit_p99", "median": 150, "unit": "µs"},
            {"name": "gateway/c1/direct_p50", "median": 90, "unit": "µs", "target": "info", "met": true}
        ]);
        let judged = judge_all(parse_figure_file(&file).unwrap());
        let verdicts: Vec<Option<bool>> = judged.iter().map(|j| j.met).collect();
        // 120 µs > 100; 250 ≤ 300; 0.84 < 0.85; 48 MiB = 50.33 MB > 50 MB; 150 ≤ 200; own verdict.
        assert_eq!(
            verdicts,
            vec![Some(false), Some(true), Some(false), Some(false), Some(true), Some(true)]
        );
        assert_eq!(judged[5].note.as_deref(), Some("target from the bench, not the table"));
        assert!(parse_figure_file(&json!({"name": "x"})).is_err());
        assert!(parse_figure_file(&json!(3)).is_err());
    }

    #[test]
    fn derives_the_kmeans_ratios_from_both_sides() {
        let rust = |name: &str, ns: f64| Figure {
            name: name.into(),
            source: "criterion",
            median: ns,
            unit: "ns".into(),
            interval: None,
            spread: None,
            change: None,
            own_target: None,
            own_met: None,
        };
        let lloyd = rust("analytics/kmeans_1m_x4_k8/lloyd", 450e6);
        let linfa = rust("analytics/kmeans_1m_x4_k8/linfa", 600e6);
        let welch = rust("analytics/welch_10k_vs_10k", 1e3);
        // What bench_kmeans.py prints: 0.3 s median of three fits 0.28 … 0.34 s.
        let printed = "warming up\n{\"n\": 1000000, \"seconds_median\": 0.3, \"seconds_all\": [0.28, 0.3, 0.34], \"inertia\": 1.0}\n";
        let summary = reference_summary_figure("bench_kmeans", printed).unwrap();
        assert_eq!(summary["name"], "reference/sklearn_kmeans");
        assert!((summary["spread"].as_f64().unwrap() - 0.03).abs() < 1e-12);
        assert!(reference_summary_figure("bench_x", "no json here").is_none());
        let sklearn = parse_figure_file(&summary).unwrap().remove(0);
        let ratios = kmeans_ratios(&[lloyd.clone(), welch, linfa, sklearn]);
        let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "analytics/kmeans_vs_scikit_learn/lloyd",
                "analytics/kmeans_vs_scikit_learn/linfa"
            ]
        );
        assert!((ratios[0].median - 1.5).abs() < 1e-12 && (ratios[1].median - 2.0).abs() < 1e-12);
        let judged = judge_all(ratios);
        assert_eq!(judged[0].met, Some(true), "1.5× meets ≤ 1.5×");
        assert_eq!(judged[0].target.as_deref(), Some("≤ 1.50×"));
        assert_eq!(human_value(judged[1].figure.median, &judged[1].figure.unit), "2.00×");
        assert_eq!(judged[1].met, Some(false), "2× does not");
        assert!(kmeans_ratios(&[lloyd]).is_empty(), "no reference, no ratio");
    }

    #[test]
    fn only_the_gateway_id_ingest_is_judged_against_the_ingest_target() {
        let (estimates, benchmark) = criterion_sample();
        let mut figures = figures_from_criterion(&estimates, &benchmark, &Value::Null, "");
        let mut foreign = figures[1].clone();
        foreign.name = "collector/sustained_ingest_sled_foreign_ids [throughput]".into();
        figures.push(foreign);
        let judged = judge_all(figures);
        assert_eq!(judged[1].met, Some(true));
        assert_eq!(judged[2].met, None, "the foreign-id variant is reported, not judged");
    }

    #[test]
    fn the_report_lists_verdicts_and_missing_targets() {
        let (estimates, benchmark) = criterion_sample();
        let judged = judge_all(figures_from_criterion(&estimates, &benchmark, &Value::Null, ""));
        let unmatched = unmatched_targets(&judged);
        assert_eq!(unmatched.len(), TARGETS.len() - 1);
        let context = ReportContext {
            areas: vec!["storage".into()],
            messages: vec!["scikit-learn comparison skipped".into()],
            timings: vec![
                ("build (release, one cargo invocation)".into(), 201.6),
                ("run storage".into(), 52.4),
            ],
            ..ReportContext::default()
        };
        let markdown = render_markdown(&judged, &unmatched, &context);
        assert!(
            markdown.contains(
                "| `collector/sustained_ingest_sled` | 5.00 ms | 4.90 ms – 5.10 ms | — | — |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| `collector/sustained_ingest_sled [throughput]` | 200,000 /s |"),
            "{markdown}"
        );
        assert!(markdown.contains("Targets: 1 met, 0 not met, 7 not measured."), "{markdown}");
        assert!(markdown.contains("- scikit-learn comparison skipped"));
        assert!(
            markdown.contains(
                "## Wall time\n\n- build (release, one cargo invocation): 202 s\n- run storage: 52 s\n"
            ),
            "{markdown}"
        );
        let json_report = render_json(&judged, &unmatched, &context);
        assert_eq!(json_report["figures"][1]["met"], json!(true));
        assert_eq!(json_report["figures"][0]["interval"], json!([4_900_000.0, 5_100_000.0]));
        assert_eq!(json_report["timings_seconds"][1], json!(["run storage", 52.4]));
    }

    #[test]
    fn the_gateway_targets_match_its_figures_and_nothing_else() {
        let figure = |name: &str, median: f64, unit: &str| Figure {
            name: name.into(),
            source: "figure file",
            median,
            unit: unit.into(),
            interval: None,
            spread: None,
            change: None,
            own_target: None,
            own_met: None,
        };
        // The ids `benches/benches/gateway.rs` writes, each paired with its target by hand.
        let judged_ids = [
            (
                "gateway/c1/added_latency_p50",
                "issue 9: added latency at concurrency 1, p50 ≤ 100 µs",
            ),
            (
                "gateway/c1/added_latency_p99",
                "issue 9: added latency at concurrency 1, p99 ≤ 300 µs",
            ),
            (
                "gateway/c32/throughput_ratio",
                "issue 9: throughput at concurrency 32 ≥ 0.85× direct",
            ),
            ("gateway/rss_after_load", "issue 9: resident memory after load ≤ 50 MB"),
            (
                "gateway/c1/cache_hit_p99",
                "issue 9: cache hit p99 ≤ 200 µs end to end at concurrency 1",
            ),
        ];
        for (id, source) in judged_ids {
            let targets: Vec<&str> =
                TARGETS.iter().filter(|t| matches_any(id, t.patterns)).map(|t| t.source).collect();
            assert_eq!(targets, vec![source], "{id}");
        }
        let mut unjudged = vec![
            "gateway/rss_when_ready".to_owned(),
            "gateway/rss_peak".to_owned(),
            "gateway/c1/cache_hit_p50".to_owned(),
            "gateway/c1/cache_hit_throughput".to_owned(),
        ];
        for concurrency in ["c1", "c32"] {
            for side in ["direct", "gateway"] {
                for what in ["throughput", "p50", "p99"] {
                    unjudged.push(format!("gateway/{concurrency}/{side}_{what}"));
                }
            }
        }
        for (id, _) in judged_ids {
            unjudged.push(format!("diagnostic/gateway_no_store/{}", &id["gateway/".len()..]));
        }
        for id in &unjudged {
            let matched: Vec<&str> =
                TARGETS.iter().filter(|t| matches_any(id, t.patterns)).map(|t| t.source).collect();
            assert!(matched.is_empty(), "{id} must not be judged, matched {matched:?}");
        }
        // Judged in their units: 60.2 MiB > 50 MB; 0.9 ≥ 0.85; the diagnostic ratio has none.
        let judged = judge_all(vec![
            figure("gateway/rss_after_load", 60.2, "MiB"),
            figure("gateway/c32/throughput_ratio", 0.9, "ratio"),
            figure("diagnostic/gateway_no_store/c32/throughput_ratio", 0.5, "ratio"),
        ]);
        let verdicts: Vec<Option<bool>> = judged.iter().map(|j| j.met).collect();
        assert_eq!(verdicts, vec![Some(false), Some(true), None]);
    }

    #[test]
    fn finds_bench_executables_in_cargo_json_messages() {
        // Lines as cargo 1.8x prints them (trimmed to the fields read), plus noise.
        let stdout = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/benches#0.1.0","target":{"kind":["lib"],"name":"benches"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"core"},"executable":"/w/target/release/deps/core-0123abcd"}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"gateway"},"executable":"/w/target/release/deps/gateway-4567ef01"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"it"},"executable":"/w/target/release/deps/it-89"}
not json at all
{"reason":"build-finished","success":true}
"#;
        let (success, executables) = bench_executables(stdout);
        assert!(success);
        assert_eq!(
            executables.into_iter().collect::<Vec<_>>(),
            vec![
                ("core".to_owned(), PathBuf::from("/w/target/release/deps/core-0123abcd")),
                ("gateway".to_owned(), PathBuf::from("/w/target/release/deps/gateway-4567ef01")),
            ]
        );
        let (success, _) = bench_executables("{\"reason\":\"build-finished\",\"success\":false}\n");
        assert!(!success);
        assert!(!bench_executables("").0, "no build-finished message: not a success");
    }

    #[test]
    fn formats_numbers_for_reading() {
        assert_eq!(format_number(200_000.0), "200,000");
        assert_eq!(format_number(1234.5), "1,235");
        assert_eq!(format_number(250.0), "250");
        assert_eq!(format_number(12.345), "12.3");
        assert_eq!(format_number(0.85), "0.850");
        assert_eq!(human_time(1_500_000.0), "1.50 ms");
    }
}
