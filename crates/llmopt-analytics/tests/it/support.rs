//! Fixture loading and tolerance checks shared by the test modules.

use std::path::PathBuf;

use serde_json::Value;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

pub fn fixture(name: &str) -> Value {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The full public traces, `../shared/data/traces` relative to the workspace root, if present.
pub fn shared_traces() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/traces");
    if path.is_dir() {
        Some(path)
    } else {
        println!(
            "skipped: {} not found (the full public traces are not on this machine)",
            path.display()
        );
        None
    }
}

pub fn f64s(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

pub fn num(value: &Value) -> f64 {
    value.as_f64().unwrap()
}

/// |actual − expected| ≤ rel × max(|expected|, floor): relative, with an absolute floor for
/// values near zero.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    let error = (actual - expected).abs() / scale;
    assert!(
        error <= rel,
        "{what}: got {actual:e}, expected {expected:e} (relative error {error:e} > {rel:e})"
    );
}

#[track_caller]
pub fn assert_all_close(actual: &[f64], expected: &[f64], rel: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_close(*a, *e, rel, &format!("{what}[{index}]"));
    }
}
