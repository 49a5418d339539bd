//! Version-1 bytes kept as a file: whatever the codec becomes, these must still decode to the
//! same record. `full_record` (core's testsuite) is the independent expected value.

use llmopt_core::{FeedbackValue, testsuite::full_record};
use llmopt_storage::codec::{decode_record, encode_record};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/record_v1.bin");

fn expected() -> llmopt_core::RequestRecord {
    let mut record = full_record(42, 1_767_225_600_000, "gpt-4o-mini", "acme");
    record.feedback.push(llmopt_core::Feedback {
        metric: "rating".into(),
        value: FeedbackValue::Number(4.5),
        ts_ms: 1_767_225_601_000,
    });
    record
}

#[test]
fn version_one_bytes_still_decode() {
    if std::env::var_os("LLMOPT_WRITE_FIXTURES").is_some() {
        std::fs::write(FIXTURE, encode_record(&expected())).unwrap();
    }
    let bytes = std::fs::read(FIXTURE).unwrap();
    assert_eq!(bytes[0], 1, "schema byte");
    assert_eq!(decode_record(&bytes).unwrap(), expected());
}

#[test]
fn the_binary_form_is_much_smaller_than_json() {
    let record = expected();
    let binary = encode_record(&record).len();
    let json = serde_json::to_vec(&record).unwrap().len();
    assert!(binary * 2 < json, "binary {binary} bytes, JSON {json} bytes");
}
