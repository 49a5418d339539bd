//! Where figures come from: criterion's estimates, figure files written by benches and
//! reference scripts, and the one derived figure, the k-means ratio to scikit-learn.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::targets::{convert, matches_any};

/// The derived figure: criterion's k-means median over scikit-learn's in the same run.
pub const KMEANS_RATIO_FIGURE: &str = "analytics/kmeans_vs_scikit_learn";
/// Criterion ids of the Rust k-means bench (1,000,000 × 4, k = 8): the product's k-means,
/// `analytics/kmeans_1m_x4_k8/linfa`.
const KMEANS_PATTERNS: &[&str] = &["*kmeans*1m*", "*kmeans*1_000_000*", "*k_means*1m*"];
/// Figure names a reference script may give its scikit-learn k-means timing.
const SKLEARN_KMEANS_PATTERNS: &[&str] =
    &["*sklearn*kmeans*", "*scikit*kmeans*", "*kmeans*sklearn*", "*kmeans*scikit*"];

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

/// `rust k-means median / scikit-learn k-means median` for each Rust k-means figure of this
/// run (the bench measures one, the product's linfa k-means), when scikit-learn's was measured
/// too. Named `analytics/kmeans_vs_scikit_learn/<last part of the criterion id>`.
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

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::bench::{
        reference::reference_summary_figure, report::human_value, targets::judge_all,
    };

    /// The shape criterion 0.5 writes (`new/estimates.json`, `new/benchmark.json`), numbers
    /// picked by hand.
    pub(in crate::bench) fn criterion_sample() -> (Value, Value) {
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
        let linfa = rust("analytics/kmeans_1m_x4_k8/linfa", 450e6);
        let welch = rust("analytics/welch_10k_vs_10k", 1e3);
        // What bench_kmeans.py prints: 0.3 s median of three fits 0.28 … 0.34 s.
        let printed = "warming up\n{\"n\": 1000000, \"seconds_median\": 0.3, \"seconds_all\": [0.28, 0.3, 0.34], \"inertia\": 1.0}\n";
        let summary = reference_summary_figure("bench_kmeans", printed).unwrap();
        assert_eq!(summary["name"], "reference/sklearn_kmeans");
        assert!((summary["spread"].as_f64().unwrap() - 0.03).abs() < 1e-12);
        assert!(reference_summary_figure("bench_x", "no json here").is_none());
        let sklearn = parse_figure_file(&summary).unwrap().remove(0);
        let ratios = kmeans_ratios(&[welch.clone(), linfa.clone(), sklearn.clone()]);
        let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["analytics/kmeans_vs_scikit_learn/linfa"]);
        assert!((ratios[0].median - 1.5).abs() < 1e-12);
        let judged = judge_all(ratios);
        assert_eq!(judged[0].met, Some(true), "1.5× meets ≤ 1.5×");
        assert_eq!(judged[0].target.as_deref(), Some("≤ 1.50×"));
        let slower = rust("analytics/kmeans_1m_x4_k8/linfa", 600e6);
        let judged = judge_all(kmeans_ratios(&[slower, sklearn]));
        assert_eq!(human_value(judged[0].figure.median, &judged[0].figure.unit), "2.00×");
        assert_eq!(judged[0].met, Some(false), "2× does not");
        assert!(kmeans_ratios(&[linfa]).is_empty(), "no reference, no ratio");
    }
}
