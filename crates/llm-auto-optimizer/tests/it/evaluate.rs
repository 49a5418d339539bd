//! `evaluate` as a user runs it, on the small fixtures under `tests/data/evaluate/`
//! (`make_fixtures.py` writes them): reports in text and JSON, one-line errors for bad input.

use std::{path::PathBuf, process::Command};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-auto-optimizer"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/evaluate").join(name)
}

fn evaluate(args: &[&str], files: &[&str]) -> std::process::Output {
    let mut command = binary();
    command.arg("evaluate").args(files.iter().map(|f| fixture(f))).args(args);
    command.output().unwrap()
}

fn fraction(value: &serde_json::Value, key: &str) -> f64 {
    let x = value[key].as_f64().unwrap_or_else(|| panic!("`{key}` in {value}"));
    assert!((0.0..=1.0).contains(&x) || key == "quality_vs_strong", "{key} = {x}");
    x
}

#[test]
fn jsonl_and_csv_files_are_evaluated_together() {
    let output = evaluate(
        &["--strong", "big", "--weak", "small", "--json", "--cycle-every", "50"],
        &["good.jsonl", "good.csv"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["dataset"]["prompts"], 250);
    assert_eq!(report["learner_details"]["cycles"], 5);
    assert_eq!(report["strong_price_as"], "gpt-4o");
    assert_eq!(report["weak_price_as"], "gpt-4o-mini");
    for key in ["strong_calls_avoided", "quality_vs_strong", "cost_saved", "cpt50", "cpt80", "apgr"]
    {
        fraction(&report, key);
        for baseline in ["random", "knn", "knn_full_information", "oracle"] {
            fraction(&report["baselines"][baseline], key);
        }
    }
    // Random routing is the diagonal.
    for key in ["cpt50", "apgr"] {
        assert!((fraction(&report["baselines"]["random"], key) - 0.5).abs() < 1e-9);
    }
}

#[test]
fn the_text_report_compares_the_learner_with_the_baselines() {
    let output = evaluate(
        &["--strong", "big", "--weak", "small", "--no-shuffle", "--quality", "0.9"],
        &["good.csv"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        "90 prompts from 1 file(s), in file order",
        "target: 90.0 %",
        "learner (the product)",
        "kNN, same feedback",
        "oracle per workload",
        "random",
        "kNN, full information (ref.)",
        "CPT(50%)",
        "0 cycles",
    ] {
        assert!(stdout.contains(expected), "`{expected}` missing from:\n{stdout}");
    }
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_line() {
    let cases: [(&[&str], &[&str], &str); 6] = [
        (
            &["--strong", "big", "--weak", "small"],
            &["bad.jsonl"],
            "bad.jsonl:2: non-numeric score for `small`",
        ),
        (
            &["--strong", "big", "--weak", "small"],
            &["good.csv", "bad.csv"],
            "bad.csv:4: a row of 2 fields, the header has 3",
        ),
        (
            &["--strong", "huge", "--weak", "small"],
            &["good.jsonl"],
            "--strong `huge` is not a model column of this file (columns found: big, small)",
        ),
        (
            &["--strong", "big", "--weak", "tiny"],
            &["good.csv"],
            "--weak `tiny` is not a model column",
        ),
        (
            &["--strong", "big", "--weak", "small", "--skip-first", "500"],
            &["good.csv"],
            "no prompts left to evaluate",
        ),
        (
            &["--strong", "big", "--weak", "small", "--quality", "1.5"],
            &["good.csv"],
            "--quality must be within (0, 1]",
        ),
    ];
    for (args, files, expected) in cases {
        let output = evaluate(args, files);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "`{expected}` missing from: {stderr}");
    }
    let output = evaluate(
        &["--strong", "big", "--weak", "small", "--strong-price-as", "gpt-4o-mni"],
        &["good.csv"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("gpt-4o-mni"));
}
