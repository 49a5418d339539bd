//! Translation on wire-format fixtures: requests, whole answers and streams, both directions.
//! The fixtures follow the providers' documented examples (Anthropic's "Streaming Messages"
//! and "Tool use" pages, OpenAI's chat completion and chunk objects).

use llmopt_core::usage::{SseDecoder, StreamUsage, Usage};
use serde_json::{Value, json};

use super::{request, response, stream, *};

fn events(bytes: &[u8]) -> Vec<llmopt_core::usage::SseEvent> {
    SseDecoder::new().push(bytes)
}

fn data_of(bytes: &[u8]) -> Vec<Value> {
    events(bytes)
        .into_iter()
        .filter(|e| e.data != b"[DONE]")
        .map(|e| serde_json::from_slice(&e.data).unwrap())
        .collect()
}

#[test]
fn an_openai_request_becomes_an_anthropic_one() {
    let openai = json!({
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, cloudy"},
            {"role": "user", "content": "Thanks. Summarise."}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "stop": "END",
        "temperature": 0.2,
        "max_completion_tokens": 300,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "u-42"
    });
    let (anthropic, json_mode) = request::openai_to_anthropic(&openai).unwrap();
    assert!(!json_mode);
    assert_eq!(
        anthropic,
        json!({
            "model": "claude-haiku-4-5",
            "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18°C, cloudy"}]},
                    {"type": "text", "text": "Thanks. Summarise."}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather of a city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "max_tokens": 300,
            "stream": true,
            "metadata": {"user_id": "u-42"}
        })
    );
}

#[test]
fn a_tool_choice_without_tools_that_chooses_nothing_is_not_sent() {
    for choice in ["auto", "none"] {
        let openai = json!({"model": "claude-haiku-4-5", "tool_choice": choice, "parallel_tool_calls": false,
                            "messages": [{"role": "user", "content": "hi"}]});
        let (anthropic, _) = request::openai_to_anthropic(&openai).unwrap();
        assert!(anthropic.get("tool_choice").is_none(), "{choice}: {anthropic}");
        let anthropic = json!({"model": "gpt-4o", "max_tokens": 5, "tool_choice": {"type": choice},
                               "messages": [{"role": "user", "content": "hi"}]});
        let openai = request::anthropic_to_openai(&anthropic).unwrap();
        assert!(openai.get("tool_choice").is_none(), "{choice}: {openai}");
        assert!(openai.get("parallel_tool_calls").is_none());
    }
    // A choice that demands a tool is sent as it is: the provider's refusal says why.
    let openai = json!({"model": "claude-haiku-4-5", "tool_choice": "required",
                        "messages": [{"role": "user", "content": "hi"}]});
    let (anthropic, _) = request::openai_to_anthropic(&openai).unwrap();
    assert_eq!(anthropic["tool_choice"], json!({"type": "any"}));
}

#[test]
fn max_tokens_has_a_default_and_json_formats_become_a_forced_tool() {
    let openai = json!({
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "colour", "strict": true,
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}
    });
    let (anthropic, json_mode) = request::openai_to_anthropic(&openai).unwrap();
    assert!(json_mode);
    assert_eq!(anthropic["max_tokens"], DEFAULT_ANTHROPIC_MAX_TOKENS);
    assert_eq!(anthropic["tool_choice"], json!({"type": "tool", "name": JSON_TOOL_NAME}));
    assert_eq!(anthropic["tools"][0]["input_schema"]["required"], json!(["name"]));
}

#[test]
fn untranslatable_fields_are_named() {
    let base =
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let cases: &[(&str, Value, &str)] = &[
        ("n", json!(2), "n"),
        ("logprobs", json!(true), "logprobs"),
        ("top_logprobs", json!(3), "top_logprobs"),
        ("temperature", json!(1.5), "temperature"),
        ("seed", json!(7), "seed"),
        ("presence_penalty", json!(0.5), "presence_penalty"),
        ("audio", json!({"voice": "alloy"}), "audio"),
        ("modalities", json!(["text", "audio"]), "modalities"),
        ("reasoning_effort", json!("low"), "reasoning_effort"),
        ("some_future_field", json!(1), "some_future_field"),
    ];
    for (key, value, field) in cases {
        let mut body = base.clone();
        body[*key] = value.clone();
        let error = request::openai_to_anthropic(&body).unwrap_err();
        assert_eq!(error.field, *field, "{key}");
    }
    // Defaults of the other API pass.
    let mut body = base.clone();
    for (key, value) in [
        ("n", json!(1)),
        ("logprobs", json!(false)),
        ("frequency_penalty", json!(0)),
        ("modalities", json!(["text"])),
    ] {
        body[key] = value;
    }
    request::openai_to_anthropic(&body).unwrap();
    // Nested fields are named by their path.
    let mut body = base.clone();
    body["messages"] =
        json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]);
    assert_eq!(
        request::openai_to_anthropic(&body).unwrap_err().field,
        "messages[0].content[0].type"
    );
    let mut body = base;
    body["messages"][0]["name"] = json!("alice");
    assert_eq!(request::openai_to_anthropic(&body).unwrap_err().field, "messages[0].name");

    let anthropic = json!({"model": "gpt-4o", "max_tokens": 10, "top_k": 5,
                           "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(request::anthropic_to_openai(&anthropic).unwrap_err().field, "top_k");
    let thinking = json!({"model": "gpt-4o", "max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 1024},
                          "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(request::anthropic_to_openai(&thinking).unwrap_err().field, "thinking");
    let document = json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]}]});
    assert_eq!(
        request::anthropic_to_openai(&document).unwrap_err().field,
        "messages[0].content[0].type"
    );
}

