//! The record wire form is stable: a version-1 record written before later fields existed still
//! decodes, and unknown fields from a newer writer are ignored rather than fatal.

use llmopt_core::{CacheOutcome, ErrorKind, RequestRecord, Status, Usage, testsuite};

#[test]
fn a_minimal_version_one_record_decodes() {
    // What an early writer or an external app sends: only the required fields.
    let text = r#"{"v":1,"id":"r1","ts_ms":1767225600000,"provider":"openai",
        "requested_model":"gpt-4o","served_model":"gpt-4o","status":{"kind":"ok"},"latency_us":1500}"#;
    let record: RequestRecord = serde_json::from_str(text).unwrap();
    assert_eq!(record.usage, None);
    assert_eq!(record.cost, None);
    assert_eq!(record.cache, CacheOutcome::Bypass);
    assert!(record.feedback.is_empty());
}

#[test]
fn fields_from_a_newer_writer_are_ignored() {
    let text = r#"{"v":2,"id":"r2","ts_ms":1767225600000,"provider":"anthropic",
        "requested_model":"claude-haiku-4-5","served_model":"claude-haiku-4-5",
        "status":{"kind":"error","error":"rate_limited"},"latency_us":10,
        "a_field_from_the_future":{"x":1}}"#;
    let record: RequestRecord = serde_json::from_str(text).unwrap();
    assert_eq!(record.status, Status::Error(ErrorKind::RateLimited));
}

#[test]
fn every_field_round_trips() {
    let record = testsuite::full_record(3, testsuite::T0, "gpt-4o-mini", "acme");
    let text = serde_json::to_string(&record).unwrap();
    assert_eq!(serde_json::from_str::<RequestRecord>(&text).unwrap(), record);
    // Money is exact in the wire form: an integer of picodollars.
    assert!(text.contains("\"cost\":4938268"), "{text}");
}

#[test]
fn validation_refuses_what_cannot_be() {
    let now = testsuite::T0;
    let good = testsuite::full_record(1, now, "gpt-4o", "acme");
    assert_eq!(good.validate(now), Ok(()));
    let mut future = good.clone();
    future.ts_ms = now + 3_600_000;
    assert!(future.validate(now).is_err());
    let mut ttft = good.clone();
    ttft.ttft_us = Some(ttft.latency_us + 1);
    assert!(ttft.validate(now).is_err());
    let mut tokens = good.clone();
    tokens.usage = Some(Usage { input_tokens: 5, cache_read_tokens: 6, ..Usage::default() });
    assert!(tokens.validate(now).is_err());
    let mut empty = good;
    empty.served_model = "".into();
    assert!(empty.validate(now).is_err());
}
