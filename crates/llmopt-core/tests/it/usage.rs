//! Usage normalisation against real response bodies, one per documented shape. Expected values
//! are read off the fixtures by hand, following DESIGN.md's rules.

use llmopt_core::{Protocol, SseDecoder, StreamUsage, Usage};

use crate::data_dir;

fn usage(input: u64, read: u64, w5: u64, w1: u64, output: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        cache_read_tokens: read,
        cache_write_5m_tokens: w5,
        cache_write_1h_tokens: w1,
        output_tokens: output,
        reasoning_tokens: reasoning,
    }
}

#[test]
fn whole_responses() {
    let cases = [
        // OpenAI: prompt_tokens already includes cached_tokens.
        ("openai_chat_basic.json", Protocol::OpenAi, usage(19, 0, 0, 0, 10, 0)),
        ("openai_chat_cached.json", Protocol::OpenAi, usage(2006, 1920, 0, 0, 300, 0)),
        // Reasoning tokens are part of completion_tokens, not added to it.
        ("openai_reasoning.json", Protocol::OpenAi, usage(75, 0, 0, 0, 1186, 1024)),
        // vLLM-style: no details objects at all (or null).
        ("openai_compatible_plain.json", Protocol::OpenAi, usage(42, 0, 0, 0, 7, 0)),
        ("openai_responses_api.json", Protocol::OpenAi, usage(36, 0, 0, 0, 87, 0)),
        // Anthropic: input_tokens is only the uncached remainder.
        ("anthropic_basic.json", Protocol::Anthropic, usage(2095, 0, 0, 0, 503, 0)),
        // No breakdown object: every write is a 5-minute write.
        ("anthropic_cache_write.json", Protocol::Anthropic, usage(1550, 0, 1500, 0, 300, 0)),
        // Breakdown present: 200 five-minute + 1000 one-hour writes; total 21 + 1200 + 3000.
        ("anthropic_cache_read_1h.json", Protocol::Anthropic, usage(4221, 3000, 200, 1000, 393, 0)),
    ];
    for (file, protocol, expected) in cases {
        let text = std::fs::read_to_string(data_dir().join("usage").join(file)).unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let got = match protocol {
            Protocol::OpenAi => Usage::from_openai_response(&body),
            Protocol::Anthropic => Usage::from_anthropic_response(&body),
        };
        assert_eq!(got, Ok(expected), "{file}");
    }
}

#[test]
fn malformed_usage_is_an_error_not_zero() {
    use serde_json::json;
    assert!(Usage::from_openai_response(&json!({"choices": []})).is_err());
    assert!(Usage::from_openai_response(&json!({"usage": null})).is_err());
    assert!(Usage::from_openai_response(&json!({"usage": {"prompt_tokens": -1}})).is_err());
    assert!(Usage::from_openai_response(&json!({"usage": {"prompt_tokens": "12"}})).is_err());
    // cached > prompt cannot be.
    let inconsistent = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 11}}});
    assert!(Usage::from_openai_response(&inconsistent).is_err());
    assert!(Usage::from_anthropic_response(&json!({"usage": {"output_tokens": 3}})).is_err());
}

struct StreamCase {
    file: &'static str,
    protocol: Protocol,
    usage: Option<Usage>,
    /// The usage came from the event that completes it (not from `message_start` alone).
    usage_final: bool,
    stop_reason: Option<&'static str>,
    finished: bool,
    usage_only_chunks: usize,
}

#[test]
fn streams() {
    let cases = [
        StreamCase {
            file: "openai_stream_with_usage.sse",
            protocol: Protocol::OpenAi,
            usage: Some(usage(1200, 1024, 0, 0, 2, 0)),
            usage_final: true,
            stop_reason: Some("stop"),
            finished: true,
            usage_only_chunks: 1,
        },
        // The client did not set stream_options.include_usage: no usage chunk ever comes.
        StreamCase {
            file: "openai_stream_without_usage.sse",
            protocol: Protocol::OpenAi,
            usage: None,
            usage_final: false,
            stop_reason: Some("stop"),
            finished: true,
            usage_only_chunks: 0,
        },
        StreamCase {
            file: "openai_stream_cut.sse",
            protocol: Protocol::OpenAi,
            usage: None,
            usage_final: false,
            stop_reason: None,
            finished: false,
            usage_only_chunks: 0,
        },
        // message_start: 25 uncached + 100 written + 2000 read; message_delta: 15 output.
        StreamCase {
            file: "anthropic_stream.sse",
            protocol: Protocol::Anthropic,
            usage: Some(usage(2125, 2000, 100, 0, 15, 0)),
            usage_final: true,
            stop_reason: Some("end_turn"),
            finished: true,
            usage_only_chunks: 0,
        },
        // Cut before message_delta: the input side from message_start (410 uncached) and the
        // output it counted (1) are the usage seen, a lower bound; not final.
        StreamCase {
            file: "anthropic_stream_cut.sse",
            protocol: Protocol::Anthropic,
            usage: Some(usage(410, 0, 0, 0, 1, 0)),
            usage_final: false,
            stop_reason: None,
            finished: false,
            usage_only_chunks: 0,
        },
        StreamCase {
            file: "anthropic_stream_error.sse",
            protocol: Protocol::Anthropic,
            // An error event after message_start: its input side (12) and output so far (1).
            usage: Some(usage(12, 0, 0, 0, 1, 0)),
            usage_final: false,
            stop_reason: None,
            finished: false,
            usage_only_chunks: 0,
        },
    ];
    for case in cases {
        let bytes = std::fs::read(data_dir().join("usage").join(case.file)).unwrap();
        // Feed in awkward 7-byte pieces, as a network would.
        let mut decoder = SseDecoder::new();
        let mut tracker = StreamUsage::new(case.protocol);
        let mut usage_only = 0;
        let mut forwarded = Vec::new();
        for piece in bytes.chunks(7) {
            for event in decoder.push(piece) {
                usage_only += usize::from(tracker.observe(&event.data));
                forwarded.extend_from_slice(&event.raw);
            }
        }
        forwarded.extend_from_slice(decoder.pending());
        assert_eq!(forwarded, bytes, "{}: every byte is forwarded as received", case.file);
        assert_eq!(tracker.usage(), case.usage, "{}", case.file);
        assert_eq!(tracker.usage_is_final(), case.usage_final, "{}", case.file);
        assert_eq!(tracker.stop_reason(), case.stop_reason, "{}", case.file);
        assert_eq!(tracker.finished(), case.finished, "{}", case.file);
        assert_eq!(usage_only, case.usage_only_chunks, "{}", case.file);
    }
}