#[test]
fn an_anthropic_request_becomes_an_openai_one() {
    let anthropic = json!({
        "model": "gpt-4o-mini",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "text", "text": "Weather in Paris?"}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather of a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.5,
        "stream": true,
        "metadata": {"user_id": "u-7"}
    });
    let openai = request::anthropic_to_openai(&anthropic).unwrap();
    assert_eq!(
        openai,
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 1024,
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "text", "text": "Weather in Paris?"}
                ]},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "stop": ["\n\nHuman:"],
            "temperature": 0.5,
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-7"
        })
    );
    // Reasoning models take max_completion_tokens.
    let mut reasoning = anthropic;
    reasoning["model"] = json!("o4-mini");
    let openai = request::anthropic_to_openai(&reasoning).unwrap();
    assert_eq!(openai["max_completion_tokens"], 1024);
    assert!(openai.get("max_tokens").is_none());
}

/// Anthropic's tool-use answer, with prompt-cache usage.
fn anthropic_message() -> Value {
    json!({
        "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [
            {"type": "text", "text": "I'll check the weather."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2048, "output_tokens": 89}
    })
}

#[test]
fn an_anthropic_answer_becomes_a_chat_completion() {
    let openai = response::anthropic_to_openai(&anthropic_message(), false, 1_700_000_000).unwrap();
    assert_eq!(
        openai,
        json!({
            "id": "chatcmpl-msg_01Aq9w938a90dw8q", "object": "chat.completion", "created": 1_700_000_000,
            "model": "claude-haiku-4-5-20251001",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "I'll check the weather.", "refusal": null,
                "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
            }}],
            "usage": {"prompt_tokens": 2620, "completion_tokens": 89, "total_tokens": 2709,
                      "prompt_tokens_details": {"cached_tokens": 2048},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        })
    );
    // The translated usage reads back to the same totals the native one gives (cache writes
    // count as uncached input in OpenAI's terms; the record keeps the native usage).
    let native = Usage::from_anthropic_usage(&anthropic_message()["usage"]).unwrap();
    let translated = Usage::from_openai_usage(&openai["usage"]).unwrap();
    assert_eq!(native.input_tokens, translated.input_tokens);
    assert_eq!(native.cache_read_tokens, translated.cache_read_tokens);
    assert_eq!(native.output_tokens, translated.output_tokens);

    // JSON mode: the forced tool's input is the answer's text.
    let json_answer = json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "tool_use", "id": "toolu_2", "name": JSON_TOOL_NAME, "input": {"name": "teal"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    });
    let openai = response::anthropic_to_openai(&json_answer, true, 0).unwrap();
    assert_eq!(openai["choices"][0]["message"]["content"], "{\"name\":\"teal\"}");
    assert_eq!(openai["choices"][0]["finish_reason"], "stop");
    assert!(openai["choices"][0]["message"].get("tool_calls").is_none());
}

