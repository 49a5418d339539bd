//! Record builders shared by the tests.

use llmopt_core::{
    Feedback, FeedbackValue, Fingerprint, PriceCatalog, RequestRecord, Usage, fingerprint,
};

pub const T0: i64 = 1_767_225_600_000;

/// Parsed once: building it per record would dominate the tests' time in debug builds.
pub static CATALOG: std::sync::LazyLock<PriceCatalog> =
    std::sync::LazyLock::new(PriceCatalog::builtin);

/// A successful record priced from the built-in catalog.
pub fn record(index: u64, ts_ms: i64, model: &str, input: u64, output: u64) -> RequestRecord {
    let catalog = &*CATALOG;
    let mut record = RequestRecord::new(format!("r{index}"), ts_ms, "openai", model);
    let usage = Usage { input_tokens: input, output_tokens: output, ..Usage::default() };
    record.cost = Some(catalog.cost(model, &usage).expect("known model").total);
    record.usage = Some(usage);
    record.latency_us = 400_000 + output * 20_000;
    record.fingerprints.request = Some(Fingerprint::of_bytes(format!("unique-{index}").as_bytes()));
    record
}

pub fn with_feedback(mut record: RequestRecord, correct: bool) -> RequestRecord {
    record.feedback.push(Feedback {
        metric: "correct".into(),
        value: FeedbackValue::Bool(correct),
        ts_ms: record.ts_ms,
    });
    record
}

pub fn same_request(mut record: RequestRecord, key: &str) -> RequestRecord {
    record.fingerprints.request =
        Some(fingerprint::request_fingerprint(&serde_json::json!({"prompt": key})));
    record
}
