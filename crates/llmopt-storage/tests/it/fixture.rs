//! Bytes of each record schema kept as files: whatever the codec becomes, these must still decode
//! to the same record. `full_record` (core's testsuite) is the independent expected value.
//!
//! `LLMOPT_WRITE_FIXTURES=1` rewrites the file of the *current* schema only; the files of older
//! schemas were written by older codecs and are never rewritten.

use llmopt_core::{FeedbackValue, testsuite::full_record};
use llmopt_storage::codec::{SCHEMA_VERSION, decode_record, encode_record};

const FIXTURE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/record_v1.bin");
const FIXTURE_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/record_v2.bin");
const FIXTURE_V3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/record_v3.bin");

fn expected() -> llmopt_core::RequestRecord {
    let mut record = full_record(42, 1_767_225_600_000, "gpt-4o-mini", "acme");
    record.feedback.push(llmopt_core::Feedback {
        metric: "rating".into(),
        value: FeedbackValue::Number(4.5),
        ts_ms: 1_767_225_601_000,
    });
    record
}

/// Version 2 adds the `incomplete` flag: the pinned record has it set.
fn expected_v2() -> llmopt_core::RequestRecord {
    llmopt_core::RequestRecord { incomplete: true, ..expected() }
}

#[test]
fn version_one_bytes_still_decode() {
    let bytes = std::fs::read(FIXTURE_V1).unwrap();
    assert_eq!(bytes[0], 1, "schema byte");
    let record = decode_record(&bytes).unwrap();
    assert!(!record.incomplete, "version 1 predates the flag: complete");
    assert_eq!(record, expected());
}

/// Version 3 adds the `sampled` flag: the pinned record has both flags set.
fn expected_v3() -> llmopt_core::RequestRecord {
    llmopt_core::RequestRecord { sampled: true, ..expected_v2() }
}

#[test]
fn version_two_bytes_still_decode() {
    let bytes = std::fs::read(FIXTURE_V2).unwrap();
    assert_eq!(bytes[0], 2, "schema byte");
    let record = decode_record(&bytes).unwrap();
    assert!(!record.sampled, "version 2 predates the flag");
    assert_eq!(record, expected_v2());
}

#[test]
fn version_three_bytes_still_decode() {
    if std::env::var_os("LLMOPT_WRITE_FIXTURES").is_some() && SCHEMA_VERSION == 3 {
        std::fs::write(FIXTURE_V3, encode_record(&expected_v3())).unwrap();
    }
    let bytes = std::fs::read(FIXTURE_V3).unwrap();
    assert_eq!(bytes[0], 3, "schema byte");
    assert_eq!(decode_record(&bytes).unwrap(), expected_v3());
}

#[test]
fn the_binary_form_is_much_smaller_than_json() {
    let record = expected();
    let binary = encode_record(&record).len();
    let json = serde_json::to_vec(&record).unwrap().len();
    assert!(binary * 2 < json, "binary {binary} bytes, JSON {json} bytes");
}
