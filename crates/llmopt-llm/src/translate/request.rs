//! Request bodies: OpenAI Chat Completions ⇄ Anthropic Messages.
//!
//! Every top-level field is either mapped, or known to mean nothing on the other side and
//! consumed on purpose (listed below), or refused with an [`Untranslatable`] naming it: a
//! field the target API would have to ignore is never dropped silently.
//!
//! Consumed on purpose:
//! - `stream_options` (OpenAI): whether the caller wants the usage chunk, which the stream
//!   translation honours; the upstream Anthropic stream always carries usage.
//! - `cache_control` markers (Anthropic): OpenAI caches prompt prefixes on its own, without
//!   markers; usage still reports the cached tokens, so cost stays exact.
//! - `service_tier` `auto` / `default`, `store: false`, `parallel_tool_calls: true`,
//!   `n: 1`, `logprobs: false`, zero penalties, empty `logit_bias`, `modalities: ["text"]`:
//!   each is the other API's default behaviour.
//! - an image part's `detail` hint (OpenAI): Anthropic has no resolution hint.

use serde_json::{Map, Value, json};

use super::{JSON_TOOL_NAME, Untranslatable};

/// `max_tokens` sent to Anthropic when an OpenAI request sets no limit (Anthropic requires
/// one). 4,096 is what LiteLLM sends too, and within every current Claude model's output
/// limit; a caller that needs longer answers sets `max_tokens` or `max_completion_tokens`.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4_096;