#[test]
fn a_chat_completion_becomes_an_anthropic_message() {
    let completion = json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1_741_570_283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                  "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
        "system_fingerprint": "fp_06737a9306"
    });
    let anthropic = response::openai_to_anthropic(&completion).unwrap();
    assert_eq!(
        anthropic,
        json!({
            "id": "msg_chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "type": "message", "role": "assistant",
            "model": "gpt-4o-mini-2024-07-18",
            "content": [{"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 93, "output_tokens": 46, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024}
        })
    );
    let back = Usage::from_anthropic_usage(&anthropic["usage"]).unwrap();
    assert_eq!((back.input_tokens, back.cache_read_tokens, back.output_tokens), (1117, 1024, 46));
    for (finish, stop) in
        [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]
    {
        assert_eq!(response::stop_reason_of(finish), stop);
    }
}

/// Anthropic's documented streaming example with a tool call (event names and data as sent).
const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":2048,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\", checking.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

#[test]
fn an_anthropic_stream_becomes_openai_chunks() {
    let mut translator = stream::AnthropicToOpenAiStream::new(false, true, 1_700_000_000);
    let out: Vec<u8> = events(ANTHROPIC_STREAM.as_bytes())
        .iter()
        .flat_map(|event| translator.push(event))
        .collect();
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    let chunks = data_of(&out);
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
    let text: String = deltas.iter().filter_map(|d| d["content"].as_str()).collect();
    assert_eq!(text, "Okay, checking.");
    let call = deltas.iter().find_map(|d| d.get("tool_calls")).unwrap();
    assert_eq!(call[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(call[0]["function"]["name"], "get_weather");
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d.get("tool_calls"))
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U");
    }
    // The usage chunk, read by the OpenAI stream normaliser, gives the native totals.
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    let mut normaliser = StreamUsage::new(Protocol::OpenAi);
    for event in events(&out) {
        normaliser.observe(&event.data);
    }
    let usage = normaliser.usage().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens),
        (2520, 2048, 89)
    );
    assert!(normaliser.finished());

    // Without include_usage, no usage chunk.
    let mut translator = stream::AnthropicToOpenAiStream::new(false, false, 0);
    let out: Vec<u8> = events(ANTHROPIC_STREAM.as_bytes())
        .iter()
        .flat_map(|event| translator.push(event))
        .collect();
    assert!(data_of(&out).iter().all(|c| c.get("usage").is_none()));
}

/// OpenAI's chunks for a text answer then a tool call, with the usage chunk
/// (`stream_options.include_usage`).
const OPENAI_STREAM: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_DdmO9pD3xa9XTPNJ32zg2hcA\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":46,\"total_tokens\":1163,\"prompt_tokens_details\":{\"cached_tokens\":1024},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n\
data: [DONE]\n\n";

#[test]
fn openai_chunks_become_an_anthropic_stream() {
    let mut translator = stream::OpenAiToAnthropicStream::new();
    let out: Vec<u8> =
        events(OPENAI_STREAM.as_bytes()).iter().flat_map(|event| translator.push(event)).collect();
    let decoded = events(&out);
    let names: Vec<&str> = decoded.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data = data_of(&out);
    // Each event's `type` is its name, as Anthropic sends them.
    for (event, value) in decoded.iter().zip(&data) {
        assert_eq!(value["type"], event.event.as_deref().unwrap());
    }
    assert_eq!(data[0]["message"]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(data[2]["delta"], json!({"type": "text_delta", "text": "Checking"}));
    assert_eq!(
        data[4]["content_block"],
        json!({"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}})
    );
    assert_eq!(data[4]["index"], 1);
    let json: String =
        data[5..7].iter().map(|d| d["delta"]["partial_json"].as_str().unwrap()).collect();
    assert_eq!(json, "{\"city\":\"Paris\"}");
    assert_eq!(data[8]["delta"]["stop_reason"], "tool_use");
    // The Anthropic stream normaliser reads the final usage from message_delta.
    let mut normaliser = StreamUsage::new(Protocol::Anthropic);
    for event in &decoded {
        normaliser.observe(&event.data);
    }
    let usage = normaliser.usage().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens),
        (1117, 1024, 46)
    );
    assert_eq!(normaliser.stop_reason(), Some("tool_use"));
    assert!(normaliser.finished());
}

#[test]
fn a_json_answer_streams_as_content() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"json_answer\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"name\\\":\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"teal\\\"}\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":6}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut translator = stream::AnthropicToOpenAiStream::new(true, false, 0);
    let out: Vec<u8> =
        events(stream.as_bytes()).iter().flat_map(|event| translator.push(event)).collect();
    let chunks = data_of(&out);
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "{\"name\":\"teal\"}");
    assert!(chunks.iter().all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn upstream_errors_come_back_in_the_callers_shape() {
    #[derive(Debug)]
    struct Nothing;
    impl Provider for Nothing {
        fn id(&self) -> &str {
            "anthropic"
        }
        fn speaks(&self, protocol: Protocol) -> bool {
            protocol == Protocol::Anthropic
        }
        fn chat(&self, _: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ProviderError>> {
            Box::pin(async { Err(ProviderError::Transport("unused".into())) })
        }
        fn chat_stream(&self, _: ChatRequest) -> BoxFuture<'_, Result<ChatStream, ProviderError>> {
            Box::pin(async { Err(ProviderError::Transport("unused".into())) })
        }
    }
    let translating = Translating::new(Arc::new(Nothing), Protocol::OpenAi).unwrap();
    assert!(Translating::new(Arc::new(Nothing), Protocol::Anthropic).is_none());
    let body = Bytes::from_static(
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    let mapped: Value = serde_json::from_slice(&translating.error_body(&body)).unwrap();
    assert_eq!(
        mapped,
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
}
