//! Request parsing on the proxy routes, fuzzed: a few thousand malformed and mutated bodies,
//! generated from a fixed seed, go through `router(state)` with `oneshot` to a simulated
//! upstream on loopback.
//!
//! For every body: no panic and no hang, never a 5xx other than 502, and every error answer is
//! JSON in the caller's protocol shape (OpenAI `{"error": {"message", "type"}}` on
//! `/v1/chat/completions`, Anthropic `{"type": "error", "error": {"type", "message"}}` on
//! `/v1/messages`). Bodies built to be malformed (truncated, not an object, invalid UTF-8, no
//! string `model`) must be refused by the gateway itself with a 400, before any upstream call.
//! Mutated bodies are judged by an independent parse (`serde_json::Value`): one that is not an
//! object with a string `model` must get a 4xx; one that is may also be answered upstream (2xx,
//! or an upstream 4xx, or a 502).

use std::{fmt::Write as _, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use futures::StreamExt;
use http_body_util::BodyExt;
use llmopt_gateway::router;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{TestGateway, config_text, sim_server};

/// The fuzzer's seed: change it to explore other bodies, keep it fixed in the suite.
const SEED: u64 = 0x5EED_0FBA_DB0D_1E50;

/// Calls in flight at once (the simulated upstream answers with no delay).
const CONCURRENCY: usize = 8;

/// Long enough for a debug build on a busy machine; a hang is a failure, not a slow test.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    OpenAi,
    Anthropic,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::OpenAi => "/v1/chat/completions",
            Route::Anthropic => "/v1/messages",
        }
    }

    /// Valid bodies of this protocol, each answered 200 by the simulated upstream. No trailing
    /// whitespace: every strict prefix of one is then invalid JSON.
    fn templates(self) -> &'static [&'static str] {
        match self {
            Route::OpenAi => &[
                r#"{"model":"sim-small","messages":[{"role":"user","content":"What is 2+2?"}],"max_tokens":16}"#,
                r#"{"model":"sim-small","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Name a colour. é ✓ 😀"}],"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#,
                r#"{"model":"sim-small","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":8,"top_p":0.5,"n":1,"stop":["\n"],"seed":7,"user":"u-1","metadata":{"k":"v"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],"tool_choice":"auto","response_format":{"type":"text"}}"#,
            ],
            Route::Anthropic => &[
                r#"{"model":"sim-large","max_tokens":16,"messages":[{"role":"user","content":"What is 2+2?"}]}"#,
                r#"{"model":"sim-large","max_tokens":32,"system":"Be terse.","messages":[{"role":"user","content":"Name a colour. é ✓ 😀"}],"temperature":0,"stream":true}"#,
                r#"{"model":"sim-large","max_tokens":8,"system":[{"type":"text","text":"Rules.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object"}}],"metadata":{"user_id":"u-1"},"stop_sequences":["\n"],"top_k":5}"#,
            ],
        }
    }

    /// Top-level fields each protocol knows, given wrong types one by one.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Route::OpenAi => &[
                "model",
                "messages",
                "stream",
                "stream_options",
                "max_tokens",
                "max_completion_tokens",
                "temperature",
                "top_p",
                "n",
                "stop",
                "tools",
                "tool_choice",
                "seed",
                "user",
                "metadata",
                "response_format",
            ],
            Route::Anthropic => &[
                "model",
                "messages",
                "max_tokens",
                "stream",
                "system",
                "temperature",
                "top_k",
                "tools",
                "metadata",
                "stop_sequences",
            ],
        }
    }

    /// What is wrong with `body` as an error answer of this protocol, if anything.
    fn error_shape_problem(self, body: &Value) -> Option<&'static str> {
        let error = &body["error"];
        let strings = error["type"].is_string() && error["message"].is_string();
        match self {
            Route::OpenAi if !strings => Some("not {\"error\": {\"message\", \"type\"}}"),
            Route::Anthropic if body["type"] != "error" || !strings => {
                Some("not {\"type\": \"error\", \"error\": {\"type\", \"message\"}}")
            }
            _ => None,
        }
    }
}

