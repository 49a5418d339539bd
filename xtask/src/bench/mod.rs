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
//!   on its last line (see [`reference::reference_summary_figure`]). The k-means ratio figure
//!   (`analytics/kmeans_vs_scikit_learn/linfa`) divides the criterion median of the product's
//!   k-means (linfa, `analytics/kmeans_1m_x4_k8/linfa`) in this run by scikit-learn's; both run
//!   like for like (same data, initial centres, one run, iteration limit and tolerance).
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
//! [`targets::TARGETS`] is the only place targets live, keyed by figure id patterns (`*` matches
//! any run of characters; ids are compared lowercase with `/`, `-`, spaces and dots folded to
//! `_`), so the mapping tolerates the exact id a bench picked. The gateway's targets name the
//! exact ids `benches/benches/gateway.rs` writes (`gateway/c1/added_latency_p50`, …): its absolute
//! figures (`gateway/c32/direct_throughput`, `gateway/rss_peak`, …) and its diagnostic variant
//! (`diagnostic/gateway_no_store/…`) must not be judged against them. A figure no target
//! matches is reported without a verdict; a target no figure matched is listed as "not
//! measured".
//!
//! # Code map
//! - this module: the command line ([`BenchArgs`]) and [`run`], which calls the others in order;
//! - `build`: the one `cargo bench --no-run` of all areas and the bench names of the manifest;
//! - `reference`: the scikit-learn reference scripts;
//! - `figures`: reading criterion results and figure files, and the derived k-means ratio;
//! - `targets`: the targets table, id matching, units, and the verdicts;
//! - `report`: the Markdown and JSON reports.

mod build;
mod figures;
mod reference;
mod report;
mod targets;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use self::{
    build::{build_benches, declared_benches},
    figures::{criterion_figures, figure_files, kmeans_ratios},
    reference::run_reference_scripts,
    report::{ReportContext, render_json, render_markdown},
    targets::{judge_all, unmatched_targets},
};
use crate::ci::project_root;

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
}