/// The Anthropic request for an OpenAI chat request, and whether its JSON answer comes back as
/// the forced [`JSON_TOOL_NAME`] tool (`response_format` json_schema / json_object).
pub fn openai_to_anthropic(request: &Value) -> Result<(Value, bool), Untranslatable> {
    let fields = request
        .as_object()
        .ok_or_else(|| Untranslatable::new("body", "the body is not a JSON object"))?;
    let to = "Anthropic";
    let mut out = Map::new();
    let mut max_tokens: Option<u64> = None;
    let mut tool_choice: Option<Value> = None;
    let mut disable_parallel = false;
    let mut json_mode: Option<Value> = None;
    for (key, value) in fields {
        match key.as_str() {
            "model" | "stream" => {
                out.insert(key.clone(), value.clone());
            }
            "stream_options" => {}
            "messages" => {
                let (system, messages) = openai_messages(value)?;
                if let Some(system) = system {
                    out.insert("system".to_owned(), system);
                }
                out.insert("messages".to_owned(), messages);
            }
            "max_tokens" | "max_completion_tokens" => {
                if value.is_null() {
                    continue;
                }
                let limit = value
                    .as_u64()
                    .ok_or_else(|| Untranslatable::new(key, "not a non-negative integer"))?;
                max_tokens = Some(max_tokens.map_or(limit, |other| other.min(limit)));
            }
            "temperature" => {
                if value.is_null() {
                    continue;
                }
                let temperature =
                    value.as_f64().ok_or_else(|| Untranslatable::new(key, "not a number"))?;
                if temperature > 1.0 {
                    return Err(Untranslatable::new(
                        key,
                        format!("{temperature} is above 1, the highest temperature {to} accepts"),
                    ));
                }
                out.insert(key.clone(), value.clone());
            }
            "top_p" => {
                if !value.is_null() {
                    out.insert(key.clone(), value.clone());
                }
            }
            "stop" => match value {
                Value::Null => {}
                Value::String(stop) => {
                    out.insert("stop_sequences".to_owned(), json!([stop]));
                }
                Value::Array(_) => {
                    out.insert("stop_sequences".to_owned(), value.clone());
                }
                _ => return Err(Untranslatable::new(key, "not a string or an array of strings")),
            },
            "tools" => {
                if !value.is_null() {
                    out.insert("tools".to_owned(), openai_tools(value)?);
                }
            }
            "tool_choice" => tool_choice = Some(value.clone()).filter(|v| !v.is_null()),
            "parallel_tool_calls" => match value {
                Value::Bool(false) => disable_parallel = true,
                Value::Bool(true) | Value::Null => {}
                _ => return Err(Untranslatable::new(key, "not a boolean")),
            },
            "response_format" => json_mode = openai_response_format(value)?,
            "user" => {
                if let Some(user) = value.as_str() {
                    out.insert("metadata".to_owned(), json!({"user_id": user}));
                }
            }
            "n" if value.is_null() || value.as_u64() == Some(1) => {}
            "n" => {
                return Err(Untranslatable::new(key, format!("{to} answers one choice per call")));
            }
            "logprobs" if value.is_null() || value == &Value::Bool(false) => {}
            "top_logprobs" | "logprobs" if value.is_null() => {}
            "logprobs" | "top_logprobs" => {
                return Err(Untranslatable::new(key, format!("{to} returns no log probabilities")));
            }
            "presence_penalty" | "frequency_penalty"
                if value.is_null() || value.as_f64() == Some(0.0) => {}
            "logit_bias" if value.is_null() || value.as_object().is_some_and(Map::is_empty) => {}
            "service_tier" if matches!(value.as_str(), None | Some("auto" | "default")) => {}
            "store" if value.is_null() || value == &Value::Bool(false) => {}
            "metadata" if value.is_null() || value.as_object().is_some_and(Map::is_empty) => {}
            "modalities" if value.is_null() || value == &json!(["text"]) => {}
            _ => {
                return Err(Untranslatable::new(key, format!("{to} has no equivalent")));
            }
        }
    }
    out.insert(
        "max_tokens".to_owned(),
        Value::from(max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS)),
    );
    let mut choice = match tool_choice {
        None => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            other => {
                return Err(Untranslatable::new("tool_choice", format!("unknown mode `{other}`")));
            }
        },
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| choice.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    Untranslatable::new("tool_choice", "only {\"type\": \"function\"} choices map")
                })?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(Untranslatable::new("tool_choice", "not a string or an object")),
    };
    if let Some(schema) = json_mode.clone() {
        if out.contains_key("tools") || choice.is_some() {
            return Err(Untranslatable::new(
                "response_format",
                "with tools, a JSON answer has no equivalent (it is sent as a forced tool call)",
            ));
        }
        out.insert(
            "tools".to_owned(),
            json!([{
                "name": JSON_TOOL_NAME,
                "description": "Answer with the requested JSON object as this tool's input.",
                "input_schema": schema,
            }]),
        );
        choice = Some(json!({"type": "tool", "name": JSON_TOOL_NAME}));
    }
    // Without tools, `auto` and `none` choose nothing: Anthropic refuses a choice without tools.
    if !out.contains_key("tools")
        && choice.as_ref().is_some_and(|c| matches!(c["type"].as_str(), Some("auto" | "none")))
    {
        choice = None;
    }
    if disable_parallel && out.contains_key("tools") {
        let mut value = choice.unwrap_or_else(|| json!({"type": "auto"}));
        if value["type"] != "none"
            && let Some(object) = value.as_object_mut()
        {
            object.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
        }
        choice = Some(value);
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".to_owned(), choice);
    }
    Ok((Value::Object(out), json_mode.is_some()))
}

/// `response_format`: the input schema of the forced JSON tool, or `None` for plain text.
fn openai_response_format(value: &Value) -> Result<Option<Value>, Untranslatable> {
    let field = "response_format";
    match value.get("type").and_then(Value::as_str) {
        None if value.is_null() => Ok(None),
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => {
            let schema = value
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .cloned()
                .ok_or_else(|| Untranslatable::new(field, "json_schema without a schema"))?;
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(Untranslatable::new(
                    field,
                    "only an object schema maps (it becomes a tool's input schema)",
                ));
            }
            Ok(Some(schema))
        }
        _ => Err(Untranslatable::new(field, "unknown type")),
    }
}

