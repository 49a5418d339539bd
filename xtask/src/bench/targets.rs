//! The targets of the issues, matching figure ids against them, units, and the verdicts.

use super::{figures::Figure, report::human_value};

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
    Target {
        patterns: &["store_postgres/collector_ingest"],
        bound: Bound::AtLeast,
        limit: 50_000.0,
        unit: "/s",
        source: "issue 19: records into PostgreSQL from one gateway ≥ 50,000 records/s sustained",
    },
    Target {
        // Measured only when asked for: LLMOPT_STORE_MEMORY=quiet:10000000 (the default quiet
        // run stops at 500,000 records).
        patterns: &["store_memory/quiet/rss_after_10000000_records"],
        bound: Bound::AtMost,
        limit: 100.0,
        unit: "MB",
        source: "issue 19: embedded store after 10 M records of quiet traffic ≤ 100 MB",
    },
];

/// A figure with its target and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub figure: Figure,
    pub target: Option<String>,
    pub met: Option<bool>,
    pub note: Option<String>,
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

pub(super) fn matches_any(id: &str, patterns: &[&str]) -> bool {
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::bench::figures::{
        figures_from_criterion, parse_figure_file, tests::criterion_sample,
    };

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
}