/// What a case must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A valid body: 200.
    Success,
    /// Malformed by construction: the gateway's own 400, no upstream call.
    Refused,
    /// Judged by the independent parse ([`goes_upstream`]).
    ByParse,
}

#[derive(Debug)]
struct Case {
    route: Route,
    kind: &'static str,
    body: Vec<u8>,
    expect: Expect,
}

impl Case {
    fn new(route: Route, kind: &'static str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
        Case { route, kind, body: body.into(), expect }
    }
}

/// Whether an independent parse sees a JSON object with a string `model` (last duplicate key
/// wins, as in the gateway). Anything else must be refused with a 4xx, by the gateway or, for a
/// body the gateway passes on untouched (nesting deeper than `Value`'s limit of 128, numbers
/// beyond f64, lone surrogates), by the upstream.
fn goes_upstream(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<Value>(body),
        Ok(Value::Object(fields)) if fields.get("model").is_some_and(Value::is_string)
    )
}

fn deep_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// Values of every wrong type (and some of the right type but absurd), as raw JSON text so that
/// huge numbers and deep nesting are written as a client would send them.
fn garbage_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "null",
        "true",
        "false",
        r#""yes""#,
        r#""""#,
        "-1",
        "0",
        "-0",
        "1.5",
        "-2.5e3",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551616",
        "-9223372036854775809",
        "4294967296",
        "[]",
        "{}",
        r#"[null,{},[],"x",1,true]"#,
        r#"{"a":{"b":[1,{"c":null,"d":[[["e"]]]}]},"":"","\u0000":0}"#,
        r#""\ud800""#,
        r#""\udc00\ud800""#,
        r#""\u0000\u001f\"\\""#,
    ]
    .map(str::to_owned)
    .to_vec();
    values.push(format!("\"{}\"", "x".repeat(10_000)));
    values.push("9".repeat(5_000));
    values.push(format!("0.{}1", "0".repeat(5_000)));
    values.push(deep_arrays(200));
    values.push(deep_arrays(10_000));
    values.push(deep_objects(2_000));
    values
}

/// `template` with `field` replaced (or added) with the raw text `value`.
fn with_field(template: &str, field: &str, value: &str) -> String {
    let parsed: serde_json::Map<String, Value> =
        serde_json::from_str(template).expect("templates are JSON objects");
    let mut body = String::from("{");
    let mut replaced = false;
    for (key, existing) in &parsed {
        if body.len() > 1 {
            body.push(',');
        }
        let raw = if key == field {
            replaced = true;
            value.to_owned()
        } else {
            existing.to_string()
        };
        write!(body, "{}:{raw}", Value::from(key.as_str())).expect("writing to a String");
    }
    if !replaced {
        write!(body, ",{}:{value}", Value::from(field)).expect("writing to a String");
    }
    body.push('}');
    body
}