fn openai_tools(value: &Value) -> Result<Value, Untranslatable> {
    let tools = value.as_array().ok_or_else(|| Untranslatable::new("tools", "not an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let field = format!("tools[{index}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Untranslatable::new(&field, "only function tools map"));
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| Untranslatable::new(&field, "no function"))?;
        let mut mapped = Map::new();
        for (key, value) in function {
            match key.as_str() {
                "name" | "description" => {
                    mapped.insert(key.clone(), value.clone());
                }
                "parameters" => {
                    mapped.insert("input_schema".to_owned(), value.clone());
                }
                "strict" if value != &Value::Bool(true) => {}
                "strict" => {
                    return Err(Untranslatable::new(
                        format!("{field}.function.strict"),
                        "strict schema adherence has no equivalent for Anthropic tools",
                    ));
                }
                _ => {
                    return Err(Untranslatable::new(
                        format!("{field}.function.{key}"),
                        "no equivalent",
                    ));
                }
            }
        }
        mapped.entry("input_schema").or_insert_with(|| json!({"type": "object", "properties": {}}));
        out.push(Value::Object(mapped));
    }
    Ok(Value::Array(out))
}

/// OpenAI messages → Anthropic `system` and `messages`. System and developer messages become
/// the system prompt (in order, wherever they were); tool results become `tool_result` blocks
/// of a user turn; consecutive turns of one role are merged (Anthropic alternates roles).
fn openai_messages(value: &Value) -> Result<(Option<Value>, Value), Untranslatable> {
    let messages =
        value.as_array().ok_or_else(|| Untranslatable::new("messages", "not an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let field = format!("messages[{index}]");
        let object =
            message.as_object().ok_or_else(|| Untranslatable::new(&field, "not an object"))?;
        let role = object.get("role").and_then(Value::as_str).unwrap_or_default();
        for key in object.keys() {
            let known = match role {
                "assistant" => {
                    matches!(key.as_str(), "role" | "content" | "tool_calls" | "refusal")
                }
                "tool" => matches!(key.as_str(), "role" | "content" | "tool_call_id"),
                _ => matches!(key.as_str(), "role" | "content"),
            };
            if !known {
                return Err(Untranslatable::new(format!("{field}.{key}"), "no equivalent"));
            }
        }
        let content = object.get("content").unwrap_or(&Value::Null);
        let (anthropic_role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_parts(content, &format!("{field}.content"))?);
                continue;
            }
            "user" => ("user", user_parts(content, &format!("{field}.content"))?),
            "assistant" => {
                let mut blocks = text_parts(content, &format!("{field}.content"))?;
                if let Some(refusal) = object.get("refusal").and_then(Value::as_str) {
                    blocks.push(json!({"type": "text", "text": refusal}));
                }
                if let Some(calls) = object.get("tool_calls").filter(|c| !c.is_null()) {
                    blocks.extend(tool_use_blocks(calls, &format!("{field}.tool_calls"))?);
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = object.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    Untranslatable::new(format!("{field}.tool_call_id"), "missing")
                })?;
                let result = text_parts(content, &format!("{field}.content"))?;
                ("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": result})])
            }
            other => {
                return Err(Untranslatable::new(
                    format!("{field}.role"),
                    format!("role `{other}` has no equivalent"),
                ));
            }
        };
        // An empty text block is refused by Anthropic; an assistant turn with no content at all
        // carries nothing.
        let blocks: Vec<Value> = blocks
            .into_iter()
            .filter(|b| !(b["type"] == "text" && b["text"].as_str().is_some_and(str::is_empty)))
            .collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last)) if last_role == anthropic_role => last.extend(blocks),
            _ => out.push((anthropic_role.to_owned(), blocks)),
        }
    }
    // Within a merged user turn, tool results must come first.
    for (role, blocks) in &mut out {
        if role == "user" {
            blocks.sort_by_key(|block| block["type"] != "tool_result");
        }
    }
    let messages =
        out.into_iter().map(|(role, blocks)| json!({"role": role, "content": blocks})).collect();
    let system = (!system.is_empty()).then_some(Value::Array(system));
    Ok((system, Value::Array(messages)))
}

