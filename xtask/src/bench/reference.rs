//! The scikit-learn side of the comparisons: `scripts/reference/bench_*.py`, run with a Python
//! that has scikit-learn, their figures written next to the benches' own.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};
use xshell::{Shell, cmd};

/// Runs `scripts/reference/bench_*.py` with a Python that has scikit-learn; returns messages.
pub(super) fn run_reference_scripts(
    sh: &Shell,
    root: &Path,
    figures_dir: &Path,
    quick: bool,
) -> Vec<String> {
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