/// A random JSON value up to `depth` levels, with the awkward corners over-represented.
fn random_json(rng: &mut Xoshiro256PlusPlus, depth: u32) -> String {
    let pick = if depth == 0 { rng.gen_range(0..6) } else { rng.gen_range(0..8) };
    match pick {
        0 => ["null", "true", "false"][rng.gen_range(0..3)].to_owned(),
        1 => rng.gen_range(i64::MIN..=i64::MAX).to_string(),
        2 => ["1e400", "-0.0", "1.0e-7", "340282366920938463463374607431768211456", "0.5"]
            [rng.gen_range(0..5)]
        .to_owned(),
        3 => format!("{}", rng.gen_range(-1e6..1e6)),
        4 => {
            let text: String = (0..rng.gen_range(0..12))
                .map(|_| {
                    ['a', 'é', '😀', '"', '\\', '\n', '\u{0}', '\u{7f}', ' ', '{']
                        [rng.gen_range(0..10)]
                })
                .collect();
            Value::from(text).to_string()
        }
        5 => ["\"sim-small\"", "\"sim-large\"", "\"user\"", "\"\\ud83d\\ude00\""]
            [rng.gen_range(0..4)]
        .to_owned(),
        6 => {
            let items: Vec<String> =
                (0..rng.gen_range(0..4)).map(|_| random_json(rng, depth - 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let keys = ["model", "messages", "role", "content", "stream", "max_tokens", "", "k"];
            let items: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| {
                    let key = keys[rng.gen_range(0..keys.len())];
                    format!("\"{key}\":{}", random_json(rng, depth - 1))
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// One to four random byte-level edits of `template`.
fn mutate(rng: &mut Xoshiro256PlusPlus, template: &str) -> Vec<u8> {
    const SIGNIFICANT: &[u8] = b"{}[]\",:\\ 0-e.nt\x00\x7f\x80\xbf\xc3\xed\xf0\xff";
    let mut body = template.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if body.is_empty() {
            break;
        }
        let at = rng.gen_range(0..body.len());
        match rng.gen_range(0..5) {
            0 => body[at] = rng.gen_range(0..=u8::MAX),
            1 => body[at] ^= 1 << rng.gen_range(0..8),
            2 => {
                body.remove(at);
            }
            3 => body.insert(at, SIGNIFICANT[rng.gen_range(0..SIGNIFICANT.len())]),
            _ => {
                // Duplicate a slice: repeated keys, doubled brackets.
                let end = (at + rng.gen_range(1..24)).min(body.len());
                let copy = body[at..end].to_vec();
                body.splice(at..at, copy);
            }
        }
    }
    body
}

fn cases() -> Vec<Case> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    let mut cases = Vec::new();
    let garbage = garbage_values();
    for route in [Route::OpenAi, Route::Anthropic] {
        let templates = route.templates();
        let first = templates[0];
        for template in templates {
            cases.push(Case::new(route, "valid template", *template, Expect::Success));
            // Every strict prefix, the empty body included.
            for cut in 0..template.len() {
                cases.push(Case::new(
                    route,
                    "truncation",
                    &template.as_bytes()[..cut],
                    Expect::Refused,
                ));
            }
            for _ in 0..150 {
                cases.push(Case::new(
                    route,
                    "byte edits",
                    mutate(&mut rng, template),
                    Expect::ByParse,
                ));
            }
        }
        // Wrong types for each known field, and inside a message.
        for field in route.fields() {
            for value in &garbage {
                let expect = if *field == "model" && !value.starts_with('"') {
                    Expect::Refused
                } else {
                    Expect::ByParse
                };
                cases.push(Case::new(route, "wrong type", with_field(first, field, value), expect));
            }
        }
        for value in &garbage {
            for messages in [
                format!(r#"[{{"role":"user","content":{value}}}]"#),
                format!(r#"[{{"role":{value},"content":"hi"}}]"#),
                format!("[{value}]"),
            ] {
                cases.push(Case::new(
                    route,
                    "wrong type in a message",
                    with_field(first, "messages", &messages),
                    Expect::ByParse,
                ));
            }
        }
        // Not a JSON object, or not JSON at all.
        let not_objects = [
            String::new(),
            " \n\t".to_owned(),
            "null".to_owned(),
            "true".to_owned(),
            "0".to_owned(),
            "1e400".to_owned(),
            "\"sim-small\"".to_owned(),
            "[]".to_owned(),
            format!("[{first}]"),
            format!("{first}{first}"),
            format!("{first}x"),
            format!("{first},"),
            format!("\u{feff}{first}"),
            first.replacen('{', "{/* comment */", 1),
            first.replace('"', "'"),
            first.replacen('}', ",}", 1),
            first.replacen(":16", ":NaN", 1).replacen(":\"sim", ":Infinity,\"x\":\"sim", 1),
            "{\"model\":\"sim-small\"".to_owned(),
            "{\"model\" \"sim-small\"}".to_owned(),
            "{model:\"sim-small\"}".to_owned(),
            "{\"model\":\"sim-small\",}".to_owned(),
            "{\"model\":\"sim-\nsmall\"}".to_owned(),
            deep_arrays(10_000),
            "[".repeat(100_000),
            "{\"a\":".repeat(50_000),
            deep_objects(10_000),
            format!("{{\"model\":{}}}", deep_arrays(10_000)),
        ];
        for body in not_objects {
            cases.push(Case::new(route, "not a JSON object with a model", body, Expect::Refused));
        }
        // Invalid UTF-8 in a value, in a key, outside strings.
        for bad in [&b"\xff"[..], b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"] {
            for needle in [&b"2+2"[..], b"model", b"sim-", b":16"] {
                let Some(at) = first.as_bytes().windows(needle.len()).position(|w| w == needle)
                else {
                    continue;
                };
                let mut body = first.as_bytes().to_vec();
                body.splice(at..at, bad.iter().copied());
                cases.push(Case::new(route, "invalid UTF-8", body, Expect::Refused));
            }
        }
        // Deep nesting inside fields the gateway passes through.
        for field in ["metadata", "tools", "messages"] {
            for deep in [deep_arrays(10_000), deep_objects(10_000)] {
                cases.push(Case::new(
                    route,
                    "deep nesting",
                    with_field(first, field, &deep),
                    Expect::ByParse,
                ));
            }
        }
        // Duplicate keys, also through escapes: the last one wins in the gateway as in the
        // reference parse, and only the winner is forwarded.
        let rest = &first[1..];
        let model = if route == Route::OpenAi { "sim-small" } else { "sim-large" };
        for prefix in [
            "\"model\":5,".to_owned(),
            "\"model\":\"nope\",".to_owned(),
            "\"mod\\u0065l\":\"nope\",".to_owned(),
            "\"stream\":true,".to_owned(),
            "\"messages\":\"hi\",".to_owned(),
        ] {
            cases.push(Case::new(
                route,
                "duplicate keys",
                format!("{{{prefix}{rest}"),
                Expect::ByParse,
            ));
        }
        for suffix in [
            ",\"model\":5".to_owned(),
            ",\"model\":null".to_owned(),
            ",\"mod\\u0065l\":[\"x\"]".to_owned(),
            format!(",\"model\":\"{model}\",\"model\":{{}}"),
        ] {
            let body = format!("{}{suffix}}}", &first[..first.len() - 1]);
            cases.push(Case::new(route, "duplicate keys", body, Expect::Refused));
        }
        for suffix in
            [",\"stream\":\"yes\"", ",\"stream\":false,\"stream\":1", ",\"max_tokens\":-1"]
        {
            let body = format!("{}{suffix}}}", &first[..first.len() - 1]);
            cases.push(Case::new(route, "duplicate keys", body, Expect::ByParse));
        }
        // Random objects mixing known keys and random values.
        for _ in 0..200 {
            let mut body = String::from("{");
            for index in 0..rng.gen_range(0..6) {
                if index > 0 {
                    body.push(',');
                }
                let field = route.fields()[rng.gen_range(0..route.fields().len())];
                write!(body, "\"{field}\":{}", random_json(&mut rng, 4)).expect("String");
            }
            body.push('}');
            cases.push(Case::new(route, "random object", body, Expect::ByParse));
        }
    }
    cases
}

/// Sends one case and says what is wrong with the answer, if anything.
async fn check(app: Router, case: &Case) -> Result<Outcome, String> {
    let request = Request::post(case.route.path())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(case.body.clone()))
        .map_err(|error| format!("cannot build the request: {error}"))?;
    let call = async {
        let response = app.oneshot(request).await.map_err(|error| format!("{error:?}"))?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|error| format!("body: {error}"))?.to_bytes();
        Ok::<_, String>((parts, bytes))
    };
    let (parts, bytes) = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))??;
    let status = parts.status;
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    let upstream = goes_upstream(&case.body);
    let reached_upstream = parts.headers.contains_key("x-llmopt-served-model");
    let allowed =
        status.is_success() || status.is_client_error() || status == StatusCode::BAD_GATEWAY;
    if !allowed {
        return Err(format!("status {status}: {}", shown()));
    }
    match case.expect {
        Expect::Success if status != StatusCode::OK => {
            return Err(format!("valid body answered {status}: {}", shown()));
        }
        Expect::Refused if status != StatusCode::BAD_REQUEST || reached_upstream => {
            return Err(format!(
                "malformed body not refused by the gateway with 400 (got {status}, upstream \
                 reached: {reached_upstream}): {}",
                shown()
            ));
        }
        _ => {}
    }
    if !upstream && !status.is_client_error() {
        return Err(format!("not an object with a string model, yet {status}: {}", shown()));
    }
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if status.is_success() {
        if content_type.starts_with("text/event-stream") {
            if !bytes.starts_with(b"data:") && !bytes.starts_with(b"event:") {
                return Err(format!("a 2xx stream that is not SSE: {}", shown()));
            }
        } else if !serde_json::from_slice::<Value>(&bytes).is_ok_and(|value| value.is_object()) {
            return Err(format!("a 2xx answer that is not a JSON object: {}", shown()));
        }
        return Ok(Outcome::Answered);
    }
    if !content_type.starts_with("application/json") {
        return Err(format!("{status} with content-type {content_type:?}: {}", shown()));
    }
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(format!("{status} with a body that is not JSON: {}", shown()));
    };
    if let Some(problem) = case.route.error_shape_problem(&value) {
        return Err(format!("{status} in the wrong shape ({problem}): {}", shown()));
    }
    Ok(if reached_upstream { Outcome::RefusedUpstream } else { Outcome::RefusedByGateway })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    RefusedByGateway,
    RefusedUpstream,
}

fn describe(case: &Case) -> String {
    let text = String::from_utf8_lossy(&case.body);
    let mut shown: String = text.chars().take(160).collect();
    if text.chars().count() > 160 {
        write!(shown, "… ({} bytes)", case.body.len()).expect("String");
    }
    format!("{} {} [{}] {shown:?}", case.route.path(), case.kind, case.body.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_4xx_in_the_callers_shape_and_never_panic() {
    let sim = sim_server(0.0).await;
    let gateway = TestGateway::from_toml(&config_text(&sim, ""));
    let app = router(gateway.state.clone());
    let cases = cases();
    assert!(cases.len() > 2_000, "only {} cases", cases.len());

    // Each call in its own task: a panic in the gateway becomes a failure naming its input
    // instead of aborting the run at the first one.
    let results: Vec<(String, Result<Outcome, String>)> = futures::stream::iter(cases)
        .map(|case| {
            let app = app.clone();
            async move {
                let description = describe(&case);
                let joined = tokio::spawn(async move { check(app, &case).await }).await;
                let result =
                    joined.unwrap_or_else(|error| Err(format!("the call panicked: {error}")));
                (description, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut failures = Vec::new();
    let (mut answered, mut refused_by_gateway, mut refused_upstream) = (0usize, 0usize, 0usize);
    for (description, result) in &results {
        match result {
            Ok(Outcome::Answered) => answered += 1,
            Ok(Outcome::RefusedByGateway) => refused_by_gateway += 1,
            Ok(Outcome::RefusedUpstream) => refused_upstream += 1,
            Err(problem) => failures.push(format!("{description}\n    → {problem}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed; the first ones:\n{}",
        failures.len(),
        results.len(),
        failures.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    // The fuzzer reached every part of the path, not only the first refusal.
    assert!(answered >= 50, "only {answered} answered upstream");
    assert!(refused_by_gateway >= 1_000, "only {refused_by_gateway} refused by the gateway");
    assert!(refused_upstream >= 50, "only {refused_upstream} refused upstream");
}