/// Text content (a string or text parts) as Anthropic text blocks.
fn text_parts(content: &Value, field: &str) -> Result<Vec<Value>, Untranslatable> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(index, part)| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
                Some("refusal") => Ok(json!({"type": "text", "text": part["refusal"]})),
                _ => Err(Untranslatable::new(
                    format!("{field}[{index}].type"),
                    "only text parts map here",
                )),
            })
            .collect(),
        _ => Err(Untranslatable::new(field, "not a string or an array of parts")),
    }
}

/// A user turn's content: text and images.
fn user_parts(content: &Value, field: &str) -> Result<Vec<Value>, Untranslatable> {
    let Value::Array(parts) = content else { return text_parts(content, field) };
    let mut blocks = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let part_field = format!("{field}[{index}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => blocks.push(json!({"type": "text", "text": part["text"]})),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|image| image.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Untranslatable::new(format!("{part_field}.image_url"), "no url")
                    })?;
                blocks.push(json!({"type": "image", "source": image_source(url, &part_field)?}));
            }
            _ => {
                return Err(Untranslatable::new(
                    format!("{part_field}.type"),
                    "only text and image_url parts map",
                ));
            }
        }
    }
    Ok(blocks)
}

/// An image URL as an Anthropic image source: `data:<type>;base64,<data>` as base64, an
/// `http(s)` URL as a URL source.
fn image_source(url: &str, field: &str) -> Result<Value, Untranslatable> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| Untranslatable::new(field, "a data URL that is not base64"))?;
        return Ok(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(Untranslatable::new(field, "an image URL must be a data URL or http(s)"))
}

fn tool_use_blocks(calls: &Value, field: &str) -> Result<Vec<Value>, Untranslatable> {
    let calls = calls.as_array().ok_or_else(|| Untranslatable::new(field, "not an array"))?;
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let field = format!("{field}[{index}]");
            let function = call
                .get("function")
                .ok_or_else(|| Untranslatable::new(&field, "only function calls map"))?;
            let arguments = function.get("arguments").and_then(Value::as_str).unwrap_or("{}");
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|_| {
                    Untranslatable::new(format!("{field}.function.arguments"), "not JSON")
                })?
            };
            Ok(json!({
                "type": "tool_use", "id": call["id"], "name": function["name"], "input": input,
            }))
        })
        .collect()
}

