//! The report: a Markdown table of figures with their targets and verdicts, and its JSON twin.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Value, json};

use super::{
    figures::Figure,
    targets::{Judged, Target},
};

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

pub(super) fn human_value(value: f64, unit: &str) -> String {
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
    use serde_json::Value;

    use super::*;
    use crate::bench::{
        figures::{figures_from_criterion, tests::criterion_sample},
        targets::{TARGETS, judge_all, unmatched_targets},
    };

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
        assert!(markdown.contains("Targets: 1 met, 0 not met, 9 not measured."), "{markdown}");
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
    fn formats_numbers_for_reading() {
        assert_eq!(format_number(200_000.0), "200,000");
        assert_eq!(format_number(1234.5), "1,235");
        assert_eq!(format_number(250.0), "250");
        assert_eq!(format_number(12.345), "12.3");
        assert_eq!(format_number(0.85), "0.850");
        assert_eq!(human_time(1_500_000.0), "1.50 ms");
    }
}