/// The OpenAI request for an Anthropic Messages request. The model decides between
/// `max_tokens` and `max_completion_tokens` (OpenAI's reasoning models refuse the first). A
/// stream asks for its usage chunk, which the stream translation turns into `message_delta`'s
/// usage.
pub fn anthropic_to_openai(request: &Value) -> Result<Value, Untranslatable> {
    let fields = request
        .as_object()
        .ok_or_else(|| Untranslatable::new("body", "the body is not a JSON object"))?;
    let to = "OpenAI";
    let model = fields.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut disable_parallel = false;
    let mut tool_choice: Option<Value> = None;
    if let Some(system) = fields.get("system").filter(|s| !s.is_null()) {
        let text = anthropic_text(system, "system")?;
        messages.push(json!({"role": "system", "content": text}));
    }
    for (key, value) in fields {
        match key.as_str() {
            "model" | "temperature" | "top_p" => {
                out.insert(key.clone(), value.clone());
            }
            "system" => {}
            "stream" => {
                out.insert(key.clone(), value.clone());
                if value == &Value::Bool(true) {
                    out.insert("stream_options".to_owned(), json!({"include_usage": true}));
                }
            }
            "max_tokens" => {
                let name = if super::takes_max_completion_tokens(model) {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                };
                out.insert(name.to_owned(), value.clone());
            }
            "stop_sequences" => {
                if value.as_array().is_some_and(|stops| !stops.is_empty()) {
                    out.insert("stop".to_owned(), value.clone());
                }
            }
            "messages" => messages.extend(anthropic_messages(value)?),
            "tools" => {
                if !value.is_null() {
                    out.insert("tools".to_owned(), anthropic_tools(value)?);
                }
            }
            "tool_choice" => {
                let kind = value.get("type").and_then(Value::as_str);
                disable_parallel =
                    value.get("disable_parallel_tool_use") == Some(&Value::Bool(true));
                tool_choice = match kind {
                    None if value.is_null() => None,
                    Some("auto") => Some(json!("auto")),
                    Some("any") => Some(json!("required")),
                    Some("none") => Some(json!("none")),
                    Some("tool") => Some(json!({
                        "type": "function", "function": {"name": value["name"]},
                    })),
                    _ => return Err(Untranslatable::new("tool_choice.type", "unknown type")),
                };
            }
            "metadata" => {
                for (inner, value) in value.as_object().into_iter().flatten() {
                    match inner.as_str() {
                        "user_id" if value.is_string() => {
                            out.insert("user".to_owned(), value.clone());
                        }
                        "user_id" if value.is_null() => {}
                        _ => {
                            return Err(Untranslatable::new(
                                format!("metadata.{inner}"),
                                "no equivalent",
                            ));
                        }
                    }
                }
            }
            "thinking" if value.get("type").and_then(Value::as_str) == Some("disabled") => {}
            "output_format" => {
                if value.get("type").and_then(Value::as_str) != Some("json_schema") {
                    return Err(Untranslatable::new("output_format.type", "unknown type"));
                }
                out.insert(
                    "response_format".to_owned(),
                    json!({"type": "json_schema", "json_schema": {
                        "name": "output", "schema": value["schema"], "strict": true,
                    }}),
                );
            }
            "service_tier" if matches!(value.as_str(), None | Some("auto")) => {}
            _ => return Err(Untranslatable::new(key, format!("{to} has no equivalent"))),
        }
    }
    // Without tools, `auto` and `none` choose nothing: OpenAI refuses a choice without tools.
    let chooses_nothing = |c: &Value| c == "auto" || c == "none";
    if let Some(choice) = tool_choice.filter(|c| out.contains_key("tools") || !chooses_nothing(c)) {
        out.insert("tool_choice".to_owned(), choice);
    }
    if disable_parallel && out.contains_key("tools") {
        out.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
    }
    out.insert("messages".to_owned(), Value::Array(messages));
    Ok(Value::Object(out))
}

/// Anthropic text (a string or text blocks, `cache_control` markers consumed) as OpenAI content.
fn anthropic_text(value: &Value, field: &str) -> Result<Value, Untranslatable> {
    match value {
        Value::String(_) => Ok(value.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(Untranslatable::new(
                        format!("{field}[{index}].type"),
                        "only text blocks map here",
                    ));
                }
                check_block_keys(
                    block,
                    &format!("{field}[{index}]"),
                    &["type", "text", "cache_control"],
                )?;
                parts.push(json!({"type": "text", "text": block["text"]}));
            }
            // One text part is sent as a plain string, the shape every OpenAI-compatible
            // server accepts.
            match parts.as_slice() {
                [only] => Ok(only["text"].clone()),
                _ => Ok(Value::Array(parts)),
            }
        }
        _ => Err(Untranslatable::new(field, "not a string or an array of blocks")),
    }
}

fn check_block_keys(block: &Value, field: &str, known: &[&str]) -> Result<(), Untranslatable> {
    for key in block.as_object().into_iter().flat_map(Map::keys) {
        if !known.contains(&key.as_str()) {
            return Err(Untranslatable::new(format!("{field}.{key}"), "no equivalent"));
        }
    }
    Ok(())
}

fn anthropic_messages(value: &Value) -> Result<Vec<Value>, Untranslatable> {
    let messages =
        value.as_array().ok_or_else(|| Untranslatable::new("messages", "not an array"))?;
    let mut out = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let field = format!("messages[{index}]");
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        let blocks = match content {
            Value::String(text) => {
                out.push(json!({"role": role, "content": text}));
                continue;
            }
            Value::Array(blocks) => blocks,
            _ => {
                return Err(Untranslatable::new(
                    format!("{field}.content"),
                    "not a string or an array",
                ));
            }
        };
        let mut parts: Vec<Value> = Vec::new();
        let mut tool_calls: Vec<Value> = Vec::new();
        for (block_index, block) in blocks.iter().enumerate() {
            let block_field = format!("{field}.content[{block_index}]");
            match (role, block.get("type").and_then(Value::as_str)) {
                (_, Some("text")) => {
                    check_block_keys(block, &block_field, &["type", "text", "cache_control"])?;
                    parts.push(json!({"type": "text", "text": block["text"]}));
                }
                ("user", Some("image")) => {
                    check_block_keys(block, &block_field, &["type", "source", "cache_control"])?;
                    let source = &block["source"];
                    let url = match source.get("type").and_then(Value::as_str) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            source["media_type"].as_str().unwrap_or("image/png"),
                            source["data"].as_str().unwrap_or_default()
                        ),
                        Some("url") => source["url"].as_str().unwrap_or_default().to_owned(),
                        _ => {
                            return Err(Untranslatable::new(
                                format!("{block_field}.source.type"),
                                "only base64 and url images map",
                            ));
                        }
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                ("user", Some("tool_result")) => {
                    check_block_keys(
                        block,
                        &block_field,
                        &["type", "tool_use_id", "content", "is_error", "cache_control"],
                    )?;
                    let result = match block.get("content") {
                        None | Some(Value::Null) => json!(""),
                        Some(content) => {
                            anthropic_text(content, &format!("{block_field}.content"))?
                        }
                    };
                    if block.get("is_error") == Some(&Value::Bool(true)) {
                        return Err(Untranslatable::new(
                            format!("{block_field}.is_error"),
                            "OpenAI tool messages cannot be marked as errors",
                        ));
                    }
                    // Tool results answer the previous assistant turn: they come before the
                    // rest of this user turn.
                    out.push(json!({
                        "role": "tool", "tool_call_id": block["tool_use_id"], "content": result,
                    }));
                }
                ("assistant", Some("tool_use")) => {
                    check_block_keys(
                        block,
                        &block_field,
                        &["type", "id", "name", "input", "cache_control"],
                    )?;
                    let arguments = serde_json::to_string(&block["input"]).unwrap_or_default();
                    tool_calls.push(json!({
                        "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": arguments},
                    }));
                }
                (_, kind) => {
                    return Err(Untranslatable::new(
                        format!("{block_field}.type"),
                        format!("a `{}` block has no OpenAI equivalent here", kind.unwrap_or("?")),
                    ));
                }
            }
        }
        match role {
            "user" if parts.is_empty() => {}
            "user" => out.push(json!({"role": "user", "content": parts})),
            "assistant" => {
                let text: String =
                    parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("");
                let mut message = json!({"role": "assistant", "content": text});
                if text.is_empty() {
                    message["content"] = Value::Null;
                }
                if !tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(tool_calls);
                }
                out.push(message);
            }
            other => {
                return Err(Untranslatable::new(
                    format!("{field}.role"),
                    format!("role `{other}` has no equivalent"),
                ));
            }
        }
    }
    Ok(out)
}

fn anthropic_tools(value: &Value) -> Result<Value, Untranslatable> {
    let tools = value.as_array().ok_or_else(|| Untranslatable::new("tools", "not an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let field = format!("tools[{index}]");
        if tool.get("type").and_then(Value::as_str).is_some_and(|kind| kind != "custom") {
            return Err(Untranslatable::new(
                format!("{field}.type"),
                "server tools have no OpenAI equivalent",
            ));
        }
        check_block_keys(
            tool,
            &field,
            &["type", "name", "description", "input_schema", "cache_control"],
        )?;
        let mut function = Map::new();
        function.insert("name".to_owned(), tool["name"].clone());
        if let Some(description) = tool.get("description") {
            function.insert("description".to_owned(), description.clone());
        }
        function.insert("parameters".to_owned(), tool["input_schema"].clone());
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}
